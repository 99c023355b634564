"""The lock a local run holds on its output root: one run at a time, and a way for `summary` to
tell a run still going from one that died. Standard library only (no TensorFlow)."""

import contextlib
import fcntl
import os
from typing import Iterator

LOCK_FILE = '.run.lock'


class OutputRootBusyError(RuntimeError):
  """Another run is using the same output root."""


@contextlib.contextmanager
def exclusive_output_root(output_root: str) -> Iterator[None]:
  """Holds a lock on the output root for the whole run.

  Two runs writing one SQLite MLMD store and one pipeline root would race on
  both; the second run stops at once instead. The OS drops the lock when the
  process dies, so a killed run never leaves it behind.
  """
  os.makedirs(output_root, exist_ok=True)
  with open(os.path.join(output_root, LOCK_FILE), 'w') as lock:
    try:
      fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as error:
      raise OutputRootBusyError(
        f'{output_root} is in use by another run; wait for it or pick another --output-root'
      ) from error
    yield


def run_in_progress(output_root: str) -> bool:
  """Whether a live run holds the output root's lock now; a killed run's lock died with it."""
  path = os.path.join(output_root, LOCK_FILE)
  if not os.path.exists(path):
    return False
  with open(path) as lock:
    try:
      # Shared, and released at once: conflicts with a run's exclusive lock, not with a reader.
      fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
      return True
    fcntl.flock(lock, fcntl.LOCK_UN)
  return False
