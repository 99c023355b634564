"""preprocessing_fn run through tf.Transform, as the Transform component runs it."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata
from tensorflow_transform.tf_metadata import schema_utils

from trainer import features
from trainer import preprocessing

RAW_METADATA = dataset_metadata.DatasetMetadata(
  schema_utils.schema_from_feature_spec(
    {
      features.IMAGE_KEY: tf.io.FixedLenFeature([784], tf.int64),
      features.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
    }
  )
)


def _transform(pixels, labels, custom_config, tmp_path):
  rows = [{features.IMAGE_KEY: p, features.LABEL_KEY: l} for p, l in zip(pixels, labels)]
  with tft_beam.Context(temp_dir=str(tmp_path), force_tf_compat_v1=False):
    (transformed, _), _ = (rows, RAW_METADATA) | tft_beam.AnalyzeAndTransformDataset(
      lambda inputs: preprocessing.preprocessing_fn(inputs, custom_config)
    )
  return transformed


def _pixels(count, seed=0):
  return np.random.default_rng(seed).integers(0, 256, size=(count, 784))


def test_unit_scaling_gives_28x28x1_floats_in_0_1_and_keeps_labels(tmp_path):
  pixels = _pixels(8)
  pixels[0] = 0
  pixels[1] = 255
  out = _transform(pixels, list(range(8)), None, tmp_path)
  images = np.stack([row[features.IMAGE_KEY] for row in out])
  assert images.shape == (8, 28, 28, 1) and images.dtype == np.float32
  np.testing.assert_allclose(images.reshape(8, 784), pixels / 255.0, rtol=1e-6)
  assert [int(row[features.LABEL_KEY]) for row in out] == list(range(8))


def test_zscore_scaling_uses_the_dataset_mean_and_std(tmp_path):
  pixels = _pixels(16, seed=1)
  out = _transform(
    pixels, [0] * 16, {preprocessing.PIXEL_SCALING_KEY: preprocessing.ZSCORE_SCALING}, tmp_path
  )
  images = np.stack([row[features.IMAGE_KEY] for row in out]).reshape(16, 784)
  np.testing.assert_allclose(images, (pixels - pixels.mean()) / pixels.std(), rtol=1e-4, atol=1e-4)


def test_unknown_scaling_is_rejected_by_name(tmp_path):
  with pytest.raises(ValueError, match="pixel_scaling='minmax'"):
    _transform(_pixels(2), [0, 1], {preprocessing.PIXEL_SCALING_KEY: 'minmax'}, tmp_path)
