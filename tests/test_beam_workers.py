"""Local Beam steps on several worker processes (--beam-workers): every Beam step gets DirectRunner's
multi-process options, deployments do not, and two workers give what one gives.

The data steps run twice on the same tiny files, in-process and on two worker processes; the
records may come out in another order and other files (each worker writes its own shard), so
examples are compared as multisets, statistics and metrics as values.
"""

import collections
import glob
import io
import json
import os
from typing import NamedTuple

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
import tensorflow_model_analysis as tfma
import tensorflow_transform as tft
from apache_beam.options.pipeline_options import PipelineOptions
from rich.console import Console
from tfx import v1 as tfx
from tfx.dsl.compiler import compiler
from tfx.orchestration import pipeline as tfx_pipeline
from tfx.orchestration.local import runner_utils

from components.variant_selection import evaluation
from pipeline import cli
from pipeline import local_runner
from pipeline import progress
from pipeline.config import BEAM_COMPONENT_KINDS
from pipeline.config import PipelineConfig
from pipeline.pipeline import eval_config
from tests import idx_files
from tests import serving_model
from tests.test_kubeflow_v2 import VERTEX
from tests.test_kubeflow_v2 import _executor
from tests.test_kubeflow_v2 import _write_config
from contract import features
from trainer.config import ZSCORE_SCALING
from trainer.model import build_model

SPLITS = ('train', 'eval', 'test')
WORKER_COUNTS = (1, 2)
_TWO_WORKERS = ['--direct_running_mode=multi_processing', '--direct_num_workers=2']


class DataSteps(NamedTuple):
  root: str  # the pipeline root
  console: str  # what the console showed
  log: str  # the run's log file


def _beam_args_by_node(config):
  """Each Beam node's DirectRunner args in the IR LocalDagRunner runs."""
  deployment = runner_utils.extract_local_deployment_config(
    compiler.Compiler().compile(local_runner.local_pipeline(config))
  )
  specs = {
    node: runner_utils.extract_executor_spec(deployment, node) for node in deployment.executor_specs
  }
  return {
    node: list(spec.beam_pipeline_args)
    for node, spec in specs.items()
    if hasattr(spec, 'beam_pipeline_args')
  }


def test_every_local_beam_step_gets_the_worker_processes(tmp_path):
  config = PipelineConfig(
    output_root=str(tmp_path), data_dir=str(tmp_path), variants=('none', 'batch'), beam_workers=2
  )
  by_node = _beam_args_by_node(config)
  assert sorted(by_node) == [
    'Evaluator_batch',
    'Evaluator_none',
    'ImageExampleGen',
    'StatisticsGen',
    'Transform',
  ]
  assert {node.split('_')[0] for node in by_node} == set(BEAM_COMPONENT_KINDS)
  assert all(args == _TWO_WORKERS for args in by_node.values()), by_node


def test_by_default_each_step_runs_in_process_and_more_workers_are_asked_for(tmp_path):
  config = PipelineConfig(output_root=str(tmp_path), data_dir=str(tmp_path), variants=('none',))
  assert set(map(tuple, _beam_args_by_node(config).values())) == {
    ('--direct_running_mode=in_memory', '--direct_num_workers=1')
  }
  cli_config = cli.config_from_args(cli._parser().parse_args(['run', '--beam-workers', '3']))
  assert local_runner.beam_args(cli_config.beam_workers) == [
    '--direct_running_mode=multi_processing',
    '--direct_num_workers=3',
  ]


def test_the_compiled_deployment_keeps_its_in_container_runner(tmp_path):
  """The Vertex / KFP spec does not depend on the local machine: no worker processes in it."""
  path = str(tmp_path / 'pipeline.json')
  config = _write_config(str(tmp_path), {**VERTEX, 'dataflow': None})
  assert cli.main(['compile', '--config', config, '--output', path]) == 0
  with open(path) as compiled:
    text = compiled.read()
  assert 'direct_num_workers' not in text and 'multi_processing' not in text
  spec = json.loads(text)['pipelineSpec']
  for task in ('ImageExampleGen', 'StatisticsGen', 'Transform', 'Evaluator_batch'):
    assert '--direct_running_mode=in_memory' in _executor(spec, task)['container']['args'], task


@pytest.fixture(scope='module')
def data_steps(tmp_path_factory):
  """ExampleGen, StatisticsGen and Transform (z-score scaling, so its analyzers run) of the local
  pipeline on the same tiny files, with 1 and with 2 worker processes, shown and logged as `run`
  does: {workers: DataSteps}."""
  data_dir = idx_files.write_fashion_mnist_like(str(tmp_path_factory.mktemp('data')))
  roots = {}
  for workers in WORKER_COUNTS:
    config = PipelineConfig(
      output_root=str(tmp_path_factory.mktemp(f'workers{workers}')),
      data_dir=data_dir,
      variants=('none',),
      pixel_scaling=ZSCORE_SCALING,
      beam_workers=workers,
    )
    console = io.StringIO()
    log_path = os.path.join(config.output_root, 'run.log')
    with (
      local_runner.workers_import_this_code(),
      progress.console_progress(log_path, Console(file=console)),
    ):
      tfx.orchestration.LocalDagRunner().run(
        local_runner.local_pipeline(config),
        run_options=tfx_pipeline.RunOptions(to_nodes=['Transform']),
      )
    with open(log_path) as log:
      roots[workers] = DataSteps(config.pipeline_root, console.getvalue(), log.read())
  return roots


def test_with_worker_processes_progress_and_the_log_still_work(data_steps):
  """The console shows each Beam step start and end; the log gets the workers' own warnings
  (Beam forwards their records to the runner's logger; `run` logs warnings and up from there)."""
  run = data_steps[2]
  for step in ('ImageExampleGen', 'StatisticsGen', 'Transform'):
    assert f'▶ {step} ...' in run.console and f'✓ {step} (' in run.console, run.console
  assert 'Worker: severity: WARN' in run.log
  assert 'Worker: severity' not in data_steps[1].log  # in-process: no worker to forward from


def _output(root, component, output, *parts):
  (path,) = glob.glob(os.path.join(root, component, output, '*', *parts))
  return path


def _records(split_dir):
  files = sorted(glob.glob(os.path.join(split_dir, '*.gz')))
  return [record.numpy() for record in tf.data.TFRecordDataset(files, compression_type='GZIP')]


@pytest.mark.parametrize('split', SPLITS)
def test_two_workers_write_the_same_examples(data_steps, split):
  by_workers = {
    workers: _records(_output(root, 'ImageExampleGen', 'examples', f'Split-{split}'))
    for workers, (root, *_) in data_steps.items()
  }
  assert by_workers[1]
  assert collections.Counter(by_workers[2]) == collections.Counter(by_workers[1])


@pytest.mark.parametrize('split', SPLITS)
def test_two_workers_compute_the_same_statistics(data_steps, split):
  def features_of(root):
    stats = tfdv.load_stats_binary(
      _output(root, 'StatisticsGen', 'statistics', f'Split-{split}', 'FeatureStats.pb')
    )
    (dataset,) = stats.datasets
    return dataset.num_examples, {f.path.step[0]: f for f in dataset.features}

  (count_1, features_1), (count_2, features_2) = (
    features_of(data_steps[w].root) for w in WORKER_COUNTS
  )
  assert count_2 == count_1 > 0
  assert (
    sorted(features_2)
    == sorted(features_1)
    == sorted([features.IMAGE_KEY, features.LABEL_KEY, *features.METADATA_KEYS])
  )
  for name, feature in features_1.items():
    one, two = feature.num_stats, features_2[name].num_stats
    # Counts, extremes and histogram counts are exact; sums of floats merge in another order.
    assert (two.common_stats, two.num_zeros, two.min, two.max) == (
      one.common_stats,
      one.num_zeros,
      one.min,
      one.max,
    )
    np.testing.assert_allclose([two.mean, two.std_dev], [one.mean, one.std_dev], rtol=1e-9)
    assert [list(h.buckets) for h in two.histograms] == [list(h.buckets) for h in one.histograms]


def test_two_workers_give_the_same_transform(data_steps):
  outputs = {
    workers: tft.TFTransformOutput(_output(root, 'Transform', 'transform_graph'))
    for workers, (root, *_) in data_steps.items()
  }
  raw = _records(_output(data_steps[1].root, 'ImageExampleGen', 'examples', 'Split-test'))
  spec = outputs[1].raw_feature_spec()
  parsed = tf.io.parse_example(tf.constant(raw), spec)
  transformed = {
    workers: output.transform_raw_features(dict(parsed))[features.IMAGE_KEY].numpy()
    for workers, output in outputs.items()
  }
  # z-scored (the analyzers' mean and std differ from 0 and 1), the same with either count.
  assert abs(transformed[1].mean()) < 0.5 and not np.allclose(transformed[1], _unit_scaled(parsed))
  np.testing.assert_allclose(transformed[2], transformed[1], rtol=1e-6, atol=1e-6)
  for split in ('train', 'eval'):
    by_workers = {
      workers: _transformed(_output(root, 'Transform', 'transformed_examples', f'Split-{split}'))
      for workers, (root, *_) in data_steps.items()
    }
    # The analyzers' float sums merge in another order: the mean and std, so every scaled pixel,
    # may differ in the last bits.
    assert by_workers[2].shape == by_workers[1].shape and len(by_workers[1]), split
    np.testing.assert_allclose(by_workers[2], by_workers[1], rtol=1e-6, atol=1e-6, err_msg=split)


def _transformed(split_dir):
  """The transformed examples as (label, scaled pixels) rows, in an order of their own."""
  rows = []
  for record in _records(split_dir):
    feature = tf.train.Example.FromString(record).features.feature
    rows.append(
      [
        feature[features.LABEL_KEY].int64_list.value[0],
        *feature[features.IMAGE_KEY].float_list.value,
      ]
    )
  rows = np.array(rows)
  return rows[np.lexsort(np.round(rows, 3).T[::-1])]


def _unit_scaled(parsed):
  pixels = [tf.io.decode_png(encoded).numpy() for encoded in parsed[features.IMAGE_KEY]]
  return np.stack(pixels).astype(np.float32) / 255.0


def test_two_workers_compute_the_same_metrics(data_steps, tmp_path):
  """TFMA as the Evaluator runs it, ECE (trainer.calibration, imported by name in each worker)
  included, on one model and the eval split."""
  images = idx_files.learnable_images(np.arange(40) % 10, seed=0)
  model_dir = serving_model.export_version(
    str(tmp_path), build_model('batch', seed=0), 'batch', images
  )
  config = eval_config()
  eval_split = _output(data_steps[1].root, 'ImageExampleGen', 'examples', 'Split-eval')
  metrics = {}
  for workers in WORKER_COUNTS:
    output = str(tmp_path / f'tfma{workers}')
    with local_runner.workers_import_this_code():
      tfma.run_model_analysis(
        eval_shared_model=tfma.default_eval_shared_model(model_dir, eval_config=config),
        eval_config=config,
        data_location=os.path.join(eval_split, '*'),
        output_path=output,
        pipeline_options=PipelineOptions(local_runner.beam_args(workers)),
      )
    metrics[workers] = evaluation.read_metrics(output, features.LABEL_KEY)
  one, two = metrics[1], metrics[2]
  assert {'example_count', 'sparse_categorical_accuracy', 'expected_calibration_error'} <= set(
    one.overall
  )
  assert sorted(two.by_label) == sorted(one.by_label) and one.by_label
  for name, value in one.overall.items():
    assert two.overall[name] == pytest.approx(value, rel=1e-6), name
  for label, values in one.by_label.items():
    for name, value in values.items():
      assert two.by_label[label][name] == pytest.approx(value, rel=1e-6), (label, name)
