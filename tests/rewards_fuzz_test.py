"""Fuzzing every built-in reward: arbitrary text never raises and the value stays in the declared range.

1000 examples per reward (unicode, tag soup, boxed/number fragments that overflow or read as NaN)
and one set of megabyte completions per reward with a time budget. The task metas are fuzzed too,
within what a task generator produces (valid labels, boxes, grids, clauses).
"""

import math

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from rl_reason import rewards
from rl_reason.rewards import deadline, math_answer, ui


def _module(name):
  fn = rewards.get(name).fn
  return getattr(fn, '__module__', None) or type(fn).__module__


BUILTIN = sorted(name for name in rewards.names() if _module(name).startswith('rl_reason.rewards'))

FRAGMENTS = ['<think>', '</think>', '<answer>', '</answer>', '<answer', 'think>', '\\boxed{', '\\boxed', '{', '}',
             '\\frac', '\\left', '(', ')', '[', ']', ',', ';', ' ', '\n', '\t', '!', '&', '$', '/', '.', '-', '+',
             'e', '1', '2', '3', '0', '9' * 40, '9' * 400, '1e999', '-1e308', '1e-400', 'nan', 'inf', '-0', 'A', 'B',
             'C', 'x', "'action'", '"coordinate"', ':', "'click'", 'click', 'é', '日', '١', '\x00', '\ud800', 'ß',
             '\u2028', 'ﬁ', '^', '\\sqrt', '*', '=']
TEXT = st.one_of(st.text(max_size=200), st.lists(st.sampled_from(FRAGMENTS), max_size=40).map(''.join))

LABELS = st.one_of(st.text(max_size=20), st.integers(-10**6, 10**6).map(str),
                   st.sampled_from(['42', '0.5', '\\frac{1}{2}', 'x=3', 'A', 'cat', 'hello world', '', '1e999']))
LETTER_SETS = st.one_of(st.sets(st.sampled_from('ABCDE'), min_size=1).map(lambda s: ', '.join(sorted(s))),
                        st.lists(st.sampled_from('ABCDE'), min_size=1))
ITEM_LABELS = st.one_of(LABELS, st.lists(st.text(max_size=8), max_size=4))
PREFILL = {'prefill_think': st.booleans()}
COORD = st.integers(-50, 2000)
BOX = st.tuples(COORD, COORD, COORD, COORD).map(lambda b: [min(b[0], b[2]), min(b[1], b[3]), max(b[0], b[2]),
                                                           max(b[1], b[3])])
SIZE = st.tuples(st.integers(1, 2000), st.integers(1, 2000))
FRAME = {'image_size': SIZE, 'resized_size': SIZE}
GRID = st.integers(1, 4).flatmap(lambda rows: st.integers(1, 4).flatmap(lambda cols: st.permutations(
    list(range(1, rows * cols + 1))).map(lambda gt: {'rows': rows, 'cols': cols, 'gt': gt})))


def _meta(required, optional=None):
  return st.fixed_dictionaries(required, optional=optional or {})


def _with(base, required=None, optional=None):
  return base.flatmap(lambda meta: _meta(required or {}, optional).map(lambda extra: {**meta, **extra}))


def _sat_meta():
  literal = st.tuples(st.booleans(), st.integers(0, 5))

  def build(k, clauses):
    text = ' & '.join(''.join(('!' if neg else '') + chr(ord('A') + var % k) for neg, var in clause)
                      for clause in clauses)
    return {'clauses': text, 'k': k}

  return st.integers(1, 6).flatmap(lambda k: st.lists(st.lists(literal, min_size=1, max_size=3), min_size=1,
                                                      max_size=5).map(lambda clauses: build(k, clauses)))


ANSWER = _meta({'answer': LABELS})
UI_META = _meta({'gt_action': st.sampled_from(ui.ACTIONS), 'gt_bbox': BOX}, {**FRAME, **PREFILL})
ANSWER_TYPES = st.sampled_from(['digit', 'letter', 'number', 'bbox', 'point', 'grid'])
LETTER_REWARDS = ('set_subset_soft', 'tw_grpo')  # their labels must be option letters

# One meta that every other reward can read: each hypothesis example is checked on all of them,
# so every reward sees 1000 examples while hypothesis' per-example cost (milliseconds) is paid
# once per example rather than once per reward and example.
UNIVERSAL_META = _with(
    GRID, required={'answer': st.one_of(LABELS, ITEM_LABELS), 'gt_box': BOX, 'gt_action': st.sampled_from(ui.ACTIONS),
                    'gt_bbox': BOX, 'answer_type': ANSWER_TYPES, 'seed': st.one_of(st.integers(), st.text(max_size=5))},
    optional={**PREFILL, **FRAME, 'think': st.booleans(), 'spurious_p': st.floats(0.0, 1.0)}).flatmap(
        lambda meta: _sat_meta().map(lambda sat: {**meta, **sat}))
LETTER_META = _meta({'answer': LETTER_SETS}, PREFILL)
FAMILIES = {
    'general': (UNIVERSAL_META, tuple(name for name in BUILTIN if name not in LETTER_REWARDS)),
    'letters': (LETTER_META, LETTER_REWARDS),
}


def test_every_builtin_reward_is_fuzzed():
  assert len(BUILTIN) >= 43
  covered = [name for _, names in FAMILIES.values() for name in names]
  assert sorted(covered) == BUILTIN


def check_value(name, raw):
  """The raw value is None, NaN or inside the declared range; a dict has 'overall' and numeric sub-scores."""
  low, high = rewards.get(name).range
  if isinstance(raw, dict):
    assert 'overall' in raw, (name, raw)
    for key, sub in raw.items():
      assert sub is None or (isinstance(sub, (int, float)) and not math.isinf(sub)), (name, key, sub)
    raw = raw['overall']
  assert raw is None or isinstance(raw, (int, float)), (name, raw)
  assert raw is None or math.isnan(raw) or low <= raw <= high, (name, raw, low, high)


@pytest.mark.parametrize('family', sorted(FAMILIES))
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_never_raises_and_stays_in_range(family, data):
  meta_strategy, names = FAMILIES[family]
  meta = data.draw(meta_strategy, label='meta')
  text = data.draw(TEXT, label='text')
  for name in names:
    try:
      raw = rewards.get(name).fn(text, meta)
    except Exception as e:
      raise AssertionError(f'reward {name!r} raised {type(e).__name__}: {e}') from e
    check_value(name, raw)


EXAMPLE_META = {'rows': 2, 'cols': 2, 'gt': [2, 1, 4, 3], 'answer': '2 1 4 3', 'gt_box': [0, 0, 10, 10],
                'gt_action': 'click', 'gt_bbox': [0, 0, 10, 10], 'answer_type': 'grid', 'seed': 0,
                'clauses': 'A!B & B', 'k': 2, 'image_size': (100, 100), 'resized_size': (50, 50)}


def _example_meta(name):
  return {'answer': 'A, C'} if name in LETTER_REWARDS else EXAMPLE_META


BIG = {
    'think': '<think>' + 'a' * 1_000_000 + '</think><answer>2 1 4 3</answer>',
    'digits': '9' * 1_000_000,
    'tags': '<think>' * 100_000 + '</answer>' * 100_000,
    'boxed': '\\boxed{' * 130_000 + '1' + '}' * 129_999,
    'words': 'the cat sat ' * 90_000,
    'parens': '(1,' * 300_000 + '[',
    'answer_numbers': '<answer>' + '1 ' * 500_000 + '</answer>',
}


@pytest.mark.parametrize('name', BUILTIN)
def test_megabyte_completions_are_fast_and_in_range(name):
  meta = _example_meta(name)
  with deadline.deadline(5.0) as enforced:  # a blow-up is cut off and named (RewardTimeout), not left to hang the suite
    assert enforced is not None  # main thread: the budget holds
    for text in BIG.values():
      assert len(text) >= 900_000
      check_value(name, rewards.get(name).fn(text, meta))


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=TEXT)
def test_co_rewards_answer_key_never_raises(text):
  """Co-Reward votes on math_answer.answer_key of every completion: any text gives a key or None."""
  key = math_answer.answer_key(text)
  assert key is None or (isinstance(key, str) and key)


def test_co_rewards_answer_key_is_fast_on_megabyte_completions():
  with deadline.deadline(5.0):
    for text in BIG.values():
      math_answer.answer_key(text)
