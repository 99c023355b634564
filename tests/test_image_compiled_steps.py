"""The compiled Vertex / KFP spec ingests your own images through TFX's container entrypoint, as
test_kubeflow_v2 runs it for the IDX files: CuratedSchema and ImageExampleGen (driver and
executor) of a one-variant pipeline compiled for a small class-folder tree and for a Vertex CSV
manifest, each with its adopted schema (compiling own images needs one)."""

import json
import os

import pytest

from contract.features import DATASET_RECORD
from dataset.resolve import resolve
from tests import image_datasets
from tests.test_kubeflow_v2 import _compile_local  # pylint: disable=protected-access
from tests.test_kubeflow_v2 import run_in_container

STEPS = ('CuratedSchema', 'ImageExampleGen')


def _ingested(work_dir, built):
  """dataset.json and the split names of ImageExampleGen run from the compiled spec."""
  os.makedirs(work_dir)
  schema = os.path.join(work_dir, 'schema.pbtxt')
  with open(schema, 'w') as adopted:
    adopted.write(resolve(built.data).schema_text)  # the proposed schema, adopted unchanged
  spec = _compile_local(work_dir, built.data, schema=schema)
  upstream = {}
  for task in STEPS:
    upstream[task] = run_in_container(spec, task, upstream, work_dir)
  examples = upstream['ImageExampleGen']['examples']
  with open(os.path.join(examples['uri'], DATASET_RECORD)) as record:
    return json.load(record), json.loads(examples['metadata']['split_names'])


@pytest.mark.parametrize('layout', ['folders', 'csv'])
def test_compiled_image_example_gen_ingests_own_images(tmp_path, layout):
  if layout == 'folders':
    built = image_datasets.write_digits_tree(str(tmp_path / 'data'), per_class=20)
  else:
    built = image_datasets.write_digits_manifest(str(tmp_path / 'data'), per_class=20)
  record, splits = _ingested(str(tmp_path / 'work'), built)
  assert splits == ['train', 'eval', 'test']
  assert record['layout'] == layout and record['skipped_count'] == 0
  assert record['spec']['classes'] == list(built.classes)
  assert (record['spec']['height'], record['spec']['width']) == (8, 8)
  counts = {split: sum(by_class.values()) for split, by_class in record['counts'].items()}
  assert sum(counts.values()) == 200
  if layout == 'csv':  # the manifest's ML_USE column decides the splits
    assert counts == {'train': 160, 'eval': 20, 'test': 20}
