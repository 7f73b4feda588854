"""LASER ("Learn to Reason Efficiently with Adaptive Length-based Reward Shaping"; hkust-nlp/Laser).

  python -m rl_reason.main --config=configs/recipes/laser.py --workdir=runs/laser_tiny
  python -m rl_reason.main --config=configs/recipes/laser.py:qwen2_5_1_5b \\
      --config.model.preset= --config.model.path=/ckpt/DeepSeek-R1-Distill-Qwen-1.5B

Args: tiny (default; CPU, the tiny_lm text model), qwen2_5_1_5b (the paper's DeepSeek-R1-Distill-Qwen-
1.5B is a Qwen2.5-1.5B-size model whose config.json need not match the preset key for key: clear
model.preset as above to skip the architecture check).

LASER's reward (ALGORITHMS.md §1.12, [code]) is R(y) = C(y) + alpha * 1[correct] * 1[L(y) <= L_T],
alpha 0.5; LASER-D picks L_T per difficulty bucket (easy / medium / hard by group accuracy) and
updates it periodically on a monitor set; LASER-DE also rewards long wrong answers without n-gram
repetition.
Implemented:
  reward      the base C (laser_correctness): +1 correct, -0.5 wrong, -1 without a \\boxed{} answer or
              without '</think>' (truncated)
  LASER-D     the length term alpha 0.5 * 1[C = +1] * 1[L <= L_T] in tokens, L_T per difficulty bucket of
              the group, added to C before the advantages (c.shaping laser_d). The targets start at
              upper_bound and are updated every 20 steps from the training batch (the Laser scripts'
              4096..16384 by 1024), and are saved in the checkpoint. LASER-DE is `laser_de` with the same
              fields (it also rewards long wrong answers that are not repetition loops)
  loss        verl GRPO: (r - mean_g) / (std_g + 1e-6); clip-higher 0.2 / 0.28; KL loss beta 1e-3 (k3);
              token-mean (verl default)
  real scale  128 prompts x 8, lr 1e-6, temperature 0.6, 16K-token responses, weight decay 0.01
              (verl default)
Approximated:
  data        integer arithmetic (\\boxed{} answers) instead of DeepScaleR-40K
  monitor set the LASER-D targets are updated from the last training batch (Laser samples a fixed
              monitor set with the rollout settings)
  scale       steps not in ALGORITHMS.md: 500, placeholder
  lr schedule constant
Not available yet:
  think format the arithmetic task has no R1-style "<think> ... </think> then \\boxed{}" answer
              format: its warm-up completions are a bare \\boxed{}, so on the tiny model every
              completion lacks '</think>' and scores -1 (constant reward, zero advantages). The tiny
              variant only checks that the recipe runs; R1-distilled checkpoints write '</think>'.
Tiny: difficulty 1, 8 prompts x G 8, temperature 0.6, 16-token completions, 200 RL steps; LASER-D
targets 4..16 tokens by 4.
"""

import importlib.util
import os

_spec = importlib.util.spec_from_file_location('_recipes_common', os.path.join(os.path.dirname(__file__), '_common.py'))
_common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_common)

ARGS = ('tiny', 'qwen2_5_1_5b')
# LASER-D: the bonus goes to C = +1 answers; targets updated every 20 steps (Laser's monitor_freq).
_LASER_D = dict(correct='laser_correctness', correct_at=1.0, alpha=0.5, update_every=20)


def get_config(arg=None):
  return _common.build(
      arg, ARGS, task='arithmetic', rewards={'laser_correctness': 1.0},
      tiny_task=dict(difficulty=1, think=True),
      real_task=dict(difficulty=3, think=True),
      rl=dict(advantage='grpo', advantage_eps=1e-6, ratio_level='token', surrogate='ppo_clip', eps_low=0.2,
              eps_high=0.28, beta=1e-3, kl_estimator='k3', kl_placement='loss', aggregation='token_mean'),
      tiny_scale=dict(prompts=8, generations=8, max_new_tokens=16, prompt_buckets=(96,), steps=200,
                      warmup_steps=100, temperature=0.6),
      real_scale={'qwen2_5_1_5b': dict(prompts=128, generations=8, max_new_tokens=16384,
                                       prompt_buckets=(256, 512, 1024), steps=500, learning_rate=1e-6,
                                       temperature=0.6, weight_decay=0.01)},
      shaping={'tiny': {'laser_d': dict(_LASER_D, lower_bound=4, upper_bound=16, interval=4)},
               'qwen2_5_1_5b': {'laser_d': dict(_LASER_D, lower_bound=4096, upper_bound=16384, interval=1024)}})
