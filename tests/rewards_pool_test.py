"""Scoring never stops on a bad reward: exceptions, hangs and dead workers are scored, counted, logged."""

import logging
import signal
import threading
import time

import numpy as np
import pytest

from rl_reason import rewards
from rl_reason.rewards import deadline, pool as pool_lib, registry, scoring
import rewards_testlib

TIMEOUT_S = 0.5


@pytest.fixture
def registered():
  """Registers rewards_testlib functions under 'testlib_*' names for one test."""
  added = []

  def add(name, fn, **kwargs):
    rewards.register(name, **kwargs)(fn)
    added.append(name)

  add('testlib_hang', rewards_testlib.hang_on_marker)
  add('testlib_hard_hang', rewards_testlib.hard_hang_on_marker)
  add('testlib_die', rewards_testlib.die_on_marker)
  add('testlib_exit', rewards_testlib.exit_on_marker, range=(-1.0, 1.0))
  add('testlib_swallow', rewards_testlib.swallow_everything)
  add('testlib_subs', rewards_testlib.sub_scores, range=(0.0, 1.0))
  add('testlib_bad', rewards_testlib.bad_dicts)
  yield add
  for name in added:
    registry.unregister(name)


@pytest.fixture(scope='module')
def pool():
  with pool_lib.RewardPool(2, hard_kill_grace_s=1.0) as p:
    yield p


def _failure_logs(caplog, name):
  return [r.getMessage() for r in caplog.records if f'reward {name!r}' in r.getMessage()]


@pytest.mark.parametrize('mode', ['in_process', 'pool'])
def test_hanging_and_raising_rewards_are_scored_as_failed(registered, pool, mode, caplog):
  texts = ['fine', 'hang ' * 100, 'boom', 'fine too', 'hang again']
  metas = [{}] * len(texts)
  start = time.perf_counter()
  with caplog.at_level(logging.WARNING):
    scores = rewards.score_batch(texts, metas, {'testlib_hang': 1.0, 'think_answer_format': 1.0},
                                 timeout_s=TIMEOUT_S, pool=pool if mode == 'pool' else None)
  elapsed = time.perf_counter() - start
  # The hangs sleep 60 s: finishing far sooner shows they were cut off. The bound is loose on purpose
  # (a worker restart on a loaded 2-core machine took over 4 s in CI); it is not a speed check.
  assert elapsed < 20.0
  np.testing.assert_array_equal(scores['testlib_hang'], [1.0, 0.0, 0.0, 1.0, 0.0])
  np.testing.assert_array_equal(scores['think_answer_format'], [0.0] * 5)
  np.testing.assert_array_equal(scores['total'], [1.0, 0.0, 0.0, 1.0, 0.0])
  assert int(scores['failures']) == 3 and int(scores['timeouts']) == 2
  assert int(scores['failures/testlib_hang']) == 3 and int(scores['timeouts/testlib_hang']) == 2
  assert int(scores['failures/think_answer_format']) == 0
  logs = _failure_logs(caplog, 'testlib_hang')
  assert len(logs) == 3
  hang_log = next(m for m in logs if 'item 1' in m)
  assert 'timed out' in hang_log and ('hang ' * 40)[:200] in hang_log and 'hang ' * 41 not in hang_log
  assert any('kaboom' in m and "'boom'" in m for m in logs)
  metrics = rewards.batch_metrics(scores)
  assert metrics['rewards/failures'] == 3.0 and metrics['rewards/timeouts/testlib_hang'] == 2.0
  assert metrics['rewards/testlib_hang'] == pytest.approx(0.4)


def test_deadline_is_not_swallowed_by_except_exception(registered):
  scores = rewards.score_batch(['hang', 'ok'], [{}, {}], {'testlib_swallow': 1.0}, timeout_s=0.2)
  np.testing.assert_array_equal(scores['testlib_swallow'], [0.0, 0.25])
  assert int(scores['timeouts']) == 1


def test_system_exit_in_a_reward_is_a_failure_scored_at_the_range_floor(registered, pool):
  for chosen in (None, pool):
    scores = rewards.score_batch(['exit', 'ok'], [{}, {}], {'testlib_exit': 1.0}, pool=chosen)
    np.testing.assert_array_equal(scores['testlib_exit'], [-1.0, 0.5])  # failure value: the range's low end
    assert int(scores['failures']) == 1 and int(scores['timeouts']) == 0


def test_pool_replaces_a_worker_that_dies(registered, pool, caplog):
  restarts = pool.restarts
  texts = ['ok', 'die', 'ok', 'ok', 'die', 'ok']
  with caplog.at_level(logging.WARNING):
    scores = rewards.score_batch(texts, [{}] * 6, {'testlib_die': 1.0, 'think_answer_format': 0.5}, pool=pool)
  np.testing.assert_array_equal(scores['testlib_die'], [1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
  np.testing.assert_array_equal(scores['think_answer_format'], [0.0] * 6)  # every item still scored
  assert int(scores['failures']) == 2 and int(scores['failures/testlib_die']) == 2 and int(scores['timeouts']) == 0
  assert pool.restarts == restarts + 2
  assert any('died (exit code -9)' in m for m in _failure_logs(caplog, 'testlib_die'))
  again = rewards.score_batch(['ok'] * 4, [{}] * 4, {'testlib_die': 1.0}, pool=pool)  # the pool still works
  np.testing.assert_array_equal(again['testlib_die'], [1.0] * 4)


def test_pool_kills_a_worker_that_ignores_the_soft_deadline(registered, pool):
  restarts = pool.restarts
  texts = ['ok', 'hard', 'ok', 'ok']
  start = time.perf_counter()
  scores = rewards.score_batch(texts, [{}] * 4, {'testlib_hard_hang': 1.0}, timeout_s=TIMEOUT_S, pool=pool)
  elapsed = time.perf_counter() - start
  assert elapsed < TIMEOUT_S + pool.hard_kill_grace_s + 3.0  # the sleep is 60 s
  np.testing.assert_array_equal(scores['testlib_hard_hang'], [1.0, 0.0, 1.0, 1.0])  # the right item blamed
  assert int(scores['timeouts']) == 1 and pool.restarts == restarts + 1


def test_pool_matches_in_process_on_builtin_rewards(pool):
  metas = [{'rows': 2, 'cols': 2, 'gt': [2, 1, 4, 3], 'answer': '2 1\n4 3'}] * 40
  texts = [f'<think>{i}</think><answer>{"2 1 4 3" if i % 3 else "1 2 3 4"}</answer>' + ' x' * (i % 2)
           for i in range(40)]
  weights = {'jigsaw_r1': 1.0, 'jigsaw_solved': 0.0, 'exact_match': 0.5, 'rouge_mean': 0.0}
  local = rewards.score_batch(texts, metas, weights)
  remote = rewards.score_batch(texts, metas, weights, pool=pool)
  assert set(local) == set(remote) and 'jigsaw_r1/jigsaw_grid' in local and 'rouge_mean/rouge_l' in local
  for key in local:
    np.testing.assert_array_equal(local[key], remote[key], err_msg=key)


def test_shared_pool_via_workers_argument():
  scores = rewards.score_batch(['<think></think><answer>x</answer>'], [{}], {'think_answer_format': 1.0}, workers=1)
  assert scores['think_answer_format'][0] == 1.0
  assert pool_lib.shared_pool(1) is pool_lib.shared_pool(1)
  pool_lib.close_shared_pools()


def test_unpicklable_reward_is_a_clear_error_in_pool_mode(pool):
  rewards.register('testlib_lambda')(lambda text, meta: 1.0)
  try:
    assert rewards.score_batch(['a'], [{}], {'testlib_lambda': 1.0})['testlib_lambda'][0] == 1.0  # in-process ok
    with pytest.raises(ValueError, match='cannot be sent to worker processes'):
      rewards.score_batch(['a'], [{}], {'testlib_lambda': 1.0}, pool=pool)
  finally:
    registry.unregister('testlib_lambda')


def test_unpicklable_meta_is_a_clear_error_in_pool_mode(pool):
  with pytest.raises(ValueError, match='metas must be picklable'):
    rewards.score_batch(['a'], [{'bad': threading.Lock()}], {'think_answer_format': 1.0}, pool=pool)
  scores = rewards.score_batch(['a'], [{}], {'think_answer_format': 1.0}, pool=pool)  # and the pool is fine after
  assert scores['think_answer_format'][0] == 0.0


def test_sub_scores_become_columns_and_metrics(registered):
  scores = rewards.score_batch(['a', 'b', 'big b'], [{}] * 3, {'testlib_subs': 2.0})
  np.testing.assert_array_equal(scores['testlib_subs'], [0.75, 0.75, 1.0])  # 2.0 clipped into the range
  np.testing.assert_array_equal(scores['testlib_subs/a'], [0.5, 0.5, 0.5])
  np.testing.assert_array_equal(scores['testlib_subs/b'], [np.nan, 1.0, 1.0])
  np.testing.assert_array_equal(scores['total'], [1.5, 1.5, 2.0])
  metrics = rewards.batch_metrics(scores)
  assert metrics['rewards/testlib_subs/b'] == 1.0 and metrics['rewards/testlib_subs/b/applicable'] == pytest.approx(2 / 3)
  assert metrics['rewards/total'] == pytest.approx(5 / 3) and metrics['rewards/failures'] == 0.0


def test_malformed_reward_values_are_failures(registered, caplog):
  with caplog.at_level(logging.WARNING):
    scores = rewards.score_batch(['nooverall', 'inf', 'str', 'none'], [{}] * 4, {'testlib_bad': 1.0})
  np.testing.assert_array_equal(scores['testlib_bad'], [0.0, 0.0, 0.0, np.nan])
  assert int(scores['failures']) == 3
  logs = ' '.join(_failure_logs(caplog, 'testlib_bad'))
  assert 'needs the key "overall"' in logs and "sub-score 'a' is inf" in logs and 'got str' in logs


def test_failure_logging_is_capped_per_reward(registered, caplog):
  with caplog.at_level(logging.WARNING):
    scores = rewards.score_batch(['boom'] * 12, [{}] * 12, {'testlib_hang': 1.0})
  assert int(scores['failures']) == 12
  logs = _failure_logs(caplog, 'testlib_hang')
  assert len(logs) == scoring.LOGGED_FAILURES_PER_REWARD + 1 and '7 more failures' in logs[-1]


def test_deadline_nests_and_restores_an_outer_timer():
  fired = []
  old = signal.signal(signal.SIGALRM, lambda *_: fired.append(True))
  try:
    signal.setitimer(signal.ITIMER_REAL, 0.4)
    assert deadline.call_with_deadline(lambda: time.sleep(5), 0.05, 'inner timed out') == 'inner timed out'
    remaining, _ = signal.getitimer(signal.ITIMER_REAL)
    assert 0.2 < remaining <= 0.4  # the outer timer was re-armed with what it had left
    time.sleep(0.5)
    assert fired == [True]
    # An outer deadline that expires inside an inner one reaches the outer.
    with pytest.raises(deadline.RewardTimeout) as info:
      with deadline.deadline(0.1) as outer:
        deadline.call_with_deadline(lambda: time.sleep(5), 2.0, 'inner')
    assert info.value.token is outer
  finally:
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, old)


def _swallows_the_first_timeout(seconds: float = 3.0) -> str:
  """Like a body whose first RewardTimeout lands in a gc callback or a bare `except BaseException`."""
  swallowed = False
  end = time.monotonic() + seconds
  while time.monotonic() < end:
    try:
      time.sleep(0.01)
    except deadline.RewardTimeout:
      if swallowed:
        raise
      swallowed = True
  return 'ran to the end'


def test_a_swallowed_timeout_is_raised_again_until_the_block_exits():
  start = time.monotonic()
  assert deadline.call_with_deadline(_swallows_the_first_timeout, 0.1, 'timed out') == 'timed out'
  assert time.monotonic() - start < 0.1 + 10 * deadline.REDELIVER_S
  assert signal.getitimer(signal.ITIMER_REAL)[0] == 0  # nothing left armed after the block
  time.sleep(3 * deadline.REDELIVER_S)  # and nothing fires later
  # An outer deadline swallowed inside an inner one is raised again and still reaches the outer.
  start = time.monotonic()
  with pytest.raises(deadline.RewardTimeout) as info:
    with deadline.deadline(0.1) as outer:
      deadline.call_with_deadline(_swallows_the_first_timeout, 2.0, 'inner')
  assert info.value.token is outer and time.monotonic() - start < 0.1 + 10 * deadline.REDELIVER_S
  assert signal.getitimer(signal.ITIMER_REAL)[0] == 0


def test_deadline_interrupts_a_catastrophic_regex():
  import re  # pylint: disable=import-outside-toplevel
  start = time.perf_counter()
  result = deadline.call_with_deadline(lambda: re.match(r'(a+)+$', 'a' * 40 + 'b'), 0.2, 'timed out')
  assert result == 'timed out' and time.perf_counter() - start < 2.0


def test_off_the_main_thread_in_process_scoring_warns_that_it_cannot_time_out(registered, caplog):
  scoring._warned_no_deadline[0] = False  # pylint: disable=protected-access
  out = {}
  with caplog.at_level(logging.WARNING):
    thread = threading.Thread(target=lambda: out.update(rewards.score_batch(['ok'], [{}], {'testlib_hang': 1.0})))
    thread.start()
    thread.join()
  assert out['testlib_hang'][0] == 1.0
  assert any('cannot be enforced in-process off the main thread' in r.getMessage() for r in caplog.records)


def test_pool_rejects_fork_and_empty():
  with pytest.raises(ValueError, match='never fork'):
    pool_lib.RewardPool(1, start_method='fork')
  with pytest.raises(ValueError, match='at least one worker'):
    pool_lib.RewardPool(0)
