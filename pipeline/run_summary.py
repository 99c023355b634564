"""What the last run did, read back from ML Metadata: components, evaluation, push."""

import dataclasses
from typing import List, Optional

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
import tensorflow_model_analysis as tfma

from pipeline.pipeline import ACCURACY_METRIC

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


@dataclasses.dataclass
class RunSummary:
  run_id: str
  components: List[ComponentRun]
  eval_accuracy: Optional[float] = None
  blessed: Optional[bool] = None
  blessing_failures: List[str] = dataclasses.field(default_factory=list)
  pushed_to: Optional[str] = None

  def lines(self) -> List[str]:
    """The summary as a newcomer reads it at the end of a run."""
    out = [f'Run {self.run_id}:']
    for component in self.components:
      out.append(f'  {component.node_id:<18} {component.state:<7} {component.seconds:7.1f} s')
    if self.eval_accuracy is not None:
      out.append(f'Eval accuracy (TFMA, eval split): {self.eval_accuracy:.4f}')
    if self.blessed is not None:
      out.append(
        'Blessed: yes'
        if self.blessed
        else 'Blessed: no, ' + '; '.join(self.blessing_failures or ['see the Evaluator output'])
      )
    out.append(f'Pushed to: {self.pushed_to}' if self.pushed_to else 'Pushed: nothing')
    return out


def threshold_failures(evaluation_uri: str) -> List[str]:
  """One line per failed TFMA threshold: metric, value and the bound it missed."""
  validation = tfma.load_validation_result(evaluation_uri)
  failures = []
  for per_slice in validation.metric_validations_per_slice:
    for failure in per_slice.failures:
      bound = failure.metric_threshold.value_threshold
      failures.append(
        f'{failure.metric_key.name} {failure.metric_value.double_value.value:.4f} '
        f'is below the threshold {bound.lower_bound.value}'
        if bound.HasField('lower_bound')
        else failure.message or str(failure.metric_key.name)
      )
  return failures


def _node_id(store: metadata_store.MetadataStore, execution_id: int) -> str:
  for context in store.get_contexts_by_execution(execution_id):
    if context.type == 'node':
      return context.name.split('.', 1)[1]
  return '?'


def summarize_last_run(metadata_path: str) -> Optional[RunSummary]:
  """Reads the most recent pipeline run from the SQLite MLMD store, or None if there is none."""
  connection = metadata_store_pb2.ConnectionConfig()
  connection.sqlite.filename_uri = metadata_path
  connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
  store = metadata_store.MetadataStore(connection)
  runs = store.get_contexts_by_type('pipeline_run')
  if not runs:
    return None
  run = max(runs, key=lambda context: context.create_time_since_epoch)
  executions = sorted(
    store.get_executions_by_context(run.id), key=lambda execution: execution.create_time_since_epoch
  )
  summary = RunSummary(run_id=run.name, components=[])
  outputs = {}
  for execution in executions:
    node_id = _node_id(store, execution.id)
    summary.components.append(
      ComponentRun(
        node_id,
        _STATES.get(execution.last_known_state, 'unknown'),
        (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000,
      )
    )
    events = store.get_events_by_execution_ids([execution.id])
    artifact_ids = [
      event.artifact_id for event in events if event.type == metadata_store_pb2.Event.OUTPUT
    ]
    for artifact in store.get_artifacts_by_id(artifact_ids):
      outputs[store.get_artifact_types_by_id([artifact.type_id])[0].name] = artifact
  if 'ModelEvaluation' in outputs:
    evaluation_uri = outputs['ModelEvaluation'].uri
    metrics = tfma.load_eval_result(evaluation_uri).get_metrics_for_slice()
    summary.eval_accuracy = metrics[ACCURACY_METRIC]['doubleValue']
    summary.blessing_failures = threshold_failures(evaluation_uri)
  if 'ModelBlessing' in outputs:
    summary.blessed = bool(outputs['ModelBlessing'].custom_properties['blessed'].int_value)
  if 'PushedModel' in outputs:
    properties = outputs['PushedModel'].custom_properties
    if properties['pushed'].int_value:
      summary.pushed_to = properties['pushed_destination'].string_value
  return summary
