"""Weight normalization (Salimans & Kingma, 2016) for Conv2D and Dense.

The kernel is reparameterized as w = g * v / ||v||, with one norm per output
unit taken over all other kernel axes ((kh, kw, c_in) for a conv kernel, the
inputs for a dense one), so the optimizer updates direction v and length g
separately.

Data-dependent initialization: `initialize(inputs)` sets g and the bias so
that the layer's pre-activations on that batch have zero mean and unit
variance per output unit, and sets a saved, non-trainable `initialized` flag.
It runs once, before training and outside the compiled training step
(trainer.model.initialize_from_batch does it for a whole model, layer by
layer), so the step itself has no data-dependent branch; a restored
checkpoint carries the flag, and a resumed run does not initialize again.
A layer that was never initialized is plain weight normalization (g = 1,
bias = 0).
"""

import tensorflow as tf
import tf_keras as keras


def weight_norm_kernel(v, g, epsilon=1e-12):
  """w = g * v / max(||v||, sqrt(epsilon)), ||v|| per output unit (last axis) over all other axes."""
  reduction_axes = list(range(v.shape.rank - 1))
  squared_norm = tf.reduce_sum(tf.square(v), reduction_axes)
  return v * (g * tf.math.rsqrt(tf.maximum(squared_norm, epsilon)))


def data_dependent_init(pre_activations, epsilon):
  """(g0, b0) = (1 / sqrt(var[t] + epsilon), -mean[t] / sqrt(var[t] + epsilon)), t = x conv v/||v||, per output unit."""
  reduction_axes = list(range(pre_activations.shape.rank - 1))
  mean, variance = tf.nn.moments(pre_activations, reduction_axes)
  initial_g = tf.math.rsqrt(variance + epsilon)
  return initial_g, -mean * initial_g


class _WeightNormalized(keras.layers.Layer):
  """Shared g / v / bias / init-flag handling; subclasses supply the linear map."""

  def __init__(self, kernel_initializer="glorot_uniform", init_epsilon: float = 1e-6, **kwargs):
    super().__init__(**kwargs)
    self.kernel_initializer = keras.initializers.get(kernel_initializer)
    self.init_epsilon = init_epsilon

  def _linear(self, inputs, kernel):
    """inputs (x) kernel for the subclass's linear map (convolution or matmul)."""
    raise NotImplementedError

  def _build_weight_norm(self, kernel_shape):
    units = kernel_shape[-1]
    # Under a mixed policy the kernel's norm and the initial statistics
    # stay in float32; _linear casts the finished kernel instead.
    self.v = self.add_weight(
      name="v", shape=kernel_shape, initializer=self.kernel_initializer, experimental_autocast=False
    )
    per_unit = dict(shape=[units], experimental_autocast=False)
    self.g = self.add_weight(name="g", initializer="ones", **per_unit)
    self.bias = self.add_weight(name="bias", initializer="zeros", **per_unit)
    self.initialized = self.add_weight(
      name="initialized",
      shape=[],
      dtype=tf.bool,
      initializer="zeros",
      trainable=False,
    )

  @property
  def kernel(self):
    """The effective kernel g * v / ||v||."""
    return weight_norm_kernel(self.v, self.g)

  def initialize(self, inputs) -> None:
    """Sets g and the bias from this batch of inputs (see data_dependent_init) and marks the layer initialized.

    Call it outside a replica context: under a distribution strategy the
    assignments then reach every replica's copy.
    """
    inputs = tf.cast(inputs, self.compute_dtype)
    unit_kernel = weight_norm_kernel(self.v, tf.ones_like(self.g))
    pre_activations = tf.cast(self._linear(inputs, unit_kernel), self.g.dtype)
    initial_g, initial_bias = data_dependent_init(pre_activations, self.init_epsilon)
    self.g.assign(initial_g)
    self.bias.assign(initial_bias)
    self.initialized.assign(True)

  def call(self, inputs):
    outputs = self._linear(inputs, self.kernel)
    return tf.nn.bias_add(outputs, tf.cast(self.bias, outputs.dtype))

  def get_config(self):
    return {
      **super().get_config(),
      "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
      "init_epsilon": self.init_epsilon,
    }


@keras.utils.register_keras_serializable(package="fmnist")
class WeightNormConv2D(_WeightNormalized):
  """Conv2D with a weight-normalized kernel and data-dependent initialization."""

  def __init__(
    self, filters: int, kernel_size: int, strides: int = 1, padding: str = "same", **kwargs
  ):
    super().__init__(**kwargs)
    self.filters = filters
    self.kernel_size = kernel_size
    self.strides = strides
    self.padding = padding

  def build(self, input_shape):
    self._build_weight_norm(
      [self.kernel_size, self.kernel_size, int(input_shape[-1]), self.filters]
    )
    super().build(input_shape)

  def _linear(self, inputs, kernel):
    return tf.nn.conv2d(inputs, tf.cast(kernel, inputs.dtype), self.strides, self.padding.upper())

  def get_config(self):
    return {
      **super().get_config(),
      "filters": self.filters,
      "kernel_size": self.kernel_size,
      "strides": self.strides,
      "padding": self.padding,
    }


@keras.utils.register_keras_serializable(package="fmnist")
class WeightNormDense(_WeightNormalized):
  """Dense with a weight-normalized kernel and data-dependent initialization."""

  def __init__(self, units: int, **kwargs):
    super().__init__(**kwargs)
    self.units = units

  def build(self, input_shape):
    self._build_weight_norm([int(input_shape[-1]), self.units])
    super().build(input_shape)

  def _linear(self, inputs, kernel):
    return tf.matmul(inputs, tf.cast(kernel, inputs.dtype))

  def get_config(self):
    return {**super().get_config(), "units": self.units}
