"""PredictRequests for the exported signatures (contract/signatures.py), as TF Serving receives
them over gRPC.

The client sends them and every export replays them at load (the warmup file), so
both speak to the model through the same request.
"""

import dataclasses
from typing import List, Optional, Sequence

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from contract import signatures
from contract.features import IMAGE_KEY


def image_example(encoded_image: bytes) -> bytes:
  """A serialized tf.Example holding only `image`: what serve_examples reads (no label)."""
  example = tf.train.Example()
  example.features.feature[IMAGE_KEY].bytes_list.value.append(encoded_image)
  return example.SerializeToString(deterministic=True)


def encoded_images(serialized_examples: Sequence[bytes]) -> List[bytes]:
  """The `image` bytes of serialized tf.Examples (as ExampleGen writes them)."""
  return [
    tf.train.Example.FromString(example).features.feature[IMAGE_KEY].bytes_list.value[0]
    for example in serialized_examples
  ]


@dataclasses.dataclass(frozen=True)
class Servable:
  """Which model a request is for: its name, and a version number or a version label
  (`stable`, `canary`); with neither, TF Serving answers with the newest loaded version."""

  name: str
  version: Optional[int] = None
  label: Optional[str] = None

  def rest_path(self) -> str:
    """`/v1/models/NAME[/versions/V | /labels/L]`, TF Serving's REST resource."""
    if self.version:
      return f'/v1/models/{self.name}/versions/{self.version}'
    if self.label:
      return f'/v1/models/{self.name}/labels/{self.label}'
    return f'/v1/models/{self.name}'


def _request(signature: str, input_name: str, tensor, servable: Servable):
  request = predict_pb2.PredictRequest()
  request.model_spec.name = servable.name
  request.model_spec.signature_name = signature
  if servable.version:
    request.model_spec.version.value = servable.version
  elif servable.label:
    request.model_spec.version_label = servable.label
  request.inputs[input_name].CopyFrom(tensor)
  return request


def image_bytes_request(images: Sequence[bytes], servable: Servable) -> predict_pb2.PredictRequest:
  """`serving_default`: encoded image files, one string each."""
  tensor = tf.make_tensor_proto(list(images), dtype=tf.string)
  return _request(signatures.SERVING_SIGNATURE, signatures.IMAGE_BYTES_INPUT, tensor, servable)


def examples_request(examples: Sequence[bytes], servable: Servable) -> predict_pb2.PredictRequest:
  """`serve_examples`: serialized tf.Examples, as TFX and TFMA send them."""
  tensor = tf.make_tensor_proto(list(examples), dtype=tf.string)
  return _request(signatures.EXAMPLES_SIGNATURE, signatures.EXAMPLES_INPUT, tensor, servable)


def images_request(pixels: np.ndarray, servable: Servable) -> predict_pb2.PredictRequest:
  """`predict_images`: uint8 pixels [n, height, width, channels] of the model's size."""
  tensor = tf.make_tensor_proto(pixels.astype(np.uint8), dtype=tf.uint8)
  return _request(signatures.IMAGES_SIGNATURE, signatures.IMAGES_INPUT, tensor, servable)
