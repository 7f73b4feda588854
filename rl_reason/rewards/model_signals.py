"""Rewards built from model signals: injected scorers (thinking reward model, listener) and logprobs.

No model lives here (the loop's thinking reward model is rl/judge.py; its prompt and the reading
of its score are here). A `Scorer` is anything with `score(prompts, completions) -> list[float]`
(a served reward model, a frozen VLM behind an RPC, a test stub); the sampler's per-token
logprobs and the learner's entropies arrive as arrays.

Shapes: B completions, T completion tokens; masks are 1 on the tokens that count.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from rl_reason.rewards import shaping


@runtime_checkable
class Scorer(Protocol):
  """A model that scores (prompt, completion) pairs: probabilities or rewards, one float per pair."""

  def score(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
    ...


def query(scorer: Scorer, prompts: Sequence[str], completions: Sequence[str], *,
          low: float = 0.0, high: float = 1.0) -> np.ndarray:
  """The scorer's values, float64 [len(prompts)], checked: one per pair, finite, inside [low, high].

  Raises:
    ValueError: a scorer that breaks its contract (a wrong count, NaN, out of range) is a bug in
      the scorer or its serving, not a property of one completion.
  """
  if len(prompts) != len(completions):
    raise ValueError(f'{len(prompts)} prompts but {len(completions)} completions')
  if not prompts:
    return np.zeros(0)
  values = np.asarray(scorer.score(list(prompts), list(completions)), np.float64)
  if values.shape != (len(prompts),):
    raise ValueError(f'scorer returned shape {values.shape} for {len(prompts)} pairs')
  if not np.isfinite(values).all() or (values < low).any() or (values > high).any():
    raise ValueError(f'scorer values must be finite and in [{low}, {high}], got {values}')
  return values


def thinking_rewards(scorer: Scorer, prompts: Sequence[str], completions: Sequence[str],
                     outcome: Sequence[float] | np.ndarray, query_threshold: float = 0.2) -> np.ndarray:
  """SophiaVL-R1 thinking rewards R^t in [0, 1], queried only where outcome >= query_threshold (else 0)."""
  mask = shaping.thinking_query_mask(outcome, query_threshold)
  if len(prompts) != mask.shape[0] or len(completions) != mask.shape[0]:
    raise ValueError(f'{len(prompts)} prompts / {len(completions)} completions for {mask.shape[0]} outcomes')
  values = np.zeros(mask.shape[0])
  rows = np.flatnonzero(mask)
  values[rows] = query(scorer, [prompts[i] for i in rows], [completions[i] for i in rows])
  return values


# The thinking reward model's instructions (SophiaVL-R1's criteria, in our words); {question} and
# {reasoning} are filled in (`judge_prompt`). A checkpoint trained on other wording takes its own
# through shaping.trust_grpo.judge_template.
JUDGE_TEMPLATE = (
    'You are an expert judge of reasoning. Below are a question (with its images, if any) and a response '
    'to it. Judge the reasoning process, not whether the final answer is right, and score it between 0 '
    'and 1.\n'
    'Criteria:\n'
    '- Logical soundness: every step follows from the ones before it.\n'
    '- Correct reasoning: the methods are appropriate, and facts and lemmas are stated and applied correctly.\n'
    '- Errors: no logical fallacies, unsupported assumptions or wrong steps.\n'
    '- Language consistency: one language throughout.\n'
    '- Redundancy: concise, without needless repetition or extra steps.\n'
    'Give one score from 0, 0.1, 0.2, ..., 1.0: 0 for completely flawed reasoning, 1 for perfectly sound '
    'reasoning, values between for partial correctness or minor errors. Be strict: reward good reasoning '
    'and punish bad reasoning. Output only the score, without explanation.\n'
    'Question: {question}\n'
    'Reasoning process: {reasoning}\n'
    'Your response format: <answer>your_score</answer>')
JUDGE_FIELDS = ('question', 'reasoning')
_JUDGE_FIELD = re.compile(r'\{(question|reasoning)\}')
_NUMBER = r'(\d+(?:\.\d*)?|\.\d+)'
# Where the score is read from, in order (the first that matches wins): a boxed number, the number in
# <answer>..</answer>, the first number standing alone in the text.
_SCORE_PATTERNS = (re.compile(r'\\box(?:ed|es)?\{\s*' + _NUMBER + r'\s*\}'),
                   re.compile(r'<answer>\s*' + _NUMBER + r'\s*</answer>'),
                   re.compile(r'(?<![\w.])' + _NUMBER + r'(?![\w]|\.\d)'))


def judge_prompt(template: str, question: str, reasoning: str) -> str:
  """The template with its {question} and {reasoning} filled in, in one pass (so text that itself
  holds '{reasoning}' is left as written)."""
  values = {'question': question, 'reasoning': reasoning}
  return _JUDGE_FIELD.sub(lambda m: values[m.group(1)], template)


def judge_template_head(template: str) -> str:
  """The template's text before its first field: what every judge prompt begins with."""
  return template[:_JUDGE_FIELD.search(template).start()]


def check_judge_template(template: str) -> None:
  """Raises ValueError unless the template holds each of {question} and {reasoning} exactly once."""
  for field in JUDGE_FIELDS:
    if template.count('{' + field + '}') != 1:
      raise ValueError(f'judge_template must hold {{{field}}} exactly once, got {template.count("{" + field + "}")}')


def judge_score(text: str) -> float:
  """The score a thinking reward model wrote, in [0, 1]; 0 when it wrote none (as the SophiaVL code).

  Read from the first of: `\\boxed{s}` (or `\\box{s}`), `<answer>s</answer>`, the first number
  standing alone in the text; clipped into [0, 1].
  """
  for pattern in _SCORE_PATTERNS:
    found = pattern.search(text)
    if found:
      return min(max(float(found.group(1)), 0.0), 1.0)
  return 0.0


def trust_grpo_rewards(scorer: Scorer, prompts: Sequence[str], completions: Sequence[str],
                       outcome: Sequence[float] | np.ndarray, num_generations: int, step: int, *,
                       alpha: float = 0.3, anneal_steps: float = 12000.0, zero_extreme_groups: bool = True,
                       query_threshold: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
  """Trust-GRPO with the thinking reward model behind `scorer`: (rewards [B], gamma [P]); see shaping.trust_grpo."""
  thinking = thinking_rewards(scorer, prompts, completions, outcome, query_threshold)
  return shaping.trust_grpo(outcome, thinking, num_generations, step, alpha=alpha, anneal_steps=anneal_steps,
                            zero_extreme_groups=zero_extreme_groups)


def listener_rewards(scorer: Scorer, prompts: Sequence[str], thoughts: Sequence[str],
                     accuracy: Sequence[float] | np.ndarray, weight: float) -> np.ndarray:
  """Listener-rewarded thinking: acc (+format, if passed in) + w * p_listener(correct choice | thought).

  The listener reads each chain of thought and returns its probability for the correct choice;
  w is [unverified] in the paper, so it has no default.
  """
  accuracy = np.asarray(accuracy, np.float64)
  return accuracy + weight * query(scorer, prompts, thoughts)


def _masked(values: np.ndarray, mask: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
  values, mask = np.asarray(values, np.float64), np.asarray(mask, np.float64)
  if values.ndim != 2 or values.shape != mask.shape:
    raise ValueError(f'{name} [B, T] and its mask must have one shape, got {values.shape} and {mask.shape}')
  return values, mask


def confidence(logprobs: np.ndarray, answer_mask: np.ndarray, mode: str = 'mean_prob') -> np.ndarray:
  """CRew confidence on the final-answer tokens, float64 [B] in [0, 1]; NaN where no token is masked.

  mode 'mean_prob': mean of p_t = exp(logprob_t); 'geometric': exp(mean logprob_t) (the paper's
  aggregator is [unverified], so both are offered). Logprobs are the sampler's, of the sampled
  tokens; `answer_mask` marks the answer's tokens (the caller maps its text span to tokens).
  """
  logprobs, mask = _masked(logprobs, answer_mask, 'logprobs')
  logprobs = np.minimum(np.nan_to_num(logprobs, nan=-np.inf), 0.0)  # a log-probability is <= 0
  count = mask.sum(axis=1)
  if mode == 'mean_prob':
    total = (np.exp(logprobs) * mask).sum(axis=1)
  elif mode == 'geometric':
    total = np.where(mask > 0, logprobs, 0.0).sum(axis=1)
  else:
    raise ValueError(f"mode must be 'mean_prob' or 'geometric', got {mode!r}")
  with np.errstate(invalid='ignore', divide='ignore'):
    mean = total / count
  if mode == 'geometric':
    mean = np.exp(mean)
  return np.where(count > 0, mean, math.nan)


def pear(accuracy: Sequence[float] | np.ndarray, entropies: np.ndarray, think_mask: np.ndarray,
         answer_mask: np.ndarray, lambda_think: float, lambda_answer: float = 0.0) -> np.ndarray:
  """PEAR (EXPERIMENTAL, form [unverified]): r = r_acc - lambda_t * mean H_think + lambda_a * mean H_answer.

  Per-token entropies split at '</think>' by the two masks; a phase without tokens contributes 0.
  """
  if lambda_think < 0 or lambda_answer < 0:
    raise ValueError('PEAR coefficients must be non-negative')
  entropies, think = _masked(entropies, think_mask, 'entropies')
  _, answer = _masked(entropies, answer_mask, 'entropies')
  if not np.isfinite(entropies).all() or (entropies < 0).any():
    raise ValueError('entropies must be finite and non-negative')

  def phase_mean(mask: np.ndarray) -> np.ndarray:
    count = mask.sum(axis=1)
    return np.where(count > 0, (entropies * mask).sum(axis=1) / np.maximum(count, 1), 0.0)

  return np.asarray(accuracy, np.float64) - lambda_think * phase_mean(think) + lambda_answer * phase_mean(answer)
