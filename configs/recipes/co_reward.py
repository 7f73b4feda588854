"""Co-Reward ("Co-Reward: Self-supervised Reinforcement Learning for Large Language Model Reasoning via
Contrastive Agreement"; tmlr-group/Co-Reward, its math_co_reward.sh on verl).

  python -m rl_reason.main --config=configs/recipes/co_reward.py --workdir=runs/co_reward_tiny
  python -m rl_reason.main --config=configs/recipes/co_reward.py:qwen3_4b --config.model.path=/ckpt/Qwen3-4B-Base

Args: tiny (default; CPU, the tiny_lm text model), qwen2_5_3b, qwen2_5_7b, qwen3_1_7b, qwen3_4b, qwen3_8b
(the paper's base models; its Llama-3.2-3B-Instruct has no preset and loads with
--config.model.preset= --config.model.path=/ckpt/Llama-3.2-3B-Instruct).

Implemented (ALGORITHMS.md §1.15, [README + paper], the script's settings):
  pairs       every question x is followed by its rephrasing x' (the task's meta 'paraphrase'); a step
              samples G completions of each (rewards.shapers 'co_reward'; the step's prompts count both,
              so 256 prompts = the script's train_batch_size 128 questions and their rephrasings)
  reward      label-free: r(o_i) = 1 iff ans(o_i) is the majority answer of the rephrased group, and
              symmetrically for x' (answers: the last \\boxed{}, normalised, numbers by value). The
              task's math_equiv is scored at weight 0: `accuracy` / `solve_rate` log the true accuracy,
              the advantages never see it
  loss        verl GRPO per group (x and x' normalised separately, as its co_reward estimator), std eps
              1e-6, PPO clip 0.2, KL loss 0.005 (low_var_kl = k3), no entropy bonus, token-mean
  real scale  128 questions (+128 rephrasings) x 8 rollouts, lr 3e-6 with a cosine schedule after a 10%
              linear warm-up, 3072-token responses, temperature 1.0 (verl default), weight decay 0.01
              (verl default)
Approximated:
  data        integer arithmetic with a templated rephrasing instead of MATH and its Qwen3-32B rewrites
  scale       175 steps: the script's 3 epochs of MATH's 7,500 training questions at 128 per step
  mini-batch  one update per rollout on both halves (the script: mini-batch 128 = its question batch)
Not available yet: rephrasing by a model (the task's templated paraphrase stands in; a JSONL source
  can carry users' rewrites in meta 'paraphrase').
Tiny: difficulty 1, 4 questions + 4 rephrasings x G 8, 16-token completions, lr 1e-4, 100 RL steps
after 1000 warm-up steps on the CORRECT answers (warmup.answers = 'correct'): a label-free reward
needs a policy that is already right more often than not (the paper starts from pretrained models);
after the format-only warm-up of the other tiny recipes (accuracy ~0.03) the run collapses onto one
answer for every question (README, recipes table).
"""

import importlib.util
import os

_spec = importlib.util.spec_from_file_location('_recipes_common', os.path.join(os.path.dirname(__file__), '_common.py'))
_common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_common)

ARGS = ('tiny', 'qwen2_5_3b', 'qwen2_5_7b', 'qwen3_1_7b', 'qwen3_4b', 'qwen3_8b')
_STEPS = 175
_REAL = dict(prompts=256, generations=8, max_new_tokens=3072, prompt_buckets=(256, 512), steps=_STEPS,
             learning_rate=3e-6, temperature=1.0, weight_decay=0.01)


def get_config(arg=None):
  c = _common.build(
      arg, ARGS, task='arithmetic', rewards={'math_equiv': 0.0},
      tiny_task=dict(difficulty=1, think=True),
      real_task=dict(difficulty=3, think=True),
      rl=dict(advantage='grpo', advantage_eps=1e-6, ratio_level='token', surrogate='ppo_clip', eps_low=0.2,
              eps_high=0.2, beta=0.005, kl_estimator='k3', kl_placement='loss', aggregation='token_mean',
              entropy_coef=0.0),
      tiny_scale=dict(prompts=8, generations=8, max_new_tokens=16, prompt_buckets=(96,), steps=100,
                      warmup_steps=1000, learning_rate=1e-4),
      real_scale={preset: _REAL for preset in ARGS[1:]},
      shaping={arg: {'co_reward': {}} for arg in ARGS})
  if c.model.preset == 'tiny_lm':  # a competent start: the warm-up trains on the task's answers
    c.warmup.answers = 'correct'
  else:  # the script's cosine schedule after a 10% warm-up, to 0
    _common.set_fields(c.optim, schedule='cosine', warmup_steps=_STEPS // 10, end_lr_factor=0.0)
  return c
