"""The serving SavedModel: Transform graph + model, behind signatures TF Serving and TFMA call."""

import json
import os
from typing import Any, Dict

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

from trainer import features

SERVING_SIGNATURE = 'serving_default'
IMAGES_SIGNATURE = 'predict_images'
TRANSFORM_SIGNATURE = 'transform_features'
EXAMPLES_INPUT = 'examples'
IMAGES_INPUT = 'images'
PROBABILITIES = 'probabilities'
CLASS_IDS = 'class_ids'
CLASSES = 'classes'
MODEL_INFO_FILE = features.MODEL_INFO_FILE


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

  def _predict(self, raw_features: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    transformed = self.transform_layer(raw_features)
    logits = self.model(transformed[features.IMAGE_KEY], training=False)
    probabilities = tf.nn.softmax(tf.cast(logits, tf.float32))
    class_ids = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
    return {
      PROBABILITIES: probabilities,
      CLASS_IDS: class_ids,
      CLASSES: tf.gather(self._class_names, class_ids),
    }

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)])
  def serve_examples(self, examples: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Serialized tf.Examples (no label needed) to probabilities, class ids and names."""
    return self._predict(self._parse(examples, with_label=False))

  @tf.function(
    input_signature=[
      tf.TensorSpec(
        [None, features.IMAGE_HEIGHT, features.IMAGE_WIDTH], tf.uint8, name=IMAGES_INPUT
      )
    ]
  )
  def serve_images(self, images: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Raw uint8 pixels [batch, 28, 28], as REST JSON clients send images, to the same outputs.

    uint8 rather than float: these are the dataset's own 0..255 pixels, so a
    value outside that range fails decoding instead of being silently scaled,
    and [28, 28] rather than [784] keeps a JSON image readable as rows. The
    pixels go through the same Transform graph as tf.Examples do.
    """
    pixels = tf.reshape(tf.cast(images, tf.int64), [-1, features.PIXELS_PER_IMAGE])
    return self._predict({features.IMAGE_KEY: pixels})

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
  def transform_features(self, examples: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Serialized tf.Examples to the transformed features the model trains on (for TFMA)."""
    return self.transform_layer(self._parse(examples, with_label=True))


def save(
  model: keras.Model,
  transform_output: tft.TFTransformOutput,
  export_dir: str,
  model_info: Dict[str, Any],
) -> None:
  """Writes the SavedModel that Evaluator reads and Pusher ships to TF Serving.

  `model_info` (which variant, its training options) goes to
  assets.extra/model_info.json, so every pushed version says what it is, and
  assets.extra/tf_serving_warmup_requests holds the requests TF Serving replays at load.
  """
  # Imported here: serving builds its requests from this module's signature names.
  from serving import warmup  # pylint: disable=import-outside-toplevel

  module = ServingModule(model, transform_output)
  tf.saved_model.save(
    module,
    export_dir,
    signatures={
      SERVING_SIGNATURE: module.serve_examples.get_concrete_function(),
      IMAGES_SIGNATURE: module.serve_images.get_concrete_function(),
      TRANSFORM_SIGNATURE: module.transform_features.get_concrete_function(),
    },
  )
  info_path = os.path.join(export_dir, MODEL_INFO_FILE)
  tf.io.gfile.makedirs(os.path.dirname(info_path))
  with tf.io.gfile.GFile(info_path, 'w') as info:
    json.dump({**model_info, 'parameters': model.count_params()}, info, indent=1)
  warmup.write(export_dir)
