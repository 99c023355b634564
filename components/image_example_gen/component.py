"""ImageExampleGen: FileBasedExampleGen with the image executor."""

from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2

from components.image_example_gen import executor
from dataset import layouts


class ImageExampleGen(FileBasedExampleGen):
  """Ingests `data` (see dataset.layouts) into train / eval / test tf.Examples and dataset.json.

  Build it with input_base and input_config from `input_config_for(data, layout)`, and custom_config
  holding the DatasetSpec (contract.features.DATASET_SPEC_KEY) and the options
  (executor.EVAL_PERCENT_KEY, ...).
  """

  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)


def input_config_for(
  data: str, layout: str, span_template: str | None = None
) -> tuple[str, example_gen_pb2.Input]:
  """(input_base, input_config) for `data` of `layout`: the three splits, one pattern TFX
  fingerprints.

  The executor decides which image goes to which split; the pattern only tells it (and the
  driver, which fingerprints the files it matches for the cache) where the data is. The IDX
  files' directory is taken as it is, so that compiling the default pipeline reads nothing.

  With `span_template` (dataset.layouts.span_template; `layout` is the newest span's), the
  pattern holds {SPAN}: TFX's driver picks the newest span, numerically, and fingerprints it;
  a fourth split, `previous`, carries the span before it for the drift check.
  """
  if span_template:
    input_base, pattern = layouts.span_input_base_and_pattern(span_template, layout)
    return input_base, example_gen_pb2.Input(
      splits=[
        example_gen_pb2.Input.Split(name=name, pattern=pattern) for name in executor.SPAN_SPLITS
      ]
    )
  if layout == 'idx':
    input_base, pattern = data.rstrip('/'), layouts.DIRECTORY_PATTERNS['idx']
  else:
    input_base, pattern = layouts.input_base_and_pattern(data, layout)
  return input_base, example_gen_pb2.Input(
    splits=[example_gen_pb2.Input.Split(name=name, pattern=pattern) for name in executor.SPLITS]
  )
