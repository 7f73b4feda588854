"""Building blocks shared by the vision towers and the decoders: linear, norms, MLPs, rotary.

Shapes: B batch, T tokens, D model dim, F mlp dim, H head dim.
Weights are stored [in, out] (HF stores [out, in]; the checkpoint loader transposes).
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from rl_reason.models.config import RopeScaling
from rl_reason.parallel import sharding as shd

# transformers' ACT2FN names -> functions (config.ACTIVATIONS lists the same names).
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    'silu': jax.nn.silu,
    'gelu': lambda x: jax.nn.gelu(x, approximate=False),
    'gelu_pytorch_tanh': lambda x: jax.nn.gelu(x, approximate=True),
    'quick_gelu': lambda x: x * jax.nn.sigmoid(1.702 * x),
}

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


class LayerNorm(nnx.Module):
  """(x - mean) / std * weight + bias, computed in float32 and cast back."""

  def __init__(self, dim: int, *, eps: float, param_dtype=jnp.float32):
    self.weight = nnx.Param(jnp.ones((dim,), param_dtype), logical_axes=(None,))
    self.bias = nnx.Param(jnp.zeros((dim,), param_dtype), logical_axes=(None,))
    self.eps = eps

  def __call__(self, x: jax.Array) -> jax.Array:
    x32 = x.astype(jnp.float32)
    centered = x32 - jnp.mean(x32, axis=-1, keepdims=True)
    normed = centered * jax.lax.rsqrt(jnp.mean(centered * centered, axis=-1, keepdims=True) + self.eps)
    out = normed * expand_to(self.weight[...].astype(jnp.float32), x.ndim)
    return (out + expand_to(self.bias[...].astype(jnp.float32), x.ndim)).astype(x.dtype)


class MLP(nnx.Module):
  """fc2(act(fc1(x))) with biases (the Qwen2-VL vision MLP)."""

  def __init__(self, dim: int, hidden: int, *, act: str, rngs: nnx.Rngs, param_dtype=jnp.float32):
    self.act = ACTIVATIONS[act]
    self.fc1 = Linear(dim, hidden, axes=(shd.EMBED, shd.MLP), use_bias=True, rngs=rngs, param_dtype=param_dtype)
    self.fc2 = Linear(hidden, dim, axes=(shd.MLP, shd.EMBED), use_bias=True, rngs=rngs, param_dtype=param_dtype)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.fc2(self.act(self.fc1(x)))


class GatedMLP(nnx.Module):
  """down(act(gate(x)) * up(x)) (SwiGLU for act silu)."""

  def __init__(self, dim: int, hidden: int, *, use_bias: bool, rngs: nnx.Rngs, param_dtype=jnp.float32,
               act: str = 'silu'):
    self.act = ACTIVATIONS[act]
    self.gate_proj = Linear(dim, hidden, axes=(shd.EMBED, shd.MLP), use_bias=use_bias, rngs=rngs,
                            param_dtype=param_dtype)
    self.up_proj = Linear(dim, hidden, axes=(shd.EMBED, shd.MLP), use_bias=use_bias, rngs=rngs,
                          param_dtype=param_dtype)
    self.down_proj = Linear(hidden, dim, axes=(shd.MLP, shd.EMBED), use_bias=use_bias, rngs=rngs,
                            param_dtype=param_dtype)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))


def rotate_half(x: jax.Array) -> jax.Array:
  x1, x2 = jnp.split(x, 2, axis=-1)
  return jnp.concatenate([-x2, x1], axis=-1)


def apply_rotary(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
  """x [..., T, N, H] rotated by cos/sin [..., T, H] (rotate-half convention), in float32."""
  x32 = x.astype(jnp.float32)
  out = x32 * cos[..., None, :] + rotate_half(x32) * sin[..., None, :]
  return out.astype(x.dtype)


def inverse_frequencies(dim: int, theta: float | jax.Array) -> jax.Array:
  return 1.0 / (theta ** (jnp.arange(0, dim, 2, dtype=jnp.float32) / dim))


def _linear(inv_freq, scaling: RopeScaling, **_):
  return inv_freq / scaling.factor


def _dynamic(inv_freq, scaling: RopeScaling, *, dim, theta, max_position_embeddings, seq_len):
  """NTK: base * (factor * L / max - (factor - 1)) ** (H / (H - 2)) once L = seq_len passes max.

  transformers keeps the growth in module state; per call this equals it on a fresh module and
  along a generation (whose calls only grow).
  """
  length = jnp.maximum(seq_len, max_position_embeddings).astype(jnp.float32)
  base = theta * (scaling.factor * length / max_position_embeddings - (scaling.factor - 1)) ** (dim / (dim - 2))
  return jnp.where(seq_len > max_position_embeddings, inverse_frequencies(dim, base), inv_freq)


def _llama3(inv_freq, scaling: RopeScaling, **_):
  """Wavelengths above original/low_freq_factor are / factor; a smooth ramp down to original/high."""
  old_context = scaling.original_max_position_embeddings
  low_wavelen, high_wavelen = old_context / scaling.low_freq_factor, old_context / scaling.high_freq_factor
  wavelen = 2 * math.pi / inv_freq
  scaled = jnp.where(wavelen > low_wavelen, inv_freq / scaling.factor, inv_freq)
  smooth = (old_context / wavelen - scaling.low_freq_factor) / (scaling.high_freq_factor - scaling.low_freq_factor)
  smoothed = (1 - smooth) * scaled / scaling.factor + smooth * scaled
  medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
  return jnp.where(medium, smoothed, scaled)


# rope_type -> fn(default inv_freq, scaling, dim=, theta=, max_position_embeddings=, seq_len=) -> inv_freq,
# as transformers' modeling_rope_utils computes them (config.ROPE_SCALING_KEYS lists the same types).
ROPE_SCALINGS: dict[str, Callable[..., jax.Array]] = {'linear': _linear, 'dynamic': _dynamic, 'llama3': _llama3}


def rope_inverse_frequencies(head_dim: int, theta: float, scaling: RopeScaling | None, *,
                             max_position_embeddings: int, seq_len: jax.Array) -> jax.Array:
  """[H/2] inverse frequencies; seq_len (max position + 1 of this call) matters only to dynamic."""
  inv_freq = inverse_frequencies(head_dim, theta)
  if scaling is None:
    return inv_freq
  return ROPE_SCALINGS[scaling.rope_type](inv_freq, scaling, dim=head_dim, theta=theta,
                                          max_position_embeddings=max_position_embeddings, seq_len=seq_len)


def text_rotary(positions: jax.Array, inv_freq: jax.Array,
                mrope_section: tuple[int, ...] | None) -> tuple[jax.Array, jax.Array]:
  """cos, sin [B, T, H] for positions [3, B, T] (temporal, height, width rows) and inv_freq [H/2].

  Multimodal rotary (Qwen2-VL): the H/2 frequencies are cut into mrope_section chunks; chunk i
  takes its angle from position row i % 3. With mrope_section None only row 0 is used.
  """
  freqs = positions.astype(jnp.float32)[..., None] * expand_to(inv_freq, positions.ndim + 1)  # [3, B, T, H/2]
  if mrope_section is None:
    angles = freqs[0]
  else:
    bounds = [0]
    for s in mrope_section:
      bounds.append(bounds[-1] + s)
    angles = jnp.concatenate([freqs[i % 3, ..., lo:hi]
                              for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:]))], axis=-1)
  cos, sin = jnp.cos(angles), jnp.sin(angles)  # [B, T, H/2]: each angle's cos and sin once
  return jnp.concatenate([cos, cos], axis=-1), jnp.concatenate([sin, sin], axis=-1)  # [B, T, H]


def attention_weights_mask_value(dtype) -> float:
  # A large finite negative so fully masked rows (left padding) give a uniform, not NaN, softmax.
  return float(jnp.finfo(dtype).min) / 2


def stacked(make: Callable[[nnx.Rngs], nnx.Module], count: int, rngs: nnx.Rngs) -> nnx.Module:
  """One module whose parameters are [count, ...] (logical axis LAYERS first), each copy from its own key.

  `make(rngs)` builds one layer; the result runs under jax.lax.scan over its leading axis.
  """

  @nnx.split_rngs(splits=count)
  @nnx.vmap(in_axes=(0,), out_axes=0, axis_size=count)
  def build(layer_rngs):
    return make(layer_rngs)

  module = build(rngs)
  for _, variable in nnx.iter_graph(module):
    if isinstance(variable, nnx.Param):
      axes = variable.get_metadata().get('logical_axes') or (None,) * (variable.get_value().ndim - 1)
      variable.set_metadata('logical_axes', (shd.LAYERS, *axes))
  return module
