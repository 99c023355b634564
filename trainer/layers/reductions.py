"""Reductions shared by the normalization layers, each in the form that is fastest where it runs."""

import tensorflow as tf

# Private, but the only way to see jit_compile while tracing; tf_keras'
# BatchNormalization relies on it too.
from tensorflow.python.ops.control_flow_ops import get_enclosing_xla_context


def outer_axes(x) -> list[int]:
  """axes = [0, ..., rank - 2]: every axis but the last (channels)."""
  return list(range(x.shape.rank - 1))


def channel_sums(x):
  """s_c = sum of x[..., c] over every axis but the last."""
  if get_enclosing_xla_context() is not None:
    return tf.reduce_sum(x, outer_axes(x))
  # Summed as a product with a vector of ones, it runs as a matrix-vector
  # product: 0.35 ms instead of 0.68 ms for TensorFlow's reduction over the
  # outer axes of a 64x28x28x32 map on the 2-core CPU we measure on.
  channels = tf.shape(x)[-1]
  rows = tf.reshape(x, [-1, channels])
  return tf.linalg.matvec(rows, tf.ones([tf.shape(rows)[0]], x.dtype), transpose_a=True)


def sum_of_squares(x, axes, keepdims=False):
  """sum(x^2) over axes, without a full-size temporary for x^2."""
  if get_enclosing_xla_context() is not None:
    # XLA has no EuclideanNorm kernel, and fuses the square into the sum.
    return tf.reduce_sum(tf.square(x), axes, keepdims=keepdims)
  return tf.square(tf.math.reduce_euclidean_norm(x, axes, keepdims=keepdims))
