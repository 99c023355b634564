"""What the Trainer reads from Transform's output: spec-shaped images and labels for training
(the encoded bytes left out of the cache), and real sample files for the warmup requests."""

import types

import numpy as np
import pytest
import tensorflow as tf
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from contract.features import IMAGE_KEY
from contract.features import LABEL_KEY
from contract.features import DatasetSpec
from tests import serving_model
from tests.test_preprocessing import encode
from trainer import task
from trainer.preprocessing import IMAGE_RAW_KEY

SPEC = DatasetSpec(('left', 'right'), height=10, width=14, channels=3)


def _transformed_example(features):
  """A transformed example as Transform materializes it."""
  example = tf.train.Example()
  feature = example.features.feature
  feature[IMAGE_KEY].float_list.value.extend(features[IMAGE_KEY].numpy().ravel())
  feature[LABEL_KEY].int64_list.value.append(int(features[LABEL_KEY]))
  feature[IMAGE_RAW_KEY].bytes_list.value.append(features[IMAGE_RAW_KEY].numpy())
  return example.SerializeToString()


def _fn_args(tmp_path):
  """FnArgs with the eval files and the data accessor a Trainer gets, over 5 transformed files of
  mixed sizes and formats."""
  rng = np.random.default_rng(0)
  files = [
    encode(rng.integers(0, 256, shape, np.uint8), image_format)
    for shape, image_format in (
      ((10, 14, 3), 'PNG'),
      ((20, 7), 'PNG'),
      ((33, 33, 4), 'PNG'),
      ((10, 14, 3), 'JPEG'),
      ((5, 5, 3), 'BMP'),
    )
  ]
  transform_output = serving_model.write_transform_graph(str(tmp_path / 'transform'), SPEC)
  raw = {IMAGE_KEY: tf.constant(files), LABEL_KEY: tf.constant([0, 1, 0, 1, 1], tf.int64)}
  transformed = transform_output.transform_raw_features(raw)
  path = str(tmp_path / 'eval.gz')
  with tf.io.TFRecordWriter(path, tf.io.TFRecordOptions(compression_type='GZIP')) as out:
    for index in range(len(files)):
      out.write(_transformed_example({name: value[index] for name, value in transformed.items()}))

  def tf_dataset_factory(file_patterns, options, schema):
    source = tfxio.TFExampleRecord(file_pattern=file_patterns, schema=schema)
    return source.TensorFlowDataset(options)

  data_accessor = tfx.components.DataAccessor(tf_dataset_factory, None, None)
  fn_args = types.SimpleNamespace(data_accessor=data_accessor, eval_files=[path])
  return fn_args, transform_output, files


def test_training_batches_are_spec_shaped_images_and_labels_and_samples_are_the_files(tmp_path):
  fn_args, transform_output, files = _fn_args(tmp_path)
  batches = task._dataset(fn_args, transform_output, fn_args.eval_files, batch_size=4, seed=0)
  assert batches.element_spec[0].shape.as_list() == [None, 10, 14, 3]
  images, labels = next(iter(batches))
  assert images.shape == (4, 10, 14, 3) and labels.numpy().ravel().tolist() == [0, 1, 0, 1]
  assert 0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 1
  assert task.sample_images(fn_args, transform_output, count=3) == files[:3]
  assert task.sample_images(fn_args, transform_output) == files  # fewer than asked: all of them


def test_a_trainer_spec_other_than_transforms_is_one_line_naming_both_shapes(tmp_path):
  transform_output = serving_model.write_transform_graph(str(tmp_path), SPEC)
  task.check_transform_matches(transform_output, SPEC)
  other = DatasetSpec(SPEC.classes, height=14, width=10, channels=3)
  with pytest.raises(ValueError, match=r"images are \[10, 14, 3\] but .* says \[14, 10, 3\]"):
    task.check_transform_matches(transform_output, other)


def test_training_batches_mix_the_classes_of_files_written_one_class_after_another(tmp_path):
  # ExampleGen writes a class folder's images together: 12,000 of one class, then 12,000 of the
  # other, more than any fixed shuffle buffer of a few thousand examples would span.
  spec = DatasetSpec(('left', 'right'), height=1, width=1, channels=1)
  transform_output = serving_model.write_transform_graph(str(tmp_path / 'transform'), spec)
  path = str(tmp_path / 'train.gz')
  per_class = 12_000
  with tf.io.TFRecordWriter(path, tf.io.TFRecordOptions(compression_type='GZIP')) as out:
    for label in (0, 1):
      for _ in range(per_class):
        example = tf.train.Example()
        example.features.feature[IMAGE_KEY].float_list.value.append(float(label))
        example.features.feature[LABEL_KEY].int64_list.value.append(label)
        example.features.feature[IMAGE_RAW_KEY].bytes_list.value.append(b'')
        out.write(example.SerializeToString())
  fn_args = types.SimpleNamespace(
    data_accessor=tfx.components.DataAccessor(
      lambda patterns, options, schema: tfxio.TFExampleRecord(
        file_pattern=patterns, schema=schema
      ).TensorFlowDataset(options),
      None,
      None,
    )
  )
  examples = task.count_records([path])
  assert examples == 2 * per_class
  batches = task._dataset(
    fn_args, transform_output, [path], batch_size=500, seed=0, training_examples=examples
  )
  for images, labels in batches.take(3):
    share = float(tf.reduce_mean(tf.cast(labels, tf.float32)))
    assert 0.4 < share < 0.6, f'a training batch of class-sorted files is {share:.0%} one class'
    np.testing.assert_array_equal(
      tf.reshape(images, [-1]), tf.cast(tf.reshape(labels, [-1]), tf.float32)
    )
