"""`fmnist-pipeline`: run the pipeline locally, fetch the data, show the last run, or compile and
submit it to Vertex AI / Kubeflow Pipelines."""

import argparse
import dataclasses
import datetime
import difflib
import json
import logging
import os
import re
import sys
import tempfile
import traceback
from typing import Any, List, Optional, Tuple
import warnings

os.environ.setdefault(
  'TF_CPP_MIN_LOG_LEVEL', '3'
)  # TensorFlow's C++ start-up chatter (CUDA plugin registration on CPU machines) is noise here
# google-cloud libraries warn at import about versions the TFX 1.16 lock pins (Python 3.10,
# google-cloud-storage 2); nothing a user of this CLI can act on.
_PINNED_VERSION_WARNINGS = (
  'You are using a non-supported Python version',
  'Support for google-cloud-storage',
)
for _pinned_version_warning in _PINNED_VERSION_WARNINGS:
  warnings.filterwarnings('ignore', message=_pinned_version_warning, category=FutureWarning)
# Beam's worker processes of a local run (--beam-workers) are new interpreters that import the
# same libraries: the filters reach them through the environment, as TF_CPP_MIN_LOG_LEVEL does.
os.environ['PYTHONWARNINGS'] = ','.join(
  [
    *filter(None, [os.environ.get('PYTHONWARNINGS')]),
    *(f'ignore:{message}:FutureWarning' for message in _PINNED_VERSION_WARNINGS),
  ]
)

# Only modules without TensorFlow, TFX or Beam here: `--help` must stay fast, so each command
# imports what it needs when it runs.
from pipeline import options  # noqa: E402  (after the environment is set)
from pipeline.config import BASE_URL  # noqa: E402
from pipeline.config import KERAS_CACHE_DATA_DIR  # noqa: E402
from pipeline.config import OUTPUT_ROOT_ENV  # noqa: E402
from pipeline.config import PipelineConfig  # noqa: E402
from pipeline.config import default_data_dir  # noqa: E402
from pipeline.config import default_output_root  # noqa: E402
from pipeline.options import ConfigError  # noqa: E402
from pipeline.options import checked_type  # noqa: E402
from pipeline.staging import PACKAGE_ROOT  # noqa: E402
from serving import arguments as serving_arguments  # noqa: E402
from trainer.config import Pattern  # noqa: E402
from trainer.config import between  # noqa: E402

# A smoke run: every component on the real data, a few hundred training steps.
QUICK_PRESET = {
  'train_steps': 200,
  'accuracy_threshold': 0.7,
  'training': {'epochs': 1, 'log_every_n_steps': 50},
}
DEPLOY_CONFIG_ENV = 'FMNIST_DEPLOY_CONFIG'
IMAGE_ENV = 'FMNIST_IMAGE'
DEFAULT_PIPELINE_JSON = 'pipeline.json'
DISTRIBUTION = 'fmnist-pipeline'
# Where an output root keeps its logs: run logs, and the tracebacks of failed commands.
LOGS = 'logs'
# The flags of the commands other than `run`, checked by argparse like the config's options.
BASE_URL_TYPE = checked_type(
  str, Pattern(r'(https?|file)://\S+', 'an http://, https:// or file:// URL').problem
)
PORT = checked_type(int, between(0, 65535).problem)  # 0: any free port (TensorBoard's rule)


class _Parser(argparse.ArgumentParser):
  """No prefix matching (`--epoch` is not `--epochs`, `--out` not `--output-root`): a typo is
  refused instead of starting a run. Subcommands' parsers are of this class too."""

  def __init__(self, *args, **kwargs):
    super().__init__(*args, allow_abbrev=False, **kwargs)

  def parse_known_args(self, args=None, namespace=None):
    """A command's parser refuses what it does not know itself: with its own usage (argparse
    would show the top-level one), one line, exit 2, and the flags that may have been meant."""
    known, unknown = super().parse_known_args(args, namespace)
    if unknown and self._subparsers is None:
      flags = [flag for action in self._actions for flag in action.option_strings]
      meant = sorted(
        {
          match
          for word in unknown
          if word.startswith('--')
          for match in difflib.get_close_matches(word.split('=')[0], flags, n=1)
          or [flag for flag in flags if flag.startswith(word.split('=')[0])][:1]
        }
      )
      hint = f' (did you mean {", ".join(meant)}?)' if meant else ''
      self.error(f'unrecognized arguments: {" ".join(unknown)}{hint}')
    return known, unknown


class _VersionAction(argparse.Action):
  """`--version`, computed only when asked: it runs git, which `--help` need not pay."""

  def __init__(self, option_strings, dest=argparse.SUPPRESS, **kwargs):
    super().__init__(option_strings, dest, nargs=0, **kwargs)

  def __call__(self, parser, namespace, values, option_string=None):
    print(f'{parser.prog} {version_text()}')  # a result: stdout, as argparse's own `version`
    parser.exit()


def version_text() -> str:
  """The package version, and the git commit of the checkout it runs from when there is one."""
  # pylint: disable=import-outside-toplevel
  from importlib import metadata

  from pipeline import image_tag

  try:
    version = metadata.version(DISTRIBUTION)
  except metadata.PackageNotFoundError:  # run from a checkout, not installed
    with open(os.path.join(PACKAGE_ROOT, 'pyproject.toml'), encoding='utf-8') as project:
      version = re.search(r'^version = "([^"]+)"', project.read(), re.MULTILINE).group(1)
  commit = image_tag.commit_of(PACKAGE_ROOT)
  return (
    f'{version} (commit {commit})' if commit else f'{version} (commit unknown: no git checkout)'
  )


def _parser() -> argparse.ArgumentParser:
  parser = _Parser(prog='fmnist-pipeline', description=__doc__)
  parser.add_argument(
    '--version', action=_VersionAction, help='print the version and the git commit, and exit'
  )
  commands = parser.add_subparsers(dest='command', required=True)

  run = commands.add_parser(
    'run',
    help='run the whole pipeline locally (LocalDagRunner)',
    description='Every option below is also a key of the deploy YAML, with the same name '
    '(--learning-rate is learning_rate:, under training: for training options), except the '
    'local-only --beam-workers.',
  )
  run.add_argument(
    '--quick',
    action='store_true',
    help='smoke run, not a production model: '
    + ', '.join(f'{options.flag(name)} {value}' for name, value in _quick_flags())
    + '; options given explicitly win over these',
  )
  options.add_arguments(run, PipelineConfig)

  download = commands.add_parser('download', help='fetch the Fashion-MNIST files and verify them')
  download.add_argument(
    '--data-dir',
    type=serving_arguments.PATH,
    default=KERAS_CACHE_DATA_DIR,
    help='where the four IDX gz files go (default: %(default)s)',
  )
  download.add_argument(
    '--base-url',
    type=BASE_URL_TYPE,
    default=BASE_URL,
    help='the mirror: <base-url>/<file name> for each file (default: %(default)s)',
  )

  export_images = commands.add_parser(
    'export-images',
    help='write the Fashion-MNIST IDX files as PNG class folders (train/, test/): your-own-images '
    'data to try `run --data` on',
  )
  export_images.add_argument(
    '--data-dir',
    type=serving_arguments.PATH,
    default=default_data_dir(),
    help='the directory of the four IDX gz files (default: %(default)s)',
  )
  export_images.add_argument(
    '--out', type=serving_arguments.PATH, required=True, help='the folder tree to write'
  )
  export_images.add_argument(
    '--per-class',
    type=checked_type(int, between(1, 7000).problem),
    default=None,
    help='at most this many images of each class in each split (default: all 70,000 images)',
  )

  summary = commands.add_parser('summary', help="print the last run's summary")
  _add_output_root(summary)

  history = commands.add_parser(
    'history',
    help='every pushed version, one line each (variant, spans, test accuracy, pushed when, '
    'what it replaced, its model card), and the one TF Serving serves now',
  )
  _add_output_root(history)
  history.add_argument(
    '--serving-root',
    type=serving_arguments.PATH,
    default=None,
    help='the directory holding <model-name>/<version>/, a directory or gs://… (default: '
    '<output-root>/serving, where a run without serving_root pushes)',
  )
  history.add_argument(
    '--model-name',
    type=serving_arguments.NAME,
    default=serving_arguments.DEFAULT_MODEL_NAME,
    help='the model directory under the serving root (default: %(default)s)',
  )

  report = commands.add_parser(
    'report', help="print the last variant comparison table and where its plots are"
  )
  _add_output_root(report)

  predict_ = commands.add_parser(
    'predict', help='classify images with TF Serving (REST or gRPC) or a pushed model in-process'
  )
  serving_arguments.add_predict_arguments(predict_)

  serving_config = commands.add_parser(
    'serving-config',
    help="write TF Serving's models.config (version policy, labels), batching and monitoring files",
  )
  serving_arguments.add_serving_config_arguments(serving_config)

  tensorboard = commands.add_parser(
    'tensorboard',
    help="TensorBoard over every Trainer's train and eval summaries, one run per variant",
  )
  _add_output_root(tensorboard, what='a local directory')
  tensorboard.add_argument(
    '--port', type=PORT, default=6006, help='the port TensorBoard serves on (default: %(default)s)'
  )
  # TensorBoard's own serving flags, under its own names, passed on as they are.
  listen = tensorboard.add_mutually_exclusive_group()
  listen.add_argument(
    '--host',
    type=serving_arguments.NON_BLANK,
    default=None,
    help="the address TensorBoard listens on, e.g. 0.0.0.0 (default: TensorBoard's, localhost)",
  )
  listen.add_argument(
    '--bind_all',
    '--bind-all',
    action='store_true',
    help="listen on every network interface (TensorBoard's --bind_all)",
  )
  tensorboard.add_argument(
    '--print-only',
    action='store_true',
    help='print the tensorboard command instead of starting it',
  )

  compile_ = commands.add_parser(
    'compile', help='write the KFP v2 pipeline JSON for Vertex AI / Kubeflow Pipelines (offline)'
  )
  _add_deployment_arguments(compile_)

  submit = commands.add_parser(
    'submit',
    help="compile and start a Vertex AI PipelineJob, or create a pipeline schedule with the "
    "config's `schedule` section (--dry-run: validate offline)",
  )
  _add_deployment_arguments(submit)
  submit.add_argument(
    '--parameter',
    action='append',
    default=[],
    type=_name_value,
    metavar='NAME=VALUE',
    help='a pipeline parameter value, repeatable (default: the values in the config)',
  )
  submit.add_argument(
    '--dry-run',
    action='store_true',
    help='build and validate the job (or schedule) request offline, print it, submit nothing',
  )
  submit.add_argument(
    '--replace-schedule',
    action='store_true',
    help="with a `schedule` section: pause the active schedule of the same name once the new one "
    'is created (without it, submit refuses to create a second one)',
  )
  return parser


def _add_output_root(parser: argparse.ArgumentParser, what: str = 'a directory or gs://…') -> None:
  parser.add_argument(
    '--output-root',
    type=serving_arguments.PATH,
    default=default_output_root(),
    help=f"the run's output root, {what} (default: %(default)s; ${OUTPUT_ROOT_ENV} sets it)",
  )


def _name_value(text: str) -> Tuple[str, str]:
  if '=' not in text:
    raise argparse.ArgumentTypeError(f'expected NAME=VALUE, got {text!r}')
  name, value = text.split('=', 1)
  return name, value


def _add_deployment_arguments(parser: argparse.ArgumentParser) -> None:
  config_default = os.environ.get(DEPLOY_CONFIG_ENV)
  parser.add_argument(
    '--config',
    type=serving_arguments.PATH,
    default=config_default,
    required=config_default is None,
    help=f'deployment config YAML, see deploy/vertex.example.yaml (default: ${DEPLOY_CONFIG_ENV})',
  )
  parser.add_argument(
    '--image',
    type=serving_arguments.NON_BLANK,
    default=os.environ.get(IMAGE_ENV),
    help=f"overrides the config's image (default: ${IMAGE_ENV})",
  )
  parser.add_argument(
    '--output',
    type=serving_arguments.PATH,
    default=DEFAULT_PIPELINE_JSON,
    help='where the pipeline JSON goes (default: %(default)s)',
  )


def _quick_flags() -> List[Tuple[str, Any]]:
  """The --quick preset as (option, value) pairs, nested options by their own name."""
  pairs = []
  for name, value in QUICK_PRESET.items():
    pairs += list(value.items()) if isinstance(value, dict) else [(name, value)]
  return pairs


def _local_path(path: str) -> str:
  """Absolute, unless a URI (gs://…) that the pipeline reads through tf.io.gfile."""
  return path if '://' in path else os.path.abspath(path)


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
  """The PipelineConfig of `run`'s flags, built by the loader the deploy YAML uses."""
  given = options.values_from_args(args)
  config = options.build(
    PipelineConfig, options.merged(QUICK_PRESET, given) if args.quick else given
  )
  return dataclasses.replace(
    config, output_root=_local_path(config.output_root), data_dir=_local_path(config.data_dir)
  )


def _run(args: argparse.Namespace) -> int:
  config = config_from_args(args)
  if '://' in config.output_root:
    raise ConfigError(
      f'--output-root {config.output_root}: a local run keeps its MLMD store (SQLite) there, so '
      'it must be a local directory; `compile` / `submit` deploy to a gs:// output root'
    )
  # pylint: disable=import-outside-toplevel
  from dataset.errors import DatasetError
  from dataset.errors import dataset_error_line
  from pipeline import datasets

  try:
    dataset = datasets.resolve_for(config)
  except DatasetError as error:
    return _failed(f'{error}{_fashion_mnist_hint(config.data_dir)}')
  # Imported here: TFX takes seconds to import, which `--help` and `download` need not pay.
  from pipeline import local_runner  # pylint: disable=import-outside-toplevel
  from pipeline.progress import console_progress  # pylint: disable=import-outside-toplevel

  logs = os.path.join(config.output_root, LOGS)
  try:
    os.makedirs(logs, exist_ok=True)
  except OSError as error:
    raise ConfigError(
      f'--output-root {config.output_root}: cannot create {logs} ({error.strerror})'
    ) from error
  log_path = os.path.join(logs, datetime.datetime.now().strftime('run-%Y%m%d-%H%M%S.log'))
  # Progress on stderr, results on stdout: `run > file` keeps only the results.
  print(
    f'Pipeline {config.pipeline_name}: data {config.data_dir}, outputs {config.output_root}\n'
    + ''.join(f'  {line}\n' for line in dataset.facts)
    + f'Full log: {log_path}',
    file=sys.stderr,
  )
  adopt = _write_proposed_schema(config, dataset)
  with console_progress(log_path) as progress:
    try:
      summary = local_runner.run(config, dataset)
    except Exception as error:  # pylint: disable=broad-except
      logging.exception('The run failed')  # the traceback, for the log file only
      where = f' in {progress.current}' if progress.current else ''
      # Bad input is one line naming the file, also when a Beam worker raised it.
      reason = dataset_error_line(error) or f'{type(error).__name__}: {error}'
      print(f'✗ run failed{where}: {reason}\nFull log: {log_path}', file=sys.stderr)
      return 1
  print('\n'.join(summary.lines()))
  if adopt:
    print(adopt)
  print(f'Full log: {log_path}')
  print(
    'TensorBoard, every Trainer side by side: '
    f'fmnist-pipeline tensorboard --output-root {config.output_root}'
  )
  return 0


def _fashion_mnist_hint(data_dir: str) -> str:
  """For a data directory that is missing or empty, how to get the default dataset."""
  if os.path.isdir(data_dir) and os.listdir(data_dir) or '://' in data_dir:
    return ''
  return (
    '; for Fashion-MNIST install the Debian package dataset-fashion-mnist or run '
    '`fmnist-pipeline download`'
  )


def _write_proposed_schema(config: PipelineConfig, dataset) -> Optional[str]:
  """For images without an adopted schema: writes the schema this run enforces where the user
  can review it, and returns the lines that say how to adopt it."""
  if not dataset.proposed:
    return None
  from pipeline import datasets  # pylint: disable=import-outside-toplevel

  path = datasets.proposed_schema_path(config)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w', encoding='utf-8') as schema:
    schema.write(dataset.schema_text)
  return (
    f'Proposed schema (inferred from your images; this run enforced it): {path}\n'
    'Review it (classes in label order, image sizes, formats), copy it next to your code and '
    'adopt it: --schema PATH (deploy YAML: schema: PATH). Runs on new data are then checked '
    'against it.'
  )


def _nothing_recorded(output_root: str) -> bool:
  """A local output root with neither an MLMD store nor a pipeline root (missing or empty): told
  without importing TensorFlow, which reading a run needs."""
  if '://' in output_root:
    return False
  config = PipelineConfig(output_root=output_root)
  return not os.path.exists(config.metadata_path) and not os.path.isdir(config.pipeline_root)


def _print_found(found, output_root: str, what: str) -> int:
  if found is None:
    where = '' if os.path.isdir(output_root) or '://' in output_root else ' (no such directory)'
    print(
      f'no {what} recorded under {output_root}{where}; pass the --output-root of a run or set '
      f'${OUTPUT_ROOT_ENV}',
      file=sys.stderr,
    )
    return 1
  # pylint: disable=import-outside-toplevel
  from rich.console import Console

  from pipeline.run_summary import print_lines

  print_lines(found.lines(), Console())
  return 0


def _summary(args: argparse.Namespace) -> int:
  if _nothing_recorded(_local_path(args.output_root)):
    return _print_found(None, args.output_root, 'run')
  # pylint: disable=import-outside-toplevel
  from pipeline.run_summary import RunSummary
  from pipeline.run_summary import UnreadableMetadataError
  from pipeline.run_summary import last_run

  output_root = _local_path(args.output_root)
  try:
    found = last_run(output_root)
  except UnreadableMetadataError as error:
    return _failed(str(error), error_log_root=output_root)
  code = _print_found(found, args.output_root, 'run')
  # An interrupted or failed run is no success to a script that checks the exit code.
  return 1 if isinstance(found, RunSummary) and found.ended_badly else code


def _history(args: argparse.Namespace) -> int:
  # pylint: disable=import-outside-toplevel
  from pipeline import history
  from serving import server_config

  serving_root = _local_path(args.serving_root or os.path.join(args.output_root, 'serving'))
  try:
    found = history.read(history.model_directory(serving_root, args.model_name))
  except history.HistoryError as error:
    print(f'error: {error}', file=sys.stderr)
    return 1
  except server_config.ServingConfigError as error:
    return _failed(str(error))
  print('\n'.join(found.lines()))
  return 0


def _report(args: argparse.Namespace) -> int:
  if _nothing_recorded(_local_path(args.output_root)):
    return _print_found(None, args.output_root, 'variant comparison')
  from pipeline.run_summary import newest_comparison  # pylint: disable=import-outside-toplevel

  pipeline_root = PipelineConfig(output_root=_local_path(args.output_root)).pipeline_root
  return _print_found(newest_comparison(pipeline_root), args.output_root, 'variant comparison')


def _export_images(args: argparse.Namespace) -> int:
  # pylint: disable=import-outside-toplevel
  from dataset import export
  from dataset.errors import DatasetError

  try:
    written = export.export_fashion_mnist_png(args.data_dir, args.out, args.per_class)
  except DatasetError as error:
    return _failed(str(error))
  print(
    f'Wrote {written} PNG images under {args.out}; train on them: fmnist-pipeline run --data {args.out}'
  )
  return 0


def _download(args: argparse.Namespace) -> int:
  from pipeline import data  # pylint: disable=import-outside-toplevel

  try:
    data.download(args.data_dir, base_url=args.base_url)
    data.verify(args.data_dir)
  except data.DataFileError as error:
    return _failed(str(error))
  print(f'Fashion-MNIST verified in {args.data_dir}')
  return 0


def _tensorboard(args: argparse.Namespace) -> int:
  from pipeline import tensorboard  # pylint: disable=import-outside-toplevel

  serving_flags = ['--host', args.host] if args.host else ['--bind_all'] if args.bind_all else []
  command_line = tensorboard.command(_local_path(args.output_root), args.port, serving_flags)
  if not command_line:
    print(
      f'error: no Trainer summaries under {args.output_root}; run the pipeline first, or pass '
      'the --output-root of a run',
      file=sys.stderr,
    )
    return 1
  print(tensorboard.shown(command_line), flush=True)
  if args.print_only:
    return 0
  tensorboard.replace_process(command_line)
  return 0  # not reached: this process is TensorBoard now


def _predict(args: argparse.Namespace) -> int:
  from serving import predict  # pylint: disable=import-outside-toplevel

  try:
    return predict.main(args)
  except predict.EXPECTED_ERRORS as error:
    return _failed(str(error))


def _serving_config(args: argparse.Namespace) -> int:
  from serving import server_config  # pylint: disable=import-outside-toplevel

  try:
    return server_config.main(args)
  except server_config.EXPECTED_ERRORS as error:
    return _failed(str(error))


def _compile_for_deployment(args: argparse.Namespace, for_vertex: bool = False):
  """The deployment config and the path of the pipeline JSON compiled from it.

  The config is checked completely before anything is written.
  """
  # pylint: disable=import-outside-toplevel
  from pipeline import image_tag
  from pipeline import kubeflow_v2_runner
  from pipeline import staging
  from pipeline import vertex_config

  config = vertex_config.load(args.config, image=args.image)
  if for_vertex:
    vertex_config.require_gcs(config, args.config)
  _require_directory_for(args.output)
  warning = image_tag.mismatch(config.image, staging.PACKAGE_ROOT)
  if warning:
    print(f'warning: {warning}', file=sys.stderr)
  kubeflow_v2_runner.compile_pipeline(config, args.output)
  return config, args.output


def _require_directory_for(output: str) -> None:
  """Creates the directory `--output` goes in, or says in one line why it cannot."""
  directory = os.path.dirname(os.path.abspath(output))
  try:
    os.makedirs(directory, exist_ok=True)
  except OSError as error:
    reason = 'a file is in the way' if isinstance(error, FileExistsError) else error.strerror
    raise ConfigError(f'--output {output}: cannot create {directory} ({reason})') from error


def _compile(args: argparse.Namespace) -> int:
  from pipeline import kubeflow_v2_runner  # pylint: disable=import-outside-toplevel

  config, pipeline_json = _compile_for_deployment(args)
  package = kubeflow_v2_runner.kfp_package_path(pipeline_json)
  print(
    f'Compiled {config.pipeline_name} for image {config.image}: {pipeline_json} (Vertex AI), '
    f'{package} (Kubeflow Pipelines)'
  )
  _write_kfp_recurring_run(config, pipeline_json, package)
  return 0


def _write_kfp_recurring_run(config, pipeline_json: str, package: str) -> None:
  """With a `schedule` section, KFP's equivalent of the Vertex schedule `submit` creates: the
  create_recurring_run arguments in a JSON file beside the package, and the Python to run them.
  Without one, a file left by an earlier compile goes: it would describe a schedule no more."""
  from pipeline import vertex_config  # pylint: disable=import-outside-toplevel

  path = vertex_config.kfp_recurring_run_path(pipeline_json)
  if config.schedule is None:
    if os.path.exists(path):
      os.remove(path)
    return
  recurring = config.kfp_recurring_run(package)
  with open(path, 'w', encoding='utf-8') as out:
    json.dump(recurring, out, indent=2)
    out.write('\n')
  snippet = vertex_config.kfp_recurring_run_snippet(recurring)
  print(
    f'Schedule {config.schedule.vertex_cron()!r}: `submit` creates it on Vertex AI; on Kubeflow '
    f'Pipelines, the recurring run in {path}:\n'
    + '\n'.join(f'  {line}' for line in snippet.splitlines())
  )
  for note in recurring['notes']:
    print(f'note: {note}')


def _submit(args: argparse.Namespace) -> int:
  # pylint: disable=import-outside-toplevel
  import shutil

  from pipeline import kubeflow_v2_runner
  from pipeline import vertex_submit

  parameters = dict(args.parameter)
  # Compiled aside and moved into place once the parameters are accepted: a rejected
  # --parameter leaves the files of the previous compile as they were.
  with tempfile.TemporaryDirectory() as staging_dir:
    staged = argparse.Namespace(**{**vars(args), 'output': os.path.join(staging_dir, 'p.json')})
    config, staged_json = _compile_for_deployment(staged, for_vertex=True)
    if args.replace_schedule and config.schedule is None:
      raise ConfigError(f'--replace-schedule: {args.config} has no schedule section to replace')
    vertex_submit.parse_parameters(staged_json, parameters)
    pipeline_json = args.output
    _require_directory_for(pipeline_json)
    for source, target in (
      (staged_json, pipeline_json),
      (
        kubeflow_v2_runner.kfp_package_path(staged_json),
        kubeflow_v2_runner.kfp_package_path(pipeline_json),
      ),
    ):
      shutil.move(source, target)
  scheduled = config.schedule is not None
  if args.dry_run:
    request = vertex_submit.dry_run(config, pipeline_json, parameters)
    print(json.dumps(request, indent=2, sort_keys=True))
    where = 'The schedule would be listed at' if scheduled else 'The run would be at'
    print(f'Dry run: the request is valid; nothing was submitted. {where}\n{request["consoleUrl"]}')
    return 0
  try:
    url = vertex_submit.submit(config, pipeline_json, parameters, args.replace_schedule)
    print(
      f'Schedule created ({config.schedule.vertex_cron()}): {url}'
      if scheduled
      else f'Run started: {url}'
    )
  except vertex_submit.SubmitError as error:
    return _failed(str(error))
  return 0


def main(argv: Optional[List[str]] = None) -> int:
  args = _parser().parse_args(argv)
  commands = {
    'run': _run,
    'download': _download,
    'export-images': _export_images,
    'summary': _summary,
    'history': _history,
    'report': _report,
    'compile': _compile,
    'submit': _submit,
    'predict': _predict,
    'serving-config': _serving_config,
    'tensorboard': _tensorboard,
  }
  try:
    return commands[args.command](args)
  except ConfigError as error:
    # The line says all there is: the flag, key or file, and what it must be.
    print(f'error: {error}', file=sys.stderr)
    return 2


def _failed(message: str, error_log_root: Optional[str] = None) -> int:
  """One line on stderr for an expected failure an exception reported, exit 1; the traceback
  goes to a log file of that failure alone, named at the end of the line."""
  path = _traceback_log(error_log_root)
  with open(path, 'w', encoding='utf-8') as log:
    traceback.print_exc(file=log)
  print(f'error: {message} (traceback: {path})', file=sys.stderr)
  return 1


def _traceback_log(output_root: Optional[str]) -> str:
  """A new file under <output_root>/logs/ when that output root exists locally (a failure never
  creates one), else in the temporary directory."""
  name = f'error-{datetime.datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}-'
  if output_root and os.path.isdir(output_root):
    logs = os.path.join(output_root, LOGS)
    try:
      os.makedirs(logs, exist_ok=True)
      descriptor, path = tempfile.mkstemp(prefix=name, suffix='.log', dir=logs)
      os.close(descriptor)
      return path
    except OSError:
      pass  # a read-only output root: the temporary directory then
  descriptor, path = tempfile.mkstemp(prefix=f'fmnist-pipeline-{name}', suffix='.log')
  os.close(descriptor)
  return path


if __name__ == '__main__':
  sys.exit(main())
