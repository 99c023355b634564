"""TF Serving's configuration files for the pushed model, written next to its versions.

`fmnist-pipeline serving-config --serving-root outputs/serving` writes, into the serving root
(the directory the container mounts as /models):

- `models.config`: a ModelServerConfig naming the model, its base path, which versions are
  served (the version policy) and the `stable` / `canary` version labels;
- `batching_parameters_cpu.txt`, `batching_parameters_gpu.txt`: BatchingParameters for
  `--enable_batching`, one per kind of server;
- `monitoring.config`: a MonitoringConfig exposing Prometheus metrics on the REST port.

Version policy: by default the newest `--keep` versions are served and `stable` names the
newest; `--stable`/`--canary`, `--pin` and `--rollback` serve exactly the versions they name.
TF Serving moves an existing label only to a version it has loaded, so a label move is
refused here, before anything is written, unless the current models.config serves that
version. Nothing here deletes a version directory.
"""

import dataclasses
import os
import sys
from typing import Dict, List, Optional, Sequence

import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from components.variant_selection import production
from serving import tf_serving_protos
from serving.arguments import CONTAINER_ROOT
from serving.arguments import DEFAULT_KEEP
from serving.arguments import MAX_REQUEST_IMAGES

MODELS_CONFIG = 'models.config'
MONITORING_CONFIG = 'monitoring.config'
BATCHING_FILES = {
  'cpu': 'batching_parameters_cpu.txt',
  'gpu': 'batching_parameters_gpu.txt',
}
PROMETHEUS_PATH = '/monitoring/prometheus/metrics'
STABLE = 'stable'
CANARY = 'canary'

# How many largest requests' worth of batches may wait; more are refused, not queued.
QUEUED_LARGEST_REQUESTS = 4


@dataclasses.dataclass(frozen=True)
class Batching:
  """One kind of server's batching values; each field's reason is written into the file."""

  max_execution_batch_size: int
  batch_timeout_micros: int
  allowed_batch_sizes: Sequence[int]
  notes: Sequence[str]


# Starting points from TF Serving's batching guide (tensorflow_serving/batching/README.md).
BATCHING = {
  'cpu': Batching(
    max_execution_batch_size=64,
    batch_timeout_micros=0,
    allowed_batch_sizes=(),
    notes=(
      'CPU: a batch runs as soon as a thread is free (batch_timeout_micros 0, the guide\'s',
      'CPU starting point; try 1000-10000). Batches of up to 64 images (the size',
      'benchmarks/bench_serving.py measures); any size up to 64 runs unpadded, since CPU',
      'kernels need no fixed shapes.',
    ),
  ),
  'gpu': Batching(
    max_execution_batch_size=256,
    batch_timeout_micros=2000,
    allowed_batch_sizes=(16, 64, 256),
    notes=(
      'GPU: waits up to 2 ms to fill a batch of up to 256 images (the guide: fill',
      'batches, then bound tail latency with a timeout of a few ms). Batches are padded',
      'to 16, 64 or 256, so the GPU sees three shapes, all of them in the warmup file.',
    ),
  ),
}
COMMON_NOTES = (
  f'Requests of up to {MAX_REQUEST_IMAGES} images are accepted (max_batch_size) and split',
  'into batches of max_execution_batch_size (enable_large_batch_splitting).',
  'num_batch_threads: the serving machine\'s CPU cores (--cpu-cores), as the guide says for',
  'CPU and GPU alike. max_enqueued_batches bounds the queue: the batches of',
  f'{QUEUED_LARGEST_REQUESTS} requests of the largest size wait at most; more are refused',
  '(UNAVAILABLE) instead of queuing without bound.',
)


class ServingConfigError(ValueError):
  """A version, label or directory the configuration cannot use; the message says which."""


def warmup_batch_sizes() -> List[int]:
  """The batch shapes a server runs: 1 without batching, and every batching file's sizes."""
  sizes = {1}
  for batching in BATCHING.values():
    sizes.update(batching.allowed_batch_sizes or [batching.max_execution_batch_size])
  return sorted(sizes)


def batching_parameters(device: str, cpu_cores: int) -> tf_serving_protos.BatchingParameters:
  batching = BATCHING[device]
  parameters = tf_serving_protos.BatchingParameters()
  parameters.max_batch_size.value = MAX_REQUEST_IMAGES
  parameters.enable_large_batch_splitting.value = True
  parameters.max_execution_batch_size.value = batching.max_execution_batch_size
  parameters.batch_timeout_micros.value = batching.batch_timeout_micros
  parameters.num_batch_threads.value = cpu_cores
  parameters.max_enqueued_batches.value = (
    QUEUED_LARGEST_REQUESTS * MAX_REQUEST_IMAGES // batching.max_execution_batch_size
  )
  parameters.allowed_batch_sizes.extend(batching.allowed_batch_sizes)
  return parameters


def monitoring_config() -> tf_serving_protos.MonitoringConfig:
  config = tf_serving_protos.MonitoringConfig()
  config.prometheus_config.enable = True
  config.prometheus_config.path = PROMETHEUS_PATH
  return config


# --- versions and labels ------------------------------------------------------------------


def pushed_versions(model_dir: str) -> List[int]:
  """The version directories Pusher wrote (numbered, holding a SavedModel), oldest first."""
  if not tf.io.gfile.isdir(model_dir):
    raise ServingConfigError(f'{model_dir}: no such directory (nothing pushed yet?)')
  versions = production.complete_versions(model_dir)
  if not versions:
    raise ServingConfigError(f'{model_dir}: no pushed versions (numbered SavedModel directories)')
  return versions


def served_versions(model_config: model_server_config_pb2.ModelConfig, pushed: Sequence[int]):
  """The versions TF Serving loads under this config's version policy, given what is pushed."""
  policy = model_config.model_version_policy
  which = policy.WhichOneof('policy_choice')
  if which == 'specific':
    return sorted(set(policy.specific.versions) & set(pushed))
  if which == 'all':
    return list(pushed)
  # `latest` is also TF Serving's default, with one version.
  count = policy.latest.num_versions if which == 'latest' else 1
  return list(pushed[-count:])


@dataclasses.dataclass(frozen=True)
class VersionPlan:
  """Which versions to serve, and the labels pointing at them."""

  labels: Dict[str, int]
  keep_latest: Optional[int] = None  # serve the newest N (new pushes load by themselves)
  specific: Sequence[int] = ()  # else exactly these

  def describe(self) -> str:
    served = (
      f'the newest {self.keep_latest} versions'
      if self.keep_latest
      else 'versions ' + ', '.join(map(str, self.specific))
    )
    labels = ', '.join(f'{label} = {version}' for label, version in self.labels.items())
    return f'serves {served}; labels: {labels}'


def plan_versions(
  pushed: Sequence[int],
  current: Optional[model_server_config_pb2.ModelConfig],
  keep: int = DEFAULT_KEEP,
  stable: Optional[int] = None,
  canary: Optional[int] = None,
  pin: Optional[int] = None,
  rollback: bool = False,
) -> VersionPlan:
  """The version policy and labels the options ask for, checked against what is pushed."""
  if rollback:
    if current is None or STABLE not in current.version_labels:
      raise ServingConfigError(
        f'--rollback needs a {MODELS_CONFIG} with a `{STABLE}` label to roll back from'
      )
    older = [version for version in pushed if version < current.version_labels[STABLE]]
    if not older:
      raise ServingConfigError(
        f'--rollback: no pushed version is older than the stable {current.version_labels[STABLE]}'
      )
    pin = older[-1]
  if pin is not None:
    stable = pin
  for option, version in (('--stable/--pin/--rollback', stable), ('--canary', canary)):
    if version is not None and version not in pushed:
      raise ServingConfigError(
        f'{option}: version {version} is not pushed (pushed: {", ".join(map(str, pushed))})'
      )
  if stable is None:
    return VersionPlan(labels={STABLE: pushed[-1]}, keep_latest=keep)
  labels = {STABLE: stable}
  if canary is not None and canary != stable:
    labels[CANARY] = canary
  return VersionPlan(labels=labels, specific=sorted(set(labels.values())))


def check_label_moves(
  plan: VersionPlan,
  current: Optional[model_server_config_pb2.ModelConfig],
  pushed: Sequence[int],
) -> None:
  """Refuses what TF Serving would: moving an existing label to a version it has not loaded.

  (server_core.cc assigns labels before it loads the new policy's versions, and
  --allow_version_labels_for_unavailable_models only covers labels that are new.)
  """
  if current is None:
    return
  loaded = served_versions(current, pushed)
  for label, version in plan.labels.items():
    before = current.version_labels.get(label)
    if before is not None and before != version and version not in loaded:
      raise ServingConfigError(
        f'`{label}` cannot move from {before} to {version}: TF Serving moves a label only to a '
        f'loaded version, and the current {MODELS_CONFIG} serves '
        f'{", ".join(map(str, loaded)) or "none"}. Serve it first (e.g. --stable {before} '
        f'--canary {version}), then move the label.'
      )


def model_server_config(
  model_name: str, base_path: str, plan: VersionPlan
) -> model_server_config_pb2.ModelServerConfig:
  config = model_server_config_pb2.ModelServerConfig()
  model = config.model_config_list.config.add()
  model.name = model_name
  model.base_path = base_path
  model.model_platform = 'tensorflow'
  if plan.keep_latest:
    model.model_version_policy.latest.num_versions = plan.keep_latest
  else:
    model.model_version_policy.specific.versions.extend(plan.specific)
  for label, version in plan.labels.items():
    model.version_labels[label] = version
  return config


def read_model_config(path: str, model_name: str) -> Optional[model_server_config_pb2.ModelConfig]:
  """This model's entry of an existing models.config, or None when there is none yet."""
  if not tf.io.gfile.exists(path):
    return None
  config = model_server_config_pb2.ModelServerConfig()
  try:
    with tf.io.gfile.GFile(path) as text:
      text_format.Parse(text.read(), config)
  except text_format.ParseError as error:
    raise ServingConfigError(f'{path}: not a ModelServerConfig text proto ({error})') from error
  return next(
    (model for model in config.model_config_list.config if model.name == model_name), None
  )


# --- files --------------------------------------------------------------------------------


def _text(message, comments: Sequence[str] = ()) -> str:
  header = ''.join(f'# {line}\n' for line in comments)
  return header + text_format.MessageToString(message)


def _write_all(files: Dict[str, str]) -> None:
  """Each file through a temporary and a rename: a polling server never reads half a file."""
  for path, text in files.items():
    temporary = f'{path}.tmp'
    try:
      with tf.io.gfile.GFile(temporary, 'w') as out:
        out.write(text)
      tf.io.gfile.rename(temporary, path, overwrite=True)
    except tf.errors.OpError as error:
      raise ServingConfigError(f'{path}: cannot write it ({error.message})') from error


def write(
  serving_root: str,
  model_name: str,
  base_path: Optional[str] = None,
  cpu_cores: int = os.cpu_count() or 1,
  **version_options,
) -> VersionPlan:
  """Checks the version options against the pushed versions, then writes all four files."""
  models_config = os.path.join(serving_root, MODELS_CONFIG)
  pushed = pushed_versions(os.path.join(serving_root, model_name))
  current = read_model_config(models_config, model_name)
  plan = plan_versions(pushed, current, **version_options)
  check_label_moves(plan, current, pushed)
  base_path = base_path or f'{CONTAINER_ROOT}/{model_name}'
  files = {
    models_config: _text(
      model_server_config(model_name, base_path, plan),
      [f'Written by `fmnist-pipeline serving-config`: {plan.describe()}.'],
    ),
    os.path.join(serving_root, MONITORING_CONFIG): _text(
      monitoring_config(), [f'Prometheus metrics at http://HOST:8501{PROMETHEUS_PATH}']
    ),
  }
  for device, name in BATCHING_FILES.items():
    files[os.path.join(serving_root, name)] = _text(
      batching_parameters(device, cpu_cores), [*BATCHING[device].notes, *COMMON_NOTES]
    )
  _write_all(files)
  return plan


# --- command line -------------------------------------------------------------------------

# What `main` raises for a bad serving root or version choice: the CLI turns them into one line.
EXPECTED_ERRORS = (ServingConfigError,)


def main(args) -> int:
  if args.canary is not None and args.stable is None:
    print('error: --canary needs --stable (the version the other clients stay on)', file=sys.stderr)
    return 2
  plan = write(
    args.serving_root,
    args.model_name,
    base_path=args.base_path,
    cpu_cores=args.cpu_cores,
    keep=args.keep,
    stable=args.stable,
    canary=args.canary,
    pin=args.pin,
    rollback=args.rollback,
  )
  print(f'{args.model_name} {plan.describe()}')
  names = [MODELS_CONFIG, *BATCHING_FILES.values(), MONITORING_CONFIG]
  print(f'Wrote {", ".join(names)} to {args.serving_root}')
  return 0
