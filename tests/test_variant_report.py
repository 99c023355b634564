"""The calibration metric and the comparison report files a user opens after a run."""

import json
import re

import numpy as np
import pytest

from components.variant_selection import report
from components.variant_selection.held_out import HeldOutResult
from components.variant_selection.selection import ACCURACY
from components.variant_selection.selection import CALIBRATION_ERROR
from components.variant_selection.selection import LOSS
from components.variant_selection.selection import Candidate
from components.variant_selection.selection import ProductionModel
from components.variant_selection.selection import VariantResult
from components.variant_selection.selection import select
from serving.latency import Latency
from trainer.calibration import ExpectedCalibrationError
from trainer.features import CLASS_NAMES


def _reference_ece(probabilities, labels, bins):
  confidence = probabilities.max(axis=1)
  correct = probabilities.argmax(axis=1) == labels
  total = 0.0
  for low in np.arange(bins) / bins:
    in_bin = (confidence >= low) & (confidence < low + 1 / bins)
    if low + 1 / bins >= 1:
      in_bin |= confidence == 1.0
    if in_bin.any():
      total += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
  return total


def _probabilities(rng, n, classes=10):
  logits = rng.normal(size=(n, classes)) * 3
  probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
  return probabilities.astype(np.float32), rng.integers(0, classes, n)


def test_calibration_error_matches_the_binned_definition():
  probabilities, labels = _probabilities(np.random.default_rng(0), 500)
  probabilities[0] = np.eye(10)[3]  # confidence exactly 1.0 belongs to the last bin
  metric = ExpectedCalibrationError(bins=10)
  metric.update_state(labels[:, None], probabilities)
  assert float(metric.result()) == pytest.approx(
    _reference_ece(probabilities, labels, 10), abs=1e-6
  )


def test_calibration_error_is_zero_when_confidence_equals_accuracy():
  # Confidence 0.75 on every example, right on three of four.
  probabilities = np.full((4, 2), 0.25, np.float32)
  probabilities[:, 0] = 0.75
  metric = ExpectedCalibrationError()
  metric.update_state(np.array([0, 0, 0, 1]), probabilities)
  assert float(metric.result()) == pytest.approx(0.0, abs=1e-7)


def test_calibration_error_state_merges_by_addition_as_tfma_does():
  probabilities, labels = _probabilities(np.random.default_rng(1), 300)
  whole, first, second, merged = (ExpectedCalibrationError() for _ in range(4))
  whole.update_state(labels, probabilities)
  first.update_state(labels[:120], probabilities[:120])
  second.update_state(labels[120:], probabilities[120:])
  merged.set_weights([a + b for a, b in zip(first.get_weights(), second.get_weights())])
  assert float(merged.result()) == pytest.approx(float(whole.result()), abs=1e-6)


def _rows():
  history = [
    {'phase': 'train', 'step': 10, 'loss': 1.0, 'accuracy': 0.6, 'images_per_second': 900.0},
    {'phase': 'eval', 'step': 10, 'loss': 0.8, 'accuracy': 0.7, 'epoch': 1.0},
    {'phase': 'train', 'step': 20, 'loss': 0.7, 'accuracy': 0.8, 'images_per_second': 950.0},
    {'phase': 'eval', 'step': 20, 'loss': 0.5, 'accuracy': 0.8, 'epoch': 2.0},
  ]

  def row(variant, accuracy, blessed, failures=()):
    return report.VariantReport(
      result=VariantResult(
        variant, {ACCURACY: accuracy, LOSS: 0.4, CALIBRATION_ERROR: 0.02}, blessed, failures
      ),
      per_class_accuracy={name: accuracy for name in CLASS_NAMES},
      parameters=63146,
      train_seconds=125.0,
      images_per_second=930.0,
      history=history,
      intervals={ACCURACY: (accuracy - 0.01, accuracy + 0.01), LOSS: (0.35, 0.45)},
      per_class_intervals={'Shirt': (accuracy - 0.04, accuracy + 0.02)},
      latency={
        1: Latency(median_ms=1.5, p10_ms=1.25, p90_ms=2.0, calls=30),
        64: Latency(median_ms=12.0, p10_ms=11.0, p90_ms=14.5, calls=30),
      },
    )

  return [
    row('batch', 0.91, True),
    row('none', 0.88, False, ['sparse_categorical_accuracy 0.8800 is below the threshold 0.9']),
    row('weight', 0.90, True),
  ]


def _correct(right, examples=100):
  return tuple(index < right for index in range(examples))


def _candidates(rows):
  return [
    Candidate(row.result, _correct(round(row.result.metrics[ACCURACY] * 100)), row.latency[1], 1)
    for row in rows
  ]


def test_report_lists_every_variant_with_metrics_verdict_and_the_test_result(tmp_path):
  rows = _rows()
  selection = select(_candidates(rows))
  confusion = np.diag([100] * 10)
  confusion[6, 0] = 20  # shirts taken for T-shirts
  held_out = HeldOutResult(
    examples=1020,
    metrics={ACCURACY: 0.98, LOSS: 0.1, CALIBRATION_ERROR: 0.01},
    confusion_matrix=confusion.tolist(),
  )
  paths = report.write(str(tmp_path), rows, selection, held_out)
  assert sorted(path.rsplit('/', 1)[1] for path in paths) == sorted(
    [
      report.REPORT_JSON,
      report.REPORT_MARKDOWN,
      report.LEARNING_CURVES_PNG,
      report.PER_CLASS_ACCURACY_PNG,
      report.CONFUSION_MATRIX_PNG,
      report.ACCURACY_INTERVALS_PNG,
      report.COST_QUALITY_PNG,
    ]
  )
  for path in paths:
    if path.endswith('.png'):
      with open(path, 'rb') as png:
        assert png.read(8) == b'\x89PNG\r\n\x1a\n'

  with open(tmp_path / report.REPORT_JSON) as report_json:
    content = json.load(report_json)
  assert content['selected'] == 'batch'
  assert [v['variant'] for v in content['variants']] == ['batch', 'none', 'weight']
  none = content['variants'][1]
  assert none['eval'][ACCURACY] == 0.88 and not none['blessed']
  assert (
    none['verdict'] == 'not blessed: sparse_categorical_accuracy 0.8800 is below the threshold 0.9'
  )
  assert content['test']['variant'] == 'batch'
  assert content['test']['per_class_accuracy']['Shirt'] == pytest.approx(100 / 120)
  assert content['pushed'] and content['decision'] == selection.decision
  assert content['significance_level'] == 0.05
  batch, weight = content['variants'][0], content['variants'][2]
  assert batch['eval_intervals'][ACCURACY] == pytest.approx([0.90, 0.92])
  assert batch['per_class_accuracy_intervals'] == {'Shirt': pytest.approx([0.87, 0.93])}
  assert batch['serving_latency_ms']['64'] == {
    'median_ms': 12.0,
    'p10_ms': 11.0,
    'p90_ms': 14.5,
    'calls': 30,
  }
  # 91 against 90 right of 100, one discordant example: no evidence of a difference.
  assert weight['against_best']['mcnemar_p_value'] == 1.0 and weight['within_noise_of_best']
  assert weight['against_best']['accuracy_difference'] == pytest.approx(-0.01)
  assert batch['against_best'] is None and batch['against_production'] is None

  markdown = (tmp_path / report.REPORT_MARKDOWN).read_text()
  assert (
    '| batch | 0.9100 [0.9000, 0.9200] | 0.4000 [0.3500, 0.4500] | 0.0200 | – | – | yes '
    '| selected |'
  ) in markdown
  assert (
    '| weight | 0.9000 [0.8900, 0.9100] | 0.4000 [0.3500, 0.4500] | 0.0200 | -0.0100 (p 1) | – '
    '| yes | blessed, ranked 2, within noise of the best (p = 1) |'
  ) in markdown
  assert '| batch | 1.50 (1.25–2.00) | 12.00 (11.00–14.50) | 63,146 | 930 | 2m05s |' in markdown
  assert '| batch | 0.910 | ' in markdown and '| 0.910 ±0.030 |' in markdown  # Shirt
  assert 'Selected: **batch**' in markdown and 'accuracy 0.9800' in markdown
  assert f'**Decision:** {selection.decision}' in markdown


def test_report_names_production_with_its_latency_and_the_decision(tmp_path):
  rows = _rows()[:1]
  served = _correct(95)
  production = report.Production(
    path='/serving/fashion_mnist/7',
    eval=HeldOutResult(95, {ACCURACY: 0.95}, [[0]], correct=served),
    latency={1: Latency(3.0, 2.5, 3.5, 30), 64: Latency(20.0, 19.0, 22.0, 30)},
  )
  selection = select(
    _candidates(rows), production=ProductionModel(0.95, served, production.latency[1])
  )
  assert not selection.push
  report.write(str(tmp_path), rows, selection, None, production)
  markdown = (tmp_path / report.REPORT_MARKDOWN).read_text()
  assert '| production | 3.00 (2.50–3.50) | 20.00 (19.00–22.00) | – | – | – |' in markdown
  assert (
    '| batch | 0.9100 [0.9000, 0.9200] | 0.4000 [0.3500, 0.4500] | 0.0200 | – | -0.0400 (p'
    in (markdown)
  )
  assert "production stays: 0.9100 against production's 0.9500" in markdown
  content = json.loads((tmp_path / report.REPORT_JSON).read_text())
  assert (
    not content['pushed'] and content['production']['serving_latency_ms']['1']['median_ms'] == 3
  )
  assert content['variants'][0]['against_production']['only_other_correct'] == 4


def test_report_without_a_blessed_variant_says_nothing_will_be_pushed(tmp_path):
  rows = [
    report.VariantReport(
      result=VariantResult('batch', {ACCURACY: 0.5, LOSS: 1.0}, False, ['too low']),
      per_class_accuracy={},
      parameters=1,
      train_seconds=float('nan'),
      images_per_second=float('nan'),
    )
  ]
  paths = report.write(str(tmp_path), rows, select([Candidate(row.result) for row in rows]), None)
  assert not any(path.endswith(report.CONFUSION_MATRIX_PNG) for path in paths)
  markdown = (tmp_path / report.REPORT_MARKDOWN).read_text()
  assert 'nothing was selected and nothing will be pushed' in markdown
  assert '| batch | 0.5000 | 1.0000 | – | – | – | no | not blessed: too low |' in markdown
  assert '| batch | – | – | 1 | – | – |' in markdown
  assert '**Decision:** No variant passed the gate, so nothing is pushed.' in markdown
  assert json.loads((tmp_path / report.REPORT_JSON).read_text())['test'] is None


def test_report_states_how_production_was_chosen_and_the_power_of_the_push(tmp_path):
  rows = _rows()
  served = _correct(90)
  production = report.Production(
    path='/serving/fashion_mnist/0007',
    eval=HeldOutResult(100, {ACCURACY: 0.90}, [[0]], correct=served),
    latency={1: Latency(3.0, 2.5, 3.5, 30)},
    reason='the `stable` version in /serving/models.config',
    skipped=['/serving/fashion_mnist/0008 is not production: TF Serving cannot load it (…)'],
  )
  selection = select(
    _candidates(rows), production=ProductionModel(0.90, served, production.latency[1])
  )
  report.write(str(tmp_path), rows, selection, None, production)
  markdown = (tmp_path / report.REPORT_MARKDOWN).read_text()
  assert (
    'Production model (the baseline): /serving/fashion_mnist/0007 (the `stable` version in '
    '/serving/models.config), eval accuracy 0.9000'
  ) in markdown
  assert 'Skipped: /serving/fashion_mnist/0008 is not production: TF Serving' in markdown
  # 100 eval examples and 3 variants: a 1-point gain is all but invisible, and the report says so.
  assert re.search(
    r'^Power: a variant 1 point more accurate than production is pushed in at least \d+% of runs '
    r'like this one \(100 eval examples, .*Holm over 3 variant\(s\): McNemar p < 0\.0167',
    markdown,
    re.MULTILINE,
  )
  content = json.loads((tmp_path / report.REPORT_JSON).read_text())
  power = content['power']
  assert (power['family_size'], power['eval_examples'], power['accuracy_difference']) == (
    3,
    100,
    0.01,
  )
  assert 0 <= power['at_least'] < 0.2
  assert content['production']['skipped'] == list(production.skipped)
  batch = content['variants'][0]
  assert (
    batch['holm_adjusted_p_against_production'] >= batch['against_production']['mcnemar_p_value']
  )
