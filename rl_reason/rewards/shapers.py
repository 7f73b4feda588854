"""Reward-shaping schemes the training loop applies: registered by name, configured, with their state.

The optional `shaping` config section maps scheme names to their fields, e.g.

    c.shaping = {'dapo_overlong': {'cache_length': 4096},
                 'laser_d': {'correct': 'laser_correctness', 'lower_bound': 4096, 'upper_bound': 16384,
                             'interval': 1024}}

`parse(section, max_new_tokens=...)` validates it at config time into frozen `Selected` entries: an
unknown scheme or field, a missing required field or an unknown reward name is a ValueError naming
the key. Every scheme reads only inputs of `LOOP_INPUTS` (checked when it registers); the loop
computes the costlier ones only for the schemes that read them.
Every scheme also takes `end_step` (0: every step; else it applies at steps < end_step).

`Shaper(selected).apply(StepInputs(...))` runs once per RL step, after scoring and before the
advantages. Each scheme computes an additive term [B] from the step's task scores and rollout
(lengths in tokens, texts, the sampler's log-probs and entropies, a frozen listener's probabilities,
the step), never from another scheme's
output, so their order does not matter; the trained reward is the task's weighted total plus the
sum of the terms. Schemes that the papers write as a whole reward R = C + bonus (LASER, ALP, GRPO-λ,
Trust-GRPO) contribute R - C: with the run's reward equal to C, the trained reward is the paper's R.

"Correct" is always a registered reward's column at or above `correct_at` (NaN: not correct), so
a 0/1 reward (math_equiv, jigsaw_solved) and LASER's base C (+1 correct) both serve.

Shapes: B = P*G completions in P groups of G consecutive rows; N completion tokens.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from rl_reason.rewards import math_answer, model_signals, registry, shaping

# What the training loop hands the schemes each step (StepInputs); registering a scheme that needs
# anything else fails. Provided when a selected scheme needs them: 'entropies' (the sampler computes
# them), 'rephrased' (the step's prompts come in pairs, each followed by its rephrasing: groups 2k and
# 2k+1 answer one question), 'listener' (a frozen listener's probability of the right answer:
# rl/listener.py), 'judge' (a thinking reward model's scores: rl/judge.py).
LOOP_INPUTS = frozenset({'scores', 'lengths', 'tokens', 'logprobs', 'entropies', 'texts', 'rephrased', 'listener',
                         'judge', 'step'})
# Schemes whose terms overlap: selecting two of one set would count the same bonus twice.
_EXCLUSIVE = (frozenset({'laser', 'laser_d', 'laser_de'}), frozenset({'kimi_length', 'grpo_lambda'}))
COMMON_FIELDS = ('end_step',)


@dataclasses.dataclass(frozen=True)
class StepInputs:
  """One RL step's data, as the loop hands it to every scheme.

  Attributes:
    total: [B] the task's weighted reward (score_batch 'total', not-applicable as 0).
    scores: score_batch's columns (every reward a scheme names is scored, at weight 0 if unweighted).
    lengths: [B] completion lengths in tokens (the EOS token included), as the sampler reports them.
    tokens: [B, N] sampled tokens (pad after each row's length).
    logprobs: [B, N] the sampler's log-probs of the sampled tokens (temperature-scaled distribution).
    entropies: [B, N] per-token entropies of the sampler's temperature-scaled distribution (0 after
      the end), or None when no selected scheme needs them (the sampler computes them on request).
    texts: B decoded completions.
    listener: [B] a frozen listener's probability of the right answer given each completion's
      reasoning, NaN where the example has no candidates (rl/listener.py); None unless read.
    judge: [B] a thinking reward model's scores in [0, 1], NaN on the rows it was not asked about
      (rl/judge.py); None unless read.
    num_generations: G.
    step: the 0-based RL step.
    token_text: token id -> its text ('' for special tokens), to find spans such as '<answer>'.
  """

  total: np.ndarray
  scores: Mapping[str, np.ndarray]
  lengths: np.ndarray
  tokens: np.ndarray
  logprobs: np.ndarray
  num_generations: int
  step: int
  token_text: Callable[[int], str]
  entropies: np.ndarray | None = None
  texts: Sequence[str] = ()
  listener: np.ndarray | None = None
  judge: np.ndarray | None = None


# ---------------------------------------------------------------------------- config checks
def _reward(name: str, what: str) -> str:
  if not isinstance(name, str) or not registry.exists(name):
    raise ValueError(f'{what}: reward {name!r} unknown; valid rewards: {registry.names()}')
  return name


def _finite(value: float, what: str, *, low: float | None = None, high: float | None = None) -> float:
  value = float(value)
  if not math.isfinite(value) or (low is not None and value < low) or (high is not None and value > high):
    raise ValueError(f'{what} must be finite and in [{low}, {high}], got {value}')
  return value


def _positive_int(value: int, what: str) -> int:
  if int(value) != value or value < 1:
    raise ValueError(f'{what} must be a positive integer, got {value!r}')
  return int(value)


# ---------------------------------------------------------------------------- step helpers
def _column(scores: Mapping[str, np.ndarray], name: str, scheme: str) -> np.ndarray:
  """A reward's column of the step's scores, named in the error when the step was not scored with it."""
  if name not in scores:
    raise ValueError(f'shaping.{scheme}: the step was not scored with reward {name!r}')
  return np.asarray(scores[name], np.float64)


def _correct(x: StepInputs, name: str, at: float, scheme: str) -> np.ndarray:
  column = _column(x.scores, name, scheme)
  return (np.nan_to_num(column, nan=-np.inf) >= at).astype(np.float64)


def _row_texts(x: StepInputs, row: int) -> tuple[str, np.ndarray, np.ndarray]:
  """(the row's text as its tokens' pieces joined, start and end offset of every token)."""
  pieces = [x.token_text(int(t)) for t in x.tokens[row, :int(x.lengths[row])]]
  ends = np.cumsum([len(p) for p in pieces], dtype=np.int64)
  return ''.join(pieces), ends - np.array([len(p) for p in pieces], np.int64), ends


def answer_mask(x: StepInputs, start_marker: str, end_marker: str) -> np.ndarray:
  """[B, N] 1 on the tokens with text between the last `start_marker` and the next `end_marker`.

  '' as start_marker: from the first token; '' as end_marker (or none after the start): to the end.
  A row without the start marker has no answer tokens. Tokens without text (EOS) never count.
  """
  mask = np.zeros(x.tokens.shape, np.float64)
  for row in range(x.tokens.shape[0]):
    text, starts, ends = _row_texts(x, row)
    begin = 0
    if start_marker:
      found = text.rfind(start_marker)
      if found < 0:
        continue
      begin = found + len(start_marker)
    stop = text.find(end_marker, begin) if end_marker else -1
    stop = len(text) if stop < 0 else stop
    mask[row, :len(starts)] = (starts < stop) & (ends > begin) & (ends > starts)
  return mask


def phase_masks(x: StepInputs, marker: str) -> tuple[np.ndarray, np.ndarray]:
  """([B, N] thinking tokens: before the first `marker`; [B, N] answer tokens: after it).

  A row without the marker never closed its thinking: all its tokens are thinking tokens.
  """
  think = np.zeros(x.tokens.shape, np.float64)
  answer = np.zeros(x.tokens.shape, np.float64)
  for row in range(x.tokens.shape[0]):
    text, starts, ends = _row_texts(x, row)
    has_text = ends > starts
    found = text.find(marker)
    if found < 0:
      think[row, :len(starts)] = has_text
      continue
    think[row, :len(starts)] = has_text & (starts < found)
    answer[row, :len(starts)] = has_text & (ends > found + len(marker)) & ~(starts < found)
  return think, answer


# ---------------------------------------------------------------------------- registry
class Scheme:
  """A scheme at run time, built from its frozen config. Subclasses implement `term`, and
  `reward_names`, `observe`, `state` / `restore` where they read reward columns or keep state."""

  batch_level = False  # reads statistics across groups: must see the whole batch (one process)

  def __init__(self, cfg: Any):
    self.cfg = cfg

  def reward_names(self) -> tuple[str, ...]:
    """Registered rewards whose columns the scheme reads (the loop scores them)."""
    return ()

  def needs(self) -> frozenset[str]:
    """The loop inputs this configured scheme reads: those it registered, or fewer for some settings."""
    return _REGISTRY[self.name].needs

  def term(self, x: StepInputs) -> tuple[np.ndarray, dict[str, float]]:
    """(the additive term [B], scalar metrics)."""
    raise NotImplementedError

  def observe(self, x: StepInputs) -> None:
    """After `term` on the same step: update evolving state (none by default)."""
    del x

  def state(self) -> dict[str, Any] | None:
    """Plain JSON data for the checkpoint; None for a stateless scheme."""
    return None

  def restore(self, state: Mapping[str, Any]) -> None:
    del state


@dataclasses.dataclass(frozen=True)
class _Entry:
  cls: type
  config_cls: type
  needs: frozenset[str]
  source: str
  doc: str


_REGISTRY: dict[str, _Entry] = {}


def register(name: str, config_cls: type, *, needs: Sequence[str], source: str) -> Callable[[type], type]:
  """Class decorator registering a Scheme subclass and its frozen config dataclass under `name`."""

  unknown = sorted(set(needs) - LOOP_INPUTS)
  if unknown:  # a scheme the loop could not feed is refused here, not at a run's start
    raise ValueError(f'shaping scheme {name!r} needs {unknown}, which the training loop does not provide '
                     f'(it provides {sorted(LOOP_INPUTS)})')

  def decorator(cls: type) -> type:
    if name in _REGISTRY:
      raise ValueError(f'shaping scheme {name!r} is already registered')
    fields = {f.name for f in dataclasses.fields(config_cls)}
    if fields & set(COMMON_FIELDS):
      raise ValueError(f'shaping scheme {name!r}: {sorted(fields & set(COMMON_FIELDS))} are common fields')
    doc = (cls.__doc__ or '').strip().split('\n')[0]
    _REGISTRY[name] = _Entry(cls=cls, config_cls=config_cls, needs=frozenset(needs), source=source, doc=doc)
    cls.name = name
    return cls

  return decorator


def names() -> list[str]:
  return sorted(_REGISTRY)


# ---------------------------------------------------------------------------- DAPO
@dataclasses.dataclass(frozen=True)
class DapoOverlongConfig:
  """Attributes:
    cache_length: L_c, the band below max_length over which the penalty grows from 0 to -1 (DAPO 4096).
    max_length: L_max in tokens; 0 = rollout.max_new_tokens (DAPO 20480, its response cap).
    penalty_factor: scale of the penalty.
  """

  cache_length: int
  max_length: int = 0
  penalty_factor: float = 1.0
  _rollout_lengths = ('max_length',)  # 0 -> rollout.max_new_tokens at parse time

  def __post_init__(self):
    _positive_int(self.cache_length, 'cache_length')
    if not 0 < self.cache_length <= self.max_length:
      raise ValueError(f'need 0 < cache_length <= max_length, got {self.cache_length}, {self.max_length}')
    _finite(self.penalty_factor, 'penalty_factor', low=0.0)


@register('dapo_overlong', DapoOverlongConfig, needs=('lengths',), source='DAPO')
class DapoOverlong(Scheme):
  """DAPO soft overlong punishment in tokens: 0 up to L_max - L_c, linear to -1 at L_max, -1 beyond."""

  def term(self, x):
    term = shaping.dapo_overlong(x.lengths, self.cfg.max_length, self.cfg.cache_length, self.cfg.penalty_factor)
    return term, {'penalized_frac': float(np.mean(term < 0))}


# ---------------------------------------------------------------------------- LASER family
@dataclasses.dataclass(frozen=True)
class LaserConfig:
  """Attributes:
    correct: the reward whose column marks correct answers (e.g. laser_correctness, math_equiv).
    target_length: L_T in tokens.
    alpha: the bonus of a correct answer within L_T (0.5).
    correct_at: a row is correct when its `correct` column is >= this.
  """

  correct: str
  target_length: int
  alpha: float = 0.5
  correct_at: float = 1.0

  def __post_init__(self):
    _reward(self.correct, 'correct')
    _positive_int(self.target_length, 'target_length')
    _finite(self.alpha, 'alpha')
    _finite(self.correct_at, 'correct_at')


@register('laser', LaserConfig, needs=('scores', 'lengths'), source='LASER')
class Laser(Scheme):
  """LASER: + alpha * 1[correct] * 1[L <= L_T] (R = C + that, with C the run's reward)."""

  def reward_names(self):
    return (self.cfg.correct,)

  def term(self, x):
    correct = _correct(x, self.cfg.correct, self.cfg.correct_at, self.name)
    term = shaping.laser(np.zeros_like(correct), correct, x.lengths, self.cfg.target_length, self.cfg.alpha)
    return term, {'bonus_frac': float(np.mean(term != 0))}


@dataclasses.dataclass(frozen=True)
class LaserDConfig:
  """Attributes:
    correct, alpha, correct_at: as `laser`.
    lower_bound, upper_bound, interval: candidate target lengths lower..upper by interval (tokens;
      the Laser scripts: 4096..16384 by 1024). Every bucket starts at upper_bound (no pressure).
    update_every: steps between target updates (Laser's monitor_freq 20), from the training batches.
    monitor_steps: how many of the last steps' batches an update pools (1..update_every).
  """

  correct: str
  lower_bound: int
  upper_bound: int
  interval: int
  update_every: int = 20
  monitor_steps: int = 1
  alpha: float = 0.5
  correct_at: float = 1.0

  def __post_init__(self):
    _reward(self.correct, 'correct')
    _finite(self.alpha, 'alpha')
    _finite(self.correct_at, 'correct_at')
    self.updater_config()  # validates the bounds, interval and cadence

  def updater_config(self):
    from rl_reason.curricula import laser as laser_curriculum  # pylint: disable=import-outside-toplevel  (cycle)
    return laser_curriculum.LaserDConfig(lower_bound=self.lower_bound, upper_bound=self.upper_bound,
                                         interval=self.interval, update_every=self.update_every, source='train',
                                         monitor_steps=self.monitor_steps)


@register('laser_d', LaserDConfig, needs=('scores', 'lengths'), source='LASER-D')
class LaserD(Scheme):
  """LASER-D: LASER with the target of the group's difficulty bucket, targets updated from the run."""

  batch_level = True  # the target update pools every group of the batch

  def __init__(self, cfg):
    super().__init__(cfg)
    from rl_reason.curricula import laser as laser_curriculum  # pylint: disable=import-outside-toplevel  (cycle)
    # The curriculum's updater (state, update rule, checks) driven from here: its targets are shaping state.
    self.updater = laser_curriculum.LaserD(cfg.updater_config())

  def reward_names(self):
    return (self.cfg.correct,)

  def _targets_metrics(self) -> dict[str, float]:
    return {f'target/{bucket}': float(t) for bucket, t in self.updater.targets.items()}

  def term(self, x):
    correct = _correct(x, self.cfg.correct, self.cfg.correct_at, self.name)
    term = shaping.laser_d(np.zeros_like(correct), correct, x.lengths, x.num_generations, self.updater.targets,
                           self.cfg.alpha)
    return term, {'bonus_frac': float(np.mean(term != 0)), **self._targets_metrics()}

  def observe(self, x):
    correct = _correct(x, self.cfg.correct, self.cfg.correct_at, self.name)
    groups = x.num_generations
    self.updater.observe(x.step, {}, {'accuracy': correct.reshape(-1, groups),
                                      'length': np.asarray(x.lengths).reshape(-1, groups)})

  def state(self):
    return self.updater.state()

  def restore(self, state):
    self.updater.restore(state)


@dataclasses.dataclass(frozen=True)
class LaserDEConfig(LaserDConfig):
  """Attributes (as laser_d, plus):
    base: the reward giving -0.5 to answered-but-wrong completions (laser_correctness); only those
      are explored (truncated ones, -1, are not).
    ngram: the repetition detector's largest n (rewards.shaping.ngram_repetition_start).
  """

  base: str = 'laser_correctness'
  ngram: int = 4

  def __post_init__(self):
    super().__post_init__()
    _reward(self.base, 'base')
    _positive_int(self.ngram, 'ngram')


@register('laser_de', LaserDEConfig, needs=('scores', 'lengths', 'tokens'), source='LASER-DE')
class LaserDE(LaserD):
  """LASER-DE: LASER-D, plus alpha for a wrong answer longer than its target that is not a repetition loop."""

  def reward_names(self):
    return (self.cfg.correct, self.cfg.base)

  def term(self, x):
    correct = _correct(x, self.cfg.correct, self.cfg.correct_at, self.name)
    base = np.nan_to_num(_column(x.scores, self.cfg.base, self.name), nan=0.0)
    targets = self.updater.targets
    row_targets = np.array([targets[b] for b in shaping.LASER_BUCKETS])[
        shaping.difficulty_buckets(correct, x.num_generations)]
    # The detector is linear but in Python: run it only where its answer matters.
    candidates = np.flatnonzero((correct == 0) & (base == -0.5) & (x.lengths > row_targets))
    repetitive = np.zeros(base.shape, bool)
    for row in candidates:
      tokens = x.tokens[row, :int(x.lengths[row])].tolist()
      repetitive[row] = shaping.ngram_repetition_start(tokens, self.cfg.ngram) < len(tokens)
    term = shaping.laser_de(base, correct, x.lengths, x.num_generations, targets, repetitive, self.cfg.alpha) - base
    return term, {'bonus_frac': float(np.mean(term != 0)), 'repetitive_frac': float(np.mean(repetitive)),
                  **self._targets_metrics()}


# ---------------------------------------------------------------------------- length terms
@dataclasses.dataclass(frozen=True)
class AlpConfig:
  """Attributes:
    correct, correct_at: as `laser`.
    beta: the penalty weight.
    length_norm: N, the length normaliser in tokens; 0 = rollout.max_new_tokens.
  """

  correct: str
  beta: float
  length_norm: int = 0
  correct_at: float = 1.0
  _rollout_lengths = ('length_norm',)

  def __post_init__(self):
    _reward(self.correct, 'correct')
    _finite(self.beta, 'beta', low=0.0)
    _positive_int(self.length_norm, 'length_norm')
    _finite(self.correct_at, 'correct_at')


@register('alp', AlpConfig, needs=('scores', 'lengths'), source='ALP (Just Enough Thinking)')
class Alp(Scheme):
  """ALP: - (beta / N) * max(p_solved, 1/G) * |y| (R = 1[correct] + that)."""

  def reward_names(self):
    return (self.cfg.correct,)

  def term(self, x):
    correct = _correct(x, self.cfg.correct, self.cfg.correct_at, self.name)
    return shaping.alp(correct, x.lengths, x.num_generations, self.cfg.beta, self.cfg.length_norm) - correct, {}


@dataclasses.dataclass(frozen=True)
class KimiLengthConfig:
  """Attributes:
    correct, correct_at: as `laser`.
    coef: c (the Laser code: 0.4).
  """

  correct: str
  coef: float = 0.4
  correct_at: float = 1.0

  def __post_init__(self):
    _reward(self.correct, 'correct')
    _finite(self.coef, 'coef')
    _finite(self.correct_at, 'correct_at')


@register('kimi_length', KimiLengthConfig, needs=('scores', 'lengths'), source='Kimi-1.5 (as the Laser code)')
class KimiLength(Scheme):
  """Kimi-1.5 length term: c * lambda (wrong: c * min(0, lambda)), lambda = 0.5 - (L - L_min) / (L_max - L_min)."""

  def reward_names(self):
    return (self.cfg.correct,)

  def term(self, x):
    correct = _correct(x, self.cfg.correct, self.cfg.correct_at, self.name)
    return shaping.kimi_length_term(correct, x.lengths, x.num_generations, self.cfg.coef), {}


@dataclasses.dataclass(frozen=True)
class GrpoLambdaConfig:
  """Attributes:
    correct, correct_at: as `laser`.
    fraction: the share of groups (by correctness ratio, highest first) that get the length term.
    coef: the Kimi length term's c.
  """

  correct: str
  fraction: float
  coef: float = 0.4
  correct_at: float = 1.0

  def __post_init__(self):
    _reward(self.correct, 'correct')
    _finite(self.fraction, 'fraction', low=0.0, high=1.0)
    _finite(self.coef, 'coef')
    _finite(self.correct_at, 'correct_at')


@register('grpo_lambda', GrpoLambdaConfig, needs=('scores', 'lengths'), source='GRPO-λ')
class GrpoLambda(Scheme):
  """GRPO-λ: the Kimi length term on the top `fraction` of groups by correctness ratio (R = 0/1 + that)."""

  batch_level = True  # ranks the groups of the whole batch

  def reward_names(self):
    return (self.cfg.correct,)

  def term(self, x):
    correct = _correct(x, self.cfg.correct, self.cfg.correct_at, self.name)
    rewards, selected = shaping.grpo_lambda(correct, x.lengths, x.num_generations, self.cfg.fraction, self.cfg.coef)
    return rewards - correct, {'selected_groups': float(np.mean(selected))}


@dataclasses.dataclass(frozen=True)
class DastConfig:
  """Attributes:
    full_reward: a completion whose task reward is >= this counts as fully right (UI-R1: R = 3).
    a, b: the full-reward slope and offset (-0.5, 0.5).
    max_length: L_max in tokens; 0 = rollout.max_new_tokens.
  """

  full_reward: float = 3.0
  a: float = -0.5
  b: float = 0.5
  max_length: int = 0
  _rollout_lengths = ('max_length',)

  def __post_init__(self):
    _finite(self.full_reward, 'full_reward')
    _finite(self.a, 'a')
    _finite(self.b, 'b')
    _positive_int(self.max_length, 'max_length')


@register('dast', DastConfig, needs=('lengths',), source='UI-R1-E (DAST)')
class Dast(Scheme):
  """UI-R1-E DAST: full-reward answers shorter than the group's budget gain, the others lose."""

  def term(self, x):
    term = shaping.dast(x.total, x.lengths, x.num_generations, self.cfg.max_length, self.cfg.full_reward,
                        self.cfg.a, self.cfg.b)
    return term, {'full_frac': float(np.mean(x.total >= self.cfg.full_reward))}


# ---------------------------------------------------------------------------- Trust-GRPO
@dataclasses.dataclass(frozen=True)
class TrustGrpoConfig:
  """Attributes:
    thinking: the reward whose column is the thinking reward R^t, range within [0, 1] (a rule-based
      stand-in for the thinking reward model); '' with `judge`.
    judge: a thinking reward model's checkpoint directory (SophiaVL-R1's is Qwen2.5-VL-3B): R^t is its
      greedy answer to `judge_template` for each row Trust-GRPO uses (rl/judge.py); '' with `thinking`.
    judge_template: the judge's instructions with {question} and {reasoning} (the whole completion)
      once each; '' = model_signals.JUDGE_TEMPLATE.
    judge_max_new_tokens: the judge's answer length cap (it is asked for the score alone).
    judge_batch_size: judge prompts per generation call on each process (0: all of a step's judged
      rows in one call); bounds the judge's activation and KV-cache memory.
    outcome: the reward whose column is R^o; '' = the run's weighted total.
    alpha, anneal_steps: the thinking weight alpha * exp(-step / T) (0.3, 12000).
    zero_extreme_groups: R^t := 0 in a group whose outcomes are all >= 0.9 or all <= 0.1 (the code).
    correct_threshold: R^o at or above it is 'right' for the trust weight (0.5).
    query_threshold: R^t counts only where R^o >= it (the code queries the model only there; 0.2).
  """

  thinking: str = ''
  judge: str = ''
  judge_template: str = ''
  judge_max_new_tokens: int = 16
  judge_batch_size: int = 0
  outcome: str = ''
  alpha: float = 0.3
  anneal_steps: float = 12000.0
  zero_extreme_groups: bool = True
  correct_threshold: float = 0.5
  query_threshold: float = 0.2

  def __post_init__(self):
    if bool(self.thinking) == bool(self.judge):
      raise ValueError('set one of thinking (a reward in [0, 1]) and judge (a thinking reward model\'s checkpoint '
                       f'directory), got thinking={self.thinking!r}, judge={self.judge!r}')
    if self.thinking:
      _reward(self.thinking, 'thinking')
      low, high = registry.get(self.thinking).range
      if low < 0 or high > 1:
        raise ValueError(f'thinking: reward {self.thinking!r} ranges over [{low}, {high}]; R^t must lie in [0, 1]')
      if self.judge_template or self.judge_max_new_tokens != 16 or self.judge_batch_size:
        raise ValueError('judge_template, judge_max_new_tokens and judge_batch_size apply to a judge, not to the '
                         f'reward thinking={self.thinking!r}')
    else:  # the checkpoint itself is read (and checked) at start-up: rl/judge.py
      if not isinstance(self.judge, str):
        raise ValueError(f'judge must be a checkpoint directory, got {self.judge!r}')
      if self.judge_template:
        model_signals.check_judge_template(self.judge_template)
      _positive_int(self.judge_max_new_tokens, 'judge_max_new_tokens')
      if self.judge_batch_size:
        _positive_int(self.judge_batch_size, 'judge_batch_size')
    if self.outcome:
      _reward(self.outcome, 'outcome')
    _finite(self.alpha, 'alpha')
    if not self.anneal_steps > 0:
      raise ValueError(f'anneal_steps must be positive, got {self.anneal_steps}')
    _finite(self.correct_threshold, 'correct_threshold')
    _finite(self.query_threshold, 'query_threshold')


@register('trust_grpo', TrustGrpoConfig, needs=('scores', 'step', 'judge'), source='SophiaVL-R1 (Trust-GRPO)')
class TrustGrpo(Scheme):
  """Trust-GRPO: + gamma * alpha * exp(-step / T) * R^t, gamma the group's trust in its thinking rewards."""

  def reward_names(self):
    return tuple(name for name in (self.cfg.thinking, self.cfg.outcome) if name)

  def needs(self):
    return super().needs() - ({'judge'} if not self.cfg.judge else set())

  def outcome(self, total: np.ndarray, scores: Mapping[str, np.ndarray]) -> np.ndarray:
    """[B] R^o: the outcome reward's column (NaN as 0), or the run's total."""
    if not self.cfg.outcome:
      return np.asarray(total, np.float64)
    return np.nan_to_num(_column(scores, self.cfg.outcome, self.name), nan=0.0)

  def judged_rows(self, total: np.ndarray, scores: Mapping[str, np.ndarray], num_generations: int) -> np.ndarray:
    """[B] bool: the rows whose R^t the term uses, the only ones the judge is asked about."""
    return shaping.thinking_rows(self.outcome(total, scores), num_generations,
                                 query_threshold=self.cfg.query_threshold,
                                 zero_extreme_groups=self.cfg.zero_extreme_groups)

  def term(self, x):
    outcome = self.outcome(x.total, x.scores)
    if self.cfg.judge:
      judged = np.asarray(x.judge, np.float64)
      if judged.shape != outcome.shape:
        raise ValueError(f'trust_grpo: {judged.shape} judge scores for {outcome.shape[0]} rows')
      thinking = np.nan_to_num(judged, nan=0.0)
    else:
      thinking = np.nan_to_num(_column(x.scores, self.cfg.thinking, self.name), nan=0.0)
    thinking = np.where(shaping.thinking_query_mask(outcome, self.cfg.query_threshold), thinking, 0.0)
    shaped, gamma = shaping.trust_grpo(outcome, thinking, x.num_generations, x.step, alpha=self.cfg.alpha,
                                       anneal_steps=self.cfg.anneal_steps,
                                       zero_extreme_groups=self.cfg.zero_extreme_groups,
                                       correct_threshold=self.cfg.correct_threshold)
    weight = self.cfg.alpha * math.exp(-x.step / self.cfg.anneal_steps)
    metrics = {'gamma_mean': float(gamma.mean()), 'weight': weight}
    if self.cfg.judge:
      asked = ~np.isnan(np.asarray(x.judge, np.float64))
      metrics.update(judged_frac=float(asked.mean()),
                     judge_mean=float(np.asarray(x.judge)[asked].mean()) if asked.any() else math.nan)
    return shaped - outcome, metrics


# ---------------------------------------------------------------------------- model signals
MODES = ('mean_prob', 'geometric')


@dataclasses.dataclass(frozen=True)
class ConfidenceConfig:
  """Attributes:
    coef: the term is coef * confidence (CRew's reward is the confidence itself: coef 1).
    mode: 'mean_prob' (mean token probability) or 'geometric' (exp of the mean log-prob).
    start_marker, end_marker: the answer's tokens lie after the last start_marker and before the
      next end_marker ('' start: the whole completion). A row without an answer span gets 0.
  """

  coef: float = 1.0
  mode: str = 'mean_prob'
  start_marker: str = '<answer>'
  end_marker: str = '</answer>'

  def __post_init__(self):
    _finite(self.coef, 'coef')
    if self.mode not in MODES:
      raise ValueError(f'mode {self.mode!r} unknown; valid: {list(MODES)}')


@register('confidence', ConfidenceConfig, needs=('tokens', 'logprobs'), source='CRew (Confidence as a Reward)')
class Confidence(Scheme):
  """CRew: coef * the sampler's confidence on the final-answer tokens."""

  def term(self, x):
    mask = answer_mask(x, self.cfg.start_marker, self.cfg.end_marker)
    value = model_signals.confidence(x.logprobs, mask, self.cfg.mode)
    applicable = ~np.isnan(value)
    metrics = {'applicable': float(applicable.mean()),
               'confidence_mean': float(value[applicable].mean()) if applicable.any() else math.nan}
    return self.cfg.coef * np.nan_to_num(value, nan=0.0), metrics


@dataclasses.dataclass(frozen=True)
class PearConfig:
  """Attributes (EXPERIMENTAL: the paper's exact form is unverified):
    lambda_think: weight of the mean thinking-phase entropy (a penalty, >= 0).
    lambda_answer: weight of the mean answer-phase entropy (a bonus, >= 0).
    marker: where thinking ends ('</think>'); a completion without it is all thinking.
  """

  lambda_think: float
  lambda_answer: float = 0.0
  marker: str = '</think>'

  def __post_init__(self):
    _finite(self.lambda_think, 'lambda_think', low=0.0)
    _finite(self.lambda_answer, 'lambda_answer', low=0.0)
    if not self.marker:
      raise ValueError('marker must not be empty')


@register('pear', PearConfig, needs=('tokens', 'entropies'), source='PEAR (experimental)')
class Pear(Scheme):
  """PEAR: - lambda_think * mean thinking entropy + lambda_answer * mean answer entropy (sampler entropies)."""

  def term(self, x):
    think, answer = phase_masks(x, self.cfg.marker)
    term = model_signals.pear(np.zeros(x.tokens.shape[0]), x.entropies, think, answer, self.cfg.lambda_think,
                              self.cfg.lambda_answer)
    return term, {'answer_frac': float(np.mean(answer.sum(axis=1) > 0))}


@dataclasses.dataclass(frozen=True)
class CoRewardConfig:
  """Attributes:
    coef: the term is coef * agreement (Co-Reward's reward is the agreement itself: coef 1, with the
      task's correctness reward at weight 0 for the label-free setting).
  """

  coef: float = 1.0

  def __post_init__(self):
    _finite(self.coef, 'coef', low=0.0)


@register('co_reward', CoRewardConfig, needs=('texts', 'rephrased'), source='Co-Reward')
class CoReward(Scheme):
  """Co-Reward: agreement with the majority answer of the rephrased question's group (rewards.shaping.co_reward).

  The loop pairs the groups (group 2k answers question k, group 2k+1 its rephrasing); answers are
  compared by `math_answer.answer_key` (the last boxed answer, else the <answer> block, normalised).
  """

  def term(self, x):
    g = x.num_generations
    rows = len(x.tokens)
    if len(x.texts) != rows:
      raise ValueError(f'co_reward: {len(x.texts)} completion texts for {rows} rows')
    if rows % (2 * g):
      raise ValueError(f'co_reward: {rows // g} groups do not pair into (question, rephrasing) groups')
    keys = np.array([math_answer.answer_key(str(t)) for t in x.texts], dtype=object).reshape(-1, 2, g)
    original, rephrased = shaping.co_reward(list(keys[:, 0].reshape(-1)), list(keys[:, 1].reshape(-1)), g)
    agreement = np.stack([original.reshape(-1, g), rephrased.reshape(-1, g)], axis=1).reshape(-1)
    answered = np.array([k is not None for k in keys.reshape(-1)])
    return self.cfg.coef * agreement, {'answered_frac': float(answered.mean()),
                                       'agreement_mean': float(agreement.mean())}


@dataclasses.dataclass(frozen=True)
class ListenerConfig:
  """Attributes:
    weight: w in acc + w * p_listener (unverified in the paper, so required).
    path: the listener: '' = the frozen KL reference (the post-warm-up policy by default); else a
      Hugging Face checkpoint directory, loaded once and frozen, with the policy's tokenizer (its
      vocabulary size and image settings are checked at start-up).
  """

  weight: float
  path: str = ''

  def __post_init__(self):
    _finite(self.weight, 'weight', low=0.0)
    if not isinstance(self.path, str):
      raise ValueError(f'path must be a checkpoint directory or \'\' (the reference), got {self.path!r}')
    if self.path and not os.path.exists(os.path.join(self.path, 'config.json')):
      raise ValueError(f'path {self.path!r}: no config.json (a Hugging Face checkpoint directory)')


@register('listener', ListenerConfig, needs=('listener',), source='Listener-rewarded thinking')
class Listener(Scheme):
  """Listener: w * a frozen listener's probability of the right answer given the thought (rl/listener.py).

  Completions of examples without candidate answers (NaN) get no term.
  """

  def term(self, x):
    p = np.asarray(x.listener, np.float64)
    if p.shape != (len(x.tokens),):
      raise ValueError(f'listener: {p.shape} probabilities for {len(x.tokens)} rows')
    applicable = ~np.isnan(p)
    return self.cfg.weight * np.nan_to_num(p, nan=0.0), {
        'applicable': float(applicable.mean()),
        'p_mean': float(p[applicable].mean()) if applicable.any() else math.nan}


# ---------------------------------------------------------------------------- parsing and the shaper
@dataclasses.dataclass(frozen=True)
class Selected:
  """One configured scheme: its registered name, its frozen config, and the step it stops at (0: never)."""

  name: str
  config: Any
  end_step: int = 0

  def active(self, step: int) -> bool:
    return not self.end_step or step < self.end_step


def _required(cls: type) -> list[str]:
  return [f.name for f in dataclasses.fields(cls)
          if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]


def parse(section: Mapping[str, Any] | None, *, max_new_tokens: int) -> tuple[Selected, ...]:
  """The `shaping` config section ({scheme name: {field: value}}) as validated entries, sorted by name.

  Raises:
    ValueError: an unknown scheme or field, a missing required field, an invalid value, or two
      schemes that would add the same term.
  """
  section = dict(section or {})
  selected = []
  for name in sorted(section):
    what = f'shaping.{name}'
    if name not in _REGISTRY:
      raise ValueError(f'{what}: unknown shaping scheme; valid: {names()}')
    entry = _REGISTRY[name]
    fields = section[name]
    if fields is None:
      fields = {}
    if not isinstance(fields, Mapping):
      raise ValueError(f'{what} must be a mapping of its fields, got {type(fields).__name__} {fields!r}')
    fields = dict(fields)
    valid = [f.name for f in dataclasses.fields(entry.config_cls)]
    unknown = sorted(set(fields) - set(valid) - set(COMMON_FIELDS))
    if unknown:
      raise ValueError(f'{what}: unknown field(s) {unknown}; valid fields: {valid + list(COMMON_FIELDS)}')
    lacking = [f for f in _required(entry.config_cls) if f not in fields]
    if lacking:
      raise ValueError(f'{what}: missing required field(s) {lacking}; valid fields: {valid + list(COMMON_FIELDS)}')
    end_step = fields.pop('end_step', 0)
    if int(end_step) != end_step or end_step < 0:
      raise ValueError(f'{what}.end_step must be an integer >= 0 (0: every step), got {end_step!r}')
    for key in getattr(entry.config_cls, '_rollout_lengths', ()):
      if fields.get(key, 0) == 0:
        fields[key] = max_new_tokens  # the completion cap is the natural length scale
    try:
      config = entry.config_cls(**fields)
    except (TypeError, ValueError) as e:
      raise ValueError(f'{what}: {e}') from e
    selected.append(Selected(name=name, config=config, end_step=int(end_step)))
  chosen = {s.name for s in selected}
  for group in _EXCLUSIVE:
    if len(chosen & group) > 1:
      raise ValueError(f'shaping: {sorted(chosen & group)} add overlapping terms (the same bonus twice); '
                       'select one of them')
  return tuple(selected)


def needs_of(name: str) -> frozenset[str]:
  """The loop inputs a registered scheme reads."""
  return _REGISTRY[name].needs


def config_json(selected: Selected) -> Any:
  return json.loads(json.dumps({'name': selected.name, 'end_step': selected.end_step,
                                'config': dataclasses.asdict(selected.config)}, sort_keys=True))


class Shaper:
  """The configured schemes of a run: the rewards they read, what they need, one `apply` per step, state."""

  def __init__(self, selected: Sequence[Selected] = ()):
    self.selected = tuple(selected)
    self.schemes = [(s, _REGISTRY[s.name].cls(s.config)) for s in self.selected]

  @property
  def reward_names(self) -> tuple[str, ...]:
    return tuple(dict.fromkeys(name for _, scheme in self.schemes for name in scheme.reward_names()))

  @property
  def needs(self) -> frozenset[str]:
    return frozenset().union(*(scheme.needs() for _, scheme in self.schemes))

  @property
  def batch_level(self) -> list[str]:
    return [s.name for s, scheme in self.schemes if scheme.batch_level]

  def apply(self, x: StepInputs) -> tuple[np.ndarray, dict[str, float]]:
    """(the trained reward [B] = total + the active schemes' terms, metrics)."""
    total = np.asarray(x.total, np.float64)
    shaped = total.copy()
    metrics = {}
    for selected, scheme in self.schemes:
      if not selected.active(x.step):
        continue
      term, extra = scheme.term(x)
      term = np.asarray(term, np.float64)
      if term.shape != total.shape or not np.isfinite(term).all():
        raise ValueError(f'shaping.{selected.name} gave a term of shape {term.shape} (expected {total.shape}), '
                         f'finite: {bool(np.isfinite(term).all())}')
      scheme.observe(x)
      shaped += term
      metrics[f'shaping/{selected.name}/term_mean'] = float(term.mean())
      metrics.update({f'shaping/{selected.name}/{key}': value for key, value in extra.items()})
    metrics['reward_shaped_mean'] = float(shaped.mean()) if shaped.size else math.nan
    return shaped, metrics

  def state(self) -> list[dict[str, Any]]:
    """The evolving state of the stateful schemes, with their configs (JSON data for the checkpoint)."""
    return [{'scheme': config_json(s), 'state': scheme.state()} for s, scheme in self.schemes
            if scheme.state() is not None]

  def restore(self, saved: Sequence[Mapping[str, Any]] | None) -> None:
    """Restores every stateful scheme from a checkpoint's `state()`; a stateful scheme without saved
    state (a checkpoint without it, or saved with other fields) is an error, not a silent restart."""
    saved = list(saved or [])
    for selected, scheme in self.schemes:
      if scheme.state() is None:
        continue
      key = config_json(selected)
      match = [entry['state'] for entry in saved if entry.get('scheme') == key]
      if not match:
        raise ValueError(f'the checkpoint holds no state for shaping scheme {key}; saved: '
                         f'{[entry.get("scheme") for entry in saved]}')
      scheme.restore(match[0])
