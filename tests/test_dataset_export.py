"""The Fashion-MNIST PNG export: every image lands in its split and class folder, pixel-exact."""

import os

import numpy as np
import tensorflow as tf

from components.image_example_gen import idx
from contract.features import FASHION_MNIST
from dataset import export
from tests import idx_files


def test_export_writes_each_image_as_a_png_in_its_split_and_class_folder(tmp_path):
  data_dir = idx_files.write_fashion_mnist_like(
    str(tmp_path / 'idx'), train_count=30, test_count=12
  )
  out_dir = str(tmp_path / 'png')
  assert export.export_fashion_mnist_png(data_dir, out_dir) == {'train': 30, 'test': 12}
  for split, pattern in export.SPLIT_PATTERNS:
    pixels, labels = idx.read_pair(idx.find_pair(data_dir, pattern))
    for index in (0, len(labels) - 1):
      class_dir = export.class_folder_name(FASHION_MNIST.classes[labels[index]])
      path = os.path.join(out_dir, split, class_dir, f'{index:05d}.png')
      decoded = tf.io.decode_png(tf.io.read_file(path)).numpy()
      np.testing.assert_array_equal(decoded[:, :, 0], pixels[index])
  assert sorted(os.listdir(os.path.join(out_dir, 'train'))) == sorted(
    export.class_folder_name(name) for name in FASHION_MNIST.classes
  )
  assert 'T-shirt_top' in os.listdir(os.path.join(out_dir, 'test'))


def test_limit_keeps_the_first_images_of_each_split(tmp_path):
  data_dir = idx_files.write_fashion_mnist_like(
    str(tmp_path / 'idx'), train_count=30, test_count=12
  )
  out_dir = tmp_path / 'png'
  assert export.export_fashion_mnist_png(data_dir, str(out_dir), limit_per_split=5) == {
    'train': 5,
    'test': 5,
  }
  assert sorted(path.name for path in out_dir.glob('train/*/*.png')) == [
    f'{index:05d}.png' for index in range(5)
  ]
