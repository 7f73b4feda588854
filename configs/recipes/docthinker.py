"""DocThinker ("Explainable Multimodal Large Language Models with Rule-based Reinforcement Learning for Document
Understanding"; wenwenyu/DocThinker, which holds only a README).

  python -m rl_reason.main --config=configs/recipes/docthinker.py --workdir=runs/docthinker_tiny
  python -m rl_reason.main --config=configs/recipes/docthinker.py:qwen2_5_vl_7b \\
      --config.model.path=/ckpt/Qwen2.5-VL-7B-Instruct

Args: tiny (default; CPU), qwen2_5_vl_7b (the paper's model).

DocThinker (ALGORITHMS.md §1.11, [paper]/[unverified]) outputs reasoning, a rephrased question, a
region of interest (RoI) box and the final answer, rewarded by R = R_format + R_answer + R_IoU(RoI,
gt box) + R_rephrase, with GRPO and a KL penalty to the reference. The sub-rewards are unverified.
Implemented: only the RoI part
  task        synthetic grounding (the RoI stand-in): locate the referred object, answer its box
              "(x1,y1),(x2,y2)", think mode
  reward      R_IoU: iou_box (continuous area IoU, one of ALGORITHMS.md's suggested forms) +
              a format term: answer_type_format (think block, then a parseable box), weights 1 + 1
  loss        GRPO with the KL penalty in the loss (k3), PPO clip 0.2, seq-mean-token-mean
Approximated ([unverified]):
  beta        "KL-constrained" without a published coefficient: 0.04 (TRL default), placeholder
  format      DocThinker's format checks four sections; answer_type_format checks think + box only
  scale       G 8, lr 1e-6, 16 prompts per step, 1024-token completions, temperature 1.0, 500 steps
              (~2 epochs of ~4K samples): placeholders, not in ALGORITHMS.md
  lr schedule constant
Not available yet:
  document    a document task (rendered text pages, a question, an answer and a supporting RoI box)
  task        does not exist: shape scenes stand in, so there is no answer text to score and no
              question to rephrase
  R_answer    ANLS / exact match of the final answer needs that task
  R_rephrase  a lexical-similarity band against the original question needs that task and a
              registered reward
  sections    a reward that parses DocThinker's four output sections
Tiny: 64x64 scenes, 8 prompts x G 8, 24-token completions, 200 RL steps after 100 warm-up steps.
"""

import importlib.util
import os

_spec = importlib.util.spec_from_file_location('_recipes_common', os.path.join(os.path.dirname(__file__), '_common.py'))
_common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_common)

ARGS = ('tiny', 'qwen2_5_vl_7b')


def get_config(arg=None):
  return _common.build(
      arg, ARGS, task='grounding', rewards={'iou_box': 1.0, 'answer_type_format': 1.0},
      tiny_task=dict(answer='box', think=True, image_size=(64, 64), object_size=(8, 18)),
      real_task=dict(answer='box', think=True, image_size=(448, 448), object_size=(56, 126)),
      rl=dict(advantage='grpo', advantage_eps=1e-4, ratio_level='token', surrogate='ppo_clip', eps_low=0.2,
              eps_high=0.2, beta=0.04, kl_estimator='k3', kl_placement='loss', aggregation='seq_mean_token_mean'),
      tiny_scale=dict(prompts=8, generations=8, max_new_tokens=24, prompt_buckets=(192,), steps=200,
                      warmup_steps=100),
      real_scale={'qwen2_5_vl_7b': dict(prompts=16, generations=8, max_new_tokens=1024, prompt_buckets=(512, 1024),
                                        steps=500, learning_rate=1e-6, temperature=1.0)})
