"""The model in production, read from the serving root Pusher writes: what TF Serving serves.

The serving root, not ML Metadata, is the record of production: a blessing
in MLMD may name a candidate that was never pushed (a run that died before
Pusher, a selector that declined to push), and Vertex's artifact queries
cannot tell one producer's blessings from another's.
"""

import hashlib
import json
import os
from typing import Any, Dict, List, Optional

import tensorflow as tf

from trainer.features import MODEL_INFO_FILE

SAVED_MODEL_FILE = 'saved_model.pb'


def complete_versions(model_dir: str) -> List[int]:
  """The versions under `model_dir` (`<model_dir>/<version>/`) holding a SavedModel, oldest first.

  Pusher copies saved_model.pb last, so a version without it is a push still
  under way (or one that died); TF Serving does not load it either.
  """
  if not tf.io.gfile.isdir(model_dir):
    return []
  return sorted(
    int(name.rstrip('/'))
    for name in tf.io.gfile.listdir(model_dir)
    if name.rstrip('/').isdigit()
    and tf.io.gfile.exists(os.path.join(model_dir, name.rstrip('/'), SAVED_MODEL_FILE))
  )


def latest_version(model_dir: str) -> Optional[str]:
  """The newest complete version's directory, the one TF Serving loads, or None."""
  versions = complete_versions(model_dir)
  return os.path.join(model_dir, str(versions[-1])) if versions else None


def model_info(version_dir: str) -> Dict[str, Any]:
  """What a version says about itself (its variant, training options, size); empty when it has
  no readable model_info.json (a model exported by something else)."""
  try:
    with tf.io.gfile.GFile(os.path.join(version_dir, MODEL_INFO_FILE)) as info:
      return json.load(info)
  except (tf.errors.NotFoundError, ValueError):
    return {}


def saved_model_digest(path: str) -> str:
  """SHA-256 over a SavedModel directory's relative file names and contents.

  Pusher copies the selected model byte for byte, so a pushed version and the
  Trainer output it came from have the same digest.
  """
  sha = hashlib.sha256()
  files = []
  for directory, _, names in tf.io.gfile.walk(path):
    files.extend(os.path.join(directory, name) for name in names)
  for file in sorted(files):
    sha.update(os.path.relpath(file, path).encode())
    with tf.io.gfile.GFile(file, 'rb') as content:
      sha.update(content.read())
  return sha.hexdigest()
