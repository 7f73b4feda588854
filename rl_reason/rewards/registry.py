"""The reward registry and batch scoring: rewards are named functions of (completion, meta).

A reward is `fn(completion: str, meta: dict) -> float | None`, registered with the range its
values are clipped into and the meta keys it reads (checked once at start-up by `check_meta`).
None or NaN means "not applicable" and becomes NaN in the scores. `score_batch` never lets a
reward's exception escape: the item scores 0.0 for that reward, the failure is counted and logged.

Scoring runs in-process through `_score_one`, a module-level function of picklable arguments, so
a process pool with timeouts can replace the loop in `_score_column` without touching callers.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from absl import logging

RewardCallable = Callable[[str, Mapping[str, Any]], float | None]
LOGGED_TEXT_CHARS = 200
RESERVED_NAMES = ('total', 'failures')  # keys score_batch adds next to the rewards


@dataclasses.dataclass(frozen=True)
class RewardFn:
  """A registered reward."""

  name: str
  fn: RewardCallable
  range: tuple[float, float]
  required_meta: tuple[str, ...]
  doc: str


_REGISTRY: dict[str, RewardFn] = {}


def register(name: str, *, range: tuple[float, float] = (0.0, 1.0),  # pylint: disable=redefined-builtin
             required_meta: Sequence[str] = ()) -> Callable[[RewardCallable], RewardCallable]:
  """Decorator registering `fn(completion, meta) -> float | None` under `name`."""
  if name in RESERVED_NAMES:
    raise ValueError(f'reward name {name!r} is reserved for score_batch outputs {RESERVED_NAMES}')
  low, high = float(range[0]), float(range[1])
  if not (math.isfinite(low) and math.isfinite(high) and low <= high):
    raise ValueError(f'reward {name!r}: range must be finite (low, high) with low <= high, got {range}')

  def decorator(fn: RewardCallable) -> RewardCallable:
    if name in _REGISTRY:
      raise ValueError(f'reward {name!r} is already registered (by {_REGISTRY[name].fn.__module__})')
    doc = (fn.__doc__ or '').strip().split('\n')[0]
    _REGISTRY[name] = RewardFn(name=name, fn=fn, range=(low, high), required_meta=tuple(required_meta), doc=doc)
    return fn

  return decorator


def unregister(name: str) -> None:
  """Removes a reward (for tests that register temporary ones)."""
  get(name)
  del _REGISTRY[name]


def get(name: str) -> RewardFn:
  if name not in _REGISTRY:
    raise ValueError(f'unknown reward {name!r}; valid rewards: {names()}')
  return _REGISTRY[name]


def names() -> list[str]:
  return sorted(_REGISTRY)


def check_meta(reward_names: Iterable[str], meta: Mapping[str, Any]) -> None:
  """Raises if a task's example meta lacks a key that one of the rewards reads."""
  for name in reward_names:
    missing = [key for key in get(name).required_meta if key not in meta]
    if missing:
      raise ValueError(f'reward {name!r} needs meta keys {missing}, but the task meta only has {sorted(meta)}')


def _score_one(name: str, text: str, meta: Mapping[str, Any]) -> tuple[float, bool]:
  """(value clipped into the reward's range or NaN, whether the reward raised)."""
  reward = get(name)
  try:
    value = reward.fn(text, meta)
    value = math.nan if value is None else float(value)
  except Exception as e:  # pylint: disable=broad-except
    logging.warning('reward %r raised %s: %s; scoring 0.0. Completion starts: %r',
                    name, type(e).__name__, e, text[:LOGGED_TEXT_CHARS])
    return 0.0, True
  if math.isnan(value):
    return math.nan, False
  return min(max(value, reward.range[0]), reward.range[1]), False


def _score_column(name: str, completions: Sequence[str], metas: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, int]:
  results = [_score_one(name, text, meta) for text, meta in zip(completions, metas)]
  return np.array([value for value, _ in results], np.float64), sum(failed for _, failed in results)


def score_batch(completions: Sequence[str], metas: Sequence[Mapping[str, Any]],
                weights: Mapping[str, float]) -> dict[str, np.ndarray]:
  """Scores every completion with every weighted reward.

  Args:
    completions: N decoded completions.
    metas: the N task metas (ground truth and grid size).
    weights: reward name -> weight in the total (0.0: computed and returned, not in the total).

  Returns:
    One float64 [N] array per reward name (NaN: not applicable); 'total' [N], the weighted sum
    over the applicable rewards (0.0 if none applies); 'failures', a 0-d int64 array counting the
    (item, reward) evaluations that raised.
  """
  if len(completions) != len(metas):
    raise ValueError(f'{len(completions)} completions but {len(metas)} metas')
  for name in weights:
    get(name)
  scores = {}
  total = np.zeros(len(completions), np.float64)
  failures = 0
  for name, weight in weights.items():
    values, failed = _score_column(name, completions, metas)
    scores[name] = values
    failures += failed
    total += np.where(np.isnan(values), 0.0, weight * values)  # not applicable: no contribution
  scores['total'] = total
  scores['failures'] = np.array(failures, np.int64)
  return scores
