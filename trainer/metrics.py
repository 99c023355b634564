"""Streaming metrics of a classifier, and a throughput meter."""

import contextlib
import time
from typing import Dict, Iterator

import tensorflow as tf
import tf_keras as keras


class ClassifierMetrics:
  """Mean loss and accuracy over the batches seen since the last reset.

  Create it under the distribution strategy's scope: its variables then
  aggregate across replicas.
  """

  def __init__(self, prefix: str):
    self.prefix = prefix
    self.loss = keras.metrics.Mean(name=f'{prefix}/loss')
    self.accuracy = keras.metrics.SparseCategoricalAccuracy(name=f'{prefix}/accuracy')

  def update(self, labels: tf.Tensor, logits: tf.Tensor, loss: tf.Tensor) -> None:
    self.loss.update_state(loss)
    self.accuracy.update_state(labels, logits)

  def result(self) -> Dict[str, float]:
    return {'loss': float(self.loss.result()), 'accuracy': float(self.accuracy.result())}

  def reset(self) -> None:
    self.loss.reset_state()
    self.accuracy.reset_state()


class Throughput:
  """Images per second, counting only the time spent inside `measure` blocks."""

  def __init__(self, images: int = 0, seconds: float = 0.0):
    self.images = images
    self.seconds = seconds

  @contextlib.contextmanager
  def measure(self, images: int) -> Iterator[None]:
    start = time.perf_counter()
    yield
    self.seconds += time.perf_counter() - start
    self.images += images

  @property
  def rate(self) -> float:
    return self.images / self.seconds if self.seconds > 0 else float('nan')

  def pop_rate(self) -> float:
    """The rate since the last call; starts counting afresh."""
    rate = self.rate
    self.images, self.seconds = 0, 0.0
    return rate
