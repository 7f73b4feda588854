"""Threshold curriculum (SATURN): move to the next, harder level when a metric clears a threshold.

The level's window holds the last `window` observations of `metric` made at this level; when it is
full and its mean is >= threshold, plans from then on use level + 1, and its window starts
empty. Levels never go back; the last level is kept for good. A metric named 'eval_...'
is read from the evaluation row (`observe_eval`, SATURN's validation pass@1), any other from the
step's training row (`observe`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from rl_reason.curricula import base

EVAL_PREFIX = 'eval_'


@dataclasses.dataclass(frozen=True)
class ThresholdConfig:
  """Threshold schedule settings.

  Attributes:
    levels: task config overrides per level, easiest first (at least one).
    threshold: advance when the window mean is >= this (SATURN's epsilon; its value is unverified).
    metric: the metric read ('accuracy' from the train row, 'eval_accuracy' from the eval row, ...).
    window: observations averaged (W >= 1).
    task: the task the levels configure; '' = the run's task.
  """

  levels: tuple[Mapping[str, Any], ...]
  threshold: float
  metric: str = 'accuracy'
  window: int = 1
  task: str = ''

  def __post_init__(self):
    if not self.levels:
      raise ValueError('threshold: levels must list at least one level')
    levels = tuple(base.check_task_overrides(self.task, level, f'threshold level {i}')
                   for i, level in enumerate(self.levels))
    object.__setattr__(self, 'levels', levels)
    object.__setattr__(self, 'threshold', base.check_finite(self.threshold, 'threshold: threshold'))
    if int(self.window) != self.window or self.window < 1:
      raise ValueError(f'threshold: window must be an integer >= 1, got {self.window}')
    if not self.metric:
      raise ValueError('threshold: metric must name a metric')


@base.register('threshold', ThresholdConfig)
class Threshold(base.CurriculumBase):
  """State: the level, the window of this level, the steps at which it advanced."""

  def __init__(self, cfg: ThresholdConfig):
    super().__init__(cfg)
    self.level = 0
    self.window: list[float] = []
    self.advanced_at: list[int] = []  # the observed step after which each advance happened
    self.last_step = -1
    self.last_eval_step = -1

  @property
  def on_eval(self) -> bool:
    return self.cfg.metric.startswith(EVAL_PREFIX)

  def _record(self, step: int, metrics: Mapping[str, float]) -> None:
    self.window.append(base.metric(metrics, self.cfg.metric, 'threshold'))
    self.window = self.window[-self.cfg.window:]
    last = self.level == len(self.cfg.levels) - 1
    # fsum: the exact mean of the window, whatever the order of its values.
    full = len(self.window) == self.cfg.window
    if not last and full and math.fsum(self.window) / self.cfg.window >= self.cfg.threshold:
      self.level += 1
      self.window = []
      self.advanced_at.append(step)

  def observe(self, step: int, metrics: Mapping[str, float], columns: Mapping[str, Any]) -> None:
    del columns
    self.last_step = base.check_step(self.last_step, step, 'threshold observe')
    if not self.on_eval:
      self._record(step, metrics)

  def observe_eval(self, step: int, metrics: Mapping[str, float], columns: Mapping[str, Any] | None = None) -> None:
    del columns
    if not self.on_eval:
      return  # a training-metric threshold reads nothing from evaluations
    # Evaluations can happen before any step (step 0) and again after it; strictly increasing otherwise.
    self.last_eval_step = base.check_step(self.last_eval_step, step, 'threshold observe_eval')
    self._record(step, metrics)

  def plan(self, step: int, num_prompts: int) -> base.Plan:
    del step, num_prompts
    metrics = {'curriculum/level': float(self.level)}
    if self.window:
      metrics['curriculum/window_mean'] = math.fsum(self.window) / len(self.window)
    return base.Plan(task=self.cfg.task, task_overrides=dict(self.cfg.levels[self.level]), metrics=metrics)

  def controls(self) -> frozenset[str]:
    out = {f'{base.TASK}.{k}' for level in self.cfg.levels for k in level}
    return frozenset(out | ({base.TASK} if self.cfg.task else set()))

  def variants(self) -> tuple[tuple[str, dict[str, Any]], ...]:
    return tuple((self.cfg.task, dict(level)) for level in self.cfg.levels)

  def _state(self) -> dict[str, Any]:
    return {'level': self.level, 'window': list(self.window), 'advanced_at': list(self.advanced_at),
            'last_step': self.last_step, 'last_eval_step': self.last_eval_step}

  def _restore(self, state: Mapping[str, Any]) -> None:
    level = int(state['level'])
    if not 0 <= level < len(self.cfg.levels):
      raise ValueError(f'threshold state level {level} outside the {len(self.cfg.levels)} levels')
    self.level = level
    self.window = [float(v) for v in state['window']]
    self.advanced_at = [int(s) for s in state['advanced_at']]
    self.last_step = int(state['last_step'])
    self.last_eval_step = int(state['last_eval_step'])
