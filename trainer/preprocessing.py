"""Transform's preprocessing_fn: pixel scaling inside the graph, so serving gets the same."""

from typing import Any, Dict, Optional

import tensorflow as tf
import tensorflow_transform as tft

from trainer import features
from trainer.config import PIXEL_SCALINGS
from trainer.config import UNIT_SCALING
from trainer.config import ZSCORE_SCALING

PIXEL_SCALING_KEY = 'pixel_scaling'


def scale_to_unit(pixels: tf.Tensor) -> tf.Tensor:
  """x / 255: raw 0..255 pixels to [0, 1]."""
  return tf.cast(pixels, tf.float32) / features.MAX_PIXEL_VALUE


def as_images(pixels: tf.Tensor) -> tf.Tensor:
  """[batch, 784] to the model's [batch, 28, 28, 1]."""
  return tf.reshape(
    pixels, [-1, features.IMAGE_HEIGHT, features.IMAGE_WIDTH, features.IMAGE_CHANNELS]
  )


def preprocessing_fn(
  inputs: Dict[str, tf.Tensor], custom_config: Optional[Dict[str, Any]] = None
) -> Dict[str, tf.Tensor]:
  """Scales `image` to float32 [batch, 28, 28, 1] and passes `label` through.

  custom_config['pixel_scaling'] picks the scaling: 'unit' (x / 255, the default)
  or 'zscore' ((x - mean) / std over every pixel of the training split, computed
  by tft analyzers).
  """
  scaling = (custom_config or {}).get(PIXEL_SCALING_KEY, UNIT_SCALING)
  if scaling == UNIT_SCALING:
    scaled = scale_to_unit(inputs[features.IMAGE_KEY])
  elif scaling == ZSCORE_SCALING:
    scaled = tft.scale_to_z_score(tf.cast(inputs[features.IMAGE_KEY], tf.float32))
  else:
    raise ValueError(f'{PIXEL_SCALING_KEY}={scaling!r}; expected one of {PIXEL_SCALINGS}')
  return {
    features.IMAGE_KEY: as_images(scaled),
    features.LABEL_KEY: inputs[features.LABEL_KEY],
  }
