"""Loss multipliers and token masks: TW-GRPO weights (chunked), UniVG-R1 difficulty, sampler IS correction,
truncation and top-entropy masks, against float64 numpy.

Shapes: B = P*G rows, T tokens, V vocabulary.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rl_reference as ref_lib
from rl_reason.rl import masks, weights

G, B, T, V = 2, 6, 7, 13


def _tw_inputs(seed):
  rng = np.random.default_rng(seed)
  logits = rng.normal(0, 2.0, (B, T, V))
  lengths = np.array([5, 3, 1, 4, 5, 0])  # the batch's longest completion is 5 < T
  mask = (np.arange(T)[None] < lengths[:, None]).astype(np.float64)
  return logits, mask


# ------------------------------------------------------------------ TW-GRPO
@pytest.mark.parametrize('chunk_size', [1, 4, 5, 13, 64])
@pytest.mark.parametrize('temperature', [1.0, 0.7])
def test_tw_grpo_weights_match_the_reference_for_any_chunking(chunk_size, temperature):
  logits, mask = _tw_inputs(0)
  fn = jax.jit(lambda x: weights.tw_grpo_token_weights(x, jnp.asarray(mask), G, alpha=1.7, chunk_size=chunk_size,
                                                       temperature=temperature))
  got = np.asarray(fn(jnp.asarray(logits, jnp.float32)))
  np.testing.assert_allclose(got, ref_lib.tw_grpo_weights(logits, mask, G, 1.7, temperature), rtol=1e-5, atol=1e-5)


def test_tw_grpo_weights_structure():
  logits, mask = _tw_inputs(1)
  got = np.asarray(weights.tw_grpo_token_weights(jnp.asarray(logits, jnp.float32), jnp.asarray(mask), G, alpha=1.7,
                                                 chunk_size=4))
  np.testing.assert_array_equal(got[mask == 0], 0.0)
  real = got[mask > 0]
  assert real.min() >= 1.0 - 1e-6 and real.max() <= 1.7 + 1e-6
  np.testing.assert_allclose(real.max(), 1.7, rtol=1e-6)  # some position of some group reaches alpha
  ones = weights.tw_grpo_token_weights(jnp.asarray(logits, jnp.float32), jnp.asarray(mask), G, alpha=1.0, chunk_size=4)
  np.testing.assert_allclose(np.asarray(ones), mask)  # alpha = 1: plain GRPO
  # Identical rows within every group: no divergence anywhere, every weight 1.
  same = np.repeat(logits[::G], G, axis=0)
  flat = weights.tw_grpo_token_weights(jnp.asarray(same, jnp.float32), jnp.ones((B, T)), G, alpha=1.7, chunk_size=4)
  np.testing.assert_allclose(np.asarray(flat), 1.0, atol=1e-6)


def test_tw_grpo_gradient_flag():
  logits, mask = _tw_inputs(2)
  cotangent = np.random.default_rng(3).normal(size=(B, T))

  def grad(stop_gradient, dtype):
    fn = lambda x: jnp.sum(weights.tw_grpo_token_weights(x, jnp.asarray(mask, dtype), G, alpha=1.7, chunk_size=5,
                                                         stop_gradient=stop_gradient) * cotangent)
    return np.asarray(jax.jit(jax.grad(fn))(jnp.asarray(logits, dtype)), np.float64)  # one program, not op by op

  np.testing.assert_array_equal(grad(True, jnp.float32), 0.0)
  with jax.enable_x64(True):
    got = grad(False, jnp.float64)
  # Central differences at 48 random logits (every logit would take a minute of numpy reference calls).
  step, flat = 1e-6, np.random.default_rng(5).choice(logits.size, 48, replace=False)
  fd = np.zeros(len(flat))
  for i, index in enumerate(zip(*np.unravel_index(flat, logits.shape))):
    delta = np.zeros_like(logits)
    delta[index] = step
    plus = ref_lib.tw_grpo_weights(logits + delta, mask, G, 1.7)
    change = plus - ref_lib.tw_grpo_weights(logits - delta, mask, G, 1.7)
    fd[i] = (change * cotangent).sum() / (2 * step)
  assert np.abs(fd).max() > 1e-3
  np.testing.assert_allclose(got.reshape(-1)[flat], fd, rtol=1e-5, atol=1e-7)


def test_tw_grpo_memory_scales_with_the_chunk_not_the_vocabulary():
  """The compiled program's temporaries grow with the chunk size, not with V."""
  rows, length, vocab = 8, 16, 4096
  logits = jax.ShapeDtypeStruct((rows, length, vocab), jnp.float32)
  mask = jax.ShapeDtypeStruct((rows, length), jnp.float32)

  def temp_bytes(chunk):
    fn = jax.jit(lambda x, m: weights.tw_grpo_token_weights(x, m, G, alpha=1.7, chunk_size=chunk))
    return fn.lower(logits, mask).compile().memory_analysis().temp_size_in_bytes

  small, large = temp_bytes(64), temp_bytes(vocab)
  full = rows * length * vocab * 4
  assert small < full / 4, (small, full)
  assert large > 2 * small, (small, large)


# ------------------------------------------------------------------ UniVG-R1 difficulty
@pytest.mark.parametrize('kind,power', [('exp', 1.0), ('power', 1.0), ('power', 2.5), ('log', 1.0)])
def test_difficulty_weights(kind, power):
  iou = np.random.default_rng(4).uniform(0, 1, B)
  got = np.asarray(weights.difficulty_weights(jnp.asarray(iou, jnp.float32), G, kind, power))
  np.testing.assert_allclose(got, ref_lib.difficulty_weights(iou, G, kind, power), rtol=1e-5)
  easy = np.asarray(weights.difficulty_weights(jnp.full((2,), 0.9), 2, kind, power))
  hard = np.asarray(weights.difficulty_weights(jnp.full((2,), 0.1), 2, kind, power))
  assert np.all(hard > easy)
  grad = jax.grad(lambda x: weights.difficulty_weights(x, G, kind, power).sum())(jnp.asarray(iou, jnp.float32))
  np.testing.assert_array_equal(np.asarray(grad), 0.0)
  with pytest.raises(ValueError, match="'sqrt'.*exp.*log.*power"):
    weights.difficulty_weights(jnp.asarray(iou), G, 'sqrt')


# ------------------------------------------------------------------ sampler -> trainer IS correction
@pytest.mark.parametrize('mode', weights.IS_CORRECTIONS)
def test_is_correction_weights(mode):
  rng = np.random.default_rng(5)
  old = -rng.gamma(2.0, 1.0, (B, T))
  sampler = old + rng.normal(0, 0.6, (B, T))
  _, mask = _tw_inputs(0)
  w, rejected = weights.is_correction_weights(jnp.asarray(old, jnp.float32), jnp.asarray(sampler, jnp.float32),
                                              jnp.asarray(mask), mode, 0.5, 2.0)
  expected_w, expected_rejected = ref_lib.is_weights(old, sampler, mask, mode, 0.5, 2.0)
  np.testing.assert_allclose(np.asarray(w) * mask, expected_w * mask, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(np.asarray(rejected) & (mask > 0), expected_rejected & (mask > 0))
  if mode.endswith('mask'):
    assert expected_rejected[mask > 0].any() and not expected_rejected[mask > 0].all()
  grad = jax.grad(lambda x: weights.is_correction_weights(x, jnp.asarray(sampler), jnp.asarray(mask), mode, 0.5,
                                                          2.0)[0].sum())(jnp.asarray(old))
  np.testing.assert_array_equal(np.asarray(grad), 0.0)


def test_is_correction_is_one_without_mismatch_and_unknown_modes_fail():
  lp = jnp.asarray(-np.random.default_rng(6).gamma(2.0, 1.0, (B, T)), jnp.float32)
  for mode in weights.IS_CORRECTIONS:
    w, _ = weights.is_correction_weights(lp, lp, jnp.ones((B, T)), mode, 0.0, 3.0)
    np.testing.assert_allclose(np.asarray(w), 1.0)
  with pytest.raises(ValueError, match="'token_clip'.*sequence_mask"):
    weights.is_correction_weights(lp, lp, jnp.ones((B, T)), 'token_clip', 0.0, 3.0)


# ------------------------------------------------------------------ masks
def test_drop_truncated():
  mask = jnp.ones((3, 4), jnp.int32)
  got = masks.drop_truncated(mask, jnp.asarray([False, True, False]))
  np.testing.assert_array_equal(np.asarray(got), [[1] * 4, [0] * 4, [1] * 4])
  assert got.dtype == mask.dtype


@pytest.mark.parametrize('quantile', [0.0, 0.2, 0.5, 0.9, 1.0])
def test_top_entropy_mask_matches_numpy_quantile(quantile):
  rng = np.random.default_rng(7)
  entropy = rng.uniform(0, 3, (B, T))
  _, mask = _tw_inputs(0)
  got = np.asarray(masks.top_entropy_mask(jnp.asarray(entropy, jnp.float32), jnp.asarray(mask), quantile))
  expected = ref_lib.top_entropy_mask(entropy.astype(np.float32).astype(np.float64), mask, quantile)
  np.testing.assert_array_equal(got, expected)
  real = int(mask.sum())  # distinct values: the linear-interpolated quantile at (1 - q)(n - 1) keeps this many
  assert got.sum() == real - int(np.ceil((1 - quantile) * (real - 1) - 1e-9))


def test_top_entropy_mask_without_tokens_and_bad_quantile():
  assert not np.asarray(masks.top_entropy_mask(jnp.ones((2, 3)), jnp.zeros((2, 3)), 0.2)).any()
  with pytest.raises(ValueError, match='quantile'):
    masks.top_entropy_mask(jnp.ones((2, 3)), jnp.ones((2, 3)), 1.5)
