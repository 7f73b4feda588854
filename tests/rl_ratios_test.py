"""Importance ratios (token, GSPO sequence, GSPO-token): values and gradients against float64 numpy.

Shapes: B rows, T completion tokens; mask [B, T] with an empty row.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rl_reference as ref_lib
from rl_reason.rl import ratios

B, T = 5, 7


def _inputs(seed):
  rng = np.random.default_rng(seed)
  lp = -rng.gamma(2.0, 1.0, (B, T))
  old = lp + rng.normal(0, 0.3, (B, T))
  old[0, 0], old[1, 1] = lp[0, 0] - 25.0, lp[1, 1] + 25.0  # token clamps
  lengths = np.array([T, 4, 1, 6, 0])
  mask = (np.arange(T)[None] < lengths[:, None]).astype(np.float64)
  mask[1, 1] = 1.0
  return lp, old, mask, rng.normal(size=(B, T))


def _value_and_vjp(level, lp, old, mask, cotangent, dtype):
  fn = lambda x: ratios.RATIOS[level](x, jnp.asarray(old, dtype), jnp.asarray(mask, dtype))
  value, vjp = jax.vjp(fn, jnp.asarray(lp, dtype))
  return np.asarray(value, np.float64), np.asarray(vjp(jnp.asarray(cotangent, dtype))[0], np.float64)


@pytest.mark.parametrize('level', sorted(ratios.RATIOS))
@pytest.mark.parametrize('seed', [0, 1])
def test_ratio_values_and_gradients(level, seed):
  lp, old, mask, cotangent = _inputs(seed)
  expected, vjp = ref_lib.ratio(level, lp, old, mask)
  expected_grad = vjp(cotangent)
  with jax.enable_x64(True):
    value, grad = _value_and_vjp(level, lp, old, mask, cotangent, jnp.float64)
  np.testing.assert_allclose(value, expected, rtol=1e-12)
  np.testing.assert_allclose(grad, expected_grad, rtol=1e-10, atol=1e-12)
  value, grad = _value_and_vjp(level, lp, old, mask, cotangent, jnp.float32)
  np.testing.assert_allclose(value, expected, rtol=2e-5)
  np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('level', ['token', 'sequence'])
def test_differentiable_ratios_match_central_differences(level):
  lp, old, mask, cotangent = _inputs(2)
  with jax.enable_x64(True):
    _, grad = _value_and_vjp(level, lp, old, mask, cotangent, jnp.float64)
  step, fd = 1e-6, np.zeros_like(lp)
  for index in np.ndindex(lp.shape):
    delta = np.zeros_like(lp)
    delta[index] = step
    change = ref_lib.ratio(level, lp + delta, old, mask)[0] - ref_lib.ratio(level, lp - delta, old, mask)[0]
    fd[index] = (change * cotangent).sum() / (2 * step)  # differences first: the clamped tokens are ~5e8
  np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)


def test_gspo_token_equals_gspo_in_value_but_not_in_gradient():
  lp, old, mask, cotangent = _inputs(3)
  seq, seq_grad = _value_and_vjp('sequence', lp, old, mask, cotangent, jnp.float32)
  tok, tok_grad = _value_and_vjp('sequence_token', lp, old, mask, cotangent, jnp.float32)
  np.testing.assert_allclose(tok, seq, rtol=1e-6)
  assert np.abs(tok_grad - seq_grad).max() > 1e-3
  # GSPO-token's gradient is local: token t only feels its own cotangent.
  np.testing.assert_allclose(tok_grad, cotangent * tok, rtol=1e-5, atol=1e-7)


def test_sequence_ratio_ignores_padding_and_is_one_on_policy():
  lp, old, mask, _ = _inputs(4)
  moved = np.where(mask > 0, lp, lp + 3.0)  # change only the padding
  a = np.asarray(ratios.sequence_ratio(jnp.asarray(lp), jnp.asarray(old), jnp.asarray(mask)))
  b = np.asarray(ratios.sequence_ratio(jnp.asarray(moved), jnp.asarray(old), jnp.asarray(mask)))
  np.testing.assert_array_equal(a, b)
  for level in ratios.RATIOS:
    np.testing.assert_allclose(np.asarray(ratios.RATIOS[level](jnp.asarray(lp), jnp.asarray(lp), jnp.asarray(mask))),
                               1.0, rtol=1e-6)


def test_ratios_are_finite_for_huge_log_ratios():
  lp = jnp.asarray([[0.0, -300.0], [-300.0, 0.0]])
  old = jnp.asarray([[-300.0, 0.0], [0.0, -300.0]])
  for level in ratios.RATIOS:
    assert np.isfinite(np.asarray(ratios.RATIOS[level](lp, old, jnp.ones((2, 2))))).all()
