"""Artifact types of this project's components."""

from tfx import types


class VariantComparison(types.Artifact):
  """The variant comparison report: report.json, report.md and PNG plots."""

  # Vertex takes a custom type's name as '<module>.<Class>' and imports it by that path inside
  # the step's container, so it names this class through the `components` package.
  TYPE_NAME = 'components.VariantComparison'
