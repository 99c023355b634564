"""The serving signatures: names, inputs and outputs, shared by the exporter and every client.

- `serving_default` takes encoded image bytes (JPEG, PNG, BMP, GIF), one string per image: what
  TF Serving's REST API carries as {"b64": ...} (the input name ends in `_bytes`, the convention
  Vertex AI prediction follows for binary inputs) and what a Vertex endpoint passes on.
- `serve_examples` takes serialized tf.Examples, as TFX, TFMA and gRPC clients send them.
- `predict_images` takes raw uint8 pixels [batch, height, width, channels] of the model's size.
All three go through the one Transform graph, so one image gives the same probabilities.
"""

from typing import Tuple

from contract.features import DatasetSpec

SERVING_SIGNATURE = 'serving_default'
EXAMPLES_SIGNATURE = 'serve_examples'
IMAGES_SIGNATURE = 'predict_images'
TRANSFORM_SIGNATURE = 'transform_features'
IMAGE_BYTES_INPUT = 'image_bytes'
EXAMPLES_INPUT = 'examples'
IMAGES_INPUT = 'images'
PROBABILITIES = 'probabilities'
CLASS_IDS = 'class_ids'
CLASSES = 'classes'


def pixels_shape(spec: DatasetSpec) -> Tuple[None, int, int, int]:
  """`predict_images`' input shape: [batch, height, width, channels] uint8."""
  return (None, *spec.image_shape)
