"""Combinators: weighted sums and format-gated outcomes of registered rewards, and the paper recipes.

A combinator is a picklable callable (it names its parts, so pool workers rebuild it from their
own registry) that returns the parts as sub-scores next to 'overall'. For the Jigsaw-R1
`reward_reduction=none` scheme (normalise each reward within its group, then sum the advantages)
there is nothing to combine here: `reward_columns` hands the advantage stage one column per
reward and the weights.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rl_reason.rewards import registry, scoring

# How the advantage stage combines rewards: 'sum' normalises score_batch's weighted 'total';
# 'none' hands `reward_columns` to a per-reward estimator (rl.advantages.PER_REWARD_ESTIMATORS),
# which normalises each column within its group before combining (Jigsaw-R1 reward_reduction=none).
REDUCTIONS = ('sum', 'none')


def _part(name: str, text: str, meta: Mapping[str, Any]) -> float:
  reward = registry.get(name)
  value, _ = scoring.normalize(reward, reward.fn(text, meta))
  return value


@dataclasses.dataclass(frozen=True)
class WeightedSum:
  """sum_i w_i * reward_i over the applicable parts (None if none applies); parts as sub-scores."""

  terms: tuple[tuple[str, float], ...]

  @property
  def components(self) -> tuple[str, ...]:
    return tuple(name for name, _ in self.terms)

  def range(self) -> tuple[float, float]:
    low = high = 0.0
    for name, weight in self.terms:
      a, b = (weight * v for v in registry.get(name).range)
      low, high = low + min(a, b), high + max(a, b)
    return low, high

  def __call__(self, text: str, meta: Mapping[str, Any]) -> dict[str, float | None]:
    parts = {name: _part(name, text, meta) for name, _ in self.terms}
    applicable = [(weight, parts[name]) for name, weight in self.terms if not math.isnan(parts[name])]
    overall = sum(weight * value for weight, value in applicable) if applicable else None
    return dict(parts, overall=overall)


@dataclasses.dataclass(frozen=True)
class FormatGated:
  """The outcome reward if the format reward reaches `threshold`, else 0 (SophiaVL-R1)."""

  format_reward: str
  outcome_reward: str
  threshold: float = 1.0

  @property
  def components(self) -> tuple[str, ...]:
    return (self.format_reward, self.outcome_reward)

  def range(self) -> tuple[float, float]:
    low, high = registry.get(self.outcome_reward).range
    return min(low, 0.0), max(high, 0.0)

  def __call__(self, text: str, meta: Mapping[str, Any]) -> dict[str, float | None]:
    fmt = _part(self.format_reward, text, meta)
    passed = not math.isnan(fmt) and fmt >= self.threshold
    outcome = _part(self.outcome_reward, text, meta) if passed else 0.0
    return {'format': fmt, 'outcome': outcome, 'overall': None if math.isnan(outcome) else outcome}


def register_combination(name: str, combination: WeightedSum | FormatGated, *, source: str, doc: str) -> None:
  """Registers a combination; its range and required meta keys come from its parts."""
  required = tuple(dict.fromkeys(k for part in combination.components for k in registry.get(part).required_meta))
  optional = tuple(dict.fromkeys(k for part in combination.components for k in registry.get(part).optional_meta
                                 if k not in required))
  registry.register(name, range=combination.range(), required_meta=required, optional_meta=optional,
                    source=source, doc=doc)(combination)


def reward_columns(scores: Mapping[str, np.ndarray],
                   weights: Mapping[str, float]) -> tuple[list[str], np.ndarray, np.ndarray]:
  """(reward names, [N, R] unweighted columns, [R] weights) for the per-reward advantage estimators.

  Not applicable (NaN) becomes 0.0, as in score_batch's 'total'. `rl.advantages` normalise-then-
  sum / normalise-then-mean take these columns and weights (Jigsaw-R1 reward_reduction=none).
  """
  names = list(weights)
  if not names:
    raise ValueError('reward_columns needs at least one reward')
  columns = np.stack([np.nan_to_num(np.asarray(scores[name], np.float64), nan=0.0) for name in names], axis=1)
  return names, columns, np.array([weights[name] for name in names], np.float64)


def _weighted(terms: Sequence[tuple[str, float]]) -> WeightedSum:
  return WeightedSum(tuple(terms))


register_combination('jigsaw_r1', _weighted([('jigsaw_grid', 1.0), ('jigsaw_format', 0.5)]), source='Jigsaw-R1',
                     doc='Jigsaw-R1: 1.0 * grid accuracy + 0.5 * format.')
register_combination('cls_rl', _weighted([('cls_accuracy', 1.0), ('think_answer_format', 1.0)]), source='CLS-RL',
                     doc='CLS-RL: accuracy + think/answer format.')
register_combination('lmm_r1', _weighted([('math_equiv', 1.0), ('think_answer_format', 0.5)]), source='LMM-R1',
                     doc='LMM-R1: accuracy + 0.5 * format.')
register_combination('univg_r1', _weighted([('iou_box_inclusive', 1.0), ('univg_format', 1.0)]), source='UniVG-R1',
                     doc='UniVG-R1: IoU + format.')
register_combination('tw_grpo', _weighted([('set_subset_soft', 1.0), ('tw_grpo_format', 1.0)]), source='TW-GRPO',
                     doc='TW-GRPO: soft multi-choice accuracy + format.')
register_combination('rule_reasoner', _weighted([('rule_acc', 1.0), ('ordered_tags_format', 1.0)]),
                     source='RuleReasoner', doc='RuleReasoner: accuracy (F1 for sets) + ordered-tags format (0/-1).')
register_combination('sophia_exact', FormatGated('think_answer_format', 'exact_match_ci'), source='SophiaVL-R1',
                     doc='SophiaVL-R1 numeric / multiple-choice outcome: exact match, 0 if the format fails.')
register_combination('sophia_ocr', FormatGated('think_answer_format', 'ocr_exp_neg_wer'), source='SophiaVL-R1',
                     doc='SophiaVL-R1 OCR outcome: exp(-WER), 0 if the format fails.')
register_combination('sophia_free_form', FormatGated('think_answer_format', 'rouge_mean'), source='SophiaVL-R1',
                     doc='SophiaVL-R1 free-form outcome: mean ROUGE-1/2/L F1, 0 if the format fails.')
