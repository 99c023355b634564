"""Compiles the pipeline to the KFP v2 pipeline JSON that Vertex AI Pipelines and KFP v2 run.

The DAG is create_pipeline's, the one LocalDagRunner runs; only the
VertexConfig differs. Compiling does no I/O on the gs:// roots, so it needs no
credentials: the schema's gs:// location is computed from its content hash
and `fmnist-pipeline submit` copies it there (staging.stage_schema).
"""

import os
from typing import Any, Dict, Optional

from kfp.pipeline_spec import pipeline_spec_pb2
from tfx import v1 as tfx

from pipeline import staging
from pipeline.pipeline import create_pipeline
from pipeline.vertex_config import TrainerResources
from pipeline.vertex_config import VertexConfig

ResourceSpec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec


def resource_spec(resources: TrainerResources) -> Optional[ResourceSpec]:
  """The container resource request for a Trainer step; None when nothing is asked for."""
  spec = ResourceSpec()
  if resources.accelerator_type:
    spec.accelerator.type = resources.accelerator_type
    spec.accelerator.count = resources.accelerator_count
  if resources.cpu_limit:
    spec.cpu_limit = resources.cpu_limit
  if resources.memory_limit_gb:
    spec.memory_limit = resources.memory_limit_gb
  return spec if spec.ByteSize() else None


def request_trainer_resources(pipeline: tfx.dsl.Pipeline, resources: TrainerResources) -> None:
  """Gives every Trainer in the DAG the configured accelerator, CPU and memory."""
  spec = resource_spec(resources)
  if spec is None:
    return
  for component in pipeline.components:
    if isinstance(component, tfx.components.Trainer):
      component.with_platform_config(spec)


def compile_pipeline(config: VertexConfig, output_path: str) -> Dict[str, Any]:
  """Writes the pipeline JSON to `output_path` and returns it as a dict."""
  pipeline_config = config.pipeline_config()
  pipeline = create_pipeline(
    pipeline_config,
    schema_uri=staging.schema_directory(pipeline_config.pipeline_root),
    code_fingerprint=staging.code_fingerprint(),
  )
  request_trainer_resources(pipeline, config.trainer)
  runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
    config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=config.image),
    output_dir=os.path.dirname(os.path.abspath(output_path)),
    output_filename=os.path.basename(output_path),
  )
  return runner.run(pipeline)
