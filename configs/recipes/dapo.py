"""DAPO's objective (Yu et al. 2025; verl recipe) on the tiny preset.

  python -m rl_reason.main --config=configs/recipes/dapo.py --workdir=runs/dapo_tiny

Published hyper-parameters (ALGORITHMS.md §1.14, PEERS_PYTORCH.md §2.3-2.4):
  advantage   group-normalised (r - mean_g) / (std_g + eps), rewards +-1
  surrogate   PPO clip-higher: eps_low = 0.2, eps_high = 0.28
  KL          none (beta = 0: no reference model)
  aggregation token-mean over all tokens of the optimiser batch: sum_{i,t} / sum_{i,t} m
  rollout     512 prompts x 16 samples, mini-batch 32 (16 updates per rollout), lr 1e-6, temperature 1.0
Dynamic sampling as DAPO: groups whose completions all score the same are dropped and refilled
from rounds of 3x the step's prompts (up to 10 rounds); on the graded jigsaw reward the filter
reads the total reward (metric 'reward'), DAPO's binary accuracy being its special case.
Soft overlong punishment in tokens (c.shaping dapo_overlong), added to the reward the advantages
see: L_max = rollout.max_new_tokens (DAPO's 20480 is its response cap) and L_cache = L_max // 5 (DAPO's
4096 / 20480), from the preset's cap (an overridden cap keeps it: set
--config.shaping.dapo_overlong.cache_length too): on the tiny jigsaw 16 and 3, so the 12-token 2x2
answers are free.
16 updates per rollout (rl.mini_batch_size = batch / 16, whole groups: 8 on the tiny batch of
8 prompts). Model-scale settings
stay at the preset's values.
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
  c.rl.ratio_level = 'token'
  c.rl.surrogate = 'ppo_clip'
  c.rl.eps_low = 0.2
  c.rl.eps_high = 0.28
  c.rl.beta = 0.0
  c.rl.aggregation = 'token_mean'
  c.dynamic_sampling.metric = 'reward'
  c.dynamic_sampling.prompts_per_round = 3 * (c.rollout.batch_size // c.rollout.num_generations)
  c.shaping = config_dict.ConfigDict({'dapo_overlong': {'cache_length': c.rollout.max_new_tokens // 5}})
  _common.set_updates_per_rollout(c, 16)
  return c
