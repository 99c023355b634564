"""Prediction client: image files to TF Serving over REST or gRPC, or to a pushed SavedModel
in process.

Every path sends the encoded files as they are (JPEG, PNG, BMP, GIF) to `serving_default`: REST
in TF Serving's row format with each image as {"b64": ...}, gRPC as a PredictRequest of
strings, in process as the same strings; the model decodes and resizes them with its Transform
graph. Inputs are image files, folders of them (searched recursively; an image under
`<folder>/<class>/` is labelled with that class, as the class-folder layout is), IDX images
files (.gz, labelled by the labels file beside them) and ExampleGen split directories. Inputs of
any size are sent as several requests, each under a byte budget (gRPC's default 4 MB message
limit) and at most as many images as the server's batching accepts.
Each line names its image (the file, and the index within an IDX file or split) and, when the
input carries a label, that label; an accuracy line closes the output. Class names come from the
model's `classes` output. The first line says which model version (and, in process, which
variant) answered.
"""

import base64
import dataclasses
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_service_pb2_grpc

from components.image_example_gen import idx
from components.variant_selection import production
from contract import signatures
from contract.features import FASHION_MNIST
from contract.features import IMAGE_KEY
from contract.features import LABEL_KEY
from serving import requests
from serving.arguments import DEFAULT_MAX_REQUEST_BYTES
from serving.arguments import MAX_REQUEST_IMAGES

# Room for a request's fixed parts: model spec, signature name, tensor dtype and shape.
REQUEST_OVERHEAD_BYTES = 1024
# A string in a TensorProto or a row in a JSON list: field tag and length, or a comma.
ITEM_OVERHEAD_BYTES = 4
# The first bytes of the image files the model decodes.
_IMAGE_MAGIC = {
  b'\x89PNG\r\n\x1a\n': 'PNG',
  b'\xff\xd8\xff': 'JPEG',
  b'BM': 'BMP',
  b'GIF87a': 'GIF',
  b'GIF89a': 'GIF',
}
_IDX_MAGIC = {magic.to_bytes(4, 'big') for magic in (idx.IMAGES_MAGIC, idx.LABELS_MAGIC)}
NOT_AN_IMAGE = 'not a JPEG, PNG, BMP or GIF image'
# ExampleGen writes it at the examples artifact's root, beside the split directories.
DATASET_FILE = 'dataset.json'


class PredictError(RuntimeError):
  """The images or the server could not give predictions; the message says which and why."""


@dataclasses.dataclass(frozen=True)
class Label:
  """An input's true class: its index (IDX files, splits) and, where known, its name (class
  folders, splits with their dataset.json)."""

  index: Optional[int] = None
  name: Optional[str] = None

  def matches(self, prediction: 'Prediction') -> bool:
    if self.index is not None:
      return self.index == prediction.class_id
    return self.name == prediction.class_name

  def __str__(self) -> str:
    return self.name if self.name is not None else f'class {self.index}'


@dataclasses.dataclass(frozen=True)
class Prediction:
  class_id: int
  class_name: str
  probabilities: List[float]

  def line(self, label: Optional[Label] = None) -> str:
    truth = ''
    if label is not None:
      mark = '' if label.matches(self) else ' ✗'
      truth = f'  (label: {label}){mark}'
    return f'{self.class_name:<12} {self.probabilities[self.class_id]:.3f}{truth}'


@dataclasses.dataclass(frozen=True)
class Inputs:
  images: List[bytes]  # encoded files, as the model's serving_default takes them
  labels: List[Optional[Label]]  # None where the input has none
  # Where each image came from: its file, with [index] inside an IDX file or a split.
  names: Sequence[str]
  # One line per file of a folder that is not an image: what predict left out, and why.
  skipped: Sequence[str] = ()

  def accuracy_line(self, predictions: Sequence[Prediction]) -> Optional[str]:
    """`accuracy 0.9120: 912 of 1000 labelled images`, or None when no label is known."""
    judged = [
      label.matches(prediction)
      for label, prediction in zip(self.labels, predictions)
      if label is not None
    ]
    if not judged:
      return None
    correct = sum(judged)
    return f'accuracy {correct / len(judged):.4f}: {correct} of {len(judged)} labelled images'


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


def image_kind(content: bytes) -> Optional[str]:
  """'JPEG', 'PNG', 'BMP' or 'GIF' from the file's first bytes, or None."""
  return next((kind for magic, kind in _IMAGE_MAGIC.items() if content.startswith(magic)), None)


def _read(path: str) -> bytes:
  if not tf.io.gfile.exists(path):
    raise PredictError(f'{path}: file not found')
  with tf.io.gfile.GFile(path, 'rb') as image_file:
    return image_file.read()


def check_decodes(path: str, content: bytes, kind: str) -> None:
  """Raises PredictError naming `path` if the file does not decode as the model decodes it."""
  try:
    tf.io.decode_image(content, expand_animations=False)
  except tf.errors.InvalidArgumentError as error:
    raise PredictError(f'{path}: a damaged {kind} file that cannot be decoded') from error


def load_image(path: str) -> bytes:
  """The file's bytes, once they are known to be a JPEG, PNG, BMP or GIF image that decodes."""
  content = _read(path)
  kind = image_kind(content)
  if kind is None:
    uncompressed_idx = content[:4] in _IDX_MAGIC
    hint = (
      ' (an uncompressed IDX file: predict reads them gzipped, .gz)' if uncompressed_idx else ''
    )
    raise PredictError(f'{path}: {NOT_AN_IMAGE}{hint}')
  check_decodes(path, content, kind)
  return content


def _files_under(directory: str) -> List[str]:
  return sorted(
    os.path.join(root, name) for root, _, names in tf.io.gfile.walk(directory) for name in names
  )


def load_folder(directory: str, count: Optional[int] = None) -> Inputs:
  """The images in a folder and its subfolders, in path order; an image directly in
  `<directory>/<class>/` (or deeper, e.g. <split>/<class>/) is labelled with its folder's name.
  Files that are not images are left out, one `skipped` line each."""
  images, labels, names, skipped = [], [], [], []
  for path in _files_under(directory):
    if count is not None and len(images) == count:
      break
    with tf.io.gfile.GFile(path, 'rb') as image_file:
      content = image_file.read()
    kind = image_kind(content)
    if kind is None:
      skipped.append(f'skipped {path}: {NOT_AN_IMAGE}')
      continue
    check_decodes(path, content, kind)
    parent = os.path.dirname(path)
    images.append(content)
    labels.append(None if parent == directory.rstrip('/') else Label(name=os.path.basename(parent)))
    names.append(path)
  if not images:
    raise PredictError(f'{directory}: no JPEG, PNG, BMP or GIF images in this folder')
  return Inputs(images, labels, names, skipped)


def _split_class_names(directory: str) -> Optional[Sequence[str]]:
  """The class names of the dataset.json beside a split directory, if there is one."""
  path = os.path.join(os.path.dirname(os.path.normpath(directory)), DATASET_FILE)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as dataset:
    return json.load(dataset)['spec']['classes']


def load_split(directory: str, count: Optional[int] = None) -> Inputs:
  """Images, and labels where the examples have them, from an ExampleGen split directory
  (e.g. .../examples/<id>/Split-test)."""
  files = tf.io.gfile.glob(os.path.join(directory, '*.gz'))
  class_names = _split_class_names(directory)
  images, labels = [], []
  for record in tf.data.TFRecordDataset(sorted(files), compression_type='GZIP').take(count or -1):
    feature = tf.train.Example.FromString(record.numpy()).features.feature
    images.append(feature[IMAGE_KEY].bytes_list.value[0])
    label = feature[LABEL_KEY].int64_list.value if LABEL_KEY in feature else []
    if not label:
      labels.append(None)
    else:
      index = int(label[0])
      labels.append(Label(index, class_names[index] if class_names else None))
  return Inputs(images, labels, _indexed(directory, len(images)))


def labels_file_beside(images_path: str) -> Optional[str]:
  """`<prefix>-labels-idx1-ubyte.gz` for `<prefix>-images-idx3-ubyte.gz`, if it exists."""
  directory, name = os.path.split(images_path)
  if '-images-idx3-ubyte' not in name:
    return None
  labels_path = os.path.join(directory, name.replace('-images-idx3-ubyte', '-labels-idx1-ubyte'))
  return labels_path if tf.io.gfile.exists(labels_path) else None


def load_idx(images_path: str, count: Optional[int] = None) -> Inputs:
  """An IDX images file (Fashion-MNIST's format) as PNG files, with the labels of the labels
  file beside it when there is one."""
  labels_path = labels_file_beside(images_path)
  if labels_path is None:
    pixels = idx.read_images(images_path)
    labels = [None] * len(pixels)
  else:
    pixels, indices = idx.read_pair(idx.IdxPair(images_path, labels_path))
    labels = [Label(int(index), FASHION_MNIST.classes[index]) for index in indices]
  pixels = pixels[:count]
  images = [tf.io.encode_png(image[:, :, None]).numpy() for image in pixels]
  return Inputs(images, labels[: len(images)], _indexed(images_path, len(images)))


def load_inputs(paths: Sequence[str], count: Optional[int] = None) -> Inputs:
  """Encoded images, their labels and names from image files, folders of them, IDX images files
  (.gz) and ExampleGen split directories, at most `count` of them."""
  parts = []
  for path in paths:
    if tf.io.gfile.isdir(path):
      is_split = tf.io.gfile.glob(os.path.join(path, '*.gz'))
      parts.append(load_split(path, count) if is_split else load_folder(path, count))
    elif path.endswith('.gz'):
      parts.append(load_idx(path, count))
    else:
      parts.append(Inputs([load_image(path)], [None], [path]))
  images = [image for part in parts for image in part.images][:count]
  if not images:
    raise PredictError('no images given')
  return Inputs(
    images,
    [label for part in parts for label in part.labels][:count],
    [name for part in parts for name in part.names][:count],
    [line for part in parts for line in part.skipped],
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


def _text(value) -> str:
  return value.decode() if isinstance(value, bytes) else str(value)


def to_predictions(output: Callable[[str], np.ndarray]) -> List[Prediction]:
  """Predictions from `output(name)`, which returns one output of the response as an array; the
  class names are the model's own `classes` output."""
  return [
    Prediction(int(class_id), _text(name), [float(p) for p in probs])
    for class_id, name, probs in zip(
      output(signatures.CLASS_IDS), output(signatures.CLASSES), output(signatures.PROBABILITIES)
    )
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


def rest_bodies(images: Sequence[bytes], limits: Limits = Limits()) -> Iterator[bytes]:
  """JSON bodies for `serving_default` in TF Serving's row format, one instance per image:
  {"image_bytes": {"b64": "<the file, base64>"}} (the form Vertex AI endpoints take too)."""
  rows = [
    json.dumps({signatures.IMAGE_BYTES_INPUT: {'b64': base64.b64encode(image).decode('ascii')}})
    for image in images
  ]
  head = json.dumps({'signature_name': signatures.SERVING_SIGNATURE})[:-1] + ', "instances": ['
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
  images: Sequence[bytes],
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
  images: Sequence[bytes], servable: requests.Servable, limits: Limits = Limits()
) -> Iterator:
  """PredictRequests for `serving_default` carrying the encoded image files."""
  sizes = [len(image) + ITEM_OVERHEAD_BYTES for image in images]
  for part in request_slices(sizes, limits.max_bytes, limits.max_images):
    yield requests.image_bytes_request(images[part], servable)


def parse_grpc_response(response) -> List[Prediction]:
  return to_predictions(lambda name: tf.make_ndarray(response.outputs[name]))


def predict_grpc(
  server: str,
  servable: requests.Servable,
  images: Sequence[bytes],
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
    directories = production.version_directories(model_dir)  # '0002' is version 2
    if version not in directories:
      found = ', '.join(map(str, sorted(directories)))
      raise PredictError(f'{model_dir}: no version {version} (found: {found})')
    return os.path.join(model_dir, directories[version])
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
  model_dir: str,
  images: Sequence[bytes],
  version: Optional[int] = None,
  limits: Limits = Limits(),
) -> Answer:
  """The same images as gRPC sends, run by the pushed SavedModel's serving_default in this
  process."""
  path = version_dir(model_dir, version)
  serve = load_signature(path, signatures.SERVING_SIGNATURE)
  predictions = []
  for start in range(0, len(images), limits.max_images):
    batch = tf.constant(list(images[start : start + limits.max_images]))
    outputs = serve(**{signatures.IMAGE_BYTES_INPUT: batch})
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
  known), then the accuracy if labels are; the folder files it left out go to stderr, a line
  each, so that stdout stays one line per image."""
  inputs, answer = run(args)
  for line in inputs.skipped:
    print(line, file=sys.stderr)
  print(answer.model_line())
  width = max(map(len, inputs.names))
  for name, prediction, label in zip(inputs.names, answer.predictions, inputs.labels):
    print(f'{name:<{width}}  {prediction.line(label)}')
  accuracy = inputs.accuracy_line(answer.predictions)
  if accuracy:
    print(accuracy)
  return 0
