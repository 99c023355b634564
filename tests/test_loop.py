"""The training loop: it learns, resumes from checkpoints, and stops on a diverged loss."""

import json
import math
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from tests import idx_files
from trainer import augmentation
from trainer import loop
from trainer.task import learning_rate
from trainer import preprocessing
from trainer.config import TrainingConfig
from trainer.model import build_model
from trainer.summaries import HISTORY_FILE
from trainer.summaries import TOTALS_PHASE
from trainer.summaries import RunSummaries

BATCH = 32


def _datasets(count=320, seed=0):
  labels = np.random.default_rng(seed).integers(0, 10, size=count)
  images = preprocessing.scale_to_unit(idx_files.learnable_images(labels, seed)[..., None])
  data = tf.data.Dataset.from_tensor_slices((images, labels))
  train = data.shuffle(count, seed=seed, reshuffle_each_iteration=True).repeat().batch(BATCH)
  return train, data.batch(BATCH)


def _fit(
  run_dir,
  total_steps,
  train,
  evaluation,
  learning_rate=1e-2,
  checkpoint_every=10,
  close_summaries=True,
  log_every=5,
  resume_dir=None,
):
  model = build_model('batch', seed=0)
  task = loop.ClassifierTask(
    model, keras.optimizers.Adam(learning_rate), tf.distribute.get_strategy()
  )
  checkpoints = tf.train.CheckpointManager(
    tf.train.Checkpoint(model=model, optimizer=task.optimizer), os.path.join(run_dir, 'ckpt'), 3
  )
  summaries = RunSummaries(run_dir)
  schedule = loop.Schedule(
    total_steps=total_steps,
    steps_per_epoch=10,
    log_every_n_steps=log_every,
    checkpoint_every_n_steps=checkpoint_every,
  )
  try:
    result = loop.fit(
      task, train, evaluation, schedule, checkpoints, summaries, BATCH, resume_dir=resume_dir
    )
  finally:
    if close_summaries:
      summaries.close()
  return task, result


def test_schedule_stops_at_every_log_checkpoint_and_epoch_boundary():
  schedule = loop.Schedule(
    total_steps=25, steps_per_epoch=7, log_every_n_steps=5, checkpoint_every_n_steps=10
  )
  stops, step = [], 0
  while step < schedule.total_steps:
    step = schedule.next_stop(step)
    stops.append(step)
  assert stops == [5, 7, 10, 14, 15, 20, 21, 25]


def test_fit_learns_and_writes_history(tmp_path):
  train, evaluation = _datasets()
  task, result = _fit(str(tmp_path), 60, train, evaluation)
  assert result['accuracy'] > 0.9
  assert int(task.optimizer.iterations) == 60
  with open(tmp_path / HISTORY_FILE) as history:
    records = json.load(history)
  assert [r['step'] for r in records if r['phase'] == 'eval'] == [10, 20, 30, 40, 50, 60]
  assert all(r['images_per_second'] > 0 for r in records if r['phase'] == 'train')
  (totals,) = [r for r in records if r['phase'] == TOTALS_PHASE]
  assert totals['step'] == 60 and totals['seconds'] > 0
  assert totals['images_per_second'] == pytest.approx(60 * BATCH / totals['seconds'])


def test_fit_resumes_from_the_last_checkpoint_and_keeps_the_history_before_it(tmp_path):
  train, evaluation = _datasets()
  _fit(str(tmp_path), 20, train, evaluation)
  with open(tmp_path / HISTORY_FILE) as history:
    first_attempt = json.load(history)
  (first_totals,) = [r for r in first_attempt if r['phase'] == TOTALS_PHASE]
  task, _ = _fit(str(tmp_path), 30, train, evaluation)
  assert int(task.optimizer.iterations) == 30  # 20 restored + 10 new, not 30 new
  with open(tmp_path / HISTORY_FILE) as history:
    records = json.load(history)
  # Every log and eval step once: those up to 20 as the first attempt recorded them.
  assert [r['step'] for r in records if r['phase'] == 'train'] == [5, 10, 15, 20, 25, 30]
  assert [r['step'] for r in records if r['phase'] == 'eval'] == [10, 20, 30]
  assert [r for r in records if r['step'] <= 20 and r['phase'] in ('train', 'eval')] == [
    r for r in first_attempt if r['phase'] in ('train', 'eval')
  ]
  (totals,) = [r for r in records if r['phase'] == TOTALS_PHASE]
  assert totals['step'] == 30 and totals['seconds'] > first_totals['seconds']
  assert totals['images_per_second'] * totals['seconds'] == pytest.approx(30 * BATCH)


def test_a_worker_writing_to_scratch_resumes_from_the_chiefs_checkpoint(tmp_path):
  # A restarted non-chief worker of a multi-worker run: its own checkpoints go to scratch.
  train, evaluation = _datasets()
  chief_dir = tmp_path / 'chief'
  chief, _ = _fit(str(chief_dir), 20, train, evaluation)
  restored, _ = _fit(
    str(tmp_path / 'at_20'), 20, train, evaluation, resume_dir=str(chief_dir / 'ckpt')
  )
  for chiefs, workers in zip(chief.model.weights, restored.model.weights):
    np.testing.assert_array_equal(chiefs.numpy(), workers.numpy())
  worker, _ = _fit(
    str(tmp_path / 'scratch'), 30, train, evaluation, resume_dir=str(chief_dir / 'ckpt')
  )
  assert int(worker.optimizer.iterations) == 30  # 20 restored from the chief's + 10 new
  assert tf.train.latest_checkpoint(str(chief_dir / 'ckpt')).endswith('-20')
  assert tf.train.latest_checkpoint(str(tmp_path / 'scratch' / 'ckpt')).endswith('-30')


def test_history_is_saved_with_every_checkpoint(tmp_path):
  # A preempted run never reaches the end of fit: what it trained must already be on disk.
  train, evaluation = _datasets()
  with pytest.raises(loop.NonFiniteLossError):
    _fit(str(tmp_path), 40, _poisoned_after(train, 21), evaluation, close_summaries=False)
  with open(tmp_path / HISTORY_FILE) as history:
    records = json.load(history)
  assert [r['step'] for r in records if r['phase'] == 'eval'] == [10, 20]
  assert not [r for r in records if r['phase'] == TOTALS_PHASE]


def test_diverged_loss_stops_training(tmp_path):
  train, evaluation = _datasets()
  poisoned = train.map(lambda images, labels: (images * np.float32('nan'), labels))
  with pytest.raises(loop.NonFiniteLossError, match='loss became nan by step 5'):
    _fit(str(tmp_path), 20, poisoned, evaluation)


def _poisoned_after(train, steps):
  """The same batches as `train` for `steps` steps, then NaN images."""
  return train.take(steps).concatenate(
    train.map(lambda images, labels: (images * np.float32('nan'), labels))
  )


def _checkpointed_weights(run_dir):
  """The latest checkpoint's step and model weights."""
  model = build_model('batch', seed=0)
  checkpoint = tf.train.Checkpoint(model=model)
  latest = tf.train.latest_checkpoint(os.path.join(run_dir, 'ckpt'))
  checkpoint.restore(latest).expect_partial()
  return int(latest.rsplit('-', 1)[1]), [weight.numpy() for weight in model.weights]


def test_a_loss_that_diverges_between_log_steps_is_never_checkpointed(tmp_path):
  # Logs every 10 steps, checkpoints every 5: NaN from step 22 on must stop training at the
  # checkpoint of step 25, not save it and stop at the log of step 30.
  train, evaluation = _datasets()
  with pytest.raises(loop.NonFiniteLossError, match='loss became nan by step 25'):
    _fit(
      str(tmp_path), 40, _poisoned_after(train, 21), evaluation, checkpoint_every=5, log_every=10
    )
  step, weights = _checkpointed_weights(str(tmp_path))
  assert step == 20
  assert all(np.isfinite(weight).all() for weight in weights)


def test_weights_that_overflow_after_a_finite_loss_are_never_checkpointed(tmp_path):
  # An infinite learning rate: the first step's loss is finite, the weights it writes are not.
  train, evaluation = _datasets()
  with pytest.raises(loop.NonFiniteLossError, match='a weight became NaN or infinite by step 1'):
    _fit(str(tmp_path), 40, train, evaluation, learning_rate=math.inf, checkpoint_every=1)
  assert tf.train.latest_checkpoint(str(tmp_path / 'ckpt')) is None


def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path):
  # Moving statistics, Adam's moments and a cosine-decayed rate must all carry over: the same
  # seed, data and steps give the same model. Each attempt builds its datasets afresh, as a
  # restarted Trainer process does.
  rate = keras.optimizers.schedules.CosineDecay(1e-2, decay_steps=30)
  uninterrupted, _ = _fit(str(tmp_path / 'straight'), 30, *_datasets(), rate)
  interrupted = str(tmp_path / 'interrupted')
  train, evaluation = _datasets()
  # The data ends during step 23, as a preempted machine would: the last checkpoint is step 20.
  with pytest.raises(tf.errors.OutOfRangeError):
    _fit(interrupted, 30, train.take(22), evaluation, rate)
  resumed, _ = _fit(interrupted, 30, *_datasets(), rate)
  assert int(resumed.optimizer.iterations) == 30
  for ours, theirs in zip(resumed.model.weights, uninterrupted.model.weights):
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6, atol=1e-7)


def test_cosine_schedule_decays_the_rate_to_zero_over_the_run():
  rate = learning_rate(TrainingConfig(learning_rate=0.01), total_steps=100)
  assert [float(rate(step)) for step in (0, 50, 100)] == pytest.approx([0.01, 0.005, 0.0])
  constant = TrainingConfig(learning_rate=0.01, learning_rate_schedule='constant')
  assert learning_rate(constant, total_steps=100) == 0.01
  with pytest.raises(ValueError, match='learning_rate_schedule'):
    TrainingConfig(learning_rate_schedule='step')


def test_random_mirror_is_reproducible_label_preserving_and_resumable():
  images = np.arange(8 * 4 * 3, dtype=np.float32).reshape(8, 4, 3, 1)
  batches = tf.data.Dataset.from_tensor_slices((images, np.arange(8))).repeat().batch(8)
  mirrored = augmentation.random_mirror(batches, seed=3)
  first = [(x.numpy(), y.numpy()) for x, y in mirrored.take(4)]
  again = [(x.numpy(), y.numpy()) for x, y in mirrored.take(4)]
  for (x, y), (x_again, _) in zip(first, again):
    np.testing.assert_array_equal(x, x_again)
    np.testing.assert_array_equal(y, np.arange(8))
    flipped = [not np.array_equal(x[i], images[i]) for i in range(8)]
    for i in range(8):
      assert np.array_equal(x[i], images[i][:, ::-1] if flipped[i] else images[i])
  draws = np.array([[not np.array_equal(x[i], images[i]) for i in range(8)] for x, _ in first])
  assert 0 < draws.mean() < 1  # some mirrored, some not
  # Resuming skips batches: batch 2 after skip(2) is the same draw as batch 2 straight through.
  ((resumed, _),) = mirrored.skip(2).take(1)
  np.testing.assert_array_equal(resumed.numpy(), first[2][0])
