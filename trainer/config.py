"""Training hyperparameters, read from the Trainer's custom_config."""

import dataclasses
from typing import Any, Dict, Optional

# The Trainer custom_config key under which these options travel.
CUSTOM_CONFIG_KEY = 'training'
CONSTANT = 'constant'
COSINE = 'cosine'
LEARNING_RATE_SCHEDULES = (CONSTANT, COSINE)
AUTO = 'auto'
FLOAT32 = 'float32'
MIXED_BFLOAT16 = 'mixed_bfloat16'
MIXED_FLOAT16 = 'mixed_float16'
PRECISIONS = (AUTO, FLOAT32, MIXED_BFLOAT16, MIXED_FLOAT16)
JIT_COMPILE_CHOICES = (AUTO, 'true', 'false')


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
  """Everything a training run depends on besides the data."""

  variant: str = 'batch'
  epochs: int = 1
  batch_size: int = 64
  learning_rate: float = 1e-3
  # 'cosine' decays the rate to 0 over the run: the last epochs settle instead of oscillating.
  learning_rate_schedule: str = COSINE
  seed: int = 42
  # Two conv blocks (32, 64 filters) and a hidden dense layer: the notebook's network
  # (conv_blocks=1, hidden_units=0) stays below 0.92 test accuracy.
  filters: int = 32
  conv_blocks: int = 2
  hidden_units: int = 128
  # Mirror training images left-right at random (trainer/augmentation.py).
  random_mirror: bool = True
  log_every_n_steps: int = 100
  checkpoint_every_n_steps: int = 500
  # 'auto' | 'float32' | 'mixed_bfloat16' | 'mixed_float16': 16-bit compute with float32
  # variables, normalization statistics and loss. auto: mixed_float16 on GPUs with tensor cores,
  # mixed_bfloat16 on CPUs with bfloat16 instructions, float32 otherwise (trainer/devices.py).
  precision: str = AUTO
  # XLA-compile the training step: 'auto' (on when a GPU is visible), 'true' or 'false'.
  jit_compile: str = AUTO

  def __post_init__(self):
    if isinstance(self.jit_compile, bool):  # YAML's true / false
      object.__setattr__(self, 'jit_compile', str(self.jit_compile).lower())
    if self.precision not in PRECISIONS:
      raise ValueError(f'precision must be one of {PRECISIONS}, got {self.precision!r}')
    if self.jit_compile not in JIT_COMPILE_CHOICES:
      raise ValueError(
        f'jit_compile must be one of {JIT_COMPILE_CHOICES}, got {self.jit_compile!r}'
      )
    if self.learning_rate_schedule not in LEARNING_RATE_SCHEDULES:
      raise ValueError(
        f'learning_rate_schedule must be one of {LEARNING_RATE_SCHEDULES}, '
        f'got {self.learning_rate_schedule!r}'
      )

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
