"""Expected calibration error of a classifier's top-1 confidence, as a streaming Keras metric.

TFMA computes it from the model's probabilities (MetricConfig with
module='trainer.calibration'); the variant report computes it the same way
on the test split.
"""

import tensorflow as tf
import tf_keras as keras

DEFAULT_BINS = 15


def expected_calibration_error(counts, confidence_sums, correct_sums):
  """ECE = Σ_b (n_b / N) · |accuracy_b − confidence_b|, from per-bin sums."""
  counts = tf.convert_to_tensor(counts, tf.float32)
  total = tf.reduce_sum(counts)
  gaps = tf.abs(tf.convert_to_tensor(correct_sums, tf.float32) - confidence_sums)
  # Σ_b (n_b/N)·|correct_b/n_b − conf_b/n_b| = Σ_b |correct_b − conf_b| / N; empty bins add 0.
  return tf.math.divide_no_nan(tf.reduce_sum(gaps), total)


@keras.utils.register_keras_serializable(package='trainer')
class ExpectedCalibrationError(keras.metrics.Metric):
  """Top-1 confidence in `bins` equal-width bins over [0, 1] (Guo et al., 2017).

  Its state is three per-bin sums, so partial results merge by addition, as
  TFMA's distributed evaluation needs.
  """

  def __init__(self, bins: int = DEFAULT_BINS, name: str = 'expected_calibration_error', **kwargs):
    super().__init__(name=name, **kwargs)
    self.bins = bins
    self.counts = self.add_weight(name='counts', shape=(bins,), initializer='zeros')
    self.confidence_sums = self.add_weight(
      name='confidence_sums', shape=(bins,), initializer='zeros'
    )
    self.correct_sums = self.add_weight(name='correct_sums', shape=(bins,), initializer='zeros')

  def update_state(self, y_true, y_pred, sample_weight=None):
    probabilities = tf.cast(tf.reshape(y_pred, [-1, tf.shape(y_pred)[-1]]), tf.float32)
    labels = tf.cast(tf.reshape(y_true, [-1]), tf.int64)
    confidence = tf.reduce_max(probabilities, axis=-1)
    correct = tf.cast(tf.equal(tf.argmax(probabilities, axis=-1), labels), tf.float32)
    weights = (
      tf.ones_like(confidence)
      if sample_weight is None
      else tf.cast(tf.reshape(sample_weight, [-1]), tf.float32)
    )
    # A confidence of exactly 1.0 belongs to the last bin, not a bin past it.
    bin_ids = tf.minimum(tf.cast(confidence * self.bins, tf.int32), self.bins - 1)
    for variable, values in (
      (self.counts, weights),
      (self.confidence_sums, confidence * weights),
      (self.correct_sums, correct * weights),
    ):
      variable.assign_add(tf.math.unsorted_segment_sum(values, bin_ids, self.bins))

  def result(self):
    return expected_calibration_error(self.counts, self.confidence_sums, self.correct_sums)

  def reset_state(self):
    for variable in (self.counts, self.confidence_sums, self.correct_sums):
      variable.assign(tf.zeros_like(variable))

  def get_config(self):
    return {**super().get_config(), 'bins': self.bins}
