"""The composed policy loss against the float64 numpy composition: values, gradients, metrics, config errors.

Shapes: B rows (P groups of G), T completion tokens; mask [B, T] with an empty row.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rl_reference as ref_lib
from rl_reason.rl import losses

B, T, G = 6, 9, 2
LossConfig = losses.LossConfig

CONFIGS = {
    'default': LossConfig(),
    'no_kl': LossConfig(beta=0.0),
    'dapo': LossConfig(eps_high=0.28, beta=0.0, aggregation='token_mean'),
    'k1': LossConfig(beta=0.05, kl_estimator='k1'),
    'k2_token_mean': LossConfig(beta=0.05, kl_estimator='k2', aggregation='token_mean'),
    'k1+': LossConfig(beta=0.05, kl_estimator='k1+'),
    'k3+': LossConfig(beta=0.1, kl_estimator='k3+', aggregation='seq_mean_token_sum'),
    'dual_clip': LossConfig(eps_high=0.28, dual_clip=3.0),
    'gspo': LossConfig(ratio_level='sequence', eps_low=3e-4, eps_high=4e-4, beta=0.0),
    'gspo_token': LossConfig(ratio_level='sequence_token', eps_low=0.05, eps_high=0.08, beta=0.0),
    'unclipped': LossConfig(surrogate='unclipped'),
    'cispo': LossConfig(surrogate='cispo', eps_low=0.0, eps_high=4.0, beta=0.0, aggregation='token_mean'),
    'cispo_sequence': LossConfig(surrogate='cispo', ratio_level='sequence', eps_low=0.1, eps_high=0.3),
    'sapo': LossConfig(surrogate='sapo', sapo_tau_pos=1.5, sapo_tau_neg=0.8),
    'gpg': LossConfig(surrogate='gpg', beta=0.0, aggregation='seq_mean_token_sum'),
    'dr_grpo': LossConfig(beta=0.0, aggregation='seq_mean_token_sum_norm', aggregation_constant=16.0),
    'dr_grpo_padded_length': LossConfig(beta=0.0, aggregation='seq_mean_token_sum_norm'),
    'beta_linear': LossConfig(beta=0.2, beta_schedule='linear', beta_final=0.02, beta_schedule_steps=100),
    'beta_cosine': LossConfig(beta=0.2, kl_estimator='k2', beta_schedule='cosine', beta_final=0.0,
                              beta_schedule_steps=50),
    'akf': LossConfig(beta=0.1, kl_group_factor='akf_mean_reward', kl_group_factor_scale=0.5),
    'kl_in_reward': LossConfig(beta=0.1, kl_placement='reward', kl_estimator='k1'),
    'tw_grpo': LossConfig(beta=0.0, token_weighting='tw_grpo', tw_alpha=1.7, aggregation='token_mean'),
    'univg_exp': LossConfig(difficulty_weight='exp'),
    'univg_power': LossConfig(difficulty_weight='power', difficulty_power=2.0),
    'univg_log': LossConfig(difficulty_weight='log'),
    'is_token_truncate': LossConfig(is_correction='token_truncate', is_cap_max=1.5),
    'is_sequence_mask': LossConfig(is_correction='sequence_mask', is_cap_min=0.5, is_cap_max=2.0),
    'is_token_mask': LossConfig(is_correction='token_mask', is_cap_min=0.6, is_cap_max=1.6, beta=0.0),
    'mask_truncated': LossConfig(mask_truncated_completions=True, aggregation='token_mean'),
    'top_entropy': LossConfig(top_entropy_quantile=0.2, entropy_coef=0.01),
    'entropy_bonus': LossConfig(entropy_coef=0.01, aggregation='token_mean'),
    'entropy_penalty': LossConfig(entropy_coef=-0.02),
    'entropy_adaptive': LossConfig(entropy_target=0.2, entropy_coef_delta=0.002, entropy_coef_max=0.05),
    'everything': LossConfig(ratio_level='sequence_token', eps_high=0.28, dual_clip=3.0, beta=0.1,
                             kl_estimator='k3+', beta_schedule='linear', beta_final=0.0, beta_schedule_steps=10,
                             kl_group_factor='akf_mean_reward', entropy_coef=0.01, token_weighting='tw_grpo',
                             difficulty_weight='exp', is_correction='token_truncate',
                             mask_truncated_completions=True, top_entropy_quantile=0.5, aggregation='token_mean'),
}
# The value-based central differences equal the true gradient only without stop-gradients or
# straight-through terms in the loss.
SMOOTH = sorted(name for name, cfg in CONFIGS.items()
                if cfg.ratio_level != 'sequence_token' and cfg.surrogate != 'cispo' and '+' not in cfg.kl_estimator)


def _inputs(seed, spread=0.3, clamps=True):
  """Random float64 inputs; some log-ratios hit the clip range and (with `clamps`) the +-20 / k3 clamps."""
  rng = np.random.default_rng(seed)
  lp = -rng.gamma(2.0, 1.0, (B, T))
  old = lp + rng.normal(0, spread, (B, T))
  ref = lp + rng.normal(0, 1.0, (B, T))
  if clamps:
    old[0, 0], old[1, 1] = lp[0, 0] - 25.0, lp[1, 1] + 25.0  # ratio clamps
    ref[2, 2], ref[3, 3], ref[4, 4] = lp[2, 2] + 15.0, lp[3, 3] - 25.0, lp[4, 4] + 30.0  # k3 clamps
  adv = rng.normal(0, 1, B)
  lengths = rng.integers(1, T + 1, B)
  lengths[B - 1] = 0  # an empty completion
  mask = (np.arange(T)[None] < lengths[:, None]).astype(np.float64)
  mask[0, 0] = mask[1, 1] = mask[2, 2] = mask[3, 3] = mask[4, 4] = 1.0  # clamped tokens count
  extras = dict(
      entropy=rng.uniform(0.0, 2.0, (B, T)),
      sampler=old + rng.normal(0, 0.4, (B, T)),
      token_weights=rng.uniform(1.0, 1.7, (B, T)) * mask,
      sequence_weights=ref_lib.difficulty_weights(rng.uniform(0, 1, B), G, 'exp'),
      kl_factor=ref_lib.akf_mean_reward(rng.normal(size=B), G, 0.5),
      truncated=np.array([False, True, False, False, True, False]),
      step=37,
      entropy_coef=0.013,
  )
  return lp, old, ref, adv, mask, extras


def _call_kwargs(cfg, extras):
  """The optional inputs this config uses (the others must not be passed)."""
  kwargs = {'entropy': extras['entropy'], 'sampler_logprobs': extras['sampler']}
  if cfg.token_weighting != 'none':
    kwargs['token_weights'] = extras['token_weights']
  if cfg.difficulty_weight != 'none':
    kwargs['sequence_weights'] = ref_lib.difficulty_weights(np.linspace(0.1, 0.9, B), G, cfg.difficulty_weight,
                                                            cfg.difficulty_power)
  if cfg.kl_group_factor != 'none':
    kwargs['kl_factor'] = extras['kl_factor']
  if cfg.mask_truncated_completions:
    kwargs['truncated'] = extras['truncated']
  if cfg.beta_schedule != 'constant':
    kwargs['step'] = extras['step']
  if cfg.entropy_target > 0:
    kwargs['entropy_coef'] = extras['entropy_coef']
  return kwargs


def _numpy(lp, old, ref, adv, mask, cfg, kwargs):
  renamed = dict(kwargs)
  renamed['sampler'] = renamed.pop('sampler_logprobs', None)
  return ref_lib.policy_loss(lp, old, ref, adv, mask, cfg, **renamed)


def _jax(lp, old, ref, adv, mask, cfg, kwargs, dtype):
  def cast(x):
    if x is None or isinstance(x, int):
      return x
    x = np.asarray(x)
    return jnp.asarray(x, dtype) if x.dtype.kind == 'f' else jnp.asarray(x)

  inputs = {k: cast(v) for k, v in kwargs.items()}
  entropy = inputs.pop('entropy')

  def fn(logprobs, ent):
    return losses.policy_loss(logprobs, cast(old), cast(ref), cast(adv), jnp.asarray(mask, jnp.int32), cfg,
                              entropy=ent, **inputs)

  (loss, metrics), (grad, grad_entropy) = jax.jit(jax.value_and_grad(fn, argnums=(0, 1), has_aux=True))(
      cast(lp), entropy)
  return (float(loss), np.asarray(grad, np.float64), np.asarray(grad_entropy, np.float64),
          {k: float(v) for k, v in metrics.items()})


# ------------------------------------------------------------------ the composition against numpy
@pytest.mark.parametrize('name', sorted(CONFIGS))
@pytest.mark.parametrize('seed', [0, 1])
def test_policy_loss_matches_numpy(name, seed):
  cfg = CONFIGS[name]
  lp, old, ref, adv, mask, extras = _inputs(seed)
  kwargs = _call_kwargs(cfg, extras)
  expected_loss, expected_grad, expected_grad_entropy, expected_metrics = _numpy(lp, old, ref, adv, mask, cfg, kwargs)
  with jax.enable_x64(True):
    loss, grad, grad_entropy, metrics = _jax(lp, old, ref, adv, mask, cfg, kwargs, jnp.float64)
  np.testing.assert_allclose(loss, expected_loss, rtol=1e-10, atol=1e-12)
  np.testing.assert_allclose(grad, expected_grad, rtol=1e-9, atol=1e-12)
  np.testing.assert_allclose(grad_entropy, expected_grad_entropy, rtol=1e-9, atol=1e-12)
  loss, grad, grad_entropy, metrics = _jax(lp, old, ref, adv, mask, cfg, kwargs, jnp.float32)
  np.testing.assert_allclose(loss, expected_loss, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(grad_entropy, expected_grad_entropy, rtol=1e-5, atol=1e-7)
  assert set(metrics) == set(expected_metrics)
  for key, expected in expected_metrics.items():
    np.testing.assert_allclose(metrics[key], expected, rtol=1e-5, atol=1e-6, err_msg=key)
  padding = mask == 0
  if cfg.mask_truncated_completions:
    padding = padding | extras['truncated'][:, None]
  assert np.all(grad[padding] == 0)  # padding and dropped rows never get a gradient
  assert np.abs(grad).max() > 0


@pytest.mark.parametrize('name', SMOOTH)
def test_policy_loss_gradient_matches_central_differences_in_float64(name):
  cfg = CONFIGS[name]
  # Without the clamped tokens: a ratio of e^20 makes the loss ~1e8 and swamps a 1e-6 difference.
  lp, old, ref, adv, mask, extras = _inputs(4, clamps=False)
  kwargs = _call_kwargs(cfg, extras)
  with jax.enable_x64(True):
    _, grad, _, _ = _jax(lp, old, ref, adv, mask, cfg, kwargs, jnp.float64)
  step, fd = 1e-6, np.zeros_like(lp)
  for index in np.ndindex(lp.shape):
    delta = np.zeros_like(lp)
    delta[index] = step
    fd[index] = (_numpy(lp + delta, old, ref, adv, mask, cfg, kwargs)[0]
                 - _numpy(lp - delta, old, ref, adv, mask, cfg, kwargs)[0]) / (2 * step)
  np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-8)


def test_stop_gradient_variants_differ_from_their_value_derivative():
  """CISPO and k3+ are defined by their gradients: the value's derivative is different."""
  lp, old, ref, adv, mask, extras = _inputs(5, clamps=False)
  for name in ('cispo', 'k3+', 'k1+'):
    cfg = CONFIGS[name]
    kwargs = _call_kwargs(cfg, extras)
    _, grad, _, _ = _jax(lp, old, ref, adv, mask, cfg, kwargs, jnp.float32)
    step, fd = 1e-6, np.zeros_like(lp)
    for index in np.ndindex(lp.shape):
      delta = np.zeros_like(lp)
      delta[index] = step
      fd[index] = (_numpy(lp + delta, old, ref, adv, mask, cfg, kwargs)[0]
                   - _numpy(lp - delta, old, ref, adv, mask, cfg, kwargs)[0]) / (2 * step)
    assert np.abs(grad - fd).max() > 1e-3, name


def test_gspo_token_equals_gspo_for_sequence_advantages_only():
  """The GSPO paper: with one advantage per sequence GSPO-token has GSPO's gradient; per-token ones differ."""
  lp, old, ref, adv, mask, extras = _inputs(12, spread=0.05, clamps=False)
  kwargs = {'entropy': extras['entropy']}
  gspo = LossConfig(ratio_level='sequence', eps_low=0.01, eps_high=0.01, beta=0.0)
  gspo_token = dataclasses.replace(gspo, ratio_level='sequence_token')
  a, grad_a, _, metrics = _jax(lp, old, ref, adv, mask, gspo, kwargs, jnp.float32)
  b, grad_b, _, _ = _jax(lp, old, ref, adv, mask, gspo_token, kwargs, jnp.float32)
  assert 0 < metrics['clip_frac_low'] + metrics['clip_frac_high'] < 1
  np.testing.assert_allclose(a, b, rtol=1e-6)
  np.testing.assert_allclose(grad_a, grad_b, rtol=1e-5, atol=1e-8)
  per_token = np.random.default_rng(12).normal(size=(B, T))
  _, grad_a, _, _ = _jax(lp, old, ref, per_token, mask, gspo, kwargs, jnp.float32)
  _, grad_b, _, _ = _jax(lp, old, ref, per_token, mask, gspo_token, kwargs, jnp.float32)
  assert np.abs(grad_a - grad_b).max() > 1e-3


@pytest.mark.parametrize('level', ['token', 'sequence', 'sequence_token'])
def test_per_token_advantages(level):
  lp, old, ref, _, mask, extras = _inputs(6)
  adv = np.random.default_rng(6).normal(size=(B, T))
  cfg = LossConfig(ratio_level=level, beta=0.04)
  kwargs = {'entropy': extras['entropy']}
  expected_loss, expected_grad, _, expected_metrics = _numpy(lp, old, ref, adv, mask, cfg, kwargs)
  loss, grad, _, metrics = _jax(lp, old, ref, adv, mask, cfg, kwargs, jnp.float32)
  np.testing.assert_allclose(loss, expected_loss, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-6)
  for key in ('advantage_mean', 'advantage_std', 'advantage_min', 'advantage_max'):
    np.testing.assert_allclose(metrics[key], expected_metrics[key], rtol=1e-5, atol=1e-6, err_msg=key)


# ------------------------------------------------------------------ behaviour
def test_defaults_are_the_original_grpo_loss():
  """The default config is PPO clip 0.2/0.2 + beta k3 + seq-mean-token-mean: the loss before the variants existed."""
  cfg = LossConfig()
  assert (cfg.ratio_level, cfg.surrogate, cfg.eps_low, cfg.eps_high, cfg.dual_clip, cfg.kl_estimator,
          cfg.kl_placement, cfg.aggregation, cfg.beta_schedule, cfg.entropy_coef) == (
              'token', 'ppo_clip', 0.2, 0.2, 0.0, 'k3', 'loss', 'seq_mean_token_mean', 'constant', 0.0)
  lp, old, ref, adv, mask, _ = _inputs(7)
  rho = np.exp(np.clip(lp - old, -20, 20))
  a = adv[:, None]
  surrogate = -np.minimum(rho * a, np.clip(rho, 0.8, 1.2) * a)
  u = np.clip(ref - lp, -20, 20)
  per_token = surrogate + cfg.beta * np.clip(np.exp(u) - u - 1, -10, 10)
  expected = np.mean((per_token * mask).sum(1) / np.maximum(mask.sum(1), 1))
  loss, _, _, _ = _jax(lp, old, ref, adv, mask, cfg, {'entropy': np.zeros((B, T))}, jnp.float32)
  np.testing.assert_allclose(loss, expected, rtol=1e-5)


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_zero_advantages_give_zero_policy_gradient(name):
  cfg = dataclasses.replace(CONFIGS[name], beta=0.0, entropy_coef=0.0,
                            **({} if CONFIGS[name].beta == 0 else {'kl_estimator': 'k3', 'kl_placement': 'loss',
                                                                    'beta_schedule': 'constant', 'beta_final': 0.0,
                                                                    'beta_schedule_steps': 0,
                                                                    'kl_group_factor': 'none',
                                                                    'kl_group_factor_scale': 1.0}))
  lp, old, ref, _, mask, extras = _inputs(2, spread=1.0)
  kwargs = _call_kwargs(cfg, extras)
  _, grad, _, metrics = _jax(lp, old, ref, np.zeros(B), mask, cfg, kwargs, jnp.float32)
  np.testing.assert_array_equal(grad, 0.0)
  if cfg.surrogate != 'cispo':  # CISPO counts clipped IS weights whatever the advantage
    assert metrics['clip_frac_low'] == metrics['clip_frac_high'] == metrics['clip_frac_dual'] == 0.0


def test_on_policy_ratio_is_one_with_nonzero_gradient():
  lp, _, _, adv, mask, _ = _inputs(5)
  cfg = LossConfig(beta=0.0)

  def fn(x):
    return losses.policy_loss(x, jax.lax.stop_gradient(x), None, jnp.asarray(adv, jnp.float32), jnp.asarray(mask), cfg)

  (loss, metrics), grad = jax.value_and_grad(fn, has_aux=True)(jnp.asarray(lp, jnp.float32))
  weights = ref_lib.aggregation_weights(cfg.aggregation, mask)
  np.testing.assert_allclose(float(loss), (weights * -adv[:, None]).sum(), rtol=1e-5)
  assert metrics['ratio_max'] == metrics['ratio_min'] == 1.0 and metrics['clip_frac_low'] == 0.0
  assert np.abs(np.asarray(grad)).sum() > 0


def test_kl_metric_without_penalty_and_without_reference():
  lp, old, ref, adv, mask, extras = _inputs(6)
  cfg = LossConfig(beta=0.0)
  _, _, _, with_ref = _jax(lp, old, ref, adv, mask, cfg, {'entropy': extras['entropy']}, jnp.float32)
  _, _, _, without_ref = _jax(lp, old, None, adv, mask, cfg, {'entropy': extras['entropy']}, jnp.float32)
  assert with_ref['kl'] > 0 and without_ref['kl'] == 0.0
  np.testing.assert_allclose(with_ref['loss'], without_ref['loss'])


def test_kl_in_the_reward_keeps_it_out_of_the_loss():
  lp, old, ref, adv, mask, extras = _inputs(8)
  kwargs = {'entropy': extras['entropy']}
  in_reward, _, _, metrics = _jax(lp, old, ref, adv, mask, CONFIGS['kl_in_reward'], kwargs, jnp.float32)
  no_kl, _, _, _ = _jax(lp, old, ref, adv, mask, LossConfig(beta=0.0), kwargs, jnp.float32)
  assert in_reward == pytest.approx(no_kl) and metrics['kl'] > 0
  losses.policy_loss(jnp.asarray(lp), jnp.asarray(old), None, jnp.asarray(adv), jnp.asarray(mask),
                     CONFIGS['kl_in_reward'])  # no reference needed for the loss itself


def test_metrics_carry_no_gradient():
  lp, old, ref, adv, mask, extras = _inputs(7)
  cfg = CONFIGS['everything']
  kwargs = {k: (jnp.asarray(v) if not isinstance(v, int) else v) for k, v in _call_kwargs(cfg, extras).items()}
  entropy = kwargs.pop('entropy')

  def metric_sum(x, e):
    _, metrics = losses.policy_loss(x, jnp.asarray(old), jnp.asarray(ref), jnp.asarray(adv), jnp.asarray(mask), cfg,
                                    entropy=e, **kwargs)
    return sum(metrics.values())

  grads = jax.grad(metric_sum, argnums=(0, 1))(jnp.asarray(lp), entropy)
  for grad in grads:
    np.testing.assert_array_equal(np.asarray(grad), 0.0)


def test_global_normaliser_makes_micro_batches_add_up():
  lp, old, ref, adv, mask, extras = _inputs(9)
  cfg = LossConfig(eps_high=0.28, beta=0.05, aggregation='token_mean', entropy_coef=0.01)
  x = jnp.asarray(lp, jnp.float32)

  def loss(rows, **counts):
    return losses.policy_loss(x[rows], jnp.asarray(old[rows], jnp.float32), jnp.asarray(ref[rows], jnp.float32),
                              jnp.asarray(adv[rows], jnp.float32), jnp.asarray(mask[rows]), cfg,
                              entropy=jnp.asarray(extras['entropy'][rows], jnp.float32), **counts)[0]

  full = float(loss(slice(0, B)))
  parts = sum(float(loss(s, num_tokens=mask.sum(), num_sequences=B)) for s in (slice(0, 1), slice(1, B)))
  np.testing.assert_allclose(parts, full, rtol=1e-5)


# ------------------------------------------------------------------ inputs the config asks for
@pytest.mark.parametrize('name,missing,message', [
    ('tw_grpo', 'token_weights', 'token_weighting needs token_weights'),
    ('univg_exp', 'sequence_weights', 'difficulty_weight needs sequence_weights'),
    ('akf', 'kl_factor', 'kl_group_factor needs kl_factor'),
    ('mask_truncated', 'truncated', 'mask_truncated_completions needs truncated'),
    ('beta_linear', 'step', 'needs the training step'),
    ('is_token_truncate', 'sampler_logprobs', 'needs sampler_logprobs'),
    ('top_entropy', 'entropy', 'need the per-token entropy'),
    ('entropy_adaptive', 'entropy_coef', 'entropy_target > 0 needs entropy_coef'),
    ('entropy_adaptive', 'entropy', 'need the per-token entropy'),
])
def test_missing_inputs_are_errors(name, missing, message):
  cfg = CONFIGS[name]
  lp, old, ref, adv, mask, extras = _inputs(10)
  kwargs = _call_kwargs(cfg, extras)
  kwargs.pop(missing)
  with pytest.raises(ValueError, match=message):
    losses.policy_loss(jnp.asarray(lp), jnp.asarray(old), jnp.asarray(ref), jnp.asarray(adv), jnp.asarray(mask), cfg,
                       **kwargs)


@pytest.mark.parametrize('unused', ['token_weights', 'sequence_weights', 'kl_factor', 'truncated', 'entropy_coef'])
def test_inputs_the_config_does_not_use_are_errors(unused):
  lp, old, ref, adv, mask, extras = _inputs(11)
  value = {'token_weights': extras['token_weights'], 'sequence_weights': extras['sequence_weights'],
           'kl_factor': extras['kl_factor'], 'truncated': extras['truncated'],
           'entropy_coef': extras['entropy_coef']}[unused]
  with pytest.raises(ValueError, match=f'{unused} was passed but the config does not use it'):
    losses.policy_loss(jnp.asarray(lp), jnp.asarray(old), jnp.asarray(ref), jnp.asarray(adv), jnp.asarray(mask),
                       LossConfig(), **{unused: jnp.asarray(value)})


def test_beta_without_reference_raises():
  lp, old, _, adv, mask, _ = _inputs(8)
  with pytest.raises(ValueError, match='ref_logprobs'):
    losses.policy_loss(jnp.asarray(lp), jnp.asarray(old), None, jnp.asarray(adv), jnp.asarray(mask),
                       LossConfig(beta=0.04))


# ------------------------------------------------------------------ configuration errors
@pytest.mark.parametrize('changes,message', [
    ({'kl_estimator': 'k4'}, r"'k4'.*\['k1', 'k1\+', 'k2', 'k3', 'k3\+'\]"),
    ({'aggregation': 'sum'}, r"'sum'.*seq_mean_token_mean.*seq_mean_token_sum.*seq_mean_token_sum_norm.*token_mean"),
    ({'surrogate': 'trpo'}, r"'trpo'.*cispo.*gpg.*ppo_clip.*sapo.*unclipped"),
    ({'ratio_level': 'word'}, r"'word'.*sequence.*sequence_token.*token"),
    ({'kl_placement': 'advantage'}, r"'advantage'.*loss.*reward"),
    ({'beta_schedule': 'exp'}, r"'exp'.*constant.*cosine.*linear"),
    ({'kl_group_factor': 'akf'}, r"'akf'.*akf_mean_reward.*none"),
    ({'token_weighting': 'tw'}, r"'tw'.*none.*tw_grpo"),
    ({'difficulty_weight': 'sqrt'}, r"'sqrt'.*exp.*log.*none.*power"),
    ({'is_correction': 'token'}, r"'token'.*none.*sequence_mask.*sequence_truncate.*token_mask.*token_truncate"),
    ({'eps_low': 1.5}, 'eps_low'),
    ({'eps_high': -0.1}, 'eps_high'),
    ({'beta': -1.0}, 'beta'),
    ({'dual_clip': 0.5}, 'dual_clip'),
    ({'aggregation': 'seq_mean_token_sum_norm', 'aggregation_constant': -1.0}, 'aggregation_constant must be >= 0'),
    ({'beta_schedule': 'linear'}, 'beta_schedule_steps >= 1'),
    ({'is_correction': 'token_mask', 'is_cap_min': 4.0}, 'is_cap_min < is_cap_max'),
    ({'top_entropy_quantile': 1.2}, 'top_entropy_quantile'),
    ({'token_weighting': 'tw_grpo', 'tw_alpha': 0.5}, 'tw_alpha'),
    # Options that only matter for another choice must stay at their defaults.
    ({'surrogate': 'sapo', 'eps_high': 0.28}, 'eps_high=0.28 has no effect unless surrogate in'),
    ({'surrogate': 'cispo', 'dual_clip': 3.0}, "dual_clip=3.0 has no effect unless surrogate == 'ppo_clip'"),
    ({'sapo_tau_neg': 2.0}, "sapo_tau_neg=2.0 has no effect unless surrogate == 'sapo'"),
    ({'surrogate': 'gpg', 'ratio_level': 'sequence', 'eps_low': 0.2}, 'ratio_level=.sequence. has no effect'),
    ({'aggregation_constant': 512.0}, 'aggregation_constant=512.0 has no effect'),
    ({'beta': 0.0, 'kl_estimator': 'k1'}, "kl_estimator='k1' has no effect unless beta > 0"),
    ({'beta_final': 0.01}, "beta_final=0.01 has no effect unless beta_schedule != 'constant'"),
    ({'kl_placement': 'reward', 'kl_group_factor': 'akf_mean_reward'}, 'kl_group_factor=.akf_mean_reward. has no'),
    ({'kl_group_factor_scale': 2.0}, 'kl_group_factor_scale=2.0 has no effect'),
    ({'tw_alpha': 1.7}, "tw_alpha=1.7 has no effect unless token_weighting == 'tw_grpo'"),
    ({'tw_stop_gradient': False}, 'tw_stop_gradient=False has no effect'),
    ({'tw_chunk_size': 128}, 'tw_chunk_size=128 has no effect'),
    ({'difficulty_weight': 'exp', 'difficulty_power': 2.0}, "difficulty_power=2.0 has no effect unless"),
    ({'is_cap_max': 5.0}, "is_cap_max=5.0 has no effect unless is_correction != 'none'"),
    ({'entropy_target': -0.1}, 'entropy_target must be >= 0'),
    ({'entropy_target': 0.2, 'entropy_coef_delta': 0.0}, 'entropy_coef_delta and entropy_coef_max must be > 0'),
    ({'entropy_target': 0.2, 'entropy_coef': 0.1}, r'entropy_coef .* must be in \[0, entropy_coef_max=0.05\]'),
    ({'entropy_coef_max': 0.1}, 'entropy_coef_max=0.1 has no effect unless entropy_target > 0'),
])
def test_loss_config_validation(changes, message):
  with pytest.raises(ValueError, match=message):
    dataclasses.replace(LossConfig(), **changes)


def test_loss_config_is_hashable():
  assert hash(LossConfig()) == hash(LossConfig())
  assert len({CONFIGS[k] for k in CONFIGS}) == len(CONFIGS)
