"""Hand-written normalization layers against the Keras built-ins and finite differences."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from trainer.layers import batch_norm, layer_norm, weight_norm
from trainer.layers.batch_norm import BatchNormalization
from trainer.layers.layer_norm import LayerNormalization
from trainer.layers.weight_norm import WeightNormConv2D, WeightNormDense

MOMENTUM = 0.9
EPSILON = 1e-3
FD_DELTA = 1e-6  # float64 central differences: truncation ~1e-12, rounding ~1e-10


def _random(shape, seed, dtype=tf.float64, mean=0.0, stddev=1.0):
  return tf.constant(np.random.default_rng(seed).normal(mean, stddev, shape), dtype=dtype)


def _paired_batch_norms(shape, dtype="float64"):
  channels = shape[-1]
  ours = BatchNormalization(momentum=MOMENTUM, epsilon=EPSILON, dtype=dtype)
  reference = keras.layers.BatchNormalization(momentum=MOMENTUM, epsilon=EPSILON, dtype=dtype)
  for layer in (ours, reference):
    layer.build([None, *shape[1:]])
  # Non-trivial affine parameters so a swapped gamma/beta cannot pass.
  gamma = _random([channels], 1, tf.as_dtype(dtype)) + 1.5
  beta = _random([channels], 2, tf.as_dtype(dtype))
  for layer in (ours, reference):
    layer.gamma.assign(gamma)
    layer.beta.assign(beta)
  return ours, reference


@pytest.mark.parametrize("shape", [(6, 5, 4, 3), (16, 3)], ids=["conv", "dense"])
def test_batch_norm_matches_keras_over_training_steps(shape):
  ours, reference = _paired_batch_norms(shape)
  for step in range(3):
    x = _random(shape, 10 + step, mean=3.0, stddev=2.0)
    np.testing.assert_allclose(ours(x, training=True), reference(x, training=True), atol=1e-5)
  np.testing.assert_allclose(ours.moving_mean, reference.moving_mean, atol=1e-5)
  np.testing.assert_allclose(ours.moving_variance, reference.moving_variance, atol=1e-5)
  x = _random(shape, 20, mean=3.0, stddev=2.0)
  np.testing.assert_allclose(ours(x, training=False), reference(x, training=False), atol=1e-5)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_batch_norm_gradients_match_keras(dtype):
  shape = (6, 5, 4, 3)
  ours, reference = _paired_batch_norms(shape, dtype)
  x = _random(shape, 3, tf.as_dtype(dtype), mean=1.0, stddev=2.0)
  upstream = _random(shape, 4, tf.as_dtype(dtype))

  def gradients(layer):
    with tf.GradientTape() as tape:
      tape.watch(x)
      loss = tf.reduce_sum(layer(x, training=True) * upstream)
    return tape.gradient(loss, [x, layer.gamma, layer.beta])

  for ours_grad, reference_grad in zip(gradients(ours), gradients(reference)):
    np.testing.assert_allclose(ours_grad, reference_grad, atol=1e-5)


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16])
def test_batch_norm_half_precision_forward_and_gradients_follow_float64_keras(dtype):
  shape = (8, 5, 4, 3)
  _, reference = _paired_batch_norms(shape, "float64")
  x = tf.cast(_random(shape, 13, mean=1.0, stddev=2.0), dtype)
  upstream = tf.cast(_random(shape, 14), dtype)

  def outputs_and_gradients(fn, x, upstream):
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = fn(x)
    return [y, *tape.gradient(y, [x, reference.gamma, reference.beta], output_gradients=upstream)]

  got = outputs_and_gradients(
    lambda x: batch_norm.batch_norm_training(x, reference.gamma, reference.beta, EPSILON)[0],
    x,
    upstream,
  )
  # Keras in float64 on the same (rounded) inputs: only 16-bit rounding may separate them.
  expected = outputs_and_gradients(
    lambda x: reference(x, training=True), tf.cast(x, tf.float64), tf.cast(upstream, tf.float64)
  )
  assert got[0].dtype == dtype and got[1].dtype == dtype
  for name, g, e in zip(["y", "dx", "dgamma", "dbeta"], got, expected):
    scale = float(tf.reduce_max(tf.abs(e)))
    np.testing.assert_allclose(tf.cast(g, tf.float64), e, atol=2e-2 * scale, err_msg=name)


@pytest.mark.parametrize("mean", [0.0, 3.0, 300.0])
def test_batch_norm_float32_variance_is_accurate_even_for_large_means(mean):
  x64 = _random((16, 6, 6, 4), 40, mean=mean, stddev=1.5)
  _, _, variance = batch_norm.batch_norm_training(
    tf.cast(x64, tf.float32), tf.ones([4]), tf.zeros([4]), EPSILON
  )
  np.testing.assert_allclose(variance, tf.math.reduce_variance(x64, [0, 1, 2]), rtol=2e-5)


def test_batch_norm_training_finite_differences_including_statistics_outputs():
  x = _random((4, 3, 2, 3), 5, mean=0.5)
  gamma, beta = _random([3], 6) + 1.0, _random([3], 7)
  weights = [_random((4, 3, 2, 3), 8), _random([3], 9), _random([3], 10)]

  def weighted_outputs(x, gamma, beta):
    outputs = batch_norm.batch_norm_training(x, gamma, beta, EPSILON)
    return sum(tf.reduce_sum(out * w) for out, w in zip(outputs, weights))

  theoretical, numerical = tf.test.compute_gradient(
    weighted_outputs, [x, gamma, beta], delta=FD_DELTA
  )
  for analytic, finite_difference in zip(theoretical, numerical):
    np.testing.assert_allclose(analytic, finite_difference, atol=1e-6)


def test_batch_norm_inference_finite_differences():
  layer = BatchNormalization(dtype="float64")
  x = _random((3, 2, 2, 4), 11)
  layer(x, training=True)

  theoretical, numerical = tf.test.compute_gradient(
    lambda x: layer(x, training=False), [x], delta=FD_DELTA
  )
  np.testing.assert_allclose(theoretical[0], numerical[0], atol=1e-6)


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16])
def test_batch_norm_half_precision_keeps_float32_statistics(dtype):
  layer = BatchNormalization(momentum=MOMENTUM, dtype=dtype)
  x32 = _random((8, 4, 4, 3), 12, tf.float32, mean=2.0, stddev=3.0)
  outputs = layer(tf.cast(x32, dtype), training=True)
  assert outputs.dtype == dtype
  assert layer.moving_mean.dtype == tf.float32 and layer.gamma.dtype == tf.float32
  x_seen = tf.cast(tf.cast(x32, dtype), tf.float32)
  expected_mean = (1 - MOMENTUM) * tf.reduce_mean(x_seen, [0, 1, 2])
  np.testing.assert_allclose(layer.moving_mean, expected_mean, rtol=1e-5)
  # Only the final rounding to the 16-bit output may cost precision.
  output_tolerance = {tf.float16: 1e-2, tf.bfloat16: 5e-2}[dtype]
  normalized = (x_seen - tf.reduce_mean(x_seen, [0, 1, 2])) / tf.math.reduce_std(x_seen, [0, 1, 2])
  np.testing.assert_allclose(tf.cast(outputs, tf.float32), normalized, atol=output_tolerance)


def test_batch_norm_under_xla_matches_eager():
  layer_eager, layer_xla = BatchNormalization(), BatchNormalization()
  x = _random((8, 4, 4, 3), 13, tf.float32, mean=1.0)

  def step(layer, x):
    with tf.GradientTape() as tape:
      tape.watch(x)
      loss = tf.reduce_sum(tf.square(layer(x, training=True)))
    return tape.gradient(loss, [x, layer.gamma])

  expected = step(layer_eager, x)
  got = tf.function(step, jit_compile=True)(layer_xla, x)
  for e, g in zip(expected, got):
    np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(layer_xla.moving_variance, layer_eager.moving_variance, atol=1e-6)


@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
@pytest.mark.parametrize("shape", [(6, 5, 4, 3), (16, 3)], ids=["conv", "dense"])
def test_batch_norm_traced_for_any_batch_size_matches_keras(shape, jit_compile):
  # The training loop traces once for batches of unknown size (the last one is smaller).
  ours, reference = _paired_batch_norms(shape)

  def step(layer, x):
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = layer(x, training=True)
      loss = tf.reduce_sum(y * _random(shape[1:], 21))
    return [y, *tape.gradient(loss, [x, layer.gamma, layer.beta])]

  signature = [tf.TensorSpec([None, *shape[1:]], tf.float64)]
  traced = tf.function(lambda x: step(ours, x), input_signature=signature, jit_compile=jit_compile)
  for batch_size, seed in ((shape[0], 22), (shape[0] // 2, 23)):
    x = _random((batch_size, *shape[1:]), seed, mean=2.0)
    for got, expected in zip(traced(x), step(reference, x)):
      np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9)
  assert traced.experimental_get_tracing_count() == 1
  np.testing.assert_allclose(ours.moving_mean, reference.moving_mean, rtol=1e-6)
  np.testing.assert_allclose(ours.moving_variance, reference.moving_variance, rtol=1e-6)


@pytest.mark.parametrize("synchronized", [False, True])
def test_batch_norm_under_mirrored_strategy(synchronized, two_cpu_strategy):
  strategy = two_cpu_strategy
  halves = [
    _random((4, 3, 3, 2), 14, tf.float32, mean=-1.0),
    _random((4, 3, 3, 2), 15, tf.float32, mean=2.0, stddev=3.0),
  ]
  with strategy.scope():
    layer = BatchNormalization(momentum=MOMENTUM, synchronized=synchronized)
    layer.build([None, 3, 3, 2])

  @tf.function
  def replica_step(_):
    x = (
      halves[0] if tf.distribute.get_replica_context().replica_id_in_sync_group == 0 else halves[1]
    )
    x = tf.identity(x)
    with tf.GradientTape() as tape:
      tape.watch(x)
      outputs = layer(x, training=True)
      loss = tf.reduce_sum(outputs * tf.range(2, dtype=tf.float32))
    return outputs, tape.gradient(loss, x)

  per_replica = strategy.run(replica_step, args=(tf.constant(0),))
  outputs = tf.concat(strategy.experimental_local_results(per_replica[0]), 0)
  input_grads = tf.concat(strategy.experimental_local_results(per_replica[1]), 0)

  reference_layers = [BatchNormalization(momentum=MOMENTUM)]
  if synchronized:
    pieces = [tf.concat(halves, 0)]
  else:
    pieces = halves
    reference_layers.append(BatchNormalization(momentum=MOMENTUM))
  expected_outputs, expected_grads = [], []
  for reference, piece in zip(reference_layers, pieces):
    with tf.GradientTape() as tape:
      tape.watch(piece)
      out = reference(piece, training=True)
      loss = tf.reduce_sum(out * tf.range(2, dtype=tf.float32))
    expected_outputs.append(out)
    expected_grads.append(tape.gradient(loss, piece))
  np.testing.assert_allclose(outputs, tf.concat(expected_outputs, 0), atol=1e-5)
  np.testing.assert_allclose(input_grads, tf.concat(expected_grads, 0), atol=1e-5)
  # Per-replica copies are averaged on read; synchronized copies are identical.
  expected_moving_mean = tf.reduce_mean(tf.stack([r.moving_mean for r in reference_layers]), 0)
  np.testing.assert_allclose(layer.moving_mean.read_value(), expected_moving_mean, atol=1e-6)


# ---------------------------------------------------------------- layer norm


@pytest.mark.parametrize("channels_only", [False, True], ids=["sample", "channels_only"])
def test_layer_norm_matches_keras(channels_only):
  shape = (4, 5, 3, 6)
  ours = LayerNormalization(epsilon=EPSILON, channels_only=channels_only, dtype="float64")
  axis = -1 if channels_only else [1, 2, 3]
  reference = keras.layers.LayerNormalization(axis=axis, epsilon=EPSILON, dtype="float64")
  for layer in (ours, reference):
    layer.build([None, *shape[1:]])
  gamma, beta = _random([shape[-1]], 21) + 1.0, _random([shape[-1]], 22)
  ours.gamma.assign(gamma)
  ours.beta.assign(beta)
  # Keras keeps one gamma/beta per normalized element; ours are per channel.
  reference.gamma.assign(tf.broadcast_to(gamma, reference.gamma.shape))
  reference.beta.assign(tf.broadcast_to(beta, reference.beta.shape))
  x = _random(shape, 23, mean=2.0, stddev=3.0)
  upstream = _random(shape, 24)

  def output_and_gradients(layer):
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = layer(x, training=True)
    dx, dgamma, dbeta = tape.gradient(y, [x, layer.gamma, layer.beta], output_gradients=upstream)
    per_channel = lambda grad: tf.reshape(grad, [-1, shape[-1]]).numpy().sum(axis=0)
    return y, dx, per_channel(dgamma), per_channel(dbeta)

  for got, expected in zip(output_and_gradients(ours), output_and_gradients(reference)):
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_layer_norm_statistics_are_per_sample_over_all_features():
  layer = LayerNormalization(epsilon=1e-9, dtype="float64")
  x = _random((3, 4, 4, 2), 25, mean=5.0, stddev=2.0)
  y = layer(x).numpy().reshape(3, -1)
  np.testing.assert_allclose(y.mean(axis=1), 0.0, atol=1e-9)
  np.testing.assert_allclose(y.std(axis=1), 1.0, atol=1e-6)


def test_layer_norm_finite_differences():
  x = _random((2, 3, 2, 3), 26)
  gamma, beta = _random([3], 27) + 1.0, _random([3], 28)
  for axes in ([1, 2, 3], [3]):
    theoretical, numerical = tf.test.compute_gradient(
      lambda x, g, b: layer_norm.layer_norm(x, g, b, EPSILON, axes),
      [x, gamma, beta],
      delta=FD_DELTA,
    )
    for analytic, finite_difference in zip(theoretical, numerical):
      np.testing.assert_allclose(analytic, finite_difference, atol=1e-6)


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16])
def test_layer_norm_half_precision_keeps_float32_parameters(dtype):
  layer = LayerNormalization(dtype=dtype)
  x32 = _random((2, 4, 4, 3), 29, tf.float32, mean=100.0, stddev=5.0)
  y = layer(tf.cast(x32, dtype))
  assert y.dtype == dtype and layer.gamma.dtype == tf.float32
  expected = LayerNormalization()(tf.cast(tf.cast(x32, dtype), tf.float32))
  np.testing.assert_allclose(tf.cast(y, tf.float32), expected, atol=3e-2)


# --------------------------------------------------------------- weight norm


def _unit_norm_columns(v):
  flat = v.numpy().reshape(-1, v.shape[-1])
  return (flat / np.linalg.norm(flat, axis=0)).reshape(v.shape)


def test_weight_norm_effective_kernel_is_g_times_unit_direction():
  layer = WeightNormConv2D(5, 3, dtype="float64")
  layer.build([None, 6, 6, 4])
  layer.g.assign(_random([5], 30))
  np.testing.assert_allclose(
    layer.kernel, layer.g.numpy() * _unit_norm_columns(layer.v), atol=1e-12
  )


@pytest.mark.parametrize("kind", ["conv", "dense"])
def test_weight_norm_with_g_equal_to_norm_is_the_plain_layer(kind):
  if kind == "conv":
    ours, plain = (
      WeightNormConv2D(5, 3, dtype="float64"),
      keras.layers.Conv2D(5, 3, padding="same", dtype="float64"),
    )
    x = _random((2, 6, 6, 4), 31)
  else:
    ours, plain = WeightNormDense(5, dtype="float64"), keras.layers.Dense(5, dtype="float64")
    x = _random((3, 4), 31)
  ours(x)
  plain(x)
  plain.kernel.assign(ours.v)
  bias = _random([5], 32)
  plain.bias.assign(bias)
  ours.bias.assign(bias)
  ours.g.assign(np.linalg.norm(ours.v.numpy().reshape(-1, 5), axis=0))
  np.testing.assert_allclose(ours(x), plain(x), atol=1e-10)


@pytest.mark.parametrize("kind", ["conv", "dense"])
def test_weight_norm_initialize_normalizes_that_batch_and_training_leaves_it(kind):
  layer = WeightNormConv2D(4, 3) if kind == "conv" else WeightNormDense(4)
  shape = (16, 6, 6, 3) if kind == "conv" else (64, 3)
  first = _random(shape, 33, tf.float32, mean=0.5, stddev=2.0)
  layer(first, training=True)
  assert not layer.initialized.numpy(), "calls, training or not, must not initialize"
  np.testing.assert_array_equal(layer.g, np.ones(4))

  layer.initialize(first)
  assert layer.initialized.numpy()
  y = layer(first).numpy().reshape(-1, 4)
  np.testing.assert_allclose(y.mean(axis=0), 0.0, atol=1e-4)
  np.testing.assert_allclose(y.std(axis=0), 1.0, atol=1e-3)

  g_after_init, bias_after_init = layer.g.numpy(), layer.bias.numpy()
  layer(_random(shape, 34, tf.float32, mean=-3.0), training=True)
  np.testing.assert_array_equal(layer.g, g_after_init)
  np.testing.assert_array_equal(layer.bias, bias_after_init)


@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
def test_weight_norm_initialize_in_its_own_tf_function(jit_compile):
  x = _random((8, 6, 6, 3), 35, tf.float32, mean=1.0)
  layer = WeightNormConv2D(4, 3)
  layer.build(x.shape)
  tf.function(layer.initialize, jit_compile=jit_compile)(x)
  assert layer.initialized.numpy()
  np.testing.assert_allclose(tf.math.reduce_std(layer(x), [0, 1, 2]), 1.0, atol=1e-3)


def test_weight_norm_finite_differences():
  v, g = _random((3, 3, 2, 4), 36), _random([4], 37)
  theoretical, numerical = tf.test.compute_gradient(
    weight_norm.weight_norm_kernel, [v, g], delta=FD_DELTA
  )
  for analytic, finite_difference in zip(theoretical, numerical):
    np.testing.assert_allclose(analytic, finite_difference, atol=1e-6)

  layer = WeightNormConv2D(2, 3, dtype="float64")
  x = _random((2, 4, 4, 2), 38)
  layer(x, training=True)
  theoretical, numerical = tf.test.compute_gradient(lambda x: layer(x), [x], delta=FD_DELTA)
  np.testing.assert_allclose(theoretical[0], numerical[0], atol=1e-6)


def _data_dependent_g(layer, x):
  unit_kernel = weight_norm.weight_norm_kernel(layer.v, tf.ones([layer.units]))
  return weight_norm.data_dependent_init(tf.matmul(x, unit_kernel), layer.init_epsilon)[0]


def test_weight_norm_init_under_mirrored_strategy(two_cpu_strategy):
  strategy = two_cpu_strategy
  with strategy.scope():
    layer = WeightNormDense(3)
    layer.build([None, 4])
  x = _random((16, 4), 39, tf.float32, mean=2.0)
  layer.initialize(x)  # cross-replica context: every copy gets the global batch's values
  assert bool(layer.initialized.read_value())
  g_values = [g.numpy() for g in strategy.experimental_local_results(layer.g)]
  np.testing.assert_array_equal(g_values[0], g_values[1])
  np.testing.assert_allclose(g_values[0], _data_dependent_g(layer, x), rtol=1e-5)

  @tf.function
  def train_step(x):
    def replica_step(x):
      with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x, training=True))
      return tape.gradient(loss, layer.g)

    return strategy.run(replica_step, args=(x,))

  train_step(x + 1.0)
  np.testing.assert_array_equal(strategy.experimental_local_results(layer.g)[0], g_values[0])


# ----------------------------------------------------------- mixed precision


@pytest.mark.parametrize(
  "make_layer",
  [
    lambda policy: BatchNormalization(dtype=policy),
    lambda policy: LayerNormalization(dtype=policy),
    lambda policy: WeightNormConv2D(
      4, 3, kernel_initializer=keras.initializers.Constant(0.1), dtype=policy
    ),
  ],
  ids=["batch", "layer", "weight"],
)
def test_mixed_float16_policy_computes_in_float16_and_keeps_float32_state(make_layer):
  x = _random((8, 5, 5, 4), 41, tf.float32, mean=1.0, stddev=2.0)
  mixed, full = make_layer("mixed_float16"), make_layer("float32")
  for layer, compute_dtype in ((mixed, tf.float16), (full, tf.float32)):
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = layer(x, training=True)
      loss = tf.reduce_sum(tf.cast(y, tf.float32) ** 2)
    assert y.dtype == compute_dtype
    assert all(np.all(np.isfinite(g)) for g in tape.gradient(loss, [x, *layer.weights[:2]]))
  for mixed_weight, full_weight in zip(mixed.weights, full.weights):
    assert mixed_weight.dtype == full_weight.dtype
    np.testing.assert_allclose(mixed_weight.numpy(), full_weight.numpy(), rtol=1e-2, atol=1e-2)
  np.testing.assert_allclose(
    tf.cast(mixed(x, training=False), tf.float32), full(x, training=False), atol=5e-2
  )
