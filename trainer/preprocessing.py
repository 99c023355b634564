"""Transform's preprocessing_fn: image decoding, resizing and pixel scaling inside the graph, so
training, TFMA and every serving signature see the same pixels.

Each example's `image` holds the encoded file (JPEG, PNG, BMP or GIF). It becomes float32
[height, width, channels] of the DatasetSpec (custom_config['dataset']) in four steps, each a
function below: decode the file (a GIF's first frame) at its own size and channels; drop an
alpha channel; convert to the spec's channels (gray to RGB by repeating the gray value, RGB to
gray by the luma weights); resize.

The resize rule: an image already of the spec's height and width is left as it is, pixel for
pixel; any other is resized to exactly height x width by bilinear interpolation with an
antialiasing filter (so shrinking averages the pixels a target pixel covers instead of sampling
a few), and its aspect ratio is not kept: a 40x20 image stretches to a 28x28 square, as Keras'
image_dataset_from_directory does by default. Resizing happens on pixel values 0..255, before
the scaling.
"""

from typing import Any, Dict, Optional

import tensorflow as tf
import tensorflow_transform as tft

from contract.features import IMAGE_KEY
from contract.features import LABEL_KEY
from contract.features import MAX_PIXEL_VALUE
from contract.features import DatasetSpec
from contract.features import spec_from_custom_config
from trainer.config import PIXEL_SCALINGS
from trainer.config import UNIT_SCALING

PIXEL_SCALING_KEY = 'pixel_scaling'
# The encoded bytes passed through untransformed: the Trainer writes warmup requests from them.
IMAGE_RAW_KEY = 'image_raw'
# Images decoded at once per batch: decoding is one op per image, so it runs them side by side.
PARALLEL_DECODES = 32


def decode(encoded: tf.Tensor) -> tf.Tensor:
  """pixels = the file's first frame, float32 [h, w, c] in 0..255 with its own c of 1..4."""
  return tf.cast(tf.io.decode_image(encoded, expand_animations=False), tf.float32)


def drop_alpha(pixels: tf.Tensor) -> tf.Tensor:
  """pixels[..., :1] for gray+alpha (c=2), pixels[..., :3] for RGBA (c=4), else pixels."""
  color_channels = tf.where(tf.shape(pixels)[-1] >= 3, 3, 1)
  return pixels[..., :color_channels]


def to_channels(pixels: tf.Tensor, channels: int) -> tf.Tensor:
  """gray to RGB: [g, g, g]; RGB to gray: 0.2989 R + 0.5870 G + 0.1140 B; else unchanged."""
  is_rgb = tf.shape(pixels)[-1] == 3
  if channels == 3:
    return tf.cond(is_rgb, lambda: pixels, lambda: tf.tile(pixels, [1, 1, 3]))
  return tf.cond(
    is_rgb,
    lambda: tf.image.rgb_to_grayscale(tf.ensure_shape(pixels, [None, None, 3])),
    lambda: pixels,
  )


def resize(pixels: tf.Tensor, height: int, width: int) -> tf.Tensor:
  """pixels if already height x width, else bilinear(antialias) to height x width, any aspect."""
  same_size = tf.reduce_all(tf.shape(pixels)[:2] == [height, width])
  return tf.cond(
    same_size,
    lambda: pixels,
    lambda: tf.image.resize(
      pixels, [height, width], method=tf.image.ResizeMethod.BILINEAR, antialias=True
    ),
  )


def to_spec_pixels(encoded: tf.Tensor, spec: DatasetSpec) -> tf.Tensor:
  """One encoded image to float32 [height, width, channels] of `spec`, values 0..255."""
  pixels = to_channels(drop_alpha(decode(encoded)), spec.channels)
  return tf.reshape(resize(pixels, spec.height, spec.width), spec.image_shape)


def decode_batch(encoded: tf.Tensor, spec: DatasetSpec) -> tf.Tensor:
  """Encoded images [batch] (or [batch, 1]) to float32 [batch, height, width, channels], 0..255."""
  return tf.map_fn(
    lambda one: to_spec_pixels(one, spec),
    tf.reshape(encoded, [-1]),
    fn_output_signature=tf.TensorSpec(spec.image_shape, tf.float32),
    parallel_iterations=PARALLEL_DECODES,
  )


def scale_to_unit(pixels: tf.Tensor) -> tf.Tensor:
  """x / 255: pixels 0..255 to [0, 1]."""
  return tf.cast(pixels, tf.float32) / MAX_PIXEL_VALUE


def preprocessing_fn(
  inputs: Dict[str, tf.Tensor], custom_config: Optional[Dict[str, Any]] = None
) -> Dict[str, tf.Tensor]:
  """Decodes `image` to float32 [batch, height, width, channels] of the DatasetSpec in
  custom_config['dataset'] (Fashion-MNIST's without one), scales it, and passes `label` and the
  encoded bytes (as `image_raw`) through.

  custom_config['pixel_scaling'] picks the scaling: 'unit' (x / 255, the default)
  or 'zscore' ((x - mean) / std over every pixel of the training split, computed
  by tft analyzers).
  """
  spec = spec_from_custom_config(custom_config)
  scaling = (custom_config or {}).get(PIXEL_SCALING_KEY, UNIT_SCALING)
  if scaling not in PIXEL_SCALINGS:
    raise ValueError(f'{PIXEL_SCALING_KEY}={scaling!r}; expected one of {PIXEL_SCALINGS}')
  pixels = decode_batch(inputs[IMAGE_KEY], spec)
  # zscore: (x - mean) / std over every pixel of the training split.
  scaled = scale_to_unit(pixels) if scaling == UNIT_SCALING else tft.scale_to_z_score(pixels)
  return {
    IMAGE_KEY: scaled,
    LABEL_KEY: inputs[LABEL_KEY],
    IMAGE_RAW_KEY: tf.reshape(inputs[IMAGE_KEY], [-1]),
  }
