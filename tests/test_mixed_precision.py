"""Mixed precision on the multi-replica path, on two logical CPU devices standing in for GPUs."""

import math
import os

import pytest
import tensorflow as tf
import tf_keras as keras

from tests.test_loop import BATCH
from tests.test_loop import _datasets
from trainer import loop
from trainer.config import TrainingConfig
from trainer.summaries import RunSummaries
from trainer.task import build_model_and_optimizer


@pytest.mark.parametrize('variant', ['batch', 'layer', 'weight'])
def test_mixed_precision_trains_under_mirrored_strategy_with_float32_variables(
  variant, two_cpu_strategy, tmp_path
):
  config = TrainingConfig(variant=variant, mixed_precision=True, learning_rate=1e-2, seed=0)
  model, optimizer = build_model_and_optimizer(config, two_cpu_strategy, total_steps=30)
  assert keras.mixed_precision.global_policy().name == 'float32'  # not leaked to the process
  assert isinstance(optimizer, keras.mixed_precision.LossScaleOptimizer)
  assert {layer.compute_dtype for layer in model.layers[1:]} == {'float16'}
  assert {v.dtype for v in model.variables if v.dtype.is_floating} == {tf.float32}

  task = loop.ClassifierTask(model, optimizer, two_cpu_strategy)
  assert task.strategy.num_replicas_in_sync == 2 and task.scales_loss
  train, evaluation = _datasets()
  schedule = loop.Schedule(
    total_steps=30, steps_per_epoch=10, log_every_n_steps=10, checkpoint_every_n_steps=30
  )
  checkpoints = tf.train.CheckpointManager(
    tf.train.Checkpoint(model=model, optimizer=optimizer), os.path.join(tmp_path, 'ckpt'), 1
  )
  summaries = RunSummaries(str(tmp_path))
  try:
    result = loop.fit(task, train, evaluation, schedule, checkpoints, summaries, BATCH)
  finally:
    summaries.close()
  assert int(optimizer.iterations.numpy()) == 30
  assert math.isfinite(result['loss']) and result['accuracy'] > 0.5
  assert {v.dtype for v in model.variables if v.dtype.is_floating} == {tf.float32}
