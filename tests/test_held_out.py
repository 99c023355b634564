"""The selector's held-out evaluation: a SavedModel with the contract's serve_examples signature
on gzip TFRecords of tf.Examples, for a dataset of three classes."""

import os

import numpy as np
import pytest
import tensorflow as tf

from components.variant_selection import held_out
from components.variant_selection.selection import ACCURACY
from contract import signatures
from contract.features import LABEL_KEY
from contract.features import MEAN_INTENSITY_KEY

CLASSES = ('dark', 'grey', 'bright')


def _three_class_model(directory):
  """Predicts the class from the examples' mean intensity, thirds of 0..255: dark, grey, bright
  (probability 0.8 on that class), through serve_examples as the contract names it."""
  module = tf.Module()

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
  def serve_examples(examples):
    intensity = tf.io.parse_example(
      examples, {MEAN_INTENSITY_KEY: tf.io.FixedLenFeature([], tf.float32)}
    )[MEAN_INTENSITY_KEY]
    predicted = tf.cast(tf.minimum(intensity // 85.0, 2.0), tf.int64)
    probabilities = tf.one_hot(predicted, len(CLASSES), on_value=0.8, off_value=0.1)
    return {
      signatures.PROBABILITIES: probabilities,
      signatures.CLASS_IDS: predicted,
      signatures.CLASSES: tf.gather(tf.constant(CLASSES), predicted),
    }

  module.serve_examples = serve_examples
  path = os.path.join(directory, 'model')
  tf.saved_model.save(module, path, signatures={signatures.EXAMPLES_SIGNATURE: serve_examples})
  return path


def _example(label, intensity):
  return tf.train.Example(
    features=tf.train.Features(
      feature={
        LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        MEAN_INTENSITY_KEY: tf.train.Feature(float_list=tf.train.FloatList(value=[intensity])),
      }
    )
  ).SerializeToString(deterministic=True)


# (label, mean intensity): the model is right on the first five; a grey image taken for dark, a
# bright one for grey and another for dark.
EXAMPLES = [
  (0, 10.0),
  (0, 80.0),
  (1, 100.0),
  (1, 160.0),
  (2, 250.0),
  (1, 20.0),
  (2, 90.0),
  (2, 5.0),
]


def _files(directory):
  """The examples in two gzip TFRecord files, as ExampleGen writes a split."""
  paths = []
  for index, part in enumerate((EXAMPLES[:5], EXAMPLES[5:])):
    path = os.path.join(directory, f'data_tfrecord-0000{index}-of-00002.gz')
    with tf.io.TFRecordWriter(path, options='GZIP') as out:
      for label, intensity in part:
        out.write(_example(label, intensity))
    paths.append(path)
  return paths


def test_held_out_on_a_three_class_model_counts_a_three_by_three_confusion_matrix(tmp_path):
  model = _three_class_model(str(tmp_path))
  result = held_out.evaluate(model, _files(str(tmp_path)), CLASSES)
  assert result.examples == 8 and result.classes == CLASSES
  assert result.confusion_matrix == [[2, 0, 0], [1, 2, 0], [1, 1, 1]]
  assert result.correct == (True,) * 5 + (False,) * 3
  assert result.metrics[ACCURACY] == pytest.approx(5 / 8)
  assert result.per_class_accuracy == pytest.approx({'dark': 1.0, 'grey': 2 / 3, 'bright': 1 / 3})
  # Cross-entropy of probability 0.8 where right and 0.1 where wrong.
  loss = next(value for name, value in result.metrics.items() if 'crossentropy' in name)
  assert loss == pytest.approx((5 * -np.log(0.8) + 3 * -np.log(0.1)) / 8, rel=1e-5)


def test_held_out_stops_when_the_model_has_another_number_of_classes(tmp_path):
  model = _three_class_model(str(tmp_path))
  with pytest.raises(ValueError, match=r'^\S+/model outputs 3 class probabilities, the data has 4'):
    held_out.evaluate(model, _files(str(tmp_path)), (*CLASSES, 'white'))


def test_first_records_are_the_serialized_examples_in_file_order(tmp_path):
  records = held_out.first_records(_files(str(tmp_path)), 6)
  assert records == [_example(label, intensity) for label, intensity in EXAMPLES[:6]]
