"""The `rl` config section: defaults keep the original loss, every option is documented and validated, and
options the training loop cannot feed yet are refused."""

import dataclasses
import inspect
import re

import pytest

from configs import vlm_grpo
from rl_reason import run_config
from rl_reason.rl import advantages, aggregation, kl, losses, ratios, surrogates, weights


def _run_config(**rl):
  config = vlm_grpo.get_config()
  for key, value in rl.items():
    setattr(config.rl, key, value)
  return run_config.from_config_dict(config)


def test_defaults_keep_the_original_behaviour():
  cfg = _run_config()
  assert cfg.rl == run_config.RLConfig(advantage='grpo', advantage_eps=1e-4, num_iterations=1)
  assert cfg.loss == losses.LossConfig(beta=0.1)  # every other field at the LossConfig default
  loss = cfg.loss
  assert (loss.ratio_level, loss.surrogate, loss.eps_low, loss.eps_high, loss.dual_clip, loss.kl_estimator,
          loss.kl_placement, loss.beta, loss.beta_schedule, loss.aggregation, loss.entropy_coef, loss.token_weighting,
          loss.difficulty_weight, loss.is_correction, loss.mask_truncated_completions,
          loss.top_entropy_quantile) == ('token', 'ppo_clip', 0.2, 0.2, 0.0, 'k3', 'loss', 0.1, 'constant',
                                         'seq_mean_token_mean', 0.0, 'none', 'none', 'none', False, 1.0)


def test_the_rl_block_covers_every_field_with_a_comment():
  config = vlm_grpo.get_config()
  fields = {f.name for f in dataclasses.fields(run_config.RLConfig)} | {f.name for f in dataclasses.fields(
      losses.LossConfig)}
  assert set(config.rl.keys()) == fields
  source = inspect.getsource(vlm_grpo.get_config)
  for name in fields:
    assert re.search(rf'^\s*c\.rl\.{name} = .+  # \S', source, re.M), f'c.rl.{name} lacks a one-line comment'


def test_config_defaults_equal_the_dataclass_defaults():
  """The dependent-option check compares with the LossConfig defaults, so the config must start from them."""
  config = vlm_grpo.get_config()
  for field in dataclasses.fields(losses.LossConfig):
    if field.name != 'beta':  # the tiny run's KL coefficient
      assert config.rl[field.name] == field.default, field.name


@pytest.mark.parametrize('rl,message', [
    (dict(difficulty_weight='exp'), r"batch\['iou'\]"),
    (dict(advantage='gdpo', kl_placement='reward'), 'per-reward advantage columns'),
])
def test_options_the_loop_cannot_feed_are_refused(rl, message):
  with pytest.raises(ValueError, match=message):
    _run_config(**rl)


WIRED = [
    *[dict(advantage=name) for name in sorted(set(advantages.ADVANTAGE_ESTIMATORS) - advantages.PER_REWARD_ESTIMATORS)],
    *[dict(ratio_level=name) for name in ratios.RATIOS],
    dict(surrogate='unclipped'),
    dict(surrogate='cispo', eps_low=0.0, eps_high=4.0),
    dict(surrogate='sapo', sapo_tau_neg=1.2),
    dict(surrogate='gpg'),
    dict(dual_clip=3.0),
    *[dict(aggregation=name) for name in aggregation.AGGREGATIONS],
    dict(aggregation='seq_mean_token_sum_norm', aggregation_constant=512.0),
    *[dict(kl_estimator=name) for name in kl.KL_ESTIMATORS],
    dict(token_weighting='tw_grpo', tw_alpha=1.7, tw_chunk_size=64),
    *[dict(is_correction=name, is_cap_max=2.0) for name in weights.IS_CORRECTIONS],
    dict(top_entropy_quantile=0.2, entropy_coef=-0.01),
    *[dict(advantage=name) for name in sorted(advantages.PER_REWARD_ESTIMATORS)],
    dict(kl_placement='reward', kl_estimator='k1'),
    dict(beta_schedule='linear', beta_final=0.01, beta_schedule_steps=100),
    dict(kl_group_factor='akf_mean_reward'),
    dict(mask_truncated_completions=True),
]


def test_every_wired_choice_is_tried():
  tried = lambda key: {d[key] for d in WIRED if key in d}
  assert tried('surrogate') | {'ppo_clip'} == set(surrogates.SURROGATES)
  assert tried('aggregation') == set(aggregation.AGGREGATIONS) and tried('kl_estimator') == set(kl.KL_ESTIMATORS)
  assert tried('is_correction') == set(weights.IS_CORRECTIONS) and tried('ratio_level') == set(ratios.RATIOS)


@pytest.mark.parametrize('rl', WIRED, ids=str)
def test_options_the_loop_feeds_are_accepted(rl):
  cfg = _run_config(**rl)
  for key, value in rl.items():
    assert getattr(cfg.rl if hasattr(cfg.rl, key) else cfg.loss, key) == value


def test_unknown_rl_keys_list_the_valid_ones():
  config = vlm_grpo.get_config()
  with config.unlocked():
    config.rl.clip_ratio = 0.2
  with pytest.raises(ValueError, match=r'rl\.clip_ratio.*valid keys of rl:.*advantage.*eps_high.*surrogate'):
    run_config.from_config_dict(config)


@pytest.mark.parametrize('rl,message', [
    (dict(surrogate='trpo'), r"'trpo'.*ppo_clip"),
    (dict(surrogate='sapo', eps_low=0.1), 'eps_low=0.1 has no effect'),
    (dict(beta=0.0, kl_estimator='k1'), "kl_estimator='k1' has no effect unless beta > 0"),
    (dict(advantage_eps=-1.0), 'advantage_eps'),
])
def test_invalid_loss_options_are_errors(rl, message):
  with pytest.raises(ValueError, match=message):
    _run_config(**rl)


@pytest.mark.slow
def test_the_loop_trains_with_the_wired_options(tmp_path):
  """Options the loop feeds (TW-GRPO, sampler IS correction, top-entropy tokens, dual clip) run end to end."""
  from rl_reason import train  # pylint: disable=g-import-not-at-top
  config = vlm_grpo.get_config('tiny_2x1')
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
  config.rl.num_iterations = 2
  config.rl.eps_high = 0.28
  config.rl.dual_clip = 3.0
  config.rl.aggregation = 'token_mean'
  config.rl.token_weighting = 'tw_grpo'
  config.rl.tw_chunk_size = 64
  config.rl.is_correction = 'sequence_mask'
  config.rl.top_entropy_quantile = 0.5
  rows = [r for r in train.run(config, str(tmp_path / 'run')) if 'reward_mean' in r]
  assert [r['step'] for r in rows] == [1, 2]
  for key in ('token_weight_mean', 'is_weight_mean', 'is_rejected_frac', 'entropy_kept_frac', 'clip_frac_dual',
              'sampler_logprob_diff_max'):
    assert key in rows[-1], key
  assert 0 < rows[-1]['entropy_kept_frac'] < 1
