"""The Kubeflow V2 / Vertex AI deployment, offline: the compiled spec, the job request, and one
compiled task run through TFX's container entrypoint the way the step's container runs it."""

import inspect
import json
import os
import subprocess
import sys

from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
import pytest
from tfx.utils import import_utils
import yaml

from components import curated_schema
from pipeline import cli
from pipeline import staging
from pipeline import vertex_config
from pipeline.kubeflow_v2_runner import compile_pipeline
from pipeline.kubeflow_v2_runner import kfp_package_path
from pipeline.pipeline import PREPROCESSING_FN
from pipeline.pipeline import RUN_FN
from pipeline.pipeline import SELECTOR_ID
from pipeline.pipeline import VERTEX_PUSHER_ID
from pipeline.pipeline import evaluator_id
from pipeline.pipeline import trainer_id
from trainer import export
from tests import idx_files
from tests.test_pipeline_e2e import COMPONENTS
from tests.test_pipeline_e2e import VARIANTS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = 'us-docker.pkg.dev/proj/fmnist/pipeline:test'
TRAINERS = tuple(trainer_id(variant) for variant in VARIANTS)
# The Beam steps a `dataflow` section sends to Dataflow by default (tests/test_deploy_config.py
# checks the others stay in their containers).
BEAM_COMPONENTS = ('ImageExampleGen', 'StatisticsGen', 'Transform')
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
  'accuracy_threshold': 0.8,
  'max_accuracy_drop': 0.01,
  'training': {
    'epochs': 3,
    'batch_size': 96,
    'learning_rate': 0.002,
    'precision': 'mixed_float16',
    'jit_compile': True,  # YAML's boolean for 'true'
  },
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
  return spec['root']['dag']['tasks'][task]['inputs']['parameters'][name]['runtimeValue'][
    'constant'
  ]


def test_compiled_spec_parses_into_kfp_pipeline_spec(compiled):
  proto = json_format.ParseDict(compiled, pipeline_spec_pb2.PipelineSpec())
  assert proto.pipeline_info.name == 'fashion-mnist'
  assert set(proto.root.dag.tasks) == set(COMPONENTS)


def test_every_container_step_runs_the_configured_image_and_entrypoint(compiled):
  for task in COMPONENTS:
    container = _executor(compiled, task)['container']
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
  for task in set(COMPONENTS) - set(TRAINERS):
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
    # Pipeline parameters, not fixed here: a value here would contradict the one set per run.
    assert not {'epochs', 'batch_size', 'learning_rate'} & set(trainer_config['training'])
    assert trainer_config['code_fingerprint'] == staging.code_fingerprint()
  assert _parameter(compiled, 'ImageExampleGen', 'input_base') == 'gs://bucket/data'
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
    }
    for name, producer in expected.items():
      assert _artifact_source(compiled, SELECTOR_ID, name) == producer
  assert _artifact_source(compiled, 'Pusher', 'model') == (SELECTOR_ID, 'model')
  assert _artifact_source(compiled, 'Pusher', 'model_blessing') == (SELECTOR_ID, 'blessing')


def test_the_production_baseline_is_the_serving_root_not_a_metadata_query(compiled):
  """The model in production is what Pusher last wrote, read by the selector; no resolver.

  A resolver's compiled query ('newest blessed ModelBlessing', any producer) would take a
  per-variant Evaluator's blessing of a model that was never pushed as the baseline.
  """
  executors = compiled['deploymentSpec']['executors']
  assert [label for label, executor in executors.items() if 'resolver' in executor] == []
  for variant in VARIANTS:
    evaluator_inputs = compiled['root']['dag']['tasks'][evaluator_id(variant)]['inputs']
    assert 'baseline_model' not in evaluator_inputs.get('artifacts', {})
  pushed_to = json.loads(_parameter(compiled, 'Pusher', 'push_destination'))
  assert (
    _parameter(compiled, SELECTOR_ID, 'serving_model_dir')
    == (pushed_to['filesystem']['base_directory'])
  )


PIPELINE_PARAMETERS = {
  'epochs': ('NUMBER_INTEGER', 3),
  'batch_size': ('NUMBER_INTEGER', 96),
  'learning_rate': ('NUMBER_DOUBLE', 0.002),
  'accuracy_threshold': ('NUMBER_DOUBLE', 0.8),
  'max_accuracy_drop': ('NUMBER_DOUBLE', 0.01),
}


def _component_input(spec, task, name):
  return spec['root']['dag']['tasks'][task]['inputs']['parameters'][name]['componentInputParameter']


def test_run_time_options_are_pipeline_parameters_with_the_configs_defaults(compiled):
  declared = compiled['root']['inputDefinitions']['parameters']
  assert {
    name: (spec['parameterType'], spec['defaultValue']) for name, spec in declared.items()
  } == PIPELINE_PARAMETERS
  for name in ('epochs', 'batch_size', 'learning_rate'):
    assert _component_input(compiled, 'TrainingParameters', name) == name
  for name in ('accuracy_threshold', 'max_accuracy_drop'):
    assert _component_input(compiled, SELECTOR_ID, name) == name
  for trainer in TRAINERS:
    assert _artifact_source(compiled, trainer, 'hyperparameters') == (
      'TrainingParameters',
      'hyperparameters',
    )


def test_a_whole_number_in_the_yaml_keeps_a_float_parameter_a_float(tmp_path):
  values = {**VERTEX, 'accuracy_threshold': 1, 'training': {'learning_rate': 1}}
  path = _write_config(str(tmp_path), values)
  spec = compile_pipeline(vertex_config.load(path), str(tmp_path / 'p.json'))['pipelineSpec']
  declared = spec['root']['inputDefinitions']['parameters']
  for name in ('accuracy_threshold', 'learning_rate'):
    assert declared[name]['parameterType'] == 'NUMBER_DOUBLE', name
    assert declared[name]['defaultValue'] == 1.0


def test_the_kfp_package_is_a_pipeline_spec_kfps_client_loads(vertex_config_path, tmp_path):
  """What `kfp.Client().create_run_from_pipeline_package` and the KFP UI's upload read."""
  from kfp import components  # pylint: disable=import-outside-toplevel
  from kfp.client import client  # pylint: disable=import-outside-toplevel

  output = str(tmp_path / 'pipeline.json')
  assert cli.main(['compile', '--config', vertex_config_path, '--output', output]) == 0
  package = kfp_package_path(output)
  assert package == str(tmp_path / 'pipeline.kfp.yaml')
  # The client's own reader: it refuses the Vertex JSON and takes the package.
  with pytest.raises(ValueError, match='should end with one of the following formats'):
    client._extract_pipeline_yaml(output)
  document = client._extract_pipeline_yaml(package)
  with open(output) as vertex_json:
    assert json_format.MessageToDict(document.pipeline_spec) == {
      **json.load(vertex_json)['pipelineSpec'],
      'defaultPipelineRoot': 'gs://bucket/fmnist/pipeline',
    }
  pipeline = components.load_component_from_file(package)
  assert pipeline.name == 'fashion-mnist'
  assert {name: spec.default for name, spec in pipeline.component_spec.inputs.items()} == {
    name: default for name, (_, default) in PIPELINE_PARAMETERS.items()
  }


def test_without_an_endpoint_section_nothing_is_deployed_to_vertex(compiled):
  assert VERTEX_PUSHER_ID not in compiled['root']['dag']['tasks']


def test_an_endpoint_section_deploys_the_pushed_model_to_a_vertex_endpoint(tmp_path):
  from google.cloud import aiplatform  # pylint: disable=import-outside-toplevel
  from google.cloud.aiplatform.constants import prediction  # pylint: disable=import-outside-toplevel

  endpoint = {'endpoint_name': 'fmnist', 'machine_type': 'n1-standard-4', 'max_replica_count': 3}
  path = _write_config(str(tmp_path), {**VERTEX, 'vertex_endpoint': endpoint})
  spec = compile_pipeline(vertex_config.load(path), str(tmp_path / 'p.json'))['pipelineSpec']
  task = spec['root']['dag']['tasks'][VERTEX_PUSHER_ID]
  # After the filesystem push, the record of production, and from the same selection.
  assert set(task['dependentTasks']) == {'Pusher', SELECTOR_ID}
  assert _artifact_source(spec, VERTEX_PUSHER_ID, 'model') == (SELECTOR_ID, 'model')
  assert _artifact_source(spec, VERTEX_PUSHER_ID, 'model_blessing') == (SELECTOR_ID, 'blessing')
  container = _executor(spec, VERTEX_PUSHER_ID)['container']
  executor_class = container['args'][container['args'].index('--executor_class_path') + 1]
  assert executor_class == 'tfx.extensions.google_cloud_ai_platform.pusher.executor.Executor'
  config = json.loads(_parameter(spec, VERTEX_PUSHER_ID, 'custom_config'))
  assert config['ai_platform_enable_vertex'] is True
  assert config['ai_platform_vertex_region'] == 'europe-west4'
  image = config['ai_platform_vertex_container_image_uri']
  assert image == 'europe-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest'
  assert image in prediction.TF_CONTAINER_URIS  # one of Vertex's prebuilt TF Serving images
  serving_args = config['ai_platform_serving_args']
  assert serving_args == {
    'project_id': 'proj',
    'endpoint_name': 'fmnist',
    'machine_type': 'n1-standard-4',
    'min_replica_count': 1,
    'max_replica_count': 3,
  }
  # TFX's executor passes what remains after these keys to aiplatform's Model.deploy.
  deploy_arguments = set(serving_args) - {'project_id', 'endpoint_name'}
  assert deploy_arguments <= set(inspect.signature(aiplatform.Model.deploy).parameters)


def test_replica_counts_out_of_order_are_rejected(tmp_path, capsys):
  endpoint = {'endpoint_name': 'fmnist', 'min_replica_count': 3, 'max_replica_count': 2}
  path = _write_config(str(tmp_path), {**VERTEX, 'vertex_endpoint': endpoint})
  assert cli.main(['compile', '--config', path, '--output', str(tmp_path / 'p.json')]) == 2
  assert 'min_replica_count <= max_replica_count' in capsys.readouterr().err
  assert not os.path.exists(tmp_path / 'p.json')


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


def _submit_dry_run(config_path, tmp_path, *parameters):
  arguments = [f'--parameter={parameter}' for parameter in parameters]
  output = str(tmp_path / 'p.json')
  return cli.main(['submit', '--config', config_path, '--output', output, '--dry-run', *arguments])


def test_submit_dry_run_builds_the_job_request_offline(vertex_config_path, tmp_path, capsys):
  code = _submit_dry_run(vertex_config_path, tmp_path)
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


def test_submit_takes_pipeline_parameters_in_their_declared_types(
  vertex_config_path, tmp_path, capsys
):
  code = _submit_dry_run(vertex_config_path, tmp_path, 'epochs=5', 'learning_rate=0.01')
  out = capsys.readouterr().out
  assert code == 0
  job = json.loads(out[: out.rindex('}') + 1])['pipelineJob']
  assert job['runtimeConfig']['parameterValues'] == {'epochs': 5, 'learning_rate': 0.01}


@pytest.mark.parametrize(
  'parameter, message',
  [
    (
      'epoch=3',
      (
        "unknown pipeline parameter 'epoch'; known: accuracy_threshold, batch_size, epochs, "
        'learning_rate, max_accuracy_drop'
      ),
    ),
    ('epochs=three', "pipeline parameter epochs must be NUMBER_INTEGER, got 'three'"),
    (
      'accuracy_threshold=1.5',
      '--parameter accuracy_threshold=1.5: must be between 0 and 1, got 1.5',
    ),
  ],
)
def test_submit_rejects_a_bad_parameter_in_one_line(
  vertex_config_path, tmp_path, capsys, parameter, message
):
  assert _submit_dry_run(vertex_config_path, tmp_path, parameter) == 2
  assert os.listdir(tmp_path) == [], 'a rejected parameter must write no pipeline files'
  captured = capsys.readouterr()
  # The line before, if any, is the image tag warning (the test image is not tagged with a commit).
  assert captured.err.splitlines()[-1] == f'error: {message}' and captured.out == ''
  assert captured.err.count('error:') == 1


def test_submit_without_google_cloud_credentials_is_one_line_saying_how_to_get_them(
  vertex_config_path, tmp_path, capsys, monkeypatch, traceback_log
):
  # Credentials from a file that is not there: google.auth fails as it does with none at all,
  # and a machine that has some submits nothing.
  monkeypatch.setenv('GOOGLE_APPLICATION_CREDENTIALS', str(tmp_path / 'absent.json'))
  output = str(tmp_path / 'p.json')
  assert cli.main(['submit', '--config', vertex_config_path, '--output', output]) == 1
  error = capsys.readouterr().err.splitlines()[-1]
  assert error.startswith('error: no Google Cloud credentials: run `gcloud auth application-')
  assert traceback_log(error).read_text().startswith('Traceback')


def test_compile_into_a_directory_it_cannot_create_is_one_line(
  vertex_config_path, tmp_path, capsys
):
  (tmp_path / 'a-file').write_text('')
  output = str(tmp_path / 'a-file' / 'p.json')
  assert cli.main(['compile', '--config', vertex_config_path, '--output', output]) == 2
  assert capsys.readouterr().err.splitlines()[-1] == (
    f'error: --output {output}: cannot create {tmp_path / "a-file"} (a file is in the way)'
  )


# --- Compiled tasks run the way Vertex runs them ------------------------------------------------


def pipeline_parameter_values(spec, overrides=None):
  """The values a run gives the pipeline's parameters: the declared defaults, then `overrides`."""
  declared = spec['root'].get('inputDefinitions', {}).get('parameters', {})
  return {**{name: value['defaultValue'] for name, value in declared.items()}, **(overrides or {})}


def _parameter_value(value, pipeline_parameters):
  """What Vertex substitutes for a task's parameter: its constant or the pipeline's value."""
  if 'componentInputParameter' in value:
    return pipeline_parameters[value['componentInputParameter']]
  return value['runtimeValue']['constant']


def _executor_input(spec, task, upstream, task_root, pipeline_parameters):
  """The ExecutorInput Vertex hands a task's container in place of the `{{$}}` placeholder."""
  task_spec = spec['root']['dag']['tasks'][task]
  component = spec['components'][task_spec['componentRef']['name']]
  inputs = task_spec.get('inputs', {})
  return {
    'inputs': {
      'parameterValues': {
        name: _parameter_value(value, pipeline_parameters)
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
        for name, output in component.get('outputDefinitions', {}).get('artifacts', {}).items()
      },
      'outputFile': os.path.join(task_root, 'executor_output.json'),
    },
  }


CONTAINER_ENVIRONMENT = {**os.environ, 'PYTHONPATH': ROOT}


def container_commands(spec, task, upstream, work_dir, parameters=None):
  """The task's driver hook (if any) and container command lines, with the ExecutorInput;
  `parameters` are the run's pipeline parameter values (default: the declared defaults)."""
  invocation = json.dumps(
    _executor_input(
      spec,
      task,
      upstream,
      os.path.join(work_dir, task),
      pipeline_parameter_values(spec, parameters),
    )
  )
  container = _executor(spec, task)['container']
  steps = [container.get('lifecycle', {}).get('preCacheCheck'), container]
  return [
    [sys.executable if part == 'python' else part for part in step['command']]
    + [invocation if arg == '{{$}}' else arg for arg in step['args']]
    for step in filter(None, steps)
  ]


def run_in_container(spec, task, upstream, work_dir, parameters=None):
  """Runs the task's container command (and its driver hook, if any) with its spec's args."""
  task_root = os.path.join(work_dir, task)
  for command in container_commands(spec, task, upstream, work_dir, parameters):
    result = subprocess.run(
      command, cwd=work_dir, env=CONTAINER_ENVIRONMENT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f'{task}: {result.stderr[-3000:]}'
  output_file = os.path.join(task_root, 'executor_output.json')
  if not os.path.exists(output_file):  # a component without outputs, e.g. AnomaliesGate
    return {}
  with open(output_file) as source:
    artifacts = json.load(source).get('artifacts', {})
  return {name: value['artifacts'][0] for name, value in artifacts.items()}


# The variant whose steps the container tests run, and the size of their generated data.
LOCAL_VARIANT = 'none'
LOCAL_TRAIN_COUNT = 200
LOCAL_TEST_COUNT = 20
# Steps whose outputs depend on the data only: run once, shared by the container tests.
DATA_STEPS = ('CuratedSchema', 'ImageExampleGen', 'Transform')


def _compile_local(work_dir, data_dir, **overrides):
  local = {
    **VERTEX,
    'output_root': os.path.join(work_dir, 'out'),
    'data_dir': data_dir,
    'serving_root': None,
    'dataflow': None,
    'variants': [LOCAL_VARIANT],
    **overrides,
  }
  config = vertex_config.load(_write_config(work_dir, local))
  return compile_pipeline(config, os.path.join(work_dir, 'pipeline.json'))['pipelineSpec']


def run_data_steps(work_dir):
  """The generated data dir and the outputs of DATA_STEPS, run through the container
  entrypoint from a one-variant pipeline compiled for local files."""
  data_dir = idx_files.write_fashion_mnist_like(
    os.path.join(work_dir, 'data'), train_count=LOCAL_TRAIN_COUNT, test_count=LOCAL_TEST_COUNT
  )
  spec = _compile_local(work_dir, data_dir)
  upstream = {}
  for task in DATA_STEPS:
    upstream[task] = run_in_container(spec, task, upstream, work_dir)
  return data_dir, upstream


def compile_for_local_files(tmp_path, data_steps, parameters=None, **overrides):
  """The compiled spec of a one-variant pipeline on the shared generated files, and the
  outputs of its steps so far: DATA_STEPS' (shared) and TrainingParameters' (the run's
  `parameters`, default the config's), run through the container entrypoint."""
  data_dir, shared = data_steps
  spec = _compile_local(str(tmp_path), data_dir, **overrides)
  upstream = dict(shared)
  upstream['TrainingParameters'] = run_in_container(
    spec, 'TrainingParameters', upstream, str(tmp_path), parameters
  )
  return spec, upstream


def test_compiled_steps_run_through_the_container_entrypoint(tmp_path, container_data_steps):
  """CuratedSchema, TrainingParameters, ExampleGen (driver + executor) → Transform → Trainer →
  Evaluator → VariantSelector from the compiled spec, on local files, with pipeline parameters
  given at submission as Vertex passes them.

  These carry the module paths (IDX executor, preprocessing_fn, run_fn, the selector's
  executor), the JSON custom_config, the parameters and the selector's per-variant input names,
  which a serialization slip would break only inside the container.
  """
  variant = LOCAL_VARIANT
  submitted = {'epochs': 2, 'batch_size': 8, 'learning_rate': 0.005, 'accuracy_threshold': 0.0}
  spec, upstream = compile_for_local_files(
    tmp_path,
    container_data_steps,
    parameters=submitted,
    train_steps=4,
    training={'batch_size': 16, 'precision': 'float32'},
  )
  schema_file = os.path.join(upstream['CuratedSchema']['schema']['uri'], 'schema.pbtxt')
  with open(schema_file) as copied, open(curated_schema.SCHEMA_FILE) as shipped:
    assert copied.read() == shipped.read()
  for task in (
    trainer_id(variant),
    evaluator_id(variant),
    SELECTOR_ID,
  ):
    upstream[task] = run_in_container(spec, task, upstream, str(tmp_path), submitted)

  examples = upstream['ImageExampleGen']['examples']
  assert json.loads(examples['metadata']['split_names']) == ['train', 'eval', 'test']
  trained = os.path.join(upstream[trainer_id(variant)]['model']['uri'], 'Format-Serving')
  assert os.path.exists(os.path.join(trained, 'saved_model.pb'))
  # The values given at submission, not the config's (batch size 16, 3 epochs, rate 0.002).
  with open(os.path.join(trained, export.MODEL_INFO_FILE)) as model_info:
    training = json.load(model_info)['training']
  assert (training['epochs'], training['batch_size'], training['learning_rate']) == (2, 8, 0.005)
  selected = upstream[SELECTOR_ID]
  assert selected['blessing']['metadata']['blessed'] == 1
  assert os.path.exists(os.path.join(selected['model']['uri'], 'Format-Serving', 'saved_model.pb'))
  with open(os.path.join(selected['report']['uri'], 'report.json')) as report_json:
    comparison = json.load(report_json)
  assert comparison['selected'] == variant
  assert comparison['test']['examples'] == LOCAL_TEST_COUNT
  assert comparison['production'] is None  # nothing pushed to this serving root yet

  # Pusher writes the serving root; the next run's selector takes that version as production
  # and, since its winner is that very model, does not bless it again.
  upstream['Pusher'] = run_in_container(spec, 'Pusher', upstream, str(tmp_path), submitted)
  assert upstream['Pusher']['pushed_model']['metadata']['pushed'] == 1
  (version,) = os.listdir(tmp_path / 'out' / 'serving' / 'fashion_mnist')
  next_run = tmp_path / 'next_run'
  next_run.mkdir()
  reselected = run_in_container(spec, SELECTOR_ID, upstream, str(next_run), submitted)
  assert reselected['blessing']['metadata']['blessed'] == 0
  with open(os.path.join(reselected['report']['uri'], 'report.json')) as report_json:
    comparison = json.load(report_json)
  assert comparison['production']['path'] == str(
    tmp_path / 'out' / 'serving' / 'fashion_mnist' / version
  )
  assert comparison['already_in_production'] is True


def test_spans_compile_with_the_drift_step_and_no_resolver(tmp_path):
  """Data in spans: ExampleGen's pattern keeps {SPAN} for the driver to resolve in the job, and
  the drift check compares two splits of this run's own statistics, so no resolver is needed."""
  config = _write_config(
    str(tmp_path),
    {
      **VERTEX,
      'data_dir': 'gs://bucket/images/span-{SPAN}',
      'train_spans': 2,
      'drift_label_threshold': 0.2,
      'accept_drift': True,
    },
  )
  path = str(tmp_path / 'pipeline.json')
  assert cli.main(['compile', '--config', config, '--output', path]) == 0
  with open(path) as source:
    spec = json.load(source)['pipelineSpec']
  executors = spec['deploymentSpec']['executors']
  assert [label for label, executor in executors.items() if 'resolver' in executor] == []
  tasks = spec['root']['dag']['tasks']
  assert _parameter(spec, 'ImageExampleGen', 'input_base') == 'gs://bucket/images'
  input_config = json.loads(_parameter(spec, 'ImageExampleGen', 'input_config'))
  assert [split['name'] for split in input_config['splits']] == [
    'train',
    'eval',
    'test',
    'previous',
  ]
  assert {split['pattern'] for split in input_config['splits']} == {'span-{SPAN}/*-ubyte.gz'}
  # TFX's file-based ExampleGen driver resolves {SPAN} (newest, numerically) before the step.
  lifecycle = _executor(spec, 'ImageExampleGen')['container']['lifecycle']
  assert 'file_based_example_gen.driver' in json.dumps(lifecycle['preCacheCheck'])
  example_gen_config = json.loads(_parameter(spec, 'ImageExampleGen', 'custom_config'))
  assert example_gen_config['train_spans'] == 2
  assert example_gen_config['span_template'] == 'gs://bucket/images/span-{SPAN}'
  for name in ('statistics', 'baseline_statistics'):
    assert _artifact_source(spec, 'DriftValidator', name) == ('StatisticsGen', 'statistics')
  assert json.loads(_parameter(spec, 'DriftValidator', 'include_split_pairs')) == [
    ['eval', 'previous']
  ]
  assert 'jensenShannonDivergence' in _parameter(
    spec, 'DriftValidator', 'distribution_validator_config'
  )
  assert _artifact_source(spec, 'DriftGate', 'drift') == ('DriftValidator', 'anomalies')
  assert _parameter(spec, 'DriftGate', 'accept_drift') == 1
  assert 'DriftGate' in tasks['Transform']['dependentTasks']
  assert 'previous' in _parameter(spec, 'ExampleValidator', 'exclude_splits')
