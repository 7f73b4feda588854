"""UniVG-R1 ("Reasoning Guided Universal Visual Grounding with Reinforcement Learning"; AMAP-ML/UniVG-R1).

  python -m rl_reason.main --config=configs/recipes/univg_r1.py --workdir=runs/univg_r1_tiny
  python -m rl_reason.main --config=configs/recipes/univg_r1.py:qwen2_5_vl_7b \\
      --config.model.preset= --config.model.path=/ckpt/<stage-1 CoT-SFT checkpoint>

Args: tiny (default; CPU), qwen2_5_vl_7b. The released stage 1 fine-tunes Qwen2-VL-7B-Instruct
(sft/stage1_cotsft.yaml); there is no Qwen2-VL preset, so the 7B Qwen2.5-VL preset names the
scale, and the Qwen2-VL checkpoint loads through model.path.

Implemented (ALGORITHMS.md §1.5 [code]; run_scripts/run_grpo_univg.sh):
  task        synthetic grounding: coloured shapes, a referring expression (attribute or relation),
              answer "(x1,y1),(x2,y2)", think mode
  reward      iou_box_inclusive (UniVG's inclusive-pixel IoU) + univg_format (think block, answer
              exactly one box), weights 1 + 1 (the task's own rewards)
  loss        GRPO, TRL-0.14-era fork: (r - mean_g) / (std_g + 1e-4); PPO clip 0.2; beta 0.04 k3 in the
              loss; seq-mean-token-mean
  difficulty  the per-token surrogate (before the KL term is added) times exp(1 - mIoU), mIoU the mean
  weight      iou_box_inclusive reward of the prompt's group (released miou_adjust_math=exp;
              rl.difficulty_weight='exp')
  real scale  G 8; 8 GPUs x 8 completions x 2 accumulation = 128 completions = 16 prompts per step;
              lr 1e-6; prompts up to 1024 tokens; temperature 0.9 and 256-token completions (the
              fork's GRPOConfig defaults, which the script leaves unset)
Approximated:
  data        procedural single-image scenes (448x448 for the real preset) instead of
              MGrounding-630k / MIG-Bench multi-image items
  steps       1 epoch of the stage-2 RL set; its size is not in ALGORITHMS.md: 1000 steps, placeholder
  lr schedule constant (TRL decays linearly)
  frozen ViT  the real preset freezes the vision tower in RL as the script does (freeze_vision_modules;
              rl.train_vision=False); the tiny variant's tower starts random and keeps training
Not available yet:
  stage 1     the CoT-SFT stage (LLaMA-Factory) is not part of rl_reason; the tiny variant's format
              warm-up teaches only the answer format
Tiny: 64x64 scenes, 8 prompts x G 8, temperature 0.9, 24-token completions, 200 RL steps after 100
warm-up steps.
"""

import importlib.util
import os

_spec = importlib.util.spec_from_file_location('_recipes_common', os.path.join(os.path.dirname(__file__), '_common.py'))
_common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_common)

ARGS = ('tiny', 'qwen2_5_vl_7b')


def get_config(arg=None):
  c = _common.build(
      arg, ARGS, task='grounding', rewards={},
      tiny_task=dict(answer='box', think=True, image_size=(64, 64), object_size=(8, 18)),
      real_task=dict(answer='box', think=True, image_size=(448, 448), object_size=(56, 126)),
      rl=dict(advantage='grpo', advantage_eps=1e-4, ratio_level='token', surrogate='ppo_clip', eps_low=0.2,
              eps_high=0.2, beta=0.04, kl_estimator='k3', kl_placement='loss', aggregation='seq_mean_token_mean',
              difficulty_weight='exp'),
      tiny_scale=dict(prompts=8, generations=8, max_new_tokens=24, prompt_buckets=(192,), steps=200,
                      warmup_steps=100, temperature=0.9),
      real_scale={'qwen2_5_vl_7b': dict(prompts=16, generations=8, max_new_tokens=256, prompt_buckets=(512, 1024),
                                        steps=1000, learning_rate=1e-6, temperature=0.9)})
  if _common.check_arg(arg, ARGS) != _common.TINY:
    c.rl.train_vision = False
  return c
