"""Optimiser: global-norm clipping -> AdamW under a linear-warm-up + constant/cosine schedule."""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import optax


def _constant(cfg: OptimConfig) -> optax.Schedule:
  return optax.constant_schedule(cfg.learning_rate)


def _cosine(cfg: OptimConfig) -> optax.Schedule:
  # Counts steps after the warm-up; holds end_lr_factor * lr once the horizon is passed.
  return optax.cosine_decay_schedule(cfg.learning_rate, decay_steps=cfg.total_steps - cfg.warmup_steps,
                                     alpha=cfg.end_lr_factor)


# Post-warm-up schedules by name.
SCHEDULES: dict[str, Callable[[OptimConfig], optax.Schedule]] = {
    'constant': _constant,
    'cosine': _cosine,
}


@dataclasses.dataclass(frozen=True)
class OptimConfig:
  """AdamW with warm-up, a decay schedule and gradient clipping."""

  learning_rate: float = 1e-6  # peak learning rate
  warmup_steps: int = 0  # linear warm-up from 0 to learning_rate
  schedule: str = 'constant'
  end_lr_factor: float = 0.1  # cosine: final lr / peak lr
  total_steps: int = 1000  # cosine horizon, warm-up included
  weight_decay: float = 0.0  # decoupled (AdamW)
  b1: float = 0.9
  b2: float = 0.999
  eps: float = 1e-8
  grad_clip_norm: float = 1.0  # 0 = no clipping

  def __post_init__(self):
    if self.schedule not in SCHEDULES:
      raise ValueError(f'optim.schedule {self.schedule!r} unknown; valid: {sorted(SCHEDULES)}')
    if self.learning_rate <= 0:
      raise ValueError(f'optim.learning_rate must be > 0, got {self.learning_rate}')
    if self.total_steps < 1:
      raise ValueError(f'optim.total_steps must be >= 1, got {self.total_steps}')
    if self.warmup_steps < 0:
      raise ValueError(f'optim.warmup_steps must be >= 0, got {self.warmup_steps}')
    if self.schedule == 'cosine' and self.warmup_steps >= self.total_steps:
      raise ValueError(f'optim.warmup_steps {self.warmup_steps} leaves no cosine decay: it must be < '
                       f'optim.total_steps {self.total_steps}')
    if not 0.0 <= self.end_lr_factor <= 1.0:
      raise ValueError(f'optim.end_lr_factor must be in [0, 1], got {self.end_lr_factor}')
    for name in ('b1', 'b2'):
      if not 0.0 <= getattr(self, name) < 1.0:
        raise ValueError(f'optim.{name} must be in [0, 1), got {getattr(self, name)}')
    if self.eps <= 0:
      raise ValueError(f'optim.eps must be > 0, got {self.eps}')
    for name in ('weight_decay', 'grad_clip_norm'):
      if getattr(self, name) < 0:
        raise ValueError(f'optim.{name} must be >= 0, got {getattr(self, name)}')


def make_schedule(cfg: OptimConfig) -> optax.Schedule:
  """Learning rate per update: linear 0 -> lr over warmup_steps (0 at step 0), then SCHEDULES[cfg.schedule]."""
  main = SCHEDULES[cfg.schedule](cfg)
  if cfg.warmup_steps == 0:
    return main
  warmup = optax.linear_schedule(0.0, cfg.learning_rate, transition_steps=cfg.warmup_steps)
  return optax.join_schedules([warmup, main], boundaries=[cfg.warmup_steps])


def make_optimizer(cfg: OptimConfig) -> optax.GradientTransformation:
  """clip_by_global_norm (when grad_clip_norm > 0) -> adamw(make_schedule(cfg))."""
  adamw = optax.adamw(make_schedule(cfg), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay)
  if cfg.grad_clip_norm == 0:
    return adamw
  return optax.chain(optax.clip_by_global_norm(cfg.grad_clip_norm), adamw)


def freeze(tx: optax.GradientTransformation, frozen: Callable[[tuple], bool]) -> optax.GradientTransformation:
  """`tx` on every parameter but those whose tree path `frozen(path)` selects, which do not move.

  `tx` sees only the others (the frozen gradients take no part in its gradient clipping, weight decay
  never reaches the frozen parameters) and keeps state for them alone: a frozen vision tower holds no
  Adam moments.
  """
  def labels(params):
    return jax.tree_util.tree_map_with_path(lambda path, _: 'frozen' if frozen(path) else 'trained', params)
  return optax.multi_transform({'trained': tx, 'frozen': optax.set_to_zero()}, labels)
