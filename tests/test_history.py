"""`fmnist-pipeline history`: one line per version under a serving root, the served one marked;
versions without records show what model_info.json has; a bad root is one line, exit 1."""

import json
import os
import shutil

import pytest

from components.variant_selection import model_card
from pipeline import cli
from pipeline import history
from serving import server_config

MODEL_NAME = 'fashion_mnist'
# An older push (no card, no record), a normal one, and a newest one TF Serving cannot load.
OLD, GOOD, BROKEN = 1700000100, 1700000200, 1700000300


def _write_json(path, value):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as out:
    json.dump(value, out)


def _version(model_dir, number, tiny_saved_model, model_info, record=None):
  path = os.path.join(model_dir, str(number))
  shutil.copytree(tiny_saved_model, path)
  _write_json(os.path.join(path, 'assets.extra', 'model_info.json'), model_info)
  if record is not None:
    _write_json(os.path.join(path, model_card.PUSH_RECORD_FILE), record)
    with open(os.path.join(path, model_card.MARKDOWN_FILE), 'w') as card:
      card.write('# Model card\n')
  return path


@pytest.fixture
def serving_root(tmp_path, tiny_saved_model):
  root = tmp_path / 'serving'
  model_dir = str(root / MODEL_NAME)
  _version(model_dir, OLD, tiny_saved_model, {'variant': 'batch', 'parameters': 10})
  _version(
    model_dir,
    GOOD,
    tiny_saved_model,
    {'variant': 'layer', 'spans': [3, 4]},
    {'test_accuracy': 0.91234, 'replaced': {'version': OLD, 'path': 'x'}, 'variant': 'layer'},
  )
  broken = _version(
    model_dir,
    BROKEN,
    tiny_saved_model,
    {'variant': 'weight'},
    {'test_accuracy': 0.93, 'replaced': {'version': GOOD, 'path': 'y'}},
  )
  shutil.rmtree(os.path.join(broken, 'variables'))
  return root


def _rows(out):
  """The version lines of the output, by version number, as their cells."""
  rows = {}
  for line in out.splitlines():
    cells = line.split()
    number = cells[1] if cells and cells[0] == history.SERVED_MARK else (cells or [''])[0]
    if number.isdigit():
      rows[int(number)] = line
  return rows


def test_one_line_per_version_newest_first_the_served_one_marked(serving_root, capsys):
  assert cli.main(['history', '--serving-root', str(serving_root)]) == 0
  out = capsys.readouterr().out
  lines = out.splitlines()
  model_dir = serving_root / MODEL_NAME
  assert lines[0] == (
    f'3 version(s) under {model_dir}, newest first ({history.SERVED_MARK}: served by TF '
    'Serving now):'
  )
  assert lines[1].split() == [
    'version',
    'pushed',
    '(UTC)',
    'variant',
    'spans',
    'test',
    'acc.',
    'replaced',
    'card',
  ]
  assert [line.lstrip('* ').split()[0] for line in lines[2:5]] == [str(BROKEN), str(GOOD), str(OLD)]
  rows = _rows(out)
  # The newest cannot load: TF Serving keeps serving the one before it, marked.
  assert rows[GOOD].startswith(f'{history.SERVED_MARK}  {GOOD}')
  assert not rows[BROKEN].startswith(history.SERVED_MARK)
  assert not rows[OLD].startswith(history.SERVED_MARK)
  card = os.path.join(str(model_dir), str(GOOD), 'assets.extra', 'model_card.md')
  assert rows[GOOD].split()[2:] == [
    '2023-11-14',
    '22:16:40',
    'layer',
    '3,4',
    '0.9123',
    str(OLD),
    card,
  ]
  assert '(cannot load: ' in rows[BROKEN] and rows[BROKEN].split()[3:6] == ['weight', '–', '0.9300']
  # The older push has no record: model_info.json's variant, – elsewhere.
  assert rows[OLD].split()[1:] == ['2023-11-14', '22:15:00', 'batch', '–', '–', '–', '–']
  assert lines[-1] == f'Served: version {GOOD}: the newest version'
  assert len(lines) == 6


def test_a_pinned_version_is_the_served_one_and_shows_its_label(serving_root, capsys):
  server_config.write(str(serving_root), MODEL_NAME, cpu_cores=1, pin=OLD)
  assert cli.main(['history', '--serving-root', str(serving_root)]) == 0
  out = capsys.readouterr().out
  rows = _rows(out)
  assert rows[OLD].startswith(f'{history.SERVED_MARK}  {OLD}') and rows[OLD].endswith('[stable]')
  assert not rows[GOOD].startswith(history.SERVED_MARK)
  assert out.splitlines()[-1].startswith(f'Served: version {OLD}: the `stable` version in ')


def test_the_output_roots_serving_directory_is_the_default(serving_root, capsys):
  output_root = serving_root.parent
  assert cli.main(['history', '--output-root', str(output_root)]) == 0
  assert f'3 version(s) under {serving_root / MODEL_NAME}' in capsys.readouterr().out


def test_a_model_directory_given_as_the_serving_root_is_read_as_it_is(serving_root, capsys):
  assert cli.main(['history', '--serving-root', str(serving_root / MODEL_NAME)]) == 0
  assert f'3 version(s) under {serving_root / MODEL_NAME},' in capsys.readouterr().out


@pytest.mark.parametrize('make', ['missing', 'no_model', 'empty_model'])
def test_a_bad_serving_root_is_one_line_and_exit_1(tmp_path, capsys, make):
  root = tmp_path / 'serving'
  if make != 'missing':
    root.mkdir()
  if make == 'empty_model':
    (root / MODEL_NAME).mkdir()
  assert cli.main(['history', '--serving-root', str(root)]) == 1
  captured = capsys.readouterr()
  assert captured.out == ''
  (line,) = captured.err.splitlines()
  assert line.startswith('error: ') and str(root) in line


def test_a_version_number_that_is_no_timestamp_has_no_push_time():
  assert history.pushed_at(3) is None
  assert history.pushed_at(1700000000, now=1700000000.0) == '2023-11-14 22:13:20'
  assert history.pushed_at(1800000000, now=1700000000.0) is None
