"""Fetching the Fashion-MNIST files and checking they are the real ones."""

import gzip
import hashlib
import os
import urllib.error
import urllib.request
from typing import Callable, Dict

import tensorflow as tf

from pipeline.config import BASE_URL


# SHA-256 of each file's *uncompressed* IDX content: mirrors recompress the
# gzip streams (Debian's package does), which changes the .gz bytes but not the data.
IDX_SHA256: Dict[str, str] = {
  'train-images-idx3-ubyte.gz': 'c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888',
  'train-labels-idx1-ubyte.gz': 'bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9',
  't10k-images-idx3-ubyte.gz': '5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b',
  't10k-labels-idx1-ubyte.gz': '0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34',
}


class DataFileError(RuntimeError):
  """A data file is missing or is not the expected content."""


def idx_sha256(path: str) -> str:
  """SHA-256 of a gzip file's uncompressed content."""
  with tf.io.gfile.GFile(path, 'rb') as raw:
    return hashlib.sha256(gzip.decompress(raw.read())).hexdigest()


def missing_files(data_dir: str) -> list:
  return [name for name in IDX_SHA256 if not tf.io.gfile.exists(os.path.join(data_dir, name))]


def verify(data_dir: str) -> None:
  """Raises DataFileError naming each file that is absent or differs from Fashion-MNIST."""
  missing = missing_files(data_dir)
  problems = [f'{os.path.join(data_dir, name)}: missing' for name in missing]
  for name, expected in IDX_SHA256.items():
    path = os.path.join(data_dir, name)
    if name not in missing and idx_sha256(path) != expected:
      problems.append(f'{path}: content SHA-256 differs from Fashion-MNIST\'s')
  if problems:
    raise DataFileError('\n'.join(problems))


def _urlopen_bytes(url: str) -> bytes:
  with urllib.request.urlopen(url, timeout=60) as response:
    return response.read()


def file_url(base_url: str, name: str) -> str:
  """`name` under the mirror's directory, whether or not `base_url` ends with a slash."""
  return f'{base_url.rstrip("/")}/{name}'


def download(
  data_dir: str, base_url: str = BASE_URL, fetch: Callable[[str], bytes] = _urlopen_bytes
) -> None:
  """Fetches any missing file into `data_dir`, verified before it takes its final name."""
  try:
    tf.io.gfile.makedirs(data_dir)
    writable = tf.io.gfile.isdir(data_dir) and os.access(data_dir, os.W_OK)
  except tf.errors.OpError as error:
    raise DataFileError(f'{data_dir}: cannot create the directory ({error.message})') from error
  if not writable and '://' not in data_dir:
    raise DataFileError(f'{data_dir}: cannot write files there (pass another --data-dir)')
  for name in missing_files(data_dir):
    url = file_url(base_url, name)
    try:
      content = fetch(url)
    except urllib.error.HTTPError as error:
      raise DataFileError(
        f'{url}: download failed (HTTP {error.code} {error.reason}); check the mirror '
        '(download --base-url), or install the Debian package dataset-fashion-mnist'
      ) from error
    except (urllib.error.URLError, OSError) as error:
      reason = getattr(error, 'reason', None) or error
      raise DataFileError(
        f'{url}: download failed ({reason}); check the network (or a proxy: https_proxy), or '
        'install the Debian package dataset-fashion-mnist'
      ) from error
    partial = os.path.join(data_dir, name + '.partial')
    with tf.io.gfile.GFile(partial, 'wb') as out:
      out.write(content)
    actual = idx_sha256(partial)
    if actual != IDX_SHA256[name]:
      tf.io.gfile.remove(partial)
      raise DataFileError(
        f'{url}: content SHA-256 {actual}, expected {IDX_SHA256[name]} (not Fashion-MNIST, or '
        'corrupted on the way: try again, or download --base-url with another mirror)'
      )
    tf.io.gfile.rename(partial, os.path.join(data_dir, name), overwrite=True)
