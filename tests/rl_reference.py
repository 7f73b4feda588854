"""Float64 numpy references of rl_reason.rl: every value with its hand-derived gradient.

Shapes: B rows (P groups of G), T completion tokens, V vocabulary. Written from the formulas in
/work/shared/reference (PEERS_PYTORCH.md §2, ALGORITHMS.md §0, §1.5-1.7, §1.14) and the peers'
code, independently of the jnp implementation: loops and explicit branches, no jax.
Gradients are w.r.t. the current log-probs `lp` unless stated; a straight-through or
stop-gradient term has the gradient its definition gives, not the derivative of its value.
"""

from __future__ import annotations

import dataclasses

import numpy as np

LOG_RATIO_BOUND = 20.0


# ------------------------------------------------------------------ ratios: value and vector-Jacobian product
def ratio(level, lp, old, mask):
  """(rho [B, T], vjp) where vjp(g [B, T]) = sum_t g_t d rho_t / d lp [B, T]."""
  delta = lp - old
  if level == 'token':
    rho = np.exp(np.clip(delta, -LOG_RATIO_BOUND, LOG_RATIO_BOUND))
    live = np.abs(delta) < LOG_RATIO_BOUND
    return rho, lambda g: g * rho * live
  lengths = np.maximum(mask.sum(axis=1, keepdims=True), 1.0)
  seq = (delta * mask).sum(axis=1, keepdims=True) / lengths  # [B, 1]
  if level == 'sequence':
    s = np.exp(np.clip(seq, -LOG_RATIO_BOUND, LOG_RATIO_BOUND))
    rho = np.broadcast_to(s, lp.shape).copy()
    live = np.abs(seq) < LOG_RATIO_BOUND
    # d s_i / d lp_it' = s_i m_it' / |o_i|: every token of the row moves the shared ratio.
    return rho, lambda g: g.sum(axis=1, keepdims=True) * s * live * mask / lengths
  if level == 'sequence_token':
    log = np.broadcast_to(seq, lp.shape)
    rho = np.exp(np.minimum(log, 10.0))
    # sg[s_i] exp(lp - sg[lp]): d/d lp_it = s_i on its own token only.
    return rho, lambda g: g * rho * (log < 10.0)
  raise ValueError(level)


# ------------------------------------------------------------------ surrogates: value, d/d rho, d/d lp (direct)
@dataclasses.dataclass
class Surrogate:
  value: np.ndarray
  d_ratio: np.ndarray
  d_logprob: np.ndarray
  low: np.ndarray
  high: np.ndarray
  dual: np.ndarray


def surrogate(name, rho, lp, adv, eps_low=0.2, eps_high=0.2, dual_clip=0.0, tau_pos=1.0, tau_neg=1.05):
  """adv [B, T] (broadcast by the caller)."""
  zeros = np.zeros_like(rho, bool)
  if name == 'ppo_clip':
    unclipped = -adv * rho
    clipped = -adv * np.clip(rho, 1 - eps_low, 1 + eps_high)
    value = np.maximum(unclipped, clipped)
    inside = (rho >= 1 - eps_low) & (rho <= 1 + eps_high)
    d_ratio = np.where((unclipped > clipped) | inside, -adv, 0.0)
    dual = zeros
    if dual_clip > 0:
      cap = -dual_clip * adv
      dual = (adv < 0) & (value > cap)
      value = np.where(dual, cap, value)
      d_ratio = np.where(dual, 0.0, d_ratio)
    return Surrogate(value, d_ratio, np.zeros_like(rho), (rho < 1 - eps_low) & (adv < 0),
                     (rho > 1 + eps_high) & (adv > 0), dual)
  if name == 'unclipped':
    return Surrogate(-adv * rho, -adv, np.zeros_like(rho), zeros, zeros, zeros)
  if name == 'cispo':
    weight = np.clip(rho, 1 - eps_low, 1 + eps_high)  # stop-gradient: no d/d rho
    return Surrogate(-weight * adv * lp, np.zeros_like(rho), -weight * adv, rho < 1 - eps_low, rho > 1 + eps_high,
                     zeros)
  if name == 'sapo':
    tau = np.where(adv > 0, tau_pos, tau_neg)
    gate = 1.0 / (1.0 + np.exp(-tau * (rho - 1.0)))
    return Surrogate(-(4.0 / tau) * gate * adv, -4.0 * gate * (1.0 - gate) * adv, np.zeros_like(rho), zeros, zeros,
                     zeros)
  if name == 'gpg':
    return Surrogate(-adv * lp, np.zeros_like(rho), -adv, zeros, zeros, zeros)
  raise ValueError(name)


# ------------------------------------------------------------------ KL estimators: value, d/d lp
def kl(name, lp, ref):
  x = lp - ref
  if name == 'k1':
    return x, np.ones_like(x)
  if name == 'k2':
    return 0.5 * x**2, x
  if name in ('k3', 'k3+'):
    raw = ref - lp
    u = np.clip(raw, -LOG_RATIO_BOUND, LOG_RATIO_BOUND)
    value = np.exp(u) - u - 1
    grad = np.where(np.abs(raw) < LOG_RATIO_BOUND, 1 - np.exp(u), 0.0)
    grad = np.where(np.abs(value) < 10, grad, 0.0)
    value = np.clip(value, -10, 10)
    return (value, x) if name == 'k3+' else (value, grad)  # k3+: the gradient of k2
  if name == 'k1+':
    return x, x
  raise ValueError(name)


def kl_penalized_token_rewards(rewards, lp, ref, mask, beta, estimator):
  out = -beta * kl(estimator, lp, ref)[0] * mask
  for i, length in enumerate(mask.sum(axis=1).astype(int)):
    out[i, max(length - 1, 0)] += rewards[i]
  return out


def beta_at(schedule, beta, beta_final, steps, step):
  progress = min(max(step / steps, 0.0), 1.0) if schedule != 'constant' else 0.0
  if schedule == 'constant':
    return beta
  if schedule == 'linear':
    return beta + (beta_final - beta) * progress
  if schedule == 'cosine':
    return beta_final + (beta - beta_final) * 0.5 * (1 + np.cos(np.pi * progress))
  raise ValueError(schedule)


def akf_mean_reward(rewards, groups, scale):
  grouped = rewards.reshape(-1, groups)
  return np.repeat(np.exp(scale * (grouped.mean(axis=1) - grouped.mean())), groups)


# ------------------------------------------------------------------ aggregation: loss = sum(c * l)
def aggregation_weights(name, mask, num_tokens=None, num_sequences=None, constant=None):
  rows = mask.shape[0] if num_sequences is None else num_sequences
  if name == 'seq_mean_token_mean':
    return mask / np.maximum(mask.sum(axis=1, keepdims=True), 1) / rows
  if name == 'token_mean':
    return mask / max(mask.sum() if num_tokens is None else num_tokens, 1)
  if name == 'seq_mean_token_sum':
    return mask / rows
  if name == 'seq_mean_token_sum_norm':
    return mask / (rows * (constant or mask.shape[1]))
  raise ValueError(name)


# ------------------------------------------------------------------ weights and masks
def tw_grpo_weights(logits, mask, groups, alpha, temperature=1.0):
  """A transliteration of TW-GRPO's compute_token_importance_kl_logs_uniform (float64).

  The columns are cut to the batch's longest completion first (the trainer pads to it), then the
  weights are padded back with 0.
  """
  rows, length, vocab = logits.shape
  longest = int(mask.sum(axis=1).max())
  out = np.zeros((rows, length))
  if longest == 0:
    return out
  x = logits[:, :longest] / temperature
  x = x - x.max(axis=-1, keepdims=True)
  logp = x - np.log(np.exp(x).sum(axis=-1, keepdims=True))
  m = mask[:, :longest]
  logp = np.where(m[..., None] == 1, logp, -np.log(vocab))
  grouped = logp.reshape(rows // groups, groups, longest, vocab)
  diff = np.clip(grouped.mean(axis=1, keepdims=True) - grouped, -11.0, 11.0)
  token_kl = (np.exp(diff) - diff - 1).sum(axis=-1).mean(axis=1)  # [P, L]
  low, high = token_kl.min(axis=1, keepdims=True), token_kl.max(axis=1, keepdims=True)
  weights = 1.0 + (alpha - 1.0) * (token_kl - low) / (high - low + 1e-8)
  out[:, :longest] = np.repeat(weights, groups, axis=0) * m
  return out


def difficulty_weights(iou, groups, kind, power=1.0):
  miou = np.repeat(iou.reshape(-1, groups).mean(axis=1), groups)
  return {'exp': np.exp(1 - miou), 'power': (1.05 - miou)**power, 'log': -np.log(0.02 + miou)}[kind]


def is_weights(old, sampler, mask, mode, cap_min, cap_max):
  diff = (old - sampler) * mask
  if mode.startswith('sequence'):
    diff = np.broadcast_to(diff.sum(axis=1, keepdims=True), diff.shape)
  w = np.exp(diff)
  if mode.endswith('truncate'):
    return np.clip(w, cap_min, cap_max), np.zeros_like(w, bool)
  rejected = (w < cap_min) | (w > cap_max)
  return np.where(rejected, 0.0, w), rejected


def top_entropy_mask(entropy, mask, quantile):
  real = mask > 0
  if not real.any():
    return np.zeros_like(real)
  threshold = np.quantile(entropy[real], 1 - quantile)  # linear interpolation, as torch.quantile
  return real & (entropy >= threshold)


# ------------------------------------------------------------------ the composed loss
def _masked_mean(x, mask):
  return (x * mask).sum() / max(mask.sum(), 1)


def policy_loss(lp, old, ref, adv, mask, cfg, entropy=None, sampler=None, token_weights=None, sequence_weights=None,
                kl_factor=None, truncated=None, step=None, num_tokens=None, num_sequences=None, entropy_coef=None):
  """(loss, d loss / d lp, d loss / d entropy, metrics), the composition documented in rl_reason.rl.losses."""
  mask = mask.astype(np.float64)
  metrics = {}
  if cfg.mask_truncated_completions:
    metrics['truncated_frac'] = truncated.mean()
    mask = mask * (~truncated)[:, None]
  adv_t = np.broadcast_to(adv[:, None] if adv.ndim == 1 else adv, lp.shape)
  rho, rho_vjp = ratio(cfg.ratio_level, lp, old, mask)
  s = surrogate(cfg.surrogate, rho, lp, adv_t, cfg.eps_low, cfg.eps_high, cfg.dual_clip, cfg.sapo_tau_pos,
                cfg.sapo_tau_neg)
  mult = np.ones_like(lp)
  if sequence_weights is not None:
    mult = mult * sequence_weights[:, None]
    metrics['sequence_weight_mean'] = sequence_weights.mean()
  if token_weights is not None:
    mult = mult * token_weights
    metrics['token_weight_mean'] = _masked_mean(token_weights, mask)
    metrics['token_weight_max'] = token_weights[mask > 0].max() if mask.any() else 0.0
  selected = np.ones_like(lp)
  if cfg.top_entropy_quantile < 1:
    selected = top_entropy_mask(entropy, mask, cfg.top_entropy_quantile).astype(np.float64)
    metrics['entropy_kept_frac'] = _masked_mean(selected, mask)
  mult = mult * selected
  if sampler is not None:
    gap = np.abs(old - sampler)
    metrics['sampler_logprob_diff_mean'] = _masked_mean(gap, mask)
    metrics['sampler_logprob_diff_max'] = gap[mask > 0].max() if mask.any() else 0.0
    raw = np.exp(np.clip(old - sampler, -20.0, 20.0))
    metrics.update(is_ratio_mean=_masked_mean(raw, mask), is_ratio_min=raw[mask > 0].min() if mask.any() else 0.0,
                   is_ratio_max=raw[mask > 0].max() if mask.any() else 0.0)
  if cfg.is_correction != 'none':
    w, rejected = is_weights(old, sampler, mask, cfg.is_correction, cfg.is_cap_min, cfg.is_cap_max)
    mult = mult * w
    metrics.update(is_weight_mean=_masked_mean(w, mask), is_weight_min=w[mask > 0].min(),
                   is_weight_max=w[mask > 0].max(), is_rejected_frac=_masked_mean(rejected, mask))
  beta = beta_at(cfg.beta_schedule, cfg.beta, cfg.beta_final, cfg.beta_schedule_steps, step)
  metrics['kl_coef'] = beta
  per_token = mult * s.value
  c = aggregation_weights(cfg.aggregation, mask, num_tokens, num_sequences,
                          cfg.aggregation_constant if cfg.aggregation == 'seq_mean_token_sum_norm' else None)
  d_lp = rho_vjp(c * mult * s.d_ratio) + c * mult * s.d_logprob
  if cfg.beta > 0 and cfg.kl_placement == 'loss':
    coef = beta * (np.ones(lp.shape[0]) if kl_factor is None else kl_factor)[:, None]
    kl_value, kl_grad = kl(cfg.kl_estimator, lp, ref)
    per_token = per_token + coef * kl_value
    d_lp = d_lp + c * coef * kl_grad
  d_entropy = np.zeros_like(lp)
  coef = cfg.entropy_coef if cfg.entropy_target == 0 else entropy_coef  # adaptive: the step's coefficient
  if cfg.entropy_target > 0:
    metrics['entropy_coef'] = coef
  if coef != 0:
    per_token = per_token - coef * entropy * selected
    d_entropy = -coef * c * selected
  loss = float((c * per_token).sum())
  adv_mask = np.ones(adv.shape) if adv.ndim == 1 else mask
  adv_mean = _masked_mean(adv, adv_mask)
  metrics.update({
      'loss': loss,
      'kl': _masked_mean(kl('k3', lp, ref)[0], mask) if ref is not None else 0.0,
      'clip_frac_low': _masked_mean(s.low, mask),
      'clip_frac_high': _masked_mean(s.high, mask),
      'clip_frac_dual': _masked_mean(s.dual, mask),
      'ratio_mean': _masked_mean(rho, mask),
      'ratio_max': rho[mask > 0].max() if mask.any() else 0.0,
      'ratio_min': rho[mask > 0].min() if mask.any() else 0.0,
      'advantage_mean': adv_mean,
      'advantage_std': np.sqrt(_masked_mean((adv - adv_mean)**2, adv_mask)),
      'advantage_min': adv[adv_mask > 0].min(),
      'advantage_max': adv[adv_mask > 0].max(),
  })
  if entropy is not None:
    metrics['entropy'] = _masked_mean(entropy, mask)
  return loss, d_lp, d_entropy, metrics
