"""Model families (llama, qwen2, qwen3, qwen2_vl, qwen2_5_vl), presets and the public forward pass.

Presets (PRESETS / get_preset): the tiny CPU model (config.py) and published checkpoints, each built
from its own config.json (presets.py).

`forward(model, input_ids, attention_mask, pixel_values=None, image_grid_thw=None)` takes exactly
the numpy arrays the model's HF processor returns and gives logits [B, T, V].
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rl_reason.models import positions
from rl_reason.models import presets  # registers the published-checkpoint presets
from rl_reason.models.config import ModelConfig, TextConfig, VisionConfig, PRESETS, get_preset
from rl_reason.models.hf import config_from_hf, config_to_hf, from_pretrained, save_pretrained
from rl_reason.models.model import Model, create, create_abstract, is_vision_param, param_count


def prepare_inputs(cfg: ModelConfig, input_ids, attention_mask, pixel_values=None,
                   image_grid_thw=None) -> dict:
  """Host-side: token arrays + HF image arrays -> the int/float arrays the jitted model takes."""
  input_ids = np.asarray(input_ids)
  attention_mask = np.asarray(attention_mask)
  if input_ids.ndim != 2 or input_ids.shape != attention_mask.shape:
    raise ValueError(f'input_ids {input_ids.shape} and attention_mask {attention_mask.shape} must be '
                     'equal [batch, tokens] shapes')
  if (attention_mask.sum(axis=1) == 0).any():
    raise ValueError(f'rows {np.nonzero(attention_mask.sum(axis=1) == 0)[0].tolist()} are empty '
                     '(attention_mask all zero)')
  image_tokens = int(((input_ids == cfg.image_token_id) & (attention_mask > 0)).sum())
  if pixel_values is None:
    if cfg.vision is not None and image_tokens:
      raise ValueError(f'the prompts hold {image_tokens} image tokens but no pixel_values were given')
    return dict(input_ids=input_ids.astype(np.int32), attention_mask=attention_mask.astype(np.int32),
                positions=positions.text_positions(attention_mask))
  if cfg.vision is None:
    raise ValueError('pixel_values given to a text-only model')
  if image_grid_thw is None:
    raise ValueError('pixel_values given without image_grid_thw')
  grids = np.asarray(image_grid_thw).reshape(-1, 3)
  expected = int((grids.prod(axis=1) // cfg.vision.merge_unit).sum())
  if expected != image_tokens:
    raise ValueError(f'image_grid_thw {grids.tolist()} needs {expected} image tokens but the prompts '
                     f'hold {image_tokens} (token id {cfg.image_token_id})')
  pos, _, row_of_image = positions.rope_index(input_ids, attention_mask, grids,
                                              image_token_id=cfg.image_token_id,
                                              spatial_merge_size=cfg.vision.spatial_merge_size)
  vision = positions.vision_inputs(pixel_values, grids, cfg.vision, row_of_image, len(input_ids))
  return dict(input_ids=input_ids.astype(np.int32), attention_mask=attention_mask.astype(np.int32),
              positions=pos, vision=vision)


@functools.partial(jax.jit, static_argnums=0)
def _forward(graphdef, params, inputs):
  model = nnx.merge(graphdef, params)
  vision = inputs.get('vision')
  image_embeds = model.encode_images(vision) if vision is not None else None
  logits, _ = model(inputs['input_ids'], inputs['positions'], inputs['attention_mask'],
                    image_embeds=image_embeds)
  return logits


def forward(model: Model, input_ids, attention_mask, *, pixel_values=None, image_grid_thw=None) -> jax.Array:
  """Logits [B, T, V] (float32) for HF-processor arrays (left or right padded)."""
  inputs = prepare_inputs(model.cfg, input_ids, attention_mask, pixel_values, image_grid_thw)
  graphdef, params = nnx.split(model)
  return _forward(graphdef, params, inputs)


__all__ = ['Model', 'ModelConfig', 'TextConfig', 'VisionConfig', 'PRESETS', 'get_preset', 'create',
           'create_abstract', 'config_from_hf', 'config_to_hf', 'forward', 'from_pretrained', 'is_vision_param',
           'param_count', 'prepare_inputs', 'save_pretrained']
