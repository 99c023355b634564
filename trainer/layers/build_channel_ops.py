"""Compiles the fused channel kernels (channel_ops.cc) against the installed TensorFlow.

    python -m trainer.layers.build_channel_ops

Needs a C++17 compiler (g++, or $CXX). The library is written next to
channel_passes.py, where the layers look for it; rebuild after upgrading
TensorFlow, whose C++ ABI it is tied to.
"""

import os
import platform
import shlex
import subprocess
import sys
import tempfile

import tensorflow as tf

from trainer.layers.channel_passes import LIBRARY_PATH

SOURCE_PATH = LIBRARY_PATH.with_name("channel_ops.cc")


def compile_command(source, output) -> list[str]:
  """The compiler invocation for source -> shared library output."""
  # AVX is TensorFlow's own baseline on x86-64, so it adds no requirement.
  vector_flags = ["-mavx"] if platform.machine().lower() in ("x86_64", "amd64") else []
  return [
    os.environ.get("CXX", "g++"),
    "-shared",
    "-fPIC",
    "-O3",
    *vector_flags,
    *tf.sysconfig.get_compile_flags(),
    str(source),
    "-o",
    str(output),
    *tf.sysconfig.get_link_flags(),
  ]


def _check_loads(library) -> None:
  """Loads the library in a fresh interpreter, so a wrong ABI fails here and not in a training run."""
  # Not in this process: it may hold the kernels already, and TensorFlow refuses a
  # second registration of the same kernel when the graph runs.
  result = subprocess.run(
    [
      sys.executable,
      "-c",
      "import sys, tensorflow as tf; tf.load_op_library(sys.argv[1])",
      library,
    ],
    capture_output=True,
    text=True,
  )
  if result.returncode != 0:
    raise RuntimeError(f"The compiled {library} does not load:\n{result.stderr.strip()[-2000:]}")


def build(output=LIBRARY_PATH) -> None:
  """Compiles SOURCE_PATH to output, replacing it only once the new library loads."""
  output = os.fspath(output)
  fd, partial = tempfile.mkstemp(suffix=".so", dir=os.path.dirname(output))
  os.close(fd)
  command = compile_command(SOURCE_PATH, partial)
  try:
    try:
      result = subprocess.run(command, capture_output=True, text=True)
    except FileNotFoundError:
      raise RuntimeError(
        f"No C++ compiler {command[0]!r} found: install g++ (Debian: apt-get install g++) "
        "or point $CXX at one"
      ) from None
    if result.returncode != 0:
      raise RuntimeError(
        f"Compiling {SOURCE_PATH} failed:\n{shlex.join(command)}\n{result.stderr.strip()}"
      )
    _check_loads(partial)
    os.replace(partial, output)
  finally:
    if os.path.exists(partial):
      os.remove(partial)


def main() -> None:
  try:
    build()
  except RuntimeError as error:
    sys.exit(str(error))
  print(f"Built {LIBRARY_PATH}")


if __name__ == "__main__":
  main()
