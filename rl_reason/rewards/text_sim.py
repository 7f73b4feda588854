"""Text-similarity rewards (SophiaVL-R1): ROUGE-1/2/L F1 and word error rate, in plain Python.

ROUGE follows the rouge-score package's default tokenizer (lowercase, runs of [a-z0-9], no
stemming); F1 is 0 when either side has no token. WER follows jiwer's default (whitespace-split
words, case-sensitive): word edit distance / reference words. LCS and edit distance use
bit-parallel algorithms (Hyyro 2004; Myers 1999 as explained by Hyyro 2001) on Python integers,
O(n) integer operations on m-bit words, so a megabyte completion costs milliseconds. Both token
sequences are cut at MAX_TOKENS first (bounding the work); past that, scores are approximate.
"""

from __future__ import annotations

import collections
import itertools
import math
import re
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from rl_reason.rewards import parsing
from rl_reason.rewards.registry import register

MAX_TOKENS = 20_000
_ROUGE_TOKEN = re.compile(r'[a-z0-9]+')
_WORD = re.compile(r'\S+')  # str.split() words


def rouge_tokens(text: str) -> list[str]:
  return [m.group() for m in itertools.islice(_ROUGE_TOKEN.finditer(text.lower()), MAX_TOKENS)]


def wer_tokens(text: str) -> list[str]:
  return [m.group() for m in itertools.islice(_WORD.finditer(text), MAX_TOKENS)]


def _match_masks(pattern: Sequence[Hashable]) -> dict[Hashable, int]:
  masks: dict[Hashable, int] = {}
  for i, token in enumerate(pattern):
    masks[token] = masks.get(token, 0) | (1 << i)
  return masks


def lcs_length(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
  """Length of the longest common subsequence (bit-parallel over the shorter sequence)."""
  if len(a) > len(b):
    a, b = b, a
  if not a:
    return 0
  masks = _match_masks(a)
  full = (1 << len(a)) - 1
  v = full
  for token in b:
    u = v & masks.get(token, 0)
    v = ((v + u) | (v - u)) & full
  return len(a) - v.bit_count()


def edit_distance(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
  """Levenshtein distance (unit insert/delete/substitute), bit-parallel over the shorter sequence."""
  if len(a) > len(b):
    a, b = b, a
  if not a:
    return len(b)
  m = len(a)
  masks = _match_masks(a)
  full, high = (1 << m) - 1, 1 << (m - 1)
  pv, mv, score = full, 0, m
  for token in b:
    eq = masks.get(token, 0)
    xv = eq | mv
    xh = (((eq & pv) + pv) ^ pv) | eq
    ph = mv | (~(xh | pv) & full)
    mh = pv & xh
    if ph & high:
      score += 1
    elif mh & high:
      score -= 1
    ph = ((ph << 1) | 1) & full  # row 0 of the DP grows by one per text token (global distance)
    mh = (mh << 1) & full
    pv = mh | (~(xv | ph) & full)
    mv = ph & xv
  return score


def _f1(overlap: int, predicted: int, reference: int) -> float:
  if predicted == 0 or reference == 0 or overlap == 0:
    return 0.0
  precision, recall = overlap / predicted, overlap / reference
  return 2 * precision * recall / (precision + recall)


def rouge_n(prediction: Sequence[str], reference: Sequence[str], n: int) -> float:
  """ROUGE-N F1 from clipped n-gram counts."""
  pred = collections.Counter(zip(*(prediction[i:] for i in range(n))))
  ref = collections.Counter(zip(*(reference[i:] for i in range(n))))
  overlap = sum((pred & ref).values())
  return _f1(overlap, sum(pred.values()), sum(ref.values()))


def rouge_l(prediction: Sequence[str], reference: Sequence[str]) -> float:
  """ROUGE-L F1 from the longest common subsequence."""
  return _f1(lcs_length(prediction, reference), len(prediction), len(reference))


def wer(prediction: str, reference: str) -> float:
  """Word error rate; 0 for two empty texts, inf for a non-empty prediction of an empty reference."""
  hyp, ref = wer_tokens(prediction), wer_tokens(reference)
  if not ref:
    return 0.0 if not hyp else math.inf
  return edit_distance(hyp, ref) / len(ref)


def _answer(text: str) -> str | None:
  answer = parsing.answer_text(text)
  return None if answer is None else answer.strip()


@register('rouge_mean', range=(0.0, 1.0), required_meta=('answer',), source='SophiaVL-R1 (free-form answers)')
def rouge_mean(text: str, meta: Mapping[str, Any]) -> dict[str, float]:
  """Mean of ROUGE-1, ROUGE-2 and ROUGE-L F1 of the answer against meta answer."""
  answer = _answer(text)
  if answer is None:
    return {'rouge1': 0.0, 'rouge2': 0.0, 'rouge_l': 0.0, 'overall': 0.0}
  prediction, reference = rouge_tokens(answer), rouge_tokens(str(meta['answer']))
  scores = {'rouge1': rouge_n(prediction, reference, 1), 'rouge2': rouge_n(prediction, reference, 2),
            'rouge_l': rouge_l(prediction, reference)}
  return dict(scores, overall=sum(scores.values()) / 3)


@register('rouge_l', range=(0.0, 1.0), required_meta=('answer',), source='ROUGE-L F1')
def rouge_l_reward(text: str, meta: Mapping[str, Any]) -> float:
  """ROUGE-L F1 of the answer against meta answer."""
  answer = _answer(text)
  return 0.0 if answer is None else rouge_l(rouge_tokens(answer), rouge_tokens(str(meta['answer'])))


@register('ocr_exp_neg_wer', range=(0.0, 1.0), required_meta=('answer',), source='SophiaVL-R1 code (OCR)')
def ocr_exp_neg_wer(text: str, meta: Mapping[str, Any]) -> float:
  """exp(-WER) of the answer against meta answer (SophiaVL-R1's code)."""
  answer = _answer(text)
  return 0.0 if answer is None else math.exp(-wer(answer, str(meta['answer'])))


@register('ocr_neg_wer', range=(-1.0, 0.0), required_meta=('answer',), source='SophiaVL-R1 paper (OCR)')
def ocr_neg_wer(text: str, meta: Mapping[str, Any]) -> float:
  """-WER of the answer against meta answer (the paper's form), with WER capped at 1."""
  answer = _answer(text)
  return -1.0 if answer is None else -min(wer(answer, str(meta['answer'])), 1.0)
