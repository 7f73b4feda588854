"""Staged curriculum: fixed boundaries (steps or prompts consumed) switch between task/reward settings.

Stage i runs while boundaries[i-1] <= consumed < boundaries[i], where consumed is the step index
(unit 'steps') or step * prompts per step (unit 'samples', Jigsaw-R1's cumulative sample counts:
`stage=[64000]` at 64 prompts per step switches at step 1000). Presets (presets.py): Jigsaw-R1 grid
stages, LMM-R1 text -> multimodal, Infi-MMR's three phases.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Mapping
from typing import Any

from rl_reason.curricula import base

UNITS = ('steps', 'samples')


@dataclasses.dataclass(frozen=True)
class Stage:
  """One stage.

  Attributes:
    task: registry name of the task of this stage; '' = the run's task.
    overrides: fields of that task's config (validated now for a named task, by `base.check` for '').
    reward_weights: {reward name: weight} merged over the run's weights during this stage.
  """

  task: str = ''
  overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  reward_weights: Mapping[str, float] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    object.__setattr__(self, 'overrides', base.check_task_overrides(self.task, self.overrides, 'stage'))
    object.__setattr__(self, 'reward_weights', base.check_reward_weights(self.reward_weights, 'stage'))


@dataclasses.dataclass(frozen=True)
class StagedConfig:
  """Staged schedule settings.

  Attributes:
    boundaries: where stages 1, 2, ... start, in `unit`s consumed; strictly increasing, > 0.
    stages: len(boundaries) + 1 stages (each a Stage or a mapping of its fields).
    unit: 'steps' (the step index) or 'samples' (prompts consumed: step * prompts per step).
  """

  boundaries: tuple[int, ...]
  stages: tuple[Stage, ...]
  unit: str = 'steps'

  def __post_init__(self):
    base.check_choice(self.unit, UNITS, 'staged unit')
    boundaries = tuple(int(b) for b in self.boundaries)
    if any(b <= 0 for b in boundaries) or any(b >= c for b, c in zip(boundaries, boundaries[1:])):
      raise ValueError(f'staged boundaries must be positive and strictly increasing, got {boundaries}')
    stages = tuple(base.build_config(Stage, s, f'staged stage {i}') for i, s in enumerate(self.stages))
    if len(stages) != len(boundaries) + 1:
      raise ValueError(f'staged: {len(boundaries)} boundaries need {len(boundaries) + 1} stages, got {len(stages)}')
    object.__setattr__(self, 'boundaries', boundaries)
    object.__setattr__(self, 'stages', stages)


@base.register('staged', StagedConfig)
class Staged(base.CurriculumBase):
  """The stage is a function of the step alone; nothing is observed."""

  def stage_index(self, step: int, num_prompts: int) -> int:
    if step < 0 or num_prompts < 1:
      raise ValueError(f'staged: need step >= 0 and num_prompts >= 1, got {step}, {num_prompts}')
    consumed = step if self.cfg.unit == 'steps' else step * num_prompts
    return bisect.bisect_right(self.cfg.boundaries, consumed)

  def plan(self, step: int, num_prompts: int) -> base.Plan:
    index = self.stage_index(step, num_prompts)
    stage = self.cfg.stages[index]
    return base.Plan(task=stage.task, task_overrides=dict(stage.overrides), reward_weights=dict(stage.reward_weights),
                     metrics={'curriculum/stage': float(index)})

  def controls(self) -> frozenset[str]:
    out = set()
    for stage in self.cfg.stages:
      if stage.task:
        out.add(base.TASK)
      out |= {f'{base.TASK}.{k}' for k in stage.overrides}
      out |= {f'reward.{k}' for k in stage.reward_weights}
    return frozenset(out)

  def variants(self) -> tuple[tuple[str, dict[str, Any]], ...]:
    return tuple((s.task, dict(s.overrides)) for s in self.cfg.stages)
