"""Loss aggregation modes: values, gradients (the per-token weights) and global normalisers.

Shapes: B rows, T tokens; mask [B, T] with an empty row.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rl_reference as ref_lib
from rl_reason.rl import aggregation

B, T = 6, 9
CONSTANT = 16.0


def _inputs(seed):
  rng = np.random.default_rng(seed)
  per_token = rng.normal(size=(B, T))
  lengths = rng.integers(1, T + 1, B)
  lengths[-1] = 0
  mask = (np.arange(T)[None] < lengths[:, None]).astype(np.float64)
  return per_token, mask


def _kwargs(name):
  return {'constant': CONSTANT} if name == 'seq_mean_token_sum_norm' else {}


@pytest.mark.parametrize('name', sorted(aggregation.AGGREGATIONS))
@pytest.mark.parametrize('seed', [0, 1])
def test_aggregation_value_and_gradient(name, seed):
  per_token, mask = _inputs(seed)
  fn = lambda x: aggregation.AGGREGATIONS[name](x, jnp.asarray(mask, jnp.int32), **_kwargs(name))
  value, grad = jax.value_and_grad(fn)(jnp.asarray(per_token, jnp.float32))
  weights = ref_lib.aggregation_weights(name, mask, constant=CONSTANT)
  np.testing.assert_allclose(float(value), (weights * per_token).sum(), rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(np.asarray(grad), weights, rtol=1e-6, atol=1e-8)


def test_modes_differ_as_documented():
  per_token = jnp.asarray([[1.0, 1.0, 1.0, 1.0], [3.0, 0.0, 0.0, 0.0]])
  mask = jnp.asarray([[1, 1, 1, 1], [1, 0, 0, 0]])
  assert float(aggregation.seq_mean_token_mean(per_token, mask)) == pytest.approx(2.0)  # (1 + 3) / 2
  assert float(aggregation.token_mean(per_token, mask)) == pytest.approx(7.0 / 5.0)
  assert float(aggregation.seq_mean_token_sum(per_token, mask)) == pytest.approx(7.0 / 2.0)
  assert float(aggregation.seq_mean_token_sum_norm(per_token, mask, constant=4.0)) == pytest.approx(7.0 / 8.0)


def test_empty_batch_aggregates_to_zero():
  for name, fn in aggregation.AGGREGATIONS.items():
    assert float(fn(jnp.ones((2, 3)), jnp.zeros((2, 3)), **_kwargs(name))) == 0.0


@pytest.mark.parametrize('name', sorted(aggregation.AGGREGATIONS))
def test_micro_batches_with_global_normalisers_sum_to_the_full_batch(name):
  """Gradient accumulation / per-device losses: parts given the batch's counts add up exactly."""
  per_token, mask = _inputs(2)
  x, m = jnp.asarray(per_token, jnp.float32), jnp.asarray(mask, jnp.float32)
  fn = aggregation.AGGREGATIONS[name]
  full_value, full_grad = jax.value_and_grad(lambda v: fn(v, m, **_kwargs(name)))(x)
  counts = dict(num_tokens=jnp.sum(m), num_sequences=B)
  parts = [slice(0, 2), slice(2, 5), slice(5, B)]  # unequal parts, one holding the empty row
  values, grads = zip(*[jax.value_and_grad(lambda v, s=s: fn(v, m[s], **counts, **_kwargs(name)))(x[s])
                        for s in parts])
  np.testing.assert_allclose(float(sum(values)), float(full_value), rtol=1e-6)
  np.testing.assert_allclose(np.concatenate([np.asarray(g) for g in grads]), np.asarray(full_grad), rtol=1e-6)
  # Without the global counts token_mean over unequal parts is not the full-batch loss.
  if name == 'token_mean':
    local = sum(float(fn(x[s], m[s])) for s in parts)
    assert abs(local - float(full_value)) > 1e-3


def test_sum_norm_defaults_to_the_completion_axis_and_rejects_negative_constants():
  per_token, mask = _inputs(3)
  x, m = jnp.asarray(per_token, jnp.float32), jnp.asarray(mask, jnp.float32)
  for constant in (None, 0.0, float(T)):
    np.testing.assert_allclose(float(aggregation.seq_mean_token_sum_norm(x, m, constant=constant)),
                               (per_token * mask).sum() / (B * T), rtol=1e-6)
  with pytest.raises(ValueError, match='constant'):
    aggregation.seq_mean_token_sum_norm(x, m, constant=-1.0)
