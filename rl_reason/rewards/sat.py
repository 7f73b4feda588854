r"""SAT assignment reward (SATURN): 1 if the last \boxed{bits} satisfies every clause, 0 if not, -1 if none.

Meta 'clauses': clauses joined by ' & ' (or a list of clause strings); a clause is a disjunction
of literals written back to back, a variable being a capital letter (A is variable 0) and '!'
negating the next one: 'A!B!D' is A or not B or not D. Meta 'k': the number of variables; the
boxed answer must be exactly k characters of 0/1 (bit i is variable i), anything else boxed
scores 0 like a wrong assignment.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

from rl_reason.rewards import parsing
from rl_reason.rewards.registry import register

_CLAUSE = re.compile(r'(?:!?[A-Z])+')
_LITERAL = re.compile(r'(!?)([A-Z])')


@functools.lru_cache(maxsize=1024)
def parse_clauses(clauses: str) -> tuple[tuple[tuple[int, bool], ...], ...]:
  """((variable index, positive?), ...) per clause. Raises ValueError on a malformed clause string."""
  parsed = []
  for clause in clauses.split('&'):
    clause = clause.strip()
    if not _CLAUSE.fullmatch(clause):
      raise ValueError(f'malformed SAT clause {clause!r} in meta clauses')
    parsed.append(tuple((ord(var) - ord('A'), not neg) for neg, var in _LITERAL.findall(clause)))
  return tuple(parsed)


def satisfies(bits: str, clauses: tuple[tuple[tuple[int, bool], ...], ...]) -> bool:
  return all(any((bits[var] == '1') == positive for var, positive in clause) for clause in clauses)


@register('sat_assignment', range=(-1.0, 1.0), required_meta=('clauses', 'k'), source='SATURN')
def sat_assignment(text: str, meta: Mapping[str, Any]) -> float:
  r"""1.0 if the last \boxed{} holds k bits satisfying all clauses, 0.0 if it does not, -1.0 if no \boxed{}."""
  clauses_meta = meta['clauses']
  clauses = parse_clauses(clauses_meta if isinstance(clauses_meta, str) else ' & '.join(clauses_meta))
  k = int(meta['k'])
  if any(var >= k for clause in clauses for var, _ in clause):
    raise ValueError(f'meta clauses use a variable beyond k={k}')
  boxed = parsing.extract_boxed(text)
  if boxed is None:
    return -1.0
  bits = boxed.strip()
  if len(bits) != k or not set(bits) <= {'0', '1'}:
    return 0.0
  return float(satisfies(bits, clauses))
