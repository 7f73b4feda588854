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

Layer stacks: a Python list of L layers (`scan_layers=False`, parameter paths `layers.{i}.*`), or
one layer module whose parameters carry a leading L axis (logical axis LAYERS) run under
jax.lax.scan (`scan_layers=True`, paths `layers.*`): one traced layer, so compile time does not
grow with depth. Both run the same pure layer function, which takes the stacked [L, ...] cache and
a layer index and writes its keys in place. The `remat` argument of a call wraps that function in
jax.checkpoint with a policy from REMAT_POLICIES.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx

from rl_reason.models import layers
from rl_reason.models.config import TextConfig
from rl_reason.parallel import sharding as shd

Cache = dict[str, jax.Array]

# config.REMAT names -> jax.checkpoint policies ('none': no jax.checkpoint at all). The layer input
# (the scan carry) is always kept; the policy says which intermediates are kept besides it.
REMAT_POLICIES: dict[str, Callable[..., Any]] = {
    'full': jax.checkpoint_policies.nothing_saveable,
    'minimal': jax.checkpoint_policies.dots_with_no_batch_dims_saveable,  # matmuls against weights
    'dots_saveable': jax.checkpoint_policies.dots_saveable,  # every matmul, attention's included
}


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

  def __call__(self, x, cos, sin, mask, kv=None, layer=None, write=None):
    """Attention output [B, T, D] and the updated stacked cache.

    Args:
      x: [B, T, D].
      cos, sin: [B, T, H] rotary tables.
      mask: [B, T, S] keys each query may see (S = T without a cache).
      kv: None (the keys are the T new tokens) or the stacked cache (k, v), each [L, B, S, K, H].
      layer: index of this layer in kv (int or traced int32 scalar).
      write: (rows [B, 1], slots [B, T]) where the T new keys are written.
    """
    batch, length, _ = x.shape
    q = self.q_proj(x).reshape(batch, length, self.num_heads, self.head_dim)
    k = self.k_proj(x).reshape(batch, length, self.num_kv_heads, self.head_dim)
    v = self.v_proj(x).reshape(batch, length, self.num_kv_heads, self.head_dim)
    if self.q_norm is not None:
      q, k = self.q_norm(q), self.k_norm(k)  # per head, before the rotary (Qwen3)
    q = layers.apply_rotary(q, cos, sin)
    k = layers.apply_rotary(k, cos, sin)
    if kv is None:
      keys, values = k, v
    else:
      rows, slots = write
      # Scatter into the stacked [L, ...] arrays so that a donated cache is updated in place.
      kv = tuple(stack.at[layer, rows, slots].set(new.astype(stack.dtype)) for stack, new in zip(kv, (k, v)))
      keys, values = kv[0][layer], kv[1][layer]  # [B, S, K, H]
    groups = self.num_heads // self.num_kv_heads
    q = q.reshape(batch, length, self.num_kv_heads, groups, self.head_dim)
    scores = jnp.einsum('btkgh,bskh->bkgts', q, keys.astype(q.dtype)).astype(jnp.float32)
    scores = scores * self.head_dim**-0.5
    scores = jnp.where(mask[:, None, None], scores, layers.attention_weights_mask_value(jnp.float32))
    probs = jax.nn.softmax(scores, axis=-1).astype(x.dtype)
    out = jnp.einsum('bkgts,bskh->btkgh', probs, values.astype(x.dtype))
    return self.o_proj(out.reshape(batch, length, self.num_heads * self.head_dim)), kv


class DecoderLayer(nnx.Module):

  def __init__(self, cfg: TextConfig, *, rngs: nnx.Rngs, param_dtype):
    self.input_layernorm = layers.RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps, param_dtype=param_dtype)
    self.self_attn = Attention(cfg, rngs=rngs, param_dtype=param_dtype)
    self.post_attention_layernorm = layers.RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps,
                                                   param_dtype=param_dtype)
    self.mlp = layers.GatedMLP(cfg.hidden_size, cfg.intermediate_size, use_bias=cfg.mlp_bias, rngs=rngs,
                               param_dtype=param_dtype, act=cfg.hidden_act)

  def __call__(self, x, cos, sin, mask, kv=None, layer=None, write=None):
    """[B, T, D] -> [B, T, D] and the updated stacked cache (see Attention)."""
    attended, kv = self.self_attn(self.input_layernorm(x), cos, sin, mask, kv, layer, write)
    x = x + attended
    return x + self.mlp(self.post_attention_layernorm(x)), kv


class Decoder(nnx.Module):
  """Token embedding, decoder layers (a list, or one stacked layer under scan), final norm and LM head."""

  def __init__(self, cfg: TextConfig, *, rngs: nnx.Rngs, param_dtype=jnp.float32, scan_layers: bool = False):
    self.cfg = cfg
    self.scan_layers = scan_layers
    self.embed_tokens = nnx.Param(
        nnx.initializers.normal(0.02)(rngs.params(), (cfg.vocab_size, cfg.hidden_size), param_dtype),
        logical_axes=(shd.VOCAB, shd.EMBED))
    if scan_layers:
      self.layers = layers.stacked(lambda r: DecoderLayer(cfg, rngs=r, param_dtype=param_dtype), cfg.num_hidden_layers,
                                  rngs)
    else:
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

  def _layer_fn(self, graphdef, remat: str):
    """(layer state, x, cos, sin, mask, kv, layer index, write) -> (x, kv), rematerialised per `remat`."""

    def apply(state, x, cos, sin, mask, kv, layer, write):
      return nnx.merge(graphdef, state)(x, cos, sin, mask, kv, layer, write)

    if remat == 'none':
      return apply
    if remat not in REMAT_POLICIES:
      raise ValueError(f'remat {remat!r} is not supported; supported: {["none", *REMAT_POLICIES]}')
    # Under scan XLA cannot merge the recomputation with the forward pass across iterations, so the
    # CSE barrier that jax.checkpoint adds by default is only needed for the unrolled stack.
    return jax.checkpoint(apply, policy=REMAT_POLICIES[remat], prevent_cse=not self.scan_layers)

  def __call__(self, embeds, positions, attention_mask, cache: Cache | None = None,
               write_index: jax.Array | None = None, remat: str = 'none'):
    """Runs the layers.

    Args:
      embeds: [B, T, D] input embeddings.
      positions: [3, B, T] rotary positions.
      attention_mask: [B, T] 1 for real tokens.
      cache: optional KV cache; when given, the T new tokens are written at slots
        write_index[b] .. write_index[b] + T - 1 and attend to the cache.
      write_index: [B] int32 first slot of the new tokens (required with a cache).
      remat: a config.REMAT name: how each layer is rematerialised when differentiated.

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
      kv, write = None, None
    else:
      slots = cache['valid'].shape[1]
      query_slots = write_index[:, None] + jnp.arange(length)[None]  # [B, T]
      key_slots = jnp.arange(slots)
      rows = jnp.arange(batch)[:, None]
      valid = cache['valid'].at[rows, query_slots].set(valid_new)
      mask = valid[:, None, :] & (key_slots[None, None, :] <= query_slots[:, :, None])  # [B, T, S]
      kv, write = (cache['k'], cache['v']), (rows, query_slots)
    windows = sorted({cfg.window_of_layer(i) for i in range(cfg.num_hidden_layers)}, key=lambda w: w or 0)
    masks = [mask if window is None else mask & (query_slots[:, :, None] - key_slots[None, None, :] < window)
             for window in windows]  # per distinct sliding window (None: full), each [B, T, S]
    window_ids = [windows.index(cfg.window_of_layer(i)) for i in range(cfg.num_hidden_layers)]

    if self.scan_layers:
      graphdef, stacked = nnx.split(self.layers)
      layer_fn = self._layer_fn(graphdef, remat)
      mask_stack = jnp.stack(masks)  # [W, B, T, S]

      def body(carry, xs):
        x, kv = carry
        state, layer, window_id = xs
        return layer_fn(state, x, cos, sin, mask_stack[window_id], kv, layer, write), None

      xs = (stacked, jnp.arange(cfg.num_hidden_layers, dtype=jnp.int32), jnp.asarray(window_ids, jnp.int32))
      (x, kv), _ = jax.lax.scan(body, (embeds, kv), xs)
    else:
      x = embeds
      for index, layer in enumerate(self.layers):
        graphdef, state = nnx.split(layer)
        x, kv = self._layer_fn(graphdef, remat)(state, x, cos, sin, masks[window_ids[index]], kv, index, write)
    hidden = self.norm(x)
    if cache is None:
      return hidden, None
    return hidden, dict(k=kv[0], v=kv[1], valid=valid)
