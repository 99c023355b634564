"""Choosing the variant to push: the gate, the best blessed by the metric, the variants within
noise of it (McNemar), the cheapest of those to serve, and the production gate; reasons for all."""

import math

import numpy as np
import pytest

from components.variant_selection.selection import ACCURACY
from components.variant_selection.selection import CALIBRATION_ERROR
from components.variant_selection.selection import LOSS
from components.variant_selection.selection import NOT_WORSE_AND_CHEAPER
from components.variant_selection.selection import POWER_DIFFERENCE
from components.variant_selection.selection import Candidate
from components.variant_selection.selection import Gate
from components.variant_selection.selection import Policy
from components.variant_selection.selection import ProductionModel
from components.variant_selection.selection import VariantResult
from components.variant_selection.selection import clearly_faster
from components.variant_selection.selection import gate_failures
from components.variant_selection.selection import judge
from components.variant_selection.selection import select
from components.variant_selection.statistics import mcnemar_power
from serving.latency import Latency


def _result(variant, accuracy, loss=0.3, blessed=True, failures=(), **extra):
  """A candidate without per-example results: ranked by its point estimate alone."""
  metrics = {LOSS: loss, **extra}
  if accuracy is not None:
    metrics[ACCURACY] = accuracy
  return Candidate(VariantResult(variant, metrics, blessed, failures))


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
    Candidate(judge('batch', {ACCURACY: 0.89, LOSS: 0.3}, gate)),
    Candidate(judge('layer', {ACCURACY: 0.92}, gate)),
  ]
  selection = select(results)
  assert selection.winner == 'layer'
  assert selection.verdicts['batch'] == (
    f'not blessed: {ACCURACY} changed by -0.0100 against the production model (allowed: no drop)'
  )
  assert select([results[0]]).winner is None


# --- Statistical selection on synthetic per-example results ------------------------------------

EXAMPLES = 2000


def _correct(right, offset=0):
  """Correct on `right` of EXAMPLES examples: those from `offset` on (wrapping around)."""
  return tuple((index - offset) % EXAMPLES < right for index in range(EXAMPLES))


def _latency(median, spread=0.05):
  return Latency(median_ms=median, p10_ms=median - spread, p90_ms=median + spread, calls=30)


def _candidate(variant, correct, latency=1.0, parameters=1000, gate=None, is_production=False):
  accuracy = sum(correct) / len(correct)
  return Candidate(
    judge(variant, {ACCURACY: accuracy, LOSS: 0.3}, gate or Gate(0.5)),
    correct=correct,
    latency=_latency(latency),
    parameters=parameters,
    is_production=is_production,
  )


def _production(correct, latency=1.0):
  return ProductionModel(sum(correct) / len(correct), correct, _latency(latency))


def test_a_clear_winner_is_selected_and_the_others_are_significantly_worse():
  # 0.95 against 0.90 and 0.89 on the same examples: 100 and more discordant pairs one way.
  selection = select(
    [
      _candidate('batch', _correct(1800), latency=0.5),
      _candidate('layer', _correct(1900), latency=3.0),
      _candidate('none', _correct(1780), latency=0.4),
    ]
  )
  assert selection.winner == 'layer' and selection.push
  assert selection.contenders == ['layer']
  assert selection.against_best['batch'].p_value < 1e-20
  assert selection.verdicts == {
    'batch': 'blessed, ranked 2',
    'layer': 'selected',
    'none': 'blessed, ranked 3',
  }
  assert selection.decision == (
    f'Selected layer: the best {ACCURACY}, 0.9500; no model is in production yet.'
  )


def test_a_tie_within_noise_goes_to_the_fastest_to_serve():
  # 1805, 1803 and 1802 right, differing on a handful of examples: McNemar p ≥ 0.375.
  selection = select(
    [
      _candidate('layer', _correct(1805), latency=2.0),
      _candidate('batch', _correct(1803, offset=1), latency=1.0),
      _candidate('none', _correct(1802, offset=1999), latency=1.5),
    ]
  )
  assert selection.ranking == ['layer', 'batch', 'none']
  assert selection.contenders == ['layer', 'batch', 'none']
  assert selection.winner == 'batch' and selection.push
  assert selection.verdicts['layer'] == 'blessed, ranked 1'
  assert selection.verdicts['none'] == 'blessed, ranked 3, within noise of the best (p = 0.38)'
  p_value = selection.against_best['batch'].p_value
  assert p_value == pytest.approx(0.5)  # b = 0, c = 2
  assert selection.decision == (
    f'Selected batch: its {ACCURACY} 0.9015 is within noise of the best, layer\'s 0.9025 '
    f'(McNemar p = {p_value:.2g} ≥ 0.05), and it is the cheapest to serve of the 3 variants '
    'within noise (1.00 ms at batch 1, 1,000 parameters); no model is in production yet.'
  )


def test_a_tie_in_latency_too_goes_to_the_fewest_parameters():
  # Latencies 1.00 and 1.05 ms with p10–p90 ranges of ±0.05 ms overlap: timing noise.
  selection = select(
    [
      _candidate('keras_layer', _correct(1805), latency=1.05, parameters=496_906),
      _candidate('layer', _correct(1802, offset=2), latency=1.0, parameters=421_834),
      _candidate('none', _correct(1801, offset=4), latency=1.02, parameters=421_642),
    ]
  )
  assert selection.winner == 'none'


def test_a_significantly_worse_variant_is_no_contender_however_fast():
  selection = select(
    [
      _candidate('layer', _correct(1900), latency=2.0),
      _candidate('none', _correct(1850), latency=0.1),  # 50 pairs one way: p ~ 1e-15
    ]
  )
  assert selection.winner == 'layer' and selection.contenders == ['layer']


def test_production_better_than_every_candidate_stays_and_nothing_is_pushed():
  production = _production(_correct(1900))
  gate = Gate(0.5, production_accuracy=0.95, max_accuracy_drop=0.1)  # the floor lets them by
  selection = select(
    [
      _candidate('batch', _correct(1850), gate=gate),
      _candidate('layer', _correct(1880, offset=1), gate=gate),
    ],
    production=production,
  )
  assert selection.winner == 'layer' and not selection.push and not selection.in_production
  assert selection.verdicts['layer'] == 'selected, not pushed'
  comparison = selection.against_production['layer']
  assert comparison.difference == pytest.approx(-0.01)
  assert selection.decision.startswith(f'Selected layer: the best {ACCURACY}, 0.9400; production ')
  assert selection.decision.endswith(
    f"production stays: 0.9400 against production's 0.9500 (-0.0100, McNemar p = "
    f'{comparison.p_value:.3g}, Holm-adjusted p = 1 over 2 variants) is not significantly better '
    'at level 0.05.'
  )


def test_with_the_default_floor_a_candidate_below_production_is_not_even_blessed():
  production = _production(_correct(1900))
  gate = Gate(0.5, production_accuracy=0.95)
  selection = select([_candidate('batch', _correct(1850), gate=gate)], production=production)
  assert selection.winner is None and not selection.push
  assert selection.decision == 'No variant passed the gate, so nothing is pushed.'


def test_a_better_challenger_that_is_within_noise_of_production_is_not_pushed():
  # 0.9035 against 0.9000: right on 9 examples production gets wrong, wrong on 2 it gets right.
  production = _production(_correct(1800))
  challenger = list(_correct(1800))
  for index in range(1800, 1809):
    challenger[index] = True
  challenger[0] = challenger[1] = False
  gate = Gate(0.5, production_accuracy=0.9)
  selection = select([_candidate('layer', tuple(challenger), gate=gate)], production=production)
  comparison = selection.against_production['layer']
  assert (comparison.only_model, comparison.only_reference) == (9, 2)
  assert comparison.p_value == pytest.approx(0.06543, abs=1e-5)  # 2·(1+11+55)/2^11
  assert selection.winner == 'layer' and not selection.push


def test_a_significantly_better_challenger_replaces_production():
  production = _production(_correct(1800))
  gate = Gate(0.5, production_accuracy=0.9)
  selection = select(
    [
      _candidate('batch', _correct(1800, offset=7), gate=gate),
      _candidate('layer', _correct(1880), gate=gate),
    ],
    production=production,
  )
  comparison = selection.against_production['layer']
  assert comparison.only_model == 80 and comparison.only_reference == 0
  assert (
    selection.winner == 'layer' and selection.push and selection.verdicts['layer'] == 'selected'
  )
  # batch is no more accurate than production (p' = 1): layer's p is the smallest of 2, doubled.
  assert selection.holm_adjusted == {'batch': 1.0, 'layer': 2 * comparison.p_value}
  assert selection.decision.endswith(
    f"it replaces production: 0.9400 against production's 0.9000 (+0.0400, McNemar p = "
    f'{comparison.p_value:.3g}, Holm-adjusted p = {2 * comparison.p_value:.3g} over 2 variants) '
    'is significantly better at level 0.05.'
  )


def test_among_ties_the_one_that_would_replace_production_wins():
  # Both within noise of each other; only `layer` is significantly better than production.
  production = _production(_correct(1800))
  gate = Gate(0.5, production_accuracy=0.9)
  selection = select(
    [
      _candidate('layer', _correct(1840), latency=3.0, gate=gate),
      _candidate('none', _correct(1836, offset=1795), latency=0.5, gate=gate),
    ],
    production=production,
  )
  assert selection.contenders == ['layer', 'none']
  assert not selection.against_production['none'].significantly_better(0.05)
  assert selection.winner == 'layer' and selection.push


def test_not_worse_and_cheaper_replaces_production_only_under_that_option():
  production = _production(_correct(1800), latency=2.0)
  gate = Gate(0.5, production_accuracy=0.9, max_accuracy_drop=0.01)
  cheaper = [_candidate('none', _correct(1798, offset=3), latency=1.0, gate=gate)]
  by_default = select(cheaper, production=production)
  assert by_default.winner == 'none' and not by_default.push
  relaxed = select(cheaper, production=production, policy=Policy(0.05, NOT_WORSE_AND_CHEAPER))
  assert relaxed.push
  assert (
    'is not significantly worse at level 0.05, and it serves faster (1.00 ms against 2.00 ms'
    in (relaxed.decision)
  )
  # Not clearly faster (overlapping timing ranges): production stays under the option too.
  as_fast = [_candidate('none', _correct(1798, offset=3), latency=1.98, gate=gate)]
  assert not select(as_fast, production=production, policy=Policy(0.05, NOT_WORSE_AND_CHEAPER)).push


def test_the_production_model_among_the_ties_is_kept_and_not_pushed_again():
  served = _correct(1800)
  production = _production(served)
  gate = Gate(0.5, production_accuracy=0.9)
  selection = select(
    [
      _candidate('layer', _correct(1803, offset=2), latency=0.5, gate=gate),
      _candidate('batch', served, latency=2.0, gate=gate, is_production=True),
    ],
    production=production,
  )
  assert selection.winner == 'batch' and selection.in_production and not selection.push
  assert selection.decision.startswith('Kept the model in production: batch is it')


def test_a_stricter_level_widens_the_ties():
  variants = [
    _candidate('layer', _correct(1830), latency=2.0),
    _candidate('none', _correct(1824), latency=0.5),  # b = 0, c = 6: p = 2/2^6
  ]
  p_value = select(variants).against_best['none'].p_value
  assert p_value == pytest.approx(0.03125)
  assert select(variants).winner == 'layer'
  assert select(variants, policy=Policy(significance_level=0.01)).winner == 'none'


def test_a_policy_with_an_unknown_rule_or_level_is_an_error():
  with pytest.raises(ValueError, match='replace_production must be one of'):
    Policy(replace_production='always')
  with pytest.raises(ValueError, match='significance_level'):
    Policy(significance_level=1.5)


def test_a_challenger_significantly_better_than_production_replaces_it_beside_a_production_copy():
  # The copy is within noise of the best (p 0.11) and the challenger too, while the challenger is
  # significantly better than production (b = 9, c = 0): McNemar results do not chain, and the
  # replace rule is checked for every contender before the copy is kept.
  served = _correct(1800)
  best = list(served)
  best[:18] = [False] * 18  # wrong on 18 production gets right
  best[1800:1830] = [True] * 30  # right on 30 it gets wrong
  challenger = list(served)
  challenger[1800:1809] = [True] * 9
  gate = Gate(0.5, production_accuracy=0.9)
  selection = select(
    [
      _candidate('keras_layer', tuple(best), latency=2.0, gate=gate),
      _candidate('batch', served, latency=0.5, gate=gate, is_production=True),
      _candidate('layer', tuple(challenger), latency=1.5, gate=gate),
    ],
    production=_production(served),
  )
  assert selection.contenders == ['keras_layer', 'layer', 'batch']
  assert selection.against_production['layer'].p_value == pytest.approx(2 / 2**9)
  assert selection.holm_adjusted['layer'] == pytest.approx(3 * 2 / 2**9)
  assert selection.winner == 'layer' and selection.push and not selection.in_production


def test_a_production_copy_measured_faster_than_production_is_never_pushed():
  served = _correct(1800)
  gate = Gate(0.5, production_accuracy=0.9)
  selection = select(
    [_candidate('batch', served, latency=1.0, gate=gate, is_production=True)],
    production=_production(served, latency=2.0),
    policy=Policy(0.05, NOT_WORSE_AND_CHEAPER),
  )
  assert selection.winner == 'batch' and selection.in_production and not selection.push


def test_an_unmeasured_production_latency_makes_no_challenger_clearly_faster():
  assert not clearly_faster(_latency(1.0), None)
  assert not clearly_faster(None, _latency(1.0))
  assert clearly_faster(_latency(1.0), _latency(2.0))
  gate = Gate(0.5, production_accuracy=0.9, max_accuracy_drop=0.01)
  unmeasured = ProductionModel(0.9, _correct(1800), latency=None)
  selection = select(
    [_candidate('none', _correct(1798, offset=3), latency=0.1, gate=gate)],
    production=unmeasured,
    policy=Policy(0.05, NOT_WORSE_AND_CHEAPER),
  )
  assert selection.winner == 'none' and not selection.push


def test_an_unmeasured_contender_does_not_win_on_speed():
  unmeasured = Candidate(
    judge('layer', {ACCURACY: 0.9, LOSS: 0.3}, Gate(0.5)), correct=_correct(1800), parameters=10
  )
  measured = _candidate('batch', _correct(1800), latency=5.0, parameters=1000)
  assert select([unmeasured, measured]).winner == 'batch'


def test_one_of_six_challengers_at_p_002_is_no_evidence_after_holm():
  # Alone, p = 0.02 would replace production; as the best of six tests it is what chance gives.
  production = _production(_correct(1800))
  gate = Gate(0.5, production_accuracy=0.9)
  lucky = list(_correct(1800))
  lucky[1800:1815] = [True] * 15
  lucky[:4] = [False] * 4  # b = 15, c = 4
  lucky_p = 2 * sum(math.comb(19, i) for i in range(5)) / 2**19
  assert lucky_p == pytest.approx(0.0192, abs=1e-4)
  alone = select([_candidate('layer', tuple(lucky), gate=gate)], production=production)
  assert alone.push
  others = [_candidate(f'v{i}', _correct(1800), gate=gate) for i in range(5)]
  six = select([_candidate('layer', tuple(lucky), gate=gate), *others], production=production)
  assert six.winner == 'layer' and not six.push
  assert six.holm_adjusted['layer'] == pytest.approx(6 * lucky_p)
  assert f'Holm-adjusted p = {6 * lucky_p:.3g} over 6 variants) is not significantly better' in (
    six.decision
  )


# --- The push decision's error rate and power, simulated with the selector itself -------------

SIMULATED_EXAMPLES = 6000
PRODUCTION_ACCURACY = 0.93
DISCORDANCE = 0.056  # the share of eval examples a retrained variant and production disagree on
LEVEL = 0.05


def _simulated_run(rng, challengers, advantage, better=0):
  """Production's per-example correctness and `challengers` variants', each with production's
  true accuracy plus `advantage` (the first `better` ones plus POWER_DIFFERENCE instead), their
  errors differing from production's on DISCORDANCE of the examples, independently."""
  served = rng.random(SIMULATED_EXAMPLES) < PRODUCTION_ACCURACY
  production = ProductionModel(served.mean(), served, _latency(1.0))
  gate = Gate(0.85, production_accuracy=production.accuracy)
  candidates = []
  for index in range(challengers):
    edge = POWER_DIFFERENCE if index < better else advantage
    only_challenger, only_production = (DISCORDANCE + edge) / 2, (DISCORDANCE - edge) / 2
    draws = rng.random(SIMULATED_EXAMPLES)
    correct = np.where(
      served,
      draws >= only_production / PRODUCTION_ACCURACY,
      draws < only_challenger / (1 - PRODUCTION_ACCURACY),
    )
    metrics = {ACCURACY: correct.mean(), LOSS: 0.3}
    candidates.append(
      Candidate(judge(f'v{index}', metrics, gate), correct, _latency(1.0), parameters=1000)
    )
  return select(candidates, policy=Policy(LEVEL), production=production)


def _push_rate(trials, challengers, advantage, better=0, seed=0):
  rng = np.random.default_rng(seed)
  return np.mean([_simulated_run(rng, challengers, advantage, better).push for _ in range(trials)])


def _monte_carlo_margin(rate, trials):
  """Three standard errors of a rate estimated from `trials` runs: a simulation of a gate that
  keeps its promise lands beyond it in about one case of 700."""
  return 3 * math.sqrt(rate * (1 - rate) / trials)


@pytest.mark.parametrize(
  'challengers, advantage',
  [(1, 0.0), (6, 0.0), (6, -0.002)],
  ids=['one equal', 'six equal', 'six 0.2 points worse'],
)
def test_no_better_challengers_are_pushed_at_most_at_the_level(challengers, advantage):
  # Without the correction six equal challengers were pushed in 10–14% of runs, six worse ones in
  # 2–5%, against a stated 5%. 1,000 runs: the margin is 0.021.
  trials = 1000
  assert _push_rate(trials, challengers, advantage) <= LEVEL + _monte_carlo_margin(LEVEL, trials)


@pytest.mark.parametrize('challengers', [1, 6])
def test_the_stated_power_is_what_the_selector_achieves(challengers):
  # One challenger a point better among `challengers` - 1 equal ones: with one, Holm is McNemar
  # at the level, and the power is exact; with six it is at least that of level / 6.
  stated = mcnemar_power(POWER_DIFFERENCE, SIMULATED_EXAMPLES, DISCORDANCE, LEVEL / challengers)
  trials = 400
  achieved = _push_rate(trials, challengers, 0.0, better=1, seed=1)
  margin = _monte_carlo_margin(stated, trials)
  assert achieved >= stated - margin
  if challengers == 1:
    assert achieved <= stated + margin
  assert 0.5 < stated < 0.99  # the case says something: neither hopeless nor certain
