"""The one error the data layer raises: one line naming the file (or manifest line), the problem."""

import re

# How Beam re-raises a worker's exception: a RuntimeError whose text holds the original
# "module.Class: message" and the step it ran in.
_RERAISED = re.compile(
  r'dataset\.errors\.DatasetError: (.+?)(?: \[while running [^\]]*\])?$', re.MULTILINE
)


class DatasetError(ValueError):
  """Bad input data: `source` (a file, `manifest:line` or `file:record N`) and what is wrong."""

  def __init__(self, source: str, problem: str):
    super().__init__(f'{source}: {problem}')
    self.source = source
    self.problem = problem

  def __reduce__(self):
    # Beam ships a worker's exception to the launcher by pickling it: keep both arguments.
    return (type(self), (self.source, self.problem))


def dataset_error_line(error: BaseException) -> str | None:
  """The DatasetError's one line in `error`, also when Beam re-raised it from a worker; else None.

  What a CLI prints for bad input (the traceback goes to the log), whichever way it arrived.
  """
  while error is not None:
    if isinstance(error, DatasetError):
      return str(error)
    found = _RERAISED.search(str(error))
    if found:
      return found.group(1)
    error = error.__cause__ or error.__context__
  return None
