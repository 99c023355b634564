"""What the last run did: components, the variant comparison and the push, read back from ML
Metadata for a local run, from the pipeline root's files (local or gs://) for a deployed one."""

import dataclasses
import json
import os
from typing import Dict, List, Optional, Sequence, Union

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from rich import markdown
from rich.console import Console
import tensorflow as tf

from components.artifacts import VariantComparison
from components.variant_selection import production
from components.variant_selection import report
from components.variant_selection.keys import REPORT
from components.variant_selection import dataset_facts
from pipeline.config import PipelineConfig
from pipeline.output_root_lock import run_in_progress
from pipeline.pipeline import SELECTOR_ID

# Directories between a pipeline root and a component's: Vertex's <project number>/<job>.
_MAX_RUN_DIRECTORY_DEPTH = 3
FAILED = 'failed'
RUNNING = 'running'
# Left `running` in MLMD by a run whose process is gone (killed, machine restarted, Ctrl-C).
INTERRUPTED = 'interrupted'
_STATES = {
  metadata_store_pb2.Execution.COMPLETE: 'ran',
  metadata_store_pb2.Execution.CACHED: 'cached',
  metadata_store_pb2.Execution.FAILED: FAILED,
  metadata_store_pb2.Execution.RUNNING: RUNNING,
}


class UnreadableMetadataError(RuntimeError):
  """The output root's MLMD file exists but cannot be read as a store."""


def _sqlite_reason(error: RuntimeError) -> str:
  """SQLite's reason inside MLMD's 'Error when executing query: <reason> query: <SQL>'."""
  parts = str(error).split(' query: ')
  return parts[1] if len(parts) > 2 else str(error).splitlines()[0]


class Markdown(str):
  """Markdown among plain lines: rendered on a terminal, printed as it is when piped."""


def print_lines(lines: Sequence[str], console: Console) -> None:
  """`lines` on the console: Markdown rendered by rich on a terminal (no `**` or `|` on screen);
  elsewhere (a pipe, a file) the text as it is, one table row a line for grep and diff."""
  if not console.is_terminal:
    console.file.write('\n'.join(lines) + '\n')
    return
  for line in lines:
    if isinstance(line, Markdown):
      console.print(markdown.Markdown(line))
    else:
      console.print(line, markup=False, highlight=False, soft_wrap=True)


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
      Markdown(self.markdown.rstrip('\n')),
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
  # What the serving root serves, and the versions skipped because they cannot load.
  served: Sequence[str] = ()
  # Where `fmnist-pipeline run` writes each run's log.
  logs_dir: str = 'logs'
  # What ExampleGen read: the layout, classes, image size and split counts (dataset_lines).
  data: Sequence[str] = ()

  def _in_state(self, state: str) -> List[str]:
    return [component.node_id for component in self.components if component.state == state]

  @property
  def ended_badly(self) -> bool:
    """The run was interrupted or a component failed."""
    return bool(self._in_state(INTERRUPTED) or self._in_state(FAILED))

  def _outcome(self) -> List[str]:
    interrupted, failed = self._in_state(INTERRUPTED), self._in_state(FAILED)
    if interrupted:
      return [
        f'✗ The run was interrupted in {", ".join(interrupted)}: no process runs it any more and '
        'the steps after it never ran. `fmnist-pipeline run` again takes the finished steps '
        'from the cache.'
      ]
    if failed:
      return [f'✗ The run failed in {", ".join(failed)}: its log in {self.logs_dir} says why.']
    running = self._in_state(RUNNING)
    return [f'… Still running: {", ".join(running)}.'] if running else []

  def lines(self) -> List[str]:
    """The summary as a newcomer reads it at the end of a run."""
    out = [f'Run {self.run_id}:']
    width = max((len(component.node_id) for component in self.components), default=0)
    state_width = max((len(component.state) for component in self.components), default=0)
    for component in self.components:
      out.append(
        f'  {component.node_id:<{width}} {component.state:<{state_width}} '
        f'{component.seconds:7.1f} s'
      )
    out += self._outcome()
    out += self.data
    if self.comparison is not None:
      out += ['', *self.comparison.lines(), '']
    out.append(f'Pushed to: {self.pushed_to}' if self.pushed_to else 'Pushed: nothing')
    out.extend(self.served)
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
  for artifact in sorted(store.get_artifacts_by_id(artifact_ids), key=lambda found: found.id):
    name = store.get_artifact_types_by_id([artifact.type_id])[0].name
    # Examples come out of ExampleGen and of Transform (transformed_examples): ExampleGen's,
    # the first, is the one with dataset.json.
    if name == 'Examples' and name in outputs:
      continue
    outputs[name] = artifact
  return outputs


def _state(last_known_state: int, in_progress: bool) -> str:
  state = _STATES.get(last_known_state, 'unknown')
  return INTERRUPTED if state == RUNNING and not in_progress else state


def _serving_model_dir(store: metadata_store.MetadataStore, metadata_path: str) -> str:
  """Where Pusher pushed last (any run), else where it pushes by default under this root."""
  pushed = [
    artifact
    for artifact in store.get_artifacts_by_type('PushedModel')
    if artifact.custom_properties['pushed'].int_value
  ]
  if pushed:
    newest = max(pushed, key=lambda artifact: artifact.id)
    return os.path.dirname(newest.custom_properties['pushed_destination'].string_value)
  return PipelineConfig(output_root=os.path.dirname(metadata_path)).serving_model_dir


def served(model_dir: str) -> List[str]:
  """What TF Serving serves from `model_dir` as the production gate sees it (the version
  models.config chooses, skipping one that cannot load), and which variant it is."""
  skipped: List[str] = []
  version = production.in_production(model_dir, warn=skipped.append)
  if version is None:
    return [*skipped, f'Served: nothing, {model_dir} holds no version TF Serving can load']
  variant = production.model_info(version.path).get('variant', 'variant unknown')
  return [
    *skipped,
    f'Served: version {version.version} ({variant}), {version.path}: {version.reason}',
  ]


def dataset_lines(examples_uri: str) -> List[str]:
  """What the run trained on, from ExampleGen's dataset.json: the data and its layout, each
  split's size, the classes and the size every image was decoded to."""
  facts = dataset_facts.read(examples_uri)
  if facts is None:
    return []
  splits = ', '.join(f'{split} {facts.split_total(split):,}' for split in facts.splits)
  skipped = f', {facts.skipped_count:,} bad images skipped' if facts.skipped_count else ''
  spec = facts.spec
  return [
    f'Data: {facts.data} ({facts.layout}): {splits} images{skipped}',
    *_span_lines(examples_uri),
    f'  {spec.num_classes} classes: {", ".join(spec.classes)}',
    f'  every image decoded to {spec.height}x{spec.width}, {spec.channels} channel(s)',
  ]


def _read_json_file(path: str) -> Optional[dict]:
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as file:
    try:
      return json.load(file)
    except ValueError:
      return None


def _span_lines(examples_uri: str) -> List[str]:
  """With spans: which ones the run used (dataset.json) and the drift check's result."""
  spans = (_read_json_file(os.path.join(examples_uri, 'dataset.json')) or {}).get('spans')
  if not spans:
    return []
  train = ', '.join(str(span) for span in spans.get('train') or [])
  previous = spans.get('previous')
  lines = [
    f"  spans: newest {spans.get('newest')} (eval, test), trained on {train}, "
    + (f'drift baseline span {previous}' if previous is not None else 'no previous span')
  ]
  drift = _read_json_file(os.path.join(examples_uri, 'drift.json'))
  if drift:
    lines.append(f"  drift: {drift.get('status')}")
    lines += [f'    {line}' for line in drift.get('lines') or []]
  return lines


def summarize_last_run(metadata_path: str, in_progress: bool = True) -> Optional[RunSummary]:
  """Reads the most recent pipeline run from the SQLite MLMD store, or None if there is none;
  without a run `in_progress`, a component still `running` there was interrupted."""
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
        _state(execution.last_known_state, in_progress),
        (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000,
      )
      for execution in executions
    ],
    served=served(_serving_model_dir(store, metadata_path)),
    logs_dir=os.path.join(os.path.dirname(metadata_path), 'logs'),
  )
  outputs = _outputs_by_type(store, executions)
  if 'Examples' in outputs:
    summary.data = dataset_lines(outputs['Examples'].uri)
  if VariantComparison.TYPE_NAME in outputs:
    summary.comparison = ComparisonReport(outputs[VariantComparison.TYPE_NAME].uri)
  if 'PushedModel' in outputs:
    properties = outputs['PushedModel'].custom_properties
    if properties['pushed'].int_value:
      summary.pushed_to = properties['pushed_destination'].string_value
  return summary


def comparison_reports(pipeline_root: str) -> List[str]:
  """The VariantSelector report directories under a pipeline root, local or gs://.

  Each orchestrator lays out artifacts its own way: LocalDagRunner
  <root>/VariantSelector/report/<execution id>/, Vertex AI
  <root>/<project number>/<job>/VariantSelector_<task id>/report/, KFP
  <root>/<pipeline>/<run>/VariantSelector/report/. Each depth is one glob (on GCS one
  listing), the shallowest depth that has reports wins.
  """
  for depth in range(_MAX_RUN_DIRECTORY_DEPTH + 1):
    pattern = os.path.join(pipeline_root, *['*'] * depth, f'{SELECTOR_ID}*', REPORT, '*')
    reports = set()
    for match in tf.io.gfile.glob(pattern):
      if os.path.basename(match) == report.REPORT_JSON:
        reports.add(os.path.dirname(match))
      elif tf.io.gfile.exists(os.path.join(match, report.REPORT_JSON)):
        reports.add(match)
    if reports:
      return sorted(reports)
  return []


def newest_comparison(pipeline_root: str) -> Optional[ComparisonReport]:
  """The comparison report written last under the pipeline root, by its report.json's mtime."""
  reports = comparison_reports(pipeline_root)
  if not reports:
    return None
  return ComparisonReport(
    max(reports, key=lambda uri: tf.io.gfile.stat(os.path.join(uri, report.REPORT_JSON)).mtime_nsec)
  )


@dataclasses.dataclass
class DeployedRunSummary:
  """What the files of a run without a local MLMD store (Vertex, KFP) say: its comparison."""

  output_root: str
  comparison: ComparisonReport

  def lines(self) -> List[str]:
    return [
      (
        f'No ML Metadata store under {self.output_root}: the component states and the push of '
        "a deployed run are in its orchestrator's console. Its newest comparison:"
      ),
      '',
      *self.comparison.lines(),
    ]


def last_run(output_root: str) -> Optional[Union[RunSummary, DeployedRunSummary]]:
  """The last run under `output_root`: from the MLMD store a local run keeps there, else from
  the newest comparison report (a deployed run's metadata is the orchestrator's)."""
  config = PipelineConfig(output_root=output_root)
  if os.path.exists(config.metadata_path):
    try:
      return summarize_last_run(config.metadata_path, run_in_progress(output_root))
    except RuntimeError as error:  # what ML Metadata raises for a file that is no store
      raise UnreadableMetadataError(
        f'{config.metadata_path} is not a readable ML Metadata store '
        f'({_sqlite_reason(error)}); `fmnist-pipeline report` still shows the last comparison'
      ) from error
  comparison = newest_comparison(config.pipeline_root)
  return None if comparison is None else DeployedRunSummary(output_root, comparison)
