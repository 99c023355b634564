"""Training hyperparameters, read from the Trainer's custom_config."""

import dataclasses
from typing import Any, Dict, Optional

# The Trainer custom_config key under which these options travel.
CUSTOM_CONFIG_KEY = 'training'


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
  """Everything a training run depends on besides the data."""

  variant: str = 'batch'
  epochs: int = 1
  batch_size: int = 64
  learning_rate: float = 1e-3
  seed: int = 42
  filters: int = 32
  conv_blocks: int = 1
  log_every_n_steps: int = 100
  checkpoint_every_n_steps: int = 500
  # float16 compute with float32 variables and a float32 loss; pays off on GPUs with tensor cores.
  mixed_precision: bool = False

  @classmethod
  def from_custom_config(cls, custom_config: Optional[Dict[str, Any]]) -> 'TrainingConfig':
    """Builds a config from a dict, rejecting keys it does not know."""
    values = dict(custom_config or {})
    known = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
      raise ValueError(f'unknown training options {unknown}; known: {sorted(known)}')
    return cls(**values)

  def as_custom_config(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)
