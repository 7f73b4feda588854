"""TW-GRPO ("Reinforcing Video Reasoning with Focused Thinking"; longmalongma/TW-GRPO).

  python -m rl_reason.main --config=configs/recipes/tw_grpo.py --workdir=runs/tw_grpo_tiny
  python -m rl_reason.main --config=configs/recipes/tw_grpo.py:qwen2_5_vl_7b \\
      --config.model.path=/ckpt/Qwen2.5-VL-7B-Instruct

Args: tiny (default; CPU), qwen2_5_vl_7b (the paper's model).

Implemented (ALGORITHMS.md §1.7, [code]):
  task        visual multiple choice with question-answer inversion: with probability 0.5 the question
              is negated and the answer is the complement option set (a random number of the formerly
              wrong options kept, as in the code)
  reward      set_subset_soft (|pred|/|gt| if pred is a subset of gt, 1 if equal, else 0) +
              tw_grpo_format (anchored think/answer, only whitespace or '!' after, no repeated tags),
              weights 1 + 1 (the task's own rewards)
  weights     rl.token_weighting='tw_grpo': per-position weights from the intra-group KL divergence
              of the full-vocabulary distributions, alpha 1.7 (the training script; default 1.4)
  loss        GRPO advantages, PPO clip 0.2, beta 0, token-mean aggregation
  real scale  G 8, lr 1e-6, 4096-token completions
Approximated:
  stop-grad   the weights are detached (rl.tw_stop_gradient=True); the TW-GRPO code does not detach
              them (ALGORITHMS.md §5 asks for the flag, default on)
  data        procedural shape questions on images instead of CLEVRER counterfactual videos
  scale       not in ALGORITHMS.md, placeholders: 16 prompts per step, temperature 1.0, 500 steps
  lr schedule constant
Not available yet: nothing else the recipe needs (video input is out of scope).
Tiny: 48x48 scenes, 8 prompts x G 8, 16-token completions, 200 RL steps after 100 warm-up steps.
"""

import importlib.util
import os

_spec = importlib.util.spec_from_file_location('_recipes_common', os.path.join(os.path.dirname(__file__), '_common.py'))
_common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_common)

ARGS = ('tiny', 'qwen2_5_vl_7b')


def get_config(arg=None):
  return _common.build(
      arg, ARGS, task='multichoice', rewards={},
      tiny_task=dict(inversion_prob=0.5, random_drop=True, think=True),
      real_task=dict(inversion_prob=0.5, random_drop=True, think=True, image_size=(336, 336),
                     object_size=(56, 112)),
      rl=dict(advantage='grpo', advantage_eps=1e-4, ratio_level='token', surrogate='ppo_clip', eps_low=0.2,
              eps_high=0.2, beta=0.0, aggregation='token_mean', token_weighting='tw_grpo', tw_alpha=1.7,
              tw_stop_gradient=True),
      tiny_scale=dict(prompts=8, generations=8, max_new_tokens=16, prompt_buckets=(192,), steps=200,
                      warmup_steps=100),
      real_scale={'qwen2_5_vl_7b': dict(prompts=16, generations=8, max_new_tokens=4096, prompt_buckets=(512, 1024),
                                        steps=500, learning_rate=1e-6, temperature=1.0)})
