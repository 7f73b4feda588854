"""LMM-R1 ("Empowering 3B LMMs with Strong Reasoning Abilities Through Two-Stage Rule-Based RL"; TideDra/lmm-r1).

  python -m rl_reason.main --config=configs/recipes/lmm_r1.py --workdir=runs/lmm_r1_tiny
  python -m rl_reason.main --config=configs/recipes/lmm_r1.py:qwen2_5_vl_3b \\
      --config.model.path=/ckpt/Qwen2.5-VL-3B-Instruct

Args: tiny (default; CPU, the tiny_lm text model), qwen2_5_vl_3b (the paper's model; its checkpoint's
preprocessor_config.json sets the image processing, which this text-only stage does not use).

LMM-R1 (ALGORITHMS.md §1.16, [code]) trains in two stages: FRE, text-only rule-based RL on
DeepScaleR-40K with REINFORCE++-baseline, then MGT on multimodal data (VerMulti).
Implemented: the FRE stage
  task        text-only integer arithmetic, \\boxed{} answers (the stand-in for DeepScaleR-40K)
  reward      accuracy: math_equiv (math-verify with string and numeric fallbacks)
  advantage   REINFORCE++-baseline: r - mean_g, then whitened over the batch
  loss        PPO clip 0.2, KL beta 1e-3 (k3) in the loss, seq-mean-token-mean (OpenRLHF, assumed)
  real scale  256 prompts x 16, lr 4e-7, temperature 1.0, 4096-token responses, 2 episodes of
              DeepScaleR-40K = 40,000 x 2 / 256 ~ 313 steps
Approximated:
  data        procedural arithmetic (difficulty 3 for the real preset) instead of DeepScaleR-40K
  lr schedule constant
Not available yet:
  format      LMM-R1's total is acc + 0.5 * format (registered as the reward `lmm_r1`), with the
              format "<think>..</think><answer>..</answer>"; the arithmetic task asks for \\boxed{}
              answers and has no think/answer-tags option, so the format term could never be earned
              and is left out (reward.weights = {'math_equiv': 1.0}) until the task has that option
  MGT stage   the multimodal stage (VerMulti; GAE with a critic and lr 1e-6: PEERS_PYTORCH.md §2.6)
              needs a visual math task and a critic; a staged FRE -> MGT switch exists
              (rl_reason.curricula.presets.lmm_r1) but can change neither the advantage estimator
              nor the learning rate, so it is not used
Tiny: difficulty 1, 8 prompts x G 16, 16-token completions, 200 RL steps after 100 warm-up steps.
"""

import importlib.util
import os

_spec = importlib.util.spec_from_file_location('_recipes_common', os.path.join(os.path.dirname(__file__), '_common.py'))
_common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_common)

ARGS = ('tiny', 'qwen2_5_vl_3b')


def get_config(arg=None):
  return _common.build(
      arg, ARGS, task='arithmetic', rewards={'math_equiv': 1.0},
      tiny_task=dict(difficulty=1, think=True),
      real_task=dict(difficulty=3, think=True),
      rl=dict(advantage='reinforce_pp_baseline', advantage_eps=1e-6, ratio_level='token', surrogate='ppo_clip',
              eps_low=0.2, eps_high=0.2, beta=1e-3, kl_estimator='k3', kl_placement='loss',
              aggregation='seq_mean_token_mean'),
      tiny_scale=dict(prompts=8, generations=16, max_new_tokens=16, prompt_buckets=(96,), steps=200,
                      warmup_steps=100),
      real_scale={'qwen2_5_vl_3b': dict(prompts=256, generations=16, max_new_tokens=4096,
                                        prompt_buckets=(256, 512, 1024), steps=313, learning_rate=4e-7,
                                        temperature=1.0)})
