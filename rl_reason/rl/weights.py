"""Multipliers of the per-token loss: TW-GRPO token weights, UniVG-R1 difficulty weights, sampler IS correction.

Shapes: B = P*G rows (P groups of G consecutive rows), T completion tokens, V vocabulary,
C vocabulary chunk. `mask` [B, T] is 1 for real completion tokens. None of these weights carries a
gradient unless stated (TW-GRPO's `stop_gradient=False`).
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp

# ------------------------------------------------------------------ TW-GRPO (ALGORITHMS.md §1.7)
_TW_DIFF_BOUND = 11.0  # the TW-GRPO code clamps the log-prob difference to [-11, 11]
_TW_RANGE_EPS = 1e-8


def _vocab_chunks(vocab: int, chunk_size: int) -> tuple[int, int]:
  if chunk_size < 1:
    raise ValueError(f'chunk_size must be >= 1, got {chunk_size}')
  chunk = min(chunk_size, vocab)
  return chunk, vocab // chunk


def _chunked_logsumexp(scaled: Callable[[int, int], jax.Array], vocab: int, chunk_size: int,
                       shape: tuple[int, ...]) -> jax.Array:
  """logsumexp over V of scaled(start, size) [B, T, size], one chunk at a time (running max), [B, T]."""
  chunk, full = _vocab_chunks(vocab, chunk_size)

  def update(carry, x):  # x [B, T, c]
    running_max, running_sum = carry
    new_max = jnp.maximum(running_max, jnp.max(x, axis=-1))
    running_sum = running_sum * jnp.exp(running_max - new_max) + jnp.sum(jnp.exp(x - new_max[..., None]), axis=-1)
    return new_max, running_sum

  init = (jnp.full(shape, -jnp.inf, jnp.float32), jnp.zeros(shape, jnp.float32))
  carry, _ = jax.lax.scan(lambda c, i: (update(c, scaled(i * chunk, chunk)), None), init, jnp.arange(full))
  if vocab % chunk:
    carry = update(carry, scaled(full * chunk, vocab % chunk))
  return carry[0] + jnp.log(carry[1])


def tw_grpo_token_weights(logits: jax.Array, mask: jax.Array, num_generations: int, *, alpha: float,
                          chunk_size: int, temperature: float = 1.0, stop_gradient: bool = True,
                          columns: jax.Array | None = None) -> jax.Array:
  """TW-GRPO position weights [B, T] from the intra-group divergence of the full next-token distributions.

  With l[i,t,:] = log softmax(logits / temperature), replaced by the uniform -log V past a
  sequence's end, and per group:
    lbar[t,:] = (1/G) sum_i l[i,t,:];  d = clip(lbar - l[i,t,:], -11, 11)
    D[t] = (1/G) sum_i sum_v (e^d - d - 1)
    w[t] = 1 + (alpha - 1) (D[t] - min D) / (max D - min D + 1e-8)
  The same w[t] applies to all G rows of the group; the result is multiplied by `mask`. min/max run
  over the positions where some row of the batch is still generating: the TW-GRPO trainer pads
  completions to the batch's longest one, which this reproduces for a fixed-length batch.

  The vocabulary is processed in chunks of `chunk_size` (a lax.scan; a remainder chunk is allowed),
  so the extra memory is O(B T C), not O(B T V). The TW-GRPO code does not detach w; here
  `stop_gradient=True` (default) does (ALGORITHMS.md §5). D[t] depends on position t only, so a
  caller may compute it position-chunk by position-chunk (`tw_grpo_divergence`) and finish with
  `tw_grpo_weights_from_divergence`.

  Args:
    logits: f32[B, T, V] logits that predict each completion token.
    mask: [B, T] completion mask.
    num_generations: G.
    alpha: the maximum weight (1 gives all-ones weights; TW-GRPO default 1.4, script 1.7).
    chunk_size: vocabulary chunk C.
    temperature: the sampling temperature the log-probs are taken under.
    stop_gradient: detach the weights from the logits.
    columns: bool[T] the positions min/max run over; None = where some row of `mask` is real. Pass
      the optimiser batch's columns when it is split into micro-batches.

  Returns:
    f32[B, T] weights, 0 on padding.
  """
  if stop_gradient:
    logits = jax.lax.stop_gradient(logits)
  spread = tw_grpo_divergence(logits, mask, num_generations, chunk_size=chunk_size, temperature=temperature)
  return tw_grpo_weights_from_divergence(spread, mask, num_generations, alpha=alpha, columns=columns)


def tw_grpo_divergence(logits: jax.Array, mask: jax.Array, num_generations: int, *, chunk_size: int,
                       temperature: float = 1.0) -> jax.Array:
  """D[t] of tw_grpo_token_weights per group, f32[P, T] (P = B / G), vocabulary chunk by chunk."""
  rows, length, vocab = logits.shape
  if rows % num_generations:
    raise ValueError(f'{rows} rows are not divisible by num_generations={num_generations}')
  logits = logits.astype(jnp.float32)
  scale = temperature if temperature > 0 else 1.0
  active = mask.astype(bool)[..., None]  # [B, T, 1]
  uniform = -math.log(vocab)

  def scaled(start: int | jax.Array, size: int) -> jax.Array:
    return jax.lax.dynamic_slice_in_dim(logits, start, size, axis=2) / scale  # [B, T, c]

  lse = _chunked_logsumexp(scaled, vocab, chunk_size, (rows, length))  # [B, T]

  def divergence(start: int | jax.Array, size: int) -> jax.Array:
    logp = jnp.where(active, scaled(start, size) - lse[..., None], uniform)  # [B, T, c]
    grouped = logp.reshape(-1, num_generations, length, size)  # [P, G, T, c]
    diff = jnp.clip(jnp.mean(grouped, axis=1, keepdims=True) - grouped, -_TW_DIFF_BOUND, _TW_DIFF_BOUND)
    return jnp.sum(jnp.exp(diff) - diff - 1.0, axis=-1)  # [P, G, T]

  chunk, full = _vocab_chunks(vocab, chunk_size)
  total, _ = jax.lax.scan(lambda acc, i: (acc + divergence(i * chunk, chunk), None),
                          jnp.zeros((rows // num_generations, num_generations, length), jnp.float32),
                          jnp.arange(full))
  if vocab % chunk:
    total = total + divergence(full * chunk, vocab % chunk)
  return jnp.mean(total, axis=1)  # [P, T]


def tw_grpo_weights_from_divergence(spread: jax.Array, mask: jax.Array, num_generations: int, *, alpha: float,
                                    columns: jax.Array | None = None) -> jax.Array:
  """w[t] of tw_grpo_token_weights from D [P, T] (tw_grpo_divergence), f32[B, T], 0 on padding."""
  if columns is None:
    columns = jnp.any(mask.astype(bool), axis=0)  # [T] positions some row still generates
  columns = columns.astype(bool)[None]  # [1, T]
  low = jnp.min(jnp.where(columns, spread, jnp.inf), axis=1, keepdims=True)
  high = jnp.max(jnp.where(columns, spread, -jnp.inf), axis=1, keepdims=True)
  low, high = jnp.where(jnp.isfinite(low), low, 0.0), jnp.where(jnp.isfinite(high), high, 0.0)  # no real token
  weights = 1.0 + (alpha - 1.0) * (spread - low) / (high - low + _TW_RANGE_EPS)  # [P, T]
  weights = jnp.repeat(weights, num_generations, axis=0)  # [B, T]
  return weights * mask.astype(jnp.float32)


# ------------------------------------------------------------------ UniVG-R1 difficulty (ALGORITHMS.md §1.5)
def _exp_weight(miou: jax.Array, power: float) -> jax.Array:
  del power
  return jnp.exp(1.0 - miou)


def _power_weight(miou: jax.Array, power: float) -> jax.Array:
  return jnp.power(1.05 - miou, power)


def _log_weight(miou: jax.Array, power: float) -> jax.Array:
  del power
  return -jnp.log(0.02 + miou)


DIFFICULTY_WEIGHTS: dict[str, Callable[[jax.Array, float], jax.Array]] = {
    'exp': _exp_weight,  # exp(1 - mIoU): the released `miou_adjust_math=exp`
    'power': _power_weight,  # (1.05 - mIoU)^w
    'log': _log_weight,  # -log(0.02 + mIoU)
}


def difficulty_weights(iou: jax.Array, num_generations: int, kind: str, power: float = 1.0) -> jax.Array:
  """UniVG-R1 difficulty weight per row, f32[B], from the group's mean IoU reward (harder -> larger).

  The weight multiplies the clipped surrogate before the KL term is added.
  """
  if kind not in DIFFICULTY_WEIGHTS:
    raise ValueError(f'unknown difficulty weight {kind!r}; valid: {sorted(DIFFICULTY_WEIGHTS)}')
  if iou.ndim != 1 or iou.shape[0] % num_generations:
    raise ValueError(f'iou must be [B] with B divisible by num_generations={num_generations}, got {iou.shape}')
  grouped = iou.astype(jnp.float32).reshape(-1, num_generations)
  weight = DIFFICULTY_WEIGHTS[kind](jnp.mean(grouped, axis=1, keepdims=True), power)  # [P, 1]
  return jax.lax.stop_gradient(jnp.broadcast_to(weight, grouped.shape).reshape(-1))


# ------------------------------------------------------------------ sampler -> trainer IS correction
IS_LOG_BOUND = 20.0  # exp(20) ~ 5e8: far above any useful cap, below float32 overflow
IS_CORRECTIONS = ('token_truncate', 'token_mask', 'sequence_truncate', 'sequence_mask')


def is_correction_weights(old_logprobs: jax.Array, sampler_logprobs: jax.Array, mask: jax.Array, mode: str,
                          cap_min: float, cap_max: float) -> tuple[jax.Array, jax.Array]:
  """Truncated / masked importance weights between the sampler and the trainer (TRL vLLM IS correction).

  w = exp(lp_old_trainer - lp_sampler) per token (`token_*`), or exp(sum_t m (lp_old - lp_sampler))
  per sequence (`sequence_*`, broadcast over the row). `*_truncate` clips w to [cap_min, cap_max];
  `*_mask` sets w = 0 outside [cap_min, cap_max]. No gradient.

  Returns:
    (weights f32[B, T], rejected bool[B, T]: the tokens a `*_mask` mode zeroed).
  """
  if mode not in IS_CORRECTIONS:
    raise ValueError(f'unknown IS correction {mode!r}; valid: {list(IS_CORRECTIONS)}')
  maskf = mask.astype(jnp.float32)
  diff = jax.lax.stop_gradient(old_logprobs - sampler_logprobs) * maskf  # [B, T]
  if mode.startswith('sequence'):
    diff = jnp.broadcast_to(jnp.sum(diff, axis=1, keepdims=True), diff.shape)
  weight = jnp.exp(jnp.clip(diff, -IS_LOG_BOUND, IS_LOG_BOUND))
  if mode.endswith('truncate'):
    return jnp.clip(weight, cap_min, cap_max), jnp.zeros(weight.shape, bool)
  rejected = (weight < cap_min) | (weight > cap_max)
  return jnp.where(rejected, 0.0, weight), rejected
