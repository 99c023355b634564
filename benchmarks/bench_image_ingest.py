"""What reading Fashion-MNIST as image files costs against its IDX files, side by side in one run:
the same 70,000 images, as the four IDX gz files and as their PNG class-folder export
(`dataset.export`, train/ and test/ split level, one PNG per image).

- `ingest`: ExampleGen alone (a partial LocalDagRunner run up to it, in a fresh output root, so
  nothing is cached; its time is its MLMD execution's, as the run summary shows it). Goal: the
  PNG folders take at most 2x the IDX files' time. Also shown: how long deciding the dataset
  takes before the DAG is built (dataset.resolve: listing and sampling the images).
- `pipeline`: `fmnist-pipeline run` (the default run, or `--quick`) on each, in its own process
  and output root: wall time, and the pushed model's test accuracy with a 95% interval
  (Wilson's, over the test split's examples, from the run's report.json). Goal: the PNG run
  within the IDX run's interval, at most 1.2x its wall time. The two runs hold the same images
  and, the holdout going by content, the same eval split; the PNG run's classes are its folder
  names in sorted order, so its label indices (and so its training) differ from the IDX run's.

Rounds alternate which input goes first; each ratio is taken within a round, reported as the
median over rounds with the range.

  .venv/bin/python -m benchmarks.bench_image_ingest [--part ingest|pipeline|both] [--rounds 3]
      [--quick] [--run-flags "--variants none"] [--data-dir /usr/share/datasets/fashion-mnist]
      [--export-dir DIR]
"""

import argparse
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Sequence, Tuple

import trainer  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from tfx import v1 as tfx
from tfx.orchestration import pipeline as tfx_pipeline

from components.variant_selection import report
from pipeline import datasets
from pipeline import local_runner
from pipeline.config import PipelineConfig
from pipeline.config import default_data_dir
from pipeline.run_summary import summarize_last_run

INPUTS = ('IDX files', 'PNG folders')
# 95% two-sided normal quantile, for Wilson's interval of the test accuracy.
Z_95 = 1.959964


def export(data_dir: str, export_dir: str) -> float:
  """Writes the PNG export of `data_dir` into `export_dir` unless it is there; its seconds."""
  from dataset.export import export_fashion_mnist_png  # pylint: disable=import-outside-toplevel

  if os.path.isdir(os.path.join(export_dir, 'test')):
    print(f'using the PNG export in {export_dir}', flush=True)
    return 0.0
  start = time.perf_counter()
  counts = export_fashion_mnist_png(data_dir, export_dir)
  seconds = time.perf_counter() - start
  print(f'exported {counts} to {export_dir} in {seconds:.0f} s', flush=True)
  return seconds


def _example_gen_seconds(data: str, output_root: str) -> Dict[str, float]:
  """Seconds of deciding the dataset (dataset.resolve, before the DAG is built: it lists the
  images and samples some) and of ExampleGen in a partial run of the pipeline `run` builds."""
  config = PipelineConfig(output_root=output_root, data_dir=data, variants=('none',))
  start = time.perf_counter()
  dataset = datasets.resolve_for(config)
  resolved = time.perf_counter() - start
  pipeline = local_runner.local_pipeline(config, dataset)
  (example_gen,) = [c.id for c in pipeline.components if c.id.endswith('ExampleGen')]
  with local_runner.workers_import_this_code():
    tfx.orchestration.LocalDagRunner().run(
      pipeline, run_options=tfx_pipeline.RunOptions(to_nodes=[example_gen])
    )
  ran = {run.node_id: run.seconds for run in summarize_last_run(config.metadata_path).components}
  return {'resolve s': resolved, 'ExampleGen s': ran[example_gen]}


def wilson_interval(accuracy: float, examples: int) -> Tuple[float, float]:
  """95% Wilson score interval of a proportion `accuracy` of `examples` trials."""
  z2 = Z_95 * Z_95
  centre = (accuracy + z2 / (2 * examples)) / (1 + z2 / examples)
  half = (Z_95 * math.sqrt(accuracy * (1 - accuracy) / examples + z2 / (4 * examples**2))) / (
    1 + z2 / examples
  )
  return centre - half, centre + half


def _pipeline_run(data: str, output_root: str, flags: Sequence[str]) -> Dict[str, float]:
  """Wall seconds and the pushed model's test accuracy of `fmnist-pipeline run` in a process."""
  command = [sys.executable, '-m', 'pipeline.cli', 'run', '--data', data]
  command += ['--output-root', output_root, *flags]
  start = time.perf_counter()
  finished = subprocess.run(command, capture_output=True, text=True, check=False)
  seconds = time.perf_counter() - start
  if finished.returncode != 0:
    raise RuntimeError(f'{" ".join(command)} failed: {finished.stderr.strip().splitlines()[-1]}')
  (report_dir,) = [
    line.split(': ', 1)[1]
    for line in finished.stdout.splitlines()
    if line.startswith('Comparison report: ')
  ]
  with open(os.path.join(report_dir, report.REPORT_JSON)) as report_json:
    compared = json.load(report_json)
  test = compared['test']
  accuracy = test['metrics']['sparse_categorical_accuracy']
  on_eval = ', '.join(
    f'{row["variant"]} {row["eval"][compared["selection_metric"]]:.4f}'
    for row in compared['variants']
  )
  print(f'  {data}: pushed {test["variant"]}; {compared["selection_metric"]} on eval: {on_eval}')
  low, high = wilson_interval(accuracy, test['examples'])
  return {'seconds': seconds, 'accuracy': accuracy, 'low': low, 'high': high}


def _rounds(rounds: int, measure, label: str) -> Dict[str, List]:
  """`measure(input index, round)` (a dict of numbers) for both inputs each round, the first one
  alternating."""
  results = {name: [] for name in INPUTS}
  for round_number in range(rounds):
    order = [0, 1] if round_number % 2 == 0 else [1, 0]
    for index in order:
      results[INPUTS[index]].append(measure(index, round_number))
      measured = ', '.join(f'{k} {v:.4g}' for k, v in results[INPUTS[index]][-1].items())
      print(f'{label} round {round_number + 1}, {INPUTS[index]}: {measured}', flush=True)
  return results


def _ratio_line(name: str, numerators: Sequence[float], denominators: Sequence[float]) -> str:
  ratios = [a / b for a, b in zip(numerators, denominators)]
  return (
    f'{name}: {statistics.median(denominators):.1f} s on {INPUTS[0]}, '
    f'{statistics.median(numerators):.1f} s on {INPUTS[1]}, {statistics.median(ratios):.2f}x '
    f'({min(ratios):.2f}-{max(ratios):.2f})'
  )


def ingest(data_dir: str, export_dir: str, scratch: str, rounds: int) -> List[str]:
  inputs = (data_dir, export_dir)

  def measure(index, round_number):
    return _example_gen_seconds(
      inputs[index], os.path.join(scratch, f'ingest{round_number}-{index}')
    )

  seconds = _rounds(rounds, measure, 'resolve, ExampleGen')
  resolve_lines = [
    f'resolve on {name}: {statistics.median(run["resolve s"] for run in seconds[name]):.1f} s'
    for name in INPUTS
  ]
  example_gen = {name: [run['ExampleGen s'] for run in seconds[name]] for name in INPUTS}
  return [
    _ratio_line('ExampleGen', example_gen[INPUTS[1]], example_gen[INPUTS[0]]) + ' (goal: <= 2x)',
    *resolve_lines,
  ]


def pipeline_runs(
  data_dir: str, export_dir: str, scratch: str, rounds: int, flags: Sequence[str]
) -> List[str]:
  inputs = (data_dir, export_dir)

  def measure(index, round_number):
    return _pipeline_run(inputs[index], os.path.join(scratch, f'run{round_number}-{index}'), flags)

  runs = _rounds(rounds, measure, ' '.join(['fmnist-pipeline run', *flags]))
  lines = [
    _ratio_line(
      'pipeline wall time',
      [run['seconds'] for run in runs[INPUTS[1]]],
      [run['seconds'] for run in runs[INPUTS[0]]],
    )
    + ' (goal: <= 1.2x)'
  ]
  for round_number in range(rounds):
    idx_run, png_run = runs[INPUTS[0]][round_number], runs[INPUTS[1]][round_number]
    within = idx_run['low'] <= png_run['accuracy'] <= idx_run['high']
    lines.append(
      f'round {round_number + 1} test accuracy: {INPUTS[0]} {idx_run["accuracy"]:.4f} '
      f'({idx_run["low"]:.4f}-{idx_run["high"]:.4f}), {INPUTS[1]} {png_run["accuracy"]:.4f} '
      f'({png_run["low"]:.4f}-{png_run["high"]:.4f}): '
      + ('within' if within else 'outside')
      + f" the {INPUTS[0]} run's interval"
    )
  return lines


def main(args: argparse.Namespace) -> None:
  with tempfile.TemporaryDirectory() as scratch:
    export_dir = args.export_dir or os.path.join(scratch, 'fashion-mnist-png')
    export(args.data_dir, export_dir)
    lines = []
    if args.part in ('ingest', 'both'):
      lines += ingest(args.data_dir, export_dir, scratch, args.rounds)
    if args.part in ('pipeline', 'both'):
      flags = (['--quick'] if args.quick else []) + shlex.split(args.run_flags)
      lines += pipeline_runs(args.data_dir, export_dir, scratch, args.rounds, flags)
  print(f'median over {args.rounds} round(s), {args.data_dir}:')
  print('\n'.join(lines))


if __name__ == '__main__':
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument(
    '--part',
    choices=('ingest', 'pipeline', 'both'),
    default='ingest',
    help='ExampleGen alone, whole pipeline runs (long), or both (default: %(default)s)',
  )
  parser.add_argument('--rounds', type=int, default=3, help='rounds (default: %(default)s)')
  parser.add_argument(
    '--quick', action='store_true', help='pipeline part: `run --quick` instead of the default run'
  )
  parser.add_argument(
    '--run-flags',
    default='',
    help='more flags for the pipeline part\'s runs, e.g. "--variants none" (default: none)',
  )
  parser.add_argument(
    '--data-dir', default=default_data_dir(), help='the IDX gz files (default: %(default)s)'
  )
  parser.add_argument(
    '--export-dir',
    default=None,
    help='where the PNG export is (written there if absent; default: a temporary directory)',
  )
  args = parser.parse_args()
  if args.rounds < 1:
    parser.error('--rounds must be at least 1')
  main(args)
