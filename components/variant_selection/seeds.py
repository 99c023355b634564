"""Repeated seeds: how much a variant's eval metrics move when only the training seed changes.

Pure functions, no TFX. The spread is reported next to the comparison; selection and the
production gate use the configured seed's run alone (the model a one-seed run would push).
"""

import dataclasses
import math
import statistics
from typing import Dict, Mapping, Optional, Sequence, Tuple

from components.variant_selection.selection import ACCURACY
from components.variant_selection.selection import CALIBRATION_ERROR
from components.variant_selection.selection import LOSS

SPREAD_METRICS = (ACCURACY, LOSS, CALIBRATION_ERROR)


def seed_values(first: int, count: int) -> Tuple[int, ...]:
  """The training seeds of `count` runs: first, first + 1, …, first + count − 1."""
  return tuple(range(first, first + count))


@dataclasses.dataclass(frozen=True)
class SeedRun:
  """One training run of a variant: its seed, eval metrics and training time."""

  seed: int
  metrics: Mapping[str, float]
  train_seconds: float = math.nan


@dataclasses.dataclass(frozen=True)
class Spread:
  """Mean and sample standard deviation over the `n` runs that have the metric."""

  mean: float
  std: float
  n: int


def spread(values: Sequence[float]) -> Spread:
  """mean = Σx/n, std = √(Σ(x − mean)² / (n − 1)) over the finite values; NaN where undefined."""
  finite = [value for value in values if value is not None and math.isfinite(value)]
  mean = statistics.fmean(finite) if finite else math.nan
  std = statistics.stdev(finite) if len(finite) > 1 else math.nan
  return Spread(mean=mean, std=std, n=len(finite))


def across_seeds(
  runs: Sequence[SeedRun], metrics: Sequence[str] = SPREAD_METRICS
) -> Dict[str, Spread]:
  """The spread of each metric over one variant's runs."""
  return {metric: spread([run.metrics.get(metric, math.nan) for run in runs]) for metric in metrics}


def mean_plus_minus_std(value: Optional[Spread], digits: int = 4) -> str:
  """'0.9281 ± 0.0012' for the table; '–' without a value, the mean alone for one run."""
  if value is None or not math.isfinite(value.mean):
    return '–'
  if not math.isfinite(value.std):
    return f'{value.mean:.{digits}f}'
  return f'{value.mean:.{digits}f} ± {value.std:.{digits}f}'
