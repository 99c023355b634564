"""TF Serving's configuration files, read back with TF Serving's protos, and the version policy:
keep the newest N, pin, canary, roll back, and never lose a pushed version."""

import os
from unittest import mock

import pytest
from google.protobuf import text_format
from google.protobuf import descriptor
from tensorflow_serving.config import model_server_config_pb2
from tfx.components.pusher import executor as pusher_executor
from tfx.types import standard_artifacts

from pipeline import cli
from pipeline.config import PipelineConfig
from pipeline.pipeline import create_pipeline
from serving import tf_serving_protos

MODEL_NAME = 'fashion_mnist'


def _push(serving_root, *versions):
  """Version directories as Pusher leaves them: saved_model.pb is what makes one loadable."""
  for version in versions:
    directory = os.path.join(serving_root, MODEL_NAME, str(version))
    os.makedirs(os.path.join(directory, 'variables'), exist_ok=True)
    with open(os.path.join(directory, 'saved_model.pb'), 'wb') as out:
      out.write(b'model %d' % version)
  return str(serving_root)


def _parse(path, message):
  with open(path) as text:
    return text_format.Parse(text.read(), message)


def _model_config(serving_root):
  config = _parse(
    os.path.join(serving_root, 'models.config'), model_server_config_pb2.ModelServerConfig()
  )
  (model,) = config.model_config_list.config
  return model


def _policy(model):
  policy = model.model_version_policy
  which = policy.WhichOneof('policy_choice')
  return (
    which,
    policy.latest.num_versions if which == 'latest' else list(policy.specific.versions),
  )


def _serving_config(serving_root, *options):
  return cli.main(['serving-config', '--serving-root', serving_root, *options])


# From session_bundle_config.proto and monitoring_config.proto at TF Serving's 2.16.1 tag (the
# wheel ships neither): field number and type of every field the server's text parser knows.
TF_SERVING_2_16_1_FIELDS = {
  'BatchingParameters': {
    'max_batch_size': (1, 'Int64Value'),
    'batch_timeout_micros': (2, 'Int64Value'),
    'max_enqueued_batches': (3, 'Int64Value'),
    'num_batch_threads': (4, 'Int64Value'),
    'thread_pool_name': (5, 'StringValue'),
    'allowed_batch_sizes': (6, 'repeated int64'),
    'pad_variable_length_inputs': (7, 'bool'),
    'enable_large_batch_splitting': (8, 'BoolValue'),
    'max_execution_batch_size': (9, 'Int64Value'),
  },
  'MonitoringConfig': {'prometheus_config': (1, 'PrometheusConfig')},
  'PrometheusConfig': {'enable': (1, 'bool'), 'path': (2, 'string')},
}


def _field_type(field):
  if field.message_type:
    return field.message_type.name
  name = {field.TYPE_INT64: 'int64', field.TYPE_BOOL: 'bool', field.TYPE_STRING: 'string'}[
    field.type
  ]
  return f'repeated {name}' if field.label == descriptor.FieldDescriptor.LABEL_REPEATED else name


def test_the_messages_the_wheel_lacks_match_tf_servings_2_16_1_protos():
  batching = tf_serving_protos.BatchingParameters.DESCRIPTOR
  monitoring = tf_serving_protos.MonitoringConfig.DESCRIPTOR
  for message in (
    batching,
    monitoring,
    monitoring.fields_by_name['prometheus_config'].message_type,
  ):
    assert message.full_name == f'tensorflow.serving.{message.name}'
    assert {
      field.name: (field.number, _field_type(field)) for field in message.fields
    } == TF_SERVING_2_16_1_FIELDS[message.name]


def test_the_files_parse_with_tf_servings_protos(tmp_path, capsys):
  root = _push(tmp_path, 1700000100, 1700000200, 1700000300)
  assert _serving_config(root, '--cpu-cores', '8') == 0
  assert 'labels: stable = 1700000300' in capsys.readouterr().out

  model = _model_config(root)
  assert (model.name, model.base_path, model.model_platform) == (
    MODEL_NAME,
    '/models/fashion_mnist',
    'tensorflow',
  )
  assert _policy(model) == ('latest', 2)
  assert dict(model.version_labels) == {'stable': 1700000300}

  monitoring = _parse(os.path.join(root, 'monitoring.config'), tf_serving_protos.MonitoringConfig())
  assert monitoring.prometheus_config.enable
  assert monitoring.prometheus_config.path == '/monitoring/prometheus/metrics'

  for device in ('cpu', 'gpu'):
    batching = _parse(
      os.path.join(root, f'batching_parameters_{device}.txt'),
      tf_serving_protos.BatchingParameters(),
    )
    assert batching.num_batch_threads.value == 8
    assert batching.enable_large_batch_splitting.value
    # TF Serving's checks at load: a request no larger than max_batch_size is split into
    # batches of max_execution_batch_size, and allowed sizes rise to exactly that size.
    assert 0 < batching.max_execution_batch_size.value <= batching.max_batch_size.value
    allowed = list(batching.allowed_batch_sizes)
    assert allowed == sorted(set(allowed))
    assert not allowed or allowed[-1] == batching.max_execution_batch_size.value
    assert batching.max_enqueued_batches.value > 0
  cpu, gpu = (
    _parse(
      os.path.join(root, f'batching_parameters_{device}.txt'),
      tf_serving_protos.BatchingParameters(),
    )
    for device in ('cpu', 'gpu')
  )
  assert cpu.batch_timeout_micros.value == 0 and not cpu.allowed_batch_sizes
  assert gpu.batch_timeout_micros.value > 0 and gpu.allowed_batch_sizes


def test_keep_pin_canary_and_rollback(tmp_path):
  root = _push(tmp_path, 100, 200, 300)
  assert _serving_config(root, '--keep', '3') == 0
  assert _policy(_model_config(root)) == ('latest', 3)

  # A canary beside stable: exactly those two are served, so a push mid-rollout changes nothing.
  assert _serving_config(root, '--stable', '200', '--canary', '300') == 0
  model = _model_config(root)
  assert _policy(model) == ('specific', [200, 300])
  assert dict(model.version_labels) == {'stable': 200, 'canary': 300}

  # Promote the canary: stable moves to 300, which the current config serves.
  assert _serving_config(root, '--pin', '300') == 0
  model = _model_config(root)
  assert (_policy(model), dict(model.version_labels)) == (('specific', [300]), {'stable': 300})


def test_rollback_moves_stable_to_the_previous_loaded_version(tmp_path, capsys):
  root = _push(tmp_path, 100, 200, 300)
  assert _serving_config(root) == 0  # the newest two served, stable on 300
  assert _serving_config(root, '--rollback') == 0
  model = _model_config(root)
  assert (_policy(model), dict(model.version_labels)) == (('specific', [200]), {'stable': 200})

  # 100 is not loaded now: TF Serving would refuse to move `stable` there, so nothing is written.
  before = {name: (tmp_path / name).read_text() for name in os.listdir(root) if '.' in name}
  assert _serving_config(root, '--rollback') == 1
  error = capsys.readouterr().err.strip()
  assert len(error.splitlines()) == 1
  assert '`stable` cannot move from 200 to 100' in error and '--canary 100' in error
  after = {name: (tmp_path / name).read_text() for name in os.listdir(root) if '.' in name}
  assert after == before

  # The two steps the message gives: load 100 beside 200, then move the label.
  assert _serving_config(root, '--stable', '200', '--canary', '100') == 0
  assert _serving_config(root, '--rollback') == 0
  assert dict(_model_config(root).version_labels) == {'stable': 100}
  assert sorted(os.listdir(os.path.join(root, MODEL_NAME))) == ['100', '200', '300']


@pytest.mark.parametrize(
  'options, message',
  [
    (['--pin', '250'], 'version 250 is not pushed (pushed: 100, 200)'),
    (['--stable', '100', '--canary', '7'], '--canary: version 7 is not pushed'),
    (['--rollback'], '--rollback needs a models.config'),
  ],
)
def test_bad_versions_are_one_line_errors_and_write_nothing(
  tmp_path, capsys, traceback_log, options, message
):
  root = _push(tmp_path, 100, 200)
  assert _serving_config(root, *options) == 1
  error = capsys.readouterr().err.strip()
  assert error.startswith('error: ') and len(error.splitlines()) == 1
  assert message in error
  assert not (tmp_path / 'models.config').exists()
  assert traceback_log(error).read_text().startswith('Traceback')  # what the line leaves out


def test_a_serving_root_without_versions_and_a_canary_without_stable_are_refused(tmp_path, capsys):
  assert _serving_config(str(tmp_path / 'missing')) == 1
  assert 'missing/fashion_mnist: no such directory' in capsys.readouterr().err
  (tmp_path / MODEL_NAME / 'not-a-version').mkdir(parents=True)
  assert _serving_config(str(tmp_path)) == 1
  assert 'no pushed versions' in capsys.readouterr().err
  assert _serving_config(_push(tmp_path, 100), '--canary', '100') == 2
  assert '--canary needs --stable' in capsys.readouterr().err


def _pipeline_push_destination(serving_root):
  config = PipelineConfig(output_root=str(serving_root), serving_root=str(serving_root))
  pipeline = create_pipeline(config, code_fingerprint='test')
  (pusher,) = [node for node in pipeline.components if node.id == 'Pusher']
  return pusher.exec_properties['push_destination']  # as JSON, the form the executor gets


def _model_artifacts(tmp_path, name):
  """A blessed Model artifact as the selector hands it to Pusher (SavedModel in Format-Serving)."""
  model = standard_artifacts.Model()
  model.uri = str(tmp_path / name / 'model')
  os.makedirs(os.path.join(model.uri, 'Format-Serving'))
  with open(os.path.join(model.uri, 'Format-Serving', 'saved_model.pb'), 'w') as out:
    out.write(name)
  blessing = standard_artifacts.ModelBlessing()
  blessing.uri = str(tmp_path / name / 'blessing')
  blessing.set_int_custom_property('blessed', 1)
  pushed = standard_artifacts.PushedModel()
  pushed.uri = str(tmp_path / name / 'pushed')
  return model, blessing, pushed


def test_a_push_keeps_every_served_version(tmp_path):
  serving_root = tmp_path / 'serving'
  destination = _pipeline_push_destination(serving_root)
  for push, clock in enumerate((1700000100.5, 1700000200.5)):
    model, blessing, pushed = _model_artifacts(tmp_path, f'run{push}')
    with mock.patch('time.time', return_value=clock):
      pusher_executor.Executor().Do(
        {'model': [model], 'model_blessing': [blessing]},
        {'pushed_model': [pushed]},
        {'push_destination': destination},
      )
  model_dir = serving_root / MODEL_NAME
  assert sorted(os.listdir(model_dir)) == ['1700000100', '1700000200']
  for version, run in (('1700000100', 'run0'), ('1700000200', 'run1')):
    assert (model_dir / version / 'saved_model.pb').read_text() == run
  # serving-config reads them; nothing it writes removes a version either.
  assert _serving_config(str(serving_root), '--pin', '1700000100') == 0
  assert sorted(os.listdir(model_dir)) == ['1700000100', '1700000200']
