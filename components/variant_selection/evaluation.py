"""Reading a TFX Evaluator's output: the candidate's metrics overall and per label with their
confidence intervals."""

import dataclasses
from typing import Dict, Tuple

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
