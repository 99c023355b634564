"""The model card of a selected model: Markdown and a self-contained HTML page, written into the
model's assets.extra/ (so every version Pusher ships carries its card) and beside the report.

Everything on the card is read back from files the run wrote, so the card says what the report
says: the report's report.json (metrics, TFMA's intervals, the test split, the comparison with
production), the model's assets.extra/model_info.json (variant, training options, dataset spec,
spans) and ExampleGen's `<examples>/dataset.json` when it wrote one (data, layout, counts). Both
renderings get the same context, each through its own Jinja2 template (templates/): the HTML one
autoescapes, and its tables are HTML tables, not converted Markdown.

Beside the card goes assets.extra/push_record.json, what `fmnist-pipeline history` lists about a
version: its test accuracy, the version it replaced, where its card is, when it was selected.
"""

import datetime
import json
import math
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import jinja2
import tensorflow as tf

from contract.features import ASSETS_EXTRA
from contract.features import DATASET_RECORD
from contract.features import MODEL_INFO_FILE

MARKDOWN_NAME = 'model_card.md'
HTML_NAME = 'model_card.html'
PUSH_RECORD_NAME = 'push_record.json'
# Relative to a model (version) directory.
MARKDOWN_FILE = f'{ASSETS_EXTRA}/{MARKDOWN_NAME}'
HTML_FILE = f'{ASSETS_EXTRA}/{HTML_NAME}'
PUSH_RECORD_FILE = f'{ASSETS_EXTRA}/{PUSH_RECORD_NAME}'
# What the selector adds to the model it copies: documents about it, not part of it. A pushed
# version's SavedModel digest leaves assets.extra/ out (production.saved_model_digest), so a
# retrained copy of the served model is still recognised as that model.
ADDED_FILES = (MARKDOWN_FILE, HTML_FILE, PUSH_RECORD_FILE)
# The report's file, read back (its name repeated: report.py imports matplotlib).
REPORT_JSON = 'report.json'
# custom_config / execution property key of the pipeline's code fingerprint (pipeline.py).
CODE_FINGERPRINT_KEY = 'code_fingerprint'
ACCURACY = 'sparse_categorical_accuracy'
LOSS = 'sparse_categorical_crossentropy'
CALIBRATION_ERROR = 'expected_calibration_error'
METRIC_NAMES = {ACCURACY: 'accuracy', LOSS: 'loss (cross-entropy)', CALIBRATION_ERROR: 'ECE'}
SPLITS = ('train', 'eval', 'test')
UNKNOWN = 'unknown'
NONE = '–'
# 95%: the normal quantile of the Wilson intervals of the test split.
_Z = 1.959963984540054
_SCALINGS = {
  'unit': 'x / 255: pixels scaled to [0, 1]',
  'zscore': "(x − mean) / std, the train split's mean and standard deviation of every pixel",
}


def _number(value: Optional[float], digits: int = 4) -> str:
  if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
    return NONE
  return f'{value:.{digits}f}'


def _interval(bounds: Optional[Sequence[float]], digits: int = 4) -> str:
  """`[0.9231, 0.9362]`, or – without one."""
  if not bounds or len(bounds) != 2:
    return NONE
  return f'[{_number(bounds[0], digits)}, {_number(bounds[1], digits)}]'


def wilson_interval(successes: int, trials: int) -> Optional[Tuple[float, float]]:
  """The Wilson score 95% interval of a proportion (the accuracy on `trials` examples)."""
  if trials <= 0:
    return None
  share = successes / trials
  denominator = 1 + _Z**2 / trials
  centre = (share + _Z**2 / (2 * trials)) / denominator
  half = _Z * math.sqrt(share * (1 - share) / trials + _Z**2 / (4 * trials**2)) / denominator
  return (max(0.0, centre - half), min(1.0, centre + half))


def _read_json(path: str) -> Optional[Dict[str, Any]]:
  """The file's JSON object, None when it does not exist or holds no JSON object."""
  try:
    with tf.io.gfile.GFile(path) as file:
      value = json.load(file)
  except (tf.errors.NotFoundError, ValueError):
    return None
  return value if isinstance(value, dict) else None


def _utc(moment: datetime.datetime) -> str:
  return moment.astimezone(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')


# --- the context both templates render ------------------------------------------------------


def _dataset(
  dataset_json: Optional[Mapping], report: Mapping, model_info: Mapping, classes_fallback
) -> Dict[str, Any]:
  """The data: dataset.json first, else the report's copy of it, else the spec in model_info,
  else the class names the report's tables have."""
  found, source = dataset_json, 'dataset.json'
  if not found and isinstance(report.get('dataset'), Mapping):
    found, source = report['dataset'], 'report.json'
  spec = (found or {}).get('spec') or model_info.get('dataset') or {}
  if not found and spec:
    source = 'model_info.json'
  classes = list(spec.get('classes') or classes_fallback)
  if not found and not spec:
    source = 'report.json (class names only)' if classes else ''
  counts = (found or {}).get('counts') or {}
  splits = [split for split in SPLITS if split in counts] + sorted(set(counts) - set(SPLITS))
  channels = spec.get('channels')
  return {
    'source': source,
    'data': (found or {}).get('data') or NONE,
    'layout': (found or {}).get('layout') or NONE,
    'classes': classes,
    'num_classes': len(classes),
    'height': spec.get('height'),
    'width': spec.get('width'),
    'channels': channels,
    'colour': {1: 'grayscale', 3: 'RGB'}.get(channels, NONE),
    'splits': splits,
    'counts': [
      {'name': name, 'by_split': [f'{counts[split].get(name, 0):,}' for split in splits]}
      for name in classes
    ],
    'totals': [f'{sum(counts[split].values()):,}' for split in splits],
    'skipped_count': int((found or {}).get('skipped_count') or 0),
    'has_counts': bool(splits),
  }


def _transform(model_info: Mapping, dataset: Mapping, exec_properties: Mapping) -> Dict[str, Any]:
  """The Transform: the pixel scaling (when the model or the selector's properties record it)
  and the decoded image size."""
  transform = model_info.get('transform') or {}
  scaling = (
    transform.get('pixel_scaling')
    or model_info.get('pixel_scaling')
    or exec_properties.get('pixel_scaling')
  )
  size = (
    f"{dataset['height']}×{dataset['width']}×{dataset['channels']} ({dataset['colour']})"
    if dataset['height'] and dataset['width'] and dataset['channels']
    else NONE
  )
  return {
    'pixel_scaling': scaling or 'not recorded in this model',
    'scaling_meaning': _SCALINGS.get(scaling, ''),
    'image_size': size,
  }


def _metric_rows(values: Mapping, intervals: Mapping) -> List[Dict[str, str]]:
  return [
    {
      'name': label,
      'value': _number(values.get(metric)),
      'interval': _interval(intervals.get(metric)),
    }
    for metric, label in METRIC_NAMES.items()
  ]


def _test(report: Mapping, classes: Sequence[str]) -> Optional[Dict[str, Any]]:
  """The held-out test split: its metrics, the accuracy's Wilson interval overall and per class
  (from the confusion matrix: each row is a true class)."""
  test = report.get('test')
  if not test:
    return None
  examples = int(test.get('examples') or 0)
  metrics = test.get('metrics') or {}
  matrix = test.get('confusion_matrix') or []
  accuracy = metrics.get(ACCURACY)
  correct = (
    sum(row[index] for index, row in enumerate(matrix))
    if matrix
    else round((accuracy or 0) * examples)
  )
  per_class = {}
  for index, name in enumerate(test.get('classes') or classes):
    row = matrix[index] if index < len(matrix) else []
    per_class[name] = {
      'examples': sum(row),
      'accuracy': row[index] / sum(row) if sum(row) else None,
      'interval': wilson_interval(row[index], sum(row)) if sum(row) else None,
    }
  return {
    'examples': f'{examples:,}',
    'rows': [
      {
        'name': label,
        'value': _number(metrics.get(metric)),
        'interval': _interval(wilson_interval(correct, examples)) if metric == ACCURACY else NONE,
      }
      for metric, label in METRIC_NAMES.items()
    ],
    'accuracy': accuracy,
    'accuracy_interval': wilson_interval(correct, examples),
    'per_class': per_class,
  }


def _per_class(row: Mapping, test: Optional[Mapping], classes: Sequence[str]) -> List[Dict]:
  eval_accuracy = row.get('per_class_accuracy') or {}
  eval_intervals = row.get('per_class_accuracy_intervals') or {}
  on_test = (test or {}).get('per_class') or {}
  rows = []
  for name in classes:
    tested = on_test.get(name, {})
    rows.append(
      {
        'name': name,
        'eval': _number(eval_accuracy.get(name)),
        'eval_interval': _interval(eval_intervals.get(name)),
        'test': _number(tested.get('accuracy')),
        'test_interval': _interval(tested.get('interval')),
        'test_examples': f"{tested['examples']:,}" if tested.get('examples') else NONE,
      }
    )
  return rows


def _version_of(path: Optional[str]) -> Optional[int]:
  name = os.path.basename((path or '').rstrip('/'))
  return int(name) if name.isdigit() else None


def _comparison(report: Mapping, row: Mapping) -> Dict[str, Any]:
  """Against the model it replaces: the production comparison the selector computed."""
  served = report.get('production')
  if not served:
    return {'first_version': True}
  against = row.get('against_production') or {}
  difference = against.get('accuracy_difference')
  return {
    'first_version': False,
    'path': served.get('path') or NONE,
    'version': _version_of(served.get('path')),
    'reason': served.get('reason') or NONE,
    'production_accuracy': _number((served.get('eval') or {}).get(ACCURACY)),
    'candidate_accuracy': _number((row.get('eval') or {}).get(ACCURACY)),
    'difference': NONE if difference is None else f'{difference:+.4f}',
    'difference_interval': _interval(against.get('difference_interval')),
    'only_this': against.get('only_this_correct', NONE),
    'only_production': against.get('only_other_correct', NONE),
    'p_value': NONE
    if against.get('mcnemar_p_value') is None
    else f"{against['mcnemar_p_value']:.3g}",
    'holm_p': NONE
    if row.get('holm_adjusted_p_against_production') is None
    else f"{row['holm_adjusted_p_against_production']:.3g}",
    'skipped': list(served.get('skipped') or []),
  }


def _drift(model_info: Mapping, report: Mapping) -> Dict[str, Any]:
  """The drift check's result when the pipeline recorded one under "drift" in report.json or
  model_info.json: a list of lines, or an object with "lines" (else each key: value a line)."""
  drift = report.get('drift') or model_info.get('drift')
  if not drift:
    return {'checked': False}
  if isinstance(drift, Mapping):
    lines = drift.get('lines') or [
      f'{name}: {value}' for name, value in drift.items() if name != 'lines'
    ]
  else:
    lines = [str(line) for line in drift]
  return {'checked': True, 'lines': lines}


def _provenance(model_info: Mapping, exec_properties: Mapping) -> Dict[str, str]:
  """The code behind the model: the pipeline's code fingerprint, the git commit and the image,
  each as far as it is known where the selector runs."""
  # pylint: disable=import-outside-toplevel
  from pipeline import image_tag
  from pipeline import staging

  fingerprint = exec_properties.get(CODE_FINGERPRINT_KEY) or model_info.get(CODE_FINGERPRINT_KEY)
  fingerprint_source = 'recorded by the pipeline'
  if not fingerprint:
    try:
      fingerprint, fingerprint_source = staging.code_fingerprint(), 'of the code the selector ran'
    except OSError:
      fingerprint = None
  commit = model_info.get('commit') or image_tag.commit_of(staging.PACKAGE_ROOT)
  image = exec_properties.get('image') or model_info.get('image') or os.environ.get('FMNIST_IMAGE')
  return {
    'code_fingerprint': fingerprint or UNKNOWN,
    'code_fingerprint_source': fingerprint_source if fingerprint else '',
    'commit': commit or UNKNOWN,
    'image': image or UNKNOWN,
  }


def _classes_in(report: Mapping, row: Mapping) -> List[str]:
  test = report.get('test') or {}
  return list(test.get('classes') or row.get('per_class_accuracy') or {})


def context(
  report: Mapping,
  model_info: Mapping,
  dataset_json: Optional[Mapping] = None,
  exec_properties: Optional[Mapping] = None,
  report_dir: str = '',
  now: Optional[datetime.datetime] = None,
) -> Dict[str, Any]:
  """What the card says, every number formatted once, for both templates."""
  variant = model_info.get('variant') or report.get('selected') or UNKNOWN
  row = next((r for r in report.get('variants', []) if r.get('variant') == variant), {})
  dataset = _dataset(dataset_json, report, model_info, _classes_in(report, row))
  test = _test(report, dataset['classes'])
  # The spans trained on: the model's own record, else ExampleGen's (dataset.json), else the
  # report's copy of it.
  spans = (
    model_info.get('spans')
    or ((dataset_json or {}).get('spans') or {}).get('train')
    or (report.get('spans') or {}).get('train')
  )
  if isinstance(spans, Mapping):
    spans = spans.get('train')
  training = model_info.get('training') or {}
  moment = now or datetime.datetime.now(datetime.timezone.utc)
  return {
    'variant': variant,
    'date': _utc(moment),
    'selected': report.get('selected'),
    'pushed': bool(report.get('pushed')) and report.get('selected') == variant,
    'already_in_production': bool(report.get('already_in_production')),
    'why': report.get('why') or NONE,
    'decision': report.get('decision') or NONE,
    'verdict': row.get('verdict') or NONE,
    'blessed': row.get('blessed'),
    'parameters': f"{model_info.get('parameters', row.get('parameters')):,}"
    if isinstance(model_info.get('parameters', row.get('parameters')), int)
    else NONE,
    'training': [
      {'name': name, 'value': json.dumps(value) if not isinstance(value, str) else value}
      for name, value in sorted(training.items())
    ],
    'spans': [str(span) for span in spans] if spans else None,
    'dataset': dataset,
    'transform': _transform(model_info, dataset, exec_properties or {}),
    'eval_rows': _metric_rows(row.get('eval') or {}, row.get('eval_intervals') or {}),
    'eval_examples': (report.get('power') or {}).get('eval_examples'),
    'test': test,
    'per_class': _per_class(row, test, dataset['classes']),
    'selection_metric': report.get('selection_metric') or NONE,
    'significance_level': report.get('significance_level', NONE),
    'replace_production': report.get('replace_production') or NONE,
    'comparison': _comparison(report, row),
    'drift': _drift(model_info, report),
    'provenance': _provenance(model_info, exec_properties or {}),
    'report_dir': report_dir or NONE,
  }


# --- rendering -----------------------------------------------------------------------------


def _markdown_cell(value: Any) -> str:
  """Text inside a Markdown table cell or line: `|` would end the cell, `<` open a tag."""
  return (
    str(value)
    .replace('\\', '\\\\')
    .replace('|', '\\|')
    .replace('<', '&lt;')
    .replace('>', '&gt;')
    .replace('\n', ' ')
  )


def _environment(autoescape: bool) -> jinja2.Environment:
  environment = jinja2.Environment(
    loader=jinja2.PackageLoader(__package__, 'templates'),
    autoescape=autoescape,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
  )
  environment.filters['md'] = _markdown_cell
  return environment


def render_markdown(card: Mapping[str, Any]) -> str:
  return _environment(autoescape=False).get_template('model_card.md.j2').render(card)


def render_html(card: Mapping[str, Any]) -> str:
  return _environment(autoescape=True).get_template('model_card.html.j2').render(card)


def push_record(card: Mapping[str, Any]) -> Dict[str, Any]:
  """What `fmnist-pipeline history` lists about the version this model becomes when pushed."""
  test = card['test'] or {}
  comparison = card['comparison']
  return {
    'variant': card['variant'],
    'pushed': card['pushed'],
    'spans': card['spans'],
    'test_accuracy': test.get('accuracy'),
    'test_accuracy_interval': list(test['accuracy_interval'])
    if test.get('accuracy_interval')
    else None,
    'replaced': None
    if comparison['first_version']
    else {'version': comparison['version'], 'path': comparison['path']},
    'card': MARKDOWN_FILE,
    'card_html': HTML_FILE,
    'report': card['report_dir'],
    'selected_at': card['date'],
    'code_fingerprint': card['provenance']['code_fingerprint'],
    'commit': card['provenance']['commit'],
  }


def _write_text(path: str, text: str) -> None:
  tf.io.gfile.makedirs(os.path.dirname(path))
  with tf.io.gfile.GFile(path, 'w') as out:
    out.write(text)


def write(
  report_dir: str,
  model_dir: str,
  examples_uri: str,
  exec_properties: Optional[Mapping[str, Any]] = None,
  now: Optional[datetime.datetime] = None,
) -> List[str]:
  """Renders the card of the model in `model_dir` from the report in `report_dir` (written
  first) and writes it into the model's assets.extra/ with its push record, and beside the
  report; returns the paths written."""
  report = _read_json(os.path.join(report_dir, REPORT_JSON)) or {}
  model_info = _read_json(os.path.join(model_dir, MODEL_INFO_FILE)) or {}
  dataset_json = _read_json(os.path.join(examples_uri, DATASET_RECORD)) if examples_uri else None
  card = context(report, model_info, dataset_json, exec_properties, report_dir, now)
  markdown, html = render_markdown(card), render_html(card)
  files = {
    os.path.join(model_dir, MARKDOWN_FILE): markdown,
    os.path.join(model_dir, HTML_FILE): html,
    os.path.join(model_dir, PUSH_RECORD_FILE): json.dumps(push_record(card), indent=1),
    os.path.join(report_dir, MARKDOWN_NAME): markdown,
    os.path.join(report_dir, HTML_NAME): html,
  }
  for path, text in files.items():
    _write_text(path, text)
  return list(files)
