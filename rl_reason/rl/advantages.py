"""Group-relative advantage estimators (GRPO family), pure jit-able jnp functions.

Shapes: B = P*G rows ordered as P groups of G consecutive rows (all samples of one prompt);
G generations per prompt.
"""

from __future__ import annotations

from typing import Protocol

import jax
import jax.numpy as jnp


class AdvantageFn(Protocol):
  """rewards f32[B], G -> advantages f32[B]."""

  def __call__(self, rewards: jax.Array, num_generations: int, *, eps: float) -> jax.Array:
    ...


def _grouped(rewards: jax.Array, num_generations: int) -> jax.Array:
  """f32[B] -> f32[P, G]; shape errors surface at trace time."""
  if num_generations < 1:
    raise ValueError(f'num_generations must be >= 1, got {num_generations}')
  if rewards.ndim != 1 or rewards.shape[0] % num_generations:
    raise ValueError(f'rewards must be 1-D with a length divisible by num_generations={num_generations}, '
                     f'got shape {rewards.shape}')
  return rewards.astype(jnp.float32).reshape(-1, num_generations)


def _group_std(grouped: jax.Array) -> jax.Array:
  """Unbiased (N-1) std per group, [P, 1]; a singleton group has std 0 (not NaN)."""
  centred = grouped - jnp.mean(grouped, axis=1, keepdims=True)
  dof = max(grouped.shape[1] - 1, 1)
  return jnp.sqrt(jnp.sum(jnp.square(centred), axis=1, keepdims=True) / dof)


def grpo(rewards: jax.Array, num_generations: int, *, eps: float) -> jax.Array:
  """A = (r - mean_g) / (std_g + eps) with the unbiased group std; singleton groups get 0."""
  grouped = _grouped(rewards, num_generations)
  centred = grouped - jnp.mean(grouped, axis=1, keepdims=True)
  return (centred / (_group_std(grouped) + eps)).reshape(-1)


def drgrpo(rewards: jax.Array, num_generations: int, *, eps: float) -> jax.Array:
  """Dr. GRPO: A = r - mean_g (no std scaling, so no difficulty bias)."""
  del eps  # part of the common signature; unused without a std division
  grouped = _grouped(rewards, num_generations)
  return (grouped - jnp.mean(grouped, axis=1, keepdims=True)).reshape(-1)


ADVANTAGE_ESTIMATORS: dict[str, AdvantageFn] = {
    'grpo': grpo,
    'drgrpo': drgrpo,
}


def get_advantage_fn(name: str) -> AdvantageFn:
  """The registered estimator `name`; unknown names raise a ValueError listing the valid ones."""
  if name not in ADVANTAGE_ESTIMATORS:
    raise ValueError(f'unknown advantage estimator {name!r}; valid: {sorted(ADVANTAGE_ESTIMATORS)}')
  return ADVANTAGE_ESTIMATORS[name]


def group_stats(rewards: jax.Array, num_generations: int) -> dict[str, jax.Array]:
  """Diagnostics of the group reward spread: groups with equal rewards carry no GRPO signal."""
  grouped = _grouped(rewards, num_generations)
  all_equal = jnp.all(grouped == grouped[:, :1], axis=1)
  return {
      'frac_reward_zero_std': jnp.mean(all_equal.astype(jnp.float32)),
      'reward_group_std_mean': jnp.mean(_group_std(grouped)),
  }
