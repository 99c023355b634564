"""Where and on what the pipeline runs on Vertex AI / Kubeflow Pipelines, read from one YAML file.

Everything environment-specific lives here; the DAG (pipeline.pipeline) is the
one LocalDagRunner runs. `deploy/vertex.example.yaml` documents every key.
"""

import dataclasses
import os
import typing
from typing import Any, Dict, List, Mapping, Optional, Tuple

import yaml

from pipeline.config import PipelineConfig
from trainer.config import TrainingConfig


class VertexConfigError(ValueError):
  """The deployment config file is missing a field or has a bad one."""


@dataclasses.dataclass(frozen=True)
class DataflowConfig:
  """Runs the Beam steps (ExampleGen, StatisticsGen, Transform, Evaluator) on Dataflow."""

  temp_location: str  # gs:// staging and temp files of the Dataflow jobs
  region: Optional[str] = None  # defaults to the pipeline's region
  machine_type: str = 'n1-standard-4'
  max_num_workers: int = 10
  disk_size_gb: int = 50


@dataclasses.dataclass(frozen=True)
class TrainerResources:
  """What each Trainer step's container gets; Vertex picks a machine that has it."""

  accelerator_type: Optional[str] = None  # e.g. NVIDIA_TESLA_T4, NVIDIA_L4
  accelerator_count: int = 0
  cpu_limit: Optional[float] = None  # vCPUs
  memory_limit_gb: Optional[float] = None


@dataclasses.dataclass(frozen=True)
class VertexEndpointConfig:
  """Uploads every pushed model to the Vertex AI Model Registry and deploys it to an endpoint."""

  endpoint_name: str  # created on the first deploy
  machine_type: str = 'n1-standard-2'
  min_replica_count: int = 1
  max_replica_count: int = 1
  # Default: Vertex's prebuilt TensorFlow CPU prediction container (TF Serving) in the
  # region's multi-region; 2.15 is the newest Vertex offers for a TF 2.16 SavedModel.
  serving_image: Optional[str] = None


def prediction_image(region: str) -> str:
  """Vertex's prebuilt TF 2.15 CPU prediction container in the Artifact Registry near `region`."""
  multi_region = next((name for name in ('europe', 'asia') if region.startswith(name)), 'us')
  return f'{multi_region}-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest'


@dataclasses.dataclass(frozen=True)
class VertexConfig:
  """One deployment: a GCP project and region, its bucket paths, the image and the resources."""

  project: str
  region: str
  image: str  # the project's image (Dockerfile), e.g. us-docker.pkg.dev/P/repo/fmnist:TAG
  output_root: str  # gs://…; the pipeline root is <output_root>/pipeline
  data_dir: str  # gs://… directory with the four Fashion-MNIST IDX gz files
  serving_root: Optional[str] = None  # Pusher's target; defaults to <output_root>/serving
  service_account: Optional[str] = None
  labels: Dict[str, str] = dataclasses.field(default_factory=dict)
  enable_caching: bool = True
  pipeline_name: str = PipelineConfig.pipeline_name
  accuracy_threshold: float = PipelineConfig.accuracy_threshold
  max_accuracy_drop: float = PipelineConfig.max_accuracy_drop
  variants: Tuple[str, ...] = PipelineConfig.variants
  selection_metric: str = PipelineConfig.selection_metric
  train_steps: Optional[int] = None
  training: TrainingConfig = TrainingConfig()
  trainer: TrainerResources = TrainerResources()
  dataflow: Optional[DataflowConfig] = None
  vertex_endpoint: Optional[VertexEndpointConfig] = None

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

  def pipeline_config(self) -> PipelineConfig:
    """The PipelineConfig create_pipeline takes; without Dataflow, Beam runs as it does locally."""
    config = PipelineConfig(
      output_root=self.output_root,
      data_dir=self.data_dir,
      pipeline_name=self.pipeline_name,
      training=self.training,
      variants=tuple(self.variants),
      selection_metric=self.selection_metric,
      train_steps=self.train_steps,
      accuracy_threshold=self.accuracy_threshold,
      max_accuracy_drop=self.max_accuracy_drop,
      enable_cache=self.enable_caching,
      serving_root_override=self.serving_root,
    )
    if self.dataflow is None:
      return config
    return dataclasses.replace(config, beam_pipeline_args=self.dataflow_beam_args())

  def dataflow_beam_args(self) -> List[str]:
    return [
      '--runner=DataflowRunner',
      f'--project={self.project}',
      f'--region={self.dataflow.region or self.region}',
      f'--temp_location={self.dataflow.temp_location}',
      f'--machine_type={self.dataflow.machine_type}',
      f'--max_num_workers={self.dataflow.max_num_workers}',
      f'--disk_size_gb={self.dataflow.disk_size_gb}',
      # Workers run the same image, so the IDX executor and preprocessing_fn import there too.
      f'--sdk_container_image={self.image}',
      '--experiments=use_runner_v2',
    ]


def _build(cls: type, values: Any, where: str) -> Any:
  """`cls` from a mapping, nested dataclasses included; errors name the field by its dotted path."""
  if not isinstance(values, Mapping):
    raise VertexConfigError(f'{where or "the file"} must be a mapping, got {values!r}')
  fields = {field.name: field for field in dataclasses.fields(cls)}
  unknown = sorted(set(values) - set(fields))
  if unknown:
    raise VertexConfigError(
      f'unknown key {where + "." if where else ""}{unknown[0]}; known: {sorted(fields)}'
    )
  hints = typing.get_type_hints(cls)
  built = {}
  for name, value in values.items():
    path = f'{where}.{name}' if where else name
    kind = hints[name]
    if typing.get_origin(kind) is typing.Union and value is not None:
      kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
    if dataclasses.is_dataclass(kind):
      value = _build(kind, value, path)
    elif kind in (int, float, str, bool) and not isinstance(value, kind):
      # YAML reads 4 as int where a float is wanted; any other mismatch is a mistake.
      if not (kind is float and isinstance(value, int) and not isinstance(value, bool)):
        raise VertexConfigError(f'{path} must be {kind.__name__}, got {value!r}')
    built[name] = value
  missing = sorted(
    name
    for name, field in fields.items()
    if name not in built
    and field.default is dataclasses.MISSING
    and field.default_factory is dataclasses.MISSING
  )
  if missing:
    raise VertexConfigError(
      f'missing key {where + "." if where else ""}{missing[0]} (required: {missing})'
    )
  try:
    return cls(**built)
  except (TypeError, ValueError) as error:
    raise VertexConfigError(f'{where or "config"}: {error}') from error


def _validate(config: VertexConfig) -> VertexConfig:
  trainer = config.trainer
  if bool(trainer.accelerator_type) != (trainer.accelerator_count > 0):
    raise VertexConfigError(
      'trainer.accelerator_type and trainer.accelerator_count go together: '
      f'got type {trainer.accelerator_type!r}, count {trainer.accelerator_count}'
    )
  endpoint = config.vertex_endpoint
  if endpoint and not 1 <= endpoint.min_replica_count <= endpoint.max_replica_count:
    raise VertexConfigError(
      'vertex_endpoint needs 1 <= min_replica_count <= max_replica_count: got '
      f'{endpoint.min_replica_count}, {endpoint.max_replica_count}'
    )
  if config.dataflow and not config.dataflow.temp_location.startswith('gs://'):
    raise VertexConfigError(
      f'dataflow.temp_location must be a gs:// URI, got {config.dataflow.temp_location!r}'
    )
  return config


def load(path: str, image: Optional[str] = None) -> VertexConfig:
  """Reads a deployment config file (YAML; JSON is YAML too); `image` overrides its image."""
  with open(path) as source:
    values = yaml.safe_load(source) or {}
  if image:
    values = {**values, 'image': image}
  if isinstance(values.get('training'), Mapping) and 'variant' in values['training']:
    raise VertexConfigError(
      f'{os.path.basename(path)}: training.variant is set per Trainer; list them in `variants`'
    )
  try:
    return _validate(_build(VertexConfig, values, ''))
  except VertexConfigError as error:
    raise VertexConfigError(f'{os.path.basename(path)}: {error}') from error
