"""Sampler: text-model parity with transformers, distribution of samples, truncation, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from scipy import stats

from rl_reason import models, sampling
from rl_reason.models import config as model_config, convert


@pytest.fixture(scope='module')
def qwen2_pair():
  torch.manual_seed(0)
  hf_cfg = transformers.Qwen2Config(vocab_size=71, hidden_size=40, intermediate_size=56, num_hidden_layers=3,
                                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                                    rope_theta=10000.0, tie_word_embeddings=True, rms_norm_eps=1e-6)
  hf = transformers.Qwen2ForCausalLM(hf_cfg).eval()
  cfg = model_config.ModelConfig(text=model_config.TextConfig(
      vocab_size=71, hidden_size=40, intermediate_size=56, num_hidden_layers=3, num_attention_heads=4,
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


def test_text_cached_decoding_equals_full_forward(qwen2_pair):
  _, ours = qwen2_pair
  ids, mask = _left_padded()
  out = sampling.generate(ours, ids, mask, max_new_tokens=10, temperature=1.0, rng=jax.random.key(1), num_samples=2)
  tokens = np.asarray(out.tokens)
  rows = np.repeat(np.arange(3), 2)
  full_ids = np.concatenate([ids[rows], tokens], 1)
  full_mask = np.concatenate([mask[rows], np.ones_like(tokens)], 1)
  logp = np.asarray(jax.nn.log_softmax(models.forward(ours, full_ids, full_mask)[:, 6:-1], -1))
  np.testing.assert_allclose(np.asarray(out.logprobs), np.take_along_axis(logp, tokens[..., None], -1)[..., 0],
                             atol=1e-5)


def test_eos_ends_rows_and_lengths_count_it(qwen2_pair):
  _, ours = qwen2_pair
  ids, mask = _left_padded()
  greedy = np.asarray(sampling.generate(ours, ids, mask, max_new_tokens=8).tokens)
  eos = int(greedy[0, 2])  # row 0 emits this token at step 2
  out = sampling.generate(ours, ids, mask, max_new_tokens=8, eos_token_ids=(eos, 70), pad_token_id=0)
  tokens, lengths, finished = map(np.asarray, (out.tokens, out.lengths, out.finished))
  first = np.argmax(greedy[0] == eos)
  assert lengths[0] == first + 1 and finished[0]
  assert (tokens[0, first + 1:] == 0).all() and (np.asarray(out.logprobs)[0, first + 1:] == 0).all()


@pytest.mark.parametrize('temperature', [1.0, 0.7])
def test_sample_frequencies_follow_softmax(temperature):
  logits = jnp.array([2.0, 1.0, 0.5, 0.0, -1.0, 1.5])
  cfg = sampling.SamplingConfig(max_new_tokens=1, temperature=temperature)
  draws = 20000
  tokens = jax.jit(lambda k: sampling.sample_tokens(jnp.broadcast_to(logits, (draws, 6)), k, cfg))(jax.random.key(7))
  counts = np.bincount(np.asarray(tokens), minlength=6)
  probs = np.asarray(jax.nn.softmax(logits / temperature), np.float64)
  expected = probs / probs.sum() * draws
  assert stats.chisquare(counts, expected).pvalue > 1e-3


def test_top_k_and_top_p_truncation_exact():
  logits = jnp.log(jnp.array([[0.4, 0.3, 0.15, 0.1, 0.05]]))
  kept = lambda x: np.isfinite(np.asarray(x))[0].tolist()
  assert kept(sampling.truncate_logits(logits, 2, 1.0)) == [True, True, False, False, False]
  assert kept(sampling.truncate_logits(logits, 0, 0.7)) == [True, True, False, False, False]
  assert kept(sampling.truncate_logits(logits, 0, 0.71)) == [True, True, True, False, False]
  assert kept(sampling.truncate_logits(logits, 0, 0.1)) == [True, False, False, False, False]


def test_bad_input_is_a_clear_error(qwen2_pair):
  _, ours = qwen2_pair
  ids, mask = _left_padded()
  with pytest.raises(ValueError, match='max_new_tokens'):
    sampling.generate(ours, ids, mask, max_new_tokens=0)
  empty = mask.copy()
  empty[1] = 0
  with pytest.raises(ValueError, match='empty'):
    sampling.generate(ours, ids, empty, max_new_tokens=2)
