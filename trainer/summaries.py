"""Where a run's numbers go: TensorBoard event files and a JSON history for reports."""

import json
import os
from typing import Dict, List

import tensorflow as tf

HISTORY_FILE = 'history.json'
# The phase of the one record fit() writes last: training time and throughput of the whole run.
TOTALS_PHASE = 'totals'
# Written with every checkpoint, not to TensorBoard: training time and images up to that step,
# so a run resumed from the checkpoint counts the time of its earlier attempts.
CHECKPOINT_PHASE = 'checkpoint'


class RunSummaries:
  """Writes scalars for TensorBoard under `<run_dir>/<phase>/` and keeps every record.

  The same records are saved as `<run_dir>/history.json`, the form the
  comparison report reads learning curves from, by `save` (with every
  checkpoint) and `close`.
  """

  def __init__(self, run_dir: str):
    self.run_dir = run_dir
    self._writers: Dict[str, tf.summary.SummaryWriter] = {}
    self.records: List[Dict[str, float]] = []

  @property
  def _history_path(self) -> str:
    return os.path.join(self.run_dir, HISTORY_FILE)

  def resume(self, step: int) -> None:
    """Takes over the records an earlier attempt of this run saved up to `step` (the restored
    checkpoint's); later ones are trained again, and the totals are written anew."""
    if not tf.io.gfile.exists(self._history_path):
      return
    with tf.io.gfile.GFile(self._history_path) as history:
      self.records = [
        record
        for record in json.load(history)
        if record['step'] <= step and record['phase'] != TOTALS_PHASE
      ]

  def find(self, phase: str, step: int) -> Dict[str, float] | None:
    """The last record of `phase` at `step`, or None."""
    matches = [r for r in self.records if r['phase'] == phase and r['step'] == step]
    return matches[-1] if matches else None

  def record(self, phase: str, step: int, values: Dict[str, float]) -> None:
    """Keeps a record for history.json only."""
    self.records.append({'phase': phase, 'step': step, **values})

  def write(self, phase: str, step: int, scalars: Dict[str, float]) -> None:
    """Writes scalars to TensorBoard and keeps them for history.json."""
    if phase not in self._writers:
      self._writers[phase] = tf.summary.create_file_writer(os.path.join(self.run_dir, phase))
    with self._writers[phase].as_default(step=step):
      for name, value in scalars.items():
        tf.summary.scalar(name, value)
    self.record(phase, step, scalars)

  def save(self) -> None:
    """Writes history.json whole, replacing the previous one only once it is complete."""
    for writer in self._writers.values():
      writer.flush()
    tf.io.gfile.makedirs(self.run_dir)
    partial = self._history_path + '.partial'
    with tf.io.gfile.GFile(partial, 'w') as history:
      json.dump(self.records, history, indent=1)
    tf.io.gfile.rename(partial, self._history_path, overwrite=True)

  def close(self) -> None:
    self.save()
