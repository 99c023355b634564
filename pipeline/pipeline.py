"""The pipeline DAG, built from a PipelineConfig; every runner uses this one definition."""

from typing import Any, Dict, List, Mapping, Optional, Union

import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.proto import config_pb2 as tfma_config
from google.protobuf import wrappers_pb2
from tfx import v1 as tfx
from ml_metadata.proto import metadata_store_pb2
from tfx.components.distribution_validator.component import DistributionValidator

from components.curated_schema import CuratedSchema
from components.anomalies_gate import AnomaliesGate
from components import drift_gate
from components.drift_gate import DriftGate
from components.training_parameters import TrainingParameters
from components.variant_selection import keys as selector_keys
from components.variant_selection.component import VariantSelector
from components.image_example_gen.component import ImageExampleGen
from components.image_example_gen.component import input_config_for
from components.image_example_gen import executor as executor_keys
from contract import features
from contract import signatures
from dataset.resolve import ResolvedDataset
from dataset.resolve import fashion_mnist_dataset
from pipeline.config import PipelineConfig
from trainer import calibration
from trainer import config as training_config
from trainer.preprocessing import PIXEL_SCALING_KEY

PREPROCESSING_FN = 'trainer.preprocessing.preprocessing_fn'
RUN_FN = 'trainer.task.run_fn'
CODE_FINGERPRINT_KEY = 'code_fingerprint'
SELECTOR_ID = 'VariantSelector'
VERTEX_PUSHER_ID = 'VertexEndpointPusher'
# What a user changes per run without recompiling: pipeline parameters on Vertex AI and
# Kubeflow (root inputDefinitions, defaults from the config); locally, the config's values.
TRAINING_PARAMETERS = {'epochs': int, 'batch_size': int, 'learning_rate': float}
GATE_PARAMETERS = {'accuracy_threshold': float, 'max_accuracy_drop': float}
# The options ImageExampleGen reads from its custom_config, under their own names.
EXAMPLE_GEN_OPTIONS = (
  'eval_percent',
  'test_percent',
  'bad_images',
  'max_image_bytes',
  'max_image_pixels',
  'train_spans',
)
DRIFT_VALIDATOR_ID = 'DriftValidator'
DRIFT_GATE_ID = 'DriftGate'


def parameter_values(config: PipelineConfig) -> Dict[str, Union[int, float]]:
  """The config's value of every pipeline parameter, by name, in the parameter's type
  (a YAML `learning_rate: 1` is an int; the parameter stays a float)."""
  return {
    **{name: kind(getattr(config.training, name)) for name, kind in TRAINING_PARAMETERS.items()},
    **{name: kind(getattr(config, name)) for name, kind in GATE_PARAMETERS.items()},
  }


def runtime_parameters(config: PipelineConfig) -> Dict[str, tfx.dsl.experimental.RuntimeParameter]:
  """Every pipeline parameter as a RuntimeParameter, its default the config's value.

  Only for the Kubeflow V2 compiler: TFX 1.16's IR compiler, which LocalDagRunner
  uses, drops a falsy default (max_accuracy_drop 0.0), so local runs take the
  plain values instead.
  """
  return {
    name: tfx.dsl.experimental.RuntimeParameter(name=name, ptype=type(value), default=value)
    for name, value in parameter_values(config).items()
  }


def _seed_suffix(seed: Optional[int]) -> str:
  """Nothing for the run with the configured seed, so one seed keeps the ids it always had."""
  return '' if seed is None else f'_seed{seed}'


def trainer_id(variant: str, extra_seed: Optional[int] = None) -> str:
  return f'Trainer_{variant}{_seed_suffix(extra_seed)}'


def evaluator_id(variant: str, extra_seed: Optional[int] = None) -> str:
  return f'Evaluator_{variant}{_seed_suffix(extra_seed)}'


def eval_config() -> tfma.EvalConfig:
  """TFMA on the eval split: accuracy, loss and calibration error, overall and per label, each
  with a 95% confidence interval.

  The intervals are TFMA's delete-d jackknife (TFMA 0.47: 20 random partitions of the
  examples, each metric recomputed 20 times leaving one partition out, a Student t interval
  with 19 degrees of freedom). Its Poisson bootstrap (also 20 samples) re-weights every
  example in every sample, so it does 20 times the per-example work; the jackknife adds each
  example to one partition once and only merges the partitions' accumulators.

  No thresholds here: the VariantSelector is the gate (accuracy threshold and
  the comparison with the model in production), with run-time values.
  """
  return tfma.EvalConfig(
    options=tfma.Options(
      compute_confidence_intervals=wrappers_pb2.BoolValue(value=True),
      confidence_intervals=tfma_config.ConfidenceIntervalOptions(
        method=tfma_config.ConfidenceIntervalOptions.JACKKNIFE
      ),
    ),
    model_specs=[
      tfma.ModelSpec(
        signature_name=signatures.EXAMPLES_SIGNATURE,
        preprocessing_function_names=[signatures.TRANSFORM_SIGNATURE],
        label_key=features.LABEL_KEY,
        prediction_key=signatures.PROBABILITIES,
      )
    ],
    slicing_specs=[
      tfma.SlicingSpec(),
      tfma.SlicingSpec(feature_keys=[features.LABEL_KEY]),
    ],
    metrics_specs=[
      tfma.MetricsSpec(
        metrics=[
          tfma.MetricConfig(class_name='ExampleCount'),
          tfma.MetricConfig(class_name='SparseCategoricalAccuracy'),
          tfma.MetricConfig(class_name='SparseCategoricalCrossentropy'),
          tfma.MetricConfig(
            class_name=calibration.ExpectedCalibrationError.__name__,
            module=calibration.__name__,
          ),
        ]
      )
    ],
  )


def create_pipeline(
  config: PipelineConfig,
  code_fingerprint: str,
  metadata_connection_config: Optional[metadata_store_pb2.ConnectionConfig] = None,
  vertex_pusher_config: Optional[Dict[str, Any]] = None,
  parameters: Optional[Mapping[str, Any]] = None,
  vertex_training_config: Optional[Dict[str, Any]] = None,
  dataset: Optional[ResolvedDataset] = None,
) -> tfx.dsl.Pipeline:
  """ExampleGen → statistics, schema, validation gate → Transform → a Trainer and an Evaluator
  per variant → VariantSelector (the production gate) → Pusher.

  With `vertex_pusher_config` (the custom_config of TFX's Vertex Pusher), a
  second Pusher uploads the pushed model to the Vertex AI Model Registry and
  deploys it to an endpoint. With `vertex_training_config` (the Vertex keys of the
  custom_config of TFX's Vertex Trainer), every Trainer runs as a Vertex AI custom
  training job on several machines. `parameters` (default: parameter_values(config))
  gives epochs, batch size, learning rate and the gate's thresholds, as values
  or as runtime_parameters(config). `dataset` (dataset.resolve) is what the data is: its
  layout, classes, image size and schema; Fashion-MNIST's IDX files by default.
  """
  parameters = parameters or parameter_values(config)
  dataset = dataset or fashion_mnist_dataset(config.data_dir)
  # Every step that reads images or labels gets the one DatasetSpec decided before the build.
  spec_config = {features.DATASET_SPEC_KEY: dataset.spec.to_json()}
  # Spans (data that keeps arriving): the input pattern holds {SPAN}, TFX's driver picks the
  # newest span, and a `previous` split carries the span before it for the drift check.
  spans = dataset.span_template
  input_base, input_config = input_config_for(config.data_dir, dataset.layout, spans)
  example_gen_options = {name: getattr(config, name) for name in EXAMPLE_GEN_OPTIONS}
  if not spans:
    del example_gen_options['train_spans']  # plain data: ExampleGen's properties as before
  example_gen = ImageExampleGen(
    input_base=input_base,
    input_config=input_config,
    custom_config={
      **spec_config,
      **example_gen_options,
      **({executor_keys.SPAN_TEMPLATE_KEY: spans} if spans else {}),
      CODE_FINGERPRINT_KEY: code_fingerprint,
    },
  )
  statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs['examples'])
  schema = CuratedSchema(schema_text=dataset.schema_text)
  example_validator = tfx.components.ExampleValidator(
    statistics=statistics_gen.outputs['statistics'],
    schema=schema.outputs['schema'],
    # The previous span passed its own run's validation; this run's contract is its splits'.
    exclude_splits=[executor_keys.PREVIOUS_SPLIT] if spans else None,
  )
  anomalies_gate = AnomaliesGate(anomalies=example_validator.outputs['anomalies'])
  data_gates = [anomalies_gate]
  drift_components: List = []
  if spans:
    # The baseline is this run's own statistics of the previous span: no resolver (on Vertex
    # only LatestArtifact-style ones compile, and they do not stay within this pipeline).
    drift_validator = DistributionValidator(
      statistics=statistics_gen.outputs['statistics'],
      baseline_statistics=statistics_gen.outputs['statistics'],
      include_split_pairs=[(drift_gate.COMPARED_SPLIT, drift_gate.BASELINE_SPLIT)],
      config=drift_gate.drift_config(config.drift_label_threshold, config.drift_image_threshold),
    ).with_id(DRIFT_VALIDATOR_ID)
    drift_check = DriftGate(
      drift=drift_validator.outputs['anomalies'],
      examples=example_gen.outputs['examples'],
      accept_drift=int(config.accept_drift),
    ).with_id(DRIFT_GATE_ID)
    drift_components = [drift_validator, drift_check]
    data_gates.append(drift_check)

  transform = tfx.components.Transform(
    examples=example_gen.outputs['examples'],
    schema=schema.outputs['schema'],
    preprocessing_fn=PREPROCESSING_FN,
    splits_config=tfx.proto.SplitsConfig(analyze=['train'], transform=['train', 'eval']),
    custom_config={
      **spec_config,
      PIXEL_SCALING_KEY: config.pixel_scaling,
      CODE_FINGERPRINT_KEY: code_fingerprint,
    },
  )
  # Transform reads the examples directly; these edges make it wait for the gates to pass.
  for gate in data_gates:
    transform.add_upstream_node(gate)
  training_parameters = TrainingParameters(
    **{name: parameters[name] for name in TRAINING_PARAMETERS}
  )

  # Same inputs, outputs and run_fn; the extension's executor runs them in a Vertex AI custom job.
  trainer_class = (
    tfx.extensions.google_cloud_ai_platform.Trainer
    if vertex_training_config
    else tfx.components.Trainer
  )

  def trainer_and_evaluator(variant: str, extra_seed: Optional[int] = None):
    # The run-time options come in through `hyperparameters`; the rest is fixed at compile time.
    options = {
      name: value
      for name, value in config.training_for(variant, extra_seed).as_custom_config().items()
      if name not in TRAINING_PARAMETERS
    }
    trainer = trainer_class(
      run_fn=RUN_FN,
      examples=transform.outputs['transformed_examples'],
      transform_graph=transform.outputs['transform_graph'],
      schema=schema.outputs['schema'],
      hyperparameters=training_parameters.outputs['hyperparameters'],
      train_args=tfx.proto.TrainArgs(num_steps=config.train_steps),
      eval_args=tfx.proto.EvalArgs(num_steps=config.eval_steps),
      custom_config={
        training_config.CUSTOM_CONFIG_KEY: options,
        **spec_config,
        PIXEL_SCALING_KEY: config.pixel_scaling,
        CODE_FINGERPRINT_KEY: code_fingerprint,
        **(vertex_training_config or {}),
      },
    ).with_id(trainer_id(variant, extra_seed))
    evaluator = tfx.components.Evaluator(
      examples=example_gen.outputs['examples'],
      model=trainer.outputs['model'],
      example_splits=['eval'],
      eval_config=eval_config(),
    ).with_id(evaluator_id(variant, extra_seed))
    variant_components.extend([trainer, evaluator])
    return {
      selector_keys.MODEL: trainer.outputs['model'],
      selector_keys.MODEL_RUN: trainer.outputs['model_run'],
      selector_keys.EVALUATION: evaluator.outputs['evaluation'],
    }

  variant_components: List = []
  per_variant = {variant: trainer_and_evaluator(variant) for variant in config.variants}
  # The extra seeds' runs only report the spread: the selector takes no model of theirs.
  extra_seeds = config.seed_values[1:]
  per_extra_seed = {
    variant: {seed: trainer_and_evaluator(variant, seed) for seed in extra_seeds}
    for variant in config.variants
  }

  selector = VariantSelector(
    examples=example_gen.outputs['examples'],
    per_variant=per_variant,
    serving_model_dir=config.serving_model_dir,
    selection_metric=config.selection_metric,
    significance_level=config.significance_level,
    replace_production=config.replace_production,
    latency_repeats=config.latency_repeats,
    per_extra_seed=per_extra_seed,
    seed=config.training.seed,
    **{name: parameters[name] for name in GATE_PARAMETERS},
  ).with_id(SELECTOR_ID)

  # The serving root is the record of production the selector reads, so every deployment
  # pushes there, and an endpoint only after it: a failed endpoint deploy is retried by the
  # next run (its inputs are unchanged, so only it re-runs), never recorded as production.
  pusher = tfx.components.Pusher(
    model=selector.outputs[selector_keys.MODEL],
    model_blessing=selector.outputs[selector_keys.BLESSING],
    push_destination=tfx.proto.PushDestination(
      filesystem=tfx.proto.PushDestination.Filesystem(base_directory=config.serving_model_dir)
    ),
  )
  pushers = [pusher]
  if vertex_pusher_config is not None:
    endpoint_pusher = tfx.extensions.google_cloud_ai_platform.Pusher(
      model=selector.outputs[selector_keys.MODEL],
      model_blessing=selector.outputs[selector_keys.BLESSING],
      custom_config=vertex_pusher_config,
    ).with_id(VERTEX_PUSHER_ID)
    endpoint_pusher.add_upstream_node(pusher)
    pushers.append(endpoint_pusher)

  components: List = [
    example_gen,
    statistics_gen,
    schema,
    example_validator,
    anomalies_gate,
    *drift_components,
    transform,
    training_parameters,
    *variant_components,
    selector,
    *pushers,
  ]
  # Per-kind Beam args (the deploy config's Dataflow components) follow the pipeline-level ones
  # TFX puts first, so their --runner wins; the other Beam steps stay in their own container.
  for component in components:
    component_args = config.beam_args_for(type(component).__name__)
    if component_args:
      component.with_beam_pipeline_args(component_args)
  return tfx.dsl.Pipeline(
    pipeline_name=config.pipeline_name,
    pipeline_root=config.pipeline_root,
    components=components,
    enable_cache=config.enable_cache,
    metadata_connection_config=metadata_connection_config,
    beam_pipeline_args=config.beam_pipeline_args,
  )
