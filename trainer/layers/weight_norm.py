"""Weight normalization (Salimans & Kingma, 2016) for Conv2D and Dense.

The kernel is reparameterized as w = g * v / ||v||, with one norm per output
unit taken over all other kernel axes ((kh, kw, c_in) for a conv kernel, the
inputs for a dense one), so the optimizer updates direction v and length g
separately.

Data-dependent initialization: on the first call with training=True the layer
sets g and the bias so that its pre-activations on that batch have zero mean
and unit variance per output unit. A saved, non-trainable `initialized` flag
makes this happen exactly once; it never runs on symbolic build inputs or in
inference, and a restored checkpoint keeps it from running again. Nothing in
the training loop has to know about it: the check is a tf.cond inside call,
so model(x, training=True) in a tf.function GradientTape step just works.

Under tf.distribute each replica computes the initial g and bias from its
own slice of the first batch and the replicas keep their mean. Because
MirroredStrategy forbids cross-replica assignments inside tf.cond, with more
than one replica g, bias and the flag are re-assigned their own (all-reduced)
values on every training step: correct, but two small all-reduces per layer
and step.
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
    # MEAN aggregation lets the data-dependent init assign these from a
    # replica context; ONLY_FIRST_REPLICA does the same for the flag.
    self.v = self.add_weight(
      name="v", shape=kernel_shape, initializer=self.kernel_initializer, experimental_autocast=False
    )
    per_unit = dict(
      shape=[units], aggregation=tf.VariableAggregation.MEAN, experimental_autocast=False
    )
    self.g = self.add_weight(name="g", initializer="ones", **per_unit)
    self.bias = self.add_weight(name="bias", initializer="zeros", **per_unit)
    self.initialized = self.add_weight(
      name="initialized",
      shape=[],
      dtype=tf.bool,
      initializer="zeros",
      trainable=False,
      aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
    )

  @property
  def kernel(self):
    """The effective kernel g * v / ||v||."""
    return weight_norm_kernel(self.v, self.g)

  def _initial_values(self, inputs):
    unit_kernel = weight_norm_kernel(self.v, tf.ones_like(self.g))
    pre_activations = tf.cast(self._linear(inputs, unit_kernel), self.g.dtype)
    return data_dependent_init(pre_activations, self.init_epsilon)

  def _initialize_from(self, inputs):
    initial_g, initial_bias = self._initial_values(inputs)
    self.g.assign(initial_g)
    self.bias.assign(initial_bias)
    self.initialized.assign(True)
    return tf.constant(True)

  def _initialize_once(self, inputs):
    replica_context = tf.distribute.get_replica_context()
    if replica_context is None or replica_context.num_replicas_in_sync == 1:
      # Automatic control dependencies order the reads of g and bias in
      # call after the assignments inside this cond.
      tf.cond(self.initialized, lambda: tf.constant(False), lambda: self._initialize_from(inputs))
      return
    # Assigning a mirrored variable from a replica is a synchronization
    # point, which MirroredStrategy forbids inside tf.cond: pick the values
    # in the cond and assign outside it (a no-op value-wise once initialized).
    g, bias = tf.cond(
      self.initialized,
      lambda: (tf.identity(self.g), tf.identity(self.bias)),
      lambda: self._initial_values(inputs),
    )
    self.g.assign(g)
    self.bias.assign(bias)
    self.initialized.assign(True)

  def call(self, inputs, training=None):
    if training:
      self._initialize_once(inputs)
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
