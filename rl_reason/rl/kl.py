"""KL penalty towards the reference policy: estimators, in-reward placement, beta schedules, group factor.

Shapes: B rows, P groups of G rows, T completion tokens; per-token arrays [B, T], `mask` [B, T].
Notation (PEERS_PYTORCH.md §2.3): x = lp - lp_ref per token; sg = stop_gradient.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp

# verl's low_var_kl bounds: the log-ratio to [-20, 20] before exp(), k3 itself to [-10, 10].
_LOG_RATIO_BOUND = 20.0
_K3_BOUND = 10.0

KLFn = Callable[[jax.Array, jax.Array], jax.Array]


def kl_k1(logprobs: jax.Array, ref_logprobs: jax.Array) -> jax.Array:
  """k1 = x: unbiased, high variance, can be negative."""
  return logprobs - ref_logprobs


def kl_k2(logprobs: jax.Array, ref_logprobs: jax.Array) -> jax.Array:
  """k2 = x^2 / 2."""
  return 0.5 * jnp.square(logprobs - ref_logprobs)


def kl_k3(logprobs: jax.Array, ref_logprobs: jax.Array) -> jax.Array:
  """k3 = exp(-x) + x - 1 >= 0, clamped as verl's low_var_kl."""
  log_ratio = jnp.clip(ref_logprobs - logprobs, -_LOG_RATIO_BOUND, _LOG_RATIO_BOUND)
  return jnp.clip(jnp.exp(log_ratio) - log_ratio - 1.0, -_K3_BOUND, _K3_BOUND)


def _straight_through_k2(forward: KLFn) -> KLFn:
  """verl's "k1+"/"k3+": the value of `forward`, the gradient of k2 (whose expected gradient is the KL's)."""

  def estimator(logprobs: jax.Array, ref_logprobs: jax.Array) -> jax.Array:
    backward = kl_k2(logprobs, ref_logprobs)
    return backward - jax.lax.stop_gradient(backward) + jax.lax.stop_gradient(forward(logprobs, ref_logprobs))

  estimator.__doc__ = f'Value of {forward.__name__}, gradient of k2 (straight-through, verl).'
  return estimator


kl_k1_plus = _straight_through_k2(kl_k1)
kl_k3_plus = _straight_through_k2(kl_k3)

KL_ESTIMATORS: dict[str, KLFn] = {
    'k1': kl_k1,
    'k2': kl_k2,
    'k3': kl_k3,
    'k1+': kl_k1_plus,
    'k3+': kl_k3_plus,
}

KL_PLACEMENTS = ('loss', 'reward')


# ------------------------------------------------------------------ KL in the reward
def kl_penalized_token_rewards(rewards: jax.Array, logprobs: jax.Array, ref_logprobs: jax.Array,
                               mask: jax.Array, beta: float | jax.Array, estimator: str = 'k1') -> jax.Array:
  """Token rewards [B, T]: -beta * KL_t on every real token, the outcome reward r_i on the last one.

  verl `apply_kl_penalty` / EasyR1 (`use_kl_in_reward`, default estimator k1 on the behaviour
  log-probs). An empty row keeps r_i at position 0. Row sums are `kl_penalized_rewards`.
  """
  if estimator not in KL_ESTIMATORS:
    raise ValueError(f'unknown KL estimator {estimator!r}; valid: {sorted(KL_ESTIMATORS)}')
  mask = mask.astype(jnp.float32)
  penalty = beta * KL_ESTIMATORS[estimator](logprobs, ref_logprobs) * mask  # [B, T]
  last = jnp.maximum(jnp.sum(mask, axis=1).astype(jnp.int32) - 1, 0)  # [B]
  outcome = jax.nn.one_hot(last, mask.shape[1], dtype=jnp.float32) * rewards.astype(jnp.float32)[:, None]
  return outcome - penalty


def kl_penalized_rewards(rewards: jax.Array, logprobs: jax.Array, ref_logprobs: jax.Array, mask: jax.Array,
                         beta: float | jax.Array, estimator: str = 'k1') -> jax.Array:
  """r_i - beta * sum_t m KL_it, [B]: the scalar reward an outcome advantage estimator consumes."""
  return jnp.sum(kl_penalized_token_rewards(rewards, logprobs, ref_logprobs, mask, beta, estimator), axis=1)


# ------------------------------------------------------------------ beta as a function of the step
def _constant(beta: float, beta_final: float, steps: int, step: jax.Array) -> jax.Array:
  del beta_final, steps, step
  return jnp.asarray(beta)  # weakly typed: follows the loss's precision


def _progress(steps: int, step: jax.Array) -> jax.Array:
  return jnp.clip(jnp.asarray(step) / steps, 0.0, 1.0)


def _linear(beta: float, beta_final: float, steps: int, step: jax.Array) -> jax.Array:
  """beta -> beta_final linearly over `steps`, then constant."""
  return beta + (beta_final - beta) * _progress(steps, step)


def _cosine(beta: float, beta_final: float, steps: int, step: jax.Array) -> jax.Array:
  """beta -> beta_final along a half cosine over `steps`, then constant."""
  return beta_final + (beta - beta_final) * 0.5 * (1.0 + jnp.cos(math.pi * _progress(steps, step)))


BETA_SCHEDULES: dict[str, Callable[[float, float, int, jax.Array], jax.Array]] = {
    'constant': _constant,
    'linear': _linear,
    'cosine': _cosine,
}


def beta_at(schedule: str, beta: float, beta_final: float, steps: int, step: jax.Array | int | None) -> jax.Array:
  """The KL coefficient at `step` (a traced scalar is fine); `step` may be None only for 'constant'."""
  if schedule not in BETA_SCHEDULES:
    raise ValueError(f'unknown beta schedule {schedule!r}; valid: {sorted(BETA_SCHEDULES)}')
  if schedule != 'constant' and step is None:
    raise ValueError(f'beta schedule {schedule!r} needs the training step')
  return BETA_SCHEDULES[schedule](beta, beta_final, steps, step)


# ------------------------------------------------------------------ per-group KL factor (hook)
def akf_mean_reward(rewards: jax.Array, num_generations: int, scale: float) -> jax.Array:
  """UNVERIFIED approximation of GuirlVG's Adversarial KL Factor: f_g = exp(scale (mean_g r - mean_batch r)).

  The paper's formula could not be retrieved (ALGORITHMS.md §1.4). This implements its stated
  working hypothesis: a per-group multiplier of beta that increases with the group's mean reward
  (stronger pull towards the reference where reward over-optimisation is likeliest); f = 1 when
  all groups score alike. Returns f32[B] (one factor per row, equal within a group).
  """
  if rewards.ndim != 1 or rewards.shape[0] % num_generations:
    raise ValueError(f'rewards must be [B] with B divisible by num_generations={num_generations}, '
                     f'got {rewards.shape}')
  grouped = rewards.astype(jnp.float32).reshape(-1, num_generations)
  factor = jnp.exp(scale * (jnp.mean(grouped, axis=1, keepdims=True) - jnp.mean(grouped)))  # [P, 1]
  return jnp.broadcast_to(factor, grouped.shape).reshape(-1)


KL_GROUP_FACTORS: dict[str, Callable[[jax.Array, int, float], jax.Array]] = {
    'akf_mean_reward': akf_mean_reward,
}
