"""Arithmetic: answers evaluate correctly; difficulty raises operand count and size."""

import re

import pytest

from rl_reason.tasks import arithmetic


def _evaluate(expression):
  assert re.fullmatch(r'[0-9+\-* ()]+', expression), expression
  return eval(expression)  # only digits, operators, spaces and parentheses (checked above)


@pytest.mark.parametrize('difficulty', [1, 2, 3, 4, 6])
def test_answers_are_the_expression_values(difficulty):
  task = arithmetic.ArithmeticTask(arithmetic.ArithmeticConfig(difficulty=difficulty))
  for seed in range(30):
    example = task.example(seed)
    meta = example['meta']
    assert int(meta['answer']) == _evaluate(meta['expression'])
    assert meta['expression'] in example['prompt'] and meta['expression'] in meta['paraphrase']
    assert meta['paraphrase'] != example['prompt'] and '\\boxed{}' in example['prompt']


def test_difficulty_increases_operand_count_and_size():
  stats = {}
  for difficulty in (1, 3, 5):
    task = arithmetic.ArithmeticTask(arithmetic.ArithmeticConfig(difficulty=difficulty))
    numbers = [re.findall(r'\d+', task.example(seed)['meta']['expression']) for seed in range(20)]
    stats[difficulty] = ({len(n) for n in numbers}, max(len(x) for n in numbers for x in n))
  assert stats[1] == ({2}, 1) and stats[3] == ({4}, 2) and stats[5] == ({6}, 3)


def test_overrides_and_operators():
  cfg = arithmetic.ArithmeticConfig(difficulty=1, num_operands=5, digits=3, operators=('*',))
  for seed in range(10):
    expression = arithmetic.ArithmeticTask(cfg).example(seed)['meta']['expression']
    numbers = re.findall(r'\d+', expression)
    assert len(numbers) == 5 and all(len(x) == 3 for x in numbers)
    assert set(re.findall(r'[+\-*]', expression)) == {'*'}


def test_parentheses_follow_precedence():
  n = arithmetic.Node
  leaf = lambda v: n(value=v)  # noqa: E731
  tree = n(op='-', left=leaf(9), right=n(op='-', left=leaf(5), right=leaf(2)))
  assert tree.render() == '9 - (5 - 2)' and tree.evaluate() == 6
  tree = n(op='*', left=n(op='+', left=leaf(1), right=leaf(2)), right=n(op='*', left=leaf(3), right=leaf(4)))
  assert tree.render() == '(1 + 2) * 3 * 4' and tree.evaluate() == 36
  tree = n(op='+', left=n(op='-', left=leaf(1), right=leaf(2)), right=n(op='*', left=leaf(3), right=leaf(4)))
  assert tree.render() == '1 - 2 + 3 * 4'


@pytest.mark.parametrize('kwargs, message', [
    ({'difficulty': 0}, 'difficulty'), ({'num_operands': 1}, 'num_operands'), ({'digits': -1}, 'digits'),
    ({'operators': ('/',)}, 'operators'),
])
def test_config_validation(kwargs, message):
  with pytest.raises(ValueError, match=message):
    arithmetic.ArithmeticConfig(**kwargs)
