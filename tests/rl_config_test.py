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
    (dict(advantage='gdpo', kl_placement='reward'), 'per-reward advantage columns'),
])
def test_options_the_loop_cannot_feed_are_refused(rl, message):
  with pytest.raises(ValueError, match=message):
    _run_config(**rl)


def _grounding(answer='box', weights=None, **rl):
  config = vlm_grpo.get_config()
  with config.unlocked():
    config.task = {'name': 'grounding', 'answer': answer}
    config.reward.weights = weights or {}
  for key, value in rl.items():
    setattr(config.rl, key, value)
  return run_config.from_config_dict(config)


@pytest.mark.parametrize('kind', sorted(weights.DIFFICULTY_WEIGHTS))
def test_difficulty_weight_needs_an_iou_reward(kind):
  """The loop feeds batch['iou'] from the task's IoU reward column; a task without one is refused at config time."""
  with pytest.raises(ValueError, match=r"rl.difficulty_weight=.*no IoU reward among its rewards \['jigsaw_format'"):
    _run_config(difficulty_weight=kind)
  with pytest.raises(ValueError, match=r"task 'grounding' has no IoU reward.*'point_in_box'"):
    _grounding(answer='point', difficulty_weight=kind)  # GuirlVG points: point-in-box, not an IoU
  assert _grounding(difficulty_weight=kind).loss.difficulty_weight == kind
  loss = _grounding(difficulty_weight=kind).loss
  assert run_config.difficulty_iou_column(['univg_format', 'iou_box_inclusive'], loss, 'x') == 'iou_box_inclusive'
  # Configured weights replace the task's; a combination's IoU part (its sub-score column) counts.
  assert _grounding(weights={'univg_r1': 1.0}, difficulty_weight=kind).loss.difficulty_weight == kind
  with pytest.raises(ValueError, match='reward.weights has no IoU reward'):
    _grounding(weights={'univg_format': 1.0}, difficulty_weight=kind)


@pytest.mark.parametrize('rl,rollout,message', [
    (dict(mini_batch_size=12), {}, r'rl.mini_batch_size 12 must be a multiple of rollout.num_generations 16'),
    (dict(mini_batch_size=48), {}, r'rl.mini_batch_size 48 must divide rollout.batch_size 128'),
    (dict(mini_batch_size=32, grad_accum_steps=3), {}, r'rl.grad_accum_steps 3 must divide the mini-batch of 32'),
    (dict(mini_batch_size=48, grad_accum_steps=4), dict(batch_size=96, num_generations=8),
     r'micro-batch of 12 completions .* must be a multiple or a divisor of rollout.num_generations 8'),
    (dict(grad_accum_steps=16, token_weighting='tw_grpo'), {}, r'tw_grpo .* micro-batch must hold whole groups'),
    (dict(grad_accum_steps=2, top_entropy_quantile=0.2), {}, r'rl.top_entropy_quantile=0.2 .* rl.grad_accum_steps=2'),
    (dict(logprob_chunk_size=8, token_weighting='tw_grpo', tw_stop_gradient=False), {},
     r'rl.tw_stop_gradient=False needs the full logits'),
    (dict(mini_batch_size=-1), {}, r'rl.mini_batch_size must be >= 0'),
    (dict(grad_accum_steps=0), {}, r'rl.grad_accum_steps must be >= 1'),
    (dict(logprob_chunk_size=-2), {}, r'rl.logprob_chunk_size must be >= 0'),
], ids=str)
def test_bad_batching_combinations_are_config_errors(rl, rollout, message):
  config = vlm_grpo.get_config()  # 128 completions, G = 16
  config.rollout.update(rollout)
  config.rl.update(rl)
  with pytest.raises(ValueError, match=message):
    run_config.from_config_dict(config)


@pytest.mark.parametrize('rl,steps,micro', [
    (dict(), 1, 128),
    (dict(num_iterations=2), 2, 128),
    (dict(mini_batch_size=32, num_iterations=3), 12, 32),
    (dict(mini_batch_size=64, grad_accum_steps=4), 2, 16),
    (dict(grad_accum_steps=32), 1, 4),  # a quarter of a group per micro-batch
], ids=str)
def test_batching_options_are_accepted(rl, steps, micro):
  cfg = _run_config(**rl)
  assert cfg.rl.optimizer_steps(cfg.rollout) == steps and cfg.rl.micro_batch(cfg.rollout) == micro


def test_micro_batch_not_divisible_by_the_mesh_batch_axes_is_an_error():
  from rl_reason import train  # pylint: disable=g-import-not-at-top
  config = vlm_grpo.get_config()
  config.rollout.batch_size, config.rollout.num_generations = 16, 4
  config.rl.grad_accum_steps = 8  # micro-batches of 2 completions
  config.mesh.data, config.mesh.fsdp = 4, 2
  config.train.eval_size = config.warmup.batch_size = 16
  with pytest.raises(ValueError, match=r'micro-batch of 2 completions .* not divisible by the mesh batch axes '
                                       r'\(data x fsdp = 8\)'):
    train.Trainer(run_config.from_config_dict(config), {}, '/tmp/unused')


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
    dict(entropy_target=0.2, entropy_coef=0.01, entropy_coef_delta=0.002, entropy_coef_max=0.1),
    dict(mini_batch_size=32, num_iterations=2, grad_accum_steps=4, logprob_chunk_size=8),
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
    (dict(entropy_target=-0.1), 'entropy_target must be >= 0'),
    (dict(entropy_target=0.2, entropy_coef_delta=0.0), 'entropy_coef_delta and entropy_coef_max must be > 0'),
    (dict(entropy_target=0.2, entropy_coef=0.5, entropy_coef_max=0.1), r'initial adaptive coefficient .* \[0, '),
    (dict(entropy_target=0.0, entropy_coef_max=0.2), 'entropy_coef_max=0.2 has no effect unless entropy_target > 0'),
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
  # Adaptive entropy control with a target above any token entropy: the bonus is on and grows by delta per step.
  config.rl.entropy_target, config.rl.entropy_coef_delta, config.rl.entropy_coef_max = 20.0, 0.01, 0.05
  rows = [r for r in train.run(config, str(tmp_path / 'run')) if 'reward_mean' in r]
  assert [r['step'] for r in rows] == [1, 2]
  assert [r['entropy_coef'] for r in rows] == pytest.approx([0.01, 0.02])
  assert all(r['entropy_sampled'] > 0 and r['entropy_rollout'] > 0 for r in rows)
  assert all(r['entropy_rollout'] != r['entropy_sampled'] for r in rows)  # the exact mean, not the estimate
  for key in ('token_weight_mean', 'is_weight_mean', 'is_rejected_frac', 'entropy_kept_frac', 'clip_frac_dual',
              'sampler_logprob_diff_max'):
    assert key in rows[-1], key
  assert 0 < rows[-1]['entropy_kept_frac'] < 1


@pytest.mark.slow
def test_the_loop_runs_minibatch_epochs_with_accumulation_and_the_difficulty_weight(tmp_path):
  """UniVG-R1 tiny: mu = 2 epochs of 2 mini-batches (4 optimiser steps per rollout, old log-probs computed
  once), 2 micro-batches each, chunked log-probs; batch['iou'] is the task's IoU reward column."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from rl_reason import train  # pylint: disable=g-import-not-at-top
  path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs', 'recipes', 'univg_r1.py')
  spec = importlib.util.spec_from_file_location('univg_r1_recipe', path)
  recipe = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(recipe)
  config = recipe.get_config('tiny')
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
  config.rl.mini_batch_size = 8
  config.rl.grad_accum_steps = 2
  config.rl.logprob_chunk_size = 5
  config.rl.entropy_target, config.rl.entropy_coef_delta = 20.0, 0.01  # the step's coefficient reaches micro-batches
  config.mesh.data, config.mesh.tensor = 4, 2  # micro-batches of 4 completions over 4 batch shards
  cfg = run_config.from_config_dict(config)
  assert cfg.loss.difficulty_weight == 'exp'
  trainer = train.Trainer(cfg, run_config.plain(config), str(tmp_path))
  calls = {'logprobs': 0, 'rl_update': 0, 'minibatch': 0}
  ious, fed = [], []

  def spy(name, record=None):
    inner = getattr(trainer.learner, name)

    def wrapped(*args):
      calls[name] += 1
      if record is not None:
        record(*args)
      return inner(*args)
    setattr(trainer.learner, name, wrapped)

  spy('logprobs')
  spy('rl_update')
  spy('minibatch', lambda batch, groups: fed.append(np.asarray(jax.device_get(batch['iou']))))
  score = trainer.score

  def scored(texts, metas, *args):
    scores = score(texts, metas, *args)
    if len(texts) == cfg.rollout.batch_size:
      ious.append(np.nan_to_num(scores['iou_box_inclusive'], nan=0.0))
    return scores
  trainer.score = scored
  rows = [r for r in trainer.run() if 'reward_mean' in r]
  assert [r['step'] for r in rows] == [1, 2]
  assert calls == {'logprobs': 2 * 2, 'rl_update': 2 * 4, 'minibatch': 2 * 4}  # ref + old; mu * 2 mini-batches
  for step, iou in enumerate(ious):
    for fed_iou in fed[4 * step:4 * step + 4]:
      np.testing.assert_allclose(fed_iou, iou, rtol=1e-6)
  for row in rows:
    assert row['optimizer_steps'] == 4 and np.isfinite(row['loss']) and np.isfinite(row['grad_norm'])
    assert 1.0 <= row['sequence_weight_mean'] <= np.e  # exp(1 - mIoU), mIoU in [0, 1]
  assert [r['entropy_coef'] for r in rows] == pytest.approx([0.01, 0.02])
