"""Staged, threshold and reward-annealing schedules on hand-worked sequences; the paper presets."""

import json
import math

import numpy as np
import pytest

from rl_reason import curricula, tasks
from rl_reason.curricula import presets
from rl_reason.rewards import shaping
from rl_reason.tasks import jigsaw, sat


def _stage(c, step, prompts=1):
  return int(c.plan(step, prompts).metrics['curriculum/stage'])


# ------------------------------------------------------------------ staged
def test_staged_boundaries_in_steps_are_exact():
  c = curricula.get('staged', {'boundaries': (3, 5), 'stages': ({'overrides': {'rows': 2}}, {'overrides': {'rows': 3}},
                                                                 {'overrides': {'rows': 4}})})
  assert [_stage(c, s) for s in range(8)] == [0, 0, 0, 1, 1, 2, 2, 2]
  assert [c.plan(s, 1).task_overrides['rows'] for s in (2, 3, 4, 5)] == [2, 3, 3, 4]
  assert c.plan(10**9, 1).task_overrides == {'rows': 4}  # the last stage stays
  assert c.controls() == {'task.rows'}


def test_staged_samples_unit_counts_prompts_consumed():
  # Jigsaw-R1: stage=[64000] cumulative samples; 64 prompts per step switch at step 1000.
  c = curricula.get(*presets.get('jigsaw_r1'))
  assert [c.plan(s, 64).task_overrides for s in (0, 999, 1000)] == [{'rows': 3, 'cols': 1}, {'rows': 3, 'cols': 1},
                                                                    {'rows': 4, 'cols': 1}]
  assert (_stage(c, 639, 100), _stage(c, 640, 100)) == (0, 1)  # 64000 / 100 prompts per step = step 640
  assert (_stage(c, 2, 30000), _stage(c, 3, 30000)) == (0, 1)  # 60000 < 64000 <= 90000
  grids = curricula.get(*presets.jigsaw_r1(stage_samples=(128, 256), grids=((2, 2), (3, 3), (4, 4))))
  assert [grids.plan(s, 64).task_overrides['rows'] for s in range(5)] == [2, 2, 3, 3, 4]
  resolved = curricula.check(grids, 'jigsaw', jigsaw.JigsawConfig())
  assert [(cfg.rows, cfg.cols) for _, cfg in resolved] == [(2, 2), (3, 3), (4, 4)]


def test_staged_reward_weights_and_task_switches():
  c = curricula.get('staged', {'boundaries': (4,), 'stages': (
      {'task': 'arithmetic', 'reward_weights': {'think_answer_format': 0.5}},
      {'task': 'grounding', 'overrides': {'think': False}})})
  first, second = c.plan(3, 8), c.plan(4, 8)
  assert (first.task, first.reward_weights, first.task_overrides) == ('arithmetic', {'think_answer_format': 0.5}, {})
  assert (second.task, second.reward_weights, second.task_overrides) == ('grounding', {}, {'think': False})
  assert c.controls() == {'task', 'task.think', 'reward.think_answer_format'}
  assert [name for name, _ in curricula.check(c, 'jigsaw', jigsaw.JigsawConfig())] == ['arithmetic', 'grounding']


def test_staged_config_errors():
  with pytest.raises(ValueError, match='1 boundaries need 2 stages, got 1'):
    curricula.get('staged', {'boundaries': (3,), 'stages': ({},)})
  with pytest.raises(ValueError, match='strictly increasing'):
    curricula.get('staged', {'boundaries': (3, 3), 'stages': ({}, {}, {})})
  with pytest.raises(ValueError, match='positive'):
    curricula.get('staged', {'boundaries': (0,), 'stages': ({}, {})})
  with pytest.raises(ValueError, match="unit 'epochs' unknown"):
    curricula.get('staged', {'boundaries': (3,), 'stages': ({}, {}), 'unit': 'epochs'})


def test_lmm_r1_and_infi_mmr_presets():
  lmm = curricula.get(*presets.lmm_r1(switch_step=10))
  assert (lmm.plan(9, 4).task, lmm.plan(10, 4).task) == ('arithmetic', 'grounding')
  infi = curricula.get(*presets.infi_mmr(phase_steps=(5, 9)))
  assert [infi.plan(s, 4).task for s in (0, 4, 5, 8, 9)] == ['rules', 'rules', 'multichoice', 'multichoice',
                                                              'grounding']
  # A named task starts from its own defaults, not from the run's (jigsaw) config.
  assert curricula.check(infi, 'jigsaw', jigsaw.JigsawConfig(rows=3)) == [
      (name, tasks.make_config(name)) for name in ('rules', 'multichoice', 'grounding')]
  with pytest.raises(ValueError, match='three phases'):
    presets.infi_mmr(phase_steps=(5,))
  with pytest.raises(ValueError, match="curriculum preset 'nope' unknown"):
    presets.get('nope')


# ------------------------------------------------------------------ threshold
def _threshold(**kwargs):
  cfg = {'levels': ({'l': 5}, {'l': 6}, {'l': 7}), 'threshold': 0.5, 'window': 2, **kwargs}
  return curricula.get('threshold', cfg)


def _feed(c, values, start=0):
  levels = []
  for step, value in enumerate(values, start):
    c.observe(step, {'accuracy': value}, {})
    levels.append(c.level)
  return levels


def test_threshold_advances_exactly_when_the_full_window_mean_reaches_the_threshold():
  c = _threshold()
  # Window 2: [0.9] not full; [0.9, 0.05] mean 0.475 < 0.5; [0.05, 0.95] mean 0.5 -> level 1 after step 2;
  # the window restarts: [1.0] not full (even though 1.0 >= 0.5); [1.0, 0.0] mean 0.5 -> level 2 (the last).
  assert _feed(c, [0.9, 0.05, 0.95, 1.0, 0.0]) == [0, 0, 1, 1, 2]
  assert c.advanced_at == [2, 4]
  assert c.plan(5, 1).task_overrides == {'l': 7} and c.plan(5, 1).metrics == {'curriculum/level': 2.0}
  assert _feed(c, [1.0, 1.0, 0.0, 0.0], start=5) == [2, 2, 2, 2]  # max level kept; never goes back
  # Means of the last two: 0.4375, then exactly 0.5 (advance) / 0.4975 (stay).
  assert _feed(_threshold(), [0.25, 0.625, 0.375]) == [0, 0, 1]
  assert _feed(_threshold(), [0.25, 0.625, 0.37]) == [0, 0, 0]
  assert _feed(_threshold(threshold=0.4), [0.25, 0.625]) == [0, 1]


def test_threshold_window_one_and_eval_metric():
  c = _threshold(window=1, threshold=0.8, metric='eval_accuracy')
  c.observe(0, {'accuracy': 1.0}, {})  # a training row: not the metric this curriculum reads
  assert c.level == 0
  c.observe_eval(0, {'eval_accuracy': 0.79})
  assert c.level == 0
  c.observe_eval(1, {'eval_accuracy': 0.8})
  assert c.level == 1 and c.advanced_at == [1]
  with pytest.raises(ValueError, match="needs the metric 'eval_accuracy'"):
    c.observe_eval(2, {'eval_reward_mean': 1.0})
  with pytest.raises(ValueError, match="metric 'eval_accuracy' is nan"):
    c.observe_eval(3, {'eval_accuracy': float('nan')})
  with pytest.raises(ValueError, match='observed after step 3'):
    c.observe_eval(3, {'eval_accuracy': 1.0})
  train = _threshold()
  train.observe_eval(0, {'eval_accuracy': 1.0})  # an evaluation: not read by a training-metric threshold
  assert train.window == []


def test_threshold_restore_mid_window_gives_the_same_future():
  values = [0.1, 0.6, 0.5, 0.3, 0.9, 0.2, 0.8, 0.7]
  reference = _threshold()
  _feed(reference, values)
  resumed = _threshold()
  _feed(resumed, values[:3])  # window [0.6, 0.5] -> advanced after step 2, window empty
  resumed_state = json.loads(json.dumps(resumed.state()))
  assert resumed_state['level'] == 1 and resumed_state['advanced_at'] == [2]
  _feed(resumed, values[3:4], start=3)  # window [0.3]
  half = json.loads(json.dumps(resumed.state()))
  assert half['window'] == [0.3]
  fresh = _threshold()
  fresh.restore(half)
  assert _feed(fresh, values[4:], start=4) == [2, 2, 2, 2]  # [0.3, 0.9] mean 0.6 -> level 2 after step 4
  assert fresh.advanced_at == [2, 4]
  assert fresh.state() == reference.state()


def test_saturn_preset_orders_levels_by_difficulty():
  c = curricula.get(*presets.saturn(levels=((3, 5, 6), (3, 5, 5), (3, 7, 40)), threshold=0.7))
  order = [(lvl['n_sat'], lvl['k'], lvl['l']) for lvl in c.cfg.levels]
  assert order == [(3, 5, 5), (3, 5, 6), (3, 7, 40)]
  assert all(sat.difficulty(*a) < sat.difficulty(*b) for a, b in zip(order, order[1:]))
  assert c.cfg.task == 'sat' and c.cfg.metric == 'eval_accuracy' and c.plan(0, 1).task == 'sat'
  assert [cfg for _, cfg in curricula.check(c, 'jigsaw', jigsaw.JigsawConfig())][1] == sat.SatConfig(l=6)
  with pytest.raises(ValueError, match='distinct difficulties'):
    presets.saturn(levels=((3, 5, 5), (3, 5, 5)))


# ------------------------------------------------------------------ reward annealing
def _anneal(kind, start=1.0, end=0.0, start_step=10, end_step=20):
  schedule = {'start': start, 'end': end, 'start_step': start_step, 'end_step': end_step, 'kind': kind}
  return curricula.get('reward_annealing', {'schedules': {'jigsaw_format': schedule}})


def _weight(c, step):
  return c.plan(step, 1).reward_weights['jigsaw_format']


def test_linear_and_cosine_endpoints_and_midpoints():
  linear = _anneal('linear', start=2.0, end=0.5)
  assert [_weight(linear, s) for s in (0, 10, 15, 20, 30)] == [2.0, 2.0, 1.25, 0.5, 0.5]
  assert _weight(linear, 12) == pytest.approx(2.0 - 1.5 * 0.2)
  cosine = _anneal('cosine', start=2.0, end=0.5)
  assert [_weight(cosine, s) for s in (0, 10, 20, 30)] == [2.0, 2.0, 0.5, 0.5]
  assert _weight(cosine, 15) == pytest.approx(1.25)  # the midpoint of both kinds is the mean of the endpoints
  assert _weight(cosine, 12) == pytest.approx(0.5 + 1.5 * (1 + math.cos(math.pi * 0.2)) / 2)
  rising = _anneal('linear', start=0.0, end=1.0, start_step=0, end_step=4)
  assert [_weight(rising, s) for s in range(6)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
  assert rising.plan(2, 1).metrics == {'curriculum/reward_weight/jigsaw_format': 0.5}


def test_exponential_matches_sophia_trust_grpo_decay():
  c = curricula.get(*presets.sophia_thinking('think_answer_format'))
  for step in (0, 1000, 12000, 30000):
    expected = 0.3 * math.exp(-step / 12000)
    assert c.plan(step, 1).reward_weights['think_answer_format'] == pytest.approx(expected, rel=1e-12)
    # The same factor trust_grpo applies: R = R_o + gamma * alpha * exp(-step / T) * R_t with gamma = 1.
    shaped, _ = shaping.trust_grpo([1.0, 0.0], [1.0, 0.0], 2, step, zero_extreme_groups=False)
    assert shaped[0] - 1.0 == pytest.approx(expected, rel=1e-12)
  shifted = _anneal('exponential', start=1.0, end=0.2, start_step=10, end_step=20)
  assert _weight(shifted, 5) == 1.0 and _weight(shifted, 20) == pytest.approx(0.2 + 0.8 * math.exp(-1.0))


def test_annealing_config_errors():
  with pytest.raises(ValueError, match='start_step < end_step'):
    _anneal('linear', start_step=5, end_step=5)
  with pytest.raises(ValueError, match='at least one reward'):
    curricula.get('reward_annealing', {'schedules': {}})
  with pytest.raises(ValueError, match=r"missing required config keys \['end_step'\]"):
    curricula.get('reward_annealing', {'schedules': {'jigsaw_format': {'start': 1.0, 'end': 0.0}}})
  with pytest.raises(ValueError, match='finite'):
    _anneal('linear', start=float('inf'))


def test_numpy_free_plans_are_plain_python():
  for c in (_anneal('cosine'), _threshold(), curricula.get(*presets.jigsaw_r1())):
    plan = c.plan(3, 8)
    json.dumps({'overrides': plan.task_overrides, 'weights': plan.reward_weights, 'metrics': plan.metrics})
    assert all(not isinstance(v, np.generic) for v in plan.metrics.values())
