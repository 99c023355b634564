"""The calibration metric and the comparison report files a user opens after a run."""

import dataclasses
import json
import re

from matplotlib import pyplot
import numpy as np
import pytest

from components.variant_selection import report
from components.variant_selection.held_out import HeldOutResult
from components.variant_selection.selection import ACCURACY
from components.variant_selection.selection import CALIBRATION_ERROR
from components.variant_selection.selection import LOSS
from components.variant_selection.selection import NOT_WORSE_AND_CHEAPER
from components.variant_selection.selection import Candidate
from components.variant_selection.selection import Gate
from components.variant_selection.selection import Policy
from components.variant_selection.selection import ProductionModel
from components.variant_selection.selection import VariantResult
from components.variant_selection.selection import select
from serving.latency import Latency
from tests.test_selection import _candidate
from tests.test_selection import _correct as _correct_of_2000
from tests.test_selection import _production
from trainer.calibration import ExpectedCalibrationError
from components.variant_selection.dataset_facts import DatasetFacts
from contract.features import FASHION_MNIST
from contract.features import DatasetSpec


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


FASHION_MNIST_FACTS = DatasetFacts(
  FASHION_MNIST,
  data='/data/fashion_mnist',
  layout='idx',
  counts={
    'train': dict.fromkeys(FASHION_MNIST.classes, 5400),
    'eval': dict.fromkeys(FASHION_MNIST.classes, 600),
    'test': dict.fromkeys(FASHION_MNIST.classes, 1000),
  },
)


def _served(examples, metrics, correct=()):
  """A production model's eval result, as the gate uses it (no confusion matrix)."""
  return HeldOutResult(examples, metrics, [[0, 0], [0, 0]], ('a', 'b'), correct=correct)


def _rows(classes=FASHION_MNIST.classes):
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
      per_class_accuracy={name: accuracy for name in classes},
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
    classes=FASHION_MNIST.classes,
  )
  paths = report.write(str(tmp_path), FASHION_MNIST_FACTS, rows, selection, held_out)
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
  # It opens with why; weight: 90 against batch's 91 of 100, one example apart (p = 1), and as
  # fast and as large: the configured order decides.
  why = (
    'batch: the most accurate, 1 other within noise of it; of the 2 within noise, as fast '
    'and as small as weight: first in the configured order; not blessed: none'
  )
  assert markdown.splitlines()[0] == f'**{why}**' and content['why'] == why
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
    eval=_served(95, {ACCURACY: 0.95}, served),
    latency={1: Latency(3.0, 2.5, 3.5, 30), 64: Latency(20.0, 19.0, 22.0, 30)},
  )
  selection = select(
    _candidates(rows), production=ProductionModel(0.95, served, production.latency[1])
  )
  assert not selection.push
  report.write(str(tmp_path), FASHION_MNIST_FACTS, rows, selection, None, production)
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
  selection = select([Candidate(row.result) for row in rows])
  paths = report.write(str(tmp_path), FASHION_MNIST_FACTS, rows, selection, None)
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
    eval=_served(100, {ACCURACY: 0.90}, served),
    latency={1: Latency(3.0, 2.5, 3.5, 30)},
    reason='the `stable` version in /serving/models.config',
    skipped=['/serving/fashion_mnist/0008 is not production: TF Serving cannot load it (…)'],
  )
  selection = select(
    _candidates(rows), production=ProductionModel(0.90, served, production.latency[1])
  )
  report.write(str(tmp_path), FASHION_MNIST_FACTS, rows, selection, None, production)
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


# --- The opening sentence: why the winner won, one case of the rule each -----------------------


_LATENCY = Latency(1.0, 0.9, 1.1, 30)


def _why(candidates, production=None, policy=None, metric=ACCURACY):
  """why_selected of select() on `candidates`, their report rows built from the same numbers."""
  rows = [
    report.VariantReport(
      result=candidate.result,
      per_class_accuracy={},
      parameters=candidate.parameters,
      train_seconds=60.0,
      images_per_second=1000.0,
      latency={1: candidate.latency},
    )
    for candidate in candidates
  ]
  served = None
  if production is not None:
    served = report.Production('/serving/fashion_mnist/1', _served(2000, {}))
  extra = {'policy': policy} if policy else {}
  selection = select(candidates, metric, production=production, **extra)
  return selection, report.why_selected(rows, selection, served)


def test_why_a_single_contender_won_names_the_p_of_the_others_and_the_best_of_ours():
  # 50 and 60 examples only the best gets right, none the other way: McNemar p = 2 / 2^50 and less.
  gate = Gate(0.9)
  selection, why = _why(
    [
      _candidate('keras_layer', _correct_of_2000(1900), latency=2.0),
      _candidate('layer', _correct_of_2000(1850), latency=1.0),
      _candidate('batch', _correct_of_2000(1840), latency=1.0),
      _candidate('none', _correct_of_2000(1700), gate=gate),
    ]
  )
  assert selection.winner == 'keras_layer'
  assert why == (
    f'keras_layer: the only variant within noise of the best; layer, batch significantly worse '
    f'(p ≤ {2 / 2**50:.2g}); not blessed: none; best of ours: layer, −2.50 pt'
  )
  _, why = _why(
    [_candidate('keras_layer', _correct_of_2000(1900)), _candidate('layer', _correct_of_2000(1850))]
  )
  assert why.startswith('keras_layer: the only variant within noise of the best; all others ')


def test_why_a_tie_settled_by_latency_names_the_best_and_the_winners_latency():
  _, why = _why(
    [
      _candidate('layer', _correct_of_2000(1805), latency=2.0),
      _candidate('batch', _correct_of_2000(1803, offset=1), latency=1.0),
      _candidate('none', _correct_of_2000(1802, offset=1999), latency=1.5),
    ]
  )
  # batch misses 2 examples layer gets right and gets none layer misses: p = 2 · 1/2².
  assert why == (
    'batch: within noise of the best, layer (p = 0.5); the fastest to serve of the 3 within '
    'noise (1.00 ms at batch 1)'
  )


def test_why_a_tie_settled_by_parameters_says_the_latencies_overlap():
  _, why = _why(
    [
      _candidate('keras_layer', _correct_of_2000(1805), latency=1.05, parameters=496_906),
      _candidate('layer', _correct_of_2000(1802, offset=2), latency=1.0, parameters=421_834),
      _candidate('none', _correct_of_2000(1801, offset=4), latency=1.02, parameters=421_642),
    ]
  )
  # none: 4 examples only keras_layer gets right, p = 2 · 1/2⁴; layer 1802 of 2000, none 1801.
  assert why == (
    'none: within noise of the best, keras_layer (p = 0.12); of the 3 within noise, as fast to '
    'serve as keras_layer, layer (p10–p90 at batch 1 overlap) with fewer parameters (421,642); '
    'best of ours: layer, +0.05 pt'
  )


def test_why_by_another_metric_ranks_by_its_point_estimate():
  by_loss = [
    Candidate(VariantResult('batch', {ACCURACY: 0.91, LOSS: 0.30}, True), latency=_LATENCY),
    Candidate(VariantResult('layer', {ACCURACY: 0.90, LOSS: 0.25}, True), latency=_LATENCY),
  ]
  _, why = _why(by_loss, metric=LOSS)
  assert why == f'layer: the lowest {LOSS} of the blessed variants; all others ranked below it'


def test_why_production_is_kept_or_replaced_gives_the_paired_difference_and_its_p():
  production = _production(_correct_of_2000(1800))
  gate = Gate(0.5, production_accuracy=0.9)
  # Right on 9 examples production gets wrong, wrong on 2 it gets right: p = 2·(1+11+55)/2^11.
  challenger = list(_correct_of_2000(1800))
  challenger[1800:1809] = [True] * 9
  challenger[0] = challenger[1] = False
  selection, why = _why([_candidate('layer', tuple(challenger), gate=gate)], production)
  assert not selection.push
  assert why == (
    'layer: the only blessed variant; production kept: not significantly better than it '
    '(+0.35 pt, p = 0.065, Holm-adjusted p = 0.065)'
  )
  selection, why = _why([_candidate('layer', _correct_of_2000(1880), gate=gate)], production)
  assert selection.push
  assert why == (
    f'layer: the only blessed variant; replaces production: significantly better than it '
    f'(+4.00 pt, p = {2 / 2**80:.2g}, Holm-adjusted p = {2 / 2**80:.2g})'
  )
  # Below production with an allowed drop: blessed, and kept out by the paired test.
  lenient = Gate(0.5, production_accuracy=0.95, max_accuracy_drop=0.1)
  _, why = _why(
    [_candidate('layer', _correct_of_2000(1850), gate=lenient)],
    _production(_correct_of_2000(1900)),
  )
  assert why.endswith(
    f'production kept: significantly worse than it (−2.50 pt, p = {2 / 2**50:.2g})'
  )
  # Not worse (1 example only it gets right, 3 only production: p = 2·(1+4)/2⁴) and clearly
  # faster replaces it under that rule; not faster keeps it.
  production = _production(_correct_of_2000(1800), latency=2.0)
  gate = Gate(0.5, production_accuracy=0.9, max_accuracy_drop=0.01)
  relaxed = Policy(0.05, NOT_WORSE_AND_CHEAPER)
  for latency, expected in (
    (1.0, 'replaces production: not significantly worse than it (−0.10 pt, p = 0.62) and '),
    (
      1.98,
      'production kept: neither significantly better than it (−0.10 pt, p = 0.62, Holm-adjusted '
      'p = 1) nor ',
    ),
  ):
    cheaper = [_candidate('none', _correct_of_2000(1798, offset=3), latency=latency, gate=gate)]
    assert expected in _why(cheaper, production, relaxed)[1]


def test_why_the_production_model_among_the_ties_is_kept():
  served = _correct_of_2000(1800)
  selection, why = _why(
    [
      _candidate('layer', _correct_of_2000(1803, offset=2), latency=0.5),
      _candidate('batch', served, latency=2.0, is_production=True),
    ],
    _production(served),
  )
  assert selection.in_production
  # batch: 5 examples only layer gets right (1800–1804), 2 only batch (0, 1): p = 2·29/2⁷.
  assert why == (
    'batch: within noise of the best, layer (p = 0.45); it is the model in production already: '
    'nothing new to push'
  )


def test_why_nothing_was_selected_names_the_most_accurate_and_its_gate_failure():
  failure = 'sparse_categorical_accuracy 0.8000 is below the threshold 0.85'
  _, why = _why(
    [
      _candidate('batch', _correct_of_2000(1600), gate=Gate(0.85)),
      _candidate('none', _correct_of_2000(1400), gate=Gate(0.85)),
    ]
  )
  assert why == (
    f'Nothing selected: no variant passed the gate; the most accurate, batch, is not blessed: '
    f'{failure}'
  )


# --- Any number of classes, any names: the report and its plots from 2 to 100 classes ---------


def _class_names(count):
  """Names as folders have them: some long, one with a Markdown table's `|` in it."""
  names = [
    f'{index:03d} a class with a rather long folder name' if index % 7 == 3 else f'{index:03d}'
    for index in range(count)
  ]
  names[-1] = 'cats | dogs'
  return tuple(names)


def _own_dataset(classes, skipped=2):
  """An image folder's facts as ExampleGen writes them, with a few bad images skipped."""
  return DatasetFacts(
    DatasetSpec(classes, height=32, width=48, channels=3),
    data='/data/own',
    layout='folders',
    counts={
      split: {name: size + index % 3 for index, name in enumerate(classes)}
      for split, size in (('train', 40), ('eval', 10), ('test', 10))
    },
    skipped=[
      {'file': f'/data/own/{classes[0]}/bad{index}.jpg', 'problem': 'truncated JPEG'}
      for index in range(skipped)
    ],
    skipped_count=skipped,
  )


def _own_rows(classes):
  """Two variants whose per-class accuracy falls with the class index, `weight` a bit lower."""
  rows = _rows(classes)[::2]
  return [
    dataclasses.replace(
      row,
      per_class_accuracy={
        name: 0.99 - 0.3 * index / len(classes) - 0.02 * position
        for index, name in enumerate(classes)
      },
      per_class_intervals={classes[0]: (0.95, 1.0)},
    )
    for position, row in enumerate(rows)
  ]


def _test_result(classes):
  """Ten test examples of each class, every class but the first taken for the next twice."""
  count = len(classes)
  confusion = np.diag([10] * count)
  for label in range(1, count):
    confusion[label, label] = 8
    confusion[label, (label + 1) % count] = 2
  return HeldOutResult(
    examples=10 * count,
    metrics={ACCURACY: 0.8, LOSS: 0.5, CALIBRATION_ERROR: 0.03},
    confusion_matrix=confusion.tolist(),
    classes=classes,
  )


@pytest.mark.parametrize('count', [2, 10, 100])
def test_report_of_any_number_of_classes_names_every_class_and_writes_every_plot(tmp_path, count):
  classes = _class_names(count)
  rows = _own_rows(classes)
  selection = select(_candidates(rows))
  dataset = _own_dataset(classes)
  paths = report.write(str(tmp_path), dataset, rows, selection, _test_result(classes))
  pngs = [path for path in paths if path.endswith('.png')]
  assert len(pngs) == 5
  for path in pngs:
    with open(path, 'rb') as png:
      assert png.read(8) == b'\x89PNG\r\n\x1a\n'

  markdown = (tmp_path / report.REPORT_MARKDOWN).read_text()
  lines = markdown.splitlines()
  # The data comes right after the opening sentence.
  assert lines[2] == (
    f'**Data:** {count} classes from `/data/own` (folders), every image decoded to 32×48 RGB; '
    f'examples: train {sum(dataset.counts["train"].values()):,}, '
    f'eval {sum(dataset.counts["eval"].values()):,}, test {sum(dataset.counts["test"].values()):,}.'
  )
  assert lines[3] == '2 bad images skipped (`bad_images: skip`):'
  assert lines[4] == f'- `/data/own/{classes[0]}/bad0.jpg`: truncated JPEG'
  escaped = [name.replace('|', '\\|') for name in classes]
  if count <= report.MAX_CLASS_COLUMNS:
    assert f'| variant | {" | ".join(escaped)} |' in lines
    assert f'| split | {" | ".join(escaped)} | total |' in lines
    assert f'| batch | 0.990 ±0.025 | {_number_of(rows[0], classes[1])} |' in markdown
  else:
    assert '| # | class | train | eval | test | batch | weight | batch on test |' in lines
    for index, name in enumerate(escaped):
      assert sum(line.startswith(f'| {index} | {name} | ') for line in lines) == 1, name
    assert f'| 0 | {escaped[0]} | 40 | 10 | 10 | 0.990 ±0.025 | 0.970 ±0.025 | 1.000 |' in lines
  assert (
    f'Most frequent confusions on the test split (true → predicted): {classes[1]} → '
    f'{classes[2 % count]} 2 (' in markdown
  )
  content = json.loads((tmp_path / report.REPORT_JSON).read_text())
  assert list(content['test']['per_class_accuracy']) == list(classes)
  assert content['dataset']['spec']['classes'] == list(classes)
  assert content['dataset']['skipped_count'] == 2


def _number_of(row, name):
  return f'{row.per_class_accuracy[name]:.3f}'


def test_report_lists_the_first_skipped_images_and_counts_the_rest(tmp_path):
  classes = _class_names(3)
  rows = _own_rows(classes)
  dataset = dataclasses.replace(_own_dataset(classes, skipped=12), skipped_count=250)
  report.write(str(tmp_path), dataset, rows, select(_candidates(rows)), None)
  markdown = (tmp_path / report.REPORT_MARKDOWN).read_text()
  assert '250 bad images skipped (`bad_images: skip`):' in markdown
  assert markdown.count(': truncated JPEG') == report.MAX_SKIPPED_LISTED
  assert "- and 240 more (the examples' dataset.json lists the first ones)." in markdown


def test_report_without_skipped_images_says_none_were(tmp_path):
  classes = _class_names(2)
  rows = _own_rows(classes)
  report.write(str(tmp_path), _own_dataset(classes, 0), rows, select(_candidates(rows)), None)
  assert 'No bad image skipped.' in ((tmp_path / report.REPORT_MARKDOWN).read_text())


def _drawn_tick_labels(figure, along):
  """The tick labels a viewer sees on one axis (within its limits, non-empty)."""
  figure.canvas.draw()
  axis = figure.axes[0]
  low, high = sorted(axis.get_xlim() if along == 'x' else axis.get_ylim())
  ticks = axis.get_xticklabels() if along == 'x' else axis.get_yticklabels()
  position = (
    (lambda tick: tick.get_position()[0]) if along == 'x' else (lambda tick: tick.get_position()[1])
  )
  return [tick.get_text() for tick in ticks if tick.get_text() and low <= position(tick) <= high]


def test_confusion_matrix_of_many_classes_numbers_a_few_ticks_instead_of_100_names():
  classes = _class_names(100)
  figure = report.confusion_matrix_figure(_test_result(classes), 'batch')
  for along in ('x', 'y'):
    labels = _drawn_tick_labels(figure, along)
    assert 2 <= len(labels) <= report.MAX_NUMBER_TICKS + 1
    assert all(label.isdigit() and int(label) < 100 for label in labels), labels
  # Colour is the share of the true class: the first class's row is all on the diagonal.
  shares = figure.axes[0].images[0].get_array()
  assert shares[0, 0] == 1.0 and shares[1, 1] == pytest.approx(0.8)
  assert not figure.axes[0].texts  # no counts in 10,000 cells
  pyplot.close(figure)


def test_confusion_matrix_of_few_classes_names_them_and_counts_the_cells():
  classes = _class_names(10)
  figure = report.confusion_matrix_figure(_test_result(classes), 'batch')
  short = [report._label(name) for name in classes]
  assert _drawn_tick_labels(figure, 'x') == short
  assert _drawn_tick_labels(figure, 'y') == short
  assert max(map(len, short)) <= report.MAX_LABEL_CHARS and short[3].endswith('…')
  assert len(figure.axes[0].texts) == 100
  pyplot.close(figure)


@pytest.mark.parametrize('count', [2, 100])
def test_per_class_accuracy_plot_has_a_row_per_class_lowest_first_and_grows_with_them(count):
  classes = _class_names(count)
  rows = _own_rows(classes)
  figure = report.per_class_accuracy_figure(classes, rows, select(_candidates(rows)))
  labels = _drawn_tick_labels(figure, 'y')
  # The accuracy falls with the class index: the last class is the lowest, at the top.
  numbered = count > report.MAX_TICK_NAMES
  expected = [
    f'{report._label(name)} ({index})' if numbered else report._label(name)
    for index, name in reversed(list(enumerate(classes)))
  ]
  assert labels == expected
  height = figure.get_size_inches()[1]
  assert height >= 0.25 * count  # room for every name
  pyplot.close(figure)
