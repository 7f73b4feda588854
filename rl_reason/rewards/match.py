"""Answer-matching rewards: exact, letter, digit, strict equality, set subset and set F1.

The answer is the single <answer> block, or the whole completion when it has no answer tag
(non-think mode); repeated, nested or unbalanced answer tags give no answer (`parsing.answer_text`).
The label is meta 'answer'.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rl_reason.rewards import parsing
from rl_reason.rewards.registry import register

ANSWER = ('answer',)


def _label(meta: Mapping[str, Any]) -> str:
  return str(meta['answer']).strip()


@register('exact_match', range=(0.0, 1.0), required_meta=ANSWER, source='exact string match (case-sensitive)')
def exact_match(text: str, meta: Mapping[str, Any]) -> float:
  """1.0 iff the answer, stripped, equals the label, stripped (case-sensitive)."""
  answer = parsing.answer_text(text)
  return float(answer is not None and answer.strip() == _label(meta))


@register('exact_match_ci', range=(0.0, 1.0), required_meta=ANSWER, source='exact string match (case-insensitive)')
def exact_match_ci(text: str, meta: Mapping[str, Any]) -> float:
  """1.0 iff the answer equals the label up to surrounding whitespace and case (casefold)."""
  answer = parsing.answer_text(text)
  return float(answer is not None and answer.strip().casefold() == _label(meta).casefold())


@register('equality_strict', range=(0.0, 1.0), required_meta=ANSWER, source='No-Thinking-CLS-RL')
def equality_strict(text: str, meta: Mapping[str, Any]) -> float:
  """1.0 iff the entire completion equals the label exactly (no stripping, no tags): No-Thinking-CLS-RL."""
  return float(text == str(meta['answer']))


@register('letter', range=(0.0, 1.0), required_meta=ANSWER, source='Jigsaw-R1 (multiple, pair)')
def letter(text: str, meta: Mapping[str, Any]) -> float:
  """1.0 iff the answer is one capital letter A-Z equal to the label."""
  answer = parsing.answer_text(text)
  if answer is None:
    return 0.0
  answer = answer.strip()
  return float(len(answer) == 1 and 'A' <= answer <= 'Z' and answer == _label(meta))


@register('digit', range=(0.0, 1.0), required_meta=ANSWER, source='Jigsaw-R1 (single)')
def digit(text: str, meta: Mapping[str, Any]) -> float:
  """1.0 iff the answer is an ASCII digit string (at most 9 digits) whose value equals the label's."""
  answer = parsing.answer_text(text)
  if answer is None:
    return 0.0
  answer, label = answer.strip(), _label(meta)
  if not (parsing.INTEGER.fullmatch(answer) and len(answer) <= parsing.MAX_DIGITS):
    return 0.0
  return float(parsing.INTEGER.fullmatch(label) is not None and int(answer) == int(label))


def _label_letters(meta: Mapping[str, Any]) -> frozenset[str]:
  label = meta['answer']
  letters = frozenset(label) if isinstance(label, (list, tuple, set, frozenset)) else parsing.parse_letters(str(label))
  if not letters:
    raise ValueError(f'meta answer {label!r} is not a set of option letters')
  return letters


@register('set_subset_soft', range=(0.0, 1.0), required_meta=ANSWER, source='TW-GRPO')
def set_subset_soft(text: str, meta: Mapping[str, Any]) -> float:
  """|pred|/|gt| if the predicted option letters are a non-empty subset of the label's, else 0 (TW-GRPO)."""
  gt = _label_letters(meta)
  answer = parsing.answer_text(text)
  pred = None if answer is None else parsing.parse_letters(answer)
  if pred is None or not pred <= gt:
    return 0.0
  return len(pred) / len(gt)


def set_f1(pred: Sequence[str], gt: Sequence[str]) -> float:
  """F1 between two sets of items (duplicates count once); two empty sets agree."""
  pred_set, gt_set = set(pred), set(gt)
  if not pred_set and not gt_set:
    return 1.0
  common = len(pred_set & gt_set)
  if common == 0:
    return 0.0
  precision, recall = common / len(pred_set), common / len(gt_set)
  return 2 * precision * recall / (precision + recall)


def _label_items(meta: Mapping[str, Any]) -> list[str]:
  label = meta['answer']
  if isinstance(label, (list, tuple, set, frozenset)):
    return [str(item).strip().casefold() for item in label]
  return parsing.split_items(str(label))


@register('set_f1', range=(0.0, 1.0), required_meta=ANSWER, source='RuleReasoner (set-valued answers)')
def set_f1_reward(text: str, meta: Mapping[str, Any]) -> float:
  """F1 of the answer's items (split on , ; newline; case-folded) against the label's items."""
  answer = parsing.answer_text(text)
  if answer is None:
    return 0.0
  return set_f1(parsing.split_items(answer), _label_items(meta))


@register('rule_acc', range=(0.0, 1.0), required_meta=ANSWER, source='RuleReasoner')
def rule_acc(text: str, meta: Mapping[str, Any]) -> float:
  """RuleReasoner accuracy: set F1 when the label is a list/set, else case-insensitive exact match."""
  if isinstance(meta['answer'], (list, tuple, set, frozenset)):
    return set_f1_reward(text, meta)
  return exact_match_ci(text, meta)
