"""Test set-up: 8 fake CPU devices so sharding is exercised; strict rank promotion."""
from importlib import metadata
import os

# LLVM optimisation level 0 and XLA's older (non-MLIR) CPU fusion emitters for the suite's programs: the
# tests compile hundreds of tiny programs and run each a few times, so compile time is most of their time
# (a tiny-model update compiles in ~40% less time at level 0; with jax 0.10 the older emitters take a
# further 25-30% off a recipe or sharded-update test; results agree within the tests' tolerances). Runs
# that time or train for long strip XLA_FLAGS (train_test's end-to-end run, benchmarks_test) and keep
# XLA's defaults, as a user gets.
_OLD_EMITTERS = ''
if tuple(int(part) for part in metadata.version('jaxlib').split('.')[:2]) < (0, 11):
  _OLD_EMITTERS = ' --xla_cpu_use_fusion_emitters=false'  # jaxlib 0.11 dropped the flag (and aborts on it)
os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0'
                      + _OLD_EMITTERS)
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')

import jax  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top

jax.config.update('jax_num_cpu_devices', 8)
jax.config.update('jax_numpy_rank_promotion', 'raise')


def pytest_configure(config):
  config.addinivalue_line('markers', 'slow: end-to-end tests (run in CI; skip locally with -m "not slow")')


def pytest_collection_modifyitems(items):
  # Slow end-to-end tests first: xdist hands tests out in order, so the long ones start early and
  # the short ones fill in around them, instead of one minutes-long test running alone at the end.
  items.sort(key=lambda item: item.get_closest_marker('slow') is None)


@pytest.fixture(scope='session', autouse=True)
def compilation_cache(tmp_path_factory):
  """A persistent compilation cache for the session, shared by the xdist workers (file-locked).

  Many tests compile the same programs (the small loop config, its resumed runs, the tiny recipes);
  the cache compiles each once. Tracing still happens, so compile counters (sampler buckets) count.
  """
  from jax.experimental.compilation_cache import compilation_cache as cc  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.getbasetemp()
  if os.environ.get('PYTEST_XDIST_WORKER'):
    root = root.parent  # the session's base folder, common to the workers
  jax.config.update('jax_compilation_cache_max_size', 4 << 30)  # a size limit turns on the file lock
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)  # the many small programs too
  cc.set_cache_dir(str(root / 'jax_cache'))
  yield
  cc.reset_cache()
