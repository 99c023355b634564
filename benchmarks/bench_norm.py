"""Training throughput of every normalization variant, measured the way the Trainer trains.

Each variant and precision gets the Trainer's own model, optimizer and
ClassifierTask (trainer.task.build_model_and_optimizer, the default network
of TrainingConfig, jit_compile and precision chosen for this machine as
run_fn chooses them), and is timed through ClassifierTask.train: many steps
inside one tf.function call, as trainer.loop.fit runs them. The data are
synthetic Fashion-MNIST-shaped batches repeated from memory, so input
parsing is not measured.

All of them run in one process, interleaved round by round, so that load from
other processes hits them alike. Ratios are taken within each round and the
tables report their median and interquartile range across rounds: on a shared
host the machine's speed drifts more between rounds than within one.

    .venv/bin/python benchmarks/bench_norm.py
"""

import argparse
import statistics
import time

import trainer  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
import tensorflow as tf

from trainer import loop
from trainer.config import AUTO
from trainer.config import FLOAT32
from trainer.config import TrainingConfig
from trainer.devices import Hardware
from trainer.devices import keras_policy
from trainer.devices import use_jit_compile
from trainer.model import VARIANTS
from trainer.task import build_model_and_optimizer

KERAS_COUNTERPART = {"batch": "keras_batch", "layer": "keras_layer"}
DISTINCT_BATCHES = 16


def _dataset(batch_size: int) -> tf.data.Dataset:
  count = batch_size * DISTINCT_BATCHES
  images = tf.random.stateless_uniform([count, 28, 28, 1], seed=[1, 2])
  labels = tf.random.stateless_uniform([count], seed=[3, 4], maxval=10, dtype=tf.int64)
  data = tf.data.Dataset.from_tensor_slices((images, labels)).repeat()
  return data.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


class Trainer:
  """One variant at one precision, set up as run_fn sets it up."""

  def __init__(self, variant: str, precision: str, batch_size: int, hardware: Hardware):
    config = TrainingConfig(variant=variant, precision=precision, batch_size=batch_size)
    strategy = tf.distribute.get_strategy()
    model, optimizer = build_model_and_optimizer(config, strategy, 10**6, hardware)
    self.policy = model.dtype_policy.name
    self.task = loop.ClassifierTask(
      model, optimizer, strategy, use_jit_compile(config.jit_compile, hardware)
    )
    dataset = _dataset(batch_size)
    self.task.initialize(dataset)
    self.iterator = iter(strategy.experimental_distribute_dataset(dataset))
    self.batch_size = batch_size

  def images_per_second(self, steps: int) -> float:
    start = time.perf_counter()
    self.task.train(self.iterator, tf.constant(steps))
    self.task.train_metrics.result()  # waits for the last step
    return steps * self.batch_size / (time.perf_counter() - start)


def _median_and_quartiles(values) -> str:
  quartiles = statistics.quantiles(values, n=4)
  return f"{statistics.median(values):.2f}x ({quartiles[0]:.2f}-{quartiles[2]:.2f})"


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch-size", type=int, default=TrainingConfig.batch_size)
  parser.add_argument("--steps", type=int, default=50, help="steps per call, i.e. per round")
  parser.add_argument("--rounds", type=int, default=8)
  parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
  parser.add_argument("--precisions", nargs="+", default=[FLOAT32, AUTO])
  args = parser.parse_args()
  if args.rounds < 2:
    parser.error("--rounds must be at least 2: ratios are reported with their spread")

  hardware = Hardware.detect()
  variants = list(dict.fromkeys(["none", *args.variants]))
  trainers = {}
  for precision in args.precisions:
    for variant in variants:
      trainers[precision, variant] = Trainer(variant, precision, args.batch_size, hardware)
      trainers[precision, variant].images_per_second(5)  # trace, warm caches
  rates = {key: [] for key in trainers}
  for _ in range(args.rounds):
    for key, trainer_ in trainers.items():
      rates[key].append(trainer_.images_per_second(args.steps))

  def per_round(key, reference):
    return [a / b for a, b in zip(rates[key], rates[reference])]

  print(
    f"batch {args.batch_size}, {args.rounds} rounds x {args.steps} steps per call, "
    f"default network (TrainingConfig), jit_compile {TrainingConfig.jit_compile} -> "
    f"{use_jit_compile(TrainingConfig.jit_compile, hardware)}"
  )
  for precision in args.precisions:
    print(f"\nprecision {precision} (policy {keras_policy(precision, hardware)})")
    print("| variant | images/s | vs `none` | vs Keras built-in |")
    print("| --- | ---: | --- | --- |")
    for variant in variants:
      key = (precision, variant)
      counterpart = KERAS_COUNTERPART.get(variant)
      vs_keras = (
        _median_and_quartiles(per_round(key, (precision, counterpart)))
        if counterpart in variants
        else ""
      )
      vs_none = _median_and_quartiles(per_round(key, (precision, "none")))
      print(f"| {variant} | {statistics.median(rates[key]):.0f} | {vs_none} | {vs_keras} |")

  if len(args.precisions) > 1:
    baseline, *others = args.precisions
    for precision in others:
      print(f"\n{precision} against {baseline}, same variant (speed-up):")
      print("| variant | speed-up |")
      print("| --- | --- |")
      for variant in variants:
        speedup = per_round((precision, variant), (baseline, variant))
        print(f"| {variant} | {_median_and_quartiles(speedup)} |")
      # The variants' Trainers one after another: time of all of them, per round.
      together = [
        sum(args.steps * args.batch_size / rates[baseline, v][r] for v in variants)
        / sum(args.steps * args.batch_size / rates[precision, v][r] for v in variants)
        for r in range(args.rounds)
      ]
      print(f"| all {len(variants)} together | {_median_and_quartiles(together)} |")


if __name__ == "__main__":
  main()
