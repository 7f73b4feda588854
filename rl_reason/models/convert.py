"""Hugging Face tensor names <-> rl_reason parameter paths, with the transposes between them.

HF linear weights are [out, in]; ours are [in, out]. The vision patch embedding is a Conv3d
[E, C, t, p, p] in HF and a linear [C*t*p*p, E] here (same flattening order as the processor).
Both the on-disk names of Qwen2-VL/Qwen2.5-VL checkpoints (`model.layers.*`, `visual.*`) and the
names of transformers >= 4.52 modules (`model.language_model.*`, `model.visual.*`) are accepted.
The rules cover every family; a model looks up only the parameters it has. A scanned model
(scan_layers) has one parameter `decoder.layers.X` of shape [L, ...] for the L tensors
`model.layers.{i}.X`, and one `visual.blocks.X` of shape [depth, ...] for the tensors
`visual.blocks.{i}.X`; each is assembled one layer / block at a time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Callable

import jax
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


# scan_layers: decoder.layers.X is [L, ...] for model.layers.{i}.X, visual.blocks.X is [depth, ...]
# for visual.blocks.{i}.X.
_STACKED_PREFIXES = ('decoder.layers.', 'visual.blocks.')


def _compile(rules):
  out = []
  for ours, hf, kind in rules:
    ours_re = re.compile('^' + re.escape(ours).replace(r'\{i\}', r'(\d+)') + '$')
    out.append((ours_re, hf, kind, False))
    if any(ours.startswith(prefix + '{i}.') for prefix in _STACKED_PREFIXES):
      out.append((re.compile('^' + re.escape(ours.replace('{i}.', '', 1)) + '$'), hf, kind, True))
  return out


_COMPILED = _compile(_TEXT_RULES + _VISION_RULES)


def hf_names_for(path: str, num_layers: int | None = None) -> tuple[list[str], str]:
  """Our dotted parameter path -> (HF canonical names, conversion kind).

  One name for a plain parameter; for a parameter stacked over layers (scan_layers) one name per
  layer 0 .. num_layers - 1.
  """
  for ours_re, hf, kind, stacked in _COMPILED:
    match = ours_re.match(path)
    if not match:
      continue
    if stacked:
      if num_layers is None:
        raise ValueError(f'parameter {path} is stacked over layers: num_layers is required')
      return [hf.replace('{i}', str(i)) for i in range(num_layers)], kind
    return [hf.replace('{i}', match.group(1)) if match.groups() else hf], kind
  raise KeyError(f'no Hugging Face name known for parameter {path}')


def is_stacked(path: str) -> bool:
  """Whether a parameter path is stacked over decoder layers or vision blocks (scan_layers)."""
  return any(stacked and ours_re.match(path) for ours_re, _, _, stacked in _COMPILED)


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
  return {'.'.join(str(k) for k in path): var for path, var in nnx.to_flat_state(state)}


def hf_targets(model: nnx.Module) -> dict[str, tuple[str, str, nnx.Variable, int | None]]:
  """HF canonical name -> (our parameter path, conversion kind, variable, layer index or None).

  The layer index is set for parameters stacked over layers (scan_layers): the tensor is slice
  [index] of the variable.
  """
  targets = {}
  for path, var in param_paths(model).items():
    stacked = is_stacked(path)
    names, kind = hf_names_for(path, var.shape[0] if stacked else None)
    for index, name in enumerate(names):
      targets[name] = (path, kind, var, index if stacked else None)
  return targets


def _default_place(array: np.ndarray, path: str, var: nnx.Variable) -> jax.Array:
  del path
  return jnp.asarray(array, dtype=var.get_value().dtype)


def _default_place_stacked(read_layer: Callable[[int], np.ndarray], num_layers: int, path: str,
                           var: nnx.Variable) -> jax.Array:
  del path
  return jnp.asarray(np.stack([read_layer(i) for i in range(num_layers)]), dtype=var.get_value().dtype)


def load_hf_tensors(model: nnx.Module, tensors: Mapping[str, np.ndarray], *, source: str = 'checkpoint',
                    place: Callable[[np.ndarray, str], Any] | None = None,
                    place_stacked: Callable[[Callable[[int], np.ndarray], int, str], Any] | None = None) -> None:
  """Copies HF tensors into `model` in place, one at a time, checking names and shapes first.

  Args:
    model: the model (real or from nnx.eval_shape) whose parameters are set.
    tensors: HF name -> array; may be lazy (read on access).
    source: named in error messages (the checkpoint path).
    place: (array in our layout, parameter path) -> the value to store (device placement, dtype);
      default: a jnp array of the parameter's dtype.
    place_stacked: for parameters stacked over layers (scan_layers): (read_layer, num_layers,
      parameter path) -> the [L, ...] value, where read_layer(i) gives layer i in our layout (read
      from `tensors` on each call, shape-checked); default: numpy stack, then as `place`.

  Raises ValueError naming every missing tensor, unexpected tensor or shape mismatch.
  """
  canonical = {canonical_hf_name(k): k for k in tensors}
  expected = hf_targets(model)
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
  by_path: dict[str, list[str]] = {}
  for hf, (path, _, _, _) in expected.items():
    by_path.setdefault(path, []).append(hf)

  def read(hf: str) -> np.ndarray:
    path, kind, var, index = expected[hf]
    raw = np.asarray(tensors[canonical[hf]])
    array = to_ours(raw, kind, var.shape)
    target = tuple(var.shape[1:] if index is not None else var.shape)
    if tuple(array.shape) != target:
      raise ValueError(f'{source}: tensor {canonical[hf]} has shape {tuple(raw.shape)}, which maps to '
                       f'{tuple(array.shape)}, but parameter {path}{"" if index is None else f"[{index}]"} '
                       f'has shape {target}')
    return array

  for path, names in by_path.items():
    _, _, var, index = expected[names[0]]
    if index is None:
      array = read(names[0])
      var.set_value(place(array, path) if place else _default_place(array, path, var))
      continue
    layer_names = sorted(names, key=lambda n: expected[n][3])
    read_layer = lambda i, layer_names=layer_names: read(layer_names[i])
    var.set_value(place_stacked(read_layer, len(layer_names), path) if place_stacked
                  else _default_place_stacked(read_layer, len(layer_names), path, var))
