"""Locating, downloading and verifying the data; CLI errors a newcomer can act on."""

import gzip
import hashlib
import json
import os
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
  assert cli.main(['run', '--data-dir', str(tmp_path), '--output-root', str(tmp_path / 'out')]) == 2
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
