"""Inputs that list their images rather than hold them in class folders, each the cheapest run to
a pushed model that `predict` answers from image files: scikit-learn's digits in a Vertex AI CSV
manifest (`ML_USE,URI,LABEL`, relative URIs; resized and made RGB by the options), and
Fashion-MNIST as TFDS writes TFRecords (int labels, the names in its features files)."""

import pytest

from contract.features import FASHION_MNIST
from tests import image_datasets
from tests import image_pipeline_runs


@pytest.fixture(scope='module')
def digits_csv(tmp_path_factory):
  return image_pipeline_runs.pushed(
    tmp_path_factory,
    'digits_csv',
    image_datasets.write_digits_manifest,
    (*image_pipeline_runs.CHEAPEST, '--image-size', '16', '--channels', '3'),
  )


@pytest.fixture(scope='module')
def tfrecords(tmp_path_factory):
  return image_pipeline_runs.pushed(
    tmp_path_factory, 'tfrecords', image_datasets.write_fashion_mnist_tfrecords
  )


def test_csv_manifest_gives_a_model_of_the_size_and_channels_asked_for(digits_csv):
  built, run = digits_csv
  spec = run.spec()
  assert spec.classes == built.classes == tuple(str(digit) for digit in range(10))
  assert spec.image_shape == (16, 16, 3)


def test_predict_answers_the_manifest_test_images_8x8_gray_as_they_are(digits_csv):
  built, run = digits_csv
  files = [path for path, _ in built.samples]
  answers, _ = image_pipeline_runs.predicted_classes(run.version_dir, built.classes, files)
  assert len(answers) == len(files) == 50


def test_tfds_tfrecords_give_a_model_named_by_the_features_file(tfrecords):
  built, run = tfrecords
  spec = run.spec()
  assert spec.classes == FASHION_MNIST.classes  # 'T-shirt/top': no folder, so the '/' stays
  assert spec.image_shape == FASHION_MNIST.image_shape


def test_predict_answers_png_files_of_tfrecord_images(tfrecords):
  built, run = tfrecords
  files = [path for path, _ in built.samples]
  answers, _ = image_pipeline_runs.predicted_classes(run.version_dir, built.classes, files)
  assert len(answers) == len(files) == 20
