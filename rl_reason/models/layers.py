"""Building blocks shared by the vision tower and the decoder: linear, RMSNorm, gated MLP, rotary.

Shapes: B batch, T tokens, D model dim, F mlp dim, H head dim.
Weights are stored [in, out] (HF stores [out, in]; the checkpoint loader transposes).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from rl_reason.parallel import sharding as shd

_init = nnx.initializers.normal(stddev=0.02)


def expand_to(vector: jax.Array, ndim: int) -> jax.Array:
  """[D] -> [1, ..., 1, D] so it broadcasts explicitly against an ndim array."""
  return vector.reshape((1,) * (ndim - 1) + vector.shape)


class Linear(nnx.Module):
  """y = x @ kernel (+ bias), kernel [in, out] annotated with logical axes."""

  def __init__(self, in_features: int, out_features: int, *, axes: tuple[str | None, str | None],
               use_bias: bool, rngs: nnx.Rngs, param_dtype=jnp.float32):
    self.kernel = nnx.Param(_init(rngs.params(), (in_features, out_features), param_dtype),
                            logical_axes=axes)
    self.bias = (nnx.Param(jnp.zeros((out_features,), param_dtype), logical_axes=(axes[1],))
                 if use_bias else None)

  def __call__(self, x: jax.Array) -> jax.Array:
    y = jnp.dot(x, self.kernel[...].astype(x.dtype))
    if self.bias is not None:
      y = y + expand_to(self.bias[...].astype(x.dtype), y.ndim)
    return y


class RMSNorm(nnx.Module):
  """x / rms(x) * weight, computed in float32 (as HF does) and cast back."""

  def __init__(self, dim: int, *, eps: float, param_dtype=jnp.float32):
    self.weight = nnx.Param(jnp.ones((dim,), param_dtype), logical_axes=(None,))
    self.eps = eps

  def __call__(self, x: jax.Array) -> jax.Array:
    x32 = x.astype(jnp.float32)
    x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
    return expand_to(self.weight[...].astype(x.dtype), x.ndim) * x32.astype(x.dtype)


class GatedMLP(nnx.Module):
  """down(silu(gate(x)) * up(x)) (SwiGLU)."""

  def __init__(self, dim: int, hidden: int, *, use_bias: bool, rngs: nnx.Rngs, param_dtype=jnp.float32):
    self.gate_proj = Linear(dim, hidden, axes=(shd.EMBED, shd.MLP), use_bias=use_bias, rngs=rngs,
                            param_dtype=param_dtype)
    self.up_proj = Linear(dim, hidden, axes=(shd.EMBED, shd.MLP), use_bias=use_bias, rngs=rngs,
                          param_dtype=param_dtype)
    self.down_proj = Linear(hidden, dim, axes=(shd.MLP, shd.EMBED), use_bias=use_bias, rngs=rngs,
                            param_dtype=param_dtype)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.down_proj(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x))


def rotate_half(x: jax.Array) -> jax.Array:
  x1, x2 = jnp.split(x, 2, axis=-1)
  return jnp.concatenate([-x2, x1], axis=-1)


def apply_rotary(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
  """x [..., T, N, H] rotated by cos/sin [..., T, H] (rotate-half convention), in float32."""
  x32 = x.astype(jnp.float32)
  out = x32 * cos[..., None, :] + rotate_half(x32) * sin[..., None, :]
  return out.astype(x.dtype)


def inverse_frequencies(dim: int, theta: float) -> jax.Array:
  return 1.0 / (theta ** (jnp.arange(0, dim, 2, dtype=jnp.float32) / dim))


def text_rotary(positions: jax.Array, head_dim: int, theta: float,
                mrope_section: tuple[int, ...] | None) -> tuple[jax.Array, jax.Array]:
  """cos, sin [B, T, H] for positions [3, B, T] (temporal, height, width rows).

  Multimodal rotary (Qwen2-VL): the H/2 frequencies are cut into mrope_section chunks; chunk i
  takes its angle from position row i % 3. With mrope_section None only row 0 is used.
  """
  inv_freq = inverse_frequencies(head_dim, theta)  # [H/2]
  freqs = positions.astype(jnp.float32)[..., None] * expand_to(inv_freq, positions.ndim + 1)  # [3, B, T, H/2]
  if mrope_section is None:
    angles = freqs[0]
  else:
    bounds = [0]
    for s in mrope_section:
      bounds.append(bounds[-1] + s)
    angles = jnp.concatenate([freqs[i % 3, ..., lo:hi]
                              for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:]))], axis=-1)
  angles = jnp.concatenate([angles, angles], axis=-1)  # [B, T, H]
  return jnp.cos(angles), jnp.sin(angles)


def attention_weights_mask_value(dtype) -> float:
  # A large finite negative so fully masked rows (left padding) give a uniform, not NaN, softmax.
  return float(jnp.finfo(dtype).min) / 2
