"""Per-token policy-gradient losses (PPO clip surrogate + KL penalty) and their aggregation.

Shapes: B rows (= prompts x G generations), T completion tokens. Per-token arrays are [B, T];
`mask` [B, T] is 1 for real completion tokens (the EOS token included) and 0 for padding;
advantages are per row, [B].
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

# verl bounds: exp() of a larger log-ratio overflows float32 or dominates the batch.
_LOG_RATIO_BOUND = 20.0
_K3_BOUND = 10.0


def kl_k1(logprobs: jax.Array, ref_logprobs: jax.Array) -> jax.Array:
  """k1 = log pi - log pi_ref: unbiased, high variance, can be negative."""
  return logprobs - ref_logprobs


def kl_k2(logprobs: jax.Array, ref_logprobs: jax.Array) -> jax.Array:
  """k2 = (log pi - log pi_ref)^2 / 2."""
  return 0.5 * jnp.square(logprobs - ref_logprobs)


def kl_k3(logprobs: jax.Array, ref_logprobs: jax.Array) -> jax.Array:
  """k3 = exp(ref - lp) - (ref - lp) - 1 >= 0, clamped as verl's low_var_kl."""
  log_ratio = jnp.clip(ref_logprobs - logprobs, -_LOG_RATIO_BOUND, _LOG_RATIO_BOUND)
  return jnp.clip(jnp.exp(log_ratio) - log_ratio - 1.0, -_K3_BOUND, _K3_BOUND)


KL_ESTIMATORS: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    'k1': kl_k1,
    'k2': kl_k2,
    'k3': kl_k3,
}


def ppo_clip_surrogate(logprobs: jax.Array, old_logprobs: jax.Array, advantages: jax.Array,
                       eps_low: float, eps_high: float) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Per-token -min(rho A, clip(rho, 1-eps_low, 1+eps_high) A) [B, T] and per-token stats.

  stats: `ratio` [B, T]; `clipped_low` / `clipped_high` [B, T] bool, the tokens whose gradient the
  clip removes (rho below the range with A < 0, above it with A > 0).
  """
  ratio = jnp.exp(jnp.clip(logprobs - old_logprobs, -_LOG_RATIO_BOUND, _LOG_RATIO_BOUND))
  adv = advantages.astype(ratio.dtype)[:, None]  # [B, 1]
  unclipped = ratio * adv
  clipped = jnp.clip(ratio, 1.0 - eps_low, 1.0 + eps_high) * adv
  per_token_loss = -jnp.minimum(unclipped, clipped)
  ratio_value = jax.lax.stop_gradient(ratio)
  stats = {
      'ratio': ratio_value,
      'clipped_low': (ratio_value < 1.0 - eps_low) & (adv < 0),
      'clipped_high': (ratio_value > 1.0 + eps_high) & (adv > 0),
  }
  return per_token_loss, stats


def seq_mean_token_mean(per_token: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean over rows of each row's token mean; empty rows count as 0 (original GRPO)."""
  mask = mask.astype(per_token.dtype)
  row_sums = jnp.sum(per_token * mask, axis=1)
  return jnp.mean(row_sums / jnp.maximum(jnp.sum(mask, axis=1), 1.0))


def token_mean(per_token: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean over all real tokens of the batch (DAPO / verl token-mean): no length bias per row."""
  mask = mask.astype(per_token.dtype)
  return jnp.sum(per_token * mask) / jnp.maximum(jnp.sum(mask), 1.0)


AGGREGATIONS: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    'seq_mean_token_mean': seq_mean_token_mean,
    'token_mean': token_mean,
}


@dataclasses.dataclass(frozen=True)
class LossConfig:
  """The policy loss (hashable: it is a static argument of the jitted update)."""

  eps_low: float = 0.2  # clip range below 1
  eps_high: float = 0.2  # clip range above 1 (DAPO clip-higher: 0.28)
  beta: float = 0.04  # KL penalty coefficient (TRL default); 0 = no reference needed
  kl_estimator: str = 'k3'
  aggregation: str = 'seq_mean_token_mean'
  entropy_coef: float = 0.0  # + bonus / - penalty on mean token entropy (aggregated like the loss)

  def __post_init__(self):
    if not 0.0 <= self.eps_low < 1.0:
      raise ValueError(f'eps_low must be in [0, 1), got {self.eps_low}')
    if self.eps_high < 0.0:
      raise ValueError(f'eps_high must be >= 0, got {self.eps_high}')
    if self.beta < 0.0:
      raise ValueError(f'beta must be >= 0, got {self.beta}')
    if self.kl_estimator not in KL_ESTIMATORS:
      raise ValueError(f'kl_estimator {self.kl_estimator!r} unknown; valid: {sorted(KL_ESTIMATORS)}')
    if self.aggregation not in AGGREGATIONS:
      raise ValueError(f'aggregation {self.aggregation!r} unknown; valid: {sorted(AGGREGATIONS)}')


def _masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
  return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def policy_loss(logprobs: jax.Array, old_logprobs: jax.Array, ref_logprobs: jax.Array | None,
                advantages: jax.Array, mask: jax.Array, cfg: LossConfig,
                entropy: jax.Array | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Scalar loss to minimise and gradient-free metrics.

  Args:
    logprobs: f32[B, T] log-probs of the completion tokens under the current policy.
    old_logprobs: f32[B, T] under the behaviour policy (stop_gradient(logprobs) when on-policy).
    ref_logprobs: f32[B, T] under the KL reference, or None (then cfg.beta must be 0).
    advantages: f32[B] one advantage per completion.
    mask: [B, T] completion mask.
    cfg: the loss configuration.
    entropy: f32[B, T] per-token entropy of the current policy (with gradient); required when
      cfg.entropy_coef != 0. The per-token loss gets -entropy_coef * entropy (TRL, verl).

  Returns:
    (loss, metrics) with metrics loss, kl (mask-mean k3, whatever the loss estimator, so runs stay
    comparable; 0 without a reference), clip_frac_low, clip_frac_high, ratio_mean, ratio_max,
    advantage_mean, advantage_std.
  """
  if cfg.beta > 0 and ref_logprobs is None:
    raise ValueError(f'beta={cfg.beta} > 0 needs ref_logprobs; pass them or set beta=0')
  per_token, stats = ppo_clip_surrogate(logprobs, old_logprobs, advantages, cfg.eps_low, cfg.eps_high)
  if cfg.beta > 0:
    per_token = per_token + cfg.beta * KL_ESTIMATORS[cfg.kl_estimator](logprobs, ref_logprobs)
  if cfg.entropy_coef != 0.0:
    if entropy is None:
      raise ValueError(f'entropy_coef={cfg.entropy_coef} needs the per-token entropy')
    per_token = per_token - cfg.entropy_coef * entropy
  loss = AGGREGATIONS[cfg.aggregation](per_token, mask)

  mask_f = mask.astype(jnp.float32)
  ratio = stats['ratio']
  sg = jax.lax.stop_gradient
  kl = (_masked_mean(sg(kl_k3(logprobs, ref_logprobs)), mask_f) if ref_logprobs is not None
        else jnp.zeros((), jnp.float32))
  metrics = {
      'loss': sg(loss),
      'kl': kl,
      'clip_frac_low': _masked_mean(stats['clipped_low'].astype(jnp.float32), mask_f),
      'clip_frac_high': _masked_mean(stats['clipped_high'].astype(jnp.float32), mask_f),
      'ratio_mean': _masked_mean(ratio, mask_f),
      # ratio > 0, so 0 only shows up when the batch has no real token.
      'ratio_max': jnp.max(jnp.where(mask_f > 0, ratio, 0.0)),
      'advantage_mean': sg(jnp.mean(advantages)),
      'advantage_std': sg(jnp.std(advantages)),
  }
  return loss, metrics
