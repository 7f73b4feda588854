r"""Math-answer rewards: equivalence of the final answer to the label (math-verify, with fallbacks).

The prediction is the last \boxed{...} of the completion, else its single <answer> block. It is
compared with meta 'answer' in three steps, cheapest first:
1. equal after light normalisation (spaces, '$', \left/\right, \dfrac, a final '.');
2. both plain numbers (or a/b fractions): equal up to a 1e-6 relative tolerance;
3. math-verify (HF `math-verify`, LaTeX and expression parsing with sympy), under its own
   MATH_VERIFY_TIMEOUT_S deadline, for predictions of at most MAX_MATH_CHARS characters.
A math-verify timeout or error counts as "not shown equivalent" (the first two steps decided
already). math-verify's own timeouts use signal.alarm, which would cancel the per-item deadline,
so they are turned off and `deadline.call_with_deadline` (nestable) bounds it instead.
"""

from __future__ import annotations

import functools
import logging as std_logging
import math
import re
from collections.abc import Mapping
from typing import Any

from rl_reason.rewards import deadline, parsing
from rl_reason.rewards.registry import register

try:
  import math_verify
except ImportError:  # the string and numeric steps still work; install math-verify for step 3
  math_verify = None

MATH_VERIFY_TIMEOUT_S = 2.0
MAX_MATH_CHARS = 300  # longer "answers" are not final answers; sympy on them costs seconds
ANSWER = ('answer',)
_NORMALIZE = [(re.compile(p), r) for p, r in [
    (r'\\left|\\right|\\!|\\,|\\;|\\:|\$', ''), (r'\\[dt]frac', r'\\frac'), (r'\s+', ''), (r'\.$', '')]]
_FRACTION = re.compile(rf'({parsing.NUMBER})/({parsing.NUMBER})')
_LATEX_FRACTION = re.compile(rf'\\frac\{{({parsing.NUMBER})\}}\{{({parsing.NUMBER})\}}')


class _DropTimeoutWarning(std_logging.Filter):
  """math-verify warns that its timeouts are off; here a nestable deadline bounds it instead."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    return 'Timeout is disabled' not in record.getMessage()


for _name in ('math_verify.parser', 'math_verify.grader'):
  std_logging.getLogger(_name).addFilter(_DropTimeoutWarning())


def final_answer(text: str) -> str | None:
  r"""The last \boxed{...} content, else the single <answer> block, else None."""
  boxed = parsing.extract_boxed(text)
  if boxed is not None:
    return boxed
  return parsing.extract_tag(text, 'answer')


def normalize(answer: str) -> str:
  for pattern, replacement in _NORMALIZE:
    answer = pattern.sub(replacement, answer)
  return answer


def as_number(answer: str) -> float | None:
  """A plain number, 'a/b' or '\\frac{a}{b}' (normalised text), as a finite float; else None."""
  if re.fullmatch(parsing.NUMBER, answer):
    return parsing.to_float(answer)
  for pattern in (_FRACTION, _LATEX_FRACTION):
    match = pattern.fullmatch(answer)
    if match:
      numerator, denominator = parsing.to_float(match.group(1)), parsing.to_float(match.group(2))
      if numerator is None or not denominator:
        return None
      value = numerator / denominator
      return value if math.isfinite(value) else None
  return None


@functools.lru_cache(maxsize=4096)
def _math_verify(gold: str, pred: str) -> bool:
  gold_parsed = math_verify.parse(f'${gold}$', parsing_timeout=None)
  pred_parsed = math_verify.parse(f'\\boxed{{{pred}}}', parsing_timeout=None)
  return bool(gold_parsed and pred_parsed and math_verify.verify(gold_parsed, pred_parsed, timeout_seconds=None))


def answer_key(text: str) -> str | None:
  """The completion's final answer as a key for voting (Co-Reward): normalised text, a number as its float.

  None when the completion has no final answer (or an empty one). Answers equal by steps 1-2 of
  the module doc get equal keys ('0.5', '1/2' and '\\frac{1}{2}' alike); step 3 is not applied.
  """
  answer = final_answer(text)
  answer = normalize(answer) if answer is not None else ''
  if not answer:
    return None
  number = as_number(answer)
  return repr(number + 0.0) if number is not None else answer  # + 0.0: -0.0 votes with 0.0


def is_equivalent(pred: str | None, gold: Any) -> bool:
  """Whether the predicted answer is mathematically the label (the three steps of the module doc)."""
  if pred is None:
    return False
  gold = str(gold)
  pred_norm, gold_norm = normalize(pred), normalize(gold)
  if not pred_norm:
    return False
  if pred_norm == gold_norm:
    return True
  pred_number, gold_number = as_number(pred_norm), as_number(gold_norm)
  if pred_number is not None and gold_number is not None:
    return math.isclose(pred_number, gold_number, rel_tol=1e-6, abs_tol=1e-9)
  if math_verify is None or len(pred) > MAX_MATH_CHARS or len(gold) > MAX_MATH_CHARS:
    return False
  return deadline.call_with_deadline(lambda: _math_verify(gold, pred), MATH_VERIFY_TIMEOUT_S, False)


@register('math_equiv', range=(0.0, 1.0), required_meta=ANSWER, source='SimpleRL-Zoo (mix), DAPO, LASER')
def math_equiv(text: str, meta: Mapping[str, Any]) -> float:
  r"""1.0 iff the last \boxed{} (else the <answer> block) is mathematically equal to the label."""
  return float(is_equivalent(final_answer(text), meta['answer']))


@register('cls_accuracy', range=(0.0, 1.0), required_meta=ANSWER, source='CLS-RL')
def cls_accuracy(text: str, meta: Mapping[str, Any]) -> float:
  """CLS-RL: 1.0 iff the answer equals the label case-insensitively or math-verify finds them equal.

  math-verify reads words as products of symbols, so anagrams of a class name also pass its step
  (as in CLS-RL's code, which this reproduces).
  """
  answer = parsing.answer_text(text)
  if answer is None:
    return 0.0
  if answer.strip().casefold() == str(meta['answer']).strip().casefold():
    return 1.0
  return float(is_equivalent(answer.strip(), meta['answer']))


@register('simplerl_independent', range=(-1.0, 1.0), required_meta=ANSWER, source='SimpleRL-Zoo (independent)')
def simplerl_independent(text: str, meta: Mapping[str, Any]) -> float:
  r"""+1 correct and boxed, +0.5 correct but not boxed, -0.5 boxed but wrong, -1 neither.

  Without a \boxed{}, the answer is the <answer> block if there is one, else the last number.
  """
  boxed = parsing.extract_boxed(text)
  if boxed is not None:
    return 1.0 if is_equivalent(boxed, meta['answer']) else -0.5
  unboxed = parsing.extract_tag(text, 'answer')
  if unboxed is None:
    number = parsing.last_number(text)
    unboxed = None if number is None else repr(number)
  return 0.5 if is_equivalent(unboxed, meta['answer']) else -1.0


@register('laser_correctness', range=(-1.0, 1.0), required_meta=ANSWER, optional_meta=('prefill_think',),
          source='LASER (base reward C)')
def laser_correctness(text: str, meta: Mapping[str, Any]) -> float:
  r"""LASER's base C: -1 without a \boxed{} answer or without '</think>' (truncated); else +1 right, -0.5 wrong."""
  boxed = parsing.extract_boxed(text)
  if boxed is None or '</think>' not in parsing.with_prefill(text, meta):
    return -1.0
  return 1.0 if is_equivalent(boxed, meta['answer']) else -0.5
