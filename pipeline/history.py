"""`fmnist-pipeline history`: every version under a serving model directory (local or gs://), one
line each, newest first: what it is, when it was pushed, what it replaced, where its model card is,
and which one TF Serving serves now.

What a version says about itself: its assets.extra/model_info.json (variant, spans when the
pipeline records them), written by the Trainer, and the assets.extra/push_record.json the
VariantSelector writes beside the model card (test accuracy, the version it replaced, the card).
A version pushed before the selector wrote records shows what model_info.json has and – elsewhere.
TFX's Pusher names a version after the time of the push in seconds, so the number is the date.
Which version is served follows the serving root's models.config (production.in_production).
"""

import dataclasses
import datetime
import json
import os
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence

import tensorflow as tf

from components.variant_selection import model_card
from components.variant_selection import production
from serving import server_config

NONE = '–'
SERVED_MARK = '*'
# Version numbers before this are no push timestamps (2001-09-09): someone named them by hand.
_EARLIEST_TIMESTAMP = 10**9
# A version named after a time this far ahead of now is no timestamp either.
_FUTURE_SECONDS = 24 * 3600


class HistoryError(ValueError):
  """The serving model directory cannot be listed: one line says why."""


def _read_json(path: str) -> Dict[str, Any]:
  try:
    with tf.io.gfile.GFile(path) as file:
      value = json.load(file)
  except (tf.errors.OpError, ValueError):
    return {}
  return value if isinstance(value, dict) else {}


def pushed_at(version: int, now: Optional[float] = None) -> Optional[str]:
  """The push time a version's number stands for (Pusher names versions by `int(time.time())`),
  in UTC; None for a number that is no plausible timestamp."""
  now = time.time() if now is None else now
  if not _EARLIEST_TIMESTAMP <= version <= now + _FUTURE_SECONDS:
    return None
  moment = datetime.datetime.fromtimestamp(version, datetime.timezone.utc)
  return moment.strftime('%Y-%m-%d %H:%M:%S')


@dataclasses.dataclass(frozen=True)
class Version:
  version: int
  path: str
  variant: str = NONE
  spans: str = NONE
  test_accuracy: str = NONE
  replaced: str = NONE
  card: str = NONE
  pushed: str = NONE
  # '' when nothing is wrong, else e.g. 'cannot load: …' or 'incomplete: …'.
  problem: str = ''
  served: bool = False
  labels: Sequence[str] = ()


@dataclasses.dataclass(frozen=True)
class History:
  model_dir: str
  # Newest first.
  versions: Sequence[Version]
  # One line: which version TF Serving serves and why, or that none loads.
  served: str

  def lines(self) -> List[str]:
    header = ('', 'version', 'pushed (UTC)', 'variant', 'spans', 'test acc.', 'replaced', 'card')
    rows = [
      (
        SERVED_MARK if version.served else '',
        str(version.version),
        version.pushed,
        version.variant,
        version.spans,
        version.test_accuracy,
        version.replaced,
        ' '.join(
          part
          for part in (
            version.card,
            f'[{", ".join(version.labels)}]' if version.labels else '',
            f'({version.problem})' if version.problem else '',
          )
          if part
        ),
      )
      for version in self.versions
    ]
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]

    def line(cells) -> str:
      return '  '.join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip()

    return [
      f'{len(self.versions)} version(s) under {self.model_dir}, newest first '
      f'({SERVED_MARK}: served by TF Serving now):',
      line(header),
      *(line(row) for row in rows),
      self.served,
    ]


def model_directory(serving_root: str, model_name: str) -> str:
  """<serving root>/<model name>; the serving root itself when it holds versions (a model
  directory given as the root). A root that is no directory is a HistoryError."""
  if not tf.io.gfile.isdir(serving_root):
    raise HistoryError(f'no serving root at {serving_root}: no such directory')
  model_dir = os.path.join(serving_root, model_name)
  if tf.io.gfile.isdir(model_dir):
    return model_dir
  if production.version_directories(serving_root):
    return serving_root
  raise HistoryError(
    f'no model {model_name!r} under the serving root {serving_root}: {model_dir} does not exist '
    '(pass --model-name, or the --serving-root Pusher writes to)'
  )


def _accuracy(record: Mapping[str, Any]) -> str:
  value = record.get('test_accuracy')
  return f'{value:.4f}' if isinstance(value, (int, float)) else NONE


def _replaced(record: Mapping[str, Any]) -> str:
  if not record:
    return NONE
  replaced = record.get('replaced')
  if replaced is None:
    return 'none (first)'
  version = replaced.get('version')
  return str(version) if version is not None else replaced.get('path') or NONE


def _spans(model_info: Mapping[str, Any], record: Mapping[str, Any]) -> str:
  spans = model_info.get('spans') or record.get('spans')
  return ','.join(str(span) for span in spans) if spans else NONE


def read(model_dir: str, now: Optional[float] = None) -> History:
  """The versions under `model_dir`, newest first, and which one TF Serving serves."""
  directories = production.version_directories(model_dir)
  if not directories:
    raise HistoryError(
      f'no versions under {model_dir}: nothing was pushed there (no all-digit directories)'
    )
  complete = set(production.complete_versions(model_dir))
  cannot_load: Dict[str, str] = {}
  served = production.in_production(model_dir, warn=lambda line: _note(line, cannot_load))
  config = server_config.read_model_config(
    os.path.join(os.path.dirname(model_dir.rstrip('/')), server_config.MODELS_CONFIG),
    os.path.basename(model_dir.rstrip('/')),
  )
  labels: Dict[int, List[str]] = {}
  for label, version in (config.version_labels if config else {}).items():
    labels.setdefault(version, []).append(label)
  versions = []
  for number in sorted(directories, reverse=True):
    path = os.path.join(model_dir, directories[number])
    model_info = production.model_info(path)
    record = _read_json(os.path.join(path, model_card.PUSH_RECORD_FILE))
    card = os.path.join(path, model_card.MARKDOWN_FILE)
    if number not in complete:
      problem = f'incomplete: no {production.SAVED_MODEL_FILE}'
    elif path in cannot_load:
      problem = f'cannot load: {cannot_load[path]}'
    else:
      problem = ''
    versions.append(
      Version(
        version=number,
        path=path,
        variant=str(model_info.get('variant') or record.get('variant') or NONE),
        spans=_spans(model_info, record),
        test_accuracy=_accuracy(record),
        replaced=_replaced(record),
        card=card if tf.io.gfile.exists(card) else NONE,
        pushed=pushed_at(number, now) or NONE,
        problem=problem,
        served=served is not None and served.version == number,
        labels=sorted(labels.get(number, [])),
      )
    )
  if served is None:
    line = f'Served: nothing, {model_dir} holds no version TF Serving can load'
  else:
    line = f'Served: version {served.version}: {served.reason}'
  return History(model_dir, versions, line)


def _note(line: str, cannot_load: Dict[str, str]) -> None:
  """in_production's line '<path> is not production: TF Serving cannot load it (<why>)'."""
  path, _, rest = line.partition(' is not production: ')
  why = rest.partition('(')[2].rstrip(')') or rest
  cannot_load[path] = why
