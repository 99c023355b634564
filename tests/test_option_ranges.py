"""Every option refuses a bad value before anything runs, on every surface, naming what the user
wrote: the `run` flag, the deploy-YAML key, the flag of another command, the pipeline parameter.

The tables below must have a row per option: an option added without one fails
test_every_option_has_a_row (and its siblings) until its bad value is written down here.
"""

import dataclasses
import types
import typing

import pytest
import yaml

from pipeline import cli
from pipeline import options
from pipeline import vertex_config
from pipeline.config import PipelineConfig
from pipeline.vertex_config import VertexConfig
from tests.test_config_surface import DEPLOY_REQUIRED
from trainer.config import ALIASES
from trainer.config import INTERNAL
from trainer.config import OptionValueError


class Bad(typing.NamedTuple):
  value: typing.Any  # as the deploy YAML holds it; `run` gets its text
  message: str  # what follows the flag or the key
  cli_message: typing.Optional[str] = None  # when argparse words it otherwise (switches)


def _switch(flag):
  return Bad('sometimes', "must be bool, got 'sometimes'", f'ignored explicit argument {flag!r}')


AT_LEAST_1 = Bad(0, 'must be at least 1, got 0')
# Every option of the deploy YAML by its dotted key; the pipeline's and training's are also
# `run` flags.
CONFIG_OPTIONS = {
  'output_root': Bad(' ', "must be a non-empty path, got ' '"),
  'data_dir': Bad('', "must be a non-empty path, got ''"),
  'schema': Bad(' ', "must be a non-empty path, got ' '"),
  'image_size': Bad('28x', "must be N or HxW (positive integers), got '28x'"),
  'channels': Bad(2, 'must be one of 1, 3, got 2'),
  'pipeline_name': Bad(
    'Fashion_MNIST', "must be lowercase letters, digits and hyphens, got 'Fashion_MNIST'"
  ),
  'model_name': Bad('models/fm', "must be letters, digits, _, - and . (no /), got 'models/fm'"),
  'variants': Bad(['batch', 'batch'], "must name each item once (at least one), got 'batch,batch'"),
  'seeds': AT_LEAST_1,
  'training.epochs': AT_LEAST_1,
  'training.batch_size': Bad(-3, 'must be at least 1, got -3'),
  'training.learning_rate': Bad(-1.0, 'must be greater than 0, got -1.0'),
  'training.learning_rate_schedule': Bad('linear', "must be one of constant, cosine, got 'linear'"),
  'training.seed': Bad(-1, 'must be between 0 and 4294967295, got -1'),
  'training.filters': AT_LEAST_1,
  'training.conv_blocks': Bad(5, 'must be between 1 and 4, got 5'),
  'training.hidden_units': Bad(-1, 'must be at least 0, got -1'),
  'training.random_mirror': _switch('sometimes'),
  'training.log_every_n_steps': AT_LEAST_1,
  'training.checkpoint_every_n_steps': AT_LEAST_1,
  'training.precision': Bad(
    'float16', "must be one of auto, float32, mixed_bfloat16, mixed_float16, got 'float16'"
  ),
  'training.jit_compile': Bad('always', "must be one of auto, true, false, got 'always'"),
  'train_steps': AT_LEAST_1,
  'eval_steps': AT_LEAST_1,
  'pixel_scaling': Bad('minmax', "must be one of unit, zscore, got 'minmax'"),
  'eval_percent': Bad(100, 'must be between 1 and 99, got 100'),
  'test_percent': Bad(0, 'must be between 1 and 98, got 0'),
  'bad_images': Bad('ignore', "must be one of stop, skip, got 'ignore'"),
  'max_image_bytes': AT_LEAST_1,
  'max_image_pixels': AT_LEAST_1,
  'train_spans': AT_LEAST_1,
  'drift_label_threshold': Bad(1.5, 'must be between 0 and 1, got 1.5'),
  'drift_image_threshold': Bad(-0.5, 'must be between 0 and 1, got -0.5'),
  'accept_drift': _switch('sometimes'),
  'accuracy_threshold': Bad(1.5, 'must be between 0 and 1, got 1.5'),
  'max_accuracy_drop': Bad(-0.1, 'must be between 0 and 1, got -0.1'),
  'selection_metric': Bad(
    'f1',
    'must be one of sparse_categorical_accuracy, sparse_categorical_crossentropy, '
    "expected_calibration_error, got 'f1'",
  ),
  'significance_level': Bad(1.0, 'must be between 0 and 1 (exclusive), got 1.0'),
  'replace_production': Bad(
    'always', "must be one of significantly_better, not_worse_and_cheaper, got 'always'"
  ),
  'latency_repeats': Bad(1, 'must be at least 2, got 1'),
  'enable_cache': _switch('sometimes'),
  'serving_root': Bad('', "must be a non-empty path, got ''"),
  'beam_workers': AT_LEAST_1,
  # Deployment only.
  'project': Bad('My Project', "must be a GCP project ID (a-z, 0-9 and -), got 'My Project'"),
  'region': Bad('europe', "must be a GCP region such as europe-west4, got 'europe'"),
  'image': Bad('', "must be an image reference, got ''"),
  'service_account': Bad('robot', "must be a service account e-mail address, got 'robot'"),
  'labels': Bad(['team'], "must be a mapping, got ['team']"),
  'trainer.accelerator_type': Bad(4, 'must be str, got 4'),
  'trainer.accelerator_count': Bad(-1, 'must be at least 0, got -1'),
  'trainer.cpu_limit': Bad(0, 'must be greater than 0, got 0.0'),
  'trainer.memory_limit_gb': Bad(-2, 'must be greater than 0, got -2.0'),
  'trainer.workers': AT_LEAST_1,
  'trainer.machine_type': Bad(8, 'must be str, got 8'),
  'dataflow.temp_location': Bad('/tmp/dataflow', "must be a gs:// URI, got '/tmp/dataflow'"),
  'dataflow.region': Bad('west', "must be a GCP region such as europe-west4, got 'west'"),
  'dataflow.machine_type': Bad(4, 'must be str, got 4'),
  'dataflow.max_num_workers': AT_LEAST_1,
  'dataflow.disk_size_gb': AT_LEAST_1,
  'dataflow.service_account': Bad('robot', "must be a service account e-mail address, got 'robot'"),
  'dataflow.subnetwork': Bad(7, 'must be str, got 7'),
  'dataflow.use_public_ips': Bad('no', "must be bool, got 'no'"),
  'dataflow.labels': Bad('team', "must be a mapping, got 'team'"),
  'dataflow.extra_args': Bad('--foo', "must be a list, got '--foo'"),
  'dataflow.components': Bad(
    ['Trainer'],
    "must be one of ImageExampleGen, StatisticsGen, Transform, Evaluator, got 'Trainer'",
  ),
  'vertex_endpoint.endpoint_name': Bad(3, 'must be str, got 3'),
  'vertex_endpoint.machine_type': Bad(3, 'must be str, got 3'),
  'vertex_endpoint.min_replica_count': AT_LEAST_1,
  'vertex_endpoint.max_replica_count': AT_LEAST_1,
  'vertex_endpoint.serving_image': Bad(3, 'must be str, got 3'),
  'schedule.cron': Bad(
    '0 3 * * 7', "must have its day-of-week field within 0-6 or SUN-SAT, got '0 3 * * 7'"
  ),
  'schedule.time_zone': Bad(
    'Berlin', "must be an IANA time zone such as Europe/Berlin or UTC, got 'Berlin'"
  ),
  'schedule.max_concurrent_runs': AT_LEAST_1,
  'schedule.start_time': Bad(
    '2027-01-04 03:00',
    "must be an RFC 3339 time with its offset, e.g. 2027-01-04T03:00:00Z, got '2027-01-04 03:00'",
  ),
  'schedule.end_time': Bad(
    '2027-01-04T03:00:00',
    'must be an RFC 3339 time with its offset, e.g. 2027-01-04T03:00:00Z, '
    "got '2027-01-04T03:00:00'",
  ),
  'schedule.max_runs': AT_LEAST_1,
  'schedule.display_name': Bad('', "must be a name of 1 to 128 characters, got ''"),
}
# Options of local runs only: the deploy YAML refuses them whatever their value, with this.
LOCAL_RUN_ONLY = {
  'beam_workers': 'is an option of local runs (fmnist-pipeline run --beam-workers) only',
}
# The flags of the other commands: (command, flag) → (bad text, message).
COMMAND_FLAGS = {
  ('download', '--data-dir'): ('', "must be a non-empty path, got ''"),
  ('download', '--base-url'): (
    'notaurl',
    "must be an http://, https:// or file:// URL, got 'notaurl'",
  ),
  ('export-images', '--data-dir'): ('', "must be a non-empty path, got ''"),
  ('export-images', '--out'): ('', "must be a non-empty path, got ''"),
  ('export-images', '--per-class'): ('0', 'must be between 1 and 7000, got 0'),
  ('summary', '--output-root'): ('', "must be a non-empty path, got ''"),
  ('history', '--output-root'): ('', "must be a non-empty path, got ''"),
  ('history', '--serving-root'): ('', "must be a non-empty path, got ''"),
  ('history', '--model-name'): ('a/b', "must be letters, digits, _, - and . (no /), got 'a/b'"),
  ('report', '--output-root'): ('', "must be a non-empty path, got ''"),
  ('tensorboard', '--output-root'): ('', "must be a non-empty path, got ''"),
  ('tensorboard', '--port'): ('70000', 'must be between 0 and 65535, got 70000'),
  ('tensorboard', '--host'): ('my host', "must be a value without spaces, got 'my host'"),
  ('predict', '--count'): ('0', 'must be at least 1, got 0'),
  ('predict', '--rest'): ('localhost', "must be HOST:PORT, got 'localhost'"),
  ('predict', '--grpc'): ('localhost:grpc', "must be HOST:PORT, got 'localhost:grpc'"),
  ('predict', '--local'): ('', "must be a non-empty path, got ''"),
  ('predict', '--model-name'): ('../fm', "must be letters, digits, _, - and . (no /), got '../fm'"),
  ('predict', '--model-version'): ('-1', 'must be at least 0, got -1'),
  ('predict', '--model-label'): ('', "must be a value without spaces, got ''"),
  ('predict', '--max-request-bytes'): ('0', 'must be at least 1, got 0'),
  ('predict', '--max-request-images'): ('0', 'must be at least 1, got 0'),
  ('serving-config', '--serving-root'): ('', "must be a non-empty path, got ''"),
  ('serving-config', '--model-name'): (
    'a/b',
    "must be letters, digits, _, - and . (no /), got 'a/b'",
  ),
  ('serving-config', '--base-path'): ('', "must be a non-empty path, got ''"),
  ('serving-config', '--cpu-cores'): ('0', 'must be at least 1, got 0'),
  ('serving-config', '--keep'): ('0', 'must be at least 1, got 0'),
  ('serving-config', '--stable'): ('-1', 'must be at least 0, got -1'),
  ('serving-config', '--pin'): ('-1', 'must be at least 0, got -1'),
  ('serving-config', '--canary'): ('-1', 'must be at least 0, got -1'),
  **{
    (command, flag): row
    for command in ('compile', 'submit')
    for flag, row in (
      ('--config', ('', "must be a non-empty path, got ''")),
      ('--image', ('a b', "must be a value without spaces, got 'a b'")),
      ('--output', ('', "must be a non-empty path, got ''")),
    )
  },
  ('submit', '--parameter'): ('epochs', "expected NAME=VALUE, got 'epochs'"),
}
# What a section needs besides the key under test.
SECTION_REQUIRED = {
  'dataflow': {'temp_location': 'gs://bucket/tmp'},
  'vertex_endpoint': {'endpoint_name': 'fmnist'},
  'schedule': {'cron': '0 3 * * 1'},
}


def _option_paths(cls, prefix=''):
  """The dotted YAML key of every option of `cls`, flattened groups at their owner's level."""
  paths = []
  hints = typing.get_type_hints(cls)
  for field in dataclasses.fields(cls):
    if INTERNAL in field.metadata:
      continue
    kind = hints[field.name]
    if typing.get_origin(kind) is typing.Union:
      (kind,) = [arg for arg in typing.get_args(kind) if arg is not type(None)]
    if dataclasses.is_dataclass(kind):
      nested = prefix if field.metadata.get(options.FLATTEN) else f'{prefix}{field.name}.'
      paths += _option_paths(kind, nested)
    else:
      paths.append(f'{prefix}{field.name}')
  return paths


def _subparsers():
  return cli._parser()._subparsers._group_actions[0].choices


def _run_flags():
  run = _subparsers()['run']
  return {action.option_strings[0] for action in run._actions if action.option_strings}


def test_every_option_has_a_row():
  assert sorted(CONFIG_OPTIONS) == sorted(_option_paths(VertexConfig))


def test_every_flag_of_the_other_commands_has_a_row():
  with_values = {
    (command, action.option_strings[0])
    for command, parser in _subparsers().items()
    if command != 'run'  # its flags are the config's options, above
    for action in parser._actions
    if action.option_strings and action.nargs != 0
  }
  assert sorted(COMMAND_FLAGS) == sorted(with_values)


def _refusal(capsys, argv):
  """The last stderr line of an argparse refusal (exit 2)."""
  with pytest.raises(SystemExit) as exit_:
    cli.main(argv)
  assert exit_.value.code == 2
  err = capsys.readouterr().err
  assert err.startswith(f'usage: fmnist-pipeline {argv[0]}')
  return err.splitlines()[-1]


def _text(value):
  return ','.join(value) if isinstance(value, list) else str(value)


RUN_OPTIONS = [path for path in CONFIG_OPTIONS if options.flag(path.split('.')[-1]) in _run_flags()]


@pytest.mark.parametrize('path', RUN_OPTIONS)
def test_a_bad_run_flag_is_refused_naming_the_flag_and_nothing_is_written(tmp_path, capsys, path):
  bad = CONFIG_OPTIONS[path]
  flag = options.flag(path.split('.')[-1])
  output_root = tmp_path / 'out'
  given = [f'{flag}={_text(bad.value)}'] if bad.cli_message else [flag, _text(bad.value)]
  # Should the flag be taken, the run stops at the empty data directory instead of training.
  safe = {'output_root': str(output_root), 'data_dir': str(tmp_path)}
  elsewhere = [
    word for name, value in safe.items() if name != path for word in (options.flag(name), value)
  ]
  line = _refusal(capsys, ['run', *elsewhere, *given])
  aliases = options.leaf_options(PipelineConfig)[path.split('.')[-1]].metadata.get(ALIASES, ())
  name = f'{flag}/--no-{flag[2:]}' if bad.cli_message else '/'.join([flag, *aliases])
  assert line == f'fmnist-pipeline run: error: argument {name}: {bad.cli_message or bad.message}'
  assert not output_root.exists()


@pytest.mark.parametrize('path', sorted(CONFIG_OPTIONS))
def test_a_bad_deploy_key_is_refused_naming_the_file_and_key(tmp_path, capsys, path):
  bad = CONFIG_OPTIONS[path]
  values = dict(DEPLOY_REQUIRED)
  *sections, key = path.split('.')
  level = values
  for section in sections:
    level = level.setdefault(section, dict(SECTION_REQUIRED.get(section, {})))
  level[key] = bad.value
  config = tmp_path / 'deploy.yaml'
  config.write_text(yaml.safe_dump(values))
  pipeline_json = tmp_path / 'pipeline.json'
  assert cli.main(['compile', '--config', str(config), '--output', str(pipeline_json)]) == 2
  message = LOCAL_RUN_ONLY.get(path, bad.message)
  assert capsys.readouterr().err == f'error: {config}: {path} {message}\n'
  assert not pipeline_json.exists()


@pytest.mark.parametrize('command, flag', sorted(COMMAND_FLAGS))
def test_a_bad_flag_of_another_command_is_refused_naming_the_flag(capsys, command, flag):
  text, message = COMMAND_FLAGS[(command, flag)]
  line = _refusal(capsys, [command, f'{flag}={text}'])
  assert line == f'fmnist-pipeline {command}: error: argument {flag}: {message}'


@pytest.mark.parametrize('text', ['nan', 'inf'])
def test_a_number_that_is_no_number_is_outside_every_range(tmp_path, capsys, text):
  line = _refusal(capsys, ['run', '--data-dir', str(tmp_path), '--learning-rate', text])
  assert line == (
    f'fmnist-pipeline run: error: argument --learning-rate: must be greater than 0, '
    f'got {float(text)!r}'
  )


def test_a_misspelled_flag_is_refused_not_taken_as_a_prefix(tmp_path, capsys):
  """`--epoch 3 --out DIR` was `--epochs 3 --output-root DIR` and started a full run."""
  output_root = tmp_path / 'x'
  # Should the flags be taken, the run stops at the empty data directory instead of training.
  line = _refusal(
    capsys, ['run', '--data-dir', str(tmp_path), '--epoch', '3', '--out', str(output_root)]
  )
  assert line == (
    f'fmnist-pipeline run: error: unrecognized arguments: --epoch 3 --out {output_root} '
    '(did you mean --epochs, --output-root?)'
  )
  assert not output_root.exists()
  # Every command: a prefix of one of its flags is no flag.
  line = _refusal(capsys, ['serving-config', '--cpu', '4'])
  assert line.startswith('fmnist-pipeline serving-config: error: unrecognized arguments: --cpu 4')


# --- Pipeline parameters, set per run on Vertex AI / Kubeflow: checked when their step starts --


def _run_fn_start(name, value):
  from trainer import task  # pylint: disable=import-outside-toplevel

  # Nothing but the parameters: a step that read anything before checking them would fail
  # with an AttributeError instead.
  task.run_fn(types.SimpleNamespace(custom_config={'training': {}}, hyperparameters={name: value}))


def _selector_start(name, value):
  # pylint: disable=import-outside-toplevel
  from components.variant_selection import executor
  from components.variant_selection import keys

  thresholds = {keys.ACCURACY_THRESHOLD: 0.8, keys.MAX_ACCURACY_DROP: 0.0}
  properties = {**thresholds, keys.SIGNIFICANCE_LEVEL: 0.05, name: value}
  executor.Executor().Do({}, {}, properties)


RUN_TIME_PARAMETERS = {
  'epochs': (_run_fn_start, 0, 'must be at least 1, got 0'),
  'batch_size': (_run_fn_start, -3, 'must be at least 1, got -3'),
  'learning_rate': (_run_fn_start, 0.0, 'must be greater than 0, got 0.0'),
  'accuracy_threshold': (_selector_start, 1.5, 'must be between 0 and 1, got 1.5'),
  'max_accuracy_drop': (_selector_start, -0.5, 'must be between 0 and 1, got -0.5'),
}


def test_every_pipeline_parameter_has_a_row():
  from pipeline import pipeline  # pylint: disable=import-outside-toplevel

  expected = {**pipeline.TRAINING_PARAMETERS, **pipeline.GATE_PARAMETERS}
  assert sorted(RUN_TIME_PARAMETERS) == sorted(expected)


@pytest.mark.parametrize('name', sorted(RUN_TIME_PARAMETERS))
def test_a_bad_pipeline_parameter_stops_its_step_at_the_start_naming_it(name):
  start, value, message = RUN_TIME_PARAMETERS[name]
  with pytest.raises(OptionValueError) as error:
    start(name, value)
  assert str(error.value) == f'pipeline parameter {name} {message}'


def test_the_selector_checks_the_significance_level_it_is_given():
  with pytest.raises(OptionValueError, match='significance_level must be between 0 and 1 '):
    _selector_start('significance_level', 0.0)


def test_vertex_config_yaml_errors_name_the_key_not_the_config_field(tmp_path):
  """The loader's own message, before the CLI adds anything: no `config:` prefix."""
  path = tmp_path / 'deploy.yaml'
  path.write_text(yaml.safe_dump({**DEPLOY_REQUIRED, 'significance_level': 2}))
  with pytest.raises(vertex_config.VertexConfigError) as error:
    vertex_config.load(str(path))
  assert str(error.value) == (
    f'{path}: significance_level must be between 0 and 1 (exclusive), got 2.0'
  )
