"""The model card: every field checked against the report.json, model_info.json and dataset.json
it is rendered from; the HTML page escapes what the data names; and through the selector's
executor and TFX's Pusher, every pushed version carries its card and push record."""

import datetime
import html.parser
import json
import os
import re

import pytest
from scipy.stats import binomtest

from components.variant_selection import model_card
from components.variant_selection import production
from components.variant_selection.selection import ACCURACY
from components.variant_selection.selection import CALIBRATION_ERROR
from components.variant_selection.selection import LOSS

CLASSES = ['cat <b>', 'dog | puppy', 'bird']
NOW = datetime.datetime(2026, 12, 7, 21, 30, 5, tzinfo=datetime.timezone.utc)
# Test split: rows are the true classes.
CONFUSION = [[45, 3, 2], [4, 40, 6], [1, 2, 47]]
TEST_EXAMPLES = sum(map(sum, CONFUSION))
TEST_ACCURACY = sum(CONFUSION[i][i] for i in range(3)) / TEST_EXAMPLES


def _report(production_model=True):
  """A report.json as report.write makes it: two variants, `layer` selected and pushed."""
  layer = {
    'variant': 'layer',
    'eval': {ACCURACY: 0.91234, LOSS: 0.27182, CALIBRATION_ERROR: 0.01414},
    'eval_intervals': {
      ACCURACY: [0.90011, 0.92456],
      LOSS: [0.25, 0.29],
      CALIBRATION_ERROR: [0.01, 0.02],
    },
    'per_class_accuracy': {'cat <b>': 0.95, 'dog | puppy': 0.85, 'bird': 0.93},
    'per_class_accuracy_intervals': {'cat <b>': [0.93, 0.97], 'dog | puppy': [0.81, 0.89]},
    'against_best': None,
    'against_production': {
      'accuracy_difference': 0.031,
      'difference_interval': [0.012, 0.05],
      'mcnemar_p_value': 0.00123,
      'only_this_correct': 41,
      'only_other_correct': 10,
      'examples': 1000,
    }
    if production_model
    else None,
    'holm_adjusted_p_against_production': 0.00246 if production_model else None,
    'within_noise_of_best': True,
    'serving_latency_ms': {},
    'parameters': 12345,
    'train_seconds': 60.0,
    'images_per_second': 1000.0,
    'blessed': True,
    'verdict': 'selected',
  }
  batch = dict(layer, variant='batch', verdict='worse', eval={ACCURACY: 0.8})
  return {
    'selection_metric': ACCURACY,
    'significance_level': 0.05,
    'replace_production': 'significantly_better',
    'selected': 'layer',
    'pushed': True,
    'decision': 'Pushed layer: it is significantly better than production.',
    'why': 'layer: the most accurate',
    'already_in_production': False,
    'production': {
      'path': '/serving/fashion_mnist/1700000100',
      'reason': 'the newest version',
      'skipped': ['/serving/fashion_mnist/1700000200 is not production: TF Serving cannot load it'],
      'eval': {ACCURACY: 0.88134},
      'serving_latency_ms': {},
    }
    if production_model
    else None,
    'power': {'eval_examples': 1000},
    'variants': [batch, layer],
    'test': {
      'variant': 'layer',
      'examples': TEST_EXAMPLES,
      'metrics': {ACCURACY: TEST_ACCURACY, LOSS: 0.3, CALIBRATION_ERROR: 0.02},
      'per_class_accuracy': {
        name: CONFUSION[i][i] / sum(CONFUSION[i]) for i, name in enumerate(CLASSES)
      },
      'confusion_matrix': CONFUSION,
    },
    'seeds': None,
  }


MODEL_INFO = {
  'variant': 'layer',
  'training': {'epochs': 3, 'batch_size': 64, 'learning_rate': 0.001, 'seed': 42},
  'parameters': 12345,
  'dataset': {'classes': CLASSES, 'height': 32, 'width': 32, 'channels': 3},
}
DATASET = {
  'spec': {'classes': CLASSES, 'height': 32, 'width': 32, 'channels': 3},
  'data': '/data/pets',
  'layout': 'folders',
  'counts': {
    'train': {'cat <b>': 400, 'dog | puppy': 410, 'bird': 390},
    'eval': {'cat <b>': 50, 'dog | puppy': 50, 'bird': 50},
    'test': {'cat <b>': 50, 'dog | puppy': 50, 'bird': 50},
  },
  'skipped': [],
  'skipped_count': 2,
}


def _write_json(path, value):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as out:
    json.dump(value, out)


def _card(tmp_path, report=None, model_info=MODEL_INFO, dataset=DATASET, properties=None):
  """Writes the inputs where the selector finds them and the card; returns (paths, report)."""
  report = _report() if report is None else report
  report_dir, model_dir, examples = (str(tmp_path / name) for name in ('report', 'model', 'ex'))
  _write_json(os.path.join(report_dir, model_card.REPORT_JSON), report)
  _write_json(os.path.join(model_dir, model_card.MODEL_INFO_FILE), model_info)
  os.makedirs(examples)
  if dataset is not None:
    _write_json(os.path.join(examples, model_card.DATASET_RECORD), dataset)
  paths = model_card.write(
    report_dir, model_dir, examples, properties or {'code_fingerprint': 'f1ngerpr1nt'}, NOW
  )
  return report_dir, model_dir, paths


def _read(path):
  with open(path) as file:
    return file.read()


def _unescape(cell):
  return cell.replace('\\|', '|').replace('&lt;', '<').replace('&gt;', '>').replace('\\\\', '\\')


def _markdown_table_list(text):
  """Every Markdown table as (header, rows of cells): the header's cells joined with ' | ', the
  separator left out."""
  tables, current, header = [], None, None
  for line in text.splitlines() + ['']:
    if line.startswith('|'):
      cells = [_unescape(c.strip()) for c in re.split(r'(?<!\\)\|', line.strip())[1:-1]]
      if current is None:
        current, header = [], ' | '.join(cells)
      elif not set(''.join(cells)) <= set('-: '):
        current.append(cells)
    elif current is not None:
      tables.append((header, current))
      current = None
  return tables


def _markdown_tables(text):
  """The tables by header (the first of those with the same header)."""
  tables = {}
  for header, rows in _markdown_table_list(text):
    tables.setdefault(header, rows)
  return tables


def _facts(text):
  """Every two-column `| name | value |` table row, as a dict."""
  return {
    row[0]: row[1] for header, rows in _markdown_table_list(text) if header == ' | ' for row in rows
  }


class _Tables(html.parser.HTMLParser):
  """The HTML page's tables as rows of cell texts, and every start tag."""

  def __init__(self):
    super().__init__(convert_charrefs=True)
    self.tables, self.tags, self._cell = [], [], None

  def handle_starttag(self, tag, attrs):
    self.tags.append(tag)
    if tag == 'table':
      self.tables.append([])
    elif tag == 'tr':
      self.tables[-1].append([])
    elif tag in ('td', 'th'):
      self._cell = ''

  def handle_endtag(self, tag):
    if tag in ('td', 'th'):
      self.tables[-1][-1].append(self._cell.strip())
      self._cell = None

  def handle_data(self, data):
    if self._cell is not None:
      self._cell += data


def _html_tables(text):
  parser = _Tables()
  parser.feed(text)
  return parser


def _interval(bounds):
  return f'[{bounds[0]:.4f}, {bounds[1]:.4f}]'


def _wilson(successes, trials):
  found = binomtest(successes, trials).proportion_ci(confidence_level=0.95, method='wilson')
  return (found.low, found.high)


def test_the_card_goes_into_the_model_and_beside_the_report(tmp_path):
  report_dir, model_dir, paths = _card(tmp_path)
  assert sorted(paths) == sorted(
    [
      os.path.join(model_dir, 'assets.extra', 'model_card.md'),
      os.path.join(model_dir, 'assets.extra', 'model_card.html'),
      os.path.join(model_dir, 'assets.extra', 'push_record.json'),
      os.path.join(report_dir, 'model_card.md'),
      os.path.join(report_dir, 'model_card.html'),
    ]
  )
  for name in ('model_card.md', 'model_card.html'):
    assert _read(os.path.join(report_dir, name)) == _read(
      os.path.join(model_dir, 'assets.extra', name)
    )


def test_every_field_of_the_markdown_card_is_the_reports(tmp_path):
  _, model_dir, _ = _card(tmp_path)
  report = _report()
  text = _read(os.path.join(model_dir, model_card.MARKDOWN_FILE))
  facts, tables = _facts(text), _markdown_tables(text)
  assert text.startswith('# Model card: layer\n')
  assert 'Generated 2026-12-07 21:30:05 UTC' in text
  assert 'selected and blessed: Pusher ships this model' in text
  assert f'**Why this model:** {report["why"]}' in text

  # Dataset: dataset.json's facts, and its counts per class and split.
  assert facts['data'] == DATASET['data']
  assert facts['layout'] == DATASET['layout']
  assert facts['classes'] == '3'
  assert facts['image size'] == '32×32×3 (RGB)'
  assert facts['skipped bad images'] == '2'
  assert facts['read from'] == 'dataset.json'
  assert facts['spans'].startswith('not recorded')
  counts = tables['# | class | train | eval | test']
  assert [row[1] for row in counts[:-1]] == CLASSES
  for index, name in enumerate(CLASSES):
    assert counts[index] == [
      str(index),
      name,
      *(f'{DATASET["counts"][split][name]:,}' for split in ('train', 'eval', 'test')),
    ]
  assert counts[-1][2:] == [
    f'{sum(DATASET["counts"][split].values()):,}' for split in ('train', 'eval', 'test')
  ]

  # Transform and training options.
  assert facts['decoded and resized to'] == '32×32×3 (RGB)'
  assert facts['pixel scaling'] == 'not recorded in this model'
  assert facts['variant'] == 'layer'
  assert facts['parameters'] == '12,345'
  for name, value in MODEL_INFO['training'].items():
    assert facts[name] == json.dumps(value)

  # Eval metrics with TFMA's intervals, the selected variant's row of the report.
  (layer,) = [row for row in report['variants'] if row['variant'] == 'layer']
  eval_rows, test_rows = _metric_tables(text)
  names = {'accuracy': ACCURACY, 'loss (cross-entropy)': LOSS, 'ECE': CALIBRATION_ERROR}
  for name, value, interval in eval_rows:
    assert value == f'{layer["eval"][names[name]]:.4f}'
    assert interval == _interval(layer['eval_intervals'][names[name]])
  assert len(eval_rows) == len(test_rows) == 3
  # Test split: the report's metrics, the accuracy's Wilson interval from its confusion matrix.
  assert f'Held-out test split ({TEST_EXAMPLES:,} examples' in text
  for name, value, interval in test_rows:
    assert value == f'{report["test"]["metrics"][names[name]]:.4f}'
    expected = _interval(_wilson(int(TEST_ACCURACY * TEST_EXAMPLES + 0.5), TEST_EXAMPLES))
    assert interval == (expected if name == 'accuracy' else '–')

  # Per class: eval accuracy and TFMA interval from the report, test accuracy and Wilson interval.
  per_class = tables['# | class | eval | eval 95% CI | test | test 95% CI | test examples']
  assert [row[1] for row in per_class] == CLASSES
  for index, (_, name, eval_value, eval_interval, test, test_interval, examples) in enumerate(
    per_class
  ):
    assert eval_value == f'{layer["per_class_accuracy"][name]:.4f}'
    bounds = layer['per_class_accuracy_intervals'].get(name)
    assert eval_interval == (_interval(bounds) if bounds else '–')
    assert test == f'{report["test"]["per_class_accuracy"][name]:.4f}'
    assert test_interval == _interval(_wilson(CONFUSION[index][index], sum(CONFUSION[index])))
    assert examples == str(sum(CONFUSION[index]))

  # Against the model it replaced: the selector's production comparison.
  against = layer['against_production']
  assert facts['production version'] == '1700000100'
  assert facts['production path'] == report['production']['path']
  assert facts['why that version'] == report['production']['reason']
  assert facts['production eval accuracy'] == f'{report["production"]["eval"][ACCURACY]:.4f}'
  assert facts["this model's eval accuracy"] == f'{layer["eval"][ACCURACY]:.4f}'
  assert facts['difference [95% CI]'] == (
    f'{against["accuracy_difference"]:+.4f} {_interval(against["difference_interval"])}'
  )
  assert facts['examples only this / only production gets right'] == '41 / 10'
  assert facts['McNemar p (Holm-adjusted p)'] == '0.00123 (0.00246)'
  assert f'Skipped: {report["production"]["skipped"][0]}' in text
  assert f'Decision: {report["decision"]}' in text

  # Drift, limits, provenance.
  assert '## Drift\n\nNot checked' in text
  assert 'Trained and checked only on this data' in text
  assert facts['code fingerprint'] == 'f1ngerpr1nt (recorded by the pipeline)'
  assert facts['git commit']  # this checkout's commit, or "unknown"
  assert facts['image'] == 'unknown'
  assert facts['date'] == '2026-12-07 21:30:05 UTC'
  assert facts['report'] == str(tmp_path / 'report')


def _metric_tables(text):
  """The eval and the test `metric | value | 95% CI` tables, in that order."""
  found, current = [], None
  for line in text.splitlines():
    if line == '| metric | value | 95% CI |':
      current = []
      found.append(current)
    elif current is not None and line.startswith('| ') and not line.startswith('| ---'):
      current.append([cell.strip() for cell in line.strip('|').split('|')])
    elif current is not None and not line.startswith('|'):
      current = None
  return found


def test_the_html_page_has_the_markdowns_tables_and_escapes_the_class_names(tmp_path):
  _, model_dir, _ = _card(tmp_path)
  page = _read(os.path.join(model_dir, model_card.HTML_FILE))
  text = _read(os.path.join(model_dir, model_card.MARKDOWN_FILE))
  parsed = _html_tables(page)
  # A class called `cat <b>` is text, not a tag: escaped once, and no <b> element on the page.
  assert 'cat &lt;b&gt;' in page and 'cat <b>' not in page
  assert 'b' not in parsed.tags
  # Self-contained: no script, stylesheet, image or frame from elsewhere.
  assert not re.search(r'<(script|link|img|iframe)\b|\bsrc=|\bhref=', page)
  assert '<style>' in page
  # Each HTML table holds the cells of the Markdown table with the same header.
  markdown_tables = [(h, rows) for h, rows in _markdown_table_list(text) if h != ' | ']
  html_tables = [
    (' | '.join(table[0]), table[1:])
    for table in parsed.tables
    if ' | '.join(table[0]) in {header for header, _ in markdown_tables}
  ]
  assert html_tables == markdown_tables
  assert len(html_tables) == 4  # counts, eval and test metrics, per class
  html_facts = {row[0]: row[1] for table in parsed.tables for row in table if len(row) == 2}
  assert html_facts == _facts(text)
  per_class = next(t for t in parsed.tables if t[0][:3] == ['#', 'class', 'eval'])
  assert [row[1] for row in per_class[1:]] == CLASSES


def test_a_first_version_says_so_and_its_record_replaced_nothing(tmp_path):
  _, model_dir, _ = _card(tmp_path, report=_report(production_model=False))
  text = _read(os.path.join(model_dir, model_card.MARKDOWN_FILE))
  assert 'First version: there was no model in production to compare with' in text
  assert 'First version' in _read(os.path.join(model_dir, model_card.HTML_FILE))
  with open(os.path.join(model_dir, model_card.PUSH_RECORD_FILE)) as record:
    assert json.load(record)['replaced'] is None


def test_the_push_record_holds_what_history_lists(tmp_path):
  _, model_dir, _ = _card(tmp_path, model_info=dict(MODEL_INFO, spans=[4, 5]))
  with open(os.path.join(model_dir, model_card.PUSH_RECORD_FILE)) as file:
    record = json.load(file)
  assert record['variant'] == 'layer' and record['pushed'] is True
  assert record['spans'] == ['4', '5']
  assert record['test_accuracy'] == pytest.approx(TEST_ACCURACY)
  assert record['test_accuracy_interval'] == pytest.approx(
    list(_wilson(round(TEST_ACCURACY * TEST_EXAMPLES), TEST_EXAMPLES))
  )
  assert record['replaced'] == {'version': 1700000100, 'path': '/serving/fashion_mnist/1700000100'}
  assert record['card'] == 'assets.extra/model_card.md'
  assert record['selected_at'] == '2026-12-07 21:30:05 UTC'
  assert record['code_fingerprint'] == 'f1ngerpr1nt'
  text = _read(os.path.join(model_dir, model_card.MARKDOWN_FILE))
  assert _facts(text)['spans'] == '4, 5'


def test_without_dataset_json_the_card_shows_what_the_report_and_model_have(tmp_path):
  model_info = {key: value for key, value in MODEL_INFO.items() if key != 'dataset'}
  _, model_dir, _ = _card(
    tmp_path, model_info=model_info, dataset=None, properties={'unrelated': 1}
  )
  text = _read(os.path.join(model_dir, model_card.MARKDOWN_FILE))
  facts = _facts(text)
  assert facts['data'] == '–' and facts['image size'] == '–'
  assert facts['read from'] == 'report.json (class names only)'
  assert 'Counts per split: not recorded' in text
  assert 'Classes (label index: name): 0: cat &lt;b&gt;, 1: dog \\| puppy, 2: bird.' in text
  # No fingerprint given: the one of the code that ran, 16 hex digits.
  assert re.fullmatch(r'[0-9a-f]{16} \(of the code the selector ran\)', facts['code fingerprint'])


def test_the_pixel_scaling_is_shown_when_the_model_records_it(tmp_path):
  _, model_dir, _ = _card(
    tmp_path, model_info=dict(MODEL_INFO, transform={'pixel_scaling': 'zscore'})
  )
  facts = _facts(_read(os.path.join(model_dir, model_card.MARKDOWN_FILE)))
  assert facts['pixel scaling'].startswith("zscore: (x − mean) / std, the train split's mean")


def test_a_drift_result_recorded_by_the_pipeline_is_on_the_card(tmp_path):
  report = dict(_report(), drift={'lines': ['label: L-infinity 0.02 below 0.1 (span 4 vs 5)']})
  _, model_dir, _ = _card(tmp_path, report=report)
  text = _read(os.path.join(model_dir, model_card.MARKDOWN_FILE))
  assert '## Drift\n\n- label: L-infinity 0.02 below 0.1 (span 4 vs 5)\n' in text


def test_the_saved_model_digest_leaves_the_card_out(tmp_path, tiny_saved_model):
  import shutil  # pylint: disable=import-outside-toplevel

  trained, pushed = str(tmp_path / 'trained'), str(tmp_path / 'pushed')
  shutil.copytree(tiny_saved_model, trained)
  shutil.copytree(tiny_saved_model, pushed)
  for name in model_card.ADDED_FILES:
    _write_json(os.path.join(pushed, name), {'a': 'card'})
  assert production.saved_model_digest(pushed) == production.saved_model_digest(trained)


# --- through the selector's executor and TFX's Pusher ----------------------------------------


@pytest.fixture(scope='module')
def pushed_a_then_b(tmp_path_factory, tiny_saved_model):
  """The production gate's runs: A pushed on an empty serving root, then B, better than A."""
  from tests import test_production_gate as gate  # pylint: disable=import-outside-toplevel

  work_dir = tmp_path_factory.mktemp('card_runs')
  serving_root = work_dir / 'serving'
  with pytest.MonkeyPatch.context() as monkeypatch:
    gate._given_results(monkeypatch)
    for trained in 'AB':
      gate._run(work_dir, serving_root, tiny_saved_model, trained)
    # B trained again: the same SavedModel as the served version, which carries a card.
    gate._run(work_dir / 'again', serving_root, tiny_saved_model, 'B')
  return work_dir, serving_root, gate


def test_every_pushed_version_carries_the_card_of_its_runs_report(pushed_a_then_b):
  work_dir, serving_root, gate = pushed_a_then_b
  model_dir = serving_root / gate.MODEL_NAME
  assert sorted(os.listdir(model_dir)) == [str(gate.CLOCK['A']), str(gate.CLOCK['B'])]
  for trained in 'AB':
    version = model_dir / str(gate.CLOCK[trained])
    report_dir = work_dir / trained / 'out' / 'report'
    with open(report_dir / model_card.REPORT_JSON) as file:
      report = json.load(file)
    for name in (model_card.MARKDOWN_NAME, model_card.HTML_NAME):
      assert _read(version / 'assets.extra' / name) == _read(report_dir / name)
    text = _read(version / model_card.MARKDOWN_FILE)
    assert text.startswith('# Model card: layer\n')
    test_rows = _metric_tables(text)[1]
    assert test_rows[0][:2] == ['accuracy', f'{report["test"]["metrics"][ACCURACY]:.4f}']
    with open(version / model_card.PUSH_RECORD_FILE) as file:
      record = json.load(file)
    assert record['test_accuracy'] == report['test']['metrics'][ACCURACY]
    assert record['report'] == str(report_dir)
    if trained == 'A':
      assert 'First version' in text and record['replaced'] is None
    else:
      (layer,) = report['variants']
      facts = _facts(text)
      assert facts['production version'] == str(gate.CLOCK['A'])
      assert facts['production path'] == report['production']['path']
      assert facts['difference [95% CI]'].startswith(
        f'{layer["against_production"]["accuracy_difference"]:+.4f} ['
      )
      assert record['replaced'] == {
        'version': gate.CLOCK['A'],
        'path': str(model_dir / str(gate.CLOCK['A'])),
      }


def test_the_served_model_trained_again_is_recognised_despite_its_card(pushed_a_then_b):
  work_dir, _, _ = pushed_a_then_b
  with open(work_dir / 'again' / 'B' / 'out' / 'report' / model_card.REPORT_JSON) as file:
    report = json.load(file)
  assert report['already_in_production'] is True and not report['pushed']
  text = _read(work_dir / 'again' / 'B' / 'out' / 'report' / model_card.MARKDOWN_NAME)
  assert 'this is the model in production already; nothing new is pushed' in text


def test_history_lists_the_pushed_versions_from_their_records(pushed_a_then_b):
  from pipeline import history  # pylint: disable=import-outside-toplevel

  work_dir, serving_root, gate = pushed_a_then_b
  model_dir = serving_root / gate.MODEL_NAME
  found = history.read(str(model_dir))
  b, a = found.versions
  with open(work_dir / 'B' / 'out' / 'report' / model_card.REPORT_JSON) as file:
    accuracy = json.load(file)['test']['metrics'][ACCURACY]
  assert (b.version, b.served, b.variant, b.replaced) == (
    gate.CLOCK['B'],
    True,
    'layer',
    str(a.version),
  )
  assert b.test_accuracy == f'{accuracy:.4f}'
  assert b.card == str(model_dir / str(gate.CLOCK['B']) / model_card.MARKDOWN_FILE)
  assert (a.version, a.served, a.replaced) == (gate.CLOCK['A'], False, 'none (first)')
  assert found.served == f'Served: version {gate.CLOCK["B"]}: the newest version'
