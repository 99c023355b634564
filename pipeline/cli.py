"""`fmnist-pipeline`: run the pipeline locally, fetch the data, show the last run, or compile and
submit it to Vertex AI / Kubeflow Pipelines."""

import argparse
import dataclasses
import datetime
import json
import os
import sys
from typing import List, Optional, Tuple
import warnings

os.environ.setdefault(
  'TF_CPP_MIN_LOG_LEVEL', '3'
)  # TensorFlow's C++ start-up chatter (CUDA plugin registration on CPU machines) is noise here
# google-cloud libraries warn at import about versions the TFX 1.16 lock pins (Python 3.10,
# google-cloud-storage 2); nothing a user of this CLI can act on.
for _pinned_version_warning in (
  'You are using a non-supported Python version',
  'Support for google-cloud-storage',
):
  warnings.filterwarnings('ignore', message=_pinned_version_warning, category=FutureWarning)

from components.idx_example_gen.idx import IdxFormatError  # noqa: E402  (after the environment is set)
from pipeline import data  # noqa: E402
from pipeline import predict  # noqa: E402
from pipeline.config import PipelineConfig  # noqa: E402
from pipeline.config import default_data_dir  # noqa: E402
from pipeline.vertex_config import VertexConfigError  # noqa: E402
from trainer.config import JIT_COMPILE_CHOICES  # noqa: E402
from trainer.config import LEARNING_RATE_SCHEDULES  # noqa: E402
from trainer.config import PRECISIONS  # noqa: E402
from trainer.config import TrainingConfig  # noqa: E402
from trainer.model import VARIANTS  # noqa: E402
from trainer.preprocessing import PIXEL_SCALINGS  # noqa: E402

DEFAULT_OUTPUT_ROOT = 'outputs'
DEFAULT_EPOCHS = 10
# A smoke run: every component on the real data, a few hundred training steps.
QUICK_TRAIN_STEPS = 200
QUICK_ACCURACY_THRESHOLD = 0.7
DEPLOY_CONFIG_ENV = 'FMNIST_DEPLOY_CONFIG'
IMAGE_ENV = 'FMNIST_IMAGE'
DEFAULT_PIPELINE_JSON = 'pipeline.json'


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog='fmnist-pipeline', description=__doc__)
  commands = parser.add_subparsers(dest='command', required=True)

  run = commands.add_parser('run', help='run the whole pipeline locally (LocalDagRunner)')
  run.add_argument(
    '--data-dir',
    default=default_data_dir(),
    help='directory with the four Fashion-MNIST IDX gz files (default: %(default)s)',
  )
  run.add_argument(
    '--output-root',
    default=DEFAULT_OUTPUT_ROOT,
    help='pipeline artifacts, MLMD, logs and served models go here (default: %(default)s)',
  )
  run.add_argument('--epochs', type=int, default=DEFAULT_EPOCHS)
  run.add_argument(
    '--quick',
    action='store_true',
    help=f'smoke run: {QUICK_TRAIN_STEPS} training steps, blessing threshold '
    f'{QUICK_ACCURACY_THRESHOLD} (not a production model)',
  )
  run.add_argument(
    '--variants',
    type=_variant_list,
    default=PipelineConfig.variants,
    help='comma-separated normalization variants to train and compare, from '
    f'{",".join(VARIANTS)} (default: all)',
  )
  run.add_argument('--batch-size', type=int, default=TrainingConfig.batch_size)
  run.add_argument(
    '--conv-blocks',
    type=int,
    default=TrainingConfig.conv_blocks,
    help='conv → norm → ReLU → pool blocks, filters doubling in each (default: %(default)s; '
    "--conv-blocks 1 --hidden-units 0 is the notebook's network)",
  )
  run.add_argument(
    '--filters', type=int, default=TrainingConfig.filters, help='filters of the first block'
  )
  run.add_argument(
    '--hidden-units',
    type=int,
    default=TrainingConfig.hidden_units,
    help='units of the dense layer before the logits, 0 for none (default: %(default)s)',
  )
  run.add_argument('--learning-rate', type=float, default=TrainingConfig.learning_rate)
  run.add_argument(
    '--learning-rate-schedule',
    default=TrainingConfig.learning_rate_schedule,
    choices=LEARNING_RATE_SCHEDULES,
    help='constant, or cosine decay to 0 over the run (default: %(default)s)',
  )
  run.add_argument('--seed', type=int, default=TrainingConfig.seed)
  run.add_argument(
    '--precision',
    default=TrainingConfig.precision,
    choices=PRECISIONS,
    help='auto: mixed_float16 on GPUs with tensor cores, mixed_bfloat16 on CPUs with bfloat16 '
    'instructions, float32 otherwise (default: %(default)s)',
  )
  run.add_argument(
    '--jit-compile',
    default=TrainingConfig.jit_compile,
    choices=JIT_COMPILE_CHOICES,
    help='XLA-compile the training step; auto: on GPUs only (default: %(default)s)',
  )
  run.add_argument('--pixel-scaling', default=PipelineConfig.pixel_scaling, choices=PIXEL_SCALINGS)
  run.add_argument(
    '--accuracy-threshold',
    type=float,
    default=None,
    help=f'eval accuracy a model needs to be pushed (default: '
    f'{PipelineConfig.accuracy_threshold}, --quick: {QUICK_ACCURACY_THRESHOLD})',
  )
  run.add_argument(
    '--max-accuracy-drop',
    type=float,
    default=PipelineConfig.max_accuracy_drop,
    help='how far below the production model a candidate may be and still be blessed '
    '(default: %(default)s, i.e. never worse)',
  )
  run.add_argument('--no-cache', action='store_true', help='re-run every component')

  download = commands.add_parser('download', help='fetch the Fashion-MNIST files and verify them')
  download.add_argument('--data-dir', default=os.path.expanduser('~/.keras/datasets/fashion-mnist'))

  summary = commands.add_parser('summary', help="print the last run's summary")
  summary.add_argument('--output-root', default=DEFAULT_OUTPUT_ROOT)

  report = commands.add_parser(
    'report', help="print the last variant comparison table and where its plots are"
  )
  report.add_argument('--output-root', default=DEFAULT_OUTPUT_ROOT)

  predict_ = commands.add_parser(
    'predict', help='classify images with TF Serving (REST or gRPC) or a pushed model in-process'
  )
  predict.add_arguments(predict_)

  compile_ = commands.add_parser(
    'compile', help='write the KFP v2 pipeline JSON for Vertex AI / Kubeflow Pipelines (offline)'
  )
  _add_deployment_arguments(compile_)

  submit = commands.add_parser(
    'submit', help='compile, stage the schema and start a Vertex AI PipelineJob'
  )
  _add_deployment_arguments(submit)
  submit.add_argument(
    '--parameter',
    action='append',
    default=[],
    type=_name_value,
    metavar='NAME=VALUE',
    help='a pipeline parameter value (repeatable)',
  )
  submit.add_argument(
    '--dry-run',
    action='store_true',
    help='build and validate the job request offline, print it, submit nothing',
  )
  return parser


def _variant_list(text: str) -> Tuple[str, ...]:
  variants = tuple(name.strip() for name in text.split(',') if name.strip())
  unknown = [name for name in variants if name not in VARIANTS]
  if unknown or not variants:
    raise argparse.ArgumentTypeError(
      f'unknown variant(s) {", ".join(unknown) or "(none given)"}; choose from {", ".join(VARIANTS)}'
    )
  return variants


def _name_value(text: str) -> Tuple[str, str]:
  if '=' not in text:
    raise argparse.ArgumentTypeError(f'expected NAME=VALUE, got {text!r}')
  name, value = text.split('=', 1)
  return name, value


def _add_deployment_arguments(parser: argparse.ArgumentParser) -> None:
  config_default = os.environ.get(DEPLOY_CONFIG_ENV)
  parser.add_argument(
    '--config',
    default=config_default,
    required=config_default is None,
    help=f'deployment config YAML, see deploy/vertex.example.yaml (default: ${DEPLOY_CONFIG_ENV})',
  )
  parser.add_argument(
    '--image',
    default=os.environ.get(IMAGE_ENV),
    help=f"overrides the config's image (default: ${IMAGE_ENV})",
  )
  parser.add_argument(
    '--output',
    default=DEFAULT_PIPELINE_JSON,
    help='where the pipeline JSON goes (default: %(default)s)',
  )


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
  training = TrainingConfig(
    epochs=args.epochs,
    batch_size=args.batch_size,
    conv_blocks=args.conv_blocks,
    filters=args.filters,
    hidden_units=args.hidden_units,
    learning_rate=args.learning_rate,
    learning_rate_schedule=args.learning_rate_schedule,
    seed=args.seed,
    precision=args.precision,
    jit_compile=args.jit_compile,
  )
  config = PipelineConfig(
    output_root=os.path.abspath(args.output_root),
    data_dir=os.path.abspath(args.data_dir),
    training=training,
    variants=args.variants,
    max_accuracy_drop=args.max_accuracy_drop,
    pixel_scaling=args.pixel_scaling,
    enable_cache=not args.no_cache,
  )
  if args.quick:
    config = dataclasses.replace(
      config,
      train_steps=QUICK_TRAIN_STEPS,
      accuracy_threshold=QUICK_ACCURACY_THRESHOLD,
      training=dataclasses.replace(training, epochs=1, log_every_n_steps=50),
    )
  if args.accuracy_threshold is not None:
    config = dataclasses.replace(config, accuracy_threshold=args.accuracy_threshold)
  return config


def _run(args: argparse.Namespace) -> int:
  config = config_from_args(args)
  missing = data.missing_files(config.data_dir)
  if missing:
    print(
      f'error: {config.data_dir} lacks {", ".join(missing)}.\n'
      'Install the Debian package dataset-fashion-mnist, run `fmnist-pipeline download`, '
      'or pass --data-dir.',
      file=sys.stderr,
    )
    return 2
  # Imported here: TFX takes seconds to import, which `--help` and `download` need not pay.
  from pipeline import local_runner  # pylint: disable=import-outside-toplevel
  from pipeline.progress import console_progress  # pylint: disable=import-outside-toplevel

  logs = os.path.join(config.output_root, 'logs')
  os.makedirs(logs, exist_ok=True)
  log_path = os.path.join(logs, datetime.datetime.now().strftime('run-%Y%m%d-%H%M%S.log'))
  print(f'Pipeline {config.pipeline_name}: data {config.data_dir}, outputs {config.output_root}')
  print(f'Full log: {log_path}')
  with console_progress(log_path) as progress:
    try:
      summary = local_runner.run(config)
    except Exception as error:  # pylint: disable=broad-except
      where = f' in {progress.current}' if progress.current else ''
      print(
        f'✗ run failed{where}: {type(error).__name__}: {error}\nFull log: {log_path}',
        file=sys.stderr,
      )
      return 1
  print('\n'.join(summary.lines()))
  return 0


def _print_from_metadata(output_root: str, read, what: str) -> int:
  """Prints what `read(metadata_path)` finds in the output root's MLMD store."""
  metadata_path = PipelineConfig(output_root=os.path.abspath(output_root)).metadata_path
  found = read(metadata_path) if os.path.exists(metadata_path) else None
  if found is None:
    print(f'no {what} recorded under {output_root}', file=sys.stderr)
    return 1
  print('\n'.join(found.lines()))
  return 0


def _summary(args: argparse.Namespace) -> int:
  from pipeline.run_summary import summarize_last_run  # pylint: disable=import-outside-toplevel

  return _print_from_metadata(args.output_root, summarize_last_run, 'run')


def _report(args: argparse.Namespace) -> int:
  from pipeline.run_summary import latest_comparison  # pylint: disable=import-outside-toplevel

  return _print_from_metadata(args.output_root, latest_comparison, 'variant comparison')


def _download(args: argparse.Namespace) -> int:
  data.download(args.data_dir)
  data.verify(args.data_dir)
  print(f'Fashion-MNIST verified in {args.data_dir}')
  return 0


def _compile_for_deployment(args: argparse.Namespace):
  """The deployment config and the path of the pipeline JSON compiled from it."""
  # pylint: disable=import-outside-toplevel
  from pipeline import kubeflow_v2_runner
  from pipeline import vertex_config

  config = vertex_config.load(args.config, image=args.image)
  kubeflow_v2_runner.compile_pipeline(config, args.output)
  return config, args.output


def _compile(args: argparse.Namespace) -> int:
  config, pipeline_json = _compile_for_deployment(args)
  print(f'Compiled {config.pipeline_name} for image {config.image} to {pipeline_json}')
  return 0


def _submit(args: argparse.Namespace) -> int:
  from pipeline import vertex_submit  # pylint: disable=import-outside-toplevel

  parameters = dict(args.parameter)
  config, pipeline_json = _compile_for_deployment(args)
  if args.dry_run:
    request = vertex_submit.dry_run(config, pipeline_json, parameters)
    print(json.dumps(request, indent=2, sort_keys=True))
    print(
      f'Dry run: the request is valid; nothing was submitted. The run would be at\n'
      f'{request["consoleUrl"]}'
    )
    return 0
  print(f'Run started: {vertex_submit.submit(config, pipeline_json, parameters)}')
  return 0


def _predict(args: argparse.Namespace) -> int:
  try:
    predictions = predict.run(args)
  except (predict.PredictError, IdxFormatError) as error:
    print(f'error: {error}', file=sys.stderr)
    return 1
  for number, prediction in enumerate(predictions):
    print(f'{number:>4}  {prediction.line()}')
  return 0


def main(argv: Optional[List[str]] = None) -> int:
  args = _parser().parse_args(argv)
  commands = {
    'run': _run,
    'download': _download,
    'summary': _summary,
    'report': _report,
    'compile': _compile,
    'submit': _submit,
    'predict': _predict,
  }
  try:
    return commands[args.command](args)
  except VertexConfigError as error:
    print(f'error: {error}', file=sys.stderr)
    return 2


if __name__ == '__main__':
  sys.exit(main())
