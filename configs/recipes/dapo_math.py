"""DAPO on math ("DAPO: An Open-Source LLM Reinforcement Learning System at Scale"; verl recipe/dapo).

  python -m rl_reason.main --config=configs/recipes/dapo_math.py --workdir=runs/dapo_math_tiny
  python -m rl_reason.main --config=configs/recipes/dapo_math.py:qwen2_5_7b \\
      --config.model.path=/ckpt/Qwen2.5-7B

Args: tiny (default; CPU, the tiny_lm text model), qwen2_5_7b. The paper trains Qwen2.5-32B (base),
which has no preset: qwen2_5_7b is the largest Qwen2.5 preset; a 32B checkpoint loads with
--config.model.preset= --config.model.path=/ckpt/Qwen2.5-32B.
configs/recipes/dapo.py is the same objective on the jigsaw task.

Implemented (ALGORITHMS.md §1.14, [code: verl recipe]):
  loss        clip-higher eps_low 0.2 / eps_high 0.28; token-level loss sum_{i,t} / sum_{i,t} m
              (token-mean); no KL (beta 0); group-normalised advantage, std eps 1e-6 (verl)
  reward      math_equiv on the last \\boxed{} answer. DAPO's reward is +-1; math_equiv is 0/1 = (r + 1)/2,
              and the group-normalised advantage is invariant to that affine map (up to the std eps),
              so training is the same; logged rewards are on the 0/1 scale
  dynamic     groups whose accuracy is all 0 or all 1 are dropped and refilled: rounds of 3x the
  sampling    step's prompts, up to 10 rounds (c.dynamic_sampling, metric accuracy)
  overlong    the soft overlong penalty in tokens, added to the reward the advantages see
              (c.shaping dapo_overlong): L_max 20480 (= the response cap), L_cache 4096, factor 1
  real scale  512 prompts x 16 rollouts, lr 1e-6, temperature 1.0, L_max 20480 tokens, weight decay
              0.01 (verl default)
  mini-batch  16 updates per rollout (mini-batch 32 prompts; tiny: 8 one-prompt mini-batches)
Approximated:
  data        integer arithmetic (difficulty 3 for the real preset) instead of DAPO-Math-17k (whose
              answers are integers too, parsed from "Answer:" rather than \\boxed{})
  scale       steps not in ALGORITHMS.md: 500, placeholder
  lr schedule constant
Not available yet: nothing beyond the approximations above.
Tiny: difficulty 1, 8 prompts x G 16, 16-token completions, 200 RL steps after 100 warm-up steps;
overlong L_cache 3 (DAPO's 1/5 of the cap: free up to 13 tokens, the boxed answers take 8-10).
"""

import importlib.util
import os

_spec = importlib.util.spec_from_file_location('_recipes_common', os.path.join(os.path.dirname(__file__), '_common.py'))
_common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_common)

ARGS = ('tiny', 'qwen2_5_7b')


def get_config(arg=None):
  return _common.build(
      arg, ARGS, task='arithmetic', rewards={'math_equiv': 1.0},
      tiny_task=dict(difficulty=1, think=True),
      real_task=dict(difficulty=3, think=True),
      rl=dict(advantage='grpo', advantage_eps=1e-6, ratio_level='token', surrogate='ppo_clip', eps_low=0.2,
              eps_high=0.28, beta=0.0, aggregation='token_mean'),
      tiny_scale=dict(prompts=8, generations=16, max_new_tokens=16, prompt_buckets=(96,), steps=200,
                      warmup_steps=100),
      real_scale={'qwen2_5_7b': dict(prompts=512, generations=16, max_new_tokens=20480,
                                     prompt_buckets=(256, 512, 1024), steps=500, learning_rate=1e-6,
                                     temperature=1.0, weight_decay=0.01)},
      dynamic_sampling=dict(metric='accuracy', oversample=3, max_rounds=10), updates_per_rollout=16,
      # L_max = rollout.max_new_tokens; tiny: L_cache = 16 // 5, DAPO's 4096 / 20480 of the cap.
      shaping={'tiny': {'dapo_overlong': {'cache_length': 3}},
               'qwen2_5_7b': {'dapo_overlong': {'cache_length': 4096}}})
