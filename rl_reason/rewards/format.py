"""Format rewards: is the completion shaped like "<think>...</think><answer>...</answer>"?

Every checker first requires each of the four tags exactly once (a repeated or nested block is a
format failure, and the regexes below then never backtrack over many candidate tags), and sees
the completion with a prefilled '<think>' put back (meta 'prefill_think', see
`parsing.with_prefill`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from rl_reason.rewards import parsing
from rl_reason.rewards.registry import register

THINK_ANSWER = re.compile(r'<think>.*?</think>\s*<answer>.*?</answer>', re.DOTALL)
# TW-GRPO: anchored at the start; trailing whitespace and '!' allowed after the answer block.
THINK_ANSWER_TW = re.compile(r'<think>.*?</think>\s*<answer>.*?</answer>[\s!]*', re.DOTALL)
# UniVG-R1: the answer block is exactly one box '(x1,y1),(x2,y2)' of integers; '$' allows one final newline.
UNIVG = re.compile(r'<think>.*?</think>\s*<answer>\([0-9]+,\s*[0-9]+\),\s*\([0-9]+,\s*[0-9]+\)</answer>\n?',
                   re.DOTALL)
UNIVG_BARE = re.compile(r'\([0-9]+,\s*[0-9]+\),\s*\([0-9]+,\s*[0-9]+\)')
TAGS = ('<think>', '</think>', '<answer>', '</answer>')
PREFILL = ('prefill_think',)


def tags_once(text: str) -> bool:
  return all(text.count(tag) == 1 for tag in TAGS)


def is_think_answer(text: str) -> bool:
  """The whole text is one think block, optional whitespace, one answer block; no repeated or nested tags."""
  return tags_once(text) and THINK_ANSWER.fullmatch(text) is not None


def tags_in_order(text: str) -> bool:
  """Each tag once, in the order <think> </think> <answer> </answer> (anything around and between)."""
  if not tags_once(text):
    return False
  positions = [text.index(tag) for tag in TAGS]
  return positions == sorted(positions)


@register('think_answer_format', range=(0.0, 1.0), optional_meta=PREFILL, source='DeepSeek-R1; Jigsaw-R1, CLS-RL')
def think_answer_format(text: str, meta: Mapping[str, Any]) -> float:
  """1.0 iff the whole completion is <think>...</think> <answer>...</answer>, each tag once."""
  return float(is_think_answer(parsing.with_prefill(text, meta)))


@register('think_answer_search', range=(0.0, 1.0), optional_meta=PREFILL, source='VLM-R1-style search variant')
def think_answer_search(text: str, meta: Mapping[str, Any]) -> float:
  """1.0 iff a think block followed by an answer block appears anywhere, each tag once."""
  text = parsing.with_prefill(text, meta)
  return float(tags_once(text) and THINK_ANSWER.search(text) is not None)


@register('tw_grpo_format', range=(0.0, 1.0), optional_meta=PREFILL, source='TW-GRPO')
def tw_grpo_format(text: str, meta: Mapping[str, Any]) -> float:
  """1.0 iff <think>..</think> <answer>..</answer> from the start, only whitespace or '!' after; tags once."""
  text = parsing.with_prefill(text, meta)
  return float(tags_once(text) and THINK_ANSWER_TW.fullmatch(text) is not None)


@register('ordered_tags_format', range=(-1.0, 0.0), optional_meta=PREFILL, source='RuleReasoner')
def ordered_tags_format(text: str, meta: Mapping[str, Any]) -> float:
  """0.0 if the four tags appear once each and in order, else -1.0 (a penalty, never a bonus)."""
  return 0.0 if tags_in_order(parsing.with_prefill(text, meta)) else -1.0


@register('univg_format', range=(0.0, 1.0), optional_meta=PREFILL + ('think',), source='UniVG-R1')
def univg_format(text: str, meta: Mapping[str, Any]) -> float:
  """1.0 iff think block + an answer that is exactly '(x1,y1),(x2,y2)'; with meta think=False the bare box."""
  if not meta.get('think', True):
    return float(UNIVG_BARE.fullmatch(text.strip()) is not None)
  text = parsing.with_prefill(text, meta)
  return float(tags_once(text) and UNIVG.fullmatch(text) is not None)


_ANSWER_TYPES = {
    'digit': lambda a, meta: parsing.INTEGER.fullmatch(a) is not None and len(a) <= parsing.MAX_DIGITS,
    'letter': lambda a, meta: len(a) == 1 and 'A' <= a <= 'Z',
    'number': lambda a, meta: re.fullmatch(parsing.NUMBER, a) is not None and parsing.to_float(a) is not None,
    'bbox': lambda a, meta: parsing.parse_box(a) is not None,
    'point': lambda a, meta: parsing.parse_point(a) is not None,
    'grid': lambda a, meta: _is_grid(a, meta),
}


def _is_grid(answer: str, meta: Mapping[str, Any]) -> bool:
  grid = parsing.parse_int_grid(answer)
  if grid is None:
    return False
  if 'rows' in meta and 'cols' in meta:
    mn = meta['rows'] * meta['cols']
    return len(grid) == mn and all(1 <= v <= mn for v in grid)
  return True


@register('answer_type_format', range=(0.0, 1.0), required_meta=('answer_type',),
          optional_meta=PREFILL + ('think', 'rows', 'cols'), source='Jigsaw-R1 (answer-type validation)')
def answer_type_format(text: str, meta: Mapping[str, Any]) -> float:
  """1.0 iff the format is right and the answer parses as meta answer_type (digit/letter/number/bbox/point/grid).

  Think mode (meta 'think', default True) needs one think block and one answer block, and checks
  the answer block; non-think mode checks the whole (stripped) completion.
  """
  check = _ANSWER_TYPES.get(meta['answer_type'])
  if check is None:
    raise ValueError(f'unknown answer_type {meta["answer_type"]!r}; valid: {sorted(_ANSWER_TYPES)}')
  if meta.get('think', True):
    text = parsing.with_prefill(text, meta)
    if not is_think_answer(text):
      return 0.0
    answer = parsing.extract_tag(text, 'answer')
  else:
    answer = text
  return float(answer is not None and bool(check(answer.strip(), meta)))
