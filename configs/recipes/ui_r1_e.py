"""UI-R1-E (the efficient UI-R1 variant; lll6gg/UI-R1): UI-R1 with DAST length shaping, then no thinking.

  python -m rl_reason.main --config=configs/recipes/ui_r1_e.py --workdir=runs/ui_r1_e_tiny
  python -m rl_reason.main --config=configs/recipes/ui_r1_e.py:qwen2_5_vl_3b \\
      --config.model.path=/ckpt/Qwen2.5-VL-3B-Instruct

Args: tiny (default; CPU), qwen2_5_vl_3b.

UI-R1-E trains in two stages (ALGORITHMS.md §1.3, [code]): (1) UI-R1 with DAST length shaping:
per group, p = the fraction of full-reward responses, L_b = p L_r + (1 - p) L_max,
lambda_i = (L_i - L_b) / L_b, full-reward responses get + max(-0.5 lambda_i + 0.5, 0.1), the others
+ min(0.9 lambda_i - 0.1, -0.1); (2) the same task without thinking.
Implemented: everything of configs/recipes/ui_r1.py, in two stages (a 'staged' curriculum on
task.think):
  stage 1     UI-R1 (think mode, R_T + R_C + R_F, full reward 3) with DAST (c.shaping dast: full_reward
              3, a -0.5, b 0.5, L_max = rollout.max_new_tokens, in tokens), added to the reward the
              advantages see; DAST ends with the stage (end_step)
  stage 2     no-think prompt (the action list only, no <think> block), R_T + R_C (the task's own
              rewards), no shaping
Approximated: as in ui_r1.py (procedural screens, placeholder scale, constant lr), and
  switch step not in ALGORITHMS.md: half of the steps (tiny 100 of 200, real 250 of 500), placeholder
  warm-up     the tiny model's format warm-up is on the stage-1 (think) format only
Not available yet: nothing else UI-R1-E needs.
Tiny: as ui_r1.py (56-token completions).
"""

import importlib.util
import os

_spec = importlib.util.spec_from_file_location('_recipes_ui_r1', os.path.join(os.path.dirname(__file__), 'ui_r1.py'))
_ui_r1 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_ui_r1)

ARGS = _ui_r1.ARGS
SWITCH_STEP = {'tiny': 100, 'qwen2_5_vl_3b': 250}  # stage 2 from this step on (placeholder)


def get_config(arg=None):
  return _ui_r1.build(
      arg, think=True,
      curriculum={a: ('staged', {'boundaries': (SWITCH_STEP[a],),
                                 'stages': ({'overrides': {'think': True}}, {'overrides': {'think': False}})})
                  for a in ARGS},
      shaping={a: {'dast': {'full_reward': 3.0, 'a': -0.5, 'b': 0.5, 'end_step': SWITCH_STEP[a]}} for a in ARGS})
