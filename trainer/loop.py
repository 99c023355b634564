"""A custom training loop in the spirit of Orbit: it knows models and datasets, not TFX.

`ClassifierTask` holds the per-step math (a GradientTape training step and an
evaluation step, replicated by a tf.distribute strategy, XLA-compiled if
asked). `fit` drives it: it initializes data-dependent layers once, runs steps
in compiled chunks, logs and writes summaries every N steps, evaluates at
each epoch's end, checkpoints every N steps once it has checked that training
has not diverged (so no NaN weights are ever saved), and resumes from the last
checkpoint when one exists, keeping the history recorded up to it.
"""

import dataclasses
import math
from typing import Dict, Optional

from absl import logging
import tensorflow as tf
import tf_keras as keras

from trainer.metrics import ClassifierMetrics
from trainer.metrics import Throughput
from trainer.model import initialize_from_batch
from trainer.model import uninitialized_layers
from trainer.summaries import CHECKPOINT_PHASE
from trainer.summaries import TOTALS_PHASE
from trainer.summaries import RunSummaries


class NonFiniteLossError(RuntimeError):
  """Training diverged: the loss became NaN or infinite."""


@dataclasses.dataclass(frozen=True)
class Schedule:
  """When the loop stops, logs, evaluates and checkpoints (all in steps)."""

  total_steps: int
  steps_per_epoch: int
  log_every_n_steps: int
  checkpoint_every_n_steps: int
  max_eval_steps: Optional[int] = None

  def next_stop(self, step: int) -> int:
    """The next step at which the loop must leave compiled code to do something."""
    boundaries = [self.total_steps]
    for every in (self.log_every_n_steps, self.checkpoint_every_n_steps, self.steps_per_epoch):
      boundaries.append((step // every + 1) * every)
    return min(boundaries)


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  return max(1, math.ceil(num_examples / batch_size))


class ClassifierTask:
  """One model, its own optimizer, and the compiled steps that train and evaluate it."""

  def __init__(
    self,
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    strategy: tf.distribute.Strategy,
    jit_compile: bool = False,
  ):
    self.model = model
    self.optimizer = optimizer
    self.strategy = strategy
    # Mixed float16: the loss is scaled up before the float16 backward pass and the gradients
    # scaled back down before they are applied.
    self.scales_loss = isinstance(optimizer, keras.mixed_precision.LossScaleOptimizer)
    # Under XLA the forward and backward pass of a replica are one fused program. The update
    # stays outside it: under MirroredStrategy it is a cross-replica merge that writes every
    # replica's variables, which one XLA program (bound to one device) cannot do.
    self._gradients = (
      tf.function(self._replica_gradients, jit_compile=True)
      if jit_compile
      else self._replica_gradients
    )
    with strategy.scope():
      self.train_metrics = ClassifierMetrics('train')
      self.eval_metrics = ClassifierMetrics('eval')

  def _replica_gradients(self, images: tf.Tensor, labels: tf.Tensor) -> list[tf.Tensor]:
    with tf.GradientTape() as tape:
      logits = self.model(images, training=True)
      per_example_loss = keras.losses.sparse_categorical_crossentropy(
        labels, tf.cast(logits, tf.float32), from_logits=True
      )
      # Scaled by the global batch so that summing gradients over replicas averages them.
      loss = tf.nn.compute_average_loss(per_example_loss)
      if self.model.losses:
        loss += tf.nn.scale_regularization_loss(tf.add_n(self.model.losses))
      if self.scales_loss:
        loss = self.optimizer.get_scaled_loss(loss)
    gradients = tape.gradient(loss, self.model.trainable_variables)
    if self.scales_loss:
      gradients = self.optimizer.get_unscaled_gradients(gradients)
    self.train_metrics.update(labels, logits, tf.reduce_mean(per_example_loss))
    return gradients

  def _train_replica_step(self, images: tf.Tensor, labels: tf.Tensor) -> None:
    gradients = self._gradients(images, labels)
    self.optimizer.apply_gradients(zip(gradients, self.model.trainable_variables))

  def _eval_replica_step(self, images: tf.Tensor, labels: tf.Tensor) -> None:
    logits = self.model(images, training=False)
    per_example_loss = keras.losses.sparse_categorical_crossentropy(
      labels, tf.cast(logits, tf.float32), from_logits=True
    )
    self.eval_metrics.update(labels, logits, tf.reduce_mean(per_example_loss))

  @tf.function
  def train(self, iterator, num_steps: tf.Tensor) -> None:
    """Runs `num_steps` training steps inside one tf.function call."""
    for _ in tf.range(num_steps):
      images, labels = next(iterator)
      self.strategy.run(self._train_replica_step, args=(images, labels))

  def distribute(self, dataset: tf.data.Dataset) -> tf.distribute.DistributedDataset:
    """`dataset`'s global batches split over the replicas; with several workers, each reads the
    whole stream and keeps its own slice of every global batch (tf.data's DATA sharding), so each
    step trains on the batch one machine would, and the workers see distinct parts of each epoch.
    Sharding by file instead would read less per worker but tie the batches to the file count."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return self.strategy.experimental_distribute_dataset(dataset.with_options(options))

  def initialize(self, dataset: tf.data.Dataset) -> None:
    """Data-dependent initialization from the first batch of `dataset`, before any training step
    (a no-op for models without it, or restored from an initialized checkpoint)."""
    if not uninitialized_layers(self.model):
      return  # and the dataset, whose first batch may take long (a shuffle buffer), is not read
    images, _ = next(iter(dataset))
    initialized = initialize_from_batch(self.model, images)
    logging.info('Initialized %s from the first training batch', ', '.join(initialized))

  @tf.function
  def _evaluate_batch(self, images, labels) -> None:
    self.strategy.run(self._eval_replica_step, args=(images, labels))

  def evaluate(self, dataset: tf.data.Dataset) -> Dict[str, float]:
    """Metrics of the model in inference mode over the whole (finite) dataset."""
    self.eval_metrics.reset()
    for images, labels in self.distribute(dataset):
      self._evaluate_batch(images, labels)
    return self.eval_metrics.result()


def fit(
  task: ClassifierTask,
  train_dataset: tf.data.Dataset,
  eval_dataset: tf.data.Dataset,
  schedule: Schedule,
  checkpoints: tf.train.CheckpointManager,
  summaries: RunSummaries,
  global_batch_size: int,
  resume_dir: Optional[str] = None,
) -> Dict[str, float]:
  """Trains until `schedule.total_steps` and returns the final eval metrics.

  `train_dataset` must repeat forever and yield the same batches in the same
  order on every call (a fixed shuffle seed): resuming skips the batches that
  the restored checkpoint has already trained on. It resumes from the latest
  checkpoint in `resume_dir` (default: the one `checkpoints` writes to); a
  worker that writes its checkpoints to scratch resumes from the chief's.
  """
  latest = tf.train.latest_checkpoint(resume_dir) if resume_dir else checkpoints.latest_checkpoint
  if latest:
    checkpoints.checkpoint.restore(latest).assert_existing_objects_matched()
    logging.info('Resumed from %s', latest)
  step = int(task.optimizer.iterations.numpy())
  summaries.resume(step)
  task.initialize(train_dataset)
  iterator = iter(task.distribute(train_dataset.skip(step)))
  eval_dataset = eval_dataset.take(schedule.max_eval_steps or -1)
  eval_result = {}
  throughput = Throughput()
  # Counts the training time of earlier attempts up to the restored checkpoint as well.
  before = summaries.find(CHECKPOINT_PHASE, step) or {'images': 0, 'seconds': 0.0}
  whole_run = Throughput(before['images'], before['seconds'])
  while step < schedule.total_steps:
    stop = schedule.next_stop(step)
    images = (stop - step) * global_batch_size
    with throughput.measure(images), whole_run.measure(images):
      task.train(iterator, tf.constant(stop - step))
    step = stop
    if step % schedule.log_every_n_steps == 0 or step == schedule.total_steps:
      _log_training(task, summaries, step, schedule.total_steps, throughput.pop_rate())
    if step % schedule.steps_per_epoch == 0 or step == schedule.total_steps:
      eval_result = _evaluate(task, eval_dataset, summaries, step, schedule.steps_per_epoch)
    if step % schedule.checkpoint_every_n_steps == 0 or step == schedule.total_steps:
      # Before every save, not only at log steps: a checkpoint of a diverged model would be
      # what a preempted Trainer resumes from.
      _check_finite(task, step)
      _save_checkpoint(checkpoints, summaries, step, whole_run)
  summaries.write(
    TOTALS_PHASE, step, {'seconds': whole_run.seconds, 'images_per_second': whole_run.rate}
  )
  return eval_result or _evaluate(task, eval_dataset, summaries, step, schedule.steps_per_epoch)


def _save_checkpoint(
  checkpoints: tf.train.CheckpointManager, summaries: RunSummaries, step: int, whole_run: Throughput
) -> None:
  """The history up to `step`, then the checkpoint: a run resumed from a checkpoint finds the
  history up to it (a process killed between the two leaves a history one checkpoint ahead,
  which resume() cuts back to the checkpoint)."""
  summaries.record(
    CHECKPOINT_PHASE, step, {'images': whole_run.images, 'seconds': whole_run.seconds}
  )
  summaries.save()
  checkpoints.save(checkpoint_number=step)


def _check_finite(task: ClassifierTask, step: int) -> None:
  """Raises NonFiniteLossError when training has diverged by `step`: a NaN or infinite loss in a
  step since the last log step, or a weight (an update after a finite loss can still overflow)."""
  loss = task.train_metrics.result()['loss']
  if not math.isfinite(loss):
    diverged = f'training loss became {loss}'
  elif not all(
    bool(tf.reduce_all(tf.math.is_finite(weight)))
    for weight in task.model.weights
    if weight.dtype.is_floating
  ):
    diverged = 'a weight became NaN or infinite'
  else:
    return
  raise NonFiniteLossError(
    f'{diverged} by step {step}; lower the learning rate or check the inputs'
  )


def _log_training(
  task: ClassifierTask,
  summaries: RunSummaries,
  step: int,
  total_steps: int,
  images_per_second: float,
) -> None:
  _check_finite(task, step)
  result = task.train_metrics.result()
  result['images_per_second'] = images_per_second
  logging.info(
    'step %d/%d  loss %.4f  accuracy %.4f  %.0f images/s',
    step,
    total_steps,
    result['loss'],
    result['accuracy'],
    images_per_second,
  )
  summaries.write('train', step, result)
  task.train_metrics.reset()


def _evaluate(
  task: ClassifierTask,
  eval_dataset: tf.data.Dataset,
  summaries: RunSummaries,
  step: int,
  steps_per_epoch: int,
) -> Dict[str, float]:
  result = task.evaluate(eval_dataset)
  epoch = step / steps_per_epoch
  logging.info(
    'epoch %.2f  eval loss %.4f  eval accuracy %.4f', epoch, result['loss'], result['accuracy']
  )
  summaries.write('eval', step, {**result, 'epoch': epoch})
  return result
