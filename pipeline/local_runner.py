"""Runs the pipeline on this machine with LocalDagRunner, MLMD in SQLite under the output root."""

import contextlib
import dataclasses
import os
from typing import Iterator, List, Optional

from tfx import v1 as tfx

from dataset.resolve import ResolvedDataset
from pipeline import staging
from pipeline.config import PipelineConfig
from pipeline.output_root_lock import exclusive_output_root
from pipeline.pipeline import create_pipeline
from pipeline.run_summary import RunSummary
from pipeline.run_summary import summarize_last_run


def beam_args(workers: int) -> List[str]:
  """DirectRunner's options for every Beam step: `workers` worker processes, or with 1 the
  in-process runner of a deployment's container.

  Beam's multi-process mode splits each stage's input between the workers and starts them for
  every Beam step (each imports Beam, and TensorFlow where the step's code needs it), a fixed
  cost that only larger inputs repay: on Fashion-MNIST with 2 cores, two workers made the Beam
  steps about half as fast (benchmarks/bench_beam_workers.py), hence one by default.
  """
  if workers == 1:
    return ['--direct_running_mode=in_memory', '--direct_num_workers=1']
  return ['--direct_running_mode=multi_processing', f'--direct_num_workers={workers}']


@contextlib.contextmanager
def workers_import_this_code() -> Iterator[None]:
  """Beam's worker processes inherit this process's environment but not its sys.path: with the
  directory of these packages first on their PYTHONPATH they unpickle the Beam steps' functions
  from this code, not from another installed copy of it."""
  code_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  previous = os.environ.get('PYTHONPATH')
  os.environ['PYTHONPATH'] = os.pathsep.join([code_root, *([previous] if previous else [])])
  try:
    yield
  finally:
    if previous is None:
      del os.environ['PYTHONPATH']
    else:
      os.environ['PYTHONPATH'] = previous


def local_pipeline(
  config: PipelineConfig, dataset: Optional[ResolvedDataset] = None
) -> tfx.dsl.Pipeline:
  """The DAG as this machine runs it: MLMD in SQLite under the output root, and DirectRunner's
  worker options (beam_args) for every Beam step."""
  return create_pipeline(
    dataclasses.replace(config, beam_pipeline_args=beam_args(config.beam_workers)),
    code_fingerprint=staging.code_fingerprint(),
    metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
      config.metadata_path
    ),
    dataset=dataset,
  )


def run(config: PipelineConfig, dataset: Optional[ResolvedDataset] = None) -> Optional[RunSummary]:
  """Runs the whole pipeline on `dataset` (default: Fashion-MNIST) and returns what it did."""
  with exclusive_output_root(config.output_root), workers_import_this_code():
    tfx.orchestration.LocalDagRunner().run(local_pipeline(config, dataset))
  return summarize_last_run(config.metadata_path)
