"""Content-addressed copies of the files the pipeline imports, so caching follows content."""

import hashlib
import os
from typing import Iterable

import tensorflow as tf

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA_FILE = os.path.join(PACKAGE_ROOT, 'pipeline', 'schema', 'schema.pbtxt')
# Everything the components load at run time: the Python, the kernels' C++ source, the schema.
CODE_DIRECTORIES = ('components', 'trainer', os.path.join('pipeline', 'schema'))
# Build products and caches, which follow from those sources.
_NOT_SOURCES = ('.pyc', '.so')


def _digest(paths: Iterable[str]) -> str:
  sha = hashlib.sha256()
  for path in sorted(paths):
    sha.update(os.path.relpath(path, PACKAGE_ROOT).encode())
    with open(path, 'rb') as source:
      sha.update(source.read())
  return sha.hexdigest()[:16]


def code_fingerprint() -> str:
  """A hash of the user code that components load by module path.

  TFX caches an execution by its inputs and properties; a module path says
  nothing about the code behind it, so this hash goes into the components'
  custom_config and a code change re-runs them.
  """
  sources = []
  for code_directory in CODE_DIRECTORIES:
    for directory, _, files in os.walk(os.path.join(PACKAGE_ROOT, code_directory)):
      sources.extend(
        os.path.join(directory, name) for name in files if not name.endswith(_NOT_SOURCES)
      )
  return _digest(sources)


def schema_directory(pipeline_root: str, schema_file: str = SCHEMA_FILE) -> str:
  """<pipeline_root>/schema/<hash>/: where stage_schema puts the schema, computed without I/O.

  The Importer caches on the URI, so a URI that changes with the content
  means an edited schema is imported again while an unchanged one is not.
  Compiling for a gs:// root needs only this path; `submit` does the copy.
  """
  return os.path.join(pipeline_root, 'schema', _digest([schema_file]))


def stage_schema(pipeline_root: str, schema_file: str = SCHEMA_FILE) -> str:
  """Copies the curated schema to schema_directory(pipeline_root) and returns that directory."""
  directory = schema_directory(pipeline_root, schema_file)
  target = os.path.join(directory, os.path.basename(schema_file))
  if not tf.io.gfile.exists(target):
    tf.io.gfile.makedirs(directory)
    tf.io.gfile.copy(schema_file, target + '.partial', overwrite=True)
    tf.io.gfile.rename(target + '.partial', target, overwrite=True)
  return directory
