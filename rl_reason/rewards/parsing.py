"""Lenient-but-safe parsing of completions: tagged blocks and integer grids.

Everything here runs on untrusted model output, so nothing raises and nothing is quadratic.
"""

from __future__ import annotations

import re

MAX_DIGITS = 9  # no grid index is this long; longer runs are rejected before int() sees them
GRID_SEPARATORS = re.compile(r'[\s,;`]+')  # Jigsaw-R1 accepts commas, semicolons and backticks too
INTEGER = re.compile(r'[0-9]+')  # ASCII digits only: int() would also accept other scripts' digits


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
