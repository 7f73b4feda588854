"""GSPO (Zheng et al. 2025, Group Sequence Policy Optimization; TRL `importance_sampling_level='sequence'`).

  python -m rl_reason.main --config=configs/recipes/gspo.py --workdir=runs/gspo_tiny

Published hyper-parameters (ALGORITHMS.md §1.14, PEERS_PYTORCH.md §2.2):
  ratio       sequence level: s_i = exp((1/|o_i|) sum_t (lp - lp_old)), gradient through the mean
  surrogate   PPO clip on s_i with eps_low = 3e-4, eps_high = 4e-4
  advantage   group-normalised GRPO advantage
  KL          none (beta = 0)
  aggregation sequence mean (each sequence's tokens share s_i: seq-mean-token-mean)
  rollout     each rollout batch split into 4 mini-batches (4 updates per rollout)
The loop has no mini-batch split: with rl.num_iterations = 1 the ratio is 1 in value and the clip
never binds (the gradient is GSPO's); raise rl.num_iterations to reuse a rollout for several
full-batch updates, the closest available setting. GSPO-token: rl.ratio_level='sequence_token'.
Model-scale settings stay at the preset's values.
"""

import importlib.util
import os

from ml_collections import config_dict


def _base(arg: str | None) -> config_dict.ConfigDict:
  path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'vlm_grpo.py')
  spec = importlib.util.spec_from_file_location('vlm_grpo', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
  c = _base(arg)
  c.rl.advantage = 'grpo'
  c.rl.ratio_level = 'sequence'
  c.rl.surrogate = 'ppo_clip'
  c.rl.eps_low = 3e-4
  c.rl.eps_high = 4e-4
  c.rl.beta = 0.0
  c.rl.aggregation = 'seq_mean_token_mean'
  return c
