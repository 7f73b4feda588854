"""Static shape buckets for generation, and the host-side padding that puts a request into them.

Shapes: P prompts, T prompt length, N new tokens, R vision rows (= P), X image patches per row,
C patch dim, M image tokens per row.

Each jitted program is specialised to its shapes; padding the prompt length, the number of
prompts, the generation length and the image patches per row up to a few sizes bounds how many
times a run compiles. A bucket spec is 'exact' (no padding: one program per distinct size),
'geometric' (the next of 2^k and 3*2^(k-1): at most 1/3 padding, logarithmically many sizes) or
an increasing tuple of sizes (a size above the largest is an error).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

EXACT = 'exact'
GEOMETRIC = 'geometric'

BucketSpec = Any  # 'exact' | 'geometric' | tuple[int, ...]


def _check_spec(name: str, spec: BucketSpec) -> None:
  if isinstance(spec, str):
    if spec not in (EXACT, GEOMETRIC):
      raise ValueError(f'{name} must be {EXACT!r}, {GEOMETRIC!r} or a tuple of sizes, got {spec!r}')
    return
  sizes = tuple(spec)
  if not sizes or any(not isinstance(s, (int, np.integer)) or s < 1 for s in sizes):
    raise ValueError(f'{name} must be a non-empty tuple of positive ints, got {spec!r}')
  if list(sizes) != sorted(set(sizes)):
    raise ValueError(f'{name} must be strictly increasing, got {spec!r}')


@dataclasses.dataclass(frozen=True)
class ShapeBuckets:
  """Bucket specs per padded dimension (see the module docstring)."""

  prompt_len: BucketSpec = GEOMETRIC  # T, at least MIN_PROMPT_LEN under 'geometric'
  new_tokens: BucketSpec = GEOMETRIC  # N: the token buffer / cache capacity; the loop stops at max_new_tokens
  batch: BucketSpec = GEOMETRIC  # P: prompts (dummy rows are appended, then dropped)
  image_patches: BucketSpec = GEOMETRIC  # X: vision patches per row (padding patches are masked out)

  def __post_init__(self):
    for field in dataclasses.fields(self):
      _check_spec(f'buckets.{field.name}', getattr(self, field.name))


EXACT_BUCKETS = ShapeBuckets(EXACT, EXACT, EXACT, EXACT)
MIN_PROMPT_LEN = 16
MIN_NEW_TOKENS = 16


def geometric_size(n: int, minimum: int = 1) -> int:
  """The smallest 2^k or 3 * 2^(k-1) that is >= max(n, minimum)."""
  n = max(int(n), int(minimum), 1)
  power = 1 << (n - 1).bit_length()  # smallest power of two >= n
  three_quarters = power // 4 * 3
  return three_quarters if power >= 4 and three_quarters >= n else power


def bucket_size(n: int, spec: BucketSpec, *, name: str, minimum: int = 1, multiple: int = 1) -> int:
  """The padded size for n under `spec`, rounded up to a multiple of `multiple`."""
  if n < 1:
    raise ValueError(f'{name} must be >= 1, got {n}')
  if spec == EXACT:
    size = n
  elif spec == GEOMETRIC:
    size = geometric_size(n, minimum)
  else:
    fitting = [s for s in spec if s >= n]
    if not fitting:
      raise ValueError(f'{name} {n} exceeds the largest bucket {max(spec)} of {tuple(spec)}')
    size = fitting[0]
  return -(-size // multiple) * multiple


def left_align(input_ids: np.ndarray, attention_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Moves each row's real tokens to the right end (left padding); they must be contiguous."""
  input_ids, attention_mask = np.asarray(input_ids), np.asarray(attention_mask)
  real = attention_mask.astype(bool)
  counts = real.sum(axis=1)
  first = np.argmax(real, axis=1)
  contiguous = np.array([real[r, first[r]:first[r] + counts[r]].all() for r in range(len(real))], bool)
  if not contiguous.all():
    raise ValueError(f'attention_mask rows {np.nonzero(~contiguous)[0].tolist()} have holes: each row must be one '
                     'contiguous run of real tokens (left or right padding)')
  length = input_ids.shape[1]
  if (first + counts == length).all():
    return input_ids, attention_mask
  ids = np.zeros_like(input_ids)
  mask = np.zeros_like(attention_mask)
  for r in range(len(input_ids)):
    ids[r, length - counts[r]:] = input_ids[r, first[r]:first[r] + counts[r]]
    mask[r, length - counts[r]:] = attention_mask[r, first[r]:first[r] + counts[r]]
  return ids, mask


def pad_prompts(input_ids: np.ndarray, attention_mask: np.ndarray, *, length: int, rows: int, pad_id: int,
                filler_id: int) -> tuple[np.ndarray, np.ndarray]:
  """Left pads [P, T] to [rows, length]; appended dummy rows hold one real `filler_id` token."""
  num, current = input_ids.shape
  if length < current or rows < num:
    raise ValueError(f'cannot pad [{num}, {current}] prompts down to [{rows}, {length}]')
  ids = np.full((rows, length), pad_id, input_ids.dtype)
  mask = np.zeros((rows, length), attention_mask.dtype)
  ids[:num, length - current:] = input_ids
  mask[:num, length - current:] = attention_mask
  ids[num:, -1] = filler_id
  mask[num:, -1] = 1
  return ids, mask


# Pad values of positions.vision_inputs arrays: padding patches carry segment -1 (masked out).
_VISION_PAD = {'patches': 0, 'positions': 0, 'window_segments': -1, 'full_segments': -1, 'token_gather': 0}


def pad_vision(vision: dict[str, np.ndarray], *, patches: int, merge_unit: int) -> dict[str, np.ndarray]:
  """Pads positions.vision_inputs arrays to `patches` per row and token_gather to patches / merge_unit."""
  unknown = sorted(set(vision) - set(_VISION_PAD))
  if unknown:
    raise ValueError(f'vision inputs {unknown} have no padding rule')
  current = vision['patches'].shape[1]
  if patches < current or patches % merge_unit:
    raise ValueError(f'cannot pad {current} image patches per row to {patches} (merge unit {merge_unit})')
  out = {}
  for name, value in vision.items():
    target = patches // merge_unit if name == 'token_gather' else patches
    widths = [(0, 0)] * value.ndim
    widths[1] = (0, target - value.shape[1])
    out[name] = np.pad(value, widths, constant_values=_VISION_PAD[name])
  return out
