"""A pushed-style model version for serving tests and benchmarks: the real Transform graph
(analyzed on one row, enough for unit scaling) and a model built and run once, exported."""

import os
from typing import List, Sequence

import apache_beam as beam
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata
from tensorflow_transform.tf_metadata import metadata_io
from tensorflow_transform.tf_metadata import schema_utils

from contract.features import DATASET_SPEC_KEY
from contract.features import FASHION_MNIST
from contract.features import IMAGE_KEY
from contract.features import LABEL_KEY
from contract.features import DatasetSpec
from trainer import export
from trainer import preprocessing

RAW_FEATURE_SPEC = {
  IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
  LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
}


def png_files(pixels: np.ndarray) -> List[bytes]:
  """uint8 images [n, h, w] (gray) or [n, h, w, c] as PNG files, as ExampleGen stores IDX pixels."""
  if pixels.ndim == 3:
    pixels = pixels[..., None]
  return [tf.io.encode_png(image).numpy() for image in pixels]


def write_transform_graph(
  directory: str, spec: DatasetSpec = FASHION_MNIST
) -> tft.TFTransformOutput:
  metadata = dataset_metadata.DatasetMetadata(
    schema_utils.schema_from_feature_spec(RAW_FEATURE_SPEC)
  )
  rows = [{IMAGE_KEY: png_files(np.zeros((1, *spec.image_shape), np.uint8))[0], LABEL_KEY: 0}]
  custom_config = {DATASET_SPEC_KEY: spec.to_json()}
  with (
    beam.Pipeline() as pipeline,
    tft_beam.Context(temp_dir=os.path.join(directory, 'tmp'), force_tf_compat_v1=False),
  ):
    transform_fn = (pipeline | beam.Create(rows), metadata) | tft_beam.AnalyzeDataset(
      lambda inputs: preprocessing.preprocessing_fn(inputs, custom_config)
    )
    _ = transform_fn | tft_beam.WriteTransformFn(directory)
  # The Transform component writes the raw schema beside the graph; the export parses with it.
  metadata_io.write_metadata(
    metadata, os.path.join(directory, tft.TFTransformOutput.RAW_METADATA_DIR)
  )
  return tft.TFTransformOutput(directory)


def model_inputs(encoded_images: Sequence[bytes], spec: DatasetSpec = FASHION_MNIST) -> tf.Tensor:
  """What Transform gives the model for these files under unit scaling."""
  return preprocessing.scale_to_unit(preprocessing.decode_batch(tf.constant(encoded_images), spec))


def export_version(
  root: str,
  model,
  variant: str,
  images: np.ndarray,
  version: int = 1,
  spec: DatasetSpec = FASHION_MNIST,
) -> str:
  """Runs `model` once in training mode on `images` (uint8 pixels [n, h, w(, c)] of `spec`'s
  size; builds it, sets data-dependent state) and exports it with the Transform graph to
  <root>/fashion_mnist/<version>, its warmup requests from the first images; returns that path."""
  files = png_files(images)
  model(model_inputs(files, spec), training=True)
  version_dir = os.path.join(root, 'fashion_mnist', str(version))
  transform_output = write_transform_graph(os.path.join(root, 'transform'), spec)
  export.save(model, transform_output, version_dir, {'variant': variant}, spec, files[:8])
  return version_dir
