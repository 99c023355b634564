"""Each per-channel pass of the normalization layers: the fused CPU kernel against its stock-op form.

Both forms of a pass run on the same 64x28x28x32 float32 activations (the
notebook's conv output at batch 64) inside one tf.function, interleaved over
rounds; the table gives the median time per pass and the median and
interquartile range of the per-round ratio stock / fused.

    PYTHONPATH=. python benchmarks/bench_channel_passes.py
"""

import argparse
import statistics
import time

import trainer  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
import tensorflow as tf

from trainer.layers import channel_passes

SHAPE = [64, 28, 28, 32]
PASSES = {
  "sum and sum of squares": lambda a, b, s, t, o: channel_passes.channel_sum_and_sum_of_squares(a),
  "sum and dot product": lambda a, b, s, t, o: channel_passes.channel_sum_and_dot(a, b),
  "scale and shift": lambda a, b, s, t, o: channel_passes.channel_affine(a, s, o),
  "linear combination": lambda a, b, s, t, o: channel_passes.channel_linear_combination(
    a, b, s, t, o
  ),
}


def make_runner(apply_pass, repeats, stock):
  """A tf.function applying the pass `repeats` times to distinct inputs, traced in the chosen form."""
  inputs = [
    [tf.Variable(tf.random.stateless_normal(SHAPE, seed=[i, j])) for j in range(2)]
    for i in range(repeats)
  ]
  vectors = [tf.Variable(tf.random.stateless_normal(SHAPE[-1:], seed=[99, k])) for k in range(3)]

  @tf.function
  def run():
    checksum = tf.zeros([])
    for a, b in inputs:
      outputs = apply_pass(a.read_value(), b.read_value(), *(v.read_value() for v in vectors))
      checksum += sum(tf.reshape(out, [-1])[0] for out in tf.nest.flatten(outputs))
    return checksum

  with channel_passes.stock_ops(stock):
    run.get_concrete_function()
  return run


def seconds_per_pass(run, calls, repeats):
  start = time.perf_counter()
  for _ in range(calls):
    run().numpy()
  return (time.perf_counter() - start) / (calls * repeats)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=15)
  parser.add_argument("--calls", type=int, default=5, help="calls per timed round")
  parser.add_argument("--repeats", type=int, default=8, help="passes per call")
  args = parser.parse_args()
  if args.rounds < 2:
    parser.error("--rounds must be at least 2: ratios are reported with their spread")
  if channel_passes.kernels() is None:
    parser.error(f"the kernel library is not built: run {channel_passes.BUILD_COMMAND}")

  runners = {
    (name, stock): make_runner(apply_pass, args.repeats, stock)
    for name, apply_pass in PASSES.items()
    for stock in (False, True)
  }
  for run in runners.values():
    run()  # warm caches and allocator
  times = {key: [] for key in runners}
  for _ in range(args.rounds):
    for key, run in runners.items():
      times[key].append(seconds_per_pass(run, args.calls, args.repeats))

  print(f"{SHAPE} float32, {args.rounds} rounds x {args.calls} calls x {args.repeats} passes")
  print(f"| {'pass':<23}| {'fused ms':>8} | {'stock ms':>8} | {'stock / fused (IQR)':>19} |")
  print(f"|{'-' * 24}|{'-' * 10}|{'-' * 10}|{'-' * 21}|")
  for name in PASSES:
    fused, stock = times[(name, False)], times[(name, True)]
    per_round = [s / f for s, f in zip(stock, fused)]
    quartiles = statistics.quantiles(per_round, n=4)
    speedup = f"{statistics.median(per_round):.2f}x ({quartiles[0]:.2f}-{quartiles[2]:.2f})"
    print(
      f"| {name:<23}| {statistics.median(fused) * 1e3:>8.2f} | "
      f"{statistics.median(stock) * 1e3:>8.2f} | {speedup:>19} |"
    )


if __name__ == "__main__":
  main()
