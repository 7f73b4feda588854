"""Model configurations: Qwen2/Llama/Qwen3 decoders and Qwen2-VL/Qwen2.5-VL towers as frozen dataclasses.

Field names follow the Hugging Face config.json keys. What a family fixes in code rather than in
config.json (which projections `attention_bias` covers, Qwen3's q/k norm, the Qwen2-VL tower's
LayerNorm and plain MLP) is looked up by `model_type` in DECODER_FAMILIES / VISION_FAMILIES.
The tiny preset is the real Qwen2.5-VL architecture (vision tower with window attention and a
2x2 patch merger, Qwen2 decoder with GQA, qkv bias and multimodal rotary positions) at sizes
that train on a laptop CPU. The presets of published checkpoints (Qwen2.5, Qwen2.5-VL, Llama 3.1,
Qwen3) are their config.json files, registered by presets.py.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

ACTIVATIONS = ('silu', 'gelu', 'gelu_pytorch_tanh', 'quick_gelu')  # HF hidden_act names (layers.ACTIVATIONS)
LAYER_TYPES = ('full_attention', 'sliding_attention')  # HF layer_types entries
# Rematerialisation of the decoder layers in the backward pass (decoder.REMAT_POLICIES maps the names
# other than 'none' to jax.checkpoint policies): none (keep every activation) | full (keep only each
# layer's input) | minimal (also keep matmuls against weights) | dots_saveable (also attention matmuls).
REMAT = ('none', 'full', 'minimal', 'dots_saveable')


@dataclasses.dataclass(frozen=True)
class DecoderFamily:
  """What a decoder family fixes in code (transformers' modeling_*.py) rather than in config.json."""

  o_proj_bias: bool  # attention_bias also puts a bias on o_proj (else on q, k, v only)
  qk_norm: bool  # RMSNorm over head_dim on q and k, before the rotary (Qwen3)
  fixed: tuple[tuple[str, Any], ...] = ()  # TextConfig fields the family does not let config.json change


DECODER_FAMILIES: dict[str, DecoderFamily] = {
    'qwen2': DecoderFamily(o_proj_bias=False, qk_norm=False, fixed=(('attention_bias', True), ('mlp_bias', False))),
    'llama': DecoderFamily(o_proj_bias=True, qk_norm=False),
    'qwen3': DecoderFamily(o_proj_bias=True, qk_norm=True, fixed=(('mlp_bias', False),)),
}


@dataclasses.dataclass(frozen=True)
class VisionFamily:
  """What a vision-tower family fixes in code rather than in config.json."""

  norm: str  # block and merger norms: 'rms' (RMSNorm) | 'layer' (LayerNorm with bias)
  gated_mlp: bool  # SwiGLU gate/up/down (else fc1 -> act -> fc2)
  window_attention: bool  # window attention except in fullatt_block_indexes (else all blocks full)


VISION_FAMILIES: dict[str, VisionFamily] = {
    'qwen2_5_vl': VisionFamily(norm='rms', gated_mlp=True, window_attention=True),
    'qwen2_vl': VisionFamily(norm='layer', gated_mlp=False, window_attention=False),
}

# Required parameters of each rotary scaling type, as transformers' modeling_rope_utils reads them.
ROPE_SCALING_KEYS: dict[str, tuple[str, ...]] = {
    'linear': ('factor',),
    'dynamic': ('factor',),
    'llama3': ('factor', 'low_freq_factor', 'high_freq_factor', 'original_max_position_embeddings'),
}


def _check_family(kind: str, model_type: str, families: dict[str, Any]) -> Any:
  if model_type not in families:
    raise ValueError(f'unknown {kind} model_type {model_type!r}; valid: {sorted(families)}')
  return families[model_type]


@dataclasses.dataclass(frozen=True)
class VisionConfig:
  """A Qwen2.5-VL or Qwen2-VL vision tower (HF `vision_config`).

  For qwen2_vl, transformers names the width `embed_dim`, the output width `hidden_size` and the
  MLP width `embed_dim * mlp_ratio`; hf.py maps those onto hidden_size, out_hidden_size and
  intermediate_size here.
  """

  model_type: str = 'qwen2_5_vl'  # tower family: qwen2_5_vl | qwen2_vl (VISION_FAMILIES)
  depth: int = 32
  hidden_size: int = 1280
  intermediate_size: int = 3420
  num_heads: int = 16
  in_channels: int = 3
  patch_size: int = 14
  spatial_merge_size: int = 2
  temporal_patch_size: int = 2
  window_size: int | None = 112  # pixels; window attention spans window_size // merge // patch merged units
  fullatt_block_indexes: tuple[int, ...] = (7, 15, 23, 31)
  out_hidden_size: int = 3584  # = text hidden_size
  hidden_act: str = 'silu'  # qwen2_5_vl: the SwiGLU gate activation; qwen2_vl: quick_gelu
  rope_theta: float = 10000.0
  norm_eps: float = 1e-6  # RMSNorm (qwen2_5_vl) or LayerNorm (qwen2_vl) epsilon; transformers fixes 1e-6

  def __post_init__(self):
    family = _check_family('vision', self.model_type, VISION_FAMILIES)
    if self.hidden_size % self.num_heads:
      raise ValueError(f'vision hidden_size {self.hidden_size} not divisible by num_heads {self.num_heads}')
    if (self.hidden_size // self.num_heads) % 4:
      raise ValueError('vision head_dim must be divisible by 4 (2-D rotary over h and w)')
    if self.hidden_act not in ACTIVATIONS:
      raise ValueError(f'vision hidden_act {self.hidden_act!r} is not supported; supported: {list(ACTIVATIONS)}')
    if not family.window_attention:
      if self.window_size is not None or self.fullatt_block_indexes:
        raise ValueError(f'{self.model_type} has no window attention: window_size must be None and '
                         f'fullatt_block_indexes empty, got {self.window_size}, {self.fullatt_block_indexes}')
      return
    bad = [i for i in self.fullatt_block_indexes if not 0 <= i < self.depth]
    if bad:
      raise ValueError(f'fullatt_block_indexes {bad} outside [0, depth={self.depth})')
    if self.window_size is None or self.window_size % (self.spatial_merge_size * self.patch_size):
      raise ValueError(f'window_size {self.window_size} must be a multiple of merge*patch '
                       f'= {self.spatial_merge_size * self.patch_size}')

  @property
  def family(self) -> VisionFamily:
    return VISION_FAMILIES[self.model_type]

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_heads

  @property
  def patch_dim(self) -> int:
    return self.in_channels * self.temporal_patch_size * self.patch_size**2

  @property
  def merge_unit(self) -> int:
    return self.spatial_merge_size**2

  @property
  def window_units(self) -> int:
    """Side of an attention window in merged units."""
    return self.window_size // self.spatial_merge_size // self.patch_size


@dataclasses.dataclass(frozen=True)
class RopeScaling:
  """Rotary frequency scaling (HF rope_parameters / rope_scaling) other than the default.

  linear: inv_freq / factor. dynamic (NTK): the base grows with the longest position of each
  forward call once it passes max_position_embeddings. llama3: low frequencies / factor, a smooth
  ramp between low_freq_factor and high_freq_factor wavelengths. None of them scales cos/sin.
  """

  rope_type: str  # linear | dynamic | llama3
  factor: float
  low_freq_factor: float | None = None
  high_freq_factor: float | None = None
  original_max_position_embeddings: int | None = None

  def __post_init__(self):
    if self.rope_type not in ROPE_SCALING_KEYS:
      raise ValueError(f'rope type {self.rope_type!r} is not supported; supported: '
                       f'{["default", *ROPE_SCALING_KEYS]}')
    missing = [k for k in ROPE_SCALING_KEYS[self.rope_type] if getattr(self, k) is None]
    if missing:
      raise ValueError(f'rope type {self.rope_type!r} needs {missing}')
    if self.rope_type == 'llama3' and self.high_freq_factor <= self.low_freq_factor:
      raise ValueError(f'llama3 rope: high_freq_factor {self.high_freq_factor} must exceed low_freq_factor '
                       f'{self.low_freq_factor}')


@dataclasses.dataclass(frozen=True)
class TextConfig:
  """A Qwen2, Llama or Qwen3 decoder (HF `text_config` / a text model's config.json)."""

  vocab_size: int = 151936
  hidden_size: int = 3584
  intermediate_size: int = 18944
  num_hidden_layers: int = 28
  num_attention_heads: int = 28
  num_key_value_heads: int = 4
  head_dim: int | None = None  # None: hidden_size // num_attention_heads
  rms_norm_eps: float = 1e-6
  rope_theta: float = 1000000.0
  rope_scaling: RopeScaling | None = None  # None: default rotary
  max_position_embeddings: int = 32768  # read only by dynamic rope scaling
  mrope_section: tuple[int, ...] | None = (16, 24, 24)  # None: plain 1-D rotary
  model_type: str = 'qwen2'  # decoder family: qwen2 | llama | qwen3 (DECODER_FAMILIES)
  attention_bias: bool = True  # bias on q, k, v (and on o_proj where the family says so)
  mlp_bias: bool = False  # bias on gate, up and down projections (Llama)
  hidden_act: str = 'silu'  # the gate activation of the SwiGLU MLP
  sliding_window: int | None = None  # keys a sliding_attention layer sees, the query's own included
  layer_types: tuple[str, ...] | None = None  # per layer: full_attention | sliding_attention; None: all full
  tie_word_embeddings: bool = False

  def __post_init__(self):
    family = _check_family('decoder', self.model_type, DECODER_FAMILIES)
    for name, value in family.fixed:
      if getattr(self, name) != value:
        raise ValueError(f'{self.model_type} decoders have {name}={value}, got {getattr(self, name)}')
    if self.num_attention_heads % self.num_key_value_heads:
      raise ValueError(f'num_attention_heads {self.num_attention_heads} not divisible by '
                       f'num_key_value_heads {self.num_key_value_heads}')
    if self.head_dim is None and self.hidden_size % self.num_attention_heads:
      raise ValueError(f'hidden_size {self.hidden_size} not divisible by num_attention_heads')
    if self.dim_per_head % 2:
      raise ValueError(f'head_dim {self.dim_per_head} must be even (rotary)')
    if self.mrope_section is not None and sum(self.mrope_section) * 2 != self.dim_per_head:
      raise ValueError(f'mrope_section {self.mrope_section} must sum to head_dim/2 = '
                       f'{self.dim_per_head // 2}')
    if self.mrope_section is not None and self.rope_scaling is not None:
      raise ValueError(f'rope scaling {self.rope_scaling.rope_type!r} with multimodal rotary (mrope_section) '
                       'is not supported')
    if self.hidden_act not in ACTIVATIONS:
      raise ValueError(f'hidden_act {self.hidden_act!r} is not supported; supported: {list(ACTIVATIONS)}')
    if self.layer_types is not None:
      if len(self.layer_types) != self.num_hidden_layers:
        raise ValueError(f'layer_types has {len(self.layer_types)} entries for {self.num_hidden_layers} layers')
      unknown = sorted(set(self.layer_types) - set(LAYER_TYPES))
      if unknown:
        raise ValueError(f'layer_types {unknown} are not supported; supported: {list(LAYER_TYPES)}')
      if 'sliding_attention' in self.layer_types and not (self.sliding_window and self.sliding_window > 0):
        raise ValueError(f'layer_types has sliding_attention layers but sliding_window is {self.sliding_window}')

  @property
  def family(self) -> DecoderFamily:
    return DECODER_FAMILIES[self.model_type]

  @property
  def dim_per_head(self) -> int:
    return self.head_dim or self.hidden_size // self.num_attention_heads

  def window_of_layer(self, index: int) -> int | None:
    """The sliding window of layer `index`, or None for full attention."""
    if self.layer_types is None or self.layer_types[index] == 'full_attention':
      return None
    return self.sliding_window


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """A whole model: a text decoder and, for VLMs, a vision tower plus special token ids.

  The Hugging Face model_type is the tower's for VLMs (qwen2_vl, qwen2_5_vl, with a qwen2
  decoder), else the decoder's (qwen2, llama, qwen3).
  """

  text: TextConfig
  vision: VisionConfig | None = None
  image_token_id: int = 151655
  vision_start_token_id: int = 151652
  dtype: str = 'float32'  # compute dtype of activations: float32 | bfloat16
  param_dtype: str = 'float32'  # storage dtype of the (master) weights
  scan_layers: bool = False  # decoder layers and vision blocks stacked under jax.lax.scan (compile time flat in depth)
  remat: str = 'none'  # decoder-layer and vision-block rematerialisation in the backward pass (REMAT)

  def __post_init__(self):
    if self.vision is not None and self.text.model_type != 'qwen2':
      raise ValueError(f'{self.vision.model_type} models have a qwen2 decoder, got {self.text.model_type}')
    if self.vision is not None and self.vision.out_hidden_size != self.text.hidden_size:
      raise ValueError(f'vision out_hidden_size {self.vision.out_hidden_size} != text hidden_size '
                       f'{self.text.hidden_size}')
    for name in ('dtype', 'param_dtype'):
      if getattr(self, name) not in ('float32', 'bfloat16'):
        raise ValueError(f'{name} must be float32 or bfloat16, got {getattr(self, name)!r}')
    if self.remat not in REMAT:
      raise ValueError(f'remat {self.remat!r} is not supported; supported: {list(REMAT)}')

  @property
  def model_type(self) -> str:
    return self.vision.model_type if self.vision is not None else self.text.model_type

  def replace(self, **kwargs: Any) -> 'ModelConfig':
    return dataclasses.replace(self, **kwargs)


PRESETS: dict[str, Callable[..., ModelConfig]] = {}


def register_preset(name: str):
  def wrap(fn):
    PRESETS[name] = fn
    return fn
  return wrap


def get_preset(name: str, **overrides: Any) -> ModelConfig:
  if name not in PRESETS:
    raise ValueError(f'unknown model preset {name!r}; valid presets: {sorted(PRESETS)}')
  return PRESETS[name](**overrides)


@register_preset('tiny_vl')
def tiny_vl(vocab_size: int = 512, image_token_id: int = 0, vision_start_token_id: int = 0) -> ModelConfig:
  """Qwen2.5-VL at CPU size: 2-block vision tower (window + full attention), 2-layer decoder.

  rope_theta is 10, not Qwen's 1e6: multimodal rotary gives the width axis the lowest frequencies
  (the last mrope section), and at head_dim 32 only a small theta leaves them fast enough to tell
  adjacent grid cells apart. Measured once each, supervised on correct 2x2 answers for 200 steps:
  greedy solve rate 0.00 at theta 1e4, 0.44 at 10, 1.00 at 4; but at 4 text positions alias and
  the format warm-up no longer learns to avoid repeated digits (loss 0.32 vs the 0.29 floor).
  """
  text = TextConfig(vocab_size=vocab_size, hidden_size=128, intermediate_size=384, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, rope_theta=10.0,
                    mrope_section=(4, 6, 6), tie_word_embeddings=True)
  vision = VisionConfig(depth=2, hidden_size=64, intermediate_size=128, num_heads=2, patch_size=8,
                        window_size=16, fullatt_block_indexes=(1,), out_hidden_size=128)
  return ModelConfig(text=text, vision=vision, image_token_id=image_token_id,
                     vision_start_token_id=vision_start_token_id)


@register_preset('tiny_lm')
def tiny_lm(vocab_size: int = 512, image_token_id: int = 0, vision_start_token_id: int = 0) -> ModelConfig:
  """The tiny_vl decoder alone, with plain 1-D rotary (a Qwen2 text model), for text tasks on a CPU."""
  text = dataclasses.replace(tiny_vl(vocab_size).text, mrope_section=None, rope_theta=10000.0)
  return ModelConfig(text=text, vision=None, image_token_id=image_token_id,
                     vision_start_token_id=vision_start_token_id)
