"""RuleReasoner domain-aware dynamic sampling: domains that lag behind a target accuracy get more prompts.

After every S-th step (S = update_every; steps S-1, 2S-1, ... 0-based, as verl's global step
S, 2S, ...) the step's per-completion correctness is pushed, per domain, as one record into a
buffer of the last K records, and the weights are recomputed (ALGORITHMS.md 1.9, the released
`compute_weights`):

    harmonic:  r_d = sum_j c_j * (sum of d's rewards in record j) / (number of d's samples in all records)
               c_j = 1, 1/2, 1/3, ... from the newest record;   r_target = base * H_K / K,  H_K = sum_{j<=K} 1/j
    ema (v2):  r_d = alpha * r_d(previous) + (1 - alpha) * (d's mean in the newest record);  r_target = base
    v_d = max(0, r_target - r_d);   w_d = exp((v_d + eps) / tau) / sum_e exp((v_e + eps) / tau)

Batches are then drawn with proportions w: 'quota' as the released DomainSampler (floor(P * w_d)
prompts each, the remainder one by one to the largest weights) in a seeded shuffled order, or
'sample' (P i.i.d. draws). The draw is a function of (seed, step, weights): no RNG state.

Differences from the released code, on purpose: a domain without samples in the buffer counts as
r_d = 0 (the code drops it from the weights, so it is never drawn again); the EMA starts from a
domain's first mean (the code restarts it whenever the previous mean is exactly 0). The code also
empties the buffer every step, so only the newest record counts: `clear_buffer=True` reproduces that.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from rl_reason.curricula import base

VARIANTS = ('harmonic', 'ema')
INITS = ('uniform', 'inverse_sqrt', 'softmax_inverse_sqrt')
ALLOCATIONS = ('quota', 'sample')


@dataclasses.dataclass(frozen=True)
class DomainWeightedConfig:
  """RuleReasoner sampler settings (defaults: the paper's).

  Attributes:
    domains: domain names, handed to the task's `example_for(domain, seed)`.
    update_every: S, steps between weight updates.
    buffer_size: K, records kept (harmonic variant).
    variant: 'harmonic' (decayed buffer) or 'ema' (the code's compute_weights_v2).
    ema_alpha: the EMA's weight on the previous value (ema variant).
    epsilon: added to every v_d before the softmax.
    tau: softmax temperature.
    target_base: the target reward base, in (0, 1].
    metric: the column (per completion, [P, G]) holding the correctness reward; only it feeds the sampler.
    init: initial weights: 'uniform', 'inverse_sqrt' (prop. to 1/sqrt(size)), 'softmax_inverse_sqrt'.
    domain_sizes: per domain, its dataset size (the inverse_sqrt inits only).
    allocation: 'quota' (the released sampler's counts, shuffled) or 'sample' (i.i.d. draws).
    clear_buffer: keep only the newest record, as the released trainer does (harmonic variant).
    seed: seeds the per-step draw (with the step).
  """

  domains: tuple[str, ...]
  update_every: int = 8
  buffer_size: int = 4
  variant: str = 'harmonic'
  ema_alpha: float = 0.5
  epsilon: float = 0.1
  tau: float = 0.3
  target_base: float = 1.0
  metric: str = 'accuracy'
  init: str = 'uniform'
  domain_sizes: tuple[int, ...] = ()
  allocation: str = 'quota'
  clear_buffer: bool = False
  seed: int = 0

  def __post_init__(self):
    domains = tuple(str(d) for d in self.domains)
    if not domains or len(set(domains)) != len(domains):
      raise ValueError(f'domain_weighted: domains must be non-empty and distinct, got {domains}')
    object.__setattr__(self, 'domains', domains)
    object.__setattr__(self, 'domain_sizes', tuple(int(n) for n in self.domain_sizes))
    base.check_choice(self.variant, VARIANTS, 'domain_weighted variant')
    base.check_choice(self.init, INITS, 'domain_weighted init')
    base.check_choice(self.allocation, ALLOCATIONS, 'domain_weighted allocation')
    if self.update_every < 1 or self.buffer_size < 1:
      raise ValueError(f'domain_weighted: update_every and buffer_size must be >= 1, got {self.update_every}, '
                       f'{self.buffer_size}')
    if not 0.0 <= self.ema_alpha < 1.0:
      raise ValueError(f'domain_weighted: ema_alpha must be in [0, 1), got {self.ema_alpha}')
    if self.tau <= 0 or not math.isfinite(self.tau) or not math.isfinite(self.epsilon):
      raise ValueError(f'domain_weighted: tau must be > 0 and epsilon finite, got {self.tau}, {self.epsilon}')
    if not 0.0 < self.target_base <= 1.0:
      raise ValueError(f'domain_weighted: target_base must be in (0, 1], got {self.target_base}')
    if self.init == 'uniform':
      if self.domain_sizes:
        raise ValueError('domain_weighted: domain_sizes are used by the inverse_sqrt inits only (init is uniform)')
    elif len(self.domain_sizes) != len(domains) or min(self.domain_sizes) < 1:
      raise ValueError(f'domain_weighted: init {self.init!r} needs one positive size per domain, '
                       f'got {self.domain_sizes}')
    if self.variant == 'ema' and self.clear_buffer:
      raise ValueError('domain_weighted: clear_buffer applies to the harmonic variant '
                       '(ema reads the newest record only)')


def softmax_weights(values: np.ndarray, epsilon: float, tau: float) -> np.ndarray:
  """w_d = exp((v_d + eps) / tau) / sum_e exp((v_e + eps) / tau)."""
  logits = (np.asarray(values, np.float64) + epsilon) / tau
  unnormalized = np.exp(logits - logits.max())  # shift: same ratios, no overflow
  return unnormalized / unnormalized.sum()


def quota_counts(weights: np.ndarray, batch: int) -> np.ndarray:
  """The released DomainSampler: floor(batch * w_d) each, then +1 in order of decreasing weight."""
  counts = np.array([int(batch * float(w)) for w in weights], np.int64)
  remaining = batch - int(counts.sum())
  order = sorted(range(len(weights)), key=lambda d: -float(weights[d]))  # stable: ties keep domain order
  for d in order:
    if remaining <= 0:
      break
    counts[d] += 1
    remaining -= 1
  return counts


@base.register('domain_weighted', DomainWeightedConfig)
class DomainWeighted(base.CurriculumBase):
  """State: the weights, the record buffer ({domain: [reward sum, count]} each), the EMA, the last step."""

  def __init__(self, cfg: DomainWeightedConfig):
    super().__init__(cfg)
    self.weights = self.initial_weights()
    self.buffer: list[dict[str, list[float]]] = []
    self.ema: dict[str, float] = {}
    self.last_step = -1

  def initial_weights(self) -> np.ndarray:
    count = len(self.cfg.domains)
    if self.cfg.init == 'uniform':
      return np.full(count, 1.0 / count)
    inverse = 1.0 / np.sqrt(np.asarray(self.cfg.domain_sizes, np.float64))
    raw = inverse if self.cfg.init == 'inverse_sqrt' else np.exp(inverse)
    return raw / raw.sum()

  # ------------------------------------------------------------------ weights
  def _record(self, columns: Mapping[str, Any]) -> dict[str, list[float]]:
    rewards = base.column(columns, self.cfg.metric, 'domain_weighted')  # [P, G]
    if 'domain' not in columns:
      raise ValueError(f'domain_weighted: needs the column "domain" (per prompt [P]); got columns {sorted(columns)}')
    domains = [str(d) for d in np.asarray(columns['domain']).reshape(-1)]
    if len(domains) != rewards.shape[0]:
      raise ValueError(f'domain_weighted: {len(domains)} domains for {rewards.shape[0]} prompts')
    unknown = sorted(set(domains) - set(self.cfg.domains))
    if unknown:
      raise ValueError(f'domain_weighted: domains {unknown} not among {list(self.cfg.domains)}')
    record: dict[str, list[float]] = {}
    for domain, row in zip(domains, rewards):
      entry = record.setdefault(domain, [0.0, 0.0])
      entry[0] += float(row.sum())
      entry[1] += float(row.size)
    return record

  def _values(self) -> np.ndarray:
    """v_d per domain from the buffer (harmonic) or the EMA (ema)."""
    cfg = self.cfg
    if cfg.variant == 'harmonic':
      target = cfg.target_base * sum(1.0 / j for j in range(1, cfg.buffer_size + 1)) / cfg.buffer_size
      sums, counts = dict.fromkeys(cfg.domains, 0.0), dict.fromkeys(cfg.domains, 0.0)
      for age, record in enumerate(reversed(self.buffer)):  # age 0: the newest record, decay 1
        for domain, (total, count) in record.items():
          sums[domain] += total / (age + 1)
          counts[domain] += count
      means = [sums[d] / counts[d] if counts[d] else 0.0 for d in cfg.domains]
    else:
      target = cfg.target_base
      means = [self.ema.get(d, 0.0) for d in cfg.domains]
    return np.maximum(0.0, target - np.asarray(means))

  def observe(self, step: int, metrics: Mapping[str, float], columns: Mapping[str, Any]) -> None:
    del metrics
    self.last_step = base.check_step(self.last_step, step, 'domain_weighted observe')
    record = self._record(columns)  # checked every step, so a missing column fails at step 0
    if (step + 1) % self.cfg.update_every:
      return
    if self.cfg.variant == 'ema':
      for domain, (total, count) in record.items():
        mean = total / count
        self.ema[domain] = (self.cfg.ema_alpha * self.ema[domain] + (1 - self.cfg.ema_alpha) * mean
                            if domain in self.ema else mean)
    elif self.cfg.clear_buffer:
      self.buffer = [record]
    else:
      self.buffer = (self.buffer + [record])[-self.cfg.buffer_size:]
    self.weights = softmax_weights(self._values(), self.cfg.epsilon, self.cfg.tau)

  # ------------------------------------------------------------------ draws
  def draw(self, step: int, num_prompts: int) -> np.ndarray:
    """Domain indices [P] for the step's global batch: a function of (seed, step, weights)."""
    if step < 0 or num_prompts < 1:
      raise ValueError(f'domain_weighted: need step >= 0 and num_prompts >= 1, got {step}, {num_prompts}')
    rng = np.random.default_rng(np.random.SeedSequence((self.cfg.seed, step)))
    if self.cfg.allocation == 'sample':
      return rng.choice(len(self.cfg.domains), size=num_prompts, p=self.weights)
    counts = quota_counts(self.weights, num_prompts)
    return rng.permutation(np.repeat(np.arange(len(self.cfg.domains)), counts))

  def plan(self, step: int, num_prompts: int) -> base.Plan:
    indices = self.draw(step, num_prompts)
    return base.Plan(domains=tuple(self.cfg.domains[i] for i in indices),
                     metrics={f'domain/{d}/weight': float(w) for d, w in zip(self.cfg.domains, self.weights)})

  def controls(self) -> frozenset[str]:
    return frozenset({base.DOMAINS})

  def _state(self) -> dict[str, Any]:
    return {'weights': [float(w) for w in self.weights],
            'buffer': [{d: list(v) for d, v in r.items()} for r in self.buffer],
            'ema': dict(self.ema), 'last_step': self.last_step}

  def _restore(self, state: Mapping[str, Any]) -> None:
    weights = np.asarray(state['weights'], np.float64)
    if weights.shape != (len(self.cfg.domains),):
      raise ValueError(f'domain_weighted state has {weights.shape} weights for {len(self.cfg.domains)} domains')
    self.weights = weights
    self.buffer = [{str(d): [float(v[0]), float(v[1])] for d, v in r.items()} for r in state['buffer']]
    self.ema = {str(d): float(v) for d, v in state['ema'].items()}
    self.last_step = int(state['last_step'])
