"""The start-up memory estimate: exact shard bytes on the 8-fake-device mesh, KV cache formula."""

import jax
import numpy as np
import optax
import pytest
from flax import nnx

from rl_reason import models
from rl_reason.parallel import memory
from rl_reason.parallel import sharding as shd


def _tiny_state(mesh):
  model = models.create(models.get_preset('tiny_vl'), seed=0)
  _, params = nnx.split(model)
  shardings = shd.state_shardings(params, mesh)
  params = jax.device_put(params, shardings)
  tx = optax.adamw(1e-3)
  opt_shardings = shd.optimizer_shardings(tx, params, shardings, mesh)
  opt_state = jax.jit(tx.init, out_shardings=opt_shardings)(params)
  return model, params, shardings, opt_state, opt_shardings


def test_tree_bytes_matches_device_buffers():
  mesh = shd.make_mesh(shd.MeshConfig(data=2, fsdp=2, tensor=2))
  model, params, shardings, _, _ = _tiny_state(mesh)
  total, per_device = memory.tree_bytes(params, shardings)
  assert total == 4 * models.param_count(model)
  # The fullest device holds exactly what the estimate says: sum the real shard buffers on device 0.
  device0 = mesh.devices.flat[0]
  on_device0 = sum(s.data.nbytes for x in jax.tree.leaves(params) for s in x.addressable_shards
                   if s.device == device0)
  assert per_device == on_device0
  assert per_device < total  # fsdp and tensor really split something


def test_estimate_parts_and_kv_formula():
  mesh = shd.make_mesh(shd.MeshConfig(data=4, fsdp=1, tensor=2))
  _, params, shardings, opt_state, opt_shardings = _tiny_state(mesh)
  kv = memory.KVCacheSpec(layers=2, batch=64, slots=48, kv_heads=2, head_dim=32, dtype=np.float32)
  est = memory.estimate(params, shardings, opt_state, opt_shardings, kv, mesh, reference=True)
  assert est.parts['kv_cache'] == (2 * 2 * 64 * 48 * 2 * 32 * 4, 2 * 2 * 64 * 48 * 2 * 32 * 4 // 8)
  assert est.parts['reference'] == est.parts['params']
  # AdamW keeps two parameter-shaped moments (plus a step count).
  assert est.parts['optimizer'][0] >= 2 * est.parts['params'][0]
  assert est.per_device == sum(per for _, per in est.parts.values())
  text = est.format()
  assert 'kv_cache' in text and 'per device' in text and '8 device(s)' in text
  # Without a reference the part is absent; KV heads not divisible by tensor stay replicated.
  kv3 = memory.KVCacheSpec(layers=1, batch=8, slots=4, kv_heads=3, head_dim=8)
  est = memory.estimate(params, shardings, opt_state, opt_shardings, kv3, mesh, reference=False)
  assert 'reference' not in est.parts
  assert est.parts['kv_cache'][1] == est.parts['kv_cache'][0] // 4


def test_mismatched_shardings_tree_is_an_error():
  with pytest.raises(ValueError, match='leaves'):
    memory.tree_bytes({'a': np.zeros(3), 'b': np.zeros(2)}, {'a': None})
