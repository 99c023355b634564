"""Pipeline configuration: every value a run depends on, in one place."""

import dataclasses
import os
from typing import List, Mapping, Optional, Tuple

from components.variant_selection.selection import ACCURACY
from components.variant_selection.selection import CALIBRATION_ERROR
from components.variant_selection.selection import DEFAULT_SIGNIFICANCE_LEVEL
from components.variant_selection.selection import LOSS
from components.variant_selection.selection import REPLACE_PRODUCTION_RULES
from components.variant_selection.selection import SIGNIFICANTLY_BETTER
from components.variant_selection.seeds import seed_values
from trainer.config import ALIASES
from trainer.config import CHECK
from trainer.config import DOC
from trainer.config import INTERNAL
from trainer.config import LOCAL_ONLY
from trainer.config import NON_EMPTY_PATH
from trainer.config import PIXEL_SCALINGS
from trainer.config import UNIT_SCALING
from trainer.config import VARIANTS
from trainer.config import Distinct
from trainer.config import OneOf
from trainer.config import OptionValueError
from trainer.config import Pattern
from trainer.config import TrainingConfig
from trainer.config import at_least
from trainer.config import between
from trainer.config import check_fields
from trainer.config import option
from trainer.config import strictly_between

DEBIAN_DATA_DIR = '/usr/share/datasets/fashion-mnist'
KERAS_CACHE_DATA_DIR = os.path.expanduser('~/.keras/datasets/fashion-mnist')
# Where `fmnist-pipeline download` fetches the files from by default (Keras' mirror).
BASE_URL = 'https://storage.googleapis.com/tensorflow/tf-keras-datasets/'


# What ExampleGen does with a bad image (components/image_example_gen).
STOP = 'stop'
SKIP = 'skip'
BAD_IMAGE_POLICIES = (STOP, SKIP)
IMAGE_SIZE = Pattern(r'[1-9][0-9]*(x[1-9][0-9]*)?', 'N or HxW (positive integers)')


# Sets the default output root of every local command (run, summary, report, tensorboard, ...).
OUTPUT_ROOT_ENV = 'FMNIST_OUTPUT_ROOT'


def default_output_root() -> str:
  """$FMNIST_OUTPUT_ROOT if set, else `outputs` under the working directory."""
  return os.environ.get(OUTPUT_ROOT_ENV) or 'outputs'


# One directory under the serving root, and the name clients ask TF Serving for.
MODEL_NAME = Pattern(r'[A-Za-z0-9_-][A-Za-z0-9_.-]*', 'letters, digits, _, - and . (no /)')


def default_data_dir() -> str:
  """The Debian package's directory if it is installed, else the Keras cache."""
  return DEBIAN_DATA_DIR if os.path.isdir(DEBIAN_DATA_DIR) else KERAS_CACHE_DATA_DIR


# The pipeline's Beam components by kind (class name; per-variant Evaluators share one kind).
BEAM_COMPONENT_KINDS = ('ImageExampleGen', 'StatisticsGen', 'Transform', 'Evaluator')
SELECTION_METRICS = (ACCURACY, LOSS, CALIBRATION_ERROR)


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  """What to run on which data, and where the outputs go.

  Every field made with `option` is a `fmnist-pipeline run` flag and a deploy-YAML key of the
  same name (pipeline/options.py); that doc is the option's only description.
  """

  output_root: str = dataclasses.field(
    default_factory=default_output_root,
    metadata={
      DOC: 'pipeline artifacts, MLMD, logs and pushed models go under this directory '
      f'(${OUTPUT_ROOT_ENV} sets the default)',
      CHECK: NON_EMPTY_PATH,
    },
  )
  data_dir: str = dataclasses.field(
    default_factory=default_data_dir,
    metadata={
      DOC: 'the images, local or gs://: the Fashion-MNIST IDX gz files, a class-folder tree '
      '(<class>/<image>, optionally under train/, eval/ or validation/, test/), a Vertex AI '
      'manifest (.csv or .jsonl), or TFRecords of tf.Example (docs/own-images.md)',
      CHECK: NON_EMPTY_PATH,
      ALIASES: ('--data',),
    },
  )
  schema: Optional[str] = option(
    None,
    "the adopted schema (schema.pbtxt) of your own images: the classes, in label order, and the "
    "contract the validation gate enforces; without it a run on new images proposes one",
    check=NON_EMPTY_PATH,
  )
  image_size: Optional[str] = option(
    None,
    'N or HxW: the size Transform resizes every image to; none takes it from the data (every '
    'image one size: that size; else the median height and width, within 8..224)',
    check=IMAGE_SIZE,
  )
  channels: Optional[int] = option(
    None,
    '1 (grayscale) or 3 (RGB), what Transform decodes every image to; none: 1 if every image is '
    'grayscale, else 3',
    check=OneOf((1, 3)),
  )
  # KFP's rule for a pipeline name (kfp.dsl.utils.validate_pipeline_name), checked before a
  # local run too, so that a name that runs here also compiles.
  pipeline_name: str = option(
    'fashion-mnist',
    'the TFX pipeline name (MLMD context, Vertex job)',
    check=Pattern(r'[a-z0-9][a-z0-9-]{0,127}', 'lowercase letters, digits and hyphens'),
  )
  model_name: str = option(
    'fashion_mnist', 'Pusher writes <serving root>/<model_name>/<version>/', check=MODEL_NAME
  )
  # One Trainer and Evaluator each; the order breaks exact ties in selection.
  variants: Tuple[str, ...] = option(
    VARIANTS,
    'normalization variants to train and compare (one Trainer and Evaluator each)',
    choices=VARIANTS,
    check=Distinct(),
  )
  # Compile-time: the number of Trainers and Evaluators (the DAG's shape), not a run parameter.
  seeds: int = option(
    1,
    'training runs per variant, seeded seed, seed+1, ...: the report adds mean ± std across '
    'them; selection, the gate and the push use the run seeded `seed`',
    check=at_least(1),
  )
  # Shared by every variant's Trainer; its `variant` field is set per Trainer.
  training: TrainingConfig = TrainingConfig()
  train_steps: Optional[int] = option(
    None, 'caps the training steps that the epochs imply', check=at_least(1)
  )
  eval_steps: Optional[int] = option(
    None, "caps the Trainer's per-epoch evaluation steps", check=at_least(1)
  )
  pixel_scaling: str = option(
    UNIT_SCALING,
    'Transform: unit scales pixels to [0,1]; zscore uses the dataset mean and std',
    choices=PIXEL_SCALINGS,
  )
  # Both splits must get examples.
  eval_percent: int = option(
    10,
    'percent of the training images held out as the eval split when the data has none '
    '(by a hash of the image bytes: the same on every run)',
    check=between(1, 99),
  )
  test_percent: int = option(
    10,
    'percent of the training images held out as the test split when the data has none',
    check=between(1, 98),
  )
  bad_images: str = option(
    STOP,
    'a corrupt, truncated, non-image or oversized file: stop the run naming it, or skip it and '
    'count it in the report',
    choices=BAD_IMAGE_POLICIES,
  )
  max_image_bytes: int = option(
    20_000_000, 'an image file larger than this is a bad image', check=at_least(1)
  )
  max_image_pixels: int = option(
    50_000_000, 'an image of more pixels (height x width) is a bad image', check=at_least(1)
  )
  # Data that keeps arriving (docs/own-images.md): spans and the drift check.
  train_spans: int = option(
    1,
    'with spans (span-<N> folders or {SPAN} in --data): train on the newest span and the ones '
    'before it, this many in all; eval and test are always the newest span\'s',
    check=at_least(1),
  )
  drift_label_threshold: float = option(
    0.1,
    "with spans: the largest Jensen-Shannon divergence (0..1) between the newest span's label "
    "distribution (its eval split) and the previous span's before the run stops as drift",
    check=between(0, 1),
  )
  drift_image_threshold: float = option(
    0.1,
    'with spans: the same for each image feature: height, width, channels and mean pixel intensity',
    check=between(0, 1),
  )
  accept_drift: bool = option(
    False,
    'with spans: train even though the newest span drifted past a threshold (the drift lines are '
    'logged and recorded in the report and model card)',
  )
  accuracy_threshold: float = option(
    0.85, 'eval accuracy a candidate needs to be blessed', check=between(0, 1)
  )
  max_accuracy_drop: float = option(
    0.0,
    'how far below the production model a candidate may be and still be blessed',
    check=between(0, 1),
  )
  selection_metric: str = option(
    ACCURACY, 'the metric VariantSelector ranks blessed variants by', choices=SELECTION_METRICS
  )
  significance_level: float = option(
    DEFAULT_SIGNIFICANCE_LEVEL,
    "McNemar's test level: variants within it of the best are ties, and a challenger must beat "
    'production at it',
    check=strictly_between(0, 1),
  )
  replace_production: str = option(
    SIGNIFICANTLY_BETTER,
    'when a challenger replaces production: significantly better, or also when not significantly '
    'worse and faster to serve at batch 1',
    choices=REPLACE_PRODUCTION_RULES,
  )
  # A spread needs two timings (serving/latency.py).
  latency_repeats: int = option(
    30,
    'timed serving_default calls per variant and batch size (1 and 64) in the selector',
    check=at_least(2),
  )
  enable_cache: bool = option(True, "reuse TFX's cached results of unchanged components")
  serving_root: Optional[str] = option(
    None,
    'the directory Pusher writes model versions under; none means <output_root>/serving',
    check=NON_EMPTY_PATH,
  )
  # Local runs only: a deployment's Beam steps run in their own containers or on Dataflow, whose
  # options are the deploy config's (pipeline/vertex_config.py), so the deploy YAML refuses it.
  beam_workers: int = option(
    1,
    'worker processes of each Beam step of a local run (ExampleGen, StatisticsGen, Transform, '
    'the Evaluators); 1 runs each step in-process. Several pay off only on data much larger '
    'than Fashion-MNIST: on 2 cores, 2 workers made these steps about half as fast',
    check=at_least(1),
    **{LOCAL_ONLY: 'is an option of local runs (fmnist-pipeline run --beam-workers) only'},
  )
  # Beam args of every Beam component (deployments without Dataflow keep these too).
  beam_pipeline_args: List[str] = dataclasses.field(
    default_factory=lambda: ['--direct_running_mode=in_memory'],
    metadata={INTERNAL: 'is set from the deploy config\'s `dataflow` section'},
  )
  # Appended to the above for the Beam components of each kind named here (e.g. Dataflow).
  component_beam_args: Mapping[str, Tuple[str, ...]] = dataclasses.field(
    default_factory=dict, metadata={INTERNAL: 'is set from `dataflow.components`'}
  )

  def __post_init__(self):
    check_fields(self)
    if self.eval_percent + self.test_percent >= 100:
      raise OptionValueError(
        f'eval_percent + test_percent must leave images to train on (below 100), got '
        f'{self.eval_percent} + {self.test_percent}'
      )

  @property
  def seed_values(self) -> Tuple[int, ...]:
    """The training seed of each run of a variant; the first is `training.seed`, the run that
    selection, the gate and the push use."""
    return seed_values(self.training.seed, self.seeds)

  def training_for(self, variant: str, seed: Optional[int] = None) -> TrainingConfig:
    """One Trainer's options: this variant, with `seed` (default: training.seed)."""
    return dataclasses.replace(
      self.training, variant=variant, seed=self.training.seed if seed is None else seed
    )

  def beam_args_for(self, component_kind: str) -> Tuple[str, ...]:
    """Beam args a component of this kind adds to beam_pipeline_args (later ones win)."""
    return tuple(self.component_beam_args.get(component_kind, ()))

  @property
  def image_hw(self) -> Optional[Tuple[int, int]]:
    """image_size as (height, width); None when the data decides."""
    if self.image_size is None:
      return None
    height, _, width = self.image_size.partition('x')
    return int(height), int(width or height)

  @property
  def pipeline_root(self) -> str:
    return os.path.join(self.output_root, 'pipeline')

  @property
  def metadata_path(self) -> str:
    return os.path.join(self.output_root, 'metadata.sqlite')

  @property
  def serving_model_dir(self) -> str:
    """Where Pusher writes versions: the model base path TF Serving is given."""
    return os.path.join(
      self.serving_root or os.path.join(self.output_root, 'serving'), self.model_name
    )
