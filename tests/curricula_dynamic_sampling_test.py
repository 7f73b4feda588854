"""DAPO dynamic sampling: keeps exactly the mixed groups, refills, stops after max_rounds, fills when starved."""

import numpy as np
import pytest

from rl_reason.curricula import dynamic_sampling as ds

RIGHT, WRONG = [1, 1, 1], [0, 0, 0]


def test_classify_groups():
  accuracy = [RIGHT, WRONG, [1, 0, 0], [0, 1, 1], RIGHT]
  np.testing.assert_array_equal(ds.classify_groups(accuracy), [ds.ALL_CORRECT, ds.ALL_WRONG, ds.MIXED, ds.MIXED,
                                                               ds.ALL_CORRECT])
  with pytest.raises(ValueError, match='G >= 2'):
    ds.classify_groups([[1], [0]])
  with pytest.raises(ValueError, match='0/1'):
    ds.classify_groups([[1, 0.5]])
  with pytest.raises(ValueError, match='0/1'):
    ds.classify_groups([[1, np.nan]])


def test_select_mixed_groups_keeps_the_first_needed_and_counts_the_rest():
  accuracy = [[1, 0], RIGHT[:2], [0, 1], WRONG[:2], [1, 0], [0, 1]]
  sel = ds.select_mixed_groups(accuracy, need=3)
  np.testing.assert_array_equal(sel.keep, [0, 2, 4])
  np.testing.assert_array_equal(sel.surplus, [5])
  np.testing.assert_array_equal(sel.all_correct, [1])
  np.testing.assert_array_equal(sel.all_wrong, [3])
  np.testing.assert_array_equal(ds.select_mixed_groups(accuracy, need=10).keep, [0, 2, 4, 5])


def test_one_round_with_enough_mixed_groups():
  sampler = ds.DynamicSampler(num_groups=2)
  offer = sampler.offer([RIGHT, [1, 0, 1], WRONG, [0, 0, 1], [1, 1, 0]])
  np.testing.assert_array_equal(offer.keep, [1, 3])
  np.testing.assert_array_equal(offer.reserve, [0, 2])
  assert sampler.need() == 0 and sampler.done()
  result = sampler.finalize()
  assert result.groups == ((0, 1), (0, 3)) and result.filled == ()
  assert result.metrics == {'dynamic_sampling/kept': 2.0, 'dynamic_sampling/filled': 0.0,
                            'dynamic_sampling/rounds': 1.0, 'dynamic_sampling/offered': 5.0,
                            'dynamic_sampling/dropped_all_correct': 1.0, 'dynamic_sampling/dropped_all_wrong': 1.0,
                            'dynamic_sampling/dropped_uniform': 0.0, 'dynamic_sampling/surplus': 1.0}


def test_refill_rounds_until_the_batch_is_full():
  sampler = ds.DynamicSampler(num_groups=4)
  first = sampler.offer([[1, 0], RIGHT[:2], [0, 1], WRONG[:2]])
  np.testing.assert_array_equal(first.keep, [0, 2])
  assert sampler.need() == 2 and not sampler.done()  # the refill request: two more groups
  second = sampler.offer([WRONG[:2], [1, 0], [1, 0], [0, 1]])
  np.testing.assert_array_equal(second.keep, [1, 2])
  assert sampler.done()
  result = sampler.finalize()
  assert result.groups == ((0, 0), (0, 2), (1, 1), (1, 2))
  assert result.metrics['dynamic_sampling/rounds'] == 2.0 and result.metrics['dynamic_sampling/surplus'] == 1.0
  assert result.metrics['dynamic_sampling/dropped_all_wrong'] == 2.0
  with pytest.raises(ValueError, match='offer after done'):
    sampler.offer([[1, 0]])


def test_stops_after_max_rounds_and_fills_from_dropped_groups_earliest_first():
  sampler = ds.DynamicSampler(num_groups=3, cfg=ds.DynamicSamplingConfig(max_rounds=3))
  offers = [sampler.offer(a) for a in ([RIGHT, [1, 0, 0]], [WRONG, RIGHT], [WRONG, WRONG])]
  assert sampler.done() and sampler.need() == 2 and sampler.rounds == 3
  # At most num_groups dropped groups are ever reserved: (0, 0), (1, 0), (1, 1); round 2's are not needed.
  assert [o.reserve.tolist() for o in offers] == [[0], [0, 1], []]
  result = sampler.finalize()
  assert result.groups == ((0, 1), (0, 0), (1, 0)) and result.filled == ((0, 0), (1, 0))
  metrics = result.metrics
  assert (metrics['dynamic_sampling/kept'], metrics['dynamic_sampling/filled']) == (1.0, 2.0)
  assert (metrics['dynamic_sampling/dropped_all_correct'], metrics['dynamic_sampling/dropped_all_wrong']) == (2.0, 3.0)
  assert sampler.finalize() is result


def test_fill_error_and_not_enough_dropped():
  strict = ds.DynamicSampler(num_groups=2, cfg=ds.DynamicSamplingConfig(max_rounds=1, fill='error'))
  strict.offer([RIGHT, [0, 1, 1]])
  with pytest.raises(ValueError, match=r'1 of 2 groups missing after 1 rounds \(fill="error"\)'):
    strict.finalize()
  short = ds.DynamicSampler(num_groups=3, cfg=ds.DynamicSamplingConfig(max_rounds=1))
  short.offer([RIGHT])
  with pytest.raises(ValueError, match='3 groups missing but only 1 dropped groups'):
    short.finalize()
  early = ds.DynamicSampler(num_groups=3)
  early.offer([[0, 1]])
  with pytest.raises(ValueError, match='finalize before done'):
    early.finalize()
  with pytest.raises(ValueError, match='max_rounds'):
    ds.DynamicSamplingConfig(max_rounds=0)
  with pytest.raises(ValueError, match="fill 'pad' unknown"):
    ds.DynamicSamplingConfig(fill='pad')
  assert ds.make_config({'max_rounds': 3}) == ds.DynamicSamplingConfig(max_rounds=3)
  assert ds.make_config(None) == ds.DynamicSamplingConfig()
  with pytest.raises(ValueError, match=r"unknown config keys \['rounds'\]; valid keys: \['metric', 'prompts_per_round', 'max_rounds', 'fill'\]"):
    ds.make_config({'rounds': 3})


def _drive(seed, num_groups=8, groups_per_round=12, generations=4, max_rounds=10):
  """The loop as train.py would run it: rounds of groups from a deterministic stream, kept rows collected."""
  sampler = ds.DynamicSampler(num_groups, ds.DynamicSamplingConfig(max_rounds=max_rounds))
  rounds = []
  while not sampler.done():
    rng = np.random.default_rng((seed, len(rounds)))  # the round's rollouts: a function of (seed, round)
    solve = rng.random((groups_per_round, 1))
    accuracy = (rng.random((groups_per_round, generations)) < solve).astype(float)
    offer = sampler.offer(accuracy)
    rounds.append(accuracy)
    assert (ds.classify_groups(accuracy[offer.keep]) == ds.MIXED).all()
  result = sampler.finalize()
  batch = np.stack([rounds[r][i] for r, i in result.groups])  # [num_groups, G]
  return batch, result


def test_driven_like_the_loop_is_deterministic_and_keeps_only_mixed_groups():
  batch, result = _drive(seed=0)
  again, result_again = _drive(seed=0)
  np.testing.assert_array_equal(batch, again)
  assert result == result_again
  assert batch.shape == (8, 4) and (ds.classify_groups(batch) == ds.MIXED).all()
  m = result.metrics
  offered = m['dynamic_sampling/offered']
  assert offered == 12 * m['dynamic_sampling/rounds']
  assert m['dynamic_sampling/kept'] + m['dynamic_sampling/surplus'] + m['dynamic_sampling/dropped_all_correct'] + \
      m['dynamic_sampling/dropped_all_wrong'] == offered


def test_graded_metric_keeps_groups_with_any_spread():
  values = [[0.5, 0.5, 0.5], [0.25, 0.5, 0.5], [1.0, 1.0, 1.0], [0.0, 0.0, 0.75]]
  np.testing.assert_array_equal(ds.classify_groups(values, binary=False), [ds.UNIFORM, ds.MIXED, ds.UNIFORM, ds.MIXED])
  with pytest.raises(ValueError, match='0/1'):  # graded values under the binary metric
    ds.classify_groups(values)
  with pytest.raises(ValueError, match='finite'):
    ds.classify_groups([[0.5, np.nan]], binary=False)
  sampler = ds.DynamicSampler(num_groups=3, cfg=ds.DynamicSamplingConfig(metric='reward', max_rounds=2))
  offer = sampler.offer(values)
  np.testing.assert_array_equal(offer.keep, [1, 3])
  np.testing.assert_array_equal(offer.reserve, [0, 2])  # dropped groups held for a fill
  sampler.offer([[0.1, 0.1], [0.3, 0.2]])
  result = sampler.finalize()
  assert result.groups == ((0, 1), (0, 3), (1, 1)) and result.filled == ()
  assert result.metrics['dynamic_sampling/dropped_uniform'] == 3.0
  assert result.metrics['dynamic_sampling/dropped_all_correct'] == 0.0
  with pytest.raises(ValueError, match="metric 'acc' unknown"):
    ds.DynamicSamplingConfig(metric='acc')
