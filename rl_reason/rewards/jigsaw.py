"""Jigsaw-R1 rewards for the "full" question type: the answer is the grid of original positions.

The answer is read from the single <answer> block, or from the whole completion when there is
none (non-think mode). A prediction counts only if it is exactly rows * cols integers forming a
permutation of 1..rows*cols; anything else scores 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rl_reason.rewards import parsing
from rl_reason.rewards.format import is_think_answer
from rl_reason.rewards.registry import register


def _answer_grid(text: str) -> list[int] | None:
  answer = parsing.extract_tag(text, 'answer')
  return parsing.parse_int_grid(text if answer is None else answer)


def predicted_permutation(text: str, rows: int, cols: int) -> list[int] | None:
  """The predicted grid if it is a permutation of 1..rows*cols, else None."""
  grid = _answer_grid(text)
  if grid is None or sorted(grid) != list(range(1, rows * cols + 1)):
    return None
  return grid


def connection_score(pred: list[int], gt: list[int], rows: int, cols: int) -> float | None:
  """The fraction of the 2mn - m - n internal edges whose two pieces were neighbours the same way.

  An edge between current positions a (left of / above) b is correct iff the piece at a came from
  the position directly left of / above the original position of the piece at b. None when the
  grid has no internal edge.
  """
  edges = 2 * rows * cols - rows - cols
  if edges == 0:
    return None
  # gt[X] = Y: the piece now at X came from Y; where does piece Y sit in the solved... no: origin of
  # each predicted piece id is simply its id (ids are original positions), so compare ids directly.
  del gt
  correct = 0
  for r in range(rows):
    for c in range(cols):
      here = pred[r * cols + c] - 1
      if c + 1 < cols:
        right = pred[r * cols + c + 1] - 1
        correct += here // cols == right // cols and right % cols - here % cols == 1
      if r + 1 < rows:
        below = pred[(r + 1) * cols + c] - 1
        correct += here % cols == below % cols and below // cols - here // cols == 1
  return correct / edges
