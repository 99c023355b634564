"""Input, output and parameter names shared by the component and its executor."""

MODEL = 'model'
MODEL_RUN = 'model_run'
EVALUATION = 'evaluation'
BLESSING = 'blessing'
PER_VARIANT = (MODEL, MODEL_RUN, EVALUATION)
# A variant's runs with the extra seeds are only reported: their history and evaluation.
PER_EXTRA_SEED = (MODEL_RUN, EVALUATION)
EXAMPLES = 'examples'
REPORT = 'report'
VARIANTS = 'variants'
SELECTION_METRIC = 'selection_metric'
SERVING_MODEL_DIR = 'serving_model_dir'
ACCURACY_THRESHOLD = 'accuracy_threshold'
MAX_ACCURACY_DROP = 'max_accuracy_drop'
EVAL_SPLIT = 'eval_split'
TEST_SPLIT = 'test_split'
SIGNIFICANCE_LEVEL = 'significance_level'
REPLACE_PRODUCTION = 'replace_production'
LATENCY_REPEATS = 'latency_repeats'
SEEDS = 'seeds'


def input_key(kind: str, variant: str) -> str:
  """The spec's input name for one variant's artifact, e.g. 'model_batch'."""
  return f'{kind}_{variant}'


def seed_input_key(kind: str, variant: str, seed: int) -> str:
  """The spec's input name for a run with an extra seed, e.g. 'evaluation_batch_seed43'."""
  return f'{input_key(kind, variant)}_seed{seed}'
