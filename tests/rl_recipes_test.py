"""Paper recipes (configs/recipes): each builds a valid run config with its published loss switches, and runs."""

import importlib.util
import os

import pytest

from rl_reason import run_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = ('grpo', 'dapo', 'dr_grpo', 'gspo')

# The switches each paper prescribes (ALGORITHMS.md §0, §1.14).
EXPECTED = {
    'grpo': dict(advantage='grpo', surrogate='ppo_clip', ratio_level='token', eps_low=0.2, eps_high=0.2, beta=0.04,
                 kl_estimator='k3', kl_placement='loss', aggregation='seq_mean_token_mean'),
    'dapo': dict(advantage='grpo', surrogate='ppo_clip', ratio_level='token', eps_low=0.2, eps_high=0.28, beta=0.0,
                 aggregation='token_mean'),
    'dr_grpo': dict(advantage='drgrpo', surrogate='ppo_clip', eps_low=0.2, eps_high=0.2, beta=0.0,
                    aggregation='seq_mean_token_sum_norm', aggregation_constant=0.0),
    'gspo': dict(advantage='grpo', surrogate='ppo_clip', ratio_level='sequence', eps_low=3e-4, eps_high=4e-4, beta=0.0,
                 aggregation='seq_mean_token_mean'),
}


def _load(name):
  path = os.path.join(REPO, 'configs', 'recipes', f'{name}.py')
  spec = importlib.util.spec_from_file_location(f'recipe_{name}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.parametrize('name', RECIPES)
@pytest.mark.parametrize('arg', [None, 'tiny', 'tiny_2x1'])
def test_recipe_builds_with_its_published_switches(name, arg):
  module = _load(name)
  assert f'--config=configs/recipes/{name}.py' in module.__doc__
  cfg = run_config.from_config_dict(module.get_config(arg))
  for key, value in EXPECTED[name].items():
    got = getattr(cfg.rl, key) if hasattr(cfg.rl, key) else getattr(cfg.loss, key)
    assert got == value, (name, key)
  assert cfg.model.preset == 'tiny_vl'
  assert (cfg.task.rows, cfg.task.cols) == ((2, 1) if arg == 'tiny_2x1' else (2, 2))


def test_recipes_reject_unknown_presets():
  with pytest.raises(ValueError, match='tiny_2x1'):
    _load('dapo').get_config('qwen_nonexistent')


@pytest.mark.slow
@pytest.mark.parametrize('name', RECIPES)
def test_recipe_runs_on_the_tiny_preset(name, tmp_path):
  from rl_reason import train  # pylint: disable=g-import-not-at-top
  config = _load(name).get_config('tiny_2x1')
  config.warmup.steps = 2
  config.warmup.batch_size = 8
  config.rollout.batch_size = 16
  config.rollout.num_generations = 4
  config.rollout.max_new_tokens = 12
  config.train.steps = 2
  config.train.eval_every = 0
  config.train.eval_size = 8
  config.train.sample_every = 0
  config.train.checkpoint_every = 2
  config.mesh.num_devices = 1  # one of the 8 fake devices: sharding has tests of its own
  rows = [r for r in train.run(config, str(tmp_path / name)) if 'reward_mean' in r]
  assert [r['step'] for r in rows] == [1, 2]
  for key in ('loss', 'kl', 'entropy', 'clip_frac_low', 'clip_frac_high', 'ratio_mean', 'sampler_logprob_diff_mean'):
    assert key in rows[-1], key
