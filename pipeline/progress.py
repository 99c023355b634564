"""Console progress for local runs: component starts and ends, and training steps.

TFX, Beam and TensorFlow log thousands of lines per run. The full log goes to
a file; the console shows what a person watching the run wants to see.
"""

import contextlib
import logging
import os
import re
import sys
import time
from typing import Iterator, Optional

from absl import logging as absl_logging

_COMPONENT = re.compile(r'Component (\S+) is (running|finished)\.')
_CACHED = re.compile(r'A cached execution \d+ is used\.')
_TRAINER_CODE = os.sep + 'trainer' + os.sep


class ProgressHandler(logging.Handler):
  """Turns runner and trainer log records into short console lines."""

  def __init__(self, stream=None):
    super().__init__(logging.INFO)
    self.stream = stream or sys.stdout
    self.current: Optional[str] = None
    self._started = 0.0
    self._cached = False

  def _say(self, text: str) -> None:
    self.stream.write(text + '\n')
    self.stream.flush()

  def emit(self, record: logging.LogRecord) -> None:
    message = record.getMessage()
    match = _COMPONENT.search(message)
    if match and match.group(2) == 'running':
      self.current, self._started, self._cached = match.group(1), time.monotonic(), False
      self._say(f'▶ {self.current} ...')
    elif match:
      how = 'cached' if self._cached else f'{time.monotonic() - self._started:.1f} s'
      self._say(f'✓ {match.group(1)} ({how})')
      self.current = None
    elif _CACHED.search(message):
      self._cached = True
    elif _TRAINER_CODE in record.pathname and record.levelno == logging.INFO:
      self._say(f'    {message}')


@contextlib.contextmanager
def console_progress(log_path: str) -> Iterator[ProgressHandler]:
  """Sends every log record and warning to `log_path`, and progress lines to the console."""
  file_handler = logging.FileHandler(log_path)
  file_handler.setFormatter(logging.Formatter('%(asctime)s %(levelname)s %(module)s: %(message)s'))
  progress = ProgressHandler()
  root = logging.getLogger()
  tensorflow_logger = logging.getLogger('tensorflow')
  saved_handlers = root.handlers[:], tensorflow_logger.handlers[:]
  previous_verbosity = absl_logging.get_verbosity()
  root.handlers = [file_handler, progress]
  tensorflow_logger.handlers = []  # it propagates to the root, so to the file
  # Through absl's flag, not Logger.setLevel: TensorFlow saves and restores the flag's value.
  absl_logging.set_verbosity(absl_logging.INFO)
  logging.captureWarnings(True)
  try:
    yield progress
  finally:
    logging.captureWarnings(False)
    absl_logging.set_verbosity(previous_verbosity)
    root.handlers, tensorflow_logger.handlers = saved_handlers
    file_handler.close()
