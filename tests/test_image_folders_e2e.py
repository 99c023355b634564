"""The whole pipeline on Fashion-MNIST written as PNG class folders (train/ and test/ split level),
through push, then `predict` on the test split's PNG files: the one full own-images run."""

import os
import re

import pytest

from contract.features import FASHION_MNIST
from tests import image_datasets
from tests import image_pipeline_runs

# 50 training images a class: most of Fashion-MNIST's test images right after 4 epochs, where the
# ten-class guess gets 10%.
TRAIN_PER_CLASS = 50
OPTIONS = (
  '--quick',
  '--variants',
  'none',
  '--epochs',
  '4',
  '--batch-size',
  '32',
  '--accuracy-threshold',
  '0.3',
)


@pytest.fixture(scope='module')
def fashion_mnist_png(tmp_path_factory):
  return image_datasets.write_fashion_mnist_tree(
    str(tmp_path_factory.mktemp('fmnist_png')), train_per_class=TRAIN_PER_CLASS
  )


@pytest.fixture(scope='module')
def pushed(fashion_mnist_png, tmp_path_factory):
  output_root = str(tmp_path_factory.mktemp('outputs'))
  run = image_pipeline_runs.run_pipeline(fashion_mnist_png, output_root, OPTIONS)
  assert run.code == 0, run.err
  return run, output_root


def _as_folder_names(classes):
  return [image_datasets.folder_name(name) for name in classes]


def test_png_folders_train_to_a_pushed_model_of_their_size_and_classes(fashion_mnist_png, pushed):
  run, output_root = pushed
  assert run.version_dir.startswith(os.path.join(output_root, 'serving') + os.sep)
  assert os.path.exists(os.path.join(run.version_dir, 'saved_model.pb'))
  spec = run.spec()
  assert spec.image_shape == FASHION_MNIST.image_shape
  # The folder names, sorted (Keras' order), or Fashion-MNIST's own names and order if the
  # pipeline recognizes its export: either way one class per folder.
  assert _as_folder_names(spec.classes) in (
    list(fashion_mnist_png.classes),
    _as_folder_names(FASHION_MNIST.classes),
  )


def test_predict_answers_png_files_with_their_fashion_mnist_class(fashion_mnist_png, pushed):
  run, _ = pushed
  spec = run.spec()
  files = [path for path, _ in fashion_mnist_png.samples]
  answers, out = image_pipeline_runs.predicted_classes(run.version_dir, spec.classes, files)
  named = {path: image_datasets.folder_name(name) for path, name in answers.items()}
  assert set(named.values()) <= set(_as_folder_names(FASHION_MNIST.classes))
  truth = dict(fashion_mnist_png.samples)
  right = sum(named[path] == image_datasets.folder_name(truth[path]) for path in files) / len(files)
  assert right > 0.5, out
  assert len(set(named.values())) >= 5  # not one class for everything


def test_predict_on_the_test_folder_labels_its_images_by_class_folder(fashion_mnist_png, pushed):
  run, _ = pushed
  test_folder = os.path.join(fashion_mnist_png.data, 'test')
  code, out, err = image_pipeline_runs.cli_output(
    ['predict', '--local', run.version_dir, test_folder]
  )
  assert code == 0, err
  (accuracy,) = re.findall(r'^accuracy ([01]\.\d+): (\d+) of (\d+) labelled images$', out, re.M)
  assert float(accuracy[0]) > 0.5 and accuracy[2] == '100'
