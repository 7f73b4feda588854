"""Reward-weight annealing: the weights of named rewards as functions of the step.

For a schedule (start, end, start_step s0, end_step s1) and f = clip((step - s0) / (s1 - s0), 0, 1):

    linear       w = start + (end - start) * f
    cosine       w = end + (start - end) * (1 + cos(pi * f)) / 2
    exponential  w = end + (start - end) * exp(-max(0, step - s0) / (s1 - s0))

'exponential' with end = 0, s0 = 0, s1 = T is SophiaVL-R1's alpha * exp(-step / T) (alpha = 0.3,
T = 12000 in the released config): there s1 - s0 is the time constant, not where the decay ends.
Before s0 every kind gives `start`. The weights are merged over the run's reward weights.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from rl_reason.curricula import base

KINDS = ('linear', 'cosine', 'exponential')


@dataclasses.dataclass(frozen=True)
class WeightSchedule:
  """One reward's weight over the steps (see the module docstring).

  Attributes:
    start: the weight at and before start_step.
    end: the weight from end_step on (linear, cosine), or the asymptote (exponential).
    end_step: > start_step.
    start_step: >= 0.
    kind: 'linear', 'cosine' or 'exponential'.
  """

  start: float
  end: float
  end_step: int
  start_step: int = 0
  kind: str = 'linear'

  def __post_init__(self):
    base.check_choice(self.kind, KINDS, 'reward_annealing kind')
    object.__setattr__(self, 'start', base.check_finite(self.start, 'reward_annealing start'))
    object.__setattr__(self, 'end', base.check_finite(self.end, 'reward_annealing end'))
    if int(self.start_step) != self.start_step or int(self.end_step) != self.end_step:
      raise ValueError(f'reward_annealing: steps must be integers, got {self.start_step}, {self.end_step}')
    if not 0 <= self.start_step < self.end_step:
      raise ValueError(f'reward_annealing: need 0 <= start_step < end_step, got {self.start_step}, {self.end_step}')

  def value(self, step: int) -> float:
    span = self.end_step - self.start_step
    if self.kind == 'exponential':
      return self.end + (self.start - self.end) * math.exp(-max(0, step - self.start_step) / span)
    fraction = min(max((step - self.start_step) / span, 0.0), 1.0)
    if self.kind == 'linear':
      return self.start + (self.end - self.start) * fraction
    return self.end + (self.start - self.end) * (1.0 + math.cos(math.pi * fraction)) / 2.0


@dataclasses.dataclass(frozen=True)
class RewardAnnealingConfig:
  """Attributes:
    schedules: {reward name (rl_reason.rewards): WeightSchedule or a mapping of its fields}.
  """

  schedules: Mapping[str, WeightSchedule]

  def __post_init__(self):
    if not self.schedules:
      raise ValueError('reward_annealing: schedules must name at least one reward')
    base.check_reward_weights({name: 0.0 for name in self.schedules}, 'reward_annealing')
    object.__setattr__(self, 'schedules', {
        str(name): base.build_config(WeightSchedule, s, f'reward_annealing schedule {name!r}')
        for name, s in self.schedules.items()})


@base.register('reward_annealing', RewardAnnealingConfig)
class RewardAnnealing(base.CurriculumBase):
  """A function of the step alone; nothing is observed."""

  def weights(self, step: int) -> dict[str, float]:
    if step < 0:
      raise ValueError(f'reward_annealing: step must be >= 0, got {step}')
    return {name: s.value(step) for name, s in self.cfg.schedules.items()}

  def plan(self, step: int, num_prompts: int) -> base.Plan:
    del num_prompts
    weights = self.weights(step)
    return base.Plan(reward_weights=weights, metrics={f'curriculum/reward_weight/{k}': v for k, v in weights.items()})

  def controls(self) -> frozenset[str]:
    return frozenset(f'reward.{name}' for name in self.cfg.schedules)

  def variants(self) -> tuple[tuple[str, dict[str, Any]], ...]:
    return ()
