"""The serving SavedModel: Transform graph + model, behind signatures TF Serving and TFMA call."""
from typing import Dict

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

from trainer import features

SERVING_SIGNATURE = 'serving_default'
TRANSFORM_SIGNATURE = 'transform_features'
PROBABILITIES = 'probabilities'
CLASS_IDS = 'class_ids'
CLASSES = 'classes'


class ServingModule(tf.Module):
  """Applies the same Transform graph as training, then the model in inference mode."""

  def __init__(self, model: keras.Model, transform_output: tft.TFTransformOutput):
    super().__init__()
    self.model = model
    self.transform_layer = transform_output.transform_features_layer()
    self._raw_feature_spec = transform_output.raw_feature_spec()
    self._class_names = tf.constant(features.CLASS_NAMES)

  def _parse(self, examples: tf.Tensor, with_label: bool) -> Dict[str, tf.Tensor]:
    spec = dict(self._raw_feature_spec)
    if not with_label:
      spec.pop(features.LABEL_KEY)
    return tf.io.parse_example(examples, spec)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
  def serve_examples(self, examples: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Serialized tf.Examples (no label needed) to probabilities, class ids and names."""
    transformed = self.transform_layer(self._parse(examples, with_label=False))
    logits = self.model(transformed[features.IMAGE_KEY], training=False)
    probabilities = tf.nn.softmax(tf.cast(logits, tf.float32))
    class_ids = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
    return {
        PROBABILITIES: probabilities,
        CLASS_IDS: class_ids,
        CLASSES: tf.gather(self._class_names, class_ids),
    }

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
  def transform_features(self, examples: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Serialized tf.Examples to the transformed features the model trains on (for TFMA)."""
    return self.transform_layer(self._parse(examples, with_label=True))


def save(model: keras.Model, transform_output: tft.TFTransformOutput, export_dir: str) -> None:
  """Writes the SavedModel that Evaluator reads and Pusher ships to TF Serving."""
  module = ServingModule(model, transform_output)
  tf.saved_model.save(module, export_dir, signatures={
      SERVING_SIGNATURE: module.serve_examples.get_concrete_function(),
      TRANSFORM_SIGNATURE: module.transform_features.get_concrete_function(),
  })
