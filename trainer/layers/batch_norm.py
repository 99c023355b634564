"""Batch normalization (Ioffe & Szegedy, 2015) with a hand-derived backward pass.

Statistics are per channel (the last axis) over every other axis: (N, H, W) for
conv feature maps, N for dense activations. training=True normalizes with the
batch statistics and updates the moving ones; training=False (or None) uses the
moving statistics, so inference output never depends on the rest of the batch.

float16 / bfloat16 inputs keep statistics, gamma, beta and the moving averages
in float32. The training step has no data-dependent control flow (the
variance is always the two-pass form, see batch_norm_training), so nothing
waits on the device to pick a branch.

Under tf.distribute: with synchronized=False (the default, like
keras BatchNormalization(synchronized=False)) every replica normalizes with the
statistics of its own slice of the batch and updates its own copy of the moving
statistics; the copies are averaged when read (checkpoints, inference outside
the replica context). With synchronized=True the per-channel sums behind the
mean, the variance and the backward pass are all-reduced, so every replica
normalizes with the statistics of the global batch.
"""

from typing import Callable

import tensorflow as tf
import tf_keras as keras

from trainer.layers.reductions import channel_affine
from trainer.layers.reductions import channel_sums

ChannelSum = Callable[[tf.Tensor], tf.Tensor]


def _local_sum(per_channel: tf.Tensor) -> tf.Tensor:
  return per_channel


def statistics_dtype(dtype) -> tf.DType:
  """dtype_stats = float32 if dtype is a 16-bit float else dtype."""
  dtype = tf.as_dtype(dtype)
  return tf.float32 if dtype in (tf.float16, tf.bfloat16) else dtype


def per_channel_weight_kwargs(layer: keras.layers.Layer, channels: int) -> dict:
  """add_weight arguments for per-channel state: float32 under a 16-bit policy."""
  # No autocasting under a mixed policy: call must read float32 values.
  return dict(shape=[channels], dtype=statistics_dtype(layer.dtype), experimental_autocast=False)


def add_affine_weights(layer: keras.layers.Layer, channels: int) -> None:
  """Adds per-channel gamma (ones) and beta (zeros)."""
  param_kwargs = per_channel_weight_kwargs(layer, channels)
  layer.gamma = layer.add_weight(name="gamma", initializer="ones", **param_kwargs)
  layer.beta = layer.add_weight(name="beta", initializer="zeros", **param_kwargs)


def normalize(x, mean, variance, gamma, beta, epsilon):
  """y = gamma * (x - mean) / sqrt(variance + epsilon) + beta."""
  # Folded into one per-channel scale and offset: a single pass over x.
  scale = gamma * tf.math.rsqrt(variance + epsilon)
  offset = beta - mean * scale
  return channel_affine(x, tf.cast(scale, x.dtype), tf.cast(offset, x.dtype))


def moving_average_decrement(moving, batch_value, momentum):
  """delta = (1 - momentum) * (moving - batch_value); moving - delta = momentum * moving + (1 - momentum) * batch_value."""
  return (1.0 - momentum) * (moving - batch_value)


def batch_norm_training(x, gamma, beta, epsilon, channel_sum: ChannelSum = _local_sum):
  """(y, mu_B, var_B) with y = gamma * (x - mu_B) / sqrt(var_B + epsilon) + beta over all axes but the last.

  channel_sum totals a per-channel sum over the replicas that share the
  statistics; the default keeps them local.
  """
  stats_dtype = statistics_dtype(x.dtype)

  @tf.custom_gradient
  def forward(x, gamma, beta):
    x_stats = tf.cast(x, stats_dtype)
    count = channel_sum(tf.cast(tf.size(x) // tf.shape(x)[-1], stats_dtype))
    mean = channel_sum(channel_sums(x_stats)) / count
    # Two passes, E[(x - mean)^2] after the mean: float32 stays accurate when
    # |mean| >> std, where E[x^2] - mean^2 cancels, without a data-dependent
    # branch. With stock ops it costs what the one-pass sums would: each is a
    # full-size elementwise op (x^2 or (x - mean)^2) and a reduction.
    variance = channel_sum(channel_sums(tf.math.squared_difference(x_stats, mean))) / count
    inv_std = tf.math.rsqrt(variance + epsilon)
    scale = gamma * inv_std
    y = channel_affine(x_stats, scale, beta - mean * scale)

    def backward(dy, dmean, dvariance):
      dy_stats = tf.cast(dy, stats_dtype)
      local_sum_dy = channel_sums(dy_stats)
      # sum(dy * (x - mean)) = sum(dy * x) - mean * sum(dy); the
      # cancellation costs ~|mean|/std ulps, far below the 1e-5 budget
      # for normalized activations, and saves a full-size op.
      local_sum_dy_centered = channel_sums(dy_stats * x_stats) - mean * local_sum_dy
      # gamma and beta are replicated: the strategy all-reduces their
      # gradients itself, so only x needs the totals here.
      sum_dy = channel_sum(local_sum_dy)
      sum_dy_centered = channel_sum(local_sum_dy_centered)
      # dx = scale*dy - scale/n*sum(dy) - scale/(n*(var+eps))*sum(dy*xc)*xc
      #      + dmean/n + 2*dvar/n*xc, with xc = x - mean, collected into
      # per-channel coefficients of dy, x and 1.
      x_coefficient = (
        channel_sum(2.0 * dvariance) - scale * inv_std * inv_std * sum_dy_centered
      ) / count
      constant = (channel_sum(dmean) - scale * sum_dy) / count - x_coefficient * mean
      # Combining only after both sums have consumed dy lets the runtime
      # write dx into dy's buffer instead of allocating (costly on CPU).
      with tf.control_dependencies([local_sum_dy, local_sum_dy_centered]):
        dx = tf.nn.bias_add(x_stats * x_coefficient, constant) + dy_stats * scale
      return tf.cast(dx, x.dtype), local_sum_dy_centered * inv_std, local_sum_dy

    return (tf.cast(y, x.dtype), mean, variance), backward

  return forward(x, tf.cast(gamma, stats_dtype), tf.cast(beta, stats_dtype))


@keras.utils.register_keras_serializable(package="fmnist")
class BatchNormalization(keras.layers.Layer):
  """Per-channel batch normalization with moving statistics for inference.

  See the module docstring for the statistics used under tf.distribute.
  """

  def __init__(
    self, momentum: float = 0.99, epsilon: float = 1e-3, synchronized: bool = False, **kwargs
  ):
    super().__init__(**kwargs)
    self.momentum = momentum
    self.epsilon = epsilon
    self.synchronized = synchronized

  def build(self, input_shape):
    channels = int(input_shape[-1])
    add_affine_weights(self, channels)
    # ON_READ + MEAN: replicas update their own copies without cross-device
    # traffic, and readers outside the replica context see the average.
    moving_kwargs = dict(
      trainable=False,
      synchronization=tf.VariableSynchronization.ON_READ,
      aggregation=tf.VariableAggregation.MEAN,
      **per_channel_weight_kwargs(self, channels),
    )
    self.moving_mean = self.add_weight(name="moving_mean", initializer="zeros", **moving_kwargs)
    self.moving_variance = self.add_weight(
      name="moving_variance", initializer="ones", **moving_kwargs
    )
    super().build(input_shape)

  def _channel_sum(self) -> ChannelSum:
    replica_context = tf.distribute.get_replica_context()
    if (
      not self.synchronized or replica_context is None or replica_context.num_replicas_in_sync == 1
    ):
      return _local_sum
    return lambda per_channel: replica_context.all_reduce(tf.distribute.ReduceOp.SUM, per_channel)

  def call(self, inputs, training=None):
    if not training:
      return normalize(
        inputs, self.moving_mean, self.moving_variance, self.gamma, self.beta, self.epsilon
      )
    outputs, mean, variance = batch_norm_training(
      inputs, self.gamma, self.beta, self.epsilon, self._channel_sum()
    )
    self.moving_mean.assign_sub(moving_average_decrement(self.moving_mean, mean, self.momentum))
    self.moving_variance.assign_sub(
      moving_average_decrement(self.moving_variance, variance, self.momentum)
    )
    return outputs

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    return {
      **super().get_config(),
      "momentum": self.momentum,
      "epsilon": self.epsilon,
      "synchronized": self.synchronized,
    }
