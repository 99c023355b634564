"""Layer normalization (Ba, Kiros & Hinton, 2016) for conv feature maps.

By default every sample is normalized with its own mean and variance over all
of its (H, W, C) activations, then scaled and shifted by a per-channel gamma and
beta. channels_only=True gives the course notebook's variant instead:
statistics per pixel over C alone.

No state and no batch statistics, so training and inference compute the same
function and a sample's output never depends on the rest of the batch, under
tf.distribute as well. float16 / bfloat16 inputs keep statistics, gamma and
beta in float32. The backward pass is derived by hand (tf.custom_gradient): it
makes one full-size temporary where automatic differentiation makes several.
"""

import tensorflow as tf
import tf_keras as keras

from trainer.layers.batch_norm import add_affine_weights
from trainer.layers.batch_norm import statistics_dtype
from trainer.layers.reductions import channel_affine
from trainer.layers.reductions import channel_sums
from trainer.layers.reductions import trailing_sum_of_squares


def normalization_axes(rank: int, channels_only: bool) -> list[int]:
  """axes = [rank - 1] if channels_only else [1, ..., rank - 1]."""
  return [rank - 1] if channels_only else list(range(1, rank))


def layer_norm(x, gamma, beta, epsilon, axes):
  """y = gamma * (x - mu_i) / sqrt(var_i + epsilon) + beta, mu_i and var_i over `axes` of each sample i."""
  stats_dtype = statistics_dtype(x.dtype)

  @tf.custom_gradient
  def forward(x, gamma, beta):
    x_stats = tf.cast(x, stats_dtype)
    count = tf.cast(tf.reduce_prod(tf.gather(tf.shape(x), axes)), stats_dtype)
    centered = x_stats - tf.reduce_mean(x_stats, axes, keepdims=True)
    inv_std = tf.math.rsqrt(trailing_sum_of_squares(centered, axes[0]) / count + epsilon)
    normalized = centered * inv_std
    y = channel_affine(normalized, gamma, beta)

    def backward(dy):
      dy_stats = tf.cast(dy, stats_dtype)
      dbeta = channel_sums(dy_stats)
      dy_normalized = dy_stats * normalized
      dgamma = channel_sums(dy_normalized)
      # With g = dy * gamma: dx = inv_std * (g - mean(g) - normalized * mean(g * normalized)),
      # means over `axes`. The products below are ordered after the last reader of their
      # operand, so the runtime can write them into its buffer instead of a new one.
      with tf.control_dependencies([dgamma]):
        projection = tf.reduce_mean(dy_normalized * gamma, axes, keepdims=True)
      with tf.control_dependencies([dbeta, dy_normalized]):
        g = dy_stats * gamma
      g_centered = g - tf.reduce_mean(g, axes, keepdims=True)
      dx = (g_centered - normalized * projection) * inv_std
      return tf.cast(dx, x.dtype), dgamma, dbeta

    return tf.cast(y, x.dtype), backward

  return forward(x, tf.cast(gamma, stats_dtype), tf.cast(beta, stats_dtype))


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
