"""The `predict` and `serving-config` command-line options, importable without TensorFlow so that
`fmnist-pipeline --help` stays fast; serving/predict.py and serving/server_config.py do the work."""

import argparse
import os

from pipeline.config import OUTPUT_ROOT_ENV
from pipeline.config import default_output_root
from pipeline.config import MODEL_NAME
from pipeline.options import checked_type
from trainer.config import NON_EMPTY_PATH
from trainer.config import Pattern
from trainer.config import at_least

DEFAULT_MODEL_NAME = 'fashion_mnist'
# Where docs/serving.md's docker command mounts the serving root.
CONTAINER_ROOT = '/models'
DEFAULT_KEEP = 2
# The largest request the server accepts; TF Serving splits it into batches of at most
# `max_execution_batch_size`. The client sends at most this many images per request.
MAX_REQUEST_IMAGES = 1024
# gRPC's default limit on a received message; proxies and servers built with gRPC's
# defaults enforce it (TF Serving's own server raises it to 2 GB).
DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024
# What each kind of flag accepts; argparse refuses anything else with the usage and one line.
COUNT = checked_type(int, at_least(1).problem)
VERSION = checked_type(int, at_least(0).problem)  # TF Serving's versions are non-negative
PATH = checked_type(str, NON_EMPTY_PATH.problem)
NAME = checked_type(str, MODEL_NAME.problem)
ENDPOINT = checked_type(str, Pattern(r'[^\s/]+:[0-9]+', 'HOST:PORT').problem)
NON_BLANK = checked_type(str, Pattern(r'\S+', 'a value without spaces').problem)


def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
  """The `fmnist-pipeline predict` options."""
  parser.add_argument(
    'images',
    nargs='+',
    help='JPEG, PNG, BMP or GIF files of any size, folders of them (an image in <folder>/<class>/ '
    'is labelled <class>), IDX images files (.gz; labels are read from the labels file beside '
    'it) or ExampleGen split directories (Split-test)',
  )
  parser.add_argument(
    '--count', type=COUNT, default=None, help='send at most this many images (default: all)'
  )
  where = parser.add_mutually_exclusive_group(required=True)
  where.add_argument(
    '--rest', type=ENDPOINT, metavar='HOST:PORT', help="TF Serving's REST endpoint (port 8501)"
  )
  where.add_argument(
    '--grpc', type=ENDPOINT, metavar='HOST:PORT', help="TF Serving's gRPC endpoint (port 8500)"
  )
  where.add_argument(
    '--local',
    type=PATH,
    metavar='DIR',
    help='a pushed model directory (or one version of it), run in this process',
  )
  parser.add_argument(
    '--model-name',
    type=NAME,
    default=DEFAULT_MODEL_NAME,
    help='the model name the server serves (default: %(default)s)',
  )
  version = parser.add_mutually_exclusive_group()
  version.add_argument(
    '--model-version', type=VERSION, default=None, help='a model version (default: the newest)'
  )
  version.add_argument(
    '--model-label',
    type=NON_BLANK,
    default=None,
    help='a version label of the server, e.g. stable or canary (default: none)',
  )
  parser.add_argument(
    '--max-request-bytes',
    type=COUNT,
    default=DEFAULT_MAX_REQUEST_BYTES,
    help="split the images into requests of at most this size (default: %(default)s, gRPC's "
    '4 MB limit)',
  )
  parser.add_argument(
    '--max-request-images',
    type=COUNT,
    default=MAX_REQUEST_IMAGES,
    help="and at most this many images (default: %(default)s, the batching files' max_batch_size)",
  )


def add_serving_config_arguments(parser: argparse.ArgumentParser) -> None:
  """The `fmnist-pipeline serving-config` options."""
  parser.add_argument(
    '--serving-root',
    type=PATH,
    default=os.path.join(default_output_root(), 'serving'),
    help='the directory holding <model-name>/<version>/, mounted as /models in the container; '
    f'the files are written here (default: %(default)s, under ${OUTPUT_ROOT_ENV} when set)',
  )
  parser.add_argument(
    '--model-name',
    type=NAME,
    default=DEFAULT_MODEL_NAME,
    help='the model directory under the serving root (default: %(default)s)',
  )
  parser.add_argument(
    '--base-path',
    type=PATH,
    default=None,
    help=f"the model's directory as the server sees it (default: {CONTAINER_ROOT}/<model-name>)",
  )
  parser.add_argument(
    '--cpu-cores',
    type=COUNT,
    default=os.cpu_count() or 1,
    help="the serving machine's CPU cores: the batching threads (default: this machine's, "
    '%(default)s)',
  )
  versions = parser.add_mutually_exclusive_group()
  versions.add_argument(
    '--keep',
    type=COUNT,
    default=DEFAULT_KEEP,
    help='serve the newest N versions, new pushes included, `stable` on the newest '
    '(default: %(default)s)',
  )
  versions.add_argument(
    '--stable',
    type=VERSION,
    metavar='VERSION',
    help='serve this version, labelled `stable` (default: none)',
  )
  versions.add_argument(
    '--pin',
    type=VERSION,
    metavar='VERSION',
    help='serve only this version, labelled `stable` (default: none)',
  )
  versions.add_argument(
    '--rollback',
    action='store_true',
    help='serve only the version pushed before the current `stable`, and label it `stable`',
  )
  parser.add_argument(
    '--canary',
    type=VERSION,
    metavar='VERSION',
    help='with --stable: serve this version too, labelled `canary` (default: none)',
  )
