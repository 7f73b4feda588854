"""SophiaVL-R1 ("Reinforcing MLLMs Reasoning with Thinking Reward"; kxfan2002/SophiaVL-R1).

  python -m rl_reason.main --config=configs/recipes/sophiavl_r1.py --workdir=runs/sophiavl_r1_tiny
  python -m rl_reason.main --config=configs/recipes/sophiavl_r1.py:qwen2_5_vl_7b \\
      --config.model.path=/ckpt/Qwen2.5-VL-7B-Instruct \\
      --config.shaping.trust_grpo.judge=/ckpt/SophiaVL-R1-Thinking-Reward-Model-3B

Args: tiny (default; CPU), qwen2_5_vl_7b (the paper's model).

The method is Trust-GRPO (ALGORITHMS.md §1.6): R_i = R^o_i + gamma * alpha * exp(-step / T) * R^t_i,
with R^t a thinking reward from a separate reward model, gamma the trust weight from the thinking
rewards of right vs wrong responses, alpha 0.3, T 12000.
Implemented:
  reward      the outcome reward R^o: sophia_exact, exact match of the <answer> (case-insensitive),
              0 unless the whole completion has the <think>..</think><answer>..</answer> format
              (SophiaVL's format-gated numeric / multiple-choice reward)
  thinking    (qwen2_5_vl_7b) shaping trust_grpo with judge = the thinking reward model's checkpoint
  reward      (bunny127/SophiaVL-R1-Thinking-Reward-Model-3B, Qwen2.5-VL-3B; default path: that name
              in the working directory): it reads the question's image and a judge prompt with the
              question and the whole completion, answers greedily, and its score in [0, 1] is R^t
              (rl/judge.py); as the code, only rows with R^o >= 0.2 outside all-right / all-wrong groups
              are judged; gamma, alpha * exp(-step / T) and the zeroed extreme groups as the code
  task        single-answer visual multiple choice (multichoice, inversion off) as the stand-in for
              SophiaVL-R1-130k's multiple-choice items
  loss        GRPO; KL beta 0.04 with k3 (clamped, verl's low_var_kl) in the loss; entropy bonus 1e-3
  real scale  lr 5e-7, G 8, 1500 steps
Approximated:
  aggregation token-mean and std eps 1e-6: verl/EasyR1 defaults, assumed for the released code
  scale       not in ALGORITHMS.md, placeholders: 64 prompts per step, 2048-token completions,
              temperature 1.0; verl's weight decay 0.01
  judge       the judge prompt is SophiaVL's criteria in our words (shaping.trust_grpo.judge_template
  prompt      takes the exact wording); its score is read as the first of a boxed number, the number
              in <answer>..</answer>, the first number in the text (the code tries more fall-backs)
  data        procedural shape questions instead of SophiaVL-R1-130k (math, charts, OCR, free form)
Not available yet:
  tiny judge  there is no thinking reward model at tiny scale (a random one scores nothing): the tiny
              variant is the outcome-only GRPO baseline; a rule-based stand-in for R^t can be
              selected with c.shaping = {'trust_grpo': {'thinking': <reward in [0, 1]>}}
Tiny: 48x48 scenes, 8 prompts x G 8, 16-token completions, 200 RL steps after 100 warm-up steps.
"""

import importlib.util
import os

_spec = importlib.util.spec_from_file_location('_recipes_common', os.path.join(os.path.dirname(__file__), '_common.py'))
_common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_common)

ARGS = ('tiny', 'qwen2_5_vl_7b')
JUDGE = 'SophiaVL-R1-Thinking-Reward-Model-3B'  # the released thinking reward model's directory


def get_config(arg=None):
  return _common.build(
      arg, ARGS, task='multichoice', rewards={'sophia_exact': 1.0},
      tiny_task=dict(inversion_prob=0.0, think=True),
      real_task=dict(inversion_prob=0.0, think=True, image_size=(336, 336), object_size=(56, 112)),
      rl=dict(advantage='grpo', advantage_eps=1e-6, ratio_level='token', surrogate='ppo_clip', eps_low=0.2,
              eps_high=0.2, beta=0.04, kl_estimator='k3', kl_placement='loss', aggregation='token_mean',
              entropy_coef=1e-3),
      tiny_scale=dict(prompts=8, generations=8, max_new_tokens=16, prompt_buckets=(160,), steps=200,
                      warmup_steps=100),
      real_scale={'qwen2_5_vl_7b': dict(prompts=64, generations=8, max_new_tokens=2048, prompt_buckets=(512, 1024),
                                        steps=1500, learning_rate=5e-7, temperature=1.0, weight_decay=0.01)},
      shaping={'qwen2_5_vl_7b': {'trust_grpo': dict(judge=JUDGE, alpha=0.3, anneal_steps=12000.0)}})
