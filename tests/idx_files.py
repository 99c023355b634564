"""Writes small IDX gz datasets for tests, well-formed or deliberately broken."""

import gzip
import os
import struct

import numpy as np

from components.image_example_gen import idx


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
  """IDX encoding: big-endian magic, one uint32 per dimension, then the uint8 payload."""
  header = struct.pack(f'>I{array.ndim}I', magic, *array.shape)
  return header + array.astype(np.uint8).tobytes()


def write_gz(path: str, payload: bytes) -> str:
  with gzip.open(path, 'wb') as out:
    out.write(payload)
  return path


def learnable_images(labels: np.ndarray, seed: int) -> np.ndarray:
  """Images whose class is visible: a bright band at a row set by the label, plus noise."""
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 60, size=(len(labels), 28, 28))
  for image, label in zip(images, labels):
    image[2 + 2 * label : 4 + 2 * label, :] = 255
  return images.astype(np.uint8)


def write_dataset(
  directory: str,
  prefix: str,
  count: int,
  seed: int = 0,
  images: np.ndarray | None = None,
  labels: np.ndarray | None = None,
) -> idx.IdxPair:
  """Writes `<prefix>-images-idx3-ubyte.gz` and `<prefix>-labels-idx1-ubyte.gz`."""
  os.makedirs(directory, exist_ok=True)
  if labels is None:
    labels = np.random.default_rng(seed).integers(0, 10, size=count)
  if images is None:
    images = learnable_images(labels, seed)
  return idx.IdxPair(
    write_gz(
      os.path.join(directory, f'{prefix}-images-idx3-ubyte.gz'), idx_bytes(images, idx.IMAGES_MAGIC)
    ),
    write_gz(
      os.path.join(directory, f'{prefix}-labels-idx1-ubyte.gz'),
      idx_bytes(np.asarray(labels), idx.LABELS_MAGIC),
    ),
  )


def write_fashion_mnist_like(directory: str, train_count: int = 300, test_count: int = 100) -> str:
  """A tiny stand-in for the four Fashion-MNIST files."""
  write_dataset(directory, 'train', train_count, seed=1)
  write_dataset(directory, 't10k', test_count, seed=2)
  return directory
