"""Checkpointer: round trips, garbage collection, crash safety, sharded restore, config checks."""

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from rl_reason import checkpoint

CONFIG = {'model': {'hidden_size': 64, 'layers': 2, 'dtype': 'float32'},
          'rollout': {'batch_size': 16, 'num_generations': 4, 'temperature': 1.0},
          'seed': 0, 'buckets': (32, 64)}
META = {'step': 7, 'data': {'position': 3, 'epoch': 1}, 'note': 'x'}


def _state(seed: int = 0) -> dict:
  key = jax.random.key(seed)
  return {
      'params': {'w': jax.random.normal(key, (4, 6), jnp.float32),
                 'b': jnp.arange(6, dtype=jnp.float32).astype(jnp.bfloat16)},
      'count': jnp.asarray(seed + 11, jnp.int32),
      'rng': jax.random.key_data(jax.random.fold_in(key, 1)),
  }


def _abstract(state, sharding=None):
  sharding = sharding or jax.sharding.SingleDeviceSharding(jax.devices()[0])
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), state)


def _assert_trees_equal(got, expected):
  assert jax.tree.structure(got) == jax.tree.structure(expected)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(np.asarray(a.astype(jnp.float32) if a.dtype == jnp.bfloat16 else a),
                                  np.asarray(b.astype(jnp.float32) if b.dtype == jnp.bfloat16 else b))


def test_round_trip_of_state_meta_and_config(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path / 'ckpt'))
  assert ckpt.latest_step() is None
  state = _state(3)
  ckpt.save(5, state, meta=META, config=CONFIG)
  # A fresh Checkpointer (a new process after a restart) sees the step.
  reopened = checkpoint.Checkpointer(str(tmp_path / 'ckpt'))
  assert reopened.latest_step() == 5
  got, meta, config = reopened.restore(5, _abstract(state))
  _assert_trees_equal(got, state)
  key = jax.random.wrap_key_data(got['rng'])
  np.testing.assert_array_equal(np.asarray(jax.random.bits(key, (3,))),
                                np.asarray(jax.random.bits(jax.random.fold_in(jax.random.key(3), 1), (3,))))
  assert meta == META
  assert config == {**CONFIG, 'buckets': [32, 64]}  # JSON turns tuples into lists
  assert reopened.saved_config(5) == config


def test_keep_collects_old_steps(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path), keep=2)
  for step in (0, 10, 20, 30):
    ckpt.save(step, _state(step), meta={'step': step}, config=CONFIG)
  assert ckpt.all_steps() == [20, 30]
  assert sorted(n for n in os.listdir(tmp_path) if n.isdigit()) == ['20', '30']
  got, meta, _ = ckpt.restore(20, _abstract(_state()))
  assert meta == {'step': 20} and int(got['count']) == 31


def test_half_written_checkpoint_is_ignored(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  ckpt.save(1, _state(1), meta={'step': 1}, config=CONFIG)
  ckpt.save(2, _state(2), meta={'step': 2}, config=CONFIG)
  # A crash during the save of step 3: orbax's temporary directory, with part of the files.
  partial = tmp_path / '3.orbax-checkpoint-tmp'
  shutil.copytree(tmp_path / '2' / 'state', partial / 'state')
  (partial / 'meta').mkdir()
  reopened = checkpoint.Checkpointer(str(tmp_path))
  assert reopened.latest_step() == 2
  got, meta, _ = reopened.restore(2, _abstract(_state()))
  assert meta == {'step': 2}
  _assert_trees_equal(got, _state(2))
  # The resumed run writes step 3 over the leftovers.
  reopened.save(3, _state(3), meta={'step': 3}, config=CONFIG)
  assert checkpoint.Checkpointer(str(tmp_path)).latest_step() == 3
  assert not partial.exists()


def test_restore_lands_in_requested_shardings(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  state = {'w': jnp.arange(32, dtype=jnp.float32).reshape(8, 4), 'b': jnp.ones((4,), jnp.bfloat16)}
  ckpt.save(0, state, meta={}, config={})
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:2]), ('data',))
  shardings = {'w': NamedSharding(mesh, PartitionSpec('data', None)), 'b': NamedSharding(mesh, PartitionSpec())}
  abstract = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=shardings[k]) for k, v in state.items()}
  got, _, _ = ckpt.restore(0, abstract)
  for name, value in got.items():
    assert value.sharding == shardings[name], name
  assert [s.data.shape for s in got['w'].addressable_shards] == [(4, 4), (4, 4)]
  _assert_trees_equal(got, state)


def test_saving_sharded_arrays_compiles_nothing_and_round_trips(tmp_path):
  """Arrays sharded over 8 devices (split and replicated) are fetched in one transfer, not by per-array
  slice programs; they come back equal, in the requested shardings."""
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:8]), ('fsdp',))
  split, whole = NamedSharding(mesh, PartitionSpec('fsdp')), NamedSharding(mesh, PartitionSpec())
  state = {f'w{i}': jax.device_put(np.arange(8 * (i + 1) * 3, dtype=np.float32).reshape(8 * (i + 1), 3),
                                   split if i % 2 else whole) for i in range(6)}
  state['b'] = jax.device_put(np.ones((16, 2), jnp.bfloat16), split)
  lowered = []  # a program lowered to MLIR: compiled, or looked up in the suite's compilation cache
  listener = lambda event, duration, **_: lowered.append(event) if event.endswith('to_mlir_module_duration') else None
  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    checkpoint.Checkpointer(str(tmp_path)).save(0, state, meta={}, config={})
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
  assert lowered == []
  got, _, _ = checkpoint.Checkpointer(str(tmp_path)).restore(0, {k: jax.ShapeDtypeStruct(
      v.shape, v.dtype, sharding=v.sharding) for k, v in state.items()})
  assert all(got[k].sharding == v.sharding for k, v in state.items())
  _assert_trees_equal(got, state)


def test_shape_mismatch_names_the_checkpoint(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  state = _state()
  ckpt.save(4, state, meta={}, config=CONFIG)
  abstract = _abstract(state)
  abstract['params']['w'] = jax.ShapeDtypeStruct((4, 8), jnp.float32, sharding=abstract['params']['w'].sharding)
  with pytest.raises(ValueError, match=fr'checkpoint {tmp_path}/4 does not fit.*params/w: saved \(4, 6\) '
                     r'!= requested \(4, 8\)'):
    ckpt.restore(4, abstract)


def test_structure_mismatch_names_the_checkpoint(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  state = _state()
  ckpt.save(4, state, meta={}, config=CONFIG)
  abstract = _abstract(state)
  abstract['extra'] = abstract.pop('count')
  with pytest.raises(ValueError, match=f'checkpoint {tmp_path}/4 does not fit'):
    ckpt.restore(4, abstract)


def test_missing_step_raises(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  ckpt.save(1, _state(), meta={}, config=CONFIG)
  with pytest.raises(FileNotFoundError, match=r'step 9 .*saved steps: \[1\]'):
    ckpt.restore(9, _abstract(_state()))


def test_saving_an_old_step_raises(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  ckpt.save(5, _state(), meta={}, config=CONFIG)
  with pytest.raises(ValueError, match='not newer'):
    ckpt.save(5, _state(), meta={}, config=CONFIG)


def test_incompatible_config_names_each_differing_key():
  current = {**CONFIG, 'model': {**CONFIG['model'], 'hidden_size': 128, 'heads': 4},
             'rollout': {**CONFIG['rollout'], 'num_generations': 8, 'temperature': 0.7}}
  keys = ('seed', 'model', 'rollout.num_generations', 'buckets')
  with pytest.raises(ValueError) as error:
    checkpoint.check_compatible(CONFIG, current, keys, where='workdir runs/x')
  message = str(error.value)
  assert message.startswith('workdir runs/x holds a checkpoint of an incompatible config: ')
  assert 'model.hidden_size 64 != 128' in message
  assert "model.heads '<missing>' != 4" in message
  assert 'rollout.num_generations 4 != 8' in message
  assert 'temperature' not in message and 'seed' not in message and 'buckets' not in message


def test_compatible_configs_pass():
  changed_elsewhere = {**CONFIG, 'rollout': {**CONFIG['rollout'], 'temperature': 0.1}, 'buckets': [32, 64]}
  checkpoint.check_compatible(CONFIG, changed_elsewhere, ('seed', 'model', 'rollout.num_generations', 'buckets'))
