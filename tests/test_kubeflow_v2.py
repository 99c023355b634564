"""The Kubeflow V2 / Vertex AI deployment, offline: the compiled spec, the job request, and one
compiled task run through TFX's container entrypoint the way the step's container runs it."""

import json
import os
import subprocess
import sys

from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
import pytest
from tfx.utils import import_utils
import yaml

from pipeline import cli
from pipeline import staging
from pipeline import vertex_config
from pipeline.kubeflow_v2_runner import compile_pipeline
from pipeline.pipeline import PREPROCESSING_FN
from pipeline.pipeline import RUN_FN
from pipeline.pipeline import SELECTOR_ID
from pipeline.pipeline import evaluator_id
from pipeline.pipeline import trainer_id
from tests import idx_files
from tests.test_pipeline_e2e import COMPONENTS
from tests.test_pipeline_e2e import VARIANTS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = 'us-docker.pkg.dev/proj/fmnist/pipeline:test'
TRAINERS = tuple(trainer_id(variant) for variant in VARIANTS)
BEAM_COMPONENTS = (
  'IdxExampleGen',
  'StatisticsGen',
  'Transform',
  *(evaluator_id(variant) for variant in VARIANTS),
)
VERTEX = {
  'project': 'proj',
  'region': 'europe-west4',
  'image': IMAGE,
  'output_root': 'gs://bucket/fmnist',
  'data_dir': 'gs://bucket/data',
  'serving_root': 'gs://bucket/serving',
  'service_account': 'runner@proj.iam.gserviceaccount.com',
  'labels': {'team': 'vision'},
  'variants': list(VARIANTS),
  'training': {'epochs': 3, 'precision': 'mixed_float16', 'jit_compile': 'true'},
  'trainer': {
    'accelerator_type': 'NVIDIA_TESLA_T4',
    'accelerator_count': 2,
    'cpu_limit': 8,
    'memory_limit_gb': 30,
  },
  'dataflow': {
    'temp_location': 'gs://bucket/tmp',
    'machine_type': 'n1-highmem-4',
    'max_num_workers': 7,
  },
}


def _write_config(directory, values):
  path = os.path.join(directory, 'deploy.yaml')
  with open(path, 'w') as out:
    yaml.safe_dump(values, out)
  return path


@pytest.fixture(scope='module')
def vertex_config_path(tmp_path_factory):
  return _write_config(str(tmp_path_factory.mktemp('config')), VERTEX)


@pytest.fixture(scope='module')
def compiled(vertex_config_path, tmp_path_factory):
  path = str(tmp_path_factory.mktemp('compiled') / 'pipeline.json')
  assert cli.main(['compile', '--config', vertex_config_path, '--output', path]) == 0
  with open(path) as source:
    return json.load(source)['pipelineSpec']


def _executor(spec, task):
  label = spec['components'][spec['root']['dag']['tasks'][task]['componentRef']['name']][
    'executorLabel'
  ]
  return spec['deploymentSpec']['executors'][label]


def _parameter(spec, task, name):
  value = spec['root']['dag']['tasks'][task]['inputs']['parameters'][name]
  return value['runtimeValue']['constantValue']['stringValue']


def test_compiled_spec_parses_into_kfp_pipeline_spec(compiled):
  proto = json_format.ParseDict(compiled, pipeline_spec_pb2.PipelineSpec())
  assert proto.pipeline_info.name == 'fashion-mnist'
  # The production-model resolver compiles to two query tasks: latest blessing, then its model.
  resolvers = {'production_model-model-blessing-resolver', 'production_model-model-resolver'}
  assert set(proto.root.dag.tasks) == set(COMPONENTS) | resolvers


def test_every_container_step_runs_the_configured_image_and_entrypoint(compiled):
  for task in COMPONENTS:
    executor = _executor(compiled, task)
    if task == 'schema_importer':
      assert executor['importer']['artifactUri']['constantValue']['stringValue'] == (
        staging.schema_directory('gs://bucket/fmnist/pipeline')
      )
      continue
    container = executor['container']
    assert container['image'] == IMAGE, task
    assert container['command'][-1] == (
      'tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor'
    )
    # The executor class must import in the image, which installs these same packages.
    executor_class = container['args'][container['args'].index('--executor_class_path') + 1]
    import_utils.import_class_by_path(executor_class)


def test_every_trainer_requests_the_configured_gpus_and_machine(compiled):
  for trainer in TRAINERS:
    assert _executor(compiled, trainer)['container']['resources'] == {
      'accelerator': {'type': 'NVIDIA_TESLA_T4', 'count': '2'},
      'cpuLimit': 8.0,
      'memoryLimit': 30.0,
    }
  for task in set(COMPONENTS) - {*TRAINERS, 'schema_importer'}:
    assert 'resources' not in _executor(compiled, task)['container'], task


def test_beam_steps_run_on_dataflow_in_the_same_image(compiled):
  for task in BEAM_COMPONENTS:
    args = _executor(compiled, task)['container']['args']
    for expected in (
      '--runner=DataflowRunner',
      '--project=proj',
      '--region=europe-west4',
      '--temp_location=gs://bucket/tmp',
      '--machine_type=n1-highmem-4',
      '--max_num_workers=7',
      f'--sdk_container_image={IMAGE}',
    ):
      assert expected in args, (task, expected)


def test_module_paths_and_custom_config_travel_in_the_spec(compiled):
  assert _parameter(compiled, 'Transform', 'preprocessing_fn') == PREPROCESSING_FN
  for variant in VARIANTS:
    assert _parameter(compiled, trainer_id(variant), 'run_fn') == RUN_FN
    trainer_config = json.loads(_parameter(compiled, trainer_id(variant), 'custom_config'))
    assert trainer_config['training']['variant'] == variant
    assert trainer_config['training']['precision'] == 'mixed_float16'
    assert trainer_config['training']['jit_compile'] == 'true'
    assert trainer_config['training']['epochs'] == 3
    assert trainer_config['code_fingerprint'] == staging.code_fingerprint()
  assert _parameter(compiled, 'IdxExampleGen', 'input_base') == 'gs://bucket/data'
  assert json.loads(_parameter(compiled, 'Pusher', 'push_destination')) == {
    'filesystem': {'base_directory': 'gs://bucket/serving/fashion_mnist'}
  }


def _artifact_source(spec, task, name):
  source = spec['root']['dag']['tasks'][task]['inputs']['artifacts'][name]['taskOutputArtifact']
  return source['producerTask'], source['outputArtifactKey']


def test_selector_takes_each_variant_through_its_own_inputs(compiled):
  for variant in VARIANTS:
    expected = {
      f'model_{variant}': (trainer_id(variant), 'model'),
      f'model_run_{variant}': (trainer_id(variant), 'model_run'),
      f'evaluation_{variant}': (evaluator_id(variant), 'evaluation'),
      f'blessing_{variant}': (evaluator_id(variant), 'blessing'),
    }
    for name, producer in expected.items():
      assert _artifact_source(compiled, SELECTOR_ID, name) == producer
  assert _artifact_source(compiled, 'Pusher', 'model') == (SELECTOR_ID, 'model')
  assert _artifact_source(compiled, 'Pusher', 'model_blessing') == (SELECTOR_ID, 'blessing')


def test_evaluators_compare_against_the_latest_blessed_model(compiled):
  for variant in VARIANTS:
    producer, _ = _artifact_source(compiled, evaluator_id(variant), 'baseline_model')
    resolver = _executor(compiled, producer)['resolver']
    (query,) = resolver['outputArtifactQueries'].values()
    assert 'schema_title="tfx.Model"' in query['filter']
    assert 'current_model_id' in query['filter']


def test_a_training_variant_in_the_deploy_config_is_rejected(tmp_path, capsys):
  path = _write_config(str(tmp_path), {**VERTEX, 'training': {'variant': 'batch'}})
  assert cli.main(['compile', '--config', path, '--output', str(tmp_path / 'p.json')]) == 2
  assert 'training.variant is set per Trainer' in capsys.readouterr().err


def test_without_dataflow_the_beam_steps_run_in_their_container(tmp_path):
  config = vertex_config.load(_write_config(str(tmp_path), {**VERTEX, 'dataflow': None}))
  assert config.pipeline_config().beam_pipeline_args == ['--direct_running_mode=in_memory']


@pytest.mark.parametrize(
  'change, message',
  [
    (
      {'trainer': {'accelerator_count': 1}},
      'trainer.accelerator_type and trainer.accelerator_count',
    ),
    (
      {'dataflow': {'temp_location': 'gs://b/t', 'max_workers': 3}},
      'unknown key dataflow.max_workers',
    ),
    ({'training': {'epochs': 'ten'}}, "training.epochs must be int, got 'ten'"),
    ({'project': None}, 'project must be str'),
  ],
)
def test_config_errors_name_the_field(tmp_path, capsys, change, message):
  path = _write_config(str(tmp_path), {**VERTEX, **change})
  assert cli.main(['compile', '--config', path, '--output', str(tmp_path / 'p.json')]) == 2
  assert message in capsys.readouterr().err


def test_submit_dry_run_builds_the_job_request_offline(vertex_config_path, tmp_path, capsys):
  code = cli.main(
    ['submit', '--config', vertex_config_path, '--output', str(tmp_path / 'p.json'), '--dry-run']
  )
  out = capsys.readouterr().out
  assert code == 0
  request = json.loads(out[: out.rindex('}') + 1])
  job = request['pipelineJob']
  assert job['runtimeConfig']['gcsOutputDirectory'] == 'gs://bucket/fmnist/pipeline'
  assert job['labels'] == {'team': 'vision'}
  assert job['serviceAccount'] == 'runner@proj.iam.gserviceaccount.com'
  with open(tmp_path / 'p.json') as compiled:
    tasks = json.load(compiled)['pipelineSpec']['root']['dag']['tasks']
  assert all(tasks[name]['cachingOptions'].get('enableCache') for name in COMPONENTS)
  assert request['consoleUrl'] in out and request['consoleUrl'].startswith(
    'https://console.cloud.google.com/vertex-ai/locations/europe-west4/pipelines/runs/'
  )
  assert not os.path.exists(request['schemaStagedTo'])  # nothing was written


def test_submit_rejects_an_unknown_parameter(vertex_config_path, tmp_path, capsys):
  code = cli.main(
    [
      'submit',
      '--config',
      vertex_config_path,
      '--output',
      str(tmp_path / 'p.json'),
      '--dry-run',
      '--parameter',
      'epochs=3',
    ]
  )
  assert code == 2
  assert 'The pipeline parameter epochs is not found' in capsys.readouterr().err


# --- One compiled task chain run the way Vertex runs it ------------------------------------------


def _executor_input(spec, task, upstream, task_root):
  """The ExecutorInput Vertex hands a task's container in place of the `{{$}}` placeholder."""
  task_spec = spec['root']['dag']['tasks'][task]
  component = spec['components'][task_spec['componentRef']['name']]
  inputs = task_spec.get('inputs', {})
  return {
    'inputs': {
      'parameters': {
        name: value['runtimeValue']['constantValue']
        for name, value in inputs.get('parameters', {}).items()
      },
      # The executor output carries uri and properties; Vertex adds the type from the spec.
      'artifacts': {
        name: {
          'artifacts': [
            {
              **upstream[source['taskOutputArtifact']['producerTask']][
                source['taskOutputArtifact']['outputArtifactKey']
              ],
              'type': component['inputDefinitions']['artifacts'][name]['artifactType'],
            }
          ]
        }
        for name, source in inputs.get('artifacts', {}).items()
        # A resolver that found nothing (first run: no production model) leaves the input empty.
        if source['taskOutputArtifact']['producerTask'] in upstream
      },
    },
    'outputs': {
      'artifacts': {
        name: {
          'artifacts': [
            {
              'name': f'{task}-{name}',
              'type': output['artifactType'],
              'uri': os.path.join(task_root, name),
            }
          ]
        }
        for name, output in component['outputDefinitions']['artifacts'].items()
      },
      'outputFile': os.path.join(task_root, 'executor_output.json'),
    },
  }


CONTAINER_ENVIRONMENT = {**os.environ, 'PYTHONPATH': ROOT}


def container_commands(spec, task, upstream, work_dir):
  """The task's driver hook (if any) and container command lines, with the ExecutorInput."""
  invocation = json.dumps(_executor_input(spec, task, upstream, os.path.join(work_dir, task)))
  container = _executor(spec, task)['container']
  steps = [container.get('lifecycle', {}).get('preCacheCheck'), container]
  return [
    [sys.executable if part == 'python' else part for part in step['command']]
    + [invocation if arg == '{{$}}' else arg for arg in step['args']]
    for step in filter(None, steps)
  ]


def run_in_container(spec, task, upstream, work_dir):
  """Runs the task's container command (and its driver hook, if any) with its spec's args."""
  task_root = os.path.join(work_dir, task)
  for command in container_commands(spec, task, upstream, work_dir):
    result = subprocess.run(
      command, cwd=work_dir, env=CONTAINER_ENVIRONMENT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f'{task}: {result.stderr[-3000:]}'
  with open(os.path.join(task_root, 'executor_output.json')) as source:
    artifacts = json.load(source)['artifacts']
  return {name: value['artifacts'][0] for name, value in artifacts.items()}


def compile_for_local_files(tmp_path, variant, train_count, **overrides):
  """The compiled spec of a one-variant pipeline on generated local files, and the staged
  schema as the first upstream output."""
  data_dir = idx_files.write_fashion_mnist_like(
    str(tmp_path / 'data'), train_count=train_count, test_count=20
  )
  local = {
    **VERTEX,
    'output_root': str(tmp_path / 'out'),
    'data_dir': data_dir,
    'serving_root': None,
    'dataflow': None,
    'variants': [variant],
    **overrides,
  }
  config = vertex_config.load(_write_config(str(tmp_path), local))
  spec = compile_pipeline(config, str(tmp_path / 'pipeline.json'))['pipelineSpec']
  schema_uri = staging.stage_schema(config.pipeline_config().pipeline_root)
  return spec, {'schema_importer': {'result': {'uri': schema_uri}}}


def test_compiled_steps_run_through_the_container_entrypoint(tmp_path):
  """ExampleGen (driver + executor) → Transform → Trainer → Evaluator → VariantSelector from the
  compiled spec, on local files.

  These carry the module paths (IDX executor, preprocessing_fn, run_fn, the selector's
  executor), the JSON custom_config and the selector's per-variant input names, which a
  serialization slip would break only inside the container.
  """
  variant = 'none'
  spec, upstream = compile_for_local_files(
    tmp_path,
    variant,
    train_count=120,
    accuracy_threshold=0.0,
    train_steps=4,
    training={'batch_size': 16, 'precision': 'float32'},
  )
  for task in (
    'IdxExampleGen',
    'Transform',
    trainer_id(variant),
    evaluator_id(variant),
    SELECTOR_ID,
  ):
    upstream[task] = run_in_container(spec, task, upstream, str(tmp_path))

  examples = upstream['IdxExampleGen']['examples']
  assert json.loads(examples['metadata']['split_names']) == ['train', 'eval', 'test']
  trained = upstream[trainer_id(variant)]['model']['uri']
  assert os.path.exists(os.path.join(trained, 'Format-Serving', 'saved_model.pb'))
  selected = upstream[SELECTOR_ID]
  assert selected['blessing']['metadata']['blessed'] == 1
  assert os.path.exists(os.path.join(selected['model']['uri'], 'Format-Serving', 'saved_model.pb'))
  with open(os.path.join(selected['report']['uri'], 'report.json')) as report_json:
    comparison = json.load(report_json)
  assert comparison['selected'] == variant and comparison['test']['examples'] == 20
