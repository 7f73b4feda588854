"""The boundary between the ml_collections config and the code: frozen, validated dataclasses.

`from_config_dict(config)` checks every section strictly (an unknown key is an error naming the
valid ones) and returns a `RunConfig`; nothing past this point sees a ConfigDict.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from ml_collections import config_dict

from rl_reason.models import config as model_config
from rl_reason.models import presets as model_presets
from rl_reason.optim import OptimConfig
from rl_reason.parallel.sharding import MeshConfig
from rl_reason.rl.advantages import ADVANTAGE_ESTIMATORS, PER_REWARD_ESTIMATORS
from rl_reason.rl.losses import NONE as _NONE, LossConfig
from rl_reason import curricula, tasks


@dataclasses.dataclass(frozen=True)
class ModelSection:
  preset: str = 'tiny_vl'
  path: str = ''
  dtype: str = 'float32'
  param_dtype: str = 'float32'
  scan_layers: bool = False  # decoder layers stacked under jax.lax.scan (ModelConfig.scan_layers)
  remat: str = 'none'  # decoder-layer rematerialisation policy (ModelConfig.remat; models.config.REMAT)

  def __post_init__(self):
    if self.path:
      # With a path the checkpoint's config.json defines the model; a published preset next to it
      # is a check that the checkpoint has the architecture the recipe was tuned for.
      if self.preset and self.preset not in model_presets.PUBLISHED:
        raise ValueError(f'model.path is set, so model.preset must be empty or a published architecture '
                         f'to check it against ({sorted(model_presets.PUBLISHED)}), got {self.preset!r}; '
                         f'set --config.model.preset= to use {self.path}')
      if not os.path.exists(os.path.join(self.path, 'config.json')):
        raise ValueError(f'model.path {self.path} holds no config.json')
    elif self.preset not in model_config.PRESETS:
      raise ValueError(f'model.preset {self.preset!r} unknown; valid presets: {sorted(model_config.PRESETS)}')
    for name in ('dtype', 'param_dtype'):
      if getattr(self, name) not in ('float32', 'bfloat16'):
        raise ValueError(f'model.{name} must be float32 or bfloat16, got {getattr(self, name)!r}')
    if self.remat not in model_config.REMAT:
      raise ValueError(f'model.remat {self.remat!r} unknown; valid: {list(model_config.REMAT)}')


@dataclasses.dataclass(frozen=True)
class RewardExecConfig:
  """How rewards run: in this process (workers = 0) or in a pool; per-evaluation time limit."""

  weights: Any = None  # popped before building; listed so that the error message names it
  workers: int = 0
  timeout_s: float = 10.0

  def __post_init__(self):
    if self.workers < 0:
      raise ValueError(f'reward.workers must be >= 0, got {self.workers}')
    if self.timeout_s <= 0:
      raise ValueError(f'reward.timeout_s must be > 0, got {self.timeout_s}')


@dataclasses.dataclass(frozen=True)
class RolloutConfig:
  batch_size: int = 128
  num_generations: int = 8
  max_new_tokens: int = 16
  temperature: float = 1.0
  top_k: int = 0
  top_p: float = 1.0
  min_p: float = 0.0
  cache_dtype: str = ''
  prompt_buckets: tuple[int, ...] = (32, 64, 128, 256)

  def __post_init__(self):
    if self.num_generations < 1:
      raise ValueError(f'rollout.num_generations must be >= 1, got {self.num_generations}')
    if self.batch_size < 1 or self.batch_size % self.num_generations:
      raise ValueError(f'rollout.batch_size {self.batch_size} is not divisible by the group size '
                       f'rollout.num_generations {self.num_generations}')
    if self.cache_dtype not in ('', 'float32', 'bfloat16'):
      raise ValueError(f"rollout.cache_dtype must be '' (the model's dtype), float32 or bfloat16, "
                       f'got {self.cache_dtype!r}')
    if self.max_new_tokens < 1:
      raise ValueError(f'rollout.max_new_tokens must be >= 1, got {self.max_new_tokens}')
    if not self.prompt_buckets or list(self.prompt_buckets) != sorted(self.prompt_buckets):
      raise ValueError(f'rollout.prompt_buckets must be increasing, got {self.prompt_buckets}')

  @property
  def prompts_per_step(self) -> int:
    return self.batch_size // self.num_generations


@dataclasses.dataclass(frozen=True)
class RLConfig:
  """The `rl` section minus the loss options (those become the LossConfig, rl_reason.rl.losses)."""

  advantage: str = 'grpo'  # a name in rl_reason.rl.advantages.ADVANTAGE_ESTIMATORS
  advantage_eps: float = 1e-4  # std epsilon of the estimators that divide by a std
  num_iterations: int = 1  # mu: updates per rollout batch

  def __post_init__(self):
    if self.advantage not in ADVANTAGE_ESTIMATORS:
      raise ValueError(f'rl.advantage {self.advantage!r} unknown; valid: {sorted(ADVANTAGE_ESTIMATORS)}')
    if self.advantage_eps < 0:
      raise ValueError(f'rl.advantage_eps must be >= 0, got {self.advantage_eps}')
    if self.num_iterations < 1:
      raise ValueError(f'rl.num_iterations must be >= 1, got {self.num_iterations}')


# Options rl_reason.rl implements but the training loop (train.py) does not feed yet: choosing one
# is an error until train.py passes what the last column names (rl/learner.py lists the batch keys).
_NOT_WIRED: tuple[tuple[str, Any, str], ...] = (
    ('difficulty_weight', lambda rl, loss: loss.difficulty_weight != _NONE,
     "a per-completion IoU reward [B] as batch['iou']"),
    ('kl_placement', lambda rl, loss: (loss.beta > 0 and loss.kl_placement == 'reward'
                                       and rl.advantage in PER_REWARD_ESTIMATORS),
     'a KL-in-reward rule for per-reward advantage columns (use kl_placement=loss with them)'),
)


def check_loop_support(rl: RLConfig, loss: LossConfig) -> None:
  """Refuses the rl options the training loop cannot feed yet (instead of silently ignoring them)."""
  for name, chosen, needs in _NOT_WIRED:
    if chosen(rl, loss):
      value = getattr(rl, name) if hasattr(rl, name) else getattr(loss, name)
      raise ValueError(f'rl.{name}={value!r} is implemented in rl_reason.rl but the training loop does not '
                       f'provide {needs} yet')


@dataclasses.dataclass(frozen=True)
class WarmupConfig:
  steps: int = 150
  batch_size: int = 64
  learning_rate: float = 3e-3
  reference: bool = True

  def __post_init__(self):
    if self.steps < 0 or self.batch_size < 1 or self.learning_rate <= 0:
      raise ValueError(f'warmup: steps >= 0, batch_size >= 1 and learning_rate > 0 required, got {self}')


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  steps: int = 900
  log_every: int = 1
  eval_every: int = 50
  eval_size: int = 128
  sample_every: int = 50
  checkpoint_every: int = 100
  keep_checkpoints: int = 2

  def __post_init__(self):
    if self.steps < 1:
      raise ValueError(f'train.steps must be >= 1, got {self.steps}')
    for name in ('log_every', 'eval_size', 'checkpoint_every', 'keep_checkpoints'):
      if getattr(self, name) < 1:
        raise ValueError(f'train.{name} must be >= 1, got {getattr(self, name)}')
    for name in ('eval_every', 'sample_every'):
      if getattr(self, name) < 0:
        raise ValueError(f'train.{name} must be >= 0, got {getattr(self, name)}')


@dataclasses.dataclass(frozen=True)
class RunConfig:
  seed: int
  model: ModelSection
  task_name: str
  task: Any  # the registered task's frozen config dataclass
  reward_weights: tuple[tuple[str, float], ...]  # () = the task's own rewards and weights
  reward_exec: 'RewardExecConfig'
  rollout: RolloutConfig
  rl: RLConfig
  loss: LossConfig
  optim: OptimConfig
  warmup: WarmupConfig
  train: TrainConfig
  mesh: MeshConfig
  curriculum: dict[str, Any] = dataclasses.field(default_factory=dict)  # {} = none


def plain(value: Any) -> Any:
  if isinstance(value, config_dict.ConfigDict):
    return {k: plain(v) for k, v in value.items()}
  if isinstance(value, list):
    return tuple(plain(v) for v in value)
  return value


def _build(cls, values: dict[str, Any], section: str):
  fields = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(values) - fields)
  if unknown:
    raise ValueError(f'unknown config key(s) {", ".join(f"{section}.{k}" for k in unknown)}; '
                     f'valid keys of {section}: {sorted(fields)}')
  return cls(**values)


_SECTIONS = ('seed', 'model', 'task', 'reward', 'rollout', 'rl', 'optim', 'warmup', 'train', 'mesh')
_OPTIONAL_SECTIONS = ('curriculum',)  # {'name': '' or a registered curriculum, **its fields}
_LOSS_KEYS = tuple(f.name for f in dataclasses.fields(LossConfig))


def from_config_dict(config: config_dict.ConfigDict) -> RunConfig:
  """Validates a ConfigDict and turns it into a RunConfig."""
  raw = plain(config)
  unknown = sorted(set(raw) - set(_SECTIONS) - set(_OPTIONAL_SECTIONS))
  if unknown:
    raise ValueError(f'unknown config sections {unknown}; valid: {list(_SECTIONS + _OPTIONAL_SECTIONS)}')
  missing = sorted(set(_SECTIONS) - set(raw))
  if missing:
    raise ValueError(f'config lacks sections {missing}')
  task = dict(raw['task'])
  task_name = task.pop('name', 'jigsaw')
  if task_name not in tasks.names():
    raise ValueError(f'task.name {task_name!r} unknown; valid: {tasks.names()}')
  rl = dict(raw['rl'])
  unknown = sorted(set(rl) - {f.name for f in dataclasses.fields(RLConfig)} - set(_LOSS_KEYS))
  if unknown:
    raise ValueError(f'unknown config key(s) {", ".join(f"rl.{k}" for k in unknown)}; valid keys of rl: '
                     f'{sorted({f.name for f in dataclasses.fields(RLConfig)} | set(_LOSS_KEYS))}')
  loss = {k: rl.pop(k) for k in _LOSS_KEYS if k in rl}
  reward = dict(raw['reward'])
  weights = reward.pop('weights', {})
  reward_exec = _build(RewardExecConfig, reward, 'reward')
  rl_cfg, loss_cfg = _build(RLConfig, rl, 'rl'), _build(LossConfig, loss, 'rl')
  check_loop_support(rl_cfg, loss_cfg)
  optim = dict(raw['optim'])
  if optim.get('total_steps', 0) == 0:
    optim['total_steps'] = raw['train']['steps']
  curriculum = dict(raw.get('curriculum') or {})
  if curriculum.get('name'):
    curricula.from_spec(curriculum)  # validates every field now
  else:
    if set(curriculum) - {'name'}:
      raise ValueError(f'curriculum fields {sorted(set(curriculum) - {"name"})} given without curriculum.name '
                       f'(one of {curricula.names()})')
    curriculum = {}
  return RunConfig(
      seed=int(raw['seed']),
      curriculum=curriculum,
      model=_build(ModelSection, raw['model'], 'model'),
      task_name=task_name,
      task=_build(tasks.config_class(task_name), task, 'task'),
      reward_weights=tuple(sorted((str(k), float(v)) for k, v in weights.items())),
      reward_exec=reward_exec,
      rollout=_build(RolloutConfig, raw['rollout'], 'rollout'),
      rl=rl_cfg,
      loss=loss_cfg,
      optim=_build(OptimConfig, optim, 'optim'),
      warmup=_build(WarmupConfig, raw['warmup'], 'warmup'),
      train=_build(TrainConfig, raw['train'], 'train'),
      mesh=_build(MeshConfig, raw['mesh'], 'mesh'),
  )
