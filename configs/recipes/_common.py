"""Shared construction of the paper recipes in configs/recipes/ (a helper module, not a recipe).

Every recipe file is `get_config(arg)` with arg 'tiny' (the default: a tiny model from random init,
with the supervised format warm-up, on this CPU: 'tiny_vl' for image tasks, 'tiny_lm' -- the same
decoder without a vision tower -- for text tasks) or one of the paper's real-model presets
(rl_reason.models.PRESETS). The pieces:

  check_arg(arg, valid)          'tiny' for None; ValueError listing the valid args otherwise
  base(task, rewards, **fields)  configs/vlm_grpo.py's sections and comments, with c.task holding
                                 exactly the task's config fields (its dataclass defaults, then
                                 `fields`) and reward.weights = `rewards` ({} = the task's own);
                                 the result is locked, so a misspelt key fails here, not at run time
  set_rl(c, **switches)          the loss/advantage switches of the rl section
  set_curriculum(c, name, spec)  a curriculum of rl_reason.curricula (c.curriculum; '' = none)
  set_shaping(c, schemes)        reward shaping of rl_reason.rewards.shapers (c.shaping; {} = none)
  tiny(c, ...)                   the CPU scale: tiny model, format warm-up, small batch
  real(c, preset, ...)           the paper's scale on a real checkpoint
  build(...)                     all of the above for one recipe

A real preset names the architecture the recipe was tuned for; the weights come from the
checkpoint directory, which the run needs:
    --config.model.path=/ckpt/<checkpoint>           (its config.json is checked against the preset)
    --config.model.preset= --config.model.path=...   (for a checkpoint of another architecture, e.g.
                                                      the paper's Qwen2-VL or R1-Distill weights)

Config files are loaded by path (ml_collections config_flags), so this module and
configs/vlm_grpo.py are imported by path too (`load`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from types import ModuleType
from typing import Any

from ml_collections import config_dict

CONFIGS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = 'tiny'


def load(relative_path: str) -> ModuleType:
  """Imports a config file by path, relative to configs/ (e.g. 'vlm_grpo.py', 'recipes/ui_r1.py')."""
  path = os.path.join(CONFIGS, relative_path)
  name = 'rl_reason_config_' + os.path.splitext(relative_path)[0].replace(os.sep, '_')
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def vlm_grpo(arg: str | None = None) -> config_dict.ConfigDict:
  """configs/vlm_grpo.py's config (the four loss-only recipes grpo/dapo/dr_grpo/gspo start from it)."""
  return load('vlm_grpo.py').get_config(arg)


def check_arg(arg: str | None, valid: tuple[str, ...]) -> str:
  arg = arg or TINY
  if arg not in valid:
    raise ValueError(f'unknown config argument {arg!r}; valid: {", ".join(valid)}')
  return arg


def task_block(task: str, **fields: Any) -> config_dict.ConfigDict:
  """c.task for `task`: its name and every field of its config dataclass (defaults, then `fields`).

  Every field is present so that any of them can be overridden on the command line (the config
  is locked); the dataclass validates the values when the run starts.
  """
  from rl_reason import tasks  # pylint: disable=g-import-not-at-top
  config_cls = tasks.config_class(task)
  defaults = {f.name: f.default for f in dataclasses.fields(config_cls)}
  unknown = sorted(set(fields) - set(defaults))
  if unknown:
    raise ValueError(f'task {task!r} has no config fields {unknown}; valid: {sorted(defaults)}')
  block = config_dict.ConfigDict({'name': task})
  for name, value in {**defaults, **fields}.items():
    block[name] = tuple(value) if isinstance(value, list) else value
  return block


def base(task: str, rewards: dict[str, float] | None = None, **task_fields: Any) -> config_dict.ConfigDict:
  """vlm_grpo's tiny config with the task replaced; locked against new keys.

  Args:
    task: a registered task (rl_reason.tasks.names()).
    rewards: reward name -> weight; None or {} trains on the task's own rewards and weights.
    **task_fields: overrides of the task's config fields.
  """
  c = vlm_grpo('tiny')
  c.task = task_block(task, **task_fields)
  # {} = the task's rewards and weights (its reward_names / reward_weights); else registered names.
  c.reward.weights = config_dict.ConfigDict(dict(rewards or {}))
  c.lock()
  return c


def set_fields(section: config_dict.ConfigDict, **values: Any) -> None:
  """Assigns existing keys only (the config is locked: a new key raises)."""
  for key, value in values.items():
    setattr(section, key, value)


def set_rl(c: config_dict.ConfigDict, **switches: Any) -> None:
  """The rl section's switches (advantage, surrogate, clip, KL, aggregation, weights, entropy)."""
  set_fields(c.rl, **switches)


def set_curriculum(c: config_dict.ConfigDict, name: str, spec: dict[str, Any]) -> None:
  """c.curriculum = {'name': name, **spec} (a registered curriculum and its config fields)."""
  c.curriculum = config_dict.ConfigDict({'name': name, **spec})


def set_shaping(c: config_dict.ConfigDict, schemes: dict[str, dict[str, Any]]) -> None:
  """c.shaping = {scheme name: its fields} (rl_reason.rewards.shapers; applied between scoring and advantages)."""
  c.shaping = config_dict.ConfigDict({name: dict(fields) for name, fields in schemes.items()})


def set_updates_per_rollout(c: config_dict.ConfigDict, updates: int) -> None:
  """rl.mini_batch_size for `updates` optimiser steps per rollout batch (a paper's "k mini-batches").

  Mini-batches hold whole groups, so a small batch gives fewer, one-group mini-batches (the tiny
  variants: at most one update per prompt).
  """
  groups, batch = c.rollout.num_generations, c.rollout.batch_size
  mini = max(batch // updates // groups, 1) * groups
  c.rl.mini_batch_size = 0 if mini >= batch else mini


def has_images(task: str, **fields: Any) -> bool:
  """Whether the task (with these config fields) shows images: tiny_vl for those, tiny_lm otherwise."""
  from rl_reason import tasks  # pylint: disable=g-import-not-at-top
  return bool(tasks.get(task, fields).example(0)['images'])


def tiny(c: config_dict.ConfigDict, *, prompts: int, generations: int, max_new_tokens: int,
         prompt_buckets: tuple[int, ...], steps: int, warmup_steps: int = 100, learning_rate: float = 3e-4,
         temperature: float = 1.0, eval_every: int = 50, eval_size: int = 64, warmup_batch_size: int = 64,
         preset: str = 'tiny_vl') -> None:
  """The CPU scale: a tiny preset from random init, a format warm-up on random answers, small batches.

  The tiny model learns the task from scratch, so it needs a far larger learning rate than a
  pretrained checkpoint (vlm_grpo's 3e-4, warm-up 3e-3); the paper's loss switches are kept.
  """
  set_fields(c.model, preset=preset, path='', dtype='float32', param_dtype='float32', scan_layers=False,
             remat='none')
  set_fields(c.rollout, batch_size=prompts * generations, num_generations=generations,
             max_new_tokens=max_new_tokens, temperature=temperature, prompt_buckets=tuple(prompt_buckets))
  set_fields(c.optim, learning_rate=learning_rate, warmup_steps=10, schedule='constant', weight_decay=0.0,
             b1=0.9, b2=0.99, eps=1e-8, grad_clip_norm=1.0)
  set_fields(c.warmup, steps=warmup_steps, batch_size=warmup_batch_size, learning_rate=3e-3, reference=True)
  set_fields(c.train, steps=steps, log_every=1, eval_every=eval_every, eval_size=eval_size, sample_every=50,
             checkpoint_every=100, keep_checkpoints=2)


def real(c: config_dict.ConfigDict, preset: str, *, prompts: int, generations: int, max_new_tokens: int,
         prompt_buckets: tuple[int, ...], steps: int, learning_rate: float, temperature: float = 1.0,
         weight_decay: float = 0.0) -> None:
  """The paper's scale on a real checkpoint (the run needs --config.model.path, see the module doc).

  Framework-level settings not taken from the papers (as configs/vlm_grpo.py and llm_grpo.py set
  them for published presets): bfloat16 activations over float32 master weights; scanned decoder
  layers with 'minimal' rematerialisation; AdamW b1 0.9, b2 0.999, eps 1e-8, global-norm
  clip 1.0, no lr warm-up and a constant lr (HF/TRL and verl defaults, except that TRL decays
  linearly to 0, a schedule optim.schedule lacks); weight decay 0 (HF/TRL) or 0.01 (verl, passed
  by the verl-based recipes); no supervised warm-up (a checkpoint already follows the format
  instruction); parameters sharded over all devices (mesh.fsdp = -1; adjust to the cluster).
  """
  set_fields(c.model, preset=preset, path='', dtype='bfloat16', param_dtype='float32', scan_layers=True,
             remat='minimal')
  set_fields(c.rollout, batch_size=prompts * generations, num_generations=generations,
             max_new_tokens=max_new_tokens, temperature=temperature, prompt_buckets=tuple(prompt_buckets))
  set_fields(c.optim, learning_rate=learning_rate, warmup_steps=0, schedule='constant', weight_decay=weight_decay,
             b1=0.9, b2=0.999, eps=1e-8, grad_clip_norm=1.0)
  set_fields(c.warmup, steps=0)
  set_fields(c.train, steps=steps, log_every=1, eval_every=100, eval_size=128, sample_every=50,
             checkpoint_every=100, keep_checkpoints=2)
  set_fields(c.mesh, data=1, fsdp=-1, tensor=1)


def build(arg: str | None, valid: tuple[str, ...], *, task: str, rewards: dict[str, float] | None,
          tiny_task: dict[str, Any], real_task: dict[str, Any], rl: dict[str, Any], tiny_scale: dict[str, Any],
          real_scale: dict[str, dict[str, Any]],
          real_task_per_preset: dict[str, dict[str, Any]] | None = None,
          curriculum: dict[str, tuple[str, dict[str, Any]]] | None = None,
          dynamic_sampling: dict[str, Any] | None = None, updates_per_rollout: int = 1,
          shaping: dict[str, dict[str, dict[str, Any]]] | None = None) -> config_dict.ConfigDict:
  """A whole recipe: check the arg, build the task block, set the rl switches and the scale.

  Args:
    arg: the config argument ('tiny' or a real preset name).
    valid: the recipe's args, 'tiny' first.
    task: the registered task.
    rewards: reward -> weight ({} or None: the task's own).
    tiny_task: task fields of the tiny variant.
    real_task: task fields of the real variants.
    rl: rl-section switches (both variants).
    tiny_scale: keyword arguments of `tiny`.
    real_scale: preset -> keyword arguments of `real`.
    real_task_per_preset: preset -> task fields over `real_task` (e.g. a difficulty per model size).
    curriculum: arg ('tiny' or a preset) -> (curriculum name, its fields), e.g. from
      rl_reason.curricula.presets; args not listed train without one.
    dynamic_sampling: c.dynamic_sampling fields (both variants); 'oversample': k sets
      prompts_per_round to k x the prompts per step of the chosen scale (DAPO: 3).
    shaping: arg ('tiny' or a preset) -> c.shaping ({scheme: fields}, rl_reason.rewards.shapers);
      args not listed train without shaping.
  """
  arg = check_arg(arg, valid)
  if arg == TINY:
    fields = tiny_task
  else:
    fields = {**real_task, **(real_task_per_preset or {}).get(arg, {})}
  c = base(task, rewards, **fields)
  set_rl(c, **rl)
  if arg == TINY:
    tiny(c, **tiny_scale, preset='tiny_vl' if has_images(task, **fields) else 'tiny_lm')
  else:
    real(c, arg, **real_scale[arg])
  if curriculum and arg in curriculum:
    set_curriculum(c, *curriculum[arg])
  if updates_per_rollout > 1:
    set_updates_per_rollout(c, updates_per_rollout)
  if dynamic_sampling:
    fields = dict(dynamic_sampling)
    oversample = fields.pop('oversample', 0)
    if oversample:
      fields['prompts_per_round'] = oversample * (c.rollout.batch_size // c.rollout.num_generations)
    set_fields(c.dynamic_sampling, **fields)
  if shaping and arg in shaping:
    set_shaping(c, shaping[arg])
  return c
