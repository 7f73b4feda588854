"""SAT: planted solutions satisfy every clause; SATURN's clause format and difficulty formula."""

import itertools
import math
import re

import pytest

from rl_reason.tasks import sat

SETTINGS = [(3, 5, 5), (3, 5, 13), (2, 4, 6), (4, 7, 20), (1, 3, 3), (3, 3, 7), (5, 8, 40)]


def _clauses(formula):
  """Own parser: [[(variable, negated), ...], ...]."""
  out = []
  for text in formula.split(' & '):
    assert re.fullmatch(r'(!?[A-Z])+', text), text
    out.append([(ord(v) - 65, neg == '!') for neg, v in re.findall(r'(!?)([A-Z])', text)])
  return out


def _true(clause, bits):
  return any((bits[v] == '1') != neg for v, neg in clause)


@pytest.mark.parametrize('n_sat, k, l', SETTINGS)
def test_planted_solution_satisfies_every_distinct_clause(n_sat, k, l):
  task = sat.SatTask(sat.SatConfig(n_sat=n_sat, k=k, l=l))
  for seed in range(15):
    meta = task.example(seed)['meta']
    clauses = _clauses(meta['clauses'])
    texts = meta['clauses'].split(' & ')
    assert len(clauses) == l and len(set(texts)) == l and texts == sorted(texts)
    for clause in clauses:
      variables = [v for v, _ in clause]
      assert len(clause) == n_sat and variables == sorted(set(variables)) and max(variables) < k
    assert len(meta['solution']) == k and set(meta['solution']) <= {'0', '1'}
    assert all(_true(c, meta['solution']) for c in clauses)
    assert meta['answer'] == meta['solution'] and sat.satisfies(meta['clauses'], meta['solution'])


def test_instances_are_not_trivially_satisfied_by_every_assignment():
  task = sat.SatTask(sat.SatConfig(n_sat=3, k=5, l=20))
  for seed in range(5):
    clauses = _clauses(task.example(seed)['meta']['clauses'])
    all_bits = [''.join(b) for b in itertools.product('01', repeat=5)]
    satisfying = [b for b in all_bits if all(_true(c, b) for c in clauses)]
    assert 1 <= len(satisfying) < len(all_bits)
    assert all(sat.satisfies(task.example(seed)['meta']['clauses'], b) == (b in satisfying) for b in all_bits)


def test_dense_settings_use_every_clause_an_assignment_allows():
  meta = sat.SatTask(sat.SatConfig(n_sat=2, k=3, l=9)).example(0)['meta']  # C(3,2) * 3 = 9 clauses
  assert len(set(meta['clauses'].split(' & '))) == 9


def test_difficulty_formula_and_monotonicity():
  assert sat.difficulty(3, 5, 5) == pytest.approx(math.log2(5) + 2 * math.log2(5) - 3 + 5 / 3)
  assert sat.SatConfig(n_sat=3, k=5, l=6).difficulty > sat.SatConfig(n_sat=3, k=5, l=5).difficulty  # SATURN stage 2
  assert sat.difficulty(3, 5, 15) > sat.difficulty(3, 5, 13)
  assert sat.difficulty(3, 8, 20) > sat.difficulty(3, 5, 20)  # more variables: harder
  assert sat.difficulty(4, 7, 20) < sat.difficulty(3, 7, 20)  # longer clauses are easier to satisfy
  meta = sat.SatTask(sat.SatConfig(n_sat=3, k=5, l=13)).example(0)['meta']
  assert meta['difficulty'] == sat.difficulty(3, 5, 13) and (meta['n_sat'], meta['k'], meta['l']) == (3, 5, 13)


def test_prompt_is_saturns_json_problem_with_the_worked_example():
  example = sat.SatTask(sat.SatConfig(n_sat=3, k=5, l=5)).example(4)
  formula = example['meta']['clauses']
  assert f'{{"n_sat": 3, "k": 5, "clause": "{formula}"}}' in example['prompt']
  assert '\\boxed{1101}' in example['prompt'] and 'step by step' in example['prompt']
  direct = sat.SatTask(sat.SatConfig(think=False)).example(4)['prompt']
  assert 'step by step' not in direct and '\\boxed{}' in direct


def test_compact_prompt_is_the_instruction_and_the_problem_only():
  full = sat.SatTask(sat.SatConfig(n_sat=2, k=3, l=3)).example(4)
  compact = sat.SatTask(sat.SatConfig(n_sat=2, k=3, l=3, prompt_style='compact')).example(4)
  assert compact['meta'] == full['meta']
  problem = f'{{"n_sat": 2, "k": 3, "clause": "{full["meta"]["clauses"]}"}}'
  assert compact['prompt'].endswith(problem + '\n') and problem in full['prompt']
  assert sat.PROMPT_HEADER not in compact['prompt'] and sat.EXAMPLE not in compact['prompt']
  assert 'step by step' in compact['prompt'] and len(compact['prompt']) < len(full['prompt']) // 5


@pytest.mark.parametrize('kwargs, message', [
    ({'n_sat': 0}, 'n_sat'), ({'n_sat': 6, 'k': 5}, 'n_sat'), ({'k': 27}, 'k <= 26'),
    ({'n_sat': 2, 'k': 3, 'l': 10}, r'l must be in \[1, 9\]'), ({'l': 0}, 'l must be'),
    ({'prompt_style': 'short'}, "prompt_style 'short' unknown"),
])
def test_config_validation(kwargs, message):
  with pytest.raises(ValueError, match=message):
    sat.SatConfig(**kwargs)


def test_satisfies_rejects_wrong_length_and_parse_errors():
  assert not sat.satisfies('A!B', '1')
  assert not sat.satisfies('A!B', '1x')
  with pytest.raises(ValueError, match='malformed'):
    sat.parse_formula('A!')
