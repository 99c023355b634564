"""The curated schema and the gate: anomalies are found, named, and stop the run."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from tfx.types import artifact_utils
from tfx.types import standard_artifacts

from components import anomalies_gate
from components import curated_schema
from contract import features
from dataset import images as image_files
from dataset.examples import to_example
from tfx.utils import io_utils


def _changed(record, **values):
  """`record` with features set to `values` (None: the feature removed)."""
  example = tf.train.Example.FromString(record)
  for name, value in values.items():
    feature = example.features.feature
    if value is None:
      del feature[name]
    elif isinstance(value, bytes):
      feature[name].bytes_list.value[:] = [value]
    else:
      feature[name].int64_list.value[:] = [value]
  return example.SerializeToString()


def _anomalies_artifact(tmp_path, records):
  data = str(tmp_path / 'data.tfrecord')
  with tf.io.TFRecordWriter(data) as writer:
    for record in records:
      writer.write(record)
  statistics = tfdv.generate_statistics_from_tfrecord(data)
  schema = io_utils.SchemaReader().read(curated_schema.SCHEMA_FILE)
  report = tfdv.validate_statistics(statistics, schema)
  artifact = standard_artifacts.ExampleAnomalies()
  artifact.uri = str(tmp_path / 'anomalies')
  artifact.split_names = artifact_utils.encode_split_names(['train'])
  os.makedirs(os.path.join(artifact.uri, 'Split-train'))
  with open(os.path.join(artifact.uri, 'Split-train', anomalies_gate.ANOMALIES_FILE), 'wb') as out:
    out.write(report.SerializeToString())
  return artifact


GOOD = [
  to_example(image_files.encode_png(np.full((28, 28), i * 20, np.uint8)), i) for i in range(10)
]


def test_clean_data_passes_the_gate(tmp_path):
  anomalies_gate.raise_on_anomalies(_anomalies_artifact(tmp_path, GOOD))


@pytest.mark.parametrize(
  'bad_record, feature, problem',
  [
    (_changed(GOOD[1], **{features.LABEL_KEY: 10}), features.LABEL_KEY, 'range'),
    (_changed(GOOD[1], **{features.HEIGHT_KEY: 32}), features.HEIGHT_KEY, 'range'),
    (_changed(GOOD[1], **{features.CHANNELS_KEY: 3}), features.CHANNELS_KEY, 'range'),
    (_changed(GOOD[1], **{features.FORMAT_KEY: b'jpeg'}), features.FORMAT_KEY, 'unexpected'),
    (_changed(GOOD[1], **{features.IMAGE_KEY: None}), features.IMAGE_KEY, 'fraction'),
  ],
)
def test_each_schema_violation_stops_the_gate_naming_the_feature(
  tmp_path, bad_record, feature, problem
):
  artifact = _anomalies_artifact(tmp_path, GOOD + [bad_record])
  with pytest.raises(anomalies_gate.DataAnomaliesError, match=f'train: {feature}: ') as error:
    anomalies_gate.raise_on_anomalies(artifact)
  assert problem in str(error.value).lower()
