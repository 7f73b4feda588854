"""Lenient-but-safe parsing of completions: tagged blocks, boxed answers, numbers, grids, boxes.

Everything here runs on untrusted model output, so nothing raises and nothing is quadratic: the
regexes have no nested quantifiers, numbers are length-capped before float() or int() sees them,
and searches that could rescan the text are bounded.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

MAX_DIGITS = 9  # no grid index is this long; longer runs are rejected before int() sees them
MAX_NUMBER_CHARS = 40  # a coordinate or an answer number longer than this is not a number we score
GRID_SEPARATORS = re.compile(r'[\s,;`]+')  # Jigsaw-R1 accepts commas, semicolons and backticks too
INTEGER = re.compile(r'[0-9]+')  # ASCII digits only: int() would also accept other scripts' digits
# A decimal number: optional sign, ASCII digits, optional fraction, optional exponent (bounded).
NUMBER = r'[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]{1,3})?'
NUMBER_RE = re.compile(NUMBER)
THINK_TAGS = ('<think>', '</think>')
ANSWER_TAGS = ('<answer>', '</answer>')


def with_prefill(text: str, meta: Mapping[str, Any]) -> str:
  """The completion as the model wrote it after the prompt: '<think>' first if the prompt prefilled it.

  With meta 'prefill_think' True the chat template ends the prompt with '<think>', so the
  completion starts inside the think block; format checks must see that tag.
  """
  return '<think>' + text if meta.get('prefill_think', False) else text


def extract_tag(text: str, tag: str) -> str | None:
  """The content of the single <tag>...</tag> block.

  Args:
    text: the completion.
    tag: the tag name without brackets, e.g. 'answer'.

  Returns:
    The text between the tags, or None when the block is missing or ambiguous: no opening or no
    closing tag, more than one of either, or the closing tag first.
  """
  opening, closing = f'<{tag}>', f'</{tag}>'
  if text.count(opening) != 1 or text.count(closing) != 1:
    return None
  start = text.index(opening) + len(opening)
  end = text.index(closing)
  return text[start:end] if start <= end else None


def answer_text(text: str) -> str | None:
  """The answer of a completion: the single <answer> block, or the whole text if it has no answer tag.

  Returns None when answer tags are present but do not form exactly one block (repeated, nested,
  unbalanced): an ambiguous answer is no answer. Non-think completions have no tags at all.
  """
  if ANSWER_TAGS[0] not in text and ANSWER_TAGS[1] not in text:
    return text
  return extract_tag(text, 'answer')


_BRACES = re.compile(r'[{}]')


def extract_boxed(text: str) -> str | None:
  r"""The content of the last \boxed{...} (braces balanced), or None if there is none or it is unclosed."""
  start = text.rfind('\\boxed{')
  if start < 0:
    return None
  begin = start + len('\\boxed{')
  depth = 0
  for brace in _BRACES.finditer(text, begin):
    if brace.group() == '{':
      depth += 1
    elif depth == 0:
      return text[begin:brace.start()]
    else:
      depth -= 1
  return None


def parse_int_grid(text: str) -> list[int] | None:
  """The integers of a grid written as numbers separated by whitespace, commas or semicolons.

  Returns:
    The integers in reading order, or None if the text holds no number or anything but
    non-negative ASCII integers of at most MAX_DIGITS digits between the separators.
  """
  tokens = [t for t in GRID_SEPARATORS.split(text) if t]
  if not tokens or not all(len(t) <= MAX_DIGITS and INTEGER.fullmatch(t) for t in tokens):
    return None
  return [int(t) for t in tokens]


def to_float(token: str) -> float | None:
  """A finite float from a NUMBER token, or None (too long, overflowing to inf, or NaN)."""
  if len(token) > MAX_NUMBER_CHARS:
    return None
  try:
    value = float(token)
  except ValueError:
    return None
  return value if math.isfinite(value) else None


_BOX_PAIRS = re.compile(rf'\(\s*({NUMBER})\s*,\s*({NUMBER})\s*\)\s*,\s*\(\s*({NUMBER})\s*,\s*({NUMBER})\s*\)')
_BOX_LIST = re.compile(rf'\[\s*({NUMBER})\s*,\s*({NUMBER})\s*,\s*({NUMBER})\s*,\s*({NUMBER})\s*\]')
_POINT = re.compile(rf'[\[(]\s*({NUMBER})\s*,\s*({NUMBER})\s*[\])]')


def parse_box(text: str) -> tuple[float, float, float, float] | None:
  """The first box written '(x1,y1),(x2,y2)' (UniVG-R1) or '[x1, y1, x2, y2]' (Qwen2.5-VL), or None."""
  for pattern in (_BOX_PAIRS, _BOX_LIST):
    match = pattern.search(text)
    if match:
      values = [to_float(g) for g in match.groups()]
      if any(v is None for v in values):
        return None
      return tuple(values)  # type: ignore[return-value]
  return None


def parse_point(text: str) -> tuple[float, float] | None:
  """The first point written '(x, y)' or '[x, y]', or None."""
  match = _POINT.search(text)
  if not match:
    return None
  x, y = to_float(match.group(1)), to_float(match.group(2))
  return None if x is None or y is None else (x, y)


def last_number(text: str) -> float | None:
  """The last decimal number in the text (finite), or None."""
  last = None
  for last in NUMBER_RE.finditer(text):
    pass
  return None if last is None else to_float(last.group())


_LETTER_TOKEN = re.compile(r'[\s,;]+')


def parse_letters(text: str) -> frozenset[str] | None:
  """A set of option letters written 'A, C' (commas, semicolons or spaces; '(A)' allowed), or None.

  Every token must be one ASCII capital letter, optionally in parentheses or brackets; anything
  else (words, digits, lowercase) makes the answer unparseable rather than partly read.
  """
  letters = set()
  for token in _LETTER_TOKEN.split(text.strip()):
    if not token:
      continue
    token = token.strip('()[]')
    if len(token) != 1 or not 'A' <= token <= 'Z':
      return None
    letters.add(token)
  return frozenset(letters) if letters else None


def split_items(text: str) -> list[str]:
  """Items of a set-valued answer: split on commas, semicolons and newlines, stripped, case-folded."""
  return [item for item in (part.strip().casefold() for part in re.split(r'[,;\n]', text)) if item]
