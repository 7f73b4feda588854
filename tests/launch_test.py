"""launch/: the multi-process launch scripts, run with stand-ins for python, gcloud and srun.

What the stand-ins record is what the scripts would run; that `main` then joins the job is tested
in parallel_multiprocess_test.py.
"""

import os
import stat
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH = os.path.join(REPO, 'launch')


def _stand_in(path, body: str) -> str:
  with open(path, 'w') as f:
    f.write('#!/usr/bin/env bash\n' + body)
  os.chmod(path, os.stat(path).st_mode | stat.S_IEXEC)
  return str(path)


def _run(args, **env):
  return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=60, env=dict(os.environ, **env))


_RECORDING_PYTHON = '''
echo "$JAX_PROCESS_ID $JAX_NUM_PROCESSES $JAX_COORDINATOR_ADDRESS" \
  "$JAX_CPU_COLLECTIVES_IMPLEMENTATION $JAX_NUM_CPU_DEVICES $*"
if [[ "${FAIL_ID:-}" == "$JAX_PROCESS_ID" ]]; then exit 3; fi
if [[ -n "${FAIL_ID:-}" ]]; then sleep 60; fi
'''


def test_local_starts_one_process_per_id_with_the_job_in_its_environment(tmp_path):
  python = _stand_in(tmp_path / 'python', _RECORDING_PYTHON)
  logs = tmp_path / 'logs'
  result = _run([os.path.join(LAUNCH, 'local.sh'), '3', '--config=c.py', '--workdir=w'], PYTHON=python, PORT='4321',
                LOG_DIR=str(logs))
  assert result.returncode == 0, result.stderr
  for i in range(3):
    line = (logs / f'process_{i}.log').read_text().strip()
    assert line == f'{i} 3 127.0.0.1:4321 gloo 1 -m rl_reason.main --config=c.py --workdir=w'


def test_local_stops_the_others_and_fails_when_one_process_fails(tmp_path):
  python = _stand_in(tmp_path / 'python', _RECORDING_PYTHON)
  result = _run([os.path.join(LAUNCH, 'local.sh'), '3'], PYTHON=python, PORT='4321', LOG_DIR=str(tmp_path / 'logs'),
                FAIL_ID='1')  # the others would sleep for a minute: the timeout fails the test if they are not stopped
  assert result.returncode == 3
  assert 'exited with status 3' in result.stderr


def test_local_rejects_a_bad_process_count():
  result = _run([os.path.join(LAUNCH, 'local.sh'), 'two'])
  assert result.returncode == 2 and 'usage' in result.stderr


def test_tpu_pod_runs_main_on_every_worker_with_distributed(tmp_path):
  gcloud = _stand_in(tmp_path / 'gcloud', 'printf "%s\\n" "$@"\n')
  result = _run([os.path.join(LAUNCH, 'tpu_pod.sh'), 'my-tpu', 'us-central2-b', '--config=configs/x.py',
                 '--workdir=gs://b/run one'], GCLOUD=gcloud, REPO_DIR='/opt/rl')
  assert result.returncode == 0, result.stderr
  assert result.stdout.splitlines() == [
      'compute', 'tpus', 'tpu-vm', 'ssh', 'my-tpu', '--zone=us-central2-b', '--worker=all',
      '--command=cd /opt/rl && python -m rl_reason.main --distributed --config=configs/x.py '
      '--workdir=gs://b/run\\ one']


def test_slurm_runs_main_with_distributed_through_srun(tmp_path):
  _stand_in(tmp_path / 'srun', 'printf "%s\\n" "$@"\n')
  result = _run(['bash', os.path.join(LAUNCH, 'slurm.sbatch'), '--config=configs/x.py'],
                PATH=f'{tmp_path}:{os.environ["PATH"]}', SLURM_SUBMIT_DIR=str(tmp_path))
  assert result.returncode == 0, result.stderr
  assert result.stdout.splitlines() == ['python', '-m', 'rl_reason.main', '--distributed', '--config=configs/x.py']
