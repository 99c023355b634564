"""Where and on what the pipeline runs on Vertex AI / Kubeflow Pipelines, read from one YAML file.

Everything environment-specific lives here (project, region, image, Trainer resources,
Dataflow); the pipeline's own options are PipelineConfig's, under the same names as the
`fmnist-pipeline run` flags. The DAG (pipeline.pipeline) is the one LocalDagRunner runs.
`deploy/vertex.example.yaml` documents every deployment key.
"""

import dataclasses
import datetime
import functools
import os
import re
from typing import Any, Dict, List, Mapping, Optional, Tuple
import zoneinfo

import yaml

from pipeline import options
from pipeline.config import BEAM_COMPONENT_KINDS
from pipeline.config import PipelineConfig
from pipeline.options import FLATTEN
from pipeline.options import REQUIRED
from pipeline.options import ConfigError
from trainer.config import CHECK
from trainer.config import CHOICES
from trainer.config import Pattern
from trainer.config import at_least
from trainer.config import greater_than


class VertexConfigError(ConfigError):
  """The deployment config file is missing a key or has a bad one; the message names both."""


GCS_URI = Pattern(r'gs://\S+', 'a gs:// URI')
REGION = Pattern(r'[a-z]+(-[a-z]+)+[0-9]+', 'a GCP region such as europe-west4')
SERVICE_ACCOUNT = Pattern(r'\S+@\S+', 'a service account e-mail address')


def checked(default, check) -> dataclasses.Field:
  """A deployment key with a default, accepting the values `check` accepts (trainer/config.py)."""
  return dataclasses.field(default=default, metadata={CHECK: check})


# Beam components that get the Dataflow args by default: the passes over the whole dataset. The
# Evaluators (6k eval examples each) and VariantSelector (not a Beam component) run in their own
# containers, where they finish before a Dataflow job would have started its workers.
DEFAULT_DATAFLOW_COMPONENTS = ('ImageExampleGen', 'StatisticsGen', 'Transform')


@dataclasses.dataclass(frozen=True)
class DataflowConfig:
  """Runs the Beam components listed in `components` on Dataflow; the others run in-container."""

  # gs:// staging and temp files of the Dataflow jobs
  temp_location: str = dataclasses.field(metadata={CHECK: GCS_URI})
  region: Optional[str] = checked(None, REGION)  # defaults to the pipeline's region
  machine_type: str = 'n1-standard-4'
  max_num_workers: int = checked(10, at_least(1))
  disk_size_gb: int = checked(50, at_least(1))
  # The workers' identity (default: Compute Engine's).
  service_account: Optional[str] = checked(None, SERVICE_ACCOUNT)
  subnetwork: Optional[str] = None  # regions/REGION/subnetworks/NAME, or its full URL
  use_public_ips: bool = True  # false: workers get internal IPs only (needs Private Google Access)
  labels: Dict[str, str] = dataclasses.field(default_factory=dict)  # on every Dataflow job
  extra_args: List[str] = dataclasses.field(default_factory=list)  # any further Beam options
  components: Tuple[str, ...] = dataclasses.field(
    default=DEFAULT_DATAFLOW_COMPONENTS, metadata={CHOICES: BEAM_COMPONENT_KINDS}
  )


@dataclasses.dataclass(frozen=True)
class TrainerResources:
  """What each Trainer step gets. One worker: the step's container gets the accelerators, CPU and
  memory, and Vertex picks a machine that has them. Several: the step starts a Vertex AI custom
  training job of `workers` machines of `machine_type`, each with the accelerators
  (docs/scale-out.md), and waits for it."""

  accelerator_type: Optional[str] = None  # e.g. NVIDIA_TESLA_T4, NVIDIA_L4
  accelerator_count: int = checked(0, at_least(0))  # per worker
  # vCPUs and memory of one worker's container (with several, machine_type says)
  cpu_limit: Optional[float] = checked(None, greater_than(0))
  memory_limit_gb: Optional[float] = checked(None, greater_than(0))
  workers: int = checked(1, at_least(1))  # machines per Trainer step: a chief and workers - 1 others
  machine_type: Optional[str] = None  # each worker's Compute Engine machine type; workers > 1 only


@dataclasses.dataclass(frozen=True)
class VertexEndpointConfig:
  """Uploads every pushed model to the Vertex AI Model Registry and deploys it to an endpoint."""

  endpoint_name: str  # created on the first deploy
  machine_type: str = 'n1-standard-2'
  min_replica_count: int = checked(1, at_least(1))
  max_replica_count: int = checked(1, at_least(1))
  # Default: Vertex's prebuilt TensorFlow CPU prediction container (TF Serving) in the
  # region's multi-region; 2.15 is the newest Vertex offers for a TF 2.16 SavedModel.
  serving_image: Optional[str] = None


def prediction_image(region: str) -> str:
  """Vertex's prebuilt TF 2.15 CPU prediction container in the Artifact Registry near `region`."""
  multi_region = next((name for name in ('europe', 'asia') if region.startswith(name)), 'us')
  return f'{multi_region}-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest'


# --- schedule: ---------------------------------------------------------------------------------

# The five fields of a (unix) cron expression: name, lowest and highest value, and the names
# that may stand for values (months and days of the week, as cron and robfig/cron take them).
_MONTHS = ('JAN', 'FEB', 'MAR', 'APR', 'MAY', 'JUN', 'JUL', 'AUG', 'SEP', 'OCT', 'NOV', 'DEC')
_DAYS = ('SUN', 'MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT')
CRON_FIELDS = (
  ('minute', 0, 59, {}),
  ('hour', 0, 23, {}),
  ('day-of-month', 1, 31, {}),
  ('month', 1, 12, {name: number for number, name in enumerate(_MONTHS, 1)}),
  ('day-of-week', 0, 6, {name: number for number, name in enumerate(_DAYS)}),
)
_CRON_ITEM = re.compile(r'(\*|(?P<low>\w+)(-(?P<high>\w+))?)(/(?P<step>\d+))?')


@dataclasses.dataclass(frozen=True)
class Cron:
  """A five-field cron expression, each field `*`, a value, a range, `/step`s and lists of
  these, in its field's range. What Vertex AI's schedules (unix-cron) and KFP's robfig/cron
  (after a seconds field) both read; the time zone is a key of its own, not a `TZ=` prefix."""

  def __str__(self) -> str:
    return 'a 5-field cron expression (minute hour day-of-month month day-of-week)'

  def problem(self, value: Any) -> Optional[str]:
    fields = value.split()
    if len(fields) != len(CRON_FIELDS):
      hint = (
        '; the time zone goes in schedule.time_zone'
        if value.strip().upper().startswith(('TZ=', 'CRON_TZ='))
        else ''
      )
      return f'must be {self}{hint}, got {value!r}'
    for text, (name, low, high, names) in zip(fields, CRON_FIELDS):
      wrong = _cron_field_problem(text, low, high, names)
      if wrong:
        return f'must have its {name} field {wrong}, got {value!r}'
    return None


def _cron_field_problem(text: str, low: int, high: int, names: Dict[str, int]) -> Optional[str]:
  """What is wrong with one field of a cron expression, or None."""
  named = f' or {min(names, key=names.get)}-{max(names, key=names.get)}' if names else ''
  for item in text.split(','):
    match = _CRON_ITEM.fullmatch(item)
    if not match:
      return 'made of *, N, N-M, */S or N-M/S items (commas between)'
    if match.group('step') is not None and int(match.group('step')) < 1:
      return 'with steps of at least 1'
    if match.group('low') is None:
      continue  # `*` or `*/S`
    if match.group('step') is not None and match.group('high') is None:
      return 'with steps after * or a range only'
    words = [match.group('low'), *filter(None, [match.group('high')])]
    values = [int(word) if word.isdigit() else names.get(word.upper()) for word in words]
    if any(value is None or not low <= value <= high for value in values):
      return f'within {low}-{high}{named}'
    if values != sorted(values):
      return 'with ranges going upwards'
  return None


@dataclasses.dataclass(frozen=True)
class TimeZone:
  """A time zone name of the IANA database (Python's zoneinfo, tzdata)."""

  def __str__(self) -> str:
    return 'an IANA time zone such as Europe/Berlin or UTC'

  def problem(self, value: Any) -> Optional[str]:
    return None if value in _time_zones() else f'must be {self}, got {value!r}'


@functools.lru_cache(maxsize=None)
def _time_zones() -> frozenset:
  """The IANA names zoneinfo finds: the system database, or the tzdata package (constraints.txt)."""
  return frozenset(zoneinfo.available_timezones()) | {'UTC'}


@dataclasses.dataclass(frozen=True)
class Timestamp:
  """An RFC 3339 time with its UTC offset, e.g. 2027-01-04T03:00:00Z. YAML reads an unquoted one
  as a datetime already: both are taken, neither without an offset."""

  def __str__(self) -> str:
    return 'an RFC 3339 time with its offset, e.g. 2027-01-04T03:00:00Z'

  def problem(self, value: Any) -> Optional[str]:
    return None if _timestamp(value) is not None else f'must be {self}, got {_shown_time(value)}'


_RFC3339 = re.compile(r'\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)')


def _timestamp(value: Any) -> Optional[datetime.datetime]:
  """`value` as an aware datetime, or None if it is no RFC 3339 time with an offset."""
  if isinstance(value, str):
    if not _RFC3339.fullmatch(value):
      return None
    try:
      # Python 3.10's fromisoformat reads neither `Z` nor more than 6 fraction digits.
      text = re.sub(r'(\.\d{6})\d+', r'\1', value[:-1] + '+00:00' if value[-1] in 'Zz' else value)
      value = datetime.datetime.fromisoformat(text)
    except ValueError:  # e.g. month 13
      return None
  if not isinstance(value, datetime.datetime) or value.utcoffset() is None:
    return None
  return value


def _shown_time(value: Any) -> str:
  return repr(value.isoformat()) if isinstance(value, datetime.datetime) else repr(value)


def rfc3339(value: datetime.datetime) -> str:
  """`value` in UTC as RFC 3339 with a Z, e.g. 2027-01-04T02:00:00Z."""
  utc = value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
  return utc.isoformat(timespec='microseconds' if utc.microsecond else 'seconds') + 'Z'


DISPLAY_NAME = Pattern(r'(?=.*\S).{1,128}', 'a name of 1 to 128 characters')


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
  """Runs the pipeline on a schedule: `submit` creates a Vertex AI pipeline schedule
  (aiplatform.PipelineJobSchedule) instead of one PipelineJob, and `compile` writes KFP's
  recurring-run equivalent beside pipeline.kfp.yaml (docs/deploy.md, "Scheduled retraining")."""

  # When runs start, e.g. '0 3 * * 1' (Mondays 03:00), read in time_zone.
  cron: str = dataclasses.field(metadata={CHECK: Cron()})
  time_zone: str = checked('UTC', TimeZone())
  # Runs of this schedule at once; a start due while this many run is skipped.
  max_concurrent_runs: int = checked(1, at_least(1))
  # Optional: no run starts before start_time (default: now) or after end_time (default: never).
  start_time: Optional[datetime.datetime] = checked(None, Timestamp())
  end_time: Optional[datetime.datetime] = checked(None, Timestamp())
  max_runs: Optional[int] = checked(None, at_least(1))  # the schedule ends after this many runs
  # Default: `<pipeline_name>-schedule`.
  display_name: Optional[str] = checked(None, DISPLAY_NAME)

  def __post_init__(self):
    # The loader has checked them; a time from the YAML may still be text.
    for key in ('start_time', 'end_time'):
      value = getattr(self, key)
      if value is not None and not isinstance(value, datetime.datetime):
        object.__setattr__(self, key, _timestamp(value))

  def vertex_cron(self) -> str:
    """The cron of Vertex's Schedule: the time zone as its `TZ=` prefix."""
    return f'TZ={self.time_zone} {" ".join(self.cron.split())}'

  def kfp_cron(self) -> str:
    """KFP's cron (robfig/cron) has a seconds field first: second 0 of the same minutes."""
    return f'0 {" ".join(self.cron.split())}'


# What KFP's recurring runs do not have, said once in the file and in `compile`'s output.
KFP_TIME_ZONE_NOTE = (
  "KFP reads a recurring run's cron in its scheduler's time zone (CRON_SCHEDULE_TIMEZONE of the "
  "ml-pipeline-scheduledworkflow deployment, pipeline-install-config's cronScheduleTimezone in "
  "KFP's manifests, UTC unless the cluster sets it): set that to {zone}, or shift the hours to UTC"
)
KFP_MAX_RUNS_NOTE = 'KFP recurring runs have no run count: max_runs {runs} is left out{end}'


def kfp_recurring_run_path(pipeline_json: str) -> str:
  """Where `compile` writes KFP's recurring run: pipeline.json → pipeline.kfp-recurring-run.json,
  beside pipeline.kfp.yaml."""
  return os.path.splitext(pipeline_json)[0] + '.kfp-recurring-run.json'


def kfp_recurring_run_snippet(recurring: Mapping[str, Any]) -> str:
  """The Python that creates the recurring run of kfp_recurring_run() with KFP's client."""
  arguments = ''.join(
    f'\n  {name}={value!r},' for name, value in recurring['create_recurring_run'].items()
  )
  return (
    'import kfp\n'
    "client = kfp.Client(host='https://<your-kfp-endpoint>')\n"
    f"experiment = client.create_experiment({recurring['experiment_name']!r})  # or the existing one\n"
    f'client.create_recurring_run(\n  experiment.experiment_id,{arguments}\n)'
  )


@dataclasses.dataclass(frozen=True)
class VertexConfig:
  """One deployment: a GCP project and region, the image, resources, and the pipeline's options."""

  # The characters of GCP's rule for a project ID (not its 6 to 30 length).
  project: str = dataclasses.field(
    metadata={CHECK: Pattern(r'[a-z]([a-z0-9-]*[a-z0-9])?', 'a GCP project ID (a-z, 0-9 and -)')}
  )
  region: str = dataclasses.field(metadata={CHECK: REGION})
  # The project's image (Dockerfile), e.g. us-docker.pkg.dev/P/repo/fmnist:TAG.
  image: str = dataclasses.field(metadata={CHECK: Pattern(r'\S+', 'an image reference')})
  service_account: Optional[str] = checked(None, SERVICE_ACCOUNT)
  labels: Dict[str, str] = dataclasses.field(default_factory=dict)
  trainer: TrainerResources = TrainerResources()
  dataflow: Optional[DataflowConfig] = None
  vertex_endpoint: Optional[VertexEndpointConfig] = None
  schedule: Optional[ScheduleConfig] = None  # without it `submit` starts one run
  # Every PipelineConfig option (its `training` included) is a top-level key of the file; the
  # local defaults of these two mean nothing to a deployment, so the file must set them.
  pipeline: PipelineConfig = dataclasses.field(
    default_factory=PipelineConfig,
    metadata={FLATTEN: True, REQUIRED: ('output_root', 'data_dir')},
  )

  @property
  def pipeline_name(self) -> str:
    return self.pipeline.pipeline_name

  @property
  def output_root(self) -> str:
    return self.pipeline.output_root

  @property
  def enable_caching(self) -> bool:
    return self.pipeline.enable_cache

  def schedule_display_name(self) -> str:
    """The schedule's name in the Vertex console and KFP's UI."""
    return self.schedule.display_name or f'{self.pipeline_name}-schedule'

  def kfp_recurring_run(self, package_path: str) -> Dict[str, Any]:
    """The schedule as KFP's: the arguments of kfp.Client().create_recurring_run (after the
    experiment's id) for the package at `package_path`, the experiment, and what differs."""
    schedule = self.schedule
    arguments: Dict[str, Any] = {
      'job_name': self.schedule_display_name(),
      'cron_expression': schedule.kfp_cron(),
      'max_concurrency': schedule.max_concurrent_runs,
      # A paused or late schedule starts one run, not one per missed time (KFP's default
      # backfills): retraining once on the newest data is what a missed week needs.
      'no_catchup': True,
      'pipeline_package_path': package_path,
    }
    for key in ('start_time', 'end_time'):
      if getattr(schedule, key) is not None:
        arguments[key] = rfc3339(getattr(schedule, key))
    notes = [
      f'cron_expression {schedule.kfp_cron()!r} is schedule.cron {schedule.cron!r} with a seconds '
      "field first: KFP's cron (robfig/cron) has 6 fields"
    ]
    if schedule.time_zone != 'UTC':
      notes.append(KFP_TIME_ZONE_NOTE.format(zone=schedule.time_zone))
    if schedule.max_runs is not None:
      end = (
        ', end_time ends it'
        if schedule.end_time
        else '; it runs until disabled (client.disable_recurring_run) or given an end_time'
      )
      notes.append(KFP_MAX_RUNS_NOTE.format(runs=schedule.max_runs, end=end))
    return {
      'experiment_name': self.pipeline_name,
      'create_recurring_run': arguments,
      'notes': notes,
    }

  def vertex_pusher_config(self) -> Optional[Dict[str, Any]]:
    """The custom_config of TFX's Vertex Pusher; None without a vertex_endpoint section."""
    endpoint = self.vertex_endpoint
    if endpoint is None:
      return None
    # Imported here: the rest of this module needs no TFX.
    from tfx.extensions.google_cloud_ai_platform import constants  # pylint: disable=import-outside-toplevel

    return {
      constants.ENABLE_VERTEX_KEY: True,
      constants.VERTEX_REGION_KEY: self.region,
      constants.VERTEX_CONTAINER_IMAGE_URI_KEY: endpoint.serving_image
      or prediction_image(self.region),
      # aiplatform Model.deploy's arguments, plus the project and the endpoint's display name.
      constants.SERVING_ARGS_KEY: {
        'project_id': self.project,
        'endpoint_name': endpoint.endpoint_name,
        'machine_type': endpoint.machine_type,
        'min_replica_count': endpoint.min_replica_count,
        'max_replica_count': endpoint.max_replica_count,
      },
    }

  def worker_pool_specs(self) -> List[Dict[str, Any]]:
    """Vertex AI CustomJob worker pools of a multi-worker Trainer: the chief (pool 0, whose TF_CONFIG
    task is `chief`) and the other workers (`worker`), all on the same machine and image."""
    trainer = self.trainer
    machine_spec: Dict[str, Any] = {'machine_type': trainer.machine_type}
    if trainer.accelerator_type:
      machine_spec.update(
        accelerator_type=trainer.accelerator_type, accelerator_count=trainer.accelerator_count
      )
    # TFX's job client sets each pool's container command (its run_executor with this step's
    # inputs and outputs); the image is ours, so run_fn and its imports are there.
    return [
      {
        'machine_spec': machine_spec,
        'replica_count': replicas,
        'container_spec': {'image_uri': self.image},
      }
      for replicas in (1, trainer.workers - 1)
    ]

  def vertex_training_config(self) -> Optional[Dict[str, Any]]:
    """The custom_config keys of TFX's Vertex Trainer for a multi-worker Trainer; None for one
    worker, whose Trainer runs in its pipeline step's container as before."""
    if self.trainer.workers == 1:
      return None
    # Imported here: the rest of this module needs no TFX.
    from tfx.extensions.google_cloud_ai_platform import constants  # pylint: disable=import-outside-toplevel
    from tfx.extensions.google_cloud_ai_platform.trainer import executor  # pylint: disable=import-outside-toplevel

    job_spec: Dict[str, Any] = {
      'worker_pool_specs': self.worker_pool_specs(),
      # A restarted machine (e.g. after a host failure) cannot rejoin the others' all-reduces:
      # Vertex restarts every replica instead, and each resumes from the chief's checkpoint.
      'scheduling': {'restart_job_on_worker_restart': True},
    }
    if self.service_account:
      job_spec['service_account'] = self.service_account
    return {
      constants.ENABLE_VERTEX_KEY: True,
      constants.VERTEX_REGION_KEY: self.region,
      # A CustomJob; TFX's runner takes `project` out of it before submitting it.
      executor.TRAINING_ARGS_KEY: {
        'project': self.project,
        'job_spec': job_spec,
        'labels': dict(self.labels),
      },
    }

  def pipeline_config(self) -> PipelineConfig:
    """The PipelineConfig create_pipeline takes: the options plus the Dataflow components' args."""
    if self.dataflow is None:
      return self.pipeline
    dataflow_args = tuple(self.dataflow_beam_args())
    return dataclasses.replace(
      self.pipeline,
      component_beam_args={kind: dataflow_args for kind in self.dataflow.components},
    )

  def dataflow_beam_args(self) -> List[str]:
    dataflow = self.dataflow
    return [
      '--runner=DataflowRunner',
      f'--project={self.project}',
      f'--region={dataflow.region or self.region}',
      f'--temp_location={dataflow.temp_location}',
      f'--machine_type={dataflow.machine_type}',
      f'--max_num_workers={dataflow.max_num_workers}',
      f'--disk_size_gb={dataflow.disk_size_gb}',
      # Workers run the same image, so the IDX executor and preprocessing_fn import there too.
      f'--sdk_container_image={self.image}',
      '--experiments=use_runner_v2',
      *(
        [f'--service_account_email={dataflow.service_account}'] if dataflow.service_account else []
      ),
      *([f'--subnetwork={dataflow.subnetwork}'] if dataflow.subnetwork else []),
      *([] if dataflow.use_public_ips else ['--no_use_public_ips']),
      *(f'--labels={key}={value}' for key, value in sorted(dataflow.labels.items())),
      *dataflow.extra_args,
    ]


def _validate_workers(trainer: TrainerResources) -> None:
  if trainer.workers == 1:
    if trainer.machine_type:
      raise VertexConfigError(
        'trainer.machine_type is for workers > 1 (one worker asks for accelerator, CPU and '
        'memory instead)'
      )
    return
  if not trainer.machine_type:
    raise VertexConfigError(
      f'trainer.machine_type is required with workers > 1 (got workers {trainer.workers})'
    )
  for key in ('cpu_limit', 'memory_limit_gb'):
    if getattr(trainer, key) is not None:
      raise VertexConfigError(
        f'trainer.{key} is for one worker; with workers > 1 the machine_type says it'
      )
  # Imported here: loading the client library takes seconds that other configs need not wait.
  from google.cloud.aiplatform_v1.types import AcceleratorType  # pylint: disable=import-outside-toplevel

  known = [
    kind.name for kind in AcceleratorType if kind != AcceleratorType.ACCELERATOR_TYPE_UNSPECIFIED
  ]
  if trainer.accelerator_type and trainer.accelerator_type not in known:
    raise VertexConfigError(
      f'trainer.accelerator_type must be one of {", ".join(known)}, '
      f'got {trainer.accelerator_type!r}'
    )


def _validate_schedule(schedule: ScheduleConfig, now: datetime.datetime) -> None:
  start, end = schedule.start_time, schedule.end_time
  if end is not None and start is not None and end <= start:
    raise VertexConfigError(
      f'schedule.end_time must be after schedule.start_time, got {rfc3339(end)} '
      f'(start {rfc3339(start)})'
    )
  if end is not None and end <= now:
    raise VertexConfigError(
      f'schedule.end_time must be in the future (no run would start), got {rfc3339(end)}'
    )


def _validate(config: VertexConfig) -> VertexConfig:
  if config.schedule is not None:
    _validate_schedule(config.schedule, datetime.datetime.now(datetime.timezone.utc))
  trainer = config.trainer
  _validate_workers(trainer)
  if bool(trainer.accelerator_type) != (trainer.accelerator_count > 0):
    raise VertexConfigError(
      'trainer.accelerator_type and trainer.accelerator_count go together: '
      f'got type {trainer.accelerator_type!r}, count {trainer.accelerator_count}'
    )
  endpoint = config.vertex_endpoint
  if endpoint and endpoint.min_replica_count > endpoint.max_replica_count:
    raise VertexConfigError(
      'vertex_endpoint needs min_replica_count <= max_replica_count: got '
      f'{endpoint.min_replica_count}, {endpoint.max_replica_count}'
    )
  return config


def load(path: str, image: Optional[str] = None) -> VertexConfig:
  """Reads a deployment config file (YAML; JSON is YAML too); `image` overrides its image.

  Any error is one VertexConfigError line naming the file and the key.
  """
  try:
    with open(path) as source:
      try:
        values = yaml.safe_load(source) or {}
      except ValueError as error:  # an unquoted time that does not exist, e.g. 2027-13-01T00:00:00Z
        raise ConfigError(
          f'not valid YAML: a date or time that does not exist ({error})'
        ) from error
    if image:
      values = {**values, 'image': image} if isinstance(values, dict) else values
    return _validate(options.build(VertexConfig, values))
  except OSError as error:
    raise VertexConfigError(f'{path}: {error.strerror}') from error
  except yaml.YAMLError as error:
    mark = getattr(error, 'problem_mark', None)
    where = f' (line {mark.line + 1})' if mark else ''
    raise VertexConfigError(f'{path}: not valid YAML{where}') from error
  except ConfigError as error:
    raise VertexConfigError(f'{path}: {error}') from error


def require_gcs(config: VertexConfig, path: str) -> None:
  """Vertex AI's steps read and write Cloud Storage only: the roots must be gs:// URIs."""
  pipeline = config.pipeline
  for key in ('output_root', 'data_dir', 'serving_root'):
    value = getattr(pipeline, key)
    if value is not None and not value.startswith('gs://'):
      raise VertexConfigError(f'{path}: {key} must be a gs:// URI for Vertex AI, got {value!r}')
