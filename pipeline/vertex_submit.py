"""Creates a Vertex AI PipelineJob from the compiled pipeline JSON."""

from typing import Any, Dict, Optional

from google.auth import credentials as auth_credentials
from google.cloud import aiplatform

from pipeline import staging
from pipeline.vertex_config import VertexConfig
from pipeline.vertex_config import VertexConfigError


def console_url(config: VertexConfig, job_id: str) -> str:
  return (
    f'https://console.cloud.google.com/vertex-ai/locations/{config.region}/pipelines/runs/'
    f'{job_id}?project={config.project}'
  )


def build_job(
  config: VertexConfig,
  pipeline_json: str,
  parameters: Dict[str, Any],
  credentials: Optional[auth_credentials.Credentials] = None,
) -> aiplatform.PipelineJob:
  """The PipelineJob request; aiplatform checks the JSON, parameters and labels here, offline."""
  pipeline_root = config.pipeline_config().pipeline_root
  if not pipeline_root.startswith('gs://'):
    raise VertexConfigError(
      f'output_root must be a gs:// URI for Vertex AI, got {config.output_root!r}'
    )
  try:
    return aiplatform.PipelineJob(
      display_name=config.pipeline_name,
      template_path=pipeline_json,
      pipeline_root=pipeline_root,
      parameter_values=parameters,
      enable_caching=config.enable_caching,
      labels=config.labels,
      project=config.project,
      location=config.region,
      credentials=credentials,
    )
  except ValueError as error:  # an unknown parameter, a bad label or job id
    raise VertexConfigError(f'Vertex AI rejects the job request: {error}') from error


def submit(config: VertexConfig, pipeline_json: str, parameters: Dict[str, Any]) -> str:
  """Stages the schema the JSON imports, starts the run and returns its console URL."""
  job = build_job(config, pipeline_json, parameters)
  staging.stage_schema(config.pipeline_config().pipeline_root)
  job.submit(service_account=config.service_account)
  return console_url(config, job.job_id)


def dry_run(config: VertexConfig, pipeline_json: str, parameters: Dict[str, Any]) -> Dict[str, Any]:
  """The request `submit` would send, built with anonymous credentials and no network."""
  job = build_job(
    config, pipeline_json, parameters, credentials=auth_credentials.AnonymousCredentials()
  )
  request = job.to_dict()
  request.pop('pipelineSpec')  # the compiled JSON itself; printing it would bury the rest
  if config.service_account:
    request['serviceAccount'] = config.service_account
  return {
    'jobId': job.job_id,
    'consoleUrl': console_url(config, job.job_id),
    'schemaStagedTo': staging.schema_directory(config.pipeline_config().pipeline_root),
    'pipelineJob': request,
  }
