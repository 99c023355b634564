"""ImageExampleGen's executor on the IDX files: splits, holdout determinism, example encoding."""

import hashlib
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from tfx.types import standard_artifacts, standard_component_specs
from tfx.utils import proto_utils

from components.image_example_gen import executor, idx
from components.image_example_gen.component import input_config_for
from dataset import layouts
from contract import features
from contract.features import FASHION_MNIST
from dataset import export, images
from tests import idx_files
from tests.image_data import run_executor, value


def test_holdout_is_about_the_requested_share_and_nested():
  digests = [hashlib.sha256(str(i).encode()).digest() for i in range(20_000)]
  held = executor.HeldOut(eval=10, test=10)
  splits = [executor.holdout_split(digest, held) for digest in digests]
  assert 0.09 < splits.count('eval') / len(digests) < 0.11
  assert 0.09 < splits.count('test') / len(digests) < 0.11
  # A larger eval share only moves images from train (and test) into eval, never out of it.
  wider = [executor.holdout_split(d, executor.HeldOut(eval=20, test=0)) for d in digests]
  assert all(w == 'eval' for s, w in zip(splits, wider) if s == 'eval')


def test_idx_train_and_eval_partition_the_training_file_and_test_is_t10k(tmp_path):
  data_dir = idx_files.write_fashion_mnist_like(
    str(tmp_path / 'idx'), train_count=200, test_count=30
  )
  splits, summary = run_executor(data_dir, tmp_path / 'out')
  assert len(splits['test']) == 30
  pixels, labels = idx.read_pair(idx.find_pair(data_dir, idx.TRAIN_PATTERN))
  pngs = [images.encode_png(image) for image in pixels]
  expected_eval = sorted(
    png
    for png in pngs
    if executor.holdout_split(hashlib.sha256(png).digest(), executor.HeldOut(10, 0)) == 'eval'
  )
  assert sorted(value(e, features.IMAGE_KEY) for e in splits['eval']) == expected_eval
  assert sorted(
    (value(e, features.IMAGE_KEY), value(e, features.LABEL_KEY))
    for e in splits['train'] + splits['eval']
  ) == sorted(zip(pngs, labels.tolist()))
  again, _ = run_executor(data_dir, tmp_path / 'again')
  assert sorted(e.SerializeToString(deterministic=True) for e in again['eval']) == sorted(
    e.SerializeToString(deterministic=True) for e in splits['eval']
  )
  assert summary['layout'] == 'idx' and summary['spec'] == FASHION_MNIST.to_dict()
  assert sum(summary['counts']['test'].values()) == 30
  assert sum(summary['counts']['eval'].values()) == len(expected_eval)
  assert summary['skipped'] == [] and summary['skipped_count'] == 0


def test_an_idx_example_carries_the_png_and_its_facts(tmp_path):
  data_dir = idx_files.write_fashion_mnist_like(str(tmp_path / 'idx'), 200, test_count=5)
  splits, _ = run_executor(data_dir, tmp_path / 'out')
  pixels, labels = idx.read_pair(idx.find_pair(data_dir, idx.TEST_PATTERN))
  by_png = {value(e, features.IMAGE_KEY): e for e in splits['test']}
  example = by_png[images.encode_png(pixels[3])]
  decoded = tf.io.decode_png(value(example, features.IMAGE_KEY)).numpy()
  np.testing.assert_array_equal(decoded[:, :, 0], pixels[3])
  assert value(example, features.LABEL_KEY) == labels[3]
  assert value(example, features.HEIGHT_KEY) == value(example, features.WIDTH_KEY) == 28
  assert value(example, features.CHANNELS_KEY) == 1
  assert value(example, features.FORMAT_KEY) == b'png'
  assert value(example, features.BYTE_SIZE_KEY) == len(value(example, features.IMAGE_KEY))
  assert value(example, features.MEAN_INTENSITY_KEY) == pytest.approx(pixels[3].mean(), rel=1e-6)


def test_the_png_export_gives_the_idx_examples_and_splits(tmp_path):
  data_dir = idx_files.write_fashion_mnist_like(
    str(tmp_path / 'idx'), train_count=300, test_count=20
  )
  export.export_fashion_mnist_png(data_dir, str(tmp_path / 'png'))
  spec = FASHION_MNIST.__class__(
    classes=sorted(export.class_folder_name(name) for name in FASHION_MNIST.classes),
    height=28,
    width=28,
    channels=1,
  )
  from_idx, _ = run_executor(data_dir, tmp_path / 'from_idx')
  from_png, summary = run_executor(
    tmp_path / 'png', tmp_path / 'from_png', {features.DATASET_SPEC_KEY: spec.to_json()}
  )
  assert summary['layout'] == 'folders'
  for split in executor.SPLITS:
    assert sorted(value(e, features.IMAGE_KEY) for e in from_png[split]) == sorted(
      value(e, features.IMAGE_KEY) for e in from_idx[split]
    )


def test_eval_percent_comes_from_custom_config(tmp_path):
  data_dir = idx_files.write_fashion_mnist_like(
    str(tmp_path / 'idx'), train_count=200, test_count=10
  )
  splits, _ = run_executor(data_dir, tmp_path / 'out', {executor.EVAL_PERCENT_KEY: 50})
  assert 80 < len(splits['eval']) < 120


def test_missing_files_fail_before_the_pipeline_runs(tmp_path):
  idx_files.write_dataset(str(tmp_path), 'train', 20)
  with pytest.raises(idx.IdxFormatError, match='t10k'):
    run_executor(str(tmp_path), tmp_path / 'out')


def test_do_writes_the_splits_and_dataset_json_into_the_examples_artifact(tmp_path):
  data_dir = idx_files.write_fashion_mnist_like(str(tmp_path / 'idx'), 200, test_count=5)
  input_base, input_config = input_config_for(data_dir, layouts.detect(data_dir))
  examples = standard_artifacts.Examples()
  examples.uri = str(tmp_path / 'examples')
  executor.Executor().Do(
    {},
    {standard_component_specs.EXAMPLES_KEY: [examples]},
    {
      standard_component_specs.INPUT_BASE_KEY: input_base,
      standard_component_specs.INPUT_CONFIG_KEY: proto_utils.proto_to_json(input_config),
      standard_component_specs.OUTPUT_CONFIG_KEY: '{}',
      standard_component_specs.CUSTOM_CONFIG_KEY: '{}',
    },
  )
  assert sorted(os.listdir(examples.uri)) == [
    'Split-eval',
    'Split-test',
    'Split-train',
    executor.SUMMARY_FILE,
  ]
  with open(os.path.join(examples.uri, executor.SUMMARY_FILE)) as summary:
    assert sum(json.load(summary)['counts']['test'].values()) == 5
