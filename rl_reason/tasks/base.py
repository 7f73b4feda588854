"""The task interface shared by every generator, and the registry `get(name, cfg)` / `names()`.

A task is a deterministic function of (config, seed) to one example:

    {'prompt': str,                        # the user-turn text, think/no-think instruction included
     'images': [uint8 [H, W, 3], ...],     # possibly empty (text tasks)
     'meta': {'answer': ..., ...}}         # what the rewards read; keys named as in ALGORITHMS.md

The chat template and image tokens are added later by the processor; tasks never tokenize.
Every task class carries a frozen, validated config dataclass; `get(name, cfg)` accepts that
dataclass, a mapping of its fields (unknown keys are an error naming the valid ones) or None for
the defaults.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Task(Protocol):
  """What the training loop needs from a task.

  Attributes:
    name: the registry name.
    cfg: the frozen config dataclass the task was built from.
    reward_names: the rewards (registry names of `rl_reason.rewards`) that score this task in
      the paper it reproduces, for the current config (e.g. think vs no-think).
    reward_weights: their weights in the total, aligned with `reward_names`.

  Optional: `metric_rewards` ({metric: reward name}, e.g. {'solve_rate': 'jigsaw_solved'}): the
  summary metrics the training loop logs every step and at evaluation; without it the loop logs
  `accuracy` = the first reward.
  """

  name: str
  cfg: Any

  @property
  def reward_names(self) -> tuple[str, ...]:
    ...

  @property
  def reward_weights(self) -> tuple[float, ...]:
    ...

  def example(self, seed: int) -> dict[str, Any]:
    """The example for this seed: a pure function of (config, seed)."""
    ...

  def random_answer_completion(self, meta: Mapping[str, Any], seed: int) -> str:
    """A well-formed completion with a random (usually wrong) answer: teaches the format, not the task."""
    ...

  # Optional: `answer_completion(meta) -> str`, the shortest well-formed completion with the correct
  # answer, for `warmup.answers = 'correct'` (tasks without it refuse that setting).


@dataclasses.dataclass(frozen=True)
class _Entry:
  task_cls: type
  config_cls: type


_REGISTRY: dict[str, _Entry] = {}


def register(name: str, config_cls: type) -> Callable[[type], type]:
  """Class decorator: registers a task class, built as `task_cls(config_cls(...))`, under `name`."""
  if not dataclasses.is_dataclass(config_cls):
    raise TypeError(f'task {name!r}: config class {config_cls!r} must be a dataclass')

  def decorator(task_cls: type) -> type:
    if name in _REGISTRY:
      raise ValueError(f'task {name!r} is already registered (by {_REGISTRY[name].task_cls.__module__})')
    task_cls.name = name
    _REGISTRY[name] = _Entry(task_cls=task_cls, config_cls=config_cls)
    return task_cls

  return decorator


def names() -> list[str]:
  """The registered task names, sorted."""
  return sorted(_REGISTRY)


def _entry(name: str) -> _Entry:
  if name not in _REGISTRY:
    raise ValueError(f'unknown task {name!r}; valid tasks: {names()}')
  return _REGISTRY[name]


def config_class(name: str) -> type:
  """The config dataclass of a registered task."""
  return _entry(name).config_cls


def make_config(name: str, cfg: Any = None) -> Any:
  """The task's config from a config instance, a mapping of its fields, or None (defaults)."""
  config_cls = config_class(name)
  if cfg is None:
    return config_cls()
  if isinstance(cfg, config_cls):
    return cfg
  if isinstance(cfg, Mapping):
    valid = [f.name for f in dataclasses.fields(config_cls)]
    unknown = sorted(set(cfg) - set(valid))
    if unknown:
      raise ValueError(f'task {name!r}: unknown config keys {unknown}; valid keys: {valid}')
    return config_cls(**cfg)
  raise TypeError(f'task {name!r}: cfg must be a {config_cls.__name__}, a mapping of its fields or None, '
                  f'got {type(cfg).__name__}')


def get(name: str, cfg: Any = None) -> Task:
  """A task instance: `get('sat', {'n_sat': 3, 'k': 5, 'l': 6})`."""
  return _entry(name).task_cls(make_config(name, cfg))


def check_example(example: Mapping[str, Any]) -> None:
  """Raises ValueError unless the example has the shape of the interface above."""
  if set(example) != {'prompt', 'images', 'meta'}:
    raise ValueError(f'an example has exactly the keys prompt, images, meta; got {sorted(example)}')
  if not isinstance(example['prompt'], str) or not example['prompt']:
    raise ValueError('example prompt must be a non-empty string')
  if not isinstance(example['images'], list):
    raise ValueError(f'example images must be a list, got {type(example["images"]).__name__}')
  for i, image in enumerate(example['images']):
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3
            and min(image.shape[:2]) >= 1):
      raise ValueError(f'example image {i} must be a uint8 [H, W, 3] array, got '
                       f'{getattr(image, "dtype", type(image).__name__)} {getattr(image, "shape", "")}')
  if not isinstance(example['meta'], dict) or 'answer' not in example['meta']:
    raise ValueError('example meta must be a dict with the key "answer"')



def completion_rng(seed: int) -> np.random.Generator:
  """The generator of `random_answer_completion(meta, seed)`: a stream apart from `example(seed)`'s.

  Seeding both with the same int would replay the example's draws (a SAT "random" assignment
  would be the planted solution).
  """
  return np.random.default_rng(np.random.SeedSequence((seed, 0xC0DE)))
