"""Choosing the variant to push: pure functions over per-variant results, no TFX.

The rule, in order:
1. Gate: a variant is blessed when its eval accuracy reaches the threshold and is at most
   `max_accuracy_drop` below production's (a hard floor).
2. Best: the blessed variant with the best selection metric (ties: lower loss, then the
   configured order).
3. Contenders: with the accuracy metric, the blessed variants whose per-example correctness
   McNemar's exact test cannot tell from the best's at the significance level (p ≥ level);
   they differ from it by noise only. Other metrics rank by their point estimate.
4. Winner: among the contenders that would replace production (step 5; all of them before the
   first push), the one that serves fastest at batch 1, then the fewest parameters. Latencies
   whose p10–p90 ranges overlap count as equal: a difference inside the timing noise decides
   nothing. A contender that is the production model itself wins outright (nothing to push).
5. Production: a challenger replaces production only when it is significantly better than
   production on the same examples (`significantly_better`), or, with `not_worse_and_cheaper`,
   also when it is not significantly worse and clearly faster at batch 1.
"""

import dataclasses
import math
from typing import Dict, List, Mapping, Optional, Sequence

from components.variant_selection import statistics
from serving.latency import Latency

ACCURACY = 'sparse_categorical_accuracy'
LOSS = 'sparse_categorical_crossentropy'
CALIBRATION_ERROR = 'expected_calibration_error'
# Metrics where a smaller value is better; every other metric is maximized.
LOWER_IS_BETTER = frozenset({LOSS, CALIBRATION_ERROR})
SIGNIFICANTLY_BETTER = 'significantly_better'
NOT_WORSE_AND_CHEAPER = 'not_worse_and_cheaper'
REPLACE_PRODUCTION_RULES = (SIGNIFICANTLY_BETTER, NOT_WORSE_AND_CHEAPER)
DEFAULT_SIGNIFICANCE_LEVEL = 0.05
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
class Candidate:
  """A gated variant with what the statistical selection needs."""

  result: VariantResult
  # Per eval example, in the eval split's order: whether its top class is the label.
  correct: Sequence[bool] = ()
  # serving_default at batch 1 on the exported model.
  latency: Optional[Latency] = None
  parameters: Optional[int] = None
  # Its SavedModel is the production model's, byte for byte.
  is_production: bool = False

  @property
  def variant(self) -> str:
    return self.result.variant


@dataclasses.dataclass(frozen=True)
class ProductionModel:
  """The served model on the same eval examples."""

  accuracy: float
  correct: Sequence[bool]
  latency: Optional[Latency] = None


@dataclasses.dataclass(frozen=True)
class Policy:
  """How sure a difference must be, and when a challenger replaces production."""

  significance_level: float = DEFAULT_SIGNIFICANCE_LEVEL
  replace_production: str = SIGNIFICANTLY_BETTER

  def __post_init__(self):
    if not 0 < self.significance_level < 1:
      raise ValueError(f'significance_level must be in (0, 1), got {self.significance_level}')
    if self.replace_production not in REPLACE_PRODUCTION_RULES:
      raise ValueError(
        f'replace_production must be one of {", ".join(REPLACE_PRODUCTION_RULES)}, '
        f'got {self.replace_production!r}'
      )


@dataclasses.dataclass(frozen=True)
class Selection:
  """The winner (None when no variant qualifies), whether it is pushed, and a verdict each."""

  metric: str
  winner: Optional[str]
  # Qualifying variants, best first.
  ranking: List[str]
  verdicts: Dict[str, str]
  # The best variant by the metric regardless of blessing: what the run would have chosen.
  best_overall: Optional[str] = None
  # Whether Pusher gets the winner: it replaces production (or there is none yet).
  push: bool = False
  # The winner is the production model itself.
  in_production: bool = False
  # One sentence with the numbers: why this winner, and why it is or is not pushed.
  decision: str = ''
  # Blessed variants within noise of the best (the best included), best first.
  contenders: List[str] = dataclasses.field(default_factory=list)
  # The contenders the winner was picked from by serving cost (step 4): those that would replace
  # production, else all of them; the winner alone when it is the production model.
  finalists: List[str] = dataclasses.field(default_factory=list)
  against_best: Dict[str, statistics.PairedComparison] = dataclasses.field(default_factory=dict)
  against_production: Dict[str, statistics.PairedComparison] = dataclasses.field(
    default_factory=dict
  )
  policy: Policy = Policy()


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


def _rank(candidates: Sequence[Candidate], metric: str) -> List[Candidate]:
  order = {candidate.variant: index for index, candidate in enumerate(candidates)}
  return sorted(
    candidates, key=lambda candidate: _sort_key(candidate.result, metric, order[candidate.variant])
  )


def clearly_faster(first: Optional[Latency], second: Optional[Latency]) -> bool:
  """`first`'s p10–p90 range lies wholly below `second`'s; an unmeasured one is never faster."""
  if first is None:
    return False
  return second is None or first.p90_ms < second.p10_ms


def fastest(contenders: Sequence[Candidate]) -> Candidate:
  """The contender with the lowest batch-1 latency, latencies within each other's p10–p90
  noise counting as equal; then the fewest parameters; then the given order."""
  quickest = min(
    contenders, key=lambda c: c.latency.median_ms if c.latency is not None else math.inf
  )
  as_fast = [c for c in contenders if not clearly_faster(quickest.latency, c.latency)]
  return min(
    as_fast, key=lambda c: c.parameters if c.parameters is not None else math.inf
  )  # min keeps the first of equals: the better ranked


def _replaces(
  candidate: Candidate, comparison: Optional[statistics.PairedComparison], production, policy
) -> bool:
  if comparison is None:
    return False
  if comparison.significantly_better(policy.significance_level):
    return True
  return (
    policy.replace_production == NOT_WORSE_AND_CHEAPER
    and not comparison.significantly_worse(policy.significance_level)
    and clearly_faster(candidate.latency, production.latency)
  )


def _ms(latency: Optional[Latency]) -> str:
  return '–' if latency is None else f'{latency.median_ms:.2f} ms'


def _why_winner(
  winner: Candidate,
  best: Candidate,
  contenders: Sequence[Candidate],
  metric: str,
  against_best: Mapping[str, statistics.PairedComparison],
  level: float,
) -> str:
  value = winner.result.metrics[metric]
  if len(contenders) == 1:
    return f'Selected {winner.variant}: the best {metric}, {value:.4f}'
  cost = f'{_ms(winner.latency)} at batch 1, {winner.parameters:,} parameters'
  if winner is best:
    return (
      f'Selected {winner.variant}: the best {metric}, {value:.4f}, and as cheap to serve as the '
      f'{len(contenders) - 1} other variant(s) within noise of it ({cost})'
    )
  return (
    f'Selected {winner.variant}: its {metric} {value:.4f} is within noise of the best, '
    f"{best.variant}'s {best.result.metrics[metric]:.4f} (McNemar p = "
    f'{against_best[winner.variant].p_value:.2g} ≥ {level}), and it is the cheapest to serve of '
    f'the {len(contenders)} variants within noise ({cost})'
  )


def _production_clause(
  winner: Candidate,
  comparison: Optional[statistics.PairedComparison],
  production: ProductionModel,
  policy: Policy,
  replaces: bool,
) -> str:
  if comparison is None:
    return 'there are no per-example results to compare it with production, so it is not pushed'
  level = policy.significance_level
  numbers = (
    f'{winner.result.metrics[ACCURACY]:.4f} against production\'s {production.accuracy:.4f} '
    f'({comparison.difference:+.4f}, McNemar p = {comparison.p_value:.3g})'
  )
  if replaces and comparison.significantly_better(level):
    return f'it replaces production: {numbers} is significantly better at level {level}'
  if replaces:
    return (
      f'it replaces production: {numbers} is not significantly worse at level {level}, and it '
      f'serves faster ({_ms(winner.latency)} against {_ms(production.latency)} at batch 1)'
    )
  if policy.replace_production == NOT_WORSE_AND_CHEAPER and not comparison.significantly_worse(
    level
  ):
    return (
      f'production stays: {numbers} is not significantly better at level {level}, and it is not '
      f'clearly faster to serve ({_ms(winner.latency)} against {_ms(production.latency)})'
    )
  return f'production stays: {numbers} is not significantly better at level {level}'


def select(
  candidates: Sequence[Candidate],
  metric: str = ACCURACY,
  policy: Policy = Policy(),
  production: Optional[ProductionModel] = None,
) -> Selection:
  """Picks the variant to push by the rule in the module docstring.

  A variant without a finite value of `metric` cannot be compared and is
  never selected; its verdict says so instead of failing the selection.
  """
  variants = [candidate.variant for candidate in candidates]
  if len(set(variants)) != len(variants):
    raise ValueError(f'variants must be unique, got {variants}')
  verdicts = {}
  measurable = []
  for candidate in candidates:
    if not _finite(candidate.result.metrics.get(metric)):
      verdicts[candidate.variant] = f'no {metric} in its evaluation'
    else:
      measurable.append(candidate)
  ranked = _rank(measurable, metric)
  qualifying = [candidate for candidate in ranked if candidate.result.blessed]
  for candidate in ranked:
    if not candidate.result.blessed:
      reasons = '; '.join(candidate.result.blessing_failures)
      verdicts[candidate.variant] = f'not blessed: {reasons}' if reasons else 'not blessed'
  best_overall = ranked[0].variant if ranked else None
  if not qualifying:
    return Selection(
      metric=metric,
      winner=None,
      ranking=[],
      verdicts={variant: verdicts[variant] for variant in variants},
      best_overall=best_overall,
      decision='No variant passed the gate, so nothing is pushed.',
      policy=policy,
    )

  level = policy.significance_level
  best = qualifying[0]
  against_best = {
    c.variant: statistics.compare(c.correct, best.correct)
    for c in measurable
    if c is not best and c.correct and best.correct
  }
  against_production = {}
  if production is not None:
    against_production = {
      c.variant: statistics.compare(c.correct, production.correct)
      for c in measurable
      if c.correct and production.correct
    }
  contenders = [best]
  if metric == ACCURACY:
    contenders += [
      c
      for c in qualifying[1:]
      if c.variant in against_best and against_best[c.variant].p_value >= level
    ]
  in_production = next((c for c in contenders if c.is_production), None)
  finalists = contenders
  if production is None:
    winner, push = fastest(contenders), True
    why = _why_winner(winner, best, contenders, metric, against_best, level)
    decision = f'{why}; no model is in production yet.'
  elif in_production is not None:
    winner, push = in_production, False
    finalists = [winner]
    decision = (
      f'Kept the model in production: {winner.variant} is it (the same SavedModel bytes) and is '
      'within noise of the best, so nothing new is pushed.'
    )
  else:
    replacing = [
      c for c in contenders if _replaces(c, against_production.get(c.variant), production, policy)
    ]
    finalists = replacing or contenders
    winner = fastest(finalists)
    push = bool(replacing)
    clause = _production_clause(
      winner, against_production.get(winner.variant), production, policy, push
    )
    decision = f'{_why_winner(winner, best, contenders, metric, against_best, level)}; {clause}.'

  for place, candidate in enumerate(qualifying):
    if candidate is winner:
      verdict = 'selected' if push else 'selected, not pushed'
    else:
      verdict = f'blessed, ranked {place + 1}'
      if candidate in contenders and candidate is not best:
        verdict += f', within noise of the best (p = {against_best[candidate.variant].p_value:.2g})'
    verdicts[candidate.variant] = verdict
  return Selection(
    metric=metric,
    winner=winner.variant,
    ranking=[candidate.variant for candidate in qualifying],
    verdicts={variant: verdicts[variant] for variant in variants},
    best_overall=best_overall,
    push=push,
    in_production=winner.is_production,
    decision=decision,
    contenders=[c.variant for c in contenders],
    finalists=[c.variant for c in finalists],
    against_best=against_best,
    against_production=against_production,
    policy=policy,
  )
