"""Reader for the IDX gz format (the format Fashion-MNIST and MNIST ship in).

An IDX file is a big-endian header — magic number, then one uint32 per
dimension — followed by the uint8 payload. Every check names the file, so a
bad input stops the run with an error a user can act on.
"""

import dataclasses
import gzip
import struct
import zlib

import numpy as np
import tensorflow as tf

from contract.features import FASHION_MNIST
from dataset.errors import DatasetError

IMAGES_MAGIC = 0x00000803  # uint8 payload, 3 dimensions (count, rows, cols)
LABELS_MAGIC = 0x00000801  # uint8 payload, 1 dimension (count)
IMAGE_SHAPE = (FASHION_MNIST.height, FASHION_MNIST.width)
_KINDS = {IMAGES_MAGIC: 'images', LABELS_MAGIC: 'labels'}
NUM_CLASSES = FASHION_MNIST.num_classes
# The four files' names: train-*-ubyte.gz are the 60k training images, t10k-*-ubyte.gz the test set.
TRAIN_PATTERN = 'train-*-ubyte.gz'
TEST_PATTERN = 't10k-*-ubyte.gz'


class IdxFormatError(DatasetError):
  """An IDX file is missing, unreadable, or not what the pipeline expects."""

  @property
  def path(self) -> str:
    return self.source


@dataclasses.dataclass(frozen=True)
class IdxPair:
  """The images file and the labels file of one split."""

  images_path: str
  labels_path: str


def _read_gzip(path: str) -> bytes:
  if not tf.io.gfile.exists(path):
    raise IdxFormatError(path, 'file not found')
  with tf.io.gfile.GFile(path, 'rb') as raw:
    compressed = raw.read()
  if not compressed:
    raise IdxFormatError(path, 'file is empty')
  try:
    return gzip.decompress(compressed)
  except gzip.BadGzipFile as error:
    raise IdxFormatError(path, f'not a gzip file ({error})') from error
  except (EOFError, zlib.error) as error:
    raise IdxFormatError(path, f'gzip stream is truncated or corrupt ({error})') from error


def _parse(path: str, data: bytes, magic: int) -> tuple[tuple[int, ...], np.ndarray]:
  """Returns (dims, payload) after checking magic number and payload length."""
  # The kind first: a labels file where images belong says so, whatever its length.
  (found_magic,) = struct.unpack('>I', data[:4]) if len(data) >= 4 else (None,)
  if found_magic in _KINDS and found_magic != magic:
    raise IdxFormatError(path, f'this is an IDX {_KINDS[found_magic]} file, not {_KINDS[magic]}')
  ndim = magic & 0xFF
  header_size = 4 + 4 * ndim
  if len(data) < header_size:
    raise IdxFormatError(
      path, f'{len(data)} bytes is shorter than the {header_size}-byte IDX header'
    )
  if found_magic != magic:
    raise IdxFormatError(path, f'magic number {found_magic:#010x}, expected {magic:#010x}')
  dims = struct.unpack(f'>{ndim}I', data[4:header_size])
  expected = int(np.prod(dims))
  payload = np.frombuffer(data, dtype=np.uint8, offset=header_size)
  if payload.size != expected:
    raise IdxFormatError(
      path, f'header promises {expected} bytes of data for dims {dims}, file holds {payload.size}'
    )
  return dims, payload


def read_images(path: str) -> np.ndarray:
  """Reads an IDX3 images file into uint8 [count, 28, 28]."""
  dims, payload = _parse(path, _read_gzip(path), IMAGES_MAGIC)
  if dims[1:] != IMAGE_SHAPE:
    raise IdxFormatError(
      path, f'images are {dims[1]}x{dims[2]}, expected {IMAGE_SHAPE[0]}x{IMAGE_SHAPE[1]}'
    )
  return payload.reshape(dims)


def read_labels(path: str) -> np.ndarray:
  """Reads an IDX1 labels file into uint8 [count], each in 0..9."""
  _, labels = _parse(path, _read_gzip(path), LABELS_MAGIC)
  if labels.size and labels.max() >= NUM_CLASSES:
    bad = int(np.argmax(labels >= NUM_CLASSES))
    raise IdxFormatError(
      path, f'label {labels[bad]} at index {bad} is outside 0..{NUM_CLASSES - 1}'
    )
  return labels


def read_pair(pair: IdxPair) -> tuple[np.ndarray, np.ndarray]:
  """Reads images and labels and checks they describe the same examples."""
  images = read_images(pair.images_path)
  labels = read_labels(pair.labels_path)
  if len(images) != len(labels):
    raise IdxFormatError(
      pair.images_path, f'{len(images)} images but {pair.labels_path} holds {len(labels)} labels'
    )
  if not len(images):
    raise IdxFormatError(pair.images_path, 'holds no images')
  return images, labels


def find_pair(directory: str, pattern: str) -> IdxPair:
  """Finds the one images file and the one labels file that `pattern` matches."""
  matched = sorted(tf.io.gfile.glob(f'{directory.rstrip("/")}/{pattern}'))
  images = [path for path in matched if '-images-' in path.rsplit('/', 1)[-1]]
  labels = [path for path in matched if '-labels-' in path.rsplit('/', 1)[-1]]
  if len(images) != 1 or len(labels) != 1:
    raise IdxFormatError(
      f'{directory}/{pattern}',
      f'expected one *-images-* and one *-labels-* file, found {matched or "none"}',
    )
  return IdxPair(images[0], labels[0])
