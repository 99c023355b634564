"""Choosing the variant to push: best blessed by the metric, ties to lower loss, reasons for all."""

import math

import pytest

from components.variant_selection.selection import ACCURACY
from components.variant_selection.selection import CALIBRATION_ERROR
from components.variant_selection.selection import LOSS
from components.variant_selection.selection import Gate
from components.variant_selection.selection import VariantResult
from components.variant_selection.selection import gate_failures
from components.variant_selection.selection import judge
from components.variant_selection.selection import select


def _result(variant, accuracy, loss=0.3, blessed=True, failures=(), **extra):
  metrics = {LOSS: loss, **extra}
  if accuracy is not None:
    metrics[ACCURACY] = accuracy
  return VariantResult(variant, metrics, blessed, failures)


def test_the_most_accurate_blessed_variant_wins_and_the_rest_are_ranked():
  selection = select([_result('none', 0.88), _result('batch', 0.91), _result('layer', 0.90)])
  assert selection.winner == 'batch'
  assert selection.ranking == ['batch', 'layer', 'none']
  assert selection.verdicts == {
    'none': 'blessed, ranked 3',
    'batch': 'selected',
    'layer': 'blessed, ranked 2',
  }


def test_a_more_accurate_unblessed_variant_is_never_selected():
  failure = 'sparse_categorical_accuracy changed by -0.0100 against the production model'
  selection = select(
    [_result('batch', 0.93, blessed=False, failures=[failure]), _result('layer', 0.90)]
  )
  assert selection.winner == 'layer'
  assert selection.verdicts['batch'] == f'not blessed: {failure}'
  assert selection.best_overall == 'batch'


def test_an_accuracy_tie_goes_to_the_lower_loss():
  selection = select([_result('batch', 0.9, loss=0.31), _result('weight', 0.9, loss=0.29)])
  assert selection.winner == 'weight'


def test_a_full_tie_keeps_the_configured_order():
  selection = select([_result('layer', 0.9), _result('batch', 0.9)])
  assert selection.ranking == ['layer', 'batch']


def test_a_variant_without_the_metric_is_reported_not_selected():
  selection = select([_result('batch', None), _result('layer', 0.85), _result('none', math.nan)])
  assert selection.winner == 'layer'
  assert selection.verdicts['batch'] == f'no {ACCURACY} in its evaluation'
  assert selection.verdicts['none'] == f'no {ACCURACY} in its evaluation'


def test_no_blessed_variant_selects_nothing_and_says_why_for_each():
  selection = select(
    [
      _result('batch', 0.80, blessed=False, failures=['accuracy 0.80 is below the threshold 0.85']),
      _result('none', 0.70, blessed=False),
    ]
  )
  assert selection.winner is None and selection.ranking == []
  assert selection.verdicts['batch'] == 'not blessed: accuracy 0.80 is below the threshold 0.85'
  assert selection.verdicts['none'] == 'not blessed'
  # What the output model holds when nothing is blessed: the best one, marked not blessed.
  assert selection.best_overall == 'batch'


def test_nothing_measurable_leaves_no_candidate_at_all():
  selection = select([_result('batch', None)])
  assert selection.winner is None and selection.best_overall is None


def test_metrics_where_lower_is_better_are_minimized():
  results = [
    _result('batch', 0.9, **{CALIBRATION_ERROR: 0.05}),
    _result('layer', 0.8, **{CALIBRATION_ERROR: 0.01}),
  ]
  assert select(results, CALIBRATION_ERROR).winner == 'layer'
  assert select(results, LOSS).ranking == ['batch', 'layer']  # equal loss: configured order


def test_a_variant_listed_twice_is_an_error():
  with pytest.raises(ValueError, match='unique'):
    select([_result('batch', 0.9), _result('batch', 0.8)])


# --- The gate: threshold, and the model in production -------------------------------------------


def test_before_the_first_push_only_the_threshold_applies():
  gate = Gate(accuracy_threshold=0.85)
  assert gate_failures({ACCURACY: 0.85}, gate) == []
  assert gate_failures({ACCURACY: 0.8012}, gate) == [
    f'{ACCURACY} 0.8012 is below the threshold 0.85'
  ]


def test_a_candidate_worse_than_production_fails_even_above_the_threshold():
  gate = Gate(accuracy_threshold=0.5, production_accuracy=0.91)
  assert gate_failures({ACCURACY: 0.895}, gate) == [
    f'{ACCURACY} changed by -0.0150 against the production model (allowed: no drop)'
  ]
  assert gate_failures({ACCURACY: 0.91}, gate) == []  # as good as production passes
  assert gate_failures({ACCURACY: 0.93}, gate) == []


def test_an_allowed_drop_lets_a_slightly_worse_candidate_through():
  gate = Gate(accuracy_threshold=0.5, production_accuracy=0.91, max_accuracy_drop=0.01)
  assert gate_failures({ACCURACY: 0.90}, gate) == []
  assert gate_failures({ACCURACY: 0.899}, gate) == [
    (
      f'{ACCURACY} changed by -0.0110 against the production model '
      '(allowed: a drop of at most 0.0100)'
    )
  ]


def test_float32_rounding_of_the_same_accuracy_is_not_a_drop():
  # The production model's accuracy comes from a float32 Keras metric, the candidate's from TFMA.
  gate = Gate(accuracy_threshold=0.5, production_accuracy=0.85333334)
  assert gate_failures({ACCURACY: 0.8533333333333334}, gate) == []


def test_both_failures_are_reported_and_no_accuracy_is_a_failure():
  gate = Gate(accuracy_threshold=0.9, production_accuracy=0.95)
  assert len(gate_failures({ACCURACY: 0.8}, gate)) == 2
  assert gate_failures({LOSS: 0.3}, gate) == [f'no {ACCURACY} to check against the threshold']


def test_only_variants_that_pass_the_gate_can_win():
  gate = Gate(accuracy_threshold=0.8, production_accuracy=0.90)
  results = [
    judge('batch', {ACCURACY: 0.89, LOSS: 0.3}, gate),
    judge('layer', {ACCURACY: 0.92}, gate),
  ]
  selection = select(results)
  assert selection.winner == 'layer'
  assert selection.verdicts['batch'] == (
    f'not blessed: {ACCURACY} changed by -0.0100 against the production model (allowed: no drop)'
  )
  assert select([results[0]]).winner is None
