"""No-Thinking-CLS-RL (the no-thinking variant of the CLS-RL paper; minglllli/CLS-RL).

  python -m rl_reason.main --config=configs/recipes/no_think_cls_rl.py --workdir=runs/no_think_cls_rl_tiny
  python -m rl_reason.main --config=configs/recipes/no_think_cls_rl.py:qwen2_5_vl_3b \\
      --config.model.preset= --config.model.path=/ckpt/Qwen2-VL-2B-Instruct

Args: tiny (default; CPU), qwen2_5_vl_3b (paper: Qwen2-VL-2B-Instruct, loadable through model.path).

Implemented (ALGORITHMS.md §1.2, [code]): everything of configs/recipes/cls_rl.py except
  task        the prompt ends with "Please directly output the answer." (no reasoning asked for)
  reward      equality_strict only: 1 iff the entire completion equals the label exactly (the
              paper's "equality accuracy reward"); no format term (the task's own reward)
Approximated: as in cls_rl.py (procedural shape classes, no fixed 4-shot set, the prompts per
step, image size, constant lr).
Not available yet: nothing else the recipe needs.
Tiny: as cls_rl.py (colour classes, no candidate list, 32 prompts x G 8, 50-step warm-up) with
  12-token completions, at lr 2e-3 for 200 steps: GRPO rises on the tiny model (accuracy 0.115 ->
  0.255, greedy 0.09 -> 0.38 in 200 steps, one seed; README). With
  G 8, 66% of the groups hold a correct sample at chance (G 4: 41%), and 256 samples per step
  average out more of the sampling noise that a large lr otherwise follows (the three were changed
  together, not one by one); CLS-RL's earlier 16 x 4 at 3e-4 barely moved the policy. It still collapses
  (entropy < 0.07 from step ~120, nearly every group scores equal rewards), which caps accuracy; an
  adaptive entropy bonus (rl.entropy_target 0.3) undid the rise (0.12 -> 0.10) and a fixed one
  (rl.entropy_coef 0.02) broke the output. The same lr on cls_rl.py collapses without rising;
  cls_rl.py rises at lr 5e-4 over 400 steps instead.
"""

import importlib.util
import os

_spec = importlib.util.spec_from_file_location('_recipes_cls_rl', os.path.join(os.path.dirname(__file__), 'cls_rl.py'))
_cls_rl = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_cls_rl)

ARGS = _cls_rl.ARGS


def get_config(arg=None):
  return _cls_rl.build(arg, think=False)
