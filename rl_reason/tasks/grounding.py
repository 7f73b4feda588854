"""Synthetic visual grounding: coloured shapes on a canvas, a referring expression, the target's box or a point.

Objects are distinct (shape, colour) pairs, drawn solid and apart, so each one is named uniquely by
its attributes ("the red circle"). A relation expression names the target by its shape and its
place relative to an anchor ("the circle to the left of the blue square"); it is used only when
exactly one object of that shape (anchor aside) stands in that relation. Boxes are tight pixel
boxes [x1, y1, x2, y2] with exclusive ends; the point is a pixel of the target nearest its box
centre. The box answer is written "(x1,y1),(x2,y2)" (UniVG-R1), the point "(x,y)". meta
'gt_box' is the target box and 'image_size' is (width, height), as the grounding rewards read
them (they rescale predictions when the caller adds 'resized_size').
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from rl_reason.tasks import base
from rl_reason.tasks import shapes as shapes_lib
from rl_reason.tasks import templates

EXPRESSION_TYPES = ('attribute', 'relation')
ANSWERS = ('box', 'point')
RELATIONS = {  # name -> does box a stand in this relation to box b?
    'to the left of': lambda a, b: a[2] <= b[0],
    'to the right of': lambda a, b: a[0] >= b[2],
    'above': lambda a, b: a[3] <= b[1],
    'below': lambda a, b: a[1] >= b[3],
}
MAX_SCENE_TRIES = 100


def render_box(box) -> str:
  x1, y1, x2, y2 = (int(v) for v in box)
  return f'({x1},{y1}),({x2},{y2})'


def render_point(point) -> str:
  return f'({int(point[0])},{int(point[1])})'


@dataclasses.dataclass(frozen=True)
class GroundingConfig:
  """Grounding task settings.

  Attributes:
    image_size: canvas (height, width).
    num_objects: (min, max) objects per image, at least 2.
    object_size: (min, max) object side in pixels.
    shapes: shape kinds drawn from (see shapes.SHAPES).
    colors: colour names drawn from (see shapes.COLORS).
    expression_types: referring expressions drawn from: 'attribute', 'relation'.
    answer: 'box' ((x1,y1),(x2,y2)) or 'point' ((x,y)).
    tell_size: state the image size in the prompt (GuirlVG found it helps). It is the size of the
      image as generated: use it when the processor keeps that size, since the rewards read answers
      in the resized frame whenever meta 'resized_size' is set.
    think: think mode ("<think>...</think><answer>...</answer>") or the bare answer.
  """

  image_size: tuple[int, int] = (64, 64)
  num_objects: tuple[int, int] = (2, 4)
  object_size: tuple[int, int] = (8, 18)
  shapes: tuple[str, ...] = shapes_lib.SHAPES
  colors: tuple[str, ...] = tuple(shapes_lib.COLORS)
  expression_types: tuple[str, ...] = EXPRESSION_TYPES
  answer: str = 'box'
  tell_size: bool = False
  think: bool = True

  def __post_init__(self):
    for name in ('image_size', 'num_objects', 'object_size', 'shapes', 'colors', 'expression_types'):
      object.__setattr__(self, name, tuple(getattr(self, name)))
    shapes_lib.check_names(self.shapes, self.colors)
    if not 2 <= self.num_objects[0] <= self.num_objects[1] <= len(self.shapes) * len(self.colors):
      raise ValueError(f'num_objects must be (min, max) with 2 <= min <= max <= {len(self.shapes) * len(self.colors)} '
                       f'(distinct shape-colour pairs), got {self.num_objects}')
    if not self.expression_types or set(self.expression_types) - set(EXPRESSION_TYPES):
      raise ValueError(f'expression_types must be a non-empty subset of {EXPRESSION_TYPES}, '
                       f'got {self.expression_types}')
    if self.answer not in ANSWERS:
      raise ValueError(f'answer {self.answer!r} unknown; valid: {list(ANSWERS)}')
    # Fails early if even one object cannot fit.
    shapes_lib.place_boxes(np.random.default_rng(0), 1, *self.image_size, self.object_size)


def random_scene(rng: np.random.Generator, count: int, height: int, width: int, size: tuple[int, int],
                 kinds: tuple[str, ...], colors: tuple[str, ...]) -> list[shapes_lib.Shape]:
  """`count` objects with distinct (shape, colour) pairs at non-overlapping places."""
  pairs = [(k, c) for k in kinds for c in colors]
  chosen = rng.choice(len(pairs), size=count, replace=False)
  boxes = shapes_lib.place_boxes(rng, count, height, width, size)
  return [shapes_lib.Shape(kind=pairs[i][0], color=pairs[i][1], box=box) for i, box in zip(chosen, boxes)]


def relation_candidates(objects: list[shapes_lib.Shape]) -> list[tuple[int, int, str]]:
  """(target, anchor, relation) triples that name the target uniquely by shape + relation to the anchor."""
  out = []
  for t, target in enumerate(objects):
    for a, anchor in enumerate(objects):
      if a == t:
        continue
      for relation, holds in RELATIONS.items():
        matches = [o for i, o in enumerate(objects)
                   if i != a and o.kind == target.kind and holds(o.box, anchor.box)]
        if matches == [target]:
          out.append((t, a, relation))
  return out


@base.register('grounding', GroundingConfig)
class GroundingTask:
  """meta: gt_box, point, answer, answer_type ('bbox' | 'point'), expression, expression_type, target,
  objects [{'shape', 'color', 'box'}], image_size (width, height), think."""

  def __init__(self, cfg: GroundingConfig):
    self.cfg = cfg

  @property
  def reward_names(self) -> tuple[str, ...]:
    if self.cfg.answer == 'box':  # UniVG-R1: IoU + format
      return ('iou_box_inclusive', 'univg_format')
    return ('point_in_box', 'answer_type_format')  # GuirlVG: point inside the target box

  @property
  def reward_weights(self) -> tuple[float, ...]:
    return (1.0, 1.0)

  def example(self, seed: int) -> dict[str, Any]:
    cfg = self.cfg
    rng = np.random.default_rng(seed)
    height, width = cfg.image_size
    kind = str(cfg.expression_types[int(rng.integers(len(cfg.expression_types)))])
    for _ in range(MAX_SCENE_TRIES):
      count = int(rng.integers(cfg.num_objects[0], cfg.num_objects[1] + 1))
      objects = random_scene(rng, count, height, width, cfg.object_size, cfg.shapes, cfg.colors)
      if kind == 'attribute':
        target = int(rng.integers(count))
        expression = f'the {objects[target].name}'
        break
      candidates = relation_candidates(objects)
      # Prefer triples where the shape alone is ambiguous: the relation then carries information.
      informative = [c for c in candidates if sum(o.kind == objects[c[0]].kind for o in objects) > 1]
      pool = informative or candidates
      if pool:
        target, anchor, relation = pool[int(rng.integers(len(pool)))]
        expression = f'the {objects[target].kind} {relation} the {objects[anchor].name}'
        break
    else:
      raise ValueError(f'no scene with a unique relation expression in {MAX_SCENE_TRIES} tries; '
                       f'check object_size and image_size')
    background = shapes_lib.BACKGROUNDS[int(rng.integers(len(shapes_lib.BACKGROUNDS)))]
    image = shapes_lib.draw(objects, height, width, background)
    box = list(objects[target].box)
    point = list(shapes_lib.on_object_point(objects[target]))
    if cfg.answer == 'box':
      answer, answer_type = render_box(box), 'bbox'
      hint = ('The answer is the bounding box (x1,y1),(x2,y2) in pixels: the top-left corner and the '
              'bottom-right corner, as integers.')
      ask = f'Locate {expression} in the image and output its bounding box.'
    else:
      answer, answer_type = render_point(point), 'point'
      hint = 'The answer is a point (x,y) on the object, in pixels, as integers.'
      ask = f'Point to {expression} in the image.'
    if cfg.tell_size:
      ask += f' The image is {width} pixels wide and {height} pixels high.'
    meta = {'gt_box': box, 'point': point, 'answer': answer, 'answer_type': answer_type, 'expression': expression,
            'expression_type': kind, 'target': target,
            'objects': [{'shape': o.kind, 'color': o.color, 'box': list(o.box)} for o in objects],
            'image_size': [width, height], 'think': cfg.think}
    return {'prompt': templates.apply(ask, think=cfg.think, answer_hint=hint), 'images': [image], 'meta': meta}

  def random_answer_completion(self, meta: Mapping[str, Any], seed: int) -> str:
    rng = base.completion_rng(seed)
    width, height = meta['image_size']
    if meta['answer_type'] == 'point':
      answer = render_point((rng.integers(width), rng.integers(height)))
    else:
      x1, x2 = sorted(int(v) for v in rng.integers(0, width + 1, size=2))
      y1, y2 = sorted(int(v) for v in rng.integers(0, height + 1, size=2))
      answer = render_box((x1, y1, x2, y2))
    return templates.format_completion(answer, think=self.cfg.think)
