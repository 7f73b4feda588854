"""Per-token surrogates (PPO clip, dual clip, vanilla, CISPO, SAPO, GPG): values, gradients, clip stats.

Shapes: B rows, T tokens. The ratio and the log-probs are independent inputs here, so the test
checks d l / d rho and the direct d l / d lp separately (the chain through the ratio is tested in
rl_ratios_test and rl_losses_test).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rl_reference as ref_lib
from rl_reason.rl import surrogates

B, T = 6, 8

PARAMS = [
    ('ppo_clip', surrogates.SurrogateParams()),
    ('ppo_clip', surrogates.SurrogateParams(eps_low=0.2, eps_high=0.28)),
    ('ppo_clip', surrogates.SurrogateParams(eps_low=0.2, eps_high=0.28, dual_clip=3.0)),
    ('unclipped', surrogates.SurrogateParams()),
    ('cispo', surrogates.SurrogateParams(eps_low=0.0, eps_high=4.0)),
    ('cispo', surrogates.SurrogateParams(eps_low=0.2, eps_high=0.28)),
    ('sapo', surrogates.SurrogateParams()),
    ('sapo', surrogates.SurrogateParams(tau_pos=2.0, tau_neg=0.5)),
    ('gpg', surrogates.SurrogateParams()),
]


def _inputs(seed):
  rng = np.random.default_rng(seed)
  rho = np.exp(rng.normal(0, 0.6, (B, T)))  # spans both clip sides and the dual-clip region
  rho[0, :3] = [6.0, 0.05, 1.0]
  lp = -rng.gamma(2.0, 1.0, (B, T))
  adv = np.broadcast_to(rng.normal(0, 1, (B, 1)), (B, T)).copy()
  adv[1] = -np.abs(adv[1]) - 0.1
  adv[2] = np.abs(adv[2]) + 0.1
  return rho, lp, adv


def _jax(name, params, rho, lp, adv, dtype):
  fn = lambda r, l: surrogates.SURROGATES[name](r, l, jnp.asarray(adv, dtype), params)
  value, vjp, stats = jax.vjp(fn, jnp.asarray(rho, dtype), jnp.asarray(lp, dtype), has_aux=True)
  d_ratio, d_logprob = vjp(jnp.ones((B, T), dtype))
  return value, d_ratio, d_logprob, stats


def test_every_surrogate_is_tested():
  assert {name for name, _ in PARAMS} == set(surrogates.SURROGATES)


@pytest.mark.parametrize('name,params', PARAMS, ids=lambda x: str(x))
@pytest.mark.parametrize('seed', [0, 1])
def test_surrogate_values_gradients_and_stats(name, params, seed):
  rho, lp, adv = _inputs(seed)
  expected = ref_lib.surrogate(name, rho, lp, adv, params.eps_low, params.eps_high, params.dual_clip,
                               params.tau_pos, params.tau_neg)
  with jax.enable_x64(True):
    value, d_ratio, d_logprob, stats = _jax(name, params, rho, lp, adv, jnp.float64)
    np.testing.assert_allclose(np.asarray(value), expected.value, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.asarray(d_ratio), expected.d_ratio, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.asarray(d_logprob), expected.d_logprob, rtol=1e-12, atol=1e-14)
  value, d_ratio, d_logprob, stats = _jax(name, params, rho, lp, adv, jnp.float32)
  np.testing.assert_allclose(np.asarray(value), expected.value, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(d_ratio), expected.d_ratio, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(d_logprob), expected.d_logprob, rtol=1e-5, atol=1e-6)
  for key, want in (('clipped_low', expected.low), ('clipped_high', expected.high), ('clipped_dual', expected.dual)):
    np.testing.assert_array_equal(np.asarray(stats[key]), want, err_msg=key)


def test_the_inputs_exercise_every_clip():
  rho, lp, adv = _inputs(0)
  s = ref_lib.surrogate('ppo_clip', rho, lp, adv, 0.2, 0.28, 3.0)
  assert s.low.any() and s.high.any() and s.dual.any()


def test_clipping_zeroes_gradient_only_on_the_clipped_side():
  # Rows: A > 0 and A < 0; columns: ratio below, inside and above [0.8, 1.2].
  ratio = jnp.asarray([[0.5, 1.1, 1.5], [0.5, 1.1, 1.5]])
  adv = jnp.asarray([[1.0] * 3, [-1.0] * 3])
  grad = np.asarray(jax.grad(lambda r: surrogates.ppo_clip(r, r, adv, surrogates.SurrogateParams())[0].sum())(ratio))
  np.testing.assert_allclose(grad, [[-1.0, -1.0, 0.0], [0.0, 1.0, 1.0]])


def test_dual_clip_caps_negative_advantage_loss():
  ratio = jnp.asarray([[10.0, 2.0]])
  adv = jnp.asarray([[-1.0, -1.0]])
  params = surrogates.SurrogateParams(dual_clip=3.0)
  loss, stats = surrogates.ppo_clip(ratio, ratio, adv, params)
  np.testing.assert_allclose(np.asarray(loss), [[3.0, 2.0]])  # 10 capped at c|A| = 3; 2 < 3 untouched
  np.testing.assert_array_equal(np.asarray(stats['clipped_dual']), [[True, False]])
  plain, _ = surrogates.ppo_clip(ratio, ratio, adv, surrogates.SurrogateParams())
  np.testing.assert_allclose(np.asarray(plain), [[10.0, 2.0]])


def test_sapo_slope_at_one_equals_vanilla_and_decays_off_policy():
  adv = jnp.asarray([[1.0, -1.0]])
  params = surrogates.SurrogateParams()
  grad = lambda r: np.asarray(jax.grad(lambda x: surrogates.sapo(x, x, adv, params)[0].sum())(r))
  np.testing.assert_allclose(grad(jnp.ones((1, 2))), [[-1.0, 1.0]], rtol=1e-6)
  assert np.all(np.abs(grad(jnp.full((1, 2), 4.0))) < 0.2)


def test_cispo_and_gpg_gradients_do_not_flow_through_the_ratio():
  rho, lp, adv = _inputs(3)
  for name in ('cispo', 'gpg'):
    _, d_ratio, d_logprob, _ = _jax(name, surrogates.SurrogateParams(), rho, lp, adv, jnp.float32)
    np.testing.assert_array_equal(np.asarray(d_ratio), 0.0)
    assert np.abs(np.asarray(d_logprob)).min() > 0  # every token keeps a gradient (no hard clip)
