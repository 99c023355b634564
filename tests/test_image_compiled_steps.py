"""The compiled Vertex / KFP spec ingests your own images through TFX's container entrypoint, as
test_kubeflow_v2 runs it for the IDX files: ImageExampleGen (driver and executor) of a
one-variant pipeline compiled for a small class-folder tree and for a Vertex CSV manifest of the
same digits, after the CuratedSchema step of their adopted schema (compiling own images needs
one)."""

import json
import os

from contract.features import DATASET_RECORD
from dataset.resolve import resolve
from tests import image_datasets
from tests.test_kubeflow_v2 import _compile_local  # pylint: disable=protected-access
from tests.test_kubeflow_v2 import run_in_container


def _adopted_schema(work_dir, built) -> str:
  """The proposed schema of `built`, adopted unchanged (compiling own images needs one)."""
  schema = os.path.join(work_dir, 'schema.pbtxt')
  with open(schema, 'w') as adopted:
    adopted.write(resolve(built.data).schema_text)
  return schema


def _ingested(spec, work_dir, curated):
  """dataset.json and the split names of ImageExampleGen run from `spec` after CuratedSchema's
  output `curated`."""
  upstream = {'CuratedSchema': curated}
  examples = run_in_container(spec, 'ImageExampleGen', upstream, work_dir)['examples']
  with open(os.path.join(examples['uri'], DATASET_RECORD)) as record:
    return json.load(record), json.loads(examples['metadata']['split_names'])


def test_compiled_image_example_gen_ingests_a_class_folder_tree_and_a_csv_manifest(tmp_path):
  inputs = {
    'folders': image_datasets.write_digits_tree(str(tmp_path / 'folders'), per_class=20),
    'csv': image_datasets.write_digits_manifest(str(tmp_path / 'csv'), per_class=20),
  }
  # The same digits in both: one adopted schema, and one CuratedSchema step serves both specs.
  schema = _adopted_schema(str(tmp_path), inputs['folders'])
  specs = {}
  for layout, built in inputs.items():
    os.makedirs(tmp_path / f'{layout}_steps')
    specs[layout] = _compile_local(str(tmp_path / f'{layout}_steps'), built.data, schema=schema)
  curated = run_in_container(specs['folders'], 'CuratedSchema', {}, str(tmp_path / 'folders_steps'))
  for layout, built in inputs.items():
    record, splits = _ingested(specs[layout], str(tmp_path / f'{layout}_steps'), curated)
    assert splits == ['train', 'eval', 'test'], layout
    assert record['layout'] == layout and record['skipped_count'] == 0
    assert record['spec']['classes'] == list(built.classes), layout
    assert (record['spec']['height'], record['spec']['width']) == (8, 8), layout
    counts = {split: sum(by_class.values()) for split, by_class in record['counts'].items()}
    assert sum(counts.values()) == 200, layout
  # The manifest's ML_USE column decided its splits.
  assert counts == {'train': 160, 'eval': 20, 'test': 20}
