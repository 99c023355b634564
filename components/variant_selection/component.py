"""VariantSelector: one fixed set of inputs per variant, so Vertex can compile it.

Vertex AI Pipelines rejects union channels, so instead of one list-valued
input the spec has three inputs per variant (model, model_run, evaluation),
named `<kind>_<variant>`, and with repeated seeds two more per extra run
(model_run, evaluation), named `<kind>_<variant>_seed<seed>`. The spec class
is built for the variants and seeds the pipeline is configured with.
"""

import json
from typing import Dict, Mapping, Optional, Sequence, Type, Union

from tfx import types
from tfx.orchestration import data_types
from tfx.dsl.components.base import base_component
from tfx.dsl.components.base import executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter
from tfx.types.component_spec import ComponentSpec
from tfx.types.component_spec import ExecutionParameter

from components.artifacts import VariantComparison
from components.variant_selection import executor
from components.variant_selection import selection
from components.variant_selection.keys import ACCURACY_THRESHOLD
from components.variant_selection.keys import BLESSING
from components.variant_selection.keys import EVAL_SPLIT
from components.variant_selection.keys import EVALUATION
from components.variant_selection.keys import EXAMPLES
from components.variant_selection.keys import LATENCY_REPEATS
from components.variant_selection.keys import MAX_ACCURACY_DROP
from components.variant_selection.keys import MODEL
from components.variant_selection.keys import MODEL_RUN
from components.variant_selection.keys import REPLACE_PRODUCTION
from components.variant_selection.keys import PER_EXTRA_SEED
from components.variant_selection.keys import REPORT
from components.variant_selection.keys import SEEDS
from components.variant_selection.keys import SELECTION_METRIC
from components.variant_selection.keys import SERVING_MODEL_DIR
from components.variant_selection.keys import SIGNIFICANCE_LEVEL
from components.variant_selection.keys import TEST_SPLIT
from components.variant_selection.keys import VARIANTS
from components.variant_selection.keys import input_key
from components.variant_selection.keys import seed_input_key

_PER_VARIANT_TYPES = {
  MODEL: standard_artifacts.Model,
  MODEL_RUN: standard_artifacts.ModelRun,
  EVALUATION: standard_artifacts.ModelEvaluation,
}
FloatOrParameter = Union[float, data_types.RuntimeParameter]
# per_extra_seed[variant][seed][kind]: a run with an extra seed, by variant and seed.
ExtraSeedChannels = Mapping[str, Mapping[int, Mapping[str, types.BaseChannel]]]


class VariantSelectorSpec(ComponentSpec):
  """Parameters and outputs; `spec_for` adds the per-variant inputs."""

  PARAMETERS = {
    VARIANTS: ExecutionParameter(type=str),  # JSON list, in configuration order (breaks ties)
    SELECTION_METRIC: ExecutionParameter(type=str),
    # Pusher's base directory: the version TF Serving serves from it is the model in production.
    SERVING_MODEL_DIR: ExecutionParameter(type=str),
    ACCURACY_THRESHOLD: ExecutionParameter(type=float),
    MAX_ACCURACY_DROP: ExecutionParameter(type=float),
    EVAL_SPLIT: ExecutionParameter(type=str),
    TEST_SPLIT: ExecutionParameter(type=str),
    SIGNIFICANCE_LEVEL: ExecutionParameter(type=float),
    REPLACE_PRODUCTION: ExecutionParameter(type=str),
    # Timed serving_default calls per model and batch size.
    LATENCY_REPEATS: ExecutionParameter(type=int),
    # JSON list of training seeds, per_variant's first; absent with one seed, so that DAG (and
    # its cache keys) stays what it was before repeated seeds existed.
    SEEDS: ExecutionParameter(type=str, optional=True),
  }
  INPUTS = {
    EXAMPLES: ChannelParameter(type=standard_artifacts.Examples),
  }
  OUTPUTS = {
    MODEL: ChannelParameter(type=standard_artifacts.Model),
    BLESSING: ChannelParameter(type=standard_artifacts.ModelBlessing),
    REPORT: ChannelParameter(type=VariantComparison),
  }


def spec_for(variants: Sequence[str], extra_seeds: Sequence[int] = ()) -> Type[VariantSelectorSpec]:
  inputs = dict(VariantSelectorSpec.INPUTS)
  for variant in variants:
    for kind, artifact_type in _PER_VARIANT_TYPES.items():
      inputs[input_key(kind, variant)] = ChannelParameter(type=artifact_type)
    for seed in extra_seeds:
      for kind in PER_EXTRA_SEED:
        inputs[seed_input_key(kind, variant, seed)] = ChannelParameter(
          type=_PER_VARIANT_TYPES[kind]
        )
  return type('VariantSelectorSpec', (VariantSelectorSpec,), {'INPUTS': inputs})


class VariantSelector(base_component.BaseComponent):
  """The production gate: picks the variant to push, for Pusher, and reports.

  A variant is blessed when its eval accuracy reaches `accuracy_threshold`
  and is at most `max_accuracy_drop` below the production model's on the
  same eval examples. Production is the version TF Serving serves from
  `serving_model_dir`, Pusher's target, under the models.config beside it
  (production.py), evaluated here; before the first push only the threshold
  applies. Among the blessed variants that McNemar's test cannot tell from
  the best at `significance_level`, the one cheapest to serve (batch-1
  latency measured here, then parameters) wins, and it replaces production
  only as `replace_production` says, after Holm's correction over every
  variant (selection.py, docs/production-gate.md).

  The `model` output is a copy of the selected variant's model; when no
  variant is blessed it is the best unblessed one and `blessing` says not
  blessed, so Pusher pushes nothing. Nor does it when the winner is the
  production model itself (same SavedModel bytes: a re-run with nothing
  changed), so an unchanged model never becomes a new serving version.

  With `per_extra_seed`, the same variants trained with other seeds, the
  report adds each variant's mean ± std across all its runs; selection, the
  gate and the push still use `per_variant` alone (trained with `seed`).
  """

  SPEC_CLASS = VariantSelectorSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

  def __init__(
    self,
    examples: types.BaseChannel,
    per_variant: Dict[str, Dict[str, types.BaseChannel]],
    serving_model_dir: str,
    accuracy_threshold: FloatOrParameter,
    max_accuracy_drop: FloatOrParameter = 0.0,
    selection_metric: str = selection.ACCURACY,
    eval_split: str = 'eval',
    test_split: str = 'test',
    significance_level: float = selection.DEFAULT_SIGNIFICANCE_LEVEL,
    replace_production: str = selection.SIGNIFICANTLY_BETTER,
    latency_repeats: int = 30,
    per_extra_seed: Optional[ExtraSeedChannels] = None,
    seed: Optional[int] = None,
  ):
    """`per_variant[variant]` maps model / model_run / evaluation to channels;
    `per_extra_seed[variant][seed]` model_run / evaluation of a run with another seed than
    `seed`, the one per_variant's runs were trained with."""
    if not per_variant:
      raise ValueError('VariantSelector needs at least one variant')
    variants = list(per_variant)
    channels = {}
    for variant, inputs in per_variant.items():
      missing = sorted(set(_PER_VARIANT_TYPES) - set(inputs))
      if missing:
        raise ValueError(f'variant {variant!r} lacks inputs {missing}')
      for kind in _PER_VARIANT_TYPES:
        channels[input_key(kind, variant)] = inputs[kind]
    extra_seeds = _extra_seeds(variants, per_extra_seed or {}, seed)
    for variant, runs in (per_extra_seed or {}).items():
      for extra_seed, inputs in runs.items():
        missing = sorted(set(PER_EXTRA_SEED) - set(inputs))
        if missing:
          raise ValueError(f'variant {variant!r} with seed {extra_seed} lacks inputs {missing}')
        for kind in PER_EXTRA_SEED:
          channels[seed_input_key(kind, variant, extra_seed)] = inputs[kind]
    spec = spec_for(variants, extra_seeds)(
      examples=examples,
      variants=json.dumps(variants),
      selection_metric=selection_metric,
      serving_model_dir=serving_model_dir,
      accuracy_threshold=accuracy_threshold,
      max_accuracy_drop=max_accuracy_drop,
      eval_split=eval_split,
      test_split=test_split,
      significance_level=significance_level,
      replace_production=replace_production,
      latency_repeats=latency_repeats,
      seeds=json.dumps([seed, *extra_seeds]) if extra_seeds else None,
      model=types.Channel(type=standard_artifacts.Model),
      blessing=types.Channel(type=standard_artifacts.ModelBlessing),
      report=types.Channel(type=VariantComparison),
      **channels,
    )
    super().__init__(spec=spec)


def _extra_seeds(
  variants: Sequence[str], per_extra_seed: ExtraSeedChannels, seed: Optional[int]
) -> Sequence[int]:
  """The seeds of per_extra_seed's runs, the same for every variant (or the spread would compare
  variants over different seeds)."""
  extra_seeds = sorted({extra for runs in per_extra_seed.values() for extra in runs})
  if extra_seeds and (seed is None or seed in extra_seeds):
    raise ValueError(f'per_extra_seed needs the seed of per_variant, not one of {extra_seeds}')
  for variant in variants:
    if per_extra_seed and sorted(per_extra_seed.get(variant, {})) != extra_seeds:
      raise ValueError(f'variant {variant!r} needs runs with every extra seed {extra_seeds}')
  return extra_seeds
