"""The sampler on the 8-fake-device mesh (data 2 x fsdp 2 x tensor 2) equals the 1-device sampler."""

import jax
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from rl_reason import models, sampling
from rl_reason.models import config as model_config
from rl_reason.parallel import sharding as shd
from rl_reason.sampling import sampler as sampler_lib


@pytest.fixture(scope='module')
def model():
  cfg = model_config.ModelConfig(text=model_config.TextConfig(
      vocab_size=96, hidden_size=48, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
      num_key_value_heads=2, rope_theta=10000.0, mrope_section=None, tie_word_embeddings=False))
  return models.create(cfg, seed=5)


@pytest.fixture(scope='module')
def mesh():
  assert len(jax.devices()) == 8, 'tests/conftest.py sets 8 CPU devices'
  return shd.make_mesh(shd.MeshConfig(data=2, fsdp=2, tensor=2))


def _prompts():
  rng = np.random.RandomState(1)
  lengths = [9, 4, 7, 2, 9, 5]
  ids = np.zeros((6, 9), np.int32)
  mask = np.zeros_like(ids)
  for r, n in enumerate(lengths):
    ids[r, 9 - n:] = rng.randint(1, 96, n)
    mask[r, 9 - n:] = 1
  return ids, mask


@pytest.mark.parametrize('temperature', [0.0, 1.0])
def test_sharded_generation_equals_one_device(model, mesh, temperature):
  ids, mask = _prompts()
  kw = dict(max_new_tokens=20, temperature=temperature, rng=3, num_samples=2, return_entropy=True)
  single = sampling.generate(model, ids, mask, **kw)
  sharded = sampling.generate(model, ids, mask, mesh=mesh, **kw)
  np.testing.assert_array_equal(np.asarray(sharded.tokens), np.asarray(single.tokens))
  np.testing.assert_allclose(np.asarray(sharded.logprobs), np.asarray(single.logprobs), atol=1e-5)
  np.testing.assert_allclose(np.asarray(sharded.entropy), np.asarray(single.entropy), atol=1e-5)
  assert len(set(np.asarray(single.tokens).ravel().tolist())) > 5  # not a degenerate generation


def test_decode_state_is_laid_out_on_the_mesh(model, mesh):
  ids, mask = _prompts()
  ids, mask = ids[:4], mask[:4]  # 4 prompts: divisible by data x fsdp
  sampler = sampling.get_sampler(model, mesh=mesh)
  _, params = nnx.split(model)
  params = jax.device_put(params, shd.state_shardings(params, mesh))
  prompt = shd.host_to_global(models.prepare_inputs(model.cfg, ids, mask), mesh)
  cfg = sampling.SamplingConfig(max_new_tokens=8, temperature=1.0, num_samples=2, kv_stages=1)
  state = sampler.prefill(params, prompt, 0, cfg)
  rows = ('data', 'fsdp')
  laid_out = lambda x, *spec: x.sharding.is_equivalent_to(NamedSharding(mesh, P(*spec)), x.ndim)
  assert all(laid_out(k, rows, 'tensor', None, None) for k in state.cache['k']), state.cache['k'][0].sharding
  assert laid_out(state.cache['valid'], rows, None) and laid_out(state.tokens, rows, None)
  final = sampler.decode(params, state, cfg)
  assert all(laid_out(v, rows, 'tensor', None, None) for v in final.cache['v']), final.cache['v'][0].sharding
  assert laid_out(final.logprobs, rows, None) and laid_out(final.lengths, rows)
  # Each device holds a quarter of the rows and half of the KV heads.
  shard = final.cache['k'][0].addressable_shards[0].data
  assert len(final.cache['k']) == 2 and shard.shape == (8 // 4, 1, 12, 9 + 8)


def test_the_loop_exits_within_a_few_steps_of_the_last_row_on_a_mesh(model, mesh):
  """On several devices the all-rows-finished reduction runs every STEPS_PER_EXIT_CHECK steps: the
  tokens are those of one device, and the loop stops at most that many steps late, not at the limit."""
  ids, mask = _prompts()
  free = np.asarray(sampling.generate(model, ids, mask, max_new_tokens=40).tokens)
  eos = tuple(int(t) for t in set(free[:, 2]))  # every row ends by its third token
  kw = dict(max_new_tokens=40, eos_token_ids=eos)
  single = sampling.generate(model, ids, mask, **kw)
  sharded = sampling.generate(model, ids, mask, mesh=mesh, **kw)
  np.testing.assert_array_equal(np.asarray(sharded.tokens), np.asarray(single.tokens))
  np.testing.assert_array_equal(np.asarray(sharded.lengths), np.asarray(single.lengths))
  longest = int(np.asarray(single.lengths).max())
  assert np.asarray(single.finished).all() and longest <= 3 and int(single.steps) == longest
  assert sampling.get_sampler(model, mesh=mesh).steps_per_exit_check == sampler_lib.STEPS_PER_EXIT_CHECK > 1
  heads_only = shd.make_mesh(shd.MeshConfig(data=1, tensor=2, num_devices=2))  # rows not split: no reduction
  assert sampling.get_sampler(model, mesh=heads_only).steps_per_exit_check == 1
  assert longest <= int(sharded.steps) < longest + sampler_lib.STEPS_PER_EXIT_CHECK
