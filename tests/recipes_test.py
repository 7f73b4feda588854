"""Paper recipes (configs/recipes/*.py): every (recipe, arg) builds a valid run config with the paper's
settings, and the tiny variant of every recipe runs two RL steps through train.run.

PAPER restates, from ALGORITHMS.md and the papers' scripts, what each recipe must carry; the
recipe files and this table are written separately so that a slip in one shows up in the other.

The slow tests share one persistent JAX compilation cache (a temporary folder, file-locked, shared
by the pytest-xdist workers): recipes with the same task shapes and loss switches reuse compiled
programs. It changes nothing but compile time.
"""

import dataclasses
import importlib.util
import math
import os

import numpy as np
import pytest
from absl import flags
from ml_collections import config_flags

from rl_reason import models, rewards, run_config, tasks
from rl_reason.data import image_processor, processor, tokenizer as tokenizer_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_TRL_GRPO = dict(advantage='grpo', advantage_eps=1e-4, ratio_level='token', surrogate='ppo_clip', eps_low=0.2,
                 eps_high=0.2, beta=0.04, kl_estimator='k3', kl_placement='loss', aggregation='seq_mean_token_mean')
_VERL = dict(advantage='grpo', advantage_eps=1e-6, ratio_level='token', surrogate='ppo_clip', eps_low=0.2,
             aggregation='token_mean')


def _real(lr, prompts, g, n, temperature, steps):
  return dict(learning_rate=lr, prompts=prompts, num_generations=g, max_new_tokens=n, temperature=temperature,
              steps=steps)


# recipe -> task, the rewards actually trained on (task defaults resolved), rl switches, task fields
# (both variants unless real_task says otherwise), real presets -> scale.
PAPER = {
    'jigsaw_r1': dict(
        task='jigsaw', rewards={'jigsaw_grid': 1.0, 'jigsaw_format': 0.5}, rl=_TRL_GRPO,
        task_fields=dict(question_type='full', think=True), real_task=dict(rows=3, cols=1),
        real={p: _real(1e-6, 64, 8, 512, 1.0, 2000) for p in ('qwen2_5_vl_3b', 'qwen2_5_vl_7b')},
        # 3x1 for 64,000 samples, then 4x1 (Jigsaw-R1 `stage`).
        curriculum={p: ('staged', {'boundaries': (64000,), 'unit': 'samples',
                                   'stages': ({'overrides': {'rows': 3, 'cols': 1}},
                                              {'overrides': {'rows': 4, 'cols': 1}})})
                    for p in ('qwen2_5_vl_3b', 'qwen2_5_vl_7b')}),
    'cls_rl': dict(
        task='classification', rewards={'cls_accuracy': 1.0, 'think_answer_format': 1.0}, rl=_TRL_GRPO,
        task_fields=dict(think=True), real={'qwen2_5_vl_3b': _real(1e-6, 16, 4, 1024, 1.0, 250)},
        # Tiny: colours without the candidate list (a tiny decoder copies from the shuffled list).
        tiny_task=dict(classes='color', show_options=False), real_task=dict(classes='shape', show_options=True)),
    'no_think_cls_rl': dict(
        task='classification', rewards={'equality_strict': 1.0}, rl=_TRL_GRPO,
        task_fields=dict(think=False), real={'qwen2_5_vl_3b': _real(1e-6, 16, 4, 1024, 1.0, 250)},
        # Tiny: colours without the candidate list (a tiny decoder copies from the shuffled list).
        tiny_task=dict(classes='color', show_options=False), real_task=dict(classes='shape', show_options=True)),
    'ui_r1': dict(
        task='gui', rewards={'ui_action_type': 1.0, 'ui_coord': 1.0, 'think_answer_format': 1.0}, rl=_TRL_GRPO,
        task_fields=dict(think=True), real={'qwen2_5_vl_3b': _real(1e-6, 16, 8, 1024, 1.0, 500)}),
    'ui_r1_e': dict(
        # Stage 1 is UI-R1 (think, R_T + R_C + R_F) with DAST until the switch, then stage 2 without thinking.
        task='gui', rewards={'ui_action_type': 1.0, 'ui_coord': 1.0, 'think_answer_format': 1.0}, rl=_TRL_GRPO,
        task_fields=dict(think=True), real={'qwen2_5_vl_3b': _real(1e-6, 16, 8, 1024, 1.0, 500)},
        curriculum={arg: ('staged', {'boundaries': (switch,), 'stages': ({'overrides': {'think': True}},
                                                                          {'overrides': {'think': False}})})
                    for arg, switch in (('tiny', 100), ('qwen2_5_vl_3b', 250))},
        shaping={arg: {'dast': dict(full_reward=3.0, a=-0.5, b=0.5, max_length=n, end_step=switch)}
                 for arg, n, switch in (('tiny', 56, 100), ('qwen2_5_vl_3b', 1024, 250))}),
    'univg_r1': dict(
        task='grounding', rewards={'iou_box_inclusive': 1.0, 'univg_format': 1.0},
        rl=dict(_TRL_GRPO, difficulty_weight='exp'),
        task_fields=dict(answer='box', think=True), real={'qwen2_5_vl_7b': _real(1e-6, 16, 8, 256, 0.9, 1000)},
        frozen_vision=('qwen2_5_vl_7b',)),  # the script's freeze_vision_modules
    'guirlvg': dict(
        task='grounding', rewards={'point_in_box': 1.0, 'answer_type_format': 1.0},
        rl=dict(_TRL_GRPO, kl_group_factor='akf_mean_reward', kl_group_factor_scale=1.0),
        task_fields=dict(answer='point', tell_size=True),
        real={p: _real(1e-6, 16, 8, 256, 1.0, 650) for p in ('qwen2_5_vl_3b', 'qwen2_5_vl_7b')}),
    'sophiavl_r1': dict(
        task='multichoice', rewards={'sophia_exact': 1.0},
        rl=dict(_VERL, eps_high=0.2, beta=0.04, kl_estimator='k3', kl_placement='loss', entropy_coef=1e-3),
        task_fields=dict(inversion_prob=0.0, think=True),
        real={'qwen2_5_vl_7b': _real(5e-7, 64, 8, 2048, 1.0, 1500)},
        shaping={'qwen2_5_vl_7b': {'trust_grpo': dict(judge='SophiaVL-R1-Thinking-Reward-Model-3B', alpha=0.3,
                                                      anneal_steps=12000.0, zero_extreme_groups=True,
                                                      query_threshold=0.2, correct_threshold=0.5)}}),
    'tw_grpo': dict(
        task='multichoice', rewards={'set_subset_soft': 1.0, 'tw_grpo_format': 1.0},
        rl=dict(advantage='grpo', eps_low=0.2, eps_high=0.2, beta=0.0, aggregation='token_mean',
                token_weighting='tw_grpo', tw_alpha=1.7, tw_stop_gradient=True),
        task_fields=dict(inversion_prob=0.5, random_drop=True, think=True),
        real={'qwen2_5_vl_7b': _real(1e-6, 16, 8, 4096, 1.0, 500)}),
    'saturn': dict(
        task='sat', rewards={'sat_assignment': 1.0},
        rl=dict(_VERL, eps_high=0.2, beta=1e-3, kl_estimator='k3', kl_placement='loss'),
        task_fields=dict(n_sat=3, k=5, prompt_style='full'),
        real_task_per_preset={'qwen2_5_1_5b': dict(l=5), 'qwen2_5_7b': dict(l=13)},
        # Tiny: the compact prompt and one level below the released stages (the recipe's docstring).
        tiny_task=dict(n_sat=2, k=3, l=3, prompt_style='compact'),
        real={'qwen2_5_1_5b': _real(5e-7, 32, 8, 10000, 0.8, 500), 'qwen2_5_7b': _real(4e-7, 32, 8, 8192, 1.0, 500)},
        # SATURN's released stages, advanced on validation pass@1 (threshold unverified).
        curriculum={arg: ('threshold', {'levels': levels, 'metric': 'eval_accuracy'})
                    for arg, levels in (('tiny', ((2, 3, 3), (3, 5, 5), (3, 5, 6))),
                                        ('qwen2_5_1_5b', ((3, 5, 5), (3, 5, 6))),
                                        ('qwen2_5_7b', ((3, 5, 13), (3, 5, 15))))}),
    'rulereasoner': dict(
        task='rules', rewards={'rule_acc': 1.0, 'ordered_tags_format': 1.0}, rl=dict(_VERL, eps_high=0.2, beta=0.0),
        task_fields=dict(think=True), real={p: _real(1e-6, 64, 64, 2048, 0.8, 300) for p in ('qwen3_8b', 'qwen3_4b')},
        # Domain-aware dynamic sampling over the four rule domains: S 8, K 4, harmonic decay, eps 0.1, tau 0.3.
        curriculum={arg: ('domain_weighted', {'domains': ('prontoqa', 'proofwriter', 'ordering', 'boxes'),
                                              'update_every': 8, 'buffer_size': 4, 'variant': 'harmonic',
                                              'epsilon': 0.1, 'tau': 0.3, 'target_base': 1.0})
                    for arg in ('tiny', 'qwen3_8b', 'qwen3_4b')}),
    'simplerl_zoo': dict(
        task='arithmetic', rewards={'math_equiv': 1.0},
        rl=dict(_VERL, eps_high=0.2, beta=1e-4, kl_estimator='k3', kl_placement='loss', entropy_coef=1e-3),
        task_fields=dict(think=True),
        real={p: _real(5e-7, 1024, 8, 8192, 1.0, 100)
              for p in ('qwen2_5_0_5b', 'qwen2_5_1_5b', 'qwen2_5_7b', 'llama3_1_8b')}),
    'co_reward': dict(
        # Label-free: math_equiv is scored (and logged) at weight 0; the advantages see the Co-Reward term.
        task='arithmetic', rewards={'math_equiv': 0.0},
        rl=dict(_VERL, eps_high=0.2, beta=0.005, kl_estimator='k3', kl_placement='loss', entropy_coef=0.0),
        task_fields=dict(think=True), real_task=dict(difficulty=3),
        real={p: _real(3e-6, 256, 8, 3072, 1.0, 175)
              for p in ('qwen2_5_3b', 'qwen2_5_7b', 'qwen3_1_7b', 'qwen3_4b', 'qwen3_8b')},
        shaping={arg: {'co_reward': dict(coef=1.0)}
                 for arg in ('tiny', 'qwen2_5_3b', 'qwen2_5_7b', 'qwen3_1_7b', 'qwen3_4b', 'qwen3_8b')}),
    'laser': dict(
        task='arithmetic', rewards={'laser_correctness': 1.0},
        rl=dict(_VERL, eps_high=0.28, beta=1e-3, kl_estimator='k3', kl_placement='loss'),
        task_fields=dict(think=True), real={'qwen2_5_1_5b': _real(1e-6, 128, 8, 16384, 0.6, 500)},
        # LASER-D: alpha 0.5 for C = +1 within the bucket's target; the scripts' 4096..16384 by 1024, every 20 steps.
        shaping={arg: {'laser_d': dict(correct='laser_correctness', correct_at=1.0, alpha=0.5, lower_bound=low,
                                       upper_bound=high, interval=step, update_every=20)}
                 for arg, low, high, step in (('tiny', 4, 16, 4), ('qwen2_5_1_5b', 4096, 16384, 1024))}),
    'lmm_r1': dict(
        task='arithmetic', rewards={'math_equiv': 1.0},
        rl=dict(advantage='reinforce_pp_baseline', eps_low=0.2, eps_high=0.2, beta=1e-3, kl_estimator='k3',
                kl_placement='loss', aggregation='seq_mean_token_mean'),
        task_fields=dict(think=True), real={'qwen2_5_vl_3b': _real(4e-7, 256, 16, 4096, 1.0, 313)}),
    'dapo_math': dict(
        task='arithmetic', rewards={'math_equiv': 1.0}, rl=dict(_VERL, eps_high=0.28, beta=0.0),
        task_fields=dict(think=True), real={'qwen2_5_7b': _real(1e-6, 512, 16, 20480, 1.0, 500)},
        # Soft overlong punishment: L_max = the response cap, L_cache 4096 (tiny: 16 // 5).
        shaping={'tiny': {'dapo_overlong': dict(max_length=16, cache_length=3, penalty_factor=1.0)},
                 'qwen2_5_7b': {'dapo_overlong': dict(max_length=20480, cache_length=4096, penalty_factor=1.0)}}),
    'docthinker': dict(
        task='grounding', rewards={'iou_box': 1.0, 'answer_type_format': 1.0}, rl=_TRL_GRPO,
        task_fields=dict(answer='box', think=True), real={'qwen2_5_vl_7b': _real(1e-6, 16, 8, 1024, 1.0, 500)}),
}
RECIPES = tuple(PAPER)
CASES = [(name, arg) for name in RECIPES for arg in ('tiny', *PAPER[name]['real'])]


def _load(name):
  path = os.path.join(REPO, 'configs', 'recipes', f'{name}.py')
  spec = importlib.util.spec_from_file_location(f'recipe_{name}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _trained_rewards(cfg):
  task = tasks.get(cfg.task_name, cfg.task)
  return dict(cfg.reward_weights) or dict(zip(task.reward_names, task.reward_weights))


def _switch(cfg, key):
  return getattr(cfg.rl, key) if hasattr(cfg.rl, key) else getattr(cfg.loss, key)


def test_every_recipe_has_a_test_entry():
  files = sorted(f[:-3] for f in os.listdir(os.path.join(REPO, 'configs', 'recipes'))
                 if f.endswith('.py') and not f.startswith('_'))
  assert sorted(set(files) - {'grpo', 'dapo', 'dr_grpo', 'gspo'}) == sorted(RECIPES)


@pytest.mark.parametrize('name,arg', CASES, ids=[f'{n}:{a}' for n, a in CASES])
def test_recipe_builds_with_the_papers_settings(name, arg):
  module = _load(name)
  paper = PAPER[name]
  assert module.ARGS == ('tiny', *paper['real'])
  doc = module.__doc__
  assert f'--config=configs/recipes/{name}.py' in doc
  for section in ('Implemented', 'Approximated', 'Not available yet'):
    assert section in doc, (name, section)
  cfg = run_config.from_config_dict(module.get_config(arg))
  assert cfg.task_name == paper['task']
  assert _trained_rewards(cfg) == paper['rewards']
  for key, value in paper['rl'].items():
    assert _switch(cfg, key) == value, (name, key)
  expected_task = dict(paper['task_fields'])
  if arg == 'tiny':
    expected_task.update(paper.get('tiny_task', {}))
  else:
    expected_task.update(paper.get('real_task', {}), **paper.get('real_task_per_preset', {}).get(arg, {}))
  for key, value in expected_task.items():
    assert getattr(cfg.task, key) == value, (name, key)
  curriculum = paper.get('curriculum', {}).get(arg)
  if curriculum is None:
    assert cfg.curriculum == {}
  else:
    kind, spec = curriculum
    assert cfg.curriculum['name'] == kind
    if kind == 'threshold':
      levels = tuple((level['n_sat'], level['k'], level['l']) for level in cfg.curriculum['levels'])
      assert levels == spec['levels'] and cfg.curriculum['metric'] == spec['metric']
      assert (cfg.task.n_sat, cfg.task.k, cfg.task.l) == spec['levels'][0]  # the run starts at level 0
    else:
      assert {k: cfg.curriculum[k] for k in spec} == spec
  shaping = paper.get('shaping', {}).get(arg, {})
  assert {s.name for s in cfg.shaping} == set(shaping), name
  for selected in cfg.shaping:
    for key, value in shaping[selected.name].items():
      got = selected.end_step if key == 'end_step' else getattr(selected.config, key)
      assert got == value, (name, selected.name, key)
    if 'end_step' not in shaping[selected.name]:
      assert selected.end_step == 0, (name, selected.name)
  assert cfg.rl.train_vision == (arg not in paper.get('frozen_vision', ())), name
  if arg == 'tiny':
    images = bool(tasks.get(cfg.task_name, cfg.task).example(0)['images'])
    assert cfg.model.preset == ('tiny_vl' if images else 'tiny_lm') and cfg.warmup.steps > 0
    # The CLS-RL tiny variants need 32 prompts x G 8 to rise (their docstrings).
    assert cfg.rollout.batch_size <= (256 if 'cls_rl' in name else 128) and cfg.rollout.max_new_tokens <= 64
  else:
    real = paper['real'][arg]
    assert arg in models.PRESETS and cfg.model.preset == arg and cfg.model.path == ''
    assert cfg.warmup.steps == 0 and cfg.model.dtype == 'bfloat16'
    assert math.isclose(cfg.optim.learning_rate, real['learning_rate'])
    assert cfg.rollout.num_generations == real['num_generations']
    assert cfg.rollout.prompts_per_step == real['prompts']
    assert cfg.rollout.max_new_tokens == real['max_new_tokens']
    assert math.isclose(cfg.rollout.temperature, real['temperature'])
    assert cfg.train.steps == real['steps']


def test_dapo_math_has_the_objective_of_the_dapo_recipe():
  dapo = run_config.from_config_dict(_load('dapo').get_config())
  for arg in _load('dapo_math').ARGS:
    dapo_math = run_config.from_config_dict(_load('dapo_math').get_config(arg))
    assert (dapo_math.loss, dapo_math.rl.advantage) == (dapo.loss, dapo.rl.advantage)
  # The same overlong punishment: L_max the response cap, L_cache a fifth of it (DAPO's 4096 / 20480).
  for arg in ('tiny', 'tiny_2x1', 'qwen2_5_vl_3b'):
    (overlong,) = run_config.from_config_dict(_load('dapo').get_config(arg)).shaping
    cap = run_config.from_config_dict(_load('dapo').get_config(arg)).rollout.max_new_tokens
    assert overlong.name == 'dapo_overlong' and overlong.end_step == 0
    assert (overlong.config.max_length, overlong.config.cache_length) == (cap, cap // 5)


@pytest.mark.parametrize('name,arg,updates', [
    ('dapo_math', 'qwen2_5_7b', 16), ('dapo_math', 'tiny', 8), ('dapo', 'qwen2_5_vl_3b', 16), ('dapo', 'tiny', 8),
    ('simplerl_zoo', 'qwen2_5_7b', 4), ('simplerl_zoo', 'tiny', 4), ('gspo', 'qwen2_5_vl_3b', 4), ('gspo', 'tiny', 4)])
def test_papers_updates_per_rollout(name, arg, updates):
  """DAPO's 16 and SimpleRL-Zoo's / GSPO's 4 optimiser steps per rollout (tiny: at most one per prompt)."""
  cfg = run_config.from_config_dict(_load(name).get_config(arg))
  assert cfg.rl.optimizer_steps(cfg.rollout) == updates


def test_co_reward_real_scale_has_the_scripts_cosine_schedule():
  """math_co_reward.sh: lr 3e-6, cosine after a 10% linear warm-up (verl's cosine decays to 0)."""
  module = _load('co_reward')
  for arg in module.ARGS[1:]:
    optim = run_config.from_config_dict(module.get_config(arg)).optim
    assert (optim.schedule, optim.warmup_steps, optim.end_lr_factor) == ('cosine', 17, 0.0)
  tiny = run_config.from_config_dict(module.get_config('tiny'))
  assert tiny.optim.schedule == 'constant' and tiny.warmup.answers == 'correct'  # a competent start (docstring)


@pytest.mark.parametrize('name', RECIPES)
def test_task_block_holds_exactly_the_tasks_fields(name):
  for arg in _load(name).ARGS:
    config = _load(name).get_config(arg)
    fields = {f.name for f in dataclasses.fields(tasks.config_class(config.task.name))}
    assert set(config.task.keys()) == fields | {'name'}


@pytest.mark.parametrize('name', RECIPES)
def test_unknown_arg_names_the_valid_ones(name):
  module = _load(name)
  with pytest.raises(ValueError, match=', '.join(module.ARGS)):
    module.get_config('qwen_nonexistent')
  assert module.get_config(None).to_dict() == module.get_config('tiny').to_dict()


@pytest.mark.parametrize('name', RECIPES)
def test_config_file_loads_and_overrides_through_config_flags(name):
  """As main.py loads it: by path, locked; an override of an existing key works, a new key fails."""
  path = os.path.join(REPO, 'configs', 'recipes', f'{name}.py')

  def parse(*argv):
    values = flags.FlagValues()
    config_flags.DEFINE_config_file('config', None, 'recipe', flag_values=values, lock_config=True,
                                    sys_argv=['prog', *argv])
    values(['prog', *argv])
    return values.config

  cfg = run_config.from_config_dict(parse(f'--config={path}:tiny', '--config.train.steps=7',
                                          '--config.rollout.temperature=0.5'))
  assert cfg.train.steps == 7 and cfg.rollout.temperature == 0.5
  with pytest.raises(Exception, match='no_such_key'):
    parse(f'--config={path}', '--config.rl.no_such_key=1')


@pytest.mark.parametrize('name', RECIPES)
def test_tiny_prompts_fit_the_bucket_and_warmup_answers_fit_the_completion(name):
  """A prompt longer than every bucket stops the run; a warm-up answer longer than N is truncated."""
  cfg = run_config.from_config_dict(_load(name).get_config('tiny'))
  task = tasks.get(cfg.task_name, cfg.task)
  tokenizer = tokenizer_lib.build_tiny_tokenizer()
  vision = models.get_preset('tiny_vl').vision
  probe = task.example(0)
  rewards.check_meta(list(_trained_rewards(cfg)), probe['meta'])
  image_cfg = None
  if probe['images']:
    pixels = max(image.shape[0] * image.shape[1] for image in probe['images'])
    image_cfg = image_processor.ImageProcessorConfig(
        patch_size=vision.patch_size, temporal_patch_size=vision.temporal_patch_size,
        merge_size=vision.spatial_merge_size, min_pixels=(vision.patch_size * vision.spatial_merge_size)**2,
        max_pixels=4 * pixels)
  prompt_lengths, answer_lengths = [], []
  for seed in range(64):
    example = task.example(seed)
    grids = []
    if example['images']:
      grids = [tuple(g) for g in image_processor.preprocess(example['images'], image_cfg)['image_grid_thw']]
    prompt_lengths.append(len(processor.encode_prompt(tokenizer, example['prompt'], grids,
                                                      vision.spatial_merge_size)))
    answer = task.random_answer_completion(example['meta'], seed)
    answer_lengths.append(len(tokenizer.encode(answer, add_special_tokens=False)) + 1)  # + EOS
  assert max(prompt_lengths) <= max(cfg.rollout.prompt_buckets), (name, max(prompt_lengths))
  assert max(answer_lengths) <= cfg.rollout.max_new_tokens, (name, max(answer_lengths))


@pytest.mark.slow
@pytest.mark.parametrize('name', RECIPES)
def test_tiny_recipe_runs_two_rl_steps(name, tmp_path):
  from rl_reason import train  # pylint: disable=g-import-not-at-top
  config = _load(name).get_config('tiny')
  # No format warm-up: it would compile one more update per recipe. Its per-task part (the random answers)
  # is checked for every recipe above, and the warm-up itself runs in rl_recipes_test and train_test.
  config.warmup.steps = 0
  config.warmup.batch_size = 8
  config.rollout.batch_size = 16
  config.rollout.num_generations = 4
  config.rollout.max_new_tokens = 16  # one length for all: recipes with equal shapes share compiled programs
  config.train.steps = 2
  config.train.eval_every = 0
  config.train.eval_size = 8
  config.train.sample_every = 0
  config.train.checkpoint_every = 2
  config.mesh.num_devices = 1  # one of the 8 fake devices: sharding has tests of its own
  cfg = run_config.from_config_dict(config)
  rows = train.run(config, str(tmp_path / name))
  steps = [r for r in rows if 'reward_mean' in r]
  assert [r['step'] for r in steps] == [1, 2]
  last = steps[-1]
  assert np.isfinite(last['loss']) and np.isfinite(last['grad_norm'])
  assert math.isclose(last['kl_coef'], cfg.loss.beta, rel_tol=1e-6)
  for reward in _trained_rewards(cfg):
    assert f'rewards/{reward}' in last, reward
  if cfg.loss.token_weighting == 'tw_grpo':
    assert last['token_weight_mean'] >= 1.0
  assert any('eval_reward_mean' in r for r in rows)
