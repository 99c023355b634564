"""Beam executor: any input layout (dataset.layouts) to the contract's tf.Examples, train/eval/test.

Splits come from the data when it names them (split folders, ml_use, TFRecord file names; the
IDX t10k files are the test split). A split the data does not name is held out of the training
images (those in a train folder or with no split) by a hash of the image's bytes: SHA-256, its
first 8 bytes mod 100 below eval_percent → eval, below eval_percent + test_percent → test. It
depends on nothing but the bytes, so it is the same on every run and runner, duplicates land in
one split, and an IDX image and its PNG export (dataset.export, the same encoder) land alike.

Stops with one DatasetError line (the file, manifest line or record, and the problem) on:
a class outside the DatasetSpec's classes; an empty class folder; a class with fewer training
images than a hash-held-out split needs for one image of it (ceil(100 / percent): 10 at 10%;
checked for folders and manifests, whose classes are known before reading); a manifest line
without a label or whose file is missing; the same image (content hash) in two splits; and,
unless `bad_images` is `skip`, a file that is not an image, is corrupt or truncated, or is over
`max_image_bytes` / `max_image_pixels`. Skipped images are listed in `<examples>/dataset.json`
beside the counts of every split and class.
"""

import dataclasses
import hashlib
import json
import math
import posixpath
from collections import Counter
from collections.abc import Iterator
from typing import Any, NamedTuple

import apache_beam as beam
import tensorflow as tf
from tfx.components.example_gen import base_example_gen_executor, utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import json_utils, proto_utils

from contract.features import DatasetSpec, spec_from_custom_config
from dataset import examples, images, layouts
from dataset.errors import DatasetError

EVAL_PERCENT_KEY = 'eval_percent'
TEST_PERCENT_KEY = 'test_percent'
BAD_IMAGES_KEY = 'bad_images'
MAX_IMAGE_BYTES_KEY = 'max_image_bytes'
MAX_IMAGE_PIXELS_KEY = 'max_image_pixels'
DEFAULT_EVAL_PERCENT = 10
DEFAULT_TEST_PERCENT = 10
BAD_IMAGES_CHOICES = ('stop', 'skip')
SUMMARY_FILE = 'dataset.json'
SKIPPED_LISTED = 100  # dataset.json lists the first skipped images (by file), counts them all
SPLITS = layouts.SPLITS


@dataclasses.dataclass(frozen=True)
class IngestOptions:
  spec: DatasetSpec
  eval_percent: int = DEFAULT_EVAL_PERCENT
  test_percent: int = DEFAULT_TEST_PERCENT
  bad_images: str = 'stop'
  limits: images.ImageLimits = dataclasses.field(default_factory=images.ImageLimits)

  def __post_init__(self):
    if self.bad_images not in BAD_IMAGES_CHOICES:
      raise ValueError(f'bad_images must be stop or skip, got {self.bad_images!r}')
    if min(self.eval_percent, self.test_percent) < 0 or self.eval_percent + self.test_percent > 90:
      raise ValueError(
        f'eval_percent {self.eval_percent} and test_percent {self.test_percent} must be at least '
        '0 and leave at least 10% to train on'
      )

  @classmethod
  def from_custom_config(cls, custom_config: dict[str, Any]) -> 'IngestOptions':
    config = custom_config or {}
    return cls(
      spec=spec_from_custom_config(config),
      eval_percent=int(config.get(EVAL_PERCENT_KEY, DEFAULT_EVAL_PERCENT)),
      test_percent=int(config.get(TEST_PERCENT_KEY, DEFAULT_TEST_PERCENT)),
      bad_images=config.get(BAD_IMAGES_KEY) or 'stop',
      limits=images.ImageLimits(
        max_image_bytes=int(config.get(MAX_IMAGE_BYTES_KEY) or images.DEFAULT_MAX_IMAGE_BYTES),
        max_image_pixels=int(config.get(MAX_IMAGE_PIXELS_KEY) or images.DEFAULT_MAX_IMAGE_PIXELS),
      ),
    )


class HeldOut(NamedTuple):
  """The percent of training images each split the data does not name is held out by hash."""

  eval: int
  test: int


def holdout_bucket(digest: bytes) -> int:
  return int.from_bytes(digest[:8], 'big') % 100


def holdout_split(digest: bytes, held_out: HeldOut) -> str:
  """eval, test or train for a training image with content hash `digest`."""
  bucket = holdout_bucket(digest)
  if bucket < held_out.eval:
    return 'eval'
  return 'test' if bucket < held_out.eval + held_out.test else 'train'


def held_out_for(named_splits: set[str], options: IngestOptions) -> HeldOut:
  """Hash holdouts only for the splits the data does not name."""
  return HeldOut(
    eval=0 if 'eval' in named_splits else options.eval_percent,
    test=0 if 'test' in named_splits else options.test_percent,
  )


def where(item: layouts.Item) -> str:
  """What an error about an item names: the file, or the manifest line and its URI."""
  if isinstance(item.content, bytes) or item.content == item.source:
    return item.source
  return f'{item.source}: {item.content}'


def unknown_class_error(item: layouts.Item, spec: DatasetSpec) -> DatasetError:
  shown = ', '.join(spec.classes[:12]) + (', ...' if spec.num_classes > 12 else '')
  return DatasetError(
    where(item),
    f'class {item.class_name!r} is not one of the {spec.num_classes} classes this run was built '
    f'for ({shown}); adopt a schema listing it, or remove these images',
  )


def check_listed_items(items: list[layouts.Item], spec: DatasetSpec, held_out: HeldOut) -> None:
  """Checks a folder tree's or manifest's classes before any image is read."""
  known = set(spec.classes)
  training = Counter()
  first = {}
  for item in items:
    if item.class_name not in known:
      raise unknown_class_error(item, spec)
    first.setdefault(item.class_name, item)
    if item.split in (None, 'train'):
      training[item.class_name] += 1
  for split, percent in held_out._asdict().items():
    if not percent:
      continue
    needed = math.ceil(100 / percent)
    for class_name in sorted(first):
      if training[class_name] < needed:
        raise DatasetError(
          where(first[class_name]),
          f'class {class_name!r} has {training[class_name]} training images, fewer than the '
          f'{needed} that holding out {percent}% for the {split} split needs for one {split} '
          f'image: add images, give the {split} split its own images, or raise {split}_percent',
        )


class Ingested(NamedTuple):
  split: str
  digest: bytes
  class_index: int
  source: str
  example: bytes


class _ToExample(beam.DoFn):
  """Reads, checks and serializes one image; a bad one stops the run or goes to `skipped`."""

  SKIPPED = 'skipped'

  def __init__(self, options: IngestOptions, held_out: HeldOut):
    self._options = options
    self._held_out = held_out
    self._class_index = {name: index for index, name in enumerate(options.spec.classes)}

  def process(self, item: layouts.Item) -> Iterator[Any]:
    index = self._class_index.get(item.class_name)
    if index is None:
      raise unknown_class_error(item, self._options.spec)
    content = layouts.read_content(item)
    facts = item.facts
    if facts is None:
      try:
        facts = images.inspect(content, where(item), self._options.limits)
      except DatasetError as error:
        if self._options.bad_images == 'stop':
          raise
        yield beam.pvalue.TaggedOutput(self.SKIPPED, (error.source, error.problem))
        return
    digest = hashlib.sha256(content).digest()
    split = item.split if item.split in ('eval', 'test') else holdout_split(digest, self._held_out)
    yield Ingested(split, digest, index, where(item), examples.to_example(content, index, facts))


class _SplitsOfOneImage(beam.CombineFn):
  """For one content hash: each split it is in, with the first file (by name) holding it."""

  def create_accumulator(self):
    return {}

  def add_input(self, accumulator, split_and_source):
    split, source = split_and_source
    accumulator[split] = min(source, accumulator.get(split, source))
    return accumulator

  def merge_accumulators(self, accumulators):
    merged = {}
    for accumulator in accumulators:
      for split, source in accumulator.items():
        merged[split] = min(source, merged.get(split, source))
    return merged

  def extract_output(self, accumulator):
    return accumulator


def _stop_on_image_in_two_splits(digest_and_splits: tuple[bytes, dict[str, str]]) -> None:
  digest, sources = digest_and_splits
  if len(sources) > 1:
    (first_split, first), (second_split, second) = sorted(
      sources.items(), key=lambda split_source: SPLITS.index(split_source[0])
    )[:2]
    raise DatasetError(
      second,
      f'the same image (SHA-256 {digest.hex()[:16]}) as {first} is in both the {first_split} '
      f'and the {second_split} split: remove one copy',
    )


class _Summary(beam.CombineFn):
  """Counts per split and class, and the skipped images (the first SKIPPED_LISTED, all counted)."""

  def create_accumulator(self):
    return Counter(), [], 0

  def add_input(self, accumulator, element):
    counts, skipped, skipped_count = accumulator
    if element[0] == 'count':
      counts[element[1:]] += 1
      return accumulator
    return counts, sorted([*skipped, element[1:]])[:SKIPPED_LISTED], skipped_count + 1

  def merge_accumulators(self, accumulators):
    counts, skipped, skipped_count = Counter(), [], 0
    for more_counts, more_skipped, more_count in accumulators:
      counts.update(more_counts)
      skipped = sorted(skipped + more_skipped)[:SKIPPED_LISTED]
      skipped_count += more_count
    return counts, skipped, skipped_count

  def extract_output(self, accumulator):
    return accumulator


def summary(
  accumulated: tuple[Counter, list, int], spec: DatasetSpec, data: str, layout: str
) -> dict[str, Any]:
  """dataset.json's content: what was read from where, and how many images of each class."""
  counts, skipped, skipped_count = accumulated
  return {
    'spec': spec.to_dict(),
    'data': data,
    'layout': layout,
    'counts': {
      split: {name: counts[(split, index)] for index, name in enumerate(spec.classes)}
      for split in SPLITS
    },
    'skipped': [{'file': source, 'problem': problem} for source, problem in skipped],
    'skipped_count': skipped_count,
  }


def _write_summary(accumulated, path: str, spec: DatasetSpec, data: str, layout: str) -> None:
  tf.io.gfile.makedirs(posixpath.dirname(path))
  with tf.io.gfile.GFile(path, 'w') as out:
    json.dump(summary(accumulated, spec, data, layout), out, indent=2, sort_keys=True)


def _split_index(record: Ingested, num_partitions: int) -> int:
  del num_partitions  # always len(SPLITS)
  return SPLITS.index(record.split)


def generate_splits(
  pipeline: beam.Pipeline, data: str, options: IngestOptions, summary_path: str | None = None
) -> dict[str, beam.pvalue.PCollection]:
  """Serialized tf.Examples of `data` per split; writes dataset.json to `summary_path` if given.

  Listing and the checks that need no image (classes, folder sizes) run here on the launcher,
  so a wrong directory fails before any worker starts; reading and decoding run on workers.
  """
  layout = layouts.detect(data)
  if layout in layouts.SHARDED_LAYOUTS:
    shards = layouts.shards(data, layout)
    named_splits = {shard.split for shard in shards if shard.split}
    items = (
      pipeline
      | 'ListFiles' >> beam.Create(shards)
      | 'ReadFiles' >> beam.FlatMap(layouts.read_shard)
    )
    held_out = held_out_for(named_splits, options)
  else:
    listed = layouts.listed_items(data, layout)
    named_splits = {item.split for item in listed if item.split}
    held_out = held_out_for(named_splits, options)
    check_listed_items(listed, options.spec, held_out)
    items = pipeline | 'ListImages' >> beam.Create(listed)
  ingested, skipped = (
    items
    | 'Spread' >> beam.Reshuffle()
    | 'ToExample'
    >> beam.ParDo(_ToExample(options, held_out)).with_outputs(_ToExample.SKIPPED, main='ingested')
  )
  if named_splits:
    # Some split came from the data: one image could be in two of them. (With hash holdouts
    # alone, the hash sends every copy to one split.)
    _ = (
      ingested
      | 'ByContent' >> beam.Map(lambda record: (record.digest, (record.split, record.source)))
      | 'SplitsOfEachImage' >> beam.CombinePerKey(_SplitsOfOneImage())
      | 'OneSplitPerImage' >> beam.Map(_stop_on_image_in_two_splits)
    )
  if summary_path:
    counted = ingested | 'CountKey' >> beam.Map(
      lambda record: ('count', record.split, record.class_index)
    )
    skips = skipped | 'SkipKey' >> beam.Map(lambda source_problem: ('skipped', *source_problem))
    _ = (
      (counted, skips)
      | 'Tally' >> beam.Flatten()
      | 'Summarize' >> beam.CombineGlobally(_Summary())
      | 'WriteSummary' >> beam.Map(_write_summary, summary_path, options.spec, data, layout)
    )
  by_split = ingested | 'Split' >> beam.Partition(_split_index, len(SPLITS))
  return {
    name: part | f'Serialize[{name}]' >> beam.Map(lambda record: record.example)
    for name, part in zip(SPLITS, by_split)
  }


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
  """Reads the input layout once and writes train / eval / test plus dataset.json."""

  _summary_path = None

  def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
    raise NotImplementedError(
      'The splits come from the data, so this executor overrides GenerateExamplesByBeam instead.'
    )

  def Do(self, input_dict, output_dict, exec_properties) -> None:
    examples_artifact = artifact_utils.get_single_instance(
      output_dict[standard_component_specs.EXAMPLES_KEY]
    )
    self._summary_path = posixpath.join(examples_artifact.uri, SUMMARY_FILE)
    super().Do(input_dict, output_dict, exec_properties)

  def GenerateExamplesByBeam(
    self, pipeline: beam.Pipeline, exec_properties: dict[str, Any]
  ) -> dict[str, beam.pvalue.PCollection]:
    input_config = example_gen_pb2.Input()
    proto_utils.json_to_proto(
      exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config
    )
    output_config = example_gen_pb2.Output()
    proto_utils.json_to_proto(
      exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY], output_config
    )
    names = utils.generate_output_split_names(input_config, output_config)
    if output_config.split_config.splits or sorted(names) != sorted(SPLITS):
      raise ValueError(
        f'ImageExampleGen writes the splits {list(SPLITS)}: give input_config those three '
        '(component.input_config_for) and leave output_config empty'
      )
    custom_config = json_utils.loads(
      exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or 'null'
    )
    data = layouts.data_from_input(
      exec_properties[standard_component_specs.INPUT_BASE_KEY], input_config.splits[0].pattern
    )
    return generate_splits(
      pipeline, data, IngestOptions.from_custom_config(custom_config), self._summary_path
    )
