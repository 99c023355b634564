"""The schema step: it ships the curated schema, and refuses one it was not compiled for."""

import os

import pytest
from tfx.types import standard_artifacts

from components import curated_schema


def _run(schema_hash, output_dir):
  schema = standard_artifacts.Schema()
  schema.uri = str(output_dir)
  executor = curated_schema.CuratedSchema.EXECUTOR_SPEC.executor_class()
  executor.Do({}, {'schema': [schema]}, {'schema_hash': schema_hash})
  return os.path.join(schema.uri, 'schema.pbtxt')


def test_the_shipped_schema_is_copied_into_the_artifact(tmp_path):
  copied = _run(curated_schema.content_hash(), tmp_path)
  with open(copied) as out, open(curated_schema.SCHEMA_FILE) as shipped:
    assert out.read() == shipped.read()


def test_an_image_with_another_schema_than_the_compiled_one_fails_naming_both(tmp_path):
  with pytest.raises(curated_schema.StaleSchemaError) as error:
    _run('0123456789abcdef', tmp_path)
  assert f'content hash {curated_schema.content_hash()}' in str(error.value)
  assert 'compiled for 0123456789abcdef' in str(error.value)
  assert not os.listdir(tmp_path)  # nothing written


def test_the_hash_follows_the_content(tmp_path):
  edited = tmp_path / 'schema.pbtxt'
  with open(curated_schema.SCHEMA_FILE) as shipped:
    edited.write_text(shipped.read().replace('max: 255', 'max: 254'))
  assert curated_schema.content_hash(str(edited)) != curated_schema.content_hash()
