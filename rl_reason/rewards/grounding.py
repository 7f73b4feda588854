"""Grounding rewards: box IoU (UniVG-R1's pixel form and the continuous form) and point-in-box.

Coordinates. The model answers in the pixel frame of the image it was shown (Qwen2.5-VL resizes
images; meta 'resized_size' = (W', H')); the label meta 'gt_box' = [x1, y1, x2, y2] is in the
original image's frame (meta 'image_size' = (W, H)). A prediction is scaled by (W/W', H/H') into
the original frame (as VLM-R1's resize_bbox does) and then clipped to the image, so a box partly
outside counts only its visible part and a box wholly outside scores 0. Without both sizes no
rescaling is done (and without 'image_size' no clipping). Inverted boxes (x2 < x1 or y2 < y1)
are not boxes and score 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rl_reason.rewards import parsing, registry
from rl_reason.rewards.registry import register

Box = tuple[float, float, float, float]
BOX_META = ('gt_box',)
FRAME_META = ('image_size', 'resized_size')


def _scale(meta: Mapping[str, Any]) -> tuple[float, float]:
  if 'image_size' in meta and 'resized_size' in meta:
    (width, height), (resized_width, resized_height) = meta['image_size'], meta['resized_size']
    return width / resized_width, height / resized_height
  return 1.0, 1.0


def to_original_frame(box: Box, meta: Mapping[str, Any]) -> Box:
  """A predicted box scaled from the resized to the original image frame and clipped to the image."""
  sx, sy = _scale(meta)
  x1, y1, x2, y2 = box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy
  if 'image_size' in meta:
    width, height = meta['image_size']
    x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
    y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
  return x1, y1, x2, y2


def iou_continuous(a: Sequence[float], b: Sequence[float]) -> float:
  """Area IoU of two [x1, y1, x2, y2] boxes (0 for an empty union or an inverted box)."""
  if a[2] < a[0] or a[3] < a[1] or b[2] < b[0] or b[3] < b[1]:
    return 0.0
  inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
  union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
  return inter / union if union > 0 else 0.0


def iou_univg(a: Sequence[float], b: Sequence[float]) -> float:
  """UniVG-R1 / VLM-R1 `iou`: the overlap's far edge is the last pixel (x2 - 1), counted inclusively.

  inter = (min(x2, x2') - 1 - max(x1, x1') + 1) * (same in y) when max(x1, x1') < min(x2, x2') - 1
  (and likewise in y), else 0; union = area + area' - inter with area = (x2 - x1)(y2 - y1). So
  overlaps of one pixel or less count 0; otherwise it equals the continuous IoU. An empty union
  (their code divides by zero) and inverted boxes score 0 here.
  """
  if a[2] < a[0] or a[3] < a[1] or b[2] < b[0] or b[3] < b[1]:
    return 0.0
  x1, y1 = max(a[0], b[0]), max(a[1], b[1])
  x2, y2 = min(a[2] - 1, b[2] - 1), min(a[3] - 1, b[3] - 1)
  inter = (x2 - x1 + 1) * (y2 - y1 + 1) if x1 < x2 and y1 < y2 else 0.0
  union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
  return min(max(inter / union, 0.0), 1.0) if union > 0 else 0.0


def _predicted_box(text: str, meta: Mapping[str, Any]) -> Box | None:
  answer = parsing.answer_text(text)
  box = None if answer is None else parsing.parse_box(answer)
  return None if box is None else to_original_frame(box, meta)


@register('iou_box_inclusive', range=(0.0, 1.0), required_meta=BOX_META, optional_meta=FRAME_META,
          source='UniVG-R1 (VLM-R1 iou)')
def iou_box_inclusive(text: str, meta: Mapping[str, Any]) -> float:
  """UniVG-R1's IoU (pixel-inclusive overlap) of the answer's box with meta gt_box, in the original frame."""
  box = _predicted_box(text, meta)
  return 0.0 if box is None else iou_univg(box, [float(v) for v in meta['gt_box']])


@register('iou_box', range=(0.0, 1.0), required_meta=BOX_META, optional_meta=FRAME_META,
          source='continuous IoU (Jigsaw-R1 box, DocThinker RoI)')
def iou_box(text: str, meta: Mapping[str, Any]) -> float:
  """Continuous area IoU of the answer's box with meta gt_box, in the original frame."""
  box = _predicted_box(text, meta)
  return 0.0 if box is None else iou_continuous(box, [float(v) for v in meta['gt_box']])


# The IoU rewards (per-completion IoU in [0, 1]); UniVG-R1's difficulty weight reads one of them.
IOU_REWARDS = ('iou_box_inclusive', 'iou_box')


def iou_column(reward_names: Sequence[str]) -> str | None:
  """The score_batch column holding a per-completion IoU among `reward_names`, or None.

  The first name that is an IoU reward, else the first IoU part of a combination (its sub-score
  column 'name/part', e.g. 'univg_r1/iou_box_inclusive').
  """
  for name in reward_names:
    if name in IOU_REWARDS:
      return name
  for name in reward_names:
    for part in getattr(registry.get(name).fn, 'components', ()):
      if part in IOU_REWARDS:
        return f'{name}/{part}'
  return None


def point_in(point: tuple[float, float], box: Sequence[float]) -> bool:
  """Inclusive containment of (x, y) in [x1, y1, x2, y2]."""
  return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


def to_original_point(point: tuple[float, float], meta: Mapping[str, Any]) -> tuple[float, float]:
  sx, sy = _scale(meta)
  return point[0] * sx, point[1] * sy


@register('point_in_box', range=(0.0, 1.0), required_meta=BOX_META, optional_meta=FRAME_META,
          source='GuirlVG (point prediction, in-box reward)')
def point_in_box(text: str, meta: Mapping[str, Any]) -> float:
  """1.0 iff the answer's point '(x, y)', rescaled to the original frame, lies in meta gt_box (inclusive)."""
  answer = parsing.answer_text(text)
  point = None if answer is None else parsing.parse_point(answer)
  return float(point is not None and point_in(to_original_point(point, meta), [float(v) for v in meta['gt_box']]))
