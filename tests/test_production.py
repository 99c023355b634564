"""Which pushed version is in production, and whether a model is that version."""

import glob
import os
import shutil

import pytest

from components.variant_selection import production
from serving import predict
from serving import server_config


def _saved_model(path, weights=b'weights'):
  os.makedirs(os.path.join(path, 'variables'))
  with open(os.path.join(path, 'variables', 'variables.data-00000-of-00001'), 'wb') as out:
    out.write(weights)
  with open(os.path.join(path, production.SAVED_MODEL_FILE), 'wb') as out:
    out.write(b'graph')
  return path


def test_nothing_pushed_yet_means_no_production_model(tmp_path):
  assert production.latest_version(str(tmp_path / 'missing')) is None
  assert production.latest_version(str(tmp_path)) is None


def test_the_highest_complete_numeric_version_is_in_production(tmp_path):
  _saved_model(str(tmp_path / '9'))
  _saved_model(str(tmp_path / '100'))  # numerically newest, as TF Serving orders them
  os.makedirs(tmp_path / '200' / 'variables')  # a push under way: no saved_model.pb yet
  _saved_model(str(tmp_path / 'backup'))
  assert production.latest_version(str(tmp_path)) == str(tmp_path / '100')


def test_a_pushed_copy_has_the_digest_of_its_source_and_other_weights_do_not(tmp_path):
  source = _saved_model(str(tmp_path / 'trainer'))
  pushed = str(tmp_path / 'serving' / '1')
  shutil.copytree(source, pushed)
  assert production.saved_model_digest(pushed) == production.saved_model_digest(source)
  retrained = _saved_model(str(tmp_path / 'other'), weights=b'other weights')
  assert production.saved_model_digest(retrained) != production.saved_model_digest(source)


# --- Which version TF Serving serves: models.config, leading zeros, versions that do not load --


def _push(model_dir, tiny_saved_model, *names):
  for name in names:
    shutil.copytree(tiny_saved_model, os.path.join(model_dir, str(name)))


def _serving_config(serving_root, **options):
  server_config.write(str(serving_root), MODEL_NAME, cpu_cores=1, **options)


MODEL_NAME = 'fashion_mnist'


def test_a_version_with_leading_zeros_resolves_to_its_own_directory(tmp_path, tiny_saved_model):
  model_dir = str(tmp_path / MODEL_NAME)
  _push(model_dir, tiny_saved_model, '0001', '0002')
  assert production.complete_versions(model_dir) == [1, 2]
  assert production.latest_version(model_dir) == os.path.join(model_dir, '0002')
  served = production.in_production(model_dir)
  assert (served.path, served.version) == (os.path.join(model_dir, '0002'), 2)
  # `predict --local DIR --model-version 1` too.
  assert predict.version_dir(model_dir, 1) == os.path.join(model_dir, '0001')
  with pytest.raises(predict.PredictError, match=r'no version 3 \(found: 1, 2\)'):
    predict.version_dir(model_dir, 3)


@pytest.mark.parametrize(
  'options, expected, reason',
  [
    ({}, 3, 'the newest version'),
    ({'rollback': True}, 2, 'the `stable` version'),
    ({'pin': 2}, 2, 'the `stable` version'),
    ({'stable': 2, 'canary': 3}, 2, 'the `stable` version'),
  ],
  ids=['keep 2', 'rollback', 'pin', 'stable and canary'],
)
def test_production_is_the_version_models_config_serves(
  tmp_path, tiny_saved_model, options, expected, reason
):
  model_dir = str(tmp_path / MODEL_NAME)
  _push(model_dir, tiny_saved_model, 1, 2, 3)
  _serving_config(tmp_path)  # serves 2 and 3, stable = 3: what --rollback moves from
  if options:
    _serving_config(tmp_path, **options)
  served = production.in_production(model_dir)
  assert served.path == os.path.join(model_dir, str(expected))
  assert served.reason.startswith(reason)


def test_under_the_latest_policy_a_push_after_serving_config_is_production(
  tmp_path, tiny_saved_model
):
  # The push is served by itself to requests without a label; `stable` waits for serving-config.
  model_dir = str(tmp_path / MODEL_NAME)
  _push(model_dir, tiny_saved_model, 1)
  _serving_config(tmp_path)
  _push(model_dir, tiny_saved_model, 2)
  assert production.in_production(model_dir).path == os.path.join(model_dir, '2')


def _without_variables(path):
  shutil.rmtree(os.path.join(path, 'variables'))


def _truncated(name):
  def truncate(path):
    (file,) = glob.glob(os.path.join(path, name))
    with open(file, 'r+b') as content:
      content.truncate(os.path.getsize(file) // 2)

  return truncate


def _push_under_way(path):
  os.remove(os.path.join(path, production.SAVED_MODEL_FILE))


@pytest.mark.parametrize(
  'break_version',
  [
    _without_variables,
    _truncated(production.SAVED_MODEL_FILE),
    _truncated('variables/variables.data-*'),
    _push_under_way,
  ],
  ids=['no variables', 'truncated graph', 'truncated variables', 'push under way'],
)
def test_a_version_tf_serving_cannot_load_is_skipped_with_one_warning(
  tmp_path, tiny_saved_model, break_version
):
  model_dir = str(tmp_path / MODEL_NAME)
  _push(model_dir, tiny_saved_model, 1, 2, 3)
  _serving_config(tmp_path, pin=3)
  broken = os.path.join(model_dir, '3')
  break_version(broken)
  warnings = []
  served = production.in_production(model_dir, warn=warnings.append)
  # The pinned version fails, so a running server keeps an older one: the newest that loads.
  assert served.path == os.path.join(model_dir, '2')
  (warning,) = warnings
  assert warning.startswith(f'{broken} is not production: TF Serving cannot load it (')


def test_no_version_that_loads_means_no_production_model(tmp_path, tiny_saved_model):
  model_dir = str(tmp_path / MODEL_NAME)
  _push(model_dir, tiny_saved_model, 1)
  _without_variables(os.path.join(model_dir, '1'))
  warnings = []
  assert production.in_production(model_dir, warn=warnings.append) is None
  assert len(warnings) == 1
