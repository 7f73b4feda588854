"""The policy loss of the GRPO family: one frozen LossConfig, one pure `policy_loss` composing the pieces.

Shapes: B rows (= P prompts x G generations), T completion tokens. Per-token arrays are [B, T];
`mask` [B, T] is 1 for real completion tokens (the EOS token included) and 0 for padding;
advantages are per row [B] (or per token [B, T]).

Composition, per token (each piece lives in its own module):
  rho   = ratios.RATIOS[ratio_level](lp, lp_old, mask)                 token | sequence | sequence_token
  l     = surrogates.SURROGATES[surrogate](rho, lp, A)                 ppo_clip | unclipped | cispo | sapo | gpg
  l    *= difficulty weight (row) * token weight * entropy mask * sampler IS weight
  l    += beta_t * f_row * KL(lp, lp_ref)                               kl_placement == 'loss'
  l    -= entropy_coef * H * entropy mask                              (entropy_target > 0: the per-step
                                                                        coefficient of rl.entropy_control)
  loss  = aggregation.AGGREGATIONS[aggregation](l, mask')               mask' = mask without truncated rows
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from rl_reason.rl import aggregation as aggregation_lib
from rl_reason.rl import kl as kl_lib
from rl_reason.rl import masks as masks_lib
from rl_reason.rl import ratios as ratios_lib
from rl_reason.rl import surrogates as surrogates_lib
from rl_reason.rl import weights as weights_lib

TOKEN_WEIGHTINGS = ('none', 'tw_grpo')
NONE = 'none'


def _choice(name: str, value: str, valid) -> None:
  if value not in valid:
    raise ValueError(f'{name} {value!r} unknown; valid: {sorted(valid)}')


@dataclasses.dataclass(frozen=True)
class LossConfig:
  """The policy loss (hashable: it is a static argument of the jitted update).

  An option that only matters for another choice (e.g. `dual_clip` for a surrogate other than
  ppo_clip) must stay at its default, otherwise construction fails: nothing is silently ignored.
  """

  # Importance ratio and surrogate.
  ratio_level: str = 'token'  # token | sequence (GSPO) | sequence_token (GSPO-token)
  surrogate: str = 'ppo_clip'  # ppo_clip | unclipped | cispo | sapo | gpg
  eps_low: float = 0.2  # ppo_clip / cispo: clip range below 1
  eps_high: float = 0.2  # ppo_clip / cispo: clip range above 1 (DAPO clip-higher: 0.28)
  dual_clip: float = 0.0  # ppo_clip: dual-clip constant c > 1 for A < 0 (verl: 3); 0 = off
  sapo_tau_pos: float = 1.0  # sapo: gate temperature for A > 0
  sapo_tau_neg: float = 1.05  # sapo: gate temperature for A <= 0
  # Aggregation.
  aggregation: str = 'seq_mean_token_mean'  # see rl.aggregation
  aggregation_constant: float = 0.0  # seq_mean_token_sum_norm: constant length L; 0 = the completion axis T
  # KL towards the reference.
  beta: float = 0.04  # KL coefficient (TRL default); 0 = no reference needed
  kl_estimator: str = 'k3'  # k1 | k2 | k3 | k1+ | k3+
  kl_placement: str = 'loss'  # loss (per-token term) | reward (kl.kl_penalized_rewards, before advantages)
  beta_schedule: str = 'constant'  # constant | linear | cosine (beta -> beta_final over beta_schedule_steps)
  beta_final: float = 0.0  # beta at the end of a non-constant schedule
  beta_schedule_steps: int = 0  # length of a non-constant schedule, in training steps
  kl_group_factor: str = NONE  # none | akf_mean_reward (UNVERIFIED approximation of GuirlVG's AKF)
  kl_group_factor_scale: float = 1.0  # akf_mean_reward: f = exp(scale * (group mean - batch mean reward))
  # Entropy.
  entropy_coef: float = 0.0  # + bonus / - penalty on token entropy (aggregated like the loss)
  # Adaptive entropy control (Skywork-OR1, rl.entropy_control): > 0 = a per-step coefficient, passed to
  # policy_loss, steered toward this mean token entropy; entropy_coef is then its initial value.
  entropy_target: float = 0.0  # target mean token entropy in nats (0 = off: the fixed entropy_coef)
  entropy_coef_delta: float = 0.001  # coefficient change per step
  entropy_coef_max: float = 0.05  # upper clip of the coefficient
  # Loss weights.
  token_weighting: str = NONE  # none | tw_grpo (intra-group divergence weights; needs logits)
  tw_alpha: float = 1.4  # tw_grpo: maximum weight (TW-GRPO script: 1.7)
  tw_stop_gradient: bool = True  # tw_grpo: detach the weights (the TW-GRPO code does not)
  tw_chunk_size: int = 4096  # tw_grpo: vocabulary chunk (memory O(B T chunk))
  difficulty_weight: str = NONE  # none | exp | power | log (UniVG-R1, from the group mean IoU)
  difficulty_power: float = 1.0  # power: the exponent w of (1.05 - mIoU)^w
  is_correction: str = NONE  # none | token_truncate | token_mask | sequence_truncate | sequence_mask
  is_cap_min: float = 0.0  # IS correction: C_min
  is_cap_max: float = 3.0  # IS correction: C_max (TRL: 3)
  # Token selection.
  mask_truncated_completions: bool = False  # drop completions that hit the length cap without EOS
  top_entropy_quantile: float = 1.0  # keep the top-q fraction of tokens by entropy (1 = all; paper: 0.2)

  def __post_init__(self):
    _choice('ratio_level', self.ratio_level, ratios_lib.RATIOS)
    _choice('surrogate', self.surrogate, surrogates_lib.SURROGATES)
    _choice('aggregation', self.aggregation, aggregation_lib.AGGREGATIONS)
    _choice('kl_estimator', self.kl_estimator, kl_lib.KL_ESTIMATORS)
    _choice('kl_placement', self.kl_placement, kl_lib.KL_PLACEMENTS)
    _choice('beta_schedule', self.beta_schedule, kl_lib.BETA_SCHEDULES)
    _choice('kl_group_factor', self.kl_group_factor, (NONE, *kl_lib.KL_GROUP_FACTORS))
    _choice('token_weighting', self.token_weighting, TOKEN_WEIGHTINGS)
    _choice('difficulty_weight', self.difficulty_weight, (NONE, *weights_lib.DIFFICULTY_WEIGHTS))
    _choice('is_correction', self.is_correction, (NONE, *weights_lib.IS_CORRECTIONS))
    if not 0.0 <= self.eps_low <= 1.0:
      raise ValueError(f'eps_low must be in [0, 1], got {self.eps_low}')
    if self.eps_high < 0.0:
      raise ValueError(f'eps_high must be >= 0, got {self.eps_high}')
    if self.dual_clip != 0.0 and self.dual_clip <= 1.0:
      raise ValueError(f'dual_clip must be 0 (off) or > 1, got {self.dual_clip}')
    if self.sapo_tau_pos <= 0 or self.sapo_tau_neg <= 0:
      raise ValueError(f'sapo temperatures must be > 0, got {self.sapo_tau_pos}, {self.sapo_tau_neg}')
    if self.aggregation_constant < 0:
      raise ValueError(f'aggregation_constant must be >= 0 (0 = the completion axis T), '
                       f'got {self.aggregation_constant}')
    if self.beta < 0.0 or self.beta_final < 0.0:
      raise ValueError(f'beta and beta_final must be >= 0, got {self.beta}, {self.beta_final}')
    if self.beta_schedule != 'constant' and self.beta_schedule_steps < 1:
      raise ValueError(f'beta_schedule {self.beta_schedule!r} needs beta_schedule_steps >= 1')
    if self.tw_alpha < 1.0 or self.tw_chunk_size < 1:
      raise ValueError(f'tw_alpha must be >= 1 and tw_chunk_size >= 1, got {self.tw_alpha}, {self.tw_chunk_size}')
    if self.difficulty_power <= 0:
      raise ValueError(f'difficulty_power must be > 0, got {self.difficulty_power}')
    if not 0.0 <= self.is_cap_min < self.is_cap_max:
      raise ValueError(f'IS caps need 0 <= is_cap_min < is_cap_max, got {self.is_cap_min}, {self.is_cap_max}')
    if not 0.0 <= self.top_entropy_quantile <= 1.0:
      raise ValueError(f'top_entropy_quantile must be in [0, 1], got {self.top_entropy_quantile}')
    if self.entropy_target < 0.0:
      raise ValueError(f'entropy_target must be >= 0 (0 = off), got {self.entropy_target}')
    if self.entropy_coef_delta <= 0.0 or self.entropy_coef_max <= 0.0:
      raise ValueError(f'entropy_coef_delta and entropy_coef_max must be > 0, got {self.entropy_coef_delta}, '
                       f'{self.entropy_coef_max}')
    if self.entropy_target > 0.0 and not 0.0 <= self.entropy_coef <= self.entropy_coef_max:
      raise ValueError(f'with entropy_target > 0, entropy_coef is the initial adaptive coefficient and must be in '
                       f'[0, entropy_coef_max={self.entropy_coef_max}], got {self.entropy_coef}')
    defaults = {f.name: f.default for f in dataclasses.fields(self)}
    for name, active, when in _DEPENDENT_OPTIONS:
      if getattr(self, name) != defaults[name] and not active(self):
        raise ValueError(f'{name}={getattr(self, name)!r} has no effect unless {when}; leave it at its '
                         f'default {defaults[name]!r}')

  @property
  def surrogate_params(self) -> surrogates_lib.SurrogateParams:
    return surrogates_lib.SurrogateParams(eps_low=self.eps_low, eps_high=self.eps_high, dual_clip=self.dual_clip,
                                          tau_pos=self.sapo_tau_pos, tau_neg=self.sapo_tau_neg)

  @property
  def adaptive_entropy(self) -> bool:
    return self.entropy_target > 0.0

  @property
  def uses_entropy_bonus(self) -> bool:
    return self.entropy_coef != 0.0 or self.adaptive_entropy

  @property
  def kl_in_loss(self) -> bool:
    return self.beta > 0 and self.kl_placement == 'loss'


_CLIPPING = ('ppo_clip', 'cispo')
# (option, is it used by this config, the condition in words)
_DEPENDENT_OPTIONS: tuple[tuple[str, Callable[[LossConfig], bool], str], ...] = (
    ('ratio_level', lambda c: c.surrogate in surrogates_lib.USES_RATIO,
     f'surrogate in {sorted(surrogates_lib.USES_RATIO)}'),
    ('eps_low', lambda c: c.surrogate in _CLIPPING, f'surrogate in {list(_CLIPPING)}'),
    ('eps_high', lambda c: c.surrogate in _CLIPPING, f'surrogate in {list(_CLIPPING)}'),
    ('dual_clip', lambda c: c.surrogate == 'ppo_clip', "surrogate == 'ppo_clip'"),
    ('sapo_tau_pos', lambda c: c.surrogate == 'sapo', "surrogate == 'sapo'"),
    ('sapo_tau_neg', lambda c: c.surrogate == 'sapo', "surrogate == 'sapo'"),
    ('aggregation_constant', lambda c: c.aggregation == 'seq_mean_token_sum_norm',
     "aggregation == 'seq_mean_token_sum_norm'"),
    ('kl_estimator', lambda c: c.beta > 0, 'beta > 0'),
    ('kl_placement', lambda c: c.beta > 0, 'beta > 0'),
    ('beta_schedule', lambda c: c.beta > 0, 'beta > 0'),
    ('kl_group_factor', lambda c: c.kl_in_loss, "beta > 0 and kl_placement == 'loss'"),
    ('beta_final', lambda c: c.beta_schedule != 'constant', "beta_schedule != 'constant'"),
    ('beta_schedule_steps', lambda c: c.beta_schedule != 'constant', "beta_schedule != 'constant'"),
    ('kl_group_factor_scale', lambda c: c.kl_group_factor != NONE, "kl_group_factor != 'none'"),
    ('tw_alpha', lambda c: c.token_weighting == 'tw_grpo', "token_weighting == 'tw_grpo'"),
    ('tw_stop_gradient', lambda c: c.token_weighting == 'tw_grpo', "token_weighting == 'tw_grpo'"),
    ('tw_chunk_size', lambda c: c.token_weighting == 'tw_grpo', "token_weighting == 'tw_grpo'"),
    ('difficulty_power', lambda c: c.difficulty_weight == 'power', "difficulty_weight == 'power'"),
    ('is_cap_min', lambda c: c.is_correction != NONE, "is_correction != 'none'"),
    ('is_cap_max', lambda c: c.is_correction != NONE, "is_correction != 'none'"),
    ('entropy_coef_delta', lambda c: c.entropy_target > 0, 'entropy_target > 0'),
    ('entropy_coef_max', lambda c: c.entropy_target > 0, 'entropy_target > 0'),
)


def _masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
  return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def _masked_max(x: jax.Array, mask: jax.Array, empty: float = 0.0) -> jax.Array:
  return jnp.where(jnp.any(mask > 0), jnp.max(jnp.where(mask > 0, x, -jnp.inf)), empty)


def _masked_min(x: jax.Array, mask: jax.Array, empty: float = 0.0) -> jax.Array:
  return jnp.where(jnp.any(mask > 0), jnp.min(jnp.where(mask > 0, x, jnp.inf)), empty)


def _require(value: Any, present: bool, what: str, why: str) -> None:
  """A per-call input must be given exactly when the config uses it."""
  if present and value is None:
    raise ValueError(f'{why} needs {what}; pass it to policy_loss')
  if not present and value is not None:
    raise ValueError(f'{what} was passed but the config does not use it ({why} is off)')


def policy_loss(logprobs: jax.Array, old_logprobs: jax.Array, ref_logprobs: jax.Array | None,
                advantages: jax.Array, mask: jax.Array, cfg: LossConfig, entropy: jax.Array | None = None, *,
                sampler_logprobs: jax.Array | None = None, token_weights: jax.Array | None = None,
                sequence_weights: jax.Array | None = None, kl_factor: jax.Array | None = None,
                truncated: jax.Array | None = None, step: jax.Array | int | None = None,
                num_tokens: jax.Array | float | None = None,
                num_sequences: jax.Array | float | None = None,
                entropy_coef: jax.Array | float | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Scalar loss to minimise and gradient-free metrics.

  Args:
    logprobs: f32[B, T] log-probs of the completion tokens under the current policy.
    old_logprobs: f32[B, T] under the behaviour policy (stop_gradient(logprobs) when on-policy).
    ref_logprobs: f32[B, T] under the KL reference, or None (then cfg.beta must be 0 or the KL
      placed in the reward).
    advantages: f32[B] one advantage per completion, or f32[B, T] per token.
    mask: [B, T] completion mask.
    cfg: the loss configuration.
    entropy: f32[B, T] per-token entropy of the current policy (with gradient); required when
      cfg.entropy_coef != 0 or cfg.top_entropy_quantile < 1; reported as the `entropy` metric.
    sampler_logprobs: f32[B, T] log-probs the sampler reported; required by cfg.is_correction;
      when given, the sampler-vs-trainer difference is reported.
    token_weights: f32[B, T] TW-GRPO weights (weights.tw_grpo_token_weights), iff
      cfg.token_weighting == 'tw_grpo'.
    sequence_weights: f32[B] difficulty weights (weights.difficulty_weights), iff
      cfg.difficulty_weight != 'none'.
    kl_factor: f32[B] per-row KL factor (kl.KL_GROUP_FACTORS), iff cfg.kl_group_factor != 'none'.
    truncated: bool[B] completions that hit the length cap without EOS, iff
      cfg.mask_truncated_completions.
    step: the training step; required when cfg.beta_schedule != 'constant'.
    num_tokens: the optimiser batch's count of loss tokens (mask without truncated rows), for
      token_mean when the batch is split across calls; None = this call's count.
    num_sequences: the optimiser batch's row count, for the seq_mean_* modes; None = B.
    entropy_coef: the step's entropy coefficient (rl.entropy_control), iff cfg.entropy_target > 0;
      reported as the `entropy_coef` metric.

  Returns:
    (loss, metrics). Metrics: loss, kl (mask-mean k3 whatever the estimator, so runs stay
    comparable; 0 without a reference), kl_coef, clip_frac_low / _high / _dual, ratio_mean / _min /
    _max, advantage_mean / _std / _min / _max; entropy (with `entropy`); sampler_logprob_diff_mean /
    _max and is_ratio_mean / _min / _max, the raw token ratio exp(lp_old - lp_sampler) (with
    `sampler_logprobs`); is_weight_mean / _min / _max (the applied weight) and is_rejected_frac (IS
    correction); token_weight_mean / _max (TW-GRPO); sequence_weight_mean (difficulty);
    truncated_frac (truncation mask); entropy_kept_frac (top-entropy selection); entropy_coef (adaptive
    entropy control).
  """
  sg = jax.lax.stop_gradient
  if cfg.kl_in_loss and ref_logprobs is None:
    raise ValueError(f'beta={cfg.beta} > 0 with the KL in the loss needs ref_logprobs; pass them or set beta=0')
  if cfg.is_correction != NONE and sampler_logprobs is None:
    raise ValueError(f'is_correction={cfg.is_correction!r} needs sampler_logprobs; pass them to policy_loss')
  _require(token_weights, cfg.token_weighting != NONE, 'token_weights', 'token_weighting')
  _require(sequence_weights, cfg.difficulty_weight != NONE, 'sequence_weights', 'difficulty_weight')
  _require(kl_factor, cfg.kl_group_factor != NONE, 'kl_factor', 'kl_group_factor')
  _require(truncated, cfg.mask_truncated_completions, 'truncated', 'mask_truncated_completions')
  if cfg.beta_schedule != 'constant' and step is None:
    raise ValueError(f'beta_schedule={cfg.beta_schedule!r} needs the training step; pass it to policy_loss')
  _require(entropy_coef, cfg.adaptive_entropy, 'entropy_coef', 'entropy_target > 0')
  if (cfg.uses_entropy_bonus or cfg.top_entropy_quantile < 1.0) and entropy is None:
    raise ValueError(f'entropy_coef={cfg.entropy_coef} / entropy_target={cfg.entropy_target} / '
                     f'top_entropy_quantile={cfg.top_entropy_quantile} need the per-token entropy')

  metrics: dict[str, jax.Array] = {}
  mask_f = mask.astype(jnp.float32)
  if cfg.mask_truncated_completions:
    metrics['truncated_frac'] = jnp.mean(truncated.astype(jnp.float32))
    mask_f = masks_lib.drop_truncated(mask_f, truncated)
  adv = advantages.astype(logprobs.dtype)
  adv_tokens = adv[:, None] if adv.ndim == 1 else adv  # [B, 1] or [B, T]

  ratio = ratios_lib.RATIOS[cfg.ratio_level](logprobs, old_logprobs, mask_f)  # [B, T]
  per_token, clip_stats = surrogates_lib.SURROGATES[cfg.surrogate](
      ratio, logprobs, jnp.broadcast_to(adv_tokens, logprobs.shape), cfg.surrogate_params)

  if sequence_weights is not None:  # UniVG-R1: scales the surrogate before the KL is added
    per_token = per_token * sg(sequence_weights).astype(per_token.dtype)[:, None]
    metrics['sequence_weight_mean'] = jnp.mean(sg(sequence_weights))
  if token_weights is not None:  # TW-GRPO (the stop-gradient choice is made by the caller)
    per_token = per_token * token_weights
    metrics['token_weight_mean'] = _masked_mean(sg(token_weights), mask_f)
    metrics['token_weight_max'] = _masked_max(sg(token_weights), mask_f)
  selected = None
  if cfg.top_entropy_quantile < 1.0:
    selected = masks_lib.top_entropy_mask(entropy, mask_f, cfg.top_entropy_quantile).astype(per_token.dtype)
    per_token = per_token * selected
    metrics['entropy_kept_frac'] = _masked_mean(selected, mask_f)
  if sampler_logprobs is not None:
    gap = sg(jnp.abs(old_logprobs - sampler_logprobs))  # [B, T]
    metrics['sampler_logprob_diff_mean'] = _masked_mean(gap, mask_f)
    metrics['sampler_logprob_diff_max'] = _masked_max(gap, mask_f)
    # The raw per-token sampler -> trainer IS ratio, whether or not a correction applies it.
    is_ratio = jnp.exp(jnp.clip(sg(old_logprobs - sampler_logprobs), -weights_lib.IS_LOG_BOUND,
                                weights_lib.IS_LOG_BOUND))
    metrics['is_ratio_mean'] = _masked_mean(is_ratio, mask_f)
    metrics['is_ratio_min'] = _masked_min(is_ratio, mask_f)
    metrics['is_ratio_max'] = _masked_max(is_ratio, mask_f)
  if cfg.is_correction != NONE:
    is_weight, rejected = weights_lib.is_correction_weights(old_logprobs, sampler_logprobs, mask_f,
                                                            cfg.is_correction, cfg.is_cap_min, cfg.is_cap_max)
    per_token = per_token * is_weight.astype(per_token.dtype)
    metrics['is_weight_mean'] = _masked_mean(is_weight, mask_f)
    metrics['is_weight_min'] = _masked_min(is_weight, mask_f)
    metrics['is_weight_max'] = _masked_max(is_weight, mask_f)
    metrics['is_rejected_frac'] = _masked_mean(rejected.astype(jnp.float32), mask_f)

  beta = kl_lib.beta_at(cfg.beta_schedule, cfg.beta, cfg.beta_final, cfg.beta_schedule_steps, step)
  metrics['kl_coef'] = sg(beta)
  if cfg.kl_in_loss:
    kl_term = kl_lib.KL_ESTIMATORS[cfg.kl_estimator](logprobs, ref_logprobs)  # [B, T]
    coef = beta if kl_factor is None else beta * sg(kl_factor).astype(per_token.dtype)[:, None]
    per_token = per_token + coef * kl_term
  if cfg.uses_entropy_bonus:
    bonus = entropy if selected is None else entropy * selected
    coef = cfg.entropy_coef
    if cfg.adaptive_entropy:
      coef = sg(jnp.asarray(entropy_coef, per_token.dtype))
      metrics['entropy_coef'] = coef
    per_token = per_token - coef * bonus
  loss = aggregation_lib.AGGREGATIONS[cfg.aggregation](
      per_token, mask_f, num_tokens=num_tokens, num_sequences=num_sequences,
      constant=cfg.aggregation_constant if cfg.aggregation == 'seq_mean_token_sum_norm' else None)

  ratio_value = sg(ratio)
  adv_value = sg(adv)
  if adv.ndim == 1:
    adv_mean, adv_std = jnp.mean(adv_value), jnp.std(adv_value)
    adv_min, adv_max = jnp.min(adv_value), jnp.max(adv_value)
  else:
    adv_mean = _masked_mean(adv_value, mask_f)
    adv_std = jnp.sqrt(_masked_mean(jnp.square(adv_value - adv_mean), mask_f))
    adv_min, adv_max = _masked_min(adv_value, mask_f), _masked_max(adv_value, mask_f)
  metrics.update({
      'loss': sg(loss),
      'kl': (_masked_mean(sg(kl_lib.kl_k3(logprobs, ref_logprobs)), mask_f) if ref_logprobs is not None
             else jnp.zeros((), jnp.float32)),
      'clip_frac_low': _masked_mean(clip_stats['clipped_low'].astype(jnp.float32), mask_f),
      'clip_frac_high': _masked_mean(clip_stats['clipped_high'].astype(jnp.float32), mask_f),
      'clip_frac_dual': _masked_mean(clip_stats['clipped_dual'].astype(jnp.float32), mask_f),
      'ratio_mean': _masked_mean(ratio_value, mask_f),
      # ratio > 0, so 0 only shows up when the batch has no real token.
      'ratio_max': _masked_max(ratio_value, mask_f),
      'ratio_min': _masked_min(ratio_value, mask_f),
      'advantage_mean': adv_mean,
      'advantage_std': adv_std,
      'advantage_min': adv_min,
      'advantage_max': adv_max,
  })
  if entropy is not None:
    metrics['entropy'] = _masked_mean(sg(entropy), mask_f)
  return loss, metrics

