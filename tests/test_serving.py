"""The serving contract: signatures as TF Serving sees them, the warmup file it replays at load,
and the client's REST, gRPC and in-process paths against servers that enforce request limits."""

import base64
from concurrent import futures
import http.server
import json
import os
import re
import subprocess
import sys
import threading
from typing import ClassVar, List

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.tools import saved_model_utils
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_log_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from contract import signatures
from contract.features import FASHION_MNIST
from contract.features import IMAGE_KEY
from contract.features import LABEL_KEY
from contract.features import MODEL_INFO_FILE
from contract.features import DatasetSpec
from pipeline import cli
from serving import latency
from serving import predict
from serving import requests
from serving import server_config
from tests import idx_files
from tests import serving_model
from tests.test_preprocessing import encode
from trainer.model import build_model

MODEL_NAME = 'fashion_mnist'
SERVABLE = requests.Servable(MODEL_NAME)


@pytest.fixture(scope='module')
def served(tmp_path_factory):
  """A pushed-style version directory: Transform graph + a model run once in training mode."""
  model = build_model('batch', seed=0)
  images = idx_files.learnable_images(np.arange(40) % 10, seed=0)
  version_dir = serving_model.export_version(
    str(tmp_path_factory.mktemp('serving')), model, 'batch', images
  )
  return model, version_dir, serving_model.png_files(images)


def test_version_records_its_variant_size_and_dataset(served):
  model, version_dir, _ = served
  with open(os.path.join(version_dir, MODEL_INFO_FILE)) as info:
    assert json.load(info) == {
      'variant': 'batch',
      'parameters': model.count_params(),
      'dataset': FASHION_MNIST.to_dict(),
    }


def test_saved_model_loads_in_plain_tensorflow(served):
  # TF Serving and TFMA load the export with nothing but TensorFlow, as this fresh
  # interpreter does.
  _, version_dir, _ = served
  script = (
    'import sys, tensorflow as tf\n'
    'signature = tf.saved_model.load(sys.argv[1]).signatures["predict_images"]\n'
    'print(signature(images=tf.zeros([2, 28, 28, 1], tf.uint8))["class_ids"].shape)\n'
  )
  result = subprocess.run(
    [sys.executable, '-c', script, version_dir], capture_output=True, text=True, timeout=300
  )
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip().splitlines()[-1] == '(2,)'


def _expected(model, files, spec=FASHION_MNIST):
  """The model's probabilities for these encoded files, decoded as Transform decodes them."""
  return tf.nn.softmax(model(serving_model.model_inputs(files, spec), training=False)).numpy()


def _signature_defs(version_dir):
  return saved_model_utils.get_meta_graph_def(version_dir, 'serve').signature_def


def _shape(tensor_info):
  return [dim.size for dim in tensor_info.tensor_shape.dim]


def test_signatures_have_the_documented_names_dtypes_and_shapes(served):
  _, version_dir, _ = served
  signature_defs = _signature_defs(version_dir)
  image_bytes = signature_defs[signatures.SERVING_SIGNATURE].inputs[signatures.IMAGE_BYTES_INPUT]
  assert (image_bytes.dtype, _shape(image_bytes)) == (tf.string.as_datatype_enum, [-1])
  examples = signature_defs[signatures.EXAMPLES_SIGNATURE].inputs[signatures.EXAMPLES_INPUT]
  assert (examples.dtype, _shape(examples)) == (tf.string.as_datatype_enum, [-1])
  images = signature_defs[signatures.IMAGES_SIGNATURE].inputs[signatures.IMAGES_INPUT]
  assert (images.dtype, _shape(images)) == (tf.uint8.as_datatype_enum, [-1, 28, 28, 1])
  for name in (
    signatures.SERVING_SIGNATURE,
    signatures.EXAMPLES_SIGNATURE,
    signatures.IMAGES_SIGNATURE,
  ):
    outputs = signature_defs[name].outputs
    assert set(outputs) == {signatures.PROBABILITIES, signatures.CLASS_IDS, signatures.CLASSES}
    assert (outputs[signatures.PROBABILITIES].dtype, _shape(outputs[signatures.PROBABILITIES])) == (
      tf.float32.as_datatype_enum,
      [-1, 10],
    )
    assert (outputs[signatures.CLASS_IDS].dtype, _shape(outputs[signatures.CLASS_IDS])) == (
      tf.int64.as_datatype_enum,
      [-1],
    )
    assert (outputs[signatures.CLASSES].dtype, _shape(outputs[signatures.CLASSES])) == (
      tf.string.as_datatype_enum,
      [-1],
    )
  assert signatures.TRANSFORM_SIGNATURE in signature_defs


THREE_CLASSES = DatasetSpec(('circle', 'square', 'star'), height=16, width=12, channels=3)


@pytest.fixture(scope='module')
def three_class_version(tmp_path_factory):
  """A 16x12 RGB, three-class model: nothing of Fashion-MNIST's shape or names."""
  model = build_model(
    'batch', filters=4, image_shape=THREE_CLASSES.image_shape, num_classes=3, seed=0
  )
  pixels = np.random.default_rng(0).integers(0, 256, (6, 16, 12, 3), np.uint8)
  root = str(tmp_path_factory.mktemp('three_classes'))
  return model, serving_model.export_version(root, model, 'batch', pixels, spec=THREE_CLASSES)


def test_one_image_gives_the_same_probabilities_as_bytes_example_and_pixels(
  three_class_version,
):
  model, version_dir = three_class_version
  rng = np.random.default_rng(1)
  gray = rng.integers(0, 256, (16, 12), np.uint8)
  rgb = rng.integers(0, 256, (16, 12, 3), np.uint8)
  rgba = rng.integers(0, 256, (16, 12, 4), np.uint8)
  files = [encode(gray, 'PNG'), encode(rgb, 'JPEG'), encode(rgba, 'PNG')]
  # The pixels a client holds for each file: decoded (the JPEG as the model's decoder decodes it),
  # in the model's three channels.
  pixels = np.stack(
    [
      np.repeat(gray[..., None], 3, axis=-1),
      tf.io.decode_jpeg(files[1]).numpy(),
      rgba[..., :3],
    ]
  )
  loaded = tf.saved_model.load(version_dir)
  outputs = {
    signatures.SERVING_SIGNATURE: loaded.signatures[signatures.SERVING_SIGNATURE](
      **{signatures.IMAGE_BYTES_INPUT: tf.constant(files)}
    ),
    signatures.EXAMPLES_SIGNATURE: loaded.signatures[signatures.EXAMPLES_SIGNATURE](
      **{signatures.EXAMPLES_INPUT: tf.constant([requests.image_example(f) for f in files])}
    ),
    signatures.IMAGES_SIGNATURE: loaded.signatures[signatures.IMAGES_SIGNATURE](
      **{signatures.IMAGES_INPUT: tf.constant(pixels)}
    ),
  }
  expected = _expected(model, files, THREE_CLASSES)
  for name, output in outputs.items():
    probabilities = output[signatures.PROBABILITIES].numpy()
    assert probabilities.shape == (3, 3), name
    np.testing.assert_allclose(probabilities, expected, atol=1e-6, err_msg=name)
    np.testing.assert_array_equal(output[signatures.CLASS_IDS], expected.argmax(axis=1))
    assert [c.decode() for c in output[signatures.CLASSES].numpy()] == [
      THREE_CLASSES.classes[c] for c in expected.argmax(axis=1)
    ]
  for name in (signatures.EXAMPLES_SIGNATURE, signatures.IMAGES_SIGNATURE):
    np.testing.assert_allclose(
      outputs[name][signatures.PROBABILITIES],
      outputs[signatures.SERVING_SIGNATURE][signatures.PROBABILITIES],
      rtol=0,
      atol=1e-6,
      err_msg=name,
    )


def test_predict_names_classes_from_the_models_own_output(three_class_version, tmp_path):
  _, version_dir = three_class_version
  (tmp_path / 'star').mkdir()
  (tmp_path / 'star' / 'big.jpg').write_bytes(encode(np.full((64, 48, 3), 200, np.uint8), 'JPEG'))
  inputs = predict.load_inputs([str(tmp_path)])
  answer = predict.predict_local(os.path.dirname(version_dir), inputs.images)
  (prediction,) = answer.predictions
  assert prediction.class_name == THREE_CLASSES.classes[prediction.class_id]
  assert len(prediction.probabilities) == 3
  assert inputs.accuracy_line(answer.predictions).endswith('of 1 labelled images')


def _run_signature(version_dir, signature_name, inputs):
  signature = tf.saved_model.load(version_dir).signatures[signature_name]
  return {name: value.numpy() for name, value in signature(**inputs).items()}


def _run_predict_request(loaded, request):
  """What TF Serving's Predict does with a request: the named signature (default
  serving_default), exactly its inputs, each in the signature's dtype, all outputs back."""
  signature = loaded.signatures[request.model_spec.signature_name or signatures.SERVING_SIGNATURE]
  specs = signature.structured_input_signature[1]
  assert set(request.inputs) == set(specs)
  inputs = {}
  for name, proto in request.inputs.items():
    assert proto.dtype == specs[name].dtype.as_datatype_enum
    inputs[name] = tf.constant(tf.make_ndarray(proto), specs[name].dtype)
  return {name: value.numpy() for name, value in signature(**inputs).items()}


def _request_files(request):
  """The encoded images a request carries, whichever signature it is for."""
  signature = request.model_spec.signature_name
  if signature == signatures.IMAGES_SIGNATURE:
    return serving_model.png_files(tf.make_ndarray(request.inputs[signatures.IMAGES_INPUT]))
  if signature == signatures.EXAMPLES_SIGNATURE:
    examples = tf.make_ndarray(request.inputs[signatures.EXAMPLES_INPUT])
    return requests.encoded_images(examples)
  return list(tf.make_ndarray(request.inputs[signatures.IMAGE_BYTES_INPUT]))


def test_warmup_requests_replay_real_images_against_the_saved_model_as_tf_serving_does(served):
  model, version_dir, files = served
  path = os.path.join(version_dir, 'assets.extra', 'tf_serving_warmup_requests')
  records = [record.numpy() for record in tf.data.TFRecordDataset(path)]
  assert 0 < len(records) <= 1000  # TF Serving refuses a version with more
  loaded = tf.saved_model.load(version_dir)
  replayed = set()
  for record in records:
    log = prediction_log_pb2.PredictionLog.FromString(record)
    assert log.WhichOneof('log_type') == 'predict_log'
    request = log.predict_log.request
    outputs = _run_predict_request(loaded, request)
    images = _request_files(request)
    np.testing.assert_allclose(
      outputs[signatures.PROBABILITIES], _expected(model, images), atol=1e-5
    )
    assert outputs[signatures.CLASS_IDS].shape == (len(images),)
    # The export's sample images (the first files it was given), not made-up pixels.
    assert set(map(bytes, images)) <= set(files[:8])
    replayed.add((request.model_spec.signature_name, len(images)))
  # Every batch shape a server runs: one image unbatched, and each batching file's batch sizes.
  shapes = {1}
  for device in server_config.BATCHING_FILES:
    batching = server_config.batching_parameters(device, cpu_cores=2)
    shapes.update(batching.allowed_batch_sizes or [batching.max_execution_batch_size.value])
  assert replayed == {
    (signature, size)
    for signature in (
      signatures.SERVING_SIGNATURE,
      signatures.EXAMPLES_SIGNATURE,
      signatures.IMAGES_SIGNATURE,
    )
    for size in shapes
  }


def test_grpc_request_decoded_as_tf_serving_does_gives_the_model_predictions(served):
  model, version_dir, images = served
  (request,) = predict.grpc_requests(images, requests.Servable(MODEL_NAME, version=1))
  assert (request.model_spec.name, request.model_spec.version.value) == (MODEL_NAME, 1)
  outputs = _run_predict_request(tf.saved_model.load(version_dir), request)
  np.testing.assert_allclose(outputs[signatures.PROBABILITIES], _expected(model, images), atol=1e-5)


def _decode_value(value):
  """TF Serving's JSON values: {"b64": text} is the bytes it encodes; lists element-wise."""
  if isinstance(value, dict):
    assert set(value) == {'b64'}, value
    return base64.b64decode(value['b64'])
  return [_decode_value(item) for item in value] if isinstance(value, list) else value


def _decode_rest(body, signature_input):
  """TF Serving's JSON decoding: row 'instances' (named inputs or bare values) stack into one
  batch; columnar 'inputs' as they are."""
  if 'instances' in body:
    rows = body['instances']
    named = rows and isinstance(rows[0], dict) and signature_input in rows[0]
    return {
      signature_input: _decode_value([row[signature_input] for row in rows] if named else rows)
    }
  inputs = body['inputs']
  return {
    signature_input: _decode_value(inputs[signature_input] if isinstance(inputs, dict) else inputs)
  }


def test_rest_body_carries_each_file_as_b64_to_serving_default(served):
  model, version_dir, files = served
  (body,) = predict.rest_bodies(files)
  body = json.loads(body)
  assert body['signature_name'] == signatures.SERVING_SIGNATURE
  assert body['instances'][0] == {
    signatures.IMAGE_BYTES_INPUT: {'b64': base64.b64encode(files[0]).decode('ascii')}
  }
  for form in ('row', 'columnar'):
    if form == 'columnar':
      column = [row[signatures.IMAGE_BYTES_INPUT] for row in body['instances']]
      body = {
        'signature_name': body['signature_name'],
        'inputs': {signatures.IMAGE_BYTES_INPUT: column},
      }
    decoded = _decode_rest(body, signatures.IMAGE_BYTES_INPUT)
    inputs = {
      signatures.IMAGE_BYTES_INPUT: tf.constant(decoded[signatures.IMAGE_BYTES_INPUT], tf.string)
    }
    outputs = _run_signature(version_dir, body['signature_name'], inputs)
    np.testing.assert_allclose(
      outputs[signatures.PROBABILITIES], _expected(model, files), atol=1e-5
    )


class _FakeTfServing(http.server.BaseHTTPRequestHandler):
  """Answers /v1/models/NAME[/versions/V]:predict from a loaded SavedModel, in TF Serving's
  format, refusing bodies over `max_body_bytes` as a gateway in front of it would."""

  loaded = None
  max_body_bytes = None
  reports_version = True
  body_sizes: ClassVar[List[int]] = []
  paths: ClassVar[List[str]] = []

  def do_POST(self):  # pylint: disable=invalid-name
    size = int(self.headers['Content-Length'])
    data = self.rfile.read(size)  # read even when refusing, so the client sees the reply
    if self.max_body_bytes and size > self.max_body_bytes:
      return self._reply(413, {'error': f'request body of {size} bytes is too large'})
    self.body_sizes.append(size)
    self.paths.append(self.path)
    match = re.fullmatch(r'/v1/models/([^/:]+)(?:/versions/\d+|/labels/\w+)?:predict', self.path)
    body = json.loads(data)
    if not match or match.group(1) != MODEL_NAME:
      name = match.group(1) if match else self.path
      return self._reply(404, {'error': f'Servable not found for request: Latest({name})'})
    signature = self.loaded.signatures[body.get('signature_name', signatures.SERVING_SIGNATURE)]
    (input_name,) = signature.structured_input_signature[1]
    spec = signature.structured_input_signature[1][input_name]
    outputs = signature(
      **{input_name: tf.constant(_decode_rest(body, input_name)[input_name], spec.dtype)}
    )
    columns = {name: value.numpy().tolist() for name, value in outputs.items()}
    columns[signatures.CLASSES] = [c.decode() for c in outputs[signatures.CLASSES].numpy()]
    rows = [dict(zip(columns, values)) for values in zip(*columns.values())]
    return self._reply(200, {'predictions': rows})

  def do_GET(self):  # pylint: disable=invalid-name
    """The model metadata resource, as TF Serving answers it: the version it resolves to."""
    match = re.fullmatch(r'/v1/models/([^/:]+)(?:/versions/\d+|/labels/\w+)?/metadata', self.path)
    if not match or match.group(1) != MODEL_NAME or not self.reports_version:
      return self._reply(404, {'error': f'Servable not found for request: {self.path}'})
    spec = {'name': MODEL_NAME, 'signature_name': '', 'version': '1'}
    return self._reply(200, {'model_spec': spec, 'metadata': {}})

  def _reply(self, code, payload):
    data = json.dumps(payload).encode()
    self.send_response(code)
    self.send_header('Content-Type', 'application/json')
    self.send_header('Content-Length', str(len(data)))
    self.end_headers()
    self.wfile.write(data)

  def log_message(self, *args):
    pass


@pytest.fixture
def rest_server(served):
  _, version_dir, _ = served
  _FakeTfServing.loaded = tf.saved_model.load(version_dir)
  _FakeTfServing.max_body_bytes = None
  _FakeTfServing.reports_version = True
  _FakeTfServing.body_sizes = []
  _FakeTfServing.paths = []
  server = http.server.HTTPServer(('127.0.0.1', 0), _FakeTfServing)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  yield f'127.0.0.1:{server.server_address[1]}'
  server.shutdown()
  server.server_close()


def test_rest_client_end_to_end_matches_in_process_predictions(served, rest_server):
  model, version_dir, images = served
  over_http = predict.predict_rest(
    rest_server, requests.Servable(MODEL_NAME, version=1), images
  ).predictions
  local = predict.predict_local(os.path.dirname(version_dir), images).predictions
  assert [p.class_id for p in over_http] == [p.class_id for p in local]
  np.testing.assert_allclose(
    [p.probabilities for p in over_http], _expected(model, images), atol=1e-5
  )
  assert [p.class_name for p in over_http] == [FASHION_MNIST.classes[p.class_id] for p in local]


def test_rest_client_names_a_wrong_model_and_an_unreachable_server(served, rest_server):
  _, _, images = served
  with pytest.raises(predict.PredictError, match='HTTP 404.*Latest\\(fashion\\).*model name'):
    predict.predict_rest(rest_server, requests.Servable('fashion'), images[:1])
  with pytest.raises(predict.PredictError, match='cannot reach TF Serving at http://127.0.0.1:9/'):
    predict.predict_rest('127.0.0.1:9', SERVABLE, images[:1], timeout=5)


def test_rest_requests_stay_under_the_servers_body_limit(served, rest_server, tmp_path, capsys):
  model, _, _ = served
  _FakeTfServing.max_body_bytes = 500_000
  labels = np.arange(2500) % 10
  pair = idx_files.write_dataset(str(tmp_path), 't10k', 2500, labels=labels)
  images = predict.load_inputs([pair.images_path]).images
  # In one request of the default size the server refuses it...
  with pytest.raises(predict.PredictError, match='HTTP 413'):
    predict.predict_rest(rest_server, SERVABLE, images)
  # ...under its limit every image is answered, in order.
  command = ['predict', pair.images_path, '--rest', rest_server, '--max-request-bytes', '500000']
  assert cli.main(command) == 0
  model_line, *lines = capsys.readouterr().out.splitlines()
  assert model_line == (
    f'Answered by {MODEL_NAME} version 1, TF Serving at http://{rest_server} (REST)'
  )
  assert max(_FakeTfServing.body_sizes) <= 500_000 and len(_FakeTfServing.body_sizes) > 3
  predicted = _expected(model, images).argmax(axis=1)
  assert [line.split()[0] for line in lines[:-1]] == [
    f'{pair.images_path}[{index}]' for index in range(2500)
  ]
  assert [line.split()[1] for line in lines[:-1]] == [
    FASHION_MNIST.classes[c].split()[0] for c in predicted
  ]
  correct = int(np.sum(predicted == labels))
  assert lines[-1] == f'accuracy {correct / 2500:.4f}: {correct} of 2500 labelled images'


class _SavedModelPredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
  """TF Serving's Predict RPC answered from the SavedModel."""

  def __init__(self, version_dir):
    self.loaded = tf.saved_model.load(version_dir)
    self.request_sizes = []
    self.model_specs = []

  def Predict(self, request, context):  # pylint: disable=invalid-name
    self.request_sizes.append(request.ByteSize())
    self.model_specs.append(request.model_spec)
    if request.model_spec.name != MODEL_NAME:
      context.abort(grpc.StatusCode.NOT_FOUND, f'Servable not found: {request.model_spec.name}')
    response = predict_pb2.PredictResponse()
    response.model_spec.CopyFrom(request.model_spec)
    response.model_spec.version.value = 1  # TF Serving names the version that answered
    for name, value in _run_predict_request(self.loaded, request).items():
      response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
    return response


@pytest.fixture
def grpc_server(served):
  """A gRPC server on 127.0.0.1 with gRPC's default 4 MB limit on what it receives."""
  _, version_dir, _ = served
  service = _SavedModelPredictionService(version_dir)
  server = grpc.server(
    futures.ThreadPoolExecutor(max_workers=2),
    options=[('grpc.max_receive_message_length', 4 * 1024 * 1024)],
  )
  prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(service, server)
  port = server.add_insecure_port('127.0.0.1:0')
  server.start()
  yield f'127.0.0.1:{port}', service
  server.stop(grace=None)


def test_grpc_client_sends_a_whole_t10k_file_under_the_4mb_limit(
  served, grpc_server, tmp_path, capsys
):
  model, _, _ = served
  address, service = grpc_server
  labels = np.random.default_rng(3).integers(0, 10, size=10_000)
  pair = idx_files.write_dataset(str(tmp_path), 't10k', 10_000, labels=labels)
  images = predict.load_inputs([pair.images_path]).images
  unlimited = predict.Limits(max_bytes=1 << 30, max_images=len(images))
  with pytest.raises(predict.PredictError, match='RESOURCE_EXHAUSTED.*max-request-bytes'):
    predict.predict_grpc(address, SERVABLE, images, limits=unlimited)

  assert cli.main(['predict', pair.images_path, '--grpc', address]) == 0
  model_line, *lines = capsys.readouterr().out.splitlines()
  assert model_line == f'Answered by {MODEL_NAME} version 1, TF Serving at {address} (gRPC)'
  assert len(lines) == 10_001
  assert service.request_sizes and max(service.request_sizes) <= 4 * 1024 * 1024
  predicted = _expected(model, images).argmax(axis=1)
  for index, (line, class_id, label) in enumerate(zip(lines[:3], predicted, labels)):
    name, truth = FASHION_MNIST.classes[class_id], FASHION_MNIST.classes[label]
    image, prediction = line.split(maxsplit=1)
    assert image == f'{pair.images_path}[{index}]' and prediction.startswith(f'{name:<12} ')
    assert line.endswith(f'(label: {truth})' + ('' if class_id == label else ' ✗'))
  correct = int(np.sum(predicted == labels))
  assert lines[-1] == f'accuracy {correct / 10_000:.4f}: {correct} of 10000 labelled images'


def test_a_version_label_reaches_rest_and_grpc_servers(grpc_server, rest_server, tmp_path, capsys):
  png = str(tmp_path / 'one.png')
  tf.io.write_file(png, tf.io.encode_png(np.zeros((28, 28, 1), np.uint8)))
  assert cli.main(['predict', png, '--rest', rest_server, '--model-label', 'canary']) == 0
  assert _FakeTfServing.paths == ['/v1/models/fashion_mnist/labels/canary:predict']
  # The version behind the label, from the server's metadata resource for the same label.
  assert capsys.readouterr().out.startswith(f'Answered by {MODEL_NAME} version 1, ')
  _FakeTfServing.reports_version = False
  assert cli.main(['predict', png, '--rest', rest_server]) == 0
  assert capsys.readouterr().out.startswith(f'Answered by {MODEL_NAME} (version not reported), ')
  address, service = grpc_server
  assert cli.main(['predict', png, '--grpc', address, '--model-label', 'stable']) == 0
  (spec,) = service.model_specs
  assert (spec.name, spec.version_label, spec.HasField('version')) == (MODEL_NAME, 'stable', False)
  capsys.readouterr()
  assert cli.main(['predict', png, '--local', str(tmp_path), '--model-label', 'stable']) == 1
  assert '--model-label needs a server' in capsys.readouterr().err


def test_grpc_client_names_an_unreachable_server(served):
  _, _, images = served
  with pytest.raises(predict.PredictError, match='cannot reach TF Serving at 127.0.0.1:9'):
    predict.predict_grpc('127.0.0.1:9', SERVABLE, images[:1], timeout=5)


def _example(encoded, label):
  example = tf.train.Example()
  example.features.feature[IMAGE_KEY].bytes_list.value.append(encoded)
  example.features.feature[LABEL_KEY].int64_list.value.append(label)
  return example.SerializeToString(deterministic=True)


def test_images_and_labels_load_from_an_examplegen_split_directory(tmp_path):
  labels = [2, 1, 0, 1, 2]
  files = serving_model.png_files(idx_files.learnable_images(np.array(labels), seed=4))
  split_dir = tmp_path / 'Split-test'
  split_dir.mkdir()
  options = tf.io.TFRecordOptions(compression_type='GZIP')
  with tf.io.TFRecordWriter(str(split_dir / 'data_tfrecord-00000-of-00001.gz'), options) as out:
    for encoded, label in zip(files, labels):
      out.write(_example(encoded, label))
  inputs = predict.load_inputs([str(split_dir)], count=3)
  assert inputs.images == files[:3]
  assert inputs.labels == [predict.Label(2), predict.Label(1), predict.Label(0)]
  # With ExampleGen's dataset.json beside the split, the labels have their class names.
  spec = DatasetSpec(('cat', 'dog', 'owl'), 28, 28, 1)
  (tmp_path / predict.DATASET_FILE).write_text(json.dumps({'spec': spec.to_dict()}))
  assert [str(label) for label in predict.load_inputs([str(split_dir)]).labels] == [
    'owl',
    'dog',
    'cat',
    'dog',
    'owl',
  ]


def test_a_folder_of_any_formats_and_sizes_loads_labelled_by_class_folder(tmp_path, capsys):
  rng = np.random.default_rng(5)
  written = {
    'cat/a.png': encode(rng.integers(0, 256, (30, 20), np.uint8), 'PNG'),
    'cat/b.jpg': encode(rng.integers(0, 256, (9, 40, 3), np.uint8), 'JPEG'),
    'dog/c.bmp': encode(rng.integers(0, 256, (8, 8, 3), np.uint8), 'BMP'),
    'dog/d.gif': encode(rng.integers(0, 256, (50, 50), np.uint8), 'GIF'),
    'loose.png': encode(rng.integers(0, 256, (28, 28, 4), np.uint8), 'PNG'),
  }
  for name, content in written.items():
    (tmp_path / name).parent.mkdir(exist_ok=True)
    (tmp_path / name).write_bytes(content)
  (tmp_path / 'cat' / 'README.txt').write_text('cats')
  (tmp_path / 'dog' / '.DS_Store').write_bytes(b'\0\0\0\1Bud1')
  inputs = predict.load_inputs([str(tmp_path)])
  assert inputs.images == list(written.values())
  assert inputs.names == [str(tmp_path / name) for name in written]
  assert [label and label.name for label in inputs.labels] == ['cat', 'cat', 'dog', 'dog', None]
  assert inputs.skipped == [
    f'skipped {tmp_path / "cat" / "README.txt"}: not a JPEG, PNG, BMP or GIF image',
    f'skipped {tmp_path / "dog" / ".DS_Store"}: not a JPEG, PNG, BMP or GIF image',
  ]


def test_idx_images_are_sent_as_lossless_pngs_of_their_pixels(tmp_path):
  pair = idx_files.write_dataset(str(tmp_path), 't10k', 3)
  inputs = predict.load_inputs([pair.images_path])
  pixels = np.stack([tf.io.decode_png(image).numpy()[:, :, 0] for image in inputs.images])
  np.testing.assert_array_equal(
    pixels, idx_files.learnable_images(np.array([label.index for label in inputs.labels]), seed=0)
  )
  assert len(predict.load_inputs([pair.images_path], count=2).images) == 2


def test_predict_command_prints_labels_and_accuracy_only_when_known(served, capsys, tmp_path):
  model, version_dir, _ = served
  labels = np.array([2, 7, 7, 9])
  pair = idx_files.write_dataset(str(tmp_path / 'labelled'), 't10k', 4, labels=labels)
  model_dir = os.path.dirname(version_dir)
  assert cli.main(['predict', pair.images_path, '--count', '3', '--local', model_dir]) == 0
  model_line, *lines = capsys.readouterr().out.splitlines()
  assert model_line == f'Answered by {MODEL_NAME} version 1 (batch), in process: {version_dir}'
  predicted = _expected(model, predict.load_inputs([pair.images_path]).images[:3]).argmax(axis=1)
  correct = int(np.sum(predicted == labels[:3]))
  assert (
    len(lines) == 4 and lines[-1] == f'accuracy {correct / 3:.4f}: {correct} of 3 labelled images'
  )
  assert all('(label: ' in line for line in lines[:3])

  # Without its labels file (or as PNG) an image has no label: no label column, no accuracy.
  os.remove(pair.labels_path)
  png = str(tmp_path / 'one.png')
  tf.io.write_file(png, tf.io.encode_png(np.zeros((28, 28, 1), np.uint8)))
  assert cli.main(['predict', pair.images_path, png, '--local', model_dir]) == 0
  lines = capsys.readouterr().out.splitlines()[1:]
  assert len(lines) == 5 and not any('(label: ' in line or 'accuracy' in line for line in lines)
  # Each row starts with the image's file, and its index inside an IDX file.
  assert [line.split()[0] for line in lines] == [
    *(f'{pair.images_path}[{index}]' for index in range(4)),
    png,
  ]


def test_predict_command_bad_inputs_and_model_directories_are_one_line(
  served, capsys, tmp_path, traceback_log
):
  _, version_dir, _ = served
  pair = idx_files.write_dataset(str(tmp_path), 't10k', 2)
  broken = tmp_path / 'broken' / '3'
  broken.mkdir(parents=True)
  (broken / 'saved_model.pb').write_bytes(b'not a SavedModel')
  notes = tmp_path / 'notes.txt'
  notes.write_text('not an image')
  damaged = tmp_path / 'damaged.png'
  damaged.write_bytes(tf.io.encode_png(np.zeros((28, 28, 1), np.uint8)).numpy()[:40])
  raw_idx = tmp_path / 't10k-images-idx3-ubyte'
  raw_idx.write_bytes(idx_files.idx_bytes(np.zeros((2, 28, 28)), 0x00000803))
  cases = [
    ([str(notes), '--local', version_dir], f'{notes}: not a JPEG, PNG, BMP or GIF image'),
    ([str(damaged), '--local', version_dir], f'{damaged}: a damaged PNG file that cannot be'),
    ([str(raw_idx), '--local', version_dir], 'an uncompressed IDX file: predict reads them gzip'),
    (
      [pair.labels_path, '--local', version_dir],
      f'{pair.labels_path}: this is an IDX labels file, not images',
    ),
    ([str(tmp_path / 'missing.gz'), '--local', version_dir], 'missing.gz: file not found'),
    ([str(tmp_path / 'missing.png'), '--local', version_dir], 'missing.png: file not found'),
    ([pair.images_path, '--local', str(tmp_path / 'nowhere')], 'nowhere: no such directory'),
    ([pair.images_path, '--local', str(tmp_path)], 'no SavedModel and no numbered version'),
    ([pair.images_path, '--local', str(broken.parent)], 'broken/3: not a SavedModel'),
    (
      [pair.images_path, '--local', os.path.dirname(version_dir), '--model-version', '9'],
      'no version 9 (found: 1)',
    ),
  ]
  logs = set()
  for arguments, message in cases:
    assert cli.main(['predict', *arguments]) == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and message in error, error
    assert 'Op:' not in error and 'function_node' not in error  # no TensorFlow op text
    log = traceback_log(error)
    assert log.read_text().startswith('Traceback')  # what the line leaves out
    logs.add(log)
  assert len(logs) == len(cases)  # each failure its own log: none overwrites another


# --- Serving latency, as the selector measures it -----------------------------------------------


def test_latency_summary_is_the_median_and_the_10th_and_90th_percentiles():
  seconds = [0.001 * value for value in (5, 1, 9, 3, 7, 2, 8, 4, 6, 10, 30)]
  summary = latency.summarize(seconds)
  expected = np.percentile(np.array(seconds) * 1000, [10, 50, 90])  # linear interpolation
  assert [summary.p10_ms, summary.median_ms, summary.p90_ms] == pytest.approx(expected)
  assert summary.calls == 11


def test_warmup_calls_are_not_timed_and_models_take_turns():
  order = []
  calls = {name: (lambda name=name: order.append(name)) for name in ('a', 'b')}
  result = latency.interleaved_latency(calls, repeats=4, warmup=2)
  assert order == ['a', 'a', 'b', 'b'] + ['a', 'b'] * 4
  assert {name: value.calls for name, value in result.items()} == {'a': 4, 'b': 4}
  with pytest.raises(ValueError, match='at least 2 timed calls'):
    latency.interleaved_latency(calls, repeats=1)


def test_serving_latency_times_serving_default_at_each_batch_size(served, monkeypatch):
  _, version_dir, images = served
  batches = []
  original = latency.interleaved_latency

  def recording(calls, repeats, warmup=latency.WARMUP_CALLS):
    # What one call sends: the batch of encoded image files a client would.
    (call,) = calls.values()
    batches.append(call()[signatures.PROBABILITIES].shape[0])
    return original(calls, repeats, warmup)

  monkeypatch.setattr(latency, 'interleaved_latency', recording)
  examples = [_example(image, 0) for image in images[:5]]
  result = latency.serving_latency(
    {'batch': version_dir}, requests.encoded_images(examples), (1, 64), repeats=3
  )
  assert batches == [1, 64]  # five images, repeated to fill the batch of 64
  for batch in (1, 64):
    timing = result['batch'][batch]
    assert timing.calls == 3 and 0 < timing.p10_ms <= timing.median_ms <= timing.p90_ms
