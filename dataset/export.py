"""Fashion-MNIST as a PNG class-folder tree: the built-in data in the layout users bring.

out_dir/train/<class>/<index>.png from the 60k training files, out_dir/test/<class>/... from the
10k t10k files. The PNGs are the bytes ImageExampleGen makes of the IDX pixels (one encoder), so
both inputs give identical examples, content hashes and so the same eval holdout: a run on the
export is comparable to the IDX run image for image.
"""

import os

import tensorflow as tf

from components.image_example_gen import idx
from contract.features import FASHION_MNIST
from dataset import images

SPLIT_PATTERNS = (('train', idx.TRAIN_PATTERN), ('test', idx.TEST_PATTERN))


def class_folder_name(class_name: str) -> str:
  """A class name as one path component ('T-shirt/top' → 'T-shirt_top')."""
  return class_name.replace('/', '_')


def export_fashion_mnist_png(
  idx_dir: str, out_dir: str, limit_per_split: int | None = None
) -> dict[str, int]:
  """Writes the IDX files under `idx_dir` as PNGs; returns how many images each split got.

  `limit_per_split` keeps the first N images of each split (in file order), for small test sets.
  File names are the image's index in its IDX file, zero-padded so listings sort in file order.
  """
  written = {}
  for split, pattern in SPLIT_PATTERNS:
    pixels, labels = idx.read_pair(idx.find_pair(idx_dir, pattern))
    if limit_per_split is not None:
      pixels, labels = pixels[:limit_per_split], labels[:limit_per_split]
    folders = [
      os.path.join(out_dir, split, class_folder_name(name)) for name in FASHION_MNIST.classes
    ]
    for folder in folders:
      tf.io.gfile.makedirs(folder)
    for index, (png, label) in enumerate(zip(images.encode_pngs(pixels), labels)):
      with tf.io.gfile.GFile(os.path.join(folders[label], f'{index:05d}.png'), 'wb') as out:
        out.write(png)
    written[split] = len(labels)
  return written
