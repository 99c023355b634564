"""Runs `fmnist-pipeline run --data ...` on a tests/image_datasets.py dataset, then `predict` on
its image files, through the CLI as a user would; shared by the own-images e2e modules."""

import contextlib
import dataclasses
import io
import json
import os
import re
from typing import Dict, List, Sequence, Tuple

from contract.features import MODEL_INFO_FILE
from contract.features import DatasetSpec
from pipeline import cli
from tests.image_datasets import Built

# The cheapest run that still trains, evaluates, selects and pushes: one variant, one epoch, and
# a gate that passes any model (these runs check that the data gets to a served model, not how
# good the model is; the Fashion-MNIST run checks that).
CHEAPEST = (
  '--variants',
  'none',
  '--epochs',
  '1',
  '--batch-size',
  '32',
  '--accuracy-threshold',
  '0',
)


@dataclasses.dataclass(frozen=True)
class PipelineRun:
  code: int
  out: str
  err: str
  version_dir: str  # the pushed version ('' if nothing was pushed)

  def spec(self) -> DatasetSpec:
    """The DatasetSpec the pushed model was trained for (its model_info.json)."""
    with open(os.path.join(self.version_dir, MODEL_INFO_FILE)) as info:
      return DatasetSpec.from_dict(json.load(info)['dataset'])


def cli_output(argv: Sequence[str]) -> Tuple[int, str, str]:
  """The CLI's exit code, stdout and stderr; not pytest's capsys, which module fixtures (one run
  shared by a module's tests) cannot use."""
  out, err = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    code = cli.main(list(argv))
  return code, out.getvalue(), err.getvalue()


def run_pipeline(built: Built, output_root: str, options: Sequence[str]) -> PipelineRun:
  code, out, err = cli_output(['run', '--data', built.data, '--output-root', output_root, *options])
  pushed = re.findall(r'^Pushed to: (\S+)$', out, re.MULTILINE)
  return PipelineRun(code, out, err, pushed[0] if pushed else '')


def pushed(tmp_path_factory, name: str, write, options: Sequence[str] = CHEAPEST):
  """The dataset `write(directory)` builds and a run of it that must push: (built, run)."""
  built = write(str(tmp_path_factory.mktemp(name)))
  run = run_pipeline(built, str(tmp_path_factory.mktemp(f'{name}_outputs')), options)
  assert run.code == 0, run.err
  return built, run


def predicted_classes(
  version_dir: str, classes: Sequence[str], files: Sequence[str]
) -> Tuple[Dict[str, str], str]:
  """`fmnist-pipeline predict --local VERSION FILE...`: the class named on each file's line,
  by file, and the whole output. A line whose answer is none of `classes` fails the test."""
  code, out, err = cli_output(['predict', '--local', version_dir, *files])
  assert code == 0, err
  answers = {}
  # Longest first: a class name may begin with another's ('Shirt', 'T-shirt_top' do not, but
  # user classes such as 'cat' and 'cat_big' would).
  by_length = sorted(classes, key=len, reverse=True)
  for line in out.splitlines():
    named = [path for path in files if line.startswith(path + ' ')]
    if not named:
      continue
    answer = line[len(named[0]) :].strip()
    matches: List[str] = [name for name in by_length if answer.startswith(name + ' ')]
    assert matches, f'answer names no class of {list(classes)}: {line}'
    answers[named[0]] = matches[0]
  assert sorted(answers) == sorted(files), out
  return answers, out
