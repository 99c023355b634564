"""Beam executor: any input layout (dataset.layouts) to the contract's tf.Examples, train/eval/test.

Splits come from the data when it names them (split folders, ml_use, TFRecord file names; the
IDX t10k files are the test split). A split the data does not name is held out of the training
images (those in a train folder or with no split) by a hash of the image's bytes: SHA-256, its
first 8 bytes mod 100 below eval_percent → eval, below eval_percent + test_percent → test. It
depends on nothing but the bytes, so it is the same on every run and runner, duplicates land in
one split, and an IDX image and its PNG export (dataset.export, the same encoder) land alike.

Stops with one DatasetError line (the file, manifest line or record, and the problem) on:
a class outside the DatasetSpec's classes (checked on the launcher for folders and manifests);
an empty class folder; a class without training images, or with fewer than a hash-held-out
split needs for one image of it, ceil(100 / percent) (10 at 10%); a manifest line without a
label or whose file is missing; the same image (content hash) in two splits; and, unless
`bad_images` is `skip`, a file that is not an image, is corrupt or truncated, or is over
`max_image_bytes` / `max_image_pixels`. Skipped images are listed in `<examples>/dataset.json`
beside the counts of every split and class. A worker's error reaches the launcher re-raised by
Beam; dataset.errors.dataset_error_line recovers its one line.
"""

import dataclasses
import hashlib
import json
import math
import posixpath
from collections import Counter
from collections.abc import Iterable, Iterator
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
# With spans: the previous span's images (every split of it), the baseline of the drift check.
PREVIOUS_SPLIT = 'previous'
SPAN_SPLITS = SPLITS + (PREVIOUS_SPLIT,)
SPAN_TEMPLATE_KEY = 'span_template'
TRAIN_SPANS_KEY = 'train_spans'
DEFAULT_TRAIN_SPANS = 1
BATCH_SIZE = 200


@dataclasses.dataclass(frozen=True)
class IngestOptions:
  spec: DatasetSpec
  eval_percent: int = DEFAULT_EVAL_PERCENT
  test_percent: int = DEFAULT_TEST_PERCENT
  bad_images: str = 'stop'
  limits: images.ImageLimits = dataclasses.field(default_factory=images.ImageLimits)
  span_template: str | None = None  # data with {SPAN}: see dataset.layouts.span_template
  train_spans: int = DEFAULT_TRAIN_SPANS

  def __post_init__(self):
    if self.train_spans < 1:
      raise ValueError(f'train_spans must be at least 1, got {self.train_spans}')
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
      span_template=config.get(SPAN_TEMPLATE_KEY) or None,
      train_spans=int(config.get(TRAIN_SPANS_KEY) or DEFAULT_TRAIN_SPANS),
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


def check_class_sizes(tally: 'Tally', spec: DatasetSpec, held_out: HeldOut) -> None:
  """Every class in the data has training images, enough to hold one of each held-out split."""
  present = sorted(tally.first_source, key=lambda index: tally.first_source[index])
  for index in present:
    if not tally.training[index]:
      held = sum(tally.counts[(split, index)] for split in SPLITS)
      raise DatasetError(
        tally.first_source[index],
        f'class {spec.classes[index]!r} has no training images (all {held} are in eval or test)',
      )
  for split, percent in held_out._asdict().items():
    if not percent:
      continue
    needed = math.ceil(100 / percent)
    for index in present:
      if tally.training[index] < needed:
        raise DatasetError(
          tally.first_source[index],
          f'class {spec.classes[index]!r} has {tally.training[index]} training images, fewer than '
          f'the {needed} that holding out {percent}% for the {split} split needs for one {split} '
          f'image: add images, give the {split} split its own images, or raise {split}_percent',
        )


def batches(items: Iterable[Any], size: int = BATCH_SIZE) -> Iterator[list]:
  """Consecutive lists of `size` items: Beam moves and schedules a batch, not each image."""
  batch = []
  for item in items:
    batch.append(item)
    if len(batch) == size:
      yield batch
      batch = []
  if batch:
    yield batch


class Tally(NamedTuple):
  """What a batch of images adds to dataset.json and to the one-split-per-image check."""

  counts: Counter  # (split, class index) → images
  training: Counter  # class index → images in train or held out of it (the data's training set)
  first_source: dict  # class index → its first file (by name), what a class error names
  skipped: list  # (source, problem), sorted, the first SKIPPED_LISTED
  skipped_count: int
  # content hash → {split: first source}; filled only when the data names some split
  splits_of_image: dict


def _merge_splits_of_image(merged: dict, more: dict) -> None:
  """Adds `more` to `merged`; stops when one image (content hash) is in two splits."""
  for digest, sources in more.items():
    known = merged.setdefault(digest, {})
    for split, source in sources.items():
      known[split] = min(source, known.get(split, source))
    if len(known) > 1:
      (first_split, first), (second_split, second) = sorted(
        known.items(), key=lambda split_source: SPLITS.index(split_source[0])
      )[:2]
      raise DatasetError(
        second,
        f'the same image (SHA-256 {digest.hex()[:16]}) as {first} is in both the {first_split} '
        f'and the {second_split} split: remove one copy',
      )


class _TallyAll(beam.CombineFn):
  """Merges the batches' tallies (and so checks, across all of them, one split per image)."""

  def create_accumulator(self):
    return Tally(Counter(), Counter(), {}, [], 0, {})

  def add_input(self, accumulator, tally):
    return self._merge_into(accumulator, tally)

  def merge_accumulators(self, accumulators):
    accumulators = iter(accumulators)
    merged = next(accumulators)
    for tally in accumulators:
      merged = self._merge_into(merged, tally)
    return merged

  @staticmethod
  def _merge_into(merged: Tally, tally: Tally) -> Tally:
    """`merged` plus `tally`, updating merged's counters and maps in place (Beam allows it)."""
    merged.counts.update(tally.counts)
    merged.training.update(tally.training)
    for index, source in tally.first_source.items():
      merged.first_source[index] = min(source, merged.first_source.get(index, source))
    _merge_splits_of_image(merged.splits_of_image, tally.splits_of_image)
    return merged._replace(
      skipped=sorted(merged.skipped + tally.skipped)[:SKIPPED_LISTED],
      skipped_count=merged.skipped_count + tally.skipped_count,
    )

  def extract_output(self, accumulator):
    return accumulator


class _ToExamples(beam.DoFn):
  """Reads, checks and serializes a batch of images into their splits, plus the batch's Tally.

  A bad image stops the run, or with bad_images `skip` is counted and listed in the Tally.
  """

  def __init__(self, options: IngestOptions, held_out: HeldOut, track_splits_of_image: bool):
    self._options = options
    self._held_out = held_out
    self._track = track_splits_of_image
    self._class_index = {name: index for index, name in enumerate(options.spec.classes)}

  def process(self, batch: list[layouts.Item]) -> Iterator[Any]:
    counts, training, first_source, skipped, splits_of_image = Counter(), Counter(), {}, [], {}
    contents = [layouts.read_content(item) for item in batch]
    to_inspect = [i for i, item in enumerate(batch) if item.facts is None]
    inspected = dict(
      zip(
        to_inspect,
        images.inspect_batch(
          [contents[i] for i in to_inspect],
          [where(batch[i]) for i in to_inspect],
          self._options.limits,
        ),
      )
    )
    for position, (item, content) in enumerate(zip(batch, contents)):
      index = self._class_index.get(item.class_name)
      if index is None:
        raise unknown_class_error(item, self._options.spec)
      facts = item.facts or inspected[position]
      if isinstance(facts, DatasetError):
        if self._options.bad_images == 'stop':
          raise facts
        skipped.append((facts.source, facts.problem))
        continue
      source = where(item)
      first_source[index] = min(source, first_source.get(index, source))
      digest = hashlib.sha256(content).digest()
      split = (
        item.split if item.split in ('eval', 'test') else holdout_split(digest, self._held_out)
      )
      counts[(split, index)] += 1
      if item.split in (None, 'train'):
        training[index] += 1
      if self._track:
        sources = splits_of_image.setdefault(digest, {})
        sources[split] = min(source, sources.get(split, source))
      yield beam.pvalue.TaggedOutput(split, examples.to_example(content, index, facts))
    skipped = sorted(skipped)
    yield Tally(
      counts, training, first_source, skipped[:SKIPPED_LISTED], len(skipped), splits_of_image
    )


def summary(tally: Tally, spec: DatasetSpec, data: str, layout: str) -> dict[str, Any]:
  """dataset.json's content: what was read from where, and how many images of each class."""
  return {
    'spec': spec.to_dict(),
    'data': data,
    'layout': layout,
    'counts': {
      split: {name: tally.counts[(split, index)] for index, name in enumerate(spec.classes)}
      for split in SPLITS
    },
    'skipped': [{'file': source, 'problem': problem} for source, problem in tally.skipped],
    'skipped_count': tally.skipped_count,
  }


def _finish(
  tally: Tally, held_out: HeldOut, path: str | None, spec: DatasetSpec, data: str, layout: str
) -> None:
  """Checks the class sizes, then writes dataset.json (when there is a `path`)."""
  check_class_sizes(tally, spec, held_out)
  if path is None:
    return
  tf.io.gfile.makedirs(posixpath.dirname(path))
  with tf.io.gfile.GFile(path, 'w') as out:
    json.dump(summary(tally, spec, data, layout), out, indent=2, sort_keys=True)


def _read_shard_batches(shard: layouts.Shard) -> Iterator[list]:
  return batches(layouts.read_shard(shard))


def _span_splits(
  pipeline: beam.Pipeline, data: str, options: IngestOptions, prefix: str = ''
) -> tuple[dict[str, beam.pvalue.PCollection], beam.pvalue.PCollection, HeldOut, str]:
  """(the splits of `data`, its merged Tally as a one-element PCollection, the holdouts, the
  layout). Beam labels start with `prefix` (one per span)."""
  layout = layouts.detect(data)
  shards = layouts.shards(data, layout)
  known = set(options.spec.classes)
  if layout in ('csv', 'jsonl'):
    # Which splits the manifest names decides the holdouts; reading it here also stops on a
    # malformed line or an unknown class before any worker starts.
    listed = list(layouts.read_shard(shards[0]))
    named_splits = {item.split for item in listed if item.split}
    unknown = next((item for item in listed if item.class_name not in known), None)
  else:
    named_splits = {shard.split for shard in shards if shard.split}
    unknown = next(
      (layouts.first_item(shard) for shard in shards if shard.class_name not in known | {''}),
      None,
    )
  if unknown is not None:
    raise unknown_class_error(unknown, options.spec)
  held_out = held_out_for(named_splits, options)
  # With hash holdouts alone every copy of an image goes to one split; a split the data names
  # can hold a copy of an image in another.
  to_examples = _ToExamples(options, held_out, bool(named_splits))
  outputs = (
    pipeline
    | f'{prefix}ListShards' >> beam.Create(shards)
    | f'{prefix}ReadShards' >> beam.FlatMap(_read_shard_batches)
    | f'{prefix}Spread' >> beam.Reshuffle()
    | f'{prefix}ToExamples' >> beam.ParDo(to_examples).with_outputs(*SPLITS, main='tally')
  )
  tally = outputs.tally | f'{prefix}TallyAll' >> beam.CombineGlobally(_TallyAll())
  return {name: outputs[name] for name in SPLITS}, tally, held_out, layout


def generate_splits(
  pipeline: beam.Pipeline,
  data: str,
  options: IngestOptions,
  summary_path: str | None = None,
  newest_span: int | None = None,
) -> dict[str, beam.pvalue.PCollection]:
  """Serialized tf.Examples of `data` per split; writes dataset.json to `summary_path` if given.

  The launcher lists only the shards (class folders, manifests, IDX pairs, TFRecord files), so
  a wrong directory fails before any worker starts and the pipeline graph stays small however
  many images there are; workers list, read and decode them, a batch at a time.

  With options.span_template (spans), see generate_span_splits; `newest_span` is the span TFX's
  driver resolved (the newest one listed when not given).
  """
  if options.span_template:
    return generate_span_splits(pipeline, options, summary_path, newest_span)
  splits, tally, held_out, layout = _span_splits(pipeline, data, options)
  _ = tally | 'Finish' >> beam.Map(_finish, held_out, summary_path, options.spec, data, layout)
  return splits


def spans_used(spans: list[layouts.Span], newest: int | None, train_spans: int) -> dict[str, Any]:
  """{'newest': N, 'train': [the last train_spans spans up to N], 'previous': the span before N
  or None}. `newest` None: the newest listed."""
  numbers = [span.number for span in spans]
  if newest is None:
    newest = numbers[-1]
  if newest not in numbers:
    raise DatasetError(
      f'span {newest}', f'not among the span folders found ({", ".join(map(str, numbers))})'
    )
  upto = [number for number in numbers if number <= newest]
  return {
    'newest': newest,
    'train': upto[-train_spans:],
    'previous': upto[-2] if len(upto) > 1 else None,
  }


def generate_span_splits(
  pipeline: beam.Pipeline,
  options: IngestOptions,
  summary_path: str | None = None,
  newest: int | None = None,
) -> dict[str, beam.pvalue.PCollection]:
  """Spans: train holds the train split of the last `train_spans` spans up to the newest; eval
  and test the newest span's; `previous` every image of the span before the newest (empty for
  the first span), the drift check's baseline. Each span is read once, whatever it feeds."""
  spans = layouts.list_spans(options.span_template)
  used = spans_used(spans, newest, options.train_spans)
  path_of = dict(spans)
  wanted = sorted(set(used['train']) | {used['newest']} | {used['previous']} - {None})
  per_span = {
    number: _span_splits(pipeline, path_of[number], options, prefix=f'Span{number}')
    for number in wanted
  }
  newest_splits = per_span[used['newest']][0]
  train = [per_span[number][0]['train'] for number in used['train']]
  outputs = {
    'train': train | 'TrainSpans' >> beam.Flatten(),
    'eval': newest_splits['eval'],
    'test': newest_splits['test'],
  }
  if used['previous'] is None:
    outputs[PREVIOUS_SPLIT] = pipeline | 'NoPreviousSpan' >> beam.Create([], reshuffle=False)
  else:
    previous = per_span[used['previous']][0]
    outputs[PREVIOUS_SPLIT] = [previous[name] for name in SPLITS] | 'PreviousSpan' >> beam.Flatten()
  tallies = {
    str(number): beam.pvalue.AsSingleton(tally) for number, (_, tally, _, _) in per_span.items()
  }
  facts = {
    number: (held_out, path_of[number], layout)
    for number, (_, _, held_out, layout) in per_span.items()
  }
  _ = (
    pipeline
    | 'SpansSummary' >> beam.Create([None])
    | 'FinishSpans' >> beam.Map(_finish_spans, facts, used, summary_path, options, **tallies)
  )
  return outputs


def _finish_spans(
  _, facts: dict, used: dict, path: str | None, options: IngestOptions, **tallies: Tally
) -> None:
  """Checks every span's class sizes, then writes dataset.json with the spans used: counts of
  the splits as trained on (train summed over the train spans) plus the previous span's."""
  spec = options.spec
  for number, (held_out, _, _) in facts.items():
    check_class_sizes(tallies[str(number)], spec, held_out)
  if path is None:
    return
  newest = tallies[str(used['newest'])]
  counts = Counter()
  for number in used['train']:
    for (split, index), count in tallies[str(number)].counts.items():
      if split == 'train':
        counts[('train', index)] += count
  for (split, index), count in newest.counts.items():
    if split != 'train':
      counts[(split, index)] += count
  if used['previous'] is not None:
    for (_, index), count in tallies[str(used['previous'])].counts.items():
      counts[(PREVIOUS_SPLIT, index)] += count
  merged = newest._replace(
    counts=counts,
    skipped=sorted(sum((tally.skipped for tally in tallies.values()), []))[:SKIPPED_LISTED],
    skipped_count=sum(tally.skipped_count for tally in tallies.values()),
  )
  _, data, layout = facts[used['newest']]
  record = summary(merged, spec, data, layout)
  record['counts'][PREVIOUS_SPLIT] = {
    name: counts[(PREVIOUS_SPLIT, index)] for index, name in enumerate(spec.classes)
  }
  record['spans'] = {
    **used,
    'template': options.span_template,
    'paths': {str(number): facts[number][1] for number in facts},
  }
  tf.io.gfile.makedirs(posixpath.dirname(path))
  with tf.io.gfile.GFile(path, 'w') as out:
    json.dump(record, out, indent=2, sort_keys=True)


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
    custom_config = json_utils.loads(
      exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or 'null'
    )
    options = IngestOptions.from_custom_config(custom_config)
    expected = SPAN_SPLITS if options.span_template else SPLITS
    names = utils.generate_output_split_names(input_config, output_config)
    if output_config.split_config.splits or sorted(names) != sorted(expected):
      raise ValueError(
        f'ImageExampleGen writes the splits {list(expected)}: give input_config those '
        '(component.input_config_for) and leave output_config empty'
      )
    data = layouts.data_from_input(
      exec_properties[standard_component_specs.INPUT_BASE_KEY], input_config.splits[0].pattern
    )
    span = exec_properties.get(utils.SPAN_PROPERTY_NAME)
    return generate_splits(
      pipeline,
      data,
      options,
      self._summary_path,
      newest_span=int(span) if options.span_template and span is not None else None,
    )
