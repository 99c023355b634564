"""Prediction client: images to TF Serving over REST or gRPC, or to a pushed SavedModel in-process.

REST sends raw uint8 pixels to the `predict_images` signature in TF Serving's
row ("instances") format; gRPC sends serialized tf.Examples to
`serving_default`, as TFX and TFMA do. Both return the same outputs.
"""

import dataclasses
import json
import os
import urllib.error
import urllib.request
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from components.idx_example_gen import executor
from components.idx_example_gen import idx
from components.variant_selection import production
from trainer import export
from trainer import features


class PredictError(RuntimeError):
  """The images or the server could not give predictions; the message says which and why."""


@dataclasses.dataclass(frozen=True)
class Prediction:
  class_id: int
  class_name: str
  probabilities: List[float]

  def line(self, label: Optional[int] = None) -> str:
    truth = '' if label is None else f'  (label: {features.CLASS_NAMES[label]})'
    return f'{self.class_name:<12} {self.probabilities[self.class_id]:.3f}{truth}'


def load_png(path: str) -> np.ndarray:
  """A 28x28 grayscale PNG as uint8 [28, 28]."""
  if not tf.io.gfile.exists(path):
    raise PredictError(f'{path}: file not found')
  try:
    image = tf.io.decode_png(tf.io.read_file(path), channels=1).numpy()
  except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as error:
    raise PredictError(f'{path}: not a readable PNG ({error.message})') from error
  if image.shape[:2] != (features.IMAGE_HEIGHT, features.IMAGE_WIDTH):
    raise PredictError(
      f'{path}: image is {image.shape[1]}x{image.shape[0]}, the model takes '
      f'{features.IMAGE_WIDTH}x{features.IMAGE_HEIGHT} grayscale'
    )
  return image[:, :, 0]


def load_split(directory: str, count: Optional[int] = None) -> List[np.ndarray]:
  """Images from an ExampleGen split directory (e.g. .../examples/<id>/Split-test)."""
  files = tf.io.gfile.glob(os.path.join(directory, '*.gz'))
  if not files:
    raise PredictError(f'{directory}: no tf.Example files (*.gz) in this directory')
  records = tf.data.TFRecordDataset(files, compression_type='GZIP')
  images = []
  for record in records.take(count or -1):
    pixels = tf.train.Example.FromString(record.numpy()).features.feature[features.IMAGE_KEY]
    images.append(
      np.array(pixels.int64_list.value, np.uint8).reshape(
        features.IMAGE_HEIGHT, features.IMAGE_WIDTH
      )
    )
  return images


def load_images(paths: Sequence[str], count: Optional[int] = None) -> np.ndarray:
  """uint8 [n, 28, 28] from IDX images files (.gz), ExampleGen split directories and PNG files,
  at most `count` of them."""
  images = []
  for path in paths:
    if tf.io.gfile.isdir(path):
      images.extend(load_split(path, count))
    elif path.endswith('.gz'):
      images.extend(idx.read_images(path))
    else:
      images.append(load_png(path))
  if not images:
    raise PredictError('no images given')
  return np.stack(images[:count] if count else images).astype(np.uint8)


def serialized_examples(images: np.ndarray) -> List[bytes]:
  """The tf.Examples ExampleGen would write for these images (label 0: serving ignores it)."""
  return [executor.to_example(image, 0) for image in images]


def to_predictions(output: Callable[[str], np.ndarray]) -> List[Prediction]:
  """Predictions from `output(name)`, which returns one output of the response as an array."""
  return [
    Prediction(int(class_id), features.CLASS_NAMES[int(class_id)], [float(p) for p in probs])
    for class_id, probs in zip(output(export.CLASS_IDS), output(export.PROBABILITIES))
  ]


# --- REST ---------------------------------------------------------------------------------


def rest_url(server: str, model_name: str, version: Optional[int] = None) -> str:
  base = server if '://' in server else f'http://{server}'
  path = f'/v1/models/{model_name}' + (f'/versions/{version}' if version else '')
  return base.rstrip('/') + path + ':predict'


def rest_body(images: np.ndarray) -> Dict:
  """TF Serving's row format: one instance per image, as [28][28] pixel rows."""
  return {'signature_name': export.IMAGES_SIGNATURE, 'instances': images.tolist()}


def parse_rest_response(body: Dict) -> List[Prediction]:
  rows = body['predictions']
  return to_predictions(lambda name: np.array([row[name] for row in rows]))


def predict_rest(
  server: str,
  model_name: str,
  images: np.ndarray,
  version: Optional[int] = None,
  timeout: float = 30.0,
) -> List[Prediction]:
  url = rest_url(server, model_name, version)
  request = urllib.request.Request(
    url, data=json.dumps(rest_body(images)).encode(), headers={'Content-Type': 'application/json'}
  )
  try:
    with urllib.request.urlopen(request, timeout=timeout) as response:
      return parse_rest_response(json.load(response))
  except urllib.error.HTTPError as error:
    detail = error.read().decode(errors='replace')
    try:
      detail = json.loads(detail)['error']
    except (ValueError, KeyError):
      pass
    hint = ' (is the model name right?)' if error.code == 404 else ''
    raise PredictError(f'{url}: HTTP {error.code}: {detail}{hint}') from error
  except (urllib.error.URLError, OSError) as error:
    raise PredictError(
      f'cannot reach TF Serving at {url}: {getattr(error, "reason", error)}'
    ) from error


# --- gRPC ---------------------------------------------------------------------------------


def grpc_request(images: np.ndarray, model_name: str, version: Optional[int] = None):
  """A PredictRequest for `serving_default` carrying serialized tf.Examples."""
  from tensorflow_serving.apis import predict_pb2  # pylint: disable=import-outside-toplevel

  request = predict_pb2.PredictRequest()
  request.model_spec.name = model_name
  request.model_spec.signature_name = export.SERVING_SIGNATURE
  if version:
    request.model_spec.version.value = version
  request.inputs[export.EXAMPLES_INPUT].CopyFrom(
    tf.make_tensor_proto(serialized_examples(images), dtype=tf.string)
  )
  return request


def parse_grpc_response(response) -> List[Prediction]:
  return to_predictions(lambda name: tf.make_ndarray(response.outputs[name]))


def predict_grpc(
  server: str,
  model_name: str,
  images: np.ndarray,
  version: Optional[int] = None,
  timeout: float = 30.0,
) -> List[Prediction]:
  import grpc  # pylint: disable=import-outside-toplevel
  from tensorflow_serving.apis import prediction_service_pb2_grpc  # pylint: disable=import-outside-toplevel

  with grpc.insecure_channel(server) as channel:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    try:
      return parse_grpc_response(stub.Predict(grpc_request(images, model_name, version), timeout))
    except grpc.RpcError as error:
      if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        raise PredictError(f'cannot reach TF Serving at {server}: {error.details()}') from error
      hint = ' (is the model name right?)' if error.code() == grpc.StatusCode.NOT_FOUND else ''
      raise PredictError(f'{server}: {error.code().name}: {error.details()}{hint}') from error


# --- in-process ---------------------------------------------------------------------------


def latest_version_dir(model_dir: str) -> str:
  """`model_dir` if it is a SavedModel, else its newest complete version, as TF Serving picks."""
  if tf.io.gfile.exists(os.path.join(model_dir, production.SAVED_MODEL_FILE)):
    return model_dir
  latest = production.latest_version(model_dir)
  if latest is None:
    raise PredictError(f'{model_dir}: no SavedModel and no numbered version directories')
  return latest


def predict_local(model_dir: str, images: np.ndarray) -> List[Prediction]:
  """The same request as gRPC, run by the pushed SavedModel in this process."""
  serve = tf.saved_model.load(latest_version_dir(model_dir)).signatures[export.SERVING_SIGNATURE]
  outputs = serve(**{export.EXAMPLES_INPUT: tf.constant(serialized_examples(images))})
  return to_predictions(lambda name: outputs[name].numpy())


# --- command line -------------------------------------------------------------------------


def add_arguments(parser) -> None:
  """The `fmnist-pipeline predict` options."""
  parser.add_argument(
    'images',
    nargs='+',
    help='IDX images files (.gz), ExampleGen split directories (Split-test) or 28x28 PNG files',
  )
  parser.add_argument('--count', type=int, default=None, help='send at most this many images')
  where = parser.add_mutually_exclusive_group(required=True)
  where.add_argument('--rest', metavar='HOST:PORT', help="TF Serving's REST endpoint (port 8501)")
  where.add_argument('--grpc', metavar='HOST:PORT', help="TF Serving's gRPC endpoint (port 8500)")
  where.add_argument(
    '--local',
    metavar='DIR',
    help='a pushed model directory (or one version of it), run in this process',
  )
  parser.add_argument('--model-name', default='fashion_mnist')
  parser.add_argument('--model-version', type=int, default=None, help='default: the latest')


def run(args) -> List[Prediction]:
  images = load_images(args.images, args.count)
  if args.local:
    return predict_local(args.local, images)
  if args.rest:
    return predict_rest(args.rest, args.model_name, images, args.model_version)
  return predict_grpc(args.grpc, args.model_name, images, args.model_version)
