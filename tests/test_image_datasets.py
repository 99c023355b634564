"""The test datasets of tests/image_datasets.py hold what their builders say they hold."""

import csv
import io
import json
import os

import numpy as np
import pytest
from PIL import Image

from contract.features import FASHION_MNIST
from tests import image_datasets


def _files(root):
  return sorted(
    os.path.relpath(os.path.join(directory, name), root)
    for directory, _, names in os.walk(root)
    for name in names
  )


def _opened(path):
  with open(path, 'rb') as image_file:
    content = image_file.read()
  return Image.open(io.BytesIO(content)), content


@pytest.fixture(scope='module')
def fashion_mnist_tree(tmp_path_factory):
  return image_datasets.write_fashion_mnist_tree(str(tmp_path_factory.mktemp('fmnist_png')))


def test_fashion_mnist_tree_has_a_split_level_and_a_folder_per_class(fashion_mnist_tree):
  root = fashion_mnist_tree.data
  assert sorted(os.listdir(root)) == ['test', 'train']
  folders = sorted(image_datasets.folder_name(name) for name in FASHION_MNIST.classes)
  assert 'T-shirt_top' in folders and 'Ankle boot' in folders
  for split, per_class in (('train', 30), ('test', 10)):
    assert sorted(os.listdir(os.path.join(root, split))) == folders
    for folder in folders:
      assert len(os.listdir(os.path.join(root, split, folder))) == per_class
  assert fashion_mnist_tree.counts == {'train': 300, 'test': 100}
  assert fashion_mnist_tree.classes == tuple(folders)  # sorted folder names, as Keras orders them


def test_fashion_mnist_png_holds_the_idx_pixels_of_its_index_and_class(fashion_mnist_tree):
  idx_dir = image_datasets.fashion_mnist_dir()
  images = image_datasets.read_idx(os.path.join(idx_dir, 't10k-images-idx3-ubyte.gz'))
  labels = image_datasets.read_idx(os.path.join(idx_dir, 't10k-labels-idx1-ubyte.gz'))
  assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
  assert len(fashion_mnist_tree.samples) == 100
  for path, class_name in fashion_mnist_tree.samples:
    index = int(os.path.basename(path).split('.')[0])
    image, _ = _opened(path)
    assert image.format == 'PNG' and image.mode == 'L'
    np.testing.assert_array_equal(np.asarray(image), images[index])
    assert FASHION_MNIST.classes[labels[index]] == class_name
    assert os.path.basename(os.path.dirname(path)) == image_datasets.folder_name(class_name)


def test_fashion_mnist_tree_is_the_same_bytes_when_built_again(fashion_mnist_tree, tmp_path):
  again = image_datasets.write_fashion_mnist_tree(str(tmp_path), train_per_class=2)
  for name in _files(os.path.join(again.data, 'test')):
    with open(os.path.join(again.data, 'test', name), 'rb') as new:
      with open(os.path.join(fashion_mnist_tree.data, 'test', name), 'rb') as old:
        assert new.read() == old.read(), name
  assert again.counts['train'] == 20


def test_digits_are_8x8_grayscale_scaled_to_the_full_byte_range(tmp_path):
  built = image_datasets.write_digits_tree(str(tmp_path))
  assert sorted(os.listdir(built.data)) == [str(digit) for digit in range(10)]
  assert built.counts == {'all': 500}
  pixels = []
  for digit in range(10):
    names = os.listdir(os.path.join(built.data, str(digit)))
    assert len(names) == 50
    image, _ = _opened(os.path.join(built.data, str(digit), names[0]))
    assert (image.format, image.mode, image.size) == ('PNG', 'L', (8, 8))
    pixels.append(np.asarray(image))
  assert max(image.max() for image in pixels) == 255 and min(image.min() for image in pixels) == 0


def test_digits_manifest_is_vertex_csv_with_relative_uris_and_every_split_per_class(tmp_path):
  built = image_datasets.write_digits_manifest(str(tmp_path))
  assert built.data == os.path.join(str(tmp_path), 'manifest.csv')
  with open(built.data, newline='') as manifest:
    rows = list(csv.reader(manifest))
  assert len(rows) == 500 and all(len(row) == 3 for row in rows)
  splits_per_class = {}
  for use, uri, label in rows:
    assert not os.path.isabs(uri) and os.path.exists(os.path.join(str(tmp_path), uri))
    splits_per_class.setdefault(label, set()).add(use)
  assert splits_per_class == {str(d): {'training', 'validation', 'test'} for d in range(10)}
  assert built.counts == {'training': 400, 'validation': 50, 'test': 50}
  assert {label for _, label in built.samples} == set(splits_per_class)
  test_files = {os.path.join(str(tmp_path), uri) for use, uri, _ in rows if use == 'test'}
  assert {path for path, _ in built.samples} == test_files


def test_digits_manifest_without_ml_use_has_uri_and_label_only(tmp_path):
  built = image_datasets.write_digits_manifest(str(tmp_path), per_class=3, with_ml_use=False)
  with open(built.data, newline='') as manifest:
    rows = list(csv.reader(manifest))
  assert [len(row) for row in rows] == [2] * 30 and rows[0][0].startswith('images/')
  assert built.counts == {'all': 30}


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
  return image_datasets.write_shapes(str(tmp_path_factory.mktemp('shapes')))


def test_shapes_mix_sizes_and_formats(shapes):
  kinds, sizes = {}, set()
  for name in _files(shapes.data):
    image, _ = _opened(os.path.join(shapes.data, name))
    kinds.setdefault((image.format, image.mode), []).append(name)
    assert all(20 <= side <= 40 for side in image.size), name
    sizes.add(image.size)
  assert kinds[('PNG', 'L')] == ['circle/000.png']
  assert kinds[('PNG', 'RGBA')] == ['square/000.png']
  assert len(kinds[('JPEG', 'RGB')]) == 3 * 40 - 2 and len(kinds) == 3
  assert len(sizes) > 50  # sizes vary image to image
  assert shapes.classes == ('circle', 'square', 'triangle')


def test_shapes_class_shows_in_the_colour_of_the_image_centre(shapes):
  for path, class_name in shapes.samples:
    image, _ = _opened(path)
    if image.mode != 'RGB':
      continue
    pixels = np.asarray(image).astype(int)
    height, width, _ = pixels.shape
    centre = pixels[height // 2 - 1 : height // 2 + 2, width // 2 - 1 : width // 2 + 2]
    strongest = int(np.argmax(centre.reshape(-1, 3).mean(axis=0)))
    assert image_datasets.SHAPES[strongest][0] == class_name, path


def test_shapes_are_the_same_bytes_for_the_same_seed_and_differ_for_another(shapes, tmp_path):
  same = image_datasets.write_shapes(str(tmp_path / 'same'))
  other = image_datasets.write_shapes(str(tmp_path / 'other'), seed=1)

  def content(root, name):
    with open(os.path.join(root, name), 'rb') as image_file:
      return image_file.read()

  assert _files(same.data) == _files(shapes.data)
  assert all(content(same.data, n) == content(shapes.data, n) for n in _files(shapes.data))
  assert content(other.data, 'triangle/005.jpg') != content(shapes.data, 'triangle/005.jpg')


def test_tfrecords_hold_png_bytes_and_labels_with_tfds_class_names(tmp_path):
  built = image_datasets.write_fashion_mnist_tfrecords(str(tmp_path), 3, 2)
  assert sorted(os.listdir(built.data)) == [
    'fashion_mnist-test.tfrecord-00000-of-00001',
    'fashion_mnist-train.tfrecord-00000-of-00001',
    'features.json',
    'label.labels.txt',
  ]
  train = image_datasets.read_tfrecords(os.path.join(built.data, '*-train.tfrecord*'))
  assert sorted(label for _, label in train) == sorted(list(range(10)) * 3)
  image = Image.open(io.BytesIO(train[0][0]))
  assert (image.format, image.size) == ('PNG', (28, 28))
  with open(os.path.join(built.data, 'features.json')) as features:
    label = json.load(features)['featuresDict']['features']['label']
  assert label['classLabel'] == {'numClasses': '10', 'names': list(FASHION_MNIST.classes)}
  with open(os.path.join(built.data, 'label.labels.txt')) as names:
    assert names.read().splitlines() == list(FASHION_MNIST.classes)
  assert built.classes == FASHION_MNIST.classes
  # The samples for predict are the test records' images, as files outside the data directory.
  test = dict(image_datasets.read_tfrecords(os.path.join(built.data, '*-test.tfrecord*')))
  assert len(built.samples) == 20
  for path, class_name in built.samples:
    assert not path.startswith(built.data)
    _, content = _opened(path)
    assert FASHION_MNIST.classes[test[content]] == class_name
