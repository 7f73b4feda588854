"""The learner: per-token log-probs of completions and the jitted, sharded update steps.

Shapes: P prompts, G samples per prompt, B = P*G rows, T prompt bucket, N completion length,
V vocab.

A batch is a dict of arrays:
  prompt:          input_ids [P, T], attention_mask [P, T], positions [3, P, T], vision (optional)
  tokens:          [B, N] completion tokens;  completion_mask [B, N] 1 up to and including EOS
  advantages:      [B];  old_logprobs / ref_logprobs / sampler_logprobs [B, N] (optional)
Inputs that only some loss options read (a missing one is a clear error when the option is on):
  truncated [B] bool (mask_truncated_completions), iou [B] (difficulty_weight), rewards [B]
  (kl_group_factor), step [] int (non-constant beta_schedule); num_tokens / num_sequences []
  (optional global normalisers of the aggregation when an optimiser batch is split).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from rl_reason.models.model import Model
from rl_reason.rl import kl as kl_lib
from rl_reason.rl import losses
from rl_reason.rl import weights as weights_lib


def _repeat_rows(x: jax.Array, groups: int, axis: int = 0) -> jax.Array:
  return jnp.repeat(x, groups, axis=axis) if groups > 1 else x


def completion_logits(model: Model, batch: dict[str, Any], groups: int) -> jax.Array:
  """[B, N, V] float32 logits that predict each completion token."""
  prompt = batch['prompt']
  tokens = batch['tokens']
  rows, length = tokens.shape
  prompt_len = prompt['input_ids'].shape[1]
  input_ids = jnp.concatenate([_repeat_rows(prompt['input_ids'], groups), tokens], axis=1)
  # Padding after EOS needs no key mask: causal attention never lets earlier tokens see it.
  mask = jnp.concatenate([_repeat_rows(prompt['attention_mask'], groups),
                          jnp.ones((rows, length), prompt['attention_mask'].dtype)], axis=1)
  prompt_positions = _repeat_rows(prompt['positions'], groups, axis=1)  # [3, B, T]
  next_position = jnp.max(prompt_positions, axis=(0, 2)) + 1  # [B]
  completion_positions = next_position[:, None] + jnp.arange(length)[None]  # [B, N]
  positions = jnp.concatenate(
      [prompt_positions, jnp.broadcast_to(completion_positions[None], (3, rows, length))], axis=2)
  image_embeds = None
  if prompt.get('vision') is not None:
    # Each prompt's images are encoded once and shared by its G rows.
    image_embeds = _repeat_rows(model.encode_images(prompt['vision']), groups)
  logits, _ = model(input_ids, positions, mask, image_embeds=image_embeds,
                    logits_slice=slice(prompt_len - 1, prompt_len + length - 1))
  return logits


def token_logprobs(logits: jax.Array, tokens: jax.Array, temperature: float) -> tuple[jax.Array, jax.Array]:
  """Log-probs of `tokens` [B, N] and entropy [B, N] under softmax(logits / temperature), float32."""
  scale = temperature if temperature > 0 else 1.0
  logp_all = jax.nn.log_softmax(logits.astype(jnp.float32) / scale, axis=-1)
  logp = jnp.take_along_axis(logp_all, tokens[..., None], axis=-1)[..., 0]
  entropy = -jnp.sum(jnp.exp(logp_all) * logp_all, axis=-1)
  return logp, entropy


def _masked_mean(x, mask):
  mask = mask.astype(jnp.float32)
  return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def _batch_input(batch: dict[str, Any], key: str, option: str) -> jax.Array:
  if key not in batch:
    raise ValueError(f'the loss option {option} needs batch[{key!r}], which the caller did not provide')
  return batch[key]


def loss_inputs(logits: jax.Array, batch: dict[str, Any], settings: 'LearnerSettings') -> dict[str, Any]:
  """The optional keyword inputs of losses.policy_loss that `settings.loss` asks for, from logits and batch."""
  cfg = settings.loss
  mask = batch['completion_mask']
  inputs: dict[str, Any] = {'sampler_logprobs': batch.get('sampler_logprobs'),
                            'num_tokens': batch.get('num_tokens'), 'num_sequences': batch.get('num_sequences')}
  if cfg.token_weighting == 'tw_grpo':
    inputs['token_weights'] = weights_lib.tw_grpo_token_weights(
        logits, mask, settings.groups, alpha=cfg.tw_alpha, chunk_size=cfg.tw_chunk_size,
        temperature=settings.temperature, stop_gradient=cfg.tw_stop_gradient)
  if cfg.difficulty_weight != losses.NONE:
    inputs['sequence_weights'] = weights_lib.difficulty_weights(
        _batch_input(batch, 'iou', f'difficulty_weight={cfg.difficulty_weight!r}'), settings.groups,
        cfg.difficulty_weight, cfg.difficulty_power)
  if cfg.kl_group_factor != losses.NONE:
    inputs['kl_factor'] = kl_lib.KL_GROUP_FACTORS[cfg.kl_group_factor](
        _batch_input(batch, 'rewards', f'kl_group_factor={cfg.kl_group_factor!r}'), settings.groups,
        cfg.kl_group_factor_scale)
  if cfg.mask_truncated_completions:
    inputs['truncated'] = _batch_input(batch, 'truncated', 'mask_truncated_completions')
  if cfg.beta_schedule != 'constant':
    inputs['step'] = _batch_input(batch, 'step', f'beta_schedule={cfg.beta_schedule!r}')
  return inputs


@dataclasses.dataclass(frozen=True)
class LearnerSettings:
  """Static settings of the update (hashable)."""

  groups: int  # G
  temperature: float  # the sampling temperature; log-probs are taken under the same scaling
  loss: losses.LossConfig


class Learner:
  """Jitted log-prob, RL update and supervised warm-up functions for one model graph."""

  def __init__(self, graphdef: nnx.GraphDef, rl_tx: optax.GradientTransformation,
               sft_tx: optax.GradientTransformation, settings: LearnerSettings, *, param_shardings=None,
               opt_shardings=None, replicated=None):
    self.graphdef = graphdef
    self.settings = settings
    state_out = (param_shardings, opt_shardings, replicated) if param_shardings is not None else None
    # Donated params/optimiser state keep their shardings across steps (no silent re-layout).

    def logprobs_fn(params, batch):
      logits = completion_logits(nnx.merge(graphdef, params), batch, settings.groups)
      return token_logprobs(logits, batch['tokens'], settings.temperature)[0]

    def rl_loss(params, batch):
      logits = completion_logits(nnx.merge(graphdef, params), batch, settings.groups)
      logp, entropy = token_logprobs(logits, batch['tokens'], settings.temperature)
      # mu = 1: the behaviour policy is the current one; the ratio is 1 in value, not in gradient.
      old = batch['old_logprobs'] if 'old_logprobs' in batch else jax.lax.stop_gradient(logp)
      return losses.policy_loss(logp, old, batch.get('ref_logprobs'), batch['advantages'],
                                batch['completion_mask'], settings.loss, entropy=entropy,
                                **loss_inputs(logits, batch, settings))

    def sft_loss(params, batch):
      logits = completion_logits(nnx.merge(graphdef, params), batch, 1)
      logp, _ = token_logprobs(logits, batch['tokens'], 1.0)
      loss = -_masked_mean(logp, batch['completion_mask'])
      return loss, {'sft_loss': loss}

    def make_update(loss_fn, tx, shardings):
      def update(params, opt_state, batch):
        (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch)
        metrics['grad_norm'] = optax.tree.norm(grads)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, metrics
      return jax.jit(update, donate_argnums=(0, 1), out_shardings=shardings)

    self.logprobs = jax.jit(logprobs_fn)
    self.rl_update = make_update(rl_loss, rl_tx, state_out)
    # The warm-up optimiser state has its own structure; its shardings follow from the inputs.
    self.sft_update = make_update(sft_loss, sft_tx, None)
