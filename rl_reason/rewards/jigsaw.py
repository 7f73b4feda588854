"""Jigsaw-R1 rewards for the "full" question type: the answer is the grid of original positions.

The answer is read from the single <answer> block, or from the whole completion when there is
none (non-think mode). Accuracy rewards count a prediction only if it is exactly rows * cols
integers forming a permutation of 1..rows*cols; anything else scores 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rl_reason.rewards import parsing
from rl_reason.rewards.format import is_think_answer
from rl_reason.rewards.registry import register

GRID_META = ('rows', 'cols', 'gt')


def answer_grid(text: str) -> list[int] | None:
  """The integers of the <answer> block (of the whole text if there is no single answer block)."""
  answer = parsing.extract_tag(text, 'answer')
  return parsing.parse_int_grid(text if answer is None else answer)


def predicted_permutation(text: str, rows: int, cols: int) -> list[int] | None:
  """The predicted grid if it is a permutation of 1..rows*cols, else None."""
  grid = answer_grid(text)
  if grid is None or sorted(grid) != list(range(1, rows * cols + 1)):
    return None
  return grid


def connection_score(pred: list[int], gt: list[int], rows: int, cols: int) -> float | None:
  """The fraction of the 2mn - m - n internal edges of the predicted reconstruction that are right.

  The prediction moves the piece now at X to position pred[X]. An edge between reconstructed
  positions P (left of, or above) Q is right iff the pieces moved there were originally adjacent
  the same way: the original position of the piece at P directly left of (above) that of Q.

  Returns:
    The fraction, or None for a grid without internal edges (a single piece).
  """
  edges = 2 * rows * cols - rows - cols
  if edges == 0:
    return None
  origin = [0] * (rows * cols)  # origin[P]: 0-indexed original position of the piece moved to P
  for current, target in enumerate(pred):
    origin[target - 1] = gt[current] - 1
  correct = 0
  for r in range(rows):
    for c in range(cols):
      here = origin[r * cols + c]
      if c + 1 < cols:
        correct += origin[r * cols + c + 1] == here + 1 and here % cols + 1 < cols
      if r + 1 < rows:
        correct += origin[(r + 1) * cols + c] == here + cols
  return correct / edges


@register('jigsaw_grid', range=(0.0, 1.0), required_meta=GRID_META, source='Jigsaw-R1')
def jigsaw_grid(text: str, meta: Mapping[str, Any]) -> float:
  """Fraction of positions whose predicted original index is right (0 unless a valid permutation)."""
  pred = predicted_permutation(text, meta['rows'], meta['cols'])
  if pred is None:
    return 0.0
  return sum(p == g for p, g in zip(pred, meta['gt'])) / len(pred)


@register('jigsaw_solved', range=(0.0, 1.0), required_meta=GRID_META, source='Jigsaw-R1 (exact solve)')
def jigsaw_solved(text: str, meta: Mapping[str, Any]) -> float:
  """1.0 iff every position is right (the exact-solve rate)."""
  return float(predicted_permutation(text, meta['rows'], meta['cols']) == list(meta['gt']))


@register('jigsaw_connections', range=(0.0, 1.0), required_meta=GRID_META,
          source='Jigsaw-R1 (score_jigsaw_connections)')
def jigsaw_connections(text: str, meta: Mapping[str, Any]) -> float | None:
  """Fraction of internal edges of the predicted reconstruction joining true neighbours."""
  rows, cols = meta['rows'], meta['cols']
  pred = predicted_permutation(text, rows, cols)
  if pred is None:
    return 0.0
  return connection_score(pred, list(meta['gt']), rows, cols)


@register('jigsaw_format', range=(0.0, 1.0), required_meta=('rows', 'cols'), optional_meta=('think', 'prefill_think'),
          source='Jigsaw-R1')
def jigsaw_format(text: str, meta: Mapping[str, Any]) -> float:
  """1.0 iff the form is right and the answer parses to rows*cols integers in 1..rows*cols.

  Think mode (meta 'think', default True) also needs the whole completion to be one think block
  and one answer block (a prefilled '<think>' counted, meta 'prefill_think'); non-think mode needs
  the whole completion to be the grid (Jigsaw-R1).
  """
  mn = meta['rows'] * meta['cols']
  if meta.get('think', True):
    if not is_think_answer(parsing.with_prefill(text, meta)):
      return 0.0
    grid = answer_grid(text)
  else:
    grid = parsing.parse_int_grid(text)
  return float(grid is not None and len(grid) == mn and all(1 <= v <= mn for v in grid))
