"""Format rewards: is the completion shaped like "<think>...</think><answer>...</answer>"?"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from rl_reason.rewards.registry import register

THINK_ANSWER = re.compile(r'<think>.*?</think>\s*<answer>.*?</answer>', re.DOTALL)
TAGS = ('<think>', '</think>', '<answer>', '</answer>')


def is_think_answer(text: str) -> bool:
  """The whole text is one think block, optional whitespace, one answer block; no repeated or nested tags."""
  return all(text.count(tag) == 1 for tag in TAGS) and THINK_ANSWER.fullmatch(text) is not None


@register('think_answer_format', range=(0.0, 1.0))
def think_answer_format(text: str, meta: Mapping[str, Any]) -> float:  # pylint: disable=unused-argument
  """1.0 iff the whole completion is <think>...</think> <answer>...</answer>, each tag once."""
  return float(is_think_answer(text))
