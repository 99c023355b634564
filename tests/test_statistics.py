"""Paired comparisons on the same examples: McNemar's exact test and the paired bootstrap, against
hand computations from the definition and against scipy."""

import numpy as np
import pytest
from scipy import stats

from components.variant_selection import statistics


def _paired(rng, examples, first_accuracy, second_accuracy, agreement):
  """Per-example correctness of two models that agree on `agreement` of the examples."""
  first = rng.random(examples) < first_accuracy
  second = np.where(rng.random(examples) < agreement, first, rng.random(examples) < second_accuracy)
  return first.tolist(), second.tolist()


def test_discordant_counts_are_the_examples_only_one_model_gets_right():
  first = [True, True, False, False, True]
  second = [True, False, True, False, False]
  assert statistics.discordant_counts(first, second) == (2, 1)


def test_results_of_different_lengths_are_an_error():
  with pytest.raises(ValueError, match='3 and 2 examples'):
    statistics.discordant_counts([True] * 3, [True] * 2)


def test_mcnemar_p_values_from_the_definition_by_hand():
  # Six discordant pairs all one way: the sign test's 2 · (1/2)^6.
  assert statistics.mcnemar_exact_p(0, 6) == pytest.approx(0.03125)
  # b = 2, c = 8: 2 · (C(10,0) + C(10,1) + C(10,2)) / 2^10 = 2 · 56 / 1024.
  assert statistics.mcnemar_exact_p(2, 8) == pytest.approx(0.109375)
  assert statistics.mcnemar_exact_p(8, 2) == pytest.approx(0.109375)
  # No discordant pair, or as many each way: no evidence of a difference.
  assert statistics.mcnemar_exact_p(0, 0) == 1.0
  assert statistics.mcnemar_exact_p(40, 40) == 1.0


@pytest.mark.parametrize(
  'only_first, only_second', [(0, 1), (3, 11), (25, 40), (180, 230), (301, 299), (1, 700)]
)
def test_mcnemar_p_values_match_scipys_binomial_test(only_first, only_second):
  expected = stats.binomtest(only_first, only_first + only_second, 0.5).pvalue
  assert statistics.mcnemar_exact_p(only_first, only_second) == pytest.approx(expected, rel=1e-9)


def test_comparison_on_fixed_data_matches_scipy():
  first, second = _paired(np.random.default_rng(7), 6000, 0.93, 0.92, agreement=0.9)
  comparison = statistics.compare(first, second)
  b = sum(f and not s for f, s in zip(first, second))
  c = sum(s and not f for f, s in zip(first, second))
  assert (comparison.only_model, comparison.only_reference, comparison.examples) == (b, c, 6000)
  assert comparison.difference == pytest.approx(np.mean(first) - np.mean(second))
  assert comparison.p_value == pytest.approx(stats.binomtest(b, b + c, 0.5).pvalue, rel=1e-9)


def test_paired_bootstrap_interval_agrees_with_scipys_paired_percentile_bootstrap():
  first, second = _paired(np.random.default_rng(3), 2000, 0.9, 0.88, agreement=0.8)
  ours = statistics.paired_bootstrap_interval(first, second)
  reference = stats.bootstrap(
    (np.asarray(first, float), np.asarray(second, float)),
    lambda a, b, axis: np.mean(a - b, axis=axis),
    paired=True,
    n_resamples=statistics.BOOTSTRAP_RESAMPLES,
    method='percentile',
    confidence_level=statistics.CONFIDENCE,
    random_state=0,
  ).confidence_interval
  # Different random resamples of the same distribution: equal up to Monte Carlo error, which
  # is a few percent of the interval's width (about 0.03 here).
  assert ours[0] == pytest.approx(reference.low, abs=0.002)
  assert ours[1] == pytest.approx(reference.high, abs=0.002)
  assert ours[0] < np.mean(first) - np.mean(second) < ours[1]


def test_a_clear_difference_is_significant_both_ways_and_none_is_not():
  reference = [True] * 900 + [False] * 100
  better = [True] * 960 + [False] * 40  # right on 60 examples the reference gets wrong
  comparison = statistics.compare(better, reference)
  assert comparison.significantly_better(0.05) and not comparison.significantly_worse(0.05)
  assert statistics.compare(reference, better).significantly_worse(0.05)
  same = statistics.compare(reference, reference)
  assert same.p_value == 1.0 and same.difference_interval == (0.0, 0.0)
  assert not same.significantly_better(0.05) and not same.significantly_worse(0.05)
