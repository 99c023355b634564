"""The serving SavedModel: Transform graph + model, behind the signatures of contract/signatures.py
that TF Serving, Vertex AI and TFMA call."""

import json
import os
from typing import Any, Dict, Sequence

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

from contract import signatures
from contract.features import IMAGE_KEY
from contract.features import LABEL_KEY
from contract.features import MODEL_INFO_FILE
from contract.features import DatasetSpec
from serving import warmup


class ServingModule(tf.Module):
  """Applies the same Transform graph as training, then the model in inference mode."""

  def __init__(
    self, model: keras.Model, transform_output: tft.TFTransformOutput, spec: DatasetSpec
  ):
    super().__init__()
    self.model = model
    self.transform_layer = transform_output.transform_features_layer()
    raw_feature_spec = transform_output.raw_feature_spec()
    # Only what the Transform graph reads: an example's metadata features are for statistics.
    self._image_spec = {IMAGE_KEY: raw_feature_spec[IMAGE_KEY]}
    self._labelled_spec = {**self._image_spec, LABEL_KEY: raw_feature_spec[LABEL_KEY]}
    self._class_names = tf.constant(spec.classes)
    self.serve_images = tf.function(
      self._serve_images,
      input_signature=[
        tf.TensorSpec(signatures.pixels_shape(spec), tf.uint8, name=signatures.IMAGES_INPUT)
      ],
    )

  def _predict(self, encoded_images: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Encoded images [batch] through the Transform graph and the model."""
    image_shape = self._image_spec[IMAGE_KEY].shape
    raw_features = {IMAGE_KEY: tf.reshape(encoded_images, [-1, *image_shape])}
    transformed = self.transform_layer(raw_features)
    logits = self.model(transformed[IMAGE_KEY], training=False)
    probabilities = tf.nn.softmax(tf.cast(logits, tf.float32))
    class_ids = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
    return {
      signatures.PROBABILITIES: probabilities,
      signatures.CLASS_IDS: class_ids,
      signatures.CLASSES: tf.gather(self._class_names, class_ids),
    }

  @tf.function(
    input_signature=[tf.TensorSpec([None], tf.string, name=signatures.IMAGE_BYTES_INPUT)]
  )
  def serve_image_bytes(self, image_bytes: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Encoded JPEG, PNG, BMP or GIF files, one string each, to probabilities, ids and names."""
    return self._predict(image_bytes)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=signatures.EXAMPLES_INPUT)])
  def serve_examples(self, examples: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Serialized tf.Examples (only `image` is read; no label needed) to the same outputs."""
    return self._predict(tf.io.parse_example(examples, self._image_spec)[IMAGE_KEY])

  def _serve_images(self, images: tf.Tensor) -> Dict[str, tf.Tensor]:
    """uint8 pixels [batch, height, width, channels] of the model's size to the same outputs.

    Encoded as PNG in the graph (lossless) and decoded by the same Transform graph as files
    are, so a file and its decoded pixels give the same probabilities; uncompressed, since the
    PNG only carries the pixels from here to the decoder. uint8 rather than float: a value
    outside 0..255 fails instead of being silently scaled.
    """
    return self._predict(
      tf.map_fn(
        lambda image: tf.io.encode_png(image, compression=0),
        images,
        fn_output_signature=tf.TensorSpec([], tf.string),
      )
    )

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=signatures.EXAMPLES_INPUT)])
  def transform_features(self, examples: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Serialized tf.Examples to the transformed features the model trains on (for TFMA)."""
    return self.transform_layer(tf.io.parse_example(examples, self._labelled_spec))


def save(
  model: keras.Model,
  transform_output: tft.TFTransformOutput,
  export_dir: str,
  model_info: Dict[str, Any],
  spec: DatasetSpec,
  sample_images: Sequence[bytes],
) -> None:
  """Writes the SavedModel that Evaluator reads and Pusher ships to TF Serving.

  `model_info` (which variant, its training options) and the DatasetSpec go to
  assets.extra/model_info.json, so every pushed version says what it is, and
  assets.extra/tf_serving_warmup_requests holds the requests TF Serving replays at load,
  built from `sample_images` (encoded files of the dataset).
  """
  module = ServingModule(model, transform_output, spec)
  tf.saved_model.save(
    module,
    export_dir,
    signatures={
      signatures.SERVING_SIGNATURE: module.serve_image_bytes.get_concrete_function(),
      signatures.EXAMPLES_SIGNATURE: module.serve_examples.get_concrete_function(),
      signatures.IMAGES_SIGNATURE: module.serve_images.get_concrete_function(),
      signatures.TRANSFORM_SIGNATURE: module.transform_features.get_concrete_function(),
    },
  )
  info_path = os.path.join(export_dir, MODEL_INFO_FILE)
  tf.io.gfile.makedirs(os.path.dirname(info_path))
  with tf.io.gfile.GFile(info_path, 'w') as info:
    json.dump(
      {**model_info, 'parameters': model.count_params(), 'dataset': spec.to_dict()}, info, indent=1
    )
  warmup.write(export_dir, spec, sample_images)
