"""The selector takes its classes from the data: ExampleGen's dataset.json (else the spec the
models were trained with), names TFMA's per-label slices with them, and stops with one line when
a variant or the production model was trained on other classes."""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_model_analysis.proto import metrics_for_slice_pb2
from tfx.types import standard_artifacts

from components.artifacts import VariantComparison
from components.variant_selection import dataset_facts
from components.variant_selection import executor
from components.variant_selection import held_out
from components.variant_selection import keys
from components.variant_selection import report
from components.variant_selection.selection import ACCURACY
from components.variant_selection.selection import CALIBRATION_ERROR
from components.variant_selection.selection import LOSS
from contract.features import DATASET_RECORD
from contract.features import DATASET_SPEC_KEY
from contract.features import MODEL_INFO_FILE
from contract.features import DatasetSpec
from tests.test_seeds import _artifact
from tests.test_seeds import _model_run
from tests.test_seeds import given_equal_latencies
from tests.test_seeds import selector_properties

SPEC = DatasetSpec(('cat', 'dog', 'parrot'), height=64, width=64, channels=3)
DATASET = {
  'spec': SPEC.to_dict(),
  'data': '/data/pets',
  'layout': 'folders',
  'counts': {
    'train': {'cat': 50, 'dog': 40, 'parrot': 30},
    'eval': {'cat': 10, 'dog': 8, 'parrot': 6},
    'test': {'cat': 10, 'dog': 8, 'parrot': 6},
  },
  'skipped': [{'file': '/data/pets/dog/broken.jpg', 'problem': 'truncated JPEG'}],
  'skipped_count': 1,
}


# --- dataset.json ------------------------------------------------------------------------------


def _write_dataset(directory, value):
  with open(os.path.join(directory, DATASET_RECORD), 'w') as out:
    out.write(value if isinstance(value, str) else json.dumps(value))


def test_dataset_facts_read_the_file_example_gen_writes(tmp_path):
  _write_dataset(tmp_path, DATASET)
  facts = dataset_facts.read(str(tmp_path))
  assert facts.spec == SPEC and facts.classes == SPEC.classes
  assert (facts.data, facts.layout, facts.skipped_count) == ('/data/pets', 'folders', 1)
  assert facts.split_total('train') == 120 and facts.split_total('absent') == 0
  assert dataset_facts.read(str(tmp_path / 'elsewhere')) is None


def test_dataset_facts_list_train_eval_test_first_then_other_splits_by_name():
  counts = {'test': {}, 'validation': {}, 'train': {}, 'extra': {}, 'eval': {}}
  facts = dataset_facts.DatasetFacts(SPEC, counts=counts)
  assert facts.splits == ['train', 'eval', 'test', 'extra', 'validation']


@pytest.mark.parametrize(
  'value, message',
  [
    ('{"spec": ', r'dataset\.json: not JSON: '),
    ({'data': '/data/pets'}, r'dataset\.json: no "spec" key'),
    ({'spec': {'classes': ['cat']}}, r'dataset\.json: "spec" is not a dataset spec: '),
    (
      {**DATASET, 'counts': {'train': {'cat': 5, 'horse': 2}}},
      r"dataset\.json: \"counts\" names classes the spec does not have: \['horse'\]$",
    ),
    ({**DATASET, 'counts': {'train': 5}}, r'dataset\.json: "counts" must map each split to'),
  ],
)
def test_a_bad_dataset_file_is_one_line_naming_it_and_the_key(tmp_path, value, message):
  _write_dataset(tmp_path, value)
  with pytest.raises(ValueError, match=message) as raised:
    dataset_facts.read(str(tmp_path))
  assert str(raised.value).startswith(str(tmp_path)) and '\n' not in str(raised.value)


# --- The selector's executor -------------------------------------------------------------------


def _evaluation_by_label(uri, overall, by_label):
  """An Evaluator output with the overall slice and one slice per label index, as TFMA writes."""
  artifact = _artifact(standard_artifacts.ModelEvaluation, uri)
  with tf.io.TFRecordWriter(os.path.join(artifact.uri, 'metrics-00000-of-00001.tfrecord')) as out:
    for label, metrics in [(None, overall), *by_label.items()]:
      entry = metrics_for_slice_pb2.MetricsForSlice()
      entry.slice_key.SetInParent()
      if label is not None:
        column = entry.slice_key.single_slice_keys.add()
        column.column, column.int64_value = 'label', label
      for name, value in metrics.items():
        metric = entry.metric_keys_and_values.add()
        metric.key.name = name
        metric.value.double_value.value = value
      out.write(entry.SerializeToString())
  return artifact


def _model(uri, classes):
  artifact = _artifact(standard_artifacts.Model, uri)
  serving = os.path.join(artifact.uri, 'Format-Serving')
  os.makedirs(os.path.join(serving, os.path.dirname(MODEL_INFO_FILE)))
  info = {'variant': 'layer', 'parameters': 1000}
  if classes is not None:
    info[DATASET_SPEC_KEY] = DatasetSpec(classes, 64, 64, 3).to_dict()
  with open(os.path.join(serving, MODEL_INFO_FILE), 'w') as out:
    json.dump(info, out)
  return artifact


def _given_results(monkeypatch):
  """Every model right on 90 of 100 eval examples; the test split's confusions by class."""

  def evaluate(model_dir, files, classes):
    return held_out.HeldOutResult(
      examples=100,
      metrics={ACCURACY: 0.9, LOSS: 0.3, CALIBRATION_ERROR: 0.02},
      confusion_matrix=np.diag([9, 8, 6]).tolist(),
      classes=tuple(classes),
      correct=(True,) * 90 + (False,) * 10,
    )

  monkeypatch.setattr(held_out, 'evaluate', evaluate)
  given_equal_latencies(monkeypatch)


def _run(tmp_path, model_classes=SPEC.classes, dataset=DATASET, serving_root=None):
  """The selector on one variant, `layer`; returns the report directory."""
  examples = _artifact(standard_artifacts.Examples, tmp_path / 'examples')
  examples.split_names = json.dumps(['train', 'eval', 'test'])
  if dataset is not None:
    _write_dataset(examples.uri, dataset)
  by_label = {0: {ACCURACY: 0.95}, 1: {ACCURACY: 0.9}, 2: {ACCURACY: 0.75}}
  inputs = {
    keys.EXAMPLES: [examples],
    keys.input_key(keys.MODEL, 'layer'): [_model(tmp_path / 'model', model_classes)],
    keys.input_key(keys.MODEL_RUN, 'layer'): [_model_run(tmp_path / 'run', 100.0)],
    keys.input_key(keys.EVALUATION, 'layer'): [
      _evaluation_by_label(tmp_path / 'evaluation', {ACCURACY: 0.9, LOSS: 0.3}, by_label)
    ],
  }
  outputs = {
    keys.MODEL: [_artifact(standard_artifacts.Model, tmp_path / 'out' / 'model')],
    keys.BLESSING: [_artifact(standard_artifacts.ModelBlessing, tmp_path / 'out' / 'blessing')],
    keys.REPORT: [_artifact(VariantComparison, tmp_path / 'out' / 'report')],
  }
  serving_root = serving_root or tmp_path / 'serving'
  executor.Executor().Do(inputs, outputs, selector_properties(['layer'], serving_root / 'pets'))
  return tmp_path / 'out' / 'report'


def test_the_selector_names_the_classes_of_the_data_in_its_report(tmp_path, monkeypatch):
  _given_results(monkeypatch)
  report_dir = _run(tmp_path)
  content = json.loads((report_dir / report.REPORT_JSON).read_text())
  assert content['variants'][0]['per_class_accuracy'] == {'cat': 0.95, 'dog': 0.9, 'parrot': 0.75}
  assert list(content['test']['per_class_accuracy']) == ['cat', 'dog', 'parrot']
  assert content['dataset'] == DATASET
  markdown = (report_dir / report.REPORT_MARKDOWN).read_text()
  assert markdown.splitlines()[2] == (
    '**Data:** 3 classes from `/data/pets` (folders), every image decoded to 64×64 RGB; '
    'examples: train 120, eval 24, test 24.'
  )
  assert '1 bad image skipped (`bad_images: skip`):' in markdown
  assert '| layer | 0.950 | 0.900 | 0.750 |' in markdown


def test_without_dataset_json_the_classes_come_from_the_models(tmp_path, monkeypatch):
  _given_results(monkeypatch)
  report_dir = _run(tmp_path, dataset=None)
  content = json.loads((report_dir / report.REPORT_JSON).read_text())
  assert content['dataset']['spec']['classes'] == ['cat', 'dog', 'parrot']
  assert '**Data:** 3 classes, every image decoded to 64×64 RGB.' in (
    (report_dir / report.REPORT_MARKDOWN).read_text()
  )


def test_without_any_class_names_the_selector_stops_with_one_line(tmp_path, monkeypatch):
  _given_results(monkeypatch)
  with pytest.raises(ValueError, match=r'^no class names: neither \S+/dataset\.json nor variant'):
    _run(tmp_path, model_classes=None, dataset=None)


def test_a_variant_trained_on_other_classes_stops_the_selector(tmp_path, monkeypatch):
  _given_results(monkeypatch)
  with pytest.raises(
    ValueError,
    match=r"^variant layer was trained on the classes \['cat', 'dog'\], the examples have "
    r"\['cat', 'dog', 'parrot'\]$",
  ):
    _run(tmp_path, model_classes=('cat', 'dog'))


def test_a_production_model_of_other_classes_stops_the_selector(
  tmp_path, monkeypatch, tiny_saved_model
):
  _given_results(monkeypatch)
  version = tmp_path / 'serving' / 'pets' / '1'
  shutil.copytree(tiny_saved_model, version)
  os.makedirs(version / os.path.dirname(MODEL_INFO_FILE))
  with open(version / MODEL_INFO_FILE, 'w') as out:
    json.dump({DATASET_SPEC_KEY: DatasetSpec(('cat', 'dog'), 64, 64, 3).to_dict()}, out)
  with pytest.raises(
    ValueError,
    match=rf"^the production model {version} serves the classes \['cat', 'dog'\], the examples "
    r"have \['cat', 'dog', 'parrot'\]: serve this data under another serving model directory$",
  ):
    _run(tmp_path)
