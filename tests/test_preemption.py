"""A Trainer step killed mid-training and started again, as Vertex does after a preemption:
the same task, with the same output URIs, resumes from its last checkpoint."""

import json
import os
import signal
import subprocess
import time

import tensorflow as tf

from pipeline.pipeline import trainer_id
from tests.test_kubeflow_v2 import CONTAINER_ENVIRONMENT
from tests.test_kubeflow_v2 import LOCAL_VARIANT
from tests.test_kubeflow_v2 import run_in_container
from tests.test_kubeflow_v2 import compile_for_local_files
from tests.test_kubeflow_v2 import container_commands
from trainer.summaries import HISTORY_FILE
from trainer.summaries import TOTALS_PHASE
from trainer.task import CHECKPOINT_DIR

TOTAL_STEPS = 600
BATCH_SIZE = 16
CHECKPOINT_EVERY = 20
LOG_EVERY = 50


def _checkpointed_step(checkpoint_dir):
  latest = tf.train.latest_checkpoint(checkpoint_dir)
  return int(latest.rsplit('-', 1)[1]) if latest else 0


def _wait_for_checkpoint(checkpoint_dir, process, min_step, timeout=240):
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if _checkpointed_step(checkpoint_dir) >= min_step:
      return
    assert process.poll() is None, f'the Trainer ended before its checkpoint at step {min_step}'
    time.sleep(0.05)
  raise AssertionError(f'no checkpoint at step {min_step} in {checkpoint_dir} after {timeout} s')


def test_killed_trainer_resumes_from_its_last_checkpoint_and_finishes(
  tmp_path, container_data_steps
):
  spec, upstream = compile_for_local_files(
    tmp_path,
    container_data_steps,
    train_steps=TOTAL_STEPS,
    training={
      'epochs': 1000,  # train_steps caps it
      'batch_size': BATCH_SIZE,
      'checkpoint_every_n_steps': CHECKPOINT_EVERY,
      'log_every_n_steps': LOG_EVERY,
      'precision': 'float32',
    },
  )
  trainer = trainer_id(LOCAL_VARIANT)
  task_root = tmp_path / trainer
  checkpoint_dir = str(task_root / 'model_run' / CHECKPOINT_DIR)
  (command,) = container_commands(spec, trainer, upstream, str(tmp_path))
  process = subprocess.Popen(
    command,
    cwd=str(tmp_path),
    env=CONTAINER_ENVIRONMENT,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
  )
  try:
    # Past the first log step, so the killed attempt has history of its own to keep.
    _wait_for_checkpoint(checkpoint_dir, process, min_step=LOG_EVERY)
    process.send_signal(signal.SIGKILL)  # no chance to clean up, as on a preempted VM
  finally:
    process.kill()
    process.wait(timeout=60)
  assert process.returncode == -signal.SIGKILL
  resumed_at = _checkpointed_step(checkpoint_dir)
  assert LOG_EVERY <= resumed_at < TOTAL_STEPS, 'killed after training had finished: make it longer'
  assert not os.path.exists(task_root / 'model' / 'Format-Serving' / 'saved_model.pb')

  outputs = run_in_container(spec, trainer, upstream, str(tmp_path))
  assert os.path.exists(os.path.join(outputs['model']['uri'], 'Format-Serving', 'saved_model.pb'))
  with open(task_root / 'model_run' / HISTORY_FILE) as history:
    records = json.load(history)
  # Every log step once, those up to the checkpoint recorded by the killed attempt (the
  # resumed one started after them), and the totals count both attempts' training.
  train_steps = [r['step'] for r in records if r['phase'] == 'train']
  assert train_steps == list(range(LOG_EVERY, TOTAL_STEPS + 1, LOG_EVERY))
  assert [step for step in train_steps if step <= resumed_at]
  (totals,) = [r for r in records if r['phase'] == TOTALS_PHASE]
  assert totals['step'] == TOTAL_STEPS
  trained_images = totals['images_per_second'] * totals['seconds']
  assert round(trained_images) == TOTAL_STEPS * BATCH_SIZE
