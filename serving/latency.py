"""Serving latency of exported models, measured as a client's request runs: encoded image files
through `serving_default` (decoding and resizing included), in process (no network, no TF
Serving batching)."""

import dataclasses
import statistics
import time
from typing import Callable, Dict, Mapping, Sequence

from contract import signatures

# Calls before timing: the first traces the signature's function and allocates its buffers.
WARMUP_CALLS = 3


@dataclasses.dataclass(frozen=True)
class Latency:
  """Milliseconds per call: the median and the 10th–90th percentile range over `calls`."""

  median_ms: float
  p10_ms: float
  p90_ms: float
  calls: int

  def as_dict(self) -> Dict[str, float]:
    return dataclasses.asdict(self)


def seconds_per_call(call: Callable[[], object], calls: int) -> float:
  """Mean wall time of `calls` back-to-back calls."""
  start = time.perf_counter()
  for _ in range(calls):
    call()
  return (time.perf_counter() - start) / calls


def summarize(seconds: Sequence[float]) -> Latency:
  """The median and p10–p90 of per-call times, in milliseconds."""
  deciles = statistics.quantiles(seconds, n=10, method='inclusive')
  return Latency(
    median_ms=statistics.median(seconds) * 1000,
    p10_ms=deciles[0] * 1000,
    p90_ms=deciles[-1] * 1000,
    calls=len(seconds),
  )


def interleaved_latency(
  calls: Mapping[str, Callable[[], object]], repeats: int, warmup: int = WARMUP_CALLS
) -> Dict[str, Latency]:
  """Times each call `repeats` times, one of each per round, so that a shared machine's drift
  hits every call alike; `warmup` untimed calls of each first."""
  if repeats < 2:
    raise ValueError(f'latency needs at least 2 timed calls, got {repeats}')
  for call in calls.values():
    for _ in range(warmup):
      call()
  times = {name: [] for name in calls}
  for _ in range(repeats):
    for name, call in calls.items():
      times[name].append(seconds_per_call(call, 1))
  return {name: summarize(values) for name, values in times.items()}


def serving_latency(
  model_dirs: Mapping[str, str],
  images: Sequence[bytes],
  batch_sizes: Sequence[int],
  repeats: int,
) -> Dict[str, Dict[int, Latency]]:
  """Latency of each model's serving_default on a batch of encoded `images` (repeated when there
  are fewer), per batch size. serving.requests.encoded_images gives them from tf.Examples.

  Every model is loaded first and the models are timed interleaved, batch size by batch size.
  """
  # Here rather than at the top: selection and `--help` use Latency without loading TensorFlow.
  import tensorflow as tf

  if not images:
    raise ValueError('no images to time the serving signature with')
  serving = {
    name: tf.saved_model.load(path).signatures[signatures.SERVING_SIGNATURE]
    for name, path in model_dirs.items()
  }
  result: Dict[str, Dict[int, Latency]] = {name: {} for name in model_dirs}
  for batch in batch_sizes:
    request = tf.constant([images[index % len(images)] for index in range(batch)])
    by_model = interleaved_latency(
      {
        name: (lambda serve=serve: serve(**{signatures.IMAGE_BYTES_INPUT: request}))  # noqa: B023
        for name, serve in serving.items()
      },
      repeats,
    )
    for name, latency in by_model.items():
      result[name][batch] = latency
  return result
