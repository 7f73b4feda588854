"""Adaptive entropy control (Skywork-OR1, "MAGIC"): an entropy-bonus coefficient driven toward a target entropy.

A fixed entropy bonus either does too little (the policy still collapses) or too much (entropy
grows without bound and the answers turn to noise). Skywork-OR1 instead steers the coefficient
with the measured entropy e_k of each step's rollout batch:

  c_k     = clip(c_{k-1} + delta * sign(target - e_k), 0, c_max)      (c_{-1} = the initial coefficient)
  alpha_k = c_k  if e_k < target  else 0                              the bonus applied at step k

so the bonus switches on, and grows, only while the entropy is below the target, and decays once
it is above. Host-side and stateful (c): the state is checkpointed with the run.

e_k here is the rollout's mean per-token entropy, sum(H * mask) / sum(mask), with H the exact
entropy of each step's (temperature-scaled) distribution over the vocabulary, which the sampler
computes as it draws (as verl's actor computes it from the logits): available before the update (no
one-step lag). `sampled_entropy`, -sum(logp * mask) / sum(mask) of the sampled tokens' log-probs, is
an unbiased but noisier estimate of the same value, logged beside it.
"""

from __future__ import annotations

import dataclasses

import numpy as np


def mean_entropy(entropies: np.ndarray, mask: np.ndarray) -> float:
  """Mean of per-token entropies [B, N] over the real completion tokens (mask [B, N])."""
  mask = np.asarray(mask, np.float64)
  return float(np.sum(np.asarray(entropies, np.float64) * mask) / max(np.sum(mask), 1.0))


def sampled_entropy(logprobs: np.ndarray, mask: np.ndarray) -> float:
  """Mean per-token entropy estimate -E[log p(sampled token)] over the real completion tokens."""
  return mean_entropy(-np.asarray(logprobs, np.float64), mask)


@dataclasses.dataclass
class EntropyController:
  """Skywork-OR1 adaptive entropy coefficient; `step(e)` returns the bonus coefficient of this step."""

  target: float  # target mean token entropy (nats); > 0
  delta: float  # coefficient change per step
  max_coef: float  # upper clip of the coefficient
  coef: float = 0.0  # c: the running coefficient (initial value = the config's entropy_coef)

  def __post_init__(self):
    if self.target <= 0 or self.delta <= 0 or self.max_coef <= 0:
      raise ValueError(f'entropy control needs target, delta, max_coef > 0, got {self.target}, {self.delta}, '
                       f'{self.max_coef}')
    if not 0.0 <= self.coef <= self.max_coef:
      raise ValueError(f'the initial entropy coefficient {self.coef} must be in [0, max_coef={self.max_coef}]')

  def step(self, entropy: float) -> float:
    self.coef = float(np.clip(self.coef + self.delta * np.sign(self.target - entropy), 0.0, self.max_coef))
    return self.coef if entropy < self.target else 0.0

  def state(self) -> dict[str, float]:
    return {'coef': self.coef}

  def restore(self, state: dict[str, float] | None) -> None:
    if state is not None:
      self.coef = float(state['coef'])
