"""Class folders of other images to a pushed model that `predict` answers from image files, each
the cheapest run that pushes: scikit-learn's 8x8 digits (PNG, no split level: the hash holdout
makes eval and test), and coloured shapes of mixed sizes, JPEG with a grayscale and an RGBA PNG
among them (size and channels derived from the data)."""

import os

import pytest

from tests import image_datasets
from tests import image_pipeline_runs


@pytest.fixture(scope='module')
def digits(tmp_path_factory):
  return image_pipeline_runs.pushed(tmp_path_factory, 'digits', image_datasets.write_digits_tree)


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
  return image_pipeline_runs.pushed(tmp_path_factory, 'shapes', image_datasets.write_shapes)


def test_digit_folders_give_an_8x8_grayscale_model_of_ten_classes(digits):
  built, run = digits
  spec = run.spec()
  assert spec.classes == built.classes == tuple(str(digit) for digit in range(10))
  assert spec.image_shape == (8, 8, 1)


def test_predict_answers_digit_png_files(digits):
  built, run = digits
  files = [path for path, _ in built.samples]
  answers, _ = image_pipeline_runs.predicted_classes(run.version_dir, built.classes, files)
  assert len(answers) == len(files) == 50


def test_mixed_size_and_format_shapes_give_an_rgb_model_of_their_median_size(shapes):
  built, run = shapes
  spec = run.spec()
  assert spec.classes == ('circle', 'square', 'triangle')
  # Sides drawn from 20..40: their median is near 30; not every image is gray, so RGB.
  assert 25 <= spec.height <= 35 and 25 <= spec.width <= 35 and spec.channels == 3


def test_predict_answers_jpeg_gray_and_rgba_files_of_any_size(shapes):
  built, run = shapes
  files = [path for path, _ in built.samples]
  # The grayscale and the RGBA PNG among the JPEGs.
  assert {'circle/000.png', 'square/000.png'} <= {os.path.relpath(p, built.data) for p in files}
  answers, _ = image_pipeline_runs.predicted_classes(run.version_dir, built.classes, files)
  assert len(answers) == len(files)
