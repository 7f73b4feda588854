"""RuleReasoner-style rule chains in several domains: facts and rules in, the query's answer out.

Domains (meta 'domain', so a domain-weighted sampler can balance them), each with `depth` as the
difficulty knob:
- 'prontoqa': category chains ("Every wumpus is a yumpus.") ending in a property rule that may be
  negative ("Every yumpus is not bright."); a fact puts someone in the first category; query
  "True or false: Max is (not) bright." The proof has depth + 1 steps.
- 'proofwriter': attribute facts and Horn rules with one or two premises ("If someone is big and
  red then they are round."); closed-world query "True or false: Anne is round."; a true query
  needs a chain of `depth` rules, a false one is not derivable at all.
- 'ordering': depth + 1 comparisons between depth + 2 people, shuffled ("Ann is taller than
  Ben."); query: who is the tallest / shortest, or "True or false: Ann is taller than Cid.".
- 'boxes': which items three boxes hold, then `depth` operations (move, put, remove); query
  "What does Box 2 contain?", answered with a set of items (scored by F1).

Each domain adds `num_distractors` irrelevant statements (for 'ordering' these are comparisons the
chain implies, of which there are only depth (depth + 1) / 2: at most that many are added). meta
holds the structured problem (facts, rules, proof; order; operations) so tests and reward code can
re-derive the answer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from rl_reason.tasks import base
from rl_reason.tasks import templates

DOMAINS = ('prontoqa', 'proofwriter', 'ordering', 'boxes')
CATEGORIES = ('wumpus', 'yumpus', 'zumpus', 'dumpus', 'rompus', 'numpus', 'tumpus', 'vumpus', 'impus', 'jompus',
              'gorpus', 'shumpus', 'lempus', 'sterpus', 'grimpus', 'lorpus', 'brimpus', 'felpus')
PROPERTIES = ('bright', 'cold', 'small', 'happy', 'bitter', 'shy', 'wooden', 'fruity', 'opaque', 'kind', 'loud',
              'spicy', 'red', 'fast')
PEOPLE = ('Max', 'Sam', 'Alex', 'Rex', 'Stella', 'Wren', 'Polly', 'Sally')
ENTITIES = ('Anne', 'Bob', 'Charlie', 'Dave', 'Erin', 'Fiona', 'Gary', 'Harry')
ATTRIBUTES = ('big', 'round', 'red', 'kind', 'nice', 'cold', 'young', 'furry', 'green', 'rough', 'smart', 'quiet',
              'white', 'blue', 'tall', 'calm', 'hot', 'soft', 'shiny', 'heavy', 'wet')
NAMES = ('Ann', 'Ben', 'Cid', 'Dora', 'Eli', 'Fay', 'Gus', 'Hana', 'Ivo', 'Jude', 'Kim', 'Lou')
COMPARISONS = (('taller', 'tallest', 'shortest'), ('older', 'oldest', 'youngest'),
               ('heavier', 'heaviest', 'lightest'))
ITEMS = ('apple', 'key', 'book', 'coin', 'ring', 'pen', 'cup', 'ball', 'hat', 'map', 'shoe', 'bell', 'lamp', 'fork',
         'vase', 'sock', 'comb', 'fan')
NUM_BOXES = 3
HINTS = {'bool': 'The answer is True or False.', 'name': 'The answer is a single name.',
         'set': 'The answer is the list of items, separated by commas.'}


@dataclasses.dataclass(frozen=True)
class RuleConfig:
  """Rule-chain task settings.

  Attributes:
    domains: domains drawn from uniformly by `example` (see the module docstring).
    depth: reasoning steps: chain length (prontoqa, proofwriter), comparisons - 1 (ordering),
      operations (boxes). At least 1.
    num_distractors: irrelevant statements added to the context.
    think: think mode ("<think>...</think><answer>...</answer>") or the bare answer.
  """

  domains: tuple[str, ...] = DOMAINS
  depth: int = 2
  num_distractors: int = 2
  think: bool = True

  def __post_init__(self):
    object.__setattr__(self, 'domains', tuple(self.domains))
    if not self.domains or set(self.domains) - set(DOMAINS):
      raise ValueError(f'domains must be a non-empty subset of {DOMAINS}, got {self.domains}')
    if not 1 <= self.depth <= 6:
      raise ValueError(f'depth must be in [1, 6] (the name pools bound the chains), got {self.depth}')
    if not 0 <= self.num_distractors <= 6:
      raise ValueError(f'num_distractors must be in [0, 6], got {self.num_distractors}')


def _pick(rng: np.random.Generator, pool, count: int) -> list[str]:
  return [str(pool[i]) for i in rng.choice(len(pool), size=count, replace=False)]


def _a(noun: str) -> str:
  return ('an ' if noun[0] in 'aeiou' else 'a ') + noun


def forward_chain(facts: list[list[Any]],
                  rules: list[list[Any]]) -> tuple[dict[tuple[str, str], bool], list[list[Any]]]:
  """Closure of facts [entity, predicate, value] under rules [[premises], head, value] (premises true).

  Returns:
    (derived {(entity, predicate): value}, proof steps [entity, predicate, value, rule index] in
    the order they were derived).
  """
  derived = {(e, p): v for e, p, v in facts}
  proof = []
  changed = True
  while changed:
    changed = False
    entities = sorted({e for e, _ in derived})
    for index, (premises, head, value) in enumerate(rules):
      for entity in entities:
        if (entity, head) not in derived and all(derived.get((entity, p)) is True for p in premises):
          derived[(entity, head)] = value
          proof.append([entity, head, value, index])
          changed = True
  return derived, proof


def _prontoqa(rng: np.random.Generator, depth: int, distractors: int) -> tuple[str, str, Any, str, dict]:
  chain = _pick(rng, CATEGORIES, depth + 1 + distractors)
  chain, others = chain[:depth + 1], chain[depth + 1:]
  prop, other_prop = _pick(rng, PROPERTIES, 2)
  polarity = bool(rng.random() < 0.5)
  person = str(PEOPLE[int(rng.integers(len(PEOPLE)))])
  rules = [[[chain[i]], chain[i + 1], True] for i in range(depth)] + [[[chain[-1]], prop, polarity]]
  for i, category in enumerate(others):  # unreachable from the person's categories
    if i % 2 == 0:
      rules.append([[category], prop, not polarity])  # the classic ProntoQA distractor: the opposite property
    else:
      rules.append([[category], other_prop, bool(rng.random() < 0.5)])
  facts = [[person, chain[0], True]]
  order = rng.permutation(len(rules))
  rules = [rules[i] for i in order]
  sentences = [f'{person} is {_a(chain[0])}.']
  for premises, head, value in rules:
    if head in CATEGORIES:
      sentences.append(f'Every {premises[0]} is {_a(head)}.')
    else:
      sentences.append(f'Every {premises[0]} is {"" if value else "not "}{head}.')
  asked = bool(rng.random() < 0.5)
  question = f'True or false: {person} is {"" if asked else "not "}{prop}.'
  derived, proof = forward_chain(facts, rules)
  answer = 'True' if derived.get((person, prop)) == asked else 'False'
  meta = {'facts': facts, 'rules': rules, 'query': [person, prop, asked], 'proof': proof}
  return ' '.join(sentences), question, answer, 'bool', meta


def _proofwriter(rng: np.random.Generator, depth: int, distractors: int) -> tuple[str, str, Any, str, dict]:
  entity, other = _pick(rng, ENTITIES, 2)
  attrs = _pick(rng, ATTRIBUTES, 2 * depth + 3 + distractors)
  chain, side, pool = attrs[:depth + 1], attrs[depth + 1:2 * depth + 1], attrs[2 * depth + 1:]
  facts = [[entity, chain[0], True]]
  rules = []
  for i in range(depth):
    if rng.random() < 0.5:  # a second premise, given as a fact
      facts.append([entity, side[i], True])
      rules.append([[chain[i], side[i]], chain[i + 1], True])
    else:
      rules.append([[chain[i]], chain[i + 1], True])
  unreachable, extra = pool[0], pool[1:]
  # A rule that would give the false target needs a premise nobody has.
  rules.append([[extra[0], chain[0]], unreachable, True])
  for i in range(distractors):
    if i % 2 == 0:
      facts.append([other, str(extra[1 + i]), True])
    else:
      rules.append([[str(extra[1 + i])], str(extra[i]), True])
  target = chain[-1] if rng.random() < 0.5 else unreachable
  facts = [facts[i] for i in rng.permutation(len(facts))]
  rules = [rules[i] for i in rng.permutation(len(rules))]
  sentences = [f'{e} is {p}.' for e, p, _ in facts]
  for premises, head, _ in rules:
    sentences.append(f'If someone is {" and ".join(premises)} then they are {head}.')
  derived, proof = forward_chain(facts, rules)
  answer = 'True' if derived.get((entity, target)) is True else 'False'
  meta = {'facts': facts, 'rules': rules, 'query': [entity, target, True], 'proof': proof}
  return ' '.join(sentences), f'True or false: {entity} is {target}.', answer, 'bool', meta


def _ordering(rng: np.random.Generator, depth: int, distractors: int) -> tuple[str, str, Any, str, dict]:
  relation, most, least = COMPARISONS[int(rng.integers(len(COMPARISONS)))]
  order = _pick(rng, NAMES, depth + 2)  # order[0] is the most
  statements = [[order[i], order[i + 1]] for i in range(depth + 1)]
  # Distractors: true comparisons implied by the chain (they add text, not information).
  implied = [[order[i], order[j]] for i in range(depth + 2) for j in range(i + 2, depth + 2)]
  for i in rng.permutation(len(implied))[:distractors]:
    statements.append(implied[i])
  statements = [statements[i] for i in rng.permutation(len(statements))]
  context = ' '.join(f'{a} is {relation} than {b}.' for a, b in statements)
  kind = int(rng.integers(3))
  if kind == 0:
    question, answer, answer_type = f'Who is the {most}?', order[0], 'name'
  elif kind == 1:
    question, answer, answer_type = f'Who is the {least}?', order[-1], 'name'
  else:
    a, b = _pick(rng, order, 2)
    question = f'True or false: {a} is {relation} than {b}.'
    answer, answer_type = ('True' if order.index(a) < order.index(b) else 'False'), 'bool'
  meta = {'order': order, 'statements': statements, 'relation': relation}
  return context, question, answer, answer_type, meta


def _boxes(rng: np.random.Generator, depth: int, distractors: int) -> tuple[str, str, Any, str, dict]:
  items = _pick(rng, ITEMS, len(ITEMS))
  count = int(rng.integers(3, 6))
  initial: dict[int, list[str]] = {b: [] for b in range(1, NUM_BOXES + 1)}
  for item in items[:count]:
    initial[int(rng.integers(1, NUM_BOXES + 1))].append(item)
  spare = items[count:]
  state = {b: list(v) for b, v in initial.items()}
  operations = []
  for _ in range(depth):
    held = [(b, i) for b, v in state.items() for i in v]
    kinds = ['move', 'put'] + (['remove'] if len(held) > 1 else [])
    op = kinds[int(rng.integers(len(kinds)))]
    if op == 'put':
      item, to = spare.pop(0), int(rng.integers(1, NUM_BOXES + 1))
      state[to].append(item)
      operations.append(['put', item, None, to])
    else:
      source, item = held[int(rng.integers(len(held)))]
      state[source].remove(item)
      if op == 'move':
        to = int(rng.choice([b for b in state if b != source]))
        state[to].append(item)
        operations.append(['move', item, source, to])
      else:
        operations.append(['remove', item, source, None])
  sentences = []
  for b, content in initial.items():
    sentences.append(f'Box {b} contains ' + (' and '.join(f'the {i}' for i in content) + '.' if content
                                             else 'nothing.'))
  for op, item, source, to in operations:
    sentences.append({'move': f'Move the {item} from Box {source} to Box {to}.',
                      'put': f'Put the {item} into Box {to}.',
                      'remove': f'Remove the {item} from Box {source}.'}[op])
  # Distractors: statements about items that never enter a box.
  for item in spare[:distractors]:
    sentences.insert(NUM_BOXES, f'The {item} is on the table.')
  query = int(rng.choice([b for b, v in state.items() if v]))
  answer = sorted(state[query])
  meta = {'initial': {str(b): v for b, v in initial.items()}, 'operations': operations, 'query_box': query}
  return ' '.join(sentences), f'What does Box {query} contain?', answer, 'set', meta


_DOMAIN_FNS = {'prontoqa': _prontoqa, 'proofwriter': _proofwriter, 'ordering': _ordering, 'boxes': _boxes}


@base.register('rules', RuleConfig)
class RuleTask:
  """meta: domain, depth, answer (str; a sorted list of items for 'boxes'), answer_kind ('bool' | 'name' |
  'set'), think, and the structured problem of the domain (module docstring)."""

  def __init__(self, cfg: RuleConfig):
    self.cfg = cfg

  @property
  def reward_names(self) -> tuple[str, ...]:
    # RuleReasoner: acc (exact match; F1 for sets) + format (0 if the tags are in order, else -1).
    return ('rule_acc', 'ordered_tags_format') if self.cfg.think else ('rule_acc',)

  @property
  def reward_weights(self) -> tuple[float, ...]:
    return (1.0,) * len(self.reward_names)

  def example(self, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    domain = str(self.cfg.domains[int(rng.integers(len(self.cfg.domains)))])
    return self._example(domain, rng)

  def example_for(self, domain: str, seed: int) -> dict[str, Any]:
    """An example of one domain (for domain-weighted sampling); any domain of DOMAINS."""
    if domain not in DOMAINS:
      raise ValueError(f'domain {domain!r} unknown; valid: {list(DOMAINS)}')
    return self._example(domain, np.random.default_rng(seed))

  def _example(self, domain: str, rng: np.random.Generator) -> dict[str, Any]:
    context, question, answer, answer_kind, structure = _DOMAIN_FNS[domain](rng, self.cfg.depth,
                                                                            self.cfg.num_distractors)
    meta = {'domain': domain, 'depth': self.cfg.depth, 'answer': answer, 'answer_kind': answer_kind,
            'think': self.cfg.think, **structure}
    prompt = templates.apply(f'{context}\n{question}', think=self.cfg.think, answer_hint=HINTS[answer_kind])
    return {'prompt': prompt, 'images': [], 'meta': meta}

  def random_answer_completion(self, meta: Mapping[str, Any], seed: int) -> str:
    rng = base.completion_rng(seed)
    if meta['answer_kind'] == 'bool':
      answer = ('True', 'False')[int(rng.integers(2))]
    elif meta['answer_kind'] == 'name':
      answer = str(NAMES[int(rng.integers(len(NAMES)))])
    else:
      answer = ', '.join(_pick(rng, ITEMS, int(rng.integers(1, 4))))
    return templates.format_completion(answer, think=self.cfg.think)
