"""A model on a split of the examples through its `serve_examples` signature, as a client sending
tf.Examples would call it: the metrics, the confusion matrix and per-example correctness."""

import dataclasses
from typing import Dict, List, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tf_keras as keras

from contract import signatures
from contract.features import LABEL_KEY
from trainer.calibration import ExpectedCalibrationError

BATCH_SIZE = 1024


@dataclasses.dataclass(frozen=True)
class HeldOutResult:
  examples: int
  metrics: Dict[str, float]
  # confusion_matrix[true label][predicted label] = count, one row and column per class.
  confusion_matrix: List[List[int]]
  # The class names, label i is classes[i].
  classes: Tuple[str, ...]
  # Per example, in file order: whether the top class is the label (for paired comparisons).
  correct: Tuple[bool, ...] = dataclasses.field(default=(), repr=False, compare=False)

  @property
  def per_class_accuracy(self) -> Dict[str, float]:
    """Recall of each class: the diagonal over the row sums."""
    return {
      name: row[index] / sum(row) if sum(row) else float('nan')
      for index, (name, row) in enumerate(zip(self.classes, self.confusion_matrix))
    }


def _records(example_files: Sequence[str]) -> tf.data.Dataset:
  return tf.data.TFRecordDataset(list(example_files), compression_type='GZIP')


def first_records(example_files: Sequence[str], count: int) -> List[bytes]:
  """The first `count` serialized tf.Examples, as a client would send them."""
  return [record.numpy() for record in _records(example_files).take(count)]


def evaluate(model_dir: str, example_files: Sequence[str], classes: Sequence[str]) -> HeldOutResult:
  """Runs the tf.Examples of `example_files` (gzip TFRecords, the label in each) through the
  model's serve_examples signature; `classes` are the data's class names."""
  if not example_files:
    raise ValueError('no examples to evaluate on')
  classes = tuple(classes)
  serve = tf.saved_model.load(model_dir).signatures[signatures.EXAMPLES_SIGNATURE]
  metrics = [
    keras.metrics.SparseCategoricalAccuracy(),
    keras.metrics.SparseCategoricalCrossentropy(),
    ExpectedCalibrationError(),
  ]
  confusion = np.zeros((len(classes), len(classes)), np.int64)
  label_spec = {LABEL_KEY: tf.io.FixedLenFeature([], tf.int64)}
  correct = []
  for serialized in _records(example_files).batch(BATCH_SIZE):
    labels = tf.io.parse_example(serialized, label_spec)[LABEL_KEY]
    probabilities = serve(**{signatures.EXAMPLES_INPUT: serialized})[signatures.PROBABILITIES]
    if probabilities.shape[-1] != len(classes):
      raise ValueError(
        f'{model_dir} outputs {probabilities.shape[-1]} class probabilities, the data has '
        f'{len(classes)} classes'
      )
    for metric in metrics:
      metric.update_state(labels, probabilities)
    predicted = tf.argmax(probabilities, axis=-1)
    confusion += tf.math.confusion_matrix(
      labels, predicted, num_classes=len(classes), dtype=tf.int64
    ).numpy()
    correct.extend((predicted == labels).numpy().tolist())
  return HeldOutResult(
    examples=len(correct),
    metrics={metric.name: float(metric.result()) for metric in metrics},
    confusion_matrix=confusion.tolist(),
    classes=classes,
    correct=tuple(correct),
  )
