"""Think and no-think instructions, appended as text to the user turn (the chat template comes later).

Two answer formats:
- 'tags' (Jigsaw-R1, CLS-RL, UI-R1, RuleReasoner, TW-GRPO): think mode asks for
  "<think>...</think><answer>...</answer>"; no-think mode asks for the bare answer.
- 'boxed' (SATURN, SimpleRL-Zoo, LASER): the final answer goes in \\boxed{}; think mode asks for
  step-by-step reasoning first, no-think mode for the boxed answer alone.

Every example's meta records 'think' and 'answer_format', so the rewards know what to parse.
"""

from __future__ import annotations

ANSWER_FORMATS = ('tags', 'boxed')

THINK = ('First think it through inside <think> </think> tags, '
         'then give the final answer inside <answer> </answer> tags.')
NO_THINK = 'Give only the final answer, with no explanation.'
BOXED_THINK = 'Please reason step by step, and put your final answer within \\boxed{}.'
BOXED_NO_THINK = 'Give only the final answer within \\boxed{}, with no explanation.'


def _check(answer_format: str) -> None:
  if answer_format not in ANSWER_FORMATS:
    raise ValueError(f'answer_format {answer_format!r} unknown; valid: {list(ANSWER_FORMATS)}')


def instruction(*, think: bool, answer_format: str = 'tags') -> str:
  """The one-line think / no-think instruction."""
  _check(answer_format)
  if answer_format == 'boxed':
    return BOXED_THINK if think else BOXED_NO_THINK
  return THINK if think else NO_THINK


def apply(question: str, *, think: bool, answer_format: str = 'tags', answer_hint: str = '') -> str:
  """The user-turn text: the question, the think/no-think instruction, then the answer-type hint."""
  lines = [question, instruction(think=think, answer_format=answer_format)]
  if answer_hint:
    lines.append(answer_hint)
  return '\n'.join(lines)


def format_completion(answer: str, *, think: bool, answer_format: str = 'tags') -> str:
  """The shortest completion in the requested format around `answer` (empty reasoning)."""
  _check(answer_format)
  if answer_format == 'boxed':
    return f'\\boxed{{{answer}}}'
  return f'<think></think><answer>{answer}</answer>' if think else answer
