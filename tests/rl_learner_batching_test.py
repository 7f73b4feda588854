"""Mini-batches, gradient accumulation, chunked log-probs and bf16 compute of the learner.

Gradient accumulation over micro-batches equals one pass over the mini-batch (loss, gradient and
every metric); a mini-batch gathers whole groups in a seeded order; log-probs computed chunk by
chunk equal the full-logits path in value and gradient and never hold the full logits; bf16
activations over float32 master weights keep the weights, optimiser state and log-softmax float32.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from rl_reason import models
from rl_reason.models import config as model_config
from rl_reason.parallel import sharding as shd
from rl_reason.rl import learner as learner_lib
from rl_reason.rl import losses

IMAGE, G, PROMPTS, N = 60, 4, 2, 6  # B = 8 completions


def _vl_cfg():
  return model_config.ModelConfig(
      text=model_config.TextConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0,
                                   mrope_section=(2, 1, 1)),
      vision=model_config.VisionConfig(depth=2, hidden_size=16, intermediate_size=24, num_heads=2, patch_size=4,
                                       window_size=8, fullatt_block_indexes=(1,), out_hidden_size=32),
      image_token_id=IMAGE, vision_start_token_id=61)


def _text_cfg(vocab=64, dtype='float32'):
  return model_config.ModelConfig(
      text=model_config.TextConfig(vocab_size=vocab, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0,
                                   mrope_section=(2, 1, 1)),
      dtype=dtype)


def _batch(cfg, prompts=PROMPTS, groups=G, new_tokens=N, seed=0, lengths=None):
  """A rollout batch with per-row old / ref / sampler log-probs, rewards, IoU and truncation flags."""
  rng = np.random.RandomState(seed)
  vision = cfg.vision is not None
  ids = np.zeros((prompts, 12), np.int64)
  mask = np.zeros((prompts, 12), np.int64)
  for p in range(prompts):
    row = ([1, 61] + [IMAGE] * 4 if vision else [1]) + list(rng.randint(2, 50, size=2 + p % 3))
    ids[p, -len(row):] = row
    mask[p, -len(row):] = 1
  if vision:
    grids = np.array([[1, 4, 4]] * prompts)
    pixels = rng.randn(int(grids.prod(1).sum()), cfg.vision.patch_dim).astype(np.float32)
    prompt = models.prepare_inputs(cfg, ids, mask, pixels, grids)
  else:
    prompt = models.prepare_inputs(cfg, ids, mask)
  rows = prompts * groups
  tokens = rng.randint(2, min(50, cfg.text.vocab_size), size=(rows, new_tokens)).astype(np.int32)
  if lengths is None:
    lengths = rng.randint(1, new_tokens + 1, size=rows)
  completion_mask = (np.arange(new_tokens)[None] < np.asarray(lengths)[:, None]).astype(np.int32)
  noise = lambda scale: rng.normal(0, scale, (rows, new_tokens)).astype(np.float32)
  return dict(prompt=prompt, tokens=tokens, completion_mask=completion_mask,
              advantages=rng.randn(rows).astype(np.float32), rewards=rng.rand(rows).astype(np.float32),
              iou=rng.rand(rows).astype(np.float32), truncated=rng.rand(rows) < 0.25,
              _noise=(noise(0.3), noise(0.1), noise(0.2)))


def _with_logprobs(learner, params, batch):
  """old / ref / sampler log-probs near the current ones (ratios off 1, clipping active)."""
  batch = dict(batch)
  old_noise, ref_noise, sampler_noise = batch.pop('_noise')
  logp = learner.logprobs(params, batch)
  batch['old_logprobs'] = logp + old_noise
  batch['ref_logprobs'] = logp + ref_noise
  batch['sampler_logprobs'] = batch['old_logprobs'] + sampler_noise
  return batch


def _learner(graphdef, loss, tx=None, mesh=None, **settings):
  tx = tx or optax.identity()  # the update is the gradient itself
  kwargs = dict(replicated=shd.replicated(mesh), mesh=mesh) if mesh is not None else {}
  return learner_lib.Learner(graphdef, tx, tx, learner_lib.LearnerSettings(G, 0.8, loss, **settings), **kwargs)


def _grads_and_metrics(learner, params, batch):
  params_in = jax.tree.map(jnp.copy, params)  # rl_update donates its inputs
  new, _, metrics = learner.rl_update(params_in, optax.identity().init(params_in), batch)
  grads = jax.tree.map(lambda a, b: np.asarray(a, np.float64) - np.asarray(b, np.float64), new, params)
  return grads, {k: float(v) for k, v in jax.device_get(metrics).items()}


def _assert_same(got, expected, grad_tol=2e-6, label=''):
  (grads_a, metrics_a), (grads_b, metrics_b) = got, expected
  assert set(metrics_a) == set(metrics_b), label
  for key in metrics_b:
    np.testing.assert_allclose(metrics_a[key], metrics_b[key], rtol=2e-5, atol=1e-6, err_msg=f'{label} {key}')
  scale = max(np.abs(g).max() for g in jax.tree.leaves(grads_b))
  assert scale > 1e-4, label  # the comparison is not vacuous
  for a, b in zip(jax.tree.leaves(grads_a), jax.tree.leaves(grads_b)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=grad_tol * scale, err_msg=label)


ACCUMULATION_LOSSES = {
    # The aggregations whose normalisers must be the whole mini-batch's (T_active, N), with the options
    # that change the normaliser (dropped truncated rows) or weight rows by group statistics.
    'token_mean': losses.LossConfig(aggregation='token_mean', beta=0.05, eps_high=0.28, dual_clip=3.0,
                                    mask_truncated_completions=True, is_correction='token_truncate', is_cap_max=2.0,
                                    entropy_coef=0.01),
    'seq_mean_token_sum_norm': losses.LossConfig(aggregation='seq_mean_token_sum_norm', beta=0.05,
                                                 difficulty_weight='exp', kl_group_factor='akf_mean_reward'),
    'seq_mean_token_mean': losses.LossConfig(aggregation='seq_mean_token_mean', beta=0.05, kl_estimator='k3+',
                                             mask_truncated_completions=True, difficulty_weight='power',
                                             difficulty_power=2.0, entropy_coef=-0.01),
}


@pytest.mark.parametrize('name', sorted(ACCUMULATION_LOSSES))
def test_grad_accumulation_equals_one_batch(name):
  """k micro-batches (k = 2: one group each; k = 4: half a group each) give the one-batch loss, gradient and metrics."""
  _check_accumulation(_text_cfg(), ACCUMULATION_LOSSES[name], (4, 2))  # one reference pass for both


def test_grad_accumulation_with_images_equals_one_batch():
  """The same with a vision tower: each half-group micro-batch takes its prompt's image rows."""
  _check_accumulation(_vl_cfg(), ACCUMULATION_LOSSES['token_mean'], (2,))


def _check_accumulation(cfg, loss, micros):
  graphdef, params = nnx.split(models.create(cfg, seed=1))
  one = _learner(graphdef, loss)
  batch = _with_logprobs(one, params, jax.tree.map(jnp.asarray, _batch(cfg, seed=2)))
  expected = _grads_and_metrics(one, params, batch)
  assert expected[1]['clip_frac_high'] + expected[1]['clip_frac_low'] > 0  # the clip is active
  for micro in micros:
    got = _grads_and_metrics(_learner(graphdef, loss, micro_batch_size=micro), params, batch)
    _assert_same(got, expected, label=f'micro_batch_size={micro}')


def test_grad_accumulation_with_tw_grpo_equals_one_batch():
  """TW-GRPO's min/max run over the whole mini-batch's positions: the groups here end at different lengths."""
  cfg = _vl_cfg()
  graphdef, params = nnx.split(models.create(cfg, seed=1))
  loss = losses.LossConfig(aggregation='token_mean', beta=0.0, token_weighting='tw_grpo', tw_alpha=1.7,
                           tw_chunk_size=24)
  lengths = [2, 3, 1, 3, 6, 4, 5, 6]  # group 0 ends at 3 tokens, group 1 at 6
  one = _learner(graphdef, loss)
  batch = _with_logprobs(one, params, jax.tree.map(jnp.asarray, _batch(cfg, seed=3, lengths=lengths)))
  expected = _grads_and_metrics(one, params, batch)
  _assert_same(_grads_and_metrics(_learner(graphdef, loss, micro_batch_size=G), params, batch), expected)
  with pytest.raises(ValueError, match='micro-batch must hold whole groups'):
    _learner(graphdef, loss, micro_batch_size=2)


def test_sharded_grad_accumulation_equals_one_unsharded_batch():
  """Micro-batches resharded over ('data', 'fsdp') on 8 devices: the same gradient as one unsharded pass."""
  cfg = _vl_cfg()
  graphdef, params = nnx.split(models.create(cfg, seed=1))
  loss = ACCUMULATION_LOSSES['token_mean']
  one = _learner(graphdef, loss)
  host = jax.tree.map(jnp.asarray, _batch(cfg, prompts=4, seed=4))  # 16 completions
  batch = _with_logprobs(one, params, host)
  expected = _grads_and_metrics(one, params, batch)
  mesh = shd.make_mesh(shd.MeshConfig(data=2, fsdp=2, tensor=2))
  sharded = _learner(graphdef, loss, mesh=mesh, micro_batch_size=G)
  global_batch = shd.host_to_global(jax.tree.map(np.asarray, batch), mesh)
  params_sharded = jax.device_put(params, shd.state_shardings(params, mesh))
  _assert_same(_grads_and_metrics(sharded, params_sharded, global_batch), expected, grad_tol=1e-5)


def test_micro_batched_logprobs_equal_one_pass():
  cfg = _vl_cfg()
  graphdef, params = nnx.split(models.create(cfg, seed=1))
  batch = jax.tree.map(jnp.asarray, _batch(cfg, seed=5))
  batch.pop('_noise')
  full = _learner(graphdef, losses.LossConfig()).logprobs(params, batch)
  for micro in (1, 2, 4):
    np.testing.assert_allclose(_learner(graphdef, losses.LossConfig(), micro_batch_size=micro).logprobs(params, batch),
                               full, atol=1e-5)


def test_top_entropy_quantile_is_refused_when_the_batch_is_split():
  cfg = _vl_cfg()
  graphdef, params = nnx.split(models.create(cfg, seed=1))
  loss = losses.LossConfig(beta=0.0, top_entropy_quantile=0.5)
  learner = _learner(graphdef, loss, micro_batch_size=G)
  batch = jax.tree.map(jnp.asarray, _batch(cfg))
  batch.pop('_noise')
  with pytest.raises(ValueError, match='top_entropy_quantile=0.5 .* micro-batches'):
    learner.rl_update(params, optax.identity().init(params), batch)


@pytest.mark.parametrize('micro', [3, 5, 6])
def test_micro_batch_must_be_a_multiple_or_divisor_of_the_group(micro):
  with pytest.raises(ValueError, match=f'micro_batch_size {micro} must be a multiple or a divisor'):
    learner_lib.LearnerSettings(G, 1.0, losses.LossConfig(), micro_batch_size=micro)


# ------------------------------------------------------------------ mini-batches
def test_minibatch_order_is_seeded_and_covers_every_group_once_per_epoch():
  order = lambda **kw: [m.tolist() for m in learner_lib.minibatch_groups(12, 3, **kw)]
  first = order(seed=0, step=5, epoch=0)
  assert first == order(seed=0, step=5, epoch=0)  # deterministic
  assert len(first) == 4 and sorted(sum(first, [])) == list(range(12))  # a partition into 4 mini-batches
  assert sum(first, []) != list(range(12))  # shuffled
  assert first != order(seed=1, step=5, epoch=0)
  assert first != order(seed=0, step=6, epoch=0)
  assert first != order(seed=0, step=5, epoch=1)
  assert [m.tolist() for m in learner_lib.minibatch_groups(12, 12, seed=3, step=1, epoch=2)] == [list(range(12))]
  with pytest.raises(ValueError, match='do not split'):
    learner_lib.minibatch_groups(12, 5, seed=0, step=0, epoch=0)


def test_minibatch_gathers_whole_groups_and_keeps_rollout_statistics():
  """The gather takes prompts (positions on axis 1, vision rows) and their G completions; group and
  batch statistics (difficulty weight, AKF batch mean) come from the whole rollout batch."""
  cfg = _vl_cfg()
  graphdef, _ = nnx.split(models.create(cfg))
  loss = losses.LossConfig(beta=0.05, difficulty_weight='exp', kl_group_factor='akf_mean_reward',
                           kl_group_factor_scale=2.0)
  host = _batch(cfg, prompts=4, seed=6)
  host.pop('_noise')
  host['step'] = np.int32(7)
  groups = np.array([3, 1], np.int32)
  out = _learner(graphdef, loss).minibatch(jax.tree.map(jnp.asarray, host), jnp.asarray(groups))
  rows = (groups[:, None] * G + np.arange(G)).reshape(-1)
  for key in ('tokens', 'completion_mask', 'advantages', 'rewards', 'iou', 'truncated'):
    np.testing.assert_array_equal(out[key], host[key][rows], err_msg=key)
  np.testing.assert_array_equal(out['prompt']['input_ids'], host['prompt']['input_ids'][groups])
  np.testing.assert_array_equal(out['prompt']['positions'], host['prompt']['positions'][:, groups])
  for key, value in host['prompt']['vision'].items():
    np.testing.assert_array_equal(out['prompt']['vision'][key], value[groups], err_msg=key)
  assert int(out['step']) == 7
  miou = host['iou'].reshape(-1, G).mean(1)
  np.testing.assert_allclose(out['sequence_weights'], np.repeat(np.exp(1 - miou), G)[rows], rtol=1e-6)
  mean_reward = host['rewards'].reshape(-1, G).mean(1)
  factor = np.exp(2.0 * (mean_reward - host['rewards'].mean()))  # the batch mean of all 4 groups
  np.testing.assert_allclose(out['kl_factor'], np.repeat(factor, G)[rows], rtol=1e-5)


def test_combined_metrics_of_several_steps():
  out = learner_lib.combine_update_metrics([{'loss': 1.0, 'ratio_max': 1.5, 'ratio_min': 0.9},
                                            {'loss': 3.0, 'ratio_max': 1.2, 'ratio_min': 0.7}])
  assert out == {'loss': 2.0, 'ratio_max': 1.5, 'ratio_min': 0.7, 'optimizer_steps': 2.0}


# ------------------------------------------------------------------ chunked log-probs
@pytest.mark.parametrize('chunk', [4, 16])  # a remainder chunk; one chunk longer than N
def test_chunked_logprobs_equal_full_logits_in_value_and_gradient(chunk):
  """Values of log-probs and entropy, and the update's gradient (through log-probs and the entropy bonus)."""
  cfg = _text_cfg()
  graphdef, params = nnx.split(models.create(cfg, seed=2))
  loss = losses.LossConfig(aggregation='token_mean', beta=0.05, entropy_coef=0.01)
  full = _learner(graphdef, loss)
  chunked = _learner(graphdef, loss, logprob_chunk_size=chunk)
  batch = _with_logprobs(full, params, jax.tree.map(jnp.asarray, _batch(cfg, seed=7)))
  np.testing.assert_allclose(chunked.logprobs(params, batch), full.logprobs(params, batch), atol=1e-6)

  @jax.jit  # one program; run eagerly, every op of the forward pass would compile on its own
  def token_stats(params):
    model = nnx.merge(graphdef, params)
    hidden = learner_lib.completion_hidden(model, batch, G)
    logp, entropy, _ = learner_lib.chunked_token_stats(model.logits, hidden, batch['tokens'], 0.8, chunk)
    return (logp, entropy), learner_lib.token_logprobs(model.logits(hidden), batch['tokens'], 0.8)

  (logp, entropy), (expected_logp, expected_entropy) = token_stats(params)
  np.testing.assert_allclose(logp, expected_logp, atol=1e-6)
  np.testing.assert_allclose(entropy, expected_entropy, atol=1e-5)
  _assert_same(_grads_and_metrics(chunked, params, batch), _grads_and_metrics(full, params, batch))


@pytest.mark.parametrize('chunk', [5])
def test_chunked_tw_grpo_weights_equal_full_logits(chunk):
  cfg = _text_cfg()
  graphdef, params = nnx.split(models.create(cfg, seed=3))
  loss = losses.LossConfig(aggregation='token_mean', beta=0.0, token_weighting='tw_grpo', tw_alpha=1.7,
                           tw_chunk_size=24)
  full = _learner(graphdef, loss)
  batch = _with_logprobs(full, params, jax.tree.map(jnp.asarray, _batch(cfg, seed=8)))
  expected = _grads_and_metrics(full, params, batch)
  assert expected[1]['token_weight_max'] > 1.0
  _assert_same(_grads_and_metrics(_learner(graphdef, loss, logprob_chunk_size=chunk), params, batch), expected)
  _assert_same(_grads_and_metrics(_learner(graphdef, loss, logprob_chunk_size=chunk, micro_batch_size=G), params,
                                  batch), expected)
  with pytest.raises(ValueError, match='tw_stop_gradient=False needs the full logits'):
    _learner(graphdef, losses.LossConfig(beta=0.0, token_weighting='tw_grpo', tw_stop_gradient=False),
             logprob_chunk_size=chunk)


def test_chunked_logprobs_never_hold_the_full_logits():
  """The compiled update's temporaries as the completion grows by 32 tokens: the full path adds several
  [B, 32, V] float32 arrays (logits, log-softmax, their cotangents), the chunked path less than one."""
  vocab, rows = 8192, 8
  cfg = _text_cfg(vocab=vocab)
  graphdef, params = nnx.split(models.create(cfg, seed=0))
  loss = losses.LossConfig(aggregation='token_mean', beta=0.0, entropy_coef=0.01)
  tx = optax.sgd(0.1)

  def temp_bytes(length, chunk):
    batch = jax.tree.map(jnp.asarray, _batch(cfg, prompts=rows // G, new_tokens=length))
    batch.pop('_noise')
    compiled = _learner(graphdef, loss, tx=tx, logprob_chunk_size=chunk).rl_update.lower(
        params, tx.init(params), batch).compile()
    return compiled.memory_analysis().temp_size_in_bytes

  added_logits = rows * 32 * vocab * 4
  full = temp_bytes(48, 0) - temp_bytes(16, 0)
  chunked = temp_bytes(48, 4) - temp_bytes(16, 4)
  assert full >= 2 * added_logits, (full, added_logits)
  assert chunked < added_logits / 2, (chunked, added_logits)


# ------------------------------------------------------------------ bf16 compute, fp32 master weights
@pytest.mark.parametrize('chunk', [0])
def test_bf16_compute_keeps_float32_weights_optimizer_state_and_log_softmax(chunk):
  vocab = 64
  f32_cfg, bf16_cfg = _text_cfg(vocab), _text_cfg(vocab, dtype='bfloat16')
  graphdef32, params = nnx.split(models.create(f32_cfg, seed=4))
  graphdef16, params16 = nnx.split(models.create(bf16_cfg, seed=4))
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params16))
  loss = losses.LossConfig(aggregation='token_mean', beta=0.05, entropy_coef=0.01)
  tx = optax.adamw(1e-3)
  learner16 = learner_lib.Learner(graphdef16, tx, tx, learner_lib.LearnerSettings(G, 1.0, loss,
                                                                                 logprob_chunk_size=chunk))
  batch = _with_logprobs(_learner(graphdef32, loss), params, jax.tree.map(jnp.asarray, _batch(f32_cfg, seed=9)))
  logp16 = learner16.logprobs(params16, batch)
  assert logp16.dtype == jnp.float32
  # Every reduction over the vocabulary (log-softmax max and sum, entropy) runs in float32.
  # The update's outputs by their traced types (fixed at trace time, so no extra compile is needed).
  jaxpr, (new, opt_state, metrics) = jax.make_jaxpr(learner16.rl_update, return_shape=True)(
      params16, tx.init(params16), batch)

  def vocab_reductions(eqns):
    for eqn in eqns:
      for value in eqn.params.values():
        for sub in value if isinstance(value, (list, tuple)) else (value,):
          sub = getattr(sub, 'jaxpr', sub)  # ClosedJaxpr -> Jaxpr
          if hasattr(sub, 'eqns'):
            yield from vocab_reductions(sub.eqns)
      if eqn.primitive.name in ('reduce_max', 'reduce_sum') and eqn.invars[0].aval.shape[-1:] == (vocab,):
        yield eqn.invars[0].aval.dtype

  dtypes = list(vocab_reductions(jaxpr.jaxpr.eqns))
  assert dtypes and set(dtypes) == {jnp.dtype(jnp.float32)}, dtypes
  # The decoder really computes in bf16 (this is not the fp32 path twice).
  hidden = jax.eval_shape(lambda p: learner_lib.completion_hidden(nnx.merge(graphdef16, p), batch, G), params16)
  assert hidden.dtype == jnp.bfloat16
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(new))
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(opt_state) if jnp.issubdtype(x.dtype, jnp.floating))
  assert metrics['loss'].dtype == metrics['grad_norm'].dtype == jnp.float32
  # Close to the float32 path (loose: bf16 activations).
  ref = _learner(graphdef32, loss, logprob_chunk_size=chunk)
  grads32, metrics32 = _grads_and_metrics(ref, params, batch)
  grads16, metrics16 = _grads_and_metrics(_learner(graphdef16, loss, logprob_chunk_size=chunk), params16, batch)
  assert np.isfinite(metrics16['loss']) and np.isfinite(metrics16['grad_norm'])
  np.testing.assert_allclose(metrics16['loss'], metrics32['loss'], rtol=0.05, atol=0.02)
  np.testing.assert_allclose(metrics16['grad_norm'], metrics32['grad_norm'], rtol=0.1)
  flat32 = np.concatenate([g.ravel() for g in jax.tree.leaves(grads32)])
  flat16 = np.concatenate([g.ravel() for g in jax.tree.leaves(grads16)])
  assert flat32 @ flat16 / np.linalg.norm(flat32) / np.linalg.norm(flat16) > 0.98
  np.testing.assert_allclose(logp16, ref.logprobs(params, batch), atol=0.1)


# ------------------------------------------------------------------ metrics
def test_the_update_logs_the_issue_metric_list():
  cfg = _text_cfg()
  graphdef, params = nnx.split(models.create(cfg, seed=5))
  loss = losses.LossConfig(beta=0.05, dual_clip=3.0, is_correction='sequence_truncate')
  for micro in (0, G):
    learner = _learner(graphdef, loss, micro_batch_size=micro)
    batch = _with_logprobs(learner, params, jax.tree.map(jnp.asarray, _batch(cfg, seed=10)))
    _, metrics = _grads_and_metrics(learner, params, batch)
    for key in ('loss', 'kl', 'entropy', 'clip_frac_low', 'clip_frac_high', 'clip_frac_dual', 'ratio_mean',
                'ratio_min', 'ratio_max', 'is_weight_mean', 'is_weight_min', 'is_weight_max', 'is_ratio_mean',
                'is_ratio_min', 'is_ratio_max', 'sampler_logprob_diff_mean', 'sampler_logprob_diff_max',
                'advantage_mean', 'advantage_std', 'advantage_min', 'advantage_max', 'grad_norm'):
      assert key in metrics and np.isfinite(metrics[key]), (micro, key)
    real = np.asarray(batch['completion_mask']) > 0
    log_ratio = np.asarray(batch['old_logprobs'] - batch['sampler_logprobs'])[real]
    np.testing.assert_allclose(metrics['sampler_logprob_diff_max'], np.abs(log_ratio).max(), rtol=1e-6)
    np.testing.assert_allclose(metrics['is_ratio_max'], np.exp(log_ratio.max()), rtol=1e-5)
    np.testing.assert_allclose(metrics['is_ratio_min'], np.exp(log_ratio.min()), rtol=1e-5)
