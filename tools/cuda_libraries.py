"""Exits 0 when the CUDA libraries TensorFlow 2.16.2 was built against load on this machine.

The Dockerfile runs it to decide whether the base image's CUDA and cuDNN serve TensorFlow or
TensorFlow's own pinned CUDA wheels must be installed. Loading a library and asking its version
needs no GPU and no driver. Otherwise prints what is missing or too old, one line each.
"""

import ctypes
import sys
from typing import List

# TensorFlow 2.16.2 is built with CUDA 12.3 and cuDNN 8.9 (its and-cuda extra pins those).
CUDA_RUNTIME = 'libcudart.so.12'
MIN_CUDA_RUNTIME = 12030  # cudaRuntimeGetVersion's 1000 * major + 10 * minor
CUDNN = 'libcudnn.so.8'
MIN_CUDNN = 8900  # cudnnGetVersion's 1000 * major + 100 * minor + patch
# The other CUDA libraries TensorFlow opens, by the sonames of the CUDA 12.3 releases.
OTHERS = (
  'libcublas.so.12',
  'libcublasLt.so.12',
  'libcufft.so.11',
  'libcusolver.so.11',
  'libcusparse.so.12',
)


def problems() -> List[str]:
  found = []
  try:
    runtime = ctypes.CDLL(CUDA_RUNTIME)
    version = ctypes.c_int()
    runtime.cudaRuntimeGetVersion(ctypes.byref(version))
    if version.value < MIN_CUDA_RUNTIME:
      found.append(f'{CUDA_RUNTIME}: version {version.value}, TensorFlow needs {MIN_CUDA_RUNTIME}')
  except OSError as error:
    found.append(str(error))
  try:
    cudnn_version = ctypes.CDLL(CUDNN).cudnnGetVersion()
    if cudnn_version < MIN_CUDNN:
      found.append(f'{CUDNN}: version {cudnn_version}, TensorFlow needs {MIN_CUDNN}')
  except OSError as error:
    found.append(str(error))
  for library in OTHERS:
    try:
      ctypes.CDLL(library)
    except OSError as error:
      found.append(str(error))
  return found


if __name__ == '__main__':
  missing = problems()
  for line in missing:
    print(line, file=sys.stderr)
  sys.exit(1 if missing else 0)
