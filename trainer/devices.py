"""Where training runs: the distribution strategy, numeric precision and XLA for this machine,
and with several machines, which one writes the outputs.

`Hardware` is what the choices depend on (GPU compute capabilities, CPU
flags); `Hardware.detect` reads them from TensorFlow and /proc/cpuinfo, and
tests build it by hand to stand in for machines they do not have.
"""

import contextlib
import dataclasses
import tempfile
from collections.abc import Callable, Iterator, Sequence

import tensorflow as tf

from trainer.config import AUTO
from trainer.config import FLOAT32
from trainer.config import MIXED_BFLOAT16
from trainer.config import MIXED_FLOAT16

# Tensor cores (Volta and later) run float16 matmuls and convolutions several times faster.
MIN_FLOAT16_COMPUTE_CAPABILITY = (7, 0)
# Either set of instructions computes bfloat16 dot products natively.
BFLOAT16_CPU_FLAGS = frozenset({'amx_bf16', 'avx512_bf16'})
CPUINFO_PATH = '/proc/cpuinfo'


@dataclasses.dataclass(frozen=True)
class Hardware:
  """The visible GPUs' compute capabilities (major, minor) and the CPU's feature flags."""

  gpu_compute_capabilities: tuple[tuple[int, int], ...] = ()
  cpu_flags: frozenset[str] = frozenset()

  @classmethod
  def detect(
    cls,
    list_gpus: Callable[[], Sequence[tf.config.PhysicalDevice]] = lambda: (
      tf.config.list_physical_devices('GPU')
    ),
    device_details: Callable[[tf.config.PhysicalDevice], dict] = (
      tf.config.experimental.get_device_details
    ),
    cpuinfo_path: str = CPUINFO_PATH,
  ) -> 'Hardware':
    capabilities = tuple(
      tuple(device_details(gpu).get('compute_capability') or (0, 0)) for gpu in list_gpus()
    )
    return cls(capabilities, cpu_flags(cpuinfo_path))

  @property
  def has_gpu(self) -> bool:
    return bool(self.gpu_compute_capabilities)


def cpu_flags(cpuinfo_path: str = CPUINFO_PATH) -> frozenset[str]:
  """The feature flags /proc/cpuinfo lists (its `flags : ...` lines); empty where there is none."""
  try:
    with open(cpuinfo_path) as cpuinfo:
      lines = cpuinfo.read().splitlines()
  except OSError:
    return frozenset()
  return frozenset(
    flag
    for line in lines
    if line.split(':', 1)[0].strip() == 'flags'
    for flag in line.split(':', 1)[1].split()
  )


def keras_policy(precision: str, hardware: Hardware) -> str:
  """The Keras mixed precision policy for `precision`; 'auto' picks the fastest safe one here.

  auto: mixed_float16 when every visible GPU has tensor cores, float32 on other GPUs,
  mixed_bfloat16 on CPUs with native bfloat16 instructions, float32 otherwise.
  """
  if precision != AUTO:
    return precision
  if hardware.has_gpu:
    if min(hardware.gpu_compute_capabilities) >= MIN_FLOAT16_COMPUTE_CAPABILITY:
      return MIXED_FLOAT16
    return FLOAT32
  if hardware.cpu_flags & BFLOAT16_CPU_FLAGS:
    return MIXED_BFLOAT16
  return FLOAT32


def use_jit_compile(jit_compile: str, hardware: Hardware) -> bool:
  """Whether the training step is XLA-compiled: 'auto' on GPUs only (XLA was ~6x slower on our CPU)."""
  if jit_compile == AUTO:
    return hardware.has_gpu
  return jit_compile == 'true'


def strategy_for_visible_devices() -> tf.distribute.Strategy:
  """MirroredStrategy over several GPUs, one GPU alone, else the default (CPU) strategy."""
  gpus = tf.config.list_logical_devices('GPU')
  if len(gpus) > 1:
    return tf.distribute.MirroredStrategy([gpu.name for gpu in gpus])
  if len(gpus) == 1:
    return tf.distribute.OneDeviceStrategy(gpus[0].name)
  return tf.distribute.get_strategy()


def distribution_strategy() -> tf.distribute.Strategy:
  """MultiWorkerMirroredStrategy when TF_CONFIG names more than one task (a Vertex AI custom job
  of several machines sets it on each), else strategy_for_visible_devices()."""
  resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
  cluster = resolver.cluster_spec()
  if sum(cluster.num_tasks(job) for job in cluster.jobs) > 1:
    return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
  return strategy_for_visible_devices()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """Whether this process writes the run's outputs: the `chief` task, worker 0 of a cluster without
  one, or a process that is no task of a cluster."""
  resolver = strategy.cluster_resolver
  if resolver is None or not resolver.task_type:
    return True
  if resolver.task_type == 'chief':
    return True
  return (
    resolver.task_type == 'worker'
    and resolver.task_id == 0
    and 'chief' not in resolver.cluster_spec().jobs
  )


@contextlib.contextmanager
def writable_dir(directory: str, chief: bool) -> Iterator[str]:
  """`directory` on the chief; on the other workers a scratch directory, removed on exit.

  Every worker still writes: saving a checkpoint or a SavedModel under
  MultiWorkerMirroredStrategy runs collective ops that all workers must join
  (TensorFlow's multi-worker checkpoint pattern), but only the chief's copy is kept.
  """
  if chief:
    yield directory
    return
  scratch = tempfile.mkdtemp(prefix='non-chief-worker-')
  try:
    yield scratch
  finally:
    tf.io.gfile.rmtree(scratch)
