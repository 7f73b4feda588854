"""Per-token policy-gradient surrogates l_it (to be minimised): PPO clip (+ dual clip), vanilla, CISPO, SAPO, GPG.

Shapes: B rows, T completion tokens. Inputs: `ratio` f32[B, T] (with gradient, from rl.ratios),
`logprobs` f32[B, T] (current policy, with gradient), `advantages` f32[B, T] (per-row advantages
broadcast by the caller). Output: (l [B, T], stats) where stats holds bool [B, T] masks
`clipped_low`, `clipped_high`, `clipped_dual` of the tokens whose gradient a clip removed or capped.
Formulas: /work/shared/reference/PEERS_PYTORCH.md §2.3 (sg = stop_gradient).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class SurrogateParams:
  """Hyper-parameters of the surrogates; each surrogate reads only its own."""

  eps_low: float = 0.2  # ppo_clip, cispo: the ratio is clipped to [1 - eps_low, 1 + eps_high]
  eps_high: float = 0.2
  dual_clip: float = 0.0  # ppo_clip: 0 = off, else c > 1 caps the loss at -c A for A < 0
  tau_pos: float = 1.0  # sapo: gate temperature for A > 0
  tau_neg: float = 1.05  # sapo: gate temperature for A <= 0


Stats = dict[str, jax.Array]
SurrogateFn = Callable[[jax.Array, jax.Array, jax.Array, SurrogateParams], tuple[jax.Array, Stats]]


def _stats(low: jax.Array | None = None, high: jax.Array | None = None, dual: jax.Array | None = None,
           *, like: jax.Array) -> Stats:
  none = jnp.zeros(like.shape, bool)
  return {'clipped_low': none if low is None else low, 'clipped_high': none if high is None else high,
          'clipped_dual': none if dual is None else dual}


def ppo_clip(ratio: jax.Array, logprobs: jax.Array, advantages: jax.Array,
             p: SurrogateParams) -> tuple[jax.Array, Stats]:
  """l = max(-A rho, -A clip(rho, 1-eps_low, 1+eps_high)); dual clip: l <- min(l, -c A) where A < 0.

  The dual clip (verl / EasyR1, c = 3) bounds the loss of a negative-advantage token whose ratio
  exploded; it is off when p.dual_clip == 0.
  """
  del logprobs  # the gradient reaches the log-probs through the ratio
  unclipped = -advantages * ratio
  clipped = -advantages * jnp.clip(ratio, 1.0 - p.eps_low, 1.0 + p.eps_high)
  loss = jnp.maximum(unclipped, clipped)
  value = jax.lax.stop_gradient(ratio)
  negative = advantages < 0
  dual = None
  if p.dual_clip > 0:
    cap = -p.dual_clip * advantages
    dual = negative & (jax.lax.stop_gradient(loss) > cap)
    loss = jnp.where(negative, jnp.minimum(loss, cap), loss)
  return loss, _stats((value < 1.0 - p.eps_low) & negative, (value > 1.0 + p.eps_high) & (advantages > 0), dual,
                      like=ratio)


def unclipped(ratio: jax.Array, logprobs: jax.Array, advantages: jax.Array,
              p: SurrogateParams) -> tuple[jax.Array, Stats]:
  """Vanilla importance-weighted policy gradient: l = -A rho (no trust region)."""
  del logprobs, p
  return -advantages * ratio, _stats(like=ratio)


def cispo(ratio: jax.Array, logprobs: jax.Array, advantages: jax.Array,
          p: SurrogateParams) -> tuple[jax.Array, Stats]:
  """CISPO: l = -sg[clip(rho, 1-eps_low, 1+eps_high)] A log pi (verl / EasyR1).

  TRL's form -sg[min(rho, eps_max)] A log pi is eps_low = 1, eps_high = eps_max - 1. Every token
  keeps a gradient; the stats count the tokens whose IS weight was clipped.
  """
  value = jax.lax.stop_gradient(ratio)
  weight = jnp.clip(value, 1.0 - p.eps_low, 1.0 + p.eps_high)
  return -weight * advantages * logprobs, _stats(value < 1.0 - p.eps_low, value > 1.0 + p.eps_high, like=ratio)


def sapo(ratio: jax.Array, logprobs: jax.Array, advantages: jax.Array,
         p: SurrogateParams) -> tuple[jax.Array, Stats]:
  """SAPO soft gate: l = -(4/tau) sigmoid(tau (rho - 1)) A, tau = tau_pos if A > 0 else tau_neg.

  At rho = 1 its slope equals the vanilla one (TRL, verl `sapo`); it has no hard clip.
  """
  del logprobs
  tau = jnp.where(advantages > 0, p.tau_pos, p.tau_neg)
  return -(4.0 / tau) * jax.nn.sigmoid(tau * (ratio - 1.0)) * advantages, _stats(like=ratio)


def gpg(ratio: jax.Array, logprobs: jax.Array, advantages: jax.Array,
        p: SurrogateParams) -> tuple[jax.Array, Stats]:
  """GPG: l = -A log pi (plain REINFORCE with the group advantage; no ratio)."""
  del p
  return -advantages * logprobs, _stats(like=ratio)


SURROGATES: dict[str, SurrogateFn] = {
    'ppo_clip': ppo_clip,
    'unclipped': unclipped,
    'cispo': cispo,
    'sapo': sapo,
    'gpg': gpg,
}
# Surrogates that read the importance ratio (GPG ignores it).
USES_RATIO = frozenset({'ppo_clip', 'unclipped', 'cispo', 'sapo'})
