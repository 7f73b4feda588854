"""Model configurations: the Qwen2/Qwen2.5-VL family as frozen dataclasses, with named presets.

The tiny preset is the real Qwen2.5-VL architecture (vision tower with window attention and a
2x2 patch merger, Qwen2 decoder with GQA, qkv bias and multimodal rotary positions) at sizes
that train on a laptop CPU. Field names follow the Hugging Face config.json keys.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable


@dataclasses.dataclass(frozen=True)
class VisionConfig:
  """The Qwen2.5-VL vision tower (HF `vision_config`)."""

  depth: int = 32
  hidden_size: int = 1280
  intermediate_size: int = 3420
  num_heads: int = 16
  in_channels: int = 3
  patch_size: int = 14
  spatial_merge_size: int = 2
  temporal_patch_size: int = 2
  window_size: int = 112  # pixels; window attention spans window_size // merge // patch merged units
  fullatt_block_indexes: tuple[int, ...] = (7, 15, 23, 31)
  out_hidden_size: int = 3584  # = text hidden_size
  rope_theta: float = 10000.0
  rms_norm_eps: float = 1e-6

  def __post_init__(self):
    if self.hidden_size % self.num_heads:
      raise ValueError(f'vision hidden_size {self.hidden_size} not divisible by num_heads {self.num_heads}')
    if (self.hidden_size // self.num_heads) % 4:
      raise ValueError('vision head_dim must be divisible by 4 (2-D rotary over h and w)')
    bad = [i for i in self.fullatt_block_indexes if not 0 <= i < self.depth]
    if bad:
      raise ValueError(f'fullatt_block_indexes {bad} outside [0, depth={self.depth})')
    if self.window_size % (self.spatial_merge_size * self.patch_size):
      raise ValueError(f'window_size {self.window_size} must be a multiple of merge*patch '
                       f'= {self.spatial_merge_size * self.patch_size}')

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
class TextConfig:
  """The Qwen2 decoder (HF `text_config` / a Qwen2 config.json)."""

  vocab_size: int = 151936
  hidden_size: int = 3584
  intermediate_size: int = 18944
  num_hidden_layers: int = 28
  num_attention_heads: int = 28
  num_key_value_heads: int = 4
  head_dim: int | None = None  # None: hidden_size // num_attention_heads
  rms_norm_eps: float = 1e-6
  rope_theta: float = 1000000.0
  mrope_section: tuple[int, ...] | None = (16, 24, 24)  # None: plain 1-D rotary
  attention_bias: bool = True  # Qwen2: bias on q, k, v (never on o)
  tie_word_embeddings: bool = False

  def __post_init__(self):
    if self.num_attention_heads % self.num_key_value_heads:
      raise ValueError(f'num_attention_heads {self.num_attention_heads} not divisible by '
                       f'num_key_value_heads {self.num_key_value_heads}')
    if self.head_dim is None and self.hidden_size % self.num_attention_heads:
      raise ValueError(f'hidden_size {self.hidden_size} not divisible by num_attention_heads')
    if self.mrope_section is not None and sum(self.mrope_section) * 2 != self.dim_per_head:
      raise ValueError(f'mrope_section {self.mrope_section} must sum to head_dim/2 = '
                       f'{self.dim_per_head // 2}')

  @property
  def dim_per_head(self) -> int:
    return self.head_dim or self.hidden_size // self.num_attention_heads


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """A whole model: a text decoder and, for VLMs, a vision tower plus special token ids."""

  text: TextConfig
  vision: VisionConfig | None = None
  image_token_id: int = 151655
  vision_start_token_id: int = 151652
  dtype: str = 'float32'  # compute dtype of activations: float32 | bfloat16
  param_dtype: str = 'float32'  # storage dtype of the (master) weights

  def __post_init__(self):
    if self.vision is not None and self.vision.out_hidden_size != self.text.hidden_size:
      raise ValueError(f'vision out_hidden_size {self.vision.out_hidden_size} != text hidden_size '
                       f'{self.text.hidden_size}')
    for name in ('dtype', 'param_dtype'):
      if getattr(self, name) not in ('float32', 'bfloat16'):
        raise ValueError(f'{name} must be float32 or bfloat16, got {getattr(self, name)!r}')

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
