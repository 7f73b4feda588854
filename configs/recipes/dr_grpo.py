"""Dr. GRPO (Liu et al. 2025, "Understanding R1-Zero-like training"; TRL `loss_type='dr_grpo'`) on the tiny preset.

  python -m rl_reason.main --config=configs/recipes/dr_grpo.py --workdir=runs/dr_grpo_tiny

Published hyper-parameters (ALGORITHMS.md §1.14, PEERS_PYTORCH.md §2.1, §2.4):
  advantage   r - mean_g (no std division: no difficulty bias)
  surrogate   PPO clip, eps = 0.2
  KL          none (beta = 0)
  aggregation sum over sequences and tokens / (N * L) with the constant L = the maximum generation
              length (no 1/|o_i|: no length bias). Here rl.aggregation_constant = 0 takes L from the
              padded completion axis, i.e. rollout.max_new_tokens, so it follows overrides of it.
  rollout     8 samples per prompt, lr 1e-6 (Qwen2.5-Math-1.5B/7B), temperature 1.0
Model-scale settings stay at the preset's values.
"""

import importlib.util
import os

from ml_collections import config_dict


_spec = importlib.util.spec_from_file_location('_recipes_common', os.path.join(os.path.dirname(__file__), '_common.py'))
_common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_common)


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
  c = _common.vlm_grpo(arg)
  c.rl.advantage = 'drgrpo'
  c.rl.ratio_level = 'token'
  c.rl.surrogate = 'ppo_clip'
  c.rl.eps_low = 0.2
  c.rl.eps_high = 0.2
  c.rl.beta = 0.0
  c.rl.aggregation = 'seq_mean_token_sum_norm'
  c.rl.aggregation_constant = 0.0  # L = rollout.max_new_tokens (the padded completion length)
  return c
