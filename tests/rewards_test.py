"""Rewards: hand-worked golden cases, connection scores, fuzzing (never raise, stay in range), registry."""

import logging

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from rl_reason import rewards
from rl_reason.rewards import deadline, parsing, registry

META_2X2 = {'rows': 2, 'cols': 2, 'gt': [2, 1, 4, 3]}
ALL_REWARDS = ('think_answer_format', 'jigsaw_format', 'jigsaw_grid', 'jigsaw_solved', 'jigsaw_connections')


def _score(name, text, meta=None):
  return rewards.get(name).fn(text, META_2X2 if meta is None else meta)


@pytest.mark.parametrize('text, grid, solved, fmt', [
    ('<think>look</think><answer>2 1\n4 3</answer>', 1.0, 1.0, 1.0),
    ('<think></think>\n<answer>2, 1; 4 3</answer>', 1.0, 1.0, 1.0),  # Jigsaw-R1 separators
    ('<think></think><answer>2 1\n3 4</answer>', 0.5, 0.0, 1.0),
    ('<think></think><answer>1 2\n3 4</answer>', 0.0, 0.0, 1.0),  # identity answer, shuffled puzzle
    ('<think></think><answer>2 2\n4 3</answer>', 0.0, 0.0, 1.0),  # duplicate: not a permutation
    ('<think></think><answer>2 1 4</answer>', 0.0, 0.0, 0.0),  # too few
    ('<think></think><answer>2 1 4 3 5</answer>', 0.0, 0.0, 0.0),  # too many
    ('<think></think><answer>2 1\n4 5</answer>', 0.0, 0.0, 0.0),  # out of range
    ('<think></think><answer>2 1\n4 x</answer>', 0.0, 0.0, 0.0),  # malformed
    ('<think></think><answer>-2 1\n4 3</answer>', 0.0, 0.0, 0.0),
    ('<think></think><answer>The answer is 2 1 4 3</answer>', 0.0, 0.0, 0.0),
    ('<think></think><answer></answer>', 0.0, 0.0, 0.0),  # empty answer
    ('<think></think><answer>2 1 4 3</answer><answer>2 1 4 3</answer>', 0.0, 0.0, 0.0),  # repeated answer
    ('<think></think><answer><answer>2 1 4 3</answer></answer>', 0.0, 0.0, 0.0),  # nested answer
    ('<think>a</think><think>b</think><answer>2 1 4 3</answer>', 1.0, 1.0, 0.0),  # repeated think
    ('<think>x</think><answer>2 1 4 3</answer> Done.', 1.0, 1.0, 0.0),  # text after the tags
    ('Sure! <think>x</think><answer>2 1 4 3</answer>', 1.0, 1.0, 0.0),  # text before the tags
    ('2 1\n4 3', 1.0, 1.0, 0.0),  # bare grid: accuracy counts, think-mode format does not
    ('<answer>2 1 4 3', 0.0, 0.0, 0.0),  # unclosed: the whole text is not a grid
    ('', 0.0, 0.0, 0.0),
])
def test_golden_jigsaw_scores(text, grid, solved, fmt):
  assert _score('jigsaw_grid', text) == grid
  assert _score('jigsaw_solved', text) == solved
  assert _score('jigsaw_format', text) == fmt


def test_identity_permutation_puzzle():
  meta = {'rows': 2, 'cols': 3, 'gt': [1, 2, 3, 4, 5, 6]}
  assert _score('jigsaw_grid', '<think></think><answer>1 2 3\n4 5 6</answer>', meta) == 1.0
  assert _score('jigsaw_connections', '<think></think><answer>1 2 3\n4 5 6</answer>', meta) == 1.0
  assert _score('jigsaw_grid', '<think></think><answer>1 2 3\n4 6 5</answer>', meta) == pytest.approx(4 / 6)


@pytest.mark.parametrize('text, expected', [
    ('<think>a</think><answer>b</answer>', 1.0),
    ('<think></think><answer></answer>', 1.0),
    ('<think>multi\nline</think> \n\t<answer>x\ny</answer>', 1.0),
    ('<think>a</think><answer>b</answer>\n', 0.0),
    ('x<think>a</think><answer>b</answer>', 0.0),
    ('<think>a</think>text<answer>b</answer>', 0.0),
    ('<answer>b</answer><think>a</think>', 0.0),
    ('<think>a</think><think>b</think><answer>c</answer>', 0.0),
    ('<think>a</think><answer>b</answer><answer>c</answer>', 0.0),
    ('<think>a<answer>b</answer></think><answer>c</answer>', 0.0),
    ('<think><think>a</think></think><answer>b</answer>', 0.0),
    ('<think>a</think><answer>b', 0.0),
    ('<think>a<answer>b</answer>', 0.0),
    ('', 0.0),
])
def test_think_answer_format(text, expected):
  assert _score('think_answer_format', text) == expected


def test_jigsaw_format_in_non_think_mode_needs_a_bare_grid():
  meta = dict(META_2X2, think=False)
  assert _score('jigsaw_format', '2 1\n4 3', meta) == 1.0
  assert _score('jigsaw_format', '<think></think><answer>2 1\n4 3</answer>', meta) == 0.0
  assert _score('jigsaw_format', '2 1 4', meta) == 0.0


@pytest.mark.parametrize('meta, answer, expected', [
    # Reconstruction 1 3 / 2 4 (origins): no edge joins true neighbours. (gt^-1 o pred would give 1/4.)
    ({'rows': 2, 'cols': 2, 'gt': [1, 2, 4, 3]}, '1 3 4 2', 0.0),
    # Rows swapped: both horizontal edges right, both vertical wrong.
    ({'rows': 2, 'cols': 2, 'gt': [1, 2, 3, 4]}, '3 4 1 2', 0.5),
    ({'rows': 2, 'cols': 2, 'gt': [4, 3, 2, 1]}, '4 3 2 1', 1.0),
    # 2x3, columns shifted cyclically: reconstruction 3 1 2 / 6 4 5 -> 1-2, 4-5 and all 3 vertical edges.
    ({'rows': 2, 'cols': 3, 'gt': [1, 2, 3, 4, 5, 6]}, '2 3 1 5 6 4', 5 / 7),
    # 2x3 with rows swapped, answered as "not shuffled": reconstruction 4 5 6 / 1 2 3 -> the 4 horizontals.
    ({'rows': 2, 'cols': 3, 'gt': [4, 5, 6, 1, 2, 3]}, '1 2 3 4 5 6', 4 / 7),
    ({'rows': 2, 'cols': 3, 'gt': [4, 5, 6, 1, 2, 3]}, '1 2 3 4 5 5', 0.0),  # invalid permutation
    ({'rows': 1, 'cols': 3, 'gt': [3, 1, 2]}, '1 2 3', 0.5),  # reconstruction 3 1 2: edge 1-2 only
])
def test_connections_hand_worked(meta, answer, expected):
  assert _score('jigsaw_connections', f'<think></think><answer>{answer}</answer>', meta) == pytest.approx(expected)


def _reconstruction_edges(pred, gt, rows, cols):
  """Independent count: build the reconstructed grid of original ids, count true-neighbour edges."""
  current = np.asarray(gt) - 1  # original id of the piece at each current position
  recon = np.empty(rows * cols, int)
  recon[np.asarray(pred) - 1] = current
  recon = recon.reshape(rows, cols)
  orig_r, orig_c = np.divmod(recon, cols)
  horizontal = (orig_r[:, 1:] == orig_r[:, :-1]) & (orig_c[:, 1:] == orig_c[:, :-1] + 1)
  vertical = (orig_c[1:] == orig_c[:-1]) & (orig_r[1:] == orig_r[:-1] + 1)
  return (horizontal.sum() + vertical.sum()) / (2 * rows * cols - rows - cols)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 4), st.integers(1, 4), st.randoms(use_true_random=False))
def test_connections_match_reconstruction_and_solve(rows, cols, rnd):
  if rows * cols < 2:
    return
  gt, pred = list(range(1, rows * cols + 1)), list(range(1, rows * cols + 1))
  rnd.shuffle(gt)
  rnd.shuffle(pred)
  meta = {'rows': rows, 'cols': cols, 'gt': gt}
  text = f'<think></think><answer>{" ".join(map(str, pred))}</answer>'
  score = _score('jigsaw_connections', text, meta)
  assert score == pytest.approx(_reconstruction_edges(pred, gt, rows, cols))
  assert (score == 1.0) == (pred == gt) == (_score('jigsaw_solved', text, meta) == 1.0)


def test_connections_not_applicable_to_a_single_piece():
  assert _score('jigsaw_connections', '1', {'rows': 1, 'cols': 1, 'gt': [1]}) is None


def test_parsing_helpers():
  assert parsing.extract_tag('a<answer> 1 2 </answer>b', 'answer') == ' 1 2 '
  assert parsing.extract_tag('</answer>x<answer>', 'answer') is None
  assert parsing.extract_tag('<answer>x', 'answer') is None
  assert parsing.parse_int_grid(' 3 1\n2,4;`5` ') == [3, 1, 2, 4, 5]
  assert parsing.parse_int_grid('   ') is None
  assert parsing.parse_int_grid('1 2.5') is None
  assert parsing.parse_int_grid('1 ３') is None  # a fullwidth digit is not an ASCII integer
  assert parsing.parse_int_grid('1 ' + '9' * 5000) is None


# Completions made of tag fragments, digits and separators: nested, repeated and unbalanced tags.
TAGGY = st.lists(st.sampled_from(['<think>', '</think>', '<answer>', '</answer>', '<answer', 'think>', ' ', '\n', ',',
                                  '1', '2', '3', '4', '9' * 40, 'x', '-', 'é', '日', '\x00']),
                 max_size=40).map(''.join)
METAS = st.integers(1, 4).flatmap(lambda rows: st.integers(1, 4).flatmap(lambda cols: st.permutations(
    list(range(1, rows * cols + 1))).map(lambda gt: {'rows': rows, 'cols': cols, 'gt': gt})))


@pytest.mark.parametrize('name', ALL_REWARDS)
@settings(max_examples=150, deadline=None)
@given(text=st.one_of(st.text(max_size=300), TAGGY), meta=METAS)
def test_fuzz_rewards_never_raise_and_stay_in_range(name, text, meta):
  value = _score(name, text, meta)
  low, high = rewards.get(name).range
  assert value is None or low <= value <= high


@pytest.mark.parametrize('name', ALL_REWARDS)
def test_megabyte_completions(name):
  texts = ['<think>' + 'a' * 1_000_000 + '</think><answer>2 1 4 3</answer>',
           '<answer>' + '1 ' * 500_000 + '</answer>',
           '9' * 1_000_000,
           '<think>' * 100_000 + '</answer>' * 100_000]
  # A 5 s budget for the four (each takes milliseconds): a quadratic or exponential blow-up is cut
  # off and named, instead of hanging the suite.
  with deadline.deadline(5.0) as enforced:
    assert enforced is not None  # main thread: the budget holds
    for text in texts:
      value = _score(name, text)
      assert 0.0 <= value <= 1.0


@pytest.fixture
def temporary_rewards():
  names = []

  def add(name, fn, **kwargs):
    rewards.register(name, **kwargs)(fn)
    names.append(name)

  yield add
  for name in names:
    registry.unregister(name)


def _explode(text, meta):
  del meta
  if 'boom' in text:
    raise RuntimeError('kaboom')
  return 1.0


def test_score_batch_counts_failures_and_keeps_other_rewards(temporary_rewards, caplog):
  temporary_rewards('test_explodes', _explode)
  texts = ['<think></think><answer>2 1\n4 3</answer>', 'boom ' * 100, 'boom<think></think><answer>2 1 3 4</answer>']
  with caplog.at_level(logging.WARNING):
    scores = rewards.score_batch(texts, [META_2X2] * 3, {'test_explodes': 2.0, 'jigsaw_grid': 1.0})
  np.testing.assert_array_equal(scores['test_explodes'], [1.0, 0.0, 0.0])
  np.testing.assert_array_equal(scores['jigsaw_grid'], [1.0, 0.0, 0.5])
  np.testing.assert_array_equal(scores['total'], [3.0, 0.0, 0.5])
  assert int(scores['failures']) == 2
  messages = [r.getMessage() for r in caplog.records if 'kaboom' in r.getMessage()]
  assert len(messages) == 2 and ('boom ' * 40)[:200] in messages[0] and 'boom ' * 41 not in messages[0]


def test_score_batch_clips_and_handles_not_applicable(temporary_rewards):
  temporary_rewards('test_wild', lambda text, meta: {'hi': 7.0, 'lo': -3.0, 'none': None}.get(text, float('nan')),
                    range=(-1.0, 1.0))
  scores = rewards.score_batch(['hi', 'lo', 'none', 'nan'], [META_2X2] * 4,
                               {'test_wild': 1.0, 'jigsaw_solved': 0.0, 'jigsaw_grid': 0.5})
  np.testing.assert_array_equal(scores['test_wild'], [1.0, -1.0, np.nan, np.nan])
  np.testing.assert_array_equal(scores['total'], [1.0, -1.0, 0.0, 0.0])
  assert scores['jigsaw_solved'].dtype == np.float64 and int(scores['failures']) == 0
  per_reward = {f'{kind}/{name}' for kind in ('failures', 'timeouts') for name in ('test_wild', 'jigsaw_solved', 'jigsaw_grid')}
  assert set(scores) == {'test_wild', 'jigsaw_solved', 'jigsaw_grid', 'total', 'failures', 'timeouts'} | per_reward
  assert all(scores[key].shape == () and int(scores[key]) == 0 for key in per_reward | {'timeouts'})


def test_score_batch_input_errors():
  with pytest.raises(ValueError, match='2 completions but 1 metas'):
    rewards.score_batch(['a', 'b'], [META_2X2], {'jigsaw_grid': 1.0})
  with pytest.raises(ValueError, match=r"unknown reward 'nope'; valid rewards: \[.*'jigsaw_grid'"):
    rewards.score_batch(['a'], [META_2X2], {'nope': 1.0})


def test_check_meta_names_reward_and_key():
  rewards.check_meta(['jigsaw_grid', 'think_answer_format'], META_2X2)
  with pytest.raises(ValueError, match=r"reward 'jigsaw_connections' needs meta keys \['gt'\]"):
    rewards.check_meta(['think_answer_format', 'jigsaw_connections'], {'rows': 2, 'cols': 2})
  with pytest.raises(ValueError, match='unknown reward'):
    rewards.check_meta(['nope'], META_2X2)


def test_registry_records_and_rejects_bad_registrations(temporary_rewards):
  record = rewards.get('jigsaw_grid')
  assert record.required_meta == ('rows', 'cols', 'gt') and record.range == (0.0, 1.0) and record.doc
  assert set(ALL_REWARDS) <= set(rewards.names())
  with pytest.raises(ValueError, match='already registered'):
    temporary_rewards('jigsaw_grid', _explode)
  with pytest.raises(ValueError, match='reserved'):
    temporary_rewards('total', _explode)
  with pytest.raises(ValueError, match='range'):
    temporary_rewards('test_bad_range', _explode, range=(1.0, 0.0))
  with pytest.raises(ValueError, match='must match'):
    temporary_rewards('test/slash', _explode)
  assert rewards.exists('jigsaw_grid') and not rewards.exists('nope')


def test_readme_rewards_table_matches_the_registry():
  import os  # pylint: disable=import-outside-toplevel
  import re  # pylint: disable=import-outside-toplevel
  with open(os.path.join(os.path.dirname(__file__), '..', 'README.md'), encoding='utf-8') as f:
    readme = f.read()
  section = readme[readme.index('## Rewards'):]
  section = section[:section.index('\n## ')]
  rows = re.findall(r'^\| `([a-z0-9_]+)` \| \[([-0-9.]+), ([-0-9.]+)\] \| (.*?) \|', section, re.MULTILINE)
  builtin = [name for name in rewards.names() if not name.startswith(('test_', 'testlib_'))]
  assert sorted(name for name, *_ in rows) == builtin
  for name, low, high, meta in rows:
    record = rewards.get(name)
    assert (float(low), float(high)) == record.range, name
    assert re.findall(r'`([a-z_]+)`', meta) == list(record.required_meta + record.optional_meta), name
