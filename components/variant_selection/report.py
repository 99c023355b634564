"""The comparison report: JSON for tools, Markdown for people, PNG plots for both.

It opens with why the winner won and the data it was chosen on (where the images came from, the
size they are decoded to, how many of each class every split holds, the bad images skipped).

Readable from 2 to 100 classes (and past that), whatever the names:
- Markdown per-class tables put the classes in columns up to MAX_CLASS_COLUMNS classes, beyond
  that one row per class, numbered: the numbers are the ones the confusion matrix plot shows.
- The per-class accuracy plot has one row per class (a dot per variant), its height grows with
  the number of classes, the classes sorted from the lowest accuracy of the selected variant
  (else the first) up, so the weak classes are at the top whatever their number; each name is
  followed by its class number when the confusion matrix shows numbers.
- The confusion matrix is coloured by the share of each true class (rows sum to 1), so a rare
  class shows as clearly as a common one; its ticks name the classes up to MAX_TICK_NAMES
  classes, beyond that they are class numbers (at most MAX_NUMBER_TICKS of them) and the
  per-class table is the legend; counts are written in the cells up to MAX_CELL_COUNTS classes.
  The most frequent confusions are also written out in the Markdown.
- Plot labels longer than MAX_LABEL_CHARS are cut with an ellipsis; the Markdown and JSON keep
  every name whole.
"""

import dataclasses
import json
import math
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

import matplotlib

matplotlib.use('Agg')  # files only; workers have no display
from matplotlib.lines import Line2D  # noqa: E402  (after the backend is chosen)
from matplotlib import pyplot  # noqa: E402
from matplotlib import ticker  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from components.variant_selection.dataset_facts import DatasetFacts  # noqa: E402
from components.variant_selection.evaluation import Interval  # noqa: E402
from components.variant_selection.held_out import HeldOutResult  # noqa: E402
from components.variant_selection.selection import ACCURACY  # noqa: E402
from components.variant_selection.selection import CALIBRATION_ERROR  # noqa: E402
from components.variant_selection.selection import LOSS  # noqa: E402
from components.variant_selection.selection import POWER_DIFFERENCE  # noqa: E402
from components.variant_selection.selection import LOWER_IS_BETTER  # noqa: E402
from components.variant_selection.selection import NOT_WORSE_AND_CHEAPER  # noqa: E402
from components.variant_selection.selection import Selection  # noqa: E402
from components.variant_selection.selection import VariantResult  # noqa: E402
from components.variant_selection.selection import clearly_faster  # noqa: E402
from components.variant_selection.statistics import PairedComparison  # noqa: E402
from serving.latency import Latency  # noqa: E402
from components.variant_selection import seeds  # noqa: E402
from trainer.config import OUR_VARIANTS  # noqa: E402

REPORT_JSON = 'report.json'
REPORT_MARKDOWN = 'report.md'
LEARNING_CURVES_PNG = 'learning_curves.png'
PER_CLASS_ACCURACY_PNG = 'per_class_accuracy.png'
CONFUSION_MATRIX_PNG = 'confusion_matrix.png'
ACCURACY_INTERVALS_PNG = 'accuracy_intervals.png'
COST_QUALITY_PNG = 'accuracy_vs_latency.png'
SEED_ACCURACY_PNG = 'seed_accuracy.png'
# The legibility rule of the module docstring.
MAX_CLASS_COLUMNS = 10
MAX_TICK_NAMES = 30
MAX_NUMBER_TICKS = 20
MAX_CELL_COUNTS = 20
MAX_LABEL_CHARS = 28
# Confusions written out in the Markdown, and skipped bad images listed (dataset.json has more).
MOST_CONFUSED = 5
MAX_SKIPPED_LISTED = 10
# Where the rule left each variant, one colour each on every plot that colours by it.
SELECTED, WITHIN_NOISE, WORSE, NOT_BLESSED = 'selected', 'within_noise', 'worse', 'not_blessed'
STATUS_COLORS = {
  SELECTED: 'tab:green',
  WITHIN_NOISE: 'tab:blue',
  WORSE: 'tab:orange',
  NOT_BLESSED: 'tab:gray',
}
# Plots that tell variants apart use these instead, so that no colour means two things.
_IDENTITY_COLORS = ('tab:purple', 'tab:brown', 'tab:pink', 'tab:olive', 'tab:cyan', 'black')
_PAIRED_CAPTION = (
  'Overlapping intervals can still differ significantly: each interval carries the spread of '
  'the eval examples (easy or hard), which every variant shares. McNemar pairs the variants on '
  'the same examples and counts only those where exactly one is right, so that shared spread '
  'cancels.'
)


@dataclasses.dataclass(frozen=True)
class Production:
  """The model in production when the selector ran: its serving directory and eval results."""

  path: str
  eval: HeldOutResult
  # serving_default latency by batch size.
  latency: Mapping[int, Latency] = dataclasses.field(default_factory=dict)
  # Why this version: e.g. the `stable` one of models.config.
  reason: str = ''
  # One line per newer or chosen version TF Serving could not load, skipped for this one.
  skipped: Sequence[str] = ()


@dataclasses.dataclass(frozen=True)
class VariantReport:
  """One variant's row: its evaluation plus what its Trainer recorded."""

  result: VariantResult
  per_class_accuracy: Mapping[str, float]
  parameters: int
  train_seconds: float
  images_per_second: float
  # The Trainer's history.json records: {'phase', 'step', metrics...}.
  history: Sequence[Mapping[str, float]] = ()
  # TFMA's 95% confidence intervals: overall by metric, and of the accuracy by class name.
  intervals: Mapping[str, Interval] = dataclasses.field(default_factory=dict)
  per_class_intervals: Mapping[str, Interval] = dataclasses.field(default_factory=dict)
  # serving_default latency by batch size, measured by the selector.
  latency: Mapping[int, Latency] = dataclasses.field(default_factory=dict)


def _number(value: Optional[float], digits: int = 4) -> str:
  return '–' if value is None or not math.isfinite(value) else f'{value:.{digits}f}'


def _duration(seconds: float) -> str:
  if not math.isfinite(seconds):
    return '–'
  minutes, seconds = divmod(round(seconds), 60)
  return f'{minutes}m{seconds:02d}s' if minutes else f'{seconds}s'


def _with_interval(value: Optional[float], interval: Optional[Interval], digits: int = 4) -> str:
  """`0.9297 [0.9231, 0.9362]`, or the value alone without an interval."""
  if interval is None:
    return _number(value, digits)
  low, high = interval
  return f'{_number(value, digits)} [{_number(low, digits)}, {_number(high, digits)}]'


def _latency(latency: Optional[Latency]) -> str:
  """Median (p10–p90) in milliseconds."""
  if latency is None:
    return '–'
  return f'{latency.median_ms:.2f} ({latency.p10_ms:.2f}–{latency.p90_ms:.2f})'


def _comparison(comparison: Optional[PairedComparison]) -> str:
  """Accuracy difference and McNemar's p, e.g. `-0.0035 (p 0.041)`."""
  if comparison is None:
    return '–'
  return f'{comparison.difference:+.4f} (p {comparison.p_value:.2g})'


def _comparison_json(comparison: Optional[PairedComparison]) -> Optional[Dict]:
  if comparison is None:
    return None
  return {
    'accuracy_difference': comparison.difference,
    'difference_interval': list(comparison.difference_interval),
    'mcnemar_p_value': comparison.p_value,
    'only_this_correct': comparison.only_model,
    'only_other_correct': comparison.only_reference,
    'examples': comparison.examples,
  }


def _latency_json(latency: Mapping[int, Latency]) -> Dict[str, Dict[str, float]]:
  return {str(batch): value.as_dict() for batch, value in latency.items()}


def _variant_json(row: VariantReport, selection: Selection) -> Dict:
  variant = row.result.variant
  return {
    'variant': variant,
    'eval': dict(row.result.metrics),
    'eval_intervals': {name: list(bounds) for name, bounds in row.intervals.items()},
    'per_class_accuracy': dict(row.per_class_accuracy),
    'per_class_accuracy_intervals': {
      name: list(bounds) for name, bounds in row.per_class_intervals.items()
    },
    'against_best': _comparison_json(selection.against_best.get(variant)),
    'against_production': _comparison_json(selection.against_production.get(variant)),
    'holm_adjusted_p_against_production': selection.holm_adjusted.get(variant),
    'within_noise_of_best': variant in selection.contenders,
    'serving_latency_ms': _latency_json(row.latency),
    'parameters': row.parameters,
    'train_seconds': row.train_seconds,
    'images_per_second': row.images_per_second,
    'blessed': row.result.blessed,
    'verdict': selection.verdicts[variant],
  }


def _dataset_json(dataset: DatasetFacts) -> Dict:
  return {
    'spec': dataset.spec.to_dict(),
    'data': dataset.data,
    'layout': dataset.layout,
    'counts': {split: dict(by_class) for split, by_class in dataset.counts.items()},
    'skipped': [dict(skipped) for skipped in dataset.skipped],
    'skipped_count': dataset.skipped_count,
  }


def _as_json(
  dataset: DatasetFacts,
  variants: Sequence[VariantReport],
  selection: Selection,
  held_out: Optional[HeldOutResult],
  production: Optional[Production],
) -> Dict:
  return {
    'dataset': _dataset_json(dataset),
    'selection_metric': selection.metric,
    'significance_level': selection.policy.significance_level,
    'replace_production': selection.policy.replace_production,
    'selected': selection.winner,
    'pushed': selection.push,
    'decision': selection.decision,
    'why': why_selected(variants, selection, production),
    'already_in_production': selection.in_production,
    'production': None
    if production is None
    else {
      'path': production.path,
      'reason': production.reason,
      'skipped': list(production.skipped),
      'eval': production.eval.metrics,
      'serving_latency_ms': _latency_json(production.latency),
    },
    'power': None
    if selection.power is None
    else {
      'accuracy_difference': POWER_DIFFERENCE,
      'at_least': selection.power,
      'eval_examples': selection.eval_examples,
      'median_discordance': selection.discordance,
      'family_size': selection.family_size,
    },
    'variants': [_variant_json(row, selection) for row in variants],
    'test': None
    if held_out is None
    else {
      'variant': selection.winner,
      'examples': held_out.examples,
      'metrics': held_out.metrics,
      'per_class_accuracy': held_out.per_class_accuracy,
      'classes': list(held_out.classes),
      'confusion_matrix': held_out.confusion_matrix,
    },
  }


def _quality_table(variants: Sequence[VariantReport], selection: Selection) -> List[str]:
  """Eval metrics with TFMA's intervals, the paired tests, and the gate's verdict."""
  lines = [
    (
      '| variant | accuracy [95% CI] | loss [95% CI] | ECE [95% CI] | vs best (McNemar p) '
      '| vs production (p) | blessed | verdict |'
    ),
    '| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |',
  ]
  for row in variants:
    metrics, variant = row.result.metrics, row.result.variant
    cells = [
      _with_interval(metrics.get(name), row.intervals.get(name))
      for name in (ACCURACY, LOSS, CALIBRATION_ERROR)
    ]
    lines.append(
      f'| {variant} | {" | ".join(cells)} | {_comparison(selection.against_best.get(variant))} '
      f'| {_comparison(selection.against_production.get(variant))} '
      f'| {"yes" if row.result.blessed else "no"} | {selection.verdicts[variant]} |'
    )
  return lines


def _cost_table(variants: Sequence[VariantReport], production: Optional[Production]) -> List[str]:
  """Serving latency per request (the selector's measurement) and the Trainer's cost."""
  lines = [
    (
      '| variant | serving ms, batch 1 (p10–p90) | serving ms, batch 64 (p10–p90) | parameters '
      '| images/s | train time |'
    ),
    '| --- | ---: | ---: | ---: | ---: | ---: |',
  ]
  for row in variants:
    lines.append(
      f'| {row.result.variant} | {_latency(row.latency.get(1))} | {_latency(row.latency.get(64))} '
      f'| {row.parameters:,} | {_number(row.images_per_second, 0)} | {_duration(row.train_seconds)} |'
    )
  if production is not None:
    lines.append(
      f'| production | {_latency(production.latency.get(1))} '
      f'| {_latency(production.latency.get(64))} | – | – | – |'
    )
  return lines


def _cell(text: str) -> str:
  """A name as a Markdown table cell: a `|` in it would end the cell."""
  return text.replace('|', '\\|')


def _class_accuracy(row: VariantReport, name: str) -> str:
  """Accuracy of one class, ± half the width of its 95% interval where TFMA computed one."""
  cell = _number(row.per_class_accuracy.get(name), 3)
  if name in row.per_class_intervals:
    low, high = row.per_class_intervals[name]
    cell += f' ±{(high - low) / 2:.3f}'
  return cell


def _per_class_table(
  dataset: DatasetFacts,
  variants: Sequence[VariantReport],
  held_out: Optional[HeldOutResult],
  selection: Selection,
) -> List[str]:
  """Per-class accuracy of every variant on the eval split and the selected one's on the test
  split: a column per class up to MAX_CLASS_COLUMNS classes, else a row per class, numbered
  as the confusion matrix plot is, with the class's examples per split."""
  classes = dataset.classes
  test = [] if held_out is None else [held_out.per_class_accuracy]
  test_name = f'{selection.winner} on test'
  if len(classes) <= MAX_CLASS_COLUMNS:
    lines = [
      '| variant | ' + ' | '.join(map(_cell, classes)) + ' |',
      '| --- |' + ' ---: |' * len(classes),
    ]
    for row in variants:
      cells = [_class_accuracy(row, name) for name in classes]
      lines.append(f'| {row.result.variant} | {" | ".join(cells)} |')
    for accuracy in test:
      cells = [_number(accuracy.get(name), 3) for name in classes]
      lines.append(f'| {test_name} | {" | ".join(cells)} |')
    return lines
  splits = dataset.splits
  columns = [*splits, *(row.result.variant for row in variants), *(test_name for _ in test)]
  lines = [
    '| # | class | ' + ' | '.join(columns) + ' |',
    '| ---: | --- |' + ' ---: |' * len(columns),
  ]
  for index, name in enumerate(classes):
    cells = [f'{dataset.counts[split].get(name, 0):,}' for split in splits]
    cells += [_class_accuracy(row, name) for row in variants]
    cells += [_number(accuracy.get(name), 3) for accuracy in test]
    lines.append(f'| {index} | {_cell(name)} | {" | ".join(cells)} |')
  return lines


def _counts_table(dataset: DatasetFacts) -> List[str]:
  """Examples per split: by class up to MAX_CLASS_COLUMNS classes, else the total and the
  fewest and most per class (the per-class table has them all)."""
  classes, splits = dataset.classes, dataset.splits
  if not splits:
    return []
  if len(classes) <= MAX_CLASS_COLUMNS:
    lines = [
      '| split | ' + ' | '.join(map(_cell, classes)) + ' | total |',
      '| --- |' + ' ---: |' * (len(classes) + 1),
    ]
    for split in splits:
      cells = [f'{dataset.counts[split].get(name, 0):,}' for name in classes]
      lines.append(f'| {split} | {" | ".join(cells)} | {dataset.split_total(split):,} |')
    return lines
  lines = [
    '| split | examples | fewest of a class | median per class | most of a class |',
    '| --- | ---: | ---: | ---: | ---: |',
  ]
  for split in splits:
    counts = {name: dataset.counts[split].get(name, 0) for name in classes}
    fewest, most = min(counts, key=counts.get), max(counts, key=counts.get)
    lines.append(
      f'| {split} | {dataset.split_total(split):,} | {counts[fewest]:,} ({_cell(fewest)}) '
      f'| {np.median(list(counts.values())):,.0f} | {counts[most]:,} ({_cell(most)}) |'
    )
  return lines


def _dataset_lines(dataset: DatasetFacts) -> List[str]:
  """The data the variants were compared on: source, decoded size, class counts, skipped images."""
  spec = dataset.spec
  colour = 'grayscale' if spec.channels == 1 else 'RGB'
  source = f' from `{dataset.data}`' if dataset.data else ''
  layout = f' ({dataset.layout})' if dataset.layout else ''
  sizes = ', '.join(f'{split} {dataset.split_total(split):,}' for split in dataset.splits)
  lines = [
    f'**Data:** {spec.num_classes} classes{source}{layout}, every image decoded to '
    f'{spec.height}×{spec.width} {colour}{f"; examples: {sizes}" if sizes else ""}.'
  ]
  if dataset.layout:
    count = dataset.skipped_count
    lines.append(
      f'{count:,} bad image{"" if count == 1 else "s"} skipped (`bad_images: skip`):'
      if count
      else 'No bad image skipped.'
    )
    lines += [
      f'- `{skipped.get("file", "?")}`: {skipped.get("problem", "?")}'
      for skipped in dataset.skipped[:MAX_SKIPPED_LISTED]
    ]
    unlisted = count - min(len(dataset.skipped), MAX_SKIPPED_LISTED)
    if unlisted > 0:
      lines.append(f'- and {unlisted:,} more (the examples\' dataset.json lists the first ones).')
  counts = _counts_table(dataset)
  return [*lines, *([''] + counts if counts else [])]


def spans_and_drift_lines(
  spans: Optional[Mapping[str, Any]], drift: Optional[Mapping[str, Any]]
) -> List[str]:
  """Markdown: which spans the run trained and evaluated on, and the drift check's result."""
  lines = ['## Spans and drift', '']
  if spans:
    train = ', '.join(str(span) for span in spans.get('train') or [])
    previous = spans.get('previous')
    lines.append(
      f"**Spans:** newest {spans.get('newest')} (eval and test); trained on span(s) {train}; "
      + (f'drift baseline: span {previous}.' if previous is not None else 'no previous span.')
    )
  if drift:
    lines += ['', f"**Drift check:** {drift.get('status', '?')}", '']
    lines += [f'- {line}' for line in drift.get('lines') or []]
  return lines


def _most_confused(held_out: HeldOutResult) -> Optional[str]:
  """The most frequent mistakes on the test split, `true → predicted`, with the share of the
  true class each is."""
  counts = np.array(held_out.confusion_matrix)
  np.fill_diagonal(counts, 0)
  if not counts.any():
    return None
  order = np.argsort(-counts, axis=None, kind='stable')[:MOST_CONFUSED]
  totals = np.array(held_out.confusion_matrix).sum(axis=1)
  pairs = []
  for true_label, predicted in zip(*np.unravel_index(order, counts.shape)):
    count = counts[true_label, predicted]
    if count:
      pairs.append(
        f'{held_out.classes[true_label]} → {held_out.classes[predicted]} {count:,} '
        f'({count / totals[true_label]:.1%})'
      )
  return 'Most frequent confusions on the test split (true → predicted): ' + '; '.join(pairs) + '.'


def _outcome(
  selection: Selection, held_out: Optional[HeldOutResult], production: Optional[Production]
) -> List[str]:
  lines = []
  if production is None:
    lines.append('No model in production yet: the accuracy threshold alone decides.')
  else:
    lines.append(
      f'Production model (the baseline): {production.path}'
      f'{f" ({production.reason})" if production.reason else ""}, eval accuracy '
      f'{_number(production.eval.metrics[ACCURACY])} on the same examples.'
    )
    lines += [f'Skipped: {line}.' for line in production.skipped]
  if held_out is None:
    lines.append('No variant was blessed, so nothing was selected and nothing will be pushed.')
  else:
    lines.append(
      f'Selected: **{selection.winner}**. Held-out test split ({held_out.examples} examples, '
      f'never used for selection): accuracy {_number(held_out.metrics[ACCURACY])}, '
      f'loss {_number(held_out.metrics[LOSS])}, '
      f'ECE {_number(held_out.metrics[CALIBRATION_ERROR])}.'
    )
    confused = _most_confused(held_out)
    if confused:
      lines.append(confused)
  lines += ['', f'**Decision:** {selection.decision}']
  if selection.power is not None:
    lines.append(_power_sentence(selection))
  if selection.in_production:
    lines.append('It is the model in production already, so nothing new is pushed.')
  return lines


def _power_sentence(selection: Selection) -> str:
  """How likely this gate was to push a real improvement: the power of its test for a variant
  one point more accurate than production, at this run's size, discordance and family."""
  needed = selection.policy.significance_level / selection.family_size
  return (
    f'Power: a variant {POWER_DIFFERENCE * 100:g} point more accurate than production is pushed '
    f'in at least {selection.power:.0%} of runs like this one ({selection.eval_examples:,} eval '
    f'examples, of which a variant and production answer {selection.discordance:.1%} '
    f'differently (median over the variants), Holm over {selection.family_size} variant(s): '
    f'McNemar p < {needed:.3g} suffices; exact binomial). A smaller gain is likelier to stay '
    'unpushed.'
  )


# --- Why: the report's opening sentence, in the terms of the rule in selection.py -------------


def _points(difference: float) -> str:
  """An accuracy difference in percentage points, `−0.47 pt`."""
  return f'{difference * 100:+.2f} pt'.replace('-', '−')


def _names(variants: Sequence[str]) -> str:
  return ', '.join(variants)


def _noise_clause(selection: Selection) -> str:
  """Where the winner stands against the best (steps 2 and 3)."""
  winner, best = selection.winner, selection.ranking[0]
  if selection.metric != ACCURACY:
    direction = 'lowest' if selection.metric in LOWER_IS_BETTER else 'highest'
    return f'the {direction} {selection.metric} of the blessed variants'
  if len(selection.contenders) == 1:
    alone = len(selection.ranking) == 1
    return 'the only blessed variant' if alone else 'the only variant within noise of the best'
  if winner == best:
    others = len(selection.contenders) - 1
    return f'the most accurate, {others} other{"s" if others > 1 else ""} within noise of it'
  return f'within noise of the best, {best} (p = {selection.against_best[winner].p_value:.2g})'


def _rest_clauses(selection: Selection) -> List[str]:
  """The blessed variants outside the noise, and those the gate stopped."""
  clauses = []
  below = [variant for variant in selection.ranking if variant not in selection.contenders]
  unblessed = [variant for variant in selection.verdicts if variant not in selection.ranking]
  tested = [selection.against_best[v].p_value for v in below if v in selection.against_best]
  who = 'all others' if not unblessed else _names(below)
  if below and selection.metric == ACCURACY and tested:
    clauses.append(f'{who} significantly worse (p ≤ {max(tested):.2g})')
  elif below:
    clauses.append(f'{who} ranked below it')
  if unblessed:
    clauses.append(f'not blessed: {_names(unblessed)}')
  return clauses


def _tie_clause(rows: Mapping[str, VariantReport], selection: Selection) -> Optional[str]:
  """How serving cost settled a tie (step 4): latency, else parameters, else the order."""
  winner = selection.winner
  rivals = [variant for variant in selection.finalists if variant != winner]
  if not rivals:
    return None
  group = f'the {len(selection.finalists)} within noise'
  if selection.finalists != selection.contenders:
    group += ' that would replace production'

  def batch_1(variant: str) -> Optional[Latency]:
    return rows[variant].latency.get(1) if variant in rows else None

  as_fast = [variant for variant in rivals if not clearly_faster(batch_1(winner), batch_1(variant))]
  if not as_fast:
    return f'the fastest to serve of {group} ({batch_1(winner).median_ms:.2f} ms at batch 1)'
  parameters = rows[winner].parameters
  if all(parameters < rows[variant].parameters for variant in as_fast):
    return (
      f'of {group}, as fast to serve as {_names(as_fast)} (p10–p90 at batch 1 overlap) with '
      f'fewer parameters ({parameters:,})'
    )
  return f'of {group}, as fast and as small as {_names(as_fast)}: first in the configured order'


def _production_why(selection: Selection, production: Optional[Production]) -> Optional[str]:
  """Step 5: whether the winner replaces the model in production."""
  if production is None:
    return None
  if selection.in_production:
    return 'it is the model in production already: nothing new to push'
  comparison = selection.against_production.get(selection.winner)
  if comparison is None:
    return 'no per-example results to compare with production: not pushed'
  numbers = f'{_points(comparison.difference)}, p = {comparison.p_value:.2g}'
  # "Better" is decided after Holm's correction over every variant; "worse" is not corrected.
  adjusted = selection.holm_adjusted.get(selection.winner, 1.0)
  corrected = f'{numbers}, Holm-adjusted p = {adjusted:.2g}'
  level = selection.policy.significance_level
  if selection.push and adjusted < level:
    return f'replaces production: significantly better than it ({corrected})'
  if selection.push:
    return f'replaces production: not significantly worse than it ({numbers}) and faster to serve'
  if comparison.significantly_worse(level):
    return f'production kept: significantly worse than it ({numbers})'
  if selection.policy.replace_production == NOT_WORSE_AND_CHEAPER:
    return f'production kept: neither significantly better than it ({corrected}) nor faster'
  return f'production kept: not significantly better than it ({corrected})'


def _ours_clause(rows: Mapping[str, VariantReport], winner: str) -> Optional[str]:
  """When a reference or the baseline wins: how close the best hand-written variant came."""
  accuracy = {
    variant: row.result.metrics.get(ACCURACY, math.nan)
    for variant, row in rows.items()
    if variant in OUR_VARIANTS
  }
  accuracy = {variant: value for variant, value in accuracy.items() if math.isfinite(value)}
  winner_accuracy = rows[winner].result.metrics.get(ACCURACY, math.nan)
  if winner in OUR_VARIANTS or not accuracy or not math.isfinite(winner_accuracy):
    return None
  best = max(accuracy, key=accuracy.get)
  return f'best of ours: {best}, {_points(accuracy[best] - winner_accuracy)}'


def why_selected(
  variants: Sequence[VariantReport], selection: Selection, production: Optional[Production]
) -> str:
  """One sentence: why the winner won (or why nothing did), in the terms of the rule, e.g.
  `keras_layer: the only variant within noise of the best; all others significantly worse
  (p ≤ 0.028); best of ours: layer, −0.47 pt`."""
  if selection.winner is None:
    best = selection.best_overall
    reason = f'; the most accurate, {best}, is {selection.verdicts[best]}' if best else ''
    return f'Nothing selected: no variant passed the gate{reason}'
  rows = {row.result.variant: row for row in variants}
  clauses = [
    _noise_clause(selection),
    _tie_clause(rows, selection),
    *_rest_clauses(selection),
    _production_why(selection, production),
    _ours_clause(rows, selection.winner),
  ]
  return f'{selection.winner}: ' + '; '.join(clause for clause in clauses if clause)


def _markdown(
  dataset: DatasetFacts,
  variants: Sequence[VariantReport],
  selection: Selection,
  held_out: Optional[HeldOutResult],
  production: Optional[Production],
) -> str:
  level = selection.policy.significance_level
  lines = [
    f'**{why_selected(variants, selection, production)}**',
    '',
    *_dataset_lines(dataset),
    '',
    (
      f'Normalization variants on the eval split, ranked by {selection.metric} among blessed '
      f"variants. McNemar's exact test on the same eval examples: a variant with p ≥ {level} "
      'against the best is within noise of it, and among those the fastest to serve at batch 1 '
      '(then the fewest parameters) is selected. Intervals: TFMA, 95%.'
    ),
    '',
    *_quality_table(variants, selection),
    '',
    (
      'Serving cost (serving_default on encoded image bytes, in process; median and '
      'p10–p90 over the timed calls) and training cost:'
    ),
    '',
    *_cost_table(variants, production),
    '',
    'Per-class accuracy (eval split; the selected variant\'s on the test split too):',
    '',
    *_per_class_table(dataset, variants, held_out, selection),
    '',
    *_outcome(selection, held_out, production),
  ]
  return '\n'.join(lines) + '\n'


def _save(figure, path: str) -> None:
  """Writes the figure as PNG through tf.io.gfile, so a gs:// artifact URI works too."""
  figure.tight_layout()
  with tf.io.gfile.GFile(path, 'wb') as png:
    # bbox_inches: long class names and axis labels stay inside the image.
    figure.savefig(png, format='png', dpi=100, bbox_inches='tight')
  pyplot.close(figure)


def _variant_colors(variants: Sequence[VariantReport]) -> Dict[str, str]:
  """A colour per variant for the plots that tell variants apart, none of them a status colour:
  on every plot green means selected, blue within noise, orange worse, grey not blessed."""
  return {
    row.result.variant: _IDENTITY_COLORS[index % len(_IDENTITY_COLORS)]
    for index, row in enumerate(variants)
  }


def _variant_label(variant: str, selection: Selection) -> str:
  return f'{variant} (selected)' if variant == selection.winner else variant


def _plot_learning_curves(variants: Sequence[VariantReport], selection: Selection, path: str):
  figure, (train_axis, eval_axis) = pyplot.subplots(1, 2, figsize=(12, 4.5))
  colors = _variant_colors(variants)
  for row in variants:
    variant = row.result.variant
    for axis, phase, metric in ((train_axis, 'train', 'loss'), (eval_axis, 'eval', 'accuracy')):
      points = [(r['step'], r[metric]) for r in row.history if r['phase'] == phase and metric in r]
      if points:
        steps, values = zip(*points)
        axis.plot(
          steps,
          values,
          marker='.' if phase == 'eval' else None,
          color=colors[variant],
          linewidth=2.5 if variant == selection.winner else 1.2,
          label=_variant_label(variant, selection),
        )
  train_axis.set(title='Training loss', xlabel='step', ylabel='loss')
  eval_axis.set(title='Eval accuracy (Trainer, each epoch)', xlabel='step', ylabel='accuracy')
  for axis in (train_axis, eval_axis):
    axis.grid(alpha=0.3)
    if axis.get_legend_handles_labels()[0]:
      axis.legend()
  _save(figure, path)


def _label(name: str) -> str:
  """A class name short enough for a plot label; the Markdown has it whole."""
  return name if len(name) <= MAX_LABEL_CHARS else name[: MAX_LABEL_CHARS - 1] + '…'


def _numbered(classes: Sequence[str]) -> bool:
  """Whether the confusion matrix shows class numbers rather than names (too many to read)."""
  return len(classes) > MAX_TICK_NAMES


def per_class_accuracy_figure(
  classes: Sequence[str], variants: Sequence[VariantReport], selection: Selection
):
  """One row per class, a dot per variant (its 95% interval where TFMA computed one), the rows
  sorted by the selected variant's accuracy (else the first variant's), lowest at the top."""
  reference = next(
    (row for row in variants if row.result.variant == selection.winner), variants[0]
  ).per_class_accuracy

  def lowest_first(label: int):
    value = reference.get(classes[label], math.nan)
    return (value if math.isfinite(value) else math.inf, label)

  order = sorted(range(len(classes)), key=lowest_first)
  # Row height shrinks past 150 classes so that the figure stays a size a viewer opens.
  row_inches = min(0.25, 38 / len(classes))
  figure, axis = pyplot.subplots(figsize=(10, 1.6 + row_inches * len(classes)))
  colors = _variant_colors(variants)
  spacing = min(0.7 / max(len(variants), 1), 0.2)
  for index, row in enumerate(variants):
    variant = row.result.variant
    offset = (index - (len(variants) - 1) / 2) * spacing
    values = [row.per_class_accuracy.get(classes[label], math.nan) for label in order]
    errors = np.zeros((2, len(order)))
    for position, label in enumerate(order):
      interval = row.per_class_intervals.get(classes[label])
      if interval is not None:
        errors[:, position] = (values[position] - interval[0], interval[1] - values[position])
    axis.errorbar(
      values,
      [position + offset for position in range(len(order))],
      xerr=errors,
      fmt='o',
      markersize=6 if variant == selection.winner else 4,
      elinewidth=0.8,
      color=colors[variant],
      label=_variant_label(variant, selection),
    )
  numbered = _numbered(classes)
  names = [
    f'{_label(classes[label])} ({label})' if numbered else _label(classes[label]) for label in order
  ]
  axis.set_yticks(range(len(order)), names, fontsize=min(10, row_inches * 72 * 0.75))
  axis.set_ylim(len(order) - 0.5, -0.5)  # the first (lowest) class at the top
  lowest = min(
    (
      value for row in variants for value in row.per_class_accuracy.values() if math.isfinite(value)
    ),
    default=0.0,
  )
  # Variants differ by a few points; an axis from 0 would hide that.
  axis.set(
    title='Per-class accuracy (eval split), lowest first',
    xlabel='accuracy',
    xlim=(max(0.0, math.floor(lowest * 10) / 10 - 0.05), 1.01),
  )
  axis.grid(axis='x', alpha=0.3)
  axis.legend(fontsize='small', loc='upper left', bbox_to_anchor=(1.01, 1))
  return figure


def confusion_matrix_figure(held_out: HeldOutResult, variant: str):
  """Colour: the share of each true class (rows sum to 1); counts in the cells, class names or
  numbers on the axes, as the module docstring says."""
  classes, counts = held_out.classes, np.array(held_out.confusion_matrix)
  totals = counts.sum(axis=1, keepdims=True)
  shares = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
  side = float(np.clip(3 + 0.45 * len(classes), 6.5, 18))
  figure, axis = pyplot.subplots(figsize=(side + 1, side))
  image = axis.imshow(shares, cmap='Blues', vmin=0, vmax=1)
  if len(classes) <= MAX_CELL_COUNTS:
    size = 12 if len(classes) <= 5 else 8 if len(classes) <= 12 else 6
    for (true_label, predicted), count in np.ndenumerate(counts):
      color = 'white' if shares[true_label, predicted] > 0.5 else 'black'
      axis.text(
        predicted, true_label, f'{count:,}', ha='center', va='center', fontsize=size, color=color
      )
  if _numbered(classes):
    for along in (axis.xaxis, axis.yaxis):
      along.set_major_locator(ticker.MaxNLocator(nbins=MAX_NUMBER_TICKS, integer=True))
    axis.set(
      xlabel='predicted class number (the per-class table in report.md names them)',
      ylabel='true class number',
    )
  else:
    names = [_label(name) for name in classes]
    fontsize = 9 if len(classes) <= 15 else 7
    axis.set_xticks(range(len(classes)), names, rotation=45, ha='right', fontsize=fontsize)
    axis.set_yticks(range(len(classes)), names, fontsize=fontsize)
    axis.set(xlabel='predicted', ylabel='true class')
  axis.set_title(f'{variant}: confusion matrix, test split ({held_out.examples:,} examples)')
  figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04, label='share of the true class')
  return figure


def _status(variant: str, selection: Selection) -> str:
  """Where the rule left the variant: the key of its colour on every plot."""
  if variant == selection.winner:
    return SELECTED
  if variant in selection.contenders:
    return WITHIN_NOISE
  return WORSE if variant in selection.ranking else NOT_BLESSED


def _status_legend(axis, selection: Selection, extra=()) -> None:
  """The one legend of the status colours (every status, present or not), plus `extra` handles."""
  worse = 'significantly worse' if selection.metric == ACCURACY else 'blessed, ranked lower'
  names = {SELECTED: 'selected', WITHIN_NOISE: 'within noise of the best', WORSE: worse}
  names[NOT_BLESSED] = 'not blessed'
  handles = [
    Line2D([], [], color=STATUS_COLORS[status], marker='o', linestyle='', label=name)
    for status, name in names.items()
  ]
  axis.legend(handles=[*handles, *extra], fontsize='small', loc='best')


def _plot_accuracy_intervals(variants: Sequence[VariantReport], selection: Selection, path: str):
  """Each variant's eval accuracy with its 95% interval in its status colour, McNemar's p against
  the best above it, and why overlapping intervals can still differ."""
  figure, axis = pyplot.subplots(figsize=(9, 5.5))
  for index, row in enumerate(variants):
    variant = row.result.variant
    accuracy = row.result.metrics.get(ACCURACY, math.nan)
    low, high = row.intervals.get(ACCURACY, (accuracy, accuracy))
    axis.errorbar(
      index,
      accuracy,
      yerr=[[accuracy - low], [high - accuracy]],
      fmt='o',
      capsize=6,
      color=STATUS_COLORS[_status(variant, selection)],
    )
    comparison = selection.against_best.get(variant)
    if comparison is not None:
      axis.annotate(
        f'p {comparison.p_value:.2g}',
        (index, high),
        textcoords='offset points',
        xytext=(0, 4),
        ha='center',
        fontsize='small',
      )
  axis.set_xticks(range(len(variants)), [row.result.variant for row in variants])
  axis.set(
    title="Eval accuracy with TFMA's 95% interval; p: McNemar against the best",
    ylabel='accuracy',
  )
  axis.margins(y=0.15)
  axis.grid(axis='y', alpha=0.3)
  _status_legend(axis, selection)
  axis.text(
    0,
    -0.12,
    _PAIRED_CAPTION,
    transform=axis.transAxes,
    va='top',
    fontsize='small',
    wrap=True,
  )
  _save(figure, path)


def _plot_cost_quality(
  variants: Sequence[VariantReport], selection: Selection, production: Optional[Production], path
):
  """Accuracy against batch-1 serving latency: the cost/quality frontier, in the status colours."""
  figure, axis = pyplot.subplots(figsize=(8, 5))
  points = [
    (
      row.result.variant,
      row.result.metrics.get(ACCURACY, math.nan),
      row.latency.get(1),
      STATUS_COLORS[_status(row.result.variant, selection)],
    )
    for row in variants
  ]
  extra = []
  if production is not None:
    points.append(
      ('production', production.eval.metrics[ACCURACY], production.latency.get(1), 'black')
    )
    extra.append(Line2D([], [], color='black', marker='s', linestyle='', label='production'))
  for name, accuracy, latency, color in points:
    if latency is None:
      continue
    axis.errorbar(
      latency.median_ms,
      accuracy,
      xerr=[[latency.median_ms - latency.p10_ms], [latency.p90_ms - latency.median_ms]],
      fmt='s' if name == 'production' else 'o',
      color=color,
      capsize=4,
    )
    axis.annotate(name, (latency.median_ms, accuracy), textcoords='offset points', xytext=(5, 5))
  axis.set(
    title='Accuracy against serving latency (batch 1; bars: p10–p90)',
    xlabel='serving_default latency at batch 1 (ms)',
    ylabel='eval accuracy',
  )
  axis.grid(alpha=0.3)
  _status_legend(axis, selection, extra)
  _save(figure, path)


def write(
  directory: str,
  dataset: DatasetFacts,
  variants: Sequence[VariantReport],
  selection: Selection,
  held_out: Optional[HeldOutResult],
  production: Optional[Production] = None,
  seed_runs: Optional[Mapping[str, Sequence[seeds.SeedRun]]] = None,
  spans: Optional[Mapping[str, Any]] = None,
  drift: Optional[Mapping[str, Any]] = None,
) -> List[str]:
  """Writes the report files into `directory` and returns their paths; `dataset` is the data
  the variants were compared on (its classes name the per-class results), `seed_runs[variant]`
  (with repeated seeds) are its runs, the one selection used first. With spans, `spans` is
  dataset.json's record of them ({newest, train, previous}) and `drift` the drift gate's
  result (drift.json): both go into report.json and the Markdown."""
  tf.io.gfile.makedirs(directory)
  paths = {
    name: os.path.join(directory, name)
    for name in (
      REPORT_JSON,
      REPORT_MARKDOWN,
      LEARNING_CURVES_PNG,
      PER_CLASS_ACCURACY_PNG,
      ACCURACY_INTERVALS_PNG,
      COST_QUALITY_PNG,
    )
  }
  content = _as_json(dataset, variants, selection, held_out, production)
  content['seeds'] = _seeds_as_json(seed_runs) if seed_runs else None
  if spans:
    content['spans'] = dict(spans)
  if drift:
    content['drift'] = dict(drift)
  with tf.io.gfile.GFile(paths[REPORT_JSON], 'w') as report_json:
    json.dump(content, report_json, indent=1)
  with tf.io.gfile.GFile(paths[REPORT_MARKDOWN], 'w') as report_markdown:
    report_markdown.write(_markdown(dataset, variants, selection, held_out, production))
    if spans or drift:
      report_markdown.write('\n'.join(['', *spans_and_drift_lines(spans, drift), '']))
    if seed_runs:
      report_markdown.write(_seeds_markdown(seed_runs))
  _plot_learning_curves(variants, selection, paths[LEARNING_CURVES_PNG])
  _save(
    per_class_accuracy_figure(dataset.classes, variants, selection), paths[PER_CLASS_ACCURACY_PNG]
  )
  _plot_accuracy_intervals(variants, selection, paths[ACCURACY_INTERVALS_PNG])
  _plot_cost_quality(variants, selection, production, paths[COST_QUALITY_PNG])
  if held_out is not None:
    paths[CONFUSION_MATRIX_PNG] = os.path.join(directory, CONFUSION_MATRIX_PNG)
    _save(confusion_matrix_figure(held_out, selection.winner), paths[CONFUSION_MATRIX_PNG])
  if seed_runs:
    paths[SEED_ACCURACY_PNG] = os.path.join(directory, SEED_ACCURACY_PNG)
    _plot_seed_accuracy(seed_runs, paths[SEED_ACCURACY_PNG])
  return list(paths.values())


# Repeated seeds (`--seeds N`): a section of its own in each file, after the comparison.


def _seed_list(seed_runs: Mapping[str, Sequence[seeds.SeedRun]]) -> List[int]:
  """The training seeds, the one selection used first (every variant has the same)."""
  return [run.seed for run in next(iter(seed_runs.values()))]


def _seeds_as_json(seed_runs: Mapping[str, Sequence[seeds.SeedRun]]) -> Dict:
  variants = []
  for variant, runs in seed_runs.items():
    spreads = seeds.across_seeds(runs)
    variants.append(
      {
        'variant': variant,
        'runs': [
          {'seed': run.seed, 'eval': dict(run.metrics), 'train_seconds': run.train_seconds}
          for run in runs
        ],
        **{
          statistic: {metric: getattr(value, statistic) for metric, value in spreads.items()}
          for statistic in ('mean', 'std', 'n')
        },
      }
    )
  return {
    'seeds': _seed_list(seed_runs),
    'selection_seed': _seed_list(seed_runs)[0],
    'variants': variants,
  }


def _seeds_markdown(seed_runs: Mapping[str, Sequence[seeds.SeedRun]]) -> str:
  seed_list = _seed_list(seed_runs)
  lines = [
    '',
    f'Across {len(seed_list)} training seeds ({", ".join(map(str, seed_list))}): mean ± sample '
    'standard deviation of each variant\'s runs on the eval split. Selection, the gate and the '
    f'push use the seed {seed_list[0]} runs above, the model a one-seed run trains; the spread '
    'shows how much of the differences between variants is training noise.',
    '',
    '| variant | runs | accuracy | loss | ECE | accuracy by seed | train time (mean) |',
    '| --- | ---: | ---: | ---: | ---: | --- | ---: |',
  ]
  for variant, runs in seed_runs.items():
    spreads = seeds.across_seeds(runs)
    by_seed = ', '.join(_number(run.metrics.get(ACCURACY)) for run in runs)
    mean_seconds = seeds.spread([run.train_seconds for run in runs]).mean
    lines.append(
      f'| {variant} | {len(runs)} | {seeds.mean_plus_minus_std(spreads[ACCURACY])} '
      f'| {seeds.mean_plus_minus_std(spreads[LOSS])} '
      f'| {seeds.mean_plus_minus_std(spreads[CALIBRATION_ERROR])} | {by_seed} '
      f'| {_duration(mean_seconds)} |'
    )
  return '\n'.join(lines) + '\n'


def _plot_seed_accuracy(seed_runs: Mapping[str, Sequence[seeds.SeedRun]], path: str) -> None:
  """Each run's eval accuracy as a dot (the run selection used ringed), mean ± std beside."""
  seed_list = _seed_list(seed_runs)
  figure, axis = pyplot.subplots(figsize=(max(6, 1.4 * len(seed_runs)), 4.5))
  for position, runs in enumerate(seed_runs.values()):
    accuracies = [run.metrics.get(ACCURACY, math.nan) for run in runs]
    first = position == 0  # one legend entry per kind of mark
    axis.scatter(
      [position - 0.12] * len(runs),
      accuracies,
      s=18,
      color='tab:purple',  # blue means "within noise" on the status plots
      alpha=0.7,
      label='one run per seed' if first else None,
    )
    axis.scatter(
      [position - 0.12],
      accuracies[:1],
      s=80,
      facecolors='none',
      edgecolors='tab:red',
      zorder=3,
      label=f'seed {seed_list[0]}: the run selection uses' if first else None,
    )
    accuracy = seeds.across_seeds(runs)[ACCURACY]
    axis.errorbar(
      [position + 0.12],
      [accuracy.mean],
      yerr=[accuracy.std],
      fmt='o',
      color='black',
      capsize=4,
      label='mean ± std' if first else None,
    )
  axis.set_xticks(range(len(seed_runs)), list(seed_runs))
  axis.set_xlim(-0.5, len(seed_runs) - 0.5)
  axis.set(title=f'Eval accuracy over {len(seed_list)} training seeds', ylabel='accuracy')
  axis.grid(axis='y', alpha=0.3)
  axis.legend(fontsize='small')
  _save(figure, path)
