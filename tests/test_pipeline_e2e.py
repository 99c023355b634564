"""The whole pipeline through the CLI with LocalDagRunner, on a tiny generated IDX dataset."""

import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from components.idx_example_gen import executor
from components.idx_example_gen import idx
from pipeline import cli
from tests import idx_files
from trainer import export
from trainer import features

COMPONENTS = (
  'IdxExampleGen',
  'schema_importer',
  'StatisticsGen',
  'ExampleValidator',
  'AnomaliesGate',
  'Transform',
  'Trainer',
  'Evaluator',
  'Pusher',
)


def _run(capsys, data_dir, output_root, accuracy_threshold=0.3):
  code = cli.main(
    [
      'run',
      '--data-dir',
      data_dir,
      '--output-root',
      output_root,
      '--epochs',
      '1',
      '--batch-size',
      '32',
      '--accuracy-threshold',
      str(accuracy_threshold),
    ]
  )
  captured = capsys.readouterr()
  return code, captured.out, captured.err


def _component_states(out):
  rows = [line.split() for line in out.splitlines() if line.startswith('  ')]
  return {row[0]: row[1] for row in rows if row and row[0] in COMPONENTS}


def _versions(output_root):
  model_dir = os.path.join(output_root, 'serving', 'fashion_mnist')
  return sorted(os.listdir(model_dir)) if os.path.isdir(model_dir) else []


@pytest.fixture(scope='module')
def first_run(tmp_path_factory):
  data_dir = idx_files.write_fashion_mnist_like(str(tmp_path_factory.mktemp('data')))
  output_root = str(tmp_path_factory.mktemp('outputs'))
  return data_dir, output_root


def test_first_run_runs_everything_and_pushes_in_tf_serving_layout(first_run, capsys):
  data_dir, output_root = first_run
  code, out, err = _run(capsys, data_dir, output_root)
  assert code == 0, err
  assert _component_states(out) == {name: 'ran' for name in COMPONENTS}
  assert 'Blessed: yes' in out
  versions = _versions(output_root)
  assert len(versions) == 1 and versions[0].isdigit()
  version_dir = os.path.join(output_root, 'serving', 'fashion_mnist', versions[0])
  assert f'Pushed to: {version_dir}' in out
  assert os.path.exists(os.path.join(version_dir, 'saved_model.pb'))

  images, labels = idx.read_pair(idx.find_pair(data_dir, 't10k-*-ubyte.gz'))
  serialized = tf.constant(
    [executor.to_example(image, label) for image, label in zip(images, labels)]
  )
  serve = tf.saved_model.load(version_dir).signatures[export.SERVING_SIGNATURE]
  outputs = serve(examples=serialized)
  probabilities = outputs[export.PROBABILITIES].numpy()
  assert probabilities.shape == (len(labels), features.NUM_CLASSES)
  assert abs(probabilities.sum(axis=1) - 1).max() < 1e-5
  class_ids = outputs[export.CLASS_IDS].numpy()
  assert outputs[export.CLASS_IDS].dtype == tf.int64
  assert (class_ids == probabilities.argmax(axis=1)).all()
  assert [c.decode() for c in outputs[export.CLASSES].numpy()] == [
    features.CLASS_NAMES[i] for i in class_ids
  ]
  # The generated classes are easy to tell apart: a trained model gets most right.
  assert (class_ids == labels).mean() > 0.5


def test_second_run_with_nothing_changed_is_served_from_cache(first_run, capsys):
  data_dir, output_root = first_run
  before = _versions(output_root)
  code, out, err = _run(capsys, data_dir, output_root)
  assert code == 0, err
  assert _component_states(out) == {name: 'cached' for name in COMPONENTS}
  assert _versions(output_root) == before


def test_model_below_the_threshold_is_not_pushed_and_the_run_says_why(first_run, capsys):
  data_dir, output_root = first_run
  before = _versions(output_root)
  code, out, err = _run(capsys, data_dir, output_root, accuracy_threshold=1.01)
  assert code == 0, err
  states = _component_states(out)
  assert states['Trainer'] == 'cached' and states['Evaluator'] == 'ran'
  assert 'Blessed: no, sparse_categorical_accuracy' in out and 'below the threshold 1.01' in out
  assert 'Pushed: nothing' in out
  assert _versions(output_root) == before


def test_bad_input_file_stops_the_run_and_keeps_the_pushed_model(first_run, capsys, tmp_path):
  data_dir, output_root = first_run
  before = _versions(output_root)
  broken = str(tmp_path / 'broken')
  shutil.copytree(data_dir, broken)
  truncated = os.path.join(broken, 'train-images-idx3-ubyte.gz')
  with open(truncated, 'rb') as source:
    head = source.read()[:300]
  with open(truncated, 'wb') as out:
    out.write(head)
  code, _, err = _run(capsys, broken, output_root)
  assert code == 1
  assert 'IdxExampleGen' in err and truncated in err and 'truncated' in err
  assert _versions(output_root) == before


def test_same_seed_in_another_output_root_gives_the_same_model(first_run, capsys, tmp_path):
  data_dir, output_root = first_run
  other_root = str(tmp_path / 'other')
  code, out, err = _run(capsys, data_dir, other_root)
  assert code == 0, err
  assert _component_states(out)['Trainer'] == 'ran'  # its own MLMD: nothing shared, nothing cached
  images, _ = idx.read_pair(idx.find_pair(data_dir, 't10k-*-ubyte.gz'))
  serialized = tf.constant([executor.to_example(image, 0) for image in images])

  def probabilities(root):
    (version,) = _versions(root)
    serve = tf.saved_model.load(os.path.join(root, 'serving', 'fashion_mnist', version))
    return serve.signatures[export.SERVING_SIGNATURE](examples=serialized)[export.PROBABILITIES]

  # Same data, seed and CPU: the same weights up to float32 summation order.
  np.testing.assert_allclose(probabilities(other_root), probabilities(output_root), atol=1e-6)
