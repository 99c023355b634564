"""Prediction client: images to TF Serving over REST or gRPC, or to a pushed SavedModel in-process.

REST sends raw uint8 pixels to the `predict_images` signature in TF Serving's
row ("instances") format; gRPC sends serialized tf.Examples to
`serving_default`, as TFX and TFMA do. Both return the same outputs. Inputs of any
size are sent as several requests, each under a byte budget (gRPC's default 4 MB
message limit) and at most as many images as the server's batching accepts.
Each line names its image (the file, and the index within an IDX file or split) and,
when the input carries labels (an IDX file with its labels file beside it, an ExampleGen
split), its label; an accuracy line closes the output. The first line says which model
version (and, in-process, which variant) answered.
"""

import dataclasses
import json
import os
import urllib.error
import urllib.request
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_service_pb2_grpc

from components.idx_example_gen import idx
from components.variant_selection import production
from serving import requests
from serving.arguments import DEFAULT_MAX_REQUEST_BYTES
from serving.arguments import MAX_REQUEST_IMAGES
from trainer import export
from trainer import features

UNKNOWN_LABEL = -1
# Room for a request's fixed parts: model spec, signature name, tensor dtype and shape.
REQUEST_OVERHEAD_BYTES = 1024
# A string in a TensorProto or a row in a JSON list: field tag and length, or a comma.
ITEM_OVERHEAD_BYTES = 4
# The first bytes of the image files predict decodes.
_IMAGE_MAGIC = {b'\x89PNG\r\n\x1a\n': 'PNG', b'\xff\xd8\xff': 'JPEG'}
_IDX_MAGIC = {magic.to_bytes(4, 'big') for magic in (idx.IMAGES_MAGIC, idx.LABELS_MAGIC)}


class PredictError(RuntimeError):
  """The images or the server could not give predictions; the message says which and why."""


@dataclasses.dataclass(frozen=True)
class Prediction:
  class_id: int
  class_name: str
  probabilities: List[float]

  def line(self, label: Optional[int] = None) -> str:
    truth = ''
    if label is not None:
      mark = '' if label == self.class_id else ' ✗'
      truth = f'  (label: {features.CLASS_NAMES[label]}){mark}'
    return f'{self.class_name:<12} {self.probabilities[self.class_id]:.3f}{truth}'


@dataclasses.dataclass(frozen=True)
class Inputs:
  images: np.ndarray  # uint8 [n, 28, 28]
  labels: np.ndarray  # int64 [n], UNKNOWN_LABEL where the input has none
  # Where each image came from: its file, with [index] inside an IDX file or a split.
  names: Sequence[str]

  def accuracy_line(self, predictions: Sequence[Prediction]) -> Optional[str]:
    """`accuracy 0.9120: 912 of 1000 labelled images`, or None when no label is known."""
    known = self.labels != UNKNOWN_LABEL
    if not known.any():
      return None
    predicted = np.array([prediction.class_id for prediction in predictions])
    correct = int(np.sum(predicted[known] == self.labels[known]))
    return f'accuracy {correct / known.sum():.4f}: {correct} of {known.sum()} labelled images'


def _indexed(source: str, count: int) -> List[str]:
  return [f'{source}[{index}]' for index in range(count)]


@dataclasses.dataclass(frozen=True)
class Answer:
  """The predictions and which model gave them."""

  predictions: List[Prediction]
  model_name: str
  # The versions that answered (several if the server loaded a new one meanwhile); empty when
  # the server did not say.
  versions: Tuple[int, ...]
  # `TF Serving at HOST:PORT (gRPC)`, or the version directory run in process.
  where: str
  # From the version's model_info.json; a server does not report it.
  variant: Optional[str] = None

  def model_line(self) -> str:
    """`Answered by fashion_mnist version 3 (layer), in process: <version directory>`."""
    versions = ', '.join(map(str, self.versions))
    version = f'version {versions}' if versions else '(version not reported)'
    variant = f' ({self.variant})' if self.variant else ''
    return f'Answered by {self.model_name} {version}{variant}, {self.where}'


def load_image(path: str) -> np.ndarray:
  """A 28x28 grayscale PNG or JPEG as uint8 [28, 28]; colour images are converted to gray."""
  if not tf.io.gfile.exists(path):
    raise PredictError(f'{path}: file not found')
  with tf.io.gfile.GFile(path, 'rb') as image_file:
    content = image_file.read()
  kind = next((kind for magic, kind in _IMAGE_MAGIC.items() if content.startswith(magic)), None)
  if kind is None:
    uncompressed_idx = content[:4] in _IDX_MAGIC
    hint = (
      ' (an uncompressed IDX file: predict reads them gzipped, .gz)' if uncompressed_idx else ''
    )
    raise PredictError(f'{path}: not a PNG or JPEG image{hint}')
  try:
    image = tf.io.decode_image(content, channels=1, expand_animations=False).numpy()
  except tf.errors.InvalidArgumentError as error:
    raise PredictError(f'{path}: a damaged {kind} file that cannot be decoded') from error
  if image.shape[:2] != (features.IMAGE_HEIGHT, features.IMAGE_WIDTH):
    raise PredictError(
      f'{path}: image is {image.shape[1]}x{image.shape[0]}, the model takes '
      f'{features.IMAGE_WIDTH}x{features.IMAGE_HEIGHT} grayscale'
    )
  return image[:, :, 0]


def load_split(directory: str, count: Optional[int] = None) -> Inputs:
  """Images, and labels where the examples have them, from an ExampleGen split directory
  (e.g. .../examples/<id>/Split-test)."""
  files = tf.io.gfile.glob(os.path.join(directory, '*.gz'))
  if not files:
    raise PredictError(f'{directory}: no tf.Example files (*.gz) in this directory')
  images, labels = [], []
  for record in tf.data.TFRecordDataset(files, compression_type='GZIP').take(count or -1):
    feature = tf.train.Example.FromString(record.numpy()).features.feature
    images.append(list(feature[features.IMAGE_KEY].int64_list.value))
    label = feature[features.LABEL_KEY].int64_list.value if features.LABEL_KEY in feature else []
    labels.append(label[0] if label else UNKNOWN_LABEL)
  shape = (-1, features.IMAGE_HEIGHT, features.IMAGE_WIDTH)
  return Inputs(
    np.array(images, np.uint8).reshape(shape),
    np.array(labels, np.int64),
    _indexed(directory, len(images)),
  )


def labels_file_beside(images_path: str) -> Optional[str]:
  """`<prefix>-labels-idx1-ubyte.gz` for `<prefix>-images-idx3-ubyte.gz`, if it exists."""
  directory, name = os.path.split(images_path)
  if '-images-idx3-ubyte' not in name:
    return None
  labels_path = os.path.join(directory, name.replace('-images-idx3-ubyte', '-labels-idx1-ubyte'))
  return labels_path if tf.io.gfile.exists(labels_path) else None


def load_idx(images_path: str) -> Inputs:
  """An IDX images file, with the labels of the labels file beside it when there is one."""
  labels_path = labels_file_beside(images_path)
  if labels_path is None:
    images = idx.read_images(images_path)
    labels = np.full(len(images), UNKNOWN_LABEL, np.int64)
  else:
    images, labels = idx.read_pair(idx.IdxPair(images_path, labels_path))
  return Inputs(images, labels.astype(np.int64), _indexed(images_path, len(images)))


def load_inputs(paths: Sequence[str], count: Optional[int] = None) -> Inputs:
  """uint8 [n, 28, 28] images, their labels and names from IDX images files (.gz), ExampleGen
  split directories and PNG or JPEG files, at most `count` of them."""
  parts = []
  for path in paths:
    if tf.io.gfile.isdir(path):
      parts.append(load_split(path, count))
    elif path.endswith('.gz'):
      parts.append(load_idx(path))
    else:
      parts.append(Inputs(load_image(path)[None], np.array([UNKNOWN_LABEL], np.int64), [path]))
  images = np.concatenate([part.images for part in parts])[:count]
  if not len(images):
    raise PredictError('no images given')
  return Inputs(
    images,
    np.concatenate([part.labels for part in parts])[:count],
    [name for part in parts for name in part.names][:count],
  )


def request_slices(sizes: Sequence[int], max_bytes: int, max_images: int) -> List[slice]:
  """Consecutive runs of items, each at most `max_images` long and, with a request's fixed
  parts, at most `max_bytes` in all."""
  budget = max_bytes - REQUEST_OVERHEAD_BYTES
  slices, start, total = [], 0, 0
  for index, size in enumerate(sizes):
    if size > budget:
      raise PredictError(f'one image takes {size} bytes, over the {max_bytes}-byte request limit')
    if index - start == max_images or total + size > budget:
      slices.append(slice(start, index))
      start, total = index, 0
    total += size
  return slices + [slice(start, len(sizes))] if len(sizes) else slices


def to_predictions(output: Callable[[str], np.ndarray]) -> List[Prediction]:
  """Predictions from `output(name)`, which returns one output of the response as an array."""
  return [
    Prediction(int(class_id), features.CLASS_NAMES[int(class_id)], [float(p) for p in probs])
    for class_id, probs in zip(output(export.CLASS_IDS), output(export.PROBABILITIES))
  ]


@dataclasses.dataclass(frozen=True)
class Limits:
  """What one request may hold."""

  max_bytes: int = DEFAULT_MAX_REQUEST_BYTES
  max_images: int = MAX_REQUEST_IMAGES

  def __post_init__(self):
    if self.max_images < 1 or self.max_bytes <= REQUEST_OVERHEAD_BYTES:
      raise PredictError(
        f'--max-request-images must be at least 1 and --max-request-bytes over '
        f'{REQUEST_OVERHEAD_BYTES}; got {self.max_images} and {self.max_bytes}'
      )


# --- REST ---------------------------------------------------------------------------------


def rest_url(server: str, servable: requests.Servable) -> str:
  base = server if '://' in server else f'http://{server}'
  return base.rstrip('/') + servable.rest_path() + ':predict'


def rest_metadata_url(server: str, servable: requests.Servable) -> str:
  """TF Serving's model metadata resource: its model_spec names the version that answers."""
  return rest_url(server, servable)[: -len(':predict')] + '/metadata'


def rest_version(server: str, servable: requests.Servable, timeout: float) -> Tuple[int, ...]:
  """The version the server resolves `servable` to now, or () when it does not say."""
  try:
    with urllib.request.urlopen(rest_metadata_url(server, servable), timeout=timeout) as response:
      return (int(json.load(response)['model_spec']['version']),)
  except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError):
    return ()  # the predictions stand without it


def rest_bodies(images: np.ndarray, limits: Limits = Limits()) -> Iterator[bytes]:
  """JSON bodies in TF Serving's row format, one instance per image as [28][28] pixel rows."""
  rows = [json.dumps(image.tolist(), separators=(',', ':')) for image in images]
  head = json.dumps({'signature_name': export.IMAGES_SIGNATURE})[:-1] + ', "instances": ['
  sizes = [len(row) + ITEM_OVERHEAD_BYTES for row in rows]
  for part in request_slices(sizes, limits.max_bytes, limits.max_images):
    yield (head + ','.join(rows[part]) + ']}').encode()


def parse_rest_response(body) -> List[Prediction]:
  rows = body['predictions']
  return to_predictions(lambda name: np.array([row[name] for row in rows]))


def _post(url: str, body: bytes, timeout: float) -> List[Prediction]:
  request = urllib.request.Request(url, data=body, headers={'Content-Type': 'application/json'})
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


def predict_rest(
  server: str,
  servable: requests.Servable,
  images: np.ndarray,
  timeout: float = 30.0,
  limits: Limits = Limits(),
) -> Answer:
  url = rest_url(server, servable)
  predictions = []
  for body in rest_bodies(images, limits):
    predictions.extend(_post(url, body, timeout))
  return Answer(
    predictions,
    servable.name,
    rest_version(server, servable, timeout),
    f'TF Serving at {url.split("/v1/", 1)[0]} (REST)',
  )


# --- gRPC ---------------------------------------------------------------------------------


def grpc_requests(
  images: np.ndarray, servable: requests.Servable, limits: Limits = Limits()
) -> Iterator:
  """PredictRequests for `serving_default` carrying serialized tf.Examples."""
  examples = requests.serialized_examples(images)
  sizes = [len(example) + ITEM_OVERHEAD_BYTES for example in examples]
  for part in request_slices(sizes, limits.max_bytes, limits.max_images):
    yield requests.examples_request(examples[part], servable)


def parse_grpc_response(response) -> List[Prediction]:
  return to_predictions(lambda name: tf.make_ndarray(response.outputs[name]))


def predict_grpc(
  server: str,
  servable: requests.Servable,
  images: np.ndarray,
  timeout: float = 30.0,
  limits: Limits = Limits(),
) -> Answer:
  predictions, versions = [], set()
  with grpc.insecure_channel(server) as channel:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    for request in grpc_requests(images, servable, limits):
      try:
        response = stub.Predict(request, timeout)
        predictions.extend(parse_grpc_response(response))
        if response.model_spec.HasField('version'):
          versions.add(response.model_spec.version.value)
      except grpc.RpcError as error:
        if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
          raise PredictError(f'cannot reach TF Serving at {server}: {error.details()}') from error
        hint = {
          grpc.StatusCode.NOT_FOUND: ' (is the model name right?)',
          grpc.StatusCode.RESOURCE_EXHAUSTED: ' (lower --max-request-bytes)',
        }.get(error.code(), '')
        raise PredictError(f'{server}: {error.code().name}: {error.details()}{hint}') from error
  return Answer(
    predictions, servable.name, tuple(sorted(versions)), f'TF Serving at {server} (gRPC)'
  )


# --- in-process ---------------------------------------------------------------------------


def version_dir(model_dir: str, version: Optional[int] = None) -> str:
  """`model_dir` itself if it is a SavedModel, else `version` or the newest complete version,
  as TF Serving picks."""
  if not tf.io.gfile.isdir(model_dir):
    raise PredictError(f'{model_dir}: no such directory')
  if tf.io.gfile.exists(os.path.join(model_dir, production.SAVED_MODEL_FILE)):
    return model_dir
  if version is not None:
    versions = [
      name.rstrip('/') for name in tf.io.gfile.listdir(model_dir) if name.rstrip('/').isdigit()
    ]
    if str(version) not in versions:
      raise PredictError(f'{model_dir}: no version {version} (found: {", ".join(versions)})')
    return os.path.join(model_dir, str(version))
  latest = production.latest_version(model_dir)
  if latest is None:
    raise PredictError(f'{model_dir}: no SavedModel and no numbered version directories')
  return latest


def load_signature(path: str, signature: str):
  """`signature` of the SavedModel in `path`."""
  try:
    return tf.saved_model.load(path).signatures[signature]
  except (OSError, ValueError, KeyError, tf.errors.OpError) as error:
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    raise PredictError(f'{path}: not a SavedModel with `{signature}` ({first_line})') from error


def predict_local(
  model_dir: str, images: np.ndarray, version: Optional[int] = None, limits: Limits = Limits()
) -> Answer:
  """The same requests as gRPC, run by the pushed SavedModel in this process."""
  path = version_dir(model_dir, version)
  serve = load_signature(path, export.SERVING_SIGNATURE)
  predictions = []
  for start in range(0, len(images), limits.max_images):
    examples = requests.serialized_examples(images[start : start + limits.max_images])
    outputs = serve(**{export.EXAMPLES_INPUT: tf.constant(examples)})
    predictions.extend(to_predictions(lambda name, outputs=outputs: outputs[name].numpy()))
  # A pushed version is <serving root>/<model name>/<version>; a Trainer's export is no version.
  parent, number = os.path.split(os.path.normpath(path))
  numbered = number.isdigit()
  return Answer(
    predictions,
    os.path.basename(parent) if numbered else number,
    (int(number),) if numbered else (),
    f'in process: {path}',
    production.model_info(path).get('variant'),
  )


# --- command line -------------------------------------------------------------------------


def run(args) -> Tuple[Inputs, Answer]:
  inputs = load_inputs(args.images, args.count)
  limits = Limits(args.max_request_bytes, args.max_request_images)
  if args.local:
    if args.model_label:
      raise PredictError(
        '--model-label needs a server (--rest or --grpc): labels live in its config'
      )
    return inputs, predict_local(args.local, inputs.images, args.model_version, limits)
  servable = requests.Servable(args.model_name, args.model_version, args.model_label)
  if args.rest:
    return inputs, predict_rest(args.rest, servable, inputs.images, limits=limits)
  return inputs, predict_grpc(args.grpc, servable, inputs.images, limits=limits)


# What `main` raises for a bad input, model or server: the CLI turns them into one line.
EXPECTED_ERRORS = (PredictError, idx.IdxFormatError)


def main(args) -> int:
  """Prints which model answered, one line per image named by its file (and its label when
  known), then the accuracy if labels are."""
  inputs, answer = run(args)
  print(answer.model_line())
  width = max(map(len, inputs.names))
  for name, prediction, label in zip(inputs.names, answer.predictions, inputs.labels):
    print(f'{name:<{width}}  {prediction.line(None if label == UNKNOWN_LABEL else int(label))}')
  accuracy = inputs.accuracy_line(answer.predictions)
  if accuracy:
    print(accuracy)
  return 0
