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
from rl_reason import curricula, rewards, tasks
from rl_reason.data import sources as data_sources
from rl_reason.rewards import shapers


@dataclasses.dataclass(frozen=True)
class ModelSection:
  preset: str = 'tiny_vl'
  path: str = ''
  dtype: str = 'float32'
  param_dtype: str = 'float32'
  scan_layers: bool = False  # decoder layers and vision blocks under jax.lax.scan (ModelConfig.scan_layers)
  remat: str = 'none'  # decoder-layer and vision-block remat policy (ModelConfig.remat)

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
  # Prompt tokens per prefill pass (0: the whole prompt in one; SamplingConfig.prefill_chunk): longer prompts
  # run in chunks, with less memory and (skipping the masked causal half of the attention) less time.
  prefill_chunk: int = 512

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
    if self.prefill_chunk < 0:
      raise ValueError(f'rollout.prefill_chunk must be >= 0 (0: the whole prompt at once), got {self.prefill_chunk}')

  @property
  def prompts_per_step(self) -> int:
    return self.batch_size // self.num_generations


@dataclasses.dataclass(frozen=True)
class RLConfig:
  """The `rl` section minus the loss options (those become the LossConfig, rl_reason.rl.losses)."""

  advantage: str = 'grpo'  # a name in rl_reason.rl.advantages.ADVANTAGE_ESTIMATORS
  advantage_eps: float = 1e-4  # std epsilon of the estimators that divide by a std
  num_iterations: int = 1  # mu: epochs over each rollout batch
  mini_batch_size: int = 0  # completions per optimiser step (whole groups); 0 = the whole rollout batch
  grad_accum_steps: int = 1  # micro-batches per optimiser step, gradients summed in one jitted step
  logprob_chunk_size: int = 0  # completion tokens per log-prob chunk (0 = full [B, N, V] logits)
  # False: the vision tower does not train in the RL stage (no gradient, no optimiser state; EasyR1's
  # freeze_vision_tower, VLM-R1's freeze_vision_modules); warmup.train_vision is the warm-up's own
  train_vision: bool = True

  def __post_init__(self):
    if self.advantage not in ADVANTAGE_ESTIMATORS:
      raise ValueError(f'rl.advantage {self.advantage!r} unknown; valid: {sorted(ADVANTAGE_ESTIMATORS)}')
    if self.advantage_eps < 0:
      raise ValueError(f'rl.advantage_eps must be >= 0, got {self.advantage_eps}')
    if self.num_iterations < 1:
      raise ValueError(f'rl.num_iterations must be >= 1, got {self.num_iterations}')
    if self.mini_batch_size < 0:
      raise ValueError(f'rl.mini_batch_size must be >= 0 (0 = the whole rollout batch), got {self.mini_batch_size}')
    if self.grad_accum_steps < 1:
      raise ValueError(f'rl.grad_accum_steps must be >= 1, got {self.grad_accum_steps}')
    if self.logprob_chunk_size < 0:
      raise ValueError(f'rl.logprob_chunk_size must be >= 0 (0 = off), got {self.logprob_chunk_size}')

  def mini_batch(self, rollout: RolloutConfig) -> int:
    """Completions per optimiser step."""
    return self.mini_batch_size or rollout.batch_size

  def micro_batch(self, rollout: RolloutConfig) -> int:
    """Completions per forward/backward pass."""
    return self.mini_batch(rollout) // self.grad_accum_steps

  def optimizer_steps(self, rollout: RolloutConfig) -> int:
    """Optimiser steps per rollout batch: mu epochs of batch / mini_batch steps."""
    return self.num_iterations * (rollout.batch_size // self.mini_batch(rollout))


def check_batching(rollout: RolloutConfig, rl: RLConfig, loss: LossConfig) -> None:
  """Mini-batches hold whole groups and tile the rollout batch; micro-batches tile a mini-batch and hold
  whole groups or a part of one group (the mesh's batch axes are checked when the mesh exists, in train)."""
  groups, batch = rollout.num_generations, rollout.batch_size
  mini = rl.mini_batch(rollout)
  if mini % groups:
    raise ValueError(f'rl.mini_batch_size {mini} must be a multiple of rollout.num_generations {groups} '
                     '(a mini-batch holds whole groups)')
  if batch % mini:
    raise ValueError(f'rl.mini_batch_size {mini} must divide rollout.batch_size {batch}')
  if mini % rl.grad_accum_steps:
    raise ValueError(f'rl.grad_accum_steps {rl.grad_accum_steps} must divide the mini-batch of {mini} completions')
  micro = rl.micro_batch(rollout)
  if micro % groups and groups % micro:
    raise ValueError(f'the micro-batch of {micro} completions (rl.mini_batch_size {mini} / rl.grad_accum_steps '
                     f'{rl.grad_accum_steps}) must be a multiple or a divisor of rollout.num_generations {groups}')
  if micro % groups and loss.token_weighting == 'tw_grpo':
    raise ValueError(f'rl.token_weighting=tw_grpo compares the completions of a group, so a micro-batch must hold '
                     f'whole groups; {micro} completions (rl.mini_batch_size / rl.grad_accum_steps) is not a '
                     f'multiple of rollout.num_generations {groups}')
  if rl.grad_accum_steps > 1 and loss.top_entropy_quantile < 1.0:
    raise ValueError(f'rl.top_entropy_quantile={loss.top_entropy_quantile} takes its quantile over the whole '
                     f'optimiser batch, which rl.grad_accum_steps={rl.grad_accum_steps} micro-batches never see at '
                     'once; use rl.grad_accum_steps=1 with it')
  if rl.logprob_chunk_size and loss.token_weighting == 'tw_grpo' and not loss.tw_stop_gradient:
    raise ValueError('rl.logprob_chunk_size > 0 computes the TW-GRPO weights from detached chunk logits; '
                     'rl.tw_stop_gradient=False needs the full logits (set rl.logprob_chunk_size=0)')


def difficulty_iou_column(reward_names, loss: LossConfig, where: str) -> str | None:
  """The score column that feeds batch['iou'] when rl.difficulty_weight is on (None when it is off)."""
  if loss.difficulty_weight == _NONE:
    return None
  column = rewards.iou_column(reward_names)
  if column is None:
    raise ValueError(f'rl.difficulty_weight={loss.difficulty_weight!r} weights each group by its mean IoU, but '
                     f'{where} has no IoU reward among its rewards {list(reward_names)} (an IoU reward: '
                     f'{list(rewards.IOU_REWARDS)}, or a combination with one as a part)')
  return column


# Options rl_reason.rl implements but the training loop (train.py) does not feed yet: choosing one
# is an error until train.py passes what the last column names (rl/learner.py lists the batch keys).
_NOT_WIRED: tuple[tuple[str, Any, str], ...] = (
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


WARMUP_ANSWERS = ('random', 'correct')


@dataclasses.dataclass(frozen=True)
class WarmupConfig:
  steps: int = 150
  batch_size: int = 64
  learning_rate: float = 3e-3
  reference: bool = True
  train_vision: bool = True
  # 'random': well-formed completions with random answers (the format, never the answers); 'correct': the
  # task's correct answers, a stand-in for a pretrained checkpoint where a method needs a policy that is
  # already right more often than not (label-free rewards such as Co-Reward's majority agreement).
  answers: str = 'random'

  def __post_init__(self):
    if self.steps < 0 or self.batch_size < 1 or self.learning_rate <= 0:
      raise ValueError(f'warmup: steps >= 0, batch_size >= 1 and learning_rate > 0 required, got {self}')
    if self.answers not in WARMUP_ANSWERS:
      raise ValueError(f'warmup.answers must be one of {WARMUP_ANSWERS}, got {self.answers!r}')


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
  # DAPO dynamic sampling (over-generate, drop groups without spread, refill); None = off.
  dynamic_sampling: curricula.dynamic_sampling.DynamicSamplingConfig | None = None
  # Reward-shaping schemes applied between scoring and advantages (rewards.shapers); () = none.
  shaping: tuple[shapers.Selected, ...] = ()
  # Where the prompts come from: the task's generator (default), a TFDS dataset or JSONL files.
  data: data_sources.DataConfig = data_sources.DataConfig()


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
# curriculum: {'name': '' or a registered curriculum, **its fields}; dynamic_sampling: {'metric': '' (off)
# or accuracy | reward, **DynamicSamplingConfig fields}.
# shaping: {registered scheme name: {its fields}} (rewards.shapers), {} = none.
# data: {'source': 'procedural' | 'tfds' | 'jsonl', **DataConfig fields} (rl_reason/data/sources.py).
_OPTIONAL_SECTIONS = ('curriculum', 'dynamic_sampling', 'shaping', 'data')
_LOSS_KEYS = tuple(f.name for f in dataclasses.fields(LossConfig))


def _dynamic_sampling(section: dict[str, Any] | None, rollout: dict[str, Any]):
  """The dynamic_sampling section: None when off (metric ''), else a validated DynamicSamplingConfig."""
  section = dict(section or {})
  if not section.get('metric'):
    defaults = dataclasses.asdict(curricula.dynamic_sampling.DynamicSamplingConfig())
    changed = sorted(k for k, v in section.items() if k != 'metric' and defaults.get(k, object()) != v)
    if changed:
      raise ValueError(f'dynamic_sampling fields {changed} set but dynamic_sampling.metric is empty (off); '
                       f'set it to one of {list(curricula.dynamic_sampling.METRICS)}')
    return None
  cfg = _build(curricula.dynamic_sampling.DynamicSamplingConfig, section, 'dynamic_sampling')
  return cfg


def _shaping(section: dict[str, Any] | None, rollout: dict[str, Any], rl: RLConfig) -> tuple[Any, ...]:
  """The shaping section as validated schemes; refused where the advantage stage would not see them."""
  selected = shapers.parse(section, max_new_tokens=_build(RolloutConfig, rollout, 'rollout').max_new_tokens)
  if selected and rl.advantage in PER_REWARD_ESTIMATORS:
    raise ValueError(f'shaping {[s.name for s in selected]} adds terms to the summed reward, but rl.advantage='
                     f'{rl.advantage!r} normalises each reward column on its own and would ignore them; use one of '
                     f'{sorted(set(ADVANTAGE_ESTIMATORS) - set(PER_REWARD_ESTIMATORS))}')
  return selected


def check_paired_prompts(shaping: tuple[Any, ...], rollout: RolloutConfig, dynamic_sampling: Any,
                         curriculum: dict[str, Any]) -> None:
  """Co-Reward's step is P/2 questions each followed by its rephrasing; refused where that cannot hold."""
  paired = [s.name for s in shaping if 'rephrased' in shapers.needs_of(s.name)]
  if not paired:
    return
  if rollout.prompts_per_step % 2:
    raise ValueError(f'shaping {paired} pairs each prompt with its rephrasing, so the step\'s prompts '
                     f'(rollout.batch_size / num_generations = {rollout.prompts_per_step}) must be even')
  if dynamic_sampling is not None:
    raise ValueError(f'shaping {paired} pairs groups (a question and its rephrasing), which dynamic sampling would '
                     'split when it drops groups: set dynamic_sampling.metric = \'\'')
  if curriculum and curricula.base.DOMAINS in curricula.from_spec(curriculum).controls():
    raise ValueError(f'shaping {paired} pairs each prompt with its rephrasing; the curriculum '
                     f'{curriculum["name"]!r} draws each prompt\'s domain, which is not supported with it')


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
  check_batching(_build(RolloutConfig, raw['rollout'], 'rollout'), rl_cfg, loss_cfg)
  task_cfg = _build(tasks.config_class(task_name), task, 'task')
  difficulty_iou_column(tuple(weights) or tasks.get(task_name, task_cfg).reward_names, loss_cfg,
                        f'task {task_name!r}' if not weights else 'reward.weights')
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
  shaping = _shaping(raw.get('shaping'), raw['rollout'], rl_cfg)
  dynamic_sampling = _dynamic_sampling(raw.get('dynamic_sampling'), raw['rollout'])
  check_paired_prompts(shaping, _build(RolloutConfig, raw['rollout'], 'rollout'), dynamic_sampling, curriculum)
  data = _build(data_sources.DataConfig, dict(raw.get('data') or {}), 'data')
  data_sources.check(data, task_name, task_cfg, weights,
                     curricula.from_spec(curriculum).controls() if curriculum else frozenset())
  return RunConfig(
      seed=int(raw['seed']),
      curriculum=curriculum,
      shaping=shaping,
      data=data,
      dynamic_sampling=dynamic_sampling,
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
