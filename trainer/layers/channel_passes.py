"""Per-channel passes over [..., channels] tensors, fused into one trip through memory when possible.

On CPU, batch normalization is bound by passes over its activations, not by
arithmetic: each stock TensorFlow multiply, add or reduction reads (and often
allocates) a full-size tensor. The kernels in channel_ops.cc do each of these
passes in one read, and the functions here call them when they apply:

- the library is built (`python -m trainer.layers.build_channel_ops`; `make`
  and the Dockerfile do it),
- the tensor is float32 or float64,
- the graph is not XLA-compiled (XLA fuses the stock ops itself),
- no GPU is visible (the kernels are CPU-only; placing them would copy the
  activations to the host),
- and the caller is not inside `stock_ops()`.

Otherwise they compute the same formula with stock ops. Exported SavedModels
are traced inside `stock_ops()`, so TF Serving and TFMA load them with nothing
but TensorFlow.
"""

import contextlib
import functools
import logging
import pathlib
import threading

import tensorflow as tf

from trainer.layers.reductions import channel_sums
from trainer.layers.reductions import get_enclosing_xla_context
from trainer.layers.reductions import outer_axes
from trainer.layers.reductions import sum_of_squares

LIBRARY_PATH = pathlib.Path(__file__).with_name("_channel_ops.so")
BUILD_COMMAND = "python -m trainer.layers.build_channel_ops"
_KERNEL_DTYPES = (tf.float32, tf.float64)

_stock_only = threading.local()


@contextlib.contextmanager
def stock_ops(active: bool = True):
  """Within this block (at trace time), every pass uses stock TensorFlow ops; a no-op if not active."""
  previous = getattr(_stock_only, "active", False)
  _stock_only.active = active or previous
  try:
    yield
  finally:
    _stock_only.active = previous


@functools.lru_cache(maxsize=None)
def kernels():
  """The loaded kernel library, or None (logged once) when it is missing or unusable."""
  if not LIBRARY_PATH.exists():
    logging.warning(
      "Fused channel kernels not built (%s missing); normalization layers use stock "
      "TensorFlow ops, which are slower on CPU. Build them with: %s",
      LIBRARY_PATH,
      BUILD_COMMAND,
    )
    return None
  try:
    return tf.load_op_library(str(LIBRARY_PATH))
  except (tf.errors.NotFoundError, tf.errors.InvalidArgumentError) as error:
    # Typically a library built against another TensorFlow version.
    logging.warning(
      "Cannot load %s (%s); normalization layers use stock TensorFlow ops. Rebuild it with: %s",
      LIBRARY_PATH,
      error,
      BUILD_COMMAND,
    )
    return None


@functools.lru_cache(maxsize=None)
def _gpu_visible() -> bool:
  return bool(tf.config.list_logical_devices("GPU"))


def uses_kernels(x) -> bool:
  """Whether a pass over x traced here would run the fused kernels."""
  return (
    not getattr(_stock_only, "active", False)
    and x.dtype in _KERNEL_DTYPES
    and get_enclosing_xla_context() is None
    and not _gpu_visible()
    and kernels() is not None
  )


def channel_sum_and_dot(x, y):
  """(s_c, d_c) = (sum of x[..., c], sum of x[..., c] * y[..., c]) over every axis but the last."""
  if uses_kernels(x):
    return kernels().fmnist_channel_sum_and_dot(x, y)
  return channel_sums(x), channel_sums(x * y)


def channel_sum_and_sum_of_squares(x):
  """(s_c, q_c) = (sum of x[..., c], sum of x[..., c]^2) over every axis but the last."""
  if uses_kernels(x):
    return kernels().fmnist_channel_sum_and_dot(x, x)
  return channel_sums(x), sum_of_squares(x, outer_axes(x))


def channel_affine(x, scale, offset):
  """y[..., c] = x[..., c] * scale[c] + offset[c]."""
  if uses_kernels(x):
    return kernels().fmnist_channel_affine(x, scale, offset)
  return tf.nn.bias_add(x * scale, offset)


def channel_linear_combination(a, b, a_scale, b_scale, offset):
  """y[..., c] = a[..., c] * a_scale[c] + b[..., c] * b_scale[c] + offset[c]."""
  if uses_kernels(a):
    return kernels().fmnist_channel_linear_combination(a, b, a_scale, b_scale, offset)
  return tf.nn.bias_add(b * b_scale, offset) + a * a_scale


# Gradients of the kernels, so graphs that differentiate through them (the
# inference path, higher-order gradients) work as with the stock ops.
@tf.RegisterGradient("FmnistChannelSumAndDot")
def _channel_sum_and_dot_gradient(op, grad_sum, grad_dot):
  x, y = op.inputs
  return channel_affine(y, grad_dot, grad_sum), channel_affine(x, grad_dot, tf.zeros_like(grad_dot))


@tf.RegisterGradient("FmnistChannelAffine")
def _channel_affine_gradient(op, grad):
  x, scale, _ = op.inputs
  sum_grad, sum_grad_x = channel_sum_and_dot(grad, x)
  return channel_affine(grad, scale, tf.zeros_like(scale)), sum_grad_x, sum_grad


@tf.RegisterGradient("FmnistChannelLinearCombination")
def _channel_linear_combination_gradient(op, grad):
  a, b, a_scale, b_scale, _ = op.inputs
  zeros = tf.zeros_like(a_scale)
  sum_grad, sum_grad_a = channel_sum_and_dot(grad, a)
  _, sum_grad_b = channel_sum_and_dot(grad, b)
  return (
    channel_affine(grad, a_scale, zeros),
    channel_affine(grad, b_scale, zeros),
    sum_grad_a,
    sum_grad_b,
    sum_grad,
  )
