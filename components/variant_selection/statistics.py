"""Paired comparisons of two models on the same examples: pure functions over per-example
correctness (True where the model's top class is the label), no TensorFlow."""

import dataclasses
import functools
import math
from typing import Dict, Mapping, Sequence, Tuple

import numpy as np
from scipy import special
from scipy import stats

# The paired bootstrap: enough resamples for a stable 95% percentile interval, a fixed seed so a
# re-run of the selector on the same models reports the same interval.
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95


def discordant_counts(first: Sequence[bool], second: Sequence[bool]) -> Tuple[int, int]:
  """(b, c): examples only `first` gets right, and examples only `second` gets right."""
  if len(first) != len(second):
    raise ValueError(f'paired results differ in length: {len(first)} and {len(second)} examples')
  first_array, second_array = np.asarray(first, bool), np.asarray(second, bool)
  return int(np.sum(first_array & ~second_array)), int(np.sum(~first_array & second_array))


def mcnemar_exact_p(only_first: int, only_second: int) -> float:
  """p = min(1, 2·Σ_{i≤min(b,c)} C(b+c, i) / 2^(b+c)): two-sided binomial test of b ~ Bin(b+c, ½)."""
  discordant = only_first + only_second
  if not discordant:
    return 1.0
  # The binomial CDF as an incomplete beta function (scipy.special.bdtr) keeps ~1e-14 relative
  # accuracy far into the tail, at a fraction of the cost of summing binomial coefficients.
  return min(1.0, 2 * float(special.bdtr(min(only_first, only_second), discordant, 0.5)))


def paired_bootstrap_interval(
  first: Sequence[bool],
  second: Sequence[bool],
  resamples: int = BOOTSTRAP_RESAMPLES,
  confidence: float = CONFIDENCE,
  seed: int = BOOTSTRAP_SEED,
) -> Tuple[float, float]:
  """Percentile interval of acc(first) − acc(second) over resamples of the same example indices."""
  difference = np.asarray(first, np.float64) - np.asarray(second, np.float64)
  indices = np.random.default_rng(seed).integers(0, len(difference), (resamples, len(difference)))
  means = difference[indices].mean(axis=1)
  tail = (1 - confidence) / 2
  low, high = np.quantile(means, [tail, 1 - tail])
  return float(low), float(high)


@dataclasses.dataclass(frozen=True)
class PairedComparison:
  """A model against a reference on the same examples: accuracy difference and McNemar's test."""

  # Examples only the model gets right, and only the reference gets right.
  only_model: int
  only_reference: int
  examples: int
  p_value: float
  # The per-example correctness compared, for the interval below.
  model: Sequence[bool] = dataclasses.field(default=(), repr=False, compare=False)
  reference: Sequence[bool] = dataclasses.field(default=(), repr=False, compare=False)

  @functools.cached_property
  def difference_interval(self) -> Tuple[float, float]:
    """95% paired-bootstrap interval of accuracy(model) − accuracy(reference).

    Computed when first asked for (the report does): its 2,000 resamples cost a hundred times the
    test, which decides alone."""
    if not self.examples:
      return (0.0, 0.0)
    return paired_bootstrap_interval(self.model, self.reference)

  @property
  def difference(self) -> float:
    """accuracy(model) − accuracy(reference) = (b − c) / n."""
    return (self.only_model - self.only_reference) / self.examples if self.examples else 0.0

  def significantly_better(self, level: float) -> bool:
    return self.difference > 0 and self.p_value < level

  def significantly_worse(self, level: float) -> bool:
    return self.difference < 0 and self.p_value < level


def compare(model: Sequence[bool], reference: Sequence[bool]) -> PairedComparison:
  """McNemar's exact test and the paired-bootstrap interval of `model` against `reference`."""
  only_model, only_reference = discordant_counts(model, reference)
  return PairedComparison(
    only_model=only_model,
    only_reference=only_reference,
    examples=len(model),
    p_value=mcnemar_exact_p(only_model, only_reference),
    model=model,
    reference=reference,
  )


def holm_adjusted(p_values: Mapping[str, float]) -> Dict[str, float]:
  """Holm's step-down adjusted p-values of a family of tests.

  With the p-values sorted p(1) ≤ … ≤ p(m), the k-th adjusted one is
  max over j ≤ k of min(1, (m − j + 1)·p(j)). Rejecting every test whose adjusted p is below
  `level` makes the chance of one or more false rejections in the family at most `level`, for
  any dependence between the tests (Holm 1979), and rejects whatever Bonferroni rejects.
  """
  adjusted, running = {}, 0.0
  ordered = sorted(p_values.items(), key=lambda item: item[1])
  for rank, (name, p_value) in enumerate(ordered):
    running = max(running, min(1.0, (len(ordered) - rank) * p_value))
    adjusted[name] = running
  return adjusted


def mcnemar_power(difference: float, examples: int, discordance: float, level: float) -> float:
  """Chance that McNemar's exact test at `level` finds a model `difference` more accurate than
  its reference significantly better, on `examples` pairs of which a fraction `discordance` is
  answered differently by the two.

  Exact: the number of discordant examples D is Binomial(examples, discordance), and given D the
  examples only the model gets right are Binomial(D, (discordance + difference) /
  (2·discordance)); the power sums, over both, the chance of a two-sided p below `level` in the
  model's favour. A discordance below `difference` is impossible and counts as `difference`.
  """
  discordance = min(1.0, max(discordance, difference))
  model_share = (discordance + difference) / (2 * discordance)
  # D within 8 standard deviations of its mean: the rest weighs less than 1e-14.
  spread = 8 * math.sqrt(examples * discordance * (1 - discordance)) + 1
  mean = examples * discordance
  discordant = np.arange(
    max(1, math.floor(mean - spread)), min(examples, math.ceil(mean + spread)) + 1
  )
  # The two-sided p of b > D / 2 model-only examples out of D is 2·P(Binomial(D, ½) ≤ D − b), below
  # `level` from b = D − k + 1 on, where k is the smallest count whose CDF reaches level / 2.
  first_rejected = discordant - stats.binom.ppf(level / 2, discordant, 0.5) + 1
  power = np.sum(
    stats.binom.pmf(discordant, examples, discordance)
    * stats.binom.sf(first_rejected - 1, discordant, model_share)
  )
  return float(power)
