"""TFX Trainer entry point: `run_fn` adapts the Trainer's FnArgs to the training loop."""

import contextlib
import os

from absl import logging
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from contract.features import DATASET_SPEC_KEY
from contract.features import FASHION_MNIST
from contract.features import IMAGE_KEY
from contract.features import LABEL_KEY
from contract.features import DatasetSpec
from contract.features import spec_from_custom_config
from trainer import augmentation
from trainer import export
from trainer import loop
from trainer.preprocessing import IMAGE_RAW_KEY
from trainer.preprocessing import PIXEL_SCALING_KEY
from trainer.config import COSINE
from trainer.config import CUSTOM_CONFIG_KEY
from trainer.config import MIXED_FLOAT16
from trainer.config import TrainingConfig
from trainer.config import check_run_time_parameters
from trainer.devices import Hardware
from trainer.devices import distribution_strategy
from trainer.devices import is_chief
from trainer.devices import keras_policy
from trainer.devices import use_jit_compile
from trainer.devices import writable_dir
from trainer.model import build_model
from trainer.summaries import RunSummaries

CHECKPOINT_DIR = 'checkpoints'
PARSE_BATCH = 256
# Eval images the export's warmup requests are built from.
WARMUP_SAMPLES = 16


def count_records(file_patterns) -> int:
  """Number of records in the gzip TFRecord files, read without parsing them."""
  files = [path for pattern in file_patterns for path in tf.io.gfile.glob(pattern)]
  records = tf.data.TFRecordDataset(files, compression_type='GZIP')
  return int(records.reduce(tf.constant(0, tf.int64), lambda count, _: count + 1))


def _dataset(
  fn_args: tfx.components.FnArgs,
  transform_output: tft.TFTransformOutput,
  file_patterns,
  batch_size: int,
  seed: int,
  training_examples: int | None = None,
  mirror: bool = False,
) -> tf.data.Dataset:
  """Batches of (images, labels). For training (`training_examples`, the split's size) they are
  shuffled over the whole split by `seed`, repeat forever, and are randomly mirrored if
  `mirror`; otherwise one pass in file order.

  Parsed images (not their encoded bytes, `image_raw`) are cached in memory (Fashion-MNIST's 54k
  training images are 170 MB as float32), so epochs after the first skip the tf.Example parsing.
  The shuffle buffer spans the split because ExampleGen writes a class folder's images together:
  a smaller buffer over such files gives batches of one or two classes, and batch statistics and
  the optimizer then see a different class every few hundred steps. The cache holds the split
  in memory already.
  """
  parsed = _transformed(fn_args, transform_output, file_patterns, PARSE_BATCH)
  examples = parsed.map(lambda batch, labels: (batch[IMAGE_KEY], labels)).unbatch().cache()
  if training_examples is not None:
    examples = examples.shuffle(
      training_examples, seed=seed, reshuffle_each_iteration=True
    ).repeat()
  batches = examples.batch(batch_size)
  if mirror:
    batches = augmentation.random_mirror(batches, seed)
  return batches.prefetch(tf.data.AUTOTUNE)


def _transformed(fn_args, transform_output, file_patterns, batch_size: int) -> tf.data.Dataset:
  """One pass over the transformed examples, in file order, as (features, labels) batches."""
  return fn_args.data_accessor.tf_dataset_factory(
    file_patterns,
    tfxio.TensorFlowDatasetOptions(
      batch_size=batch_size, label_key=LABEL_KEY, shuffle=False, num_epochs=1
    ),
    transform_output.transformed_metadata.schema,
  )


def sample_images(fn_args, transform_output, count: int = WARMUP_SAMPLES) -> list[bytes]:
  """The encoded files of the first `count` eval examples, for the warmup requests."""
  batch, _ = next(iter(_transformed(fn_args, transform_output, fn_args.eval_files, count)))
  return [bytes(image) for image in tf.reshape(batch[IMAGE_RAW_KEY], [-1]).numpy()]


def check_transform_matches(transform_output: tft.TFTransformOutput, spec: DatasetSpec) -> None:
  """Raises ValueError when Transform's images are not the shape `spec` gives the model."""
  transformed = tuple(transform_output.transformed_feature_spec()[IMAGE_KEY].shape)
  if transformed != spec.image_shape:
    raise ValueError(
      f"Transform's images are {list(transformed)} but the Trainer's dataset spec says "
      f'{list(spec.image_shape)}: both must get the same custom_config {DATASET_SPEC_KEY!r}'
    )


def learning_rate(config: TrainingConfig, total_steps: int):
  """The configured rate, constant or cosine-decayed to 0 at `total_steps`."""
  if config.learning_rate_schedule == COSINE:
    return keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=total_steps)
  return config.learning_rate


def build_model_and_optimizer(
  config: TrainingConfig,
  strategy: tf.distribute.Strategy,
  total_steps: int,
  hardware: Hardware,
  spec: DatasetSpec = FASHION_MNIST,
):
  """The CNN for `spec`'s images and classes and its optimizer, both under `strategy`, in the
  precision `config` asks for here.

  Under a mixed policy layers compute in float16 or bfloat16 while every
  variable, the normalization statistics among them, stays float32; the
  loop casts the logits to float32 before the loss. float16 also gets a
  loss-scaling optimizer, which keeps small gradients from flushing to zero
  (bfloat16 has float32's exponent range and needs none).
  """
  policy = keras_policy(config.precision, hardware)
  previous_policy = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy(policy)
  try:
    with strategy.scope():
      model = build_model(
        config.variant,
        filters=config.filters,
        conv_blocks=config.conv_blocks,
        hidden_units=config.hidden_units,
        image_shape=spec.image_shape,
        num_classes=spec.num_classes,
        seed=config.seed,
      )
      optimizer = keras.optimizers.Adam(learning_rate=learning_rate(config, total_steps))
      if policy == MIXED_FLOAT16:
        optimizer = keras.mixed_precision.LossScaleOptimizer(optimizer)
  finally:
    # Layers keep the policy they were built with; the rest of the process (LocalDagRunner runs
    # Evaluator in this one) must not inherit a 16-bit one.
    keras.mixed_precision.set_global_policy(previous_policy)
  return model, optimizer


def run_fn(fn_args: tfx.components.FnArgs) -> None:
  """Trains the configured CNN variant and exports the serving SavedModel."""
  # The run-time options (epochs, batch size, learning rate) arrive as the Trainer's
  # hyperparameters input (components/training_parameters.py); the rest is in custom_config.
  hyperparameters = fn_args.hyperparameters or {}
  check_run_time_parameters(TrainingConfig, hyperparameters)
  config = TrainingConfig.from_custom_config(
    {**fn_args.custom_config[CUSTOM_CONFIG_KEY], **hyperparameters}
  )
  spec = spec_from_custom_config(fn_args.custom_config)
  logging.info('Training %s on %s', config, spec)
  keras.utils.set_random_seed(config.seed)
  transform_output = tft.TFTransformOutput(fn_args.transform_output)
  check_transform_matches(transform_output, spec)
  strategy = distribution_strategy()
  # batch_size is per replica: with W workers of G GPUs each step takes W * G * batch_size
  # examples, and the learning rate applies to that global batch as configured.
  global_batch_size = config.batch_size * strategy.num_replicas_in_sync

  training_examples = count_records(fn_args.train_files)
  per_epoch = loop.steps_per_epoch(training_examples, global_batch_size)
  total_steps = config.epochs * per_epoch
  if fn_args.train_steps:
    total_steps = min(total_steps, fn_args.train_steps)
  schedule = loop.Schedule(
    total_steps=total_steps,
    steps_per_epoch=per_epoch,
    log_every_n_steps=config.log_every_n_steps,
    checkpoint_every_n_steps=config.checkpoint_every_n_steps,
    max_eval_steps=fn_args.eval_steps or None,
  )

  hardware = Hardware.detect()
  jit_compile = use_jit_compile(config.jit_compile, hardware)
  model, optimizer = build_model_and_optimizer(config, strategy, total_steps, hardware, spec)
  logging.info(
    'Precision %s (policy %s), jit_compile %s, %d replica(s)',
    config.precision,
    model.dtype_policy.name,
    jit_compile,
    strategy.num_replicas_in_sync,
  )
  task = loop.ClassifierTask(model, optimizer, strategy, jit_compile)
  chief = is_chief(strategy)
  # Every worker runs run_fn with the same output URIs (TFX's executor on each machine of the
  # Vertex job); only the chief's checkpoints, summaries, history and export land there.
  with contextlib.ExitStack() as outputs:
    run_dir = outputs.enter_context(writable_dir(fn_args.model_run_dir, chief))
    serving_model_dir = outputs.enter_context(writable_dir(fn_args.serving_model_dir, chief))
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
    checkpoints = tf.train.CheckpointManager(
      checkpoint, os.path.join(run_dir, CHECKPOINT_DIR), max_to_keep=2
    )
    summaries = RunSummaries(run_dir)
    try:
      eval_result = loop.fit(
        task,
        _dataset(
          fn_args,
          transform_output,
          fn_args.train_files,
          global_batch_size,
          config.seed,
          training_examples=training_examples,
          mirror=config.random_mirror,
        ),
        _dataset(
          fn_args,
          transform_output,
          fn_args.eval_files,
          global_batch_size,
          config.seed,
        ),
        schedule,
        checkpoints,
        summaries,
        global_batch_size,
        # A restarted worker (a preempted machine) resumes where the chief's checkpoints are.
        resume_dir=os.path.join(fn_args.model_run_dir, CHECKPOINT_DIR),
      )
    finally:
      summaries.close()
    logging.info('Final eval: %s', eval_result)
    export.save(
      model,
      transform_output,
      serving_model_dir,
      {
        'variant': config.variant,
        'training': config.as_custom_config(),
        # What the Transform graph inside the export does to pixels, for the model card.
        'transform': {PIXEL_SCALING_KEY: fn_args.custom_config.get(PIXEL_SCALING_KEY)},
      },
      spec,
      sample_images(fn_args, transform_output),
    )
  # TFX's executor fails a worker whose run_fn returns before the chief's export exists.
  wait_for_all_workers(strategy)


def wait_for_all_workers(strategy: tf.distribute.Strategy) -> None:
  """Returns once every worker has got here: an all-reduce that no worker finishes alone."""
  strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(1.0)), axis=None)
