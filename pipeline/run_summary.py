"""What the last run did, read back from ML Metadata: components, the variant comparison, push."""

import dataclasses
import os
from typing import Dict, List, Optional

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
import tensorflow as tf

from components.variant_selection import report
from components.artifacts import VariantComparison

_STATES = {
  metadata_store_pb2.Execution.COMPLETE: 'ran',
  metadata_store_pb2.Execution.CACHED: 'cached',
  metadata_store_pb2.Execution.FAILED: 'failed',
  metadata_store_pb2.Execution.RUNNING: 'running',
}


@dataclasses.dataclass
class ComponentRun:
  node_id: str
  state: str
  seconds: float


@dataclasses.dataclass(frozen=True)
class ComparisonReport:
  """A VariantSelector's report: its directory, the Markdown table and the plots."""

  uri: str

  @property
  def markdown(self) -> str:
    with tf.io.gfile.GFile(os.path.join(self.uri, report.REPORT_MARKDOWN)) as markdown:
      return markdown.read()

  @property
  def plots(self) -> List[str]:
    return sorted(tf.io.gfile.glob(os.path.join(self.uri, '*.png')))

  def lines(self) -> List[str]:
    return [
      f'Comparison report: {self.uri}',
      '',
      *self.markdown.rstrip('\n').splitlines(),
      '',
      'Plots:',
      *(f'  {plot}' for plot in self.plots),
    ]


@dataclasses.dataclass
class RunSummary:
  run_id: str
  components: List[ComponentRun]
  comparison: Optional[ComparisonReport] = None
  pushed_to: Optional[str] = None

  def lines(self) -> List[str]:
    """The summary as a newcomer reads it at the end of a run."""
    out = [f'Run {self.run_id}:']
    for component in self.components:
      out.append(f'  {component.node_id:<22} {component.state:<7} {component.seconds:7.1f} s')
    if self.comparison is not None:
      out += ['', *self.comparison.lines(), '']
    out.append(f'Pushed to: {self.pushed_to}' if self.pushed_to else 'Pushed: nothing')
    return out


def _open_read_only(metadata_path: str) -> metadata_store.MetadataStore:
  connection = metadata_store_pb2.ConnectionConfig()
  connection.sqlite.filename_uri = metadata_path
  connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
  return metadata_store.MetadataStore(connection)


def _node_id(store: metadata_store.MetadataStore, execution_id: int) -> str:
  for context in store.get_contexts_by_execution(execution_id):
    if context.type == 'node':
      return context.name.split('.', 1)[1]
  return '?'


def _outputs_by_type(
  store: metadata_store.MetadataStore, executions
) -> Dict[str, metadata_store_pb2.Artifact]:
  """The run's output artifacts by type name (types this pipeline outputs once per run)."""
  events = store.get_events_by_execution_ids([execution.id for execution in executions])
  artifact_ids = [
    event.artifact_id for event in events if event.type == metadata_store_pb2.Event.OUTPUT
  ]
  outputs = {}
  for artifact in store.get_artifacts_by_id(artifact_ids):
    outputs[store.get_artifact_types_by_id([artifact.type_id])[0].name] = artifact
  return outputs


def summarize_last_run(metadata_path: str) -> Optional[RunSummary]:
  """Reads the most recent pipeline run from the SQLite MLMD store, or None if there is none."""
  store = _open_read_only(metadata_path)
  runs = store.get_contexts_by_type('pipeline_run')
  if not runs:
    return None
  run = max(runs, key=lambda context: context.create_time_since_epoch)
  executions = sorted(
    store.get_executions_by_context(run.id), key=lambda execution: execution.create_time_since_epoch
  )
  summary = RunSummary(
    run_id=run.name,
    components=[
      ComponentRun(
        _node_id(store, execution.id),
        _STATES.get(execution.last_known_state, 'unknown'),
        (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000,
      )
      for execution in executions
    ],
  )
  outputs = _outputs_by_type(store, executions)
  if VariantComparison.TYPE_NAME in outputs:
    summary.comparison = ComparisonReport(outputs[VariantComparison.TYPE_NAME].uri)
  if 'PushedModel' in outputs:
    properties = outputs['PushedModel'].custom_properties
    if properties['pushed'].int_value:
      summary.pushed_to = properties['pushed_destination'].string_value
  return summary


def latest_comparison(metadata_path: str) -> Optional[ComparisonReport]:
  """The newest comparison report in the store."""
  store = _open_read_only(metadata_path)
  reports = store.get_artifacts_by_type(VariantComparison.TYPE_NAME)
  if not reports:
    return None
  newest = max(reports, key=lambda artifact: artifact.create_time_since_epoch)
  return ComparisonReport(newest.uri)
