"""A step's rollout (prompts, their G completions, the scores) and DAPO dynamic sampling over rounds.

Shapes: P prompts, G completions per prompt, B = P*G rows (the G rows of a prompt adjacent),
N completion length.

Without dynamic sampling a step generates one round. With it, rounds of prompts are generated
and scored until `num_groups` groups with a spread in the filter metric are found (or the rounds
run out and dropped groups fill the batch; curricula/dynamic_sampling.py decides). The trained
batch is made of those groups; every offered group, dropped or not, stays available for logging,
since only all of them together estimate how the policy is doing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from rl_reason.curricula import dynamic_sampling
from rl_reason.parallel import multihost


@dataclasses.dataclass(frozen=True)
class Rollout:
  """P prompts and their completions.

  Attributes:
    examples: P task examples (prompt, images, meta).
    tokens: [B, N] int32 completion tokens, padding after the end.
    logprobs: [B, N] float32 sampler log-probs of the tokens, 0 after the end.
    lengths: [B] generated tokens (EOS included).
    finished: [B] bool, ended with EOS or a stop sequence.
    texts: B decoded completions.
    scores: `rewards.score_batch` output: [B] columns and 0-d counts.
    inputs: the encoded prompts (host arrays) when they are the examples' encoding in this order;
      None after rows are taken or rounds joined (then they are encoded again).
    entropies: [B, N] float32 per-token entropies of the sampler's temperature-scaled distribution,
      0 after the end; None unless a shaping scheme reads them (the sampler computes them on request).
  """

  examples: list[dict[str, Any]]
  tokens: np.ndarray
  logprobs: np.ndarray
  lengths: np.ndarray
  finished: np.ndarray
  texts: list[str]
  scores: dict[str, np.ndarray]
  inputs: dict[str, Any] | None = None
  entropies: np.ndarray | None = None

  @property
  def groups(self) -> int:
    return len(self.texts) // len(self.examples)

  def column(self, name: str) -> np.ndarray:
    """[P, G] one score column by group, NaN (not applicable) as 0."""
    return np.nan_to_num(self.scores[name], nan=0.0).reshape(len(self.examples), self.groups)


def take_groups(rollout: Rollout, groups: Sequence[int]) -> Rollout:
  """The rollout restricted to the given prompts (groups), in that order.

  The 0-d failure / timeout counts describe the scoring of the whole round, not rows: they are left
  out (log them from the offered rounds).
  """
  groups = np.asarray(groups, np.int64)
  rows = (groups[:, None] * rollout.groups + np.arange(rollout.groups)[None]).reshape(-1)
  scores = {k: np.asarray(v)[rows] for k, v in rollout.scores.items() if np.ndim(v)}
  return Rollout(examples=[rollout.examples[g] for g in groups], tokens=rollout.tokens[rows],
                 logprobs=rollout.logprobs[rows], lengths=rollout.lengths[rows], finished=rollout.finished[rows],
                 texts=[rollout.texts[r] for r in rows], scores=scores,
                 entropies=None if rollout.entropies is None else rollout.entropies[rows])


def whole_batch(rollout: Rollout) -> Rollout:
  """Every process's rows of a round, in process order (the round itself with one process).

  Arrays and 0-d counts go through `multihost.all_rows`, examples and texts through
  `multihost.all_objects`; the encoded prompts stay behind (None: each process encodes the share it
  trains on). A collective.
  """
  if jax.process_count() == 1:
    return rollout
  tokens, logprobs, lengths, finished, scores, entropies = multihost.all_rows(
      (rollout.tokens, rollout.logprobs, rollout.lengths, rollout.finished, dict(rollout.scores), rollout.entropies))
  parts = multihost.all_objects([(rollout.examples, rollout.texts)])
  examples = [e for part_examples, _ in parts for e in part_examples]
  texts = [t for _, part_texts in parts for t in part_texts]
  return Rollout(examples=examples, tokens=tokens, logprobs=logprobs, lengths=lengths, finished=finished,
                 texts=texts, scores=scores, entropies=entropies)


def _pad_columns(x: np.ndarray, width: int, value) -> np.ndarray:
  return np.pad(x, ((0, 0), (0, width - x.shape[1])), constant_values=value)


def concat(parts: Sequence[Rollout], pad_id: int) -> Rollout:
  """Rollouts joined row-wise (completions padded to the longest N); 0-d counts are summed."""
  if len(parts) == 1:
    return parts[0]
  width = max(p.tokens.shape[1] for p in parts)
  keys = parts[0].scores.keys()
  scores = {k: (sum(np.asarray(p.scores[k]) for p in parts) if np.ndim(parts[0].scores[k]) == 0
                else np.concatenate([p.scores[k] for p in parts])) for k in keys}
  return Rollout(examples=[e for p in parts for e in p.examples],
                 tokens=np.concatenate([_pad_columns(p.tokens, width, pad_id) for p in parts]),
                 logprobs=np.concatenate([_pad_columns(p.logprobs, width, 0.0) for p in parts]),
                 lengths=np.concatenate([p.lengths for p in parts]),
                 finished=np.concatenate([p.finished for p in parts]),
                 texts=[t for p in parts for t in p.texts], scores=scores,
                 entropies=None if parts[0].entropies is None
                 else np.concatenate([_pad_columns(p.entropies, width, 0.0) for p in parts]))


def dynamic_rollout(generate: Callable[[int], Rollout], cfg: dynamic_sampling.DynamicSamplingConfig,
                    num_groups: int, filter_column: str, pad_id: int) -> tuple[Rollout, Rollout, dict[str, float]]:
  """Generates rounds until `num_groups` mixed groups are found (DAPO), then builds the batch.

  Args:
    generate: round index -> the round's Rollout (the caller draws the next prompts each call).
    cfg: the dynamic sampling settings.
    num_groups: P, groups in the trained batch.
    filter_column: the score column the filter reads ('total' for metric 'reward', the binary
      accuracy reward for 'accuracy').
    pad_id: completion padding id, for rounds of different lengths.

  Returns:
    The trained batch (P groups: kept in offer order, then fills), every offered group (all
    rounds, for unbiased logging), and the dynamic_sampling/* counts.
  """
  sampler = dynamic_sampling.DynamicSampler(num_groups, cfg)
  rounds: list[Rollout] = []
  while not sampler.done():
    part = generate(len(rounds))
    try:
      sampler.offer(part.column(filter_column))
    except ValueError as error:
      raise ValueError(f'dynamic sampling on score column {filter_column!r}: {error}') from None
    rounds.append(part)
  result = sampler.finalize()
  by_round: list[Rollout] = []
  for round_index, row in result.groups:  # consecutive pairs from one round are taken together
    by_round.append(take_groups(rounds[round_index], [row]))
  return concat(by_round, pad_id), concat(rounds, pad_id), result.metrics
