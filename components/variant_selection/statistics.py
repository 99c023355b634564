"""Paired comparisons of two models on the same examples: pure functions over per-example
correctness (True where the model's top class is the label), no TensorFlow."""

import dataclasses
import math
from typing import Sequence, Tuple

import numpy as np

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
  tail = sum(math.comb(discordant, i) for i in range(min(only_first, only_second) + 1))
  # Integer numerator and denominator: exact up to one rounding, even for thousands of pairs.
  return min(1.0, 2 * tail / 2**discordant)


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
  # 95% paired-bootstrap interval of accuracy(model) − accuracy(reference).
  difference_interval: Tuple[float, float]

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
    difference_interval=paired_bootstrap_interval(model, reference) if len(model) else (0.0, 0.0),
  )
