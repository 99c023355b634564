"""Console progress for local runs: component starts and ends, and training steps.

TFX, Beam and TensorFlow log thousands of lines per run. The full log goes to
a file; the console shows what a person watching the run wants to see: on a
terminal one live line per running component (rich), elsewhere (CI, a file)
plain lines.
"""

import contextlib
import dataclasses
import logging
import os
import re
from typing import Dict, Iterator, Optional

from absl import logging as absl_logging
from rich import progress as rich_progress
from rich.console import Console

_COMPONENT = re.compile(r'Component (\S+) is (running|finished)\.')
_CACHED = re.compile(r'A cached execution \d+ is used\.')
# trainer/loop.py's progress line.
_TRAINING_STEP = re.compile(r'step (\d+)/(\d+)\s+loss (\S+)\s+accuracy (\S+)\s+(\d+) images/s')
_TRAINER_CODE = os.sep + 'trainer' + os.sep


def _duration(seconds: float) -> str:
  minutes, seconds = divmod(round(seconds), 60)
  return f'{minutes}m{seconds:02d}s' if minutes else f'{seconds}s'


@dataclasses.dataclass
class TrainingStep:
  """One training progress record, with the remaining time at the rate since the first one."""

  step: int
  total: int
  loss: str
  images_per_second: int
  eta_seconds: Optional[float]

  def text(self) -> str:
    eta = 'ETA …' if self.eta_seconds is None else f'ETA {_duration(self.eta_seconds)}'
    return (
      f'step {self.step}/{self.total}  loss {self.loss}  {self.images_per_second} images/s  {eta}'
    )


class PlainLines:
  """Progress as one line per event: for logs, CI and pipes."""

  def __init__(self, console: Console):
    self.console = console

  def say(self, text: str) -> None:
    self.console.print(text, highlight=False, markup=False, soft_wrap=True)

  def started(self, component: str) -> None:
    self.say(f'▶ {component} ...')

  def training(self, component: str, step: TrainingStep) -> None:
    del component  # one component runs at a time, started on the line above
    self.say(f'    {step.text()}')

  def note(self, text: str) -> None:
    self.say(f'    {text}')

  def finished(self, component: str, how: str) -> None:
    self.say(f'✓ {component} ({how})')

  def close(self) -> None:
    pass


class LiveLines(PlainLines):
  """On a terminal: a live line per running component, a printed line per finished one."""

  def __init__(self, console: Console):
    super().__init__(console)
    self._progress = rich_progress.Progress(
      rich_progress.SpinnerColumn(),
      rich_progress.TextColumn('{task.description}'),
      rich_progress.BarColumn(bar_width=20),
      rich_progress.TextColumn('{task.fields[status]}'),
      rich_progress.TimeElapsedColumn(),
      console=console,
    )
    self._tasks: Dict[str, rich_progress.TaskID] = {}
    self._progress.start()

  def started(self, component: str) -> None:
    self._tasks[component] = self._progress.add_task(component, total=None, status='')

  def training(self, component: str, step: TrainingStep) -> None:
    if component in self._tasks:
      self._progress.update(
        self._tasks[component], total=step.total, completed=step.step, status=step.text()
      )

  def note(self, text: str) -> None:
    del text  # the live line and the log file carry it

  def finished(self, component: str, how: str) -> None:
    task = self._tasks.pop(component, None)
    if task is not None:
      self._progress.remove_task(task)
    super().finished(component, how)

  def close(self) -> None:
    self._progress.stop()


class ProgressHandler(logging.Handler):
  """Turns runner and trainer log records into progress on a display (PlainLines, LiveLines)."""

  def __init__(self, display: PlainLines):
    super().__init__(logging.INFO)
    self.display = display
    self.current: Optional[str] = None
    self._started = 0.0
    self._cached = False
    self._first_step: Optional[tuple] = None  # (time, step) of the component's first step line

  def emit(self, record: logging.LogRecord) -> None:
    message = record.getMessage()
    component = _COMPONENT.search(message)
    if component and component.group(2) == 'running':
      self.current, self._started, self._cached = component.group(1), record.created, False
      self._first_step = None
      self.display.started(self.current)
    elif component:
      how = 'cached' if self._cached else f'{record.created - self._started:.1f} s'
      self.display.finished(component.group(1), how)
      self.current = None
    elif _CACHED.search(message):
      self._cached = True
    elif _TRAINER_CODE in record.pathname and record.levelno == logging.INFO:
      step = _TRAINING_STEP.search(message)
      if step:
        self.display.training(self.current or '', self._training_step(record.created, step))
      else:
        self.display.note(message)

  def _training_step(self, now: float, match: re.Match) -> TrainingStep:
    step, total = int(match.group(1)), int(match.group(2))
    eta = None
    if self._first_step is None:
      self._first_step = (now, step)
    elif step > self._first_step[1]:
      seconds_per_step = (now - self._first_step[0]) / (step - self._first_step[1])
      eta = seconds_per_step * (total - step)
    return TrainingStep(step, total, match.group(3), int(match.group(5)), eta)


def display_for(console: Console) -> PlainLines:
  """Live lines on a terminal that can redraw them, plain lines otherwise (pipes, TERM=dumb)."""
  live = console.is_terminal and not console.is_dumb_terminal
  return LiveLines(console) if live else PlainLines(console)


@contextlib.contextmanager
def console_progress(log_path: str, console: Optional[Console] = None) -> Iterator[ProgressHandler]:
  """Sends every log record and warning to `log_path`, and progress to the console (stderr by
  default: stdout is for results, so `run > file` keeps only them)."""
  file_handler = logging.FileHandler(log_path)
  file_handler.setFormatter(logging.Formatter('%(asctime)s %(levelname)s %(module)s: %(message)s'))
  progress = ProgressHandler(display_for(console or Console(stderr=True)))
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
    progress.display.close()
    logging.captureWarnings(False)
    absl_logging.set_verbosity(previous_verbosity)
    root.handlers, tensorflow_logger.handlers = saved_handlers
    file_handler.close()
