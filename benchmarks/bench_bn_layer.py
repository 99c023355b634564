"""Where our batch norm's time goes: its forward and backward pass alone, against Keras' fused kernel.

For each feature-map shape batch norm sees in the default network (block 1:
64x28x28x32, block 2: 64x14x14x64) and each compute dtype (float32, and the
bfloat16 that `auto` picks on this CPU), this times one training-mode forward
pass and its backward pass (given an upstream gradient, as the ReLU after the
layer hands it over) of trainer.layers.batch_norm.batch_norm_training and of
tf.compat.v1.nn.fused_batch_norm (the kernel keras BatchNormalization runs),
many times inside one tf.function call, the two interleaved round by round.
It prints the median time per pass pair and the median ratio with its
interquartile range, then the op-level profile of one pass pair of ours:
milliseconds per op type, from TensorFlow's step statistics (ops running
concurrently on the two cores each count their own wall time).

    .venv/bin/python benchmarks/bench_bn_layer.py
"""

import argparse
import collections
import statistics
import time

import trainer  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
import numpy as np
import tensorflow as tf

from trainer.layers import batch_norm

EPSILON = 1e-3
SHAPES = ((64, 28, 28, 32), (64, 14, 14, 64))


def ours(x, gamma, beta):
  return batch_norm.batch_norm_training(x, gamma, beta, EPSILON)[0]


def keras_fused(x, gamma, beta):
  return tf.compat.v1.nn.fused_batch_norm(x, gamma, beta, epsilon=EPSILON, is_training=True)[0]


IMPLEMENTATIONS = {'ours': ours, 'keras_fused': keras_fused}


def _inputs(shape, dtype):
  rng = np.random.default_rng(0)
  x = tf.constant(rng.normal(0.3, 1.0, shape), dtype)
  upstream = tf.constant(rng.normal(0.0, 1.0, shape), dtype)
  gamma = tf.Variable(tf.ones([shape[-1]]))
  beta = tf.Variable(tf.zeros([shape[-1]]))
  return x, upstream, gamma, beta


def forward_backward(fn, x, upstream, gamma, beta):
  with tf.GradientTape() as tape:
    tape.watch(x)
    y = fn(x, gamma, beta)
  return tape.gradient(y, [x, gamma, beta], output_gradients=upstream)


def timed_loop(fn, shape, dtype, steps):
  x, upstream, gamma, beta = _inputs(shape, dtype)

  @tf.function
  def run():
    total = tf.zeros([shape[-1]])
    for _ in tf.range(steps):
      dx, dgamma, dbeta = forward_backward(fn, x, upstream, gamma, beta)
      # Every output is consumed, so no pass is pruned away.
      total += dgamma + dbeta + tf.cast(dx[0, 0, 0], tf.float32)
    return total

  run()  # trace
  return run


def op_profile(fn, shape, dtype, repeats: int = 5) -> collections.Counter:
  """Milliseconds per op type of one forward + backward pass, averaged over `repeats` traced runs."""
  graph = tf.Graph()
  with graph.as_default():
    x = tf.compat.v1.placeholder(dtype, shape)
    upstream = tf.compat.v1.placeholder(dtype, shape)
    gamma = tf.compat.v1.placeholder(tf.float32, shape[-1:])
    beta = tf.compat.v1.placeholder(tf.float32, shape[-1:])
    y = fn(x, gamma, beta)
    fetches = tf.gradients(y, [x, gamma, beta], grad_ys=upstream)
    rng = np.random.default_rng(0)
    feed = {
      x: rng.normal(0.3, 1.0, shape).astype(dtype.as_numpy_dtype),
      upstream: rng.normal(0.0, 1.0, shape).astype(dtype.as_numpy_dtype),
      gamma: np.ones(shape[-1:], np.float32),
      beta: np.zeros(shape[-1:], np.float32),
    }
    milliseconds = collections.Counter()
    with tf.compat.v1.Session(graph=graph) as session:
      session.run(fetches, feed)
      for _ in range(repeats):
        metadata = tf.compat.v1.RunMetadata()
        options = tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
        session.run(fetches, feed, options=options, run_metadata=metadata)
        for device in metadata.step_stats.dev_stats:
          for node in device.node_stats:
            op_type = node.timeline_label.split('(')[0].split('=')[-1].strip()
            if op_type and not node.node_name.startswith('_'):
              milliseconds[op_type] += node.all_end_rel_micros / 1000 / repeats
  return milliseconds


def _quartiles(values) -> str:
  low, _, high = statistics.quantiles(values, n=4)
  return f'{statistics.median(values):.2f}x ({low:.2f}-{high:.2f})'


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--steps', type=int, default=30, help='pass pairs per call, i.e. per round')
  parser.add_argument('--rounds', type=int, default=10)
  args = parser.parse_args()
  if args.rounds < 2:
    parser.error('--rounds must be at least 2: ratios are reported with their spread')
  for dtype in (tf.float32, tf.bfloat16):
    for shape in SHAPES:
      runs = {
        name: timed_loop(fn, shape, dtype, args.steps) for name, fn in IMPLEMENTATIONS.items()
      }
      milliseconds = {name: [] for name in runs}
      for _ in range(args.rounds):
        for name, run in runs.items():
          start = time.perf_counter()
          run().numpy()
          milliseconds[name].append((time.perf_counter() - start) / args.steps * 1000)
      ratio = [a / b for a, b in zip(milliseconds['ours'], milliseconds['keras_fused'])]
      print(
        f'{dtype.name} {"x".join(map(str, shape))}: ours '
        f'{statistics.median(milliseconds["ours"]):.2f} ms, Keras fused '
        f'{statistics.median(milliseconds["keras_fused"]):.2f} ms per forward + backward; '
        f'ours takes {_quartiles(ratio)} the time',
        flush=True,
      )
  for dtype in (tf.float32, tf.bfloat16):
    profile = op_profile(ours, SHAPES[0], dtype)
    print(f'\nours, {dtype.name} {"x".join(map(str, SHAPES[0]))}, ms per op type:')
    for op_type, ms in profile.most_common():
      if ms >= 0.05:
        print(f'  {ms:6.2f}  {op_type}')


if __name__ == '__main__':
  main()
