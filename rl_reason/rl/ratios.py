"""Importance ratios between the current and the behaviour policy: token, sequence (GSPO), GSPO-token.

Shapes: B rows, T completion tokens; every ratio is returned per token, f32[B, T] (a sequence
ratio is broadcast over its row). `mask` [B, T] is 1 for real completion tokens.
Notation: delta = logprobs - old_logprobs; sg = stop_gradient.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

# verl clamps the log-ratio to [-20, 20] before exp(): beyond it exp() overflows float32 or one
# token dominates the batch. The clamp also zeroes the gradient there.
LOG_RATIO_BOUND = 20.0
# verl's GSPO-token clamps the combined log-ratio from above at 10.
GSPO_TOKEN_LOG_RATIO_MAX = 10.0

RatioFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


def _sequence_log_ratio(logprobs: jax.Array, old_logprobs: jax.Array, mask: jax.Array) -> jax.Array:
  """(1/|o_i|) sum_t m delta, [B, 1]; an empty row gives 0."""
  mask = mask.astype(logprobs.dtype)
  lengths = jnp.maximum(jnp.sum(mask, axis=1, keepdims=True), 1.0)
  return jnp.sum((logprobs - old_logprobs) * mask, axis=1, keepdims=True) / lengths


def token_ratio(logprobs: jax.Array, old_logprobs: jax.Array, mask: jax.Array) -> jax.Array:
  """rho_it = exp(clip(delta_it, -20, 20)) (PPO / GRPO)."""
  del mask  # per-token: padding is removed by the aggregation
  return jnp.exp(jnp.clip(logprobs - old_logprobs, -LOG_RATIO_BOUND, LOG_RATIO_BOUND))


def sequence_ratio(logprobs: jax.Array, old_logprobs: jax.Array, mask: jax.Array) -> jax.Array:
  """GSPO: s_i = exp(clip((1/|o_i|) sum_t m delta, -20, 20)); the gradient flows through the mean."""
  log_ratio = jnp.clip(_sequence_log_ratio(logprobs, old_logprobs, mask), -LOG_RATIO_BOUND, LOG_RATIO_BOUND)
  return jnp.broadcast_to(jnp.exp(log_ratio), logprobs.shape)


def sequence_token_ratio(logprobs: jax.Array, old_logprobs: jax.Array, mask: jax.Array) -> jax.Array:
  """GSPO-token: s_it = sg[s_i] * exp(lp_it - sg[lp_it]), log clamped above at 10 (verl `gspo`).

  Equal to s_i in value; its gradient is s_i * d lp_it, which admits per-token advantages.
  """
  sg = jax.lax.stop_gradient
  log_ratio = sg(_sequence_log_ratio(logprobs, old_logprobs, mask)) + logprobs - sg(logprobs)
  return jnp.exp(jnp.minimum(log_ratio, GSPO_TOKEN_LOG_RATIO_MAX))


RATIOS: dict[str, RatioFn] = {
    'token': token_ratio,
    'sequence': sequence_ratio,
    'sequence_token': sequence_token_ratio,
}
