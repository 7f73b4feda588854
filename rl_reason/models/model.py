"""The model: a decoder (Qwen2, Llama, Qwen3) and, for Qwen2-VL/Qwen2.5-VL, a vision tower whose
image tokens are merged into the text stream.

Shapes: B batch, T tokens, S cache slots, D model dim, V vocab, I images, P patches per image,
C patch dim, X image tokens per row.

A text-only config (vision None) is the plain decoder. All methods are pure functions of
the module's parameters; callers split the module once and jit functions that merge it inside.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from rl_reason.models.config import ModelConfig
from rl_reason.models.decoder import Cache, Decoder
from rl_reason.models.vision import VisionTower

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


class Model(nnx.Module):

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    param_dtype = DTYPES[cfg.param_dtype]
    self.decoder = Decoder(cfg.text, rngs=rngs, param_dtype=param_dtype, scan_layers=cfg.scan_layers)
    self.visual = (VisionTower(cfg.vision, rngs=rngs, param_dtype=param_dtype, scan_layers=cfg.scan_layers)
                   if cfg.vision is not None else None)

  @property
  def compute_dtype(self):
    return DTYPES[self.cfg.dtype]

  def encode_images(self, vision: dict[str, jax.Array]) -> jax.Array:
    """vision: the per-row arrays of positions.vision_inputs -> [B, X, D] image-token embeddings.

    The blocks are stacked under scan if the model was built with cfg.scan_layers, and
    rematerialised as cfg.remat says (read per call), as the decoder layers are.
    """
    if self.visual is None:
      raise ValueError('this model has no vision tower but image inputs were given')
    merged = self.visual(vision['patches'].astype(self.compute_dtype), vision['positions'],
                         vision['window_segments'], vision['full_segments'], remat=self.cfg.remat)  # [B, P/4, D]
    return jnp.take_along_axis(merged, vision['token_gather'][..., None], axis=1)

  def embed(self, input_ids: jax.Array, image_embeds: jax.Array | None = None) -> jax.Array:
    """[B, T] ids -> [B, T, D]; the k-th image token of row b takes image_embeds[b, k]."""
    embeds = self.decoder.embed(input_ids, self.compute_dtype)
    if image_embeds is None:
      return embeds
    is_image = input_ids == self.cfg.image_token_id
    index = jnp.clip(jnp.cumsum(is_image, axis=1) - 1, 0, image_embeds.shape[1] - 1)  # [B, T]
    gathered = jnp.take_along_axis(image_embeds.astype(embeds.dtype), index[..., None], axis=1)
    return jnp.where(is_image[..., None], gathered, embeds)

  def __call__(self, input_ids, positions, attention_mask, *, image_embeds=None,
               cache: Cache | None = None, write_index=None, logits_slice: slice | None = None, rotary=None):
    """Logits [B, T', V] (float32) for the tokens (T' = T unless logits_slice), and the cache.

    The decoder layers are rematerialised as cfg.remat says (read per call, like cfg.dtype);
    cfg.scan_layers is the parameter layout, fixed when the model is built.
    """
    hidden, cache = self.hidden_states(input_ids, positions, attention_mask, image_embeds=image_embeds,
                                       cache=cache, write_index=write_index, hidden_slice=logits_slice,
                                       rotary=rotary)
    return self.logits(hidden), cache

  def hidden_states(self, input_ids, positions, attention_mask, *, image_embeds=None,
                    cache: Cache | None = None, write_index=None, hidden_slice: slice | None = None, rotary=None,
                    embeds=None, kv_limit: int | None = None):
    """Final (normed) hidden states [B, T', D] in the compute dtype, and the cache: `__call__` before the
    LM head, for callers that apply the head themselves (e.g. chunk by chunk: `logits(hidden[:, chunk])`).
    `rotary`: optional precomputed (cos, sin) [B, T, H] (Decoder.rotary; positions then unused).
    `embeds`: optional [B, T, D] `embed` output in place of input_ids / image_embeds (a chunk of a
    prompt whose image tokens were placed over the whole of it). `kv_limit`: Decoder's."""
    if self.cfg.scan_layers != self.decoder.scan_layers:
      raise ValueError(f'cfg.scan_layers={self.cfg.scan_layers} but the model was built with scan_layers='
                       f'{self.decoder.scan_layers} (the parameter layout); rebuild or reload the model')
    if embeds is None:
      embeds = self.embed(input_ids, image_embeds)
    return self.decoder(embeds, positions, attention_mask, cache, write_index, remat=self.cfg.remat,
                        hidden_slice=hidden_slice, rotary=rotary, kv_limit=kv_limit)

  def logits(self, hidden: jax.Array) -> jax.Array:
    """[B, T, D] final hidden states -> [B, T, V] float32 logits (the LM head)."""
    return self.decoder.logits(hidden)


def create(cfg: ModelConfig, seed: int = 0) -> Model:
  return Model(cfg, rngs=nnx.Rngs(params=seed))


def create_abstract(cfg: ModelConfig) -> Model:
  """The model with jax.ShapeDtypeStruct parameters: shapes, dtypes and metadata, nothing allocated."""
  return nnx.eval_shape(lambda: Model(cfg, rngs=nnx.Rngs(params=0)))


def is_vision_param(path: tuple) -> bool:
  """Whether a parameter's tree path (as jax.tree_util gives it) lies in the vision tower."""
  return bool(path) and getattr(path[0], 'key', None) == 'visual'


def param_count(model: Model) -> int:
  """Number of parameters (a tied LM head counts once); works on create_abstract models too."""
  return sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
