"""Hugging Face checkpoint directories: config.json <-> ModelConfig, safetensors <-> parameters.

`from_pretrained` reads one tensor at a time (safetensors, single file or sharded with
model.safetensors.index.json) and places it straight into its target sharding, so host memory
stays near one tensor. Pickle checkpoints (pytorch_model.bin) are refused, never unpickled.
Supported model types (FAMILIES): llama, qwen2, qwen3, qwen2_vl, qwen2_5_vl. Config keys are read
in transformers' v4 and v5 layouts (rope_scaling + rope_theta, or rope_parameters; flat or nested
text_config); a setting the models do not implement raises ValueError naming the key and file.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Mapping
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors import safe_open
from safetensors.numpy import save_file

from rl_reason.models import convert
from rl_reason.models.config import ROPE_SCALING_KEYS, ModelConfig, RopeScaling, TextConfig, VisionConfig
from rl_reason.models.model import DTYPES, Model, create_abstract
from rl_reason.parallel import multihost
from rl_reason.parallel import sharding as shd

_REQUIRED = object()


@dataclasses.dataclass(frozen=True)
class Family:
  """How one Hugging Face model_type maps onto ModelConfig."""

  architecture: str  # the transformers class an exported config.json names
  decoder: str  # TextConfig.model_type
  text_defaults: Mapping[str, Any]  # transformers' defaults for text keys a config.json may omit
  flag_keys: tuple[str, ...] = ()  # boolean text keys read into TextConfig fields of the same name
  sliding_window: bool = True  # reads use_sliding_window / sliding_window / max_window_layers / layer_types
  vision: str | None = None  # VisionConfig.model_type


_TEXT_DEFAULTS = dict(num_key_value_heads=None, head_dim=None, rms_norm_eps=1e-6, rope_theta=10000.0,
                      max_position_embeddings=32768, hidden_act='silu', max_window_layers=28, attention_dropout=0.0)
_VL_TEXT_DEFAULTS = dict(_TEXT_DEFAULTS, rms_norm_eps=1e-5, rope_theta=1000000.0, max_window_layers=80)

# Llama's pretraining_tp only split the matmuls of transformers v4 (same result) and is not read.
FAMILIES: dict[str, Family] = {
    'qwen2': Family('Qwen2ForCausalLM', 'qwen2', _TEXT_DEFAULTS),
    'llama': Family('LlamaForCausalLM', 'llama', dict(_TEXT_DEFAULTS, max_position_embeddings=2048,
                                                      attention_bias=False, mlp_bias=False),
                    flag_keys=('attention_bias', 'mlp_bias'), sliding_window=False),
    'qwen3': Family('Qwen3ForCausalLM', 'qwen3', dict(_TEXT_DEFAULTS, head_dim=128, attention_bias=False),
                    flag_keys=('attention_bias',)),
    'qwen2_vl': Family('Qwen2VLForConditionalGeneration', 'qwen2', _VL_TEXT_DEFAULTS, vision='qwen2_vl'),
    'qwen2_5_vl': Family('Qwen2_5_VLForConditionalGeneration', 'qwen2', _VL_TEXT_DEFAULTS, vision='qwen2_5_vl'),
}
SUPPORTED_MODEL_TYPES = tuple(FAMILIES)


def _get(section: Mapping[str, Any], key: str, defaults: Mapping[str, Any], where: str) -> Any:
  value = section.get(key, defaults.get(key, _REQUIRED))
  if value is _REQUIRED:
    raise ValueError(f'{where}: missing key {key!r}')
  return value


def _rope_parameters(section: Mapping[str, Any]) -> dict[str, Any]:
  # transformers: a rope_scaling dict (v4) takes precedence over rope_parameters (v5).
  return dict(section.get('rope_scaling') or section.get('rope_parameters') or {})


def _rope(section: Mapping[str, Any], family: Family, where: str
          ) -> tuple[float, RopeScaling | None, tuple[int, ...] | None]:
  """rope_theta, the scaling (None: default) and, for VLMs, mrope_section."""
  params = _rope_parameters(section)
  rope_type = params.get('rope_type', params.get('type', 'default'))
  if rope_type == 'mrope':  # the name older Qwen2-VL configs use for default rotary + sections
    rope_type = 'default'
  theta = float(params.get('rope_theta', _get(section, 'rope_theta', family.text_defaults, where)))
  partial = params.get('partial_rotary_factor', section.get('partial_rotary_factor', 1.0))
  if partial != 1.0:
    raise ValueError(f'{where}: partial_rotary_factor={partial} is not supported; supported: 1.0')
  if family.vision is not None:
    if rope_type != 'default':
      raise ValueError(f'{where}: rope type {rope_type!r} is not supported for {family.vision} (multimodal '
                       'rotary); supported: default')
    return theta, None, tuple(params.get('mrope_section', (16, 24, 24)))
  if rope_type == 'default':
    return theta, None, None
  if rope_type not in ROPE_SCALING_KEYS:
    raise ValueError(f'{where}: rope type {rope_type!r} is not supported; supported: '
                     f'{["default", *ROPE_SCALING_KEYS]}')
  values = {key: params.get(key) for key in ROPE_SCALING_KEYS[rope_type]}
  if 'original_max_position_embeddings' in values:
    # transformers: a top-level original_max_position_embeddings wins, then max_position_embeddings.
    values['original_max_position_embeddings'] = section.get(
        'original_max_position_embeddings', values['original_max_position_embeddings']) or _get(
            section, 'max_position_embeddings', family.text_defaults, where)
  missing = [key for key, value in values.items() if value is None]
  if missing:
    raise ValueError(f'{where}: rope type {rope_type!r} needs {missing} in rope_parameters / rope_scaling')
  return theta, RopeScaling(rope_type=rope_type, **values), None


def _layer_types(section: Mapping[str, Any], family: Family, num_layers: int, where: str
                 ) -> tuple[int | None, tuple[str, ...] | None]:
  """(sliding_window, layer_types) as transformers' Qwen2/Qwen3 configs resolve them; (None, None): all full."""
  if not family.sliding_window:
    return None, None
  window = section.get('sliding_window') if section.get('use_sliding_window', False) else None
  types = section.get('layer_types')
  if types is None:
    first = _get(section, 'max_window_layers', family.text_defaults, where)
    types = ['sliding_attention' if window is not None and i >= first else 'full_attention'
             for i in range(num_layers)]
  if 'sliding_attention' in types and window is None:
    raise ValueError(f'{where}: layer_types names sliding_attention layers but use_sliding_window is false '
                     'or sliding_window is null')
  if all(t == 'full_attention' for t in types):
    return None, None
  return window, tuple(types)


def _text_config(text: Mapping[str, Any], family: Family, tie: bool, where: str) -> TextConfig:
  defaults = family.text_defaults
  dropout = _get(text, 'attention_dropout', defaults, where)
  if dropout:
    raise ValueError(f'{where}: attention_dropout={dropout} is not supported (the models have no dropout)')
  theta, scaling, mrope_section = _rope(text, family, where)
  heads = _get(text, 'num_attention_heads', defaults, where)
  layers = _get(text, 'num_hidden_layers', defaults, where)
  sliding_window, layer_types = _layer_types(text, family, layers, where)
  flags = {key: bool(_get(text, key, defaults, where)) for key in family.flag_keys}
  if 'attention_bias' not in flags:
    flags['attention_bias'] = True  # Qwen2 decoders: q, k, v bias, fixed in code
  return TextConfig(
      model_type=family.decoder, vocab_size=_get(text, 'vocab_size', defaults, where),
      hidden_size=_get(text, 'hidden_size', defaults, where),
      intermediate_size=_get(text, 'intermediate_size', defaults, where), num_hidden_layers=layers,
      num_attention_heads=heads, num_key_value_heads=_get(text, 'num_key_value_heads', defaults, where) or heads,
      head_dim=_get(text, 'head_dim', defaults, where), rms_norm_eps=_get(text, 'rms_norm_eps', defaults, where),
      rope_theta=theta, rope_scaling=scaling,
      max_position_embeddings=_get(text, 'max_position_embeddings', defaults, where), mrope_section=mrope_section,
      hidden_act=_get(text, 'hidden_act', defaults, where), sliding_window=sliding_window, layer_types=layer_types,
      tie_word_embeddings=tie, **flags)


def _vision_theta(vision: Mapping[str, Any], where: str) -> float:
  params = _rope_parameters(vision)
  rope_type = params.get('rope_type', params.get('type', 'axial'))
  if rope_type not in ('axial', 'default'):
    raise ValueError(f'{where}: vision rope type {rope_type!r} is not supported; supported: axial')
  return float(params.get('rope_theta', vision.get('rope_theta', 10000.0)))


def _vision_qwen2_5_vl(vision: Mapping[str, Any], text: TextConfig, where: str) -> VisionConfig:
  defaults = dict(in_channels=3, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                  fullatt_block_indexes=(7, 15, 23, 31), out_hidden_size=text.hidden_size, hidden_act='silu')
  get = lambda key: _get(vision, key, defaults, where)
  return VisionConfig(
      model_type='qwen2_5_vl', depth=get('depth'), hidden_size=get('hidden_size'),
      intermediate_size=get('intermediate_size'), num_heads=get('num_heads'), in_channels=get('in_channels'),
      patch_size=get('patch_size'), spatial_merge_size=get('spatial_merge_size'),
      temporal_patch_size=get('temporal_patch_size'), window_size=get('window_size'),
      fullatt_block_indexes=tuple(get('fullatt_block_indexes')), out_hidden_size=get('out_hidden_size'),
      hidden_act=get('hidden_act'), rope_theta=_vision_theta(vision, where))


def _vision_qwen2_vl(vision: Mapping[str, Any], text: TextConfig, where: str) -> VisionConfig:
  del text
  """Qwen2-VL names the tower width embed_dim, its output width hidden_size, the MLP embed_dim * mlp_ratio."""
  defaults = dict(in_channels=vision.get('in_chans', 3), spatial_merge_size=2, temporal_patch_size=2,
                  hidden_act='quick_gelu', mlp_ratio=4)
  get = lambda key: _get(vision, key, defaults, where)
  for key, same_as in (('in_chans', 'in_channels'), ('spatial_patch_size', 'patch_size')):
    if key in vision and vision[key] != get(same_as):
      raise ValueError(f'{where}: vision {key}={vision[key]} differs from {same_as}={get(same_as)}; not supported')
  embed_dim = get('embed_dim')
  return VisionConfig(
      model_type='qwen2_vl', depth=get('depth'), hidden_size=embed_dim,
      intermediate_size=int(embed_dim * get('mlp_ratio')), num_heads=get('num_heads'),
      in_channels=get('in_channels'), patch_size=get('patch_size'), spatial_merge_size=get('spatial_merge_size'),
      temporal_patch_size=get('temporal_patch_size'), window_size=None, fullatt_block_indexes=(),
      out_hidden_size=get('hidden_size'), hidden_act=get('hidden_act'), rope_theta=_vision_theta(vision, where))


_VISION_READERS: dict[str, Callable[[Mapping[str, Any], TextConfig, str], VisionConfig]] = {
    'qwen2_5_vl': _vision_qwen2_5_vl, 'qwen2_vl': _vision_qwen2_vl}


def config_from_hf(hf: Mapping[str, Any], *, where: str = 'config.json') -> ModelConfig:
  """A transformers config dict (v4 or v5 layout) -> ModelConfig; unsupported settings raise."""
  model_type = hf.get('model_type')
  if model_type not in FAMILIES:
    raise ValueError(f'{where}: model_type {model_type!r} is not supported; supported: {list(FAMILIES)}')
  family = FAMILIES[model_type]
  text = hf.get('text_config') or hf
  # v5 keeps tie_word_embeddings at the top; pre-v5 VLM saves kept it in text_config.
  tie = bool(hf.get('tie_word_embeddings', False) or text.get('tie_word_embeddings', False))
  try:
    text_cfg = _text_config(text, family, tie, where)
    if family.vision is None:
      return ModelConfig(text=text_cfg)
    vision_cfg = _VISION_READERS[family.vision](_get(hf, 'vision_config', {}, where), text_cfg, where)
    return ModelConfig(text=text_cfg, vision=vision_cfg, image_token_id=hf.get('image_token_id', 151655),
                       vision_start_token_id=hf.get('vision_start_token_id', 151652))
  except ValueError as e:
    if str(e).startswith(where):
      raise
    raise ValueError(f'{where}: {e}') from e


def _rope_to_hf(t: TextConfig) -> dict[str, Any]:
  rope = dict(rope_type='default', rope_theta=t.rope_theta)
  if t.rope_scaling is not None:
    rope.update({k: v for k, v in dataclasses.asdict(t.rope_scaling).items() if v is not None})
  if t.mrope_section is not None:
    rope['mrope_section'] = list(t.mrope_section)
  return rope


def _text_to_hf(t: TextConfig, family: Family) -> dict[str, Any]:
  text = dict(vocab_size=t.vocab_size, hidden_size=t.hidden_size, intermediate_size=t.intermediate_size,
              num_hidden_layers=t.num_hidden_layers, num_attention_heads=t.num_attention_heads,
              num_key_value_heads=t.num_key_value_heads, rms_norm_eps=t.rms_norm_eps, hidden_act=t.hidden_act,
              rope_parameters=_rope_to_hf(t), max_position_embeddings=t.max_position_embeddings,
              tie_word_embeddings=t.tie_word_embeddings, **{k: getattr(t, k) for k in family.flag_keys})
  if t.head_dim is not None:
    text['head_dim'] = t.head_dim
  if family.sliding_window:
    types = list(t.layer_types or ['full_attention'] * t.num_hidden_layers)
    text.update(use_sliding_window=t.sliding_window is not None, sliding_window=t.sliding_window, layer_types=types)
  return text


def _vision_qwen2_5_vl_to_hf(v: VisionConfig) -> dict[str, Any]:
  return dict(depth=v.depth, hidden_size=v.hidden_size, intermediate_size=v.intermediate_size, num_heads=v.num_heads,
              in_channels=v.in_channels, patch_size=v.patch_size, spatial_merge_size=v.spatial_merge_size,
              temporal_patch_size=v.temporal_patch_size, window_size=v.window_size,
              fullatt_block_indexes=list(v.fullatt_block_indexes), out_hidden_size=v.out_hidden_size,
              hidden_act=v.hidden_act, rope_parameters=dict(rope_type='axial', rope_theta=v.rope_theta))


def _vision_qwen2_vl_to_hf(v: VisionConfig) -> dict[str, Any]:
  if v.intermediate_size % v.hidden_size:
    raise ValueError(f'qwen2_vl config.json stores an integer mlp_ratio; intermediate_size {v.intermediate_size} '
                     f'is not a multiple of hidden_size {v.hidden_size}')
  return dict(depth=v.depth, embed_dim=v.hidden_size, hidden_size=v.out_hidden_size,
              mlp_ratio=v.intermediate_size // v.hidden_size, num_heads=v.num_heads, in_channels=v.in_channels,
              patch_size=v.patch_size, spatial_merge_size=v.spatial_merge_size,
              temporal_patch_size=v.temporal_patch_size, hidden_act=v.hidden_act,
              rope_parameters=dict(rope_type='axial', rope_theta=v.rope_theta))


_VISION_WRITERS: dict[str, Callable[[VisionConfig], dict[str, Any]]] = {
    'qwen2_5_vl': _vision_qwen2_5_vl_to_hf, 'qwen2_vl': _vision_qwen2_vl_to_hf}


def config_to_hf(cfg: ModelConfig) -> dict[str, Any]:
  """ModelConfig -> a config.json that transformers (v5 layout) loads."""
  family = FAMILIES[cfg.model_type]
  text = _text_to_hf(cfg.text, family)
  header = dict(model_type=cfg.model_type, architectures=[family.architecture], dtype=cfg.param_dtype)
  if cfg.vision is None:
    return dict(text, **header)
  return dict(header, text_config=text, vision_config=_VISION_WRITERS[cfg.vision.model_type](cfg.vision),
              image_token_id=cfg.image_token_id, vision_start_token_id=cfg.vision_start_token_id,
              tie_word_embeddings=cfg.text.tie_word_embeddings)


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


@functools.lru_cache(maxsize=None)
def _layer_writer(sharding: jax.sharding.NamedSharding):
  """Jitted (stack [L, ...], layer [...], index) -> stack with stack[index] = layer, stack donated."""
  return jax.jit(lambda stack, layer, index: jax.lax.dynamic_update_index_in_dim(stack, layer, index, 0),
                 donate_argnums=0, out_shardings=sharding)


def _place_stacked(read_layer: Callable[[int], np.ndarray], num_layers: int, sharding: jax.sharding.NamedSharding,
                   dtype) -> jax.Array:
  """Builds a [L, ...] parameter on device one layer at a time: host memory holds one layer's tensor."""
  first = read_layer(0)
  layer_sharding = jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec(*sharding.spec[1:]))
  stack = jnp.zeros((num_layers, *first.shape), dtype, device=sharding)
  write = _layer_writer(sharding)
  for index in range(num_layers):
    layer = first if index == 0 else read_layer(index)
    stack = write(stack, jax.device_put(np.asarray(layer).astype(dtype), layer_sharding), index)
  return stack


def from_pretrained(path: str, *, dtype: str = 'float32', mesh: jax.sharding.Mesh | None = None,
                    scan_layers: bool = False, remat: str = 'none', compute_dtype: str | None = None) -> Model:
  """Loads a Hugging Face checkpoint directory; each tensor goes straight to its sharding.

  dtype: the parameters' dtype; compute_dtype: the activations' (default: the parameters').

  scan_layers / remat: ModelConfig fields (not part of config.json). With scan_layers the decoder
  layers' parameters are stacked [L, ...] (and the vision blocks' [depth, ...]) on device one layer
  at a time.
  """
  config_path = os.path.join(path, 'config.json')
  if not os.path.exists(config_path):
    raise FileNotFoundError(f'{path}: no config.json')
  with open(config_path) as f:
    cfg = config_from_hf(json.load(f), where=config_path).replace(dtype=dtype, param_dtype=dtype,
                                                                   scan_layers=scan_layers, remat=remat)
  tensors = SafetensorsDirectory(path)
  model = create_abstract(cfg)  # shapes only: no random init
  mesh = mesh or shd.make_mesh(shd.MeshConfig(data=1), jax.devices()[:1])
  shardings = {'.'.join(str(k) for k in p): s.get_value() for p, s in
               nnx.to_flat_state(shd.state_shardings(nnx.state(model, nnx.Param), mesh))}
  convert.load_hf_tensors(
      model, tensors, source=path,
      place=lambda array, param_path: jax.device_put(np.asarray(array).astype(DTYPES[dtype]), shardings[param_path]),
      place_stacked=lambda read_layer, num_layers, param_path: _place_stacked(
          read_layer, num_layers, shardings[param_path], DTYPES[dtype]))
  model.cfg = model.cfg.replace(dtype=compute_dtype or dtype)  # set after loading: parameters are made in theirs
  return model


def save_pretrained(model: Model, path: str, *, max_shard_bytes: int = 2 * 1024**3) -> None:
  """Writes config.json + safetensors (sharded with an index above max_shard_bytes) for transformers.

  In a multi-process run every process calls it (parameters split over processes are gathered one
  tensor at a time) and process 0 writes the files.
  """
  shards: list[dict[str, np.ndarray]] = [{}]
  size = 0
  for name, (_, kind, var, index) in convert.hf_targets(model).items():
    value = multihost.to_host(var.get_value() if index is None else var.get_value()[index])
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
  if jax.process_index() != 0:
    return
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(path, 'config.json'), 'w') as f:
    json.dump(config_to_hf(model.cfg), f, indent=2)
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
