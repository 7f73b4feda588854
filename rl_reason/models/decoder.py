"""Qwen2 / Llama / Qwen3 decoder (RMSNorm, GQA, SwiGLU, rotary or multimodal rotary) with a KV cache.

Shapes: B batch, T query tokens, S cache slots, D model dim, N query heads, K kv heads,
H head dim, L layers, V vocab.

The families differ only in config: projection biases (Qwen2: q, k, v; Llama/Qwen3: all four
when attention_bias), Qwen3's per-head q/k RMSNorm before the rotary, rotary scaling (linear,
dynamic, llama3) and sliding-window layers (Qwen2/Qwen3 layer_types).

The KV cache is a plain dict pytree passed in and returned (never module state):
  k:     per layer [B, K, H, S] keys, transposed: q.k is then a plain [G*T, H] x [H, S] matmul per
         (row, kv head), 10x faster on CPU than contracting H against a [S, H] block
  v:     per layer [B, K, S, H] values (p.v is a plain [G*T, S] x [S, H] matmul)
  valid: [B, S]  bool, slot holds a real (non-padding) token
For a list of layers k and v are tuples of L arrays (read without the copy that slicing a stacked
array costs); for a scanned stack each is one array with a leading L axis
(init_cache(..., stacked=scan_layers)). CACHE_ROW_AXIS / CACHE_SLOT_AXIS give each entry's axes
from the right, the same for both forms.
Slot s holds the token at index s of the padded sequence (prompt bucket, then generated tokens);
a query at slot q attends to slots s <= q that are valid (and q - s < sliding_window in sliding
layers, as transformers counts it over the padded sequence). A shared write index (a scalar:
every row writes the same slots, as in left-padded batches) is one in-place
dynamic_update_slice; a [B] one is a scatter.

Layer stacks: a Python list of L layers (`scan_layers=False`, parameter paths `layers.{i}.*`), or
one layer module whose parameters carry a leading L axis (logical axis LAYERS) run under
jax.lax.scan (`scan_layers=True`, paths `layers.*`): one traced layer, so compile time does not
grow with depth. Both run the same pure layer function, which takes the stacked [L, ...] cache and
a layer index and writes its keys in place. The `remat` argument of a call wraps that function in
jax.checkpoint with a policy from REMAT_POLICIES.
"""

from __future__ import annotations

import functools
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


# Axes of each cache entry, counted from the right so that they hold with or without a leading L axis.
CACHE_ROW_AXIS = dict(k=-4, v=-4, valid=-2)
CACHE_SLOT_AXIS = dict(k=-1, v=-2, valid=-1)


def init_cache(cfg: TextConfig, batch: int, slots: int, dtype=jnp.float32, *, stacked: bool = False) -> Cache:
  """An empty cache; `stacked` for a scanned layer stack (pass the model's cfg.scan_layers)."""
  kv_heads, head_dim, count = cfg.num_key_value_heads, cfg.dim_per_head, cfg.num_hidden_layers
  shapes = dict(k=(batch, kv_heads, head_dim, slots), v=(batch, kv_heads, slots, head_dim))
  if stacked:
    cache = {name: jnp.zeros((count, *shape), dtype) for name, shape in shapes.items()}
  else:
    cache = {name: tuple(jnp.zeros(shape, dtype) for _ in range(count)) for name, shape in shapes.items()}
  return dict(cache, valid=jnp.zeros((batch, slots), jnp.bool_))


def map_cache(fn: Callable[[jax.Array, int, int], jax.Array], cache: Cache) -> Cache:
  """Applies fn(array, row_axis, slot_axis) to every array of the cache (axes non-negative)."""
  def apply(name, leaf):
    return fn(leaf, leaf.ndim + CACHE_ROW_AXIS[name], leaf.ndim + CACHE_SLOT_AXIS[name])
  return {name: jax.tree.map(functools.partial(apply, name), value) for name, value in cache.items()}


def _write(cache: jax.Array, new: jax.Array, layer, rows: jax.Array, slots: jax.Array, keys: bool) -> jax.Array:
  """Writes new [B, T, K, H] into this layer's keys [B, K, H, S] or values [B, K, S, H] at `slots`.

  cache: one layer's array (layer None) or the stacked [L, ...] array; slots a scalar (every row's
  first slot) or [B, T] per-row slots.
  """
  new = new.astype(cache.dtype)
  lead = () if layer is None else (layer,)
  if slots.ndim == 0:
    update = new.transpose(0, 2, 3, 1) if keys else new.transpose(0, 2, 1, 3)  # [B, K, H, T] / [B, K, T, H]
    start = (0, 0, 0, slots) if keys else (0, 0, slots, 0)
    return jax.lax.dynamic_update_slice(cache, update.reshape((1,) * len(lead) + update.shape), (*lead, *start))
  # Advanced indices (rows, slots) around slices: the indexed view is [B, T, K, H], as `new`.
  index = (rows, slice(None), slice(None), slots) if keys else (rows, slice(None), slots)
  return cache.at[(*lead, *index)].set(new)


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

  def __call__(self, x, cos, sin, mask, kv=None, layer=None, write=None, queries=None):
    """Attention output [B, T', D] and the updated stacked cache.

    Args:
      x: [B, T, D].
      cos, sin: [B, T, H] rotary tables.
      mask: [B, T, S] keys each query may see (S = T without a cache; with one, the cache's first S
        slots, S <= its slots).
      kv: None (the keys are the T new tokens), this layer's cache (k [B, K, H, S], v [B, K, S, H];
        layer None), or the stacked cache (the same with a leading L axis).
      layer: index of this layer in a stacked kv (int or traced int32 scalar), else None.
      write: (rows [B, 1], slots) where the T new keys are written: slots a scalar first slot
        shared by every row, or [B, T].
      queries: None (all T tokens query), or a slice of the T tokens that query (T' of them); the
        keys and values of all T are still computed and written.
    """
    batch, _, _ = x.shape
    x_queries, cos_queries, sin_queries = (x, cos, sin) if queries is None else (
        x[:, queries], cos[:, queries], sin[:, queries])
    length = x_queries.shape[1]  # T'
    q = self.q_proj(x_queries).reshape(batch, length, self.num_heads, self.head_dim)
    k = self.k_proj(x).reshape(batch, x.shape[1], self.num_kv_heads, self.head_dim)
    v = self.v_proj(x).reshape(batch, x.shape[1], self.num_kv_heads, self.head_dim)
    if self.q_norm is not None:
      q, k = self.q_norm(q), self.k_norm(k)  # per head, before the rotary (Qwen3)
    q = layers.apply_rotary(q, cos_queries, sin_queries)
    k = layers.apply_rotary(k, cos, sin)
    if queries is not None:
      mask = mask[:, queries]  # [B, T', S]
    if kv is None:
      keys, values = k.transpose(0, 2, 3, 1), v.transpose(0, 2, 1, 3)  # [B, K, H, T], [B, K, T, H]
    else:
      rows, slots = write
      kv = (_write(kv[0], k, layer, rows, slots, keys=True), _write(kv[1], v, layer, rows, slots, keys=False))
      keys, values = kv if layer is None else (kv[0][layer], kv[1][layer])  # [B, K, H, S], [B, K, S, H]
      if mask.shape[-1] < keys.shape[-1]:  # kv_limit: the slots written so far
        keys, values = keys[..., :mask.shape[-1]], values[..., :mask.shape[-1], :]
    kv_heads, groups, head_dim = self.num_kv_heads, self.num_heads // self.num_kv_heads, self.head_dim
    # Queries as [B, K, G*T, H]: both dots are then plain matmuls per (row, kv head) on contiguous
    # blocks of the cache, [G*T, H] x [H, S] and [G*T, S] x [S, H], which the CPU backend runs fast.
    q = q.reshape(batch, length, kv_heads, groups, head_dim).transpose(0, 2, 3, 1, 4)
    q = q.reshape(batch, kv_heads, groups * length, head_dim)
    scores = jnp.einsum('bkqh,bkhs->bkqs', q, keys.astype(q.dtype)).astype(jnp.float32)
    scores = scores.reshape(batch, kv_heads, groups, length, -1) * head_dim**-0.5
    scores = jnp.where(mask[:, None, None], scores, layers.attention_weights_mask_value(jnp.float32))
    probs = jax.nn.softmax(scores, axis=-1).astype(x.dtype).reshape(batch, kv_heads, groups * length, -1)
    out = jnp.einsum('bkqs,bksh->bkqh', probs, values.astype(x.dtype))  # [B, K, G*T, H]
    out = out.reshape(batch, kv_heads, groups, length, head_dim).transpose(0, 3, 1, 2, 4)
    return self.o_proj(out.reshape(batch, length, self.num_heads * head_dim)), kv


class DecoderLayer(nnx.Module):

  def __init__(self, cfg: TextConfig, *, rngs: nnx.Rngs, param_dtype):
    self.input_layernorm = layers.RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps, param_dtype=param_dtype)
    self.self_attn = Attention(cfg, rngs=rngs, param_dtype=param_dtype)
    self.post_attention_layernorm = layers.RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps,
                                                   param_dtype=param_dtype)
    self.mlp = layers.GatedMLP(cfg.hidden_size, cfg.intermediate_size, use_bias=cfg.mlp_bias, rngs=rngs,
                               param_dtype=param_dtype, act=cfg.hidden_act)

  def __call__(self, x, cos, sin, mask, kv=None, layer=None, write=None, queries=None):
    """[B, T, D] -> [B, T', D] and the updated stacked cache (see Attention)."""
    attended, kv = self.self_attn(self.input_layernorm(x), cos, sin, mask, kv, layer, write, queries)
    x = (x if queries is None else x[:, queries]) + attended
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

  def _check_cache(self, cache: Cache) -> None:
    stacked = not isinstance(cache['k'], (tuple, list))
    if stacked != self.scan_layers:
      raise ValueError(f'the KV cache is {"one stacked array" if stacked else "a tuple of per-layer arrays"} but '
                       f'the model has scan_layers={self.scan_layers}: build it with '
                       f'init_cache(..., stacked={self.scan_layers})')

  def _layer_fn(self, graphdef, remat: str, queries: slice | None = None):
    """(layer state, x, cos, sin, mask, kv, layer index, write) -> (x, kv), rematerialised per `remat`."""

    def apply(state, x, cos, sin, mask, kv, layer, write):
      return nnx.merge(graphdef, state)(x, cos, sin, mask, kv, layer, write, queries)

    if remat == 'none':
      return apply
    if remat not in REMAT_POLICIES:
      raise ValueError(f'remat {remat!r} is not supported; supported: {["none", *REMAT_POLICIES]}')
    # Under scan XLA cannot merge the recomputation with the forward pass across iterations, so the
    # CSE barrier that jax.checkpoint adds by default is only needed for the unrolled stack.
    return jax.checkpoint(apply, policy=REMAT_POLICIES[remat], prevent_cse=not self.scan_layers)

  def rotary(self, positions: jax.Array, dtype) -> tuple[jax.Array, jax.Array]:
    """cos, sin [B, T, H] in `dtype` for positions [3, B, T]."""
    cfg = self.cfg
    inv_freq = layers.rope_inverse_frequencies(
        cfg.dim_per_head, cfg.rope_theta, cfg.rope_scaling, max_position_embeddings=cfg.max_position_embeddings,
        seq_len=jnp.max(positions) + 1)  # [H/2]
    cos, sin = layers.text_rotary(positions, inv_freq, cfg.mrope_section)
    return cos.astype(dtype), sin.astype(dtype)

  def __call__(self, embeds, positions, attention_mask, cache: Cache | None = None,
               write_index: jax.Array | None = None, remat: str = 'none', hidden_slice: slice | None = None,
               rotary: tuple[jax.Array, jax.Array] | None = None, kv_limit: int | None = None):
    """Runs the layers.

    Args:
      embeds: [B, T, D] input embeddings.
      positions: [3, B, T] rotary positions.
      attention_mask: [B, T] 1 for real tokens.
      cache: optional KV cache; when given, the T new tokens are written at slots
        write_index[b] .. write_index[b] + T - 1 and attend to the cache.
      write_index: int32 first slot of the new tokens (required with a cache): a scalar shared by
        every row (one in-place write; what left-padded batches need) or [B] per row.
      remat: a config.REMAT name: how each layer is rematerialised when differentiated.
      hidden_slice: None, or the slice of the T tokens whose hidden states are returned (T' of them).
        The last layer then runs its queries, attention output and MLP for those tokens alone (its
        keys and values for all T): a prefill that samples from the last token skips most of a layer.
      rotary: None, or `self.rotary(positions, embeds.dtype)` computed by the caller (positions
        are then unused); the sampler's decode loop carries it from step to step.
      kv_limit: with a cache, attend to its first kv_limit slots alone (a static int: a chunked
        prefill's slots after the chunk hold nothing yet); None reads every slot.

    Returns:
      hidden [B, T', D] after the final norm, and the updated cache (or None).
    """
    cfg = self.cfg
    cos, sin = self.rotary(positions, embeds.dtype) if rotary is None else rotary
    batch, length, _ = embeds.shape
    valid_new = attention_mask.astype(jnp.bool_)
    if cache is None:
      query_slots = jnp.broadcast_to(jnp.arange(length)[None], (batch, length))  # [B, T]
      key_slots = jnp.arange(length)
      mask = (key_slots[None, None, :] <= query_slots[:, :, None]) & valid_new[:, None, :]  # [B, T, S=T]
      kv, write = None, None
    else:
      self._check_cache(cache)
      slots = cache['valid'].shape[1]
      write_index = jnp.asarray(write_index, jnp.int32)
      query_slots = jnp.broadcast_to(write_index, (batch,))[:, None] + jnp.arange(length)[None]  # [B, T]
      key_slots = jnp.arange(kv_limit or slots)
      rows = jnp.arange(batch)[:, None]
      if write_index.ndim == 0:
        valid = jax.lax.dynamic_update_slice(cache['valid'], valid_new, (0, write_index))
      else:
        valid = cache['valid'].at[rows, query_slots].set(valid_new)
      mask = valid[:, None, :len(key_slots)] & (key_slots[None, None, :] <= query_slots[:, :, None])  # [B, T, S]
      kv, write = (cache['k'], cache['v']), (rows, write_index if write_index.ndim == 0 else query_slots)
    windows = sorted({cfg.window_of_layer(i) for i in range(cfg.num_hidden_layers)}, key=lambda w: w or 0)
    masks = [mask if window is None else mask & (query_slots[:, :, None] - key_slots[None, None, :] < window)
             for window in windows]  # per distinct sliding window (None: full), each [B, T, S]
    window_ids = [windows.index(cfg.window_of_layer(i)) for i in range(cfg.num_hidden_layers)]

    last = cfg.num_hidden_layers - 1
    if self.scan_layers:
      graphdef, stacked = nnx.split(self.layers)
      layer_fn = self._layer_fn(graphdef, remat)
      mask_stack = jnp.stack(masks)  # [W, B, T, S]

      def body(carry, xs):
        x, kv = carry
        state, layer, window_id = xs
        return layer_fn(state, x, cos, sin, mask_stack[window_id], kv, layer, write), None

      # With a hidden_slice the last layer runs outside the scan, on the sliced queries.
      scanned = cfg.num_hidden_layers if hidden_slice is None else last
      xs = (stacked, jnp.arange(cfg.num_hidden_layers, dtype=jnp.int32), jnp.asarray(window_ids, jnp.int32))
      x = embeds
      if scanned:
        (x, kv), _ = jax.lax.scan(body, (x, kv), jax.tree.map(lambda a: a[:scanned], xs))
      if hidden_slice is not None:
        x, kv = self._layer_fn(graphdef, remat, hidden_slice)(
            jax.tree.map(lambda a: a[last], stacked), x, cos, sin, masks[window_ids[last]], kv, jnp.int32(last), write)
    else:
      x, new_kv = embeds, ([], [])
      for index, layer in enumerate(self.layers):
        graphdef, state = nnx.split(layer)
        layer_kv = None if kv is None else (kv[0][index], kv[1][index])
        queries = hidden_slice if index == last else None
        x, layer_kv = self._layer_fn(graphdef, remat, queries)(state, x, cos, sin, masks[window_ids[index]], layer_kv,
                                                               None, write)
        if kv is not None:
          new_kv[0].append(layer_kv[0])
          new_kv[1].append(layer_kv[1])
      kv = None if kv is None else tuple(map(tuple, new_kv))
    hidden = self.norm(x)
    if cache is None:
      return hidden, None
    return hidden, dict(k=kv[0], v=kv[1], valid=valid)
