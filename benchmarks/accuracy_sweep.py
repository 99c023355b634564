"""Test accuracy and training time of candidate default TrainingConfigs, trained the way the Trainer trains.

For each variant and each candidate (TrainingConfig fields given as
`name=value,name=value`; an empty candidate is the default) this builds
the Trainer's own model and optimizer (trainer.task.build_model_and_optimizer,
precision and XLA as run_fn chooses them on this machine), feeds the
pipeline's `train` split (the 60k training file minus ImageExampleGen's SHA-256
holdout) shuffled, batched and mirrored as run_fn does, trains through
ClassifierTask.train an epoch per call, and reports accuracy on the `eval`
holdout and on the 10k t10k `test` file with the training time. Input
parsing is not part of the pipeline's cost here (the images are held in
memory), so the times are the training steps alone.

    .venv/bin/python benchmarks/accuracy_sweep.py --variants layer keras_batch \
        --candidates '' 'epochs=15' 'epochs=12,filters=48'
"""

import argparse
import dataclasses
import hashlib
import os
import time

import trainer  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
import numpy as np
import tensorflow as tf
import tf_keras as keras

from components.image_example_gen import executor
from components.image_example_gen import idx
from dataset import images as image_files
from trainer import augmentation
from trainer import loop
from trainer import preprocessing
from trainer.config import TrainingConfig
from trainer.devices import Hardware
from trainer.devices import use_jit_compile
from trainer.model import VARIANTS
from trainer.task import build_model_and_optimizer

DATA_DIR = '/usr/share/datasets/fashion-mnist'


def _images(pixels: np.ndarray) -> tf.Tensor:
  return preprocessing.scale_to_unit(pixels[..., np.newaxis])


def load_splits(data_dir: str) -> dict:
  """{'train'|'eval'|'test': (images float32 [n,28,28,1] in [0,1], labels int64)} as the pipeline splits them."""
  train_images, train_labels = idx.read_pair(idx.find_pair(data_dir, 'train-*-ubyte.gz'))
  test_images, test_labels = idx.read_pair(idx.find_pair(data_dir, 't10k-*-ubyte.gz'))
  # ImageExampleGen's holdout: by the SHA-256 of each image's PNG bytes.
  held_out = executor.HeldOut(eval=executor.DEFAULT_EVAL_PERCENT, test=0)
  holdout = np.array(
    [
      executor.holdout_split(hashlib.sha256(png).digest(), held_out) == 'eval'
      for png in image_files.encode_pngs(train_images)
    ]
  )
  return {
    'train': (_images(train_images[~holdout]), train_labels[~holdout].astype(np.int64)),
    'eval': (_images(train_images[holdout]), train_labels[holdout].astype(np.int64)),
    'test': (_images(test_images), test_labels.astype(np.int64)),
  }


def parse_candidate(text: str) -> dict:
  """'epochs=15,filters=48' -> {'epochs': 15, 'filters': 48}, typed as TrainingConfig's fields."""
  types = {field.name: type(field.default) for field in dataclasses.fields(TrainingConfig)}
  values = {}
  for item in filter(None, text.split(',')):
    name, _, value = item.partition('=')
    if name not in types:
      raise SystemExit(f'candidate {text!r}: unknown TrainingConfig field {name!r}')
    values[name] = types[name](value) if types[name] is not bool else value == 'true'
  return values


def train_and_test(config: TrainingConfig, splits: dict, hardware: Hardware) -> dict:
  keras.utils.set_random_seed(config.seed)
  strategy = tf.distribute.get_strategy()
  train_images, train_labels = splits['train']
  per_epoch = loop.steps_per_epoch(len(train_labels), config.batch_size)
  model, optimizer = build_model_and_optimizer(
    config, strategy, config.epochs * per_epoch, hardware
  )
  task = loop.ClassifierTask(
    model, optimizer, strategy, use_jit_compile(config.jit_compile, hardware)
  )
  train = tf.data.Dataset.from_tensor_slices((train_images, train_labels))
  train = train.shuffle(len(train_labels), seed=config.seed, reshuffle_each_iteration=True).repeat()
  train = train.batch(config.batch_size)
  if config.random_mirror:
    train = augmentation.random_mirror(train, config.seed)
  train = train.prefetch(tf.data.AUTOTUNE)
  task.initialize(train)
  iterator = iter(train)
  seconds = 0.0
  for _ in range(config.epochs):
    start = time.perf_counter()
    task.train(iterator, tf.constant(per_epoch))
    task.train_metrics.result()  # waits for the last step
    seconds += time.perf_counter() - start
  result = {'train_s': seconds}
  for split in ('eval', 'test'):
    batches = tf.data.Dataset.from_tensor_slices(splits[split]).batch(256)
    result[split] = task.evaluate(batches)['accuracy']
  return result


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--data-dir', default=DATA_DIR)
  parser.add_argument('--variants', nargs='+', default=['layer'], choices=VARIANTS)
  parser.add_argument('--candidates', nargs='+', default=[''])
  args = parser.parse_args()
  candidates = [parse_candidate(text) for text in args.candidates]
  splits = load_splits(args.data_dir)
  hardware = Hardware.detect()
  print(
    f'{os.cpu_count()} CPUs; train {len(splits["train"][1])}, eval {len(splits["eval"][1])}, '
    f'test {len(splits["test"][1])} images',
    flush=True,
  )
  print('| variant | candidate | eval accuracy | test accuracy | train time |')
  print('| --- | --- | ---: | ---: | ---: |', flush=True)
  for text, values in zip(args.candidates, candidates):
    for variant in args.variants:
      config = TrainingConfig(variant=variant, **values)
      result = train_and_test(config, splits, hardware)
      print(
        f'| {variant} | {text or "default"} | {result["eval"]:.4f} | {result["test"]:.4f} '
        f'| {result["train_s"]:.0f} s |',
        flush=True,
      )


if __name__ == '__main__':
  main()
