"""Beam executor that turns IDX gz files into tf.Examples split train / eval / test.

Splits whose input patterns match the same files (by default `train` and `eval`,
both on the 60k training file) share those examples: a hash of the example
index sends `eval_percent` of them to the holdout split and the rest to the
other. The hash depends on nothing but the index, so the split is identical on
every run and on every runner (DirectRunner, Dataflow).
"""

import hashlib
from typing import Any, Dict, Iterable, List, Tuple

import apache_beam as beam
import numpy as np
import tensorflow as tf
from tfx.components.example_gen import base_example_gen_executor
from tfx.components.example_gen import utils
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs
from tfx.utils import json_utils
from tfx.utils import proto_utils

from components.idx_example_gen import idx
from trainer import features

HOLDOUT_SPLIT_KEY = 'holdout_split'
EVAL_PERCENT_KEY = 'eval_percent'
DEFAULT_HOLDOUT_SPLIT = 'eval'
DEFAULT_EVAL_PERCENT = 10


def is_holdout(index: int, percent: int) -> bool:
  """True for the examples whose index hashes into the first `percent` of 100 buckets."""
  digest = hashlib.sha256(str(index).encode('ascii')).digest()
  return int.from_bytes(digest[:8], 'big') % 100 < percent


def to_example(image: np.ndarray, label: int) -> bytes:
  """Serializes one image and its label.

  Pixels are stored as 784 int64 values rather than PNG or raw bytes: that is
  the encoding StatisticsGen computes numeric statistics on, so the schema can
  check each value lies in 0..255 and every image has exactly 784 of them.
  """
  example = tf.train.Example()
  example.features.feature[features.IMAGE_KEY].int64_list.value.extend(image.reshape(-1).tolist())
  example.features.feature[features.LABEL_KEY].int64_list.value.append(int(label))
  # Protobuf orders a map's entries (the features) by a hash seeded per process: the same
  # example got other bytes in each Beam worker process. Sorted, the bytes are the same anywhere.
  return example.SerializeToString(deterministic=True)


def _holdout_partition(record: Tuple[int, bytes], num_partitions: int, percent: int) -> int:
  del num_partitions  # always 2: kept, held out
  return int(is_holdout(record[0], percent))


def _read_examples(pair: idx.IdxPair) -> Iterable[Tuple[int, bytes]]:
  images, labels = idx.read_pair(pair)
  for index, (image, label) in enumerate(zip(images, labels)):
    yield index, to_example(image, label)


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
  """Reads each distinct IDX images/labels pair once and writes the configured splits."""

  def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
    raise NotImplementedError(
      'IDX splits share input files, so this executor overrides GenerateExamplesByBeam instead.'
    )

  def GenerateExamplesByBeam(
    self, pipeline: beam.Pipeline, exec_properties: Dict[str, Any]
  ) -> Dict[str, beam.pvalue.PCollection]:
    input_config = example_gen_pb2.Input()
    proto_utils.json_to_proto(
      exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config
    )
    output_config = example_gen_pb2.Output()
    proto_utils.json_to_proto(
      exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY], output_config
    )
    if output_config.split_config.splits:
      raise ValueError(
        'IdxExampleGen splits by input_config; leave output_config.split_config empty.'
      )
    custom_config = (
      json_utils.loads(exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or 'null')
      or {}
    )
    holdout_split = custom_config.get(HOLDOUT_SPLIT_KEY, DEFAULT_HOLDOUT_SPLIT)
    eval_percent = int(custom_config.get(EVAL_PERCENT_KEY, DEFAULT_EVAL_PERCENT))
    input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]

    splits_by_pattern: Dict[str, List[str]] = {}
    for split in input_config.splits:
      splits_by_pattern.setdefault(split.pattern, []).append(split.name)

    result = {}
    for pattern, split_names in splits_by_pattern.items():
      # Checked here, on the launcher, so a wrong directory fails before any worker starts.
      pair = idx.find_pair(input_base, pattern)
      indexed = (
        pipeline
        | f'Locate[{pattern}]' >> beam.Create([pair])
        | f'Read[{pattern}]' >> beam.FlatMap(_read_examples)
        | f'Spread[{pattern}]' >> beam.Reshuffle()
      )
      if len(split_names) == 1:
        result[split_names[0]] = indexed | f'Drop index[{pattern}]' >> beam.Values()
        continue
      if len(split_names) != 2 or holdout_split not in split_names:
        raise ValueError(
          f'splits {split_names} share pattern {pattern!r}; only two can, one of them {holdout_split!r}'
        )
      kept_split = next(name for name in split_names if name != holdout_split)
      kept, held_out = indexed | f'Holdout[{pattern}]' >> beam.Partition(
        _holdout_partition, 2, eval_percent
      )
      result[kept_split] = kept | f'Drop index[{kept_split}]' >> beam.Values()
      result[holdout_split] = held_out | f'Drop index[{holdout_split}]' >> beam.Values()

    expected = utils.generate_output_split_names(input_config, output_config)
    return {name: result[name] for name in expected}
