"""Where the images are: what `data` points at picks one of five layouts, each read as Items.

- `idx`: a directory holding the Fashion-MNIST IDX gz files (train-*, t10k-*).
- `folders`: `root/<class>/*` (Keras' image_dataset_from_directory convention; files below a
  class folder, at any depth, belong to it), or with a split level
  `root/{train,eval|validation|val,test}/<class>/*`.
- `csv`: a Vertex AI image-classification manifest, one `[ML_USE,]URI,LABEL` per line.
- `jsonl`: a Vertex AI JSON Lines manifest, one object per line: `imageGcsUri`,
  `classificationAnnotation.displayName`, optional `dataItemResourceLabels` with
  `aiplatform.googleapis.com/ml_use`. Manifest URIs are relative to the manifest's directory,
  absolute, or gs://. ml_use `training`, `validation`, `test` name the split.
- `tfrecord`: TFRecord files of tf.Examples (a directory of them, one file, or a glob pattern),
  with the encoded image in a bytes feature `image` or `image/encoded`, and the label as an
  int64 `label` or `image/class/label`, or a bytes `image/class/text`. That is what TFDS writes
  (`image`, `label`); its `features.json` beside the files marks a TFDS directory, whose
  `label.labels.txt` names the int labels. A file named like `*-train.tfrecord*`,
  `*-validation.tfrecord*`, `*-test.tfrecord*` gives its split.

Spans (data that keeps arriving): `data` holding `{SPAN}` (`gs://b/images/span-{SPAN}`,
`root/span-{SPAN}/manifest.csv`), or a directory whose subfolders are all `span-<N>` (then the
template is `<data>/span-{SPAN}`). Each span is any one of the layouts above; spans order by
their number (span-9 < span-10, span-09 < span-10). See span_template and list_spans.

Every path goes through tf.io.gfile, so local paths and gs:// read alike. Bad input raises
DatasetError with one line naming the file, manifest line or record and the problem.
"""

import csv
import fnmatch
import json
import posixpath
import re
from collections.abc import Iterator
from typing import NamedTuple

import tensorflow as tf
from google.protobuf import message

from components.image_example_gen import idx
from contract.features import FASHION_MNIST
from dataset import images
from dataset.errors import DatasetError

SPLITS = ('train', 'eval', 'test')
SPLIT_FOLDER_NAMES = {
  'train': 'train',
  'training': 'train',
  'eval': 'eval',
  'validation': 'eval',
  'val': 'eval',
  'test': 'test',
}
ML_USE_SPLITS = {'training': 'train', 'validation': 'eval', 'test': 'test'}
ML_USE_LABEL = 'aiplatform.googleapis.com/ml_use'
IMAGE_KEYS = ('image', 'image/encoded')
INT_LABEL_KEYS = ('label', 'image/class/label')
TEXT_LABEL_KEY = 'image/class/text'
TFDS_FEATURES_FILE = 'features.json'
TFDS_LABEL_NAMES_FILE = 'label.labels.txt'
# The input_config pattern of a directory layout (what TFX's driver fingerprints for caching);
# a file layout's pattern is the file's name (or glob) in its directory: see data_from_input.
DIRECTORY_PATTERNS = {'idx': '*-ubyte.gz', 'folders': '*/*', 'tfrecord': '*.tfrecord*'}
_SPLIT_IN_NAME = re.compile(r'(?:^|[-_.])(train|training|eval|validation|val|test)(?=[-_.]|$)')


SPAN_TOKEN = '{SPAN}'
SPAN_FOLDER = re.compile(r'^span-([0-9]+)$')


class Span(NamedTuple):
  number: int
  path: str  # the template with {SPAN} replaced by this span's own spelling (span-09)


def span_template(data: str) -> str | None:
  """`data` when it holds {SPAN}; `<data>/span-{SPAN}` when data is a directory whose
  subfolders are all span-<N>; None for data without spans. Lists at most one directory."""
  data = data.rstrip('/')
  if SPAN_TOKEN in data:
    if data.count(SPAN_TOKEN) > 1:
      raise DatasetError(data, 'holds {SPAN} more than once')
    return data
  if _has_glob(data) or not tf.io.gfile.isdir(data):
    return None
  names = [name.rstrip('/') for name in tf.io.gfile.listdir(data)]
  spans = [name for name in names if SPAN_FOLDER.match(name)]
  if not spans:
    return None
  others = sorted(
    name for name in names if not SPAN_FOLDER.match(name) and tf.io.gfile.isdir(_join(data, name))
  )
  if others:
    raise DatasetError(
      data,
      f'mixes span folders ({", ".join(sorted(spans)[:3])}) with other folders '
      f'({", ".join(others[:3])}): put all the data in span-<N> folders, or none',
    )
  return posixpath.join(data, 'span-' + SPAN_TOKEN)


def _span_root_and_rest(template: str) -> tuple[str, str]:
  """(the directory above the path segment holding {SPAN}, the template from that segment)."""
  before, _, _ = template.partition(SPAN_TOKEN)
  root = before.rpartition('/')[0]
  return root, template[len(root) + 1 :]


def _is_empty(path: str) -> bool:
  if not tf.io.gfile.isdir(path):
    return False
  return not any(files for _, _, files in tf.io.gfile.walk(path))


def list_spans(template: str) -> list[Span]:
  """Every span of `template`, oldest first, numerically; DatasetError on an empty span folder
  or when there is none."""
  root, rest = _span_root_and_rest(template)
  segment, _, below = rest.partition('/')
  matcher = re.compile('^' + re.escape(segment).replace(re.escape(SPAN_TOKEN), '([0-9]+)') + '$')
  if not tf.io.gfile.isdir(root):
    raise DatasetError(root, 'not found (the folder holding the spans)')
  found = {}
  for name in tf.io.gfile.listdir(root):
    name = name.rstrip('/')
    matched = matcher.match(name)
    if not matched:
      continue
    folder = _join(root, name)
    number = int(matched.group(1))
    if _is_empty(folder):
      raise DatasetError(folder, f'empty span folder: span {number} holds no files')
    if number in found:
      raise DatasetError(folder, f'span {number} is also {found[number]}: one folder per span')
    found[number] = posixpath.join(folder, below) if below else folder
  if not found:
    raise DatasetError(template, 'matches no span folder')
  return [Span(number, found[number]) for number in sorted(found)]


def span_input_base_and_pattern(template: str, layout: str) -> tuple[str, str]:
  """ExampleGen's input_base and {SPAN} pattern: TFX's driver resolves the newest span (by its
  number) and fingerprints its files for the cache."""
  root, rest = _span_root_and_rest(template)
  last = posixpath.basename(rest)
  if layout in DIRECTORY_PATTERNS and not _has_glob(last) and not _is_file_name(last, layout):
    return root, f'{rest}/{DIRECTORY_PATTERNS[layout]}'
  return root, rest


def _is_file_name(name: str, layout: str) -> bool:
  return layout == 'tfrecord' and _is_tfrecord_name(name)


class Item(NamedTuple):
  """One image as a layout yields it, before it is read or checked."""

  source: str  # what an error names: a file, `manifest.csv:12`, `data.tfrecord:record 7`
  content: bytes | str  # the encoded image, or the URI of the file holding it
  class_name: str
  split: str | None  # train / eval / test when the data says so, else None
  facts: images.ImageFacts | None = None  # known without decoding (IDX pixels)


class Shard(NamedTuple):
  """A part of the data a worker expands into Items (read_shard): an IDX pair, a TFRecord
  file, a class folder or a manifest. Listing shards is cheap, so the launcher does it."""

  layout: str
  path: str
  split: str | None
  labels_path: str = ''  # idx: the labels file paired with the images file `path`
  label_names: tuple[str, ...] = ()  # tfrecord: names of int labels 0..N-1, when known
  class_name: str = ''  # folders: the class of every file below `path`


def input_base_and_pattern(data: str, layout: str) -> tuple[str, str]:
  """ExampleGen's input_base and split pattern for `data`: the directory, or a file's folder."""
  data = data.rstrip('/')
  if layout in DIRECTORY_PATTERNS and not _has_glob(data) and tf.io.gfile.isdir(data):
    return data, DIRECTORY_PATTERNS[layout]
  return posixpath.split(data)


def data_from_input(input_base: str, pattern: str) -> str:
  """`data` back from input_base_and_pattern's (or span_input_base_and_pattern's, its span
  resolved) result."""
  if pattern in DIRECTORY_PATTERNS.values():
    return input_base
  for directory_pattern in DIRECTORY_PATTERNS.values():
    if pattern.endswith('/' + directory_pattern):
      return posixpath.join(input_base, pattern[: -len(directory_pattern) - 1])
  return posixpath.join(input_base, pattern)


def _is_tfrecord_name(name: str) -> bool:
  # train.tfrecord, train.tfrecords, train.tfrecord.gz, mnist-train.tfrecord-00000-of-00001
  return '.tfrecord' in name.lower() or name.lower().endswith('.tfrec')


def _has_glob(data: str) -> bool:
  return any(char in data for char in '*?[')


def detect(data: str) -> str:
  """The layout `data` holds, or DatasetError saying what was found instead."""
  data = data.rstrip('/')
  if _has_glob(data):
    return 'tfrecord'
  if not tf.io.gfile.exists(data):
    raise DatasetError(data, 'not found')
  if not tf.io.gfile.isdir(data):
    name = posixpath.basename(data).lower()
    if name.endswith('.csv'):
      return 'csv'
    if name.endswith(('.jsonl', '.json')):
      return 'jsonl'
    if _is_tfrecord_name(name):
      return 'tfrecord'
    raise DatasetError(
      data,
      'not a manifest (.csv, .jsonl) or TFRecord file (.tfrecord); pass a directory of class '
      'folders, the IDX files or TFRecords, or a manifest',
    )
  names = tf.io.gfile.listdir(data)
  if fnmatch.filter(names, idx.TRAIN_PATTERN) or fnmatch.filter(names, idx.TEST_PATTERN):
    return 'idx'
  if any(_is_tfrecord_name(name) for name in names):
    return 'tfrecord'
  if any(tf.io.gfile.isdir(posixpath.join(data, name)) for name in names):
    return 'folders'
  raise DatasetError(
    data,
    'no class folders, IDX files or TFRecord files in this directory (for a manifest, pass the '
    '.csv or .jsonl file itself)',
  )


def _join(directory: str, name: str) -> str:
  return posixpath.join(directory, name.rstrip('/'))


def _subdirectories(directory: str) -> list[str]:
  return sorted(
    name.rstrip('/')
    for name in tf.io.gfile.listdir(directory)
    if tf.io.gfile.isdir(_join(directory, name))
  )


def _files_below(directory: str) -> list[str]:
  """Every file under `directory`, at any depth, in sorted order."""
  found = []
  for parent, _, files in tf.io.gfile.walk(directory):
    found.extend(_join(parent, name) for name in files)
  return sorted(found)


def class_folder_shards(root: str) -> list['Shard']:
  """The class folders of `root/<class>/*` or `root/<split>/<class>/*`, each with class and split.

  Only directories are listed here; a worker lists each folder's files (folder_shard_items).
  """
  root = root.rstrip('/')
  children = _subdirectories(root)
  split_folders = [name for name in children if name.lower() in SPLIT_FOLDER_NAMES]
  if not split_folders:
    return _class_folders(root, children, None)
  if len(split_folders) != len(children):
    classes = sorted(set(children) - set(split_folders))
    raise DatasetError(
      root,
      f'mixes split folders {split_folders} with class folders {classes}: put every class folder '
      'under train/eval/test, or none',
    )
  by_split = {}
  for name in split_folders:
    split = SPLIT_FOLDER_NAMES[name.lower()]
    if split in by_split:
      raise DatasetError(
        root, f'folders {by_split[split]!r} and {name!r} both name the {split} split'
      )
    by_split[split] = name
  shards = []
  for split in SPLITS:
    if split in by_split:
      split_dir = _join(root, by_split[split])
      shards.extend(_class_folders(split_dir, _subdirectories(split_dir), split))
  return shards


def _class_folders(directory: str, classes: list[str], split: str | None) -> list['Shard']:
  if not classes:
    raise DatasetError(directory, 'holds no class folders (expected <class>/<image files>)')
  return [Shard('folders', _join(directory, name), split, class_name=name) for name in classes]


def _folder_shard_items(shard: 'Shard') -> Iterator[Item]:
  files = _files_below(shard.path)
  if not files:
    raise DatasetError(shard.path, f'empty class folder: class {shard.class_name!r} has no images')
  for path in files:
    yield Item(path, path, shard.class_name, shard.split)


def first_item(shard: 'Shard') -> Item:
  """The first Item of a class folder (by name): what an error about its class names."""
  return next(_folder_shard_items(shard))


def folder_items(root: str) -> Iterator[Item]:
  """Every file of a class-folder tree with its folder's class (and split)."""
  for shard in class_folder_shards(root):
    yield from _folder_shard_items(shard)


def _resolve_uri(manifest: str, uri: str) -> str:
  """A manifest's URI: absolute and gs:// as given, others relative to the manifest's folder."""
  if '://' in uri or uri.startswith('/'):
    return uri
  return posixpath.join(posixpath.dirname(manifest), uri)


def _manifest_lines(manifest: str) -> list[str]:
  with tf.io.gfile.GFile(manifest, 'r') as lines:
    return lines.read().splitlines()


def _ml_use_split(source: str, ml_use: str) -> str:
  split = ML_USE_SPLITS.get(ml_use.strip().lower())
  if split is None:
    raise DatasetError(
      source, f'ML_USE {ml_use!r} is not one of {", ".join(ML_USE_SPLITS)} (or empty)'
    )
  return split


def csv_items(manifest: str) -> Iterator[Item]:
  """Vertex AI's CSV import format: `[ML_USE,]URI,LABEL` per line, no header."""
  for number, row in enumerate(csv.reader(_manifest_lines(manifest)), start=1):
    source = f'{manifest}:{number}'
    cells = [cell.strip() for cell in row]
    if not any(cells):
      continue
    split = None
    if len(cells) >= 3 or cells[0].lower() in ML_USE_SPLITS:
      split = _ml_use_split(source, cells[0]) if cells[0] else None
      cells = cells[1:]
    if not cells or not cells[0]:
      raise DatasetError(source, 'no image URI')
    if len(cells) < 2 or not cells[1]:
      raise DatasetError(source, f'{cells[0]}: no label')
    if len(cells) > 2:
      raise DatasetError(
        source, f'{len(cells) - 1} labels; one label per image (single-label classification)'
      )
    yield Item(source, _resolve_uri(manifest, cells[0]), cells[1], split)


def jsonl_items(manifest: str) -> Iterator[Item]:
  """Vertex AI's JSON Lines import format for single-label image classification."""
  for number, line in enumerate(_manifest_lines(manifest), start=1):
    source = f'{manifest}:{number}'
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except ValueError as error:
      raise DatasetError(source, f'not a JSON object ({error})') from error
    if not isinstance(record, dict) or not record.get('imageGcsUri'):
      raise DatasetError(source, 'no imageGcsUri')
    uri = record['imageGcsUri']
    if 'classificationAnnotations' in record:
      raise DatasetError(
        source, 'classificationAnnotations (multi-label); one classificationAnnotation per image'
      )
    annotation = record.get('classificationAnnotation')
    label = annotation.get('displayName') if isinstance(annotation, dict) else None
    if not label:
      raise DatasetError(source, f'{uri}: no label (classificationAnnotation.displayName)')
    ml_use = (record.get('dataItemResourceLabels') or {}).get(ML_USE_LABEL)
    split = _ml_use_split(source, ml_use) if ml_use else None
    yield Item(source, _resolve_uri(manifest, uri), str(label), split)


def split_in_file_name(path: str) -> str | None:
  """train / eval / test when a file's name says so (TFDS: `mnist-train.tfrecord-00000-of-1`)."""
  found = _SPLIT_IN_NAME.search(posixpath.basename(path).lower())
  return SPLIT_FOLDER_NAMES[found.group(1)] if found else None


def tfds_label_names(directory: str) -> tuple[str, ...]:
  """TFDS' names of the int labels, beside its features.json; () when there are none."""
  names_file = _join(directory, TFDS_LABEL_NAMES_FILE)
  if not tf.io.gfile.exists(_join(directory, TFDS_FEATURES_FILE)) or not tf.io.gfile.exists(
    names_file
  ):
    return ()
  with tf.io.gfile.GFile(names_file, 'r') as lines:
    return tuple(name.strip() for name in lines.read().splitlines() if name.strip())


def tfrecord_shards(data: str) -> list[Shard]:
  """The TFRecord files `data` names (a file, a directory of them, a glob), each with its split."""
  data = data.rstrip('/')
  if _has_glob(data):
    paths = sorted(tf.io.gfile.glob(data))
  elif tf.io.gfile.isdir(data):
    paths = sorted(
      _join(data, name) for name in tf.io.gfile.listdir(data) if _is_tfrecord_name(name)
    )
  else:
    paths = [data]
  if not paths:
    raise DatasetError(data, 'matches no TFRecord files')
  names_by_dir = {}
  shards = []
  for path in paths:
    directory = posixpath.dirname(path)
    if directory not in names_by_dir:
      names_by_dir[directory] = tfds_label_names(directory)
    shards.append(Shard('tfrecord', path, split_in_file_name(path), '', names_by_dir[directory]))
  return shards


def idx_shards(directory: str) -> list[Shard]:
  """The training pair (split train) and the t10k pair (split test)."""
  shards = []
  for split, pattern in (('train', idx.TRAIN_PATTERN), ('test', idx.TEST_PATTERN)):
    pair = idx.find_pair(directory, pattern)
    shards.append(Shard('idx', pair.images_path, split, pair.labels_path))
  return shards


def shards(data: str, layout: str) -> list[Shard]:
  """The parts of `data` workers read, each with its split when the data names it."""
  if layout == 'idx':
    return idx_shards(data.rstrip('/'))
  if layout == 'tfrecord':
    return tfrecord_shards(data)
  if layout == 'folders':
    return class_folder_shards(data)
  return [Shard(layout, data, None)]


def _idx_items(shard: Shard, chunk: int = 500) -> Iterator[Item]:
  pixels, labels = idx.read_pair(idx.IdxPair(shard.path, shard.labels_path))
  for start in range(0, len(labels), chunk):
    some = pixels[start : start + chunk]
    pngs = images.encode_pngs(some)
    facts = images.pixel_facts(some, pngs)
    for index, label, png, png_facts in zip(
      range(start, start + len(some)), labels[start : start + chunk], pngs, facts
    ):
      yield Item(
        f'{shard.path}:image {index}', png, FASHION_MNIST.classes[label], shard.split, png_facts
      )


# Reading a missing key of a protobuf map would insert it: look before reading.
def _bytes(features, key: str) -> list[bytes]:
  return features[key].bytes_list.value if key in features else []


def _ints(features, key: str) -> list[int]:
  return features[key].int64_list.value if key in features else []


def _feature_keys(features) -> str:
  return ', '.join(sorted(features)) or 'none'


def example_image_and_class(
  record: bytes, source: str, label_names: tuple[str, ...] = ()
) -> tuple[bytes, str]:
  """The encoded image and class name of one serialized tf.Example from a TFRecord file."""
  try:
    features = tf.train.Example.FromString(record).features.feature
  except message.DecodeError as error:
    raise DatasetError(source, 'not a serialized tf.Example') from error
  image_key = next((key for key in IMAGE_KEYS if _bytes(features, key)), None)
  if image_key is None:
    raise DatasetError(
      source,
      f"no encoded image: expected a bytes feature 'image' or 'image/encoded' "
      f'(has {_feature_keys(features)})',
    )
  int_key = next((key for key in INT_LABEL_KEYS if _ints(features, key)), None)
  if int_key is not None:
    label = features[int_key].int64_list.value[0]
    if label_names and not 0 <= label < len(label_names):
      raise DatasetError(source, f'label {label} has no name in {TFDS_LABEL_NAMES_FILE}')
    class_name = label_names[label] if label_names else str(label)
  elif _bytes(features, TEXT_LABEL_KEY):
    class_name = features[TEXT_LABEL_KEY].bytes_list.value[0].decode('utf-8')
  else:
    raise DatasetError(
      source,
      "no label: expected an int64 feature 'label' or 'image/class/label', or a bytes feature "
      f"'image/class/text' (has {_feature_keys(features)})",
    )
  return features[image_key].bytes_list.value[0], class_name


def tfrecord_records(path: str) -> Iterator[bytes]:
  """A TFRecord file's records (GZIP when the name ends in .gz); a corrupt file names itself."""
  dataset = tf.data.TFRecordDataset(path, compression_type='GZIP' if path.endswith('.gz') else '')
  try:
    yield from dataset.as_numpy_iterator()
  except tf.errors.OpError as error:
    raise DatasetError(path, f'corrupt TFRecord file ({error.message.splitlines()[0]})') from error


def _tfrecord_items(shard: Shard) -> Iterator[Item]:
  for index, record in enumerate(tfrecord_records(shard.path)):
    source = f'{shard.path}:record {index}'
    content, class_name = example_image_and_class(record, source, shard.label_names)
    yield Item(source, content, class_name, shard.split)


def read_shard(shard: Shard) -> Iterator[Item]:
  """The Items of one shard: IDX and TFRecord ones with their bytes, the others with URIs."""
  readers = {
    'idx': _idx_items,
    'tfrecord': _tfrecord_items,
    'folders': _folder_shard_items,
    'csv': lambda manifest: csv_items(manifest.path),
    'jsonl': lambda manifest: jsonl_items(manifest.path),
  }
  return readers[shard.layout](shard)


def items(data: str) -> Iterator[Item]:
  """Every Item `data` holds, whatever its layout."""
  for shard in shards(data, detect(data)):
    yield from read_shard(shard)


def read_content(item: Item) -> bytes:
  """The encoded image bytes of an Item; a missing file names the item's source and the URI."""
  if isinstance(item.content, bytes):
    return item.content
  try:
    with tf.io.gfile.GFile(item.content, 'rb') as image_file:
      return image_file.read()
  except tf.errors.NotFoundError as error:
    where = item.source if item.source == item.content else f'{item.source}: {item.content}'
    raise DatasetError(where, 'file not found') from error
  except tf.errors.OpError as error:
    raise DatasetError(item.source, f'cannot read ({error.message.splitlines()[0]})') from error
