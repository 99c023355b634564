"""TensorBoard over a local run's Trainers: one TensorBoard run per variant, side by side."""

import os
import shlex
import sys
from typing import Dict, List, Sequence

from pipeline.config import PipelineConfig

_TRAINER_PREFIX = 'Trainer_'
_MODEL_RUN = 'model_run'


def trainer_logdirs(output_root: str) -> Dict[str, str]:
  """variant → the newest execution's run directory of its Trainer (LocalDagRunner's layout,
  <pipeline root>/Trainer_<variant>/model_run/<execution id>/, with train/ and eval/ summaries)."""
  pipeline_root = PipelineConfig(output_root=output_root).pipeline_root
  logdirs = {}
  for component in sorted(os.listdir(pipeline_root)) if os.path.isdir(pipeline_root) else []:
    runs = os.path.join(pipeline_root, component, _MODEL_RUN)
    if not component.startswith(_TRAINER_PREFIX) or not os.path.isdir(runs):
      continue
    executions = [name for name in os.listdir(runs) if name.isdigit()]
    if executions:
      newest = max(executions, key=int)
      logdirs[component[len(_TRAINER_PREFIX) :]] = os.path.join(runs, newest)
  return logdirs


def logdir_spec(logdirs: Dict[str, str]) -> str:
  """TensorBoard's --logdir_spec: `name:path,...`, so each variant is a run named after it."""
  return ','.join(f'{variant}:{path}' for variant, path in sorted(logdirs.items()))


def command(output_root: str, port: int = 6006, serving_flags: Sequence[str] = ()) -> List[str]:
  """The tensorboard command line for the run under `output_root` (empty when it has none);
  `serving_flags` are TensorBoard's own (--host, --bind_all)."""
  logdirs = trainer_logdirs(output_root)
  if not logdirs:
    return []
  executable = os.path.join(os.path.dirname(sys.executable), 'tensorboard')
  return [executable, '--logdir_spec', logdir_spec(logdirs), '--port', str(port), *serving_flags]


def replace_process(command_line: List[str]) -> None:
  """Becomes TensorBoard (exec, same process id): a SIGTERM or Ctrl-C meant for the wrapper
  reaches TensorBoard itself, so it never outlives the wrapper on its port."""
  # TensorBoard's google-cloud imports warn about the pinned Python version (see pipeline/cli.py).
  quiet = {**os.environ, 'PYTHONWARNINGS': 'ignore::FutureWarning'}
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(command_line[0], command_line, quiet)


def shown(command_line: List[str]) -> str:
  return ' '.join(map(shlex.quote, command_line))
