"""The production gate end to end on one serving root: VariantSelector's executor decides, TFX's
Pusher executor pushes, `serving-config` changes what TF Serving serves, and the next selector
compares against that. The models are real (tiny) SavedModels; their eval results are given."""

import json
import os
import shutil
from unittest import mock

import numpy as np
import pytest
from tfx.components.pusher import executor as pusher_executor
from tfx.types import standard_artifacts

from components.artifacts import VariantComparison
from components.variant_selection import executor
from components.variant_selection import held_out
from components.variant_selection import keys
from components.variant_selection import report
from components.variant_selection.selection import ACCURACY
from components.variant_selection.selection import CALIBRATION_ERROR
from components.variant_selection.selection import LOSS
from contract.features import DATASET_SPEC_KEY
from contract.features import FASHION_MNIST
from contract.features import MODEL_INFO_FILE
from serving import server_config
from tests.test_seeds import _artifact
from tests.test_seeds import _evaluation
from tests.test_seeds import _model_run
from tests.test_seeds import given_equal_latencies
from tests.test_seeds import selector_properties
from tests.test_serving_config import _pipeline_push_destination

MODEL_NAME = 'fashion_mnist'
EXAMPLES = 1000
# Eval-split correctness of each trained model: A right on the first 850 examples, B on the first
# 900 (50 more: significantly better than A), C on the first 880 (better than A, worse than B).
RIGHT = {'A': 850, 'B': 900, 'C': 880}
# Pusher names a version after the clock: one push per run, a hundred seconds apart.
CLOCK = {'A': 1700000100, 'B': 1700000200, 'C': 1700000300}


def _trained_model(uri, tiny_saved_model, name):
  """A Trainer's model output: the SavedModel, saying which trained model it is; models trained
  apart differ in their graph or weights (here an asset), not only in their model_info."""
  model = _artifact(standard_artifacts.Model, uri)
  serving = os.path.join(model.uri, 'Format-Serving')
  shutil.copytree(tiny_saved_model, serving)
  os.makedirs(os.path.join(serving, 'assets'), exist_ok=True)
  with open(os.path.join(serving, 'assets', 'trained.txt'), 'w') as out:
    out.write(name)
  os.makedirs(os.path.join(serving, os.path.dirname(MODEL_INFO_FILE)), exist_ok=True)
  with open(os.path.join(serving, MODEL_INFO_FILE), 'w') as out:
    info = {'variant': 'layer', 'parameters': 1000, 'trained': name}
    json.dump({**info, DATASET_SPEC_KEY: FASHION_MNIST.to_dict()}, out)
  return model


def _given_results(monkeypatch):
  """Each model's eval results by the model it is (a pushed copy too), and equal latencies."""

  def evaluate(model_dir, files, classes):
    with open(os.path.join(model_dir, MODEL_INFO_FILE)) as info:
      right = RIGHT[json.load(info)['trained']]
    return held_out.HeldOutResult(
      examples=EXAMPLES,
      metrics={ACCURACY: right / EXAMPLES, LOSS: 0.3, CALIBRATION_ERROR: 0.02},
      confusion_matrix=np.diag([1] * len(classes)).tolist(),
      classes=classes,
      correct=tuple(index < right for index in range(EXAMPLES)),
    )

  monkeypatch.setattr(held_out, 'evaluate', evaluate)
  given_equal_latencies(monkeypatch)


def _run(work_dir, serving_root, tiny_saved_model, trained):
  """One pipeline run with one variant, `layer`, trained to model `trained`: the selector's
  executor, then Pusher's with its outputs. Returns the report and the serving root's versions."""
  run_dir = work_dir / trained
  examples = _artifact(standard_artifacts.Examples, run_dir / 'examples')
  examples.split_names = json.dumps(['train', 'eval', 'test'])
  inputs = {
    keys.EXAMPLES: [examples],
    keys.input_key(keys.MODEL, 'layer'): [
      _trained_model(run_dir / 'model', tiny_saved_model, trained)
    ],
    keys.input_key(keys.MODEL_RUN, 'layer'): [_model_run(run_dir / 'run', 100.0)],
    keys.input_key(keys.EVALUATION, 'layer'): [
      _evaluation(run_dir / 'evaluation', {ACCURACY: RIGHT[trained] / EXAMPLES, LOSS: 0.3})
    ],
  }
  outputs = {
    keys.MODEL: [_artifact(standard_artifacts.Model, run_dir / 'out' / 'model')],
    keys.BLESSING: [_artifact(standard_artifacts.ModelBlessing, run_dir / 'out' / 'blessing')],
    keys.REPORT: [_artifact(VariantComparison, run_dir / 'out' / 'report')],
  }
  executor.Executor().Do(inputs, outputs, selector_properties(['layer'], serving_root / MODEL_NAME))
  pushed = _artifact(standard_artifacts.PushedModel, run_dir / 'out' / 'pushed')
  with mock.patch('time.time', return_value=CLOCK[trained] + 0.5):
    pusher_executor.Executor().Do(
      {'model': outputs[keys.MODEL], 'model_blessing': outputs[keys.BLESSING]},
      {'pushed_model': [pushed]},
      {'push_destination': _pipeline_push_destination(serving_root)},
    )
  with open(run_dir / 'out' / 'report' / report.REPORT_JSON) as report_json:
    return json.load(report_json)


def _versions(serving_root):
  """Each pushed version and the trained model it holds."""
  model_dir = serving_root / MODEL_NAME
  versions = {}
  for version in sorted(os.listdir(model_dir)):
    with open(model_dir / version / MODEL_INFO_FILE) as info:
      versions[version] = json.load(info)['trained']
  return versions


@pytest.fixture(scope='module')
def a_then_b(tmp_path_factory, tiny_saved_model):
  """A pushed on an empty serving root, then B, which is significantly better than A."""
  work_dir = tmp_path_factory.mktemp('runs')
  serving_root = work_dir / 'serving'
  with pytest.MonkeyPatch.context() as monkeypatch:
    _given_results(monkeypatch)
    reports = [_run(work_dir, serving_root, tiny_saved_model, trained) for trained in 'AB']
  return serving_root, reports


@pytest.fixture
def after_a_then_b(a_then_b, tmp_path, monkeypatch, tiny_saved_model):
  """A copy of the serving root A and B were pushed to, and a third run on it."""
  serving_root = tmp_path / 'serving'
  shutil.copytree(a_then_b[0], serving_root)
  _given_results(monkeypatch)
  return serving_root, lambda trained: _run(tmp_path, serving_root, tiny_saved_model, trained)


def _serving_config(serving_root, **options):
  server_config.write(str(serving_root), MODEL_NAME, cpu_cores=1, **options)


def _version_dir(serving_root, trained):
  return str(serving_root / MODEL_NAME / str(CLOCK[trained]))


def test_a_challenger_significantly_better_than_production_is_pushed_as_a_new_version(a_then_b):
  serving_root, (first, second) = a_then_b
  assert first['pushed'] and first['production'] is None
  assert second['production']['path'] == _version_dir(serving_root, 'A')
  (layer,) = second['variants']
  assert layer['against_production']['only_this_correct'] == 50
  assert layer['against_production']['only_other_correct'] == 0
  assert second['pushed'] and 'Holm-adjusted p = ' in second['decision']
  assert second['decision'].endswith('is significantly better at level 0.05.')
  assert _versions(serving_root) == {str(CLOCK['A']): 'A', str(CLOCK['B']): 'B'}


def test_after_a_rollback_the_gate_compares_against_the_rolled_back_to_version(after_a_then_b):
  # serving-config serves B; --rollback pins A. C is better than A and worse than B: judged
  # against the newest version (B) it would not even be blessed.
  serving_root, run = after_a_then_b
  _serving_config(serving_root)
  _serving_config(serving_root, rollback=True)
  content = run('C')
  assert content['production']['path'] == _version_dir(serving_root, 'A')
  assert content['production']['reason'].startswith('the `stable` version in ')
  assert content['production']['eval'][ACCURACY] == RIGHT['A'] / EXAMPLES
  (layer,) = content['variants']
  assert layer['blessed'] and content['pushed']
  assert _versions(serving_root)[str(CLOCK['C'])] == 'C'


def test_a_pinned_version_is_production(after_a_then_b):
  serving_root, run = after_a_then_b
  _serving_config(serving_root)
  _serving_config(serving_root, pin=CLOCK['A'])
  content = run('C')
  assert content['production']['path'] == _version_dir(serving_root, 'A')


def test_a_production_version_that_does_not_load_is_skipped_and_named(after_a_then_b):
  # B, the newest, loses its variables: TF Serving cannot load it and keeps serving A.
  serving_root, run = after_a_then_b
  shutil.rmtree(os.path.join(_version_dir(serving_root, 'B'), 'variables'))
  content = run('C')
  assert content['production']['path'] == _version_dir(serving_root, 'A')
  (skipped,) = content['production']['skipped']
  assert skipped.startswith(f'{_version_dir(serving_root, "B")} is not production: TF Serving')
  assert content['pushed']
