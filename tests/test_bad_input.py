"""Each kind of bad input stops ImageExampleGen with one line naming the file and the problem.

The line is the DatasetError's message. A worker's error arrives re-raised by Beam (a
RuntimeError with the step appended); dataset_error_line finds the line either way.
"""

import os

import pytest

from components.image_example_gen import executor
from dataset.errors import DatasetError
from dataset.errors import dataset_error_line
from tests import image_data

CLASSES = ['cat', 'dog']


def _ingest(data, tmp_path, **options):
  return image_data.run_executor(
    data, tmp_path / 'out', {**image_data.spec_config(CLASSES), **options}
  )


def _stop_line(data, tmp_path, **options) -> str:
  """Runs the executor, which must stop; returns the one line it stopped with."""
  # A DatasetError, or a RuntimeError when Beam re-raises it from a worker.
  with pytest.raises(Exception) as error:
    _ingest(data, tmp_path, **options)
  found = dataset_error_line(error.value)
  assert found is not None, str(error.value)
  assert '\n' not in found and 'while running' not in found
  return found


def _stops(data, tmp_path, line, **options):
  """Runs the executor and checks it stops with one line that starts with `line`."""
  found = _stop_line(data, tmp_path, **options)
  assert found.startswith(line), found


@pytest.fixture
def folders(tmp_path):
  return image_data.class_folders(tmp_path / 'data', {'cat': 12, 'dog': 12})


def test_a_corrupt_image(folders, tmp_path):
  path = os.path.join(folders, 'cat', '003.png')
  image_data.write(path, b'\x89PNG\r\n\x1a\n' + b'\x00' * 60)
  _stops(folders, tmp_path, f'{path}: corrupt or truncated PNG (')


def test_a_truncated_jpeg(folders, tmp_path):
  path = os.path.join(folders, 'dog', 'photo.jpg')
  image_data.write(path, image_data.image_bytes(99, 'jpeg', size=(16, 16), mode='RGB')[:-40])
  _stops(folders, tmp_path, f'{path}: corrupt or truncated JPEG (')


@pytest.mark.parametrize('name', ['README.txt', '.DS_Store', 'Thumbs.db'])
def test_a_file_that_is_not_an_image_in_a_class_folder(folders, tmp_path, name):
  path = image_data.write(os.path.join(folders, 'cat', name), b'\x00\x00\x00\x01Bud1 not an image')
  _stops(folders, tmp_path, f'{path}: not an image (starts with ')


def test_an_empty_class_folder(folders, tmp_path):
  os.makedirs(os.path.join(folders, 'bird'))
  with pytest.raises(DatasetError) as error:
    _ingest(folders, tmp_path)
  assert str(error.value) == (f"{folders}/bird: empty class folder: class 'bird' has no images")


def test_a_class_with_fewer_images_than_the_eval_split_needs(tmp_path):
  root = image_data.class_folders(tmp_path / 'data', {'cat': 12, 'dog': 4})
  _stops(
    root,
    tmp_path,
    f"{root}/dog/000.png: class 'dog' has 4 training images, fewer than the 10 that holding "
    'out 10% for the eval split needs',
    eval_percent=10,
    test_percent=0,
  )


def test_a_manifest_line_whose_file_is_missing(tmp_path):
  image_data.write(tmp_path / 'a.png', image_data.image_bytes(1))
  manifest = tmp_path / 'manifest.csv'
  manifest.write_text('training,a.png,cat\ntraining,missing.png,dog\n')
  _stops(
    manifest,
    tmp_path,
    f'{manifest}:2: {tmp_path}/missing.png: file not found',
    eval_percent=0,
    test_percent=0,
  )


def test_a_class_without_training_images(tmp_path):
  image_data.write(tmp_path / 'a.png', image_data.image_bytes(1))
  image_data.write(tmp_path / 'b.png', image_data.image_bytes(2))
  manifest = tmp_path / 'manifest.csv'
  manifest.write_text('training,a.png,cat\ntest,b.png,dog\n')
  assert _stop_line(manifest, tmp_path, eval_percent=0) == (
    f"{manifest}:2: {tmp_path}/b.png: class 'dog' has no training images "
    '(all 1 are in eval or test)'
  )


def test_a_manifest_line_without_a_label(tmp_path):
  manifest = tmp_path / 'manifest.csv'
  manifest.write_text('test,a.png,cat\ntest,b.png\n')
  with pytest.raises(DatasetError) as error:
    _ingest(manifest, tmp_path)
  assert str(error.value) == f'{manifest}:2: b.png: no label'


def test_the_same_image_in_two_splits(tmp_path):
  root = tmp_path / 'data'
  image_data.class_folders(root, {'cat': 12, 'dog': 12}, split='train')
  image_data.class_folders(root, {'cat': 1, 'dog': 1}, split='test', first_seed=100)
  duplicate = image_data.write(root / 'test' / 'cat' / 'again.png', image_data.image_bytes(5))
  found = _stop_line(str(root), tmp_path)
  assert found.startswith(f'{duplicate}: the same image (SHA-256 ')
  # The train copy may be in train or held out into eval: either way, two splits.
  assert f'as {root}/train/cat/004.png is in both the ' in found


def test_an_image_over_the_byte_limit(folders, tmp_path):
  path = image_data.write(
    os.path.join(folders, 'dog', 'big.png'), image_data.image_bytes(7, size=(40, 40))
  )
  size = os.path.getsize(path)
  _stops(
    folders, tmp_path, f'{path}: {size} bytes, over max_image_bytes 1000', max_image_bytes=1000
  )


def test_an_image_over_the_pixel_limit(folders, tmp_path):
  path = image_data.write(
    os.path.join(folders, 'dog', 'big.png'), image_data.image_bytes(7, size=(10, 12))
  )
  _stops(
    folders,
    tmp_path,
    f'{path}: 10x12 = 120 pixels, over max_image_pixels 100',
    max_image_pixels=100,
  )


def test_a_class_the_run_was_not_built_for(folders, tmp_path):
  image_data.class_folders(tmp_path / 'data', {'bird': 1}, first_seed=500)
  with pytest.raises(DatasetError) as error:
    _ingest(folders, tmp_path)
  assert str(error.value).startswith(
    f"{folders}/bird/000.png: class 'bird' is not one of the 2 classes this run was built for"
  )


def test_bad_images_skip_leaves_them_out_and_lists_them(folders, tmp_path):
  corrupt = image_data.write(os.path.join(folders, 'cat', 'broken.png'), b'\x89PNG\r\n\x1a\nxx')
  text = image_data.write(os.path.join(folders, 'dog', 'README.txt'), b'about these images')
  splits, summary = _ingest(folders, tmp_path, bad_images='skip')
  assert sum(len(examples) for examples in splits.values()) == 24
  assert summary['skipped_count'] == 2
  assert [entry['file'] for entry in summary['skipped']] == [corrupt, text]
  assert summary['skipped'][0]['problem'].startswith('corrupt or truncated PNG')
  assert summary['skipped'][1]['problem'].startswith('not an image')


def test_bad_images_must_be_stop_or_skip():
  with pytest.raises(ValueError, match="bad_images must be stop or skip, got 'ignore'"):
    executor.IngestOptions.from_custom_config({executor.BAD_IMAGES_KEY: 'ignore'})
