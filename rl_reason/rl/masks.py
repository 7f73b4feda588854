"""Token selection for the loss: drop truncated completions, keep only the high-entropy tokens.

Shapes: B rows, T completion tokens; `mask` [B, T] is 1 for real completion tokens.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def drop_truncated(mask: jax.Array, truncated: jax.Array) -> jax.Array:
  """mask [B, T] with the rows of completions that hit the length cap without an EOS zeroed.

  TRL `mask_truncated_completions`: a truncated completion's reward judges an unfinished answer, so
  it is removed from the loss, its tokens from the normaliser too. `truncated` is bool [B].
  """
  return mask * (~truncated.astype(bool))[:, None].astype(mask.dtype)


def top_entropy_mask(entropy: jax.Array, mask: jax.Array, quantile: float) -> jax.Array:
  """bool [B, T]: real tokens whose entropy is >= the (1 - quantile) quantile of the real tokens' entropies.

  TRL `top_entropy_quantile` ("Beyond the 80/20 rule", recommended 0.2): quantile 1 keeps every
  real token, 0 only the highest-entropy one(s). The quantile is linear-interpolated (torch.quantile)
  over all real tokens of the arrays given, and carries no gradient.
  """
  if not 0.0 <= quantile <= 1.0:
    raise ValueError(f'quantile must be in [0, 1], got {quantile}')
  real = mask.astype(bool)
  values = jax.lax.stop_gradient(entropy).astype(jnp.float32)
  threshold = jnp.nanquantile(jnp.where(real, values, jnp.nan), 1.0 - quantile)
  return real & (values >= threshold)
