"""A pushed-style model version for serving tests and benchmarks: the real Transform graph
(analyzed on one row, enough for unit scaling) and a model built and run once, exported."""

import os

import apache_beam as beam
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata
from tensorflow_transform.tf_metadata import metadata_io
from tensorflow_transform.tf_metadata import schema_utils

from trainer import export
from trainer import features
from trainer import preprocessing


def write_transform_graph(directory: str) -> tft.TFTransformOutput:
  raw_spec = {
    features.IMAGE_KEY: tf.io.FixedLenFeature([features.PIXELS_PER_IMAGE], tf.int64),
    features.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
  }
  metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(raw_spec))
  rows = [
    {features.IMAGE_KEY: np.zeros(features.PIXELS_PER_IMAGE, np.int64), features.LABEL_KEY: 0}
  ]
  with (
    beam.Pipeline() as pipeline,
    tft_beam.Context(temp_dir=os.path.join(directory, 'tmp'), force_tf_compat_v1=False),
  ):
    transform_fn = (pipeline | beam.Create(rows), metadata) | tft_beam.AnalyzeDataset(
      preprocessing.preprocessing_fn
    )
    _ = transform_fn | tft_beam.WriteTransformFn(directory)
  # The Transform component writes the raw schema beside the graph; the export parses with it.
  metadata_io.write_metadata(
    metadata, os.path.join(directory, tft.TFTransformOutput.RAW_METADATA_DIR)
  )
  return tft.TFTransformOutput(directory)


def export_version(root: str, model, variant: str, images: np.ndarray, version: int = 1) -> str:
  """Runs `model` once in training mode on `images` (builds it, sets data-dependent state) and
  exports it with the Transform graph to <root>/fashion_mnist/<version>; returns that path."""
  model(
    preprocessing.as_images(preprocessing.scale_to_unit(images.reshape(len(images), -1))),
    training=True,
  )
  version_dir = os.path.join(root, 'fashion_mnist', str(version))
  transform_output = write_transform_graph(os.path.join(root, 'transform'))
  export.save(model, transform_output, version_dir, {'variant': variant})
  return version_dir
