"""SATURN ("SAT-based Reinforcement Learning to Unleash Language Model Reasoning"; gtxygyzb/Saturn-code).

  python -m rl_reason.main --config=configs/recipes/saturn.py --workdir=runs/saturn_tiny
  python -m rl_reason.main --config=configs/recipes/saturn.py:qwen2_5_1_5b \\
      --config.model.preset= --config.model.path=/ckpt/DeepSeek-R1-Distill-Qwen-1.5B

Args: tiny (default; CPU, the tiny_lm text model), qwen2_5_1_5b (the paper's DeepSeek-R1-Distill-Qwen-
1.5B is a Qwen2.5-1.5B-size model whose config.json need not match the preset key for key: clear
model.preset as above to skip the architecture check), qwen2_5_7b (DeepSeek-R1-Distill-Qwen-7B).

Implemented (ALGORITHMS.md §1.8, [code + paper]):
  task        planted-solution n-SAT (every instance satisfiable), SATURN's JSON prompt with its worked
              example, answer \\boxed{bits}; the first curriculum stage of each released run:
              (n, k, l) = (3, 5, 5) for 1.5B, (3, 5, 13) for 7B
  reward      sat_assignment: 1 if the last boxed string satisfies every clause, 0 if not, -1 without
              a boxed answer (the task's own reward)
  loss        group-normalised GRPO advantage, PPO clip 0.2, KL k3 with beta 1e-3 in the loss
  real scale  G 8; 1.5B: lr 5e-7, temperature 0.8, 10,000-token generations; 7B: lr 4e-7,
              temperature 1.0, 8192-token generations
  curriculum  a 'threshold' curriculum (rl_reason.curricula.presets.saturn) over the released stages:
              1.5B (3,5,5) -> (3,5,6), 7B (3,5,13) -> (3,5,15), advancing when the greedy evaluation
              clears the threshold (every train.eval_every steps)
Approximated:
  threshold   epsilon is unverified (ALGORITHMS.md §5): 0.8, placeholder
  pass@1      the metric is eval_accuracy, the mean sat_assignment reward of the greedy evaluation; it
              equals pass@1 when every answer is boxed (an unboxed answer scores -1, not 0)
  aggregation token-mean, std eps 1e-6 and weight decay 0.01: verl defaults, assumed for Saturn-code
  scale       not in ALGORITHMS.md, placeholders: 32 prompts per step, 500 steps
  lr schedule constant
Not available yet: the 10 harder test levels of Saturn-2.6k are an evaluation set, not part of training.
Tiny: the compact prompt (task.prompt_style: SATURN's JSON problem and the think instruction, ~100
tiny-tokenizer tokens instead of ~690: the 2-layer model pays for every prompt token and cannot read the
description), 16 prompts x G 8, temperature 0.8, lr 1e-4, 16-token completions, 300 RL steps after 60
warm-up steps of 16, greedy evaluation of 32 held-out instances every 25 steps. The curriculum starts one
level below the released ones, (2,3,3) -> (3,5,5) -> (3,5,6): at (3,5,5) the tiny model found no signal
(reward 0.52 -> 0.42 over 100 steps with the full prompt, 0.49 -> 0.50 with the compact one; supervised
training on planted answers did not move its bit loss either), while at (2,3,3) the reward rises (README).
"""

import importlib.util
import os

from rl_reason import curricula

_spec = importlib.util.spec_from_file_location('_recipes_common', os.path.join(os.path.dirname(__file__), '_common.py'))
_common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_common)

ARGS = ('tiny', 'qwen2_5_1_5b', 'qwen2_5_7b')


def _stages(*levels):
  return curricula.presets.saturn(levels=levels, threshold=0.8, metric='eval_accuracy')


def get_config(arg=None):
  return _common.build(
      arg, ARGS, task='sat', rewards={},
      tiny_task=dict(n_sat=2, k=3, l=3, think=True, prompt_style='compact'),
      real_task=dict(n_sat=3, k=5, think=True),
      real_task_per_preset={'qwen2_5_1_5b': dict(l=5), 'qwen2_5_7b': dict(l=13)},
      rl=dict(advantage='grpo', advantage_eps=1e-6, ratio_level='token', surrogate='ppo_clip', eps_low=0.2,
              eps_high=0.2, beta=1e-3, kl_estimator='k3', kl_placement='loss', aggregation='token_mean'),
      tiny_scale=dict(prompts=16, generations=8, max_new_tokens=16, prompt_buckets=(128,), steps=300,
                      warmup_steps=60, warmup_batch_size=16, temperature=0.8, eval_every=25, eval_size=32,
                      learning_rate=1e-4),
      real_scale={
          'qwen2_5_1_5b': dict(prompts=32, generations=8, max_new_tokens=10000, prompt_buckets=(512, 1024),
                               steps=500, learning_rate=5e-7, temperature=0.8, weight_decay=0.01),
          'qwen2_5_7b': dict(prompts=32, generations=8, max_new_tokens=8192, prompt_buckets=(512, 1024),
                             steps=500, learning_rate=4e-7, temperature=1.0, weight_decay=0.01),
      },
      curriculum={'tiny': _stages((2, 3, 3), (3, 5, 5), (3, 5, 6)), 'qwen2_5_1_5b': _stages((3, 5, 5), (3, 5, 6)),
                  'qwen2_5_7b': _stages((3, 5, 13), (3, 5, 15))})
