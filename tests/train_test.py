"""The loop: end-to-end learning through main, exact resume, clear errors for bad configs and workdirs."""

import dataclasses
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import nnx

from configs import llm_grpo, vlm_grpo
from configs.recipes import rulereasoner, sophiavl_r1
from rl_reason import checkpoint, metrics, models, rewards, run_config, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROCESS_KEYS = set(train.PROCESS_KEYS)


def _small_config(steps=4):
  config = vlm_grpo.get_config('tiny_2x1')
  config.warmup.steps = 3
  config.warmup.batch_size = 8
  config.rollout.batch_size = 16
  config.rollout.num_generations = 4
  config.rollout.max_new_tokens = 12
  config.train.steps = steps
  config.train.eval_every = 2
  config.train.eval_size = 8
  config.train.sample_every = 2
  config.train.checkpoint_every = 2
  return config


def _comparable(rows):
  return [{k: v for k, v in row.items() if k not in PROCESS_KEYS} for row in rows]


@pytest.mark.slow
def test_resume_gives_the_same_metrics_as_an_uninterrupted_run(tmp_path):
  straight = train.run(_small_config(steps=4), str(tmp_path / 'straight'))
  resumed_dir = str(tmp_path / 'resumed')
  train.run(_small_config(steps=2), resumed_dir)
  resumed = train.run(_small_config(steps=4), resumed_dir)  # same workdir: resumes at step 2
  assert [r['step'] for r in resumed] == [r['step'] for r in straight]
  for a, b in zip(_comparable(straight), _comparable(resumed)):
    assert a.keys() == b.keys()
    for key in a:
      np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=f'step {a["step"]} {key}')
  assert os.path.exists(os.path.join(resumed_dir, 'rewards.png'))


@pytest.mark.slow
@pytest.mark.parametrize('train_vision', [False, True])
def test_format_warmup_leaves_the_vision_tower_alone_unless_asked(tmp_path, train_vision):
  config = _small_config()
  config.warmup.steps = 2
  config.warmup.train_vision = train_vision
  cfg = run_config.from_config_dict(config)
  trainer = train.Trainer(cfg, json.loads(json.dumps(run_config.plain(config))), str(tmp_path))
  leaves = lambda: {jax.tree_util.keystr(path): np.asarray(leaf)
                    for path, leaf in jax.tree_util.tree_leaves_with_path(trainer.state['params'])}
  before = leaves()
  trainer.warmup()
  moved = {name: not np.array_equal(value, before[name]) for name, value in leaves().items()}
  vision = [name for name in moved if name.startswith("['visual']")]
  assert vision and all(moved[name] for name in moved if name not in vision)  # the decoder always trains
  assert all(moved[name] == train_vision for name in vision), {name: moved[name] for name in vision}


def test_rl_stage_with_a_frozen_vision_tower_trains_the_decoder_only(tmp_path):
  """rl.train_vision = False (EasyR1's freeze_vision_tower): an RL step moves every decoder parameter and no
  vision one, and the optimiser holds Adam's two moments for the decoder alone; refused without a tower."""
  config = _small_config(steps=1)
  config.rl.train_vision = False
  config.optim.warmup_steps = 0  # the first update's learning rate is not 0
  config.rollout.prefill_chunk = 16  # and the rollout's prompts prefilled in chunks (sampling_prefix_test: exact)
  trainer = train.Trainer(run_config.from_config_dict(config), run_config.plain(config), str(tmp_path / 'run'))
  assert trainer.sampling.prefill_chunk == trainer.greedy.prefill_chunk == 16
  leaves = lambda: {path: np.asarray(leaf) for path, leaf in jax.tree_util.tree_leaves_with_path(trainer.state['params'])}
  score = trainer.score  # rewards that differ within groups (a 3-step warm-up earns none): every parameter has a gradient
  trainer.score = lambda texts, metas, *args: dict(score(texts, metas, *args), total=np.array(
      [float(len(t) % 2) for t in texts]))
  trainer.warmup()  # the warm-up's own setting (train_vision) trains the tower
  before = leaves()
  trainer.rl_step()
  vision = [path for path in before if models.is_vision_param(path)]
  assert vision and all(np.array_equal(leaves()[path], before[path]) for path in vision)
  assert all(not np.array_equal(leaves()[path], before[path]) for path in before if path not in vision)
  decoder_bytes = sum(leaf.nbytes for path, leaf in before.items() if path not in vision)
  assert 2 * decoder_bytes <= trainer.memory.parts['optimizer'][0] < 2 * decoder_bytes + 1024
  text = llm_grpo.get_config()
  text.rl.train_vision = False
  with pytest.raises(ValueError, match='rl.train_vision=False freezes the vision tower, but the model has none'):
    train.Trainer(run_config.from_config_dict(text), run_config.plain(text), str(tmp_path / 'text'))


def test_warmup_on_correct_answers_trains_on_the_tasks_answers(tmp_path):
  """warmup.answers = 'correct' (a pretrained stand-in for label-free recipes): each warm-up target is
  the boxed correct answer of its prompt, then EOS; 'random' targets are mostly wrong answers."""
  config = llm_grpo.get_config()
  config.warmup.steps, config.warmup.batch_size = 2, 8
  config.rollout.batch_size, config.rollout.num_generations, config.rollout.max_new_tokens = 16, 4, 16
  config.train.eval_size = 8
  targets = {}
  for answers in ('correct', 'random'):
    config.warmup.answers = answers
    trainer = train.Trainer(run_config.from_config_dict(config), run_config.plain(config), str(tmp_path / answers))
    seen = []
    next_batch = trainer.warmup_stream.next
    trainer.warmup_stream.next = lambda: seen.append(next_batch()) or seen[-1]
    sft_update = trainer.learner.sft_update

    def recorded(params, opt_state, batch, sft_update=sft_update):
      tokens = np.asarray(jax.device_get(batch['tokens']))
      targets.setdefault(answers, []).extend(trainer.tokenizer.decode(t[t != trainer.pad_id]) for t in tokens)
      return sft_update(params, opt_state, batch)

    trainer.learner.sft_update = recorded
    trainer.warmup()
    truth = [rf'\boxed{{{e["meta"]["answer"]}}}' for batch in seen for e in batch.examples]
    assert len(targets[answers]) == len(truth) == 16
    eos = trainer.tokenizer.decode([trainer.eos_id])
    right = [t == a + eos for t, a in zip(targets[answers], truth)]
    assert all(right) if answers == 'correct' else sum(right) <= 4
  config = vlm_grpo.get_config('tiny_2x1')
  config.warmup.answers = 'correct'
  with pytest.raises(ValueError, match=r"warmup.answers='correct' .* task 'jigsaw' has no answer_completion"):
    train.Trainer(run_config.from_config_dict(config), run_config.plain(config), str(tmp_path / 'jigsaw'))
  config.warmup.answers = 'right'
  with pytest.raises(ValueError, match=r"warmup.answers must be one of \('random', 'correct'\), got 'right'"):
    run_config.from_config_dict(config)


@pytest.mark.slow
def test_crash_mid_run_leaves_the_last_checkpoint_loadable(tmp_path, monkeypatch):
  workdir = str(tmp_path / 'run')
  original = train.Trainer.rl_step

  def crash_at_step_3(self):
    if self.step == 3:
      raise RuntimeError('simulated crash')
    return original(self)

  monkeypatch.setattr(train.Trainer, 'rl_step', crash_at_step_3)
  with pytest.raises(RuntimeError, match='simulated crash'):
    train.run(_small_config(steps=4), workdir)
  assert checkpoint.Checkpointer(os.path.join(workdir, 'checkpoints')).latest_step() == 2
  monkeypatch.setattr(train.Trainer, 'rl_step', original)
  rows = train.run(_small_config(steps=4), workdir)
  assert max(r['step'] for r in rows) == 4
  steps = [r['step'] for r in rows if 'reward_mean' in r]
  assert steps == sorted(set(steps)) == [1, 2, 3, 4]  # no duplicated rows after the resume


def test_incompatible_checkpoint_is_named(tmp_path):
  workdir = str(tmp_path / 'run')
  train.run(_small_config(steps=1), workdir)
  config = _small_config(steps=2)
  config.task.image_size = (48, 48)
  with pytest.raises(ValueError, match='task.image_size'):
    train.run(config, workdir)


def test_config_errors_are_clear():
  with pytest.raises(ValueError, match='valid: tiny, tiny_2x1'):
    vlm_grpo.get_config('qwen_nonexistent')
  config = vlm_grpo.get_config()
  with config.unlocked():
    config.rl.not_a_field = 1
  with pytest.raises(ValueError, match='rl.not_a_field'):
    run_config.from_config_dict(config)
  config = vlm_grpo.get_config()
  config.rollout.batch_size = 20
  config.rollout.num_generations = 8
  with pytest.raises(ValueError, match='not divisible by the group size'):
    run_config.from_config_dict(config)
  config = vlm_grpo.get_config()
  config.model.preset = 'nope'
  with pytest.raises(ValueError, match='valid presets'):
    run_config.from_config_dict(config)
  config = vlm_grpo.get_config()
  config.rl.advantage = 'nope'
  with pytest.raises(ValueError, match='grpo'):
    run_config.from_config_dict(config)
  config = vlm_grpo.get_config()
  config.rollout.prefill_chunk = -8
  with pytest.raises(ValueError, match=r'rollout.prefill_chunk must be >= 0 \(0: the whole prompt at once\), got -8'):
    run_config.from_config_dict(config)


def test_main_rejects_unknown_config_key(tmp_path):
  result = subprocess.run([sys.executable, '-m', 'rl_reason.main', '--config=configs/vlm_grpo.py',
                           f'--workdir={tmp_path}', '--config.rl.betta=0.1'], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
  assert result.returncode != 0 and 'betta' in result.stderr


E2E_SEEDS = (0, 1, 2)  # tried in turn until one learns (below)


@pytest.mark.slow
def test_end_to_end_through_main_learns(tmp_path):
  """The shortened default (2x1 puzzles) through main: accuracy, not only format, rises.

  Whether a tiny policy starts to read the image within 300 steps is chaotic in the seed and in the
  last bits of the arithmetic, which differ between CPUs (XLA's and its GEMM library's kernels follow
  the host's instruction set): on one host seed 0 rose and seed 3 did not, on another (Zen 5) seed 0
  did not and seeds 1-4 did (README, Results). So the run is tried with seed 0, then 1, then 2, and
  the test asks that one of them learns; a loop that does not learn fails all three.
  """
  # The command as a user runs it: one CPU device, not the suite's 8 fake ones.
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  tried = []
  for seed in E2E_SEEDS:
    workdir = str(tmp_path / f'e2e_seed{seed}')
    result = subprocess.run([sys.executable, '-m', 'rl_reason.main', '--config=configs/vlm_grpo.py:tiny_2x1',
                             f'--workdir={workdir}', f'--config.seed={seed}'], cwd=REPO, capture_output=True,
                            text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = metrics.read_metrics(os.path.join(workdir, 'metrics.jsonl'))
    train_rows = [r for r in rows if 'accuracy' in r]
    first = np.mean([r['accuracy'] for r in train_rows[:25]])
    last = np.mean([r['accuracy'] for r in train_rows[-50:]])
    # Greedy evaluation on 64 held-out 2x1 puzzles is noisy (chance 0.5): some evaluation after the
    # start must beat the start; the sampled accuracy is the learning criterion.
    evals = [r['eval_solve_rate'] for r in rows if 'eval_solve_rate' in r]
    tried.append(dict(seed=seed, first=round(float(first), 3), last=round(float(last), 3), evals=evals))
    if last > first + 0.15 and max(evals[1:]) > evals[0]:
      break
  else:
    raise AssertionError(f'no seed learned (sampled accuracy, first 25 -> last 50 steps, must rise by 0.15): {tried}')
  for key in ('step', 'reward_mean', 'solve_rate', 'format_rate', 'kl', 'entropy', 'time_sample',
              'time_reward', 'time_update'):
    assert key in train_rows[-1]
  assert os.path.exists(os.path.join(workdir, 'rewards.png'))
  assert os.listdir(os.path.join(workdir, 'tb'))


@pytest.mark.slow
def test_trains_from_a_hugging_face_checkpoint_directory(tmp_path):
  """--config.model.path: a transformers-saved Qwen2.5-VL with its tokenizer, 2 RL steps."""
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  from rl_reason.data import tokenizer as tokenizer_lib  # pylint: disable=g-import-not-at-top
  tokenizer = tokenizer_lib.build_tiny_tokenizer()
  special = tokenizer_lib.special_ids(tokenizer)
  torch.manual_seed(0)
  hf_cfg = transformers.Qwen2_5_VLConfig(
      text_config=dict(vocab_size=512, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2,
                       rope_parameters=dict(rope_type='default', rope_theta=10.0, mrope_section=[2, 3, 3])),
      vision_config=dict(depth=2, hidden_size=32, intermediate_size=48, num_heads=2, patch_size=8,
                         window_size=16, fullatt_block_indexes=[1], out_hidden_size=64),
      image_token_id=special['image_pad_id'], vision_start_token_id=special['vision_start_id'],
      vision_end_token_id=special['vision_end_id'], video_token_id=special['pad_id'])
  path = str(tmp_path / 'checkpoint')
  transformers.Qwen2_5_VLForConditionalGeneration(hf_cfg).save_pretrained(path)
  tokenizer.save_pretrained(path)
  config = _small_config(steps=2)
  config.model.preset = ''
  config.model.path = path
  rows = train.run(config, str(tmp_path / 'run'))
  assert [r['step'] for r in rows if 'reward_mean' in r] == [1, 2]
  with pytest.raises(ValueError, match='must be empty or a published architecture'):
    config.model.preset = 'tiny_vl'
    run_config.from_config_dict(config)
  # A published preset next to the path checks the architecture, naming the differing fields.
  config.model.preset = 'qwen2_5_vl_3b'
  with pytest.raises(ValueError, match=r"not the architecture of model.preset 'qwen2_5_vl_3b'.*hidden_size"):
    train.run(config, str(tmp_path / 'run_preset'))
  config.model.preset, config.model.path = 'qwen2_5_vl_3b', ''
  with pytest.raises(ValueError, match='published checkpoint architecture.*model.path'):
    train.run(config, str(tmp_path / 'run_no_path'))
  # Scan over layers and remat are honoured when loading a checkpoint (stacked [L, ...] params).
  # (Building the trainer loads the weights; a scanned update is covered by models_scan_test.)
  config.model.preset, config.model.path = '', path
  config.model.scan_layers, config.model.remat = True, 'full'
  trainer = train.Trainer(run_config.from_config_dict(config), run_config.plain(config), str(tmp_path / 'run_scan'))
  q_proj = trainer.state['params']['decoder']['layers']['self_attn']['q_proj']['kernel']
  expected = np.stack([hf_layer.self_attn.q_proj.weight.detach().numpy().T for hf_layer in
                       transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained(path).model.language_model.layers])
  np.testing.assert_allclose(np.asarray(q_proj), expected, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize('rl', [
    dict(advantage='gdpo'),
    dict(kl_placement='reward', kl_estimator='k1'),
    dict(beta_schedule='linear', beta_final=0.0, beta_schedule_steps=2, kl_group_factor='akf_mean_reward'),
], ids=str)
def test_loop_feeds_the_loss_options_that_need_rollout_data(rl, tmp_path):
  config = _small_config(steps=2)
  config.train.eval_every = 0
  config.rl.update(rl)
  rows = [r for r in train.run(config, str(tmp_path)) if 'reward_mean' in r]
  assert [r['step'] for r in rows] == [1, 2]
  assert all(np.isfinite(r['loss']) and np.isfinite(r['grad_norm']) for r in rows)


@pytest.mark.slow
def test_truncated_completions_are_masked_out_of_the_loss(tmp_path):
  config = _small_config(steps=1)
  config.train.eval_every = 0
  config.rollout.max_new_tokens = 3  # shorter than any well-formed answer: every completion is truncated
  config.rl.beta = 0.0
  config.rl.mask_truncated_completions = True
  row = [r for r in train.run(config, str(tmp_path)) if 'reward_mean' in r][0]
  assert row['truncated_rate'] == 1.0
  assert row['loss'] == 0.0 and row['grad_norm'] == 0.0


def test_model_layout_options_reach_the_model(tmp_path):
  """model.scan_layers / model.remat are not accepted and ignored: the trainer's model carries them."""
  config = _small_config()
  config.model.scan_layers, config.model.remat = True, 'minimal'
  cfg = run_config.from_config_dict(config)
  trainer = train.Trainer(cfg, run_config.plain(config), str(tmp_path))
  assert trainer.model_cfg.scan_layers and trainer.model_cfg.remat == 'minimal'
  down_proj = trainer.state['params']['decoder']['layers']['mlp']['down_proj']['kernel']
  assert down_proj.shape[0] == trainer.model_cfg.text.num_hidden_layers  # stacked [L, F, D]


@pytest.mark.slow
def test_threshold_curriculum_advances_and_resumes_exactly(tmp_path):
  """SATURN-style levels switch the task config mid-run; the curriculum state is in the checkpoint."""
  def config(steps):
    c = _small_config(steps=steps)
    c.train.eval_every = 0
    c.train.checkpoint_every = 2
    # threshold 0: advance after every observed step, so levels change at steps 1 and 2.
    c.curriculum = {'name': 'threshold', 'levels': ({'cols': 1}, {'cols': 2}, {'rows': 1, 'cols': 2}),
                    'threshold': 0.0, 'metric': 'reward_mean'}
    return c
  straight = [r for r in train.run(config(4), str(tmp_path / 'straight')) if 'reward_mean' in r]
  assert [r['curriculum/level'] for r in straight] == [0, 1, 2, 2]
  train.run(config(2), str(tmp_path / 'resumed'))
  resumed = [r for r in train.run(config(4), str(tmp_path / 'resumed')) if 'reward_mean' in r]
  assert _comparable(resumed) == _comparable(straight)


class _Recording:
  """Wraps a callable attribute of the trainer (keeping its other attributes) and reports each call."""

  def __init__(self, inner, on_call):
    self._inner, self._on_call = inner, on_call

  def __call__(self, *args, **kwargs):
    out = self._inner(*args, **kwargs)
    self._on_call(args, out)
    return out

  def __getattr__(self, name):
    return getattr(self._inner, name)


def _run_recording_steps(trainer, sampled_fields=()):
  """Runs the trainer; per RL step records the sampler output's `sampled_fields`, the scored texts and
  metas, the task's total ('raw'), the trained reward and the advantages. Returns (steps, RL rows)."""
  batch_size = trainer.cfg.rollout.batch_size
  steps = []

  def sampled(args, out):
    if args[-1] is trainer.sampling:  # not the greedy evaluation
      steps.append({k: np.asarray(jax.device_get(getattr(out, k))) for k in sampled_fields})

  def scored(args, scores):
    if len(args[0]) == batch_size:
      steps[-1].update(texts=list(args[0]), metas=list(args[1]), raw=np.nan_to_num(scores['total'], nan=0.0))

  def advantaged(args, advantages):
    steps[-1].update(trained=np.asarray(jax.device_get(args[1]), np.float64),
                     advantages=np.asarray(jax.device_get(advantages), np.float64))

  trainer.sampler = _Recording(trainer.sampler, sampled)
  trainer.score = _Recording(trainer.score, scored)
  trainer._advantages = _Recording(trainer._advantages, advantaged)
  return steps, [r for r in trainer.run() if 'reward_mean' in r]


def test_dapo_overlong_shaping_is_what_the_advantages_see(tmp_path):
  """Trained reward = task total + DAPO's penalty of each completion's token length, exactly; the
  advantages are computed from it; the logged task metrics stay the task's."""
  config = _small_config(steps=2)
  config.train.eval_every = 0
  # L_max = rollout.max_new_tokens = 12, L_c = 6: free up to 6 tokens, so even the 8-token 2x1 answers pay.
  config.shaping = {'dapo_overlong': {'cache_length': 6}}
  cfg = run_config.from_config_dict(config)
  steps, rows = _run_recording_steps(train.Trainer(cfg, run_config.plain(config), str(tmp_path)), ('lengths',))
  assert len(steps) == len(rows) == 2
  for step, row in zip(steps, rows):
    lengths = step['lengths'].astype(np.float64)
    # DAPO: 0 up to L_max - L_c = 6 tokens, (6 - |y|) / 6 up to 12, -1 beyond.
    penalty = np.where(lengths <= 6, 0.0, np.where(lengths > 12, -1.0, (6 - lengths) / 6))
    assert (penalty < 0).any()  # the comparison below is not vacuous
    np.testing.assert_allclose(step['trained'], step['raw'] + penalty, rtol=1e-6, atol=1e-6)
    grouped = step['trained'].reshape(-1, cfg.rollout.num_generations)
    expected = (grouped - grouped.mean(1, keepdims=True)) / (grouped.std(1, ddof=1, keepdims=True) + 1e-4)
    np.testing.assert_allclose(step['advantages'], expected.reshape(-1), rtol=1e-4, atol=1e-4)
    assert row['reward_mean'] == pytest.approx(step['raw'].mean())
    assert row['reward_shaped_mean'] == pytest.approx(step['trained'].mean(), abs=1e-6)
    assert row['shaping/dapo_overlong/term_mean'] == pytest.approx(penalty.mean())
    assert row['shaping/dapo_overlong/penalized_frac'] == pytest.approx(np.mean(penalty < 0))


def test_pear_shaping_reads_the_sampler_entropies(tmp_path):
  """PEAR in the loop: the sampler computes per-token entropies (only because the scheme needs them),
  the rollout carries them, and the trained reward is the task total minus lambda_think times each
  completion's mean thinking entropy, exactly as the scheme computes it from those entropies."""
  config = _small_config(steps=2)
  config.train.eval_every = 0
  config.shaping = {'pear': {'lambda_think': 0.5}}
  cfg = run_config.from_config_dict(config)
  trainer = train.Trainer(cfg, run_config.plain(config), str(tmp_path))
  assert trainer.sampling.return_entropy and not trainer.greedy.return_entropy
  steps, rows = _run_recording_steps(trainer, ('tokens', 'lengths', 'entropy'))
  assert len(steps) == len(rows) == 2
  for step, row in zip(steps, rows):
    entropy, lengths = step['entropy'], step['lengths']
    live = np.arange(entropy.shape[1])[None] < lengths[:, None]
    assert (entropy[live] > 0).all() and (entropy[~live] == 0).all()
    x = rewards.shapers.StepInputs(total=step['raw'], scores={}, lengths=lengths, tokens=step['tokens'],
                                   logprobs=np.zeros_like(entropy), num_generations=4, step=0,
                                   token_text=trainer._token_text, entropies=entropy)
    think, answer = rewards.shapers.phase_masks(x, '</think>')
    assert think.sum() > 0
    mean_think = (entropy * think).sum(1) / np.maximum(think.sum(1), 1)
    np.testing.assert_allclose(step['trained'], step['raw'] - 0.5 * mean_think, rtol=1e-6, atol=1e-6)
    assert row['shaping/pear/term_mean'] == pytest.approx(-0.5 * mean_think.mean(), abs=1e-6)


def test_co_reward_trains_on_agreement_across_each_question_and_its_rephrasing(tmp_path):
  """Co-Reward in the loop, label-free (math_equiv at weight 0): each step samples P/2 questions, each
  followed by its rephrasing, and the trained reward of a completion is 1 iff its answer is the
  majority answer of the other group of its pair. The completions' texts are replaced by boxed
  digits read off their first token, so that answers exist and disagree from step 0."""
  config = llm_grpo.get_config()
  config.warmup.steps, config.warmup.batch_size = 2, 8
  config.rollout.batch_size, config.rollout.num_generations, config.rollout.max_new_tokens = 16, 4, 8
  config.rollout.prompt_buckets = (128,)
  config.train.steps, config.train.eval_every, config.train.eval_size = 2, 0, 8
  config.reward.weights = {'math_equiv': 0.0}
  config.shaping = {'co_reward': {}}
  cfg = run_config.from_config_dict(config)
  trainer = train.Trainer(cfg, run_config.plain(config), str(tmp_path))
  trainer.decode = lambda tokens, lengths: [rf'\boxed{{{int(t[0]) % 3}}}' for t in tokens]
  steps, rows = _run_recording_steps(trainer)
  assert len(steps) == len(rows) == 2
  for step, row in zip(steps, rows):
    np.testing.assert_array_equal(step['raw'], 0.0)  # label-free: the task's correctness is weighted 0
    pairs = np.array(step['metas'], dtype=object).reshape(2, 2, 4)  # [pair, question | rephrasing, G]
    assert not any(m.get('rephrased') for m in pairs[:, 0].reshape(-1))
    assert all(m['rephrased'] for m in pairs[:, 1].reshape(-1))
    assert all(len({m['answer'] for m in pair.reshape(-1)}) == 1 for pair in pairs)  # one question per pair
    answers = np.array([t[7] for t in step['texts']]).reshape(2, 2, 4)
    expected = np.zeros((2, 2, 4))
    for p in range(2):
      for side in range(2):
        other = list(answers[p, 1 - side])
        vote = max(other, key=lambda a: (other.count(a), -other.index(a)))  # ties: the first seen
        expected[p, side] = answers[p, side] == vote
    assert 0 < expected.mean() < 1  # not vacuous
    np.testing.assert_array_equal(step['trained'], expected.reshape(-1))
    assert row['shaping/co_reward/agreement_mean'] == pytest.approx(expected.mean())
    assert row['shaping/co_reward/answered_frac'] == 1.0


def test_listener_shaping_adds_the_frozen_listeners_probability(tmp_path):
  """Listener-rewarded thinking in the loop: with beta = 0 the reference is still kept (the listener's
  parameters, frozen at the post-warm-up policy) but no reference log-probs are computed; the trained
  reward is the task total plus weight x p_listener."""
  config = sophiavl_r1.get_config('tiny')
  config.warmup.steps, config.warmup.batch_size = 2, 8
  config.rollout.batch_size, config.rollout.num_generations, config.rollout.max_new_tokens = 16, 4, 16
  config.train.steps, config.train.eval_every, config.train.eval_size = 2, 0, 8
  config.rl.beta = 0.0
  config.shaping = {'listener': {'weight': 0.5}}
  cfg = run_config.from_config_dict(config)
  trainer = train.Trainer(cfg, run_config.plain(config), str(tmp_path))
  listened, logprob_calls = [], []
  probabilities = trainer.listener.probabilities
  trainer.listener.probabilities = lambda params, *args: listened.append(
      (probabilities(params, *args), params is trainer.state['ref_params'])) or listened[-1][0]
  trainer.learner.logprobs = lambda params, batch: logprob_calls.append(params)  # must not be called
  steps, rows = _run_recording_steps(trainer)
  assert len(steps) == len(rows) == len(listened) == 2 and not logprob_calls  # beta 0, one update: no extra pass
  for step, (p, frozen), row in zip(steps, listened, rows):
    assert frozen and np.isfinite(p).all() and (0 < p).all() and (p < 1).all()  # single-answer questions
    np.testing.assert_allclose(step['trained'], step['raw'] + 0.5 * p, rtol=1e-6, atol=1e-6)
    assert row['shaping/listener/p_mean'] == pytest.approx(p.mean())


def test_trust_grpo_judge_scores_the_rows_it_uses_and_feeds_the_term(tmp_path):
  """SophiaVL-R1 in the loop: a thinking reward model of its own checkpoint (with its tokenizer saved
  beside it) is asked about exactly the rows Trust-GRPO uses, and the trained reward is the outcome
  plus the Trust-GRPO term of its scores. The outcome is set from the texts so that groups are mixed,
  and the judge's scores are spread by the row index (a random judge answers alike), after its real run."""
  config = sophiavl_r1.get_config('tiny')
  config.warmup.steps, config.warmup.batch_size = 0, 8
  config.rollout.batch_size, config.rollout.num_generations, config.rollout.max_new_tokens = 16, 4, 16
  config.train.steps, config.train.eval_every, config.train.eval_size = 2, 0, 8
  probe = train.Trainer(run_config.from_config_dict(config), run_config.plain(config), str(tmp_path / 'probe'))
  models.save_pretrained(models.create(probe.model_cfg, seed=11), str(tmp_path / 'judge'))
  probe.tokenizer.save_pretrained(str(tmp_path / 'judge'))
  config.shaping = {'trust_grpo': {'judge': str(tmp_path / 'judge'), 'anneal_steps': 10.0}}
  trainer = train.Trainer(run_config.from_config_dict(config), run_config.plain(config), str(tmp_path / 'run'))
  assert trainer.judge.tokenizer is not trainer.tokenizer
  assert trainer.memory.parts['judge'] == trainer.memory.parts['params']
  # 16 rows of 571 template + 160 prompt + 16 completion tokens: the template's 517-token head shared (512 of
  # them, the prefix step), the other 235 in the 256 bucket; + 16 answer slots, float32
  text = probe.model_cfg.text
  cache = 2 * text.num_hidden_layers * 16 * (512 + 256 + 16) * text.num_key_value_heads * text.dim_per_head * 4
  assert trainer.memory.parts['judge_kv_cache'] == (cache, cache // len(trainer.mesh.devices.flat))
  score = trainer.score
  trainer.score = lambda texts, metas, *args: dict(score(texts, metas, *args), total=np.array(
      [float(len(t) % 2) for t in texts])) if len(texts) == 16 else score(texts, metas, *args)
  asked = []
  judge_scores = trainer.judge.scores

  def spread(examples, texts, rows):
    real = judge_scores(examples, texts, rows)
    asked.append((rows, len(trainer.judge.last_answers)))
    return np.where(np.isnan(real), np.nan, (np.arange(len(rows)) + 1) / len(rows))

  trainer.judge.scores = spread
  steps, rows = _run_recording_steps(trainer)
  assert len(steps) == len(rows) == len(asked) == 2
  for step_index, (step, (judged, answered), row) in enumerate(zip(steps, asked, rows)):
    np.testing.assert_array_equal(judged, rewards.shaping.thinking_rows(step['raw'], 4))
    assert 0 < judged.sum() == answered < 16  # some rows asked, some not
    thinking = np.where(judged, (np.arange(16) + 1) / 16, 0.0)
    expected, _ = rewards.shaping.trust_grpo(step['raw'], thinking, 4, step_index, anneal_steps=10.0)
    np.testing.assert_allclose(step['trained'], expected, rtol=1e-6, atol=1e-6)
    assert (step['trained'] != step['raw']).any()
    assert row['shaping/trust_grpo/judged_frac'] == pytest.approx(judged.mean())
  text_only = models.get_preset('tiny_lm')
  models.save_pretrained(models.create(text_only, seed=0), str(tmp_path / 'text_judge'))
  config.shaping = {'trust_grpo': {'judge': str(tmp_path / 'text_judge')}}
  with pytest.raises(ValueError, match=r"trust_grpo.judge .*text_judge: the task's prompts hold images, but the "
                                       'judge has no vision tower'):
    train.Trainer(run_config.from_config_dict(config), run_config.plain(config), str(tmp_path / 'refused'))
  config.shaping = {'trust_grpo': {'judge': str(tmp_path / 'missing')}}
  with pytest.raises(ValueError, match=r'trust_grpo.judge .*missing: no config.json'):
    train.Trainer(run_config.from_config_dict(config), run_config.plain(config), str(tmp_path / 'refused'))


def test_listener_from_its_own_checkpoint_is_loaded_frozen_and_checked(tmp_path):
  """shaping.listener.path: another checkpoint with the policy's tokenizer is the listener (no reference
  kept at beta = 0); one whose vocabulary differs is refused at start-up, naming the field."""
  config = sophiavl_r1.get_config('tiny')
  config.warmup.steps, config.warmup.batch_size = 0, 8
  config.rollout.batch_size, config.rollout.num_generations, config.rollout.max_new_tokens = 16, 4, 16
  config.train.steps, config.train.eval_every, config.train.eval_size = 1, 0, 8
  config.rl.beta = 0.0
  policy_cfg = train.Trainer(run_config.from_config_dict(config), run_config.plain(config),
                             str(tmp_path / 'probe')).model_cfg
  models.save_pretrained(models.create(policy_cfg, seed=11), str(tmp_path / 'listener'))
  config.shaping = {'listener': {'weight': 0.5, 'path': str(tmp_path / 'listener')}}
  trainer = train.Trainer(run_config.from_config_dict(config), run_config.plain(config), str(tmp_path / 'run'))
  assert trainer.state['ref_params'] is None
  parts = trainer.memory.parts  # the listener (the policy's architecture here) counted, no reference
  assert parts['listener'] == parts['params'] and 'reference' not in parts
  expected = nnx.state(models.create(policy_cfg, seed=11))
  for a, b in zip(jax.tree.leaves(trainer.listener_params), jax.tree.leaves(expected)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  used = []
  probabilities = trainer.listener.probabilities
  trainer.listener.probabilities = lambda params, *args: used.append(params) or probabilities(params, *args)
  rows = [r for r in trainer.run() if 'reward_mean' in r]
  assert len(rows) == 1 and len(used) == 1 and used[0] is trainer.listener_params
  assert 0 < rows[0]['shaping/listener/p_mean'] < 1
  other = policy_cfg.replace(text=dataclasses.replace(policy_cfg.text, vocab_size=128))
  models.save_pretrained(models.create(other, seed=0), str(tmp_path / 'other_vocab'))
  config.shaping = {'listener': {'weight': 0.5, 'path': str(tmp_path / 'other_vocab')}}
  with pytest.raises(ValueError, match=r'shaping.listener.path .*other_vocab: its text.vocab_size 128 differs'):
    train.Trainer(run_config.from_config_dict(config), run_config.plain(config), str(tmp_path / 'refused'))
  config.shaping = {'listener': {'weight': 0.5, 'path': str(tmp_path / 'missing')}}
  with pytest.raises(ValueError, match=r'shaping.listener: path .*missing.*: no config.json'):
    run_config.from_config_dict(config)


@pytest.mark.slow
def test_laser_d_shaping_targets_are_checkpointed_and_resume_exactly(tmp_path):
  """The LASER-D target lengths evolve with the run; they are in the checkpoint, so a resumed run matches."""
  def config(steps):
    c = _small_config(steps=steps)
    c.train.eval_every = 0
    c.train.checkpoint_every = 2
    # correct_at 0: every completion counts as correct, so the targets follow the lengths (at most 12
    # tokens) down from upper_bound 24; updated after every step.
    c.shaping = {'laser_d': {'correct': 'jigsaw_grid', 'correct_at': 0.0, 'lower_bound': 4, 'upper_bound': 24,
                             'interval': 4, 'update_every': 1}}
    return c
  straight = [r for r in train.run(config(4), str(tmp_path / 'straight')) if 'reward_mean' in r]
  easy = [r['shaping/laser_d/target/easy'] for r in straight]
  assert easy[0] == 24 and max(easy[1:]) <= 12, easy  # the targets moved before the resume point
  train.run(config(2), str(tmp_path / 'resumed'))
  resumed = [r for r in train.run(config(4), str(tmp_path / 'resumed')) if 'reward_mean' in r]
  assert _comparable(resumed) == _comparable(straight)


RULE_DOMAINS = ('prontoqa', 'ordering')


def _domain_weighted_config(steps):
  """The rulereasoner recipe on two domains whose chance accuracies differ after the format warm-up (True /
  False vs one name of twelve), the weights recomputed after every step from that step alone (target 1)."""
  c = rulereasoner.get_config('tiny')
  c.task.domains, c.task.depth, c.task.num_distractors = RULE_DOMAINS, 1, 0  # prompts <= 128 tokens, answers <= 10
  c.warmup.steps, c.warmup.batch_size = 20, 16
  c.rollout.batch_size, c.rollout.num_generations, c.rollout.max_new_tokens = 16, 4, 10
  c.rollout.prompt_buckets = (128,)
  c.train.steps, c.train.eval_every, c.train.eval_size, c.train.sample_every = steps, 0, 8, 0
  c.train.checkpoint_every = 2
  c.curriculum.domains, c.curriculum.update_every = RULE_DOMAINS, 1
  c.curriculum.buffer_size, c.curriculum.clear_buffer = 1, True
  return c


@pytest.mark.slow
def test_domain_weighted_sampling_follows_the_lagging_domain_and_resumes_exactly(tmp_path):
  from rl_reason.curricula import domain_weighted  # pylint: disable=g-import-not-at-top
  cfg = run_config.from_config_dict(_domain_weighted_config(3))
  straight = [r for r in train.run(_domain_weighted_config(3), str(tmp_path / 'straight')) if 'reward_mean' in r]
  weights = np.array([[r[f'domain/{d}/weight'] for d in RULE_DOMAINS] for r in straight])
  np.testing.assert_allclose(weights[0], [0.5, 0.5])
  for previous, row, w in zip(straight, straight[1:], weights[1:]):
    # r_d: the domain's mean rule_acc in the step before (0 when it drew no prompt); v_d = max(0, 1 - r_d).
    accuracy = np.array([previous.get(f'domain/{d}/accuracy', 0.0) for d in RULE_DOMAINS])
    expected = domain_weighted.softmax_weights(np.maximum(0.0, 1.0 - accuracy), cfg.curriculum['epsilon'],
                                               cfg.curriculum['tau'])
    np.testing.assert_allclose(w, expected, rtol=1e-6, err_msg=f'step {row["step"]}')
  for row, w in zip(straight, weights):  # the step's prompts were drawn with its weights
    prompts = [row.get(f'domain/{d}/prompts', 0.0) for d in RULE_DOMAINS]
    assert prompts == domain_weighted.quota_counts(w, cfg.rollout.prompts_per_step).tolist(), row['step']
  # Not vacuous: the accuracies differed, the weights moved toward the domain that lagged, and the draws followed.
  first = np.array([straight[0][f'domain/{d}/accuracy'] for d in RULE_DOMAINS])
  assert first[0] != first[1] and np.argmax(weights[1]) == np.argmin(first), (first, weights)
  assert any(row[f'domain/{d}/prompts'] != 2 for row in straight for d in RULE_DOMAINS if f'domain/{d}/prompts' in row)
  train.run(_domain_weighted_config(2), str(tmp_path / 'resumed'))
  resumed = [r for r in train.run(_domain_weighted_config(3), str(tmp_path / 'resumed')) if 'reward_mean' in r]
  assert _comparable(resumed) == _comparable(straight)


def test_domain_weighted_sampling_needs_a_task_that_draws_by_domain(tmp_path):
  config = _domain_weighted_config(1)
  config.curriculum.domains = ('prontoqa', 'tarot')
  with pytest.raises(ValueError, match="domain 'tarot' unknown"):
    train.Trainer(run_config.from_config_dict(config), run_config.plain(config), str(tmp_path / 'a'))
  config = _small_config(steps=1)  # jigsaw puzzles: no domains
  config.curriculum = {'name': 'domain_weighted', 'domains': ('a', 'b')}
  with pytest.raises(ValueError, match=r"task 'jigsaw' has no example_for"):
    train.Trainer(run_config.from_config_dict(config), run_config.plain(config), str(tmp_path / 'b'))
