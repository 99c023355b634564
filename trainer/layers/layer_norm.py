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
from trainer.layers.reductions import weighted_sums


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
    # The per-sample inv_std and per-channel gamma combine into a small scale first: on CPU
    # the layer's cost is its full-size elementwise ops, and this saves one.
    y = channel_affine(centered, inv_std * gamma, beta)

    def backward(dy):
      dy_stats = tf.cast(dy, stats_dtype)
      dbeta = channel_sums(dy_stats)
      dy_centered = dy_stats * centered
      # dgamma = sum(dy * normalized), normalized = centered * inv_std.
      dgamma = channel_sums(dy_centered, inv_std)
      # With g = dy * gamma: dx = inv_std * (g - mean(g) - normalized * mean(g * normalized)),
      # means over `axes`, both taken as products with gamma (no full-size g), so that
      # dx = dy * (inv_std * gamma) + centered * x_coefficient + constant.
      mean_g = weighted_sums(dy_stats, gamma, axes) / count
      mean_g_normalized = inv_std * weighted_sums(dy_centered, gamma, axes) / count
      x_coefficient = -tf.square(inv_std) * mean_g_normalized
      # Ordered after the last readers of dy, so the runtime can write dx into its buffer.
      with tf.control_dependencies([dbeta, dgamma, mean_g, mean_g_normalized]):
        dx = dy_stats * (inv_std * gamma) + (centered * x_coefficient - inv_std * mean_g)
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
