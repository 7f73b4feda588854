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
from rl_reason.optim import OptimConfig
from rl_reason.parallel.sharding import MeshConfig
from rl_reason.rl.advantages import ADVANTAGE_ESTIMATORS
from rl_reason.rl.losses import LossConfig
from rl_reason.tasks.jigsaw import JigsawConfig


@dataclasses.dataclass(frozen=True)
class ModelSection:
  preset: str = 'tiny_vl'
  path: str = ''
  dtype: str = 'float32'
  param_dtype: str = 'float32'

  def __post_init__(self):
    if self.path:
      if self.preset:
        raise ValueError(f'model.path and model.preset are exclusive (the checkpoint\'s config.json defines '
                         f'the model); set --config.model.preset= to use {self.path}')
      if not os.path.exists(os.path.join(self.path, 'config.json')):
        raise ValueError(f'model.path {self.path} holds no config.json')
    elif self.preset not in model_config.PRESETS:
      raise ValueError(f'model.preset {self.preset!r} unknown; valid presets: {sorted(model_config.PRESETS)}')
    for name in ('dtype', 'param_dtype'):
      if getattr(self, name) not in ('float32', 'bfloat16'):
        raise ValueError(f'model.{name} must be float32 or bfloat16, got {getattr(self, name)!r}')


@dataclasses.dataclass(frozen=True)
class RolloutConfig:
  batch_size: int = 128
  num_generations: int = 8
  max_new_tokens: int = 16
  temperature: float = 1.0
  top_k: int = 0
  top_p: float = 1.0
  prompt_buckets: tuple[int, ...] = (32, 64, 128, 256)

  def __post_init__(self):
    if self.num_generations < 1:
      raise ValueError(f'rollout.num_generations must be >= 1, got {self.num_generations}')
    if self.batch_size < 1 or self.batch_size % self.num_generations:
      raise ValueError(f'rollout.batch_size {self.batch_size} is not divisible by the group size '
                       f'rollout.num_generations {self.num_generations}')
    if self.max_new_tokens < 1:
      raise ValueError(f'rollout.max_new_tokens must be >= 1, got {self.max_new_tokens}')
    if not self.prompt_buckets or list(self.prompt_buckets) != sorted(self.prompt_buckets):
      raise ValueError(f'rollout.prompt_buckets must be increasing, got {self.prompt_buckets}')

  @property
  def prompts_per_step(self) -> int:
    return self.batch_size // self.num_generations


@dataclasses.dataclass(frozen=True)
class RLConfig:
  advantage: str = 'grpo'
  advantage_eps: float = 1e-4
  num_iterations: int = 1

  def __post_init__(self):
    if self.advantage not in ADVANTAGE_ESTIMATORS:
      raise ValueError(f'rl.advantage {self.advantage!r} unknown; valid: {sorted(ADVANTAGE_ESTIMATORS)}')
    if self.num_iterations < 1:
      raise ValueError(f'rl.num_iterations must be >= 1, got {self.num_iterations}')


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
  task: JigsawConfig
  reward_weights: tuple[tuple[str, float], ...]
  rollout: RolloutConfig
  rl: RLConfig
  loss: LossConfig
  optim: OptimConfig
  warmup: WarmupConfig
  train: TrainConfig
  mesh: MeshConfig


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
_LOSS_KEYS = ('eps_low', 'eps_high', 'beta', 'kl_estimator', 'aggregation', 'entropy_coef')


def from_config_dict(config: config_dict.ConfigDict) -> RunConfig:
  """Validates a ConfigDict and turns it into a RunConfig."""
  raw = plain(config)
  unknown = sorted(set(raw) - set(_SECTIONS))
  if unknown:
    raise ValueError(f'unknown config sections {unknown}; valid: {list(_SECTIONS)}')
  missing = sorted(set(_SECTIONS) - set(raw))
  if missing:
    raise ValueError(f'config lacks sections {missing}')
  task = dict(raw['task'])
  if task.pop('name', 'jigsaw') != 'jigsaw':
    raise ValueError(f'task.name {raw["task"]["name"]!r} unknown; valid: [\'jigsaw\']')
  rl = dict(raw['rl'])
  loss = {k: rl.pop(k) for k in _LOSS_KEYS if k in rl}
  reward = dict(raw['reward'])
  weights = reward.pop('weights', {})
  if reward:
    raise ValueError(f'unknown config keys reward.{sorted(reward)}; valid keys of reward: [\'weights\']')
  if not weights:
    raise ValueError('reward.weights is empty: name at least one registered reward')
  optim = dict(raw['optim'])
  if optim.get('total_steps', 0) == 0:
    optim['total_steps'] = raw['train']['steps']
  return RunConfig(
      seed=int(raw['seed']),
      model=_build(ModelSection, raw['model'], 'model'),
      task=_build(JigsawConfig, task, 'task'),
      reward_weights=tuple(sorted((str(k), float(v)) for k, v in weights.items())),
      rollout=_build(RolloutConfig, raw['rollout'], 'rollout'),
      rl=_build(RLConfig, rl, 'rl'),
      loss=_build(LossConfig, loss, 'rl'),
      optim=_build(OptimConfig, optim, 'optim'),
      warmup=_build(WarmupConfig, raw['warmup'], 'warmup'),
      train=_build(TrainConfig, raw['train'], 'train'),
      mesh=_build(MeshConfig, raw['mesh'], 'mesh'),
  )
