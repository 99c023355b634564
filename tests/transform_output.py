"""A Transform output (graph and raw schema) for tests that export a model, written by tft_beam."""

import apache_beam as beam
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata
from tensorflow_transform.tf_metadata import metadata_io
from tensorflow_transform.tf_metadata import schema_utils

from trainer import features
from trainer import preprocessing


def write_transform_output(root) -> tft.TFTransformOutput:
  """Analyzes one all-zero example with the pipeline's preprocessing_fn into `root`/transform."""
  raw_spec = {
    features.IMAGE_KEY: tf.io.FixedLenFeature([784], tf.int64),
    features.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
  }
  metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(raw_spec))
  rows = [{features.IMAGE_KEY: np.zeros(784, np.int64), features.LABEL_KEY: 0}]
  with (
    beam.Pipeline() as pipeline,
    tft_beam.Context(temp_dir=str(root / 'tmp'), force_tf_compat_v1=False),
  ):
    transform_fn = (pipeline | beam.Create(rows), metadata) | tft_beam.AnalyzeDataset(
      preprocessing.preprocessing_fn
    )
    _ = transform_fn | tft_beam.WriteTransformFn(str(root / 'transform'))
  # The Transform component writes the raw schema beside the graph; the export parses with it.
  metadata_io.write_metadata(
    metadata, str(root / 'transform' / tft.TFTransformOutput.RAW_METADATA_DIR)
  )
  return tft.TFTransformOutput(str(root / 'transform'))
