"""Hugging Face tensor names <-> rl_reason parameter paths, with the transposes between them.

HF linear weights are [out, in]; ours are [in, out]. The vision patch embedding is a Conv3d
[E, C, t, p, p] in HF and a linear [C*t*p*p, E] here (same flattening order as the processor).
Both the on-disk names of Qwen2-VL/Qwen2.5-VL checkpoints (`model.layers.*`, `visual.*`) and the
names of transformers >= 4.52 modules (`model.language_model.*`, `model.visual.*`) are accepted.
The rules cover every family; a model looks up only the parameters it has.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Callable

import jax.numpy as jnp
import numpy as np
from flax import nnx

from rl_reason.models.config import ModelConfig

_LINEAR = 'linear'  # transpose [out, in] -> [in, out]
_COPY = 'copy'
_CONV = 'conv'  # Conv3d [E, C, t, p, p] -> [C*t*p*p, E]

# (our path pattern, HF canonical name pattern, kind); {i} is a layer/block index.
_TEXT_RULES = [
    ('decoder.embed_tokens', 'model.embed_tokens.weight', _COPY),
    ('decoder.norm.weight', 'model.norm.weight', _COPY),
    ('decoder.lm_head.kernel', 'lm_head.weight', _LINEAR),
    ('decoder.layers.{i}.input_layernorm.weight', 'model.layers.{i}.input_layernorm.weight', _COPY),
    ('decoder.layers.{i}.post_attention_layernorm.weight',
     'model.layers.{i}.post_attention_layernorm.weight', _COPY),
] + [
    (f'decoder.layers.{{i}}.{p}.{ours}', f'model.layers.{{i}}.{p}.{hf}', kind)
    for p in ('self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj',
              'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj')
    for ours, hf, kind in (('kernel', 'weight', _LINEAR), ('bias', 'bias', _COPY))
] + [
    (f'decoder.layers.{{i}}.self_attn.{p}.weight', f'model.layers.{{i}}.self_attn.{p}.weight', _COPY)
    for p in ('q_norm', 'k_norm')  # Qwen3
]

_VISION_RULES = [
    ('visual.patch_embed.kernel', 'visual.patch_embed.proj.weight', _CONV),
    ('visual.merger.ln_q.weight', 'visual.merger.ln_q.weight', _COPY),
    ('visual.merger.ln_q.bias', 'visual.merger.ln_q.bias', _COPY),  # Qwen2-VL LayerNorm
    ('visual.merger.fc1.kernel', 'visual.merger.mlp.0.weight', _LINEAR),
    ('visual.merger.fc1.bias', 'visual.merger.mlp.0.bias', _COPY),
    ('visual.merger.fc2.kernel', 'visual.merger.mlp.2.weight', _LINEAR),
    ('visual.merger.fc2.bias', 'visual.merger.mlp.2.bias', _COPY),
] + [
    (f'visual.blocks.{{i}}.{p}.{name}', f'visual.blocks.{{i}}.{p}.{name}', _COPY)
    for p in ('norm1', 'norm2') for name in ('weight', 'bias')  # bias: Qwen2-VL LayerNorm
] + [
    (f'visual.blocks.{{i}}.{p}.{ours}', f'visual.blocks.{{i}}.{p}.{hf}', kind)
    for p in ('attn.qkv', 'attn.proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj', 'mlp.fc1', 'mlp.fc2')
    for ours, hf, kind in (('kernel', 'weight', _LINEAR), ('bias', 'bias', _COPY))
]


def canonical_hf_name(name: str) -> str:
  """Maps the several HF naming schemes to one: `model.layers.*`, `visual.*`, `lm_head.*`."""
  for prefix, repl in (('model.language_model.', 'model.'), ('model.visual.', 'visual.'),
                       ('language_model.model.', 'model.'), ('language_model.lm_head.', 'lm_head.')):
    if name.startswith(prefix):
      return repl + name[len(prefix):]
  return name


def _compile(rules):
  out = []
  for ours, hf, kind in rules:
    ours_re = re.compile('^' + re.escape(ours).replace(r'\{i\}', r'(\d+)') + '$')
    out.append((ours_re, hf, kind))
  return out


_COMPILED = _compile(_TEXT_RULES + _VISION_RULES)


def hf_name_for(path: str) -> tuple[str, str]:
  """Our dotted parameter path -> (HF canonical name, conversion kind)."""
  for ours_re, hf, kind in _COMPILED:
    match = ours_re.match(path)
    if match:
      return (hf.replace('{i}', match.group(1)) if match.groups() else hf), kind
  raise KeyError(f'no Hugging Face name known for parameter {path}')


def to_ours(array: np.ndarray, kind: str, target_shape: tuple[int, ...]) -> np.ndarray:
  if kind == _LINEAR:
    array = array.T
  elif kind == _CONV:
    array = array.reshape(array.shape[0], -1).T
  return array


def to_hf(array: np.ndarray, kind: str, hf_shape: tuple[int, ...] | None = None) -> np.ndarray:
  if kind == _LINEAR:
    return array.T
  if kind == _CONV:
    return array.T.reshape(hf_shape)
  return array


def param_paths(model: nnx.Module) -> dict[str, nnx.Variable]:
  state = nnx.state(model, nnx.Param)
  return {'.'.join(str(k) for k in path): var for path, var in state.flat_state()}


def load_hf_tensors(model: nnx.Module, tensors: Mapping[str, np.ndarray], *, source: str = 'checkpoint',
                    place: Callable[[np.ndarray, str], Any] | None = None) -> None:
  """Copies HF tensors into `model` in place, one at a time, checking names and shapes first.

  Args:
    model: the model (real or from nnx.eval_shape) whose parameters are set.
    tensors: HF name -> array; may be lazy (read on access).
    source: named in error messages (the checkpoint path).
    place: (array in our layout, parameter path) -> the value to store (device placement, dtype);
      default: a jnp array of the parameter's dtype.

  Raises ValueError naming every missing tensor, unexpected tensor or shape mismatch.
  """
  canonical = {canonical_hf_name(k): k for k in tensors}
  expected = {}
  for path, var in param_paths(model).items():
    hf, kind = hf_name_for(path)
    expected[hf] = (path, kind, var)
  cfg: ModelConfig = model.cfg
  ignorable = set()
  if cfg.text.tie_word_embeddings:
    ignorable.add('lm_head.weight')  # tied checkpoints may still store it
  missing = sorted(set(expected) - set(canonical))
  unexpected = sorted(set(canonical) - set(expected) - ignorable)
  # Rotary inverse-frequency buffers are derived, never loaded.
  unexpected = [n for n in unexpected if not n.endswith('rotary_emb.inv_freq')]
  if missing or unexpected:
    raise ValueError(f'{source}: tensors do not match the model config: missing {missing[:10]}'
                     f'{" ..." if len(missing) > 10 else ""}; unexpected {unexpected[:10]}'
                     f'{" ..." if len(unexpected) > 10 else ""}')
  for hf, (path, kind, var) in expected.items():
    raw = np.asarray(tensors[canonical[hf]])
    array = to_ours(raw, kind, var.shape)
    if tuple(array.shape) != tuple(var.shape):
      raise ValueError(f'{source}: tensor {canonical[hf]} has shape {tuple(raw.shape)}, which maps to '
                       f'{tuple(array.shape)}, but parameter {path} has shape {tuple(var.shape)}')
    var.set_value(place(array, path) if place else jnp.asarray(array, dtype=var.get_value().dtype))
