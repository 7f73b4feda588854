"""UI-R1 ("Enhancing Action Prediction of GUI Agents by Reinforcement Learning"; lll6gg/UI-R1).

  python -m rl_reason.main --config=configs/recipes/ui_r1.py --workdir=runs/ui_r1_tiny
  python -m rl_reason.main --config=configs/recipes/ui_r1.py:qwen2_5_vl_3b \\
      --config.model.path=/ckpt/Qwen2.5-VL-3B-Instruct

Args: tiny (default; CPU), qwen2_5_vl_3b (the paper's model).

Implemented (ALGORITHMS.md §1.3, [code]):
  task        synthetic mobile screens (buttons, text fields), one instruction, UI-R1's prompt and
              answer "[{'action': A, 'coordinate': [x, y]}]", A in click / open_app / scroll /
              navigate_back / input_text, think mode
  reward      R = R_T (ui_action_type) + R_C (ui_coord: action right and, for click, the point,
              rescaled to the original resolution, inside the target box) + R_F (think_answer_format),
              each 0/1 (the task's own rewards)
  loss        GRPO with TRL defaults: (r - mean_g) / (std_g + 1e-4); PPO clip 0.2; beta 0.04 k3 in
              the loss; seq-mean-token-mean; G 8, lr 1e-6
Approximated:
  data        procedural 128x96 screens instead of the 136 curated AndroidControl / ScreenSpot tasks
  scale       not in ALGORITHMS.md, placeholders: 16 prompts per step, 1024-token completions,
              500 steps, temperature 1.0
  lr schedule constant (TRL decays linearly)
Not available yet: nothing else UI-R1 needs. UI-R1-E (DAST length shaping, then no thinking) is
configs/recipes/ui_r1_e.py.
Tiny: 4 prompts x G 8 (the ~420-token prompts make the CPU update slow), 56-token completions (the
action list alone is ~45 tiny-tokenizer tokens), 150 format warm-up steps, 200 RL steps.
"""

import importlib.util
import os

_spec = importlib.util.spec_from_file_location('_recipes_common', os.path.join(os.path.dirname(__file__), '_common.py'))
_common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_common)

ARGS = ('tiny', 'qwen2_5_vl_3b')


def build(arg, *, think: bool, **extra):
  """UI-R1 (think=True) or the start of UI-R1-E: the same hyper-parameters; `extra` goes to _common.build."""
  return _common.build(
      arg, ARGS, task='gui', rewards={},
      tiny_task=dict(think=think), real_task=dict(think=think),
      rl=dict(advantage='grpo', advantage_eps=1e-4, ratio_level='token', surrogate='ppo_clip', eps_low=0.2,
              eps_high=0.2, beta=0.04, kl_estimator='k3', kl_placement='loss', aggregation='seq_mean_token_mean'),
      tiny_scale=dict(prompts=4, generations=8, max_new_tokens=56, prompt_buckets=(448,), steps=200,
                      warmup_steps=150),
      real_scale={'qwen2_5_vl_3b': dict(prompts=16, generations=8, max_new_tokens=1024, prompt_buckets=(512, 1024),
                                        steps=500, learning_rate=1e-6, temperature=1.0)},
      **extra)


def get_config(arg=None):
  return build(arg, think=True)
