"""GUI-action rewards (UI-R1): action type, click coordinate, and their sum with the format term.

The answer block holds "[{'action': A, 'coordinate': [x, y]}]" (single or double quotes). Only the
first action is read. Labels: meta 'gt_action' (a string) and, for clicks, meta 'gt_bbox'
[x1, y1, x2, y2] in the original image frame; the predicted point is rescaled from the resized
frame like grounding points (meta 'image_size', 'resized_size').
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from rl_reason.rewards import format as format_lib
from rl_reason.rewards import grounding, parsing
from rl_reason.rewards.registry import register

ACTIONS = ('click', 'open_app', 'scroll', 'navigate_back', 'input_text')
_ACTION = re.compile(r'''['"]action['"]\s*:\s*['"]([A-Za-z_]{1,32})['"]''')
_COORDINATE = re.compile(rf'''['"]coordinate['"]\s*:\s*\[\s*({parsing.NUMBER})\s*,\s*({parsing.NUMBER})\s*\]''')
UI_META = ('gt_action',)
UI_OPTIONAL = ('gt_bbox',) + grounding.FRAME_META


def parse_action(text: str) -> tuple[str | None, tuple[float, float] | None]:
  """(action name or None, point or None) of the answer block (of the whole text without tags)."""
  answer = parsing.answer_text(text)
  if answer is None:
    return None, None
  action = _ACTION.search(answer)
  coordinate = _COORDINATE.search(answer)
  point = None
  if coordinate:
    x, y = parsing.to_float(coordinate.group(1)), parsing.to_float(coordinate.group(2))
    point = None if x is None or y is None else (x, y)
  return (action.group(1) if action else None), point


def _coordinate_ok(action: str | None, point: tuple[float, float] | None, meta: Mapping[str, Any]) -> bool:
  if action is None or action != meta['gt_action']:
    return False
  if action != 'click':
    return True
  if 'gt_bbox' not in meta:
    raise ValueError('a click label needs meta gt_bbox')
  return point is not None and grounding.point_in(grounding.to_original_point(point, meta),
                                                  [float(v) for v in meta['gt_bbox']])


@register('ui_action_type', range=(0.0, 1.0), required_meta=UI_META, source='UI-R1 (R_T)')
def ui_action_type(text: str, meta: Mapping[str, Any]) -> float:
  """1.0 iff the predicted action type equals meta gt_action."""
  action, _ = parse_action(text)
  return float(action is not None and action == meta['gt_action'])


@register('ui_coord', range=(0.0, 1.0), required_meta=UI_META, optional_meta=UI_OPTIONAL, source='UI-R1 (R_C)')
def ui_coord(text: str, meta: Mapping[str, Any]) -> float:
  """1.0 iff the action matches and is not a click, or is a click whose rescaled point is in gt_bbox."""
  action, point = parse_action(text)
  return float(_coordinate_ok(action, point, meta))


@register('ui_r1', range=(0.0, 3.0), required_meta=UI_META, optional_meta=UI_OPTIONAL + ('prefill_think',),
          source='UI-R1')
def ui_r1(text: str, meta: Mapping[str, Any]) -> dict[str, float]:
  """R_T + R_C + R_F (action type, coordinate, think/answer format), each 0 or 1."""
  action, point = parse_action(text)
  scores = {'action_type': float(action is not None and action == meta['gt_action']),
            'coordinate': float(_coordinate_ok(action, point, meta)),
            'format': float(format_lib.is_think_answer(parsing.with_prefill(text, meta)))}
  return dict(scores, overall=sum(scores.values()))
