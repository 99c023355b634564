"""dataset.resolve: class order, size and channel rules, served classes, schema adoption."""

import glob
import os

import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv

from contract.features import FASHION_MNIST
from dataset import resolve
from dataset import schema as dataset_schema
from dataset.errors import DatasetError
from tests import idx_files
from tests import image_data


def _folders(root, sizes_and_modes, classes=('b', 'a', 'c')):
  """One image per (size, mode) per class, in class folders."""
  seed = 0
  for class_name in classes:
    for size, mode in sizes_and_modes:
      seed += 1
      image = image_data.image_bytes(seed, size=size, mode=mode)
      image_data.write(os.path.join(root, class_name, f'{seed}.png'), image)
  return str(root)


def test_folder_names_sorted_and_the_common_size_of_grayscale_images(tmp_path):
  data = _folders(tmp_path / 'data', [((12, 10), 'L'), ((12, 10), 'LA')])
  resolved = resolve.resolve(data)
  assert resolved.layout == 'folders' and resolved.proposed
  assert resolved.spec.classes == ('a', 'b', 'c')
  assert resolved.spec.image_shape == (12, 10, 1)
  assert dataset_schema.classes_from_schema(resolved.schema_text, 'proposed') == ('a', 'b', 'c')
  assert resolved.schema_text.startswith('# Proposed schema for ')
  assert any('every sampled image is 12x10' in line for line in resolved.facts)


def test_mixed_sizes_give_the_median_within_8_to_224_and_color_gives_3_channels(tmp_path):
  data = _folders(tmp_path / 'data', [((4, 300), 'RGB'), ((6, 400), 'L'), ((9, 500), 'L')])
  spec = resolve.resolve(data).spec
  assert (spec.height, spec.width, spec.channels) == (8, 224, 3)


def test_options_override_the_data(tmp_path):
  data = _folders(tmp_path / 'data', [((12, 10), 'RGB')])
  assert resolve.resolve(data, image_size='32', channels=1).spec.image_shape == (32, 32, 1)
  assert resolve.resolve(data, image_size='20x40').spec.image_shape == (20, 40, 3)
  with pytest.raises(DatasetError, match="image_size: '20 by 40' is not N or HxW"):
    resolve.resolve(data, image_size='20 by 40')


def test_served_classes_keep_their_order_and_refuse_a_new_class(tmp_path):
  data = _folders(tmp_path / 'data', [((8, 8), 'L')], classes=('a', 'b'))
  assert resolve.resolve(data, served_classes=['b', 'x', 'a']).spec.classes == ('b', 'x', 'a')
  with pytest.raises(DatasetError) as error:
    resolve.resolve(data, served_classes=['b', 'x'])
  assert str(error.value) == (
    f"{data}/a/1.png: class 'a' is not one of the 2 classes of the served model: add it there "
    '(a new model then serves it), or remove these images'
  )


def test_an_adopted_schema_fixes_the_classes_and_is_used_as_written(tmp_path):
  data = _folders(tmp_path / 'data', [((8, 8), 'L')], classes=('a', 'b'))
  proposed = resolve.resolve(data).schema_text
  adopted_text = proposed.replace('value: "a"\n  value: "b"', 'value: "b"\n  value: "a"')
  adopted = tmp_path / 'schema.pbtxt'
  adopted.write_text(adopted_text)
  resolved = resolve.resolve(data, schema_path=str(adopted), served_classes=['a', 'b'])
  assert resolved.spec.classes == ('b', 'a') and not resolved.proposed
  assert resolved.schema_text == adopted_text
  adopted.write_text(adopted_text.replace('value: "a"', 'value: "z"'))
  with pytest.raises(DatasetError, match=f"{data}/a/1.png: class 'a' is not one of the 2 classes"):
    resolve.resolve(data, schema_path=str(adopted))


def test_an_adopted_schema_without_classes_or_with_another_label_domain_is_refused(tmp_path):
  data = _folders(tmp_path / 'data', [((8, 8), 'L')], classes=('a', 'b'))
  adopted = tmp_path / 'schema.pbtxt'
  adopted.write_text('feature { name: "label" type: INT int_domain { min: 0 max: 1 } }')
  with pytest.raises(DatasetError, match="schema.pbtxt: no string_domain 'classes'"):
    resolve.resolve(data, schema_path=str(adopted))
  adopted.write_text(
    'feature { name: "label" type: INT int_domain { min: 0 max: 2 } }\n'
    'string_domain { name: "classes" value: "a" value: "b" }'
  )
  with pytest.raises(DatasetError, match='label domain 0..2 does not match the 2 classes'):
    resolve.resolve(data, schema_path=str(adopted))


def test_idx_is_fashion_mnist_with_its_shipped_schema(tmp_path):
  data = idx_files.write_fashion_mnist_like(str(tmp_path), train_count=20, test_count=5)
  resolved = resolve.resolve(data)
  assert resolved.spec == FASHION_MNIST and not resolved.proposed
  assert dataset_schema.classes_from_schema(resolved.schema_text, 'shipped') == (
    FASHION_MNIST.classes
  )


def test_int_labels_without_names_are_classes_in_numeric_order(tmp_path):
  path = tmp_path / 'data.tfrecord'
  with tf.io.TFRecordWriter(str(path)) as writer:
    for label in (10, 2, 9):
      example = tf.train.Example()
      example.features.feature['image'].bytes_list.value.append(image_data.image_bytes(label))
      example.features.feature['label'].int64_list.value.append(label)
      writer.write(example.SerializeToString())
  assert resolve.resolve(str(path)).spec.classes == ('2', '9', '10')


def test_the_proposed_schema_accepts_what_image_example_gen_writes(tmp_path):
  data = image_data.class_folders(tmp_path / 'data', {'cat': 12, 'dog': 12})
  image_data.write(
    os.path.join(data, 'dog', 'color.jpg'), image_data.image_bytes(1, 'jpeg', (9, 7), 'RGB')
  )
  resolved = resolve.resolve(data)
  config = image_data.spec_config(resolved.spec.classes, 8, 8, resolved.spec.channels)
  image_data.run_executor(data, tmp_path / 'out', config)
  schema = dataset_schema.parse(resolved.schema_text, 'proposed')
  for split in ('train',):
    stats = tfdv.generate_statistics_from_tfrecord(
      glob.glob(str(tmp_path / 'out' / f'Split-{split}' / 'data*'))[0]
    )
    assert not tfdv.validate_statistics(stats, schema).anomaly_info
