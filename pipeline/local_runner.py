"""Runs the pipeline on this machine with LocalDagRunner, MLMD in SQLite under the output root."""

import contextlib
import fcntl
import os
from typing import Iterator, Optional

import tensorflow as tf
from tfx import v1 as tfx

from pipeline import staging
from pipeline.config import PipelineConfig
from pipeline.pipeline import create_pipeline
from pipeline.run_summary import RunSummary
from pipeline.run_summary import summarize_last_run

LOCK_FILE = '.run.lock'


class OutputRootBusyError(RuntimeError):
  """Another run is using the same output root."""


@contextlib.contextmanager
def exclusive_output_root(output_root: str) -> Iterator[None]:
  """Holds a lock on the output root for the whole run.

  Two runs writing one SQLite MLMD store and one pipeline root would race on
  both; the second run stops at once instead. The OS drops the lock when the
  process dies, so a killed run never leaves it behind.
  """
  tf.io.gfile.makedirs(output_root)
  with open(os.path.join(output_root, LOCK_FILE), 'w') as lock:
    try:
      fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as error:
      raise OutputRootBusyError(
        f'{output_root} is in use by another run; wait for it or pick another --output-root'
      ) from error
    yield


def run(config: PipelineConfig) -> Optional[RunSummary]:
  """Runs the whole pipeline and returns what it did."""
  with exclusive_output_root(config.output_root):
    pipeline = create_pipeline(
      config,
      code_fingerprint=staging.code_fingerprint(),
      metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
        config.metadata_path
      ),
    )
    tfx.orchestration.LocalDagRunner().run(pipeline)
  return summarize_last_run(config.metadata_path)
