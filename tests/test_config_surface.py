"""One config surface: every pipeline and training option is a `run` flag and a deploy-YAML key of
the same name (a local-only one is refused by the YAML), documented once with its default; --quick
never drops an explicit value."""

import dataclasses
import os
import typing

import pytest
import yaml

from pipeline import cli
from pipeline import vertex_config
from pipeline.config import PipelineConfig
from trainer.config import TrainingConfig

# Fields that are deliberately no option, and why: reviewed here, so a new field is an option
# (on both surfaces) unless it is added to this list.
NOT_OPTIONS = {
  (TrainingConfig, 'variant'),  # one per Trainer, from `variants`
  (PipelineConfig, 'training'),  # a group: its fields are the options
  (PipelineConfig, 'beam_pipeline_args'),  # from the deploy config's dataflow section
  (PipelineConfig, 'component_beam_args'),  # idem
}
DEPLOY_REQUIRED = {
  'project': 'proj',
  'region': 'europe-west4',
  'image': 'us-docker.pkg.dev/proj/fmnist/pipeline:0123abc',
  'output_root': 'gs://bucket/fmnist',
  'data_dir': 'gs://bucket/data',
}


def _options():
  """(path, field, type) of every option, training options as ('training', name)."""
  found = []
  for cls, path in ((PipelineConfig, ()), (TrainingConfig, ('training',))):
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
      if (cls, field.name) not in NOT_OPTIONS:
        found.append((path + (field.name,), field, hints[field.name]))
  return found


OPTIONS = _options()


def _other_value(field, kind):
  """A valid value different from the field's default, as the YAML value and the flag text."""
  default = (
    field.default if field.default_factory is dataclasses.MISSING else field.default_factory()
  )
  choices = field.metadata.get('choices')
  if typing.get_origin(kind) is typing.Union:  # Optional[X]
    (kind,) = [arg for arg in typing.get_args(kind) if arg is not type(None)]
  if typing.get_origin(kind) is tuple:
    value = tuple(reversed(choices[:2]))
    return value, ','.join(value)
  if choices:
    value = next(choice for choice in choices if choice != default)
  elif kind is bool:
    value = not default
  elif kind is int:
    value = (default or 0) + 1
  elif kind is float:
    value = default + 0.125
  elif field.name.endswith(('_root', '_dir')):
    value = 'gs://bucket/elsewhere'  # paths stay as given when they are URIs
  elif field.name == 'image_size':
    value = '32x48'
  else:
    value = 'other-name'
  return value, str(value)


def _get(config, path):
  for name in path:
    config = getattr(config, name)
  return config


def _cli_config(*argv):
  return cli.config_from_args(cli._parser().parse_args(['run', *argv]))


def _load_yaml(tmp_path, values):
  path = tmp_path / 'deploy.yaml'
  path.write_text(yaml.safe_dump(values))
  return vertex_config.load(str(path))


def _flag(field, text):
  name = '--' + field.name.replace('_', '-')
  if text in ('True', 'False'):
    return [name if text == 'True' else '--no-' + name[2:]]
  return [name, text]


@pytest.mark.parametrize('path, field, kind', OPTIONS, ids=['.'.join(o[0]) for o in OPTIONS])
def test_every_option_is_reachable_from_the_cli_and_the_deploy_yaml(tmp_path, path, field, kind):
  value, text = _other_value(field, kind)
  assert _get(_cli_config(*_flag(field, text)), path) == value

  values = dict(DEPLOY_REQUIRED)
  nested = values.setdefault('training', {}) if path[0] == 'training' else values
  nested[path[-1]] = list(value) if isinstance(value, tuple) else value
  if 'local_only' in field.metadata:  # a local run's option: a deployment must not think it set it
    with pytest.raises(vertex_config.VertexConfigError) as error:
      _load_yaml(tmp_path, values)
    assert (
      str(error.value) == f'{tmp_path / "deploy.yaml"}: {path[-1]} is an option of local runs '
      f'(fmnist-pipeline run --{path[-1].replace("_", "-")}) only'
    )
    return
  assert _get(_load_yaml(tmp_path, values).pipeline, path) == value


def _run_actions():
  run = cli._parser()._subparsers._group_actions[0].choices['run']
  return {action.option_strings[0]: action for action in run._actions if action.option_strings}


def test_every_flag_says_what_it_does_and_its_default():
  actions = _run_actions()
  for path, field, _ in OPTIONS:
    action = actions['--' + path[-1].replace('_', '-')]
    assert field.metadata['doc'] in action.help, path
    assert '(default: ' in action.help, path
  for flag, action in actions.items():
    if flag not in ('-h', '--quick'):
      assert '(default: ' in action.help, flag
  assert '(default: 10)' in actions['--epochs'].help
  assert '(default: none,batch,layer,weight,keras_batch,keras_layer)' in actions['--variants'].help


def test_a_new_training_field_appears_on_both_surfaces(tmp_path, monkeypatch):
  """What issue 14's new TrainingConfig fields rely on: no CLI or loader code to write."""
  extended = dataclasses.make_dataclass(
    'TrainingConfig',
    [('label_smoothing', float, dataclasses.field(default=0.0, metadata={'doc': 'smoothing'}))],
    bases=(TrainingConfig,),
    frozen=True,
  )
  annotations = {**PipelineConfig.__annotations__, 'training': extended}
  monkeypatch.setattr(PipelineConfig, '__annotations__', annotations)
  config = _cli_config('--label-smoothing', '0.1')
  assert config.training.label_smoothing == 0.1
  loaded = _load_yaml(tmp_path, {**DEPLOY_REQUIRED, 'training': {'label_smoothing': 0.2}})
  assert loaded.pipeline.training.label_smoothing == 0.2


def test_quick_presets_yield_to_explicit_flags():
  quick = _cli_config('--quick')
  assert (quick.training.epochs, quick.train_steps, quick.accuracy_threshold) == (1, 200, 0.7)
  assert quick.training.log_every_n_steps == 50
  explicit = _cli_config(
    '--quick', '--epochs', '5', '--train-steps', '50', '--accuracy-threshold', '0.6'
  )
  assert (explicit.training.epochs, explicit.train_steps, explicit.accuracy_threshold) == (
    5,
    50,
    0.6,
  )
  assert explicit.training.log_every_n_steps == 50  # the preset still fills what was not given
  plain = _cli_config()
  assert (plain.training.epochs, plain.train_steps, plain.accuracy_threshold) == (10, None, 0.85)


def test_flags_build_the_config_the_trainer_gets():
  config = _cli_config(
    '--variants', 'none, weight', '--learning-rate', '0.01', '--no-random-mirror'
  )
  assert config.variants == ('none', 'weight')
  assert config.training_for('weight') == dataclasses.replace(
    TrainingConfig(), variant='weight', learning_rate=0.01, random_mirror=False
  )
  assert config.output_root == os.path.abspath('outputs')


def test_a_bad_flag_value_names_the_flag(capsys):
  with pytest.raises(SystemExit):
    cli._parser().parse_args(['run', '--variants', 'batch,group'])
  assert (
    'argument --variants: unknown group; choose from none, batch, layer' in capsys.readouterr().err
  )
  with pytest.raises(SystemExit):
    cli._parser().parse_args(['run', '--pixel-scaling', 'minmax'])
  assert "--pixel-scaling: must be one of unit, zscore, got 'minmax'" in capsys.readouterr().err


def test_an_unknown_yaml_key_lists_the_known_ones(tmp_path):
  with pytest.raises(vertex_config.VertexConfigError) as error:
    _load_yaml(tmp_path, {**DEPLOY_REQUIRED, 'learning_rate': 0.1})
  message = str(error.value)
  assert message.startswith(
    f'{tmp_path / "deploy.yaml"}: unknown key learning_rate '
    '(an option of training: put it under training:); known: '
  )
  for key in ('project', 'dataflow', 'accuracy_threshold', 'eval_percent', 'training'):
    assert key in message
  with pytest.raises(vertex_config.VertexConfigError, match='unknown key training.epoch; known: '):
    _load_yaml(tmp_path, {**DEPLOY_REQUIRED, 'training': {'epoch': 3}})
