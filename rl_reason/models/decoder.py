"""Qwen2 / Llama / Qwen3 decoder (RMSNorm, GQA, SwiGLU, rotary or multimodal rotary) with a KV cache.

Shapes: B batch, T query tokens, S cache slots, D model dim, N query heads, K kv heads,
H head dim, L layers, V vocab.

The families differ only in config: projection biases (Qwen2: q, k, v; Llama/Qwen3: all four
when attention_bias), Qwen3's per-head q/k RMSNorm before the rotary, rotary scaling (linear,
dynamic, llama3) and sliding-window layers (Qwen2/Qwen3 layer_types).

The KV cache is a plain dict pytree passed in and returned (never module state):
  k, v:  [L, B, S, K, H]  keys/values per slot
  valid: [B, S]           bool, slot holds a real (non-padding) token
Slot s holds the token at index s of the padded sequence (prompt bucket, then generated tokens);
a query at slot q attends to slots s <= q that are valid (and q - s < sliding_window in sliding
layers, as transformers counts it over the padded sequence).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from rl_reason.models import layers
from rl_reason.models.config import TextConfig
from rl_reason.parallel import sharding as shd

Cache = dict[str, jax.Array]


def init_cache(cfg: TextConfig, batch: int, slots: int, dtype=jnp.float32) -> Cache:
  shape = (cfg.num_hidden_layers, batch, slots, cfg.num_key_value_heads, cfg.dim_per_head)
  return dict(k=jnp.zeros(shape, dtype), v=jnp.zeros(shape, dtype),
              valid=jnp.zeros((batch, slots), jnp.bool_))


class Attention(nnx.Module):

  def __init__(self, cfg: TextConfig, *, rngs: nnx.Rngs, param_dtype):
    self.num_heads = cfg.num_attention_heads
    self.num_kv_heads = cfg.num_key_value_heads
    self.head_dim = cfg.dim_per_head
    d, n, k, h = cfg.hidden_size, self.num_heads, self.num_kv_heads, self.head_dim
    kw = dict(use_bias=cfg.attention_bias, rngs=rngs, param_dtype=param_dtype)
    self.q_proj = layers.Linear(d, n * h, axes=(shd.EMBED, shd.HEADS), **kw)
    self.k_proj = layers.Linear(d, k * h, axes=(shd.EMBED, shd.KV_HEADS), **kw)
    self.v_proj = layers.Linear(d, k * h, axes=(shd.EMBED, shd.KV_HEADS), **kw)
    self.o_proj = layers.Linear(n * h, d, axes=(shd.HEADS, shd.EMBED),
                                use_bias=cfg.attention_bias and cfg.family.o_proj_bias, rngs=rngs,
                                param_dtype=param_dtype)
    if cfg.family.qk_norm:
      self.q_norm = layers.RMSNorm(h, eps=cfg.rms_norm_eps, param_dtype=param_dtype)
      self.k_norm = layers.RMSNorm(h, eps=cfg.rms_norm_eps, param_dtype=param_dtype)
    else:
      self.q_norm = self.k_norm = None

  def __call__(self, x, cos, sin, keys_fn):
    """x [B, T, D]; keys_fn(k_new, v_new) -> (keys [B, S, K, H], values, mask [B, T, S])."""
    batch, length, _ = x.shape
    q = self.q_proj(x).reshape(batch, length, self.num_heads, self.head_dim)
    k = self.k_proj(x).reshape(batch, length, self.num_kv_heads, self.head_dim)
    v = self.v_proj(x).reshape(batch, length, self.num_kv_heads, self.head_dim)
    if self.q_norm is not None:
      q, k = self.q_norm(q), self.k_norm(k)  # per head, before the rotary (Qwen3)
    q = layers.apply_rotary(q, cos, sin)
    k = layers.apply_rotary(k, cos, sin)
    keys, values, mask = keys_fn(k, v)
    groups = self.num_heads // self.num_kv_heads
    q = q.reshape(batch, length, self.num_kv_heads, groups, self.head_dim)
    scores = jnp.einsum('btkgh,bskh->bkgts', q, keys.astype(q.dtype)).astype(jnp.float32)
    scores = scores * self.head_dim**-0.5
    scores = jnp.where(mask[:, None, None], scores, layers.attention_weights_mask_value(jnp.float32))
    probs = jax.nn.softmax(scores, axis=-1).astype(x.dtype)
    out = jnp.einsum('bkgts,bskh->btkgh', probs, values.astype(x.dtype))
    return self.o_proj(out.reshape(batch, length, self.num_heads * self.head_dim))


class DecoderLayer(nnx.Module):

  def __init__(self, cfg: TextConfig, *, rngs: nnx.Rngs, param_dtype):
    self.input_layernorm = layers.RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps, param_dtype=param_dtype)
    self.self_attn = Attention(cfg, rngs=rngs, param_dtype=param_dtype)
    self.post_attention_layernorm = layers.RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps,
                                                   param_dtype=param_dtype)
    self.mlp = layers.GatedMLP(cfg.hidden_size, cfg.intermediate_size, use_bias=cfg.mlp_bias, rngs=rngs,
                               param_dtype=param_dtype, act=cfg.hidden_act)

  def __call__(self, x, cos, sin, keys_fn):
    x = x + self.self_attn(self.input_layernorm(x), cos, sin, keys_fn)
    return x + self.mlp(self.post_attention_layernorm(x))


class Decoder(nnx.Module):
  """Token embedding, decoder layers, final norm and LM head."""

  def __init__(self, cfg: TextConfig, *, rngs: nnx.Rngs, param_dtype=jnp.float32):
    self.cfg = cfg
    self.embed_tokens = nnx.Param(
        nnx.initializers.normal(0.02)(rngs.params(), (cfg.vocab_size, cfg.hidden_size), param_dtype),
        logical_axes=(shd.VOCAB, shd.EMBED))
    self.layers = nnx.List([DecoderLayer(cfg, rngs=rngs, param_dtype=param_dtype)
                            for _ in range(cfg.num_hidden_layers)])
    self.norm = layers.RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps, param_dtype=param_dtype)
    self.lm_head = (None if cfg.tie_word_embeddings else
                    layers.Linear(cfg.hidden_size, cfg.vocab_size, axes=(shd.EMBED, shd.VOCAB),
                                  use_bias=False, rngs=rngs, param_dtype=param_dtype))

  def embed(self, input_ids: jax.Array, dtype) -> jax.Array:
    return jnp.take(self.embed_tokens[...], input_ids, axis=0).astype(dtype)

  def logits(self, hidden: jax.Array) -> jax.Array:
    """[B, T, D] final hidden states (already normed) -> [B, T, V] float32 logits."""
    if self.lm_head is None:
      return jnp.einsum('btd,vd->btv', hidden, self.embed_tokens[...].astype(hidden.dtype)).astype(jnp.float32)
    return self.lm_head(hidden).astype(jnp.float32)

  def __call__(self, embeds, positions, attention_mask, cache: Cache | None = None,
               write_index: jax.Array | None = None):
    """Runs the layers.

    Args:
      embeds: [B, T, D] input embeddings.
      positions: [3, B, T] rotary positions.
      attention_mask: [B, T] 1 for real tokens.
      cache: optional KV cache; when given, the T new tokens are written at slots
        write_index[b] .. write_index[b] + T - 1 and attend to the cache.
      write_index: [B] int32 first slot of the new tokens (required with a cache).

    Returns:
      hidden [B, T, D] after the final norm, and the updated cache (or None).
    """
    cfg = self.cfg
    inv_freq = layers.rope_inverse_frequencies(
        cfg.dim_per_head, cfg.rope_theta, cfg.rope_scaling, max_position_embeddings=cfg.max_position_embeddings,
        seq_len=jnp.max(positions) + 1)  # [H/2]
    cos, sin = layers.text_rotary(positions, inv_freq, cfg.mrope_section)
    cos, sin = cos.astype(embeds.dtype), sin.astype(embeds.dtype)
    batch, length, _ = embeds.shape
    valid_new = attention_mask.astype(jnp.bool_)
    if cache is None:
      query_slots = jnp.broadcast_to(jnp.arange(length)[None], (batch, length))  # [B, T]
      key_slots = jnp.arange(length)
      mask = (key_slots[None, None, :] <= query_slots[:, :, None]) & valid_new[:, None, :]  # [B, T, S=T]
    else:
      slots = cache['valid'].shape[1]
      query_slots = write_index[:, None] + jnp.arange(length)[None]  # [B, T]
      key_slots = jnp.arange(slots)
      rows = jnp.arange(batch)[:, None]
      valid = cache['valid'].at[rows, query_slots].set(valid_new)
      mask = valid[:, None, :] & (key_slots[None, None, :] <= query_slots[:, :, None])  # [B, T, S]
      updated = dict(k=cache['k'], v=cache['v'])
    masks = {}  # sliding window (None: full) -> [B, T, S]
    for window in {cfg.window_of_layer(i) for i in range(cfg.num_hidden_layers)}:
      masks[window] = mask if window is None else mask & (
          query_slots[:, :, None] - key_slots[None, None, :] < window)

    def keys_for(layer_index):
      layer_mask = masks[cfg.window_of_layer(layer_index)]
      if cache is None:
        return lambda k, v: (k, v, layer_mask)

      def fn(k, v):
        # Writes into the stacked [L, ...] arrays so a donated cache is updated in place.
        for name, new in (('k', k), ('v', v)):
          updated[name] = updated[name].at[layer_index, rows, query_slots].set(new.astype(updated[name].dtype))
        return updated['k'][layer_index], updated['v'][layer_index], layer_mask
      return fn

    x = embeds
    for index, layer in enumerate(self.layers):
      x = layer(x, cos, sin, keys_for(index))
    hidden = self.norm(x)
    if cache is None:
      return hidden, None
    return hidden, dict(k=updated['k'], v=updated['v'], valid=valid)
