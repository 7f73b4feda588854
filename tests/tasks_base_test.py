"""Task interface and registry: every task conforms, is deterministic, and its answers score full marks."""

import dataclasses

import numpy as np
import pytest

from rl_reason import rewards, tasks
from rl_reason.tasks import jigsaw, sat, templates

NAMES = ['arithmetic', 'classification', 'grounding', 'gui', 'jigsaw', 'multichoice', 'rules', 'sat']
# Configs that cover every branch that changes the meta keys or the rewards.
VARIANTS = [(name, {}) for name in NAMES] + [
    ('jigsaw', {'question_type': q, 'image_size': (48, 48)}) for q in ('multiple', 'pair', 'single', 'box')
] + [
    ('jigsaw', {'think': False, 'question_type': 'single'}),
    ('classification', {'think': False}),
    ('classification', {'classes': 'shape_color'}),
    ('grounding', {'answer': 'point'}),
    ('grounding', {'think': False}),
    ('gui', {'think': False}),
    ('multichoice', {'think': False}),
    ('rules', {'think': False}),
    ('sat', {'think': False}),
    ('arithmetic', {'think': False, 'difficulty': 3}),
]


def _oracle(task, meta):
  """The right answer in the format the task asks for."""
  answer = meta['answer']
  if isinstance(answer, list):
    answer = ', '.join(answer)
  return templates.format_completion(answer, think=meta['think'], answer_format=meta.get('answer_format', 'tags'))


def test_registry_lists_every_task():
  assert tasks.names() == NAMES


def test_get_accepts_config_mapping_or_none_and_rejects_unknown_keys():
  assert tasks.get('sat').cfg == sat.SatConfig()
  assert tasks.get('sat', {'k': 6}).cfg == sat.SatConfig(k=6)
  cfg = jigsaw.JigsawConfig(rows=3)
  assert tasks.get('jigsaw', cfg).cfg is cfg
  with pytest.raises(ValueError, match=r"unknown config keys \['kk'\]; valid keys: \['n_sat', 'k', 'l', 'think', 'prompt_style'\]"):
    tasks.get('sat', {'kk': 6})
  with pytest.raises(ValueError, match='unknown task'):
    tasks.get('nope')
  with pytest.raises(TypeError, match='must be a SatConfig'):
    tasks.get('sat', jigsaw.JigsawConfig())
  assert tasks.config_class('jigsaw') is jigsaw.JigsawConfig


@pytest.mark.parametrize('name, overrides', VARIANTS)
def test_examples_conform_and_are_deterministic(name, overrides):
  task = tasks.get(name, overrides)
  assert isinstance(task, tasks.Task) and task.name == name
  assert len(task.reward_names) == len(task.reward_weights) >= 1
  for seed in range(6):
    example, again = task.example(seed), task.example(seed)
    tasks.check_example(example)
    assert example['prompt'] == again['prompt'] and example['meta'] == again['meta']
    assert len(example['images']) == len(again['images'])
    for a, b in zip(example['images'], again['images']):
      np.testing.assert_array_equal(a, b)
    assert example['meta']['think'] == task.cfg.think
  prompts = {task.example(seed)['prompt'] + repr(task.example(seed)['meta']) for seed in range(6)}
  assert len(prompts) > 1, 'different seeds should give different examples'


@pytest.mark.parametrize('name, overrides', VARIANTS)
def test_meta_feeds_the_task_rewards_and_the_right_answer_scores_full_marks(name, overrides):
  task = tasks.get(name, overrides)
  for seed in range(8):
    meta = task.example(seed)['meta']
    rewards.check_meta(task.reward_names, meta)
    completion = _oracle(task, meta)
    for reward_name in task.reward_names:
      reward = rewards.get(reward_name)
      value, _ = rewards.scoring.normalize(reward, reward.fn(completion, meta))
      assert value == reward.range[1], (reward_name, completion, meta)


@pytest.mark.parametrize('name, overrides', VARIANTS)
def test_random_answer_completions_have_the_rewarded_format(name, overrides):
  task = tasks.get(name, overrides)
  format_rewards = [n for n in task.reward_names if 'format' in n]
  accuracy = task.reward_names[0]
  scores = []
  for seed in range(10):
    meta = task.example(seed)['meta']
    completion = task.random_answer_completion(meta, seed)
    for reward_name in format_rewards:
      reward = rewards.get(reward_name)
      assert reward.fn(completion, meta) == reward.range[1], (reward_name, completion)
    scores.append(rewards.scoring.normalize(rewards.get(accuracy), rewards.get(accuracy).fn(completion, meta))[0])
  assert min(scores) < rewards.get(accuracy).range[1], 'random answers should not all be right'


def test_check_example_rejects_malformed_examples():
  good = tasks.get('sat').example(0)
  tasks.check_example(good)
  for bad, message in [
      (dict(good, extra=1), 'exactly the keys'),
      (dict(good, prompt=''), 'non-empty string'),
      (dict(good, images=[np.zeros((4, 4), np.uint8)]), 'uint8'),
      (dict(good, images=[np.zeros((4, 4, 3), np.float32)]), 'uint8'),
      (dict(good, meta={}), '"answer"'),
  ]:
    with pytest.raises(ValueError, match=message):
      tasks.check_example(bad)


def test_register_refuses_duplicates_and_non_dataclass_configs():
  with pytest.raises(ValueError, match='already registered'):
    tasks.base.register('sat', sat.SatConfig)(type('Other', (), {}))
  with pytest.raises(TypeError, match='must be a dataclass'):
    tasks.base.register('x', dict)


def test_templates():
  assert templates.apply('Q?', think=True) == 'Q?\n' + templates.THINK
  assert templates.apply('Q?', think=False, answer_hint='A number.') == 'Q?\n' + templates.NO_THINK + '\nA number.'
  assert 'boxed' in templates.instruction(think=True, answer_format='boxed')
  assert templates.format_completion('3', think=True) == '<think></think><answer>3</answer>'
  assert templates.format_completion('3', think=False) == '3'
  assert templates.format_completion('3', think=False, answer_format='boxed') == '\\boxed{3}'
  with pytest.raises(ValueError, match='answer_format'):
    templates.instruction(think=True, answer_format='xml')


def test_configs_are_frozen_and_hashable():
  for name in NAMES:
    cfg = tasks.make_config(name)
    hash(cfg)
    with pytest.raises(dataclasses.FrozenInstanceError):
      setattr(cfg, dataclasses.fields(cfg)[0].name, None)
