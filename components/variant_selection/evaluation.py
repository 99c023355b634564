"""Reading a TFX Evaluator's output: the candidate's metrics overall and per label with their
confidence intervals, and why it was or was not blessed."""

import dataclasses
from typing import Dict, List, Tuple

import tensorflow_model_analysis as tfma


# (lower, upper) bound of TFMA's 95% confidence interval.
Interval = Tuple[float, float]


@dataclasses.dataclass(frozen=True)
class EvaluationMetrics:
  overall: Dict[str, float]
  # label value -> metrics on that label's slice.
  by_label: Dict[int, Dict[str, float]]
  # The same keys, for the metrics TFMA computed a confidence interval of (compute_confidence_intervals).
  overall_intervals: Dict[str, Interval] = dataclasses.field(default_factory=dict)
  by_label_intervals: Dict[int, Dict[str, Interval]] = dataclasses.field(default_factory=dict)


def _is_candidate_value(key) -> bool:
  """Plain metrics of the evaluated model; not the baseline's, not a diff, not per class id."""
  return (
    key.model_name in ('', tfma.CANDIDATE_KEY) and not key.is_diff and not key.HasField('sub_key')
  )


def read_metrics(evaluation_uri: str, label_key: str) -> EvaluationMetrics:
  """The candidate's double-valued metrics and their intervals: overall and per `label_key`."""
  result = EvaluationMetrics(overall={}, by_label={})
  for metrics_for_slice in tfma.load_metrics(evaluation_uri):
    columns = metrics_for_slice.slice_key.single_slice_keys
    if not columns:
      values, intervals = result.overall, result.overall_intervals
    elif len(columns) == 1 and columns[0].column == label_key:
      label = columns[0].int64_value
      values = result.by_label.setdefault(label, {})
      intervals = result.by_label_intervals.setdefault(label, {})
    else:
      continue
    for key_and_value in metrics_for_slice.metric_keys_and_values:
      if not (
        _is_candidate_value(key_and_value.key) and key_and_value.value.HasField('double_value')
      ):
        continue
      name = key_and_value.key.name
      values[name] = key_and_value.value.double_value.value
      if key_and_value.HasField('confidence_interval'):
        bounds = key_and_value.confidence_interval
        intervals[name] = (
          bounds.lower_bound.double_value.value,
          bounds.upper_bound.double_value.value,
        )
  return result


def _describe(failure) -> str:
  threshold = failure.metric_threshold
  name = failure.metric_key.name
  value = failure.metric_value.double_value.value
  if failure.metric_key.is_diff:
    drop = -threshold.change_threshold.absolute.value
    allowed = 'no drop' if drop < 1e-6 else f'a drop of at most {drop:.4f}'
    return f'{name} changed by {value:+.4f} against the production model (allowed: {allowed})'
  bounds = threshold.value_threshold
  if bounds.HasField('lower_bound'):
    return f'{name} {value:.4f} is below the threshold {bounds.lower_bound.value}'
  if bounds.HasField('upper_bound'):
    return f'{name} {value:.4f} is above the threshold {bounds.upper_bound.value}'
  return failure.message or name


def threshold_failures(evaluation_uri: str) -> List[str]:
  """One line per failed TFMA threshold: metric, value and the bound it missed."""
  validation = tfma.load_validation_result(evaluation_uri)
  return [
    _describe(failure)
    for per_slice in validation.metric_validations_per_slice
    for failure in per_slice.failures
  ]
