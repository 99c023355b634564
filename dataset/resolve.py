"""The build-time profile: what `data` holds, decided before the pipeline is built.

resolve() lists the data (folders and manifests fully, TFRecords' labels), decodes a
deterministic sample of at most SAMPLE_SIZE images for their sizes, and returns the
DatasetSpec every step gets, the schema text for CuratedSchema, and lines for the run summary.

- Classes: the adopted schema's `classes`, else the served model's classes (so label indices
  never shift under a served model), else the data's names sorted (folder names, manifest
  labels, TFRecord text labels; int labels in numeric order, or TFDS' names in its order).
  A class in the data outside that list stops with one line naming it and a file.
- Size: the option, else every sampled image's size when they all agree, else the median
  height and width; either way within 8..224 (MIN_SIDE..MAX_SIDE), the range the model is built
  for. Channels: the option, else 1 when every sampled image is grayscale, else 3.
"""

import dataclasses
import statistics
from collections.abc import Sequence

import tensorflow as tf

from contract.features import FASHION_MNIST, DatasetSpec
from dataset import images, layouts
from dataset import schema as dataset_schema
from dataset.errors import DatasetError

SAMPLE_SIZE = 300
MIN_SIDE = 8
MAX_SIDE = 224


@dataclasses.dataclass(frozen=True)
class ResolvedDataset:
  layout: str
  spec: DatasetSpec
  schema_text: str
  proposed: bool  # True: schema_text was inferred here, for the user to review and adopt
  facts: list[str]  # lines for the run summary
  # data that keeps arriving: the data with {SPAN} (layouts.span_template); None without spans
  span_template: str | None = None


def parse_image_size(image_size: int | str | Sequence[int] | None) -> tuple[int, int] | None:
  """'N', 'HxW', N or (H, W) → (height, width); None stays None."""
  if image_size is None:
    return None
  if isinstance(image_size, int):
    return image_size, image_size
  if isinstance(image_size, str):
    parts = image_size.lower().split('x')
    if len(parts) in (1, 2) and all(part.strip().isdigit() for part in parts):
      sides = [int(part) for part in parts]
      return sides[0], sides[-1]
    raise DatasetError('image_size', f'{image_size!r} is not N or HxW (e.g. 64 or 48x64)')
  height, width = image_size
  return int(height), int(width)


def _sample_positions(count: int, size: int = SAMPLE_SIZE) -> list[int]:
  """At most `size` positions spread evenly over `count` items: the same on every run."""
  if count <= size:
    return list(range(count))
  return [index * count // size for index in range(size)]


def _listed_profile(data: str, layout: str) -> tuple[list[layouts.Item], list[layouts.Item]]:
  """(every item, the sampled items) of a folder tree or manifest."""
  listed = list(layouts.items(data))
  return listed, [listed[position] for position in _sample_positions(len(listed))]


def _tfrecord_profile(data: str) -> tuple[list[layouts.Item], list[layouts.Item], tuple[str, ...]]:
  """(every record as an Item without its bytes, the sampled records, TFDS' label names)."""
  shards = layouts.tfrecord_shards(data)
  per_shard = -(-SAMPLE_SIZE // len(shards))
  every, sampled = [], []
  for shard in shards:
    for index, item in enumerate(layouts.read_shard(shard)):
      every.append(item._replace(content=b''))
      if index < per_shard:
        sampled.append(item)
  return every, sampled, shards[0].label_names


def _data_classes(items: list[layouts.Item], layout: str, names: tuple[str, ...]) -> list[str]:
  found = {item.class_name for item in items}
  if names:  # TFDS: label i is names[i]
    return list(names)
  if layout == 'tfrecord' and all(name.lstrip('-').isdigit() for name in found):
    return sorted(found, key=int)
  return sorted(found)


def _check_known(items: list[layouts.Item], classes: Sequence[str], origin: str) -> None:
  known = set(classes)
  for item in items:
    if item.class_name not in known:
      raise DatasetError(
        item.source,
        f'class {item.class_name!r} is not one of the {len(classes)} classes of {origin}: '
        'add it there (a new model then serves it), or remove these images',
      )


def _sampled_facts(sampled: list[layouts.Item]) -> tuple[list[images.ImageFacts], int]:
  """The sampled images' facts, and how many of them could not be read or decoded."""
  facts, unreadable = [], 0
  for item in sampled:
    try:
      content = layouts.read_content(item)
    except DatasetError:
      unreadable += 1
      continue
    result = images.inspect_batch([content], [item.source])[0]
    if isinstance(result, DatasetError):
      unreadable += 1
    else:
      facts.append(result)
  return facts, unreadable


def _clamp(side: int) -> int:
  return min(MAX_SIDE, max(MIN_SIDE, side))


def _size_from_data(facts: list[images.ImageFacts]) -> tuple[int, int, str]:
  sizes = {(fact.height, fact.width) for fact in facts}
  if len(sizes) == 1:
    height, width = sizes.pop()
    how = f'every sampled image is {height}x{width}'
  else:
    height = int(statistics.median(fact.height for fact in facts))
    width = int(statistics.median(fact.width for fact in facts))
    how = f'the median of {len(facts)} sampled images in {len(sizes)} sizes'
  if (_clamp(height), _clamp(width)) != (height, width):
    how += f', brought within {MIN_SIDE}..{MAX_SIDE}'
  return _clamp(height), _clamp(width), how


def _read_text(path: str) -> str:
  try:
    with tf.io.gfile.GFile(path, 'r') as text:
      return text.read()
  except tf.errors.NotFoundError as error:
    raise DatasetError(path, 'schema file not found') from error


def _shipped_schema_text() -> str:
  with open(dataset_schema.FASHION_MNIST_SCHEMA_FILE) as shipped:
    return shipped.read()


def fashion_mnist_dataset(
  data: str,
  size_option: tuple[int, int] | None = None,
  channels: int | None = None,
  schema_path: str | None = None,
  adopted: str | None = None,
) -> ResolvedDataset:
  """The Fashion-MNIST IDX files in `data`, told without reading them (compiling reads no data).
  `data` may hold {SPAN}: spans of IDX files."""
  height, width = size_option or (FASHION_MNIST.height, FASHION_MNIST.width)
  spec = DatasetSpec(FASHION_MNIST.classes, height, width, channels or FASHION_MNIST.channels)
  return ResolvedDataset(
    'idx',
    spec,
    adopted or _shipped_schema_text(),
    False,
    [
      f'data: {data} (Fashion-MNIST IDX files: 60000 train, 10000 test)',
      f'schema: {schema_path or "the shipped Fashion-MNIST curated schema"}',
      f'images: {height}x{width}, {spec.channels} channel(s)',
    ],
    data if layouts.SPAN_TOKEN in data else None,
  )


def resolve(
  data: str,
  *,
  schema_path: str | None = None,
  image_size: int | str | Sequence[int] | None = None,
  channels: int | None = None,
  served_classes: Sequence[str] | None = None,
) -> ResolvedDataset:
  """The DatasetSpec, schema text and summary lines for `data`; DatasetError on bad input.

  Spans (layouts.span_template): every span folder is listed (an empty one stops), and the
  newest span decides as `data` would alone.
  """
  template = layouts.span_template(data)
  if template is not None:
    spans = layouts.list_spans(template)
    newest = spans[-1]
    resolved = resolve(
      newest.path,
      schema_path=schema_path,
      image_size=image_size,
      channels=channels,
      served_classes=served_classes,
    )
    numbers = ', '.join(str(span.number) for span in spans)
    line = f'spans: {numbers} (newest {newest.number}: {newest.path}; template {template})'
    return dataclasses.replace(resolved, facts=[line, *resolved.facts], span_template=template)
  layout = layouts.detect(data)
  size_option = parse_image_size(image_size)
  adopted = _read_text(schema_path) if schema_path else None
  if layout == 'idx':
    layouts.idx_shards(data)  # the four files are there
    return fashion_mnist_dataset(data, size_option, channels, schema_path, adopted)

  if layout == 'tfrecord':
    items, sampled, names = _tfrecord_profile(data)
  else:
    (items, sampled), names = _listed_profile(data, layout), ()
  if not items:
    raise DatasetError(data, 'holds no images')
  data_classes = _data_classes(items, layout, names)
  if adopted is not None:
    classes, origin = dataset_schema.classes_from_schema(adopted, schema_path), schema_path
  elif served_classes:
    classes, origin = tuple(served_classes), 'the served model'
  else:
    classes, origin = tuple(data_classes), 'the data'
  _check_known(items, classes, origin)

  facts, unreadable = _sampled_facts(sampled)
  lines = [f'data: {data} ({layout}: {len(items)} images, {len(data_classes)} classes)']
  if size_option:
    height, width, how = *size_option, 'image_size option'
  elif facts:
    height, width, how = _size_from_data(facts)
  else:
    raise DatasetError(data, f'none of the {len(sampled)} sampled images could be decoded')
  if channels:
    channel_how = 'channels option'
  else:
    channels = 1 if all(fact.channels <= 2 for fact in facts) else 3
    channel_how = 'every sampled image is grayscale' if channels == 1 else 'some are in color'
  spec = DatasetSpec(classes, height, width, channels)
  lines.append(f'classes ({len(classes)}, label order from {origin}): {", ".join(classes)}')
  lines.append(
    f'images: {height}x{width}, {channels} channel(s) ({how}; {channel_how}; {len(facts)} of '
    f'{len(items)} images sampled); Transform resizes any other size to it'
  )
  if unreadable:
    lines.append(
      f'{unreadable} sampled images could not be read or decoded: ExampleGen will name them '
      '(bad_images: stop or skip)'
    )
  if adopted is not None:
    lines.append(f'schema: adopted {schema_path}')
    return ResolvedDataset(layout, spec, adopted, False, lines)
  lines.append('schema: proposed (inferred; review it and pass it with --schema to adopt it)')
  size_text = f'resized to {height}x{width}x{channels}'
  schema_text = dataset_schema.proposed_schema_text(data, classes, size_text)
  return ResolvedDataset(layout, spec, schema_text, True, lines)
