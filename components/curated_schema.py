"""CuratedSchema: the hand-written schema shipped with this package, as a pipeline artifact.

One way for every orchestrator: the schema file is package data, so it is in
the local checkout and in the image alike, and the component copies it into
the pipeline root. Nothing is staged to a bucket before a run. The content
hash is the component's parameter, so an edited schema re-runs it (and what
depends on it) while an unchanged one is served from the cache.
"""

import hashlib
import os
from typing import Optional

from tfx import v1 as tfx
from tfx.utils import io_utils

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA_FILE = os.path.join(PACKAGE_ROOT, 'pipeline', 'schema', 'schema.pbtxt')


class StaleSchemaError(RuntimeError):
  """The schema in this installation is not the one the pipeline was compiled with."""


def content_hash(path: Optional[str] = None) -> str:
  """SHA-256 (16 hex digits) of the schema file's bytes; the shipped schema by default."""
  with open(path or SCHEMA_FILE, 'rb') as schema:
    return hashlib.sha256(schema.read()).hexdigest()[:16]


@tfx.dsl.components.component
def CuratedSchema(
  schema_hash: tfx.dsl.components.Parameter[str],
  schema: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Schema],
) -> None:
  """Copies the shipped schema into `schema`, if it is the one the pipeline was compiled with."""
  shipped = content_hash()
  if shipped != schema_hash:
    # An image built from another checkout than the compiled pipeline: its schema would
    # silently replace the one the cache key promises.
    raise StaleSchemaError(
      f'{SCHEMA_FILE} has content hash {shipped}, the pipeline was compiled for {schema_hash}: '
      'rebuild the image from the checkout you compile from'
    )
  io_utils.copy_file(SCHEMA_FILE, os.path.join(schema.uri, os.path.basename(SCHEMA_FILE)))
