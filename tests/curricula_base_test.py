"""Curriculum registry, config validation, plans, combining, task resolution and the state contract."""

import json

import numpy as np
import pytest

from rl_reason import curricula
from rl_reason.curricula import base
from rl_reason.curricula import staged as staged_lib
from rl_reason.tasks import jigsaw, sat

# One small valid config per curriculum, with the columns its observe reads.
CONFIGS = {
    'staged': {'boundaries': (2,), 'stages': ({'overrides': {'rows': 2}}, {'overrides': {'rows': 3}})},
    'threshold': {'levels': ({'l': 5}, {'l': 6}, {'l': 7}), 'threshold': 0.5, 'window': 2},
    'domain_weighted': {'domains': ('prontoqa', 'boxes'), 'update_every': 2, 'buffer_size': 2},
    'reward_annealing': {'schedules': {'jigsaw_format': {'start': 1.0, 'end': 0.0, 'end_step': 10}}},
    'laser_d': {'lower_bound': 2, 'upper_bound': 10, 'interval': 2, 'update_every': 3, 'monitor_steps': 2},
}


def _columns(rng, prompts=4, groups=3):
  return {'accuracy': rng.integers(0, 2, (prompts, groups)).astype(float),
          'length': rng.integers(1, 12, (prompts, groups)),
          'domain': np.array(['prontoqa', 'boxes'])[rng.integers(0, 2, prompts)]}


def test_registry_lists_every_curriculum():
  assert curricula.names() == sorted(CONFIGS)
  with pytest.raises(ValueError, match='unknown curriculum'):
    curricula.get('nope')


def test_config_validation_names_valid_and_missing_keys():
  with pytest.raises(ValueError, match=r"unknown config keys \['windw'\]; valid keys: \['levels', 'threshold', "
                                       r"'metric', 'window', 'task'\]"):
    curricula.get('threshold', {**CONFIGS['threshold'], 'windw': 3})
  with pytest.raises(ValueError, match=r"missing required config keys \['levels', 'threshold'\]"):
    curricula.get('threshold')
  with pytest.raises(TypeError, match='must be a ThresholdConfig'):
    curricula.get('threshold', [1, 2])
  cfg = curricula.make_config('threshold', CONFIGS['threshold'])
  assert curricula.get('threshold', cfg).cfg is cfg
  assert curricula.config_class('staged') is staged_lib.StagedConfig
  # Nested configs are validated too: a stage's keys, a named task's fields and values, reward names.
  with pytest.raises(ValueError, match=r"staged stage 1: unknown config keys \['overide'\]"):
    curricula.get('staged', {'boundaries': (2,), 'stages': ({}, {'overide': {}})})
  with pytest.raises(ValueError, match="unknown config keys \\['kk'\\]"):
    curricula.get('staged', {'boundaries': (2,), 'stages': ({}, {'task': 'sat', 'overrides': {'kk': 1}})})
  with pytest.raises(ValueError, match='l must be in'):
    curricula.get('staged', {'boundaries': (2,), 'stages': ({}, {'task': 'sat', 'overrides': {'l': 10**6}})})
  with pytest.raises(ValueError, match="task 'nope' unknown"):
    curricula.get('staged', {'boundaries': (2,), 'stages': ({}, {'task': 'nope'})})
  with pytest.raises(ValueError, match="reward 'nope' unknown"):
    curricula.get('staged', {'boundaries': (2,), 'stages': ({}, {'reward_weights': {'nope': 1.0}})})
  with pytest.raises(ValueError, match="reward 'nope' unknown"):
    curricula.get('reward_annealing', {'schedules': {'nope': {'start': 1, 'end': 0, 'end_step': 3}}})
  with pytest.raises(ValueError, match="kind 'step' unknown"):
    curricula.get('reward_annealing', {'schedules': {'jigsaw_format': {'start': 1, 'end': 0, 'end_step': 3,
                                                                       'kind': 'step'}}})
  with pytest.raises(ValueError, match='allocation'):
    curricula.get('domain_weighted', {'domains': ('a',), 'allocation': 'round_robin'})
  with pytest.raises(ValueError, match='multiple of interval'):
    curricula.get('laser_d', {'lower_bound': 2, 'upper_bound': 9, 'interval': 2})


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_state_is_json_and_restore_continues_identically(name):
  """Two copies fed the same steps; one is rebuilt from JSON mid-run: every later plan and state agree."""
  rng = np.random.default_rng(0)
  steps = [(_columns(rng), {'accuracy': float(rng.random()), 'eval_accuracy': float(rng.random())})
           for _ in range(12)]
  reference = curricula.get(name, CONFIGS[name])
  resumed = curricula.get(name, CONFIGS[name])
  for step, (columns, row) in enumerate(steps):
    if step == 5:
      saved = json.loads(json.dumps(resumed.state()))
      resumed = curricula.get(name, CONFIGS[name])
      resumed.restore(saved)
    for c in (reference, resumed):
      assert isinstance(c, curricula.Curriculum)
      c.observe(step, row, columns)
      c.observe_eval(step + 1, row, columns)
    assert resumed.plan(step + 1, 4) == reference.plan(step + 1, 4)
    assert resumed.state() == reference.state()


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_plan_does_not_change_state(name):
  c = curricula.get(name, CONFIGS[name])
  before = c.state()
  assert c.plan(7, 4) == c.plan(7, 4)
  assert c.state() == before


def test_restore_refuses_other_curricula_and_configs():
  c = curricula.get('threshold', CONFIGS['threshold'])
  with pytest.raises(ValueError, match="state of 'staged' cannot restore"):
    c.restore(curricula.get('staged', CONFIGS['staged']).state())
  other = curricula.get('threshold', {**CONFIGS['threshold'], 'threshold': 0.9})
  with pytest.raises(ValueError, match='saved with another config'):
    c.restore(other.state())


def test_observing_a_step_twice_or_backwards_is_an_error():
  c = curricula.get('threshold', CONFIGS['threshold'])
  c.observe(0, {'accuracy': 0.1}, {})
  with pytest.raises(ValueError, match='observed after step 0'):
    c.observe(0, {'accuracy': 0.1}, {})


def test_resolve_task_applies_overrides_to_the_run_task_or_starts_a_named_one():
  base_cfg = jigsaw.JigsawConfig(image_size=(48, 48))
  name, cfg = curricula.resolve_task(curricula.Plan(task_overrides={'rows': 3}), 'jigsaw', base_cfg)
  assert name == 'jigsaw' and cfg == jigsaw.JigsawConfig(image_size=(48, 48), rows=3)
  name, cfg = curricula.resolve_task(curricula.Plan(task='sat', task_overrides={'l': 6}), 'jigsaw', base_cfg)
  assert name == 'sat' and cfg == sat.SatConfig(l=6)
  assert curricula.resolve_task(curricula.Plan(), 'jigsaw', base_cfg) == ('jigsaw', base_cfg)
  with pytest.raises(ValueError, match=r"unknown config keys \['l'\]"):
    curricula.resolve_task(curricula.Plan(task_overrides={'l': 6}), 'jigsaw', base_cfg)


def test_check_resolves_every_variant_at_start_up():
  staged = curricula.get('staged', CONFIGS['staged'])
  resolved = curricula.check(staged, 'jigsaw', jigsaw.JigsawConfig())
  assert [cfg.rows for _, cfg in resolved] == [2, 3]
  threshold = curricula.get('threshold', CONFIGS['threshold'])
  with pytest.raises(ValueError, match=r"unknown config keys \['l'\]"):
    curricula.check(threshold, 'jigsaw', jigsaw.JigsawConfig())  # levels set SAT's l: wrong run task
  assert [cfg.l for _, cfg in curricula.check(threshold, 'sat', sat.SatConfig())] == [5, 6, 7]
  assert curricula.check(curricula.get('reward_annealing', CONFIGS['reward_annealing']), 'sat', sat.SatConfig()) == []


def test_combine_merges_plans_and_refuses_overlaps():
  staged = curricula.get('staged', CONFIGS['staged'])
  annealing = curricula.get('reward_annealing', CONFIGS['reward_annealing'])
  both = curricula.combine([staged, annealing])
  plan = both.plan(2, 4)
  assert plan.task_overrides == {'rows': 3} and plan.reward_weights == {'jigsaw_format': pytest.approx(0.8)}
  assert plan.metrics == {'curriculum/stage': 1.0, 'curriculum/reward_weight/jigsaw_format': pytest.approx(0.8)}
  assert both.controls() == {'task.rows', 'reward.jigsaw_format'}
  assert curricula.combine([staged]) is staged
  restored = curricula.combine([curricula.get('staged', CONFIGS['staged']),
                                curricula.get('reward_annealing', CONFIGS['reward_annealing'])])
  restored.restore(json.loads(json.dumps(both.state())))
  assert restored.state() == both.state()
  # Overlaps: the same task field, the same reward, a task switch next to field overrides.
  rows_too = curricula.get('threshold', {'levels': ({'rows': 2}, {'rows': 4}), 'threshold': 0.5})
  with pytest.raises(ValueError, match=r"both set \['task.rows'\]"):
    curricula.combine([staged, rows_too])
  reward_too = curricula.get('staged', {'boundaries': (2,), 'stages': ({}, {'reward_weights': {'jigsaw_format': 1}})})
  with pytest.raises(ValueError, match=r"both set \['reward.jigsaw_format'\]"):
    curricula.combine([reward_too, annealing])
  switch = curricula.get('staged', {'boundaries': (2,), 'stages': ({}, {'task': 'sat'})})
  cols = curricula.get('threshold', {'levels': ({'cols': 2},), 'threshold': 0.5})
  with pytest.raises(ValueError, match=r"both set \['task.cols'\]"):
    curricula.combine([switch, cols])


def test_merge_plans_refuses_conflicts():
  with pytest.raises(ValueError, match='set the task'):
    curricula.merge_plans([curricula.Plan(task='sat'), curricula.Plan(task='jigsaw')])
  with pytest.raises(ValueError, match=r"task_overrides \['l'\]"):
    curricula.merge_plans([curricula.Plan(task_overrides={'l': 1}), curricula.Plan(task_overrides={'l': 2})])
  with pytest.raises(ValueError, match='switches the task'):
    curricula.merge_plans([curricula.Plan(task='sat'), curricula.Plan(task_overrides={'l': 2})])
  with pytest.raises(ValueError, match='switches the task'):
    curricula.merge_plans([curricula.Plan(task_overrides={'l': 2}), curricula.Plan(task='sat')])
  with pytest.raises(ValueError, match='domains'):
    curricula.merge_plans([curricula.Plan(domains=('a',)), curricula.Plan(domains=('b',))])
  merged = curricula.merge_plans([curricula.Plan(task='sat', task_overrides={'l': 2}),
                                  curricula.Plan(reward_weights={'sat_assignment': 1.0})])
  assert merged == curricula.Plan(task='sat', task_overrides={'l': 2}, reward_weights={'sat_assignment': 1.0})


def test_from_spec_builds_one_or_several():
  one = curricula.from_spec({'name': 'staged', **CONFIGS['staged']})
  assert one.name == 'staged' and one.plan(5, 1).task_overrides == {'rows': 3}
  several = curricula.from_spec([{'name': 'staged', **CONFIGS['staged']},
                                 {'name': 'reward_annealing', **CONFIGS['reward_annealing']}])
  assert [p.name for p in several.parts] == ['staged', 'reward_annealing']
  with pytest.raises(ValueError, match='"name"'):
    curricula.from_spec([{'boundaries': ()}])
  with pytest.raises(ValueError, match='at least one curriculum'):
    curricula.from_spec([])


def test_missing_columns_and_metrics_fail_at_the_first_step():
  dw = curricula.get('domain_weighted', CONFIGS['domain_weighted'])
  with pytest.raises(ValueError, match="needs the column 'accuracy'"):
    dw.observe(0, {}, {'length': np.ones((2, 2))})  # step 0 is not an update step: still checked
  laser = curricula.get('laser_d', CONFIGS['laser_d'])
  with pytest.raises(ValueError, match="needs the column 'length'"):
    laser.observe(0, {}, {'accuracy': np.ones((2, 2))})
  threshold = curricula.get('threshold', CONFIGS['threshold'])
  with pytest.raises(ValueError, match="needs the metric 'accuracy'"):
    threshold.observe(0, {'reward_mean': 1.0}, {})
  with pytest.raises(ValueError, match='must have 2 dims'):
    base.column({'accuracy': np.ones(4)}, 'accuracy', 'x')
  with pytest.raises(ValueError, match='NaN'):
    base.column({'accuracy': np.full((2, 2), np.nan)}, 'accuracy', 'x')
