"""SimpleRL-Zoo ("Investigating and Taming Zero Reinforcement Learning for Open Base Models in the Wild";
hkust-nlp/simpleRL-reason).

  python -m rl_reason.main --config=configs/recipes/simplerl_zoo.py --workdir=runs/simplerl_zoo_tiny
  python -m rl_reason.main --config=configs/recipes/simplerl_zoo.py:qwen2_5_7b \\
      --config.model.path=/ckpt/Qwen2.5-7B

Args: tiny (default; CPU, the tiny_lm text model), qwen2_5_0_5b, qwen2_5_1_5b, qwen2_5_7b, llama3_1_8b
(base models of the paper's zoo; the paper's Llama is Llama-3.1-8B).

Implemented (ALGORITHMS.md §1.10, [code]):
  task        integer arithmetic with the Qwen chat instruction "Please reason step by step, and put
              your final answer within \\boxed{}." (the stand-in for GSM8K / MATH)
  reward      "mix": math_equiv, 1 iff the last boxed answer equals the label; no format reward
              (the task's own reward)
  loss        verl GRPO: (r - mean_g) / (std_g + 1e-6), PPO clip 0.2, KL loss beta 1e-4 (k3; models
              up to 14B), entropy bonus 1e-3, token-mean (verl default)
  real scale  1024 prompts x 8 rollouts, lr 5e-7, temperature 1.0, 8192-token responses, weight
              decay 0.01 (verl default)
Mini-batches: the rollout batch is updated in 4 PPO mini-batches (of 256 prompts at the real
scale; tiny: 4 mini-batches of 2 prompts).
Approximated:
  difficulty  the static data buckets (Easy: GSM8K + MATH level 1; Medium: MATH 1-4; Hard: MATH 3-5),
              chosen to match the base model, are arithmetic difficulties 1 / 2 / 3; the assignment
              (0.5B and Llama: Easy, 1.5B: Medium, 7B: Hard) is an assumption
  scale       steps not in ALGORITHMS.md: 100, placeholder
  lr schedule constant
Not available yet:
  prompt      the "simple" prompt style for weak instruction followers (the task has one template)
Tiny: difficulty 1 (two one-digit operands), 8 prompts x G 8, 16-token completions, 200 RL steps
after 100 warm-up steps.
"""

import importlib.util
import os

_spec = importlib.util.spec_from_file_location('_recipes_common', os.path.join(os.path.dirname(__file__), '_common.py'))
_common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_common)

ARGS = ('tiny', 'qwen2_5_0_5b', 'qwen2_5_1_5b', 'qwen2_5_7b', 'llama3_1_8b')
_REAL = dict(prompts=1024, generations=8, max_new_tokens=8192, prompt_buckets=(256, 512, 1024), steps=100,
             learning_rate=5e-7, temperature=1.0, weight_decay=0.01)


def get_config(arg=None):
  return _common.build(
      arg, ARGS, task='arithmetic', rewards={},
      tiny_task=dict(difficulty=1, think=True),
      real_task=dict(think=True),
      real_task_per_preset={'qwen2_5_0_5b': dict(difficulty=1), 'llama3_1_8b': dict(difficulty=1),
                            'qwen2_5_1_5b': dict(difficulty=2), 'qwen2_5_7b': dict(difficulty=3)},
      rl=dict(advantage='grpo', advantage_eps=1e-6, ratio_level='token', surrogate='ppo_clip', eps_low=0.2,
              eps_high=0.2, beta=1e-4, kl_estimator='k3', kl_placement='loss', aggregation='token_mean',
              entropy_coef=1e-3),
      tiny_scale=dict(prompts=8, generations=8, max_new_tokens=16, prompt_buckets=(96,), steps=200,
                      warmup_steps=100),
      real_scale={preset: _REAL for preset in ARGS[1:]}, updates_per_rollout=4)
