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
# The normalization variants trainer/model.py builds; the order breaks exact ties in selection.
# Here, not in model.py, so that the options (and `fmnist-pipeline --help`) need no TensorFlow.
VARIANTS = ('none', 'batch', 'layer', 'weight', 'keras_batch', 'keras_layer')
# Transform's pixel scalings (trainer/preprocessing.py).
UNIT_SCALING = 'unit'
ZSCORE_SCALING = 'zscore'
PIXEL_SCALINGS = (UNIT_SCALING, ZSCORE_SCALING)
# Field metadata keys (pipeline/options.py reads them): an option's description, its allowed
# values, for a field that is no option, why not, and for a `run` flag that the deploy YAML
# refuses, why.
DOC = 'doc'
CHOICES = 'choices'
INTERNAL = 'internal'
LOCAL_ONLY = 'local_only'


def option(default: Any, doc: str, **metadata: Any) -> Any:
  """A config field users set: `doc` is its one description, shown by `fmnist-pipeline run --help`
  and read for the deploy YAML (pipeline/options.py builds both surfaces from the fields)."""
  return dataclasses.field(default=default, metadata={DOC: doc, **metadata})


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
  """Everything a training run depends on besides the data."""

  # Not a user option: the pipeline sets it per Trainer from PipelineConfig.variants.
  variant: str = dataclasses.field(
    default='batch', metadata={INTERNAL: 'is set per Trainer; list them in `variants`'}
  )
  epochs: int = option(10, 'passes over the train split')
  batch_size: int = option(64, 'examples per training step')
  learning_rate: float = option(1e-3, 'Adam learning rate (the peak of the schedule)')
  learning_rate_schedule: str = option(
    COSINE,
    'constant, or cosine decay to 0 over the run (the last epochs settle instead of oscillating)',
    choices=LEARNING_RATE_SCHEDULES,
  )
  seed: int = option(42, 'seed of weight init, shuffling and augmentation')
  # The notebook's network (conv_blocks=1, hidden_units=0) stays below 0.92 test accuracy.
  filters: int = option(32, 'filters of the first conv block; each further block doubles them')
  conv_blocks: int = option(
    2,
    "conv → norm → ReLU → pool blocks (--conv-blocks 1 --hidden-units 0 is the notebook's network)",
  )
  hidden_units: int = option(128, 'units of the dense layer before the logits, 0 for none')
  random_mirror: bool = option(
    True, 'mirror training images left-right at random (trainer/augmentation.py)'
  )
  log_every_n_steps: int = option(100, 'steps between progress log lines and summaries')
  checkpoint_every_n_steps: int = option(
    500, 'steps between checkpoints a restarted Trainer resumes from'
  )
  precision: str = option(
    AUTO,
    '16-bit compute with float32 variables, normalization statistics and loss; auto: '
    'mixed_float16 on GPUs with tensor cores (compute capability >= 7.0), mixed_bfloat16 on CPUs '
    'with bfloat16 instructions (amx_bf16 / avx512_bf16), float32 otherwise (trainer/devices.py)',
    choices=PRECISIONS,
  )
  jit_compile: str = option(
    AUTO,
    'XLA-compile the training step; auto: on when a GPU is visible',
    choices=JIT_COMPILE_CHOICES,
  )

  def __post_init__(self):
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
