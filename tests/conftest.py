"""Shared test setup: two logical CPU devices and one MirroredStrategy over them.

The device split must happen before any TensorFlow op initializes the runtime,
hence a pytest_configure hook rather than a fixture.
"""

import fcntl
import json
import pathlib
import re
import tempfile

import pytest

import trainer  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
import tensorflow as tf


def pytest_configure(config):
  cpu = tf.config.list_physical_devices("CPU")[0]
  try:
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
  except RuntimeError:
    pass  # runtime already initialized elsewhere; two_cpu_strategy then fails


# The modules that take longest, longest first: xdist hands the next one to whichever worker runs
# out of work, so starting the longest ones first leaves only short ones to even out the end
# (longest-processing-time-first). The order follows a `pytest --durations=0` run (2026-12-08);
# a long module left out would start wherever collection put it and end the run late on one
# worker. (xdist keeps a module on one worker, --dist loadscope, so its module fixtures are
# built once and its tests, some of which build on the ones before, run in order.)
_SLOW_MODULES = (
  "test_pipeline_e2e",
  "test_kubeflow_v2",
  "test_preemption",
  "test_beam_workers",
  "test_multiworker",
  "test_spans_drift",
  "test_image_formats_e2e",
  "test_image_manifests_e2e",
  "test_serving",
  "test_image_compiled_steps",
  "test_training_paths",
  "test_image_folders_e2e",
  "test_model",
)


def pytest_collection_modifyitems(items):
  """Slow modules first (pyproject's --no-loadscope-reorder keeps this order for xdist)."""

  def start_order(item):
    name = item.module.__name__.rsplit(".", 1)[-1]
    return _SLOW_MODULES.index(name) if name in _SLOW_MODULES else len(_SLOW_MODULES)

  items.sort(key=start_order)  # stable: the collection order within each module stays


@pytest.fixture(scope="session")
def two_cpu_strategy():
  """One strategy for the whole session: separate MirroredStrategy objects in
  one process reuse collective instance keys and abort each other's all-reduces."""
  devices = tf.config.list_logical_devices("CPU")
  # A strategy test that skipped would hide the multi-device path: fail instead.
  assert len(devices) >= 2, f"two logical CPU devices were not configured: {devices}"
  return tf.distribute.MirroredStrategy([d.name for d in devices[:2]])


@pytest.fixture(scope="session")
def container_data_steps(tmp_path_factory, worker_id):
  """CuratedSchema, ImageExampleGen and Transform of a compiled one-variant pipeline on generated
  files, run once through TFX's container entrypoint for every test that runs later steps.

  Once per test session, not per xdist worker (the three modules that use it may run on
  different workers): the first worker to need it builds it under a lock in the session's shared
  temporary directory, the others read what it wrote (xdist's documented pattern)."""
  from tests.test_kubeflow_v2 import run_data_steps  # pylint: disable=import-outside-toplevel

  if worker_id == "master":  # not under xdist
    return run_data_steps(str(tmp_path_factory.mktemp("container_steps")))
  shared = tmp_path_factory.getbasetemp().parent / "container_steps"
  shared.mkdir(exist_ok=True)
  built = shared / "data_steps.json"
  with open(shared / "lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not built.exists():
      work = shared / "work"
      work.mkdir(exist_ok=True)
      steps = run_data_steps(str(work))
      built.write_text(json.dumps(steps))
  data_dir, upstream = json.loads(built.read_text())
  return data_dir, upstream


@pytest.fixture
def traceback_log(tmp_path, monkeypatch):
  """The traceback file an error line of the CLI names, as a Path (None when the line names
  none); the CLI's temporary files go to the test's own directory."""
  temporary = tmp_path / 'tmp'
  temporary.mkdir()
  monkeypatch.setattr(tempfile, 'tempdir', str(temporary))

  def named_by(error_line):
    found = re.search(r' \(traceback: (\S+)\)$', error_line.strip())
    return pathlib.Path(found.group(1)) if found else None

  return named_by


@pytest.fixture(scope="session")
def tiny_saved_model(tmp_path_factory):
  """A real SavedModel (one variable, one signature), to copy where a test needs versions that
  TF Serving's loader, or tf.saved_model.load, accepts."""
  module = tf.Module()
  module.weight = tf.Variable([1.0, 2.0])
  module.serve = tf.function(
    lambda x: {"y": x * module.weight}, input_signature=[tf.TensorSpec([2], tf.float32)]
  )
  path = str(tmp_path_factory.mktemp("tiny_saved_model") / "model")
  tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
  return path
