"""IdxExampleGen's executor: splits, holdout determinism and the example encoding."""

import os
import tempfile

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs
from tfx.utils import json_utils
from tfx.utils import proto_utils

from components.idx_example_gen import executor
from components.idx_example_gen import idx
from components.idx_example_gen.component import fashion_mnist_input_config
from tests import idx_files
from trainer import features


def test_holdout_is_about_the_requested_share_and_fixed_per_index():
  indices = range(20_000)
  held_out = [i for i in indices if executor.is_holdout(i, 10)]
  assert 0.09 < len(held_out) / len(indices) < 0.11
  # Fixed by the index alone: these values are what every run, on every runner, computes.
  assert held_out == [i for i in indices if executor.is_holdout(i, 10)]
  assert set(held_out) <= {i for i in indices if executor.is_holdout(i, 20)}


def test_example_encoding_keeps_every_pixel_as_int64():
  image = np.arange(784, dtype=np.uint16).reshape(28, 28) % 256
  example = tf.train.Example.FromString(executor.to_example(image.astype(np.uint8), 7))
  assert (
    list(example.features.feature[features.IMAGE_KEY].int64_list.value) == image.ravel().tolist()
  )
  assert list(example.features.feature[features.LABEL_KEY].int64_list.value) == [7]


def _generate(data_dir, custom_config=None, out_dir=None):
  exec_properties = {
    standard_component_specs.INPUT_BASE_KEY: data_dir,
    standard_component_specs.INPUT_CONFIG_KEY: proto_utils.proto_to_json(
      fashion_mnist_input_config()
    ),
    standard_component_specs.OUTPUT_CONFIG_KEY: proto_utils.proto_to_json(example_gen_pb2.Output()),
    standard_component_specs.CUSTOM_CONFIG_KEY: json_utils.dumps(custom_config or {}),
  }
  out_dir = out_dir or tempfile.mkdtemp()
  with beam.Pipeline() as pipeline:
    splits = executor.Executor().GenerateExamplesByBeam(pipeline, exec_properties)
    for name, records in splits.items():
      records | f'Write[{name}]' >> beam.io.WriteToTFRecord(os.path.join(out_dir, name))
  return {
    name: [
      tf.train.Example.FromString(record.numpy())
      for record in tf.data.TFRecordDataset(tf.io.gfile.glob(os.path.join(out_dir, name) + '*'))
    ]
    for name in splits
  }


def _labels_and_first_pixels(examples):
  return sorted(
    (
      e.features.feature['label'].int64_list.value[0],
      tuple(e.features.feature['image'].int64_list.value[:64]),
    )
    for e in examples
  )


def test_train_and_eval_partition_the_training_file_and_test_is_t10k(tmp_path):
  data_dir = idx_files.write_fashion_mnist_like(str(tmp_path), train_count=200, test_count=30)
  splits = _generate(data_dir)
  assert set(splits) == {'train', 'eval', 'test'}
  assert len(splits['test']) == 30
  expected_eval = sum(executor.is_holdout(i, executor.DEFAULT_EVAL_PERCENT) for i in range(200))
  assert len(splits['eval']) == expected_eval
  assert len(splits['train']) == 200 - expected_eval
  images, labels = idx.read_pair(idx.find_pair(data_dir, 'train-*-ubyte.gz'))
  everything = [executor.to_example(image, label) for image, label in zip(images, labels)]
  assert _labels_and_first_pixels(splits['train'] + splits['eval']) == _labels_and_first_pixels(
    [tf.train.Example.FromString(e) for e in everything]
  )
  assert _generate(data_dir)['eval'] and (
    _labels_and_first_pixels(_generate(data_dir)['eval'])
    == _labels_and_first_pixels(splits['eval'])
  )


def test_eval_percent_comes_from_custom_config(tmp_path):
  data_dir = idx_files.write_fashion_mnist_like(str(tmp_path), train_count=200, test_count=10)
  splits = _generate(data_dir, {executor.EVAL_PERCENT_KEY: 50})
  assert len(splits['eval']) == sum(executor.is_holdout(i, 50) for i in range(200))


def test_missing_files_fail_before_the_pipeline_runs(tmp_path):
  idx_files.write_dataset(str(tmp_path), 'train', 20)
  with pytest.raises(idx.IdxFormatError, match='t10k'):
    _generate(str(tmp_path))
