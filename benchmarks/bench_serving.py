"""Serving latency: each signature of a pushed model against calling its Keras model directly.

The difference is what parsing tf.Examples and the Transform graph cost per request.
All timings are taken side by side in one run and reported as ratios to the
direct call, since absolute numbers on a shared machine drift.

  .venv/bin/python benchmarks/bench_serving.py [outputs/serving/fashion_mnist]
"""

import sys
import time

import numpy as np
import tensorflow as tf

from pipeline import predict
from trainer import export
from trainer import preprocessing

REPEATS = 200


def _latencies_ms(call, repeats=REPEATS):
  call()  # warm up: first calls trace and allocate
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    call()
    times.append((time.perf_counter() - start) * 1000)
  return np.percentile(times, 50), np.percentile(times, 99)


def main(model_dir: str) -> None:
  loaded = tf.saved_model.load(predict.latest_version_dir(model_dir))
  serve_examples = loaded.signatures[export.SERVING_SIGNATURE]
  serve_images = loaded.signatures[export.IMAGES_SIGNATURE]
  model_call = tf.function(lambda images: loaded.model(images, training=False))
  print(f'{"batch":>5}  {"path":<26} {"p50 ms":>8} {"p99 ms":>8} {"p50 / direct":>12}')
  for batch in (1, 64):
    images = np.random.default_rng(0).integers(0, 256, size=(batch, 28, 28)).astype(np.uint8)
    examples = tf.constant(predict.serialized_examples(images))
    pixels = tf.constant(images)
    scaled = preprocessing.as_images(preprocessing.scale_to_unit(images.reshape(batch, -1)))
    direct = _latencies_ms(lambda: model_call(scaled))
    rows = [
      ('model called directly', direct),
      ('serving_default (examples)', _latencies_ms(lambda: serve_examples(examples=examples))),
      ('predict_images (uint8)', _latencies_ms(lambda: serve_images(images=pixels))),
    ]
    for name, (p50, p99) in rows:
      print(f'{batch:>5}  {name:<26} {p50:8.2f} {p99:8.2f} {p50 / direct[0]:12.2f}')


if __name__ == '__main__':
  main(sys.argv[1] if len(sys.argv) > 1 else 'outputs/serving/fashion_mnist')
