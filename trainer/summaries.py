"""Where a run's numbers go: TensorBoard event files and a JSON history for reports."""

import json
import os
from typing import Dict, List

import tensorflow as tf

HISTORY_FILE = 'history.json'
# The phase of the one record fit() writes last: training time and throughput of the whole run.
TOTALS_PHASE = 'totals'


class RunSummaries:
  """Writes scalars for TensorBoard under `<run_dir>/<phase>/` and keeps every record.

  The same records are saved as `<run_dir>/history.json`, the form the
  comparison report reads learning curves from.
  """

  def __init__(self, run_dir: str):
    self.run_dir = run_dir
    self._writers: Dict[str, tf.summary.SummaryWriter] = {}
    self.records: List[Dict[str, float]] = []

  def write(self, phase: str, step: int, scalars: Dict[str, float]) -> None:
    if phase not in self._writers:
      self._writers[phase] = tf.summary.create_file_writer(os.path.join(self.run_dir, phase))
    with self._writers[phase].as_default(step=step):
      for name, value in scalars.items():
        tf.summary.scalar(name, value)
    self.records.append({'phase': phase, 'step': step, **scalars})

  def close(self) -> None:
    for writer in self._writers.values():
      writer.flush()
    tf.io.gfile.makedirs(self.run_dir)
    with tf.io.gfile.GFile(os.path.join(self.run_dir, HISTORY_FILE), 'w') as history:
      json.dump(self.records, history, indent=1)
