"""CuratedSchema: the run's schema (shipped, adopted or proposed) as a pipeline artifact.

The schema's text is the component's parameter: it travels inside the compiled pipeline, so a
schema adopted from a user's file or proposed for new data works on Vertex with nothing staged
to a bucket or baked into the image, and an edited schema re-runs the step (and what depends
on it) while an unchanged one is served from the cache.
"""

import os

from tfx import v1 as tfx
from tfx.utils import io_utils

from dataset import schema as dataset_schema

SCHEMA_FILE = dataset_schema.FASHION_MNIST_SCHEMA_FILE
OUTPUT_FILE = 'schema.pbtxt'


@tfx.dsl.components.component
def CuratedSchema(
  schema_text: tfx.dsl.components.Parameter[str],
  schema: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Schema],
) -> None:
  """Writes `schema_text` (a tensorflow_metadata Schema in text format) into `schema`."""
  # Parsed first: a malformed schema fails here, naming itself, not in ExampleValidator.
  dataset_schema.parse(schema_text, 'schema_text')
  io_utils.write_string_file(os.path.join(schema.uri, OUTPUT_FILE), schema_text)
