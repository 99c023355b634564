"""The warmup file every export carries: requests TF Serving replays when it loads a version.

TF Serving reads `assets.extra/tf_serving_warmup_requests` (a TFRecord file of
PredictionLog records, at most 1000) and runs each request before the version takes
traffic, so the first real requests do not pay for graph optimization, kernel set-up
and allocation at each batch shape. The records cover every client signature (image bytes,
tf.Examples, pixels) at every batch shape a server runs: 1 unbatched, and the sizes of the
batching files. They carry real images of the dataset, so decoding and resizing warm up on
the files the model will see rather than on noise.
"""

import os
from typing import List, Sequence

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from contract.features import DatasetSpec
from serving import requests
from serving import server_config
from serving.arguments import DEFAULT_MODEL_NAME
from trainer import preprocessing

WARMUP_FILE = os.path.join('assets.extra', 'tf_serving_warmup_requests')
# TF Serving ignores the model spec of a warmup request; the name only documents it.
SERVABLE = requests.Servable(DEFAULT_MODEL_NAME)


def spec_pixels(encoded_images: Sequence[bytes], spec: DatasetSpec) -> np.ndarray:
  """The images as `predict_images` takes them: uint8 [n, height, width, channels], decoded and
  resized as Transform does, rounded to whole pixel values."""
  pixels = [preprocessing.to_spec_pixels(tf.constant(image), spec) for image in encoded_images]
  return np.clip(np.round(np.stack(pixels)), 0, 255).astype(np.uint8)


def warmup_logs(
  spec: DatasetSpec, sample_images: Sequence[bytes]
) -> List[prediction_log_pb2.PredictionLog]:
  """A request per client signature and batch size; a batch repeats the samples as needed."""
  if not sample_images:
    raise ValueError('no sample images to write warmup requests from')
  sample_pixels = spec_pixels(sample_images, spec)
  logs = []
  for batch_size in server_config.warmup_batch_sizes():
    samples = [index % len(sample_images) for index in range(batch_size)]
    images = [sample_images[index] for index in samples]
    for request in (
      requests.image_bytes_request(images, SERVABLE),
      requests.examples_request([requests.image_example(image) for image in images], SERVABLE),
      requests.images_request(sample_pixels[samples], SERVABLE),
    ):
      log = prediction_log_pb2.PredictionLog()
      log.predict_log.request.CopyFrom(request)
      logs.append(log)
  return logs


def write(export_dir: str, spec: DatasetSpec, sample_images: Sequence[bytes]) -> str:
  """Writes the warmup file into a SavedModel directory; returns its path."""
  path = os.path.join(export_dir, WARMUP_FILE)
  tf.io.gfile.makedirs(os.path.dirname(path))
  with tf.io.TFRecordWriter(path) as out:
    for log in warmup_logs(spec, sample_images):
      out.write(log.SerializeToString())
  return path
