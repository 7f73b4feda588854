"""Batch scoring: every weighted reward on every completion, never raising, with per-reward metrics.

One evaluation is one (completion, reward) pair. It runs under a wall-clock deadline; an exception
or a timeout scores that evaluation as failed (the reward's worst value, `RewardFn.failure_value`),
is logged with the start of the offending completion, and is counted. Evaluations run in-process
(`workers=0`) or in a pool of worker processes (`workers>0`, see `rewards.pool`).

Timeouts: in the pool they are always enforced, softly inside the worker (a SIGALRM deadline) and
hard from the parent (the worker is killed and replaced `pool.HARD_KILL_GRACE_S` after the
deadline). In-process they are enforced by the same SIGALRM deadline when score_batch runs on the
main thread, which interrupts Python code (loops, sleeps, regexes) but not C code that never
returns to the interpreter; off the main thread nothing can interrupt a reward, and a warning
says so once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from absl import logging

from rl_reason.rewards import deadline, registry

DEFAULT_TIMEOUT_S = 10.0  # per evaluation; rule rewards take microseconds to milliseconds
LOGGED_TEXT_CHARS = 200
LOGGED_FAILURES_PER_REWARD = 5  # per batch; the counts in the metrics hold the rest

OK, ERROR, TIMEOUT = 'ok', 'error', 'timeout'
# An evaluation's result: (status, overall value, sub-scores or None, message).
Result = tuple[str, float, dict[str, float] | None, str]
_warned_no_deadline = [False]


def _as_float(value: Any, what: str) -> float:
  if value is None:
    return math.nan
  if isinstance(value, (bool, int, float, np.bool_, np.integer, np.floating)):
    return float(value)
  raise TypeError(f'{what} must be a number or None, got {type(value).__name__}')


def normalize(reward: registry.RewardFn, raw: Any) -> tuple[float, dict[str, float] | None]:
  """(overall clipped into the reward's range or NaN, finite-or-NaN sub-scores or None).

  Raises:
    TypeError / ValueError: the reward returned something that is not a score (a bug in it).
  """
  subs = None
  if isinstance(raw, Mapping):
    if 'overall' not in raw:
      raise ValueError(f'a dict reward value needs the key "overall", got keys {sorted(map(str, raw))}')
    subs = {}
    for key, value in raw.items():
      if key == 'overall':
        continue
      if not isinstance(key, str) or not registry.NAME.fullmatch(key):
        raise ValueError(f'sub-score name {key!r} must match {registry.NAME.pattern}')
      sub = _as_float(value, f'sub-score {key!r}')
      if math.isinf(sub):
        raise ValueError(f'sub-score {key!r} is {sub}')
      subs[key] = sub
    raw = raw['overall']
  value = _as_float(raw, 'a reward value')
  if math.isnan(value):
    return math.nan, subs
  return min(max(value, reward.range[0]), reward.range[1]), subs


def evaluate(reward: registry.RewardFn, text: str, meta: Mapping[str, Any], timeout_s: float | None) -> Result:
  """Runs one reward on one completion under a deadline; never raises (but passes KeyboardInterrupt)."""
  try:
    with deadline.deadline(timeout_s) as token:
      if token is None and timeout_s is not None and not _warned_no_deadline[0]:
        _warned_no_deadline[0] = True
        logging.warning('reward timeouts cannot be enforced in-process off the main thread; use workers > 0')
      raw = reward.fn(text, meta)
    value, subs = normalize(reward, raw)
    return OK, value, subs, ''
  except deadline.RewardTimeout as e:
    return TIMEOUT, reward.failure_value, None, str(e)
  except (Exception, SystemExit) as e:  # pylint: disable=broad-except  (a reward calling exit() too)
    return ERROR, reward.failure_value, None, f'{type(e).__name__}: {e}'[:1000]


def _run_in_process(rewards: Sequence[registry.RewardFn], completions: Sequence[str],
                    metas: Sequence[Mapping[str, Any]], timeout_s: float | None) -> list[list[Result]]:
  return [[evaluate(reward, text, meta, timeout_s) for text, meta in zip(completions, metas)] for reward in rewards]


def score_batch(completions: Sequence[str], metas: Sequence[Mapping[str, Any]], weights: Mapping[str, float], *,
                workers: int = 0, timeout_s: float | None = DEFAULT_TIMEOUT_S,
                pool: Any = None) -> dict[str, np.ndarray]:
  """Scores every completion with every weighted reward.

  Args:
    completions: N decoded completions.
    metas: the N task metas (ground truth, sizes, ...).
    weights: reward name -> weight in the total (0.0: computed and returned, not in the total).
    workers: 0 scores in this process; k > 0 uses a shared pool of k worker processes
      (`rewards.pool.shared_pool`), started on first use and restarted when a worker dies or hangs.
    timeout_s: wall-clock budget of one (completion, reward) evaluation; None: no limit.
    pool: a `rewards.pool.RewardPool` to use instead of the shared one (overrides `workers`).

  Returns:
    - `name`: float64 [N] per reward, its overall value clipped into its range (NaN: not
      applicable; the reward's worst value where the evaluation failed);
    - `name/sub`: float64 [N] per sub-score of a reward that returns a dict (NaN where absent);
    - 'total': float64 [N], the weighted sum over the applicable rewards (0.0 if none applies);
    - 'failures': 0-d int64, evaluations that raised or timed out (or whose worker died);
      'timeouts': 0-d int64, those of them that timed out;
    - 'failures/name', 'timeouts/name': 0-d int64, the same per reward.
  """
  if len(completions) != len(metas):
    raise ValueError(f'{len(completions)} completions but {len(metas)} metas')
  rewards = [registry.get(name) for name in weights]
  if pool is None and workers > 0:
    from rl_reason.rewards import pool as pool_lib  # pylint: disable=import-outside-toplevel
    pool = pool_lib.shared_pool(workers)
  if pool is not None:
    results = pool.run(rewards, completions, metas, timeout_s)
  else:
    results = _run_in_process(rewards, completions, metas, timeout_s)
  return _collect(rewards, weights, completions, results)


def _collect(rewards: Sequence[registry.RewardFn], weights: Mapping[str, float], completions: Sequence[str],
             results: list[list[Result]]) -> dict[str, np.ndarray]:
  n = len(completions)
  scores: dict[str, np.ndarray] = {}
  counts: dict[str, np.ndarray] = {}
  total = np.zeros(n, np.float64)
  failures = timeouts = 0
  for reward, column in zip(rewards, results):
    values = np.array([value for _, value, _, _ in column], np.float64)
    scores[reward.name] = values
    sub_names = sorted({key for _, _, subs, _ in column if subs for key in subs})
    for sub in sub_names:
      scores[f'{reward.name}/{sub}'] = np.array(
          [subs.get(sub, math.nan) if subs else math.nan for _, _, subs, _ in column], np.float64)
    failed = [i for i, (status, _, _, _) in enumerate(column) if status != OK]
    timed_out = sum(column[i][0] == TIMEOUT for i in failed)
    for logged, i in enumerate(failed):
      if logged == LOGGED_FAILURES_PER_REWARD:
        logging.warning('reward %r: %d more failures in this batch not logged', reward.name, len(failed) - logged)
        break
      status, _, _, message = column[i]
      logging.warning('reward %r %s on item %d (%s); scoring %g. Completion starts: %r', reward.name,
                      'timed out' if status == TIMEOUT else 'failed', i, message, reward.failure_value,
                      completions[i][:LOGGED_TEXT_CHARS])
    counts[f'failures/{reward.name}'] = np.array(len(failed), np.int64)
    counts[f'timeouts/{reward.name}'] = np.array(timed_out, np.int64)
    failures += len(failed)
    timeouts += timed_out
    total += np.where(np.isnan(values), 0.0, weights[reward.name] * values)  # not applicable: no contribution
  scores['total'] = total
  scores['failures'] = np.array(failures, np.int64)
  scores['timeouts'] = np.array(timeouts, np.int64)
  scores.update(counts)
  return scores


def batch_metrics(scores: Mapping[str, np.ndarray], prefix: str = 'rewards/') -> dict[str, float]:
  """Scalar metrics of one score_batch result: the mean of every column and every count.

  Returns:
    `prefix + key` for every key of `scores`: the mean over the applicable items of an [N]
    column (NaN when none applies), or the count of a 0-d entry; plus `prefix + key +
    '/applicable'`, the fraction of items where a reward or sub-score applies.
  """
  out = {}
  for key, value in scores.items():
    value = np.asarray(value)
    if value.ndim == 0:
      out[prefix + key] = float(value)
      continue
    applicable = ~np.isnan(value)
    out[prefix + key] = float(value[applicable].mean()) if applicable.any() else math.nan
    if key != 'total':
      out[prefix + key + '/applicable'] = float(applicable.mean()) if value.size else math.nan
  return out
