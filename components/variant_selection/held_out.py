"""The selected model on the held-out test split, through its serving signature."""

import dataclasses
from typing import Dict, List, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tf_keras as keras

from trainer import export
from trainer import features
from trainer.calibration import ExpectedCalibrationError

BATCH_SIZE = 1024


@dataclasses.dataclass(frozen=True)
class HeldOutResult:
  examples: int
  metrics: Dict[str, float]
  # confusion_matrix[true label][predicted label] = count.
  confusion_matrix: List[List[int]]
  # Per example, in file order: whether the top class is the label (for paired comparisons).
  correct: Tuple[bool, ...] = dataclasses.field(default=(), repr=False, compare=False)

  @property
  def per_class_accuracy(self) -> Dict[str, float]:
    """Recall of each class: the diagonal over the row sums."""
    return {
      name: row[index] / sum(row) if sum(row) else float('nan')
      for index, (name, row) in enumerate(zip(features.CLASS_NAMES, self.confusion_matrix))
    }


def _records(example_files: Sequence[str]) -> tf.data.Dataset:
  return tf.data.TFRecordDataset(list(example_files), compression_type='GZIP')


def first_records(example_files: Sequence[str], count: int) -> List[bytes]:
  """The first `count` serialized tf.Examples, as a client would send them."""
  return [record.numpy() for record in _records(example_files).take(count)]


def evaluate(model_dir: str, example_files: Sequence[str]) -> HeldOutResult:
  """Runs raw tf.Examples (gzip TFRecords) through serving_default, as TF Serving would."""
  if not example_files:
    raise ValueError('no test examples to evaluate on')
  serve = tf.saved_model.load(model_dir).signatures[export.SERVING_SIGNATURE]
  metrics = [
    keras.metrics.SparseCategoricalAccuracy(),
    keras.metrics.SparseCategoricalCrossentropy(),
    ExpectedCalibrationError(),
  ]
  confusion = np.zeros((features.NUM_CLASSES, features.NUM_CLASSES), np.int64)
  label_spec = {features.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64)}
  batches = _records(example_files).batch(BATCH_SIZE)
  correct = []
  for serialized in batches:
    labels = tf.io.parse_example(serialized, label_spec)[features.LABEL_KEY]
    probabilities = serve(**{export.EXAMPLES_INPUT: serialized})[export.PROBABILITIES]
    for metric in metrics:
      metric.update_state(labels, probabilities)
    predicted = tf.argmax(probabilities, axis=-1)
    confusion += tf.math.confusion_matrix(
      labels, predicted, num_classes=features.NUM_CLASSES, dtype=tf.int64
    ).numpy()
    correct.extend((predicted == labels).numpy().tolist())
  return HeldOutResult(
    examples=len(correct),
    metrics={metric.name: float(metric.result()) for metric in metrics},
    confusion_matrix=confusion.tolist(),
    correct=tuple(correct),
  )
