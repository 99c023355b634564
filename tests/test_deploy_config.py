"""The deploy config as a Vertex / Kubeflow user meets it, offline: bad files stop compile and
submit with one line and write nothing, Dataflow only where the config says, the image recipe
and its tag check, and the code fingerprint."""

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
from tfx.dsl.components.base.base_beam_component import BaseBeamComponent
import yaml

from pipeline import cli
from pipeline import image_tag
from pipeline import staging
from pipeline import vertex_config
from pipeline import vertex_submit
from pipeline.config import BEAM_COMPONENT_KINDS
from pipeline.config import PipelineConfig
from pipeline.pipeline import create_pipeline
from pipeline.pipeline import evaluator_id
from pipeline.pipeline import trainer_id

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = ('batch', 'none')
GOOD = {
  'project': 'proj',
  'region': 'europe-west4',
  'image': 'us-docker.pkg.dev/proj/fmnist/pipeline:0123abc',
  'output_root': 'gs://bucket/fmnist',
  'data_dir': 'gs://bucket/data',
  'variants': list(VARIANTS),
}
DATAFLOW = {'temp_location': 'gs://bucket/tmp'}


def _write(directory, values):
  path = os.path.join(str(directory), 'deploy.yaml')
  with open(path, 'w') as out:
    if isinstance(values, str):
      out.write(values)
    else:
      yaml.safe_dump(values, out)
  return path


def _without(key):
  return {name: value for name, value in GOOD.items() if name != key}


@pytest.mark.parametrize(
  'values, message',
  [
    ({**GOOD, 'training': {'epochs': 'ten'}}, "training.epochs must be int, got 'ten'"),
    ({**GOOD, 'accuracy_threshold': 'high'}, "accuracy_threshold must be float, got 'high'"),
    ({**GOOD, 'variants': 'batch'}, "variants must be a list, got 'batch'"),
    ({**GOOD, 'labels': ['team']}, "labels must be a mapping, got ['team']"),
    (
      {**GOOD, 'epochs': 3},
      'unknown key epochs (an option of training: put it under training:); known: accept_drift, '
      'accuracy_threshold, bad_images, channels, data_dir, dataflow, ',
    ),
    (
      {**GOOD, 'dataflow': {**DATAFLOW, 'max_workers': 3}},
      'unknown key dataflow.max_workers; known: ',
    ),
    ({**GOOD, 'training': {'variant': 'batch'}}, 'training.variant is set per Trainer'),
    (
      {**GOOD, 'beam_pipeline_args': ['--runner=DataflowRunner']},
      "beam_pipeline_args is set from the deploy config's `dataflow` section",
    ),
    (_without('project'), 'missing key project (required: project, region, image)'),
    (
      {**GOOD, 'dataflow': {'machine_type': 'n1-standard-8'}},
      'missing key dataflow.temp_location (required: temp_location)',
    ),
    (_without('output_root'), 'missing key output_root (required: output_root, data_dir)'),
    (
      {**GOOD, 'dataflow': {'temp_location': '/tmp/dataflow'}},
      "dataflow.temp_location must be a gs:// URI, got '/tmp/dataflow'",
    ),
    (
      {**GOOD, 'trainer': {'accelerator_type': 'NVIDIA_TESLA_T4'}},
      'trainer.accelerator_type and trainer.accelerator_count go together',
    ),
    (
      {**GOOD, 'dataflow': {**DATAFLOW, 'components': ['VariantSelector']}},
      (
        'dataflow.components must be one of ImageExampleGen, StatisticsGen, Transform, Evaluator, '
        "got 'VariantSelector'"
      ),
    ),
    (
      {**GOOD, 'pixel_scaling': 'minmax'},
      "pixel_scaling must be one of unit, zscore, got 'minmax'",
    ),
    ('project: [unclosed\n', 'not valid YAML (line 2)'),
    ('- a list\n', "the file must be a mapping, got ['a list']"),
  ],
)
@pytest.mark.parametrize('command', ['compile', 'submit'])
def test_a_bad_deploy_file_stops_with_one_line_and_writes_nothing(
  tmp_path, capsys, monkeypatch, values, message, command
):
  submitted = []
  monkeypatch.setattr(vertex_submit, 'submit', lambda *args: submitted.append(args))
  path = _write(tmp_path, values)
  output = str(tmp_path / 'pipeline.json')
  assert cli.main([command, '--config', path, '--output', output]) == 2
  (line,) = capsys.readouterr().err.splitlines()
  assert line.startswith(f'error: {path}: ') and message in line, line
  assert not os.path.exists(output) and not submitted


@pytest.mark.parametrize('key', ['output_root', 'data_dir', 'serving_root'])
def test_submit_needs_cloud_storage_roots(tmp_path, capsys, monkeypatch, key):
  submitted = []
  monkeypatch.setattr(vertex_submit, 'submit', lambda *args: submitted.append(args))
  path = _write(tmp_path, {**GOOD, key: str(tmp_path / 'local')})
  output = str(tmp_path / 'pipeline.json')
  assert cli.main(['submit', '--config', path, '--output', output]) == 2
  assert capsys.readouterr().err == (
    f"error: {path}: {key} must be a gs:// URI for Vertex AI, got '{tmp_path / 'local'}'\n"
  )
  assert not os.path.exists(output) and not submitted


def _compile(tmp_path, values):
  path = _write(tmp_path, values)
  output = str(tmp_path / 'pipeline.json')
  assert cli.main(['compile', '--config', path, '--output', output]) == 0
  with open(output) as source:
    return json.load(source)['pipelineSpec']


def _args(spec, task):
  component = spec['root']['dag']['tasks'][task]['componentRef']['name']
  label = spec['components'][component]['executorLabel']
  return spec['deploymentSpec']['executors'][label]['container']['args']


def _runner(args):
  """The runner Beam uses: its argument parser takes the last --runner."""
  runners = [arg.split('=', 1)[1] for arg in args if arg.startswith('--runner=')]
  return runners[-1] if runners else 'DirectRunner'


def test_by_default_only_the_full_data_passes_start_dataflow_jobs(tmp_path):
  spec = _compile(tmp_path, {**GOOD, 'dataflow': DATAFLOW})
  runners = {
    task: _runner(_args(spec, task))
    for task in spec['root']['dag']['tasks']
    if 'resolver' not in task and task != 'schema_importer'
  }
  dataflow = {task for task, runner in runners.items() if runner == 'DataflowRunner'}
  assert dataflow == {'ImageExampleGen', 'StatisticsGen', 'Transform'}
  for variant in VARIANTS:
    assert '--direct_running_mode=in_memory' in _args(spec, evaluator_id(variant))
    assert not [arg for arg in _args(spec, trainer_id(variant)) if arg.startswith('--runner')]


def test_dataflow_settings_reach_the_components_the_config_names(tmp_path):
  dataflow = {
    **DATAFLOW,
    'service_account': 'df@proj.iam.gserviceaccount.com',
    'subnetwork': 'regions/europe-west4/subnetworks/private',
    'use_public_ips': False,
    'labels': {'team': 'vision', 'cost-center': 'ml'},
    'extra_args': ['--number_of_worker_harness_threads=4'],
    'components': ['Evaluator'],
  }
  spec = _compile(tmp_path, {**GOOD, 'dataflow': dataflow})
  for variant in VARIANTS:
    args = _args(spec, evaluator_id(variant))
    assert _runner(args) == 'DataflowRunner'
    for expected in (
      '--service_account_email=df@proj.iam.gserviceaccount.com',
      '--subnetwork=regions/europe-west4/subnetworks/private',
      '--no_use_public_ips',
      '--labels=team=vision',
      '--labels=cost-center=ml',
      '--number_of_worker_harness_threads=4',
      '--temp_location=gs://bucket/tmp',
      '--region=europe-west4',
      f'--sdk_container_image={GOOD["image"]}',
    ):
      assert expected in args, (variant, expected)
  for task in ('ImageExampleGen', 'StatisticsGen', 'Transform'):
    assert _runner(_args(spec, task)) == 'DirectRunner', task


def test_without_dataflow_no_step_starts_a_dataflow_job(tmp_path):
  spec = _compile(tmp_path, GOOD)
  tasks = [task for task in spec['root']['dag']['tasks'] if 'resolver' not in task]
  assert all(
    _runner(_args(spec, task)) == 'DirectRunner' for task in tasks if task != 'schema_importer'
  )


def test_the_dataflow_component_kinds_are_the_pipelines_beam_components():
  pipeline = create_pipeline(PipelineConfig(output_root='/tmp/unused'), code_fingerprint='x')
  beam_kinds = {
    type(component).__name__
    for component in pipeline.components
    if isinstance(component, BaseBeamComponent)
  }
  assert beam_kinds == set(BEAM_COMPONENT_KINDS)


# --- The image: its tag against the checkout, the recipe, the fingerprint ------------------------


def _git(checkout, *args):
  return subprocess.run(
    ['git', '-C', str(checkout), *args], capture_output=True, text=True, check=True
  ).stdout.strip()


@pytest.fixture
def checkout(tmp_path):
  """A git checkout with one committed source file."""
  repo = tmp_path / 'repo'
  (repo / 'trainer').mkdir(parents=True)
  (repo / 'trainer' / 'task.py').write_text('STEPS = 1\n')
  _git(repo, 'init', '-q')
  _git(repo, 'add', '.')
  _git(repo, '-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-qm', 'code')
  return repo


def test_image_tag_check(checkout):
  commit = _git(checkout, 'rev-parse', 'HEAD')
  repo_image = 'europe-docker.pkg.dev:443/proj/fmnist/pipeline'
  assert image_tag.mismatch(f'{repo_image}:{commit[:7]}', str(checkout)) is None
  assert image_tag.mismatch(f'{repo_image}:{commit[:10]}', str(checkout)) is None
  for other in (f'{repo_image}:latest', f'{repo_image}@sha256:{"0" * 64}', repo_image):
    assert f"is not tagged with this checkout's commit {commit[:7]}" in image_tag.mismatch(
      other, str(checkout)
    )
  (checkout / 'trainer' / 'task.py').write_text('STEPS = 2\n')
  (checkout / 'notes.txt').write_text('not in the image\n')
  assert image_tag.mismatch(f'{repo_image}:{commit[:7]}', str(checkout)) == (
    f'uncommitted changes (trainer/task.py) are not in image {repo_image}:{commit[:7]}, built '
    f'from commit {commit[:7]}: commit them and rebuild (`make image`)'
  )
  assert 'is not a git checkout' in image_tag.mismatch(repo_image, str(checkout.parent))


def test_compile_warns_in_one_line_when_the_tag_is_not_the_checkout(
  tmp_path, capsys, monkeypatch, checkout
):
  monkeypatch.setattr(staging, 'PACKAGE_ROOT', str(checkout))
  commit = _git(checkout, 'rev-parse', '--short', 'HEAD')
  image = f'us-docker.pkg.dev/proj/fmnist/pipeline:{commit}'
  _compile(tmp_path, {**GOOD, 'image': image})
  assert capsys.readouterr().err == ''
  _compile(tmp_path, {**GOOD, 'image': 'us-docker.pkg.dev/proj/fmnist/pipeline:latest'})
  (warning,) = capsys.readouterr().err.splitlines()
  assert warning.startswith("warning: image us-docker.pkg.dev/proj/fmnist/pipeline:latest is not")


def test_make_image_tags_with_the_commit_and_refuses_uncommitted_code(checkout):
  short = _git(ROOT, 'rev-parse', '--short', 'HEAD')
  dry_run = subprocess.run(
    ['make', '-n', '-C', ROOT, 'image', 'PROJECT=proj'], capture_output=True, text=True, check=True
  ).stdout
  assert f'docker build -t us-central1-docker.pkg.dev/proj/fmnist/pipeline:{short} .' in dry_run
  makefile = os.path.join(ROOT, 'Makefile')

  def clean_checkout():
    return subprocess.run(
      ['make', '-s', '-f', makefile, 'clean-checkout'],
      cwd=checkout,
      capture_output=True,
      text=True,
      check=False,
    )

  clean = clean_checkout()
  assert clean.returncode == 0, clean.stderr
  (checkout / 'trainer' / 'task.py').write_text('STEPS = 2\n')
  dirty = clean_checkout()
  assert dirty.returncode != 0 and 'uncommitted changes' in dirty.stderr
  assert 'trainer/task.py' in dirty.stderr


def test_cloudbuild_tags_the_pushed_image_with_the_commit():
  with open(os.path.join(ROOT, 'cloudbuild.yaml')) as source:
    build = yaml.safe_load(source)
  text = yaml.safe_dump(build)
  # Cloud Build rejects a user substitution the file uses but does not declare.
  used = set(re.findall(r'\$\{(_[A-Z_]+)\}', text))
  assert used <= set(build['substitutions']), used - set(build['substitutions'])
  assert build['substitutions']['_TAG'] == '${SHORT_SHA}'
  assert build['options']['dynamicSubstitutions'] is True  # needed for _TAG: ${SHORT_SHA}
  (docker_build,) = [step for step in build['steps'] if step['args'][0] == 'build']
  image = '${_REGION}-docker.pkg.dev/${PROJECT_ID}/${_REPOSITORY}/${_IMAGE}:${_TAG}'
  assert docker_build['args'] == ['build', f'--tag={image}', '.']
  assert build['images'] == [image]


def test_code_fingerprint_covers_every_file_that_changes_behaviour(tmp_path, monkeypatch):
  for directory in ('components', 'contract', 'dataset', 'trainer', 'serving', 'pipeline'):
    shutil.copytree(
      os.path.join(ROOT, directory),
      tmp_path / directory,
      ignore=shutil.ignore_patterns('__pycache__'),
    )
  monkeypatch.setattr(staging, 'PACKAGE_ROOT', str(tmp_path))
  original = staging.code_fingerprint()

  (tmp_path / 'trainer' / '__pycache__').mkdir()
  (tmp_path / 'trainer' / '__pycache__' / 'task.cpython-310.pyc').write_bytes(b'bytecode')
  assert staging.code_fingerprint() == original  # bytecode follows from the sources

  # The schema, the Trainer's code and the warmup requests its export writes.
  for edited in (
    'pipeline/schema/schema.pbtxt',
    'trainer/loop.py',
    'serving/warmup.py',
    'dataset/layouts.py',
    'contract/features.py',
  ):
    path = tmp_path / edited
    content = path.read_bytes()
    path.write_bytes(content + b'\n')
    assert staging.code_fingerprint() != original, edited
    path.write_bytes(content)
  assert staging.code_fingerprint() == original


def test_the_images_gpu_check_names_what_is_missing():
  """This machine has no CUDA: the check the Dockerfile runs fails here naming the libraries, so
  the image build installs TensorFlow's pinned CUDA wheels when its base lacks them."""
  check = subprocess.run(
    [sys.executable, os.path.join(ROOT, 'tools', 'cuda_libraries.py')],
    capture_output=True,
    text=True,
    check=False,
  )
  assert check.returncode == 1
  missing = check.stderr.splitlines()
  assert len(missing) == 7 and missing[0].startswith('libcudart.so.12: cannot open'), missing
  with open(os.path.join(ROOT, 'Dockerfile')) as source:
    dockerfile = source.read()
  install = dockerfile[dockerfile.index('RUN python tools/cuda_libraries.py') :]
  install = install[: install.index('\n\n')]
  # Installed when the check fails, then registered with the linker and checked again.
  assert (
    "|| (pip install --no-cache-dir -c constraints.txt 'tensorflow[and-cuda]==2.16.2'" in install
  )
  assert install.index('ldconfig') < install.rindex('python tools/cuda_libraries.py)')
  with open(os.path.join(ROOT, 'constraints.txt')) as source:
    pins = source.read()
  assert 'nvidia-cudnn-cu12==8.9.7.29' in pins and 'nvidia-cuda-runtime-cu12==12.3.101' in pins


def test_the_example_deploy_file_compiles_and_shows_every_deployment_key(tmp_path, capsys):
  example = os.path.join(ROOT, 'deploy', 'vertex.example.yaml')
  output = str(tmp_path / 'pipeline.json')
  assert cli.main(['compile', '--config', example, '--output', output]) == 0
  assert os.path.exists(output)
  with open(example) as source:
    raw = yaml.safe_load(source)
  groups = {'trainer': vertex_config.TrainerResources, 'dataflow': vertex_config.DataflowConfig}
  for field in dataclasses.fields(vertex_config.VertexConfig):
    if field.name == 'pipeline':  # the options: `run --help` documents them
      continue
    # Off unless asked for: shown commented out.
    commented_groups = {
      'vertex_endpoint': vertex_config.VertexEndpointConfig,
      'schedule': vertex_config.ScheduleConfig,
    }
    if field.name in commented_groups:
      with open(example) as source:
        commented = source.read()
      shown = [f.name for f in dataclasses.fields(commented_groups[field.name])]
      assert f'# {field.name}:' in commented
      assert all(f'#   {name}:' in commented for name in shown), shown
      continue
    assert field.name in raw, field.name
    if field.name in groups:
      with open(example) as source:
        commented = source.read()
      # The multi-worker keys are shown commented out: the example trains on one machine.
      missing = {f.name for f in dataclasses.fields(groups[field.name])} - set(raw[field.name])
      assert all(f'  # {name}:' in commented for name in missing), missing


def test_the_tag_check_and_make_image_watch_everything_the_dockerfile_copies():
  """A source the image holds but the clean-checkout check ignores would let an image tagged
  with a commit carry uncommitted code."""
  with open(os.path.join(ROOT, 'Dockerfile')) as dockerfile:
    copied = {
      source.rstrip('/')
      for line in dockerfile
      if line.startswith('COPY ')
      for source in line.split()[1:-1]
    }
  copied.discard('README.md')  # the package's long description only
  assert copied <= set(image_tag.IMAGE_SOURCES)
  with open(os.path.join(ROOT, 'Makefile')) as makefile:
    (line,) = [line for line in makefile if line.startswith('IMAGE_SOURCES :=')]
  assert line.split(':=')[1].split() == list(image_tag.IMAGE_SOURCES)
