"""The pipeline DAG, built from a PipelineConfig; every runner uses this one definition."""

from typing import List, Optional

import tensorflow_model_analysis as tfma
from tfx import v1 as tfx
from ml_metadata.proto import metadata_store_pb2

from components.anomalies_gate import AnomaliesGate
from components.variant_selection import keys as selector_keys
from components.variant_selection.component import VariantSelector
from components.idx_example_gen import executor as idx_executor
from components.idx_example_gen.component import IdxExampleGen
from components.idx_example_gen.component import fashion_mnist_input_config
from pipeline.config import PipelineConfig
from trainer import export
from trainer import calibration
from trainer import config as training_config
from trainer import features
from trainer.preprocessing import PIXEL_SCALING_KEY

PREPROCESSING_FN = 'trainer.preprocessing.preprocessing_fn'
RUN_FN = 'trainer.task.run_fn'
CODE_FINGERPRINT_KEY = 'code_fingerprint'
SELECTOR_ID = 'VariantSelector'
# Allows for float noise only: a candidate equal to production is not "worse".
_NO_WORSE = -1e-10


def trainer_id(variant: str) -> str:
  return f'Trainer_{variant}'


def evaluator_id(variant: str) -> str:
  return f'Evaluator_{variant}'


def eval_config(accuracy_threshold: float, max_accuracy_drop: float = 0.0) -> tfma.EvalConfig:
  """TFMA on the eval split: accuracy, loss and calibration error, overall and per label.

  A candidate is blessed when its overall accuracy reaches the threshold and
  is at most `max_accuracy_drop` below the production model's (the baseline;
  on a first run there is none and only the threshold applies).
  """
  return tfma.EvalConfig(
    model_specs=[
      tfma.ModelSpec(
        signature_name=export.SERVING_SIGNATURE,
        preprocessing_function_names=[export.TRANSFORM_SIGNATURE],
        label_key=features.LABEL_KEY,
        prediction_key=export.PROBABILITIES,
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
          tfma.MetricConfig(
            class_name='SparseCategoricalAccuracy',
            # Overall only: a hard class (Shirt) sits well below the overall accuracy.
            per_slice_thresholds=[
              tfma.PerSliceMetricThreshold(
                slicing_specs=[tfma.SlicingSpec()],
                threshold=tfma.MetricThreshold(
                  value_threshold=tfma.GenericValueThreshold(
                    lower_bound={'value': accuracy_threshold}
                  ),
                  change_threshold=tfma.GenericChangeThreshold(
                    direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                    absolute={'value': _NO_WORSE - max_accuracy_drop},
                  ),
                ),
              )
            ],
          ),
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
  schema_uri: str,
  code_fingerprint: str,
  metadata_connection_config: Optional[metadata_store_pb2.ConnectionConfig] = None,
) -> tfx.dsl.Pipeline:
  """ExampleGen → statistics, schema, validation gate → Transform → a Trainer and an Evaluator
  per variant → VariantSelector → Pusher."""
  example_gen = IdxExampleGen(
    input_base=config.data_dir,
    input_config=fashion_mnist_input_config(),
    custom_config={
      idx_executor.EVAL_PERCENT_KEY: config.eval_percent,
      CODE_FINGERPRINT_KEY: code_fingerprint,
    },
  )
  statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs['examples'])
  schema_importer = tfx.dsl.Importer(
    source_uri=schema_uri, artifact_type=tfx.types.standard_artifacts.Schema
  ).with_id('schema_importer')
  example_validator = tfx.components.ExampleValidator(
    statistics=statistics_gen.outputs['statistics'], schema=schema_importer.outputs['result']
  )
  anomalies_gate = AnomaliesGate(anomalies=example_validator.outputs['anomalies'])

  transform = tfx.components.Transform(
    examples=example_gen.outputs['examples'],
    schema=schema_importer.outputs['result'],
    preprocessing_fn=PREPROCESSING_FN,
    splits_config=tfx.proto.SplitsConfig(analyze=['train'], transform=['train', 'eval']),
    custom_config={
      PIXEL_SCALING_KEY: config.pixel_scaling,
      CODE_FINGERPRINT_KEY: code_fingerprint,
    },
  )
  # Transform reads the examples directly; this edge makes it wait for the gate to pass.
  transform.add_upstream_node(anomalies_gate)

  # The model the last run pushed: the selector's blessing names it. Evaluators compare
  # every candidate against it, so nothing worse than production is blessed. (On Vertex the
  # compiled query takes the newest blessed ModelBlessing of any producer; within a run the
  # selector writes the last one, so that is the same model.)
  production_model = tfx.dsl.Resolver(
    strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
    model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
    model_blessing=tfx.dsl.Channel(
      type=tfx.types.standard_artifacts.ModelBlessing,
      producer_component_id=SELECTOR_ID,
      output_key=selector_keys.BLESSING,
    ),
  ).with_id('production_model')

  per_variant = {}
  variant_components = []
  for variant in config.variants:
    trainer = tfx.components.Trainer(
      run_fn=RUN_FN,
      examples=transform.outputs['transformed_examples'],
      transform_graph=transform.outputs['transform_graph'],
      schema=schema_importer.outputs['result'],
      train_args=tfx.proto.TrainArgs(num_steps=config.train_steps),
      eval_args=tfx.proto.EvalArgs(num_steps=config.eval_steps),
      custom_config={
        training_config.CUSTOM_CONFIG_KEY: config.training_for(variant).as_custom_config(),
        CODE_FINGERPRINT_KEY: code_fingerprint,
      },
    ).with_id(trainer_id(variant))
    evaluator = tfx.components.Evaluator(
      examples=example_gen.outputs['examples'],
      model=trainer.outputs['model'],
      baseline_model=production_model.outputs['model'],
      example_splits=['eval'],
      eval_config=eval_config(config.accuracy_threshold, config.max_accuracy_drop),
    ).with_id(evaluator_id(variant))
    per_variant[variant] = {
      selector_keys.MODEL: trainer.outputs['model'],
      selector_keys.MODEL_RUN: trainer.outputs['model_run'],
      selector_keys.EVALUATION: evaluator.outputs['evaluation'],
      selector_keys.BLESSING: evaluator.outputs['blessing'],
    }
    variant_components += [trainer, evaluator]

  selector = VariantSelector(
    examples=example_gen.outputs['examples'],
    per_variant=per_variant,
    production_model=production_model.outputs['model'],
    selection_metric=config.selection_metric,
  ).with_id(SELECTOR_ID)

  pusher = tfx.components.Pusher(
    model=selector.outputs[selector_keys.MODEL],
    model_blessing=selector.outputs[selector_keys.BLESSING],
    push_destination=tfx.proto.PushDestination(
      filesystem=tfx.proto.PushDestination.Filesystem(base_directory=config.serving_model_dir)
    ),
  )

  components: List = [
    example_gen,
    statistics_gen,
    schema_importer,
    example_validator,
    anomalies_gate,
    transform,
    production_model,
    *variant_components,
    selector,
    pusher,
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
