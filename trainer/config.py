"""Training hyperparameters, read from the Trainer's custom_config."""

import dataclasses
import math
import re
from typing import Any, Dict, Mapping, Optional, Tuple

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
# The hand-written normalizations (trainer/layers/); `none` is the baseline, keras_* the references.
OUR_VARIANTS = ('batch', 'layer', 'weight')
# Transform's pixel scalings (trainer/preprocessing.py).
UNIT_SCALING = 'unit'
ZSCORE_SCALING = 'zscore'
PIXEL_SCALINGS = (UNIT_SCALING, ZSCORE_SCALING)
# Field metadata keys (pipeline/options.py reads them): an option's description, its allowed
# values, the range (or pattern) its value must be in, for a field that is no option, why not,
# and for a `run` flag that the deploy YAML refuses, why.
DOC = 'doc'
CHOICES = 'choices'
CHECK = 'check'
INTERNAL = 'internal'
LOCAL_ONLY = 'local_only'
# Further command-line flags of an option (the deploy YAML knows only its name).
ALIASES = 'aliases'
# numpy's seeds are 32-bit (keras.utils.set_random_seed seeds numpy too).
MAX_SEED = 2**32 - 1


class OptionValueError(ValueError):
  """An option's value is outside what the option accepts; the message names the option."""


@dataclasses.dataclass(frozen=True)
class Range:
  """The numbers an option accepts, from `low` to `high` (None: unbounded), ends open or closed."""

  low: Optional[float] = None
  high: Optional[float] = None
  open_low: bool = False
  open_high: bool = False

  def __str__(self) -> str:
    if self.high is None:
      return f'{"greater than" if self.open_low else "at least"} {self.low}'
    exclusive = ' (exclusive)' if self.open_low and self.open_high else ''
    return f'between {self.low} and {self.high}{exclusive}'

  def problem(self, value: Any) -> Optional[str]:
    low, high = self.low, self.high
    # Written as what is inside, so that nan (no comparison holds) and infinities are outside.
    inside = (
      math.isfinite(value)
      and (low is None or (value > low if self.open_low else value >= low))
      and (high is None or (value < high if self.open_high else value <= high))
    )
    return None if inside else f'must be {self}, got {value!r}'


def at_least(low: float) -> Range:
  return Range(low=low)


def greater_than(low: float) -> Range:
  return Range(low=low, open_low=True)


def between(low: float, high: float) -> Range:
  return Range(low, high)


def strictly_between(low: float, high: float) -> Range:
  return Range(low, high, open_low=True, open_high=True)


@dataclasses.dataclass(frozen=True)
class Pattern:
  """The text an option accepts: a whole match of `regex`, described as `what`."""

  regex: str
  what: str

  def __str__(self) -> str:
    return self.what

  def problem(self, value: Any) -> Optional[str]:
    return None if re.fullmatch(self.regex, value) else f'must be {self.what}, got {value!r}'


@dataclasses.dataclass(frozen=True)
class Distinct:
  """A list option whose items must not repeat and that must not be empty."""

  def __str__(self) -> str:
    return 'each once'

  def problem(self, value: Any) -> Optional[str]:
    if not value or len(set(value)) != len(value):
      return f'must name each item once (at least one), got {",".join(map(str, value))!r}'
    return None


NON_EMPTY_PATH = Pattern(r'.*\S.*', 'a non-empty path')


@dataclasses.dataclass(frozen=True)
class OneOf:
  """A number option that takes one of a few values."""

  values: Tuple[Any, ...]

  def __str__(self) -> str:
    return 'one of ' + ', '.join(map(str, self.values))

  def problem(self, value: Any) -> Optional[str]:
    return None if value in self.values else f'must be {self}, got {value!r}'


def option(default: Any, doc: str, **metadata: Any) -> Any:
  """A config field users set: `doc` is its one description, shown by `fmnist-pipeline run --help`
  and read for the deploy YAML (pipeline/options.py builds both surfaces from the fields).

  `check=` (a Range, Pattern or Distinct) declares the values it accepts, on every surface.
  """
  return dataclasses.field(default=default, metadata={DOC: doc, **metadata})


def value_problem(field: dataclasses.Field, value: Any) -> Optional[str]:
  """Why `value` is not one the field accepts (its choices and check), or None if it is."""
  if value is None:
    return None  # Optional fields; a required one is caught as missing or by its type
  choices = field.metadata.get(CHOICES)
  items = value if isinstance(value, (tuple, list)) else [value]
  wrong = [item for item in items if choices and item not in choices]
  if wrong:
    return f'must be one of {", ".join(choices)}, got {wrong[0]!r}'
  check = field.metadata.get(CHECK)
  return check.problem(value) if check else None


def check_fields(config: Any, describe=lambda name: name) -> None:
  """Raises OptionValueError for the first field of `config` whose value it does not accept."""
  for field in dataclasses.fields(config):
    problem = value_problem(field, getattr(config, field.name))
    if problem:
      raise OptionValueError(f'{describe(field.name)} {problem}')


def check_run_time_parameters(cls: type, values: Mapping[str, Any]) -> None:
  """For the step that reads pipeline parameters, at its start: Vertex AI and Kubeflow accept any
  number of the parameter's type, so a value set per run is checked against its option here."""
  fields = {field.name: field for field in dataclasses.fields(cls)}
  for name, value in values.items():
    problem = value_problem(fields[name], value)
    if problem:
      raise OptionValueError(f'pipeline parameter {name} {problem}')


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
  """Everything a training run depends on besides the data."""

  # Not a user option: the pipeline sets it per Trainer from PipelineConfig.variants.
  variant: str = dataclasses.field(
    default='batch', metadata={INTERNAL: 'is set per Trainer; list them in `variants`'}
  )
  epochs: int = option(10, 'passes over the train split', check=at_least(1))
  batch_size: int = option(64, 'examples per training step', check=at_least(1))
  learning_rate: float = option(
    1e-3, 'Adam learning rate (the peak of the schedule)', check=greater_than(0)
  )
  learning_rate_schedule: str = option(
    COSINE,
    'constant, or cosine decay to 0 over the run (the last epochs settle instead of oscillating)',
    choices=LEARNING_RATE_SCHEDULES,
  )
  seed: int = option(
    42, 'seed of weight init, shuffling and augmentation', check=between(0, MAX_SEED)
  )
  # The notebook's network (conv_blocks=1, hidden_units=0) stays below 0.92 test accuracy.
  filters: int = option(
    32, 'filters of the first conv block; each further block doubles them', check=at_least(1)
  )
  # Each block halves the image (28: 14, 7, 3, 1): an image needs 2**conv_blocks pixels a side
  # (trainer/model.py checks it against the dataset's size); 4 fits Fashion-MNIST.
  conv_blocks: int = option(
    2,
    "conv → norm → ReLU → pool blocks (--conv-blocks 1 --hidden-units 0 is the notebook's network)",
    check=between(1, 4),
  )
  hidden_units: int = option(
    128, 'units of the dense layer before the logits, 0 for none', check=at_least(0)
  )
  random_mirror: bool = option(
    True, 'mirror training images left-right at random (trainer/augmentation.py)'
  )
  log_every_n_steps: int = option(
    100, 'steps between progress log lines and summaries', check=at_least(1)
  )
  checkpoint_every_n_steps: int = option(
    500, 'steps between checkpoints a restarted Trainer resumes from', check=at_least(1)
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
    check_fields(self)

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
