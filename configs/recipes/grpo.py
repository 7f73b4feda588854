"""GRPO as published (DeepSeekMath; the TRL-0.14-era VLM repos R1-V, VLM-R1, Jigsaw-R1) on the tiny preset.

  python -m rl_reason.main --config=configs/recipes/grpo.py --workdir=runs/grpo_tiny
  python -m rl_reason.main --config=configs/recipes/grpo.py:tiny_2x1 --workdir=runs/grpo_2x1

Published hyper-parameters (ALGORITHMS.md §0, PEERS_PYTORCH.md §2.6):
  advantage   (r - mean_g) / (std_g + 1e-4), unbiased group std
  surrogate   PPO clip, eps_low = eps_high = 0.2, token-level ratio
  KL          beta = 0.04, k3 estimator, in the loss
  aggregation seq-mean-token-mean: (1/N) sum_i (1/|o_i|) sum_t
  rollout     G = 8, temperature 1.0, mu = 1; lr 1e-6 (Qwen2.5-VL-3B/7B), 512-token completions
This file sets the loss and advantage switches. Model-scale settings (lr, batch, G, lengths, steps)
stay at the preset's values: the tiny model trains from scratch and needs its own.
"""

import importlib.util
import os

from ml_collections import config_dict


_spec = importlib.util.spec_from_file_location('_recipes_common', os.path.join(os.path.dirname(__file__), '_common.py'))
_common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_common)


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
  c = _common.vlm_grpo(arg)
  c.rl.advantage = 'grpo'
  c.rl.advantage_eps = 1e-4
  c.rl.ratio_level = 'token'
  c.rl.surrogate = 'ppo_clip'
  c.rl.eps_low = 0.2
  c.rl.eps_high = 0.2
  c.rl.beta = 0.04
  c.rl.kl_estimator = 'k3'
  c.rl.kl_placement = 'loss'
  c.rl.aggregation = 'seq_mean_token_mean'
  return c
