"""Custom TFX components of the Fashion-MNIST pipeline."""


def __getattr__(name):
  # `components.VariantComparison` is the path Vertex's container entrypoint imports the artifact
  # type by (its TYPE_NAME); loaded on first use, since it pulls in TFX and TensorFlow.
  if name == 'VariantComparison':
    from components.artifacts import VariantComparison  # pylint: disable=import-outside-toplevel

    return VariantComparison
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
