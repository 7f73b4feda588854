"""Host-side (numpy) position bookkeeping: multimodal rotary ids and vision-tower index plans.

Shapes: B batch, T tokens, I images, P patches per image (padded), C patch dim, M merged tokens.

Everything here depends only on token ids, masks and image grids, so it runs on the host once per
batch and hands plain int arrays to the jitted model (no data-dependent shapes inside jit).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from rl_reason.models.config import VisionConfig


def text_positions(attention_mask: np.ndarray) -> np.ndarray:
  """[3, B, T] positions counting only real tokens (left padding aware); padding gets 0."""
  mask = np.asarray(attention_mask).astype(bool)
  pos = np.cumsum(mask, axis=1) - 1
  pos = np.where(mask, pos, 0)
  return np.broadcast_to(pos[None], (3, *pos.shape)).astype(np.int32)


def rope_index(input_ids: np.ndarray, attention_mask: np.ndarray, image_grid_thw: np.ndarray | None,
               *, image_token_id: int, spatial_merge_size: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Qwen2-VL multimodal rotary ids, computed as transformers' `get_rope_index` computes them.

  Text tokens advance all three rows together; an image's tokens get (start, start + row,
  start + column) for its merged grid; text after an image resumes at start + max(h, w).

  Returns:
    positions [3, B, T] (padding 0); deltas [B] such that the k-th generated token after the
    prompt has position max(positions of the row) + 1 + k = (real prompt length + k) + delta;
    row_of_image [I], the batch row each image belongs to.
  """
  input_ids = np.asarray(input_ids)
  mask = np.asarray(attention_mask).astype(bool)
  batch, length = input_ids.shape
  grids = [] if image_grid_thw is None else [tuple(int(v) for v in g) for g in np.asarray(image_grid_thw)]
  grid_iter = iter(grids)
  positions = np.zeros((3, batch, length), np.int64)
  deltas = np.zeros((batch,), np.int64)
  used = 0
  row_of_image = []
  for row in range(batch):
    ids = input_ids[row][mask[row]]
    is_image = ids == image_token_id
    pieces = []
    current = 0
    i = 0
    while i < len(ids):
      if not is_image[i]:
        j = i
        while j < len(ids) and not is_image[j]:
          j += 1
        pieces.append(np.broadcast_to(np.arange(j - i) + current, (3, j - i)))
        current += j - i
        i = j
        continue
      try:
        t, h, w = next(grid_iter)
      except StopIteration:
        raise ValueError(f'row {row}: more image token runs than image_grid_thw entries '
                         f'({len(grids)})') from None
      used += 1
      row_of_image.append(row)
      gh, gw = h // spatial_merge_size, w // spatial_merge_size
      count = t * gh * gw
      if i + count > len(ids) or not is_image[i:i + count].all():
        raise ValueError(f'row {row}: image {used - 1} with grid {(t, h, w)} needs {count} '
                         f'consecutive image tokens at token {i}; the prompt has fewer')
      tt, hh, ww = np.meshgrid(np.arange(t), np.arange(gh), np.arange(gw), indexing='ij')
      pieces.append(np.stack([tt.ravel(), hh.ravel(), ww.ravel()]) + current)
      current += max(gh, gw)
      i += count
    row_pos = np.concatenate(pieces, axis=1) if pieces else np.zeros((3, 0), np.int64)
    positions[:, row, mask[row]] = row_pos
    deltas[row] = (row_pos.max() + 1 if row_pos.size else 0) - len(ids)
  if used != len(grids):
    raise ValueError(f'image_grid_thw has {len(grids)} images but the prompts hold image tokens '
                     f'for {used}')
  return positions.astype(np.int32), deltas.astype(np.int32), np.asarray(row_of_image, np.int32)


def window_index(grid_thw: Sequence[int], cfg: VisionConfig) -> tuple[np.ndarray, np.ndarray]:
  """Window permutation of one image's merged units and the window id of each permuted unit.

  Towers without window attention (Qwen2-VL) keep the processor order, one window per frame.
  """
  t, h, w = (int(v) for v in grid_thw)
  gh, gw = h // cfg.spatial_merge_size, w // cfg.spatial_merge_size
  if not cfg.family.window_attention:
    return np.arange(t * gh * gw), np.repeat(np.arange(t), gh * gw)
  win = cfg.window_units
  index = np.arange(t * gh * gw).reshape(t, gh, gw)
  pad_h, pad_w = -gh % win, -gw % win
  padded = np.pad(index, ((0, 0), (0, pad_h), (0, pad_w)), constant_values=-1)
  nh, nw = (gh + pad_h) // win, (gw + pad_w) // win
  padded = padded.reshape(t, nh, win, nw, win).transpose(0, 1, 3, 2, 4).reshape(t * nh * nw, win * win)
  window_ids = np.broadcast_to(np.arange(t * nh * nw)[:, None], padded.shape)
  keep = padded >= 0
  return padded[keep], window_ids[keep]


def vision_inputs(pixel_values: np.ndarray, image_grid_thw: np.ndarray, cfg: VisionConfig,
                  row_of_image: Sequence[int], num_rows: int) -> dict[str, np.ndarray]:
  """Arranges HF-style flattened patches into one padded (window-permuted) vision row per batch row.

  All images of a batch row are concatenated into that row (attention stays inside each image
  through segment ids), so everything downstream is row-local and shards over the batch.

  Args:
    pixel_values: [sum_i t*h*w, C] as the Qwen2-VL image processor returns them.
    image_grid_thw: [I, 3].
    cfg: the vision config.
    row_of_image: [I] the batch row of each image (non-decreasing, as in the prompts).
    num_rows: R, the number of batch rows.

  Returns:
    patches [R, P, C], positions [R, P, 2], window_segments [R, P], full_segments [R, P] (-1 for
    padding), token_gather [R, X]: for the k-th image token of row r, its index in row r of the
    merged output [R, P / merge_unit] (0 past the row's image tokens).
  """
  pixel_values = np.asarray(pixel_values, np.float32)
  grids = np.asarray(image_grid_thw, np.int64).reshape(-1, 3)
  if pixel_values.ndim != 2 or pixel_values.shape[1] != cfg.patch_dim:
    raise ValueError(f'pixel_values has shape {pixel_values.shape}; expected [num_patches, '
                     f'{cfg.patch_dim}] for patch_size {cfg.patch_size}, temporal_patch_size '
                     f'{cfg.temporal_patch_size}, {cfg.in_channels} channels')
  sizes = grids.prod(axis=1)
  if sizes.sum() != pixel_values.shape[0]:
    raise ValueError(f'image_grid_thw {grids.tolist()} accounts for {sizes.sum()} patches but '
                     f'pixel_values has {pixel_values.shape[0]}')
  for i, (t, h, w) in enumerate(grids):
    if h % cfg.spatial_merge_size or w % cfg.spatial_merge_size:
      raise ValueError(f'image {i}: grid {(t, h, w)} not divisible by spatial_merge_size '
                       f'{cfg.spatial_merge_size}')
  row_of_image = np.asarray(row_of_image, np.int64)
  if len(row_of_image) != len(grids):
    raise ValueError(f'{len(grids)} images but {len(row_of_image)} row assignments')
  unit, m = cfg.merge_unit, cfg.spatial_merge_size
  row_patches = np.bincount(row_of_image, weights=sizes, minlength=num_rows).astype(np.int64)
  max_patches = max(int(row_patches.max()) if len(grids) else 0, unit)
  max_tokens = max(int(row_patches.max()) // unit if len(grids) else 0, 1)
  patches = np.zeros((num_rows, max_patches, cfg.patch_dim), np.float32)
  positions = np.zeros((num_rows, max_patches, 2), np.int32)
  window_segments = np.full((num_rows, max_patches), -1, np.int32)
  full_segments = np.full((num_rows, max_patches), -1, np.int32)
  token_gather = np.zeros((num_rows, max_tokens), np.int32)
  fill = np.zeros(num_rows, np.int64)  # patches written per row
  segment_base = np.zeros((num_rows, 2), np.int64)  # next window / frame segment id per row
  offset = 0
  for i, (t, h, w) in enumerate(grids):
    row, count = int(row_of_image[i]), int(t * h * w)
    image_patches = pixel_values[offset:offset + count]
    offset += count
    # Patch coordinates in HF order: merge blocks row-major, 2x2 inside each block, per frame.
    hh, ww = np.meshgrid(np.arange(h), np.arange(w), indexing='ij')
    hh = hh.reshape(h // m, m, w // m, m).transpose(0, 2, 1, 3).ravel()
    ww = ww.reshape(h // m, m, w // m, m).transpose(0, 2, 1, 3).ravel()
    coords = np.tile(np.stack([hh, ww], -1), (t, 1))  # [t*h*w, 2]
    frames = np.repeat(np.arange(t), h * w)
    units, unit_windows = window_index((t, h, w), cfg)
    order = (units[:, None] * unit + np.arange(unit)[None]).ravel()
    start = int(fill[row])
    patches[row, start:start + count] = image_patches[order]
    positions[row, start:start + count] = coords[order]
    window_segments[row, start:start + count] = np.repeat(unit_windows, unit) + segment_base[row, 0]
    full_segments[row, start:start + count] = frames[order] + segment_base[row, 1]
    first_token = start // unit
    token_gather[row, first_token:first_token + len(units)] = first_token + np.argsort(units)
    fill[row] += count
    segment_base[row] += (unit_windows.max() + 1, t)
  return dict(patches=patches, positions=positions, window_segments=window_segments,
              full_segments=full_segments, token_gather=token_gather)
