"""The curriculum interface, the `Plan` a curriculum hands the training loop each step, and the registry.

Curricula are host-side schedule objects (pure Python / numpy). The loop drives every one the same way:

    plan = curriculum.plan(step, num_prompts)      # before step `step` (0-based): what to train on
    ... rollout, rewards ...
    curriculum.observe(step, row, columns)         # after step `step`: the step's metrics and columns
    curriculum.observe_eval(done_steps, eval_row)  # after each evaluation (done_steps = steps finished)
    checkpoint: json.dumps(curriculum.state());  resume: curriculum.restore(json.loads(...))

`plan` is a pure function of (config, state, step, num_prompts); only `observe*` and `restore`
change the state. Columns are per-completion numpy arrays shaped [P, G] (P prompts of the global
batch, G generations), or [P] for per-prompt keys ('domain'). Which keys a curriculum reads is in
its config (`metric`, ...); a missing key is an error, never skipped.

`controls()` names what a curriculum sets ('task', 'task.<field>', 'reward.<name>', 'domains',
'laser_targets'); `combine` refuses two curricula that set the same thing. `variants()` lists
every (task, overrides) a curriculum may ask for, so the loop can build and check them at start-up.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

TASK = 'task'
DOMAINS = 'domains'
LASER_TARGETS = 'laser_targets'


@dataclasses.dataclass(frozen=True)
class Plan:
  """What one RL step trains on; empty fields leave the run's configuration alone.

  Attributes:
    task: registry name of the task for this step; '' = the run's task (config `task.name`).
    task_overrides: fields of that task's config to replace (`resolve_task` applies them).
    reward_weights: {reward name: weight} merged over the run's weights (config `reward.weights`, or
      the task's own rewards when that is empty); weight 0 turns a reward off.
    domains: per prompt of the global batch, the domain to draw it from (`task.example_for(domain,
      seed)`); () = the task draws its own.
    laser_targets: LASER-D target lengths {'easy', 'medium', 'hard'} for `rewards.shaping.laser_d`.
    metrics: scalars to log with the step (stage, level, weights, ...).
  """

  task: str = ''
  task_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  reward_weights: Mapping[str, float] = dataclasses.field(default_factory=dict)
  domains: tuple[str, ...] = ()
  laser_targets: Mapping[str, float] = dataclasses.field(default_factory=dict)
  metrics: Mapping[str, float] = dataclasses.field(default_factory=dict)


@runtime_checkable
class Curriculum(Protocol):
  """What the training loop needs from a curriculum (see the module docstring for the call order)."""

  name: str
  cfg: Any

  def plan(self, step: int, num_prompts: int) -> Plan:
    ...

  def observe(self, step: int, metrics: Mapping[str, float], columns: Mapping[str, Any]) -> None:
    ...

  def observe_eval(self, step: int, metrics: Mapping[str, float], columns: Mapping[str, Any] | None = None) -> None:
    ...

  def controls(self) -> frozenset[str]:
    ...

  def variants(self) -> tuple[tuple[str, dict[str, Any]], ...]:
    ...

  def state(self) -> dict[str, Any]:
    ...

  def restore(self, state: Mapping[str, Any]) -> None:
    ...


# ---------------------------------------------------------------------------- configs
def _required(cls) -> list[str]:
  return [f.name for f in dataclasses.fields(cls)
          if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]


def build_config(cls, cfg: Any, what: str):
  """A frozen config dataclass from an instance, a mapping of its fields, or None (the defaults).

  Unknown keys and missing required fields are ValueErrors naming the valid keys.
  """
  valid = [f.name for f in dataclasses.fields(cls)]
  if cfg is None:
    cfg = {}
  if isinstance(cfg, cls):
    return cfg
  if not isinstance(cfg, Mapping):
    raise TypeError(f'{what}: config must be a {cls.__name__}, a mapping of its fields or None, '
                    f'got {type(cfg).__name__}')
  unknown = sorted(set(cfg) - set(valid))
  if unknown:
    raise ValueError(f'{what}: unknown config keys {unknown}; valid keys: {valid}')
  missing = [name for name in _required(cls) if name not in cfg]
  if missing:
    raise ValueError(f'{what}: missing required config keys {missing}; valid keys: {valid}')
  return cls(**cfg)


def config_json(cfg: Any) -> Any:
  """The config as plain JSON data (tuples become lists): what `state()` records and `restore` compares."""
  return json.loads(json.dumps(dataclasses.asdict(cfg), sort_keys=True))


def check_choice(value: str, valid: Sequence[str], what: str) -> None:
  if value not in valid:
    raise ValueError(f'{what} {value!r} unknown; valid: {list(valid)}')


def check_finite(value: float, what: str) -> float:
  value = float(value)
  if not math.isfinite(value):
    raise ValueError(f'{what} must be finite, got {value}')
  return value


def check_reward_weights(weights: Mapping[str, float], what: str) -> dict[str, float]:
  """{reward name: weight}, names registered in rl_reason.rewards, weights finite."""
  from rl_reason import rewards  # pylint: disable=g-import-not-at-top  (the reward modules are heavy)
  out = {}
  for name, weight in dict(weights).items():
    if not rewards.exists(name):
      raise ValueError(f'{what}: reward {name!r} unknown; valid: {rewards.names()}')
    out[str(name)] = check_finite(weight, f'{what}: weight of {name!r}')
  return out


def check_task_overrides(task: str, overrides: Mapping[str, Any], what: str) -> dict[str, Any]:
  """Overrides as a dict; for a named task, validated against its config class (keys and values)."""
  from rl_reason import tasks  # pylint: disable=g-import-not-at-top
  if not isinstance(overrides, Mapping):
    raise TypeError(f'{what}: task overrides must be a mapping of config fields, got {type(overrides).__name__}')
  overrides = {str(k): v for k, v in overrides.items()}
  if task:
    check_choice(task, tasks.names(), f'{what}: task')
    try:
      tasks.make_config(task, overrides)
    except (TypeError, ValueError) as e:
      raise ValueError(f'{what}: {e}') from e
  return overrides


# ---------------------------------------------------------------------------- columns
def column(columns: Mapping[str, Any], key: str, what: str, *, ndim: int = 2) -> np.ndarray:
  """columns[key] as a finite float64 array of `ndim` dims ([P, G], or [P] for ndim 1)."""
  if key not in columns:
    raise ValueError(f'{what}: needs the column {key!r}; got columns {sorted(columns)}')
  array = np.asarray(columns[key], np.float64)
  if array.ndim != ndim:
    raise ValueError(f'{what}: column {key!r} must have {ndim} dims ([P, G] per completion), got {array.shape}')
  if not np.isfinite(array).all():
    raise ValueError(f'{what}: column {key!r} holds NaN or inf; fill not-applicable values first')
  return array


def metric(metrics: Mapping[str, float], key: str, what: str) -> float:
  if key not in metrics:
    raise ValueError(f'{what}: needs the metric {key!r}; got metrics {sorted(metrics)}')
  value = float(metrics[key])
  if not math.isfinite(value):
    raise ValueError(f'{what}: metric {key!r} is {value}')
  return value


# ---------------------------------------------------------------------------- base class
class CurriculumBase:
  """Shared plumbing: state() records the name and config; restore() refuses another config.

  Subclasses implement `plan`, `controls`, and, when they keep state, `_state` / `_restore` (plain
  JSON data only) and `observe` / `observe_eval`. The defaults observe nothing: schedules that are
  a function of the step alone (staged, reward_annealing) have nothing to learn from the run.
  """

  name: str = ''

  def __init__(self, cfg: Any):
    self.cfg = cfg

  def plan(self, step: int, num_prompts: int) -> Plan:
    raise NotImplementedError

  def observe(self, step: int, metrics: Mapping[str, float], columns: Mapping[str, Any]) -> None:
    del step, metrics, columns

  def observe_eval(self, step: int, metrics: Mapping[str, float], columns: Mapping[str, Any] | None = None) -> None:
    del step, metrics, columns

  def controls(self) -> frozenset[str]:
    raise NotImplementedError

  def variants(self) -> tuple[tuple[str, dict[str, Any]], ...]:
    return ()

  def _state(self) -> dict[str, Any]:
    return {}

  def _restore(self, state: Mapping[str, Any]) -> None:
    del state

  def state(self) -> dict[str, Any]:
    return {'curriculum': self.name, 'config': config_json(self.cfg), **self._state()}

  def restore(self, state: Mapping[str, Any]) -> None:
    if state.get('curriculum') != self.name:
      raise ValueError(f'curriculum state of {state.get("curriculum")!r} cannot restore a {self.name!r} curriculum')
    if state.get('config') != config_json(self.cfg):
      raise ValueError(f'{self.name} curriculum state was saved with another config: saved {state.get("config")}, '
                       f'now {config_json(self.cfg)}')
    self._restore(state)


def check_step(last: int, step: int, what: str) -> int:
  """Steps are observed once each, in increasing order (catches a loop that observes twice)."""
  step = int(step)
  if step < 0 or step <= last:
    raise ValueError(f'{what}: step {step} observed after step {last}; each step is observed once, in order')
  return step


# ---------------------------------------------------------------------------- registry
@dataclasses.dataclass(frozen=True)
class _Entry:
  cls: type
  config_cls: type


_REGISTRY: dict[str, _Entry] = {}


def register(name: str, config_cls: type) -> Callable[[type], type]:
  """Class decorator: registers a curriculum class, built as `cls(config_cls(...))`, under `name`."""

  def decorator(cls: type) -> type:
    if name in _REGISTRY:
      raise ValueError(f'curriculum {name!r} is already registered')
    cls.name = name
    _REGISTRY[name] = _Entry(cls=cls, config_cls=config_cls)
    return cls

  return decorator


def names() -> list[str]:
  """The registered curriculum names, sorted."""
  return sorted(_REGISTRY)


def _entry(name: str) -> _Entry:
  if name not in _REGISTRY:
    raise ValueError(f'unknown curriculum {name!r}; valid curricula: {names()}')
  return _REGISTRY[name]


def config_class(name: str) -> type:
  return _entry(name).config_cls


def make_config(name: str, cfg: Any = None) -> Any:
  return build_config(config_class(name), cfg, f'curriculum {name!r}')


def get(name: str, cfg: Any = None) -> Curriculum:
  """A curriculum: `get('threshold', {'levels': [{'l': 5}, {'l': 6}], 'threshold': 0.7})`."""
  return _entry(name).cls(make_config(name, cfg))


# ---------------------------------------------------------------------------- combining
def _conflicts(a: frozenset[str], b: frozenset[str]) -> set[str]:
  out = a & b
  if TASK in a:
    out |= {k for k in b if k.startswith(TASK + '.')}
  if TASK in b:
    out |= {k for k in a if k.startswith(TASK + '.')}
  return out


def merge_plans(plans: Sequence[Plan]) -> Plan:
  """One plan from several; two plans setting the same thing is a ValueError."""
  switches = [p.task for p in plans if p.task]
  if len(switches) > 1:
    raise ValueError(f'two curricula set the task ({switches})')
  if switches and any(p.task_overrides and not p.task for p in plans):
    raise ValueError(f'one curriculum switches the task to {switches[0]!r}, another overrides its config fields')
  merged: dict[str, Any] = dict(task_overrides={}, reward_weights={}, laser_targets={}, metrics={})
  for plan in plans:
    for field in merged:
      value = getattr(plan, field)
      clash = sorted(set(value) & set(merged[field]))
      if clash:
        raise ValueError(f'two curricula set {field} {clash}')
      merged[field] = {**merged[field], **value}
  domains = [p.domains for p in plans if p.domains]
  if len(domains) > 1:
    raise ValueError('two curricula set the domains')
  return Plan(task=switches[0] if switches else '', domains=tuple(domains[0]) if domains else (), **merged)


class Combined:
  """Several curricula at once (e.g. staged tasks + reward annealing); they must control disjoint things."""

  name = 'combined'

  def __init__(self, parts: Sequence[Curriculum]):
    if not parts:
      raise ValueError('combine needs at least one curriculum')
    self.parts = tuple(parts)
    self.cfg = tuple(p.cfg for p in self.parts)
    seen = [p.name for p in self.parts]
    if len(set(seen)) != len(seen):
      raise ValueError(f'combine takes each curriculum kind once, got {seen}')
    for i, a in enumerate(self.parts):
      for b in self.parts[i + 1:]:
        clash = _conflicts(a.controls(), b.controls())
        if clash:
          raise ValueError(f'curricula {a.name!r} and {b.name!r} both set {sorted(clash)}')

  def plan(self, step: int, num_prompts: int) -> Plan:
    return merge_plans([p.plan(step, num_prompts) for p in self.parts])

  def observe(self, step: int, metrics: Mapping[str, float], columns: Mapping[str, Any]) -> None:
    for p in self.parts:
      p.observe(step, metrics, columns)

  def observe_eval(self, step: int, metrics: Mapping[str, float], columns: Mapping[str, Any] | None = None) -> None:
    for p in self.parts:
      p.observe_eval(step, metrics, columns)

  def controls(self) -> frozenset[str]:
    return frozenset().union(*(p.controls() for p in self.parts))

  def variants(self) -> tuple[tuple[str, dict[str, Any]], ...]:
    return tuple(v for p in self.parts for v in p.variants())

  def state(self) -> dict[str, Any]:
    return {'curriculum': self.name, 'parts': [p.state() for p in self.parts]}

  def restore(self, state: Mapping[str, Any]) -> None:
    parts = state.get('parts')
    if state.get('curriculum') != self.name or not isinstance(parts, list) or len(parts) != len(self.parts):
      raise ValueError(f'state {sorted(state)} does not hold {len(self.parts)} combined curricula')
    for part, saved in zip(self.parts, parts):
      part.restore(saved)


def combine(parts: Sequence[Curriculum]) -> Curriculum:
  """One curriculum driving several: plans merged (conflicts are errors), observations sent to all."""
  if not parts:
    raise ValueError('combine needs at least one curriculum (a run without one keeps no curriculum object)')
  return parts[0] if len(parts) == 1 else Combined(parts)


def from_spec(spec: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> Curriculum:
  """From config data: {'name': 'staged', **fields}, or a list of those (combined)."""
  specs = [spec] if isinstance(spec, Mapping) else list(spec)
  built = []
  for item in specs:
    if not isinstance(item, Mapping) or 'name' not in item:
      raise ValueError(f'a curriculum spec is a mapping with a "name" ({names()}) and its config fields, got {item!r}')
    fields = {k: v for k, v in item.items() if k != 'name'}
    built.append(get(item['name'], fields))
  return combine(built)


# ---------------------------------------------------------------------------- applying a plan
def resolve_task(plan: Plan, base_name: str, base_cfg: Any) -> tuple[str, Any]:
  """The (task name, validated task config) a plan asks for, given the run's task and config.

  plan.task '' keeps the run's task and replaces plan.task_overrides in its config; a named task
  starts from that task's defaults. Unknown fields and invalid values are ValueErrors.
  """
  from rl_reason import tasks  # pylint: disable=g-import-not-at-top
  if not plan.task or plan.task == base_name:
    fields = {f.name: getattr(base_cfg, f.name) for f in dataclasses.fields(base_cfg)}
    return base_name, tasks.make_config(base_name, {**fields, **plan.task_overrides})
  return plan.task, tasks.make_config(plan.task, dict(plan.task_overrides))


def check(curriculum: Curriculum, base_name: str, base_cfg: Any) -> list[tuple[str, Any]]:
  """Start-up check: every task variant resolves; returns them as (name, config) for probing."""
  return [resolve_task(Plan(task=task, task_overrides=overrides), base_name, base_cfg)
          for task, overrides in curriculum.variants()]
