"""Locating, downloading and verifying the data; CLI errors a newcomer can act on."""

import gzip
import hashlib
import json
import os
import re
import shutil
import time

import pytest

from components.variant_selection import report
from pipeline import cli
from pipeline import data
from pipeline import output_root_lock
from pipeline.config import DEBIAN_DATA_DIR


def _gz(payload: bytes) -> bytes:
  return gzip.compress(payload)


@pytest.mark.skipif(
  not os.path.isdir(DEBIAN_DATA_DIR), reason='dataset-fashion-mnist not installed'
)
def test_debian_package_files_are_fashion_mnist():
  data.verify(DEBIAN_DATA_DIR)


def test_download_verifies_content_and_leaves_nothing_on_mismatch(tmp_path, monkeypatch):
  contents = {name: f'idx content of {name}'.encode() for name in data.IDX_SHA256}
  monkeypatch.setattr(
    data,
    'IDX_SHA256',
    {name: hashlib.sha256(content).hexdigest() for name, content in contents.items()},
  )
  fetched = []

  def fake_fetch(url):
    fetched.append(url)
    name = url.rsplit('/', 1)[1]
    return _gz(b'tampered' if name.startswith('t10k-images') else contents[name])

  with pytest.raises(data.DataFileError, match='t10k-images-idx3-ubyte.gz: content SHA-256'):
    data.download(str(tmp_path), base_url='https://example.invalid/', fetch=fake_fetch)
  assert not [name for name in os.listdir(tmp_path) if name.endswith('.partial')]
  assert 't10k-images-idx3-ubyte.gz' not in os.listdir(tmp_path)

  fetched.clear()
  data.download(
    str(tmp_path),
    base_url='https://example.invalid/',
    fetch=lambda url: _gz(contents[url.rsplit('/', 1)[1]]),
  )
  data.verify(str(tmp_path))
  # A second download fetches nothing: every file is already there.
  data.download(str(tmp_path), fetch=fake_fetch)
  assert not fetched


def test_verify_names_missing_and_wrong_files(tmp_path):
  (tmp_path / 'train-labels-idx1-ubyte.gz').write_bytes(_gz(b'not fashion mnist'))
  with pytest.raises(data.DataFileError) as error:
    data.verify(str(tmp_path))
  message = str(error.value)
  assert f'{tmp_path}/train-images-idx3-ubyte.gz: missing' in message
  assert f'{tmp_path}/train-labels-idx1-ubyte.gz: content SHA-256 differs' in message


def test_run_without_data_says_how_to_get_it(tmp_path, capsys):
  assert cli.main(['run', '--data-dir', str(tmp_path), '--output-root', str(tmp_path / 'out')]) == 1
  err = capsys.readouterr().err
  assert (
    str(tmp_path) in err and 'dataset-fashion-mnist' in err and 'fmnist-pipeline download' in err
  )


def test_second_run_on_the_same_output_root_stops_at_once(tmp_path):
  with output_root_lock.exclusive_output_root(str(tmp_path)):
    with pytest.raises(output_root_lock.OutputRootBusyError, match=str(tmp_path)):
      with output_root_lock.exclusive_output_root(str(tmp_path)):
        pass
  with output_root_lock.exclusive_output_root(str(tmp_path)):
    pass  # released when the first run ended


@pytest.mark.parametrize('command, what', [('summary', 'run'), ('report', 'variant comparison')])
def test_summary_and_report_say_when_nothing_ran_under_the_output_root(
  tmp_path, capsys, command, what
):
  assert cli.main([command, '--output-root', str(tmp_path)]) == 1
  assert f'no {what} recorded under {tmp_path}' in capsys.readouterr().err


def _write_report(selector_dir, variant, seconds_ago):
  """A VariantSelector report directory as the executor writes it, its files `seconds_ago` old."""
  os.makedirs(selector_dir)
  files = {
    report.REPORT_JSON: json.dumps({'selected': variant}),
    report.REPORT_MARKDOWN: f'| variant | verdict |\n| {variant} | selected |\n',
    'learning_curves.png': '',
  }
  stamp = time.time() - seconds_ago
  for name, content in files.items():
    path = os.path.join(selector_dir, name)
    with open(path, 'w') as out:
      out.write(content)
    os.utime(path, (stamp, stamp))


@pytest.mark.parametrize(
  'layout',
  [
    # Vertex AI: <pipeline root>/<project number>/<job>/<task>_<task id>/<output>/
    lambda root, job, task_id: os.path.join(
      root, '1234', job, f'VariantSelector_{task_id}', 'report'
    ),
    # LocalDagRunner: <pipeline root>/<component>/<output>/<execution id>/
    lambda root, job, task_id: os.path.join(root, 'VariantSelector', 'report', str(task_id)),
  ],
  ids=['vertex', 'local'],
)
def test_report_and_summary_read_the_newest_comparison_from_the_files(tmp_path, capsys, layout):
  """A deployed run leaves no MLMD store under the output root (a gs:// one is read through the
  same tf.io.gfile code as this local one)."""
  pipeline_root = str(tmp_path / 'pipeline')
  newest = layout(pipeline_root, 'fashion-mnist-20261130', 7)
  _write_report(layout(pipeline_root, 'fashion-mnist-20261129', 3), 'batch', seconds_ago=3600)
  _write_report(newest, 'layer', seconds_ago=60)

  assert cli.main(['report', '--output-root', str(tmp_path)]) == 0
  out = capsys.readouterr().out
  assert out.startswith(f'Comparison report: {newest}\n')
  assert '| layer | selected |' in out and '| batch |' not in out
  assert os.path.join(newest, 'learning_curves.png') in out

  assert cli.main(['summary', '--output-root', str(tmp_path)]) == 0
  out = capsys.readouterr().out
  assert f'No ML Metadata store under {tmp_path}' in out and '| layer | selected |' in out


def test_a_local_run_needs_a_local_output_root(tmp_path, capsys):
  code = cli.main(['run', '--output-root', 'gs://bucket/fmnist', '--data-dir', str(tmp_path)])
  assert code == 2
  assert capsys.readouterr().err.startswith('error: --output-root gs://bucket/fmnist: a local run')


# --- summary of an interrupted run, what is served, the output root's environment variable --------


def _metadata_store(output_root, states):
  """An MLMD store as LocalDagRunner leaves it: one pipeline run, one execution per (node, state)."""
  from ml_metadata import metadata_store  # pylint: disable=import-outside-toplevel
  from ml_metadata.proto import metadata_store_pb2  # pylint: disable=import-outside-toplevel

  connection = metadata_store_pb2.ConnectionConfig()
  connection.sqlite.filename_uri = os.path.join(output_root, 'metadata.sqlite')
  store = metadata_store.MetadataStore(connection)
  run_type = store.put_context_type(metadata_store_pb2.ContextType(name='pipeline_run'))
  node_type = store.put_context_type(metadata_store_pb2.ContextType(name='node'))
  execution_type = store.put_execution_type(metadata_store_pb2.ExecutionType(name='Component'))
  run = metadata_store_pb2.Context(type_id=run_type, name='run-1')
  (run.id,) = store.put_contexts([run])
  for node, state in states:
    node_context = metadata_store_pb2.Context(type_id=node_type, name=f'fashion-mnist.{node}')
    (node_context.id,) = store.put_contexts([node_context])
    execution = metadata_store_pb2.Execution(
      type_id=execution_type, last_known_state=getattr(metadata_store_pb2.Execution, state)
    )
    store.put_execution(execution, [], [run, node_context])


def _served_version(output_root, version, variant, saved_model):
  """A version directory holding `saved_model` (a directory), or an empty saved_model.pb (None)."""
  directory = os.path.join(output_root, 'serving', 'fashion_mnist', str(version))
  if saved_model:
    shutil.copytree(saved_model, directory)
  else:
    os.makedirs(directory)
    with open(os.path.join(directory, 'saved_model.pb'), 'w'):
      pass
  os.makedirs(os.path.join(directory, 'assets.extra'), exist_ok=True)
  with open(os.path.join(directory, 'assets.extra', 'model_info.json'), 'w') as info:
    json.dump({'variant': variant}, info)
  return directory


def test_summary_of_an_interrupted_run_names_the_step_and_what_is_served(
  tmp_path, capsys, tiny_saved_model
):
  _metadata_store(str(tmp_path), [('ImageExampleGen', 'COMPLETE'), ('Trainer_layer', 'RUNNING')])
  served = _served_version(str(tmp_path), 3, 'keras_layer', tiny_saved_model)
  _served_version(str(tmp_path), 2, 'batch', tiny_saved_model)
  # The newest directory does not load, so TF Serving keeps serving version 3.
  broken = _served_version(str(tmp_path), 4, 'layer', None)
  assert cli.main(['summary', '--output-root', str(tmp_path)]) == 1
  out = capsys.readouterr().out
  assert re.search(r'^  Trainer_layer +interrupted ', out, re.MULTILINE)
  assert '✗ The run was interrupted in Trainer_layer' in out
  assert f'{broken} is not production: TF Serving cannot load it' in out
  assert f'Served: version 3 (keras_layer), {served}' in out

  # The same store while a run holds the output root: still running, not interrupted.
  with output_root_lock.exclusive_output_root(str(tmp_path)):
    assert cli.main(['summary', '--output-root', str(tmp_path)]) == 0
  out = capsys.readouterr().out
  assert re.search(r'^  Trainer_layer +running ', out, re.MULTILINE)
  assert 'Still running: Trainer_layer' in out
  assert 'was interrupted' not in out


def test_summary_of_a_failed_run_exits_1_and_of_a_finished_one_0(tmp_path, capsys):
  failed, finished = tmp_path / 'failed', tmp_path / 'finished'
  for directory in (failed, finished):
    directory.mkdir()
  _metadata_store(str(failed), [('ImageExampleGen', 'COMPLETE'), ('Transform', 'FAILED')])
  _metadata_store(str(finished), [('ImageExampleGen', 'COMPLETE'), ('Transform', 'CACHED')])
  assert cli.main(['summary', '--output-root', str(failed)]) == 1
  assert f'✗ The run failed in Transform: its log in {failed / "logs"} says why.' in (
    capsys.readouterr().out
  )
  assert cli.main(['summary', '--output-root', str(finished)]) == 0
  out = capsys.readouterr().out
  assert '✗' not in out
  serving = finished / 'serving' / 'fashion_mnist'
  assert f'Served: nothing, {serving} holds no version TF Serving can load' in out


def test_the_output_root_environment_variable_sets_every_commands_default(
  tmp_path, capsys, monkeypatch
):
  monkeypatch.setenv('FMNIST_OUTPUT_ROOT', str(tmp_path))
  _metadata_store(str(tmp_path), [('ImageExampleGen', 'COMPLETE')])
  assert cli.main(['summary']) == 0
  assert 'ImageExampleGen ran' in capsys.readouterr().out
  args = cli._parser().parse_args(['run'])
  assert cli.config_from_args(args).output_root == str(tmp_path)
  for command in ('summary', 'report', 'tensorboard'):
    assert cli._parser().parse_args([command]).output_root == str(tmp_path)
  serving_root = cli._parser().parse_args(['serving-config']).serving_root
  assert serving_root == str(tmp_path / 'serving')
  monkeypatch.delenv('FMNIST_OUTPUT_ROOT')
  assert cli.config_from_args(cli._parser().parse_args(['run'])).output_root == os.path.abspath(
    'outputs'
  )
  assert cli._parser().parse_args(['summary']).output_root == 'outputs'
