"""Jigsaw-R1 ("A Study of Rule-based Visual Reinforcement Learning with Jigsaw Puzzles"; zifuwanggg/Jigsaw-R1).

  python -m rl_reason.main --config=configs/recipes/jigsaw_r1.py --workdir=runs/jigsaw_r1_tiny
  python -m rl_reason.main --config=configs/recipes/jigsaw_r1.py:qwen2_5_vl_3b \\
      --config.model.path=/ckpt/Qwen2.5-VL-3B-Instruct

Args: tiny (default; 2x1 puzzles, CPU), qwen2_5_vl_3b, qwen2_5_vl_7b (the paper's models).

Implemented (ALGORITHMS.md §1.1, [code]):
  task        'full' jigsaw questions, think mode (<think>...</think><answer>grid</answer>), forward
              ground truth, uniform shuffle (identity included), shuffle_mn
  reward      1.0 * jigsaw_grid (fraction of pieces in place, 0 if malformed) + 0.5 * jigsaw_format
              (the task's own rewards: reward.weights = {})
  loss        GRPO: (r - mean_g) / (std_g + 1e-4); PPO clip 0.2/0.2; beta 0.04, k3 in the loss;
              seq-mean-token-mean
  real scale  64 prompts x G 8 = 512 completions per step, lr 1e-6, temperature 1.0, 512-token
              completions, 2000 steps (PEERS_PYTORCH.md §2.6: prompts up to 512 tokens)
  curriculum  real presets: grid stages by cumulative sample count, 3x1 for 64,000 samples (1000
              steps), then 4x1 (rl_reason.curricula.presets.jigsaw_r1, a 'staged' curriculum)
Approximated:
  images      procedural images (420x420 for the real presets) instead of COCO train2014
  prompt      the 'full' prompt style paraphrases the repo's wording
  lr schedule constant (the TRL-based repo decays linearly; see _common.real for framework defaults)
Not available yet: nothing the recipe needs (COCO itself needs a download).
Tiny: 2x1 puzzles on 32x32 images, no curriculum (one stage), 8 prompts x G 8, lr 3e-4 after 100
format warm-up steps, 300 RL steps (the from-scratch model learns 2x1 within minutes; 2x2 plateaus
for ~400 steps).
"""

import importlib.util
import os

from rl_reason import curricula

_spec = importlib.util.spec_from_file_location('_recipes_common', os.path.join(os.path.dirname(__file__), '_common.py'))
_common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_common)

ARGS = ('tiny', 'qwen2_5_vl_3b', 'qwen2_5_vl_7b')
_REAL = dict(prompts=64, generations=8, max_new_tokens=512, prompt_buckets=(256, 512), steps=2000,
             learning_rate=1e-6, temperature=1.0)


def get_config(arg=None):
  return _common.build(
      arg, ARGS, task='jigsaw', rewards={},
      tiny_task=dict(rows=2, cols=1, image_size=(32, 32), question_type='full', think=True, prompt_style='compact'),
      real_task=dict(rows=3, cols=1, image_size=(420, 420), question_type='full', think=True, prompt_style='full'),
      rl=dict(advantage='grpo', advantage_eps=1e-4, ratio_level='token', surrogate='ppo_clip', eps_low=0.2,
              eps_high=0.2, beta=0.04, kl_estimator='k3', kl_placement='loss', aggregation='seq_mean_token_mean'),
      tiny_scale=dict(prompts=8, generations=8, max_new_tokens=16, prompt_buckets=(32,), steps=300,
                      warmup_steps=100),
      real_scale={'qwen2_5_vl_3b': _REAL, 'qwen2_5_vl_7b': _REAL},
      curriculum={p: curricula.presets.jigsaw_r1() for p in ARGS[1:]})
