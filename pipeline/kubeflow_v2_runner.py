"""Compiles the pipeline for Vertex AI Pipelines and for open-source Kubeflow Pipelines v2.

The DAG is create_pipeline's, the one LocalDagRunner runs; only the
VertexConfig differs. Compiling does no I/O on the gs:// roots, so it needs no
credentials, except for your own images (an adopted `schema`), whose data is listed and
sampled as a local run does (pipeline/datasets.py). Two files come out: Vertex's PipelineJob JSON (display name,
labels, pipelineSpec, runtimeConfig), and next to it the bare PipelineSpec as
YAML, the package KFP's client uploads and runs.
"""

import json
import os
from typing import Any, Dict, Optional

from kfp.pipeline_spec import pipeline_spec_pb2
from tfx import v1 as tfx
import yaml

from pipeline import datasets
from pipeline import staging
from pipeline.pipeline import create_pipeline
from pipeline.pipeline import runtime_parameters
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


def kfp_package_path(output_path: str) -> str:
  """Where the KFP package goes: next to the Vertex JSON, e.g. pipeline.json → pipeline.kfp.yaml."""
  return os.path.splitext(output_path)[0] + '.kfp.yaml'


def declare_parameter_defaults(spec: Dict[str, Any], parameters: Dict[str, Any]) -> None:
  """Gives the root's parameters their defaults, which TFX's compiler leaves out.

  With them in the spec, the Vertex console and KFP's UI show each parameter
  with its value from the config, and a run that sets none of them needs no
  runtimeConfig entries.
  """
  declared = spec['root']['inputDefinitions']['parameters']
  for name, default in parameters.items():
    declared[name]['defaultValue'] = default
    declared[name]['isOptional'] = True


def write_kfp_package(pipeline_job: Dict[str, Any], path: str) -> None:
  """The PipelineSpec inside Vertex's job JSON, with the pipeline root as its default.

  KFP's client takes a bare PipelineSpec (YAML); Vertex sets the root per job
  (runtimeConfig.gcsOutputDirectory), KFP reads it from the spec.
  """
  spec = {
    **pipeline_job['pipelineSpec'],
    'defaultPipelineRoot': pipeline_job['runtimeConfig']['gcsOutputDirectory'],
  }
  with open(path, 'w') as package:
    yaml.safe_dump(spec, package, sort_keys=False)


def compile_pipeline(config: VertexConfig, output_path: str) -> Dict[str, Any]:
  """Writes the Vertex pipeline JSON to `output_path`, the KFP package next to it
  (kfp_package_path), and returns the JSON as a dict."""
  pipeline_config = config.pipeline_config()
  parameters = runtime_parameters(pipeline_config)
  pipeline = create_pipeline(
    pipeline_config,
    dataset=datasets.resolve_for_deployment(pipeline_config),
    code_fingerprint=staging.code_fingerprint(),
    vertex_pusher_config=config.vertex_pusher_config(),
    parameters=parameters,
    vertex_training_config=config.vertex_training_config(),
  )
  if config.trainer.workers == 1:
    # With several, the step only starts and watches the custom job, whose machines have them.
    request_trainer_resources(pipeline, config.trainer)
  runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
    # Schema 2.1 (parameterType, parameterValues) is what KFP 2's client and backend read.
    config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
      default_image=config.image, use_pipeline_spec_2_1=True
    ),
  )
  pipeline_job = runner.run(pipeline, write_out=False)
  declare_parameter_defaults(
    pipeline_job['pipelineSpec'],
    {name: parameter.default for name, parameter in parameters.items()},
  )
  os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
  with open(output_path, 'w') as out:
    json.dump(pipeline_job, out, indent=2, sort_keys=True)
  write_kfp_package(pipeline_job, kfp_package_path(output_path))
  return pipeline_job
