"""Policy losses against float64 numpy references: values, metrics and gradients w.r.t. logprobs.

Shapes: B rows, T completion tokens; mask [B, T] with empty rows included.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rl_reason.rl import losses

B, T = 6, 9


# ------------------------------------------------------------------ numpy float64 references
def np_k1(lp, ref):
  return lp - ref, np.ones_like(lp)


def np_k2(lp, ref):
  return 0.5 * (lp - ref)**2, lp - ref


def np_k3(lp, ref):
  """Value and d/dlp of verl's low_var_kl."""
  raw = ref - lp
  u = np.clip(raw, -20, 20)
  value = np.exp(u) - u - 1
  grad = np.where(np.abs(raw) < 20, 1 - np.exp(u), 0.0)
  grad = np.where(np.abs(value) < 10, grad, 0.0)
  return np.clip(value, -10, 10), grad


NP_KL = {'k1': np_k1, 'k2': np_k2, 'k3': np_k3}


def np_surrogate(lp, old, adv, eps_low, eps_high):
  """Value, d/dlp, clipped-low and clipped-high of -min(rho A, clip(rho) A)."""
  raw = lp - old
  rho = np.exp(np.clip(raw, -20, 20))
  a = adv[:, None]
  unclipped, clipped = rho * a, np.clip(rho, 1 - eps_low, 1 + eps_high) * a
  value = -np.minimum(unclipped, clipped)
  takes_unclipped = (unclipped <= clipped) | ((rho >= 1 - eps_low) & (rho <= 1 + eps_high))
  grad = np.where(takes_unclipped & (np.abs(raw) < 20), -a * rho, 0.0)
  return value, grad, (rho < 1 - eps_low) & (a < 0), (rho > 1 + eps_high) & (a > 0)


def np_aggregate(name, per_token, mask):
  """Value and d/d(per_token) of the aggregation."""
  if name == 'seq_mean_token_mean':
    lengths = np.maximum(mask.sum(axis=1, keepdims=True), 1)
    weights = mask / lengths / mask.shape[0]
  else:
    weights = mask / max(mask.sum(), 1)
  return float((per_token * weights).sum()), weights


def np_policy_loss(lp, old, ref, adv, mask, cfg):
  """Loss, d loss / d lp and metrics in float64."""
  value, grad, low, high = np_surrogate(lp, old, adv, cfg.eps_low, cfg.eps_high)
  if cfg.beta > 0:
    kl_value, kl_grad = NP_KL[cfg.kl_estimator](lp, ref)
    value, grad = value + cfg.beta * kl_value, grad + cfg.beta * kl_grad
  loss, weights = np_aggregate(cfg.aggregation, value, mask)
  denom = max(mask.sum(), 1)
  rho = np.exp(np.clip(lp - old, -20, 20))
  metrics = {
      'loss': loss,
      'kl': (np_k3(lp, ref)[0] * mask).sum() / denom if ref is not None else 0.0,
      'clip_frac_low': (low * mask).sum() / denom,
      'clip_frac_high': (high * mask).sum() / denom,
      'ratio_mean': (rho * mask).sum() / denom,
      'ratio_max': rho[mask > 0].max() if mask.any() else 0.0,
      'advantage_mean': adv.mean(),
      'advantage_std': adv.std(),
  }
  return loss, grad * weights, metrics


def _inputs(seed, spread=0.3):
  """Random float64 inputs; some log-ratios hit the clip range and the +-20 / k3 clamps."""
  rng = np.random.default_rng(seed)
  lp = -rng.gamma(2.0, 1.0, (B, T))
  old = lp + rng.normal(0, spread, (B, T))
  ref = lp + rng.normal(0, 1.0, (B, T))
  old[0, 0], old[1, 1] = lp[0, 0] - 25.0, lp[1, 1] + 25.0  # ratio clamps
  ref[2, 2], ref[3, 3], ref[4, 4] = lp[2, 2] + 15.0, lp[3, 3] - 25.0, lp[4, 4] + 30.0  # k3 clamps
  adv = rng.normal(0, 1, B)
  lengths = rng.integers(1, T + 1, B)
  lengths[B - 1] = 0  # an empty completion
  mask = (np.arange(T)[None] < lengths[:, None]).astype(np.float64)
  mask[0, 0] = mask[1, 1] = mask[2, 2] = mask[3, 3] = mask[4, 4] = 1.0  # clamped tokens count
  return lp, old, ref, adv, mask


def _jax_loss_and_grad(lp, old, ref, adv, mask, cfg, dtype):
  cast = lambda x: None if x is None else jnp.asarray(x, dtype)

  def fn(logprobs):
    return losses.policy_loss(logprobs, cast(old), cast(ref), cast(adv), jnp.asarray(mask, jnp.int32), cfg)

  (loss, metrics), grad = jax.jit(jax.value_and_grad(fn, has_aux=True))(cast(lp))
  return float(loss), np.asarray(grad, np.float64), {k: float(v) for k, v in metrics.items()}


# ------------------------------------------------------------------ estimators and surrogate
@pytest.mark.parametrize('name', sorted(losses.KL_ESTIMATORS))
def test_kl_estimator_values_and_gradients(name):
  lp, _, ref, _, _ = _inputs(0)
  value, grad = jax.vmap(jax.value_and_grad(lambda a, b: losses.KL_ESTIMATORS[name](a, b)))(
      jnp.asarray(lp.reshape(-1), jnp.float32), jnp.asarray(ref.reshape(-1), jnp.float32))
  expected_value, expected_grad = NP_KL[name](lp.reshape(-1), ref.reshape(-1))
  np.testing.assert_allclose(np.asarray(value), expected_value, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(np.asarray(grad), expected_grad, rtol=1e-4, atol=1e-4)


def test_k3_is_nonnegative_bounded_and_zero_at_equality():
  lp = jnp.linspace(-40.0, 0.0, 101)
  for ref in (jnp.zeros_like(lp), lp[::-1]):
    k3 = np.asarray(losses.kl_k3(lp, ref))
    assert (k3 >= 0).all() and (k3 <= 10).all() and np.isfinite(k3).all()
  np.testing.assert_array_equal(np.asarray(losses.kl_k3(lp, lp)), 0.0)


@pytest.mark.parametrize('eps_low,eps_high', [(0.2, 0.2), (0.2, 0.28)])
def test_surrogate_values_gradients_and_clip_stats(eps_low, eps_high):
  lp, old, _, adv, _ = _inputs(1)
  with jax.enable_x64(True):
    fn = lambda x: losses.ppo_clip_surrogate(x, jnp.asarray(old), jnp.asarray(adv), eps_low, eps_high)
    value, vjp, stats = jax.vjp(fn, jnp.asarray(lp), has_aux=True)
    grad = vjp(jnp.ones((B, T), jnp.float64))[0]
  expected, expected_grad, low, high = np_surrogate(lp, old, adv, eps_low, eps_high)
  np.testing.assert_allclose(np.asarray(value), expected, rtol=1e-10)
  np.testing.assert_allclose(np.asarray(grad), expected_grad, rtol=1e-10, atol=1e-12)
  np.testing.assert_array_equal(np.asarray(stats['clipped_low']), low)
  np.testing.assert_array_equal(np.asarray(stats['clipped_high']), high)
  assert low.any() and high.any()  # the inputs exercise both clip sides


def test_clipping_zeroes_gradient_only_on_the_clipped_side():
  # Rows: A > 0 and A < 0; columns: ratio below, inside and above [0.8, 1.2].
  log_ratio = np.log(np.array([0.5, 1.1, 1.5]))
  old = jnp.zeros((2, 3))
  adv = jnp.asarray([1.0, -1.0])
  grad = np.asarray(jax.grad(lambda lp: losses.ppo_clip_surrogate(lp, old, adv, 0.2, 0.2)[0].sum())(
      jnp.asarray(np.stack([log_ratio, log_ratio]), jnp.float32)))
  ratio = np.exp(log_ratio)
  np.testing.assert_allclose(grad[0], [-ratio[0], -ratio[1], 0.0], rtol=1e-6)  # A > 0: clipped above
  np.testing.assert_allclose(grad[1], [0.0, ratio[1], ratio[2]], rtol=1e-6)  # A < 0: clipped below


def test_zero_advantages_give_zero_surrogate_gradient():
  lp, old, ref, _, mask = _inputs(2, spread=1.0)
  cfg = losses.LossConfig(beta=0.0)
  loss, grad, metrics = _jax_loss_and_grad(lp, old, ref, np.zeros(B), mask, cfg, jnp.float32)
  assert loss == 0.0
  np.testing.assert_array_equal(grad, 0.0)
  assert metrics['clip_frac_low'] == metrics['clip_frac_high'] == 0.0  # A = 0 is never clipped


# ------------------------------------------------------------------ aggregation and full loss
@pytest.mark.parametrize('name', sorted(losses.AGGREGATIONS))
def test_aggregations(name):
  rng = np.random.default_rng(3)
  per_token = rng.normal(size=(B, T))
  _, _, _, _, mask = _inputs(3)
  value, grad = jax.value_and_grad(losses.AGGREGATIONS[name])(jnp.asarray(per_token, jnp.float32),
                                                              jnp.asarray(mask, jnp.int32))
  expected, weights = np_aggregate(name, per_token, mask)
  np.testing.assert_allclose(float(value), expected, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(grad), weights, rtol=1e-6, atol=1e-7)


def test_empty_batch_aggregates_to_zero():
  for fn in losses.AGGREGATIONS.values():
    assert float(fn(jnp.ones((2, 3)), jnp.zeros((2, 3)))) == 0.0


def test_seq_mean_token_mean_weights_rows_equally():
  per_token = jnp.asarray([[1.0, 1.0, 1.0, 1.0], [3.0, 0.0, 0.0, 0.0]])
  mask = jnp.asarray([[1, 1, 1, 1], [1, 0, 0, 0]])
  assert float(losses.seq_mean_token_mean(per_token, mask)) == pytest.approx(2.0)
  assert float(losses.token_mean(per_token, mask)) == pytest.approx(7.0 / 5.0)


CONFIGS = [
    losses.LossConfig(),
    losses.LossConfig(beta=0.0),
    losses.LossConfig(eps_high=0.28, beta=0.1, aggregation='token_mean'),
    losses.LossConfig(beta=0.05, kl_estimator='k1'),
    losses.LossConfig(beta=0.05, kl_estimator='k2', aggregation='token_mean'),
]


@pytest.mark.parametrize('cfg', CONFIGS, ids=str)
@pytest.mark.parametrize('seed', [0, 1])
def test_policy_loss_matches_numpy_in_float32(cfg, seed):
  lp, old, ref, adv, mask = _inputs(seed)
  loss, grad, metrics = _jax_loss_and_grad(lp, old, ref, adv, mask, cfg, jnp.float32)
  expected_loss, expected_grad, expected_metrics = np_policy_loss(lp, old, ref, adv, mask, cfg)
  np.testing.assert_allclose(loss, expected_loss, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-6)
  assert set(metrics) == set(expected_metrics)
  for key, expected in expected_metrics.items():
    np.testing.assert_allclose(metrics[key], expected, rtol=1e-5, atol=1e-6, err_msg=key)
  assert np.all(grad[mask == 0] == 0)  # padding never gets a gradient


@pytest.mark.parametrize('cfg', CONFIGS[::2], ids=str)
def test_policy_loss_gradient_matches_central_differences_in_float64(cfg):
  lp, old, ref, adv, mask = _inputs(4)
  with jax.enable_x64(True):
    _, grad, _ = _jax_loss_and_grad(lp, old, ref, adv, mask, cfg, jnp.float64)
  step = 1e-6
  finite_diff = np.zeros_like(lp)
  for index in np.ndindex(lp.shape):
    delta = np.zeros_like(lp)
    delta[index] = step
    finite_diff[index] = (np_policy_loss(lp + delta, old, ref, adv, mask, cfg)[0]
                          - np_policy_loss(lp - delta, old, ref, adv, mask, cfg)[0]) / (2 * step)
  np.testing.assert_allclose(grad, finite_diff, rtol=1e-5, atol=1e-8)


def test_on_policy_ratio_is_one_with_nonzero_gradient():
  lp, _, ref, adv, mask = _inputs(5)
  cfg = losses.LossConfig(beta=0.0)

  def fn(x):
    return losses.policy_loss(x, jax.lax.stop_gradient(x), None, jnp.asarray(adv, jnp.float32),
                              jnp.asarray(mask), cfg)

  (loss, metrics), grad = jax.value_and_grad(fn, has_aux=True)(jnp.asarray(lp, jnp.float32))
  np.testing.assert_allclose(float(loss), np_aggregate(cfg.aggregation, -np.broadcast_to(adv[:, None], (B, T)),
                                                       mask)[0], rtol=1e-5)
  assert metrics['ratio_max'] == 1.0 and metrics['clip_frac_low'] == 0.0
  assert np.abs(np.asarray(grad)).sum() > 0


def test_kl_metric_without_penalty_and_without_reference():
  lp, old, ref, adv, mask = _inputs(6)
  cfg = losses.LossConfig(beta=0.0)
  _, _, with_ref = _jax_loss_and_grad(lp, old, ref, adv, mask, cfg, jnp.float32)
  _, _, without_ref = _jax_loss_and_grad(lp, old, None, adv, mask, cfg, jnp.float32)
  assert with_ref['kl'] > 0 and without_ref['kl'] == 0.0
  np.testing.assert_allclose(with_ref['loss'], without_ref['loss'])


def test_metrics_carry_no_gradient():
  lp, old, ref, adv, mask = _inputs(7)

  def metric_sum(x):
    _, metrics = losses.policy_loss(x, jnp.asarray(old, jnp.float32), jnp.asarray(ref, jnp.float32),
                                    jnp.asarray(adv, jnp.float32), jnp.asarray(mask), losses.LossConfig())
    return sum(metrics.values())

  np.testing.assert_array_equal(np.asarray(jax.grad(metric_sum)(jnp.asarray(lp, jnp.float32))), 0.0)


def test_entropy_term_matches_numpy():
  lp, old, ref, adv, mask = _inputs(8)
  entropy = np.random.RandomState(5).uniform(0.0, 2.0, size=lp.shape)
  for aggregation in ('seq_mean_token_mean', 'token_mean'):
    cfg = losses.LossConfig(beta=0.0, entropy_coef=0.01, aggregation=aggregation)

    def loss(e):
      return losses.policy_loss(jnp.asarray(lp, jnp.float32), jnp.asarray(old, jnp.float32), None,
                                jnp.asarray(adv, jnp.float32), jnp.asarray(mask), cfg, entropy=e)[0]

    base_loss, _ = np_aggregate(aggregation, np_surrogate(lp, old, adv, 0.2, 0.2)[0], mask.astype(np.float64))
    _, weights = np_aggregate(aggregation, entropy, mask.astype(np.float64))
    expected = base_loss - 0.01 * (weights * entropy).sum()
    np.testing.assert_allclose(float(loss(jnp.asarray(entropy, jnp.float32))), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(jax.grad(loss)(jnp.asarray(entropy, jnp.float32))), -0.01 * weights,
                               rtol=1e-5, atol=1e-8)
  with pytest.raises(ValueError, match='entropy'):
    losses.policy_loss(jnp.asarray(lp), jnp.asarray(old), None, jnp.asarray(adv), jnp.asarray(mask),
                       losses.LossConfig(beta=0.0, entropy_coef=0.01))


# ------------------------------------------------------------------ configuration errors
def test_beta_without_reference_raises():
  lp, old, _, adv, mask = _inputs(8)
  with pytest.raises(ValueError, match='ref_logprobs'):
    losses.policy_loss(jnp.asarray(lp), jnp.asarray(old), None, jnp.asarray(adv), jnp.asarray(mask),
                       losses.LossConfig(beta=0.04))


@pytest.mark.parametrize('field,value,message', [
    ('kl_estimator', 'k4', r"'k4'.*\['k1', 'k2', 'k3'\]"),
    ('aggregation', 'sum', r"'sum'.*seq_mean_token_mean.*token_mean"),
    ('eps_low', 1.0, 'eps_low'),
    ('eps_high', -0.1, 'eps_high'),
    ('beta', -1.0, 'beta'),
])
def test_loss_config_validation(field, value, message):
  with pytest.raises(ValueError, match=message):
    dataclasses.replace(losses.LossConfig(), **{field: value})


def test_loss_config_is_hashable():
  assert hash(losses.LossConfig()) == hash(losses.LossConfig())
