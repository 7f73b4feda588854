"""Jigsaw-R1 puzzles on procedural images: shuffle an m x n grid of pieces, ask for the layout.

Conventions (Jigsaw-R1, "forward" ground truth): pieces are indexed row-major 1..mn; after the
shuffle, gt[X - 1] = Y means the piece now at position X originally came from position Y. The
shuffle is uniform over all permutations, identity included. The answer is the grid of Y values
written row by row: numbers separated by single spaces, rows by newlines ("2 1\n4 3").

Only the "full" question type (answer the whole grid) exists so far; `JigsawConfig.question_type`
is where "multiple", "pair" and "single" will plug in.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from rl_reason.tasks import images as images_lib

QUESTION_TYPES = ('full',)
PROMPT_STYLES = ('compact', 'full')


@dataclasses.dataclass(frozen=True)
class JigsawConfig:
  """Jigsaw task settings.

  Attributes:
    rows: grid rows m (before the optional swap).
    cols: grid columns n.
    image_size: procedural image (height, width) in pixels.
    shuffle_mn: swap rows and columns with probability 0.5.
    think: completions are "<think>...</think><answer>...</answer>"; else the bare answer.
    prompt_style: 'compact' (one short sentence: the tiny CPU model pays for every prompt token)
      or 'full' (the Jigsaw-R1 wording, paraphrased).
    question_type: what is asked; only 'full' (the whole grid) so far.
  """

  rows: int = 2
  cols: int = 2
  image_size: tuple[int, int] = (32, 32)
  shuffle_mn: bool = True
  think: bool = True
  prompt_style: str = 'compact'
  question_type: str = 'full'

  def __post_init__(self):
    # Configs arrive from ConfigDicts and JSON with lists; a tuple keeps the dataclass hashable.
    object.__setattr__(self, 'image_size', tuple(self.image_size))
    if self.rows < 1 or self.cols < 1 or self.rows * self.cols < 2:
      raise ValueError(f'task grid must have at least 2 pieces, got rows={self.rows}, cols={self.cols}')
    if len(self.image_size) != 2:
      raise ValueError(f'task.image_size must be (height, width), got {self.image_size}')
    height, width = self.image_size
    # With shuffle_mn either grid orientation must leave every piece at least one pixel.
    need_h, need_w = (max(self.rows, self.cols),) * 2 if self.shuffle_mn else (self.rows, self.cols)
    if height < need_h or width < need_w:
      raise ValueError(f'task.image_size {self.image_size} is too small for a {self.rows}x{self.cols} grid '
                       f'(shuffle_mn={self.shuffle_mn}): need at least ({need_h}, {need_w})')
    if self.prompt_style not in PROMPT_STYLES:
      raise ValueError(f'task.prompt_style {self.prompt_style!r} unknown; valid: {list(PROMPT_STYLES)}')
    if self.question_type not in QUESTION_TYPES:
      raise ValueError(f'task.question_type {self.question_type!r} unknown; valid: {list(QUESTION_TYPES)}')


def _split(image: np.ndarray, rows: int, cols: int) -> np.ndarray:
  """Pieces [rows * cols, h, w, C] of an image whose sides are multiples of the grid, row-major."""
  height, width = image.shape[:2]
  piece_h, piece_w = height // rows, width // cols
  pieces = image.reshape(rows, piece_h, cols, piece_w, -1).transpose(0, 2, 1, 3, 4)
  return pieces.reshape(rows * cols, piece_h, piece_w, -1)


def _join(pieces: np.ndarray, rows: int, cols: int) -> np.ndarray:
  """Inverse of `_split`."""
  _, piece_h, piece_w, channels = pieces.shape
  grid = pieces.reshape(rows, cols, piece_h, piece_w, channels).transpose(0, 2, 1, 3, 4)
  return grid.reshape(rows * piece_h, cols * piece_w, channels)


def crop_to_grid(image: np.ndarray, rows: int, cols: int) -> np.ndarray:
  """Crops to H' = floor(H / rows) * rows, W' = floor(W / cols) * cols (top-left corner kept)."""
  height, width = image.shape[:2]
  if height < rows or width < cols:
    raise ValueError(f'image of shape {image.shape} is too small for a {rows}x{cols} grid')
  return image[:height // rows * rows, :width // cols * cols]


def make_puzzle(image: np.ndarray, rows: int, cols: int, rng: np.random.Generator) -> tuple[np.ndarray, list[int]]:
  """Shuffles the pieces of the cropped image uniformly.

  Args:
    image: uint8 [H, W, C].
    rows: grid rows m.
    cols: grid columns n.
    rng: source of the permutation.

  Returns:
    (shuffled image [H', W', C], gt) with gt[X - 1] = Y: the piece now at position X came from Y.
  """
  pieces = _split(crop_to_grid(image, rows, cols), rows, cols)
  source = rng.permutation(rows * cols)  # source[X] = Y, 0-indexed
  return _join(pieces[source], rows, cols), [int(y) + 1 for y in source]


def reassemble(shuffled_image: np.ndarray, gt: list[int], rows: int, cols: int) -> np.ndarray:
  """Puts every piece back at its original position: the inverse of `make_puzzle`."""
  pieces = _split(shuffled_image, rows, cols)
  original = np.empty_like(pieces)
  original[np.asarray(gt) - 1] = pieces
  return _join(original, rows, cols)


def render_answer(grid_gt: list[int], rows: int, cols: int) -> str:
  """The canonical answer: rows on separate lines, numbers in a row separated by single spaces."""
  if len(grid_gt) != rows * cols:
    raise ValueError(f'a {rows}x{cols} grid needs {rows * cols} numbers, got {len(grid_gt)}')
  return '\n'.join(' '.join(str(v) for v in grid_gt[r * cols:(r + 1) * cols]) for r in range(rows))


def format_completion(answer: str, think: bool) -> str:
  """The shortest completion in the expected format around `answer` (empty reasoning)."""
  return f'<think></think><answer>{answer}</answer>' if think else answer


def render_prompt(rows: int, cols: int, *, think: bool, style: str) -> str:
  """The question text for a rows x cols "full" puzzle (the image part is added by the chat template)."""
  if style == 'compact':
    # The format is taught by the supervised warm-up, so the prompt only names the grid.
    return f'Jigsaw {rows}x{cols}. Original index of each piece?'
  if style != 'full':
    raise ValueError(f'prompt style {style!r} unknown; valid: {list(PROMPT_STYLES)}')
  layout = render_answer(list(range(1, rows * cols + 1)), rows, cols)
  lines = [
      f'The image was cut into {rows} rows and {cols} columns of pieces, and the pieces were shuffled. '
      f'Solve this {rows}x{cols} jigsaw puzzle to restore the original image.',
      f'Positions are numbered row by row from 1 (top left) to {rows * cols} (bottom right):',
      layout,
      'For every piece, find where it was in the original image: if the piece now at position X '
      'originally belonged at position Y, write Y at position X.',
  ]
  if think:
    lines.append('First think it through inside <think> </think> tags, '
                 'then give the final answer inside <answer> </answer> tags.')
  else:
    lines.append('Give only the final answer, with no explanation.')
  lines.append(f'The answer is a {rows}x{cols} grid of numbers: one row per line, numbers separated by spaces.')
  return '\n'.join(lines)


class JigsawTask:
  """Deterministic examples: `example(seed)` depends on nothing but the config and the seed."""

  def __init__(self, cfg: JigsawConfig):
    self.cfg = cfg

  def example(self, seed: int) -> dict[str, Any]:
    """A puzzle: {'prompt', 'images': [uint8 HxWx3], 'meta': {'rows', 'cols', 'gt', 'answer', 'think'}}."""
    cfg = self.cfg
    rng = np.random.default_rng(seed)
    image = images_lib.procedural_image(rng, *cfg.image_size)
    rows, cols = cfg.rows, cfg.cols
    # Always draw, so the permutation stream does not depend on whether rows == cols.
    if cfg.shuffle_mn and rng.random() < 0.5:
      rows, cols = cols, rows
    shuffled, gt = make_puzzle(image, rows, cols, rng)
    return {
        'prompt': render_prompt(rows, cols, think=cfg.think, style=cfg.prompt_style),
        'images': [shuffled],
        'meta': {'rows': rows, 'cols': cols, 'gt': gt, 'answer': render_answer(gt, rows, cols),
                 'think': cfg.think},
    }

  def random_answer_completion(self, meta: dict[str, Any], seed: int) -> str:
    """A well-formed completion with a uniformly random grid (format warm-up: teaches form, not answers)."""
    rows, cols = meta['rows'], meta['cols']
    grid = (np.random.default_rng(seed).permutation(rows * cols) + 1).tolist()
    return format_completion(render_answer(grid, rows, cols), self.cfg.think)
