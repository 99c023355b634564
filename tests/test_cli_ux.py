"""What a newcomer meets first: a fast, documented --help, live or plain progress, TensorBoard
over the Trainers, and one-line errors from `download`."""

import argparse
import functools
import gzip
import hashlib
import http.server
import io
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from rich.console import Console

from pipeline import cli
from pipeline import data
from pipeline import progress
from pipeline import run_summary
from pipeline import tensorboard

# A script that asks every command for --help in a fresh interpreter and reports the exit codes
# and which heavy libraries got imported.
_HELP_EVERYWHERE = """
import json, sys, contextlib, io
from pipeline import cli
commands = sorted(cli._parser()._subparsers._group_actions[0].choices)
codes = {}
for argv in [['--help']] + [[command, '--help'] for command in commands]:
  with contextlib.redirect_stdout(io.StringIO()):
    try:
      cli.main(argv)
    except SystemExit as exit:
      codes[' '.join(argv)] = exit.code
heavy = sorted({name.split('.')[0] for name in sys.modules} & {'tensorflow', 'tfx', 'apache_beam',
  'tensorflow_model_analysis', 'tensorflow_transform', 'tf_keras', 'keras'})
print(json.dumps({'commands': commands, 'codes': codes, 'heavy': heavy}))
"""


def test_help_of_every_command_exits_0_without_importing_tensorflow_tfx_or_beam():
  found = json.loads(
    subprocess.run(
      [sys.executable, '-c', _HELP_EVERYWHERE], check=True, capture_output=True, text=True
    ).stdout
  )
  assert {'run', 'download', 'predict', 'tensorboard', 'compile'} <= set(found['commands'])
  assert found['codes'] == {
    ' '.join(argv): 0 for argv in [['--help']] + [[c, '--help'] for c in found['commands']]
  }
  assert found['heavy'] == []


def _subparsers(parser):
  (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
  return action.choices


def test_every_flag_of_every_command_has_help_with_its_default():
  undocumented = []
  for name, parser in _subparsers(cli._parser()).items():
    required = {
      action
      for group in parser._mutually_exclusive_groups
      if group.required
      for action in group._group_actions
    }
    for action in parser._actions:
      if isinstance(action, argparse._HelpAction) or not action.option_strings:
        continue
      text = parser._get_formatter()._expand_help(action) if action.help else ''
      # Switches say what they do, a required flag or one of a required choice has no default;
      # the rest name it.
      needs_default = action.nargs != 0 and action not in required and not action.required
      if not text or (needs_default and 'default' not in text):
        undocumented.append(f'{name} {action.option_strings[0]}: {text!r}')
  assert not undocumented


# --- progress ------------------------------------------------------------------------------

_TRAINER_FILE = os.path.join(os.sep, 'repo', 'trainer', 'loop.py')
_RUNNER_FILE = os.path.join(os.sep, 'tfx', 'orchestration', 'launcher.py')


def _record(created, message, pathname=_RUNNER_FILE):
  record = logging.LogRecord('absl', logging.INFO, pathname, 1, message, None, None)
  record.created = created
  return record


# A run as the runner and the trainer log it, with the times the records were created.
RECORDED = [
  _record(100.0, 'Component ImageExampleGen is running.'),
  _record(112.5, 'Component ImageExampleGen is finished.'),
  _record(113.0, 'Component Transform is running.'),
  _record(113.1, 'A cached execution 7 is used.'),
  _record(113.2, 'Component Transform is finished.'),
  _record(120.0, 'Component Trainer_batch is running.'),
  _record(121.0, 'Initialized nothing from the first training batch', _TRAINER_FILE),
  _record(130.0, 'step 100/1000  loss 0.9000  accuracy 0.7000  3200 images/s', _TRAINER_FILE),
  _record(140.0, 'step 200/1000  loss 0.6000  accuracy 0.8000  3200 images/s', _TRAINER_FILE),
]


def test_plain_progress_is_one_line_per_event_with_the_trainers_eta():
  stream = io.StringIO()
  handler = progress.ProgressHandler(progress.display_for(Console(file=stream)))
  for record in RECORDED:
    handler.emit(record)
  assert stream.getvalue().splitlines() == [
    '▶ ImageExampleGen ...',
    '✓ ImageExampleGen (12.5 s)',
    '▶ Transform ...',
    '✓ Transform (cached)',
    '▶ Trainer_batch ...',
    '    Initialized nothing from the first training batch',
    '    step 100/1000  loss 0.9000  3200 images/s  ETA …',
    # 100 steps in 10 s, 800 to go.
    '    step 200/1000  loss 0.6000  3200 images/s  ETA 1m20s',
  ]
  assert handler.current == 'Trainer_batch'


def test_on_a_terminal_running_components_are_live_lines_and_finished_ones_stay():
  stream = io.StringIO()
  console = Console(file=stream, force_terminal=True, width=120, color_system=None)
  display = progress.display_for(console)
  assert isinstance(display, progress.LiveLines)
  handler = progress.ProgressHandler(display)
  for record in RECORDED:
    handler.emit(record)
  display._progress.refresh()
  screen = stream.getvalue()
  display.close()
  assert '✓ ImageExampleGen (12.5 s)' in screen and '✓ Transform (cached)' in screen
  assert 'Trainer_batch' in screen
  assert 'step 200/1000  loss 0.6000  3200 images/s  ETA 1m20s' in screen
  # The trainer's other messages stay in the log file, off the live display.
  assert 'Initialized nothing' not in screen
  # Live lines redraw with cursor controls; plain lines never do.
  assert '\x1b[' in screen


# --- TensorBoard ---------------------------------------------------------------------------


def _fabricated_run(output_root):
  """LocalDagRunner's layout: two executions of Trainer_batch, one of Trainer_none."""
  pipeline_root = os.path.join(output_root, 'pipeline')
  for component, execution in (('Trainer_batch', 4), ('Trainer_batch', 12), ('Trainer_none', 5)):
    for phase in ('train', 'eval'):
      os.makedirs(os.path.join(pipeline_root, component, 'model_run', str(execution), phase))
  os.makedirs(os.path.join(pipeline_root, 'Evaluator_batch', 'evaluation', '13'))
  os.makedirs(os.path.join(pipeline_root, 'Trainer_none', 'model', '5'))
  return pipeline_root


def test_tensorboard_shows_each_variants_newest_trainer_run_under_its_name(tmp_path, capsys):
  pipeline_root = _fabricated_run(str(tmp_path))
  runs = os.path.join(pipeline_root, '{}', 'model_run', '{}')
  assert tensorboard.logdir_spec(tensorboard.trainer_logdirs(str(tmp_path))) == (
    f'batch:{runs.format("Trainer_batch", 12)},none:{runs.format("Trainer_none", 5)}'
  )
  assert cli.main(['tensorboard', '--output-root', str(tmp_path), '--print-only']) == 0
  printed = capsys.readouterr().out
  assert f'--logdir_spec batch:{runs.format("Trainer_batch", 12)},none:' in printed
  assert printed.split()[0].endswith('tensorboard') and '--port 6006' in printed
  # TensorBoard's own serving flags go through under its names.
  assert (
    cli.main(['tensorboard', '--output-root', str(tmp_path), '--print-only', '--bind_all']) == 0
  )
  assert capsys.readouterr().out.rstrip().endswith('--port 6006 --bind_all')
  argv = ['tensorboard', '--output-root', str(tmp_path), '--print-only', '--host', '0.0.0.0']
  assert cli.main(argv) == 0
  assert capsys.readouterr().out.rstrip().endswith('--port 6006 --host 0.0.0.0')
  with pytest.raises(SystemExit):
    cli.main([*argv, '--bind-all'])
  assert (
    'argument --bind_all/--bind-all: not allowed with argument --host' in capsys.readouterr().err
  )


def _listening(port):
  with socket.socket() as sock:
    return sock.connect_ex(('127.0.0.1', port)) == 0


def test_a_sigterm_to_the_tensorboard_command_stops_tensorboard_and_frees_its_port(tmp_path):
  """The command becomes TensorBoard: the signal a supervisor sends it leaves nothing behind."""
  _fabricated_run(str(tmp_path))
  port = _unused_port()
  with open(tmp_path / 'stderr', 'w') as stderr:
    process = subprocess.Popen(
      [sys.executable, '-m', 'pipeline.cli', 'tensorboard', '--output-root', str(tmp_path)]
      + ['--port', str(port), '--host', '127.0.0.1'],
      stdout=subprocess.PIPE,
      stderr=stderr,
      text=True,
      start_new_session=True,  # its own process group: the cleanup below reaches any child
    )
  try:
    assert process.stdout.readline().rstrip().endswith(f'--port {port} --host 127.0.0.1')
    deadline = time.monotonic() + 180
    while not _listening(port):
      assert process.poll() is None, (tmp_path / 'stderr').read_text()
      assert time.monotonic() < deadline, 'TensorBoard did not listen within 180 s'
      time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    assert not _listening(port)
  finally:
    try:
      os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
      pass  # all gone, as it should be
    process.wait()
    process.stdout.close()


def test_tensorboard_without_trainer_runs_says_so_in_one_line(tmp_path, capsys):
  assert cli.main(['tensorboard', '--output-root', str(tmp_path)]) == 1
  err = capsys.readouterr().err
  assert len(err.splitlines()) == 1 and str(tmp_path) in err and 'run the pipeline' in err


def test_summary_of_a_corrupt_metadata_file_is_one_line_naming_it(tmp_path, capsys):
  metadata = tmp_path / 'metadata.sqlite'
  metadata.write_bytes(b'not a database')
  assert cli.main(['summary', '--output-root', str(tmp_path)]) == 1
  err = capsys.readouterr().err
  assert len(err.splitlines()) == 1 and 'Traceback' not in err
  assert f'{metadata} is not a readable ML Metadata store (file is not a database)' in err
  assert metadata.read_bytes() == b'not a database'  # left as it was
  # The traceback goes to a log of this failure alone, in the output root's logs.
  log = re.search(r' \(traceback: (\S+)\)$', err.strip()).group(1)
  assert os.path.dirname(log) == str(tmp_path / 'logs')
  assert re.fullmatch(rf'error-\d{{8}}-\d{{6}}-{os.getpid()}-\w+\.log', os.path.basename(log))
  with open(log) as traceback_file:
    assert traceback_file.read().startswith('Traceback')


def test_a_config_error_is_one_line_without_a_traceback_log(tmp_path, capsys):
  """A mistake the line explains fully (here a gs:// output root for a local run) gets no log."""
  assert cli.main(['run', '--output-root', 'gs://b/o', '--data-dir', str(tmp_path)]) == 2
  err = capsys.readouterr().err
  assert len(err.splitlines()) == 1 and 'traceback' not in err
  assert os.listdir(tmp_path) == []


# --- stdout for results, stderr for progress ------------------------------------------------


def test_run_prints_progress_on_stderr_and_only_results_on_stdout(tmp_path, capsys, monkeypatch):
  from pipeline import local_runner  # pylint: disable=import-outside-toplevel

  data_dir = tmp_path / 'data'
  data_dir.mkdir()
  for name in data.IDX_SHA256:  # `run` only checks that they are there before it starts
    (data_dir / name).write_bytes(b'')

  def fake_run(config, dataset):
    for message in (
      'Component ImageExampleGen is running.',
      'Component ImageExampleGen is finished.',
    ):
      logging.getLogger('absl').info(message)
    return run_summary.RunSummary(
      run_id='run-7', components=[run_summary.ComponentRun('ImageExampleGen', 'COMPLETE', 1.5)]
    )

  monkeypatch.setattr(local_runner, 'run', fake_run)
  output_root = tmp_path / 'out'
  assert cli.main(['run', '--data-dir', str(data_dir), '--output-root', str(output_root)]) == 0
  captured = capsys.readouterr()
  assert '▶ ImageExampleGen ...' in captured.err and '✓ ImageExampleGen' in captured.err
  assert 'ImageExampleGen ...' not in captured.out and '✓' not in captured.out
  assert captured.out.startswith('Run run-7:\n  ImageExampleGen COMPLETE     1.5 s\n')
  (log,) = os.listdir(output_root / 'logs')
  assert f'Full log: {output_root / "logs" / log}' in captured.out
  assert f'fmnist-pipeline tensorboard --output-root {output_root}' in captured.out


def test_version_names_the_package_version_and_the_commit():
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  with open(os.path.join(root, 'pyproject.toml')) as project:
    version = re.search(r'^version = "(.+)"', project.read(), re.MULTILINE).group(1)
  commit = subprocess.run(
    ['git', '-C', root, 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True, check=True
  ).stdout.strip()
  printed = subprocess.run(
    [sys.executable, '-m', 'pipeline.cli', '--version'], capture_output=True, text=True, check=True
  ).stdout
  assert re.fullmatch(
    rf'fmnist-pipeline {re.escape(version)} \(commit {commit}(-dirty)?\)\n', printed
  )


# --- download errors -----------------------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
  def log_message(self, *args):  # the server's access log would mix into the CLI's stderr
    del args


@pytest.fixture()
def mirror(tmp_path):
  """A local HTTP mirror serving tmp_path/mirror; yields (directory, base URL)."""
  directory = tmp_path / 'mirror'
  directory.mkdir()
  handler = functools.partial(_QuietHandler, directory=str(directory))
  server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  yield directory, f'http://127.0.0.1:{server.server_address[1]}/'
  server.shutdown()
  server.server_close()


def _download(capsys, data_dir, base_url):
  code = cli.main(['download', '--data-dir', str(data_dir), '--base-url', base_url])
  return code, capsys.readouterr().err


def _unused_port():
  """A port nothing listens on (bound, then released)."""
  with socket.socket() as sock:
    sock.bind(('127.0.0.1', 0))
    return sock.getsockname()[1]


def test_download_failures_are_one_line_naming_the_url_and_leave_no_file(
  tmp_path, capsys, mirror, traceback_log
):
  directory, base_url = mirror
  data_dir = tmp_path / 'data'
  # Nothing listens on the port: the network failure names the URL and the way out.
  code, err = _download(capsys, data_dir, f'http://127.0.0.1:{_unused_port()}/')
  assert code == 1 and len(err.splitlines()) == 1 and 'Traceback' not in err
  assert 'train-images-idx3-ubyte.gz: download failed' in err
  assert 'dataset-fashion-mnist' in err
  # The mirror has no such file: HTTP 404.
  code, err = _download(capsys, data_dir, base_url)
  assert code == 1 and len(err.splitlines()) == 1 and 'download failed (HTTP 404 ' in err
  assert '--base-url' in err
  # The mirror serves other content: the checksum names the file; its traceback is in the log.
  for name in data.IDX_SHA256:
    (directory / name).write_bytes(gzip.compress(b'not fashion-mnist'))
  code, err = _download(capsys, data_dir, base_url)
  actual = hashlib.sha256(b'not fashion-mnist').hexdigest()
  assert code == 1 and len(err.splitlines()) == 1
  assert f'{base_url}train-images-idx3-ubyte.gz: content SHA-256 {actual}' in err
  assert traceback_log(err).read_text().startswith('Traceback')
  assert os.listdir(data_dir) == []
  # Without its final slash the base URL still names the mirror's directory.
  code, err = _download(capsys, data_dir, base_url.rstrip('/'))
  assert f'{base_url}train-images-idx3-ubyte.gz: content SHA-256 {actual}' in err


def test_download_into_a_directory_it_cannot_create_is_one_line(tmp_path, capsys, traceback_log):
  a_file = tmp_path / 'a-file'
  a_file.write_text('')
  code, err = _download(capsys, a_file / 'data', 'https://example.invalid/')
  assert code == 1 and len(err.splitlines()) == 1 and 'Traceback' not in err
  assert err.startswith(f'error: {a_file / "data"}: cannot create the directory')
  assert traceback_log(err).read_text().startswith('Traceback')


def test_download_refuses_a_base_url_that_is_no_url_before_fetching(tmp_path, capsys):
  with pytest.raises(SystemExit) as exit_:
    cli.main(['download', '--data-dir', str(tmp_path / 'data'), '--base-url', 'notaurl'])
  err = capsys.readouterr().err
  assert exit_.value.code == 2 and err.startswith('usage: fmnist-pipeline download')
  assert err.splitlines()[-1] == (
    "fmnist-pipeline download: error: argument --base-url: must be an http://, https:// or "
    "file:// URL, got 'notaurl'"
  )
  assert not (tmp_path / 'data').exists()


# --- report and summary -------------------------------------------------------------------------

_NOTHING_RECORDED = """
import json, sys, contextlib, io, os
from pipeline import cli
missing, empty = sys.argv[1], sys.argv[2]
answers = {}
for command in ('summary', 'report'):
  for root in (missing, empty):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
      code = cli.main([command, '--output-root', root])
    answers[f'{command} {os.path.basename(root)}'] = [code, err.getvalue()]
heavy = sorted({name.split('.')[0] for name in sys.modules} & {'tensorflow', 'tfx', 'apache_beam',
  'ml_metadata', 'matplotlib'})
print(json.dumps({'answers': answers, 'heavy': heavy}))
"""


def test_report_and_summary_answer_a_missing_or_empty_output_root_without_tensorflow(tmp_path):
  missing, empty = tmp_path / 'missing', tmp_path / 'empty'
  empty.mkdir()
  found = json.loads(
    subprocess.run(
      [sys.executable, '-c', _NOTHING_RECORDED, str(missing), str(empty)],
      check=True,
      capture_output=True,
      text=True,
    ).stdout
  )
  assert found['heavy'] == []
  for command, what in (('summary', 'run'), ('report', 'variant comparison')):
    assert found['answers'][f'{command} missing'] == [
      1,
      f'no {what} recorded under {missing} (no such directory); pass the --output-root of a run '
      'or set $FMNIST_OUTPUT_ROOT\n',
    ]
    code, err = found['answers'][f'{command} empty']
    assert code == 1 and err.startswith(f'no {what} recorded under {empty};')


def test_report_markdown_is_rendered_on_a_terminal_and_kept_as_text_in_a_pipe():
  from pipeline.run_summary import Markdown  # pylint: disable=import-outside-toplevel
  from pipeline.run_summary import print_lines  # pylint: disable=import-outside-toplevel

  lines = [
    'Comparison report: /r',
    Markdown(
      '**layer: the only blessed variant**\n\n| variant | verdict |\n| --- | --- |\n'
      '| layer | selected |'
    ),
  ]
  terminal = io.StringIO()
  print_lines(lines, Console(file=terminal, force_terminal=True, width=100, color_system=None))
  screen = terminal.getvalue()
  assert 'layer: the only blessed variant' in screen and '**' not in screen
  assert '| --- |' not in screen and 'selected' in screen
  piped = io.StringIO()
  print_lines(lines, Console(file=piped))
  assert piped.getvalue() == '\n'.join(lines) + '\n'
