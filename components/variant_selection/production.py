"""The model in production, read from the serving root Pusher writes: what TF Serving serves.

The serving root, not ML Metadata, is the record of production: a blessing
in MLMD may name a candidate that was never pushed (a run that died before
Pusher, a selector that declined to push), and Vertex's artifact queries
cannot tell one producer's blessings from another's.

Which version TF Serving serves follows its sources (tensorflow/serving):
FileSystemStoragePathSource takes every child of the base path that parses as
an integer as a version ('0002' is version 2) and aspires the ones the
models.config version policy names (`latest` N: the N highest numbers,
loadable or not; `specific`: those listed); its AvailabilityPreservingPolicy
keeps serving the version it had until an aspired one loads, so a version
that fails to load never takes over. `serving-config` writes models.config
beside the versions.
"""

import dataclasses
import hashlib
import json
import os
from typing import Any, Callable, Dict, List, Optional

from absl import logging
import tensorflow as tf

from contract.features import ASSETS_EXTRA
from contract.features import MODEL_INFO_FILE
from serving import server_config

SAVED_MODEL_FILE = 'saved_model.pb'


def version_directories(model_dir: str) -> Dict[int, str]:
  """Version number -> directory name, for the children of `model_dir` TF Serving takes as
  versions: all-digit names, leading zeros included. Of two names with one number ('2',
  '0002') the later in sorted order wins, as in TF Serving."""
  if not tf.io.gfile.isdir(model_dir):
    return {}
  names = sorted(name.rstrip('/') for name in tf.io.gfile.listdir(model_dir))
  return {int(name): name for name in names if name.isdigit()}


def complete_versions(model_dir: str) -> List[int]:
  """The versions under `model_dir` (`<model_dir>/<version>/`) holding a SavedModel, oldest first.

  Pusher copies saved_model.pb last, so a version without it is a push still
  under way (or one that died); TF Serving does not load it either.
  """
  return sorted(
    version
    for version, name in version_directories(model_dir).items()
    if tf.io.gfile.exists(os.path.join(model_dir, name, SAVED_MODEL_FILE))
  )


def version_path(model_dir: str, version: int) -> str:
  """The directory of `version`, under the name it has on disk (which may have leading zeros)."""
  return os.path.join(model_dir, version_directories(model_dir)[version])


def latest_version(model_dir: str) -> Optional[str]:
  """The newest complete version's directory, or None."""
  versions = complete_versions(model_dir)
  return version_path(model_dir, versions[-1]) if versions else None


def load_error(path: str) -> Optional[str]:
  """Why TF Serving could not load the SavedModel at `path`, in one line; None when it loads."""
  if not tf.io.gfile.exists(os.path.join(path, SAVED_MODEL_FILE)):
    return f'no {SAVED_MODEL_FILE} (a push under way, or one that died)'
  try:
    tf.saved_model.load(path)
  # Whatever stops the loader (a truncated graph, missing or cut variables, an unknown op)
  # stops TF Serving's as well; the reason is all the caller needs.
  except Exception as error:  # pylint: disable=broad-except
    reason = str(error).strip().splitlines()
    return f'{type(error).__name__}: {reason[0] if reason else "cannot load it"}'
  return None


@dataclasses.dataclass(frozen=True)
class Served:
  """The version the gate compares against, and why it is that one."""

  path: str
  version: int
  # e.g. 'the `stable` version in models.config'.
  reason: str


def _preference(model_dir: str, versions: List[int]):
  """(version, reason) in the order TF Serving would serve them: models.config's choice first,
  then what a running server keeps when that fails to load (the next newest)."""
  models_config = os.path.join(os.path.dirname(model_dir), server_config.MODELS_CONFIG)
  config = server_config.read_model_config(models_config, os.path.basename(model_dir))
  if config is None:
    return [(version, 'the newest version') for version in reversed(versions)]
  # Under `specific` (serving-config --pin, --rollback, --stable/--canary) a push is not served
  # until the next serving-config, and `stable` names the version clients are kept on. Under
  # `latest` a push is served by itself to every request without a label, and the label lags
  # until the next serving-config: what a new push would take over is the newest version.
  aspired = server_config.served_versions(config, versions)
  policy = config.model_version_policy.WhichOneof('policy_choice')
  stable = config.version_labels.get(server_config.STABLE)
  order = []
  if policy == 'specific' and stable in aspired:
    order.append((stable, f'the `{server_config.STABLE}` version in {models_config}'))
  order += [(v, f'the newest version {models_config} serves') for v in reversed(aspired)]
  order += [(v, 'the newest version that loads') for v in reversed(versions) if v not in aspired]
  first_reasons = {}
  for version, why in order:
    first_reasons.setdefault(version, why)
  return list(first_reasons.items())


def in_production(
  model_dir: str, warn: Callable[[str], None] = logging.warning
) -> Optional[Served]:
  """The version TF Serving serves from `model_dir`, which the gate compares against; None before
  the first push. A version it cannot load is skipped with one `warn` line naming it."""
  directories = version_directories(model_dir)
  for version, reason in _preference(model_dir, sorted(directories)):
    path = os.path.join(model_dir, directories[version])
    error = load_error(path)
    if error is None:
      return Served(path, version, reason)
    warn(f'{path} is not production: TF Serving cannot load it ({error})')
  return None


def model_info(version_dir: str) -> Dict[str, Any]:
  """What a version says about itself (its variant, training options, size); empty when it has
  no readable model_info.json (a model exported by something else)."""
  try:
    with tf.io.gfile.GFile(os.path.join(version_dir, MODEL_INFO_FILE)) as info:
      return json.load(info)
  except (tf.errors.NotFoundError, ValueError):
    return {}


def saved_model_digest(path: str) -> str:
  """SHA-256 over a SavedModel's graph and weights: its files' relative names and contents,
  leaving out assets.extra/.

  Pusher copies the selected model byte for byte, so a pushed version and the Trainer output
  it came from have the same digest. assets.extra/ is where TF Serving keeps files that are not
  part of the graph: what describes the model (model_info.json, to which the selector adds the
  spans trained on; the model card and push record) and its warmup requests.
  """
  sha = hashlib.sha256()
  files = []
  for directory, _, names in tf.io.gfile.walk(path):
    files.extend(os.path.join(directory, name) for name in names)
  files = [file for file in files if not os.path.relpath(file, path).startswith(ASSETS_EXTRA + '/')]
  for file in sorted(files):
    sha.update(os.path.relpath(file, path).encode())
    with tf.io.gfile.GFile(file, 'rb') as content:
      sha.update(content.read())
  return sha.hexdigest()
