"""IdxExampleGen: FileBasedExampleGen with the IDX executor."""

from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2

from components.idx_example_gen import executor


class IdxExampleGen(FileBasedExampleGen):
  """Ingests IDX gz image/label pairs; each input split's pattern matches one pair."""

  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)


def fashion_mnist_input_config() -> example_gen_pb2.Input:
  """train and eval both come from the 60k training files; test is the 10k t10k pair."""
  return example_gen_pb2.Input(
    splits=[
      example_gen_pb2.Input.Split(name='train', pattern='train-*-ubyte.gz'),
      example_gen_pb2.Input.Split(name=executor.DEFAULT_HOLDOUT_SPLIT, pattern='train-*-ubyte.gz'),
      example_gen_pb2.Input.Split(name='test', pattern='t10k-*-ubyte.gz'),
    ]
  )
