"""preprocessing_fn run through tf.Transform, as the Transform component runs it: decoding,
channel conversion, resizing and pixel scaling of encoded images of mixed sizes and formats."""

import io

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform.beam as tft_beam
from PIL import Image
from tensorflow_transform.tf_metadata import dataset_metadata
from tensorflow_transform.tf_metadata import schema_utils

from contract.features import DATASET_SPEC_KEY
from contract.features import IMAGE_KEY
from contract.features import LABEL_KEY
from contract.features import DatasetSpec
from trainer import preprocessing
from trainer.config import ZSCORE_SCALING

RAW_METADATA = dataset_metadata.DatasetMetadata(
  schema_utils.schema_from_feature_spec(
    {
      IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
      LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
    }
  )
)
RGB_16X12 = DatasetSpec(('a', 'b', 'c'), height=16, width=12, channels=3)
GRAY_16X12 = DatasetSpec(('a', 'b', 'c'), height=16, width=12, channels=1)


def encode(pixels: np.ndarray, image_format: str) -> bytes:
  """uint8 [h, w] (gray), [h, w, 2|3|4] as a PNG, JPEG, BMP or GIF file."""
  out = io.BytesIO()
  Image.fromarray(pixels).save(out, format=image_format)
  return out.getvalue()


def _pixels(shape, seed=0):
  return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def _transform(encoded_images, custom_config, tmp_path):
  rows = [{IMAGE_KEY: image, LABEL_KEY: index} for index, image in enumerate(encoded_images)]
  with tft_beam.Context(temp_dir=str(tmp_path), force_tf_compat_v1=False):
    (transformed, _), _ = (rows, RAW_METADATA) | tft_beam.AnalyzeAndTransformDataset(
      lambda inputs: preprocessing.preprocessing_fn(inputs, custom_config)
    )
  return transformed


def _config(spec, **options):
  return {DATASET_SPEC_KEY: spec.to_json(), **options}


def test_unit_scaling_of_images_of_the_spec_size_keeps_every_pixel_and_label(tmp_path):
  gray, rgb = _pixels((16, 12), 1), _pixels((16, 12, 3), 2)
  files = [encode(gray, 'PNG'), encode(rgb, 'PNG'), encode(rgb, 'BMP')]
  out = _transform(files, _config(RGB_16X12), tmp_path)
  images = np.stack([row[IMAGE_KEY] for row in out])
  assert images.shape == (3, 16, 12, 3) and images.dtype == np.float32
  np.testing.assert_allclose(images[0], np.repeat(gray[..., None], 3, -1) / 255.0, rtol=1e-6)
  np.testing.assert_allclose(images[1], rgb / 255.0, rtol=1e-6)
  np.testing.assert_allclose(images[2], rgb / 255.0, rtol=1e-6)
  assert [int(row[LABEL_KEY]) for row in out] == [0, 1, 2]
  assert [row[preprocessing.IMAGE_RAW_KEY] for row in out] == files


def test_mixed_sizes_and_channels_decode_to_the_spec_as_the_step_functions_say(tmp_path):
  rgba = _pixels((30, 20, 4), 3)
  gray_alpha = _pixels((8, 8, 2), 4)
  rgb_small = _pixels((5, 7, 3), 5)
  gif_frame = _pixels((16, 12), 6)
  files = [
    encode(rgba, 'PNG'),
    encode(gray_alpha, 'PNG'),
    encode(rgb_small, 'JPEG'),
    encode(gif_frame, 'GIF'),
  ]
  for spec in (RGB_16X12, GRAY_16X12):
    out = _transform(files, _config(spec), tmp_path / str(spec.channels))
    images = np.stack([row[IMAGE_KEY] for row in out])
    assert images.shape == (4, 16, 12, spec.channels)
    # RGBA: alpha dropped, then (for gray) luma, then resized with antialiasing.
    color = rgba[..., :3].astype(np.float32)
    if spec.channels == 1:
      color = tf.image.rgb_to_grayscale(color).numpy()
    expected = tf.image.resize(color, [16, 12], antialias=True).numpy() / 255.0
    np.testing.assert_allclose(images[0], expected, atol=1e-5)
    # Gray + alpha: the gray channel, repeated for RGB, upscaled to 16x12.
    gray = np.repeat(gray_alpha[..., :1].astype(np.float32), spec.channels, -1)
    expected = tf.image.resize(gray, [16, 12], antialias=True).numpy() / 255.0
    np.testing.assert_allclose(images[1], expected, atol=1e-5)
    for image in images:
      assert np.all((image >= 0) & (image <= 1))


def test_each_step_is_the_formula_of_its_docstring():
  rgba = tf.constant(_pixels((4, 6, 4), 7), tf.float32)
  assert preprocessing.drop_alpha(rgba).shape == (4, 6, 3)
  assert preprocessing.drop_alpha(rgba[..., :2]).shape == (4, 6, 1)
  rgb = rgba[..., :3]
  gray = preprocessing.to_channels(rgb, 1)
  np.testing.assert_allclose(
    gray[..., 0], 0.2989 * rgb[..., 0] + 0.5870 * rgb[..., 1] + 0.1140 * rgb[..., 2], rtol=1e-4
  )
  np.testing.assert_array_equal(preprocessing.to_channels(gray, 3), tf.tile(gray, [1, 1, 3]))
  np.testing.assert_array_equal(preprocessing.to_channels(rgb, 3), rgb)
  # Same size: untouched, pixel for pixel; other sizes: exactly the target, aspect not kept.
  np.testing.assert_array_equal(preprocessing.resize(rgb, 4, 6), rgb)
  assert preprocessing.resize(rgb, 9, 9).shape == (9, 9, 3)


def test_zscore_scaling_uses_the_mean_and_std_of_every_decoded_pixel(tmp_path):
  pixels = _pixels((6, 16, 12, 3), 8)
  out = _transform(
    [encode(image, 'PNG') for image in pixels],
    _config(RGB_16X12, **{preprocessing.PIXEL_SCALING_KEY: ZSCORE_SCALING}),
    tmp_path,
  )
  images = np.stack([row[IMAGE_KEY] for row in out])
  np.testing.assert_allclose(images, (pixels - pixels.mean()) / pixels.std(), rtol=1e-4, atol=1e-4)


def test_unknown_scaling_is_rejected_by_name(tmp_path):
  with pytest.raises(ValueError, match="pixel_scaling='minmax'"):
    _transform(
      [encode(_pixels((16, 12), 9), 'PNG')],
      _config(RGB_16X12, **{preprocessing.PIXEL_SCALING_KEY: 'minmax'}),
      tmp_path,
    )
