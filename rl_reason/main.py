"""Entry point: `python -m rl_reason.main --config=configs/vlm_grpo.py [--workdir=runs/NAME]`.

Flags and multi-host set-up only; the loop lives in train.py.
"""

import os

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/vlm_grpo.py', 'Run configuration file.',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Output directory (default: runs/<config name>).')
_DISTRIBUTED = flags.DEFINE_bool(
    'distributed', False, 'Join a multi-process JAX job whose cluster JAX detects itself (Cloud TPU pod slices, '
    'SLURM, Open MPI). Elsewhere set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID instead.')


def default_workdir(config_path: str) -> str:
  name, _, arg = config_path.partition(':')
  stem = os.path.splitext(os.path.basename(name))[0]
  return os.path.join('runs', stem + (f'_{arg}' if arg else ''))


def maybe_initialize_distributed(detect_cluster: bool = False) -> bool:
  """Joins a multi-process JAX job when launched as one; True if it did.

  The launcher's env vars (JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID) say so, or
  `detect_cluster` (--distributed) lets JAX find the cluster itself (TPU pod slices, SLURM, MPI).
  """
  import jax  # pylint: disable=g-import-not-at-top
  launched = os.environ.get('JAX_COORDINATOR_ADDRESS') or int(os.environ.get('JAX_NUM_PROCESSES', '1')) > 1
  if not (launched or detect_cluster):
    return False
  jax.distributed.initialize(
      coordinator_address=os.environ.get('JAX_COORDINATOR_ADDRESS'),
      num_processes=int(os.environ['JAX_NUM_PROCESSES']) if 'JAX_NUM_PROCESSES' in os.environ else None,
      process_id=int(os.environ['JAX_PROCESS_ID']) if 'JAX_PROCESS_ID' in os.environ else None)
  logging.info('jax.distributed: process %d of %d', jax.process_index(), jax.process_count())
  return True


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  # Orbax logs every file it writes at INFO; keep the console for the run's own progress.
  logging.get_absl_handler().addFilter(lambda record: '/orbax/' not in record.pathname)
  maybe_initialize_distributed(_DISTRIBUTED.value)
  from rl_reason import train  # pylint: disable=g-import-not-at-top
  workdir = _WORKDIR.value or default_workdir(flags.FLAGS['config'].config_filename)
  train.run(_CONFIG.value, workdir)


if __name__ == '__main__':
  app.run(main)
