"""The Trainer's training step as production runs it: no data-dependent branches from the model,
XLA that trains like the graph step, and every replica of a MirroredStrategy on the same path."""

import collections
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from tests.test_loop import BATCH
from tests.test_loop import _datasets
from tests.test_model import _Serving
from trainer import loop
from trainer.config import TrainingConfig
from trainer.devices import Hardware
from trainer.devices import use_jit_compile
from trainer.model import VARIANTS
from trainer.summaries import RunSummaries
from trainer.task import build_model_and_optimizer

# Each of these makes the host wait for the device to pick a branch or decide to loop again.
CONTROL_FLOW_OPS = {
  'If',
  'StatelessIf',
  'Case',
  'StatelessCase',
  'While',
  'StatelessWhile',
  'Switch',
  'Merge',
}
# What a Vertex Trainer with two T4 GPUs sees; 'auto' then means mixed_float16 and XLA.
TWO_T4_GPUS = Hardware(((7, 5), (7, 5)))
SMALL_NETWORK = {'filters': 8, 'conv_blocks': 1, 'hidden_units': 0}


def _task(config, strategy, hardware, total_steps=100):
  model, optimizer = build_model_and_optimizer(config, strategy, total_steps, hardware)
  jit_compile = use_jit_compile(config.jit_compile, hardware)
  return loop.ClassifierTask(model, optimizer, strategy, jit_compile)


def _train_graph(task, dataset):
  """The GraphDef of ClassifierTask.train, its nested functions (loop body, XLA step) included."""
  iterator = iter(task.strategy.experimental_distribute_dataset(dataset))
  return task.train.get_concrete_function(iterator, tf.constant(1)).graph.as_graph_def()


def _all_nodes(graph_def):
  yield from graph_def.node
  for function in graph_def.library.function:
    yield from function.node_def


@pytest.mark.parametrize('variant', VARIANTS)
@pytest.mark.parametrize(
  'precision,jit_compile', [('float32', 'false'), ('mixed_bfloat16', 'true')], ids=['cpu', 'xla']
)
def test_train_step_has_no_control_flow_but_the_step_loop(variant, precision, jit_compile):
  # The default network, as the Trainer builds it.
  config = TrainingConfig(variant=variant, precision=precision, jit_compile=jit_compile)
  task = _task(config, tf.distribute.get_strategy(), Hardware())
  train, _ = _datasets(count=64)
  control_flow = [
    (node.name, node.op)
    for node in _all_nodes(_train_graph(task, train))
    if node.op in CONTROL_FLOW_OPS
  ]
  # The loop over the steps of one call is the only one (the model's would sit under its scope).
  assert control_flow == [('while', 'While')], control_flow


@pytest.mark.parametrize('variant', VARIANTS)
def test_xla_step_trains_like_the_graph_step_and_exports(variant, tmp_path):
  images, labels = next(iter(_datasets(count=64)[0]))
  batches = tf.data.Dataset.from_tensors((images, labels)).repeat()
  tasks, gradients, losses = [], [], []
  for jit_compile in ('false', 'true'):
    config = TrainingConfig(
      variant=variant, precision='float32', jit_compile=jit_compile, seed=3, **SMALL_NETWORK
    )
    task = _task(config, tf.distribute.get_strategy(), Hardware())
    task.initialize(batches)
    # The same weights and batch: the gradients the step applies (Adam's first updates are
    # about lr * sign(gradient), too sensitive to rounding to compare weights after them).
    gradients.append(task._gradients(images, labels))
    task.train_metrics.reset()
    task.train(iter(batches), tf.constant(3))
    losses.append(task.train_metrics.result()['loss'])
    tasks.append(task)
  for graph_gradient, xla_gradient in zip(*gradients):
    # XLA sums the batch statistics' reductions in another order: float32 rounding of up to a few
    # 1e-6 on gradients of order 1 (seen 4.5e-6 on a near-zero element in a CI run).
    np.testing.assert_allclose(xla_gradient, graph_gradient, rtol=1e-4, atol=1e-5)
  assert losses[1] == pytest.approx(losses[0], rel=1e-3)

  xla_model = tasks[1].model
  export_dir = str(tmp_path / 'export')
  serving = _Serving(xla_model)
  tf.saved_model.save(serving, export_dir, signatures={'serving_default': serving.serve})
  served = tf.saved_model.load(export_dir).signatures['serving_default'](images=images)
  np.testing.assert_allclose(served['logits'], xla_model(images, training=False), atol=1e-5)


def _expanded_op_types(node, functions, ignored_scopes):
  """Counter of (op, dtype) of `node` and, recursively, of every function it calls; nodes with
  a name component in `ignored_scopes` are left out."""
  if ignored_scopes & set(node.name.split('/')):
    return collections.Counter()
  counts = collections.Counter([(node.op, node.attr['T'].type)])
  for value in node.attr.values():
    called = [value.func.name] if value.HasField('func') else [f.name for f in value.list.func]
    for name in called:
      for inner in functions[name].node_def:
        counts += _expanded_op_types(inner, functions, ignored_scopes)
  return counts


def _xla_steps(graph_def, ignored_scopes=frozenset()):
  """Expanded op types of each XLA-compiled step the step loop calls, one per replica."""
  functions = {f.signature.name: f for f in graph_def.library.function}
  (body,) = [f for name, f in functions.items() if name.startswith('while_body')]
  return [
    _expanded_op_types(node, functions, ignored_scopes)
    for node in body.node_def
    if node.attr['_XlaMustCompile'].b
  ]


@pytest.mark.parametrize('variant', VARIANTS)
def test_every_replica_trains_on_the_production_path(variant, two_cpu_strategy, tmp_path):
  # Two logical CPUs stand in for the two GPUs: precision and XLA are chosen as there.
  strategy = two_cpu_strategy
  config = TrainingConfig(variant=variant, learning_rate=1e-2, seed=4, **SMALL_NETWORK)
  task = _task(config, strategy, TWO_T4_GPUS, total_steps=6)
  assert task.model.dtype_policy.name == 'mixed_float16' and task.scales_loss
  train, evaluation = _datasets(count=64)

  # Each replica's step is traced in a thread of its own: it must compute what the same
  # Trainer computes on one device, traced in the main thread (a thread-local switch would not).
  # Keras' own BatchNormalization adds a guard for empty replica batches under a strategy.
  keras_norms = {
    layer.name for layer in task.model.layers if isinstance(layer, keras.layers.BatchNormalization)
  }
  replica_steps = _xla_steps(_train_graph(task, train), keras_norms)
  (single_device_step,) = _xla_steps(
    _train_graph(_task(config, tf.distribute.get_strategy(), TWO_T4_GPUS), train), keras_norms
  )
  assert len(replica_steps) == 2
  for step in replica_steps:
    assert step == single_device_step, (step - single_device_step, single_device_step - step)
  # In float16 (the first convolution's forward and filter gradient).
  assert single_device_step[('Conv2D', tf.float16.as_datatype_enum)] == 1

  schedule = loop.Schedule(
    total_steps=6, steps_per_epoch=3, log_every_n_steps=3, checkpoint_every_n_steps=6
  )
  checkpoints = tf.train.CheckpointManager(
    tf.train.Checkpoint(model=task.model, optimizer=task.optimizer), str(tmp_path / 'ckpt'), 1
  )
  summaries = RunSummaries(str(tmp_path))
  try:
    result = loop.fit(task, train, evaluation, schedule, checkpoints, summaries, BATCH)
  finally:
    summaries.close()
  assert np.isfinite(result['loss'])
  assert int(task.optimizer.iterations.numpy()) == 6
  for variable in task.model.variables:
    copies = strategy.experimental_local_results(variable)
    if len(copies) == 2 and variable.trainable:
      np.testing.assert_array_equal(copies[0], copies[1], err_msg=variable.name)
  assert os.path.isdir(tmp_path / 'ckpt')
