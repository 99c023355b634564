"""The fused per-channel CPU kernels: same results as the stock ops, gradients, errors, build and fallback."""

import logging
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from trainer.layers import build_channel_ops
from trainer.layers import channel_passes

# Rows: fewer than one summation block, several blocks with a ragged end, none.
SHAPES = [(5, 7, 3), (2, 150, 130), (1, 1), (0, 4)]


@pytest.fixture(scope="module")
def ops():
  library = channel_passes.kernels()
  assert library is not None, f"kernel library not built: run {channel_passes.BUILD_COMMAND}"
  return library


def _random(shape, seed, dtype=tf.float64, mean=0.0):
  return tf.constant(np.random.default_rng(seed).normal(mean, 1.0, shape), dtype=dtype)


def _channel_vector(shape, seed, dtype=tf.float64):
  return _random(shape[-1:], seed, dtype)


def _numpy_channel_sum(x):
  return np.asarray(x, np.float64).reshape(-1, x.shape[-1]).sum(axis=0)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [tf.float64, tf.float32])
def test_kernels_compute_the_stock_formulas(ops, shape, dtype):
  tolerance = dict(rtol=1e-12, atol=1e-12) if dtype == tf.float64 else dict(rtol=1e-5, atol=1e-4)
  a, b = _random(shape, 1, dtype), _random(shape, 2, dtype)
  a_scale, b_scale, offset = (_channel_vector(shape, seed, dtype) for seed in (3, 4, 5))

  sum_a, sum_ab = ops.fmnist_channel_sum_and_dot(a, b)
  np.testing.assert_allclose(sum_a, _numpy_channel_sum(a), **tolerance)
  np.testing.assert_allclose(sum_ab, _numpy_channel_sum(a * b), **tolerance)
  np.testing.assert_allclose(
    ops.fmnist_channel_affine(a, a_scale, offset), a * a_scale + offset, **tolerance
  )
  np.testing.assert_allclose(
    ops.fmnist_channel_linear_combination(a, b, a_scale, b_scale, offset),
    a * a_scale + b * b_scale + offset,
    **tolerance,
  )


def test_float32_sums_stay_accurate_over_a_full_batch_of_feature_maps(ops):
  # Large offsets are where a running float32 sum over 50k rows loses digits.
  x = _random([64, 28, 28, 32], 6, tf.float32, mean=100.0)
  sum_x, sum_squares = ops.fmnist_channel_sum_and_dot(x, x)
  np.testing.assert_allclose(sum_x, _numpy_channel_sum(x), rtol=1e-6)
  np.testing.assert_allclose(
    sum_squares, _numpy_channel_sum(np.square(x, dtype=np.float64)), rtol=1e-6
  )


@pytest.mark.parametrize(
  "op_name, make_inputs",
  [
    ("fmnist_channel_sum_and_dot", lambda s: [_random(s, 1), _random(s, 2)]),
    ("fmnist_channel_affine", lambda s: [_random(s, 1), _random(s[-1:], 3), _random(s[-1:], 4)]),
    (
      "fmnist_channel_linear_combination",
      lambda s: [_random(s, 1), _random(s, 2), *(_random(s[-1:], seed) for seed in (3, 4, 5))],
    ),
  ],
)
def test_kernel_gradients_match_finite_differences(ops, op_name, make_inputs):
  op = getattr(ops, op_name)
  inputs = make_inputs((3, 2, 4))
  weights = [_random(output.shape, 10 + i) for i, output in enumerate(tf.nest.flatten(op(*inputs)))]

  def weighted_outputs(*args):
    return sum(tf.reduce_sum(w * out) for w, out in zip(weights, tf.nest.flatten(op(*args))))

  theoretical, numerical = tf.test.compute_gradient(weighted_outputs, inputs, delta=1e-6)
  for analytic, finite_difference in zip(theoretical, numerical):
    np.testing.assert_allclose(analytic, finite_difference, atol=1e-7)


def test_sum_of_squares_gradient_counts_both_factors(ops):
  x = _random([4, 3], 1)
  with tf.GradientTape() as tape:
    tape.watch(x)
    _, sum_squares = ops.fmnist_channel_sum_and_dot(x, x)
  np.testing.assert_allclose(tape.gradient(sum_squares, x), 2 * x)


def test_mismatched_inputs_name_the_offending_input(ops):
  x = tf.ones([4, 3])
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"offset must have shape \[3\]"):
    ops.fmnist_channel_affine(x, tf.ones([3]), tf.ones([4]))
  with pytest.raises(
    tf.errors.InvalidArgumentError, match=r"b has shape \[4,4\], expected \[4,3\]"
  ):
    ops.fmnist_channel_linear_combination(x, tf.ones([4, 4]), *[tf.ones([3])] * 3)


def test_passes_choose_kernels_only_where_they_apply(ops):
  x = tf.ones([4, 3])
  assert channel_passes.uses_kernels(x)
  assert not channel_passes.uses_kernels(tf.ones([4, 3], tf.float16))
  with channel_passes.stock_ops():
    assert not channel_passes.uses_kernels(x)
  assert channel_passes.uses_kernels(x)

  @tf.function(jit_compile=True)
  def under_xla(x):
    assert not channel_passes.uses_kernels(x)
    return channel_passes.channel_affine(x, tf.ones([3]), tf.zeros([3]))

  np.testing.assert_array_equal(under_xla(x), x)


def test_missing_library_falls_back_to_stock_ops_and_says_how_to_build(monkeypatch, caplog):
  monkeypatch.setattr(channel_passes, "LIBRARY_PATH", pathlib.Path("/nonexistent/_channel_ops.so"))
  channel_passes.kernels.cache_clear()
  try:
    with caplog.at_level(logging.WARNING):
      x = _random([5, 3], 1)
      assert not channel_passes.uses_kernels(x)
      y = channel_passes.channel_affine(x, tf.ones([3], tf.float64), tf.ones([3], tf.float64))
    np.testing.assert_allclose(y, x + 1.0)
    assert channel_passes.BUILD_COMMAND in caplog.text
  finally:
    channel_passes.kernels.cache_clear()


def test_build_writes_a_library_that_plain_tensorflow_loads(tmp_path):
  output = tmp_path / "_channel_ops.so"
  build_channel_ops.build(output)
  assert os.listdir(tmp_path) == ["_channel_ops.so"]  # no temporary left behind
  # A fresh interpreter: this one registered the ops already when it loaded the project's copy.
  script = (
    "import sys, tensorflow as tf\n"
    "ops = tf.load_op_library(sys.argv[1])\n"
    "print(ops.fmnist_channel_affine([[1.0, 2.0]], [3.0, 4.0], [0.5, 0.5]).numpy().tolist())\n"
  )
  result = subprocess.run(
    [sys.executable, "-c", script, str(output)], capture_output=True, text=True, timeout=300
  )
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip().splitlines()[-1] == "[[3.5, 8.5]]"


def test_build_without_a_compiler_fails_clearly_and_writes_nothing(tmp_path, monkeypatch):
  monkeypatch.setenv("CXX", "no-such-compiler")
  with pytest.raises(RuntimeError, match="No C\\+\\+ compiler 'no-such-compiler'"):
    build_channel_ops.build(tmp_path / "_channel_ops.so")
  assert os.listdir(tmp_path) == []
