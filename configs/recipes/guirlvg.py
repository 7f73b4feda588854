"""GuirlVG (arXiv 2508.04389, "Incentivize GUI Visual Grounding via Empirical Exploration on RL"; no public code).

  python -m rl_reason.main --config=configs/recipes/guirlvg.py --workdir=runs/guirlvg_tiny
  python -m rl_reason.main --config=configs/recipes/guirlvg.py:qwen2_5_vl_7b \\
      --config.model.path=/ckpt/Qwen2.5-VL-7B-Instruct

Args: tiny (default; CPU), qwen2_5_vl_3b, qwen2_5_vl_7b (the base model is not in ALGORITHMS.md;
both Qwen2.5-VL sizes are offered).

The paper's ablation chain (ALGORITHMS.md §1.4, [paper]/[unverified]): soft reward -> point prediction
with an in-box reward -> tuned beta -> Adversarial KL Factor (AKF) -> the image resolution stated in
the prompt -> longer training; 5.2K samples beat SFT.
Implemented:
  task        point grounding: "(x,y)" answers, the image size stated in the prompt (tell_size)
  reward      point_in_box: 1 iff the predicted point, rescaled to the original frame, lies inside
              the target box; plus answer_type_format (the task's own rewards)
  loss        GRPO, PPO clip 0.2, k3 KL in the loss, seq-mean-token-mean
Approximated ([unverified] in ALGORITHMS.md):
  AKF         rl.kl_group_factor='akf_mean_reward': beta_eff = beta * exp(scale * (group mean reward -
              batch mean reward)), scale 1 -- a working hypothesis (f increasing in the group's mean
              reward), not the paper's formula, which could not be retrieved
  beta        the tuned value is unknown: 0.04 (TRL default), placeholder
  format      the format term (answer_type_format, think mode) is the task's; whether GuirlVG rewards
              a format or asks for thinking is not known
  scale       G 8, lr 1e-6, temperature 1.0, 16 prompts per step, 256-token completions, 650 steps
              (~2 epochs of 5.2K samples): placeholders, not in ALGORITHMS.md
  data        shape scenes instead of GUI screenshots (ScreenSpot): the gui task answers with UI-R1
              action lists, not bare points
  lr schedule constant
Not available yet: the "soft" reward of the first ablation step (its form is unknown).
Tiny: 64x64 scenes, 8 prompts x G 8, 16-token completions, 200 RL steps after 100 warm-up steps.
"""

import importlib.util
import os

_spec = importlib.util.spec_from_file_location('_recipes_common', os.path.join(os.path.dirname(__file__), '_common.py'))
_common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_common)

ARGS = ('tiny', 'qwen2_5_vl_3b', 'qwen2_5_vl_7b')
_REAL = dict(prompts=16, generations=8, max_new_tokens=256, prompt_buckets=(512, 1024), steps=650,
             learning_rate=1e-6, temperature=1.0)


def get_config(arg=None):
  return _common.build(
      arg, ARGS, task='grounding', rewards={},
      tiny_task=dict(answer='point', tell_size=True, think=True, image_size=(64, 64), object_size=(8, 18)),
      real_task=dict(answer='point', tell_size=True, think=True, image_size=(448, 448), object_size=(56, 126)),
      rl=dict(advantage='grpo', advantage_eps=1e-4, ratio_level='token', surrogate='ppo_clip', eps_low=0.2,
              eps_high=0.2, beta=0.04, kl_estimator='k3', kl_placement='loss', aggregation='seq_mean_token_mean',
              kl_group_factor='akf_mean_reward', kl_group_factor_scale=1.0),
      tiny_scale=dict(prompts=8, generations=8, max_new_tokens=16, prompt_buckets=(160,), steps=200,
                      warmup_steps=100),
      real_scale={'qwen2_5_vl_3b': _REAL, 'qwen2_5_vl_7b': _REAL})
