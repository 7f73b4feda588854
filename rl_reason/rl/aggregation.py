"""Loss aggregation: per-token losses [B, T] -> one scalar (PEERS_PYTORCH.md §2.4).

Shapes: B rows (N sequences), T completion tokens, L a constant length. `mask` [B, T] is 1 for the
tokens that count. Every mode is sum_{i,t} c_it m_it l_it with a mode-specific c:

  seq_mean_token_mean      c = 1 / (N |o_i|)   original GRPO (R1-V, VLM-R1, Jigsaw-R1); empty rows count in N
  token_mean               c = 1 / T_active    DAPO / verl token-mean / TRL `dapo`
  seq_mean_token_sum       c = 1 / N           verl seq-mean-token-sum
  seq_mean_token_sum_norm  c = 1 / (N L)       Dr. GRPO (TRL `dr_grpo`: L = max completion length;
                                               default L = T, the padded completion axis, as verl)

Normalisers. By default N is the number of rows and T_active the number of real tokens of the
arrays given. When an optimiser batch is split (gradient-accumulation micro-batches, or devices
that compute their loss separately), pass the whole batch's counts as `num_sequences` /
`num_tokens` so that every part divides by the same number and the parts' losses (and gradients)
sum to the full-batch value. Inside one jitted call over globally sharded arrays the defaults are
already global.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

AggregationFn = Callable[..., jax.Array]


def _rows(per_token: jax.Array, num_sequences: jax.Array | float | None) -> jax.Array | float:
  return per_token.shape[0] if num_sequences is None else num_sequences


def seq_mean_token_mean(per_token: jax.Array, mask: jax.Array, *, num_tokens=None, num_sequences=None,
                        constant=None) -> jax.Array:
  """(1/N) sum_i (1/|o_i|) sum_t m l; an empty row contributes 0 but counts in N."""
  del num_tokens, constant  # this mode normalises per row
  mask = mask.astype(per_token.dtype)
  row_means = jnp.sum(per_token * mask, axis=1) / jnp.maximum(jnp.sum(mask, axis=1), 1.0)
  return jnp.sum(row_means) / _rows(per_token, num_sequences)


def token_mean(per_token: jax.Array, mask: jax.Array, *, num_tokens=None, num_sequences=None,
               constant=None) -> jax.Array:
  """sum_{i,t} m l / T_active, T_active = num_tokens or the mask's count (at least 1)."""
  del num_sequences, constant
  mask = mask.astype(per_token.dtype)
  count = jnp.sum(mask) if num_tokens is None else num_tokens
  return jnp.sum(per_token * mask) / jnp.maximum(count, 1.0)


def seq_mean_token_sum(per_token: jax.Array, mask: jax.Array, *, num_tokens=None, num_sequences=None,
                       constant=None) -> jax.Array:
  """(1/N) sum_{i,t} m l."""
  del num_tokens, constant
  return jnp.sum(per_token * mask.astype(per_token.dtype)) / _rows(per_token, num_sequences)


def seq_mean_token_sum_norm(per_token: jax.Array, mask: jax.Array, *, num_tokens=None, num_sequences=None,
                            constant=None) -> jax.Array:
  """(1/(N L)) sum_{i,t} m l with a constant L (Dr. GRPO; TRL `dr_grpo`).

  L = `constant`, or when it is None / 0 the completion axis T of the arrays: with completions
  padded to the generation cap that is the maximum completion length (verl's default
  `loss_scale_factor`). verl's `seq-mean-token-sum-norm` divides the token sum by L without the
  1/N; this is TRL's form, whose scale does not grow with the batch.
  """
  del num_tokens
  if constant is not None and constant < 0:
    raise ValueError(f'seq_mean_token_sum_norm needs a positive constant (or 0 / None for T), got {constant}')
  length = constant if constant else per_token.shape[1]
  return jnp.sum(per_token * mask.astype(per_token.dtype)) / (_rows(per_token, num_sequences) * length)


AGGREGATIONS: dict[str, AggregationFn] = {
    'seq_mean_token_mean': seq_mean_token_mean,
    'token_mean': token_mean,
    'seq_mean_token_sum': seq_mean_token_sum,
    'seq_mean_token_sum_norm': seq_mean_token_sum_norm,
}
