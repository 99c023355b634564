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
from tests.test_kubeflow_v2 import run_in_container
from tests.test_kubeflow_v2 import compile_for_local_files
from tests.test_kubeflow_v2 import container_commands
from trainer.summaries import HISTORY_FILE
from trainer.summaries import TOTALS_PHASE
from trainer.task import CHECKPOINT_DIR

TOTAL_STEPS = 600
BATCH_SIZE = 16
CHECKPOINT_EVERY = 20
VARIANT = 'none'


def _wait_for_checkpoint(checkpoint_dir, process, timeout=240):
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if tf.train.latest_checkpoint(checkpoint_dir):
      return
    assert process.poll() is None, 'the Trainer ended before its first checkpoint'
    time.sleep(0.05)
  raise AssertionError(f'no checkpoint in {checkpoint_dir} after {timeout} s')


def test_killed_trainer_resumes_from_its_last_checkpoint_and_finishes(tmp_path):
  spec, upstream = compile_for_local_files(
    tmp_path,
    VARIANT,
    train_count=200,
    train_steps=TOTAL_STEPS,
    training={
      'epochs': 1000,  # train_steps caps it
      'batch_size': BATCH_SIZE,
      'checkpoint_every_n_steps': CHECKPOINT_EVERY,
      'mixed_precision': False,
    },
  )
  for task in ('IdxExampleGen', 'Transform'):
    upstream[task] = run_in_container(spec, task, upstream, str(tmp_path))

  trainer = trainer_id(VARIANT)
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
    _wait_for_checkpoint(checkpoint_dir, process)
    process.send_signal(signal.SIGKILL)  # no chance to clean up, as on a preempted VM
  finally:
    process.kill()
    process.wait(timeout=60)
  assert process.returncode == -signal.SIGKILL
  resumed_at = int(tf.train.latest_checkpoint(checkpoint_dir).rsplit('-', 1)[1])
  assert 0 < resumed_at < TOTAL_STEPS, 'killed after training had finished: make it longer'
  assert not os.path.exists(task_root / 'model' / 'Format-Serving' / 'saved_model.pb')

  outputs = run_in_container(spec, trainer, upstream, str(tmp_path))
  assert os.path.exists(os.path.join(outputs['model']['uri'], 'Format-Serving', 'saved_model.pb'))
  with open(task_root / 'model_run' / HISTORY_FILE) as history:
    (totals,) = [r for r in json.load(history) if r['phase'] == TOTALS_PHASE]
  # Same total step count, and only the steps after the checkpoint were trained again.
  assert totals['step'] == TOTAL_STEPS
  trained_images = totals['images_per_second'] * totals['seconds']
  assert round(trained_images) == (TOTAL_STEPS - resumed_at) * BATCH_SIZE
