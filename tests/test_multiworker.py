"""Multi-worker training, without a cluster: the compiled Vertex spec, and the Trainer step run
the way a Vertex AI custom job of two machines runs it, as two processes on 127.0.0.1."""

import glob
import json
import os
import subprocess
import sys
import types

from google.cloud.aiplatform_v1.types import custom_job as custom_job_pb2
import numpy as np
import pytest
import tensorflow as tf

from contract import signatures
from contract.features import IMAGE_KEY
from pipeline import cli
from pipeline.pipeline import trainer_id
from tests import local_vertex_job
from tests.test_kubeflow_v2 import CONTAINER_ENVIRONMENT
from tests.test_kubeflow_v2 import IMAGE
from tests.test_kubeflow_v2 import LOCAL_VARIANT
from tests.test_kubeflow_v2 import TRAINERS
from tests.test_kubeflow_v2 import VERTEX
from tests.test_kubeflow_v2 import _executor
from tests.test_kubeflow_v2 import _write_config
from tests.test_kubeflow_v2 import compile_for_local_files
from tests.test_kubeflow_v2 import container_commands
from trainer import devices
from trainer import export
from trainer.config import TrainingConfig
from trainer.model import build_model
from trainer.summaries import HISTORY_FILE
from trainer.task import CHECKPOINT_DIR

TWO_WORKERS = {
  'workers': 2,
  'machine_type': 'n1-standard-8',
  'accelerator_type': 'NVIDIA_TESLA_T4',
  'accelerator_count': 1,
}
EXPECTED_MACHINE = {
  'machine_type': 'n1-standard-8',
  'accelerator_type': 'NVIDIA_TESLA_T4',
  'accelerator_count': 1,
}
TRAINING_ARGS = 'ai_platform_training_args'  # TFX's TRAINING_ARGS_KEY, spelled out
VERTEX_KEYS = {'ai_platform_enable_vertex': True, 'ai_platform_vertex_region': 'europe-west4'}


def _compile(tmp_path, trainer, name='pipeline.json'):
  path = str(tmp_path / name)
  config = _write_config(str(tmp_path), {**VERTEX, 'trainer': trainer})
  assert cli.main(['compile', '--config', config, '--output', path]) == 0
  with open(path) as source:
    return json.load(source)['pipelineSpec'], path


def _custom_config(spec, task):
  parameter = spec['root']['dag']['tasks'][task]['inputs']['parameters']['custom_config']
  return json.loads(parameter['runtimeValue']['constant'])


def _trainer_executor_class(spec, task):
  args = _executor(spec, task)['container']['args']
  return args[args.index('--executor_class_path') + 1]


@pytest.fixture(scope='module')
def two_worker_spec(tmp_path_factory):
  return _compile(tmp_path_factory.mktemp('two_workers'), TWO_WORKERS)[0]


def test_every_trainer_runs_as_a_vertex_job_of_a_chief_and_workers(two_worker_spec):
  for task in TRAINERS:
    assert _trainer_executor_class(two_worker_spec, task) == (
      'tfx.extensions.google_cloud_ai_platform.trainer.executor.GenericExecutor'
    )
    custom_config = _custom_config(two_worker_spec, task)
    assert {key: custom_config[key] for key in VERTEX_KEYS} == VERTEX_KEYS
    job = custom_config[TRAINING_ARGS]
    assert job['project'] == 'proj' and job['labels'] == {'team': 'vision'}
    assert job['job_spec']['service_account'] == VERTEX['service_account']
    # Field names Vertex's API knows (proto-plus rejects unknown ones).
    assert custom_job_pb2.CustomJobSpec(job['job_spec']).worker_pool_specs
    assert job['job_spec']['scheduling'] == {'restart_job_on_worker_restart': True}
    pools = job['job_spec']['worker_pool_specs']
    assert [pool['replica_count'] for pool in pools] == [1, 1]
    assert all(pool['machine_spec'] == EXPECTED_MACHINE for pool in pools)
    assert all(pool['container_spec'] == {'image_uri': IMAGE} for pool in pools)
    # The step's own container only starts and watches the job: it asks for no GPU.
    assert 'resources' not in _executor(two_worker_spec, task)['container']


def test_one_worker_compiles_as_without_the_option(tmp_path):
  without = {key: value for key, value in VERTEX['trainer'].items()}
  spec, path = _compile(tmp_path, without, 'without.json')
  _, explicit_path = _compile(tmp_path, {**without, 'workers': 1}, 'explicit.json')
  with open(path, 'rb') as first, open(explicit_path, 'rb') as second:
    assert first.read() == second.read()
  for task in TRAINERS:
    assert _trainer_executor_class(spec, task) == 'tfx.components.trainer.executor.GenericExecutor'
    assert TRAINING_ARGS not in _custom_config(spec, task)
    assert _executor(spec, task)['container']['resources']['accelerator']['count'] == '2'


def test_submit_dry_run_shows_the_worker_pools(tmp_path, capsys):
  config = _write_config(str(tmp_path), {**VERTEX, 'trainer': {**TWO_WORKERS, 'workers': 3}})
  output = str(tmp_path / 'p.json')
  assert cli.main(['submit', '--config', config, '--output', output, '--dry-run']) == 0
  out = capsys.readouterr().out
  pools = json.loads(out[: out.rindex('}') + 1])['trainerWorkerPoolSpecs']
  assert [pool['replica_count'] for pool in pools] == [1, 2]
  assert all(pool['machine_spec'] == EXPECTED_MACHINE for pool in pools)


@pytest.mark.parametrize(
  'trainer, message',
  [
    ({**TWO_WORKERS, 'workers': 0}, 'trainer.workers must be at least 1, got 0'),
    (
      {**TWO_WORKERS, 'accelerator_count': -1},
      'trainer.accelerator_count must be at least 0, got -1',
    ),
    ({**TWO_WORKERS, 'accelerator_type': 'NVIDIA_T5'}, "trainer.accelerator_type must be one of"),
    (
      {key: value for key, value in TWO_WORKERS.items() if key != 'machine_type'},
      'trainer.machine_type is required with workers > 1',
    ),
    ({**TWO_WORKERS, 'cpu_limit': 8}, 'trainer.cpu_limit is for one worker'),
    ({'machine_type': 'n1-standard-8'}, 'trainer.machine_type is for workers > 1'),
    ({**TWO_WORKERS, 'workers': 'two'}, "trainer.workers must be int, got 'two'"),
    ({**TWO_WORKERS, 'gpus': 1}, 'unknown key trainer.gpus'),
  ],
)
def test_a_bad_worker_spec_is_one_line_naming_the_key(tmp_path, capsys, trainer, message):
  config = _write_config(str(tmp_path), {**VERTEX, 'trainer': trainer})
  assert cli.main(['compile', '--config', config, '--output', str(tmp_path / 'p.json')]) == 2
  err = capsys.readouterr().err
  assert err.count('error:') == 1 and message in err.splitlines()[-1]
  assert err.splitlines()[-1].startswith(f'error: {config}: ')
  assert not os.path.exists(tmp_path / 'p.json')


def _strategy_of(task_type, task_id, cluster):
  resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
    tf.train.ClusterSpec(cluster), task_type=task_type, task_id=task_id
  )
  return types.SimpleNamespace(cluster_resolver=resolver)


@pytest.mark.parametrize(
  'task_type, task_id, cluster, chief',
  [
    ('chief', 0, {'chief': ['a:1'], 'worker': ['b:1']}, True),  # Vertex AI's pool 0
    ('worker', 0, {'chief': ['a:1'], 'worker': ['b:1']}, False),
    ('worker', 0, {'worker': ['a:1', 'b:1']}, True),  # a cluster of workers only
    ('worker', 1, {'worker': ['a:1', 'b:1']}, False),
  ],
)
def test_the_chief_is_the_one_task_that_writes(task_type, task_id, cluster, chief):
  assert devices.is_chief(_strategy_of(task_type, task_id, cluster)) is chief
  assert devices.is_chief(tf.distribute.get_strategy())  # one machine


def test_a_non_chief_writes_to_a_scratch_directory_that_is_removed(tmp_path):
  with devices.writable_dir(str(tmp_path / 'run'), chief=True) as directory:
    assert directory == str(tmp_path / 'run')
  with devices.writable_dir(str(tmp_path / 'run'), chief=False) as directory:
    assert not directory.startswith(str(tmp_path))
    with open(os.path.join(directory, 'checkpoint'), 'w') as written:
      written.write('x')
  assert not os.path.exists(directory) and not os.path.exists(tmp_path / 'run')


# --- The Trainer step run as a two-machine Vertex job, against one process ------------------------

TOTAL_STEPS = 240
PER_WORKER_BATCH = 8
# Small enough that two extra TensorFlow processes stay quick on a shared 2-core machine.
TRAINING = {
  'epochs': 1000,  # train_steps caps it
  'precision': 'float32',
  'filters': 8,
  'hidden_units': 16,
  'log_every_n_steps': 60,
  'checkpoint_every_n_steps': 120,
}
REPLICA_TIMEOUT = 300
JOB_DIR = 'job'
# Both runs train on the same examples per step; the two-worker run sums each half's gradients
# and then all-reduces them, so its float32 gradients differ from one process's in the last bits
# (~1e-7 relative), and Adam carries those differences on through the steps. Adam divides each
# update by the root of the running squared gradient, so where a gradient is near zero a last-bit
# difference becomes an update difference of up to the learning rate: after 240 steps, 1.0e-6 at
# most on the index-split data this test once had, 1.6e-4 in one conv bias on today's content-
# hash split of the same images. What a user relies on is the model's answers: the two models'
# probabilities on the eval images agree within PROBABILITY_TOLERANCE, and no weight differs by
# a tenth of the least any weight tensor moves over the run's last 120 steps (workers training
# on the wrong examples miss both by far).
PROBABILITY_TOLERANCE = 1e-3


def _transformed_images(outputs, examples):
  """`examples` as the model takes them: through the exported Transform graph."""
  serve = tf.saved_model.load(os.path.join(outputs['model']['uri'], 'Format-Serving'))
  return serve.signatures[signatures.TRANSFORM_SIGNATURE](examples=examples)[IMAGE_KEY]


def _start_trainer(tmp_path, data_steps, trainer, batch_size):
  """Starts the compiled Trainer step in its own process; with several workers, through the
  stand-in for Vertex custom training (tests/local_vertex_job.py), whose files go to JOB_DIR."""
  tmp_path.mkdir()
  spec, upstream = compile_for_local_files(
    tmp_path,
    data_steps,
    train_steps=TOTAL_STEPS,
    training={**TRAINING, 'batch_size': batch_size},
    trainer=trainer,
  )
  (command,) = container_commands(spec, trainer_id(LOCAL_VARIANT), upstream, str(tmp_path))
  if trainer.get('workers', 1) > 1:
    python, *module_and_args = command
    assert python == sys.executable
    job = [sys.executable, '-m', local_vertex_job.__name__, str(tmp_path / JOB_DIR)]
    command = job + [str(REPLICA_TIMEOUT), 'python', *module_and_args]
  with open(tmp_path / 'step.log', 'w') as log:
    return subprocess.Popen(
      command, cwd=str(tmp_path), env=CONTAINER_ENVIRONMENT, stdout=log, stderr=log
    )


def _outputs(tmp_path, process):
  """The step's output artifacts once its process has ended, or its logs if it failed."""
  code = process.wait(timeout=REPLICA_TIMEOUT + 120)
  logs = sorted(glob.glob(str(tmp_path / '*.log')) + glob.glob(str(tmp_path / JOB_DIR / '*.log')))
  assert code == 0, ''.join(open(path).read()[-2000:] for path in logs)
  with open(tmp_path / trainer_id(LOCAL_VARIANT) / 'executor_output.json') as source:
    artifacts = json.load(source)['artifacts']
  return {name: value['artifacts'][0] for name, value in artifacts.items()}


def test_two_workers_train_the_weights_one_process_does(tmp_path, container_data_steps):
  # Side by side: most of each run is starting TensorFlow processes, which two cores overlap.
  one, two = tmp_path / 'one', tmp_path / 'two'
  steps = [_start_trainer(one, container_data_steps, {'workers': 1}, 2 * PER_WORKER_BATCH)]
  try:
    steps.append(_start_trainer(two, container_data_steps, TWO_WORKERS, PER_WORKER_BATCH))
    single, pair = _outputs(one, steps[0]), _outputs(two, steps[1])
  finally:
    for step in steps:
      step.kill()
  job_dir = str(two / JOB_DIR)

  with open(os.path.join(job_dir, local_vertex_job.JOB_FILE)) as source:
    job = json.load(source)
  pools = job['job_spec']['worker_pool_specs']
  assert [pool['machine_spec'] for pool in pools] == [EXPECTED_MACHINE] * 2
  assert all(
    pool['container_spec']['command'][:4]
    == ['python', '-m', 'tfx.scripts.run_executor', '--executor_class_path']
    for pool in pools
  )

  def checkpoints(outputs):
    return os.path.join(outputs['model_run']['uri'], CHECKPOINT_DIR)

  for outputs in (single, pair):
    latest = tf.train.latest_checkpoint(checkpoints(outputs))
    assert latest and latest.endswith(f'-{TOTAL_STEPS}')
  (eval_files,) = [
    glob.glob(
      os.path.join(container_data_steps[1]['ImageExampleGen']['examples']['uri'], 'Split-eval', '*')
    )
  ]
  examples = tf.constant(
    [record.numpy() for record in tf.data.TFRecordDataset(eval_files, compression_type='GZIP')]
  )
  assert len(examples) > 0

  def probabilities(outputs):
    serve = tf.saved_model.load(os.path.join(outputs['model']['uri'], 'Format-Serving'))
    signature = serve.signatures[signatures.EXAMPLES_SIGNATURE]
    return signature(**{signatures.EXAMPLES_INPUT: examples})[signatures.PROBABILITIES].numpy()

  reference = probabilities(single)
  apart = np.max(np.abs(probabilities(pair) - reference))
  assert apart < PROBABILITY_TOLERANCE
  # Far from what training still changes: the one-process model's halfway weights.
  model = build_model(
    LOCAL_VARIANT,
    filters=TRAINING['filters'],
    conv_blocks=TrainingConfig().conv_blocks,
    hidden_units=TRAINING['hidden_units'],
  )
  halfway_checkpoint = f'{checkpoints(single)}/ckpt-{TOTAL_STEPS // 2}'
  tf.train.Checkpoint(model=model).read(halfway_checkpoint).expect_partial()
  halfway = tf.nn.softmax(model(_transformed_images(single, examples), training=False)).numpy()
  assert np.max(np.abs(halfway - reference)) > 10 * PROBABILITY_TOLERANCE

  # Only the chief wrote: one export, one history whose steps each appear once, one event file per
  # summary directory, and the other worker's scratch directories are gone.
  model = os.path.join(pair['model']['uri'], 'Format-Serving')
  assert os.path.exists(os.path.join(model, 'saved_model.pb'))
  assert os.path.exists(os.path.join(model, export.MODEL_INFO_FILE))
  with open(os.path.join(pair['model_run']['uri'], HISTORY_FILE)) as history:
    train_steps = [r['step'] for r in json.load(history) if r['phase'] == 'train']
  assert train_steps == list(range(60, TOTAL_STEPS + 1, 60))
  for phase in ('train', 'eval'):
    assert len(os.listdir(os.path.join(pair['model_run']['uri'], phase))) == 1
  for task_type in ('chief', 'worker'):
    assert os.listdir(local_vertex_job.replica_tmp(job_dir, task_type, 0)) == []
  with open(local_vertex_job.replica_log(job_dir, 'worker', 0)) as worker_log:
    assert '2 replica(s)' in worker_log.read()
