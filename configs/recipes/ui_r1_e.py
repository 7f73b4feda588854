"""UI-R1-E (the efficient UI-R1 variant; lll6gg/UI-R1): its no-thinking stage.

  python -m rl_reason.main --config=configs/recipes/ui_r1_e.py --workdir=runs/ui_r1_e_tiny
  python -m rl_reason.main --config=configs/recipes/ui_r1_e.py:qwen2_5_vl_3b \\
      --config.model.path=/ckpt/Qwen2.5-VL-3B-Instruct

Args: tiny (default; CPU), qwen2_5_vl_3b.

UI-R1-E trains in two stages (ALGORITHMS.md §1.3, [code]): (1) UI-R1 with DAST length shaping:
per group, p = the fraction of full-reward responses, L_b = p L_r + (1 - p) L_max,
lambda_i = (L_i - L_b) / L_b, full-reward responses get + max(-0.5 lambda_i + 0.5, 0.1), the others
+ min(0.9 lambda_i - 0.1, -0.1); (2) the same task without thinking.
Implemented: stage 2, everything of configs/recipes/ui_r1.py with
  task        no-think prompt: the action list only, no <think> block
  reward      R_T + R_C (ui_action_type + ui_coord; no format term: the task's own rewards)
Approximated: as in ui_r1.py (procedural screens, placeholder scale, constant lr).
Not available yet:
  DAST        the shaping exists as rewards.shaping.dast (group-aware: lengths and group rewards),
              but the training loop has no hook for group-aware reward shaping, so stage 1 cannot run
              with it; without DAST, stage 1 is configs/recipes/ui_r1.py
  stages      a 'staged' curriculum could switch think -> no-think, but without DAST stage 1 would be
              plain UI-R1 and the switch step is not in ALGORITHMS.md: this config runs stage 2
              alone, from the checkpoint given
Tiny: as ui_r1.py (56-token completions).
"""

import importlib.util
import os

_spec = importlib.util.spec_from_file_location('_recipes_ui_r1', os.path.join(os.path.dirname(__file__), 'ui_r1.py'))
_ui_r1 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_ui_r1)

ARGS = _ui_r1.ARGS


def get_config(arg=None):
  return _ui_r1.build(arg, think=False)
