"""Layer normalization (Ba, Kiros & Hinton, 2016) for conv feature maps.

By default every sample is normalized with its own mean and variance over all
of its (H, W, C) activations, then scaled and shifted by a per-channel gamma and
beta. channels_only=True gives the course notebook's variant instead:
statistics per pixel over C alone.

No state and no batch statistics, so training and inference compute the same
function and a sample's output never depends on the rest of the batch, under
tf.distribute as well. float16 / bfloat16 inputs keep statistics, gamma and
beta in float32.
"""

import tensorflow as tf
import tf_keras as keras

from trainer.layers.batch_norm import add_affine_weights
from trainer.layers.batch_norm import statistics_dtype


def normalization_axes(rank: int, channels_only: bool) -> list[int]:
  """axes = [rank - 1] if channels_only else [1, ..., rank - 1]."""
  return [rank - 1] if channels_only else list(range(1, rank))


def layer_norm(x, gamma, beta, epsilon, axes):
  """y = gamma * (x - mu_i) / sqrt(var_i + epsilon) + beta, mu_i and var_i over `axes` of each sample i."""
  stats_dtype = statistics_dtype(x.dtype)
  x_stats = tf.cast(x, stats_dtype)
  mean = tf.reduce_mean(x_stats, axes, keepdims=True)
  variance = tf.reduce_mean(tf.math.squared_difference(x_stats, mean), axes, keepdims=True)
  normalized = (x_stats - mean) * tf.math.rsqrt(variance + epsilon)
  y = normalized * tf.cast(gamma, stats_dtype) + tf.cast(beta, stats_dtype)
  return tf.cast(y, x.dtype)


@keras.utils.register_keras_serializable(package="fmnist")
class LayerNormalization(keras.layers.Layer):
  """Per-sample normalization with per-channel gamma and beta (see module docstring)."""

  def __init__(self, epsilon: float = 1e-3, channels_only: bool = False, **kwargs):
    super().__init__(**kwargs)
    self.epsilon = epsilon
    self.channels_only = channels_only

  def build(self, input_shape):
    channels = int(input_shape[-1])
    add_affine_weights(self, channels)
    self._axes = normalization_axes(len(input_shape), self.channels_only)
    super().build(input_shape)

  def call(self, inputs, training=None):
    del training  # identical in training and inference
    return layer_norm(inputs, self.gamma, self.beta, self.epsilon, self._axes)

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    return {**super().get_config(), "epsilon": self.epsilon, "channels_only": self.channels_only}
