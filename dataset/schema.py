"""The proposed schema for a new dataset, and the class list an adopted schema records.

A schema for the contract's examples: `image` BYTES, `label` INT categorical 0..N-1, the scalar
metadata with domains, and the class names as a global string_domain `classes` (label i is
the i-th value), so an adopted schema fixes the class order for every later run.
"""

import os

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from contract import features
from dataset import images
from dataset.errors import DatasetError

CLASSES_DOMAIN = 'classes'
# Fashion-MNIST's curated schema, package data of `pipeline`: what the default run adopts.
FASHION_MNIST_SCHEMA_FILE = os.path.join(
  os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'pipeline', 'schema', 'schema.pbtxt'
)
ADOPT_HEADER = """\
# Proposed schema for {data}
# Inferred from the data: {classes} classes, images {size}. ExampleValidator checks every
# split against it. To adopt it (and keep the class order, label i = the i-th `classes` value,
# for every later run): keep this file with your data, review its domains (tighten or widen
# image sizes, formats, brightness), and pass it with --schema FILE (config: schema).
"""


def _scalar(schema: schema_pb2.Schema, name: str, kind: int) -> schema_pb2.Feature:
  feature = schema.feature.add(name=name, type=kind)
  feature.presence.min_fraction = 1.0
  feature.presence.min_count = 1
  feature.shape.SetInParent()  # a scalar: one value in every example
  return feature


def contract_schema(
  classes: tuple[str, ...],
  height: tuple[int, int] | None = None,
  width: tuple[int, int] | None = None,
  channels: tuple[int, int] = (1, 4),
  formats: tuple[str, ...] = features.IMAGE_FORMATS,
) -> schema_pb2.Schema:
  """The schema of the examples: `height` / `width` are (min, max) when the data fixes them."""
  schema = schema_pb2.Schema()
  _scalar(schema, features.IMAGE_KEY, schema_pb2.BYTES)
  label = _scalar(schema, features.LABEL_KEY, schema_pb2.INT)
  label.int_domain.min = 0
  label.int_domain.max = len(classes) - 1
  label.int_domain.is_categorical = True
  for key, bounds in ((features.HEIGHT_KEY, height), (features.WIDTH_KEY, width)):
    domain = _scalar(schema, key, schema_pb2.INT).int_domain
    # A side can be as long as the pixel limit allows with the other side 1.
    domain.min, domain.max = bounds or (1, images.DEFAULT_MAX_IMAGE_PIXELS)
  channel_domain = _scalar(schema, features.CHANNELS_KEY, schema_pb2.INT).int_domain
  channel_domain.min, channel_domain.max = channels
  byte_size = _scalar(schema, features.BYTE_SIZE_KEY, schema_pb2.INT).int_domain
  byte_size.min, byte_size.max = 1, images.DEFAULT_MAX_IMAGE_BYTES
  _scalar(schema, features.FORMAT_KEY, schema_pb2.BYTES).string_domain.value.extend(formats)
  brightness = _scalar(schema, features.MEAN_INTENSITY_KEY, schema_pb2.FLOAT).float_domain
  brightness.min, brightness.max = 0.0, float(features.MAX_PIXEL_VALUE)
  schema.string_domain.add(name=CLASSES_DOMAIN, value=classes)
  return schema


def proposed_schema_text(data: str, classes: tuple[str, ...], size: str) -> str:
  """The proposed schema as text, with the header saying how to adopt it."""
  schema = contract_schema(classes)
  header = ADOPT_HEADER.format(data=data, classes=len(classes), size=size)
  return header + text_format.MessageToString(schema)


def parse(text: str, source: str) -> schema_pb2.Schema:
  try:
    return text_format.Parse(text, schema_pb2.Schema())
  except text_format.ParseError as error:
    raise DatasetError(source, f'not a schema in text format ({error})') from error


def classes_from_schema(text: str, source: str) -> tuple[str, ...]:
  """The class names an adopted schema records, checked against its label domain."""
  schema = parse(text, source)
  domain = next((d for d in schema.string_domain if d.name == CLASSES_DOMAIN), None)
  if domain is None or not domain.value:
    raise DatasetError(
      source,
      f"no string_domain {CLASSES_DOMAIN!r} with the class names (label i is the i-th value); "
      'start from the proposed schema a run wrote',
    )
  classes = tuple(domain.value)
  label = next((f for f in schema.feature if f.name == features.LABEL_KEY), None)
  domain_bounds = (label.int_domain.min, label.int_domain.max) if label else None
  if label and label.HasField('int_domain') and domain_bounds != (0, len(classes) - 1):
    raise DatasetError(
      source,
      f'label domain {domain_bounds[0]}..{domain_bounds[1]} does not match the '
      f'{len(classes)} classes of string_domain {CLASSES_DOMAIN!r} (0..{len(classes) - 1})',
    )
  return classes
