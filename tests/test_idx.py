"""The IDX reader: good files read back exactly, every kind of bad file names itself."""

import gzip
import os

import numpy as np
import pytest

from components.image_example_gen import idx
from tests import idx_files


@pytest.fixture
def pair(tmp_path):
  return idx_files.write_dataset(str(tmp_path), 'train', count=12, seed=3)


def test_reads_back_what_was_written(tmp_path):
  labels = np.arange(10)
  images = idx_files.learnable_images(labels, seed=0)
  pair = idx_files.write_dataset(str(tmp_path), 'train', 10, images=images, labels=labels)
  read_images, read_labels = idx.read_pair(pair)
  np.testing.assert_array_equal(read_images, images)
  np.testing.assert_array_equal(read_labels, labels)


def _rewrite(path, payload: bytes, compress=True):
  if compress:
    idx_files.write_gz(path, payload)
  else:
    with open(path, 'wb') as out:
      out.write(payload)


def _raw(path) -> bytes:
  with gzip.open(path) as source:
    return source.read()


@pytest.mark.parametrize(
  'corrupt, problem',
  [
    (
      lambda p: _rewrite(p.images_path, b'\x00\x00\x08\x01' + _raw(p.images_path)[4:]),
      'this is an IDX labels file, not images',
    ),
    (
      lambda p: _rewrite(p.images_path, b'\x00\x00\x08\x02' + _raw(p.images_path)[4:]),
      'magic number 0x00000802',
    ),
    (lambda p: _rewrite(p.images_path, _raw(p.images_path)[:-5]), 'file holds'),
    (lambda p: _rewrite(p.images_path, b'', compress=False), 'empty'),
    (lambda p: _rewrite(p.images_path, _raw(p.images_path), compress=False), 'not a gzip'),
    (
      lambda p: _rewrite(p.images_path, open(p.images_path, 'rb').read()[:200], compress=False),
      'truncated',
    ),
    (lambda p: os.remove(p.images_path), 'not found'),
    (
      lambda p: _rewrite(
        p.images_path, idx_files.idx_bytes(np.zeros((12, 28, 27)), idx.IMAGES_MAGIC)
      ),
      '28x27',
    ),
    (lambda p: _rewrite(p.images_path, b'\x00\x00\x08'), 'header'),
  ],
)
def test_bad_images_file_fails_naming_it(pair, corrupt, problem):
  corrupt(pair)
  with pytest.raises(idx.IdxFormatError, match=problem) as error:
    idx.read_pair(pair)
  assert pair.images_path in str(error.value)


def test_label_out_of_range_fails_naming_file_and_index(pair):
  labels = np.zeros(12, np.uint8)
  labels[7] = 10
  _rewrite(pair.labels_path, idx_files.idx_bytes(labels, idx.LABELS_MAGIC))
  with pytest.raises(idx.IdxFormatError, match='label 10 at index 7') as error:
    idx.read_pair(pair)
  assert pair.labels_path in str(error.value)


def test_image_and_label_counts_must_match(pair):
  _rewrite(pair.labels_path, idx_files.idx_bytes(np.zeros(11), idx.LABELS_MAGIC))
  with pytest.raises(idx.IdxFormatError, match='12 images but .* holds 11 labels') as error:
    idx.read_pair(pair)
  assert pair.labels_path in str(error.value)


def test_find_pair_needs_exactly_one_images_and_one_labels_file(tmp_path, pair):
  assert idx.find_pair(str(tmp_path), 'train-*-ubyte.gz') == pair
  with pytest.raises(idx.IdxFormatError, match='found none'):
    idx.find_pair(str(tmp_path), 't10k-*-ubyte.gz')
  os.remove(pair.labels_path)
  with pytest.raises(idx.IdxFormatError, match='one \\*-labels-\\* file'):
    idx.find_pair(str(tmp_path), 'train-*-ubyte.gz')
