"""The reward registry: rewards are named functions of (completion, meta), with a range and meta keys.

A reward is `fn(completion: str, meta: dict) -> float | None | dict`. A dict holds named sub-scores
and must have the key 'overall', the value that enters the weighted total. None or NaN means "not
applicable" (it becomes NaN in the scores and adds nothing to the total). Each reward declares the
range its overall value is clipped into and the meta keys it reads: `required_meta` (checked once
at start-up by `check_meta`) and `optional_meta` (read with a documented default).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

RewardValue = float | None | Mapping[str, float | None]
RewardCallable = Callable[[str, Mapping[str, Any]], RewardValue]
# Keys that score_batch adds next to the rewards' own columns.
RESERVED_NAMES = ('total', 'failures', 'timeouts')
RESERVED_SUBSCORES = ('overall',)
NAME = re.compile(r'[a-z][a-z0-9_]*')


@dataclasses.dataclass(frozen=True)
class RewardFn:
  """A registered reward."""

  name: str
  fn: RewardCallable
  range: tuple[float, float]
  required_meta: tuple[str, ...]
  optional_meta: tuple[str, ...]
  source: str  # the paper (and code) the definition follows
  doc: str

  @property
  def failure_value(self) -> float:
    """What an item scores when the reward raised or timed out: the worst value of the range.

    Never better than any answer the reward can score, so a policy gains nothing by producing
    completions that crash or hang the reward.
    """
    return self.range[0]


_REGISTRY: dict[str, RewardFn] = {}


def register(name: str, *, range: tuple[float, float] = (0.0, 1.0),  # pylint: disable=redefined-builtin
             required_meta: Sequence[str] = (), optional_meta: Sequence[str] = (),
             source: str = '', doc: str | None = None) -> Callable[[RewardCallable], RewardCallable]:
  """Decorator registering `fn(completion, meta) -> float | None | dict` under `name`.

  The one-line description is `doc`, else the first line of the function's docstring.
  """
  if name in RESERVED_NAMES:
    raise ValueError(f'reward name {name!r} is reserved for score_batch outputs {RESERVED_NAMES}')
  if not NAME.fullmatch(name):
    raise ValueError(f'reward name {name!r} must match {NAME.pattern} (no "/": it separates sub-scores)')
  low, high = float(range[0]), float(range[1])
  if not (math.isfinite(low) and math.isfinite(high) and low <= high):
    raise ValueError(f'reward {name!r}: range must be finite (low, high) with low <= high, got {range}')

  def decorator(fn: RewardCallable) -> RewardCallable:
    if name in _REGISTRY:
      raise ValueError(f'reward {name!r} is already registered (by {_REGISTRY[name].fn.__module__})')
    line = doc if doc is not None else (getattr(fn, '__doc__', None) or '').strip().split('\n')[0]
    _REGISTRY[name] = RewardFn(name=name, fn=fn, range=(low, high), required_meta=tuple(required_meta),
                               optional_meta=tuple(optional_meta), source=source, doc=line)
    return fn

  return decorator


def unregister(name: str) -> None:
  """Removes a reward (for tests that register temporary ones)."""
  get(name)
  del _REGISTRY[name]


def install(rewards: Iterable[RewardFn]) -> None:
  """Puts records made elsewhere into this process's registry (pool workers), replacing same names."""
  for reward in rewards:
    _REGISTRY[reward.name] = reward


def get(name: str) -> RewardFn:
  if name not in _REGISTRY:
    raise ValueError(f'unknown reward {name!r}; valid rewards: {names()}')
  return _REGISTRY[name]


def names() -> list[str]:
  return sorted(_REGISTRY)


def exists(name: str) -> bool:
  return name in _REGISTRY


def components(name: str) -> tuple[str, ...]:
  """The reward and, transitively, the registered rewards it combines (combinators name them)."""
  seen: dict[str, None] = {}
  stack = [name]
  while stack:
    current = stack.pop()
    if current in seen:
      continue
    seen[current] = None
    stack.extend(getattr(get(current).fn, 'components', ()))
  return tuple(seen)


def check_meta(reward_names: Iterable[str], meta: Mapping[str, Any]) -> None:
  """Raises if a task's example meta lacks a key that one of the rewards (or its parts) reads."""
  for name in reward_names:
    for part in components(name):
      missing = [key for key in get(part).required_meta if key not in meta]
      if missing:
        via = '' if part == name else f' (through its component {part!r})'
        raise ValueError(f'reward {name!r}{via} needs meta keys {missing}, but the task meta only has '
                         f'{sorted(meta)}')
