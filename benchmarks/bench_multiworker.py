"""What distribution costs: time per training step of one worker against two on loopback.

Each configuration runs as its own processes, the way a multi-worker Trainer runs: one process
with no TF_CONFIG (the strategy one machine uses today), then two processes on 127.0.0.1 with
the TF_CONFIG a Vertex AI job of two machines sets (a chief and a worker), so trainer.devices
picks MultiWorkerMirroredStrategy. Every worker trains the Trainer's model, optimizer and
ClassifierTask (built by trainer.task.build_model_and_optimizer) on the same per-worker batch,
so the two-worker step does the one-worker step's work on each worker plus the all-reduce of
the gradients; their ratio is what the all-reduce and the steps' synchronization cost for this
network. Each process gets `--threads` CPU threads, so on a small machine the workers do not
take each other's cores (on a cluster each has its own machine); the loopback network is faster
than any real one, so the ratio is a lower bound of what a cluster pays.

The data are synthetic Fashion-MNIST-shaped batches held in memory (input parsing is not
measured), sharded as the loop shards them (ClassifierTask.distribute). After a warm-up call,
each worker times `--rounds` calls of ClassifierTask.train, `--steps` steps each; the chief
reports the median time per step and its interquartile range.

    .venv/bin/python benchmarks/bench_multiworker.py
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DISTINCT_BATCHES = 16
RESULT_PREFIX = 'RESULT '
TIMEOUT_SECONDS = 600


def _free_port() -> int:
  with socket.socket() as probe:
    probe.bind(('127.0.0.1', 0))
    return probe.getsockname()[1]


def _tf_configs(workers: int):
  """TF_CONFIG of each process, as Vertex AI sets it: pool 0 is the chief, pool 1 the workers;
  none for one worker."""
  if workers == 1:
    return [None]
  cluster = {
    'chief': [f'127.0.0.1:{_free_port()}'],
    'worker': [f'127.0.0.1:{_free_port()}' for _ in range(workers - 1)],
  }
  tasks = [('chief', 0)] + [('worker', index) for index in range(workers - 1)]
  return [
    json.dumps({'cluster': cluster, 'task': {'type': kind, 'index': index}})
    for kind, index in tasks
  ]


def _run_workers(workers: int, args: argparse.Namespace) -> list:
  """Starts the processes of one configuration and returns the chief's seconds per step."""
  worker_args = [
    f'--variant={args.variant}',
    f'--batch-size={args.batch_size}',
    f'--steps={args.steps}',
    f'--rounds={args.rounds}',
    f'--threads={args.threads}',
  ]
  processes = []
  for tf_config in _tf_configs(workers):
    env = {**os.environ, 'PYTHONPATH': ROOT}
    env.pop('TF_CONFIG', None)
    if tf_config:
      env['TF_CONFIG'] = tf_config
    processes.append(
      subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), '--worker', *worker_args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
      )
    )
  try:
    outputs = [process.communicate(timeout=TIMEOUT_SECONDS) for process in processes]
  finally:
    for process in processes:
      process.kill()
  for process, (_, err) in zip(processes, outputs):
    if process.returncode != 0:
      raise SystemExit(f'a worker of {workers} failed:\n{err[-3000:]}')
  (line,) = [line for line in outputs[0][0].splitlines() if line.startswith(RESULT_PREFIX)]
  return json.loads(line[len(RESULT_PREFIX) :])


def _worker(args: argparse.Namespace) -> None:
  """One process: builds the Trainer's model under the strategy TF_CONFIG implies and times it."""
  import trainer  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  tf.config.threading.set_intra_op_parallelism_threads(args.threads)
  tf.config.threading.set_inter_op_parallelism_threads(args.threads)
  from trainer import loop  # pylint: disable=import-outside-toplevel
  from trainer.config import TrainingConfig  # pylint: disable=import-outside-toplevel
  from trainer.devices import Hardware  # pylint: disable=import-outside-toplevel
  from trainer.devices import distribution_strategy  # pylint: disable=import-outside-toplevel
  from trainer.devices import use_jit_compile  # pylint: disable=import-outside-toplevel
  from trainer.task import build_model_and_optimizer  # pylint: disable=import-outside-toplevel

  strategy = distribution_strategy()
  hardware = Hardware.detect()
  config = TrainingConfig(variant=args.variant, batch_size=args.batch_size)
  model, optimizer = build_model_and_optimizer(config, strategy, 10**6, hardware)
  task = loop.ClassifierTask(
    model, optimizer, strategy, use_jit_compile(config.jit_compile, hardware)
  )
  global_batch = args.batch_size * strategy.num_replicas_in_sync
  count = global_batch * DISTINCT_BATCHES
  images = tf.random.stateless_uniform([count, 28, 28, 1], seed=[1, 2])
  labels = tf.random.stateless_uniform([count], seed=[3, 4], maxval=10, dtype=tf.int64)
  dataset = (
    tf.data.Dataset.from_tensor_slices((images, labels))
    .repeat()
    .batch(global_batch, drop_remainder=True)
    .prefetch(tf.data.AUTOTUNE)
  )
  task.initialize(dataset)
  iterator = iter(task.distribute(dataset))

  def seconds_per_step() -> float:
    start = time.perf_counter()
    task.train(iterator, tf.constant(args.steps))
    task.optimizer.iterations.numpy()  # waits for the last step
    return (time.perf_counter() - start) / args.steps

  seconds_per_step()  # traces the step and sets up the collectives
  timings = [seconds_per_step() for _ in range(args.rounds)]
  print(RESULT_PREFIX + json.dumps(timings), flush=True)


def _summary(seconds) -> str:
  quartiles = statistics.quantiles(seconds, n=4)
  return (
    f'{1e3 * statistics.median(seconds):7.2f} ms ({1e3 * quartiles[0]:.2f}-{1e3 * quartiles[2]:.2f})'
  )


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--variant', default='batch')
  parser.add_argument('--batch-size', type=int, default=64, help='per worker')
  parser.add_argument('--steps', type=int, default=20, help='steps per timed call')
  parser.add_argument('--rounds', type=int, default=5, help='timed calls per configuration')
  parser.add_argument('--threads', type=int, default=1, help='CPU threads per worker process')
  parser.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    _worker(args)
    return
  print(
    f'variant {args.variant}, {args.batch_size} images per worker and step, {args.threads} '
    f'thread(s) per worker, {args.rounds} x {args.steps} timed steps after a warm-up call'
  )
  timings = {workers: _run_workers(workers, args) for workers in (1, 2)}
  one = statistics.median(timings[1])
  print(f'{"workers":>7}  {"time per step, median (IQR)":<32} {"images/s":>9}  vs 1 worker')
  for workers, seconds in timings.items():
    median = statistics.median(seconds)
    print(
      f'{workers:>7}  {_summary(seconds):<32} {workers * args.batch_size / median:9.0f}  '
      f'{median / one:.2f}x the step time'
    )


if __name__ == '__main__':
  main()
