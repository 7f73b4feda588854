"""Sampler: parity with transformers and with the full forward pass, stopping, finish reasons, exact
truncation and sampling distributions, early exit, one prefill per prompt, cache dtype, donation."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx
from scipy import stats

from rl_reason import models, sampling
from rl_reason.models import config as model_config, convert
from rl_reason.sampling import logits as logits_lib

VOCAB = 71


@pytest.fixture(scope='module')
def qwen2_pair():
  torch.manual_seed(0)
  hf_cfg = transformers.Qwen2Config(vocab_size=VOCAB, hidden_size=40, intermediate_size=56, num_hidden_layers=3,
                                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                                    rope_theta=10000.0, tie_word_embeddings=True, rms_norm_eps=1e-6,
                                    initializer_range=0.2)  # varied (non-repeating) greedy generations
  hf = transformers.Qwen2ForCausalLM(hf_cfg).eval()
  cfg = model_config.ModelConfig(text=model_config.TextConfig(
      vocab_size=VOCAB, hidden_size=40, intermediate_size=56, num_hidden_layers=3, num_attention_heads=4,
      num_key_value_heads=2, rope_theta=10000.0, mrope_section=None, tie_word_embeddings=True))
  ours = models.create(cfg)
  convert.load_hf_tensors(ours, {k: v.detach().numpy() for k, v in hf.state_dict().items()})
  return hf, ours


def _left_padded():
  rows = [[3, 4, 5, 6, 7, 8, 9], [10, 11, 12], [13, 14, 15, 16, 17]]
  ids = np.zeros((3, 7), np.int64)
  mask = np.zeros((3, 7), np.int64)
  for r, row in enumerate(rows):
    ids[r, 7 - len(row):] = row
    mask[r, 7 - len(row):] = 1
  return ids, mask


def _full_forward_stats(model, ids, mask, tokens, temperature=1.0):
  """Per-step log-probs of `tokens` and entropies from one uncached forward over prompt + completion."""
  full_ids = np.concatenate([ids, tokens], 1)
  full_mask = np.concatenate([mask, np.ones_like(tokens)], 1)
  logits = np.asarray(models.forward(model, full_ids, full_mask), np.float64)[:, ids.shape[1] - 1:-1] / temperature
  logp = logits - logits.max(-1, keepdims=True)
  logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
  entropy = -(np.exp(logp) * logp).sum(-1)
  return np.take_along_axis(logp, tokens[..., None], -1)[..., 0], entropy


def test_qwen2_logits_and_greedy_match_transformers(qwen2_pair):
  hf, ours = qwen2_pair
  ids, mask = _left_padded()
  position_ids = np.maximum(np.cumsum(mask, 1) - 1, 0)
  with torch.no_grad():
    expected = hf(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                  position_ids=torch.tensor(position_ids)).logits.numpy()
    expected_tokens = hf.generate(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), max_new_tokens=32,
                                  do_sample=False, eos_token_id=None, pad_token_id=0).numpy()[:, 7:]
  got = np.asarray(models.forward(ours, ids, mask))
  assert np.abs(got[mask.astype(bool)] - expected[mask.astype(bool)]).max() < 1e-4
  out = sampling.generate(ours, ids, mask, max_new_tokens=32)
  np.testing.assert_array_equal(np.asarray(out.tokens), expected_tokens)
  assert out.finish_reason_names() == ['length'] * 3 and int(out.steps) == 32


@pytest.mark.parametrize('kv_stages', [1, 3])
def test_text_cached_decoding_equals_full_forward_at_every_step(qwen2_pair, kv_stages):
  _, ours = qwen2_pair
  ids, mask = _left_padded()
  # 130 tokens: capacity 192 (geometric bucket); kv_stages=3 prefills 16 slots, then decodes in caches of
  # 16 + 64, 16 + 128 and 16 + 192 slots.
  out = sampling.generate(ours, ids, mask, max_new_tokens=130, temperature=1.0, rng=jax.random.key(1),
                          num_samples=2, return_entropy=True, kv_stages=kv_stages)
  if kv_stages == 3:
    assert sampling.SamplingConfig(max_new_tokens=192, kv_stages=3).stage_capacities == (64, 128, 192)
  tokens = np.asarray(out.tokens)
  assert tokens.shape == (6, 130) and (np.asarray(out.lengths) == 130).all()
  rows = np.repeat(np.arange(3), 2)
  logprobs, entropy = _full_forward_stats(ours, ids[rows], mask[rows], tokens)
  np.testing.assert_allclose(np.asarray(out.logprobs), logprobs, atol=1e-5)
  np.testing.assert_allclose(np.asarray(out.entropy), entropy, atol=1e-5)


def test_stage_capacities_are_equal_widths_of_at_least_min_stage():
  caps = lambda n, k: sampling.SamplingConfig(max_new_tokens=n, kv_stages=k).stage_capacities
  assert caps(1024, 4) == (256, 512, 768, 1024)
  assert caps(128, 4) == (64, 96, 128)  # 32 < MIN_STAGE = 64 is dropped
  assert caps(200, 3) == (80, 144, 200)  # ceil(200/3) = 67 -> 80 and ceil(400/3) = 134 -> 144 (multiples of 16)
  assert caps(64, 4) == (64,)  # 16, 32 and 48 < MIN_STAGE = 64 are dropped
  assert caps(1024, 1) == (1024,) and caps(16, 4) == (16,)


def test_stage_layout_does_not_change_the_samples(qwen2_pair):
  """Stages only bound the slots attention reads (masked slots weigh exactly 0): the same tokens as one
  T + N cache, and log-probs equal up to the dots' rounding (which depends on the slot count)."""
  _, ours = qwen2_pair
  ids, mask = _left_padded()
  outs = [sampling.generate(ours, ids, mask, max_new_tokens=100, temperature=1.0, rng=3, num_samples=2,
                            return_entropy=True, kv_stages=stages) for stages in (1, 2, 5)]
  for out in outs[1:]:
    for field in ('tokens', 'lengths'):
      np.testing.assert_array_equal(np.asarray(getattr(out, field)), np.asarray(getattr(outs[0], field)), field)
    for field in ('logprobs', 'entropy'):
      np.testing.assert_allclose(np.asarray(getattr(out, field)), np.asarray(getattr(outs[0], field)), atol=1e-5,
                                 err_msg=field)


def test_temperature_scales_logprobs_and_entropy(qwen2_pair):
  _, ours = qwen2_pair
  ids, mask = _left_padded()
  out = sampling.generate(ours, ids, mask, max_new_tokens=6, temperature=0.5, rng=3, return_entropy=True)
  tokens = np.asarray(out.tokens)
  logprobs, entropy = _full_forward_stats(ours, ids, mask, tokens, temperature=0.5)
  np.testing.assert_allclose(np.asarray(out.logprobs), logprobs, atol=1e-5)
  np.testing.assert_allclose(np.asarray(out.entropy), entropy, atol=1e-5)


def test_right_padding_gives_the_same_generation(qwen2_pair):
  _, ours = qwen2_pair
  ids, mask = _left_padded()
  right_ids, right_mask = np.zeros_like(ids), np.zeros_like(mask)
  for r in range(3):
    n = mask[r].sum()
    right_ids[r, :n], right_mask[r, :n] = ids[r, -n:], 1
  kw = dict(max_new_tokens=10, temperature=1.0, rng=5)
  left, right = sampling.generate(ours, ids, mask, **kw), sampling.generate(ours, right_ids, right_mask, **kw)
  np.testing.assert_array_equal(np.asarray(left.tokens), np.asarray(right.tokens))
  holes = mask.copy()
  holes[0, 3] = 0
  with pytest.raises(ValueError, match='holes'):
    sampling.generate(ours, ids, holes, max_new_tokens=2)


def test_several_eos_and_stop_sequences_match_transformers(qwen2_pair):
  hf, ours = qwen2_pair
  ids, mask = _left_padded()
  free = np.asarray(sampling.generate(ours, ids, mask, max_new_tokens=24).tokens)
  # Row 0 meets the first EOS at step 3, row 1 a 2-token stop sequence ending at step 4, row 2 the
  # second EOS at step 1 (the 3-token stop sequence comes later in row 2's free generation).
  eos = (int(free[0, 3]), int(free[2, 1]))
  stop = (tuple(int(t) for t in free[1, 3:5]), tuple(int(t) for t in free[2, 16:19]))
  pad = next(t for t in range(VOCAB) if t not in free)

  class StopOnCompletionTail(transformers.StoppingCriteria):

    def __call__(self, input_ids, scores, **kwargs):
      completion = input_ids[:, ids.shape[1]:]
      hit = torch.zeros(len(input_ids), dtype=torch.bool)
      for seq in stop:
        if completion.shape[1] >= len(seq):
          hit |= (completion[:, -len(seq):] == torch.tensor(seq)).all(1)
      return hit

  with torch.no_grad():
    expected = hf.generate(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), max_new_tokens=24,
                           do_sample=False, eos_token_id=list(eos), pad_token_id=pad,
                           stopping_criteria=transformers.StoppingCriteriaList([StopOnCompletionTail()])
                           ).numpy()[:, ids.shape[1]:]
  out = sampling.generate(ours, ids, mask, max_new_tokens=24, eos_token_ids=eos, stop_sequences=stop,
                          pad_token_id=pad)
  tokens, lengths = np.asarray(out.tokens), np.asarray(out.lengths)
  reasons = out.finish_reason_names()
  assert reasons == ['eos', 'stop', 'eos'] and lengths.tolist() == [4, 5, 2], (reasons, lengths, free)
  np.testing.assert_array_equal(tokens[:, :expected.shape[1]], expected)
  assert (tokens[:, expected.shape[1]:] == pad).all()
  for row, (n, reason) in enumerate(zip(lengths, reasons)):
    assert (tokens[row, n:] == pad).all() and (np.asarray(out.logprobs)[row, n:] == 0).all()
    if reason == 'eos':
      assert tokens[row, n - 1] in eos
    elif reason == 'stop':
      assert any(tuple(tokens[row, n - len(s):n]) == s for s in stop)
    else:
      assert n == 24


def test_loop_exits_when_every_row_has_finished(qwen2_pair):
  _, ours = qwen2_pair
  ids, mask = _left_padded()
  free = np.asarray(sampling.generate(ours, ids, mask, max_new_tokens=40).tokens)
  out = sampling.generate(ours, ids, mask, max_new_tokens=40, eos_token_ids=tuple(int(t) for t in set(free[:, 4])))
  lengths = np.asarray(out.lengths)
  assert np.asarray(out.finished).all() and lengths.max() <= 5
  assert int(out.steps) == lengths.max()  # decode iterations == the longest row, not 40
  assert int(sampling.generate(ours, ids, mask, max_new_tokens=40).steps) == 40


def test_one_prefill_per_prompt_then_fan_out(qwen2_pair):
  _, ours = qwen2_pair
  ids, mask = _left_padded()
  sampler = sampling.get_sampler(ours)
  before = sampler.prefill_rows
  out = sampling.generate(ours, ids, mask, max_new_tokens=4, temperature=1.0, num_samples=4, rng=2,
                          return_entropy=True, buckets=sampling.EXACT_BUCKETS)
  assert sampler.prefill_rows - before == 3  # 3 prompt rows prefilled for 12 completions
  assert out.tokens.shape == (12, 4)
  first_entropy = np.asarray(out.entropy)[:, 0].reshape(3, 4)
  np.testing.assert_array_equal(first_entropy, first_entropy[:, :1].repeat(4, 1))  # one prefill per group
  assert len({tuple(r) for r in np.asarray(out.tokens)}) > 3  # ... but independent samples


def test_rows_do_not_depend_on_batch_or_padding(qwen2_pair):
  _, ours = qwen2_pair
  ids, mask = _left_padded()
  kw = dict(max_new_tokens=12, temperature=1.0, rng=jax.random.key(9), num_samples=2)
  full = np.asarray(sampling.generate(ours, ids, mask, **kw).tokens)
  part = np.asarray(sampling.generate(ours, ids[:2], mask[:2], **kw).tokens)
  np.testing.assert_array_equal(part, full[:4])
  other = np.asarray(sampling.generate(ours, ids, mask, **dict(kw, rng=jax.random.key(10))).tokens)
  assert (other != full).any()
  again = np.asarray(sampling.generate(ours, ids, mask, **dict(kw, rng=jax.random.key(9))).tokens)
  np.testing.assert_array_equal(again, full)


def test_sampled_tokens_respect_truncation_inside_the_loop(qwen2_pair):
  _, ours = qwen2_pair
  ids, mask = _left_padded()
  out = sampling.generate(ours, ids, mask, max_new_tokens=16, temperature=1.5, top_k=3, rng=4, num_samples=4)
  tokens = np.asarray(out.tokens)
  rows = np.repeat(np.arange(3), 4)
  full_ids = np.concatenate([ids[rows], tokens], 1)
  full_mask = np.concatenate([mask[rows], np.ones_like(tokens)], 1)
  logits = np.asarray(models.forward(ours, full_ids, full_mask))[:, ids.shape[1] - 1:-1]
  top3 = np.argsort(-logits, -1)[..., :3]
  assert (tokens[..., None] == top3).any(-1).all()


def test_bf16_cache(qwen2_pair):
  _, ours = qwen2_pair
  ids, mask = _left_padded()
  sampler = sampling.get_sampler(ours)
  inputs = models.prepare_inputs(ours.cfg, ids, mask)
  params = nnx.state(ours)
  cfg = sampling.SamplingConfig(max_new_tokens=8, temperature=0.0, cache_dtype='bfloat16')
  state = sampler.prefill(params, inputs, 0, cfg)
  assert all(leaf.dtype == jnp.bfloat16 for leaf in (*state.cache['k'], *state.cache['v']))
  out = sampling.generate(ours, ids, mask, max_new_tokens=8, temperature=1.0, rng=1, cache_dtype='bfloat16')
  expected, _ = _full_forward_stats(ours, ids, mask, np.asarray(out.tokens))  # float32, no cache
  diff = np.abs(np.asarray(out.logprobs) - expected)
  assert 0 < diff.max() < 0.05  # rounded keys/values: close, but really bf16


def test_decode_state_is_donated(qwen2_pair):
  _, ours = qwen2_pair
  ids, mask = _left_padded()
  sampler = sampling.get_sampler(ours)
  inputs = models.prepare_inputs(ours.cfg, ids, mask)
  params = nnx.state(ours)
  cfg = sampling.SamplingConfig(max_new_tokens=8, temperature=1.0, kv_stages=1)
  state = sampler.prefill(params, inputs, 0, cfg)
  cache_k, tokens = state.cache['k'][0], state.tokens
  with warnings.catch_warnings():
    warnings.simplefilter('error')  # 'Some donated buffers were not usable' would fail here
    final = sampler.decode(params, state, cfg)
  assert cache_k.is_deleted() and tokens.is_deleted()
  assert not final.cache['k'][0].is_deleted()


def test_decode_step_evaluates_the_rotary_once(qwen2_pair):
  """The rotary tables ride in the loop state: cos appears once in the step, not in each layer's q and k."""
  _, ours = qwen2_pair
  ids, mask = _left_padded()
  sampler = sampling.Sampler(nnx.graphdef(ours))
  params = nnx.state(ours)
  cfg = sampling.SamplingConfig(max_new_tokens=8, temperature=1.0, kv_stages=1)
  state = sampler.prefill(params, models.prepare_inputs(ours.cfg, ids, mask), 0, cfg)
  program = sampler._decode.lower(params, state, cfg=cfg, capacity=8).compile().as_text()
  assert ours.cfg.text.num_hidden_layers == 3  # computed inside the step, XLA put cos into 6 fusions
  assert program.count(' cosine(') == 1


def test_step_uniforms_are_the_draws_of_each_step():
  """Prefill's [B, N] uniforms: column s is what row_uniforms gives for fold_in(rng, s)."""
  rng, rows = jax.random.key(7), jnp.asarray([0, 1, 5, 2], jnp.int32)
  table = np.asarray(logits_lib.step_uniforms(rng, 6, rows))
  assert table.shape == (4, 6)
  for step in (0, 3, 5):
    np.testing.assert_array_equal(table[:, step], logits_lib.row_uniforms(jax.random.fold_in(rng, step), rows))
  assert len(np.unique(table)) == table.size  # distinct draws across steps and rows


@pytest.mark.parametrize('width', [1, 5, 128, 300])
def test_prefix_sums_equal_numpy_cumsum(width):
  x = np.random.RandomState(width).rand(3, width).astype(np.float32)
  np.testing.assert_allclose(jax.jit(logits_lib.prefix_sums)(jnp.asarray(x)), np.cumsum(x.astype(np.float64), axis=-1),
                             rtol=1e-6)


def test_bad_input_is_a_clear_error(qwen2_pair):
  _, ours = qwen2_pair
  ids, mask = _left_padded()
  cases = [
      (dict(max_new_tokens=0), 'max_new_tokens'),
      (dict(max_new_tokens=2, top_p=0.9), 'top_p'),  # greedy with a truncation knob
      (dict(max_new_tokens=2, temperature=1.0, min_p=1.5), 'min_p'),
      (dict(max_new_tokens=2, eos_token_ids=(VOCAB,)), 'eos_token_ids'),
      (dict(max_new_tokens=2, stop_sequences=((),)), 'stop_sequences'),
      (dict(max_new_tokens=2, stop_sequences=((3, -1),)), 'stop_sequences'),
      (dict(max_new_tokens=2, cache_dtype='float16'), 'cache_dtype'),
      (dict(max_new_tokens=2, kv_stages=0), 'kv_stages'),
      (dict(max_new_tokens=40, buckets=sampling.ShapeBuckets(new_tokens=(16, 32))), 'max_new_tokens'),
      (dict(max_new_tokens=2, rng='seed'), 'rng'),
  ]
  for kwargs, name in cases:
    with pytest.raises(ValueError, match=name):
      sampling.generate(ours, ids, mask, **kwargs)
  empty = mask.copy()
  empty[1] = 0
  with pytest.raises(ValueError, match='empty'):
    sampling.generate(ours, ids, empty, max_new_tokens=2)


# ------------------------------------------------------------------------------ distributions


def _reference_kept(logits, temperature, top_k, top_p, min_p):
  """numpy float64: the set transformers' warpers (top-k, then top-p, then min-p) keep, and its margin."""
  x = np.asarray(logits, np.float64) / temperature
  order = np.argsort(-x, kind='stable')
  cand = order[:top_k] if top_k else order
  p = np.exp(x[cand] - x[cand].max())
  p /= p.sum()
  before = np.concatenate([[0.0], np.cumsum(p)[:-1]])
  margin = np.abs(before - top_p).min() if top_p < 1 else np.inf
  cand = cand[before < top_p]
  ratio = np.exp(x[cand] - x.max())
  if min_p > 0:
    margin = min(margin, np.abs(ratio - min_p).min())
    cand = cand[ratio >= min_p]
  kept = np.zeros(len(x), bool)
  kept[cand] = True
  return kept, margin


def _transformers_kept(logits, temperature, top_k, top_p, min_p):
  """[B, V] the sets transformers' own warper chain keeps (float64) for logits [B, V]."""
  from transformers.generation import logits_process as lp  # pylint: disable=g-import-not-at-top
  scores = torch.tensor(np.asarray(logits, np.float64))
  warpers = [lp.TemperatureLogitsWarper(temperature)] + ([lp.TopKLogitsWarper(top_k)] if top_k else []) + (
      [lp.TopPLogitsWarper(top_p)] if top_p < 1 else []) + ([lp.MinPLogitsWarper(min_p)] if min_p > 0 else [])
  for warper in warpers:
    scores = warper(None, scores)
  return torch.isfinite(scores).numpy()


def test_truncation_sets_equal_numpy_reference():
  rng = np.random.RandomState(0)
  logits = rng.randn(16, 50) * 2.5  # 96 settings x 16 rows, each also checked against transformers' warpers
  checked = 0
  for temperature in (1.0, 0.7):
    for top_k in (0, 1, 5, 20):
      for top_p in (1.0, 0.9, 0.5, 0.1):
        for min_p in (0.0, 0.05, 0.3):
          knobs = sampling.Knobs(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p)
          probs = np.asarray(sampling.sampling_probs(jnp.asarray(logits, jnp.float32), knobs))
          truncated = np.asarray(sampling.truncate_logits(jnp.asarray(logits / temperature, jnp.float32),
                                                          top_k, top_p, min_p))
          hf_kept = _transformers_kept(logits, temperature, top_k, top_p, min_p)
          for row in range(len(logits)):
            kept, margin = _reference_kept(logits[row], temperature, top_k, top_p, min_p)
            if margin < 1e-4:
              continue  # float32 vs float64 may legitimately differ this close to the boundary
            checked += 1
            np.testing.assert_array_equal(hf_kept[row], kept)
            np.testing.assert_array_equal(probs[row] > 0, kept, err_msg=str(knobs))
            np.testing.assert_array_equal(np.isfinite(truncated[row]), kept, err_msg=str(knobs))
            np.testing.assert_allclose(probs[row].sum(), 1.0, rtol=1e-5)
  assert checked > 0.95 * 2 * 4 * 4 * 3 * len(logits)


def test_old_truncation_cases():
  logits = jnp.log(jnp.array([[0.4, 0.3, 0.15, 0.1, 0.05]]))
  kept = lambda x: np.isfinite(np.asarray(x))[0].tolist()
  assert kept(sampling.truncate_logits(logits, 2, 1.0)) == [True, True, False, False, False]
  assert kept(sampling.truncate_logits(logits, 0, 0.7)) == [True, True, False, False, False]
  assert kept(sampling.truncate_logits(logits, 0, 0.71)) == [True, True, True, False, False]
  assert kept(sampling.truncate_logits(logits, 0, 0.1)) == [True, False, False, False, False]
  assert kept(sampling.truncate_logits(logits, 0, 1.0, 0.3)) == [True, True, True, False, False]


def _chi_square(counts, probs, draws):
  support = probs > 0
  assert counts[~support].sum() == 0, 'a truncated token was sampled'
  return stats.chisquare(counts[support], probs[support] / probs[support].sum() * draws).pvalue


@pytest.mark.parametrize('temperature,top_k,top_p,min_p', [
    (1.0, 0, 1.0, 0.0), (0.7, 0, 1.0, 0.0), (1.0, 4, 1.0, 0.0), (0.7, 0, 0.8, 0.0), (1.0, 0, 1.0, 0.1),
    (1.3, 5, 0.9, 0.05)])
def test_sample_frequencies_follow_the_distribution(temperature, top_k, top_p, min_p):
  logits = np.array([2.0, 1.0, 0.5, 0.0, -1.0, 1.5, -0.3, 0.8])
  knobs = sampling.Knobs(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p)
  draws = 20000
  tokens = jax.jit(lambda k: sampling.sample_tokens(jnp.broadcast_to(jnp.asarray(logits, jnp.float32),
                                                                     (draws, 8)), k, knobs))(jax.random.key(7))
  counts = np.bincount(np.asarray(tokens), minlength=8)
  kept, _ = _reference_kept(logits, temperature, top_k, top_p, min_p)
  x = logits / temperature
  probs = np.where(kept, np.exp(x - x.max()), 0.0)
  assert _chi_square(counts, probs / probs.sum(), draws) > 1e-3
  # A wrong temperature is detected: the test can fail.
  wrong = np.where(kept, np.exp(logits * 1.4 / temperature), 0.0)
  if kept.sum() > 2:
    assert _chi_square(counts, wrong / wrong.sum(), draws) < 1e-6


def test_first_tokens_of_the_sampler_follow_softmax(qwen2_pair):
  """End to end: 20000 samples of one prompt (one prefill, fanned out) against softmax(logits / T)."""
  _, ours = qwen2_pair
  ids, mask = _left_padded()
  draws = 20000
  out = sampling.generate(ours, ids[:1], mask[:1], max_new_tokens=1, temperature=0.7, top_p=0.95,
                          num_samples=draws, rng=11)
  counts = np.bincount(np.asarray(out.tokens)[:, 0], minlength=VOCAB)
  logits = np.asarray(models.forward(ours, ids[:1], mask[:1]), np.float64)[0, -1]
  kept, margin = _reference_kept(logits, 0.7, 0, 0.95, 0.0)
  assert margin > 1e-4
  probs = np.where(kept, np.exp((logits - logits.max()) / 0.7), 0.0)
  assert _chi_square(counts, probs / probs.sum(), draws) > 1e-3


@pytest.mark.parametrize('width', [100, 128, 700, 20480])
def test_inverse_cdf_matches_a_float64_search(width):
  """The two-level draw (block totals, then one block's prefix sums) equals searchsorted on the full CDF."""
  rng = np.random.RandomState(width)
  weights = rng.rand(6, width) * (rng.rand(6, width) < 0.3)  # zeros, whole zero blocks at the large widths
  weights[:, 130:390] = 0.0
  weights[:, -1] = 0.5  # a nonzero last token in the last partial block
  uniforms = rng.rand(6, 50)
  got = jax.jit(jax.vmap(sampling.inverse_cdf, in_axes=(None, 1), out_axes=1))(  # one program, not op by op
      jnp.asarray(weights, jnp.float32), jnp.asarray(uniforms, jnp.float32))
  cdf = np.cumsum(weights.astype(np.float32).astype(np.float64), axis=-1)
  expected = np.stack([np.searchsorted(cdf[b], uniforms[b] * cdf[b, -1], side='right') for b in range(6)])
  assert np.all(weights[np.arange(6)[:, None], np.asarray(got)] > 0)  # never a zero-weight token
  assert (np.asarray(got) == expected).mean() > 0.99  # float32 rounding may move a draw across a boundary


def test_inverse_cdf_frequencies_over_several_blocks():
  width = 1000
  probs = np.zeros(width)
  probs[[0, 5, 127, 128, 300, 640, 641, 999]] = [1, 2, 3, 4, 1, 2, 3, 4]
  probs /= probs.sum()
  draws = 40000
  uniforms = jax.random.uniform(jax.random.key(3), (draws,))
  tokens = jax.jit(sampling.inverse_cdf)(jnp.broadcast_to(jnp.asarray(probs, jnp.float32), (draws, width)), uniforms)
  counts = np.bincount(np.asarray(tokens), minlength=width)
  assert _chi_square(counts, probs, draws) > 1e-3
  shifted = np.roll(probs, 1)  # the test can fail: a one-token offset is detected
  assert counts[shifted > 0].sum() < draws / 2
