"""What TFMA's confidence intervals cost the Evaluator: the pipeline's EvalConfig with and without
them, on the same model and eval split, interleaved in one process.

Each round runs TFMA (the same ExtractEvaluateAndWriteResults pipeline the Evaluator runs, on
Beam's in-memory DirectRunner as the local pipeline does) once with intervals and once without,
in a rotating order; the ratio is taken within a round and reported as the median over rounds.

  .venv/bin/python -m benchmarks.bench_eval_ci MODEL_DIR EVAL_SPLIT_DIR [--rounds 3]

MODEL_DIR is a Trainer's `Format-Serving` directory, EVAL_SPLIT_DIR an ExampleGen `Split-eval`
directory, both from a local run's pipeline root.
"""

import argparse
import os
import statistics
import tempfile
import time

import trainer  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from apache_beam.options.pipeline_options import PipelineOptions
import tensorflow_model_analysis as tfma

from pipeline.pipeline import eval_config


def _seconds(model_dir: str, examples: str, config: tfma.EvalConfig, output: str) -> float:
  start = time.perf_counter()
  tfma.run_model_analysis(
    eval_shared_model=tfma.default_eval_shared_model(model_dir, eval_config=config),
    eval_config=config,
    data_location=examples,
    output_path=output,
    pipeline_options=PipelineOptions(['--direct_running_mode=in_memory']),
  )
  return time.perf_counter() - start


def main(model_dir: str, split_dir: str, rounds: int) -> None:
  with_intervals = eval_config()
  without = eval_config()
  without.options.ClearField('compute_confidence_intervals')
  without.options.ClearField('confidence_intervals')
  configs = {'with intervals': with_intervals, 'without': without}
  examples = os.path.join(split_dir, '*')
  times = {name: [] for name in configs}
  with tempfile.TemporaryDirectory() as output:
    _seconds(model_dir, examples, without, os.path.join(output, 'warmup'))  # loads, traces
    names = list(configs)
    for round_number in range(rounds):
      for name in names[round_number % 2 :] + names[: round_number % 2]:
        target = os.path.join(output, f'{round_number}-{len(times[name])}-{name}')
        times[name].append(_seconds(model_dir, examples, configs[name], target))
        print(f'round {round_number + 1} {name}: {times[name][-1]:.1f} s', flush=True)
  ratios = [a / b for a, b in zip(times['with intervals'], times['without'])]
  print(
    f'median over {rounds} rounds: with intervals {statistics.median(times["with intervals"]):.1f}'
    f' s, without {statistics.median(times["without"]):.1f} s, ratio {statistics.median(ratios):.2f}x'
    f' ({min(ratios):.2f}-{max(ratios):.2f})'
  )


if __name__ == '__main__':
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('model_dir')
  parser.add_argument('split_dir')
  parser.add_argument('--rounds', type=int, default=3)
  args = parser.parse_args()
  main(args.model_dir, args.split_dir, args.rounds)
