"""LASER-D target lengths, updated periodically from a monitor batch (`rewards.shaping.laser_d_target_lengths`).

Candidates are lower_bound, lower_bound + interval, ..., upper_bound (the Laser code's
`range(lower, upper + interval, interval)`, with upper - lower a multiple of interval). Until the
first update every bucket's target is upper_bound: the largest budget, i.e. no length pressure
(the Laser trainer runs a monitor pass before step 1; `source='eval'` with an evaluation at step 0
does the same). Updates:

- source 'train': after steps update_every - 1, 2 update_every - 1, ... (0-based), from the training
  batches of the last `monitor_steps` steps, pooled (a stand-in for Laser's fixed monitor set);
- source 'eval': at each `observe_eval(step, ...)` with step % update_every == 0, from the
  evaluation's columns, which must then hold G sampled completions per prompt (Laser samples the
  monitor set with the rollout settings; a greedy single-sample evaluation gives G = 1 buckets).

The targets go to `rewards.shaping.laser_d` / `laser_de` as `targets=plan.laser_targets`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from rl_reason.curricula import base
from rl_reason.rewards import shaping

SOURCES = ('train', 'eval')


@dataclasses.dataclass(frozen=True)
class LaserDConfig:
  """LASER-D target updater settings.

  Attributes:
    lower_bound: the smallest candidate target length (tokens).
    upper_bound: the largest; upper_bound - lower_bound is a multiple of interval.
    interval: candidate spacing.
    update_every: steps between updates (Laser's trainer.monitor_freq = 20).
    source: 'train' (the training batches) or 'eval' (the columns of an evaluation; see above).
    monitor_steps: source 'train': how many of the last steps' batches are pooled at an update.
    metric: the 0/1 correctness column ([P, G]).
    length_key: the completion-length column ([P, G], tokens).
  """

  lower_bound: int
  upper_bound: int
  interval: int
  update_every: int = 20
  source: str = 'train'
  monitor_steps: int = 1
  metric: str = 'accuracy'
  length_key: str = 'length'

  def __post_init__(self):
    base.check_choice(self.source, SOURCES, 'laser_d source')
    if not 0 < self.lower_bound <= self.upper_bound or self.interval < 1:
      raise ValueError(f'laser_d: need 0 < lower_bound <= upper_bound and interval >= 1, got {self.lower_bound}, '
                       f'{self.upper_bound}, {self.interval}')
    if (self.upper_bound - self.lower_bound) % self.interval:
      raise ValueError(f'laser_d: upper_bound - lower_bound ({self.upper_bound - self.lower_bound}) must be a '
                       f'multiple of interval ({self.interval})')
    if self.update_every < 1 or not 1 <= self.monitor_steps <= self.update_every:
      raise ValueError(f'laser_d: need update_every >= 1 and 1 <= monitor_steps <= update_every, got '
                       f'{self.update_every}, {self.monitor_steps}')
    if self.source == 'eval' and self.monitor_steps != 1:
      raise ValueError('laser_d: monitor_steps pools training batches (source="train"); with source="eval" '
                       'each evaluation is the monitor batch')

  @property
  def candidates(self) -> tuple[int, ...]:
    return tuple(range(self.lower_bound, self.upper_bound + self.interval, self.interval))


@base.register('laser_d', LaserDConfig)
class LaserD(base.CurriculumBase):
  """State: the targets, the pooled monitor rows ([correct, length] lists per batch), G, the last steps."""

  def __init__(self, cfg: LaserDConfig):
    super().__init__(cfg)
    self.targets = {b: float(cfg.upper_bound) for b in shaping.LASER_BUCKETS}
    self.pool: list[dict[str, list]] = []  # per batch {'correct': [P][G], 'length': [P][G]}
    self.updates = 0
    self.last_step = -1
    self.last_eval_step = -1

  def _batch(self, columns: Mapping[str, Any] | None) -> dict[str, list]:
    what = 'laser_d'
    if columns is None:
      raise ValueError(f'{what}: needs the columns {[self.cfg.metric, self.cfg.length_key]}, got none')
    correct = base.column(columns, self.cfg.metric, what)
    lengths = base.column(columns, self.cfg.length_key, what)
    if correct.shape != lengths.shape:
      raise ValueError(f'{what}: {self.cfg.metric} {correct.shape} and {self.cfg.length_key} {lengths.shape} differ')
    if not np.isin(correct, (0.0, 1.0)).all():
      raise ValueError(f'{what}: column {self.cfg.metric!r} must hold 0/1 correctness')
    if (lengths < 0).any() or (lengths != np.round(lengths)).any():
      raise ValueError(f'{what}: column {self.cfg.length_key!r} must hold non-negative token counts')
    return {'correct': correct.astype(int).tolist(), 'length': lengths.astype(int).tolist()}

  def _update(self, batches: list[dict[str, list]]) -> None:
    groups = {len(b['correct'][0]) for b in batches}
    if len(groups) != 1:
      raise ValueError(f'laser_d: monitor batches with different group sizes {sorted(groups)}')
    correct = np.concatenate([np.asarray(b['correct'], np.float64) for b in batches])  # [P_total, G]
    lengths = np.concatenate([np.asarray(b['length'], np.float64) for b in batches])
    targets = shaping.laser_d_target_lengths(correct.reshape(-1), lengths.reshape(-1), correct.shape[1],
                                             self.cfg.candidates)
    self.targets = {b: float(targets[b]) for b in shaping.LASER_BUCKETS}
    self.updates += 1

  def observe(self, step: int, metrics: Mapping[str, float], columns: Mapping[str, Any]) -> None:
    del metrics
    self.last_step = base.check_step(self.last_step, step, 'laser_d observe')
    if self.cfg.source != 'train':
      return  # the eval source updates from evaluations only
    batch = self._batch(columns)  # checked every step, so a missing column fails at step 0
    until_update = (self.cfg.update_every - 1 - step) % self.cfg.update_every  # 0 at an update step
    if until_update < self.cfg.monitor_steps:
      self.pool.append(batch)
    if until_update == 0:
      pool, self.pool = self.pool, []
      self._update(pool)

  def observe_eval(self, step: int, metrics: Mapping[str, float], columns: Mapping[str, Any] | None = None) -> None:
    del metrics
    if self.cfg.source != 'eval':
      return  # the train source updates from training batches only
    self.last_eval_step = base.check_step(self.last_eval_step, step, 'laser_d observe_eval')
    if step % self.cfg.update_every == 0:
      self._update([self._batch(columns)])

  def plan(self, step: int, num_prompts: int) -> base.Plan:
    del step, num_prompts
    return base.Plan(laser_targets=dict(self.targets),
                     metrics={f'curriculum/laser_target/{b}': t for b, t in self.targets.items()})

  def controls(self) -> frozenset[str]:
    return frozenset({base.LASER_TARGETS})

  def _state(self) -> dict[str, Any]:
    return {'targets': dict(self.targets), 'pool': [dict(b) for b in self.pool], 'updates': self.updates,
            'last_step': self.last_step, 'last_eval_step': self.last_eval_step}

  def _restore(self, state: Mapping[str, Any]) -> None:
    targets = {str(b): float(t) for b, t in state['targets'].items()}
    if set(targets) != set(shaping.LASER_BUCKETS):
      raise ValueError(f'laser_d state targets {sorted(targets)} are not the buckets {list(shaping.LASER_BUCKETS)}')
    self.targets = targets
    self.pool = [{key: [[int(v) for v in row] for row in b[key]] for key in ('correct', 'length')}
                 for b in state['pool']]
    self.updates = int(state['updates'])
    self.last_step = int(state['last_step'])
    self.last_eval_step = int(state['last_eval_step'])
