"""Does the image a pipeline is compiled for hold the code of this checkout?

The compiled spec carries the checkout's code fingerprint (staging.code_fingerprint) while the
steps run the image's code; `make image` and cloudbuild.yaml tag the image with the commit, so
a tag that is not this commit, or uncommitted changes, mean the two may differ.
"""

import subprocess
from typing import Optional

# What the Dockerfile copies into the image: changes here change the image's behaviour.
IMAGE_SOURCES = (
  'Dockerfile',
  'constraints.txt',
  'pyproject.toml',
  'components',
  'contract',
  'dataset',
  'pipeline',
  'serving',
  'trainer',
  'tools/cuda_libraries.py',
)


def _git(checkout: str, *args: str) -> str:
  return subprocess.run(
    ['git', '-C', checkout, *args], capture_output=True, text=True, check=True
  ).stdout


def commit_of(checkout: str) -> Optional[str]:
  """The checkout's short commit, `-dirty` when it has uncommitted changes to the image's
  sources; None when it is no git checkout (an installed package, an image)."""
  try:
    commit = _git(checkout, 'rev-parse', '--short', 'HEAD').strip()
    changed = _git(checkout, 'status', '--porcelain', '--', *IMAGE_SOURCES)
  except (OSError, subprocess.CalledProcessError):
    return None
  return f'{commit}-dirty' if changed else commit


def tag_of(image: str) -> str:
  """The tag of `registry[:port]/path/name:tag`; empty for an untagged or digest-pinned image."""
  if '@' in image:
    return ''
  return image.rsplit('/', 1)[-1].partition(':')[2]


def mismatch(image: str, checkout: str) -> Optional[str]:
  """One line saying why `image` may not be this checkout's code, or None if its tag is the
  commit of a clean checkout."""
  try:
    commit = _git(checkout, 'rev-parse', 'HEAD').strip()
    changed = _git(checkout, 'status', '--porcelain', '--', *IMAGE_SOURCES)
  except (OSError, subprocess.CalledProcessError):
    return f'cannot tell which commit image {image} holds: {checkout} is not a git checkout'
  tag = tag_of(image)
  short = commit[:7]
  if len(tag) < 7 or not commit.startswith(tag):
    return (
      f"image {image} is not tagged with this checkout's commit {short}: its steps may run "
      'other code than the one fingerprinted here (build and tag it with `make image`)'
    )
  if changed:
    # Porcelain lines are 'XY path': two status letters (or spaces) and a space.
    files = ', '.join(line[3:] for line in changed.splitlines())
    return (
      f'uncommitted changes ({files}) are not in image {image}, built from commit {short}: '
      'commit them and rebuild (`make image`)'
    )
  return None
