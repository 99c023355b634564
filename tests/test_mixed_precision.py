"""Precision and XLA per machine: the auto choices on faked hardware, and 16-bit training that keeps
statistics, loss and the exported signatures in float32."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from pipeline import cli
from tests.test_loop import BATCH
from tests.test_loop import _datasets
from pipeline import options
from contract import signatures
from contract.features import FASHION_MNIST
from tests.serving_model import png_files
from tests.serving_model import write_transform_graph
from trainer import export
from trainer import loop
from trainer.config import TrainingConfig
from trainer.devices import Hardware
from trainer.devices import cpu_flags
from trainer.devices import keras_policy
from trainer.devices import use_jit_compile
from trainer.layers import BatchNormalization
from trainer.summaries import RunSummaries
from trainer.task import build_model_and_optimizer

NO_GPU = ()
T4, V100, P100 = (7, 5), (7, 0), (6, 0)


@pytest.mark.parametrize(
  ('gpus', 'flags', 'expected'),
  [
    ((T4,), set(), 'mixed_float16'),
    ((V100, T4), {'amx_bf16'}, 'mixed_float16'),
    ((P100,), {'avx512_bf16'}, 'float32'),  # a GPU without tensor cores: CPU flags do not matter
    ((T4, P100), set(), 'float32'),  # the slowest GPU decides
    (NO_GPU, {'avx2', 'amx_bf16'}, 'mixed_bfloat16'),
    (NO_GPU, {'avx512_bf16'}, 'mixed_bfloat16'),
    (NO_GPU, {'avx2', 'avx512f'}, 'float32'),
  ],
)
def test_auto_precision_follows_the_hardware(gpus, flags, expected):
  hardware = Hardware(gpus, frozenset(flags))
  assert keras_policy('auto', hardware) == expected
  for explicit in ('float32', 'mixed_bfloat16', 'mixed_float16'):
    assert keras_policy(explicit, hardware) == explicit


def test_auto_jit_compile_is_on_with_a_gpu_only():
  assert use_jit_compile('auto', Hardware((T4,))) is True
  assert use_jit_compile('auto', Hardware(NO_GPU, frozenset({'amx_bf16'}))) is False
  assert use_jit_compile('true', Hardware()) is True
  assert use_jit_compile('false', Hardware((T4,))) is False


def test_hardware_detect_reads_the_device_list_and_cpuinfo(tmp_path):
  cpuinfo = tmp_path / 'cpuinfo'
  cpuinfo.write_text(
    'processor\t: 0\nflags\t\t: fpu sse2 avx512_bf16\nbugs\t\t: spectre_v1\n\n'
    'processor\t: 1\nflags\t\t: fpu sse2 avx512_bf16\n'
  )
  details = {'GPU:0': {'compute_capability': (8, 0)}, 'GPU:1': {}}
  hardware = Hardware.detect(
    list_gpus=lambda: ['GPU:0', 'GPU:1'],
    device_details=details.__getitem__,
    cpuinfo_path=str(cpuinfo),
  )
  # A GPU that does not report its capability counts as one without tensor cores.
  assert hardware == Hardware(((8, 0), (0, 0)), frozenset({'fpu', 'sse2', 'avx512_bf16'}))
  assert keras_policy('auto', hardware) == 'float32'
  assert cpu_flags(str(tmp_path / 'missing')) == frozenset()
  no_gpu = Hardware.detect(list_gpus=list, cpuinfo_path=str(cpuinfo))
  assert keras_policy('auto', no_gpu) == 'mixed_bfloat16'


def test_config_names_a_bad_precision_or_jit_compile_and_takes_yaml_booleans():
  with pytest.raises(ValueError, match="precision must be one of .*'float16'"):
    TrainingConfig(precision='float16')
  with pytest.raises(ValueError, match="jit_compile must be one of .*'yes'"):
    TrainingConfig(jit_compile='yes')
  # The deploy YAML's `jit_compile: true` / `false` are booleans to the YAML reader.
  assert options.build(TrainingConfig, {'jit_compile': True}).jit_compile == 'true'
  assert options.build(TrainingConfig, {'jit_compile': False}).jit_compile == 'false'
  with pytest.raises(ValueError, match=r"unknown training options \['mixed_precision'\]"):
    TrainingConfig.from_custom_config({'mixed_precision': True})


def test_run_flags_reach_the_training_config(capsys):
  args = cli._parser().parse_args(['run', '--precision', 'mixed_bfloat16', '--jit-compile', 'true'])
  training = cli.config_from_args(args).training
  assert (training.precision, training.jit_compile) == ('mixed_bfloat16', 'true')
  default = cli.config_from_args(cli._parser().parse_args(['run'])).training
  assert (default.precision, default.jit_compile) == ('auto', 'auto')
  with pytest.raises(SystemExit):
    cli._parser().parse_args(['run', '--precision', 'float16'])
  assert (
    "argument --precision: must be one of auto, float32, mixed_bfloat16, mixed_float16, got 'float16'"
    in capsys.readouterr().err
  )


def _loss_dtypes(task, iterator):
  graph = task.train.get_concrete_function(iterator, tf.constant(1)).graph.as_graph_def()
  nodes = [*graph.node, *(node for f in graph.library.function for node in f.node_def)]
  return {
    tf.as_dtype(node.attr['T'].type)
    for node in nodes
    if node.op == 'SparseSoftmaxCrossEntropyWithLogits'
  }


@pytest.mark.parametrize(
  ('precision', 'compute_dtype'),
  [('mixed_bfloat16', 'bfloat16'), ('mixed_float16', 'float16')],
)
def test_16bit_training_keeps_statistics_loss_and_signatures_in_float32(
  precision, compute_dtype, tmp_path
):
  # A narrow network: the dtypes under test do not depend on its width, float16 on CPU is slow.
  config = TrainingConfig(
    variant='batch', precision=precision, learning_rate=1e-2, seed=0, filters=8, hidden_units=32
  )
  strategy = tf.distribute.get_strategy()
  model, optimizer = build_model_and_optimizer(config, strategy, 30, Hardware())
  assert keras.mixed_precision.global_policy().name == 'float32'  # not leaked to the process
  assert isinstance(optimizer, keras.mixed_precision.LossScaleOptimizer) == (
    precision == 'mixed_float16'  # bfloat16 has float32's range: no loss scaling
  )
  assert {layer.compute_dtype for layer in model.layers[1:]} == {compute_dtype}
  norms = [layer for layer in model.layers if isinstance(layer, BatchNormalization)]
  assert norms and all(n.moving_variance.dtype == tf.float32 for n in norms)

  task = loop.ClassifierTask(model, optimizer, strategy)
  train, evaluation = _datasets()
  assert _loss_dtypes(task, iter(train)) == {tf.float32}
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
  assert result['accuracy'] > 0.5
  assert {v.dtype for v in model.variables if v.dtype.is_floating} == {tf.float32}
  # The statistics moved away from their initial values, in float32.
  assert not np.allclose(norms[0].moving_variance.numpy(), 1.0)

  export_dir = str(tmp_path / 'export')
  export.save(
    model,
    write_transform_graph(str(tmp_path / "transform")),
    export_dir,
    {'variant': 'batch'},
    FASHION_MNIST,
    png_files(np.zeros((1, 28, 28), np.uint8)),
  )
  loaded = tf.saved_model.load(export_dir)
  images = tf.zeros([2, 28, 28, 1], tf.uint8)
  outputs = loaded.signatures[signatures.IMAGES_SIGNATURE](images=images)
  assert outputs[signatures.PROBABILITIES].dtype == tf.float32
  served = outputs[signatures.PROBABILITIES].numpy()
  np.testing.assert_allclose(served.sum(axis=1), 1.0, rtol=1e-6)
  for signature in (
    signatures.SERVING_SIGNATURE,
    signatures.EXAMPLES_SIGNATURE,
    signatures.IMAGES_SIGNATURE,
  ):
    output_specs = loaded.signatures[signature].structured_outputs
    assert output_specs[signatures.PROBABILITIES].dtype == tf.float32
