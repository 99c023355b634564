"""What running the local Beam steps on every core buys: the pipeline's ExampleGen, StatisticsGen
and Transform, and one Evaluator's TFMA, with one in-process worker and with N worker processes
(`fmnist-pipeline run --beam-workers`), taking turns in one process.

Each round runs, once per worker count in rotating order: the data steps as LocalDagRunner runs
them (a partial run up to Transform in a fresh output root, so nothing is cached; each step's
time is its MLMD execution's, as the run summary shows it), then TFMA with the pipeline's
EvalConfig (intervals, ECE) on the eval split of that run, on one exported model (an untrained
CNN with the Transform graph: TFMA's work per example does not depend on the weights). Reported
per step: the median seconds over rounds and the median of the per-round ratios.

  .venv/bin/python -m benchmarks.bench_beam_workers [--rounds 3] [--workers N] [--data-only]
      [--data-dir /usr/share/datasets/fashion-mnist]
"""

import argparse
import os
import statistics
import tempfile
import time
from typing import Dict, List

import trainer  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from apache_beam.options.pipeline_options import PipelineOptions
import numpy as np
import tensorflow_model_analysis as tfma
from tfx import v1 as tfx
from tfx.orchestration import pipeline as tfx_pipeline

from pipeline import local_runner
from pipeline.config import PipelineConfig
from pipeline.config import default_data_dir
from pipeline.pipeline import eval_config
from pipeline.run_summary import summarize_last_run

DATA_STEPS = ('ImageExampleGen', 'StatisticsGen', 'Transform')
EVALUATOR = 'Evaluator (TFMA)'


def _data_steps(data_dir: str, output_root: str, workers: int) -> Dict[str, float]:
  config = PipelineConfig(
    output_root=output_root, data_dir=data_dir, variants=('batch',), beam_workers=workers
  )
  with local_runner.workers_import_this_code():
    tfx.orchestration.LocalDagRunner().run(
      local_runner.local_pipeline(config),
      run_options=tfx_pipeline.RunOptions(to_nodes=[DATA_STEPS[-1]]),
    )
  ran = {run.node_id: run.seconds for run in summarize_last_run(config.metadata_path).components}
  return {step: ran[step] for step in DATA_STEPS}


def _evaluator(model_dir: str, examples: str, output: str, workers: int) -> float:
  config = eval_config()
  start = time.perf_counter()
  with local_runner.workers_import_this_code():
    tfma.run_model_analysis(
      eval_shared_model=tfma.default_eval_shared_model(model_dir, eval_config=config),
      eval_config=config,
      data_location=examples,
      output_path=output,
      pipeline_options=PipelineOptions(local_runner.beam_args(workers)),
    )
  return time.perf_counter() - start


def _model(directory: str) -> str:
  # A test helper is the one place that exports a model without training it (as bench_serving).
  from tests import idx_files  # pylint: disable=import-outside-toplevel
  from tests import serving_model  # pylint: disable=import-outside-toplevel
  from trainer.model import build_model  # pylint: disable=import-outside-toplevel

  images = idx_files.learnable_images(np.arange(40) % 10, seed=0)
  return serving_model.export_version(directory, build_model('batch', seed=0), 'batch', images)


def _table(times: Dict[int, Dict[str, List[float]]], counts: List[int]) -> List[str]:
  one, many = counts
  lines = [f'{"step":<18} {"1 worker":>10} {f"{many} workers":>10} {"speed-up":>9}']
  for step in times[one]:
    ratios = [a / b for a, b in zip(times[one][step], times[many][step])]
    lines.append(
      f'{step:<18} {statistics.median(times[one][step]):>9.1f}s '
      f'{statistics.median(times[many][step]):>9.1f}s {statistics.median(ratios):>8.2f}x'
      f' ({min(ratios):.2f}-{max(ratios):.2f})'
    )
  return lines


def main(data_dir: str, rounds: int, workers: int, data_only: bool) -> None:
  counts = [1, workers]
  steps = [*DATA_STEPS, *([] if data_only else [EVALUATOR]), 'Beam steps']
  times = {count: {step: [] for step in steps} for count in counts}
  with tempfile.TemporaryDirectory() as scratch:
    model_dir = None if data_only else _model(os.path.join(scratch, 'model'))
    for round_number in range(rounds):
      for count in counts[round_number % 2 :] + counts[: round_number % 2]:
        root = os.path.join(scratch, f'round{round_number}-workers{count}')
        took = _data_steps(data_dir, root, count)
        if model_dir:
          (eval_split,) = tfx.dsl.io.fileio.glob(
            os.path.join(root, 'pipeline', 'ImageExampleGen', 'examples', '*', 'Split-eval')
          )
          took[EVALUATOR] = _evaluator(
            model_dir, os.path.join(eval_split, '*'), os.path.join(root, 'tfma'), count
          )
        took['Beam steps'] = sum(took.values())
        for step, seconds in took.items():
          times[count][step].append(seconds)
        print(
          f'round {round_number + 1}, {count} worker(s): '
          + ', '.join(f'{step} {seconds:.1f} s' for step, seconds in took.items()),
          flush=True,
        )
  print(f'median over {rounds} round(s), {data_dir}:')
  print('\n'.join(_table(times, counts)))


if __name__ == '__main__':
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--rounds', type=int, default=3, help='rounds (default: %(default)s)')
  parser.add_argument(
    '--workers',
    type=int,
    default=len(os.sched_getaffinity(0)),
    help='worker processes of the many-worker side (default: the cores, %(default)s)',
  )
  parser.add_argument(
    '--data-only', action='store_true', help='only ExampleGen, StatisticsGen and Transform'
  )
  parser.add_argument(
    '--data-dir', default=default_data_dir(), help='the IDX gz files (default: %(default)s)'
  )
  args = parser.parse_args()
  if args.rounds < 1 or args.workers < 2:
    parser.error('--rounds must be at least 1 and --workers at least 2')
  main(args.data_dir, args.rounds, args.workers, args.data_only)
