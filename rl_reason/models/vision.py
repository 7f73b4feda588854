"""Qwen2.5-VL / Qwen2-VL vision towers: patch embedding, 2-D rotary, attention blocks, 2x2 merger.

Shapes: I images (padded to a common patch count), P patches per image (window-permuted order,
as HF permutes them), C flattened patch dim (channels x temporal x patch x patch), E vision width,
M merged tokens per image (P / merge_unit), D text width.

Images are processed as a batch of rows [I, P, C]; attention is restricted by segment ids
(window segments for window blocks, frame segments for full blocks, -1 for padding), which
reproduces HF's cu_seqlens packing exactly without an O((I*P)^2) mask.

Qwen2.5-VL: RMSNorm, SwiGLU MLP, window attention except in fullatt_block_indexes. Qwen2-VL:
LayerNorm, fc1 -> act -> fc2 MLP, every block full attention, patches in processor order.

Block stacks, as in the decoder: a Python list of `depth` blocks (`scan_layers=False`, parameter
paths `visual.blocks.{i}.*`), or one block whose parameters carry a leading axis of length depth
(logical axis LAYERS) run under jax.lax.scan (`scan_layers=True`, paths `visual.blocks.*`). Window
and full-attention blocks have the same parameters and differ only in their segment ids, so the
scan carries a per-block "full attention" flag that picks the segments. The `remat` argument of a
call wraps each block in jax.checkpoint with a policy from decoder.REMAT_POLICIES.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from rl_reason.models import layers
from rl_reason.models.config import VisionConfig
from rl_reason.models.decoder import REMAT_POLICIES
from rl_reason.parallel import sharding as shd


class VisionAttention(nnx.Module):

  def __init__(self, cfg: VisionConfig, *, rngs: nnx.Rngs, param_dtype):
    self.num_heads = cfg.num_heads
    self.head_dim = cfg.head_dim
    self.qkv = layers.Linear(cfg.hidden_size, 3 * cfg.hidden_size, axes=(shd.EMBED, shd.HEADS),
                             use_bias=True, rngs=rngs, param_dtype=param_dtype)
    self.proj = layers.Linear(cfg.hidden_size, cfg.hidden_size, axes=(shd.HEADS, shd.EMBED),
                              use_bias=True, rngs=rngs, param_dtype=param_dtype)

  def __call__(self, x, cos, sin, segments):
    num_images, num_patches, _ = x.shape
    qkv = self.qkv(x).reshape(num_images, num_patches, 3, self.num_heads, self.head_dim)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # [I, P, N, H]
    q = layers.apply_rotary(q, cos, sin)
    k = layers.apply_rotary(k, cos, sin)
    scores = jnp.einsum('ipnh,iqnh->inpq', q, k).astype(jnp.float32) * self.head_dim**-0.5
    same = (segments[:, :, None] == segments[:, None, :]) & (segments[:, None, :] >= 0)  # [I, P, P]
    scores = jnp.where(same[:, None], scores, layers.attention_weights_mask_value(jnp.float32))
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    out = jnp.einsum('inpq,iqnh->ipnh', probs, v).reshape(num_images, num_patches, -1)
    return self.proj(out)


_NORMS = {'rms': layers.RMSNorm, 'layer': layers.LayerNorm}


def _norm(cfg: VisionConfig, param_dtype):
  return _NORMS[cfg.family.norm](cfg.hidden_size, eps=cfg.norm_eps, param_dtype=param_dtype)


class VisionBlock(nnx.Module):

  def __init__(self, cfg: VisionConfig, *, rngs: nnx.Rngs, param_dtype):
    self.norm1 = _norm(cfg, param_dtype)
    self.norm2 = _norm(cfg, param_dtype)
    self.attn = VisionAttention(cfg, rngs=rngs, param_dtype=param_dtype)
    if cfg.family.gated_mlp:
      self.mlp = layers.GatedMLP(cfg.hidden_size, cfg.intermediate_size, use_bias=True, rngs=rngs,
                                 param_dtype=param_dtype, act=cfg.hidden_act)
    else:
      self.mlp = layers.MLP(cfg.hidden_size, cfg.intermediate_size, act=cfg.hidden_act, rngs=rngs,
                            param_dtype=param_dtype)

  def __call__(self, x, cos, sin, segments):
    x = x + self.attn(self.norm1(x), cos, sin, segments)
    return x + self.mlp(self.norm2(x))


class PatchMerger(nnx.Module):
  """Norm, then concatenate each 2x2 block of patches and project with a GELU MLP."""

  def __init__(self, cfg: VisionConfig, *, rngs: nnx.Rngs, param_dtype):
    merged = cfg.hidden_size * cfg.merge_unit
    self.merge_unit = cfg.merge_unit
    self.ln_q = _norm(cfg, param_dtype)
    self.fc1 = layers.Linear(merged, merged, axes=(None, shd.MLP), use_bias=True, rngs=rngs,
                             param_dtype=param_dtype)
    self.fc2 = layers.Linear(merged, cfg.out_hidden_size, axes=(shd.MLP, shd.EMBED), use_bias=True,
                             rngs=rngs, param_dtype=param_dtype)

  def __call__(self, x):
    num_images, num_patches, width = x.shape
    x = self.ln_q(x).reshape(num_images, num_patches // self.merge_unit, width * self.merge_unit)
    return self.fc2(jax.nn.gelu(self.fc1(x), approximate=False))


class VisionTower(nnx.Module):

  def __init__(self, cfg: VisionConfig, *, rngs: nnx.Rngs, param_dtype=jnp.float32, scan_layers: bool = False):
    self.cfg = cfg
    self.scan_layers = scan_layers
    self.patch_embed = layers.Linear(cfg.patch_dim, cfg.hidden_size, axes=(None, shd.EMBED),
                                     use_bias=False, rngs=rngs, param_dtype=param_dtype)
    if scan_layers:
      self.blocks = layers.stacked(lambda r: VisionBlock(cfg, rngs=r, param_dtype=param_dtype), cfg.depth, rngs)
    else:
      self.blocks = nnx.List([VisionBlock(cfg, rngs=rngs, param_dtype=param_dtype)
                              for _ in range(cfg.depth)])
    self.merger = PatchMerger(cfg, rngs=rngs, param_dtype=param_dtype)

  def full_attention(self) -> tuple[bool, ...]:
    """Per block: attends over the whole frame (True) or within its window (False)."""
    windowed = self.cfg.family.window_attention
    return tuple(not windowed or index in self.cfg.fullatt_block_indexes for index in range(self.cfg.depth))

  def _block_fn(self, graphdef, remat: str):
    """(block state, x, cos, sin, segments) -> x, rematerialised per `remat` (as Decoder._layer_fn)."""

    def apply(state, x, cos, sin, segments):
      return nnx.merge(graphdef, state)(x, cos, sin, segments)

    if remat == 'none':
      return apply
    if remat not in REMAT_POLICIES:
      raise ValueError(f'remat {remat!r} is not supported; supported: {["none", *REMAT_POLICIES]}')
    # The CSE barrier is only needed for the unrolled stack (see Decoder._layer_fn).
    return jax.checkpoint(apply, policy=REMAT_POLICIES[remat], prevent_cse=not self.scan_layers)

  def __call__(self, patches, positions, window_segments, full_segments, remat: str = 'none'):
    """Encodes images.

    Args:
      patches: [I, P, C] flattened patches, window-permuted if the family has windows
        (see positions.vision_inputs).
      positions: [I, P, 2] (row, column) patch coordinates, same order.
      window_segments: [I, P] window id per patch (-1 for padding); unused without windows.
      full_segments: [I, P] frame id per patch (-1 for padding).
      remat: a config.REMAT name: how each block is rematerialised when differentiated.

    Returns:
      [I, M, D] merged tokens in the order of `patches`.
    """
    x = self.patch_embed(patches)  # [I, P, E]
    inv_freq = layers.inverse_frequencies(self.cfg.head_dim // 2, self.cfg.rope_theta)  # [H/4]
    angles = positions.astype(jnp.float32)[..., None] * layers.expand_to(inv_freq, 4)  # [I, P, 2, H/4]
    angles = angles.reshape(*angles.shape[:-2], -1)  # [I, P, H/2]: row angles, then column angles
    angles = jnp.concatenate([angles, angles], axis=-1)
    cos, sin = jnp.cos(angles), jnp.sin(angles)
    full = self.full_attention()
    if self.scan_layers:
      graphdef, stacked = nnx.split(self.blocks)
      block_fn = self._block_fn(graphdef, remat)
      segment_stack = jnp.stack([window_segments, full_segments])  # [2, I, P], indexed by the flag

      def body(x, xs):
        state, is_full = xs
        return block_fn(state, x, cos, sin, segment_stack[is_full]), None

      x, _ = jax.lax.scan(body, x, (stacked, jnp.asarray(full, jnp.int32)))
    else:
      for index, block in enumerate(self.blocks):
        graphdef, state = nnx.split(block)
        segments = full_segments if full[index] else window_segments
        x = self._block_fn(graphdef, remat)(state, x, cos, sin, segments)
    return self.merger(x)
