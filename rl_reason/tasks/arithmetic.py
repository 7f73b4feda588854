"""Integer arithmetic expressions with a difficulty knob (the CPU stand-in for GSM8K / MATH).

Difficulty d sets the number of operands (d + 1) and their size ((d + 1) // 2 digits), unless
`num_operands` or `digits` override it. The expression is a random binary tree over + - *,
written with the parentheses precedence needs; the answer is its exact integer value, asked for
in \\boxed{} (SimpleRL-Zoo, LASER, DAPO). meta 'paraphrase' is the same problem in other words
(Co-Reward pairs a question with its rephrasing).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from rl_reason.tasks import base
from rl_reason.tasks import templates

OPERATORS = ('+', '-', '*')
PRECEDENCE = {'+': 1, '-': 1, '*': 2}
QUESTIONS = ('Compute {expr}.', 'What is the value of {expr}?')


@dataclasses.dataclass(frozen=True)
class ArithmeticConfig:
  """Arithmetic task settings.

  Attributes:
    difficulty: >= 1; d + 1 operands of (d + 1) // 2 digits each unless overridden below.
    num_operands: overrides the operand count (>= 2); 0 derives it from difficulty.
    digits: overrides the digits per operand (>= 1); 0 derives it from difficulty.
    operators: the operators drawn from, a subset of + - *.
    think: ask for step-by-step reasoning before the boxed answer; else the boxed answer only.
  """

  difficulty: int = 1
  num_operands: int = 0
  digits: int = 0
  operators: tuple[str, ...] = OPERATORS
  think: bool = True

  def __post_init__(self):
    object.__setattr__(self, 'operators', tuple(self.operators))
    if self.difficulty < 1:
      raise ValueError(f'difficulty must be >= 1, got {self.difficulty}')
    if self.num_operands != 0 and self.num_operands < 2:
      raise ValueError(f'num_operands must be >= 2 (or 0: from difficulty), got {self.num_operands}')
    if self.digits < 0:
      raise ValueError(f'digits must be >= 1 (or 0: from difficulty), got {self.digits}')
    if not self.operators or set(self.operators) - set(OPERATORS):
      raise ValueError(f'operators must be a non-empty subset of {OPERATORS}, got {self.operators}')

  @property
  def operand_count(self) -> int:
    return self.num_operands or self.difficulty + 1

  @property
  def operand_digits(self) -> int:
    return self.digits or (self.difficulty + 1) // 2


@dataclasses.dataclass(frozen=True)
class Node:
  """An expression tree: a leaf holds `value`; an inner node `op` over `left` and `right`."""

  value: int = 0
  op: str = ''
  left: Node | None = None
  right: Node | None = None

  def evaluate(self) -> int:
    if not self.op:
      return self.value
    a, b = self.left.evaluate(), self.right.evaluate()
    return a + b if self.op == '+' else a - b if self.op == '-' else a * b

  def render(self) -> str:
    if not self.op:
      return str(self.value)
    left, right = self.left.render(), self.right.render()
    if self.left.op and PRECEDENCE[self.left.op] < PRECEDENCE[self.op]:
      left = f'({left})'
    # Same-precedence right operands need parentheses under - (a - (b + c)); * is associative.
    if self.right.op and (PRECEDENCE[self.right.op] < PRECEDENCE[self.op]
                          or (PRECEDENCE[self.right.op] == PRECEDENCE[self.op] and self.op == '-')):
      right = f'({right})'
    return f'{left} {self.op} {right}'


def random_tree(rng: np.random.Generator, operands: int, digits: int, operators: tuple[str, ...]) -> Node:
  """A uniform random split of `operands` leaves, each a random `digits`-digit number (1..9 for one digit)."""
  if operands == 1:
    low = 10**(digits - 1) if digits > 1 else 1
    return Node(value=int(rng.integers(low, 10**digits)))
  split = int(rng.integers(1, operands))
  op = str(operators[int(rng.integers(len(operators)))])
  return Node(op=op, left=random_tree(rng, split, digits, operators),
              right=random_tree(rng, operands - split, digits, operators))


@base.register('arithmetic', ArithmeticConfig)
class ArithmeticTask:
  """meta: expression, answer (the integer as a string), operands, digits, paraphrase, think, answer_format."""

  def __init__(self, cfg: ArithmeticConfig):
    self.cfg = cfg

  @property
  def reward_names(self) -> tuple[str, ...]:
    return ('math_equiv',)  # SimpleRL-Zoo "mix": correctness only, no format reward

  @property
  def reward_weights(self) -> tuple[float, ...]:
    return (1.0,)

  def example(self, seed: int) -> dict[str, Any]:
    cfg = self.cfg
    rng = np.random.default_rng(seed)
    tree = random_tree(rng, cfg.operand_count, cfg.operand_digits, cfg.operators)
    expression = tree.render()
    first = int(rng.integers(len(QUESTIONS)))
    prompt, paraphrase = (templates.apply(QUESTIONS[(first + i) % len(QUESTIONS)].format(expr=expression),
                                          think=cfg.think, answer_format='boxed') for i in range(2))
    meta = {'expression': expression, 'answer': str(tree.evaluate()), 'operands': cfg.operand_count,
            'digits': cfg.operand_digits, 'difficulty': cfg.difficulty, 'paraphrase': paraphrase,
            'think': cfg.think, 'answer_format': 'boxed'}
    return {'prompt': prompt, 'images': [], 'meta': meta}

  def answer_completion(self, meta: Mapping[str, Any]) -> str:
    return templates.format_completion(str(meta['answer']), think=self.cfg.think, answer_format='boxed')

  def random_answer_completion(self, meta: Mapping[str, Any], seed: int) -> str:
    value = int(base.completion_rng(seed).integers(-10**meta['digits'], 10**meta['digits']))
    return templates.format_completion(str(value), think=self.cfg.think, answer_format='boxed')
