"""AnomaliesGate: stops the pipeline when ExampleValidator found anomalies.

ExampleValidator records anomalies but lets the run go on. This gate sits
between it and Transform, so a bad dataset never reaches training while the
anomalies artifact stays published for inspection.
"""

import os
from typing import List

import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import v1 as tfx
from tfx.types import artifact_utils

ANOMALIES_FILE = 'SchemaDiff.pb'


class DataAnomaliesError(RuntimeError):
  """The examples do not meet the schema the run enforces."""


def describe_anomalies(anomalies: tfx.types.standard_artifacts.ExampleAnomalies) -> List[str]:
  """Returns one 'split: feature: description' line per anomaly."""
  problems = []
  for split in artifact_utils.decode_split_names(anomalies.split_names):
    path = os.path.join(anomalies.uri, f'Split-{split}', ANOMALIES_FILE)
    report = anomalies_pb2.Anomalies.FromString(tf.io.gfile.GFile(path, 'rb').read())
    for feature, info in sorted(report.anomaly_info.items()):
      problems.append(f'{split}: {feature}: {info.short_description} ({info.description})')
    if report.HasField('dataset_anomaly_info'):
      problems.append(f'{split}: dataset: {report.dataset_anomaly_info.description}')
  return problems


def raise_on_anomalies(anomalies: tfx.types.standard_artifacts.ExampleAnomalies) -> None:
  """Raises DataAnomaliesError naming every anomaly; returns when there are none."""
  problems = describe_anomalies(anomalies)
  if problems:
    raise DataAnomaliesError(
      "the examples do not match the run's schema (the adopted --schema, else Fashion-MNIST's "
      'shipped one or the one proposed for your images):\n  '
      + '\n  '.join(problems)
      + f'\nFull report: {anomalies.uri}'
    )


@tfx.dsl.components.component
def AnomaliesGate(
  anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
) -> None:
  """Fails the run, before Transform, when ExampleValidator found anomalies."""
  raise_on_anomalies(anomalies)
