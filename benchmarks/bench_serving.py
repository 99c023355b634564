"""Serving overhead: each client signature of a pushed model against calling its Keras model
directly on already-scaled images, at batch 1 and 64.

The difference is what decoding the image files (serving_default), parsing tf.Examples first
(serve_examples) or encoding raw pixels to PNG first (predict_images), the Transform graph and
the outputs' softmax / argmax / class names cost per request. The four calls run interleaved
in one process, ROUNDS times, in a rotating order; each ratio is taken within a round and
reported as the median over rounds with the interquartile range, because a shared machine's
speed drifts more between rounds than within one. Goal: at most 1.5x the direct call at batch 64.

  .venv/bin/python -m benchmarks.bench_serving [outputs/serving/fashion_mnist]
  .venv/bin/python -m benchmarks.bench_serving --untrained  # the default network, exported here
"""

import argparse
import os
import statistics
import tempfile

import trainer  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
import numpy as np
import tensorflow as tf

from components.variant_selection import production
from contract import signatures
from contract.features import DatasetSpec
from serving import predict
from serving import requests
from serving.latency import seconds_per_call
from tests import serving_model
from trainer.config import TrainingConfig
from trainer.model import build_model

ROUNDS = 15
CALLS_PER_ROUND = {1: 40, 64: 8}
GOAL_AT_64 = 1.5


def _quartiles(values):
  q1, median, q3 = statistics.quantiles(values, n=4)
  return median, q1, q3


def _untrained_default_network(root: str) -> str:
  """The pipeline's default network, built and exported untrained: serving cost does not
  depend on the weights."""
  config = TrainingConfig()
  model = build_model(
    'batch',
    filters=config.filters,
    conv_blocks=config.conv_blocks,
    hidden_units=config.hidden_units,
    seed=0,
  )
  images = np.random.default_rng(0).integers(0, 256, size=(64, 28, 28), dtype=np.uint8)
  return serving_model.export_version(root, model, 'batch', images)


def main(model_dir: str) -> None:
  path = predict.version_dir(model_dir)
  spec = DatasetSpec.from_dict(production.model_info(path)['dataset'])
  loaded = tf.saved_model.load(path)
  serve_bytes = loaded.signatures[signatures.SERVING_SIGNATURE]
  serve_examples = loaded.signatures[signatures.EXAMPLES_SIGNATURE]
  serve_images = loaded.signatures[signatures.IMAGES_SIGNATURE]
  model_call = tf.function(lambda images: loaded.model(images, training=False))
  print(f'{model_dir}: {ROUNDS} interleaved rounds; ratio = signature / direct, median (IQR)')
  print(f'{"batch":>5}  {"path":<28} {"ms/call":>8}  {"ratio to direct":<20}')
  for batch, calls in CALLS_PER_ROUND.items():
    images = np.random.default_rng(batch).integers(
      0, 256, size=(batch, *spec.image_shape), dtype=np.uint8
    )
    files = serving_model.png_files(images)
    image_bytes = tf.constant(files)
    examples = tf.constant([requests.image_example(image) for image in files])
    pixels = tf.constant(images)
    scaled = serving_model.model_inputs(files, spec)
    paths = {
      'model called directly': lambda: model_call(scaled),  # noqa: B023
      'serving_default (PNG bytes)': lambda: serve_bytes(image_bytes=image_bytes),  # noqa: B023
      'serve_examples (examples)': lambda: serve_examples(examples=examples),  # noqa: B023
      'predict_images (uint8)': lambda: serve_images(images=pixels),  # noqa: B023
    }
    for call in paths.values():  # first calls trace and allocate
      call()
    times = {name: [] for name in paths}
    names = list(paths)
    for round_number in range(ROUNDS):
      shift = round_number % len(names)
      for name in names[shift:] + names[:shift]:
        times[name].append(seconds_per_call(paths[name], calls))
    direct = times['model called directly']
    for name in names:
      milliseconds = statistics.median(times[name]) * 1000
      ratio = ''
      if name != 'model called directly':
        median, q1, q3 = _quartiles([t / d for t, d in zip(times[name], direct)])
        ratio = f'{median:.2f}x ({q1:.2f}-{q3:.2f})'
        if batch == 64:
          ratio += '  goal met' if median <= GOAL_AT_64 else f'  over the {GOAL_AT_64}x goal'
      print(f'{batch:>5}  {name:<28} {milliseconds:8.2f}  {ratio}')


if __name__ == '__main__':
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument(
    'model_dir', nargs='?', default=os.path.join('outputs', 'serving', 'fashion_mnist')
  )
  parser.add_argument(
    '--untrained', action='store_true', help="export the pipeline's default network untrained"
  )
  args = parser.parse_args()
  if args.untrained:
    with tempfile.TemporaryDirectory() as root:
      main(_untrained_default_network(root))
  else:
    main(args.model_dir)
