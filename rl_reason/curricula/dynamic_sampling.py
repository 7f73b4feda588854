"""DAPO dynamic sampling: keep the groups whose accuracy is neither all 0 nor all 1, refill, bounded rounds.

A group whose G completions are all right or all wrong has zero advantage under group
normalisation, so it adds nothing but noise to the batch. DAPO over-generates (3x the prompt
batch), drops such groups and generates again until the batch holds `num_groups` mixed groups,
for at most 10 generation batches (verl's max_num_gen_batches; verl raises when they run out).
Here, when the rounds run out, the batch is filled with dropped groups (earliest first) and that
is counted, or, with fill='error', it is an error as in verl.

Everything is a function of the offered values: no wall time, no randomness. Shapes: P' groups
offered in a round, G generations per group. The filter metric is binary accuracy (metric
'accuracy', the one ALGORITHMS.md names) or any per-completion score (metric 'reward', as verl's
`filter_groups.metric` can be the sequence reward): then a group is kept when its values are not
all equal, and a dropped group is counted as uniform. Fill NaN (not applicable) before offering.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

FILLS = ('dropped', 'error')
METRICS = ('accuracy', 'reward')  # binary accuracy (DAPO) | any score, kept when not all equal
MIXED, ALL_CORRECT, ALL_WRONG, UNIFORM = 0, 1, 2, 3


def _values(group_values: Any, binary: bool) -> np.ndarray:
  values = np.asarray(group_values, np.float64)
  if values.ndim != 2 or values.shape[1] < 2:
    raise ValueError(f'group values must be [P, G] with G >= 2 (one group per row), got shape {values.shape}')
  if binary and not np.isin(values, (0.0, 1.0)).all():
    raise ValueError('group accuracy must hold 0/1 (binary accuracy; fill not-applicable values first, or '
                     'use the metric "reward" for graded scores)')
  if not np.isfinite(values).all():
    raise ValueError('group values must be finite (fill not-applicable values first)')
  return values


def classify_groups(group_values: Any, binary: bool = True) -> np.ndarray:
  """Per group, int [P]: MIXED (0), ALL_CORRECT (1), ALL_WRONG (2) or, for graded values, UNIFORM (3)."""
  values = _values(group_values, binary)
  spread = values.max(axis=1) > values.min(axis=1)
  if not binary:
    return np.where(spread, MIXED, UNIFORM)
  return np.where(values.min(axis=1) == 1.0, ALL_CORRECT, np.where(values.max(axis=1) == 0.0, ALL_WRONG, MIXED))


@dataclasses.dataclass(frozen=True)
class Selection:
  """One round's filter. Indices are rows of the offered [P', G] array, ascending.

  Attributes:
    keep: mixed groups taken (the first `need` of them).
    surplus: mixed groups beyond `need`, not taken.
    all_correct: dropped, every completion right.
    all_wrong: dropped, every completion wrong.
    uniform: dropped, graded values all equal (metric 'reward').
  """

  keep: np.ndarray
  surplus: np.ndarray
  all_correct: np.ndarray
  all_wrong: np.ndarray
  uniform: np.ndarray


def select_mixed_groups(group_values: Any, need: int, binary: bool = True) -> Selection:
  """The pure filter: the first `need` mixed groups in row order, and what was left out and why."""
  if need < 0:
    raise ValueError(f'need must be >= 0, got {need}')
  kind = classify_groups(group_values, binary)
  mixed = np.flatnonzero(kind == MIXED)
  return Selection(keep=mixed[:need], surplus=mixed[need:], all_correct=np.flatnonzero(kind == ALL_CORRECT),
                   all_wrong=np.flatnonzero(kind == ALL_WRONG), uniform=np.flatnonzero(kind == UNIFORM))


@dataclasses.dataclass(frozen=True)
class DynamicSamplingConfig:
  """Attributes:
    metric: 'accuracy' (binary, DAPO: drop groups all right or all wrong) or 'reward' (drop groups
      whose total reward is the same for every completion).
    prompts_per_round: prompts generated per round (0: the prompts of one step; DAPO: 3x that).
    max_rounds: generation batches per step at most (DAPO: 10).
    fill: when the rounds run out short: 'dropped' (fill with dropped groups, earliest first) or
      'error' (raise, as verl).
  """

  metric: str = 'accuracy'
  prompts_per_round: int = 0
  max_rounds: int = 10
  fill: str = 'dropped'

  def __post_init__(self):
    if self.metric not in METRICS:
      raise ValueError(f'dynamic sampling metric {self.metric!r} unknown; valid: {list(METRICS)}')
    if self.prompts_per_round < 0:
      raise ValueError(f'dynamic sampling prompts_per_round must be >= 0, got {self.prompts_per_round}')
    if self.max_rounds < 1:
      raise ValueError(f'dynamic sampling max_rounds must be >= 1, got {self.max_rounds}')
    if self.fill not in FILLS:
      raise ValueError(f'dynamic sampling fill {self.fill!r} unknown; valid: {list(FILLS)}')


def make_config(cfg: Any = None) -> DynamicSamplingConfig:
  """The config from an instance, a mapping of its fields (unknown keys are errors) or None (defaults)."""
  from rl_reason.curricula import base  # pylint: disable=g-import-not-at-top
  return base.build_config(DynamicSamplingConfig, cfg, 'dynamic sampling')


@dataclasses.dataclass(frozen=True)
class Offer:
  """What to do with one offered round. Indices are rows of the offered array, ascending.

  Attributes:
    keep: groups that go into the batch.
    reserve: dropped groups to hold on to until `finalize`: they may be needed to fill the batch
      (at most num_groups are ever reserved in a step). Everything else can be discarded.
  """

  keep: np.ndarray
  reserve: np.ndarray


@dataclasses.dataclass(frozen=True)
class Result:
  """The step's batch: (round, row) of every group, in batch order (kept in offer order, then fills).

  Attributes:
    groups: num_groups pairs (round, row in that round's offered array).
    filled: the pairs among `groups` that were dropped groups used to fill.
    metrics: counts for logging (see DynamicSampler.finalize).
  """

  groups: tuple[tuple[int, int], ...]
  filled: tuple[tuple[int, int], ...]
  metrics: dict[str, float]


class DynamicSampler:
  """Drives one step's over-generate / filter / refill loop:

      sampler = DynamicSampler(num_groups=P, cfg=DynamicSamplingConfig())
      while not sampler.done():
        accuracy = ...generate a round of groups, score them...   # [P', G] binary
        offer = sampler.offer(accuracy)                            # offer.keep / offer.reserve rows
      result = sampler.finalize()                                  # result.groups, result.metrics
  """

  def __init__(self, num_groups: int, cfg: DynamicSamplingConfig | None = None):
    if num_groups < 1:
      raise ValueError(f'num_groups must be >= 1, got {num_groups}')
    self.num_groups = num_groups
    self.cfg = cfg or DynamicSamplingConfig()
    self.rounds = 0
    self.kept: list[tuple[int, int]] = []
    self.reserved: list[tuple[int, int]] = []  # dropped groups, offer order, at most num_groups
    self.counts = {'offered': 0, 'dropped_all_correct': 0, 'dropped_all_wrong': 0, 'dropped_uniform': 0,
                   'surplus': 0}
    self.result: Result | None = None

  def need(self) -> int:
    """Groups still missing from the batch."""
    return self.num_groups - len(self.kept)

  def done(self) -> bool:
    """True once the batch is full or max_rounds rounds have been offered."""
    return self.need() == 0 or self.rounds >= self.cfg.max_rounds

  def offer(self, group_values: Any) -> Offer:
    """Filters one round: [P', G] values of the round's groups (binary accuracy, or graded rewards)."""
    if self.done():
      raise ValueError(f'offer after done (need {self.need()}, round {self.rounds} of {self.cfg.max_rounds})')
    selection = select_mixed_groups(group_values, self.need(), binary=self.cfg.metric == 'accuracy')
    round_index = self.rounds
    self.rounds += 1
    self.kept.extend((round_index, int(i)) for i in selection.keep)
    dropped = np.union1d(np.union1d(selection.all_correct, selection.all_wrong), selection.uniform)  # offer order
    reserve = dropped[:max(0, self.num_groups - len(self.reserved))]
    self.reserved.extend((round_index, int(i)) for i in reserve)
    self.counts['offered'] += int(np.asarray(group_values).shape[0])
    self.counts['dropped_all_correct'] += int(selection.all_correct.size)
    self.counts['dropped_all_wrong'] += int(selection.all_wrong.size)
    self.counts['dropped_uniform'] += int(selection.uniform.size)
    self.counts['surplus'] += int(selection.surplus.size)
    return Offer(keep=selection.keep, reserve=reserve)

  def finalize(self) -> Result:
    """The batch, once done(); fills from reserved dropped groups if the rounds ran out short.

    metrics: dynamic_sampling/{kept, filled, rounds, offered, dropped_all_correct, dropped_all_wrong,
    dropped_uniform, surplus}; kept + filled = num_groups.
    """
    if self.result is not None:
      return self.result
    if not self.done():
      raise ValueError(f'finalize before done: {self.need()} groups missing after {self.rounds} of '
                       f'{self.cfg.max_rounds} rounds')
    missing = self.need()
    if missing and self.cfg.fill == 'error':
      raise ValueError(f'dynamic sampling: {missing} of {self.num_groups} groups missing after {self.rounds} '
                       f'rounds (fill="error")')
    if missing > len(self.reserved):
      raise ValueError(f'dynamic sampling: {missing} groups missing but only {len(self.reserved)} dropped groups '
                       f'to fill with ({self.counts["offered"]} offered in {self.rounds} rounds)')
    filled = tuple(self.reserved[:missing])
    metrics = {'kept': len(self.kept), 'filled': len(filled), 'rounds': self.rounds, **self.counts}
    self.result = Result(groups=tuple(self.kept) + filled, filled=filled,
                         metrics={f'dynamic_sampling/{k}': float(v) for k, v in metrics.items()})
    return self.result
