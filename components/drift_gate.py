"""Drift: the newest span's statistics against the previous span's, before Transform.

ImageExampleGen writes, with spans, a `previous` split holding every image of the span before
the newest. TFX's DistributionValidator compares the newest span's `eval` split with it
(statistics and baseline_statistics are the same StatisticsGen output, so the baseline is
computed in the same run: no resolver, which on Vertex could only find the latest statistics of
any pipeline) under drift_config()'s comparators. DriftGate then stops the run before Transform
with one line per drifted feature (measure, value, threshold, both spans), or with
`accept_drift` lets it go on with the lines logged. Either way it writes the result as
`drift.json` beside ExampleGen's dataset.json, where the selector picks it up for the report,
model_info.json and the model card.

Why `eval`: it is always the newest span's alone (train may mix train_spans spans), it is the
data the candidates are judged on, and comparing it costs no extra copy of the newest span.

The first span has no previous span: TFX's validator would find nothing to compare (every
feature "missing"), so the gate reads the spans from dataset.json and passes with a note.
"""

import json
import logging
import os
from typing import Any, Dict, List, Optional

import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tensorflow_metadata.proto.v0 import path_pb2
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx import v1 as tfx
from tfx.proto import distribution_validator_pb2

from contract import features

COMPARED_SPLIT = 'eval'
BASELINE_SPLIT = 'previous'
SPLIT_PAIR = f'{COMPARED_SPLIT}_{BASELINE_SPLIT}'
ANOMALIES_FILE = 'SchemaDiff.pb'
DRIFT_FILE = 'drift.json'
DATASET_FILE = 'dataset.json'
# The image features compared, each by Jensen-Shannon divergence of its histograms.
IMAGE_FEATURES = (
  features.HEIGHT_KEY,
  features.WIDTH_KEY,
  features.CHANNELS_KEY,
  features.MEAN_INTENSITY_KEY,
)
MEASURE_NAMES = {
  anomalies_pb2.DriftSkewInfo.Measurement.JENSEN_SHANNON_DIVERGENCE: 'Jensen-Shannon divergence',
  anomalies_pb2.DriftSkewInfo.Measurement.L_INFTY: 'L-infinity distance',
  anomalies_pb2.DriftSkewInfo.Measurement.NORMALIZED_ABSOLUTE_DIFFERENCE: (
    'normalized absolute difference'
  ),
}


class DataDriftError(RuntimeError):
  """The newest span's data drifted from the previous span's past a threshold."""


def drift_config(
  label_threshold: float, image_threshold: float
) -> distribution_validator_pb2.DistributionValidatorConfig:
  """label: Jensen-Shannon divergence of its histogram (one bucket per class index for up to
  ten classes); image_height/width/channels/mean_intensity: the same, of their histograms."""
  config = distribution_validator_pb2.DistributionValidatorConfig()

  def compare(name: str, threshold: float) -> None:
    feature = config.default_slice_config.feature.add()
    feature.path.CopyFrom(path_pb2.Path(step=[name]))
    feature.distribution_comparator.CopyFrom(
      schema_pb2.FeatureComparator(
        jensen_shannon_divergence=schema_pb2.JensenShannonDivergence(threshold=threshold)
      )
    )

  compare(features.LABEL_KEY, label_threshold)
  for name in IMAGE_FEATURES:
    compare(name, image_threshold)
  return config


def _read_json(path: str) -> Optional[Dict[str, Any]]:
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path, 'r') as text:
    return json.load(text)


def drift_lines(anomalies: anomalies_pb2.Anomalies, newest: Any, previous: Any) -> List[str]:
  """One line per drifted (or not compared) feature: measure, value, threshold, both spans."""
  lines = []
  spans = f'span {newest} ({COMPARED_SPLIT}) vs span {previous}'
  for info in anomalies.drift_skew_info:
    name = '.'.join(info.path.step)
    for measurement in info.drift_measurements:
      if measurement.value > measurement.threshold:
        measure = MEASURE_NAMES.get(measurement.type, str(measurement.type))
        lines.append(
          f'{name}: {measure} {measurement.value:.4f} > threshold {measurement.threshold:g} '
          f'({spans})'
        )
  measured = {'.'.join(info.path.step) for info in anomalies.drift_skew_info}
  for name, info in sorted(anomalies.anomaly_info.items()):
    if name in measured:
      continue
    reasons = '; '.join(reason.description or reason.short_description for reason in info.reason)
    lines.append(f'{name}: {reasons or "not compared"} ({spans})')
  return sorted(lines)


def measurements(anomalies: anomalies_pb2.Anomalies) -> Dict[str, Dict[str, float]]:
  """{feature: {measure, value, threshold}} of every comparison made."""
  found = {}
  for info in anomalies.drift_skew_info:
    for measurement in info.drift_measurements:
      found['.'.join(info.path.step)] = {
        'measure': MEASURE_NAMES.get(measurement.type, str(measurement.type)),
        'value': round(float(measurement.value), 6),
        'threshold': float(measurement.threshold),
      }
  return found


def check_drift(anomalies_uri: str, examples_uri: str, accept_drift: bool) -> Dict[str, Any]:
  """The drift result (also written to `<examples_uri>/drift.json`); raises DataDriftError on
  drift unless `accept_drift`."""
  dataset = _read_json(os.path.join(examples_uri, DATASET_FILE)) or {}
  spans = dataset.get('spans') or {}
  newest, previous = spans.get('newest'), spans.get('previous')
  if previous is None:
    result = {
      'status': 'first span',
      'newest': newest,
      'previous': None,
      'lines': [f'span {newest} is the first span: no previous span to compare, drift not checked'],
    }
  else:
    path = os.path.join(anomalies_uri, f'SplitPair-{SPLIT_PAIR}', ANOMALIES_FILE)
    anomalies = anomalies_pb2.Anomalies.FromString(tf.io.gfile.GFile(path, 'rb').read())
    lines = drift_lines(anomalies, newest, previous)
    status = 'drift accepted' if lines and accept_drift else ('drift' if lines else 'no drift')
    result = {
      'status': status,
      'newest': newest,
      'previous': previous,
      'compared': f'span {newest} {COMPARED_SPLIT} split vs span {previous} (all its images)',
      'measurements': measurements(anomalies),
      'lines': lines
      or [f'span {newest} vs span {previous}: no feature drifted past its threshold'],
      'report': path,
    }
  with tf.io.gfile.GFile(os.path.join(examples_uri, DRIFT_FILE), 'w') as out:
    json.dump(result, out, indent=2, sort_keys=True)
  for line in result['lines']:
    logging.warning('drift: %s', line)
  if result['status'] == 'drift':
    raise DataDriftError(
      'the newest span\'s data drifted from the previous span\'s (pass --accept-drift to train '
      'on it anyway for this run):\n  ' + '\n  '.join(result['lines'])
    )
  return result


@tfx.dsl.components.component
def DriftGate(
  drift: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
  examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples],
  accept_drift: tfx.dsl.components.Parameter[int] = 0,
) -> None:
  """Fails the run, before Transform, when the newest span drifted (unless accept_drift)."""
  check_drift(drift.uri, examples.uri, bool(accept_drift))
