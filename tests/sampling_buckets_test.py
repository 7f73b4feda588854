"""Shape buckets: sizes, host padding, and a bounded number of compilations over many request shapes."""

import numpy as np
import pytest

from rl_reason import models, sampling
from rl_reason.models import config as model_config
from rl_reason.sampling import buckets


@pytest.fixture(scope='module')
def model():
  cfg = model_config.ModelConfig(text=model_config.TextConfig(
      vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
      num_key_value_heads=2, rope_theta=10000.0, mrope_section=None, tie_word_embeddings=True))
  return models.create(cfg, seed=3)


def _prompts(lengths, width=None, seed=0):
  rng = np.random.RandomState(seed)
  width = width or max(lengths)
  ids = np.zeros((len(lengths), width), np.int32)
  mask = np.zeros_like(ids)
  for r, n in enumerate(lengths):
    ids[r, width - n:] = rng.randint(1, 64, n)
    mask[r, width - n:] = 1
  return ids, mask


def test_bucket_sizes():
  assert [buckets.geometric_size(n) for n in (1, 2, 3, 4, 5, 6, 7, 9, 13, 17, 25, 33, 100)] == [
      1, 2, 3, 4, 6, 6, 8, 12, 16, 24, 32, 48, 128]
  assert buckets.geometric_size(5, minimum=16) == 16
  assert buckets.bucket_size(5, (4, 8, 16), name='x') == 8
  assert buckets.bucket_size(5, 'exact', name='x', multiple=4) == 8
  with pytest.raises(ValueError, match='x 17 exceeds the largest bucket 16'):
    buckets.bucket_size(17, (4, 8, 16), name='x')
  with pytest.raises(ValueError, match='buckets.batch'):
    sampling.ShapeBuckets(batch=(8, 4))
  with pytest.raises(ValueError, match='buckets.prompt_len'):
    sampling.ShapeBuckets(prompt_len='pow2')


def test_padding_helpers():
  ids = np.array([[0, 5, 6], [7, 8, 0]])
  mask = np.array([[0, 1, 1], [1, 1, 0]])
  left_ids, left_mask = buckets.left_align(ids, mask)
  np.testing.assert_array_equal(left_ids, [[0, 5, 6], [0, 7, 8]])
  np.testing.assert_array_equal(left_mask, [[0, 1, 1], [0, 1, 1]])
  padded_ids, padded_mask = buckets.pad_prompts(left_ids, left_mask, length=5, rows=3, pad_id=0, filler_id=9)
  np.testing.assert_array_equal(padded_ids, [[0, 0, 0, 5, 6], [0, 0, 0, 7, 8], [0, 0, 0, 0, 9]])
  np.testing.assert_array_equal(padded_mask, [[0, 0, 0, 1, 1], [0, 0, 0, 1, 1], [0, 0, 0, 0, 1]])
  vision = dict(patches=np.ones((2, 4, 3)), positions=np.ones((2, 4, 2), np.int32),
                window_segments=np.zeros((2, 4), np.int32), full_segments=np.zeros((2, 4), np.int32),
                token_gather=np.ones((2, 1), np.int32))
  out = buckets.pad_vision(vision, patches=8, merge_unit=4)
  assert out['patches'].shape == (2, 8, 3) and out['token_gather'].shape == (2, 2)
  assert (out['full_segments'][:, 4:] == -1).all() and (out['window_segments'][:, 4:] == -1).all()


def test_many_prompt_lengths_compile_once_per_bucket(model):
  sampling._sampler_for.cache_clear()  # pylint: disable=protected-access  (fresh counters)
  sampler = sampling.get_sampler(model)
  grid = sampling.ShapeBuckets(prompt_len=(8, 16, 32), new_tokens=(16,), batch=(2,))
  for length in range(1, 33, 3):
    ids, mask = _prompts([length, max(1, length - 2)], seed=length)
    out = sampling.generate(model, ids, mask, max_new_tokens=9, temperature=1.0, rng=length, buckets=grid)
    assert out.tokens.shape == (2, 9)
  # Other max_new_tokens and batch sizes inside the same buckets reuse the programs too.
  ids, mask = _prompts([5])
  assert sampling.generate(model, ids, mask, max_new_tokens=16, temperature=1.0, buckets=grid).tokens.shape == (1, 16)
  assert sampler.compilations_by_function == {'prefill': 3, 'decode': 3, 'grow': 0}
  assert sampler.compilations == 6
  assert sampler.calls == 12
  # Settings are static too: greedy is a program of its own.
  sampling.generate(model, ids, mask, max_new_tokens=16, buckets=grid)
  assert sampler.compilations == 8
  # Without buckets every distinct prompt length is a new program: the counter sees it.
  for length in (3, 4, 5):
    ids, mask = _prompts([length, length])
    sampling.generate(model, ids, mask, max_new_tokens=9, buckets=sampling.EXACT_BUCKETS)
  assert sampler.compilations_by_function['prefill'] == 7


def test_padding_rows_and_lengths_do_not_change_results(model):
  ids, mask = _prompts([5, 3, 6])
  kw = dict(max_new_tokens=11, temperature=1.0, rng=4, num_samples=2, return_entropy=True)
  exact = sampling.generate(model, ids, mask, buckets=sampling.EXACT_BUCKETS, **kw)
  padded = sampling.generate(model, ids, mask, buckets=sampling.ShapeBuckets(
      prompt_len=(32,), new_tokens=(64,), batch=(8,)), **kw)
  np.testing.assert_array_equal(np.asarray(exact.tokens), np.asarray(padded.tokens))
  np.testing.assert_allclose(np.asarray(exact.logprobs), np.asarray(padded.logprobs), atol=1e-5)
  np.testing.assert_allclose(np.asarray(exact.entropy), np.asarray(padded.entropy), atol=1e-5)
  assert padded.tokens.shape == (6, 11) and padded.lengths.shape == (6,)
  # With EOS ids that end every real row by step 3, the 10 dummy rows must not hold the loop open.
  eos = tuple(sorted({int(t) for t in np.asarray(exact.tokens)[:, 2]}))
  early = sampling.generate(model, ids, mask, eos_token_ids=eos, buckets=sampling.ShapeBuckets(
      prompt_len=(32,), new_tokens=(64,), batch=(8,)), **kw)
  assert np.asarray(early.finished).all()
  assert int(early.steps) == int(np.asarray(early.lengths).max()) <= 3
