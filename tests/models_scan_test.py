"""Scanned decoder layers and vision blocks (scan_layers) and rematerialisation (remat) against plain stacks.

A scanned model gets the plain model's weights stacked over layers (and over vision blocks);
logits, image embeddings, gradients (under every remat policy), the KV-cache prefill/decode path
and greedy sampling must agree, and a Hugging Face checkpoint must load into the stacked layout
(and save back out of it), for a text model and for Qwen2.5-VL.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx
from jax.sharding import PartitionSpec

import models_hf_test  # tiny random Qwen2.5-VL checkpoints and their inputs
from models_qwen2_5_vl_test import IMAGE, VISION_START, VOCAB as VL_VOCAB
from models_qwen2_5_vl_test import _batch as vl_batch  # rows: 2 images, 1 image, text only
from rl_reason import models, sampling
from rl_reason.models import config as model_config, convert, decoder as decoder_lib
from rl_reason.parallel import sharding as shd

VOCAB = 61
_TEXT = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_attention_heads=4, num_key_value_heads=2,
             rope_theta=100.0, mrope_section=None)
CASES = {
    # Sliding layers between full ones: under scan each layer picks its mask by index.
    'qwen2_sliding': dict(model_type='qwen2', sliding_window=3,
                          layer_types=('sliding_attention', 'full_attention', 'sliding_attention')),
    'qwen3_tied': dict(model_type='qwen3', attention_bias=False, head_dim=12, tie_word_embeddings=True),
}


def _config(case: str, layers: int = 3, **model_fields) -> model_config.ModelConfig:
  text = dict(_TEXT, num_hidden_layers=layers, **CASES[case])
  if text.get('layer_types'):
    text['layer_types'] = tuple(text['layer_types'][i % 3] for i in range(layers))
  return model_config.ModelConfig(text=model_config.TextConfig(**text), **model_fields)


def _stack_into(stacked: nnx.Module, plain_list) -> None:
  """Sets a scanned stack's [L, ...] params to the plain list's (slice i = module i); values only, so
  the LAYERS axis metadata stays."""
  plain_modules = [dict(nnx.to_flat_state(nnx.state(module, nnx.Param))) for module in plain_list]
  for path, var in nnx.to_flat_state(nnx.state(stacked, nnx.Param)):
    var.set_value(jnp.stack([module[path].get_value() for module in plain_modules]))


def _scanned_copy(plain: models.Model, remat: str = 'none') -> models.Model:
  """A scan_layers model holding the plain model's weights (layer i = slice i of the stacked params)."""
  scanned = models.create(plain.cfg.replace(scan_layers=True, remat=remat), seed=123)
  _stack_into(scanned.decoder.layers, plain.decoder.layers)
  scanned.decoder.embed_tokens.set_value(plain.decoder.embed_tokens.get_value())
  nnx.update(scanned.decoder.norm, nnx.state(plain.decoder.norm))
  if plain.decoder.lm_head is not None:
    nnx.update(scanned.decoder.lm_head, nnx.state(plain.decoder.lm_head))
  if plain.visual is not None:
    _stack_into(scanned.visual.blocks, plain.visual.blocks)
    for name in ('patch_embed', 'merger'):
      nnx.update(getattr(scanned.visual, name), nnx.state(getattr(plain.visual, name)))
  return scanned


def _batch(length: int = 9):
  rng = np.random.RandomState(0)
  ids = rng.randint(1, VOCAB, size=(3, length))
  mask = np.ones_like(ids)
  mask[1, :3] = 0  # left padding
  mask[2, :5] = 0
  return ids, mask


@pytest.fixture(scope='module', params=list(CASES))
def pair(request):
  plain = models.create(_config(request.param), seed=0)
  return request.param, plain, _scanned_copy(plain)


def test_scanned_parameters_are_stacked_with_a_layer_axis(pair):
  _, plain, scanned = pair
  layers = plain.cfg.text.num_hidden_layers
  kernel = scanned.decoder.layers.mlp.gate_proj.kernel
  assert kernel.shape == (layers, *plain.decoder.layers[0].mlp.gate_proj.kernel.shape)
  assert kernel.get_metadata()['logical_axes'] == (shd.LAYERS, shd.EMBED, shd.MLP)
  mesh = shd.make_mesh(shd.MeshConfig(data=1, fsdp=2, tensor=4))
  shardings = shd.state_shardings(nnx.state(scanned, nnx.Param), mesh)
  assert shardings['decoder']['layers']['mlp']['gate_proj']['kernel'].get_value().spec == PartitionSpec(None, 'fsdp', 'tensor')
  assert models.param_count(scanned) == models.param_count(plain)


def test_scanned_logits_equal_plain(pair):
  name, plain, scanned = pair
  ids, mask = _batch()
  expected = np.asarray(models.forward(plain, ids, mask))
  got = np.asarray(models.forward(scanned, ids, mask))
  real = mask.astype(bool)
  np.testing.assert_allclose(got[real], expected[real], atol=1e-5, err_msg=name)
  # The weights matter: a scanned model with its own random init gives other logits.
  other = models.create(plain.cfg.replace(scan_layers=True), seed=7)
  assert np.abs(np.asarray(models.forward(other, ids, mask))[real] - expected[real]).max() > 1e-2


def _loss_and_grad(model: models.Model, ids, mask):
  inputs = models.prepare_inputs(model.cfg, ids, mask)
  weights = jax.random.normal(jax.random.key(0), (*ids.shape, VOCAB)) * mask[..., None]
  graphdef, params = nnx.split(model)

  def loss(params):
    logits, _ = nnx.merge(graphdef, params)(inputs['input_ids'], inputs['positions'], inputs['attention_mask'])
    return jnp.sum(logits * weights)

  return loss, jax.jit(jax.value_and_grad(loss)), params


def _stack_layer_grads(grads: nnx.State, layers: int) -> dict:
  flat = {'.'.join(map(str, path)): v.get_value() for path, v in nnx.to_flat_state(grads)}
  out = {}
  for path, value in flat.items():
    parts = path.split('.')
    if parts[:2] == ['decoder', 'layers']:
      out.setdefault('.'.join(parts[:2] + parts[3:]), [None] * layers)[int(parts[2])] = value
    else:
      out[path] = value
  return {k: np.stack(v) if isinstance(v, list) else np.asarray(v) for k, v in out.items()}


@pytest.mark.parametrize('scan', [False, True])
@pytest.mark.parametrize('remat', model_config.REMAT)
def test_gradients_equal_plain_under_every_remat(remat, scan):
  plain = models.create(_config('qwen2_sliding'), seed=0)
  ids, mask = _batch()
  _, value_and_grad, params = _loss_and_grad(plain, ids, mask)
  value, grads = value_and_grad(params)
  expected = _stack_layer_grads(grads, plain.cfg.text.num_hidden_layers)

  variant = (_scanned_copy(plain, remat) if scan else
             models.create(plain.cfg.replace(remat=remat), seed=0))  # same seed: same weights
  loss_fn, variant_grad, variant_params = _loss_and_grad(variant, ids, mask)
  got_value, got_grads = variant_grad(variant_params)
  if scan:
    got = {'.'.join(map(str, path)): np.asarray(v.get_value()) for path, v in nnx.to_flat_state(got_grads)}
  else:
    got = _stack_layer_grads(got_grads, plain.cfg.text.num_hidden_layers)
  assert set(got) == set(expected)
  np.testing.assert_allclose(got_value, value, rtol=1e-5)
  for key in expected:
    np.testing.assert_allclose(got[key], expected[key], rtol=1e-4, atol=1e-5, err_msg=key)
  assert np.abs(expected['decoder.layers.self_attn.q_proj.kernel']).max() > 0

  # The option is really applied: the traced program holds a checkpoint with the policy / a scan.
  eqns = list(_all_eqns(jax.make_jaxpr(loss_fn)(variant_params).jaxpr))
  policies = [e.params['policy'] for e in eqns if e.primitive.name in ('checkpoint', 'remat2', 'remat')]
  layers = plain.cfg.text.num_hidden_layers
  if remat == 'none':
    assert not policies
  else:
    assert policies and all(p is decoder_lib.REMAT_POLICIES[remat] for p in policies)
    assert len(policies) == (1 if scan else layers)
  scans = [e for e in eqns if e.primitive.name == 'scan']
  assert [e.params['length'] for e in scans] == ([layers] if scan else [])


def _all_eqns(jaxpr):
  for eqn in jaxpr.eqns:
    yield eqn
    for value in eqn.params.values():
      for sub in value if isinstance(value, (tuple, list)) else (value,):
        inner = getattr(sub, 'jaxpr', sub)
        if hasattr(inner, 'eqns'):
          yield from _all_eqns(inner)


def test_traced_program_is_flat_in_depth_with_scan():
  """Compile time follows program size: with scan it does not grow with the number of layers."""

  def size(layers, scan):
    model = models.create_abstract(_config('qwen2_sliding', layers=layers, scan_layers=scan))
    ids, mask = _batch()
    inputs = models.prepare_inputs(model.cfg, ids, mask)
    graphdef, params = nnx.split(model)
    fn = lambda p: nnx.merge(graphdef, p)(inputs['input_ids'], inputs['positions'], inputs['attention_mask'])[0]
    return len(list(_all_eqns(jax.make_jaxpr(fn)(params).jaxpr)))

  assert size(2, True) == size(8, True)
  assert size(8, False) - size(2, False) == 3 * (size(4, False) - size(2, False)) > 0  # linear in depth


def _decode_steps(model: models.Model, ids, mask, steps: int = 3, per_row: bool = False):
  """Prefill into a cache, then `steps` single-token decodes; all logits and the final cache.

  per_row: pass [B] write indices (a scatter) instead of one shared scalar (a dynamic_update_slice).
  """
  cfg = model.cfg.text
  batch, length = ids.shape
  inputs = models.prepare_inputs(model.cfg, ids, mask)
  cache = decoder_lib.init_cache(cfg, batch, length + steps, stacked=model.cfg.scan_layers)
  graphdef, state = nnx.split(model)

  @jax.jit
  def call(state, input_ids, positions, attention_mask, cache, write_index):
    return nnx.merge(graphdef, state)(input_ids, positions, attention_mask, cache=cache, write_index=write_index)

  logits, cache = call(state, inputs['input_ids'], inputs['positions'], inputs['attention_mask'], cache,
                       jnp.zeros((batch,), jnp.int32) if per_row else jnp.int32(0))
  outs = [logits[:, -1]]
  next_pos = inputs['positions'][:, :, -1:] + 1
  for step in range(steps):
    token = jnp.argmax(outs[-1], axis=-1)[:, None].astype(jnp.int32)
    logits, cache = call(state, token, next_pos + step, jnp.ones((batch, 1), jnp.int32), cache,
                         jnp.full((batch,), length + step, jnp.int32) if per_row else jnp.int32(length + step))
    outs.append(logits[:, -1])
  return np.stack([np.asarray(o) for o in outs], 1), cache


def test_kv_cache_decode_equals_plain(pair):
  name, plain, scanned = pair
  ids, mask = _batch()
  expected_logits, expected_cache = _decode_steps(plain, ids, mask)
  got_logits, got_cache = _decode_steps(scanned, ids, mask)
  np.testing.assert_allclose(got_logits, expected_logits, atol=1e-5, err_msg=name)
  # The scanned stack keeps one [L, B, K, S, H] array, the plain one a tuple of L [B, K, S, H] arrays.
  assert got_cache['k'].shape == (3, 3, 2, plain.cfg.text.dim_per_head, 12) and len(expected_cache['k']) == 3
  for key in ('k', 'v', 'valid'):
    np.testing.assert_allclose(np.asarray(got_cache[key]), np.stack(expected_cache[key]) if key != 'valid' else
                               np.asarray(expected_cache[key]), atol=1e-5)
  # Every layer wrote its own keys (not one layer's keys everywhere).
  assert np.abs(np.asarray(got_cache['k'][0] - got_cache['k'][1])).max() > 1e-3


def test_per_row_write_indices_equal_a_shared_one(pair):
  for model in pair[1:]:
    ids, mask = _batch()
    shared_logits, shared_cache = _decode_steps(model, ids, mask)
    row_logits, row_cache = _decode_steps(model, ids, mask, per_row=True)
    np.testing.assert_allclose(row_logits, shared_logits, atol=1e-6)
    for a, b in zip(jax.tree.leaves(row_cache), jax.tree.leaves(shared_cache)):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


def test_greedy_sampling_equals_plain(pair):
  name, plain, scanned = pair
  ids, mask = _batch()
  expected = sampling.generate(plain, ids, mask, max_new_tokens=6)
  got = sampling.generate(scanned, ids, mask, max_new_tokens=6)
  np.testing.assert_array_equal(np.asarray(got.tokens), np.asarray(expected.tokens), err_msg=name)
  np.testing.assert_allclose(np.asarray(got.logprobs), np.asarray(expected.logprobs), atol=1e-5)


def test_vision_language_model_scanned_equals_plain():
  """Qwen2.5-VL: image tokens merged into the stream, multimodal rotary positions, then the scanned stack."""
  cfg = model_config.ModelConfig(
      text=model_config.TextConfig(vocab_size=VL_VOCAB, hidden_size=48, intermediate_size=80, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0,
                                   mrope_section=(2, 2, 2)),
      vision=model_config.VisionConfig(depth=3, hidden_size=32, intermediate_size=40, num_heads=2, patch_size=4,
                                       window_size=16, fullatt_block_indexes=(1,), out_hidden_size=48),
      image_token_id=IMAGE, vision_start_token_id=VISION_START)
  plain = models.create(cfg, seed=1)
  scanned = _scanned_copy(plain, remat='dots_saveable')
  ids, mask, pixels, grids = vl_batch()
  expected = np.asarray(models.forward(plain, ids, mask, pixel_values=pixels, image_grid_thw=grids))
  got = np.asarray(models.forward(scanned, ids, mask, pixel_values=pixels, image_grid_thw=grids))
  real = mask.astype(bool)
  np.testing.assert_allclose(got[real], expected[real], atol=1e-5)


# ----------------------------------------------------------------------------- vision blocks, scanned

_VISION = {
    # Window blocks around a full-attention block: under scan each block picks its segments by flag.
    'qwen2_5_vl': dict(model_type='qwen2_5_vl', depth=3, hidden_size=32, intermediate_size=40, num_heads=2,
                       patch_size=4, window_size=16, fullatt_block_indexes=(1,), out_hidden_size=48),
    # LayerNorm and a plain MLP; every block full attention.
    'qwen2_vl': dict(model_type='qwen2_vl', depth=3, hidden_size=32, intermediate_size=64, num_heads=2,
                     patch_size=4, window_size=None, fullatt_block_indexes=(), hidden_act='quick_gelu',
                     out_hidden_size=48),
}


def _vl_config(tower: str, **model_fields) -> model_config.ModelConfig:
  return model_config.ModelConfig(
      text=model_config.TextConfig(vocab_size=VL_VOCAB, hidden_size=48, intermediate_size=80, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0,
                                   mrope_section=(2, 2, 2)),
      vision=model_config.VisionConfig(**_VISION[tower]), image_token_id=IMAGE, vision_start_token_id=VISION_START,
      **model_fields)


def _vision_inputs(cfg: model_config.ModelConfig):
  ids, mask, pixels, grids = vl_batch()
  return models.prepare_inputs(cfg, ids, mask, pixels, grids)['vision']


def _image_embeds(model: models.Model, vision) -> np.ndarray:
  graphdef, state = nnx.split(model)
  return np.asarray(jax.jit(lambda state, vision: nnx.merge(graphdef, state).encode_images(vision))(state, vision))


@pytest.mark.parametrize('tower', list(_VISION))
def test_scanned_vision_tower_equals_plain(tower):
  plain = models.create(_vl_config(tower), seed=1)
  scanned = _scanned_copy(plain)
  blocks = scanned.visual.blocks
  depth = plain.cfg.vision.depth
  assert blocks.attn.qkv.kernel.shape == (depth, *plain.visual.blocks[0].attn.qkv.kernel.shape)
  assert blocks.attn.qkv.kernel.get_metadata()['logical_axes'] == (shd.LAYERS, shd.EMBED, shd.HEADS)
  assert models.param_count(scanned) == models.param_count(plain)
  vision = _vision_inputs(plain.cfg)
  expected = _image_embeds(plain, vision)
  got = _image_embeds(scanned, vision)
  assert expected.shape == got.shape and np.abs(expected).max() > 1e-2
  np.testing.assert_allclose(got, expected, atol=1e-5, err_msg=tower)
  if tower == 'qwen2_5_vl':
    # The per-block flag matters: the same weights with every block full attention give other embeddings.
    all_full = plain.cfg.replace(vision=dataclasses.replace(plain.cfg.vision, fullatt_block_indexes=(0, 1, 2)))
    assert np.abs(_image_embeds(models.create(all_full, seed=1), vision) - expected).max() > 1e-3
    assert scanned.visual.full_attention() == (False, True, False)
  else:
    assert scanned.visual.full_attention() == (True,) * depth


def _vision_loss(model: models.Model, vision):
  graphdef, params = nnx.split(model, nnx.Param)
  shape = jax.eval_shape(lambda p: nnx.merge(graphdef, p).encode_images(vision), params).shape
  weights = jax.random.normal(jax.random.key(1), shape)

  def loss(params):
    return jnp.sum(nnx.merge(graphdef, params).encode_images(vision) * weights)

  return loss, params


@pytest.fixture(scope='module')
def vision_gradients():
  """The plain tower's loss and vision gradients, stacked as blocks.X [depth, ...] (computed once)."""
  plain = models.create(_vl_config('qwen2_5_vl'), seed=1)
  vision = _vision_inputs(plain.cfg)
  loss, params = _vision_loss(plain, vision)
  value, grads = jax.jit(jax.value_and_grad(loss))(params)
  depth = plain.cfg.vision.depth
  expected = {}
  for path, grad in nnx.to_flat_state(grads['visual']):  # blocks.{i}.X -> blocks.X [depth, ...]
    path, grad = [str(p) for p in path], np.asarray(grad.get_value())
    if path[0] == 'blocks':
      expected.setdefault('.'.join(['blocks'] + path[2:]), [None] * depth)[int(path[1])] = grad
    else:
      expected['.'.join(path)] = grad
  return plain, vision, value, {k: np.stack(v) if isinstance(v, list) else v for k, v in expected.items()}


@pytest.mark.parametrize('remat', model_config.REMAT)
def test_scanned_vision_gradients_equal_plain_under_every_remat(remat, vision_gradients):
  plain, vision, value, expected = vision_gradients
  scanned_loss, scanned_params = _vision_loss(_scanned_copy(plain, remat), vision)
  got_value, got_grads = jax.jit(jax.value_and_grad(scanned_loss))(scanned_params)
  got = {'.'.join(map(str, p)): np.asarray(v.get_value()) for p, v in nnx.to_flat_state(got_grads['visual'])}
  assert set(got) == set(expected)
  np.testing.assert_allclose(got_value, value, rtol=1e-5)
  for key in expected:
    np.testing.assert_allclose(got[key], expected[key], rtol=1e-4, atol=1e-5, err_msg=key)
  assert np.abs(expected['blocks.attn.qkv.kernel']).max() > 0

  # The option is really applied: one scan over the blocks, holding one checkpoint with the policy.
  eqns = list(_all_eqns(jax.make_jaxpr(scanned_loss)(scanned_params).jaxpr))
  assert [e.params['length'] for e in eqns if e.primitive.name == 'scan'] == [plain.cfg.vision.depth]
  policies = [e.params['policy'] for e in eqns if e.primitive.name in ('checkpoint', 'remat2', 'remat')]
  assert policies == ([] if remat == 'none' else [decoder_lib.REMAT_POLICIES[remat]])
  # Unrolled blocks: one checkpoint per block (traced only; the policies' gradients are JAX's).
  unrolled_loss, unrolled_params = _vision_loss(models.create(plain.cfg.replace(remat=remat), seed=1), vision)
  policies = [e.params['policy'] for e in _all_eqns(jax.make_jaxpr(unrolled_loss)(unrolled_params).jaxpr)
              if e.primitive.name in ('checkpoint', 'remat2', 'remat')]
  assert policies == ([] if remat == 'none' else [decoder_lib.REMAT_POLICIES[remat]] * plain.cfg.vision.depth)


def test_from_pretrained_vision_language_into_the_scanned_layout(tmp_path):
  """Qwen2.5-VL: decoder layers and vision blocks stacked on load, logits as transformers', saved back out."""
  hf, path = models_hf_test._vl_hf(tmp_path)  # pylint: disable=protected-access
  mesh = shd.make_mesh(shd.MeshConfig(data=1, fsdp=2, tensor=2), jax.devices()[:4])
  ours = models.from_pretrained(path, mesh=mesh, scan_layers=True, remat='full')
  qkv = ours.visual.blocks.attn.qkv.kernel.get_value()
  assert qkv.shape == (2, 32, 96) and qkv.sharding.spec == PartitionSpec(None, 'fsdp', 'tensor')
  state = {convert.canonical_hf_name(k): v.detach().numpy() for k, v in hf.state_dict().items()}
  for i in range(2):  # block i of the stack is checkpoint block i, transposed to [in, out]
    np.testing.assert_array_equal(np.asarray(qkv[i]), state[f'visual.blocks.{i}.attn.qkv.weight'].T)
  ids, mask, pixels, grids = models_hf_test._vl_inputs()  # pylint: disable=protected-access
  got = np.asarray(models.forward(ours, ids, mask, pixel_values=pixels, image_grid_thw=grids))
  real = mask.astype(bool)
  hf_logits = models_hf_test._hf_logits  # pylint: disable=protected-access
  assert np.abs(got[real] - hf_logits(hf, ids, mask, pixels, grids)[real]).max() < 1e-4

  out = str(tmp_path / 'ours')
  models.save_pretrained(ours, out)
  reloaded = transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained(out).eval()
  assert np.abs(got[real] - hf_logits(reloaded, ids, mask, pixels, grids)[real]).max() < 1e-4
  again = models.from_pretrained(out, scan_layers=True)
  np.testing.assert_array_equal(np.asarray(again.visual.blocks.attn.qkv.kernel.get_value()), np.asarray(qkv))

  # A bad block tensor is named with the stacked parameter and its block index.
  target = models.create_abstract(ours.cfg)
  broken = dict(state, **{'visual.blocks.1.norm2.weight': np.zeros(3, np.float32)})
  with pytest.raises(ValueError, match=r'visual.blocks.1.norm2.weight.*visual.blocks.norm2.weight\[1\]'):
    convert.load_hf_tensors(target, broken)
  del broken['visual.blocks.1.norm2.weight']
  with pytest.raises(ValueError, match=r'missing \[.visual.blocks.1.norm2.weight.\]'):
    convert.load_hf_tensors(target, broken)


def test_remat_is_read_per_call_and_scan_layers_is_the_layout():
  """train.py sets cfg fields on a loaded model (as it does for dtype): remat follows, a layout change fails."""
  model = models.create(_config('qwen3_tied'), seed=0)
  ids, mask = _batch()
  loss_fn, _, params = _loss_and_grad(model, ids, mask)
  assert not [e for e in _all_eqns(jax.make_jaxpr(loss_fn)(params).jaxpr)
              if e.primitive.name in ('checkpoint', 'remat2', 'remat')]
  model.cfg = model.cfg.replace(remat='minimal')
  loss_fn, _, params = _loss_and_grad(model, ids, mask)
  policies = [e.params['policy'] for e in _all_eqns(jax.make_jaxpr(loss_fn)(params).jaxpr)
              if e.primitive.name in ('checkpoint', 'remat2', 'remat')]
  assert policies == [decoder_lib.REMAT_POLICIES['minimal']] * model.cfg.text.num_hidden_layers
  model.cfg = model.cfg.replace(scan_layers=True)
  with pytest.raises(ValueError, match='built with scan_layers=False'):
    models.forward(model, ids, mask)


def test_remat_names_match_the_policy_registry():
  assert set(model_config.REMAT) == {'none', *decoder_lib.REMAT_POLICIES}
  with pytest.raises(ValueError, match="remat 'offload' is not supported"):
    _config('qwen2_sliding', remat='offload')


# ----------------------------------------------------------------------------- HF checkpoints, scanned


@pytest.fixture(scope='module')
def hf_checkpoint(tmp_path_factory):
  threads = torch.get_num_threads()
  torch.set_num_threads(1)  # transformers next to XLA's thread pools on 2 cores
  torch.manual_seed(0)
  hf = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(
      vocab_size=71, hidden_size=40, intermediate_size=56, num_hidden_layers=3, num_attention_heads=4,
      num_key_value_heads=2, use_sliding_window=True, sliding_window=4,
      layer_types=['sliding_attention', 'full_attention', 'sliding_attention'], initializer_range=0.1)).eval()
  path = str(tmp_path_factory.mktemp('qwen2') / 'hf')
  hf.save_pretrained(path)
  yield hf, path
  torch.set_num_threads(threads)


def _hf_logits(hf, ids, mask):
  with torch.no_grad():
    return hf(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
              position_ids=torch.tensor(np.maximum(np.cumsum(mask, 1) - 1, 0))).logits.numpy()


def _text_batch():
  ids = np.random.RandomState(1).randint(3, 71, size=(2, 8))
  mask = (np.arange(8)[None] >= np.array([[3], [0]])).astype(np.int64)
  return ids, mask


def test_from_pretrained_into_the_scanned_layout(hf_checkpoint, tmp_path):
  hf, path = hf_checkpoint
  mesh = shd.make_mesh(shd.MeshConfig(data=1, fsdp=2, tensor=2), jax.devices()[:4])
  ours = models.from_pretrained(path, mesh=mesh, scan_layers=True, remat='full')
  assert (ours.cfg.scan_layers, ours.cfg.remat) == (True, 'full')
  q = ours.decoder.layers.self_attn.q_proj.kernel.get_value()
  assert q.shape == (3, 40, 40) and q.sharding.spec == PartitionSpec(None, 'fsdp', 'tensor')
  state = {k: v.detach().numpy() for k, v in hf.state_dict().items()}
  for i in range(3):  # layer i of the stack is checkpoint layer i, transposed to [in, out]
    np.testing.assert_array_equal(np.asarray(q[i]), state[f'model.layers.{i}.self_attn.q_proj.weight'].T)
  ids, mask = _text_batch()
  got = np.asarray(models.forward(ours, ids, mask))
  real = mask > 0
  assert np.abs(got[real] - _hf_logits(hf, ids, mask)[real]).max() < 1e-4
  plain = models.from_pretrained(path)
  np.testing.assert_allclose(got[real], np.asarray(models.forward(plain, ids, mask))[real], atol=1e-5)

  out = str(tmp_path / 'ours')
  models.save_pretrained(ours, out)
  reloaded = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
  assert np.abs(got[real] - _hf_logits(reloaded, ids, mask)[real]).max() < 1e-4


def test_scanned_loading_names_bad_layer_tensors(hf_checkpoint):
  hf, _ = hf_checkpoint
  tensors = {k: v.detach().numpy() for k, v in hf.state_dict().items()}
  target = models.create_abstract(models.config_from_hf(hf.config.to_dict()).replace(scan_layers=True))
  broken = dict(tensors)
  del broken['model.layers.1.mlp.up_proj.weight']
  with pytest.raises(ValueError, match=r'missing \[.model.layers.1.mlp.up_proj.weight.\]'):
    convert.load_hf_tensors(target, broken)
  broken = dict(tensors, **{'model.layers.2.input_layernorm.weight': np.zeros(3, np.float32)})
  with pytest.raises(ValueError, match=r'layers.2.input_layernorm.weight.*decoder.layers.input_layernorm.weight\[2\]'):
    convert.load_hf_tensors(target, broken)
  broken = dict(tensors, **{'model.layers.3.mlp.up_proj.weight': tensors['model.layers.0.mlp.up_proj.weight']})
  with pytest.raises(ValueError, match=r'unexpected \[.model.layers.3.mlp.up_proj.weight.\]'):
    convert.load_hf_tensors(target, broken)


def test_config_fields_are_not_written_to_config_json():
  cfg = _config('qwen3_tied', scan_layers=True, remat='minimal')
  written = models.config_to_hf(cfg)
  assert 'scan_layers' not in written and 'remat' not in written
  assert models.config_from_hf(written) == dataclasses.replace(cfg, scan_layers=False, remat='none')


def _dot_flops(jaxpr) -> int:
  """2 x multiply-adds of every dot_general in a jaxpr, a scan's body counted once per iteration."""
  total = 0
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == 'dot_general':
      (contracting, _), _ = eqn.params['dimension_numbers']
      lhs = eqn.invars[0].aval.shape
      total += 2 * math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in contracting)
    for value in eqn.params.values():
      for sub in value if isinstance(value, (tuple, list)) else (value,):
        inner = getattr(sub, 'jaxpr', sub)
        if hasattr(inner, 'eqns'):
          total += _dot_flops(inner) * (eqn.params['length'] if eqn.primitive.name == 'scan' else 1)
  return total


@pytest.mark.parametrize('use_cache', [False, True])
def test_hidden_slice_equals_slicing_every_hidden_state_and_skips_the_last_layers_work(pair, use_cache):
  name, plain, scanned = pair
  ids, mask = _batch()
  rows, length = ids.shape
  text = plain.cfg.text
  inputs = models.prepare_inputs(plain.cfg, ids, mask)

  def run(model, hidden_slice):
    cache = (decoder_lib.init_cache(text, rows, length + 2, stacked=model.cfg.scan_layers) if use_cache else None)
    graphdef, state = nnx.split(model)
    fn = jax.jit(lambda state, *args: nnx.merge(graphdef, state).hidden_states(
        *args, cache=cache, write_index=jnp.int32(0) if use_cache else None, hidden_slice=hidden_slice))
    args = (state, inputs['input_ids'], inputs['positions'], inputs['attention_mask'])
    return fn(*args), _dot_flops(jax.make_jaxpr(fn)(*args).jaxpr)

  for model in (plain, scanned):
    (full, full_cache), full_flops = run(model, None)
    for piece in (slice(-1, None), slice(2, 6)):
      (got, got_cache), flops = run(model, piece)
      np.testing.assert_allclose(got, full[:, piece], atol=1e-5, err_msg=f'{name} {piece}')
      if use_cache:  # every token's keys and values are still written
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, err_msg=name), got_cache, full_cache)
      # The last layer's query and output projections, attention and MLP ran for the sliced tokens alone.
      skipped = length - len(range(length)[piece])
      heads_dim, slots = text.num_attention_heads * text.dim_per_head, length + 2 * use_cache
      saved = 2 * rows * skipped * (2 * text.hidden_size * heads_dim + 3 * text.hidden_size * text.intermediate_size
                                    + 2 * heads_dim * slots)
      assert full_flops - flops == saved, (name, piece, full_flops, flops, saved)
