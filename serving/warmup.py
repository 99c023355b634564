"""The warmup file every export carries: requests TF Serving replays when it loads a version.

TF Serving reads `assets.extra/tf_serving_warmup_requests` (a TFRecord file of
PredictionLog records, at most 1000) and runs each request before the version takes
traffic, so the first real requests do not pay for graph optimization, kernel set-up
and allocation at each batch shape. The records cover both client signatures at every
batch shape a server runs: 1 unbatched, and the sizes of the batching files.
"""

import os
from typing import List

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from serving import requests
from serving import server_config
from trainer import features

WARMUP_FILE = os.path.join('assets.extra', 'tf_serving_warmup_requests')
# TF Serving ignores the model spec of a warmup request; the name only documents it.
SERVABLE = requests.Servable('fashion_mnist')


def warmup_images(batch_size: int) -> np.ndarray:
  """Fixed, image-shaped uint8 pixels [batch_size, 28, 28] over the whole 0..255 range."""
  shape = (batch_size, features.IMAGE_HEIGHT, features.IMAGE_WIDTH)
  return np.random.default_rng(batch_size).integers(0, 256, size=shape, dtype=np.uint8)


def warmup_logs() -> List[prediction_log_pb2.PredictionLog]:
  logs = []
  for batch_size in server_config.warmup_batch_sizes():
    images = warmup_images(batch_size)
    for request in (
      requests.examples_request(requests.serialized_examples(images), SERVABLE),
      requests.images_request(images, SERVABLE),
    ):
      log = prediction_log_pb2.PredictionLog()
      log.predict_log.request.CopyFrom(request)
      logs.append(log)
  return logs


def write(export_dir: str) -> str:
  """Writes the warmup file into a SavedModel directory; returns its path."""
  path = os.path.join(export_dir, WARMUP_FILE)
  tf.io.gfile.makedirs(os.path.dirname(path))
  with tf.io.TFRecordWriter(path) as out:
    for log in warmup_logs():
      out.write(log.SerializeToString())
  return path
