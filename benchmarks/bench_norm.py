"""Training throughput of every normalization variant, measured side by side.

Each variant gets its own model and optimizer and a tf.function training step
on synthetic Fashion-MNIST-shaped data. Variants are timed in interleaved
rounds so that load from other processes hits all of them alike. Ratios are
taken within each round, between steps timed seconds apart, and the table
reports their median and interquartile range across rounds: on a shared host
the machine's speed drifts more between rounds than within one.

    PYTHONPATH=. python benchmarks/bench_norm.py
"""

import argparse
import statistics
import time

import trainer  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
import tensorflow as tf
import tf_keras as keras

from trainer.layers import channel_passes
from trainer.model import VARIANTS, build_model

KERAS_COUNTERPART = {"batch": "keras_batch", "layer": "keras_layer"}
STOCK_OPS_SUFFIX = ", stock ops"


def make_train_step(model, jit_compile):
  optimizer = keras.optimizers.Adam()
  loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

  @tf.function(jit_compile=jit_compile)
  def train_step(images, labels):
    with tf.GradientTape() as tape:
      loss = loss_fn(labels, model(images, training=True))
    gradients = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(gradients, model.trainable_variables))
    return loss

  return train_step


def time_steps(train_step, images, labels, steps):
  start = time.perf_counter()
  for _ in range(steps):
    loss = train_step(images, labels)
  loss.numpy()  # steps run asynchronously; wait for the last one
  return steps * images.shape[0] / (time.perf_counter() - start)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch-size", type=int, default=64)
  parser.add_argument("--steps", type=int, default=20, help="steps per timed round")
  parser.add_argument("--rounds", type=int, default=15)
  parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
  parser.add_argument("--filters", type=int, default=32)
  parser.add_argument("--conv-blocks", type=int, default=1)
  parser.add_argument(
    "--threads",
    type=int,
    default=0,
    help="intra- and inter-op threads (0: TensorFlow's default, all cores)",
  )
  parser.add_argument(
    "--jit-compile",
    action="store_true",
    help="XLA-compile the training steps (often slower on CPU)",
  )
  args = parser.parse_args()
  if args.rounds < 2:
    parser.error("--rounds must be at least 2: ratios are reported with their spread")
  tf.config.threading.set_intra_op_parallelism_threads(args.threads)
  tf.config.threading.set_inter_op_parallelism_threads(args.threads)

  rows = list(dict.fromkeys(["none", *args.variants]))
  if channel_passes.kernels() is not None and not args.jit_compile:
    # What the fused kernels buy: our layers again, traced on stock TensorFlow ops.
    rows += [variant + STOCK_OPS_SUFFIX for variant in KERAS_COUNTERPART if variant in rows]
  images = tf.random.stateless_uniform([args.batch_size, 28, 28, 1], seed=[1, 2])
  labels = tf.random.stateless_uniform([args.batch_size], seed=[3, 4], maxval=10, dtype=tf.int32)

  steps = {}
  for row in rows:
    variant = row.removesuffix(STOCK_OPS_SUFFIX)
    model = build_model(variant, filters=args.filters, conv_blocks=args.conv_blocks, seed=0)
    steps[row] = make_train_step(model, args.jit_compile)
    with channel_passes.stock_ops(row != variant):
      time_steps(steps[row], images, labels, 5)  # trace, compile, warm caches

  rates = {row: [] for row in rows}
  for _ in range(args.rounds):
    for row in rows:
      rates[row].append(time_steps(steps[row], images, labels, args.steps))
  median = {row: statistics.median(r) for row, r in rates.items()}

  def ratio(variant, reference):
    per_round = [a / b for a, b in zip(rates[variant], rates[reference])]
    quartiles = statistics.quantiles(per_round, n=4)
    return f"{statistics.median(per_round):.2f}x ({quartiles[0]:.2f}-{quartiles[2]:.2f})"

  print(
    f"batch {args.batch_size}, {args.rounds} rounds x {args.steps} steps, "
    f"jit_compile={args.jit_compile}, filters={args.filters}, "
    f"conv_blocks={args.conv_blocks}, threads={args.threads or 'default'}"
  )
  print(f"| {'variant':<19}| {'images/s':>9} | {'vs none (IQR)':>18} | {'vs Keras (IQR)':>18} |")
  print(f"|{'-' * 20}|{'-' * 11}|{'-' * 20}|{'-' * 20}|")
  for row in rows:
    counterpart = KERAS_COUNTERPART.get(row.removesuffix(STOCK_OPS_SUFFIX))
    vs_keras = ratio(row, counterpart) if counterpart in median else ""
    print(f"| {row:<19}| {median[row]:>9.0f} | {ratio(row, 'none'):>18} | {vs_keras:>18} |")


if __name__ == "__main__":
  main()
