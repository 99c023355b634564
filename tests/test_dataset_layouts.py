"""Each input layout read from tiny data, image inspection per format, ImageExampleGen on them."""

import hashlib
import json
import os

import pytest
import tensorflow as tf

from components.image_example_gen import executor
from contract import features
from dataset import images, layouts
from dataset.errors import DatasetError
from tests import image_data
from tests.image_data import value


@pytest.mark.parametrize(
  'image_format, mode, channels',
  [
    ('png', 'L', 1),
    ('png', 'RGBA', 4),
    ('png', 'LA', 2),
    ('jpeg', 'RGB', 3),
    ('gif', 'RGB', 3),
    ('bmp', 'RGB', 3),
  ],
)
def test_inspect_reports_format_size_channels_bytes_and_brightness(image_format, mode, channels):
  content = image_data.image_bytes(1, image_format, size=(6, 9), mode=mode)
  facts = images.inspect(content, 'x')
  assert (facts.format, facts.height, facts.width, facts.channels) == (image_format, 6, 9, channels)
  assert facts.byte_size == len(content)
  decoded = tf.io.decode_image(content, expand_animations=False).numpy()
  assert facts.mean_intensity == pytest.approx(decoded.mean())
  # The batch decoder agrees with the one-by-one one, to the bit.
  assert images.inspect_batch([content], ['x']) == [facts]


def test_class_folders_without_a_split_level(tmp_path):
  root = image_data.class_folders(tmp_path / 'data', {'dog': 2, 'cat': 1})
  image_data.write(tmp_path / 'data' / 'dog' / 'more' / 'deep.png', image_data.image_bytes(9))
  assert layouts.detect(root) == 'folders'
  items = list(layouts.folder_items(root))
  assert [(os.path.relpath(i.source, root), i.class_name, i.split) for i in items] == [
    ('cat/000.png', 'cat', None),
    ('dog/000.png', 'dog', None),
    ('dog/001.png', 'dog', None),
    ('dog/more/deep.png', 'dog', None),
  ]
  assert all(item.content == item.source for item in items)


def test_class_folders_under_train_validation_and_test(tmp_path):
  root = tmp_path / 'data'
  image_data.class_folders(root, {'cat': 1, 'dog': 1}, split='train')
  image_data.class_folders(root, {'cat': 1}, split='validation', first_seed=10)
  image_data.class_folders(root, {'dog': 1}, split='test', first_seed=20)
  items = list(layouts.folder_items(str(root)))
  assert [(i.class_name, i.split) for i in items] == [
    ('cat', 'train'),
    ('dog', 'train'),
    ('cat', 'eval'),
    ('dog', 'test'),
  ]


def test_split_folders_beside_class_folders_are_refused(tmp_path):
  root = image_data.class_folders(tmp_path / 'data', {'cat': 1, 'train': 1})
  with pytest.raises(DatasetError, match=r"mixes split folders \['train'\] with class folders"):
    list(layouts.folder_items(root))


def test_csv_manifest_with_and_without_ml_use_and_relative_uris(tmp_path):
  image_data.write(tmp_path / 'images' / 'a.png', image_data.image_bytes(1))
  manifest = tmp_path / 'manifest.csv'
  manifest.write_text(
    'training,images/a.png,cat\n'
    f'validation,{tmp_path}/images/a.png,dog\n'
    'gs://bucket/b.jpg,dog\n'
    '\n'
    ',images/c.png,cat\n'
    'TEST,images/d.png,cat\n'
  )
  assert layouts.detect(str(manifest)) == 'csv'
  items = list(layouts.csv_items(str(manifest)))
  assert [(i.source.rsplit(':', 1)[1], i.content, i.class_name, i.split) for i in items] == [
    ('1', f'{tmp_path}/images/a.png', 'cat', 'train'),
    ('2', f'{tmp_path}/images/a.png', 'dog', 'eval'),
    ('3', 'gs://bucket/b.jpg', 'dog', None),
    ('5', f'{tmp_path}/images/c.png', 'cat', None),
    ('6', f'{tmp_path}/images/d.png', 'cat', 'test'),
  ]


def test_csv_manifest_refuses_an_unknown_ml_use_and_multi_label_lines(tmp_path):
  manifest = tmp_path / 'manifest.csv'
  manifest.write_text('train,a.png,cat\n')
  with pytest.raises(DatasetError, match=r"manifest.csv:1: ML_USE 'train' is not one of"):
    list(layouts.csv_items(str(manifest)))
  manifest.write_text('training,a.png,cat,dog\n')
  with pytest.raises(DatasetError, match='manifest.csv:1: 2 labels; one label per image'):
    list(layouts.csv_items(str(manifest)))


def test_jsonl_manifest_in_vertex_format(tmp_path):
  manifest = tmp_path / 'import.jsonl'
  lines = [
    {
      'imageGcsUri': 'gs://bucket/a.jpg',
      'classificationAnnotation': {'displayName': 'daisy'},
      'dataItemResourceLabels': {layouts.ML_USE_LABEL: 'test'},
    },
    {'imageGcsUri': 'b.png', 'classificationAnnotation': {'displayName': 'rose'}},
  ]
  manifest.write_text('\n'.join(json.dumps(line) for line in lines) + '\n')
  assert layouts.detect(str(manifest)) == 'jsonl'
  items = list(layouts.jsonl_items(str(manifest)))
  assert [(i.content, i.class_name, i.split) for i in items] == [
    ('gs://bucket/a.jpg', 'daisy', 'test'),
    (f'{tmp_path}/b.png', 'rose', None),
  ]
  manifest.write_text('{"imageGcsUri": "c.png", "classificationAnnotation": {}}\n')
  with pytest.raises(DatasetError, match=r'import.jsonl:1: c.png: no label'):
    list(layouts.jsonl_items(str(manifest)))


def _tf_example(**features_by_key) -> bytes:
  example = tf.train.Example()
  for key, given in features_by_key.items():
    feature = example.features.feature[key.replace('__', '/')]
    if isinstance(given, bytes):
      feature.bytes_list.value.append(given)
    else:
      feature.int64_list.value.append(given)
  return example.SerializeToString()


def _write_tfrecord(path, records) -> str:
  with tf.io.TFRecordWriter(str(path)) as writer:
    for record in records:
      writer.write(record)
  return str(path)


def test_tfds_tfrecords_take_split_from_file_names_and_label_names_from_tfds(tmp_path):
  directory = tmp_path / 'mnist' / '3.0.1'
  directory.mkdir(parents=True)
  for split, seed in (('train', 0), ('test', 10)):
    _write_tfrecord(
      directory / f'mnist-{split}.tfrecord-00000-of-00001',
      [_tf_example(image=image_data.image_bytes(seed + i), label=i) for i in range(3)],
    )
  (directory / layouts.TFDS_FEATURES_FILE).write_text('{}')
  (directory / layouts.TFDS_LABEL_NAMES_FILE).write_text('zero\none\ntwo\n')
  assert layouts.detect(str(directory)) == 'tfrecord'
  items = list(layouts.items(str(directory)))
  assert [(i.class_name, i.split) for i in items] == [
    ('zero', 'test'),
    ('one', 'test'),
    ('two', 'test'),
    ('zero', 'train'),
    ('one', 'train'),
    ('two', 'train'),
  ]
  assert items[0].content == image_data.image_bytes(10)
  assert items[0].source.endswith('mnist-test.tfrecord-00000-of-00001:record 0')


def test_tfrecords_with_image_encoded_and_class_text(tmp_path):
  path = _write_tfrecord(
    tmp_path / 'data.tfrecord',
    [_tf_example(image__encoded=image_data.image_bytes(1), image__class__text=b'cat')],
  )
  assert [(i.class_name, i.split) for i in layouts.items(path)] == [('cat', None)]


@pytest.mark.parametrize(
  'record, problem',
  [
    (_tf_example(label=1), "no encoded image: expected a bytes feature 'image' or 'image/encoded'"),
    (_tf_example(image=b'png'), "no label: expected an int64 feature 'label' or"),
    (b'\x01\x02garbage', 'not a serialized tf.Example'),
  ],
)
def test_a_tfrecord_without_the_expected_keys_names_the_record_and_keys(tmp_path, record, problem):
  path = _write_tfrecord(tmp_path / 'data.tfrecord', [_tf_example(image=b'x', label=0), record])
  with pytest.raises(DatasetError, match=problem) as error:
    list(layouts.items(path))
  assert str(error.value).startswith(f'{path}:record 1: ')


def test_detect_names_what_it_found_instead(tmp_path):
  (tmp_path / 'notes.txt').write_text('hello')
  with pytest.raises(DatasetError, match='notes.txt: not a manifest'):
    layouts.detect(str(tmp_path / 'notes.txt'))
  with pytest.raises(DatasetError, match='no class folders, IDX files or TFRecord files'):
    layouts.detect(str(tmp_path))
  with pytest.raises(DatasetError, match='absent: not found'):
    layouts.detect(str(tmp_path / 'absent'))


def test_folders_without_splits_are_held_out_by_content_hash(tmp_path):
  root = image_data.class_folders(tmp_path / 'data', {'cat': 40, 'dog': 40})
  # A copy of a cat image under another name: both copies land in the same split.
  with open(os.path.join(root, 'cat', '000.png'), 'rb') as original:
    image_data.write(os.path.join(root, 'cat', 'copy.png'), original.read())
  splits, summary = image_data.run_executor(
    root,
    tmp_path / 'out',
    {**image_data.spec_config(['cat', 'dog']), executor.EVAL_PERCENT_KEY: 20},
  )
  assert summary['layout'] == 'folders' and summary['data'] == root
  assert {split: sum(counts.values()) for split, counts in summary['counts'].items()} == {
    split: len(examples) for split, examples in splits.items()
  }
  assert sum(len(examples) for examples in splits.values()) == 81
  assert splits['eval'] and splits['test'] and splits['train']
  for split, examples in splits.items():
    for example in examples:
      digest = hashlib.sha256(value(example, features.IMAGE_KEY)).digest()
      assert executor.holdout_split(digest, executor.HeldOut(20, 10)) == split
  copies = [
    split
    for split, examples in splits.items()
    for example in examples
    if value(example, features.IMAGE_KEY) == image_data.image_bytes(1)
  ]
  assert len(copies) == 2 and len(set(copies)) == 1


def test_mixed_formats_and_a_manifest_run_through_the_executor(tmp_path):
  kinds = [('png', 'L'), ('png', 'RGBA'), ('jpeg', 'RGB'), ('gif', 'RGB'), ('bmp', 'RGB')]
  lines = []
  for index, (image_format, mode) in enumerate(kinds * 4):
    name = f'images/{index}.{image_format}'
    image_data.write(tmp_path / name, image_data.image_bytes(index, image_format, mode=mode))
    use = 'test' if index % 4 == 3 else 'training'
    lines.append(f'{use},{name},{"round" if index % 2 else "square"}')
  (tmp_path / 'manifest.csv').write_text('\n'.join(lines) + '\n')
  config = {**image_data.spec_config(['round', 'square']), executor.EVAL_PERCENT_KEY: 50}
  splits, summary = image_data.run_executor(tmp_path / 'manifest.csv', tmp_path / 'out', config)
  assert summary['layout'] == 'csv'
  assert len(splits['test']) == 5 and len(splits['train']) + len(splits['eval']) == 15
  everything = [example for examples in splits.values() for example in examples]
  assert sorted({value(e, features.FORMAT_KEY) for e in everything}) == [
    b'bmp',
    b'gif',
    b'jpeg',
    b'png',
  ]
  assert {value(e, features.CHANNELS_KEY) for e in everything} == {1, 3, 4}


def test_input_base_and_pattern_lead_the_executor_back_to_the_data(tmp_path):
  folders = image_data.class_folders(tmp_path / 'folders', {'cat': 1})
  manifest = tmp_path / 'manifest.csv'
  manifest.write_text('a.png,cat\n')
  records = tmp_path / 'records'
  records.mkdir()
  _write_tfrecord(records / 'train.tfrecord', [])
  for data, pattern in (
    (folders, '*/*'),
    (str(manifest), 'manifest.csv'),
    (str(records), '*.tfrecord*'),
    (f'{records}/train*.tfrecord', 'train*.tfrecord'),
  ):
    input_base, found = layouts.input_base_and_pattern(data, layouts.detect(data))
    assert found == pattern
    assert layouts.data_from_input(input_base, found) == data


def test_tfrecords_run_through_the_executor_with_their_splits(tmp_path):
  for split, first_seed in (('train', 0), ('test', 100)):
    _write_tfrecord(
      tmp_path / f'data-{split}.tfrecord',
      [
        _tf_example(image=image_data.image_bytes(first_seed + i), label=i % 2)
        for i in range(40 if split == 'train' else 6)
      ],
    )
  config = {**image_data.spec_config(['0', '1']), executor.EVAL_PERCENT_KEY: 25}
  splits, summary = image_data.run_executor(tmp_path, tmp_path / 'out', config)
  assert summary['layout'] == 'tfrecord'
  assert summary['counts']['test'] == {'0': 3, '1': 3}
  assert len(splits['train']) + len(splits['eval']) == 40 and splits['eval']
