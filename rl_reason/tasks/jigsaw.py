"""Jigsaw-R1 puzzles on procedural (or given) images: shuffle an m x n grid of pieces, ask about the layout.

Conventions (Jigsaw-R1, "forward" ground truth): pieces are indexed row-major 1..mn; after the
shuffle, gt[X - 1] = Y means the piece now at position X originally came from position Y. The
shuffle is uniform over all permutations, identity included.

Question types (`JigsawConfig.question_type`):
- 'full': the whole grid of Y values, row by row: numbers separated by single spaces, rows by
  newlines ("2 1\\n4 3"). Answer type 'grid'.
- 'multiple': which of `num_choices` lettered candidate grids is the ground truth (distractors are
  distinct random permutations, never the ground truth). Answer: a letter.
- 'pair': two current positions k != l; where were their pieces relative to each other in the
  original image? 8 options (directly left/right/above/below, upper-left/upper-right/lower-left/
  lower-right), 2 when m = 1 (left/right) or n = 1 (above/below); shuffled. Answer: a letter.
- 'single': the original position of the piece now at position k. Answer: a number.
- 'box': the image is not cut; inside each of the m x n regions a box of one common size sits at a
  random place, and the boxes' contents are permuted (the box of region k always moves). Answer:
  where the content now in region k's box came from, as pixel coordinates [x1, y1, x2, y2] of
  the given image, x2 and y2 exclusive (meta 'gt_box'; meta 'image_size' is (width, height), as
  the grounding rewards read it).

`mask_ratio` > 0 blackens each piece's border band (Jigsaw-R1): int(side * ratio) pixels on the
image border, half that between pieces. Grid types mask the shuffled image; 'box' masks the image
before the boxes move (the boxes are placed inside the unmasked part).
"""

from __future__ import annotations

import dataclasses
import math
import string
from collections.abc import Mapping
from typing import Any

import numpy as np

from rl_reason.tasks import base
from rl_reason.tasks import images as images_lib
from rl_reason.tasks import templates

QUESTION_TYPES = ('full', 'multiple', 'pair', 'single', 'box')
ANSWER_TYPES = {'full': 'grid', 'multiple': 'letter', 'pair': 'letter', 'single': 'digit', 'box': 'bbox'}
PROMPT_STYLES = ('compact', 'full')
# Pair options in Jigsaw-R1's order; the answer relates the original positions of the two pieces.
PAIR_RELATIONS = ('directly to the left of', 'directly to the right of', 'directly above', 'directly below',
                  'on the upper left of', 'on the upper right of', 'on the lower left of', 'on the lower right of')
ANSWER_HINTS = {
    'letter': 'The answer is a single letter.',
    'digit': 'The answer is a single number.',
    'bbox': 'The answer is a bounding box [x1, y1, x2, y2] in pixels, as integers separated by commas.',
}


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
    question_type: what is asked: 'full', 'multiple', 'pair', 'single' or 'box' (module docstring).
    num_choices: candidate grids of a 'multiple' question (Jigsaw-R1 n_c).
    mask_ratio: border band blackened around each piece, as a fraction of its side, in [0, 0.5).
    box_size: ('box') smallest and largest box side as fractions of the region side (Jigsaw-R1
      width_min/max = height_min/max = 0.1/0.6).
  """

  rows: int = 2
  cols: int = 2
  image_size: tuple[int, int] = (32, 32)
  shuffle_mn: bool = True
  think: bool = True
  prompt_style: str = 'compact'
  question_type: str = 'full'
  num_choices: int = 4
  mask_ratio: float = 0.0
  box_size: tuple[float, float] = (0.1, 0.6)

  def __post_init__(self):
    # Configs arrive from ConfigDicts and JSON with lists; a tuple keeps the dataclass hashable.
    object.__setattr__(self, 'image_size', tuple(self.image_size))
    object.__setattr__(self, 'box_size', tuple(float(v) for v in self.box_size))
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
    if not 2 <= self.num_choices <= 26:
      raise ValueError(f'task.num_choices must be in [2, 26], got {self.num_choices}')
    if self.question_type == 'multiple' and math.factorial(self.rows * self.cols) < self.num_choices:
      raise ValueError(f'a {self.rows}x{self.cols} grid has only {math.factorial(self.rows * self.cols)} layouts, '
                       f'fewer than task.num_choices={self.num_choices}')
    if not 0.0 <= self.mask_ratio < 0.5:
      raise ValueError(f'task.mask_ratio must be in [0, 0.5), got {self.mask_ratio}')
    if len(self.box_size) != 2 or not 0.0 < self.box_size[0] <= self.box_size[1] <= 1.0:
      raise ValueError(f'task.box_size must be (min, max) with 0 < min <= max <= 1, got {self.box_size}')
    if self.question_type == 'box':
      grids = {(self.rows, self.cols), (self.cols, self.rows)} if self.shuffle_mn else {(self.rows, self.cols)}
      for rows, cols in grids:
        check_box_fit(height // rows, width // cols, rows, cols, self.mask_ratio, self.box_size)


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


def cell_borders(piece_h: int, piece_w: int, row: int, col: int, rows: int, cols: int,
                 mask_ratio: float) -> tuple[int, int, int, int]:
  """Masked band (top, bottom, left, right) of one cell: int(side * ratio) at the image border, half inside."""
  band_h, band_w = int(piece_h * mask_ratio), int(piece_w * mask_ratio)
  top = band_h if row == 0 else band_h // 2
  bottom = band_h if row == rows - 1 else band_h // 2
  left = band_w if col == 0 else band_w // 2
  right = band_w if col == cols - 1 else band_w // 2
  return top, bottom, left, right


def mask_borders(image: np.ndarray, rows: int, cols: int, mask_ratio: float) -> np.ndarray:
  """A copy with each cell's border band set to 0 (Jigsaw-R1 mask_image)."""
  out = image.copy()
  piece_h, piece_w = image.shape[0] // rows, image.shape[1] // cols
  for r in range(rows):
    for c in range(cols):
      top, bottom, left, right = cell_borders(piece_h, piece_w, r, c, rows, cols, mask_ratio)
      cell = out[r * piece_h:(r + 1) * piece_h, c * piece_w:(c + 1) * piece_w]
      cell[:top] = 0
      cell[piece_h - bottom:] = 0
      cell[:, :left] = 0
      cell[:, piece_w - right:] = 0
  return out


def _box_sides(piece_h: int, piece_w: int, box_size: tuple[float, float]) -> tuple[tuple[int, int], tuple[int, int]]:
  """Inclusive (min, max) box height and width in pixels; at least one pixel."""
  low, high = box_size
  return ((max(1, int(low * piece_h)), max(1, int(high * piece_h))),
          (max(1, int(low * piece_w)), max(1, int(high * piece_w))))


def check_box_fit(piece_h: int, piece_w: int, rows: int, cols: int, mask_ratio: float,
                  box_size: tuple[float, float]) -> None:
  """Raises unless the largest box fits inside the unmasked part of every cell."""
  (_, max_h), (_, max_w) = _box_sides(piece_h, piece_w, box_size)
  for r in range(rows):
    for c in range(cols):
      top, bottom, left, right = cell_borders(piece_h, piece_w, r, c, rows, cols, mask_ratio)
      if piece_h - top - bottom < max_h or piece_w - left - right < max_w:
        raise ValueError(f'a {max_h}x{max_w} box does not fit inside the unmasked part of a {piece_h}x{piece_w} '
                         f'piece of a {rows}x{cols} grid (mask_ratio={mask_ratio}); use a larger image, '
                         f'a smaller box_size or mask_ratio')


def make_box_puzzle(image: np.ndarray, rows: int, cols: int, k: int, mask_ratio: float,
                    box_size: tuple[float, float], rng: np.random.Generator):
  """Swaps equal-size boxes between the regions of the cropped (and masked) image (Jigsaw-R1 'box').

  Args:
    image: uint8 [H, W, C].
    rows: region rows m.
    cols: region columns n.
    k: the asked region, 1..mn; its box always moves.
    mask_ratio: border band blackened before the boxes are placed.
    box_size: (min, max) box side as fractions of the region side.
    rng: source of the box size, places and permutation.

  Returns:
    (puzzle image, original image (cropped and masked), boxes, sources): boxes[j] = [x1, y1, x2, y2]
    (exclusive ends) of region j + 1's box; sources[j] = i + 1: the content now in box j came
    from box i.
  """
  original = crop_to_grid(image, rows, cols)
  if mask_ratio > 0:
    original = mask_borders(original, rows, cols, mask_ratio)
  piece_h, piece_w = original.shape[0] // rows, original.shape[1] // cols
  check_box_fit(piece_h, piece_w, rows, cols, mask_ratio, box_size)
  (min_h, max_h), (min_w, max_w) = _box_sides(piece_h, piece_w, box_size)
  box_w = int(rng.integers(min_w, max_w + 1))
  box_h = int(rng.integers(min_h, max_h + 1))
  boxes = []
  for r in range(rows):
    for c in range(cols):
      top, bottom, left, right = cell_borders(piece_h, piece_w, r, c, rows, cols, mask_ratio)
      x1 = c * piece_w + int(rng.integers(left, piece_w - right - box_w + 1))
      y1 = r * piece_h + int(rng.integers(top, piece_h - bottom - box_h + 1))
      boxes.append([x1, y1, x1 + box_w, y1 + box_h])
  sources = [int(i) for i in rng.permutation(rows * cols)]
  if sources[k - 1] == k - 1:  # the asked box must move: swap it with another one (Jigsaw-R1)
    other = int(rng.choice([j for j in range(rows * cols) if j != k - 1]))
    sources[k - 1], sources[other] = sources[other], sources[k - 1]
  puzzle = original.copy()
  for j, i in enumerate(sources):
    tx1, ty1, tx2, ty2 = boxes[j]
    sx1, sy1, sx2, sy2 = boxes[i]
    puzzle[ty1:ty2, tx1:tx2] = original[sy1:sy2, sx1:sx2]
  return puzzle, original, boxes, [i + 1 for i in sources]


def reassemble_boxes(puzzle: np.ndarray, boxes: list[list[int]], sources: list[int]) -> np.ndarray:
  """Moves every box's content back to where it came from: the inverse of `make_box_puzzle`."""
  restored = puzzle.copy()
  for j, i in enumerate(sources):
    sx1, sy1, sx2, sy2 = boxes[j]
    tx1, ty1, tx2, ty2 = boxes[i - 1]
    restored[ty1:ty2, tx1:tx2] = puzzle[sy1:sy2, sx1:sx2]
  return restored


def render_answer(grid_gt: list[int], rows: int, cols: int) -> str:
  """The canonical answer: rows on separate lines, numbers in a row separated by single spaces."""
  if len(grid_gt) != rows * cols:
    raise ValueError(f'a {rows}x{cols} grid needs {rows * cols} numbers, got {len(grid_gt)}')
  return '\n'.join(' '.join(str(v) for v in grid_gt[r * cols:(r + 1) * cols]) for r in range(rows))


def render_box(box: list[int]) -> str:
  return '[' + ', '.join(str(int(v)) for v in box) + ']'


def format_completion(answer: str, think: bool) -> str:
  """The shortest completion in the expected format around `answer` (empty reasoning)."""
  return templates.format_completion(answer, think=think)


def pair_relation(k_original: int, l_original: int, cols: int) -> str:
  """How original position k_original lies relative to l_original (1-indexed, row-major), as in PAIR_RELATIONS."""
  k_row, k_col = divmod(k_original - 1, cols)
  l_row, l_col = divmod(l_original - 1, cols)
  if k_row == l_row:
    return PAIR_RELATIONS[0] if k_col < l_col else PAIR_RELATIONS[1]
  if k_col == l_col:
    return PAIR_RELATIONS[2] if k_row < l_row else PAIR_RELATIONS[3]
  if k_row < l_row:
    return PAIR_RELATIONS[4] if k_col < l_col else PAIR_RELATIONS[5]
  return PAIR_RELATIONS[6] if k_col < l_col else PAIR_RELATIONS[7]


def pair_relations(rows: int, cols: int) -> tuple[str, ...]:
  """The options a pair question offers: all 8, or the 2 a single row / column allows."""
  if rows == 1:
    return PAIR_RELATIONS[:2]
  if cols == 1:
    return PAIR_RELATIONS[2:4]
  return PAIR_RELATIONS


def _layout(rows: int, cols: int) -> str:
  return render_answer(list(range(1, rows * cols + 1)), rows, cols)


def _grid_header(rows: int, cols: int) -> list[str]:
  return [
      f'The image was cut into {rows} rows and {cols} columns of pieces, and the pieces were shuffled. '
      f'Solve this {rows}x{cols} jigsaw puzzle to restore the original image.',
      f'Positions are numbered row by row from 1 (top left) to {rows * cols} (bottom right):',
      _layout(rows, cols),
  ]


CONVENTION = ('For every piece, find where it was in the original image: if the piece now at position X '
              'originally belonged at position Y, write Y at position X.')


def render_prompt(rows: int, cols: int, *, think: bool, style: str) -> str:
  """The question text for a rows x cols "full" puzzle (the image part is added by the chat template)."""
  if style == 'compact':
    # The format is taught by the supervised warm-up, so the prompt only names the grid.
    return f'Jigsaw {rows}x{cols}. Original index of each piece?'
  if style != 'full':
    raise ValueError(f'prompt style {style!r} unknown; valid: {list(PROMPT_STYLES)}')
  lines = _grid_header(rows, cols) + [CONVENTION, templates.instruction(think=think)]
  lines.append(f'The answer is a {rows}x{cols} grid of numbers: one row per line, numbers separated by spaces.')
  return '\n'.join(lines)


def render_question(question_type: str, rows: int, cols: int, *, think: bool, style: str,
                    choices: list[str] | None = None, k: int | None = None, l: int | None = None) -> str:
  """The text of any question type; `choices` are the option texts, k and l the asked positions."""
  if question_type == 'full':
    return render_prompt(rows, cols, think=think, style=style)
  if style not in PROMPT_STYLES:
    raise ValueError(f'prompt style {style!r} unknown; valid: {list(PROMPT_STYLES)}')
  letters = string.ascii_uppercase
  if question_type == 'multiple':
    options = '\n\n'.join(f'({letters[i]})\n{choice}' for i, choice in enumerate(choices))
    if style == 'compact':
      return f'Jigsaw {rows}x{cols}. Which layout?\n{options}'
    body = [CONVENTION, f'Select the correct answer from the following {len(choices)} choices:', options]
  elif question_type == 'pair':
    options = '\n'.join(f'({letters[i]}) {choice}' for i, choice in enumerate(choices))
    if style == 'compact':
      return f'Jigsaw {rows}x{cols}. Pieces {k} and {l}?\n{options}'
    body = [f'For the pieces now at positions {k} and {l}, find how they were placed relative to each other '
            f'in the original image. Select the correct answer from the following {len(choices)} choices:', options]
  elif question_type == 'single':
    if style == 'compact':
      return f'Jigsaw {rows}x{cols}. Original index of piece {k}?'
    body = [f'For the piece now at position {k}, find its position in the original image.']
  elif question_type == 'box':
    if style == 'compact':
      return f'Jigsaw {rows}x{cols} boxes. Original box of region {k}?'
    lines = [
        f'The image is divided into {rows}x{cols} regions, numbered row by row from 1 (top left) to '
        f'{rows * cols} (bottom right):',
        _layout(rows, cols),
        'Boxes of equal size were swapped between the regions, so parts of the image look out of place. '
        f'Find where the box now in region {k} was originally.',
    ]
    return templates.apply('\n'.join(lines), think=think, answer_hint=ANSWER_HINTS['bbox'])
  else:
    raise ValueError(f'question type {question_type!r} unknown; valid: {list(QUESTION_TYPES)}')
  return templates.apply('\n'.join(_grid_header(rows, cols) + body), think=think,
                         answer_hint=ANSWER_HINTS[ANSWER_TYPES[question_type]])


def _distinct_grids(rng: np.random.Generator, n: int, gt: list[int], count: int) -> list[list[int]]:
  """`count` distinct random permutations of 1..n, none equal to gt."""
  seen, grids = {tuple(gt)}, []
  while len(grids) < count:
    grid = tuple(int(v) + 1 for v in rng.permutation(n))
    if grid not in seen:
      seen.add(grid)
      grids.append(list(grid))
  return grids


@base.register('jigsaw', JigsawConfig)
class JigsawTask:
  """Deterministic examples: `example(seed)` depends on nothing but the config and the seed."""

  def __init__(self, cfg: JigsawConfig):
    self.cfg = cfg

  @property
  def reward_names(self) -> tuple[str, ...]:
    """Jigsaw-R1: accuracy (1.0) + format (0.5)."""
    if self.cfg.question_type == 'full':
      return ('jigsaw_grid', 'jigsaw_format')
    accuracy = {'multiple': 'letter', 'pair': 'letter', 'single': 'digit', 'box': 'iou_box_inclusive'}
    return (accuracy[self.cfg.question_type], 'answer_type_format')

  @property
  def reward_weights(self) -> tuple[float, ...]:
    return (1.0, 0.5)

  @property
  def metric_rewards(self) -> dict[str, str]:
    """Summary metrics the loop logs (and evaluates) by name: metric -> reward."""
    accuracy, form = self.reward_names
    metrics = {'accuracy': accuracy, 'format_rate': form}
    if self.cfg.question_type == 'full':
      metrics['solve_rate'] = 'jigsaw_solved'
    return metrics

  def example(self, seed: int) -> dict[str, Any]:
    """A puzzle on a procedural image: {'prompt', 'images': [uint8 HxWx3], 'meta'} (module docstring)."""
    rng = np.random.default_rng(seed)
    image = images_lib.procedural_image(rng, *self.cfg.image_size)
    return self.example_from_image(image, rng)

  def example_from_image(self, image: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
    """A puzzle on a given uint8 [H, W, 3] image, with the rest of the randomness from rng.

    meta: rows, cols, think, question_type, answer_type, answer; the grid types add gt (forward
    ground truth); 'multiple' adds choices (candidate grids), 'pair' pair (k, l) and options,
    'single' position (k); 'box' adds region (k), gt_box ([x1, y1, x2, y2], exclusive ends), boxes,
    box_sources and image_size (width, height).
    """
    cfg = self.cfg
    rows, cols = cfg.rows, cfg.cols
    # Always draw, so the permutation stream does not depend on whether rows == cols.
    if cfg.shuffle_mn and rng.random() < 0.5:
      rows, cols = cols, rows
    qtype = cfg.question_type
    meta: dict[str, Any] = {'rows': rows, 'cols': cols, 'think': cfg.think}
    if qtype == 'box':
      k = int(rng.integers(1, rows * cols + 1))
      puzzle, _, boxes, sources = make_box_puzzle(image, rows, cols, k, cfg.mask_ratio, cfg.box_size, rng)
      box = boxes[sources[k - 1] - 1]
      meta.update(region=k, gt_box=box, boxes=boxes, box_sources=sources,
                  image_size=[puzzle.shape[1], puzzle.shape[0]], answer=render_box(box))
      prompt = render_question('box', rows, cols, think=cfg.think, style=cfg.prompt_style, k=k)
    else:
      puzzle, gt = make_puzzle(image, rows, cols, rng)
      if cfg.mask_ratio > 0:
        puzzle = mask_borders(puzzle, rows, cols, cfg.mask_ratio)
      meta['gt'] = gt
      if qtype == 'full':
        meta['answer'] = render_answer(gt, rows, cols)
        prompt = render_prompt(rows, cols, think=cfg.think, style=cfg.prompt_style)
      elif qtype == 'multiple':
        correct = int(rng.integers(cfg.num_choices))
        grids = _distinct_grids(rng, rows * cols, gt, cfg.num_choices - 1)
        grids.insert(correct, list(gt))
        meta.update(choices=grids, answer=string.ascii_uppercase[correct])
        prompt = render_question('multiple', rows, cols, think=cfg.think, style=cfg.prompt_style,
                                 choices=[render_answer(g, rows, cols) for g in grids])
      elif qtype == 'pair':
        k, l = (int(v) + 1 for v in rng.choice(rows * cols, size=2, replace=False))
        options = [str(o) for o in rng.permutation(pair_relations(rows, cols))]
        truth = pair_relation(gt[k - 1], gt[l - 1], cols)
        meta.update(pair=[k, l], options=options, answer=string.ascii_uppercase[options.index(truth)])
        prompt = render_question('pair', rows, cols, think=cfg.think, style=cfg.prompt_style,
                                 choices=[f'{k} is {o} {l}' for o in options], k=k, l=l)
      elif qtype == 'single':
        k = int(rng.integers(1, rows * cols + 1))
        meta.update(position=k, answer=str(gt[k - 1]))
        prompt = render_question('single', rows, cols, think=cfg.think, style=cfg.prompt_style, k=k)
      else:
        raise ValueError(f'question type {qtype!r} unknown; valid: {list(QUESTION_TYPES)}')
    meta.update(question_type=qtype, answer_type=ANSWER_TYPES[qtype])
    return {'prompt': prompt, 'images': [puzzle], 'meta': meta}

  def random_answer_completion(self, meta: Mapping[str, Any], seed: int) -> str:
    """A well-formed completion with a uniformly random answer (format warm-up: teaches form, not answers)."""
    rows, cols = meta['rows'], meta['cols']
    qtype = meta.get('question_type', 'full')
    # 'full' keeps its original stream (runs resumed across this change warm up identically).
    rng = np.random.default_rng(seed) if qtype == 'full' else base.completion_rng(seed)
    if qtype == 'full':
      answer = render_answer((rng.permutation(rows * cols) + 1).tolist(), rows, cols)
    elif qtype == 'multiple':
      answer = string.ascii_uppercase[int(rng.integers(len(meta['choices'])))]
    elif qtype == 'pair':
      answer = string.ascii_uppercase[int(rng.integers(len(meta['options'])))]
    elif qtype == 'single':
      answer = str(int(rng.integers(1, rows * cols + 1)))
    elif qtype == 'box':
      width, height = meta['image_size']
      x1, x2 = sorted(int(v) for v in rng.integers(0, width + 1, size=2))
      y1, y2 = sorted(int(v) for v in rng.integers(0, height + 1, size=2))
      answer = render_box([x1, y1, x2, y2])
    else:
      raise ValueError(f'question type {qtype!r} unknown; valid: {list(QUESTION_TYPES)}')
    return format_completion(answer, self.cfg.think)
