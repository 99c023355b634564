"""Creates a Vertex AI PipelineJob from the compiled pipeline JSON, or with a `schedule` section in
the deploy config a PipelineJobSchedule that creates one at every time its cron names."""

import json
from typing import Any, Dict, List, Mapping, Optional

from google.api_core import exceptions as api_exceptions
from google.auth import credentials as auth_credentials
from google.auth import exceptions as auth_exceptions
from google.cloud import aiplatform
from google.cloud.aiplatform.compat.types import schedule as gca_schedule
from google.cloud.aiplatform.compat.types import schedule_service as gca_schedule_service
from google.protobuf import json_format

from pipeline import options
from pipeline.config import PipelineConfig
from pipeline.vertex_config import VertexConfig
from pipeline.vertex_config import VertexConfigError
from trainer.config import value_problem

# How a `--parameter NAME=VALUE` string becomes the type the compiled spec declares.
_PARSERS = {'NUMBER_INTEGER': int, 'NUMBER_DOUBLE': float, 'STRING': str}


class SubmitError(RuntimeError):
  """Vertex AI did not take the job: no credentials, or the API refused it; the message says why."""


def console_url(config: VertexConfig, job_id: str) -> str:
  return (
    f'https://console.cloud.google.com/vertex-ai/locations/{config.region}/pipelines/runs/'
    f'{job_id}?project={config.project}'
  )


def schedules_url(config: VertexConfig, schedule_id: str = '') -> str:
  """The console page of one schedule, or of the region's schedules without an id."""
  where = f'/{schedule_id}' if schedule_id else ''
  return (
    f'https://console.cloud.google.com/vertex-ai/locations/{config.region}/pipelines/schedules'
    f'{where}?project={config.project}'
  )


def pipeline_parameters(pipeline_json: str) -> Dict[str, str]:
  """The pipeline's parameters (root inputDefinitions) and their types."""
  with open(pipeline_json) as source:
    root = json.load(source)['pipelineSpec']['root']
  parameters = root.get('inputDefinitions', {}).get('parameters', {})
  return {name: spec['parameterType'] for name, spec in parameters.items()}


def parse_parameters(pipeline_json: str, values: Mapping[str, str]) -> Dict[str, Any]:
  """`values` (text from the command line) converted to the declared types; unknown names,
  unparsable values and values outside the option's range are errors that name the parameter and
  what the pipeline takes."""
  declared = pipeline_parameters(pipeline_json)
  option_fields = options.leaf_options(PipelineConfig)
  parsed = {}
  for name, text in values.items():
    if name not in declared:
      raise VertexConfigError(
        f'unknown pipeline parameter {name!r}; known: {", ".join(sorted(declared))}'
      )
    kind = declared[name]
    try:
      parsed[name] = _PARSERS[kind](text)
    except ValueError as error:
      raise VertexConfigError(f'pipeline parameter {name} must be {kind}, got {text!r}') from error
    problem = value_problem(option_fields[name], parsed[name])
    if problem:
      raise VertexConfigError(f'--parameter {name}={text}: {problem}')
  return parsed


def build_job(
  config: VertexConfig,
  pipeline_json: str,
  parameters: Mapping[str, str],
  credentials: Optional[auth_credentials.Credentials] = None,
) -> aiplatform.PipelineJob:
  """The PipelineJob request; aiplatform checks the JSON, parameters and labels here, offline."""
  pipeline_root = config.pipeline_config().pipeline_root
  if not pipeline_root.startswith('gs://'):
    raise VertexConfigError(
      f'output_root must be a gs:// URI for Vertex AI, got {config.output_root!r}'
    )
  parameter_values = parse_parameters(pipeline_json, parameters)
  try:
    return aiplatform.PipelineJob(
      display_name=config.pipeline_name,
      template_path=pipeline_json,
      pipeline_root=pipeline_root,
      parameter_values=parameter_values,
      enable_caching=config.enable_caching,
      labels=config.labels,
      project=config.project,
      location=config.region,
      credentials=credentials,
    )
  except ValueError as error:  # a bad label or job id
    raise VertexConfigError(f'Vertex AI rejects the job request: {error}') from error


def build_schedule(
  config: VertexConfig,
  pipeline_json: str,
  parameters: Mapping[str, str],
  credentials: Optional[auth_credentials.Credentials] = None,
) -> aiplatform.PipelineJobSchedule:
  """The schedule of the PipelineJob build_job makes (its spec, runtime config and labels);
  schedule_arguments() are what PipelineJobSchedule.create adds."""
  job = build_job(config, pipeline_json, parameters, credentials=credentials)
  try:
    return aiplatform.PipelineJobSchedule(
      pipeline_job=job,
      display_name=config.schedule_display_name(),
      credentials=credentials,
      project=config.project,
      location=config.region,
    )
  except ValueError as error:
    raise VertexConfigError(f'Vertex AI rejects the schedule request: {error}') from error


def schedule_arguments(config: VertexConfig) -> Dict[str, Any]:
  """PipelineJobSchedule.create's arguments: when, how often at once, until when, and the runs'
  identity (set on each run's PipelineJob, as PipelineJob.submit's service_account is)."""
  schedule = config.schedule
  return {
    'cron': schedule.vertex_cron(),
    'start_time': schedule.start_time,
    'end_time': schedule.end_time,
    'max_run_count': schedule.max_runs,
    # Runs started at once, and (Vertex counts them apart) runs not yet ended: a run still going
    # when the next time comes counts against both, so that start is skipped.
    'max_concurrent_run_count': schedule.max_concurrent_runs,
    'max_concurrent_active_run_count': schedule.max_concurrent_runs,
    'service_account': config.service_account,
  }


def schedule_request(
  schedule: aiplatform.PipelineJobSchedule, arguments: Mapping[str, Any]
) -> gca_schedule_service.CreateScheduleRequest:
  """The CreateScheduleRequest that `schedule.create(**arguments)` sends: its fields set as
  PipelineJobSchedule._create sets them (tests/test_schedule.py compares the two)."""
  # Its Schedule so far (PipelineJobSchedule's public gca_resource is there only once created).
  built = schedule._gca_resource  # pylint: disable=protected-access
  resource = type(built).deserialize(type(built).serialize(built))  # a copy
  for field, argument in (
    ('cron', 'cron'),
    ('start_time', 'start_time'),
    ('end_time', 'end_time'),
    ('max_run_count', 'max_run_count'),
    ('max_concurrent_run_count', 'max_concurrent_run_count'),
    ('max_concurrent_active_run_count', 'max_concurrent_active_run_count'),
  ):
    if arguments.get(argument):
      setattr(resource, field, arguments[argument])
  if arguments.get('service_account'):
    resource.create_pipeline_job_request.pipeline_job.service_account = arguments['service_account']
  return gca_schedule_service.CreateScheduleRequest(
    parent=resource.create_pipeline_job_request.parent, schedule=resource
  )


def _schedule_id(schedule: aiplatform.PipelineJobSchedule) -> str:
  return schedule.resource_name.rsplit('/', 1)[-1]


def active_schedules(config: VertexConfig) -> List[aiplatform.PipelineJobSchedule]:
  """The region's active schedules with this config's schedule name."""
  found = aiplatform.PipelineJobSchedule.list(
    filter=f'display_name="{config.schedule_display_name()}"',
    project=config.project,
    location=config.region,
  )
  return [
    schedule
    for schedule in found
    if schedule.gca_resource.state == gca_schedule.Schedule.State.ACTIVE
  ]


def _create_schedule(
  config: VertexConfig, pipeline_json: str, parameters: Mapping[str, str], replace: bool
) -> str:
  """Creates the schedule; an active one of the same name is refused (two schedules would each
  retrain), or with `replace` paused once the new one exists. Returns the new one's URL."""
  schedule = build_schedule(config, pipeline_json, parameters)
  active = active_schedules(config)
  if active and not replace:
    raise SubmitError(
      f'schedule {config.schedule_display_name()!r} is already active in {config.project}/'
      f'{config.region} ({schedules_url(config, _schedule_id(active[0]))}): pass '
      '--replace-schedule to pause it once this one is created, or name this one otherwise '
      '(schedule.display_name)'
    )
  schedule.create(**schedule_arguments(config))
  url = schedules_url(config, _schedule_id(schedule))
  for previous in active:
    previous.pause()
  paused = ', '.join(schedules_url(config, _schedule_id(previous)) for previous in active)
  return f'{url} (paused the one it replaces: {paused})' if active else url


def submit(
  config: VertexConfig,
  pipeline_json: str,
  parameters: Mapping[str, str],
  replace_schedule: bool = False,
) -> str:
  """Starts the run, or creates the schedule, and returns its console URL."""
  try:
    if config.schedule is not None:
      return _create_schedule(config, pipeline_json, parameters, replace_schedule)
    job = build_job(config, pipeline_json, parameters)
    job.submit(service_account=config.service_account)
  except auth_exceptions.DefaultCredentialsError as error:
    raise SubmitError(
      'no Google Cloud credentials: run `gcloud auth application-default login` or set '
      'GOOGLE_APPLICATION_CREDENTIALS (`submit --dry-run` needs none)'
    ) from error
  except api_exceptions.GoogleAPICallError as error:
    what = 'schedule' if config.schedule is not None else 'job'
    raise SubmitError(
      f'Vertex AI refused the {what} in {config.project}/{config.region}: {error}'
    ) from error
  return console_url(config, job.job_id)


def dry_run(
  config: VertexConfig, pipeline_json: str, parameters: Mapping[str, str]
) -> Dict[str, Any]:
  """The request `submit` would send, built with anonymous credentials and no network."""
  if config.schedule is not None:
    return _schedule_dry_run(config, pipeline_json, parameters)
  job = build_job(
    config, pipeline_json, parameters, credentials=auth_credentials.AnonymousCredentials()
  )
  request = job.to_dict()
  request.pop('pipelineSpec')  # the compiled JSON itself; printing it would bury the rest
  if config.service_account:
    request['serviceAccount'] = config.service_account
  summary = {
    'jobId': job.job_id,
    'consoleUrl': console_url(config, job.job_id),
    'pipelineJob': request,
  }
  if config.trainer.workers > 1:
    # In the spec left out above: the custom job every Trainer step starts (command set by TFX).
    summary['trainerWorkerPoolSpecs'] = config.worker_pool_specs()
  return summary


def _schedule_dry_run(
  config: VertexConfig, pipeline_json: str, parameters: Mapping[str, str]
) -> Dict[str, Any]:
  schedule = build_schedule(
    config, pipeline_json, parameters, credentials=auth_credentials.AnonymousCredentials()
  )
  request = json_format.MessageToDict(
    schedule_request(schedule, schedule_arguments(config))._pb  # pylint: disable=protected-access
  )
  # The compiled JSON itself; printing it would bury the rest.
  request['schedule']['createPipelineJobRequest']['pipelineJob'].pop('pipelineSpec')
  summary = {
    'createScheduleRequest': request,
    'consoleUrl': schedules_url(config),
  }
  if config.trainer.workers > 1:
    summary['trainerWorkerPoolSpecs'] = config.worker_pool_specs()
  return summary
