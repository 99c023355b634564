"""What ExampleGen recorded about the data, read from `<examples uri>/dataset.json`: the classes
and image size (the DatasetSpec), where the images came from, how many of each class every split
holds, and the bad images it skipped under `bad_images: skip`."""

import dataclasses
import json
import os
from typing import Any, Dict, Mapping, Optional, Sequence

import tensorflow as tf

from contract.features import DATASET_RECORD
from contract.features import DatasetSpec

# The order splits are listed in; any other split ExampleGen made follows, by name.
SPLIT_ORDER = ('train', 'eval', 'test')


@dataclasses.dataclass(frozen=True)
class DatasetFacts:
  spec: DatasetSpec
  # The input base the images were read from, and its layout (idx, folders, csv, jsonl, tfrecord).
  data: str = ''
  layout: str = ''
  # counts[split][class name] = examples of that class in that split.
  counts: Mapping[str, Mapping[str, int]] = dataclasses.field(default_factory=dict)
  # The first skipped images, {'file', 'problem'} each; skipped_count counts them all.
  skipped: Sequence[Mapping[str, str]] = ()
  skipped_count: int = 0

  @property
  def classes(self) -> Sequence[str]:
    return self.spec.classes

  @property
  def splits(self) -> Sequence[str]:
    """The splits with counts: train, eval, test, then any other by name."""
    known = [split for split in SPLIT_ORDER if split in self.counts]
    return known + sorted(split for split in self.counts if split not in SPLIT_ORDER)

  def split_total(self, split: str) -> int:
    return sum(self.counts.get(split, {}).values())


def from_dict(value: Dict[str, Any], source: str) -> DatasetFacts:
  """The facts in dataset.json's format; a missing or malformed key is one line naming `source`."""
  if not isinstance(value, dict) or 'spec' not in value:
    raise ValueError(f'{source}: no "spec" key (the classes and image size)')
  try:
    spec = DatasetSpec.from_dict(value['spec'])
  except (KeyError, TypeError, ValueError) as error:
    raise ValueError(f'{source}: "spec" is not a dataset spec: {error}') from error
  counts = value.get('counts', {})
  if not isinstance(counts, dict) or not all(isinstance(c, dict) for c in counts.values()):
    raise ValueError(f'{source}: "counts" must map each split to {{class name: examples}}')
  unknown = sorted({name for by_class in counts.values() for name in by_class} - set(spec.classes))
  if unknown:
    raise ValueError(f'{source}: "counts" names classes the spec does not have: {unknown}')
  skipped = value.get('skipped', [])
  return DatasetFacts(
    spec=spec,
    data=str(value.get('data', '')),
    layout=str(value.get('layout', '')),
    counts={split: dict(by_class) for split, by_class in counts.items()},
    skipped=tuple(skipped),
    skipped_count=int(value.get('skipped_count', len(skipped))),
  )


def read(examples_uri: str) -> Optional[DatasetFacts]:
  """The facts ExampleGen wrote beside its examples; None when it wrote none."""
  path = os.path.join(examples_uri, DATASET_RECORD)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as file:
    try:
      value = json.load(file)
    except ValueError as error:
      raise ValueError(f'{path}: not JSON: {error}') from error
  return from_dict(value, path)
