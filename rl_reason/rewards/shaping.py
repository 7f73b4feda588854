"""Group- and batch-aware reward shaping: functions of a whole batch of completions, pure numpy.

Shapes: B = P*G rows ordered as P groups of G consecutive rows (the G completions of one prompt),
as in `rl.advantages`. Lengths are completion lengths in tokens. Every function returns float64
[B] (plus group statistics where named) and raises ValueError on inputs it cannot shape (wrong
shapes, NaN, negative lengths) instead of guessing. Per-completion rule rewards are in the other
modules; these take their columns (correctness, base reward) and the sampler's lengths.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Hashable, Mapping, Sequence

import numpy as np

LASER_BUCKETS = ('easy', 'medium', 'hard')  # group accuracy >= 2/3, >= 1/3, < 1/3


def _rows(x: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
  array = np.asarray(x, np.float64)
  if array.ndim != 1:
    raise ValueError(f'{name} must be 1-D [B], got shape {array.shape}')
  if np.isnan(array).any():
    raise ValueError(f'{name} holds NaN; fill not-applicable rewards before shaping')
  return array


def _lengths(lengths: Sequence[float] | np.ndarray, rows: int | None = None) -> np.ndarray:
  array = _rows(lengths, 'lengths')
  if (array < 0).any() or np.isinf(array).any():
    raise ValueError('lengths must be finite and non-negative')
  if rows is not None and array.shape[0] != rows:
    raise ValueError(f'lengths has {array.shape[0]} rows, expected {rows}')
  return array


def _groups(array: np.ndarray, num_generations: int) -> np.ndarray:
  if num_generations < 1 or array.shape[0] % num_generations:
    raise ValueError(f'{array.shape[0]} rows do not split into groups of num_generations={num_generations}')
  return array.reshape(-1, num_generations)


def _correct(correct: Sequence[float] | np.ndarray) -> np.ndarray:
  array = _rows(correct, 'correct')
  if not np.isin(array, (0.0, 1.0)).all():
    raise ValueError('correct must hold 0/1 (or booleans)')
  return array


# ---------------------------------------------------------------------------- DAPO
def dapo_overlong(lengths: Sequence[int] | np.ndarray, max_length: int, cache_length: int,
                  penalty_factor: float = 1.0) -> np.ndarray:
  """DAPO soft overlong punishment (tokens), added to the reward; in [-penalty_factor, 0].

  R_len = 0 if |y| <= L_max - L_c; ((L_max - L_c) - |y|) / L_c if L_max - L_c < |y| <= L_max;
  -1 beyond L_max; times penalty_factor. DAPO: L_max = 20480, L_c = 4096.
  """
  if not 0 < cache_length <= max_length:
    raise ValueError(f'need 0 < cache_length <= max_length, got {cache_length}, {max_length}')
  lengths = _lengths(lengths)
  budget = max_length - cache_length
  penalty = np.where(lengths <= budget, 0.0, (budget - lengths) / cache_length)
  return penalty_factor * np.where(lengths > max_length, -1.0, penalty)


# ---------------------------------------------------------------------------- LASER family
def laser(base: Sequence[float] | np.ndarray, correct: Sequence[float] | np.ndarray,
          lengths: Sequence[int] | np.ndarray, target_length: float | np.ndarray, alpha: float = 0.5) -> np.ndarray:
  """LASER: R = C + alpha * 1[correct] * 1[L <= L_T] (C: `laser_correctness`, +1 / -0.5 / -1)."""
  base, correct = _rows(base, 'base'), _correct(correct)
  lengths = _lengths(lengths, base.shape[0])
  return base + alpha * correct * (lengths <= np.asarray(target_length, np.float64))


def difficulty_buckets(correct: Sequence[float] | np.ndarray, num_generations: int) -> np.ndarray:
  """Per row, its group's LASER-D bucket: 0 easy (acc >= 2/3), 1 medium (>= 1/3), 2 hard; int [B]."""
  accuracy = _groups(_correct(correct), num_generations).mean(axis=1)  # [P]
  bucket = np.where(accuracy >= 2 / 3, 0, np.where(accuracy >= 1 / 3, 1, 2))
  return np.repeat(bucket, num_generations)


def _row_targets(correct: np.ndarray, num_generations: int, targets: Mapping[str, float]) -> np.ndarray:
  missing = [b for b in LASER_BUCKETS if b not in targets]
  if missing:
    raise ValueError(f'targets needs the buckets {list(LASER_BUCKETS)}, missing {missing}')
  table = np.array([targets[b] for b in LASER_BUCKETS], np.float64)
  return table[difficulty_buckets(correct, num_generations)]


def laser_d(base: Sequence[float] | np.ndarray, correct: Sequence[float] | np.ndarray,
            lengths: Sequence[int] | np.ndarray, num_generations: int, targets: Mapping[str, float],
            alpha: float = 0.5) -> np.ndarray:
  """LASER-D: LASER with the target length of the group's difficulty bucket (`difficulty_buckets`)."""
  correct = _correct(correct)
  return laser(base, correct, lengths, _row_targets(correct, num_generations, targets), alpha)


def laser_de(base: Sequence[float] | np.ndarray, correct: Sequence[float] | np.ndarray,
             lengths: Sequence[int] | np.ndarray, num_generations: int, targets: Mapping[str, float],
             repetitive: Sequence[bool] | np.ndarray, alpha: float = 0.5) -> np.ndarray:
  """LASER-DE: LASER-D, plus alpha for a wrong answer longer than its target that is not a repetition loop.

  "Wrong" is the answered-but-wrong case (base -0.5 in the Laser code; truncated responses, -1, get
  nothing). `repetitive`: per row, e.g. `ngram_repetition_start(tokens) < len(tokens)`.
  """
  base, correct = _rows(base, 'base'), _correct(correct)
  lengths = _lengths(lengths, base.shape[0])
  row_targets = _row_targets(correct, num_generations, targets)
  repetitive = np.asarray(repetitive, bool)
  if repetitive.shape != base.shape:
    raise ValueError(f'repetitive must have shape {base.shape}, got {repetitive.shape}')
  explore = (correct == 0) & (base == -0.5) & (lengths > row_targets) & ~repetitive
  return laser(base, correct, lengths, row_targets, alpha) + alpha * explore


def laser_d_target_lengths(correct: Sequence[float] | np.ndarray, lengths: Sequence[int] | np.ndarray,
                           num_generations: int, candidates: Sequence[float]) -> dict[str, float]:
  """LASER-D's periodic target update from a monitor batch: per bucket, the smallest budget that works.

  For each bucket and candidate L (ascending), ratio = the fraction of the bucket's responses that
  are correct and at most L tokens; the target is the smallest L with floor(ratio * n_b) >= 1,
  n_b = floor(2G/3) (easy), floor(G/3) (medium), 1 (hard); the largest candidate if none (as in
  the Laser code's 'floor' rounding, expected_n_correct = 1).
  """
  correct = _correct(correct)
  lengths = _lengths(lengths, correct.shape[0])
  candidates = sorted(float(c) for c in candidates)
  if not candidates:
    raise ValueError('candidates must not be empty')
  buckets = difficulty_buckets(correct, num_generations)
  needed = {'easy': (2 * num_generations) // 3, 'medium': num_generations // 3, 'hard': 1}
  out = {}
  for index, bucket in enumerate(LASER_BUCKETS):
    rows = buckets == index
    out[bucket] = candidates[-1]
    if not rows.any():
      continue
    for candidate in candidates:
      ratio = float(np.mean((correct[rows] == 1) & (lengths[rows] <= candidate)))
      if math.floor(ratio * needed[bucket]) >= 1:
        out[bucket] = candidate
        break
  return out


def ngram_repetition_start(tokens: Sequence[Hashable], n: int = 4) -> int:
  """Where a repetition loop starts, or len(tokens) if none: LASER-DE's detector, in linear time.

  As the Laser code (detect_token_ngram_repetition_optimized_reversed): n is 2 below 30 tokens,
  3 below 100, else min(4, n); scanning from the end, an n-gram (other than one repeated token)
  seen `threshold` times (2 below 200 tokens, else 3) with two consecutive occurrences closer
  than len/3 marks a repetition at its earliest occurrence; failing that, the first 2n-gram seen
  twice (from the end) does.
  """
  length = len(tokens)
  if length <= n * 2:
    return length
  n = 2 if length < 30 else 3 if length < 100 else min(4, n)
  threshold = 2 if length < 200 else 3
  positions: dict[tuple, list[int]] = collections.defaultdict(list)
  for i in range(length - n, -1, -1):
    gram = tuple(tokens[i:i + n])
    if n > 2 and len(set(gram)) == 1:
      continue
    seen = positions[gram]
    seen.append(i)  # descending order
    if len(seen) == threshold:
      if any(seen[j] - seen[j + 1] < length // 3 for j in range(len(seen) - 1)):
        return i
    elif len(seen) > threshold and seen[-2] - i < length // 3:
      return i
  if length >= n * 4:
    first: dict[tuple, int] = {}
    for i in range(length - 2 * n, -1, -1):
      pattern = tuple(tokens[i:i + 2 * n])
      if pattern in first:
        return i
      first[pattern] = i
  return length


# ---------------------------------------------------------------------------- length terms
def kimi_length_term(correct: Sequence[float] | np.ndarray, lengths: Sequence[int] | np.ndarray,
                     num_generations: int, coef: float = 0.4, eps: float = 1e-6) -> np.ndarray:
  """Kimi-1.5 length term (as the Laser code): lambda = 0.5 - (L - L_min)/(L_max - L_min + eps) per group.

  Correct rows get coef * lambda, wrong rows coef * min(0, lambda); a group of equal lengths
  (or a singleton) gets 0. Add it to the correctness reward.
  """
  correct = _correct(correct)
  grouped = _groups(_lengths(lengths, correct.shape[0]), num_generations)  # [P, G]
  low, high = grouped.min(axis=1, keepdims=True), grouped.max(axis=1, keepdims=True)
  lam = np.where(high > low, 0.5 - (grouped - low) / (high - low + eps), 0.0).reshape(-1)
  return coef * np.where(correct == 1, lam, np.minimum(lam, 0.0))


def alp(correct: Sequence[float] | np.ndarray, lengths: Sequence[int] | np.ndarray, num_generations: int,
        beta: float, length_norm: float) -> np.ndarray:
  """ALP: r = 1[correct] - (beta / N) * max(p_solved, 1/K) * |y|, p_solved the group's solve rate, K = G."""
  correct = _correct(correct)
  lengths = _lengths(lengths, correct.shape[0])
  if length_norm <= 0:
    raise ValueError(f'length_norm must be positive, got {length_norm}')
  solved = np.repeat(_groups(correct, num_generations).mean(axis=1), num_generations)
  return correct - beta / length_norm * np.maximum(solved, 1.0 / num_generations) * lengths


def grpo_lambda(correct: Sequence[float] | np.ndarray, lengths: Sequence[int] | np.ndarray, num_generations: int,
                fraction: float, coef: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
  """GRPO-lambda: the top `fraction` of groups by correctness ratio get 0/1 + Kimi length term, the rest 0/1.

  The selected count is ceil(fraction * P); ties in the ratio keep batch order (stable sort).

  Returns:
    (rewards [B], selected [P] bool).
  """
  if not 0.0 <= fraction <= 1.0:
    raise ValueError(f'fraction must be in [0, 1], got {fraction}')
  correct = _correct(correct)
  ratio = _groups(correct, num_generations).mean(axis=1)  # [P]
  count = math.ceil(fraction * ratio.shape[0] - 1e-9)
  selected = np.zeros(ratio.shape[0], bool)
  selected[np.argsort(-ratio, kind='stable')[:count]] = True
  term = kimi_length_term(correct, lengths, num_generations, coef)
  return correct + np.where(np.repeat(selected, num_generations), term, 0.0), selected


def dast(rewards: Sequence[float] | np.ndarray, lengths: Sequence[int] | np.ndarray, num_generations: int,
         max_length: float, full_reward: float = 3.0, a: float = -0.5, b: float = 0.5) -> np.ndarray:
  """UI-R1-E DAST length term, added to the reward.

  Per group: p = share of responses with reward >= full_reward, L_r their mean length,
  L_b = p * L_r + (1 - p) * L_max, lambda_i = (L_i - L_b) / L_b; full-reward responses get
  max(a * lambda_i + b, 0.1), the others min(0.9 * lambda_i - 0.1, -0.1).
  """
  if max_length <= 0:
    raise ValueError(f'max_length must be positive, got {max_length}')
  rewards = _rows(rewards, 'rewards')
  lengths = _lengths(lengths, rewards.shape[0])
  full = _groups(rewards >= full_reward, num_generations)  # [P, G]
  grouped = _groups(lengths, num_generations)
  p = full.mean(axis=1, keepdims=True)
  mean_full = np.where(full.any(axis=1, keepdims=True),
                       (grouped * full).sum(axis=1, keepdims=True) / np.maximum(full.sum(axis=1, keepdims=True), 1), 0.0)
  budget = p * mean_full + (1 - p) * max_length  # [P, 1]
  lam = np.where(budget > 0, (grouped - budget) / np.where(budget > 0, budget, 1.0), 0.0)
  return np.where(full, np.maximum(a * lam + b, 0.1), np.minimum(0.9 * lam - 0.1, -0.1)).reshape(-1)


# ---------------------------------------------------------------------------- Trust-GRPO (SophiaVL-R1)
def _extreme_groups(r_o: np.ndarray) -> np.ndarray:
  """[P] groups whose outcomes [P, G] are all >= 0.9 or all <= 0.1 (SophiaVL zeroes their R^t)."""
  return (r_o >= 0.9).all(axis=1) | (r_o <= 0.1).all(axis=1)


def thinking_query_mask(outcome: Sequence[float] | np.ndarray, threshold: float = 0.2) -> np.ndarray:
  """Rows whose thinking reward is worth querying (SophiaVL code: outcome >= 0.2); the rest get 0."""
  return _rows(outcome, 'outcome') >= threshold


def thinking_rows(outcome: Sequence[float] | np.ndarray, num_generations: int, *, query_threshold: float = 0.2,
                  zero_extreme_groups: bool = True) -> np.ndarray:
  """[B] bool: the rows whose thinking reward Trust-GRPO uses, so the only ones worth judging.

  outcome >= query_threshold (`thinking_query_mask`) and, with zero_extreme_groups, outside groups
  whose outcomes are all >= 0.9 or all <= 0.1 (their R^t is zeroed; the SophiaVL code queries no row
  of them).
  """
  wanted = thinking_query_mask(outcome, query_threshold)
  if zero_extreme_groups:
    wanted &= np.repeat(~_extreme_groups(_groups(_rows(outcome, 'outcome'), num_generations)), num_generations)
  return wanted


def trust_grpo(outcome: Sequence[float] | np.ndarray, thinking: Sequence[float] | np.ndarray, num_generations: int,
               step: int, *, alpha: float = 0.3, anneal_steps: float = 12000.0, zero_extreme_groups: bool = True,
               correct_threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
  """Trust-GRPO: R_i = R^o_i + gamma * alpha * exp(-step / T) * R^t_i, gamma per group.

  G_c = {R^o >= 0.5}, G_w = the rest, mu_c / mu_w their mean thinking rewards; gamma = 1 if
  mu_c >= mu_w (or if either set is empty: nothing to distrust), else exp(mu_c - mu_w). With
  zero_extreme_groups (the code), a group whose outcomes are all >= 0.9 or all <= 0.1 has R^t := 0.
  T: the paper's total steps; the released config passes 12000.

  Returns:
    (rewards [B], gamma [P]).
  """
  if anneal_steps <= 0:
    raise ValueError(f'anneal_steps must be positive, got {anneal_steps}')
  outcome, thinking = _rows(outcome, 'outcome'), _rows(thinking, 'thinking')
  if outcome.shape != thinking.shape:
    raise ValueError(f'outcome {outcome.shape} and thinking {thinking.shape} differ')
  r_o, r_t = _groups(outcome, num_generations), _groups(thinking, num_generations).copy()  # [P, G]
  if zero_extreme_groups:
    r_t[_extreme_groups(r_o)] = 0.0
  right = r_o >= correct_threshold
  n_right, n_wrong = right.sum(axis=1), (~right).sum(axis=1)
  mu_c = np.where(n_right > 0, (r_t * right).sum(axis=1) / np.maximum(n_right, 1), 0.0)
  mu_w = np.where(n_wrong > 0, (r_t * ~right).sum(axis=1) / np.maximum(n_wrong, 1), 0.0)
  trusted = (n_right == 0) | (n_wrong == 0) | (mu_c >= mu_w)
  gamma = np.where(trusted, 1.0, np.exp(np.minimum(mu_c - mu_w, 0.0)))  # [P]
  weight = alpha * math.exp(-step / anneal_steps)
  return (r_o + gamma[:, None] * weight * r_t).reshape(-1), gamma


# ---------------------------------------------------------------------------- Co-Reward
def _majority(answers: Sequence[str | None]) -> str | None:
  counts = collections.Counter(a for a in answers if a is not None)
  return counts.most_common(1)[0][0] if counts else None  # ties: the first seen


def co_reward(answers: Sequence[str | None], rephrased_answers: Sequence[str | None],
              num_generations: int) -> tuple[np.ndarray, np.ndarray]:
  """Co-Reward: r(o_i) = 1[ans(o_i) = majority of the rephrased group's answers], and symmetrically.

  Row b of `answers` answers question x, row b of `rephrased_answers` its rephrasing x'; groups
  are aligned. None (no answer) never matches; a group with no answer on the other side gives 0.
  Majority ties go to the answer seen first.

  Returns:
    (rewards of the original completions [B], rewards of the rephrased completions [B]).
  """
  if len(answers) != len(rephrased_answers):
    raise ValueError(f'{len(answers)} answers but {len(rephrased_answers)} rephrased answers')
  if num_generations < 1 or len(answers) % num_generations:
    raise ValueError(f'{len(answers)} rows do not split into groups of num_generations={num_generations}')
  original, rephrased = np.zeros(len(answers)), np.zeros(len(answers))
  for start in range(0, len(answers), num_generations):
    group = slice(start, start + num_generations)
    vote_rephrased, vote_original = _majority(rephrased_answers[group]), _majority(answers[group])
    for i in range(start, start + num_generations):
      original[i] = float(answers[i] is not None and answers[i] == vote_rephrased)
      rephrased[i] = float(rephrased_answers[i] is not None and rephrased_answers[i] == vote_original)
  return original, rephrased
