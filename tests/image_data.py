"""Tiny image datasets for tests, made with PIL and numpy, and a driver for ImageExampleGen."""

import io
import json
import os

import apache_beam as beam
import numpy as np
import tensorflow as tf
from PIL import Image
from tfx.types import standard_component_specs
from tfx.utils import json_utils
from tfx.utils import proto_utils

from components.image_example_gen import executor
from components.image_example_gen.component import input_config_for
from dataset import layouts
from contract import features

PIL_FORMATS = {'png': 'PNG', 'jpeg': 'JPEG', 'gif': 'GIF', 'bmp': 'BMP'}


def image_bytes(seed: int, image_format: str = 'png', size=(8, 8), mode: str = 'L') -> bytes:
  """An encoded image of random pixels: `seed` makes each one different."""
  rng = np.random.default_rng(seed)
  channels = {'L': 1, 'LA': 2, 'RGB': 3, 'RGBA': 4}[mode]
  pixels = rng.integers(0, 256, size=(*size, channels), dtype=np.uint8)
  image = Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels, mode)
  out = io.BytesIO()
  image.save(out, format=PIL_FORMATS[image_format])
  return out.getvalue()


def write(path, content: bytes) -> str:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'wb') as out:
    out.write(content)
  return str(path)


def class_folders(root, counts: dict, split: str | None = None, first_seed: int = 0) -> str:
  """root[/split]/<class>/<n>.png: counts[class] distinct 8x8 grayscale PNGs per class."""
  seed = first_seed
  for class_name, count in counts.items():
    for index in range(count):
      seed += 1
      parts = [str(root)] + ([split] if split else []) + [class_name, f'{index:03d}.png']
      write(os.path.join(*parts), image_bytes(seed))
  return str(root)


def run_executor(data, out_dir, custom_config=None, resolved=None):
  """The executor's Beam pipeline as TFX runs it: ({split: [tf.Example]}, dataset.json), the
  examples written in TFX's layout, <out_dir>/Split-<name>/data-*. `resolved` is what TFX's
  driver gives the executor (input base and config, span); default: those of plain `data`."""
  if resolved is None:
    input_base, input_config = input_config_for(str(data), layouts.detect(str(data)))
    resolved = {
      standard_component_specs.INPUT_BASE_KEY: input_base,
      standard_component_specs.INPUT_CONFIG_KEY: proto_utils.proto_to_json(input_config),
    }
  exec_properties = {
    **resolved,
    standard_component_specs.OUTPUT_CONFIG_KEY: '{}',
    standard_component_specs.CUSTOM_CONFIG_KEY: json_utils.dumps(custom_config or {}),
  }
  out_dir = str(out_dir)
  gen = executor.Executor()
  gen._summary_path = os.path.join(out_dir, executor.SUMMARY_FILE)
  with beam.Pipeline() as pipeline:
    splits = gen.GenerateExamplesByBeam(pipeline, exec_properties)
    for name, records in splits.items():
      _ = records | f'Write[{name}]' >> beam.io.WriteToTFRecord(
        os.path.join(out_dir, f'Split-{name}', 'data')
      )
  written = {
    name: [
      tf.train.Example.FromString(record.numpy())
      for record in tf.data.TFRecordDataset(
        tf.io.gfile.glob(os.path.join(out_dir, f'Split-{name}', 'data*'))
      )
    ]
    for name in splits
  }
  with open(gen._summary_path) as summary:
    return written, json.load(summary)


def spec_config(classes, height=8, width=8, channels=1) -> dict:
  spec = features.DatasetSpec(tuple(classes), height, width, channels)
  return {features.DATASET_SPEC_KEY: spec.to_json()}


def value(example, key):
  feature = example.features.feature[key]
  return (feature.bytes_list.value or feature.int64_list.value or feature.float_list.value)[0]
