"""Spans and drift: ImageExampleGen's span window, and DistributionValidator + DriftGate on tiny
Fashion-MNIST-like IDX spans (Beam and TFDV in-process, TFX's own span resolution)."""

import glob
import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from tfx.components.distribution_validator import executor as dv_executor
from tfx.components.example_gen import utils as example_gen_utils
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.utils import json_utils, proto_utils

from components import drift_gate
from components.image_example_gen import executor
from components.image_example_gen.component import input_config_for
from contract.features import MODEL_INFO_FILE
from contract.features import FASHION_MNIST, LABEL_KEY
from dataset import layouts, resolve
from dataset.errors import DatasetError
from tests import idx_files
from tests import image_pipeline_runs
from tests.image_data import run_executor, value

TRAIN, TEST = 240, 60


def write_span(directory, seed, class_weights=None, brightness=0):
  """One span of Fashion-MNIST-like IDX files: TRAIN training and TEST t10k images; labels drawn
  with `class_weights` (uniform by default), pixels brighter by `brightness`."""
  rng = np.random.default_rng(seed)
  for prefix, count in (('train', TRAIN), ('t10k', TEST)):
    labels = rng.choice(10, size=count, p=class_weights)
    pixels = idx_files.learnable_images(labels, seed + count).astype(np.int32) + brightness
    idx_files.write_dataset(
      str(directory), prefix, count, images=np.clip(pixels, 0, 255).astype(np.uint8), labels=labels
    )
  return str(directory)


def run_span_executor(data, out_dir, train_spans=1, eval_percent=10):
  """As TFX runs ImageExampleGen: the driver's span resolution, then the executor's Beam pipeline.
  Returns ({split: [tf.Example]}, dataset.json)."""
  template = layouts.span_template(str(data))
  newest = layouts.list_spans(template)[-1].path
  input_base, input_config = input_config_for(str(data), layouts.detect(newest), template)
  _, span, _ = example_gen_utils.calculate_splits_fingerprint_span_and_version(
    input_base, input_config.splits
  )
  return run_executor(
    data,
    out_dir,
    {
      executor.SPAN_TEMPLATE_KEY: template,
      executor.TRAIN_SPANS_KEY: train_spans,
      executor.EVAL_PERCENT_KEY: eval_percent,
    },
    resolved={
      standard_component_specs.INPUT_BASE_KEY: input_base,
      standard_component_specs.INPUT_CONFIG_KEY: proto_utils.proto_to_json(input_config),
      example_gen_utils.SPAN_PROPERTY_NAME: span,
    },
  )


@pytest.fixture(scope='module')
def three_spans(tmp_path_factory):
  root = tmp_path_factory.mktemp('spans')
  for number in (1, 2, 3):
    write_span(root / f'span-{number}', seed=number)
  return root


@pytest.mark.parametrize('names', [('span-9', 'span-10'), ('span-09', 'span-10')])
def test_spans_order_numerically_for_tfx_and_for_the_window(tmp_path, names):
  for name in names:
    (tmp_path / name / 'a').mkdir(parents=True)
    (tmp_path / name / 'a' / 'x.png').write_bytes(b'x')
  template = layouts.span_template(str(tmp_path))
  assert template == f'{tmp_path}/span-{{SPAN}}'
  assert [span.number for span in layouts.list_spans(template)] == [9, 10]
  input_base, input_config = input_config_for(str(tmp_path), 'folders', template)
  assert input_base == str(tmp_path)
  assert input_config.splits[0].pattern == 'span-{SPAN}/*/*'
  assert [split.name for split in input_config.splits] == list(executor.SPAN_SPLITS)
  _, span, _ = example_gen_utils.calculate_splits_fingerprint_span_and_version(
    input_base, input_config.splits
  )
  assert span == 10 and input_config.splits[0].pattern == 'span-10/*/*'
  assert layouts.data_from_input(input_base, input_config.splits[0].pattern) == (
    f'{tmp_path}/span-10'
  )
  spans = layouts.list_spans(template)
  assert executor.spans_used(spans, 10, 3) == {'newest': 10, 'train': [9, 10], 'previous': 9}


def test_an_explicit_span_pattern_for_a_manifest(tmp_path):
  for number in (1, 2):
    (tmp_path / f'span-{number}').mkdir()
    (tmp_path / f'span-{number}' / 'images.csv').write_text('a.png,cat\n')
  template = layouts.span_template(f'{tmp_path}/span-{{SPAN}}/images.csv')
  assert [span.path for span in layouts.list_spans(template)][-1] == (
    f'{tmp_path}/span-2/images.csv'
  )
  input_base, config = input_config_for(template, 'csv', template)
  assert (input_base, config.splits[0].pattern) == (str(tmp_path), 'span-{SPAN}/images.csv')


def test_an_empty_span_folder_is_one_line(tmp_path):
  write_span(tmp_path / 'span-1', seed=1)
  (tmp_path / 'span-2').mkdir()
  with pytest.raises(DatasetError, match=r'span-2: empty span folder: span 2 holds no files'):
    resolve.resolve(str(tmp_path))
  with pytest.raises(DatasetError, match='empty span folder'):
    layouts.list_spans(layouts.span_template(str(tmp_path)))


def test_span_folders_mixed_with_other_folders_are_one_line(tmp_path):
  write_span(tmp_path / 'span-1', seed=1)
  (tmp_path / 'shirts').mkdir()
  with pytest.raises(DatasetError, match='mixes span folders'):
    layouts.span_template(str(tmp_path))


def test_resolve_takes_the_newest_span(three_spans):
  resolved = resolve.resolve(str(three_spans))
  assert resolved.layout == 'idx' and resolved.spec == FASHION_MNIST
  assert resolved.span_template == f'{three_spans}/span-{{SPAN}}'
  assert any('spans: 1, 2, 3 (newest 3' in line for line in resolved.facts)


def test_the_window_trains_on_the_last_spans_and_evaluates_on_the_newest(three_spans, tmp_path):
  splits, summary = run_span_executor(three_spans, tmp_path / 'two', train_spans=2)
  assert summary['spans']['newest'] == 3 and summary['spans']['train'] == [2, 3]
  assert summary['spans']['previous'] == 2
  one, one_summary = run_span_executor(three_spans, tmp_path / 'one', train_spans=1)
  assert one_summary['spans']['train'] == [3]
  # eval and test are the newest span's alone, whatever the window; test is span 3's t10k.
  assert len(splits['test']) == len(one['test']) == TEST
  assert sorted(value(e, 'image') for e in splits['eval']) == sorted(
    value(e, 'image') for e in one['eval']
  )
  # train: span 3's training images plus span 2's; previous: every image of span 2.
  assert len(one['train']) + len(one['eval']) == TRAIN
  assert len(splits['train']) > 1.7 * len(one['train'])
  assert len(splits['previous']) == TRAIN + TEST == sum(summary['counts']['previous'].values())
  assert sum(summary['counts']['train'].values()) == len(splits['train'])


def test_the_first_span_has_an_empty_previous_split(tmp_path):
  write_span(tmp_path / 'span-0001', seed=1)
  splits, summary = run_span_executor(tmp_path, tmp_path / 'out', train_spans=3)
  assert summary['spans'] == {
    'newest': 1,
    'train': [1],
    'previous': None,
    'template': f'{tmp_path}/span-{{SPAN}}',
    'paths': {'1': f'{tmp_path}/span-0001'},
  }
  assert splits['previous'] == [] and len(splits['test']) == TEST


# Drift: DistributionValidator's executor on StatisticsGen-like statistics, then the gate.


def _statistics(examples_dir, tmp_path):
  stats = standard_artifacts.ExampleStatistics()
  stats.uri = str(tmp_path / 'statistics')
  stats.split_names = artifact_utils.encode_split_names(list(executor.SPAN_SPLITS))
  for split in executor.SPAN_SPLITS:
    files = tf.io.gfile.glob(os.path.join(examples_dir, f'Split-{split}', 'data*'))
    result = tfdv.generate_statistics_from_tfrecord(files[0]) if files else None
    os.makedirs(os.path.join(stats.uri, f'Split-{split}'))
    with open(os.path.join(stats.uri, f'Split-{split}', 'FeatureStats.pb'), 'wb') as out:
      out.write(result.SerializeToString())
  return stats


def run_drift_check(data, tmp_path, accept_drift=False, label=0.1, image=0.1):
  """ImageExampleGen, statistics, DistributionValidator and DriftGate as the pipeline wires them."""
  examples_dir = str(tmp_path / 'examples')
  # 40% of a tiny span as eval: the compared sample (about 100 images) is large enough that
  # sampling noise stays well below the thresholds.
  run_span_executor(data, examples_dir, eval_percent=40)
  stats = _statistics(examples_dir, tmp_path)
  anomalies = standard_artifacts.ExampleAnomalies()
  anomalies.uri = str(tmp_path / 'drift')
  dv_executor.Executor().Do(
    {
      standard_component_specs.STATISTICS_KEY: [stats],
      standard_component_specs.BASELINE_STATISTICS_KEY: [stats],
    },
    {standard_component_specs.ANOMALIES_KEY: [anomalies]},
    {
      standard_component_specs.INCLUDE_SPLIT_PAIRS_KEY: json_utils.dumps(
        [(drift_gate.COMPARED_SPLIT, drift_gate.BASELINE_SPLIT)]
      ),
      standard_component_specs.DISTRIBUTION_VALIDATOR_CONFIG_KEY: drift_gate.drift_config(
        label, image
      ),
    },
  )
  return drift_gate.check_drift(anomalies.uri, examples_dir, accept_drift)


@pytest.fixture(scope='module')
def drifting_spans(tmp_path_factory):
  """span-1 as usual, then span-2 like it, span-3 mostly one class, span-4 brighter."""
  root = tmp_path_factory.mktemp('drift')
  write_span(root / 'span-1', seed=11)
  write_span(root / 'span-2', seed=12)
  snapshots = {}
  for name, kwargs in (
    ('balance', {'class_weights': [0.55] + [0.05] * 9}),
    ('brightness', {'brightness': 90}),
  ):
    snapshot = tmp_path_factory.mktemp(name)
    for number in (1, 2):
      os.symlink(root / f'span-{number}', snapshot / f'span-{number}')
    write_span(snapshot / 'span-3', seed=13, **kwargs)
    snapshots[name] = snapshot
  return root, snapshots


def test_a_normal_new_span_passes_the_gate(drifting_spans, tmp_path):
  root, _ = drifting_spans
  result = run_drift_check(root, tmp_path)
  assert result['status'] == 'no drift', result['lines']
  assert set(result['measurements']) == {LABEL_KEY, *drift_gate.IMAGE_FEATURES}
  assert json.loads((tmp_path / 'examples' / 'drift.json').read_text())['status'] == 'no drift'


def test_a_shifted_class_balance_stops_the_run_naming_measure_value_threshold_spans(
  drifting_spans, tmp_path
):
  _, snapshots = drifting_spans
  with pytest.raises(drift_gate.DataDriftError) as stopped:
    run_drift_check(snapshots['balance'], tmp_path)
  lines = [line.strip() for line in str(stopped.value).splitlines()[1:]]
  assert len(lines) == 1, lines
  assert lines[0].startswith('label: Jensen-Shannon divergence 0.')
  assert '> threshold 0.1 (span 3 (eval) vs span 2)' in lines[0]


def test_a_brightness_shift_stops_the_run_and_accepting_it_goes_on(drifting_spans, tmp_path):
  _, snapshots = drifting_spans
  with pytest.raises(drift_gate.DataDriftError, match='image_mean_intensity: Jensen-Shannon'):
    run_drift_check(snapshots['brightness'], tmp_path / 'stop')
  result = run_drift_check(snapshots['brightness'], tmp_path / 'go', accept_drift=True)
  assert result['status'] == 'drift accepted'
  assert any(line.startswith('image_mean_intensity: Jensen-Shannon') for line in result['lines'])
  recorded = json.loads((tmp_path / 'go' / 'examples' / 'drift.json').read_text())
  assert recorded['lines'] == result['lines']


def test_the_first_span_passes_with_a_note(tmp_path):
  write_span(tmp_path / 'data' / 'span-1', seed=1)
  result = run_drift_check(tmp_path / 'data', tmp_path)
  assert result['status'] == 'first span'
  assert result['lines'] == [
    'span 1 is the first span: no previous span to compare, drift not checked'
  ]


# One short whole-pipeline flow through the CLI (one variant, a few steps): three spans train
# and pass the drift gate; a brighter fourth span stops the next run before Transform.


@pytest.fixture(scope='module')
def span_runs(tmp_path_factory):
  from pipeline import cli

  data = tmp_path_factory.mktemp('span_data')
  for number in (1, 2, 3):
    write_span(data / f'span-{number}', seed=20 + number)
  output_root = str(tmp_path_factory.mktemp('span_outputs'))

  def run(*extra):
    return cli.main(
      [
        'run',
        '--data',
        str(data),
        '--output-root',
        output_root,
        *image_pipeline_runs.CHEAPEST,
        '--train-steps',
        '3',
        '--eval-percent',
        '40',
        '--train-spans',
        '2',
        *extra,
      ]
    )

  return data, output_root, run


def test_three_spans_train_on_the_window_pass_the_drift_gate_and_record_the_spans(span_runs, capfd):
  data, output_root, run = span_runs
  assert run() == 0
  out = capfd.readouterr().out
  assert re.search(r'spans: newest 3 \(eval, test\), trained on 2, 3, drift baseline span 2', out)
  assert 'drift: no drift' in out
  (report_uri,) = re.findall(r'^Comparison report: (.+)$', out, re.MULTILINE)
  with open(os.path.join(report_uri, 'report.json')) as report_json:
    report = json.load(report_json)
  assert report['spans'] == {'newest': 3, 'train': [2, 3], 'previous': 2}
  assert report['drift']['status'] == 'no drift'
  (version,) = glob.glob(os.path.join(output_root, 'serving', 'fashion_mnist', '*'))
  with open(os.path.join(version, 'assets.extra', 'push_record.json')) as record:
    assert json.load(record)['spans'] == ['2', '3']
  with open(os.path.join(version, MODEL_INFO_FILE)) as info:
    assert json.load(info)['spans'] == [2, 3]
  with open(os.path.join(version, 'assets.extra', 'model_card.md')) as card:
    assert 'no feature drifted past its threshold' in card.read()

  # A brighter span arrives: the next run stops before Transform, naming the drift.
  write_span(data / 'span-4', seed=24, brightness=90)
  assert run() == 1
  err = capfd.readouterr().err
  assert 'run failed in DriftGate' in err
  assert re.search(
    r'image_mean_intensity: Jensen-Shannon divergence \d\.\d+ > threshold 0\.1 '
    r'\(span 4 \(eval\) vs span 3\)',
    err,
  )
  assert len(glob.glob(os.path.join(output_root, 'serving', 'fashion_mnist', '*'))) == 1
