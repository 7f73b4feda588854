"""DAPO dynamic sampling: keep the groups whose accuracy is neither all 0 nor all 1, refill, bounded rounds.

A group whose G completions are all right or all wrong has zero advantage under group
normalisation, so it adds nothing but noise to the batch. DAPO over-generates (3x the prompt
batch), drops such groups and generates again until the batch holds `num_groups` mixed groups,
for at most 10 generation batches (verl's max_num_gen_batches; verl raises when they run out).
Here, when the rounds run out, the batch is filled with dropped groups (earliest first) and that
is counted, or, with fill='error', it is an error as in verl.

Everything is a function of the offered accuracies: no wall time, no randomness. Shapes: P' groups
offered in a round, G generations per group. Binary accuracy only (the filter metric ALGORITHMS.md
names); fill NaN (not applicable) before offering.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

FILLS = ('dropped', 'error')
MIXED, ALL_CORRECT, ALL_WRONG = 0, 1, 2


def _accuracy(group_accuracy: Any) -> np.ndarray:
  accuracy = np.asarray(group_accuracy, np.float64)
  if accuracy.ndim != 2 or accuracy.shape[1] < 2:
    raise ValueError(f'group accuracy must be [P, G] with G >= 2 (one group per row), got shape {accuracy.shape}')
  if not np.isin(accuracy, (0.0, 1.0)).all():
    raise ValueError('group accuracy must hold 0/1 (binary accuracy; fill not-applicable values first)')
  return accuracy


def classify_groups(group_accuracy: Any) -> np.ndarray:
  """Per group: MIXED (0), ALL_CORRECT (1) or ALL_WRONG (2); int [P]."""
  accuracy = _accuracy(group_accuracy)
  return np.where(accuracy.min(axis=1) == 1.0, ALL_CORRECT, np.where(accuracy.max(axis=1) == 0.0, ALL_WRONG, MIXED))


@dataclasses.dataclass(frozen=True)
class Selection:
  """One round's filter. Indices are rows of the offered [P', G] array, ascending.

  Attributes:
    keep: mixed groups taken (the first `need` of them).
    surplus: mixed groups beyond `need`, not taken.
    all_correct: dropped, every completion right.
    all_wrong: dropped, every completion wrong.
  """

  keep: np.ndarray
  surplus: np.ndarray
  all_correct: np.ndarray
  all_wrong: np.ndarray


def select_mixed_groups(group_accuracy: Any, need: int) -> Selection:
  """The pure filter: the first `need` mixed groups in row order, and what was left out and why."""
  if need < 0:
    raise ValueError(f'need must be >= 0, got {need}')
  kind = classify_groups(group_accuracy)
  mixed = np.flatnonzero(kind == MIXED)
  return Selection(keep=mixed[:need], surplus=mixed[need:], all_correct=np.flatnonzero(kind == ALL_CORRECT),
                   all_wrong=np.flatnonzero(kind == ALL_WRONG))


@dataclasses.dataclass(frozen=True)
class DynamicSamplingConfig:
  """Attributes:
    max_rounds: generation batches per step at most (DAPO: 10).
    fill: when the rounds run out short: 'dropped' (fill with dropped groups, earliest first) or
      'error' (raise, as verl).
  """

  max_rounds: int = 10
  fill: str = 'dropped'

  def __post_init__(self):
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
    self.counts = {'offered': 0, 'dropped_all_correct': 0, 'dropped_all_wrong': 0, 'surplus': 0}
    self.result: Result | None = None

  def need(self) -> int:
    """Groups still missing from the batch."""
    return self.num_groups - len(self.kept)

  def done(self) -> bool:
    """True once the batch is full or max_rounds rounds have been offered."""
    return self.need() == 0 or self.rounds >= self.cfg.max_rounds

  def offer(self, group_accuracy: Any) -> Offer:
    """Filters one round: [P', G] binary accuracy of the round's groups."""
    if self.done():
      raise ValueError(f'offer after done (need {self.need()}, round {self.rounds} of {self.cfg.max_rounds})')
    selection = select_mixed_groups(group_accuracy, self.need())
    round_index = self.rounds
    self.rounds += 1
    self.kept.extend((round_index, int(i)) for i in selection.keep)
    dropped = np.union1d(selection.all_correct, selection.all_wrong)  # sorted: offer order
    reserve = dropped[:max(0, self.num_groups - len(self.reserved))]
    self.reserved.extend((round_index, int(i)) for i in reserve)
    self.counts['offered'] += int(np.asarray(group_accuracy).shape[0])
    self.counts['dropped_all_correct'] += int(selection.all_correct.size)
    self.counts['dropped_all_wrong'] += int(selection.all_wrong.size)
    self.counts['surplus'] += int(selection.surplus.size)
    return Offer(keep=selection.keep, reserve=reserve)

  def finalize(self) -> Result:
    """The batch, once done(); fills from reserved dropped groups if the rounds ran out short.

    metrics: dynamic_sampling/{kept, filled, rounds, offered, dropped_all_correct, dropped_all_wrong,
    surplus}; kept + filled = num_groups.
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
