"""The schema step: it writes the schema text it was compiled with, and refuses one that is not."""

import glob
import os

import pytest
import tensorflow_data_validation as tfdv
from tfx.types import standard_artifacts

from components import curated_schema
from contract import features
from contract.features import FASHION_MNIST
from dataset import schema as dataset_schema
from dataset.errors import DatasetError
from tests import idx_files
from tests import image_data


def _run(schema_text, output_dir):
  schema = standard_artifacts.Schema()
  schema.uri = str(output_dir)
  executor = curated_schema.CuratedSchema.EXECUTOR_SPEC.executor_class()
  executor.Do({}, {'schema': [schema]}, {'schema_text': schema_text})
  return os.path.join(schema.uri, curated_schema.OUTPUT_FILE)


def _shipped() -> str:
  with open(curated_schema.SCHEMA_FILE) as shipped:
    return shipped.read()


def test_the_schema_text_is_written_into_the_artifact(tmp_path):
  with open(_run(_shipped(), tmp_path)) as written:
    assert written.read() == _shipped()


def test_text_that_is_not_a_schema_fails_naming_it_and_writes_nothing(tmp_path):
  with pytest.raises(DatasetError, match='schema_text: not a schema in text format'):
    _run('feature { nme: "image" }', tmp_path)
  assert not os.listdir(tmp_path)


def test_the_shipped_schema_is_fashion_mnist_s_contract():
  schema = dataset_schema.parse(_shipped(), curated_schema.SCHEMA_FILE)
  by_name = {feature.name: feature for feature in schema.feature}
  assert set(by_name) == {features.IMAGE_KEY, features.LABEL_KEY, *features.METADATA_KEYS}
  assert dataset_schema.classes_from_schema(_shipped(), 'shipped') == FASHION_MNIST.classes
  for key in (features.HEIGHT_KEY, features.WIDTH_KEY):
    assert (by_name[key].int_domain.min, by_name[key].int_domain.max) == (28, 28)
  channels = by_name[features.CHANNELS_KEY].int_domain
  assert (channels.min, channels.max) == (1, 1)
  assert list(by_name[features.FORMAT_KEY].string_domain.value) == ['png']


def test_the_shipped_schema_accepts_what_image_example_gen_makes_of_the_idx_files(tmp_path):
  data_dir = idx_files.write_fashion_mnist_like(str(tmp_path / 'idx'), 200, test_count=20)
  image_data.run_executor(data_dir, tmp_path / 'out')
  schema = dataset_schema.parse(_shipped(), curated_schema.SCHEMA_FILE)
  for split in ('train', 'test'):
    records = glob.glob(str(tmp_path / 'out' / f'Split-{split}' / 'data*'))[0]
    stats = tfdv.generate_statistics_from_tfrecord(records)
    assert not tfdv.validate_statistics(stats, schema).anomaly_info
