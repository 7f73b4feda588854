"""Solid shapes on a plain canvas, with exact pixel masks: the scenes of grounding, classification, multi-choice.

A shape is drawn inside a box [x1, y1, x2, y2] (pixels, x2 and y2 exclusive) and touches all four
sides of it, so the box is the tight bounding box of the drawn pixels. Colours are far apart in
RGB and never equal to a background, so a pixel's colour tells which object it belongs to.
"""

from __future__ import annotations

import dataclasses

import numpy as np

SHAPES = ('square', 'circle', 'triangle', 'diamond', 'cross')
COLORS = {
    'red': (220, 30, 30),
    'green': (30, 170, 50),
    'blue': (40, 70, 220),
    'yellow': (235, 215, 30),
    'purple': (140, 50, 190),
    'orange': (245, 140, 20),
    'cyan': (30, 200, 210),
    'black': (20, 20, 20),
}
BACKGROUNDS = ((245, 245, 245), (225, 225, 230), (250, 240, 225), (230, 240, 250))


@dataclasses.dataclass(frozen=True)
class Shape:
  """One drawn object: its kind, colour name and tight box [x1, y1, x2, y2] (exclusive ends)."""

  kind: str
  color: str
  box: tuple[int, int, int, int]

  @property
  def name(self) -> str:
    return f'{self.color} {self.kind}'

  @property
  def center(self) -> tuple[float, float]:
    x1, y1, x2, y2 = self.box
    return (x1 + x2) / 2, (y1 + y2) / 2


def shape_mask(kind: str, height: int, width: int) -> np.ndarray:
  """bool [height, width]: the shape filling a height x width box, touching all four sides."""
  if height < 1 or width < 1:
    raise ValueError(f'a shape needs a box of at least 1x1 pixels, got {height}x{width}')
  # Pixel centres in [-1, 1] box coordinates.
  y = (np.arange(height) + 0.5) / height * 2 - 1
  x = (np.arange(width) + 0.5) / width * 2 - 1
  yy, xx = np.meshgrid(y, x, indexing='ij')
  if kind == 'square':
    mask = np.ones((height, width), bool)
  elif kind == 'circle':
    mask = xx**2 + yy**2 <= 1.0
  elif kind == 'triangle':  # apex at the top centre, base along the bottom
    mask = np.abs(xx) <= (yy + 1) / 2
  elif kind == 'diamond':
    mask = np.abs(xx) + np.abs(yy) <= 1.0
  elif kind == 'cross':
    mask = (np.abs(xx) <= 1 / 3) | (np.abs(yy) <= 1 / 3)
  else:
    raise ValueError(f'shape {kind!r} unknown; valid: {list(SHAPES)}')
  # Discretization can miss an edge row or column (thin tips); the middle line always reaches it.
  mask[:, width // 2] |= kind != 'square'
  mask[height // 2, :] |= kind in ('diamond', 'circle', 'cross')
  mask[-1, :] |= kind == 'triangle'
  return mask


def place_boxes(rng: np.random.Generator, count: int, height: int, width: int, size: tuple[int, int],
                gap: int = 2, margin: int = 1, max_tries: int = 1000) -> list[tuple[int, int, int, int]]:
  """`count` random boxes with sides in [size[0], size[1]], `gap` pixels apart and `margin` from the border.

  Raises:
    ValueError: if they do not fit after max_tries attempts (the canvas is too crowded).
  """
  low, high = size
  if not 1 <= low <= high or high + 2 * margin > min(height, width):
    raise ValueError(f'object size {size} does not fit a {height}x{width} canvas with margin {margin}')
  boxes: list[tuple[int, int, int, int]] = []
  for _ in range(max_tries):
    if len(boxes) == count:
      return boxes
    h, w = (int(v) for v in rng.integers(low, high + 1, size=2))
    x1 = int(rng.integers(margin, width - margin - w + 1))
    y1 = int(rng.integers(margin, height - margin - h + 1))
    box = (x1, y1, x1 + w, y1 + h)
    if all(box[0] >= b[2] + gap or b[0] >= box[2] + gap or box[1] >= b[3] + gap or b[1] >= box[3] + gap
           for b in boxes):
      boxes.append(box)
  if len(boxes) == count:
    return boxes
  raise ValueError(f'could not place {count} objects of size {size} on a {height}x{width} canvas; '
                   f'use a larger image, smaller objects or fewer of them')


def draw(shapes: list[Shape], height: int, width: int, background: tuple[int, int, int]) -> np.ndarray:
  """uint8 [height, width, 3]: the shapes, solid colours, on a plain background."""
  canvas = np.empty((height, width, 3), np.uint8)
  canvas[:] = background
  for shape in shapes:
    x1, y1, x2, y2 = shape.box
    mask = shape_mask(shape.kind, y2 - y1, x2 - x1)
    canvas[y1:y2, x1:x2][mask] = COLORS[shape.color]
  return canvas


def on_object_point(shape: Shape) -> tuple[int, int]:
  """An (x, y) pixel of the shape nearest to its box centre (for a cross or triangle, the centre may miss)."""
  x1, y1, x2, y2 = shape.box
  mask = shape_mask(shape.kind, y2 - y1, x2 - x1)
  ys, xs = np.nonzero(mask)
  cx, cy = (x2 - x1 - 1) / 2, (y2 - y1 - 1) / 2
  i = int(np.argmin((xs - cx)**2 + (ys - cy)**2))
  return x1 + int(xs[i]), y1 + int(ys[i])


def check_names(kinds, colors) -> None:
  """Raises for unknown shape or colour names."""
  unknown = [k for k in kinds if k not in SHAPES] + [c for c in colors if c not in COLORS]
  if unknown:
    raise ValueError(f'unknown shapes/colours {unknown}; valid shapes {list(SHAPES)}, colours {list(COLORS)}')
