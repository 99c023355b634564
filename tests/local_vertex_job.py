"""Runs a compiled Trainer step's container command with a stand-in for Vertex AI custom training.

    python -m tests.local_vertex_job JOB_DIR TIMEOUT_SECONDS python -m MODULE ARGS...

The step runs as in its pipeline container: TFX's Vertex Trainer executor builds the CustomJob
from the custom_config and its job client sets every worker pool's command. Only the launch
differs: instead of Vertex, each replica of each pool runs here as a process with the TF_CONFIG
Vertex gives it (pool 0 is `chief`, pool 1 `worker`), on free ports of 127.0.0.1, its own TMPDIR
(JOB_DIR/<task>-tmp) and log (JOB_DIR/<task>.log). The CustomJob is written to JOB_DIR/job.json.
A replica that fails or outlives TIMEOUT_SECONDS fails the step, as a failed job does.
"""

import json
import os
import runpy
import socket
import subprocess
import sys
import time

from tfx.extensions.google_cloud_ai_platform import runner
from tfx.extensions.google_cloud_ai_platform import training_clients

# The TF_CONFIG task type of each worker pool, in order (Vertex AI's distributed training docs).
POOL_TASK_TYPES = ('chief', 'worker', 'ps', 'evaluator')
JOB_FILE = 'job.json'


def free_port() -> int:
  with socket.socket() as probe:
    probe.bind(('127.0.0.1', 0))
    return probe.getsockname()[1]


def replica_log(job_dir: str, task_type: str, index: int) -> str:
  return os.path.join(job_dir, f'{task_type}-{index}.log')


def replica_tmp(job_dir: str, task_type: str, index: int) -> str:
  return os.path.join(job_dir, f'{task_type}-{index}-tmp')


def run_replicas(job_dir: str, timeout: float, job_spec: dict) -> None:
  pools = job_spec['worker_pool_specs']
  cluster = {
    task_type: [f'127.0.0.1:{free_port()}' for _ in range(pool['replica_count'])]
    for task_type, pool in zip(POOL_TASK_TYPES, pools)
  }
  processes = []
  for task_type, pool in zip(POOL_TASK_TYPES, pools):
    command = [
      sys.executable if part == 'python' else part for part in pool['container_spec']['command']
    ]
    for index in range(pool['replica_count']):
      tmp = replica_tmp(job_dir, task_type, index)
      os.makedirs(tmp)
      tf_config = {'cluster': cluster, 'task': {'type': task_type, 'index': index}}
      env = {**os.environ, 'TF_CONFIG': json.dumps(tf_config), 'TMPDIR': tmp}
      with open(replica_log(job_dir, task_type, index), 'w') as log:
        processes.append(
          (f'{task_type} {index}', subprocess.Popen(command, env=env, stdout=log, stderr=log))
        )
  deadline = time.monotonic() + timeout
  try:
    for name, process in processes:
      code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
      if code != 0:
        raise RuntimeError(f'replica {name} exited with {code}; see its log in {job_dir}')
  finally:
    for _, process in processes:
      process.kill()
      process.wait()


def main() -> None:
  job_dir, timeout, python, dash_m, module, *args = sys.argv[1:]
  assert (python, dash_m) == ('python', '-m'), sys.argv
  os.makedirs(job_dir, exist_ok=True)

  def launch_locally(project, training_job, enable_vertex=False, vertex_region=None):
    assert enable_vertex and vertex_region, 'the step must ask for Vertex AI'
    with open(os.path.join(job_dir, JOB_FILE), 'w') as out:
      json.dump({'project': project, 'region': vertex_region, **training_job}, out, indent=1)
    run_replicas(job_dir, float(timeout), training_job['job_spec'])

  # No credentials here: the client's connection is never made, the job never sent.
  training_clients.VertexJobClient.create_client = lambda self: None
  runner._launch_cloud_training = launch_locally  # pylint: disable=protected-access
  sys.argv = [module, *args]
  runpy.run_module(module, run_name='__main__')


if __name__ == '__main__':
  main()
