"""Pipeline configuration: every value a run depends on, in one place."""

import dataclasses
import os
from typing import List, Optional, Tuple

from components.variant_selection.selection import ACCURACY
from trainer.config import TrainingConfig
from trainer.model import VARIANTS
from trainer.preprocessing import UNIT_SCALING

DEBIAN_DATA_DIR = '/usr/share/datasets/fashion-mnist'
KERAS_CACHE_DATA_DIR = os.path.expanduser('~/.keras/datasets/fashion-mnist')


def default_data_dir() -> str:
  """The Debian package's directory if it is installed, else the Keras cache."""
  return DEBIAN_DATA_DIR if os.path.isdir(DEBIAN_DATA_DIR) else KERAS_CACHE_DATA_DIR


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  """What to run on which data, and where the outputs go."""

  output_root: str
  data_dir: str = dataclasses.field(default_factory=default_data_dir)
  pipeline_name: str = 'fashion-mnist'
  model_name: str = 'fashion_mnist'
  # One Trainer and Evaluator each; the order breaks exact ties in selection.
  variants: Tuple[str, ...] = VARIANTS
  # Shared by every variant's Trainer; its `variant` field is set per Trainer.
  training: TrainingConfig = TrainingConfig()
  train_steps: Optional[int] = None  # caps the steps that training.epochs imply
  eval_steps: Optional[int] = None  # caps the Trainer's per-epoch evaluation
  pixel_scaling: str = UNIT_SCALING
  eval_percent: int = 10
  accuracy_threshold: float = 0.85
  # How far below production a candidate's eval accuracy may be and still be blessed.
  max_accuracy_drop: float = 0.0
  selection_metric: str = ACCURACY
  beam_pipeline_args: List[str] = dataclasses.field(
    default_factory=lambda: ['--direct_running_mode=in_memory']
  )
  enable_cache: bool = True
  serving_root_override: Optional[str] = None  # deployments push to a bucket of their own

  def __post_init__(self):
    unknown = [variant for variant in self.variants if variant not in VARIANTS]
    if unknown or not self.variants or len(set(self.variants)) != len(self.variants):
      raise ValueError(
        f'variants must be distinct names from {", ".join(VARIANTS)}; got {list(self.variants)}'
      )

  def training_for(self, variant: str) -> TrainingConfig:
    return dataclasses.replace(self.training, variant=variant)

  @property
  def pipeline_root(self) -> str:
    return os.path.join(self.output_root, 'pipeline')

  @property
  def metadata_path(self) -> str:
    return os.path.join(self.output_root, 'metadata.sqlite')

  @property
  def serving_root(self) -> str:
    return self.serving_root_override or os.path.join(self.output_root, 'serving')

  @property
  def serving_model_dir(self) -> str:
    """Where Pusher writes versions: the model base path TF Serving is given."""
    return os.path.join(self.serving_root, self.model_name)
