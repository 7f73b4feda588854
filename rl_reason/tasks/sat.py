"""SATURN SAT instances with a planted solution: every instance is satisfiable by construction.

Names follow SATURN (gtxygyzb/Saturn-code): `n_sat` literals per clause, `k` variables (A, B, ...),
`l` clauses. A clause picks n_sat distinct variables (written in alphabetical order) and a sign
pattern with at least one literal true under the planted assignment; the l clauses are distinct,
sorted and joined with " & " ("A!B!D & !BCE": OR inside a clause, "!" negates). Difficulty:

    D(n, k, l) = log2 k + 2 log2 l - n + k / n

The answer is a string of k bits in \\boxed{} (any satisfying assignment is right; meta 'solution'
is the planted one). meta 'clauses' holds the formula string, as the sat_assignment reward reads
it. prompt_style 'full' is SATURN's prompt: the JSON description with its worked example (~690
tiny-tokenizer tokens); 'compact' keeps only the instruction and the JSON problem (~100 tokens), for the
tiny CPU model, which pays for every prompt token and cannot use the description.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from rl_reason.tasks import base
from rl_reason.tasks import templates

MAX_VARIABLES = 26  # one capital letter each
PROMPT_STYLES = ('full', 'compact')

PROMPT_HEADER = (
    'You are now required to solve a SAT (Boolean Satisfiability) problem. The problem is provided in JSON '
    'format, containing the following fields:\n\n'
    '- "n_sat": The number of variables in each clause (n-SAT problem).\n'
    '- "k": The total number of distinct variables in the problem.\n'
    '- "clause": A string representation of the SAT formula, where clauses are separated by " & " '
    '(representing logical AND). Within each clause, variables are combined using concatenation '
    '(representing logical OR). A negation is indicated by "!" before a variable.\n\n'
    'Your task is to provide a valid solution. The answer is a string of length k representing the truth '
    'values of the variables in order (1 for true, 0 for false). If there are multiple solutions, provide '
    'any one of them.')
EXAMPLE = ('**Example**\n{"n_sat": 3, "k": 4, "clause": "!B!C!D & A!B!D & AB!D"}\n'
           '**Final Answer**\n\\boxed{1101}')


def difficulty(n_sat: int, k: int, l: int) -> float:
  """SATURN's D(n, k, l) = log2 k + 2 log2 l - n + k / n."""
  return math.log2(k) + 2 * math.log2(l) - n_sat + k / n_sat


def num_distinct_clauses(n_sat: int, k: int) -> int:
  """Clauses satisfied by one fixed assignment: C(k, n) variable sets x (2^n - 1) sign patterns."""
  return math.comb(k, n_sat) * (2**n_sat - 1)


@dataclasses.dataclass(frozen=True)
class SatConfig:
  """SAT task settings.

  Attributes:
    n_sat: literals per clause (SATURN n).
    k: number of variables, at most 26 (SATURN k).
    l: number of distinct clauses (SATURN l).
    think: ask for step-by-step reasoning before the boxed answer; else the boxed answer only.
    prompt_style: 'full' (SATURN's description and worked example) or 'compact' (instruction and
      problem only).
  """

  n_sat: int = 3
  k: int = 5
  l: int = 5
  think: bool = True
  prompt_style: str = 'full'

  def __post_init__(self):
    if self.prompt_style not in PROMPT_STYLES:
      raise ValueError(f'task.prompt_style {self.prompt_style!r} unknown; valid: {list(PROMPT_STYLES)}')
    if not 1 <= self.n_sat <= self.k <= MAX_VARIABLES:
      raise ValueError(f'need 1 <= n_sat <= k <= {MAX_VARIABLES}, got n_sat={self.n_sat}, k={self.k}')
    limit = num_distinct_clauses(self.n_sat, self.k)
    if not 1 <= self.l <= limit:
      raise ValueError(f'l must be in [1, {limit}] (distinct clauses one assignment satisfies for '
                       f'n_sat={self.n_sat}, k={self.k}), got {self.l}')

  @property
  def difficulty(self) -> float:
    return difficulty(self.n_sat, self.k, self.l)


def _letter(var: int) -> str:
  return chr(ord('A') + var)


def clause_string(clause: list[tuple[int, bool]]) -> str:
  """[(variable, negated), ...] -> 'A!B!D'."""
  return ''.join(('!' if negated else '') + _letter(var) for var, negated in clause)


def parse_formula(formula: str) -> list[list[tuple[int, bool]]]:
  """'A!B & !AC' -> [[(0, False), (1, True)], [(0, True), (2, False)]]."""
  clauses = []
  for text in formula.split(' & '):
    clause, negated = [], False
    for char in text:
      if char == '!':
        negated = True
      elif 'A' <= char <= 'Z':
        clause.append((ord(char) - ord('A'), negated))
        negated = False
      else:
        raise ValueError(f'bad character {char!r} in clause {text!r}')
    if negated or not clause:
      raise ValueError(f'malformed clause {text!r}')
    clauses.append(clause)
  return clauses


def satisfies(formula: str, bits: str) -> bool:
  """Whether the assignment (a '0'/'1' string, variable A first) makes every clause true."""
  clauses = parse_formula(formula)
  needed = 1 + max(var for clause in clauses for var, _ in clause)
  if len(bits) < needed or set(bits) - {'0', '1'}:
    return False
  return all(any((bits[var] == '1') != negated for var, negated in clause) for clause in clauses)


def _random_clause(rng: np.random.Generator, solution: list[int], n_sat: int) -> tuple[tuple[int, bool], ...]:
  variables = sorted(int(v) for v in rng.choice(len(solution), size=n_sat, replace=False))
  agree = int(rng.integers(1, 2**n_sat))  # bit i set: literal i is true under the solution; never all false
  return tuple((var, bool(solution[var]) != bool((agree >> i) & 1)) for i, var in enumerate(variables))


def _all_clauses(solution: list[int], n_sat: int) -> list[tuple[tuple[int, bool], ...]]:
  out = []
  for variables in itertools.combinations(range(len(solution)), n_sat):
    for agree in range(1, 2**n_sat):
      out.append(tuple((var, bool(solution[var]) != bool((agree >> i) & 1)) for i, var in enumerate(variables)))
  return out


def generate(rng: np.random.Generator, n_sat: int, k: int, l: int) -> tuple[str, str]:
  """A planted instance: (formula, solution bits)."""
  solution = [int(b) for b in rng.integers(0, 2, size=k)]
  total = num_distinct_clauses(n_sat, k)
  if 2 * l > total:  # dense: rejection sampling would stall, so draw from the full list
    pool = _all_clauses(solution, n_sat)
    clauses = [pool[i] for i in rng.choice(len(pool), size=l, replace=False)]
  else:
    seen: set[tuple[tuple[int, bool], ...]] = set()
    clauses = []
    while len(clauses) < l:
      clause = _random_clause(rng, solution, n_sat)
      if clause not in seen:
        seen.add(clause)
        clauses.append(clause)
  formula = ' & '.join(sorted(clause_string(list(c)) for c in clauses))
  return formula, ''.join(map(str, solution))


def render_prompt(n_sat: int, k: int, formula: str, *, think: bool, style: str = 'full') -> str:
  problem = json.dumps({'n_sat': n_sat, 'k': k, 'clause': formula})
  instruction = templates.instruction(think=think, answer_format='boxed')
  if style == 'compact':
    return f'{instruction}\n{problem}\n'
  if style != 'full':
    raise ValueError(f'prompt style {style!r} unknown; valid: {list(PROMPT_STYLES)}')
  return f'{PROMPT_HEADER}\n{instruction}\n\n{EXAMPLE}\n\nBelow is the SAT problem you need to solve:\n{problem}\n'


@base.register('sat', SatConfig)
class SatTask:
  """SATURN SAT: meta n_sat, k, l, clauses (the formula string), solution, answer, difficulty."""

  def __init__(self, cfg: SatConfig):
    self.cfg = cfg

  @property
  def reward_names(self) -> tuple[str, ...]:
    return ('sat_assignment',)

  @property
  def reward_weights(self) -> tuple[float, ...]:
    return (1.0,)

  def example(self, seed: int) -> dict[str, Any]:
    cfg = self.cfg
    formula, solution = generate(np.random.default_rng(seed), cfg.n_sat, cfg.k, cfg.l)
    meta = {'n_sat': cfg.n_sat, 'k': cfg.k, 'l': cfg.l, 'clauses': formula, 'solution': solution,
            'answer': solution, 'difficulty': cfg.difficulty, 'think': cfg.think, 'answer_format': 'boxed'}
    return {'prompt': render_prompt(cfg.n_sat, cfg.k, formula, think=cfg.think, style=cfg.prompt_style), 'images': [], 'meta': meta}

  def random_answer_completion(self, meta: Mapping[str, Any], seed: int) -> str:
    bits = ''.join(str(int(b)) for b in base.completion_rng(seed).integers(0, 2, size=meta['k']))
    return templates.format_completion(bits, think=self.cfg.think, answer_format='boxed')
