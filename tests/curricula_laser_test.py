"""LASER-D periodic target lengths: update steps, pooling, the eval source, resume."""

import json

import numpy as np
import pytest

from rl_reason import curricula
from rl_reason.curricula import presets
from rl_reason.rewards import shaping

# The shaping test's hand-worked batch (G = 3): targets easy 8, medium 10, hard 10 over candidates 2..10.
CORRECT = [[1, 1, 0], [1, 0, 0]]
LENGTHS = [[4, 8, 2], [6, 1, 1]]


def _laser(**kwargs):
  return curricula.get('laser_d', {'lower_bound': 2, 'upper_bound': 10, 'interval': 2, 'update_every': 3, **kwargs})


def _cols(correct, lengths):
  return {'accuracy': np.array(correct, float), 'length': np.array(lengths)}


def _targets(c):
  return c.plan(0, 1).laser_targets


def test_candidates_follow_the_laser_code():
  assert _laser().cfg.candidates == (2, 4, 6, 8, 10)
  c = curricula.get(*presets.laser_d())
  assert c.cfg.candidates == tuple(range(4096, 16384 + 1, 1024)) and c.cfg.update_every == 20


def test_updates_after_every_update_every_steps_from_that_batch():
  c = _laser()
  easy = _cols([[1, 1, 1], [1, 1, 1]], [[2, 2, 2], [2, 2, 2]])  # would give easy 2 if it were used
  assert _targets(c) == {'easy': 10.0, 'medium': 10.0, 'hard': 10.0}  # upper_bound until the first update
  c.observe(0, {}, easy)
  c.observe(1, {}, easy)
  assert _targets(c) == {'easy': 10.0, 'medium': 10.0, 'hard': 10.0} and c.updates == 0
  c.observe(2, {}, _cols(CORRECT, LENGTHS))  # steps 2, 5, 8, ... (0-based) update
  assert _targets(c) == {'easy': 8.0, 'medium': 10.0, 'hard': 10.0} and c.updates == 1
  assert c.plan(3, 1).metrics == {'curriculum/laser_target/easy': 8.0, 'curriculum/laser_target/medium': 10.0,
                                  'curriculum/laser_target/hard': 10.0}
  c.observe(3, {}, _cols(CORRECT, LENGTHS))
  c.observe(4, {}, _cols(CORRECT, LENGTHS))
  c.observe(5, {}, easy)
  assert _targets(c)['easy'] == 2.0 and c.updates == 2


def test_monitor_steps_pool_the_last_batches():
  rng = np.random.default_rng(0)
  batches = [_cols(rng.integers(0, 2, (4, 3)), rng.integers(1, 11, (4, 3))) for _ in range(6)]
  c = _laser(update_every=3, monitor_steps=2)
  for step, batch in enumerate(batches):
    c.observe(step, {}, batch)
    if step in (2, 5):
      pooled = [batches[step - 1], batches[step]]  # steps 1-2 and 4-5; steps 0 and 3 are left out
      expected = shaping.laser_d_target_lengths(
          np.concatenate([b['accuracy'] for b in pooled]).reshape(-1),
          np.concatenate([b['length'] for b in pooled]).reshape(-1), 3, c.cfg.candidates)
      assert _targets(c) == {k: float(v) for k, v in expected.items()}
      assert c.pool == []
  # Pooling changes the answer here: one all-correct short group vs one hard group.
  pooled = _laser(monitor_steps=2)
  pooled.observe(0, {}, _cols([[1, 1, 1]], [[2, 2, 2]]))
  pooled.observe(1, {}, _cols([[1, 1, 1]], [[2, 2, 2]]))
  pooled.observe(2, {}, _cols([[0, 0, 0]], [[2, 2, 2]]))
  alone = _laser()
  for step in range(3):
    alone.observe(step, {}, _cols([[1, 1, 1]] if step < 2 else [[0, 0, 0]], [[2, 2, 2]]))
  assert _targets(pooled)['easy'] == 2.0 and _targets(alone)['easy'] == 10.0


def test_eval_source_updates_at_evaluations_on_the_schedule():
  c = _laser(source='eval')
  c.observe(2, {}, {})  # training steps do not update (and need no columns) with the eval source
  c.observe_eval(0, {}, _cols(CORRECT, LENGTHS))  # step 0: the initial monitor pass
  assert _targets(c)['easy'] == 8.0
  c.observe_eval(2, {}, _cols([[1, 1, 1]], [[2, 2, 2]]))  # 2 % 3 != 0: no update
  assert _targets(c)['easy'] == 8.0
  c.observe_eval(3, {}, _cols([[1, 1, 1]], [[2, 2, 2]]))
  assert _targets(c)['easy'] == 2.0 and c.updates == 2
  with pytest.raises(ValueError, match='monitor_steps pools training batches'):
    _laser(source='eval', monitor_steps=2)
  with pytest.raises(ValueError, match='columns'):
    c.observe_eval(6, {}, None)


def test_columns_are_checked():
  c = _laser()
  with pytest.raises(ValueError, match='0/1 correctness'):
    c.observe(0, {}, _cols([[0.5, 1, 1]], [[2, 2, 2]]))
  with pytest.raises(ValueError, match='non-negative token counts'):
    c.observe(1, {}, _cols([[0, 1, 1]], [[2.5, 2, 2]]))
  with pytest.raises(ValueError, match='differ'):
    c.observe(2, {}, _cols([[0, 1, 1]], [[2, 2]]))


def test_restore_mid_pool_gives_identical_targets():
  rng = np.random.default_rng(1)
  batches = [_cols(rng.integers(0, 2, (3, 4)), rng.integers(1, 11, (3, 4))) for _ in range(12)]
  reference, resumed = _laser(update_every=4, monitor_steps=3), _laser(update_every=4, monitor_steps=3)
  for step, batch in enumerate(batches):
    if step == 6:  # steps 4 (left out) and 5 (pooled) seen: one batch pooled
      saved = json.loads(json.dumps(resumed.state()))
      assert len(saved['pool']) == 1
      resumed = _laser(update_every=4, monitor_steps=3)
      resumed.restore(saved)
    reference.observe(step, {}, batch)
    resumed.observe(step, {}, batch)
    assert _targets(reference) == _targets(resumed)
  assert reference.state() == resumed.state() and reference.updates == 3
