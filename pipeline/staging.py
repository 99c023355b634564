"""The fingerprint of the user code, so caching follows the code behind the module paths."""

import hashlib
import os
from typing import Iterable

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Everything the components load at run time: the Python (the Trainer's export writes the serving
# warmup file), and the schema.
CODE_DIRECTORIES = (
  'components',
  'contract',
  'dataset',
  'trainer',
  'serving',
  os.path.join('pipeline', 'schema'),
)
# Bytecode follows from those sources.
_NOT_SOURCES = ('.pyc',)


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
