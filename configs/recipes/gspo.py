"""GSPO (Zheng et al. 2025, Group Sequence Policy Optimization; TRL `importance_sampling_level='sequence'`).

  python -m rl_reason.main --config=configs/recipes/gspo.py --workdir=runs/gspo_tiny

Published hyper-parameters (ALGORITHMS.md §1.14, PEERS_PYTORCH.md §2.2):
  ratio       sequence level: s_i = exp((1/|o_i|) sum_t (lp - lp_old)), gradient through the mean
  surrogate   PPO clip on s_i with eps_low = 3e-4, eps_high = 4e-4
  advantage   group-normalised GRPO advantage
  KL          none (beta = 0)
  aggregation sequence mean (each sequence's tokens share s_i: seq-mean-token-mean)
  rollout     each rollout batch split into 4 mini-batches (4 updates per rollout)
The 4 updates per rollout are rl.mini_batch_size = rollout.batch_size / 4 (whole groups; old
log-probs computed once per rollout), so the clip binds from the second mini-batch on.
GSPO-token: rl.ratio_level='sequence_token'.
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
  c.rl.advantage = 'grpo'
  c.rl.ratio_level = 'sequence'
  c.rl.surrogate = 'ppo_clip'
  c.rl.eps_low = 3e-4
  c.rl.eps_high = 4e-4
  c.rl.beta = 0.0
  c.rl.aggregation = 'seq_mean_token_mean'
  _common.set_updates_per_rollout(c, 4)
  return c
