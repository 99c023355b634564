"""Runs the pipeline on this machine with LocalDagRunner, MLMD in SQLite under the output root."""

from typing import Optional

from tfx import v1 as tfx

from pipeline import staging
from pipeline.config import PipelineConfig
from pipeline.output_root_lock import exclusive_output_root
from pipeline.pipeline import create_pipeline
from pipeline.run_summary import RunSummary
from pipeline.run_summary import summarize_last_run


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
