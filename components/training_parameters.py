"""TrainingParameters: the per-run training options, handed to every Trainer as hyperparameters.

On Vertex AI / Kubeflow these are pipeline parameters a user sets per run
without recompiling; locally they take the config's values. TFX compiles a
RuntimeParameter only as a whole execution property, and the Trainer's
custom_config travels as one JSON string, so the values reach run_fn the way
a Tuner's do: as the Trainer's `hyperparameters` input (fn_args.hyperparameters).
"""

import json
import os

from tfx import v1 as tfx
from tfx.utils import io_utils

HYPERPARAMETERS_FILE = 'hyperparameters.json'


@tfx.dsl.components.component
def TrainingParameters(
  epochs: tfx.dsl.components.Parameter[int],
  batch_size: tfx.dsl.components.Parameter[int],
  learning_rate: tfx.dsl.components.Parameter[float],
  hyperparameters: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.HyperParameters],
) -> None:
  """Writes the values as the one JSON file TFX's Trainer reads from a HyperParameters input."""
  io_utils.write_string_file(
    os.path.join(hyperparameters.uri, HYPERPARAMETERS_FILE),
    json.dumps({'epochs': epochs, 'batch_size': batch_size, 'learning_rate': learning_rate}),
  )
