"""Rule chains: every answer is derivable from the stated facts and rules; depth sets the chain length."""

import collections

import pytest

from rl_reason.tasks import rules


def _closure(facts, rule_list):
  """Own forward chainer: {(entity, predicate): value}."""
  known = {(e, p): v for e, p, v in facts}
  while True:
    new = {}
    for premises, head, value in rule_list:
      for entity in {e for e, _ in known}:
        if (entity, head) not in known and all(known.get((entity, p)) is True for p in premises):
          new[(entity, head)] = value
    if not new:
      return known
    known.update(new)


def _check_proof(meta):
  """Each proof step follows from a rule whose premises are facts or earlier steps."""
  known = {(e, p): v for e, p, v in meta['facts']}
  for entity, predicate, value, index in meta['proof']:
    premises, head, rule_value = meta['rules'][index]
    assert head == predicate and rule_value == value
    assert all(known.get((entity, p)) is True for p in premises)
    known[(entity, predicate)] = value
  return known


@pytest.mark.parametrize('depth', [1, 2, 4, 6])
def test_prontoqa_and_proofwriter_answers_are_derivable(depth):
  task = rules.RuleTask(rules.RuleConfig(depth=depth, num_distractors=3))
  answers = collections.Counter()
  for domain in ('prontoqa', 'proofwriter'):
    for seed in range(25):
      example = task.example_for(domain, seed)
      meta = example['meta']
      entity, predicate, asked = meta['query']
      derived = _closure(meta['facts'], meta['rules'])
      assert _check_proof(meta) == derived
      truth = derived.get((entity, predicate)) == asked if domain == 'prontoqa' else (entity, predicate) in derived
      assert meta['answer'] == ('True' if truth else 'False')
      chain = [step for step in meta['proof'] if step[0] == entity]
      if domain == 'prontoqa':
        assert len(chain) == depth + 1 and chain[-1][1] == predicate  # depth category rules + the property rule
      elif truth:
        assert len(chain) == depth and chain[-1][1] == predicate
      for e, p, _ in meta['facts']:
        assert f'{e} is ' in example['prompt']
      answers[(domain, meta['answer'])] += 1
  assert all(answers[(d, a)] > 3 for d in ('prontoqa', 'proofwriter') for a in ('True', 'False'))


@pytest.mark.parametrize('depth', [1, 3, 5])
def test_ordering_answers_follow_from_the_comparisons(depth):
  task = rules.RuleTask(rules.RuleConfig(depth=depth))
  for seed in range(20):
    example = task.example_for('ordering', seed)
    meta = example['meta']
    people = {p for s in meta['statements'] for p in s}
    implied = depth * (depth + 1) // 2  # comparisons the chain implies: the only possible distractors
    assert len(people) == depth + 2 and len(meta['statements']) == depth + 1 + min(2, implied)
    greater = {p: set() for p in people}  # transitive closure of the stated comparisons
    for a, b in meta['statements']:
      greater[a].add(b)
    for _ in people:
      for p in people:
        greater[p] |= set().union(*(greater[q] for q in greater[p]))
    top = [p for p in people if len(greater[p]) == depth + 1]
    bottom = [p for p in people if not greater[p]]
    question = example['prompt'].split('\n')[1]
    if question.startswith('True or false'):
      a, b = question[len('True or false: '):-1].split(f' is {meta["relation"]} than ')
      assert meta['answer'] == ('True' if b in greater[a] else 'False')
    elif 'est?' in question and question.split(' ')[-1][:-1] in {m for _, m, _ in rules.COMPARISONS}:
      assert [meta['answer']] == top
    else:
      assert [meta['answer']] == bottom


@pytest.mark.parametrize('depth', [1, 3, 6])
def test_box_answers_follow_the_operations(depth):
  task = rules.RuleTask(rules.RuleConfig(depth=depth, num_distractors=6))
  for seed in range(25):
    example = task.example_for('boxes', seed)
    meta = example['meta']
    assert len(meta['operations']) == depth
    state = {int(b): set(items) for b, items in meta['initial'].items()}
    for op, item, source, to in meta['operations']:
      if op in ('move', 'remove'):
        state[source].remove(item)
      if op in ('move', 'put'):
        assert op == 'move' or all(item not in s for s in state.values())
        state[to].add(item)
      assert f'the {item}' in example['prompt']
    assert meta['answer'] == sorted(state[meta['query_box']]) and meta['answer']
    assert f'What does Box {meta["query_box"]} contain?' in example['prompt']
    assert example['prompt'].count('is on the table.') == 6


def test_example_draws_every_configured_domain():
  task = rules.RuleTask(rules.RuleConfig())
  domains = collections.Counter(task.example(seed)['meta']['domain'] for seed in range(80))
  assert set(domains) == set(rules.DOMAINS) and min(domains.values()) > 8
  only = rules.RuleTask(rules.RuleConfig(domains=('boxes',)))
  assert {only.example(s)['meta']['domain'] for s in range(10)} == {'boxes'}
  with pytest.raises(ValueError, match='domain'):
    task.example_for('clutrr', 0)


@pytest.mark.parametrize('kwargs, message', [
    ({'domains': ('logic',)}, 'domains'), ({'domains': ()}, 'domains'), ({'depth': 0}, 'depth'),
    ({'depth': 7}, 'depth'), ({'num_distractors': 7}, 'num_distractors'),
])
def test_config_validation(kwargs, message):
  with pytest.raises(ValueError, match=message):
    rules.RuleConfig(**kwargs)
