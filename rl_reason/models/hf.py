"""Hugging Face checkpoint directories: config.json <-> ModelConfig, safetensors <-> parameters.

`from_pretrained` reads one tensor at a time (safetensors, single file or sharded with
model.safetensors.index.json) and places it straight into its target sharding, so host memory
stays near one tensor. Pickle checkpoints (pytorch_model.bin) are refused, never unpickled.
Supported model types: qwen2 and qwen2_5_vl (Llama, Qwen3 and Qwen2-VL are tracked separately).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors import safe_open
from safetensors.numpy import save_file

from rl_reason.models import convert
from rl_reason.models.config import ModelConfig, TextConfig, VisionConfig
from rl_reason.models.model import DTYPES, Model
from rl_reason.parallel import sharding as shd

SUPPORTED_MODEL_TYPES = ('qwen2', 'qwen2_5_vl')
_ARCHITECTURES = {'qwen2': 'Qwen2ForCausalLM', 'qwen2_5_vl': 'Qwen2_5_VLForConditionalGeneration'}


def _rope(section: Mapping[str, Any], where: str, expected: str = 'default') -> tuple[float, tuple[int, ...] | None]:
  params = section.get('rope_parameters') or section.get('rope_scaling') or {}
  rope_type = params.get('rope_type', params.get('type', expected))
  if rope_type == 'mrope':  # the name older Qwen2-VL configs use for default rotary + sections
    rope_type = 'default'
  if rope_type != expected:
    raise ValueError(f'{where}: rope type {rope_type!r} is not supported yet; supported: {expected}')
  theta = params.get('rope_theta', section.get('rope_theta', 10000.0))
  section_sizes = params.get('mrope_section')
  return float(theta), tuple(section_sizes) if section_sizes else None


def config_from_hf(hf: Mapping[str, Any], *, where: str = 'config.json') -> ModelConfig:
  """A transformers config dict (v4 or v5 layout) -> ModelConfig; unsupported settings raise."""
  model_type = hf.get('model_type')
  if model_type not in SUPPORTED_MODEL_TYPES:
    raise ValueError(f'{where}: model_type {model_type!r} is not supported; supported: {list(SUPPORTED_MODEL_TYPES)}')
  text = hf.get('text_config') or hf
  if text.get('use_sliding_window'):
    raise ValueError(f'{where}: use_sliding_window=true is not supported yet')
  for section, name in ((text, 'text'), (hf.get('vision_config') or {}, 'vision')):
    if section.get('hidden_act', 'silu') != 'silu':
      raise ValueError(f'{where}: {name} hidden_act {section["hidden_act"]!r} is not supported; supported: silu')
  theta, mrope_section = _rope(text, where)
  tie = bool(hf.get('tie_word_embeddings', text.get('tie_word_embeddings', False)))
  text_cfg = TextConfig(
      vocab_size=text['vocab_size'], hidden_size=text['hidden_size'], intermediate_size=text['intermediate_size'],
      num_hidden_layers=text['num_hidden_layers'], num_attention_heads=text['num_attention_heads'],
      num_key_value_heads=text.get('num_key_value_heads', text['num_attention_heads']),
      head_dim=text.get('head_dim'), rms_norm_eps=text.get('rms_norm_eps', 1e-6), rope_theta=theta,
      mrope_section=mrope_section if model_type == 'qwen2_5_vl' else None, attention_bias=True,
      tie_word_embeddings=tie)
  if model_type == 'qwen2':
    return ModelConfig(text=text_cfg)
  vision = hf['vision_config']
  vision_theta, _ = _rope(vision, where, expected='axial')
  vision_cfg = VisionConfig(
      depth=vision['depth'], hidden_size=vision['hidden_size'], intermediate_size=vision['intermediate_size'],
      num_heads=vision['num_heads'], in_channels=vision.get('in_channels', 3), patch_size=vision['patch_size'],
      spatial_merge_size=vision.get('spatial_merge_size', 2),
      temporal_patch_size=vision.get('temporal_patch_size', 2), window_size=vision.get('window_size', 112),
      fullatt_block_indexes=tuple(vision.get('fullatt_block_indexes', ())),
      out_hidden_size=vision.get('out_hidden_size', text_cfg.hidden_size), rope_theta=vision_theta)
  return ModelConfig(text=text_cfg, vision=vision_cfg, image_token_id=hf.get('image_token_id', 151655),
                     vision_start_token_id=hf.get('vision_start_token_id', 151652))


def config_to_hf(cfg: ModelConfig) -> dict[str, Any]:
  """ModelConfig -> a config.json that transformers (v5 layout) loads."""
  t = cfg.text
  text = dict(vocab_size=t.vocab_size, hidden_size=t.hidden_size, intermediate_size=t.intermediate_size,
              num_hidden_layers=t.num_hidden_layers, num_attention_heads=t.num_attention_heads,
              num_key_value_heads=t.num_key_value_heads, rms_norm_eps=t.rms_norm_eps, hidden_act='silu',
              rope_parameters=dict(rope_type='default', rope_theta=t.rope_theta), use_sliding_window=False,
              tie_word_embeddings=t.tie_word_embeddings)
  if t.head_dim is not None:
    text['head_dim'] = t.head_dim
  if cfg.vision is None:
    return dict(text, model_type='qwen2', architectures=[_ARCHITECTURES['qwen2']], dtype=cfg.param_dtype)
  v = cfg.vision
  text['rope_parameters']['mrope_section'] = list(t.mrope_section)
  vision = dict(depth=v.depth, hidden_size=v.hidden_size, intermediate_size=v.intermediate_size, num_heads=v.num_heads,
                in_channels=v.in_channels, patch_size=v.patch_size, spatial_merge_size=v.spatial_merge_size,
                temporal_patch_size=v.temporal_patch_size, window_size=v.window_size,
                fullatt_block_indexes=list(v.fullatt_block_indexes), out_hidden_size=v.out_hidden_size,
                hidden_act='silu', rope_parameters=dict(rope_type='axial', rope_theta=v.rope_theta))
  return dict(model_type='qwen2_5_vl', architectures=[_ARCHITECTURES['qwen2_5_vl']], dtype=cfg.param_dtype,
              text_config=text, vision_config=vision, image_token_id=cfg.image_token_id,
              vision_start_token_id=cfg.vision_start_token_id, tie_word_embeddings=t.tie_word_embeddings)


class SafetensorsDirectory(Mapping):
  """Lazy name -> numpy tensor view of a checkpoint directory's safetensors files."""

  def __init__(self, path: str):
    index = os.path.join(path, 'model.safetensors.index.json')
    single = os.path.join(path, 'model.safetensors')
    if os.path.exists(index):
      with open(index) as f:
        weight_map = json.load(f)['weight_map']
      self._files = {name: os.path.join(path, file) for name, file in weight_map.items()}
    elif os.path.exists(single):
      with safe_open(single, 'np') as f:
        self._files = {name: single for name in f.keys()}
    else:
      pickles = [f for f in os.listdir(path) if f.endswith(('.bin', '.pt', '.pth', '.ckpt'))]
      if pickles:
        raise ValueError(f'{path}: only pickle checkpoints ({", ".join(sorted(pickles))}) found; they are '
                         'never unpickled. Convert them to safetensors first (transformers: '
                         'model.save_pretrained(dir, safe_serialization=True)).')
      raise FileNotFoundError(f'{path}: no model.safetensors or model.safetensors.index.json')
    missing = sorted({f for f in self._files.values() if not os.path.exists(f)})
    if missing:
      raise FileNotFoundError(f'{path}: the index names missing files {missing}')

  def __getitem__(self, name: str) -> np.ndarray:
    with safe_open(self._files[name], 'np') as f:
      return f.get_tensor(name)

  def __iter__(self) -> Iterator[str]:
    return iter(self._files)

  def __len__(self) -> int:
    return len(self._files)


def from_pretrained(path: str, *, dtype: str = 'float32', mesh: jax.sharding.Mesh | None = None) -> Model:
  """Loads a Hugging Face checkpoint directory; each tensor goes straight to its sharding."""
  config_path = os.path.join(path, 'config.json')
  if not os.path.exists(config_path):
    raise FileNotFoundError(f'{path}: no config.json')
  with open(config_path) as f:
    cfg = config_from_hf(json.load(f), where=config_path).replace(dtype=dtype, param_dtype=dtype)
  tensors = SafetensorsDirectory(path)
  model = nnx.eval_shape(lambda: Model(cfg, rngs=nnx.Rngs(0)))  # shapes only: no random init
  mesh = mesh or shd.make_mesh(shd.MeshConfig(data=1), jax.devices()[:1])
  shardings = {'.'.join(str(k) for k in p): s.get_value() for p, s in
               shd.state_shardings(nnx.state(model, nnx.Param), mesh).flat_state()}
  convert.load_hf_tensors(model, tensors, source=path,
                          place=lambda array, param_path: jax.device_put(
                              np.asarray(array).astype(DTYPES[dtype]), shardings[param_path]))
  return model


def save_pretrained(model: Model, path: str, *, max_shard_bytes: int = 2 * 1024**3) -> None:
  """Writes config.json + safetensors (sharded with an index above max_shard_bytes) for transformers."""
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(path, 'config.json'), 'w') as f:
    json.dump(config_to_hf(model.cfg), f, indent=2)
  shards: list[dict[str, np.ndarray]] = [{}]
  size = 0
  for param_path, var in convert.param_paths(model).items():
    name, kind = convert.hf_name_for(param_path)
    value = np.asarray(jax.device_get(var.get_value()))
    if value.dtype == jnp.bfloat16:
      value = value.astype(np.float32)  # numpy safetensors cannot write bfloat16
    hf_shape = None
    if kind == 'conv':
      v = model.cfg.vision
      hf_shape = (value.shape[1], v.in_channels, v.temporal_patch_size, v.patch_size, v.patch_size)
    array = np.ascontiguousarray(convert.to_hf(value, kind, hf_shape))
    if size + array.nbytes > max_shard_bytes and shards[-1]:
      shards.append({})
      size = 0
    shards[-1][name] = array
    size += array.nbytes
  if len(shards) == 1:
    save_file(shards[0], os.path.join(path, 'model.safetensors'), metadata={'format': 'pt'})
    return
  weight_map = {}
  for i, shard in enumerate(shards):
    file = f'model-{i + 1:05d}-of-{len(shards):05d}.safetensors'
    save_file(shard, os.path.join(path, file), metadata={'format': 'pt'})
    weight_map.update({name: file for name in shard})
  with open(os.path.join(path, 'model.safetensors.index.json'), 'w') as f:
    json.dump({'metadata': {'total_size': sum(a.nbytes for s in shards for a in s.values())},
               'weight_map': weight_map}, f, indent=2)
