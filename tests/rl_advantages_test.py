"""Group advantage estimators against float64 numpy references.

Shapes: B = P*G rewards, G generations per prompt, R reward columns.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rl_reason.rl import advantages as adv_lib

EPS = 1e-4
SCALAR = sorted(set(adv_lib.ADVANTAGE_ESTIMATORS) - adv_lib.PER_REWARD_ESTIMATORS)
PER_REWARD = sorted(adv_lib.PER_REWARD_ESTIMATORS)


# ------------------------------------------------------------------ numpy float64 references (plain loops)
def _groups(rewards, groups):
  rewards = np.asarray(rewards, np.float64)
  return [rewards[start:start + groups] for start in range(0, len(rewards), groups)]


def np_grpo(rewards, groups, eps):
  out = []
  for r in _groups(rewards, groups):
    std = r.std(ddof=1) if len(r) > 1 else 0.0
    out.extend((r - r.mean()) / (std + eps))
  return np.array(out)


def np_drgrpo(rewards, groups, eps):
  return np.concatenate([r - r.mean() for r in _groups(rewards, groups)])


def np_batch_std(rewards, groups, eps):
  std = np.asarray(rewards, np.float64).std(ddof=1) if len(rewards) > 1 else 0.0
  return np_drgrpo(rewards, groups, eps) / (std + eps)


def np_rloo(rewards, groups, eps):
  out = []
  for r in _groups(rewards, groups):
    for i in range(len(r)):
      out.append(0.0 if len(r) == 1 else r[i] - np.mean(np.delete(r, i)))
  return np.array(out)


def np_reinforce_pp_baseline(rewards, groups, eps):
  centred = np_drgrpo(rewards, groups, eps)
  var = centred.var(ddof=1) if len(centred) > 1 else 0.0
  return (centred - centred.mean()) / np.sqrt(var + eps)


def np_passk(rewards, groups, eps):
  out = []
  for r in _groups(rewards, groups):
    a = np.zeros(len(r))
    if len(r) > 1:
      order = np.argsort(-r, kind='stable')
      a[order[0]] = (r[order[0]] - r[order[1]]) / (r.std(ddof=1) + eps)
    out.extend(a)
  return np.array(out)


def np_z(column, groups, eps):
  return np_grpo(column, groups, eps)


def np_normalize_then_sum(rewards, groups, eps, weights):
  return sum(w * np_z(rewards[:, k], groups, eps) for k, w in enumerate(weights))


def np_normalize_then_mean(rewards, groups, eps, weights):
  return np.mean([np_z(w * rewards[:, k], groups, eps) for k, w in enumerate(weights)], axis=0)


def np_gdpo(rewards, groups, eps, weights):
  s = np_normalize_then_sum(rewards, groups, eps, weights)
  return (s - s.mean()) / (s.std(ddof=1) + eps)


NP_SCALAR = {'grpo': np_grpo, 'drgrpo': np_drgrpo, 'batch_std': np_batch_std, 'rloo': np_rloo,
             'reinforce_pp_baseline': np_reinforce_pp_baseline, 'passk': np_passk}
NP_PER_REWARD = {'normalize_then_sum': np_normalize_then_sum, 'normalize_then_mean': np_normalize_then_mean,
                 'gdpo': np_gdpo}


def _rewards(seed: int, prompts: int, groups: int) -> np.ndarray:
  rng = np.random.default_rng(seed)
  rewards = rng.choice([0.0, 0.5, 1.0, 1.5], size=(prompts, groups)) + rng.normal(0, 0.1, (prompts, groups))
  rewards[0] = 1.0  # a group without signal
  if prompts > 1:
    rewards[1] = rng.integers(0, 2, groups)  # binary rewards (ties at the top for pass@k)
  return rewards.reshape(-1).astype(np.float32)


def _columns(seed: int, prompts: int, groups: int, columns: int = 3) -> np.ndarray:
  rng = np.random.default_rng(seed)
  rows = prompts * groups
  rewards = rng.choice([0.0, 0.5, 1.0], size=(rows, columns)) + rng.normal(0, 0.1, (rows, columns))
  rewards[:groups, 1] = 0.5  # one column without signal in the first group
  return rewards.astype(np.float32)


# ------------------------------------------------------------------ values
def test_every_estimator_has_a_reference():
  assert set(NP_SCALAR) | set(NP_PER_REWARD) == set(adv_lib.ADVANTAGE_ESTIMATORS)


@pytest.mark.parametrize('name', SCALAR)
@pytest.mark.parametrize('groups', [2, 4, 8])
@pytest.mark.parametrize('seed', [0, 1])
def test_scalar_estimators_match_numpy(name, groups, seed):
  rewards = _rewards(seed, 5, groups)
  fn = jax.jit(adv_lib.get_advantage_fn(name), static_argnums=1, static_argnames='eps')
  got = fn(jnp.asarray(rewards), groups, eps=EPS)
  np.testing.assert_allclose(np.asarray(got), NP_SCALAR[name](rewards, groups, EPS), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('name', PER_REWARD)
@pytest.mark.parametrize('weights', [None, (1.0, 0.5, 2.0), (1.0, -1.0, 0.25)])
@pytest.mark.parametrize('groups', [2, 4])
def test_per_reward_estimators_match_numpy(name, weights, groups):
  rewards = _columns(7, 4, groups)
  got = adv_lib.get_advantage_fn(name)(jnp.asarray(rewards), groups, eps=EPS, weights=weights)
  expected = NP_PER_REWARD[name](rewards.astype(np.float64), groups, EPS, weights or (1.0, 1.0, 1.0))
  np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-5)


def test_normalize_then_sum_differs_from_sum_then_normalize():
  rewards = _columns(8, 3, 4)
  per_reward = np.asarray(adv_lib.normalize_then_sum(jnp.asarray(rewards), 4, eps=EPS))
  summed = np.asarray(adv_lib.grpo(jnp.asarray(rewards.sum(axis=1)), 4, eps=EPS))
  assert np.abs(per_reward - summed).max() > 0.1
  # With one column the two coincide.
  np.testing.assert_allclose(np.asarray(adv_lib.normalize_then_sum(jnp.asarray(rewards[:, :1]), 4, eps=EPS)),
                             np.asarray(adv_lib.grpo(jnp.asarray(rewards[:, 0]), 4, eps=EPS)), rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------ properties
@pytest.mark.parametrize('name', SCALAR)
def test_equal_rewards_and_singleton_groups_give_zero_advantage(name):
  fn = adv_lib.get_advantage_fn(name)
  singleton = fn(jnp.asarray([0.3, 1.0, -2.0], jnp.float32), 1, eps=EPS)
  np.testing.assert_array_equal(np.asarray(singleton), 0.0)
  flat = fn(jnp.full((8,), 0.7, jnp.float32), 4, eps=EPS)
  np.testing.assert_allclose(np.asarray(flat), 0.0, atol=1e-6)


@pytest.mark.parametrize('name', PER_REWARD)
def test_per_reward_singleton_groups_are_finite_zero(name):
  got = adv_lib.get_advantage_fn(name)(jnp.asarray(_columns(2, 5, 1)), 1, eps=EPS)
  np.testing.assert_array_equal(np.asarray(got), 0.0)


@pytest.mark.parametrize('name', ['grpo', 'drgrpo', 'batch_std', 'rloo', 'reinforce_pp_baseline',
                                  'normalize_then_sum', 'normalize_then_mean'])
def test_advantages_are_centred_per_group(name):
  rewards = _columns(4, 6, 4) if name in PER_REWARD else _rewards(4, 6, 4)
  got = np.asarray(adv_lib.get_advantage_fn(name)(jnp.asarray(rewards), 4, eps=EPS))
  np.testing.assert_allclose(got.reshape(-1, 4).sum(axis=1), 0.0, atol=1e-5)


def test_passk_rewards_only_the_strict_best_of_each_group():
  rewards = jnp.asarray([0.0, 1.0, 0.0, 0.0,  # one solver: only it is pushed up
                         1.0, 1.0, 0.0, 0.0,  # a tie at the top: no signal
                         0.2, 0.9, 0.5, 0.1])
  got = np.asarray(adv_lib.passk(rewards, 4, eps=0.0)).reshape(3, 4)
  np.testing.assert_allclose(got[0], [0.0, 1.0 / np.std([0, 1, 0, 0], ddof=1), 0.0, 0.0], rtol=1e-6)
  np.testing.assert_array_equal(got[1], 0.0)
  assert got[2, 1] > 0 and np.count_nonzero(got[2]) == 1


def test_rloo_is_a_rescaled_drgrpo():
  rewards = jnp.asarray(_rewards(9, 4, 4))
  np.testing.assert_allclose(np.asarray(adv_lib.rloo(rewards, 4, eps=EPS)),
                             4 / 3 * np.asarray(adv_lib.drgrpo(rewards, 4, eps=EPS)), rtol=1e-5, atol=1e-6)


def test_batch_whitened_estimators_have_unit_batch_scale():
  rewards = jnp.asarray(_rewards(10, 6, 4))
  rpp = np.asarray(adv_lib.reinforce_pp_baseline(rewards, 4, eps=0.0))
  np.testing.assert_allclose([rpp.mean(), rpp.std(ddof=1)], [0.0, 1.0], atol=1e-5)
  gdpo = np.asarray(adv_lib.gdpo(jnp.asarray(_columns(10, 6, 4)), 4, eps=1e-8))  # a constant column: 0/eps
  np.testing.assert_allclose([gdpo.mean(), gdpo.std(ddof=1)], [0.0, 1.0], atol=1e-5)


def test_grpo_scales_to_unit_unbiased_std():
  got = np.asarray(adv_lib.grpo(jnp.asarray([0.0, 1.0, 0.0, 1.0]), 4, eps=0.0))
  np.testing.assert_allclose(got.std(ddof=1), 1.0, rtol=1e-6)


def test_group_stats():
  rewards = _rewards(5, 6, 4)
  stats = adv_lib.group_stats(jnp.asarray(rewards), 4)
  grouped = rewards.astype(np.float64).reshape(-1, 4)
  np.testing.assert_allclose(float(stats['frac_reward_zero_std']), np.mean(np.ptp(grouped, axis=1) == 0))
  assert float(stats['frac_reward_zero_std']) == pytest.approx(1 / 6)
  np.testing.assert_allclose(float(stats['reward_group_std_mean']), grouped.std(axis=1, ddof=1).mean(), rtol=1e-5)


# ------------------------------------------------------------------ errors
def test_unknown_estimator_lists_valid_names():
  with pytest.raises(ValueError, match="'nope'.*batch_std.*drgrpo.*gdpo.*grpo.*passk.*rloo"):
    adv_lib.get_advantage_fn('nope')


@pytest.mark.parametrize('rows,groups', [(6, 4), (6, 0)])
def test_bad_group_shapes_raise(rows, groups):
  with pytest.raises(ValueError, match='num_generations'):
    adv_lib.grpo(jnp.zeros((rows,)), groups, eps=EPS)


def test_rank_mismatch_names_the_right_estimators():
  with pytest.raises(ValueError, match='normalize_then_sum'):
    adv_lib.grpo(jnp.zeros((8, 2)), 4, eps=EPS)
  with pytest.raises(ValueError, match=r'\[B, R\]'):
    adv_lib.normalize_then_sum(jnp.zeros((8,)), 4, eps=EPS)
  with pytest.raises(ValueError, match='one entry per reward column'):
    adv_lib.gdpo(jnp.zeros((8, 2)), 4, eps=EPS, weights=(1.0, 2.0, 3.0))
