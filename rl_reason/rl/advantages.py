"""Group-relative advantage estimators (GRPO family), pure jit-able jnp functions.

Shapes: B = P*G rows ordered as P groups of G consecutive rows (all samples of one prompt);
G generations per prompt; R reward functions (per-reward estimators only).

Every estimator maps rewards to one advantage per row, f32[B]. A singleton group (G = 1) has no
baseline to compare with and gets advantage 0 (never NaN). Formulas follow
/work/shared/reference/PEERS_PYTORCH.md §2.1 and the peers' code named in each docstring.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import jax
import jax.numpy as jnp


class AdvantageFn(Protocol):
  """rewards f32[B] (or f32[B, R] for a per-reward estimator), G -> advantages f32[B]."""

  def __call__(self, rewards: jax.Array, num_generations: int, *, eps: float) -> jax.Array:
    ...


def _check_groups(rows: int, num_generations: int) -> None:
  if num_generations < 1:
    raise ValueError(f'num_generations must be >= 1, got {num_generations}')
  if rows % num_generations:
    raise ValueError(f'the number of rows {rows} is not divisible by num_generations={num_generations}')


def _grouped(rewards: jax.Array, num_generations: int) -> jax.Array:
  """f32[B] -> f32[P, G]; shape errors surface at trace time."""
  if rewards.ndim != 1:
    raise ValueError(f'rewards must be 1-D [B] for this estimator, got shape {rewards.shape} '
                     f'(per-reward columns [B, R] go to {sorted(PER_REWARD_ESTIMATORS)})')
  _check_groups(rewards.shape[0], num_generations)
  return rewards.astype(jnp.float32).reshape(-1, num_generations)


def _group_std(grouped: jax.Array) -> jax.Array:
  """Unbiased (N-1) std per group, [P, 1]; a singleton group has std 0 (not NaN)."""
  centred = grouped - jnp.mean(grouped, axis=1, keepdims=True)
  dof = max(grouped.shape[1] - 1, 1)
  return jnp.sqrt(jnp.sum(jnp.square(centred), axis=1, keepdims=True) / dof)


def _batch_std(x: jax.Array) -> jax.Array:
  """Unbiased std over all entries (torch.std); 0 for a single entry."""
  dof = max(x.size - 1, 1)
  return jnp.sqrt(jnp.sum(jnp.square(x - jnp.mean(x))) / dof)


def _group_normalised(grouped: jax.Array, eps: float) -> jax.Array:
  centred = grouped - jnp.mean(grouped, axis=1, keepdims=True)
  return centred / (_group_std(grouped) + eps)


def grpo(rewards: jax.Array, num_generations: int, *, eps: float) -> jax.Array:
  """A = (r - mean_g) / (std_g + eps) with the unbiased group std; singleton groups get 0."""
  return _group_normalised(_grouped(rewards, num_generations), eps).reshape(-1)


def drgrpo(rewards: jax.Array, num_generations: int, *, eps: float) -> jax.Array:
  """Dr. GRPO: A = r - mean_g (no std scaling, so no difficulty bias)."""
  del eps  # part of the common signature; unused without a std division
  grouped = _grouped(rewards, num_generations)
  return (grouped - jnp.mean(grouped, axis=1, keepdims=True)).reshape(-1)


def batch_std(rewards: jax.Array, num_generations: int, *, eps: float) -> jax.Array:
  """A = (r - mean_g) / (std_batch(r) + eps): TRL `scale_rewards='batch'` (Lite-PPO).

  The std is the unbiased std of the raw rewards over the whole batch, as in TRL.
  """
  grouped = _grouped(rewards, num_generations)
  centred = grouped - jnp.mean(grouped, axis=1, keepdims=True)
  return (centred / (_batch_std(grouped) + eps)).reshape(-1)


def rloo(rewards: jax.Array, num_generations: int, *, eps: float) -> jax.Array:
  """RLOO: A_i = r_i - mean_{j != i} r_j = G/(G-1) (r_i - mean_g) (verl `rloo`); G = 1 gives 0."""
  del eps  # no division by a statistic
  grouped = _grouped(rewards, num_generations)
  if num_generations == 1:
    return jnp.zeros_like(grouped).reshape(-1)
  others = (jnp.sum(grouped, axis=1, keepdims=True) - grouped) / (num_generations - 1)
  return (grouped - others).reshape(-1)


def reinforce_pp_baseline(rewards: jax.Array, num_generations: int, *, eps: float) -> jax.Array:
  """REINFORCE++-baseline: c = r - mean_g, then whitened over the batch: (c - mean c) * rsqrt(var c + eps).

  As verl's `masked_whiten` (unbiased variance, eps added to the variance). verl whitens the
  advantage broadcast to every valid token, which weights a row by its length; here every
  completion counts once (the estimator sees rewards only).
  """
  grouped = _grouped(rewards, num_generations)
  centred = (grouped - jnp.mean(grouped, axis=1, keepdims=True)).reshape(-1)
  return (centred - jnp.mean(centred)) * jax.lax.rsqrt(jnp.square(_batch_std(centred)) + eps)


def passk(rewards: jax.Array, num_generations: int, *, eps: float) -> jax.Array:
  """GRPO pass@k (verl / EasyR1 `grpo_passk`, PEERS_PYTORCH.md §2.1; ALGORITHMS.md has no definition).

  Only the best sample of each group gets a non-zero advantage, (r_max - r_second) / (std_g + eps);
  ties give 0. verl raises for G < 2; here a singleton group gets 0.
  """
  grouped = _grouped(rewards, num_generations)
  if num_generations == 1:
    return jnp.zeros_like(grouped).reshape(-1)
  top2 = jax.lax.top_k(grouped, 2)[0]  # [P, 2]
  gap = (top2[:, 0:1] - top2[:, 1:2]) / (_group_std(grouped) + eps)  # [P, 1]
  best = jax.nn.one_hot(jnp.argmax(grouped, axis=1), num_generations, dtype=grouped.dtype)  # [P, G]
  return (best * gap).reshape(-1)


# ------------------------------------------------------------------ per-reward estimators, rewards [B, R]
def _grouped_columns(rewards: jax.Array, num_generations: int,
                     weights: Sequence[float] | None) -> tuple[jax.Array, jax.Array]:
  """f32[B, R] -> (f32[P, G, R], weights f32[R])."""
  if rewards.ndim != 2:
    raise ValueError(f'per-reward estimators take rewards [B, R] (one column per reward function), '
                     f'got shape {rewards.shape}')
  _check_groups(rewards.shape[0], num_generations)
  columns = rewards.shape[1]
  w = jnp.ones((columns,), jnp.float32) if weights is None else jnp.asarray(weights, jnp.float32)
  if w.shape != (columns,):
    raise ValueError(f'weights must have one entry per reward column ({columns}), got {w.shape}')
  return rewards.astype(jnp.float32).reshape(-1, num_generations, columns), w


def _column_normalised(grouped: jax.Array, eps: float) -> jax.Array:
  """Each reward column normalised within its group, [P, G, R]; singleton groups give 0."""
  centred = grouped - jnp.mean(grouped, axis=1, keepdims=True)
  dof = max(grouped.shape[1] - 1, 1)
  std = jnp.sqrt(jnp.sum(jnp.square(centred), axis=1, keepdims=True) / dof)
  return centred / (std + eps)


def normalize_then_sum(rewards: jax.Array, num_generations: int, *, eps: float,
                       weights: Sequence[float] | None = None) -> jax.Array:
  """A_i = sum_k w_k z_ik, z_ik = (r_ik - mean_g r_k) / (std_g r_k + eps): each reward normalised alone.

  The per-reward normalisation of GDPO (TRL `multi_objective_aggregation='normalize_then_sum'`)
  without TRL's final batch whitening (that is `gdpo`).
  """
  grouped, w = _grouped_columns(rewards, num_generations, weights)
  return jnp.sum(_column_normalised(grouped, eps) * w[None, None], axis=-1).reshape(-1)


def normalize_then_mean(rewards: jax.Array, num_generations: int, *, eps: float,
                        weights: Sequence[float] | None = None) -> jax.Array:
  """Jigsaw-R1 `reward_reduction='none'`: A_i = (1/R) sum_k z(w_k r_k)_i.

  As the Jigsaw-R1 trainer: the weights multiply the reward columns first, then each column is
  group-normalised, then the R advantages are averaged (so positive weights only matter through eps).
  """
  grouped, w = _grouped_columns(rewards, num_generations, weights)
  return jnp.mean(_column_normalised(grouped * w[None, None], eps), axis=-1).reshape(-1)


def gdpo(rewards: jax.Array, num_generations: int, *, eps: float,
         weights: Sequence[float] | None = None) -> jax.Array:
  """TRL GDPO: s = normalize_then_sum(r), then A = (s - mean_batch s) / (std_batch s + eps)."""
  summed = normalize_then_sum(rewards, num_generations, eps=eps, weights=weights)
  return (summed - jnp.mean(summed)) / (_batch_std(summed) + eps)


ADVANTAGE_ESTIMATORS: dict[str, AdvantageFn] = {
    'grpo': grpo,
    'drgrpo': drgrpo,
    'batch_std': batch_std,
    'rloo': rloo,
    'reinforce_pp_baseline': reinforce_pp_baseline,
    'passk': passk,
    'normalize_then_sum': normalize_then_sum,
    'normalize_then_mean': normalize_then_mean,
    'gdpo': gdpo,
}
# Estimators that take one reward column per reward function, rewards [B, R], and optional weights.
PER_REWARD_ESTIMATORS = frozenset({'normalize_then_sum', 'normalize_then_mean', 'gdpo'})


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
