"""Which pushed version is in production, and whether a model is that version."""

import os
import shutil

from components.variant_selection import production


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
