"""Repeated seeds (`--seeds N`): the spread across seeds, the option on both surfaces, the DAG and
compiled spec it makes, and the selector's report from fabricated runs of two seeds."""

import dataclasses
import json
import math
import os

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_model_analysis.proto import metrics_for_slice_pb2
from tfx.types import standard_artifacts

from components.artifacts import VariantComparison
from components.variant_selection import executor
from components.variant_selection import held_out
from components.variant_selection import keys
from components.variant_selection import report
from components.variant_selection import seeds
from components.variant_selection.selection import ACCURACY
from components.variant_selection.selection import CALIBRATION_ERROR
from components.variant_selection.selection import LOSS
from components.variant_selection.selection import SIGNIFICANTLY_BETTER
from contract.features import DATASET_SPEC_KEY
from contract.features import FASHION_MNIST
from contract.features import MODEL_INFO_FILE
from pipeline import cli
from pipeline import vertex_config
from pipeline.config import PipelineConfig
from pipeline.kubeflow_v2_runner import compile_pipeline
from pipeline.pipeline import SELECTOR_ID
from pipeline.pipeline import create_pipeline
from pipeline.pipeline import evaluator_id
from pipeline.pipeline import trainer_id
from serving import latency
from serving.latency import Latency
from tests.test_kubeflow_v2 import VERTEX
from tests.test_kubeflow_v2 import _artifact_source
from tests.test_kubeflow_v2 import _executor
from tests.test_kubeflow_v2 import _parameter
from tests.test_kubeflow_v2 import _write_config
from tests.test_pipeline_e2e import COMPONENTS
from tests.test_pipeline_e2e import VARIANTS
from trainer.config import TrainingConfig
from trainer.summaries import HISTORY_FILE

# --- The spread -----------------------------------------------------------------------------


def test_spread_is_the_mean_and_sample_standard_deviation():
  # By hand: deviations -0.02, 0, +0.02; squares sum to 0.0008; / (3 - 1) = 0.0004; √ = 0.02.
  assert dataclasses.astuple(seeds.spread([0.90, 0.92, 0.94])) == pytest.approx((0.92, 0.02, 3))
  values = np.random.default_rng(7).uniform(0.85, 0.95, size=5)
  result = seeds.spread(list(values))
  assert result.mean == pytest.approx(np.mean(values), abs=1e-12)
  assert result.std == pytest.approx(np.std(values, ddof=1), abs=1e-12)
  assert result.n == 5


def test_a_run_without_the_metric_is_left_out_and_counted_out():
  result = seeds.spread([0.90, math.nan, None, 0.92])
  assert (result.mean, result.n) == (pytest.approx(0.91), 2)
  assert result.std == pytest.approx(math.sqrt(0.0002))  # (0.01² + 0.01²) / 1
  one = seeds.spread([0.9])
  assert (one.mean, one.n) == (0.9, 1) and math.isnan(one.std)  # no spread from one run
  assert seeds.spread([]).n == 0 and math.isnan(seeds.spread([]).mean)


def test_across_seeds_spreads_each_metric_of_a_variants_runs():
  runs = [
    seeds.SeedRun(42, {ACCURACY: 0.90, LOSS: 0.30, CALIBRATION_ERROR: 0.02}),
    seeds.SeedRun(43, {ACCURACY: 0.86, LOSS: 0.36}),
  ]
  result = seeds.across_seeds(runs)
  assert dataclasses.astuple(result[ACCURACY]) == pytest.approx((0.88, 0.04 / math.sqrt(2), 2))
  assert dataclasses.astuple(result[LOSS]) == pytest.approx((0.33, 0.06 / math.sqrt(2), 2))
  assert result[CALIBRATION_ERROR].n == 1


def test_the_table_cell_shows_mean_plus_minus_std():
  assert seeds.mean_plus_minus_std(seeds.Spread(0.92, 0.0123456, 3)) == '0.9200 ± 0.0123'
  assert seeds.mean_plus_minus_std(seeds.Spread(0.92, math.nan, 1)) == '0.9200'
  assert seeds.mean_plus_minus_std(seeds.Spread(math.nan, math.nan, 0)) == '–'


# --- The option -----------------------------------------------------------------------------


def test_seeds_start_at_the_training_seed():
  config = PipelineConfig(seeds=3, training=TrainingConfig(seed=7))
  assert config.seed_values == (7, 8, 9)
  assert PipelineConfig().seed_values == (42,)
  assert config.training_for('layer', 9).seed == 9 and config.training_for('layer').seed == 7


def test_seeds_below_one_are_one_clear_line_on_the_command_line(tmp_path, capsys):
  output_root = tmp_path / 'out'
  with pytest.raises(SystemExit) as exit_:
    cli.main(
      ['run', '--seeds', '0', '--output-root', str(output_root), '--data-dir', str(tmp_path)]
    )
  assert exit_.value.code == 2
  assert capsys.readouterr().err.splitlines()[-1] == (
    'fmnist-pipeline run: error: argument --seeds: must be at least 1, got 0'
  )
  assert not output_root.exists()


@pytest.mark.parametrize(
  'value, message',
  [
    (0, 'seeds must be at least 1, got 0'),
    ('two', "seeds must be int, got 'two'"),
  ],
)
def test_a_bad_seeds_key_in_the_deploy_yaml_is_one_line_naming_it(tmp_path, capsys, value, message):
  path = _write_config(str(tmp_path), {**VERTEX, 'seeds': value})
  assert cli.main(['compile', '--config', path, '--output', str(tmp_path / 'p.json')]) == 2
  err = capsys.readouterr().err
  assert err.count('\n') == 1 and err.startswith(f'error: {path}: ') and message in err
  assert not os.path.exists(tmp_path / 'p.json')


# --- The DAG --------------------------------------------------------------------------------


def _components(seed_count):
  config = PipelineConfig(variants=VARIANTS, seeds=seed_count, output_root='/tmp/unused')
  return {component.id: component for component in create_pipeline(config, 'fp').components}


def test_one_seed_builds_the_dag_it_always_had():
  components = _components(1)
  assert set(components) == set(COMPONENTS)
  selector = components[SELECTOR_ID]
  assert keys.SEEDS not in selector.exec_properties or selector.exec_properties[keys.SEEDS] is None
  assert not [name for name in selector.inputs if '_seed' in name]


def test_two_seeds_add_a_trainer_and_evaluator_per_variant_wired_to_the_selector():
  components = _components(2)
  extra = {
    name for variant in VARIANTS for name in (trainer_id(variant, 43), evaluator_id(variant, 43))
  }
  assert set(components) == set(COMPONENTS) | extra
  assert trainer_id('batch', 43) == 'Trainer_batch_seed43'
  selector = components[SELECTOR_ID]
  assert json.loads(selector.exec_properties[keys.SEEDS]) == [42, 43]
  for variant in VARIANTS:
    trainer = components[trainer_id(variant, 43)]
    training = json.loads(trainer.exec_properties['custom_config'])['training']
    assert (training['variant'], training['seed']) == (variant, 43)
    # The run-time options reach it as they reach the seed-42 Trainer.
    assert trainer.inputs['hyperparameters'].producer_component_id == 'TrainingParameters'
    assert components[evaluator_id(variant, 43)].inputs['model'].producer_component_id == (
      trainer_id(variant, 43)
    )
    assert selector.inputs[f'model_run_{variant}_seed43'].producer_component_id == (
      trainer_id(variant, 43)
    )
    assert selector.inputs[f'evaluation_{variant}_seed43'].producer_component_id == (
      evaluator_id(variant, 43)
    )
    # Selection and the push use the configured seed's model only.
    assert selector.inputs[f'model_{variant}'].producer_component_id == trainer_id(variant)
    assert f'model_{variant}_seed43' not in selector.inputs


@pytest.fixture(scope='module')
def compiled_two_seeds(tmp_path_factory):
  directory = tmp_path_factory.mktemp('seeds')
  config = vertex_config.load(_write_config(str(directory), {**VERTEX, 'seeds': 2}))
  return compile_pipeline(config, str(directory / 'pipeline.json'))['pipelineSpec']


def test_the_compiled_spec_runs_every_seed_with_the_run_parameters_and_gpus(compiled_two_seeds):
  spec = compiled_two_seeds
  tasks = spec['root']['dag']['tasks']
  assert set(tasks) == set(COMPONENTS) | {
    name for variant in VARIANTS for name in (trainer_id(variant, 43), evaluator_id(variant, 43))
  }
  assert json.loads(_parameter(spec, SELECTOR_ID, keys.SEEDS)) == [42, 43]
  for variant in VARIANTS:
    for trainer, seed in ((trainer_id(variant), 42), (trainer_id(variant, 43), 43)):
      training = json.loads(_parameter(spec, trainer, 'custom_config'))['training']
      assert (training['variant'], training['seed']) == (variant, seed)
      assert not {'epochs', 'batch_size', 'learning_rate'} & set(training)
      assert _artifact_source(spec, trainer, 'hyperparameters') == (
        'TrainingParameters',
        'hyperparameters',
      )
      assert _executor(spec, trainer)['container']['resources']['accelerator'] == {
        'type': 'NVIDIA_TESLA_T4',
        'count': '2',
      }
    assert _artifact_source(spec, SELECTOR_ID, f'model_run_{variant}_seed43') == (
      trainer_id(variant, 43),
      'model_run',
    )
    assert _artifact_source(spec, SELECTOR_ID, f'evaluation_{variant}_seed43') == (
      evaluator_id(variant, 43),
      'evaluation',
    )
    assert _artifact_source(spec, SELECTOR_ID, f'model_{variant}') == (trainer_id(variant), 'model')
  assert _artifact_source(spec, 'Pusher', 'model') == (SELECTOR_ID, 'model')


# --- The selector's report, from fabricated runs ---------------------------------------------

# Eval metrics by variant and seed: `layer` is better on average, `batch` with seed 42.
EVALUATIONS = {
  'batch': {
    42: {ACCURACY: 0.90, LOSS: 0.30, CALIBRATION_ERROR: 0.02},
    43: {ACCURACY: 0.86, LOSS: 0.36, CALIBRATION_ERROR: 0.04},
  },
  'layer': {
    42: {ACCURACY: 0.88, LOSS: 0.32, CALIBRATION_ERROR: 0.03},
    43: {ACCURACY: 0.94, LOSS: 0.20, CALIBRATION_ERROR: 0.01},
  },
}
TRAIN_SECONDS = {42: 100.0, 43: 140.0}


def _artifact(artifact_type, uri):
  artifact = artifact_type()
  artifact.uri = str(uri)
  os.makedirs(artifact.uri, exist_ok=True)
  return artifact


def _evaluation(uri, metrics):
  """An Evaluator output with the overall slice's metrics, in TFMA's metrics file format."""
  artifact = _artifact(standard_artifacts.ModelEvaluation, uri)
  overall = metrics_for_slice_pb2.MetricsForSlice()
  overall.slice_key.SetInParent()
  for name, value in metrics.items():
    entry = overall.metric_keys_and_values.add()
    entry.key.name = name
    entry.value.double_value.value = value
  with tf.io.TFRecordWriter(os.path.join(artifact.uri, 'metrics-00000-of-00001.tfrecord')) as out:
    out.write(overall.SerializeToString())
  return artifact


def _model_run(uri, seconds):
  artifact = _artifact(standard_artifacts.ModelRun, uri)
  history = [
    {'phase': 'eval', 'step': 10, 'loss': 0.5, 'accuracy': 0.8},
    {'phase': 'totals', 'step': 10, 'seconds': seconds, 'images_per_second': 640.0 / seconds},
  ]
  with open(os.path.join(artifact.uri, HISTORY_FILE), 'w') as out:
    json.dump(history, out)
  return artifact


def _model(uri, variant):
  artifact = _artifact(standard_artifacts.Model, uri)
  info = os.path.join(artifact.uri, 'Format-Serving', MODEL_INFO_FILE)
  os.makedirs(os.path.dirname(info))
  with open(info, 'w') as out:
    json.dump(
      {'variant': variant, 'parameters': 1000, DATASET_SPEC_KEY: FASHION_MNIST.to_dict()}, out
    )
  return artifact


def selector_properties(variants, serving_model_dir):
  """The selector's execution properties: the default gate with a threshold of 0.5."""
  return {
    keys.VARIANTS: json.dumps(variants),
    keys.SELECTION_METRIC: ACCURACY,
    keys.SERVING_MODEL_DIR: str(serving_model_dir),
    keys.ACCURACY_THRESHOLD: 0.5,
    keys.MAX_ACCURACY_DROP: 0.0,
    keys.EVAL_SPLIT: 'eval',
    keys.TEST_SPLIT: 'test',
    keys.SIGNIFICANCE_LEVEL: 0.05,
    keys.REPLACE_PRODUCTION: SIGNIFICANTLY_BETTER,
    keys.LATENCY_REPEATS: 5,
  }


def given_equal_latencies(monkeypatch):
  """Every model serves in 1.0 ms (p10 0.9, p90 1.1) without being run: a tie on speed."""
  monkeypatch.setattr(held_out, 'first_records', lambda files, count: [])
  monkeypatch.setattr(
    latency,
    'serving_latency',
    lambda models, records, batch_sizes, repeats: {
      name: {size: Latency(1.0, 0.9, 1.1, repeats) for size in batch_sizes} for name in models
    },
  )


def _run_selector(tmp_path, monkeypatch, seed_list):
  """The selector's executor on fabricated artifacts of `seed_list` runs per variant; the test
  split evaluation of the winner (a SavedModel run) is stood in for."""
  test_result = held_out.HeldOutResult(
    examples=10,
    metrics={ACCURACY: 0.9, LOSS: 0.3, CALIBRATION_ERROR: 0.02},
    confusion_matrix=np.diag([1] * 10).tolist(),
    classes=FASHION_MNIST.classes,
  )
  # On the eval split, `batch` gets all 1000 examples right and `layer` 900 of them: a
  # significant difference, so the paired test picks the point estimate's winner.
  correct = {'batch': (True,) * 1000, 'layer': (True,) * 900 + (False,) * 100}

  def evaluate(model_dir, files, classes):
    variant = next((name for name in correct if os.sep + name + os.sep in model_dir), None)
    if variant is None:  # the winner's copy, on the test split
      return test_result
    return dataclasses.replace(test_result, examples=1000, correct=correct[variant])

  monkeypatch.setattr(held_out, 'evaluate', evaluate)
  given_equal_latencies(monkeypatch)
  examples = _artifact(standard_artifacts.Examples, tmp_path / 'examples')
  examples.split_names = json.dumps(['train', 'eval', 'test'])
  inputs = {keys.EXAMPLES: [examples]}
  for variant, by_seed in EVALUATIONS.items():
    first, *extra = seed_list
    inputs[keys.input_key(keys.MODEL, variant)] = [_model(tmp_path / variant / 'model', variant)]
    inputs[keys.input_key(keys.MODEL_RUN, variant)] = [
      _model_run(tmp_path / variant / 'run', TRAIN_SECONDS[first])
    ]
    inputs[keys.input_key(keys.EVALUATION, variant)] = [
      _evaluation(tmp_path / variant / 'evaluation', by_seed[first])
    ]
    for seed in extra:
      inputs[keys.seed_input_key(keys.MODEL_RUN, variant, seed)] = [
        _model_run(tmp_path / variant / f'run{seed}', TRAIN_SECONDS[seed])
      ]
      inputs[keys.seed_input_key(keys.EVALUATION, variant, seed)] = [
        _evaluation(tmp_path / variant / f'evaluation{seed}', by_seed[seed])
      ]
  outputs = {
    keys.MODEL: [_artifact(standard_artifacts.Model, tmp_path / 'out' / 'model')],
    keys.BLESSING: [_artifact(standard_artifacts.ModelBlessing, tmp_path / 'out' / 'blessing')],
    keys.REPORT: [_artifact(VariantComparison, tmp_path / 'out' / 'report')],
  }
  properties = selector_properties(list(EVALUATIONS), tmp_path / 'serving' / 'fashion_mnist')
  if len(seed_list) > 1:
    properties[keys.SEEDS] = json.dumps(seed_list)
  executor.Executor().Do(inputs, outputs, properties)
  report_dir = tmp_path / 'out' / 'report'
  with open(report_dir / report.REPORT_JSON) as report_json:
    return json.load(report_json), (report_dir / report.REPORT_MARKDOWN).read_text(), outputs


def test_two_seeds_report_mean_and_std_while_the_seed_42_runs_decide(tmp_path, monkeypatch):
  content, markdown, outputs = _run_selector(tmp_path, monkeypatch, [42, 43])

  # `layer` has the higher mean (0.91 against 0.88), `batch` the better seed-42 run: selection
  # takes the configured seed's runs, the ones a one-seed run would have.
  assert content['selected'] == 'batch'
  blessing = outputs[keys.BLESSING][0]
  assert blessing.get_string_custom_property(executor.SELECTED_VARIANT) == 'batch'
  assert [row['eval'][ACCURACY] for row in content['variants']] == [0.90, 0.88]

  spread = content['seeds']
  assert (spread['seeds'], spread['selection_seed']) == ([42, 43], 42)
  batch, layer = spread['variants']
  assert [run['seed'] for run in batch['runs']] == [42, 43]
  assert batch['runs'][1]['eval'] == pytest.approx(EVALUATIONS['batch'][43])
  assert batch['runs'][1]['train_seconds'] == 140.0
  # By hand, two runs: mean (a + b) / 2, sample std |a − b| / √2.
  assert batch['mean'] == pytest.approx({ACCURACY: 0.88, LOSS: 0.33, CALIBRATION_ERROR: 0.03})
  assert batch['std'] == pytest.approx(
    {
      ACCURACY: 0.04 / math.sqrt(2),
      LOSS: 0.06 / math.sqrt(2),
      CALIBRATION_ERROR: 0.02 / math.sqrt(2),
    }
  )
  assert layer['mean'] == pytest.approx({ACCURACY: 0.91, LOSS: 0.26, CALIBRATION_ERROR: 0.02})
  assert layer['std'][ACCURACY] == pytest.approx(0.06 / math.sqrt(2))
  assert batch['n'] == {ACCURACY: 2, LOSS: 2, CALIBRATION_ERROR: 2}

  assert 'Across 2 training seeds (42, 43)' in markdown
  assert 'use the seed 42 runs above' in markdown
  assert (
    '| batch | 2 | 0.8800 ± 0.0283 | 0.3300 ± 0.0424 | 0.0300 ± 0.0141 | 0.9000, 0.8600 | 2m00s |'
    in markdown
  )
  assert (
    '| layer | 2 | 0.9100 ± 0.0424 | 0.2600 ± 0.0849 | 0.0200 ± 0.0141 | 0.8800, 0.9400 | 2m00s |'
    in markdown
  )
  with open(tmp_path / 'out' / 'report' / report.SEED_ACCURACY_PNG, 'rb') as png:
    assert png.read(8) == b'\x89PNG\r\n\x1a\n'


def test_one_seed_reports_no_spread(tmp_path, monkeypatch):
  content, markdown, _ = _run_selector(tmp_path, monkeypatch, [42])
  assert content['selected'] == 'batch' and content['seeds'] is None
  assert 'training seeds' not in markdown
  assert not os.path.exists(tmp_path / 'out' / 'report' / report.SEED_ACCURACY_PNG)


def test_run_summary_columns_stay_aligned_with_seed_component_ids():
  from pipeline.run_summary import ComponentRun
  from pipeline.run_summary import RunSummary

  summary = RunSummary(
    run_id='r1',
    components=[
      ComponentRun('Pusher', 'ran', 1.0),
      ComponentRun('Evaluator_keras_layer_seed43', 'cached', 12.5),
    ],
  )
  pusher, evaluator = summary.lines()[1:3]
  assert pusher.index('ran') == evaluator.index('cached')
  assert pusher.index(' s') == evaluator.index(' s')
