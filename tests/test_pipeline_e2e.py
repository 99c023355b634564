"""The whole pipeline through the CLI with LocalDagRunner, on a tiny generated IDX dataset."""

import glob
import hashlib
import json
import os
import re
import shutil

import numpy as np
import pytest
import tensorflow as tf

from components import curated_schema
from components.image_example_gen import executor
from components.image_example_gen import idx
from components.variant_selection import production
from components.variant_selection import report
from contract import signatures
from contract.features import FASHION_MNIST
from contract.features import MODEL_INFO_FILE
from dataset import images as image_files
from pipeline import cli
from pipeline.pipeline import evaluator_id
from pipeline.pipeline import trainer_id
from tests import idx_files

VARIANTS = ('batch', 'weight', 'none')
COMPONENTS = (
  'ImageExampleGen',
  'CuratedSchema',
  'StatisticsGen',
  'ExampleValidator',
  'AnomaliesGate',
  'Transform',
  'TrainingParameters',
  *(trainer_id(variant) for variant in VARIANTS),
  *(evaluator_id(variant) for variant in VARIANTS),
  'VariantSelector',
  'Pusher',
)


def _run(capsys, data_dir, output_root, accuracy_threshold=0.3, variants=VARIANTS, extra=()):
  code = cli.main(
    [
      'run',
      '--data-dir',
      data_dir,
      '--output-root',
      output_root,
      '--variants',
      ','.join(variants),
      '--epochs',
      '1',
      '--batch-size',
      '32',
      '--accuracy-threshold',
      str(accuracy_threshold),
      *extra,
    ]
  )
  captured = capsys.readouterr()
  return code, captured.out, captured.err


def _component_states(out):
  rows = [line.split() for line in out.splitlines() if line.startswith('  ')]
  return {row[0]: row[1] for row in rows if row and row[0] in COMPONENTS}


def _report(out):
  (uri,) = re.findall(r'^Comparison report: (.+)$', out, re.MULTILINE)
  with open(os.path.join(uri, report.REPORT_JSON)) as report_json:
    return json.load(report_json)


def _test_images(data_dir):
  """The t10k images as PNG bytes, what serving_default takes, and their labels."""
  images, labels = idx.read_pair(idx.find_pair(data_dir, 't10k-*-ubyte.gz'))
  return tf.constant(image_files.encode_pngs(images)), labels


def _serve(model_dir, encoded):
  return tf.saved_model.load(model_dir).signatures[signatures.SERVING_SIGNATURE](
    **{signatures.IMAGE_BYTES_INPUT: encoded}
  )


def _is_eval(image):
  """Whether ImageExampleGen holds this training image out for eval (by its PNG's SHA-256)."""
  digest = hashlib.sha256(image_files.encode_png(image)).digest()
  return executor.holdout_split(digest, executor.HeldOut(eval=10, test=0)) == 'eval'


def _versions(output_root):
  model_dir = os.path.join(output_root, 'serving', 'fashion_mnist')
  return sorted(os.listdir(model_dir)) if os.path.isdir(model_dir) else []


@pytest.fixture(scope='module')
def first_run(tmp_path_factory):
  data_dir = idx_files.write_fashion_mnist_like(str(tmp_path_factory.mktemp('data')))
  # One eval example labelled as a class its image does not show: no model gets the eval split
  # all right, so the highest accuracy threshold (1.0) blesses none.
  labels = np.random.default_rng(1).integers(0, 10, size=300)
  images = idx_files.learnable_images(labels, seed=1)
  mislabelled = next(index for index in range(len(labels)) if _is_eval(images[index]))
  labels[mislabelled] = (labels[mislabelled] + 1) % 10
  idx_files.write_dataset(data_dir, 'train', len(labels), images=images, labels=labels)
  output_root = str(tmp_path_factory.mktemp('outputs'))
  return data_dir, output_root


def test_first_run_runs_everything_and_pushes_in_tf_serving_layout(first_run, capsys):
  data_dir, output_root = first_run
  code, out, err = _run(capsys, data_dir, output_root)
  assert code == 0, err
  assert _component_states(out) == {name: 'ran' for name in COMPONENTS}
  versions = _versions(output_root)
  assert len(versions) == 1 and versions[0].isdigit()
  version_dir = os.path.join(output_root, 'serving', 'fashion_mnist', versions[0])
  assert f'Pushed to: {version_dir}' in out
  assert os.path.exists(os.path.join(version_dir, 'saved_model.pb'))

  encoded, labels = _test_images(data_dir)
  outputs = _serve(version_dir, encoded)
  probabilities = outputs[signatures.PROBABILITIES].numpy()
  assert probabilities.shape == (len(labels), FASHION_MNIST.num_classes)
  assert abs(probabilities.sum(axis=1) - 1).max() < 1e-5
  class_ids = outputs[signatures.CLASS_IDS].numpy()
  assert outputs[signatures.CLASS_IDS].dtype == tf.int64
  assert (class_ids == probabilities.argmax(axis=1)).all()
  assert [c.decode() for c in outputs[signatures.CLASSES].numpy()] == [
    FASHION_MNIST.classes[i] for i in class_ids
  ]
  # The generated classes are easy to tell apart: a trained model gets most right.
  assert (class_ids == labels).mean() > 0.5


def test_first_run_compares_every_variant_and_pushes_the_winner(first_run, capsys):
  data_dir, output_root = first_run
  assert cli.main(['report', '--output-root', output_root]) == 0
  out = capsys.readouterr().out
  comparison = _report(out)
  assert [row['variant'] for row in comparison['variants']] == list(VARIANTS)
  for row in comparison['variants']:
    assert 0 <= row['eval']['sparse_categorical_accuracy'] <= 1
    assert row['eval']['sparse_categorical_crossentropy'] > 0
    assert 0 <= row['eval']['expected_calibration_error'] <= 1
    assert row['parameters'] > 0 and row['images_per_second'] > 0 and row['train_seconds'] > 0
    assert set(row['per_class_accuracy']) == set(FASHION_MNIST.classes)
    assert f'| {row["variant"]} | ' in out  # the table in the terminal
    # TFMA's 95% interval around each eval metric, overall and per class.
    for name in ('sparse_categorical_accuracy', 'sparse_categorical_crossentropy'):
      low, high = row['eval_intervals'][name]
      assert low <= row['eval'][name] <= high
    assert (
      row['eval_intervals']['sparse_categorical_crossentropy'][0]
      < row['eval']['sparse_categorical_crossentropy']
    )  # a continuous metric varies over the resamples
    # Per class too, where the class's slice fills TFMA's 20 jackknife partitions.
    assert row['per_class_accuracy_intervals']
    for name, (low, high) in row['per_class_accuracy_intervals'].items():
      assert low <= row['per_class_accuracy'][name] <= high
    # Serving latency measured by the selector on this variant's exported model.
    for batch in ('1', '64'):
      latency = row['serving_latency_ms'][batch]
      assert 0 < latency['p10_ms'] <= latency['median_ms'] <= latency['p90_ms']
  blessed = [row for row in comparison['variants'] if row['blessed']]
  best = max(row['eval']['sparse_categorical_accuracy'] for row in blessed)
  winner = comparison['selected']
  (winner_row,) = [row for row in comparison['variants'] if row['variant'] == winner]
  # The most accurate, or one McNemar's test cannot tell from it (the tie-break: test_selection).
  assert winner_row['within_noise_of_best']
  if winner_row['eval']['sparse_categorical_accuracy'] < best:
    assert winner_row['against_best']['mcnemar_p_value'] >= comparison['significance_level']
  assert comparison['pushed'] and comparison['decision'].startswith(f'Selected {winner}')
  assert comparison['decision'].endswith('no model is in production yet.')
  assert f'**Decision:** {comparison["decision"]}' in out
  for plot in (
    report.LEARNING_CURVES_PNG,
    report.PER_CLASS_ACCURACY_PNG,
    report.CONFUSION_MATRIX_PNG,
    report.ACCURACY_INTERVALS_PNG,
    report.COST_QUALITY_PNG,
  ):
    assert re.search(rf'^  /.+/{plot}$', out, re.MULTILINE)

  # The pushed version is the winner, and says so.
  (version,) = _versions(output_root)
  version_dir = os.path.join(output_root, 'serving', 'fashion_mnist', version)
  with open(os.path.join(version_dir, MODEL_INFO_FILE)) as info:
    assert json.load(info)['variant'] == winner
  # The report's test accuracy is the pushed model's on t10k, served as TF Serving would.
  encoded, labels = _test_images(data_dir)
  class_ids = _serve(version_dir, encoded)[signatures.CLASS_IDS].numpy()
  assert comparison['test']['variant'] == winner
  assert comparison['test']['examples'] == len(labels)
  assert comparison['test']['metrics']['sparse_categorical_accuracy'] == pytest.approx(
    (class_ids == labels).mean(), abs=1e-6
  )


def _served(output_root):
  """The version TF Serving would load (the newest) and its SavedModel digest."""
  served = production.latest_version(os.path.join(output_root, 'serving', 'fashion_mnist'))
  return served, production.saved_model_digest(served)


def _rerun_pushing_nothing(capsys, first_run, **options):
  """Runs again on the first run's output root; the served model must stay the same.

  Returns the output and the component states."""
  data_dir, output_root = first_run
  served = _served(output_root)
  code, out, err = _run(capsys, data_dir, output_root, **options)
  assert code == 0, err
  assert _served(output_root) == served
  return out, _component_states(out)


def test_rerun_with_nothing_changed_runs_nothing_and_pushes_nothing(first_run, capsys):
  versions = _versions(first_run[1])
  _, states = _rerun_pushing_nothing(capsys, first_run)
  assert states == {name: 'cached' for name in COMPONENTS}
  assert _versions(first_run[1]) == versions


def test_a_new_gate_decision_does_not_push_the_production_model_again(first_run, capsys):
  # Only the gate changes: the selector runs again and finds that its winner is what is served.
  out, states = _rerun_pushing_nothing(capsys, first_run, accuracy_threshold=0.2)
  assert {name for name, state in states.items() if state == 'ran'} == {'VariantSelector', 'Pusher'}
  assert 'It is the model in production already, so nothing new is pushed.' in out
  assert '**Decision:** Kept the model in production:' in out
  assert re.search(r'^\| production \| \d+\.\d\d \(', out, re.MULTILINE)  # its serving cost
  assert 'Pushed: nothing' in out


def test_model_below_the_threshold_is_not_pushed_and_the_run_says_why(first_run, capsys):
  # The highest threshold there is; first_run's eval split has an example no model gets right.
  out, states = _rerun_pushing_nothing(capsys, first_run, accuracy_threshold=1.0)
  for variant in VARIANTS:
    assert states[trainer_id(variant)] == 'cached' and states[evaluator_id(variant)] == 'cached'
    assert re.search(
      rf'^\| {variant} \|.*\| no \| not blessed: .*sparse_categorical_accuracy [0-9.]+ '
      r'is below the threshold 1.0',
      out,
      re.MULTILINE,
    )
  assert 'nothing was selected and nothing will be pushed' in out
  assert 'Pushed: nothing' in out


def test_a_model_worse_than_production_is_not_blessed_and_production_stays_served(
  first_run, capsys
):
  # A learning rate too small to learn anything in one epoch: far below the pushed model,
  # while the value threshold (0) lets anything through. Two seeds: the gate still judges
  # the seed-42 run alone, and the report adds the spread over both.
  out, states = _rerun_pushing_nothing(
    capsys,
    first_run,
    accuracy_threshold=0,
    variants=('none',),
    extra=('--learning-rate', '1e-7', '--seeds', '2'),
  )
  assert states[trainer_id('none')] == 'ran'
  for extra_run in (trainer_id('none', 43), evaluator_id('none', 43)):
    assert re.search(rf'^  {extra_run} +ran ', out, re.MULTILINE), extra_run
  comparison = _report(out)
  (runs,) = [row['runs'] for row in comparison['seeds']['variants']]
  assert [run['seed'] for run in runs] == [42, 43]
  assert runs[0]['eval'] == comparison['variants'][0]['eval']  # what the gate judged
  (extra_model,) = glob.glob(
    os.path.join(first_run[1], 'pipeline', trainer_id('none', 43), 'model', '*', 'Format-Serving')
  )
  with open(os.path.join(extra_model, MODEL_INFO_FILE)) as info:
    training = json.load(info)['training']
  assert (training['seed'], training['learning_rate']) == (43, 1e-7)  # the run's parameter
  assert 'Across 2 training seeds (42, 43)' in out
  assert re.search(
    r'not blessed: sparse_categorical_accuracy changed by -[01]\.[0-9]+ against the production '
    r'model \(allowed: no drop\)',
    out,
  )
  assert re.search(
    r'^Production model \(the baseline\): .+, eval accuracy [01]\.\d+', out, re.MULTILINE
  )
  assert 'Pushed: nothing' in out


def test_bad_input_file_stops_the_run_and_keeps_the_pushed_model(first_run, capsys, tmp_path):
  data_dir, output_root = first_run
  before = _versions(output_root)
  broken = str(tmp_path / 'broken')
  shutil.copytree(data_dir, broken)
  truncated = os.path.join(broken, 'train-images-idx3-ubyte.gz')
  with open(truncated, 'rb') as source:
    head = source.read()[:300]
  with open(truncated, 'wb') as out:
    out.write(head)
  code, _, err = _run(capsys, broken, output_root)
  assert code == 1
  assert 'ImageExampleGen' in err and truncated in err and 'truncated' in err
  assert _versions(output_root) == before
  # One line on the console; the traceback is in the full log it names.
  assert 'Traceback' not in err
  (log_path,) = set(re.findall(r'^Full log: (\S+)$', err, re.MULTILINE))  # at start and end
  with open(log_path) as log:
    assert 'Traceback' in log.read()


def _trained_model(output_root, variant):
  """The SavedModel of the variant's one Trainer execution under `output_root`."""
  (model_dir,) = glob.glob(
    os.path.join(output_root, 'pipeline', trainer_id(variant), 'model', '*', 'Format-Serving')
  )
  return model_dir


def test_same_seed_in_another_output_root_gives_the_same_model(first_run, capsys, tmp_path):
  data_dir, output_root = first_run
  (version,) = _versions(output_root)
  pushed = os.path.join(output_root, 'serving', 'fashion_mnist', version)
  with open(os.path.join(pushed, MODEL_INFO_FILE)) as info:
    pushed_variant = json.load(info)['variant']
  # That variant alone: which of several tied variants wins depends on measured latency.
  other_root = str(tmp_path / 'other')
  code, out, err = _run(capsys, data_dir, other_root, variants=(pushed_variant,))
  assert code == 0, err
  assert (
    _component_states(out)[trainer_id(pushed_variant)] == 'ran'
  )  # its own MLMD: nothing shared, nothing cached
  encoded, _ = _test_images(data_dir)

  def probabilities(model_dir):
    return _serve(model_dir, encoded)[signatures.PROBABILITIES]

  # Same data, seed and CPU: the pushed model's weights up to float32 summation order.
  np.testing.assert_allclose(
    probabilities(_trained_model(other_root, pushed_variant)), probabilities(pushed), atol=1e-6
  )


def test_examples_outside_the_adopted_schema_stop_the_run_before_any_training(
  first_run, capsys, tmp_path
):
  # An adopted schema the data does not meet: the shipped one, its images capped at 200 bytes
  # (the generated images' PNGs are larger), as a contract tightened after the data changed.
  data_dir, _ = first_run
  with open(curated_schema.SCHEMA_FILE) as schema:
    curated = schema.read()
  assert curated.count('max: 4096') == 1
  tight_schema = tmp_path / 'schema.pbtxt'
  tight_schema.write_text(curated.replace('max: 4096', 'max: 200'))
  output_root = str(tmp_path / 'outputs')
  code, out, err = _run(capsys, data_dir, output_root, extra=('--schema', str(tight_schema)))
  assert code == 1
  assert 'run failed in AnomaliesGate' in err
  assert re.search(r'train: image_byte_size: Out-of-range values', err)
  ran = set(os.listdir(os.path.join(output_root, 'pipeline')))
  assert 'ExampleValidator' in ran and not any(name.startswith('Trainer') for name in ran)
  assert 'Transform' not in ran and _versions(output_root) == []
