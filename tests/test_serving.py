"""The serving contract: signatures as TF Serving sees them, and the client's REST and gRPC paths."""

import http.server
import json
import os
import re
import subprocess
import sys
import threading

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.tools import saved_model_utils

from pipeline import cli
from pipeline import predict
from tests import idx_files
from tests.transform_output import write_transform_output
from trainer import export
from trainer import features
from trainer import preprocessing
from trainer.model import build_model

MODEL_NAME = 'fashion_mnist'


@pytest.fixture(scope='module')
def served(tmp_path_factory):
  """A pushed-style version directory: Transform graph + a briefly trained model, exported."""
  root = tmp_path_factory.mktemp('serving')
  transform_output = write_transform_output(root)
  model = build_model('batch', seed=0)
  labels = np.arange(40) % 10
  images = idx_files.learnable_images(labels, seed=0)
  model(preprocessing.as_images(preprocessing.scale_to_unit(images.reshape(40, -1))), training=True)
  version_dir = str(root / MODEL_NAME / '1')
  export.save(model, transform_output, version_dir, {'variant': 'batch'})
  return model, version_dir, images


def test_version_records_its_variant_and_size(served):
  model, version_dir, _ = served
  with open(os.path.join(version_dir, export.MODEL_INFO_FILE)) as info:
    assert json.load(info) == {'variant': 'batch', 'parameters': model.count_params()}


def test_saved_model_loads_in_plain_tensorflow(served):
  # TF Serving and TFMA load the export with nothing but TensorFlow, as this fresh
  # interpreter does.
  _, version_dir, _ = served
  script = (
    'import sys, tensorflow as tf\n'
    'signature = tf.saved_model.load(sys.argv[1]).signatures["predict_images"]\n'
    'print(signature(images=tf.zeros([2, 28, 28], tf.uint8))["class_ids"].shape)\n'
  )
  result = subprocess.run(
    [sys.executable, '-c', script, version_dir], capture_output=True, text=True, timeout=300
  )
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip().splitlines()[-1] == '(2,)'


def _expected(model, images):
  logits = model(
    preprocessing.as_images(preprocessing.scale_to_unit(images.reshape(len(images), -1))),
    training=False,
  )
  return tf.nn.softmax(logits).numpy()


def _signature_defs(version_dir):
  return saved_model_utils.get_meta_graph_def(version_dir, 'serve').signature_def


def _shape(tensor_info):
  return [dim.size for dim in tensor_info.tensor_shape.dim]


def test_signatures_have_the_documented_names_dtypes_and_shapes(served):
  _, version_dir, _ = served
  signatures = _signature_defs(version_dir)
  examples = signatures[export.SERVING_SIGNATURE].inputs[export.EXAMPLES_INPUT]
  assert (examples.dtype, _shape(examples)) == (tf.string.as_datatype_enum, [-1])
  images = signatures[export.IMAGES_SIGNATURE].inputs[export.IMAGES_INPUT]
  assert (images.dtype, _shape(images)) == (tf.uint8.as_datatype_enum, [-1, 28, 28])
  for name in (export.SERVING_SIGNATURE, export.IMAGES_SIGNATURE):
    outputs = signatures[name].outputs
    assert set(outputs) == {export.PROBABILITIES, export.CLASS_IDS, export.CLASSES}
    assert (outputs[export.PROBABILITIES].dtype, _shape(outputs[export.PROBABILITIES])) == (
      tf.float32.as_datatype_enum,
      [-1, 10],
    )
    assert (outputs[export.CLASS_IDS].dtype, _shape(outputs[export.CLASS_IDS])) == (
      tf.int64.as_datatype_enum,
      [-1],
    )
    assert (outputs[export.CLASSES].dtype, _shape(outputs[export.CLASSES])) == (
      tf.string.as_datatype_enum,
      [-1],
    )
  assert export.TRANSFORM_SIGNATURE in signatures


def _run_signature(version_dir, signature_name, inputs):
  signature = tf.saved_model.load(version_dir).signatures[signature_name]
  return {name: value.numpy() for name, value in signature(**inputs).items()}


def test_grpc_request_decoded_as_tf_serving_does_gives_the_model_predictions(served):
  model, version_dir, images = served
  request = predict.grpc_request(images, MODEL_NAME, version=1)
  assert (request.model_spec.name, request.model_spec.version.value) == (MODEL_NAME, 1)
  inputs = {name: tf.constant(tf.make_ndarray(proto)) for name, proto in request.inputs.items()}
  outputs = _run_signature(version_dir, request.model_spec.signature_name, inputs)
  np.testing.assert_allclose(outputs[export.PROBABILITIES], _expected(model, images), atol=1e-5)


def _decode_rest(body, signature_input):
  """TF Serving's JSON decoding: row 'instances' stack into one batch; columnar 'inputs' as is."""
  if 'instances' in body:
    return {signature_input: np.array(body['instances'])}
  return {signature_input: np.array(body['inputs'])}


@pytest.mark.parametrize('form', ['row', 'columnar'])
def test_rest_body_decoded_as_tf_serving_does_gives_the_model_predictions(served, form):
  model, version_dir, images = served
  body = json.loads(json.dumps(predict.rest_body(images)))
  if form == 'columnar':
    body = {'signature_name': body['signature_name'], 'inputs': body['instances']}
  decoded = _decode_rest(body, export.IMAGES_INPUT)
  inputs = {export.IMAGES_INPUT: tf.constant(decoded[export.IMAGES_INPUT], tf.uint8)}
  outputs = _run_signature(version_dir, body['signature_name'], inputs)
  np.testing.assert_allclose(outputs[export.PROBABILITIES], _expected(model, images), atol=1e-5)


class _FakeTfServing(http.server.BaseHTTPRequestHandler):
  """Answers /v1/models/NAME[/versions/V]:predict from a loaded SavedModel, in TF Serving's format."""

  model_dir = None
  loaded = None

  def do_POST(self):  # pylint: disable=invalid-name
    match = re.fullmatch(r'/v1/models/([^/:]+)(?:/versions/(\d+))?:predict', self.path)
    body = json.loads(self.rfile.read(int(self.headers['Content-Length'])))
    if not match or match.group(1) != MODEL_NAME:
      name = match.group(1) if match else self.path
      return self._reply(404, {'error': f'Servable not found for request: Latest({name})'})
    signature = self.loaded.signatures[body.get('signature_name', export.SERVING_SIGNATURE)]
    (input_name,) = signature.structured_input_signature[1]
    spec = signature.structured_input_signature[1][input_name]
    outputs = signature(
      **{input_name: tf.constant(_decode_rest(body, input_name)[input_name], spec.dtype)}
    )
    columns = {name: value.numpy().tolist() for name, value in outputs.items()}
    columns[export.CLASSES] = [c.decode() for c in outputs[export.CLASSES].numpy()]
    rows = [dict(zip(columns, values)) for values in zip(*columns.values())]
    return self._reply(200, {'predictions': rows})

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
  server = http.server.HTTPServer(('127.0.0.1', 0), _FakeTfServing)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  yield f'127.0.0.1:{server.server_address[1]}'
  server.shutdown()
  server.server_close()


def test_rest_client_end_to_end_matches_in_process_predictions(served, rest_server):
  model, version_dir, images = served
  over_http = predict.predict_rest(rest_server, MODEL_NAME, images, version=1)
  local = predict.predict_local(os.path.dirname(version_dir), images)
  assert [p.class_id for p in over_http] == [p.class_id for p in local]
  np.testing.assert_allclose(
    [p.probabilities for p in over_http], _expected(model, images), atol=1e-5
  )
  assert [p.class_name for p in over_http] == [features.CLASS_NAMES[p.class_id] for p in local]


def test_rest_client_names_a_wrong_model_and_an_unreachable_server(served, rest_server):
  _, _, images = served
  with pytest.raises(predict.PredictError, match='HTTP 404.*Latest\\(fashion\\).*model name'):
    predict.predict_rest(rest_server, 'fashion', images[:1])
  with pytest.raises(predict.PredictError, match='cannot reach TF Serving at http://127.0.0.1:9/'):
    predict.predict_rest('127.0.0.1:9', MODEL_NAME, images[:1], timeout=5)


def test_grpc_client_names_an_unreachable_server(served):
  _, _, images = served
  with pytest.raises(predict.PredictError, match='cannot reach TF Serving at 127.0.0.1:9'):
    predict.predict_grpc('127.0.0.1:9', MODEL_NAME, images[:1], timeout=5)


def test_images_load_from_an_examplegen_split_directory(tmp_path):
  images = idx_files.learnable_images(np.arange(5), seed=4)
  split_dir = tmp_path / 'Split-test'
  split_dir.mkdir()
  options = tf.io.TFRecordOptions(compression_type='GZIP')
  with tf.io.TFRecordWriter(str(split_dir / 'data_tfrecord-00000-of-00001.gz'), options) as out:
    for record in predict.serialized_examples(images):
      out.write(record)
  np.testing.assert_array_equal(predict.load_images([str(split_dir)], count=3), images[:3])
  with pytest.raises(predict.PredictError, match='no tf.Example files'):
    predict.load_images([str(tmp_path)])


def test_images_of_the_wrong_size_are_refused_before_sending(tmp_path):
  path = str(tmp_path / 'big.png')
  tf.io.write_file(path, tf.io.encode_png(np.zeros((32, 30, 1), np.uint8)))
  with pytest.raises(predict.PredictError, match=f'{path}: image is 30x32'):
    predict.load_images([path])


def test_png_and_idx_inputs_load_the_same_pixels(tmp_path):
  pair = idx_files.write_dataset(str(tmp_path), 't10k', 3)
  from_idx = predict.load_images([pair.images_path])
  png = str(tmp_path / 'first.png')
  tf.io.write_file(png, tf.io.encode_png(from_idx[0][:, :, None]))
  np.testing.assert_array_equal(predict.load_images([png]), from_idx[:1])
  assert predict.load_images([pair.images_path], count=2).shape == (2, 28, 28)


def test_predict_command_prints_class_names_and_probabilities(served, capsys, tmp_path):
  _, version_dir, images = served
  pair = idx_files.write_dataset(str(tmp_path), 't10k', 4)
  assert (
    cli.main(['predict', pair.images_path, '--count', '3', '--local', os.path.dirname(version_dir)])
    == 0
  )
  lines = capsys.readouterr().out.splitlines()
  assert len(lines) == 3
  assert all(any(name in line for name in features.CLASS_NAMES) for line in lines)
  assert cli.main(['predict', str(tmp_path / 'missing.gz'), '--local', version_dir]) == 1
  assert 'missing.gz: file not found' in capsys.readouterr().err
  assert cli.main(['predict', str(tmp_path / 'missing.png'), '--local', version_dir]) == 1
  assert 'missing.png: file not found' in capsys.readouterr().err
