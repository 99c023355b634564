"""Small image datasets for tests, in every input layout the pipeline reads, made here.

No network: Fashion-MNIST comes from the IDX files the Debian package dataset-fashion-mnist
installs (`make data`), the digits from the copy inside scikit-learn's wheel, and the coloured
shapes are drawn here. Every builder is deterministic (first images in file order, or seeded)
and returns a `Built`: what `--data` points at, the class names the pipeline should find, and a
few image files with their classes to hand to `predict`.
"""

import csv
import dataclasses
import gzip
import io
import json
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image
from PIL import ImageDraw

from contract.features import FASHION_MNIST
from contract.features import IMAGE_KEY
from contract.features import LABEL_KEY

FASHION_MNIST_DIRS = (
  '/usr/share/datasets/fashion-mnist',
  os.path.expanduser('~/.keras/datasets/fashion-mnist'),
)
# IDX file prefix of each split of the Fashion-MNIST export: `train` and `test` class folders.
FASHION_MNIST_SPLITS = {'train': 'train', 'test': 't10k'}
# Vertex AI's ML_USE values, by the split they select.
VERTEX_ML_USE = {'train': 'training', 'eval': 'validation', 'test': 'test'}
# The coloured shapes: class name, fill colour. Colour and outline both tell the classes apart,
# so the grayscale image among them still has a learnable class.
SHAPES = (('circle', (220, 40, 40)), ('square', (40, 200, 60)), ('triangle', (50, 70, 230)))
SHAPE_SIZES = (20, 40)  # smallest and largest side, pixels
# tf.Example keys of the TFRecord input, as TFDS writes image classification datasets.
TFDS_FEATURES_FILE = 'features.json'
TFDS_LABELS_FILE = f'{LABEL_KEY}.labels.txt'


@dataclasses.dataclass(frozen=True)
class Built:
  """A dataset on disk: `data` is what `fmnist-pipeline run --data` takes."""

  data: str
  classes: Tuple[str, ...]  # the class names the pipeline should derive, label i = classes[i]
  # (image file, class name): files to hand to `predict`, outside any directory ExampleGen reads
  # where the layout is not files (TFRecords), else files of the held-out test split if any.
  samples: Tuple[Tuple[str, str], ...]
  counts: Dict[str, int]  # images per split as written ('all' where the layout has no splits)


def folder_name(class_name: str) -> str:
  """A class name as a folder name: '/' cannot be in one ('T-shirt/top' -> 'T-shirt_top')."""
  return class_name.replace('/', '_')


def fashion_mnist_dir() -> str:
  """The directory with the four Fashion-MNIST IDX gz files (Debian's, else the Keras cache)."""
  for directory in FASHION_MNIST_DIRS:
    if os.path.exists(os.path.join(directory, 't10k-labels-idx1-ubyte.gz')):
      return directory
  raise FileNotFoundError(
    f'no Fashion-MNIST IDX files in {" or ".join(FASHION_MNIST_DIRS)}: '
    'apt-get install dataset-fashion-mnist (or `make data`)'
  )


def read_idx(path: str) -> np.ndarray:
  """An IDX gz file as uint8 [n, ...]: 2 zero bytes, dtype 0x08 (uint8), rank, big-endian sizes."""
  with gzip.open(path, 'rb') as idx_file:
    content = idx_file.read()
  rank = content[3]
  shape = np.frombuffer(content, dtype='>u4', count=rank, offset=4)
  return np.frombuffer(content, dtype=np.uint8, offset=4 + 4 * rank).reshape(shape)


def first_per_class(labels: np.ndarray, per_class: Optional[int]) -> np.ndarray:
  """Indices of the first `per_class` images of each class in file order (all if None), sorted."""
  if per_class is None:
    return np.arange(len(labels))
  chosen = [np.flatnonzero(labels == label)[:per_class] for label in np.unique(labels)]
  return np.sort(np.concatenate(chosen))


def png_bytes(pixels: np.ndarray) -> bytes:
  """uint8 [H, W] (grayscale) or [H, W, C] as PNG bytes (lossless; PIL writes the same bytes
  for the same pixels)."""
  out = io.BytesIO()
  Image.fromarray(pixels).save(out, format='PNG')
  return out.getvalue()


def _write(path: str, content: bytes) -> str:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'wb') as out:
    out.write(content)
  return path


def write_fashion_mnist_tree(
  out_dir: str,
  train_per_class: Optional[int] = 30,
  test_per_class: Optional[int] = 10,
  idx_dir: Optional[str] = None,
) -> Built:
  """Fashion-MNIST as PNG class folders with a split level: out_dir/{train,test}/<class>/N.png,
  N the image's index in its IDX file, <class> the class name with '/' as '_'. None: every image
  (the 70k export)."""
  idx_dir = idx_dir or fashion_mnist_dir()
  counts, samples = {}, []
  for split, prefix in FASHION_MNIST_SPLITS.items():
    images = read_idx(os.path.join(idx_dir, f'{prefix}-images-idx3-ubyte.gz'))
    labels = read_idx(os.path.join(idx_dir, f'{prefix}-labels-idx1-ubyte.gz'))
    chosen = first_per_class(labels, train_per_class if split == 'train' else test_per_class)
    for index in chosen:
      class_name = FASHION_MNIST.classes[labels[index]]
      path = os.path.join(out_dir, split, folder_name(class_name), f'{index:05d}.png')
      _write(path, png_bytes(images[index]))
      if split == 'test':
        samples.append((path, class_name))
    counts[split] = len(chosen)
  classes = tuple(sorted(folder_name(name) for name in FASHION_MNIST.classes))
  return Built(out_dir, classes, tuple(samples), counts)


def digits(per_class: int = 50) -> Tuple[np.ndarray, np.ndarray]:
  """scikit-learn's 8x8 digits (values 0..16) as uint8 0..255 images [n, 8, 8] and labels, the
  first `per_class` of each digit in the file's order."""
  from sklearn.datasets import load_digits  # pylint: disable=import-outside-toplevel

  loaded = load_digits()
  chosen = first_per_class(loaded.target, per_class)
  images = np.round(loaded.images[chosen] * (255 / 16)).astype(np.uint8)
  return images, loaded.target[chosen].astype(np.int64)


def write_digits_tree(out_dir: str, per_class: int = 50) -> Built:
  """The digits as PNG class folders without a split level: out_dir/<digit>/N.png."""
  images, labels = digits(per_class)
  written = [
    (_write(os.path.join(out_dir, str(label), f'{index:04d}.png'), png_bytes(image)), str(label))
    for index, (image, label) in enumerate(zip(images, labels))
  ]
  return Built(
    out_dir, tuple(str(d) for d in range(10)), tuple(written[::10]), {'all': len(labels)}
  )


def ml_use(index: int) -> str:
  """A Vertex ML_USE split for the index-th image: 1 in 10 test, 1 in 10 validation, the rest
  training (every class gets all three, as the digits come in class order 0..9 repeated)."""
  return {0: 'test', 1: 'validation'}.get((index // 10) % 10, 'training')


def write_digits_manifest(out_dir: str, per_class: int = 50, with_ml_use: bool = True) -> Built:
  """The digits as out_dir/images/N.png listed in out_dir/manifest.csv, Vertex AI's image
  classification CSV: `[ML_USE,]URI,LABEL`, URIs relative to the manifest. `data` is the CSV."""
  images, labels = digits(per_class)
  rows, samples, counts = [], [], {}
  for index, (image, label) in enumerate(zip(images, labels)):
    relative = f'images/{index:04d}.png'
    path = _write(os.path.join(out_dir, relative), png_bytes(image))
    use = ml_use(index) if with_ml_use else None
    rows.append([use, relative, str(label)] if use else [relative, str(label)])
    counts[use or 'all'] = counts.get(use or 'all', 0) + 1
    if use == 'test' or (use is None and index % 10 == 0):
      samples.append((path, str(label)))
  manifest = os.path.join(out_dir, 'manifest.csv')
  with open(manifest, 'w', newline='') as out:
    csv.writer(out, lineterminator='\n').writerows(rows)
  return Built(manifest, tuple(str(d) for d in range(10)), tuple(samples), counts)


def shape_image(class_index: int, height: int, width: int, rng: np.random.Generator):
  """RGB uint8 [height, width, 3]: the class's shape in its colour on a noisy gray background."""
  name, colour = SHAPES[class_index]
  background = rng.integers(90, 140, size=(height, width, 3)).astype(np.uint8)
  image = Image.fromarray(background)
  box = (width * 0.15, height * 0.15, width * 0.85, height * 0.85)
  draw = ImageDraw.Draw(image)
  if name == 'circle':
    draw.ellipse(box, fill=colour)
  elif name == 'square':
    draw.rectangle(box, fill=colour)
  else:
    draw.polygon([(box[0], box[3]), ((box[0] + box[2]) / 2, box[1]), (box[2], box[3])], colour)
  return np.asarray(image)


def _encoded_shape(image: Image.Image, name: str, index: int) -> Tuple[bytes, str]:
  """(bytes, file suffix): a JPEG, except the first circle (grayscale PNG) and the first square
  (RGBA PNG, alpha 200)."""
  out = io.BytesIO()
  if index == 0 and name == 'circle':
    image.convert('L').save(out, format='PNG')
    return out.getvalue(), 'png'
  if index == 0 and name == 'square':
    rgba = image.convert('RGBA')
    rgba.putalpha(200)
    rgba.save(out, format='PNG')
    return out.getvalue(), 'png'
  image.save(out, format='JPEG', quality=90)
  return out.getvalue(), 'jpg'


def write_shapes(out_dir: str, per_class: int = 40, seed: int = 0) -> Built:
  """Coloured shapes of mixed sizes (each side 20..40 px) as class folders out_dir/<shape>/N.jpg,
  one of them a grayscale PNG and one an RGBA PNG."""
  rng = np.random.default_rng(seed)
  written = []
  for class_index, (name, _) in enumerate(SHAPES):
    for index in range(per_class):
      height, width = rng.integers(SHAPE_SIZES[0], SHAPE_SIZES[1] + 1, size=2)
      image = Image.fromarray(shape_image(class_index, int(height), int(width), rng))
      encoded, suffix = _encoded_shape(image, name, index)
      path = _write(os.path.join(out_dir, name, f'{index:03d}.{suffix}'), encoded)
      written.append((path, name))
  return Built(
    out_dir, tuple(name for name, _ in SHAPES), tuple(written[::8]), {'all': len(written)}
  )


def tf_example(image: bytes, label: int) -> bytes:
  """A serialized tf.Example as TFDS writes one: encoded image bytes and an int64 label."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  feature = {
    IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
    LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
  }
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(
    deterministic=True
  )


def tfds_features(classes: Sequence[str], shape: Sequence[int]) -> Dict:
  """TFDS' features.json of an image classification dataset (FeaturesDict with an Image and a
  ClassLabel), the class names inline as well as in label.labels.txt, where TFDS keeps them."""
  return {
    'pythonClassName': 'tensorflow_datasets.core.features.features_dict.FeaturesDict',
    'featuresDict': {
      'features': {
        IMAGE_KEY: {
          'pythonClassName': 'tensorflow_datasets.core.features.image_feature.Image',
          'image': {
            'shape': {'dimensions': [str(size) for size in shape]},
            'dtype': 'uint8',
            'encodingFormat': 'png',
          },
        },
        LABEL_KEY: {
          'pythonClassName': 'tensorflow_datasets.core.features.class_label_feature.ClassLabel',
          'classLabel': {'numClasses': str(len(classes)), 'names': list(classes)},
        },
      }
    },
  }


def write_fashion_mnist_tfrecords(
  out_dir: str, train_per_class: int = 30, test_per_class: int = 10, idx_dir: Optional[str] = None
) -> Built:
  """Fashion-MNIST as TFDS writes it: out_dir/data/fashion_mnist-{train,test}.tfrecord-00000-of-
  00001 (PNG bytes under `image`, int64 `label`) beside features.json and label.labels.txt;
  `data` is out_dir/data. The samples are PNG files of test images in out_dir/samples."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  idx_dir = idx_dir or fashion_mnist_dir()
  data = os.path.join(out_dir, 'data')
  os.makedirs(data, exist_ok=True)
  counts, samples = {}, []
  for split, prefix in FASHION_MNIST_SPLITS.items():
    images = read_idx(os.path.join(idx_dir, f'{prefix}-images-idx3-ubyte.gz'))
    labels = read_idx(os.path.join(idx_dir, f'{prefix}-labels-idx1-ubyte.gz'))
    chosen = first_per_class(labels, train_per_class if split == 'train' else test_per_class)
    path = os.path.join(data, f'fashion_mnist-{split}.tfrecord-00000-of-00001')
    with tf.io.TFRecordWriter(path) as writer:
      for index in chosen:
        encoded = png_bytes(images[index])
        writer.write(tf_example(encoded, int(labels[index])))
        if split == 'test' and len(samples) < 20:
          sample = _write(os.path.join(out_dir, 'samples', f'{index:05d}.png'), encoded)
          samples.append((sample, FASHION_MNIST.classes[labels[index]]))
    counts[split] = len(chosen)
  with open(os.path.join(data, TFDS_FEATURES_FILE), 'w') as out:
    json.dump(tfds_features(FASHION_MNIST.classes, FASHION_MNIST.image_shape), out, indent=2)
  with open(os.path.join(data, TFDS_LABELS_FILE), 'w') as out:
    out.write(''.join(f'{name}\n' for name in FASHION_MNIST.classes))
  return Built(data, FASHION_MNIST.classes, tuple(samples), counts)


def read_tfrecords(pattern: str) -> List[Tuple[bytes, int]]:
  """(image bytes, label) of every tf.Example in the files matching `pattern`."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  records = []
  for record in tf.data.TFRecordDataset(sorted(tf.io.gfile.glob(pattern))):
    feature = tf.train.Example.FromString(record.numpy()).features.feature
    records.append((feature[IMAGE_KEY].bytes_list.value[0], feature[LABEL_KEY].int64_list.value[0]))
  return records
