"""Group advantage estimators against float64 numpy references.

Shapes: B = P*G rewards, G generations per prompt.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rl_reason.rl import advantages as adv_lib

EPS = 1e-4


def np_grpo(rewards: np.ndarray, groups: int, eps: float) -> np.ndarray:
  out = np.empty(len(rewards))
  for start in range(0, len(rewards), groups):
    r = rewards[start:start + groups].astype(np.float64)
    std = r.std(ddof=1) if groups > 1 else 0.0
    out[start:start + groups] = (r - r.mean()) / (std + eps)
  return out


def np_drgrpo(rewards: np.ndarray, groups: int) -> np.ndarray:
  grouped = rewards.astype(np.float64).reshape(-1, groups)
  return (grouped - grouped.mean(axis=1, keepdims=True)).reshape(-1)


def _rewards(seed: int, prompts: int, groups: int) -> np.ndarray:
  rng = np.random.default_rng(seed)
  rewards = rng.choice([0.0, 0.5, 1.0, 1.5], size=(prompts, groups)) + rng.normal(0, 0.1, (prompts, groups))
  rewards[0] = 1.0  # a group without signal
  if prompts > 1:
    rewards[1] = rng.integers(0, 2, groups)  # binary rewards
  return rewards.reshape(-1).astype(np.float32)


@pytest.mark.parametrize('groups', [2, 4, 8])
@pytest.mark.parametrize('seed', [0, 1])
def test_grpo_matches_numpy(groups, seed):
  rewards = _rewards(seed, 5, groups)
  got = jax.jit(adv_lib.grpo, static_argnums=1)(jnp.asarray(rewards), groups, eps=EPS)
  np.testing.assert_allclose(np.asarray(got), np_grpo(rewards, groups, EPS), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('groups', [2, 8])
def test_drgrpo_matches_numpy(groups):
  rewards = _rewards(3, 4, groups)
  got = adv_lib.get_advantage_fn('drgrpo')(jnp.asarray(rewards), groups, eps=EPS)
  np.testing.assert_allclose(np.asarray(got), np_drgrpo(rewards, groups), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize('name', sorted(adv_lib.ADVANTAGE_ESTIMATORS))
def test_equal_rewards_and_singleton_groups_give_zero_advantage(name):
  fn = adv_lib.get_advantage_fn(name)
  singleton = fn(jnp.asarray([0.3, 1.0, -2.0], jnp.float32), 1, eps=EPS)
  np.testing.assert_array_equal(np.asarray(singleton), 0.0)
  flat = fn(jnp.full((8,), 0.7, jnp.float32), 4, eps=EPS)
  np.testing.assert_allclose(np.asarray(flat), 0.0, atol=1e-6)


@pytest.mark.parametrize('name', sorted(adv_lib.ADVANTAGE_ESTIMATORS))
def test_advantages_are_centred_per_group(name):
  rewards = _rewards(4, 6, 4)
  got = np.asarray(adv_lib.get_advantage_fn(name)(jnp.asarray(rewards), 4, eps=EPS))
  np.testing.assert_allclose(got.reshape(-1, 4).sum(axis=1), 0.0, atol=1e-5)


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


def test_unknown_estimator_lists_valid_names():
  with pytest.raises(ValueError, match="'nope'.*drgrpo.*grpo"):
    adv_lib.get_advantage_fn('nope')


@pytest.mark.parametrize('rows,groups', [(6, 4), (6, 0)])
def test_bad_group_shapes_raise(rows, groups):
  with pytest.raises(ValueError, match='num_generations'):
    adv_lib.grpo(jnp.zeros((rows,)), groups, eps=EPS)
