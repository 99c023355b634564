"""Choosing the best blessed variant: pure functions over per-variant results, no TFX."""

import dataclasses
import math
from typing import Dict, List, Mapping, Optional, Sequence

ACCURACY = 'sparse_categorical_accuracy'
LOSS = 'sparse_categorical_crossentropy'
CALIBRATION_ERROR = 'expected_calibration_error'
# Metrics where a smaller value is better; every other metric is maximized.
LOWER_IS_BETTER = frozenset({LOSS, CALIBRATION_ERROR})
# Float rounding only (float32 metric results): one example of the 6k eval split is 1.7e-4.
_ROUNDING = 1e-6


@dataclasses.dataclass(frozen=True)
class VariantResult:
  """What the pipeline knows about one trained variant on the eval split."""

  variant: str
  metrics: Mapping[str, float]
  blessed: bool
  # Why it is not blessed, one line per failed requirement (see gate_failures).
  blessing_failures: Sequence[str] = ()


@dataclasses.dataclass(frozen=True)
class Gate:
  """What a variant's eval accuracy must reach to be pushed."""

  accuracy_threshold: float
  # The pushed model's accuracy on the same eval examples; None before the first push.
  production_accuracy: Optional[float] = None
  max_accuracy_drop: float = 0.0


def gate_failures(metrics: Mapping[str, float], gate: Gate) -> List[str]:
  """One line per requirement of `gate` that `metrics` miss; empty when the variant passes."""
  accuracy = metrics.get(ACCURACY)
  if not _finite(accuracy):
    return [f'no {ACCURACY} to check against the threshold']
  failures = []
  if accuracy < gate.accuracy_threshold - _ROUNDING:
    failures.append(f'{ACCURACY} {accuracy:.4f} is below the threshold {gate.accuracy_threshold}')
  if gate.production_accuracy is not None:
    change = accuracy - gate.production_accuracy
    if change < -gate.max_accuracy_drop - _ROUNDING:
      drop = gate.max_accuracy_drop
      allowed = 'no drop' if drop < _ROUNDING else f'a drop of at most {drop:.4f}'
      failures.append(
        f'{ACCURACY} changed by {change:+.4f} against the production model (allowed: {allowed})'
      )
  return failures


def judge(variant: str, metrics: Mapping[str, float], gate: Gate) -> VariantResult:
  """The variant's result, blessed when it passes `gate`, with the reasons when it does not."""
  failures = gate_failures(metrics, gate)
  return VariantResult(variant, metrics, blessed=not failures, blessing_failures=tuple(failures))


@dataclasses.dataclass(frozen=True)
class Selection:
  """The winner (None when no variant qualifies) and a verdict for every variant."""

  metric: str
  winner: Optional[str]
  # Qualifying variants, best first.
  ranking: List[str]
  verdicts: Dict[str, str]
  # The best variant by the metric regardless of blessing: what the run would have chosen.
  best_overall: Optional[str] = None


def _finite(value: Optional[float]) -> bool:
  return value is not None and math.isfinite(value)


def _sort_key(result: VariantResult, metric: str, order: int):
  """Best first: the metric in its direction, then lower loss, then configuration order."""
  value = result.metrics[metric]
  loss = result.metrics.get(LOSS)
  return (
    value if metric in LOWER_IS_BETTER else -value,
    loss if _finite(loss) else math.inf,
    order,
  )


def _rank(results: Sequence[VariantResult], metric: str) -> List[VariantResult]:
  order = {result.variant: index for index, result in enumerate(results)}
  return sorted(results, key=lambda result: _sort_key(result, metric, order[result.variant]))


def select(results: Sequence[VariantResult], metric: str = ACCURACY) -> Selection:
  """Picks the blessed variant that is best by `metric`; ties go to the lower loss.

  A variant without a finite value of `metric` cannot be compared and is
  never selected; its verdict says so instead of failing the selection.
  """
  variants = [result.variant for result in results]
  if len(set(variants)) != len(variants):
    raise ValueError(f'variants must be unique, got {variants}')
  verdicts = {}
  measurable = []
  for result in results:
    if not _finite(result.metrics.get(metric)):
      verdicts[result.variant] = f'no {metric} in its evaluation'
    else:
      measurable.append(result)
  ranked = _rank(measurable, metric)
  qualifying = [result for result in ranked if result.blessed]
  for result in ranked:
    if not result.blessed:
      reasons = '; '.join(result.blessing_failures)
      verdicts[result.variant] = f'not blessed: {reasons}' if reasons else 'not blessed'

  for place, result in enumerate(qualifying):
    verdicts[result.variant] = 'selected' if place == 0 else f'blessed, ranked {place + 1}'
  return Selection(
    metric=metric,
    winner=qualifying[0].variant if qualifying else None,
    ranking=[result.variant for result in qualifying],
    verdicts={variant: verdicts[variant] for variant in variants},
    best_overall=ranked[0].variant if ranked else None,
  )
