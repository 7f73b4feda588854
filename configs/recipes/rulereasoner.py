"""RuleReasoner ("Reinforced Rule-based Reasoning via Domain-aware Dynamic Sampling"; bigai-nlco/RuleReasoner).

  python -m rl_reason.main --config=configs/recipes/rulereasoner.py --workdir=runs/rulereasoner_tiny
  python -m rl_reason.main --config=configs/recipes/rulereasoner.py:qwen3_8b \\
      --config.model.path=/ckpt/Qwen3-8B-Base

Args: tiny (default; CPU, the tiny_lm text model), qwen3_8b (Qwen3-8B-Base, the released script's
default; the base and post-trained checkpoints share the architecture), qwen3_4b.

Implemented (ALGORITHMS.md §1.9 [code]; scripts/train/train_mix.sh):
  task        procedural rule chains in four domains (ProntoQA-style categories, ProofWriter-style Horn
              rules, orderings, box operations), depth 2, two distractors, think mode
  reward      rule_acc (exact match of the <answer>, F1 for set answers) + ordered_tags_format (0 if
              the four tags appear once each in order, else -1), weights 1 + 1 (the task's own)
  loss        verl GRPO: (r - mean_g) / (std_g + 1e-6), PPO clip 0.2, no KL (use_kl_loss=False),
              token-mean (verl's default loss_agg_mode)
  sampling    domain-aware dynamic sampling (rl_reason.curricula.presets.rulereasoner, 'domain_weighted'):
              every 8 steps the step's rule_acc per domain goes into a 4-record buffer with harmonic decay;
              weights softmax((max(0, H_K/K - r_d) + 0.1) / 0.3); each step's prompts are drawn by quota
              (floor(P w_d), remainder to the largest weights) through the task's example_for(domain);
              weights, buffer and draws are checkpointed; logged as domain/<d>/weight beside
              domain/<d>/{prompts, reward_mean, accuracy}
  real scale  64 prompts x 64 rollouts (rollout.n=64; one update per rollout, ppo_mini_batch_size 64),
              lr 1e-6, temperature 0.8, prompts and responses up to 2048 tokens, weight decay 0.01
              (verl default)
Approximated:
  data        4 procedural domains instead of the 8 logic datasets (ProntoQA, ProofWriter, CLUTRR,
              FOLIO, AR-LSAT, LogicNLI, LogicalDeduction, LogiQA)
  steps       3 epochs; the training-set size is not in ALGORITHMS.md: 300 steps, placeholder
  lr schedule constant
  sampler     a domain without samples in the buffer counts as r_d = 0 (the released code drops it);
              the buffer keeps K records (the released trainer clears it every step: clear_buffer=True)
Not available yet: the eight logic datasets themselves (a JSONL source can feed them, without domains).
Tiny: 4 prompts x G 8 (not 64 x 64: CPU), temperature 0.8, 24-token completions, one 256-token prompt
bucket, 200 RL steps after 100 warm-up steps.
"""

import importlib.util
import os

from rl_reason import curricula

_spec = importlib.util.spec_from_file_location('_recipes_common', os.path.join(os.path.dirname(__file__), '_common.py'))
_common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_common)

ARGS = ('tiny', 'qwen3_8b', 'qwen3_4b')
_REAL = dict(prompts=64, generations=64, max_new_tokens=2048, prompt_buckets=(512, 1024, 2048), steps=300,
             learning_rate=1e-6, temperature=0.8, weight_decay=0.01)


def get_config(arg=None):
  return _common.build(
      arg, ARGS, task='rules', rewards={},
      tiny_task=dict(depth=2, num_distractors=2, think=True),
      real_task=dict(depth=2, num_distractors=2, think=True),
      rl=dict(advantage='grpo', advantage_eps=1e-6, ratio_level='token', surrogate='ppo_clip', eps_low=0.2,
              eps_high=0.2, beta=0.0, aggregation='token_mean'),
      tiny_scale=dict(prompts=4, generations=8, max_new_tokens=24, prompt_buckets=(256,), steps=200,
                      warmup_steps=100, temperature=0.8),
      real_scale={'qwen3_8b': _REAL, 'qwen3_4b': _REAL},
      curriculum={arg: curricula.presets.rulereasoner() for arg in ARGS})
