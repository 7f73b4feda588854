"""A bandit: each (surrogate, advantage estimator) pair, trained as the loop trains, raises the expected reward.

A softmax policy over K arms with Bernoulli payoffs; P prompts x G samples per step, one token per
completion; advantages from the registered estimator, loss from losses.policy_loss (on-policy, the
stop_gradient ratio), Adam. The test fails if an objective's gradient points the wrong way, is
zero, or is too noisy to learn from.
"""

import functools

import jax
import jax.numpy as jnp
import optax
import pytest

from rl_reason.rl import advantages as advantages_lib
from rl_reason.rl import losses
from rl_reason.rl import surrogates

PAYOFF = jnp.array([0.1, 0.3, 0.5, 0.8])  # success probability of each arm
PROMPTS, GROUPS, STEPS = 8, 8, 150


@functools.partial(jax.jit, static_argnames=('surrogate', 'estimator'))
def _train(key, surrogate: str, estimator: str):
  cfg = losses.LossConfig(surrogate=surrogate, beta=0.0)
  advantage_fn = advantages_lib.get_advantage_fn(estimator)
  per_reward = estimator in advantages_lib.PER_REWARD_ESTIMATORS
  tx = optax.adam(0.05)
  logits = jnp.zeros(PAYOFF.shape)

  def step(carry, key):
    logits, opt_state = carry
    arm_key, reward_key = jax.random.split(key)
    arms = jax.random.categorical(arm_key, logits, shape=(PROMPTS * GROUPS,))  # [B]
    rewards = jax.random.bernoulli(reward_key, PAYOFF[arms]).astype(jnp.float32)
    if per_reward:
      advantages = advantage_fn(rewards[:, None], GROUPS, eps=1e-4, weights=(1.0,))
    else:
      advantages = advantage_fn(rewards, GROUPS, eps=1e-4)

    def loss_fn(logits):
      logp = jax.nn.log_softmax(logits)[arms][:, None]  # [B, 1]: one token per completion
      loss, _ = losses.policy_loss(logp, jax.lax.stop_gradient(logp), None, advantages, jnp.ones_like(logp), cfg)
      return loss

    updates, opt_state = tx.update(jax.grad(loss_fn)(logits), opt_state)
    return (optax.apply_updates(logits, updates), opt_state), None

  (logits, _), _ = jax.lax.scan(step, (logits, tx.init(logits)), jax.random.split(key, STEPS))
  return jnp.dot(jax.nn.softmax(logits), PAYOFF)


@pytest.mark.parametrize('surrogate', sorted(surrogates.SURROGATES))
@pytest.mark.parametrize('estimator', sorted(advantages_lib.ADVANTAGE_ESTIMATORS))
def test_objective_raises_expected_reward(surrogate, estimator):
  start = float(jnp.mean(PAYOFF))  # the uniform policy
  end = float(_train(jax.random.key(0), surrogate=surrogate, estimator=estimator))
  assert end > start + 0.2, f'{surrogate} x {estimator}: expected reward {start:.3f} -> {end:.3f}'
