"""PredictRequests for the exported signatures, as TF Serving receives them over gRPC.

The client sends them and every export replays them at load (the warmup file), so
both speak to the model through the same request.
"""

import dataclasses
from typing import List, Optional

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from components.idx_example_gen import executor
from trainer import export


def serialized_examples(images: np.ndarray) -> List[bytes]:
  """The tf.Examples ExampleGen would write for these images (label 0: serving ignores it)."""
  return [executor.to_example(image, 0) for image in images]


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


def examples_request(examples: List[bytes], servable: Servable) -> predict_pb2.PredictRequest:
  """`serving_default`: serialized tf.Examples, as TFX and TFMA send them."""
  tensor = tf.make_tensor_proto(examples, dtype=tf.string)
  return _request(export.SERVING_SIGNATURE, export.EXAMPLES_INPUT, tensor, servable)


def images_request(images: np.ndarray, servable: Servable) -> predict_pb2.PredictRequest:
  """`predict_images`: raw uint8 pixels [n, 28, 28]."""
  tensor = tf.make_tensor_proto(images.astype(np.uint8), dtype=tf.uint8)
  return _request(export.IMAGES_SIGNATURE, export.IMAGES_INPUT, tensor, servable)
