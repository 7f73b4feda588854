"""KL estimators (incl. straight-through k1+/k3+), KL in the reward, beta schedules, the AKF group factor.

Shapes: B rows (P groups of G), T tokens.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rl_reference as ref_lib
from rl_reason.rl import kl

B, T, G = 6, 9, 3


def _inputs(seed):
  rng = np.random.default_rng(seed)
  lp = -rng.gamma(2.0, 1.0, (B, T))
  ref = lp + rng.normal(0, 1.0, (B, T))
  ref[2, 2], ref[3, 3], ref[4, 4] = lp[2, 2] + 15.0, lp[3, 3] - 25.0, lp[4, 4] + 30.0  # k3 clamps
  lengths = np.array([T, 5, 3, 7, 1, 0])
  mask = (np.arange(T)[None] < lengths[:, None]).astype(np.float64)
  return lp, ref, mask, rng.normal(size=B)


def test_every_estimator_is_tested():
  assert set(kl.KL_ESTIMATORS) == {'k1', 'k2', 'k3', 'k1+', 'k3+'}


@pytest.mark.parametrize('name', sorted(kl.KL_ESTIMATORS))
def test_kl_estimator_values_and_gradients(name):
  lp, ref, _, _ = _inputs(0)
  expected_value, expected_grad = ref_lib.kl(name, lp.reshape(-1), ref.reshape(-1))
  for dtype, tol in ((jnp.float64, 1e-12), (jnp.float32, 1e-4)):
    with jax.enable_x64(dtype == jnp.float64):
      value, grad = jax.vmap(jax.value_and_grad(kl.KL_ESTIMATORS[name]))(
          jnp.asarray(lp.reshape(-1), dtype), jnp.asarray(ref.reshape(-1), dtype))
      np.testing.assert_allclose(np.asarray(value), expected_value, rtol=tol, atol=tol)
      np.testing.assert_allclose(np.asarray(grad), expected_grad, rtol=tol, atol=tol)


def test_straight_through_estimators_keep_the_value_and_take_the_k2_gradient():
  lp, ref, _, _ = _inputs(1)
  lp, ref = jnp.asarray(lp), jnp.asarray(ref)
  for plus, base in (('k1+', 'k1'), ('k3+', 'k3')):
    np.testing.assert_array_equal(np.asarray(kl.KL_ESTIMATORS[plus](lp, ref)),
                                  np.asarray(kl.KL_ESTIMATORS[base](lp, ref)))
    grad = jax.grad(lambda x, name=plus: kl.KL_ESTIMATORS[name](x, ref).sum())(lp)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(lp - ref), rtol=1e-6)


def test_k3_is_nonnegative_bounded_and_zero_at_equality():
  lp = jnp.linspace(-40.0, 0.0, 101)
  for ref in (jnp.zeros_like(lp), lp[::-1]):
    k3 = np.asarray(kl.kl_k3(lp, ref))
    assert (k3 >= 0).all() and (k3 <= 10).all() and np.isfinite(k3).all()
  np.testing.assert_array_equal(np.asarray(kl.kl_k3(lp, lp)), 0.0)


@pytest.mark.parametrize('estimator', ['k1', 'k3'])
def test_kl_in_the_reward(estimator):
  lp, ref, mask, rewards = _inputs(2)
  beta = 0.05
  tokens = kl.kl_penalized_token_rewards(jnp.asarray(rewards, jnp.float32), jnp.asarray(lp, jnp.float32),
                                         jnp.asarray(ref, jnp.float32), jnp.asarray(mask), beta, estimator)
  expected = ref_lib.kl_penalized_token_rewards(rewards, lp, ref, mask, beta, estimator)
  np.testing.assert_allclose(np.asarray(tokens), expected, rtol=1e-5, atol=1e-6)
  summed = kl.kl_penalized_rewards(jnp.asarray(rewards, jnp.float32), jnp.asarray(lp, jnp.float32),
                                   jnp.asarray(ref, jnp.float32), jnp.asarray(mask), beta, estimator)
  np.testing.assert_allclose(np.asarray(summed), rewards - beta * (ref_lib.kl(estimator, lp, ref)[0] * mask).sum(1),
                             rtol=1e-5, atol=1e-5)
  assert float(summed[-1]) == pytest.approx(rewards[-1], rel=1e-6)  # the empty row keeps its reward
  with pytest.raises(ValueError, match="'k9'.*k1"):
    kl.kl_penalized_rewards(jnp.asarray(rewards), jnp.asarray(lp), jnp.asarray(ref), jnp.asarray(mask), beta, 'k9')


@pytest.mark.parametrize('schedule', sorted(kl.BETA_SCHEDULES))
def test_beta_schedules(schedule):
  fn = jax.jit(lambda s: kl.beta_at(schedule, 0.1, 0.01, 100, s))
  for step in (0, 1, 37, 50, 99, 100, 250):
    np.testing.assert_allclose(float(fn(step)), ref_lib.beta_at(schedule, 0.1, 0.01, 100, step), rtol=1e-6)
  if schedule != 'constant':
    assert float(fn(0)) == pytest.approx(0.1) and float(fn(100)) == pytest.approx(0.01)
    with pytest.raises(ValueError, match='step'):
      kl.beta_at(schedule, 0.1, 0.01, 100, None)
  with pytest.raises(ValueError, match="'exp'.*constant"):
    kl.beta_at('exp', 0.1, 0.01, 100, 3)


def test_akf_group_factor_increases_with_the_group_mean_reward():
  _, _, _, rewards = _inputs(3)
  got = np.asarray(kl.akf_mean_reward(jnp.asarray(rewards, jnp.float32), G, 0.7))
  np.testing.assert_allclose(got, ref_lib.akf_mean_reward(rewards, G, 0.7), rtol=1e-5)
  means = rewards.reshape(-1, G).mean(axis=1)
  per_group = got.reshape(-1, G)
  assert np.all(per_group == per_group[:, :1])
  assert np.all(np.diff(per_group[np.argsort(means), 0]) > 0)
  np.testing.assert_allclose(np.asarray(kl.akf_mean_reward(jnp.full((6,), 0.3), G, 2.0)), 1.0, rtol=1e-6)
