"""The one error the data layer raises: one line naming the file (or manifest line) and the problem."""


class DatasetError(ValueError):
  """Bad input data: `source` (a file, `manifest:line` or `file:record N`) and what is wrong."""

  def __init__(self, source: str, problem: str):
    super().__init__(f'{source}: {problem}')
    self.source = source
    self.problem = problem

  def __reduce__(self):
    # Beam ships a worker's exception to the launcher by pickling it: keep both arguments.
    return (type(self), (self.source, self.problem))
