"""The learner: per-token log-probs of completions and the jitted, sharded update steps.

Shapes: P prompts, G samples per prompt, B = P*G rows, T prompt bucket, N completion length,
V vocab, D model width; m rows per micro-batch, n = B / m micro-batches, c tokens per log-prob chunk.

A batch is a dict of arrays:
  prompt:          input_ids [P, T], attention_mask [P, T], positions [3, P, T], vision (optional)
  tokens:          [B, N] completion tokens;  completion_mask [B, N] 1 up to and including EOS
  advantages:      [B];  old_logprobs / ref_logprobs / sampler_logprobs [B, N] (optional)
Inputs that only some loss options read (a missing one is a clear error when the option is on):
  truncated [B] bool (mask_truncated_completions), iou [B] (difficulty_weight), rewards [B]
  (kl_group_factor), step [] int (non-constant beta_schedule); num_tokens / num_sequences []
  (optional global normalisers of the aggregation when an optimiser batch is split).
Every array with a leading axis (other than `prompt`) is per completion row; 0-d arrays are shared.

One optimiser step (`Learner.rl_update`) takes one mini-batch. With `micro_batch_size` m it runs n
micro-batches through one jitted lax.scan that sums their gradients; the aggregation then divides
by the mini-batch's counts (num_tokens, num_sequences), so the summed gradient and the logged
metrics equal those of one pass over the whole mini-batch. `Learner.minibatch` gathers the groups
of one mini-batch out of a rollout batch (`minibatch_groups` gives the seeded order).

Log-probs come from the final hidden states through the LM head: in one piece ([B, N, V] float32
logits), or with `logprob_chunk_size` c in chunks of c completion tokens, each chunk
rematerialised, so neither the forward nor the backward pass holds more than one chunk's logits.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from rl_reason.models.decoder import init_cache, map_cache
from rl_reason.models.model import Model, is_vision_param
from rl_reason.parallel import sharding as shd
from rl_reason.rl import kl as kl_lib
from rl_reason.rl import losses
from rl_reason.rl import masks as masks_lib
from rl_reason.rl import weights as weights_lib

sg = jax.lax.stop_gradient


def _repeat_rows(x: jax.Array, groups: int, axis: int = 0) -> jax.Array:
  return jnp.repeat(x, groups, axis=axis) if groups > 1 else x


def completion_hidden(model: Model, batch: dict[str, Any], groups: int) -> jax.Array:
  """[B, N, D] final hidden states (compute dtype) at the positions that predict each completion token.

  `groups` rows share each prompt row (B = P * groups). With groups > 1 each prompt (its images
  included) runs through the decoder once and its keys/values are fanned out to its G completions,
  as the sampler does: the prompt's share of the work drops G-fold and the result is the same
  (tests/rl_learner_test.py). Dynamic NTK rotary depends on the longest position of a call, so it
  takes the one-pass path.
  """
  text = model.cfg.text
  if groups > 1 and not (text.rope_scaling is not None and text.rope_scaling.rope_type == 'dynamic'):
    return _shared_prompt_hidden(model, batch, groups)
  return _one_pass_hidden(model, batch, groups)


def _one_pass_hidden(model: Model, batch: dict[str, Any], groups: int) -> jax.Array:
  """completion_hidden as one decoder pass over [prompt repeated G times; completion] rows."""
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
  # Every position, then the slice: hidden_slice's last-layer skip measured no gain in the update
  # (the backward pass dominates), and the learner's numerics stay those of the full forward (with
  # the skip, whose rounding differs in the last bits, the default and 2x1 runs took other paths).
  hidden, _ = model.hidden_states(input_ids, positions, mask, image_embeds=image_embeds)
  return hidden[:, prompt_len - 1:prompt_len + length - 1]


def _shared_prompt_hidden(model: Model, batch: dict[str, Any], groups: int) -> jax.Array:
  """completion_hidden with one prompt pass per prompt row: prompt KV cache [P, T] -> fan-out -> completions."""
  prompt, tokens = batch['prompt'], batch['tokens']
  rows, length = tokens.shape
  num_prompts, prompt_len = prompt['input_ids'].shape
  image_embeds = model.encode_images(prompt['vision']) if prompt.get('vision') is not None else None
  # Slots: the T prompt tokens, then the N - 1 completion tokens whose hidden states predict a next one.
  cache = init_cache(model.cfg.text, num_prompts, prompt_len + length - 1, model.compute_dtype,
                     stacked=model.cfg.scan_layers)
  hidden, cache = model.hidden_states(prompt['input_ids'], prompt['positions'], prompt['attention_mask'],
                                      image_embeds=image_embeds, cache=cache, write_index=jnp.int32(0))
  last = hidden[:, prompt_len - 1:]  # [P, 1, D] (sliced after the pass, as in _one_pass_hidden)
  first = _repeat_rows(last, groups)  # predicts completion token 0
  if length == 1:
    return first
  cache = map_cache(lambda leaf, rows, _: _repeat_rows(leaf, groups, axis=rows), cache)
  next_position = _repeat_rows(jnp.max(prompt['positions'], axis=(0, 2)) + 1, groups)  # [B]
  positions = next_position[:, None] + jnp.arange(length - 1)[None]  # [B, N-1]
  rest, _ = model.hidden_states(tokens[:, :-1], jnp.broadcast_to(positions[None], (3, rows, length - 1)),
                                jnp.ones((rows, length - 1), jnp.int32), cache=cache,
                                write_index=jnp.int32(prompt_len))
  return jnp.concatenate([first, rest], axis=1)


def completion_logits(model: Model, batch: dict[str, Any], groups: int) -> jax.Array:
  """[B, N, V] float32 logits that predict each completion token."""
  return model.logits(completion_hidden(model, batch, groups))


def token_logprobs(logits: jax.Array, tokens: jax.Array, temperature: float) -> tuple[jax.Array, jax.Array]:
  """Log-probs of `tokens` [B, N] and entropy [B, N] under softmax(logits / temperature), float32."""
  scale = temperature if temperature > 0 else 1.0
  logp_all = jax.nn.log_softmax(logits.astype(jnp.float32) / scale, axis=-1)
  logp = jnp.take_along_axis(logp_all, tokens[..., None], axis=-1)[..., 0]
  entropy = -jnp.sum(jnp.exp(logp_all) * logp_all, axis=-1)
  return logp, entropy


@dataclasses.dataclass(frozen=True)
class TWDivergence:
  """What `chunked_token_stats` needs to compute TW-GRPO's per-position divergence chunk by chunk."""

  mask: jax.Array  # [B, N] completion mask
  groups: int  # G
  vocab_chunk: int  # the vocabulary chunk of weights.tw_grpo_divergence


def chunked_token_stats(head: Callable[[jax.Array], jax.Array], hidden: jax.Array, tokens: jax.Array,
                        temperature: float, chunk_size: int, tw: TWDivergence | None = None
                        ) -> tuple[jax.Array, jax.Array, jax.Array | None]:
  """token_logprobs(head(hidden), tokens) computed c = chunk_size completion tokens at a time.

  Each chunk's [B, c, V] float32 logits exist only inside a rematerialised (jax.checkpoint) chunk
  function mapped over the chunks, so the backward pass recomputes them chunk by chunk instead of
  keeping [B, N, V]. N need not be a multiple of c (the last chunk is padded, then cut off).

  Args:
    head: [B, c, D] -> [B, c, V] float32 logits (the LM head, `Model.logits`).
    hidden: [B, N, D] final hidden states.
    tokens: [B, N] the completion tokens.
    temperature: the sampling temperature.
    chunk_size: c >= 1.
    tw: when given, also TW-GRPO's D[t] (weights.tw_grpo_divergence) from the detached logits.

  Returns:
    logp [B, N], entropy [B, N] (float32), and D [P, N] float32 (or None without `tw`).
  """
  if chunk_size < 1:
    raise ValueError(f'chunk_size must be >= 1, got {chunk_size}')
  rows, length, _ = hidden.shape
  chunk = min(chunk_size, length)
  count = -(-length // chunk)
  pad = count * chunk - length

  def chunks(x: jax.Array) -> jax.Array:  # [B, N, ...] -> [count, B, c, ...]
    x = jnp.pad(x, [(0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 2))
    return jnp.moveaxis(x.reshape(rows, count, chunk, *x.shape[2:]), 1, 0)

  def unchunk(x: jax.Array) -> jax.Array:  # [count, R, c] -> [R, N]
    return jnp.moveaxis(x, 0, 1).reshape(x.shape[1], count * chunk)[:, :length]

  @functools.partial(jax.checkpoint, policy=jax.checkpoint_policies.nothing_saveable)
  def one_chunk(h, tok, mask):
    logits = head(h)  # [B, c, V] float32
    logp, entropy = token_logprobs(logits, tok, temperature)
    if tw is None:
      return logp, entropy, jnp.zeros((), jnp.float32)
    spread = weights_lib.tw_grpo_divergence(sg(logits), mask, tw.groups, chunk_size=tw.vocab_chunk,
                                            temperature=temperature)  # [P, c]
    return logp, entropy, spread

  mask = tw.mask if tw is not None else jnp.zeros(tokens.shape, jnp.int32)
  logp, entropy, spread = jax.lax.map(lambda xs: one_chunk(*xs), (chunks(hidden), chunks(tokens), chunks(mask)))
  return unchunk(logp), unchunk(entropy), (unchunk(spread) if tw is not None else None)


def _batch_input(batch: dict[str, Any], key: str, option: str) -> jax.Array:
  if key not in batch:
    raise ValueError(f'the loss option {option} needs batch[{key!r}], which the caller did not provide')
  return batch[key]


def row_inputs(batch: dict[str, Any], settings: 'LearnerSettings') -> dict[str, Any]:
  """Per-row loss inputs that depend on a whole group or batch, computed before any split.

  sequence_weights [B] (difficulty_weight, from batch['iou']) and kl_factor [B] (kl_group_factor,
  from batch['rewards']) are added unless the batch already carries them (e.g. computed on the
  whole rollout batch before a mini-batch was gathered out of it).
  """
  cfg = settings.loss
  batch = dict(batch)
  if cfg.difficulty_weight != losses.NONE and 'sequence_weights' not in batch:
    batch['sequence_weights'] = weights_lib.difficulty_weights(
        _batch_input(batch, 'iou', f'difficulty_weight={cfg.difficulty_weight!r}'), settings.groups,
        cfg.difficulty_weight, cfg.difficulty_power)
  if cfg.kl_group_factor != losses.NONE and 'kl_factor' not in batch:
    batch['kl_factor'] = kl_lib.KL_GROUP_FACTORS[cfg.kl_group_factor](
        _batch_input(batch, 'rewards', f'kl_group_factor={cfg.kl_group_factor!r}'), settings.groups,
        cfg.kl_group_factor_scale)
  return batch


def loss_inputs(batch: dict[str, Any], settings: 'LearnerSettings',
                token_weights: jax.Array | None) -> dict[str, Any]:
  """The optional keyword inputs of losses.policy_loss that `settings.loss` asks for (batch after row_inputs)."""
  cfg = settings.loss
  inputs: dict[str, Any] = {'sampler_logprobs': batch.get('sampler_logprobs'),
                            'num_tokens': batch.get('num_tokens'), 'num_sequences': batch.get('num_sequences'),
                            'token_weights': token_weights}
  if cfg.difficulty_weight != losses.NONE:
    inputs['sequence_weights'] = batch['sequence_weights']
  if cfg.kl_group_factor != losses.NONE:
    inputs['kl_factor'] = batch['kl_factor']
  if cfg.mask_truncated_completions:
    inputs['truncated'] = _batch_input(batch, 'truncated', 'mask_truncated_completions')
  if cfg.beta_schedule != 'constant':
    inputs['step'] = _batch_input(batch, 'step', f'beta_schedule={cfg.beta_schedule!r}')
  if cfg.adaptive_entropy:  # the step's coefficient from the host-side controller (rl.entropy_control)
    inputs['entropy_coef'] = _batch_input(batch, 'entropy_coef', f'entropy_target={cfg.entropy_target}')
  return inputs


@dataclasses.dataclass(frozen=True)
class LearnerSettings:
  """Static settings of the update (hashable)."""

  groups: int  # G
  temperature: float  # the sampling temperature; log-probs are taken under the same scaling
  loss: losses.LossConfig
  # Rows per forward/backward pass (0 = the whole batch given): rl_update sums the gradients of
  # batch/m micro-batches; logprobs runs batch/m forward passes. m is a multiple or a divisor of G.
  micro_batch_size: int = 0
  logprob_chunk_size: int = 0  # completion tokens per log-prob chunk (0 = full [B, N, V] logits)
  # False: no gradient reaches the vision tower in that update (its backward pass is not run); the
  # optimiser must leave the tower alone as well (optim.freeze)
  rl_train_vision: bool = True
  sft_train_vision: bool = True

  def __post_init__(self):
    m, groups = self.micro_batch_size, self.groups
    if m < 0 or self.logprob_chunk_size < 0:
      raise ValueError(f'micro_batch_size and logprob_chunk_size must be >= 0, got {m}, {self.logprob_chunk_size}')
    if m and m % groups and groups % m:
      raise ValueError(f'micro_batch_size {m} must be a multiple or a divisor of the group size {groups}')
    if m and m % groups and self.loss.token_weighting == 'tw_grpo':
      raise ValueError(f'token_weighting=tw_grpo compares the G={groups} completions of a group, so a micro-batch '
                       f'must hold whole groups; micro_batch_size {m} is not a multiple of {groups}')
    if self.logprob_chunk_size and self.loss.token_weighting == 'tw_grpo' and not self.loss.tw_stop_gradient:
      raise ValueError('logprob_chunk_size > 0 computes the TW-GRPO weights from detached chunk logits; '
                       'tw_stop_gradient=False needs the full logits (set logprob_chunk_size=0)')


def _stop_vision_gradients(params: Any) -> Any:
  """params with the vision tower's leaves behind stop_gradient: its gradients are zero, not computed."""
  return jax.tree_util.tree_map_with_path(lambda path, x: sg(x) if is_vision_param(path) else x, params)


def _prompt_dim(path) -> int:
  """Batch dimension of a prompt leaf: 1 for prompt['positions'] [3, P, T], else 0 (vision included)."""
  return 1 if len(path) == 1 and getattr(path[0], 'key', None) == 'positions' else 0


def combine_update_metrics(updates: list[dict[str, float]]) -> dict[str, float]:
  """The metrics of several optimiser steps of one rollout: *_max the maximum, *_min the minimum, the
  rest the mean; plus optimizer_steps. One step's metrics come back unchanged (plus the count)."""
  if not updates:
    raise ValueError('no optimiser step ran')
  out = {}
  for key in updates[0]:
    values = [u[key] for u in updates]
    if key.endswith('_max'):
      out[key] = max(values)
    elif key.endswith('_min'):
      out[key] = min(values)
    else:
      out[key] = float(np.mean(values))
  out['optimizer_steps'] = float(len(updates))
  return out


def minibatch_groups(num_prompts: int, prompts_per_minibatch: int, *, seed: int, step: int,
                     epoch: int) -> list[np.ndarray]:
  """The prompt (group) indices of each mini-batch of one epoch over a rollout batch.

  A permutation of the P prompts seeded by (seed, step, epoch), cut into consecutive mini-batches
  of `prompts_per_minibatch` groups: every group is used once per epoch, whole, and the order is
  the same on every process and every rerun. One mini-batch per epoch keeps the rollout order.
  """
  if prompts_per_minibatch < 1 or num_prompts % prompts_per_minibatch:
    raise ValueError(f'{num_prompts} prompts do not split into mini-batches of {prompts_per_minibatch} prompts')
  if prompts_per_minibatch == num_prompts:
    return [np.arange(num_prompts, dtype=np.int32)]
  rng = np.random.default_rng([seed % 2**32, step, epoch])
  order = rng.permutation(num_prompts).astype(np.int32)
  return list(order.reshape(-1, prompts_per_minibatch))


class Learner:
  """Jitted log-prob, mini-batch gather, RL update and supervised warm-up functions for one model graph."""

  def __init__(self, graphdef: nnx.GraphDef, rl_tx: optax.GradientTransformation,
               sft_tx: optax.GradientTransformation, settings: LearnerSettings, *, param_shardings=None,
               opt_shardings=None, replicated=None, mesh=None, rules=shd.DEFAULT_RULES):
    self.graphdef = graphdef
    self.settings = settings
    self.mesh = mesh if mesh is not None else getattr(replicated, 'mesh', None)
    self.rules = rules
    state_out = (param_shardings, opt_shardings, replicated) if param_shardings is not None else None
    cfg = settings.loss
    tw = cfg.token_weighting == 'tw_grpo'
    # Donated params/optimiser state keep their shardings across steps (no silent re-layout).

    def token_terms(params, batch, groups, columns):
      """logp, entropy [b, N] and the TW-GRPO weights (or None) of a (micro-)batch whose prompts repeat `groups`."""
      model = nnx.merge(graphdef, params)
      hidden = completion_hidden(model, batch, groups)
      mask = batch['completion_mask']
      if settings.logprob_chunk_size:
        spec = TWDivergence(mask, settings.groups, cfg.tw_chunk_size) if tw else None
        logp, entropy, spread = chunked_token_stats(model.logits, hidden, batch['tokens'], settings.temperature,
                                                    settings.logprob_chunk_size, spec)
        weights = (weights_lib.tw_grpo_weights_from_divergence(spread, mask, settings.groups, alpha=cfg.tw_alpha,
                                                               columns=columns) if tw else None)
        return logp, entropy, weights
      logits = model.logits(hidden)
      logp, entropy = token_logprobs(logits, batch['tokens'], settings.temperature)
      weights = (weights_lib.tw_grpo_token_weights(logits, mask, settings.groups, alpha=cfg.tw_alpha,
                                                   chunk_size=cfg.tw_chunk_size, temperature=settings.temperature,
                                                   stop_gradient=cfg.tw_stop_gradient, columns=columns)
                 if tw else None)
      return logp, entropy, weights

    def rl_loss(params, batch, groups, columns):
      if not settings.rl_train_vision:
        params = _stop_vision_gradients(params)
      logp, entropy, token_weights = token_terms(params, batch, groups, columns)
      # One optimiser step per rollout: the behaviour policy is the current one; the ratio is 1 in
      # value, not in gradient.
      old = batch['old_logprobs'] if 'old_logprobs' in batch else sg(logp)
      loss, metrics = losses.policy_loss(logp, old, batch.get('ref_logprobs'), batch['advantages'],
                                         batch['completion_mask'], cfg, entropy=entropy,
                                         **loss_inputs(batch, settings, token_weights))
      return loss, (metrics, (logp, entropy, token_weights))

    def logp_only(params, batch, groups):  # [b, N]; no entropy or TW-GRPO weights needed
      model = nnx.merge(graphdef, params)
      hidden = completion_hidden(model, batch, groups)
      if settings.logprob_chunk_size:
        return chunked_token_stats(model.logits, hidden, batch['tokens'], settings.temperature,
                                   settings.logprob_chunk_size)[0]
      return token_logprobs(model.logits(hidden), batch['tokens'], settings.temperature)[0]

    def logprobs_fn(params, batch):
      count = self._micro_count(batch['tokens'].shape[0])
      if count == 1:
        return logp_only(params, batch, settings.groups)
      micro, groups = self._split({'prompt': batch['prompt'], 'tokens': batch['tokens']}, count)
      return self._merge(jax.lax.map(lambda mb: logp_only(params, mb, groups), micro))

    def rl_grads(params, batch):
      batch = row_inputs(batch, settings)
      rows = batch['tokens'].shape[0]
      count = self._micro_count(rows)
      if count == 1:
        (_, (metrics, _)), grads = jax.value_and_grad(rl_loss, has_aux=True)(params, batch, settings.groups, None)
        return grads, metrics
      if cfg.top_entropy_quantile < 1.0:
        raise ValueError(f'top_entropy_quantile={cfg.top_entropy_quantile} takes its quantile over the whole '
                         f'optimiser batch, which micro-batches (rl.grad_accum_steps > 1) never see at once')
      # Global normalisers: the whole mini-batch's counts, so that the micro-batch losses sum to its loss.
      loss_mask = batch['completion_mask'].astype(jnp.float32)
      if cfg.mask_truncated_completions:
        loss_mask = masks_lib.drop_truncated(loss_mask, _batch_input(batch, 'truncated', 'mask_truncated_completions'))
      totals = {'num_tokens': batch.get('num_tokens', jnp.sum(loss_mask)),
                'num_sequences': batch.get('num_sequences', jnp.asarray(rows, jnp.float32))}
      columns = jnp.any(batch['completion_mask'].astype(bool), axis=0) if tw else None
      shared = {k: v for k, v in batch.items() if k != 'prompt' and jnp.ndim(v) == 0}
      shared.update(totals)
      micro, groups = self._split(batch, count)

      def body(acc, mb):
        (_, (_, terms)), grads = jax.value_and_grad(rl_loss, has_aux=True)(params, {**mb, **shared}, groups, columns)
        return jax.tree.map(lambda a, g: a + g.astype(jnp.float32), acc, grads), terms

      zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
      summed, terms = jax.lax.scan(body, zeros, micro)
      grads = jax.tree.map(lambda g, p: g.astype(p.dtype), summed, params)
      # Metrics (and the loss value) of the whole mini-batch in one piece, from the micro-batches' terms.
      logp, entropy, token_weights = (None if t is None else self._merge(sg(t)) for t in terms)
      old = batch['old_logprobs'] if 'old_logprobs' in batch else logp
      _, metrics = losses.policy_loss(logp, old, batch.get('ref_logprobs'), batch['advantages'],
                                      batch['completion_mask'], cfg, entropy=entropy,
                                      **loss_inputs({**batch, **totals}, settings, token_weights))
      return grads, metrics

    def sft_loss(params, batch):
      if not settings.sft_train_vision:
        params = _stop_vision_gradients(params)
      logits = completion_logits(nnx.merge(graphdef, params), batch, 1)
      logp, _ = token_logprobs(logits, batch['tokens'], 1.0)
      loss = -_masked_mean(logp, batch['completion_mask'])
      return loss, {'sft_loss': loss}

    def sft_grads(params, batch):
      (_, metrics), grads = jax.value_and_grad(sft_loss, has_aux=True)(params, batch)
      return grads, metrics

    def make_update(grads_fn, tx, shardings):
      def update(params, opt_state, batch):
        grads, metrics = grads_fn(params, batch)
        metrics['grad_norm'] = optax.tree.norm(grads)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, metrics
      return jax.jit(update, donate_argnums=(0, 1), out_shardings=shardings)

    def minibatch_fn(batch, group_ids):
      batch = row_inputs(batch, settings)  # group and batch statistics over the whole rollout batch
      rows = (group_ids[:, None] * settings.groups + jnp.arange(settings.groups)[None]).reshape(-1)
      out = {}
      for key, value in batch.items():
        if key == 'prompt':
          out[key] = jax.tree_util.tree_map_with_path(
              lambda path, x: self._constrain(jnp.take(x, group_ids, axis=_prompt_dim(path)), _prompt_dim(path)),
              value)
        elif jnp.ndim(value) == 0:
          out[key] = value
        else:
          out[key] = self._constrain(jnp.take(value, rows, axis=0), 0)
      return out

    self.logprobs = jax.jit(logprobs_fn)
    self.rl_update = make_update(rl_grads, rl_tx, state_out)
    self.minibatch = jax.jit(minibatch_fn)
    # The warm-up optimiser state has its own structure; its shardings follow from the inputs.
    self.sft_update = make_update(sft_grads, sft_tx, None)

  # ---------------------------------------------------------------- micro-batches
  def _micro_count(self, rows: int) -> int:
    m = self.settings.micro_batch_size
    if not m or rows == m:
      return 1
    if rows % m:
      raise ValueError(f'a batch of {rows} completions does not split into micro-batches of {m}')
    return rows // m

  def _constrain(self, x: jax.Array, dim: int) -> jax.Array:
    """x sharded over the mesh's batch axes along `dim` (replicated where they do not divide it)."""
    if self.mesh is None:
      return x
    axes = [None] * x.ndim
    axes[dim] = shd.BATCH
    return jax.lax.with_sharding_constraint(x, shd.logical_to_sharding(x.shape, axes, self.mesh, self.rules))

  def _split(self, batch: dict[str, Any], count: int) -> tuple[dict[str, Any], int]:
    """The per-row arrays of `batch` as `count` stacked micro-batches [count, m, ...] (0-d arrays left out),
    and how many rows of a micro-batch share one of its prompt rows."""
    groups = self.settings.groups
    rows = batch['tokens'].shape[0]
    m = rows // count
    if m % groups == 0:  # whole groups: m / G prompt rows each
      repeat, per = groups, m // groups

      def prompt_leaf(path, x):
        dim = _prompt_dim(path)
        x = x.reshape(*x.shape[:dim], count, per, *x.shape[dim + 1:])
        return self._constrain(jnp.moveaxis(x, dim, 0), dim + 1)
    else:  # a part of one group: its one prompt row, replicated
      repeat = m
      index = (jnp.arange(count) * m) // groups

      def prompt_leaf(path, x):
        dim = _prompt_dim(path)
        x = jnp.expand_dims(jnp.take(x, index, axis=dim), dim + 1)
        return jnp.moveaxis(x, dim, 0)

    micro = {}
    for key, value in batch.items():
      if key == 'prompt':
        micro[key] = jax.tree_util.tree_map_with_path(prompt_leaf, value)
      elif jnp.ndim(value) > 0:
        if value.shape[0] != rows:
          raise ValueError(f'batch[{key!r}] has {value.shape[0]} rows, the completions {rows}')
        micro[key] = self._constrain(value.reshape(count, m, *value.shape[1:]), 1)
    return micro, repeat

  def _merge(self, x: jax.Array) -> jax.Array:
    """[count, m, ...] stacked micro-batch outputs -> [count * m, ...] in row order."""
    return self._constrain(x.reshape(-1, *x.shape[2:]), 0)


def _masked_mean(x, mask):
  mask = mask.astype(jnp.float32)
  return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1.0)
