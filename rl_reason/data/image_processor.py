"""Qwen2-VL / Qwen2.5-VL image preprocessing in numpy and PIL, equal to the transformers PIL processor.

Reproduces `transformers.Qwen2VLImageProcessorPil` (transformers 5.x; the class Qwen2.5-VL uses
when torchvision is absent, and the "slow" processor of 4.x): `smart_resize` to sides divisible
by patch_size * merge_size within [min_pixels, max_pixels], a PIL bicubic resize of the uint8
image, rescale by 1/255 (computed in float64, stored as float32), normalize with the CLIP mean and
std in float32, then patchify. Each patch row is flattened in (channel, temporal, y, x) order; the
single frame is repeated temporal_patch_size times; rows are ordered by merge window (row-major
over windows, then row-major inside a merge_size x merge_size window), which is the order the
vision tower's patch merger expects.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os

import numpy as np
from PIL import Image

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
MAX_ASPECT_RATIO = 200
RESAMPLE = {'nearest': Image.Resampling.NEAREST, 'bilinear': Image.Resampling.BILINEAR,
            'bicubic': Image.Resampling.BICUBIC, 'lanczos': Image.Resampling.LANCZOS}


@dataclasses.dataclass(frozen=True)
class ImageProcessorConfig:
  """Settings of the Qwen2-VL processor (defaults: Qwen2-VL / Qwen2.5-VL)."""

  patch_size: int = 14
  temporal_patch_size: int = 2
  merge_size: int = 2
  min_pixels: int = 56 * 56
  max_pixels: int = 28 * 28 * 1280
  image_mean: tuple[float, float, float] = OPENAI_CLIP_MEAN
  image_std: tuple[float, float, float] = OPENAI_CLIP_STD
  resample: str = 'bicubic'

  def __post_init__(self):
    object.__setattr__(self, 'image_mean', tuple(float(v) for v in self.image_mean))
    object.__setattr__(self, 'image_std', tuple(float(v) for v in self.image_std))
    for name in ('patch_size', 'temporal_patch_size', 'merge_size'):
      if getattr(self, name) < 1:
        raise ValueError(f'{name} must be >= 1, got {getattr(self, name)}')
    # min_pixels > 0 keeps every resized side >= factor (smart_resize scales small images up).
    if not 0 < self.min_pixels <= self.max_pixels:
      raise ValueError(f'need 0 < min_pixels <= max_pixels, got min_pixels={self.min_pixels}, '
                       f'max_pixels={self.max_pixels}')
    if len(self.image_mean) != 3 or len(self.image_std) != 3:
      raise ValueError(f'image_mean and image_std need 3 values (RGB), got {self.image_mean}, {self.image_std}')
    if min(self.image_std) <= 0:
      raise ValueError(f'image_std must be positive, got {self.image_std}')
    if self.resample not in RESAMPLE:
      raise ValueError(f'resample {self.resample!r} unknown; valid: {sorted(RESAMPLE)}')

  @property
  def factor(self) -> int:
    """Resized sides are multiples of this: one merge window in pixels."""
    return self.patch_size * self.merge_size

  @property
  def patch_dim(self) -> int:
    """Length of one flattened patch: 3 channels x temporal_patch_size frames x patch_size**2."""
    return 3 * self.temporal_patch_size * self.patch_size**2


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
  """Qwen2-VL target size: sides divisible by factor, area in [min, max], aspect ratio kept closely.

  Python's round (half to even), floor and ceil exactly as in transformers.
  """
  if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
    raise ValueError(f'absolute aspect ratio must be at most {MAX_ASPECT_RATIO}, '
                     f'got {max(height, width) / min(height, width)}')
  h_bar = round(height / factor) * factor
  w_bar = round(width / factor) * factor
  if h_bar * w_bar > max_pixels:
    beta = math.sqrt((height * width) / max_pixels)
    h_bar = max(factor, math.floor(height / beta / factor) * factor)
    w_bar = max(factor, math.floor(width / beta / factor) * factor)
  elif h_bar * w_bar < min_pixels:
    beta = math.sqrt(min_pixels / (height * width))
    h_bar = math.ceil(height * beta / factor) * factor
    w_bar = math.ceil(width * beta / factor) * factor
  return h_bar, w_bar


def num_image_tokens(grid_thw, merge_size: int) -> int:
  """LLM tokens of one image: its t * h * w patches, merged merge_size x merge_size."""
  t, h, w = (int(v) for v in grid_thw)
  return t * h * w // merge_size**2


def _check_image(index: int, image: np.ndarray) -> None:
  if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
    kind = image.dtype if isinstance(image, np.ndarray) else type(image).__name__
    raise ValueError(f'image {index}: expected a uint8 numpy array, got {kind}')
  if image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(f'image {index}: expected shape [H, W, 3] (RGB, channels last), got {image.shape}')
  if min(image.shape[:2]) < 1:
    raise ValueError(f'image {index}: empty image of shape {image.shape}')


def _patchify(image: np.ndarray, cfg: ImageProcessorConfig) -> np.ndarray:
  """[3, H, W] float32 -> [H/p * W/p, 3 * tp * p * p] rows in merge-window order."""
  channels, height, width = image.shape
  p, m = cfg.patch_size, cfg.merge_size
  grid_h, grid_w = height // p, width // p
  patches = image.reshape(channels, grid_h // m, m, p, grid_w // m, m, p)
  patches = patches.transpose(1, 4, 2, 5, 0, 3, 6)  # (gh, gw, mh, mw, C, ph, pw)
  # A still image is one frame repeated over the temporal patch.
  patches = np.broadcast_to(patches[:, :, :, :, :, None],
                            (*patches.shape[:5], cfg.temporal_patch_size, *patches.shape[5:]))
  return patches.reshape(grid_h * grid_w, cfg.patch_dim)


def preprocess(images: list[np.ndarray], cfg: ImageProcessorConfig) -> dict[str, np.ndarray]:
  """Preprocesses uint8 [H, W, 3] RGB images.

  Args:
    images: one or more uint8 [H, W, 3] arrays, sizes may differ.
    cfg: processor settings.

  Returns:
    pixel_values: float32 [sum_i t_i * h_i * w_i, 3 * tp * p * p], the images' patches concatenated.
    image_grid_thw: int64 [I, 3], (t, h, w) patch grid of each image (t = 1 for still images).
  """
  if not images:
    raise ValueError('preprocess needs at least one image')
  mean = np.asarray(cfg.image_mean, np.float32)[:, None, None]
  std = np.asarray(cfg.image_std, np.float32)[:, None, None]
  all_patches, grids = [], []
  for index, image in enumerate(images):
    _check_image(index, image)
    height, width = image.shape[:2]
    try:
      new_h, new_w = smart_resize(height, width, cfg.factor, cfg.min_pixels, cfg.max_pixels)
    except ValueError as e:
      raise ValueError(f'image {index} of shape {image.shape}: {e}') from e
    resized = Image.fromarray(image).resize((new_w, new_h), resample=RESAMPLE[cfg.resample])
    # Same arithmetic as transformers: float64 rescale cast to float32, float32 normalize.
    pixels = (np.asarray(resized).transpose(2, 0, 1).astype(np.float64) * (1 / 255)).astype(np.float32)
    pixels = (pixels - mean) / std
    all_patches.append(_patchify(pixels, cfg))
    grids.append((1, new_h // cfg.patch_size, new_w // cfg.patch_size))
  return {'pixel_values': np.concatenate(all_patches, axis=0), 'image_grid_thw': np.asarray(grids, np.int64)}


_RESAMPLE_CODES = {0: 'nearest', 1: 'lanczos', 2: 'bilinear', 3: 'bicubic'}  # PIL's integer codes


def config_from_pretrained(path: str) -> ImageProcessorConfig:
  """The settings of a checkpoint directory's preprocessor_config.json (transformers 4.x or 5.x keys)."""
  file = os.path.join(path, 'preprocessor_config.json')
  if not os.path.exists(file):
    raise ValueError(f'{path} holds no preprocessor_config.json (the image processor settings)')
  with open(file) as f:
    raw = json.load(f)
  size = raw.get('size') or {}
  fields = dict(
      patch_size=raw.get('patch_size'), temporal_patch_size=raw.get('temporal_patch_size'),
      merge_size=raw.get('merge_size'), image_mean=raw.get('image_mean'), image_std=raw.get('image_std'),
      # 5.x stores the pixel bounds as size.shortest_edge / longest_edge; 4.x also as min/max_pixels.
      min_pixels=raw.get('min_pixels', size.get('shortest_edge')),
      max_pixels=raw.get('max_pixels', size.get('longest_edge')))
  resample = raw.get('resample')
  if resample is not None:
    if resample not in _RESAMPLE_CODES:
      raise ValueError(f'{file}: resample {resample!r} unsupported; supported: {_RESAMPLE_CODES}')
    fields['resample'] = _RESAMPLE_CODES[resample]
  for flag, expected in (('do_resize', True), ('do_rescale', True), ('do_normalize', True)):
    if raw.get(flag, expected) != expected:
      raise ValueError(f'{file}: {flag}={raw[flag]!r} is not supported (only {expected})')
  if raw.get('rescale_factor', 1 / 255) != 1 / 255:
    raise ValueError(f'{file}: rescale_factor {raw["rescale_factor"]} is not supported (only 1/255)')
  return ImageProcessorConfig(**{k: v for k, v in fields.items() if v is not None})
