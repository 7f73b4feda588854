"""Start-up memory estimate: parameters, optimiser state, reference copy, KV cache (and frozen scorers), per device.

Shapes: L layers, B rollout rows (prompts x G), S cache slots (prompt bucket + new tokens),
K KV heads, H head dim.

Parameter and optimiser bytes are exact for the given shardings (each leaf's shard shape times its
itemsize, counted on the fullest device); the KV cache is the sampler's keys and values (L layers
of [B, K, H, S] and [B, K, S, H]) with the batch split over ('data', 'fsdp') and KV heads over
'tensor' where they divide.
Activations and XLA temporaries are not counted: the numbers are a floor, not a ceiling.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding

GIB = 1024**3


def _leaves(tree: Any) -> list[Any]:
  return [x for x in jax.tree.leaves(tree) if hasattr(x, 'shape')]


def tree_bytes(tree: Any, shardings: Any = None) -> tuple[int, int]:
  """(total bytes, bytes on the fullest device) of a pytree of arrays or ShapeDtypeStructs.

  `shardings` is a matching pytree of NamedShardings, or None (everything on one device).
  """
  leaves = _leaves(tree)
  sharding_leaves = (jax.tree.leaves(shardings, is_leaf=lambda x: isinstance(x, NamedSharding))
                     if shardings is not None else [None] * len(leaves))
  if len(sharding_leaves) != len(leaves):
    raise ValueError(f'shardings tree has {len(sharding_leaves)} leaves, arrays tree {len(leaves)}')
  total = per_device = 0
  for leaf, sharding in zip(leaves, sharding_leaves):
    itemsize = np.dtype(leaf.dtype).itemsize
    total += math.prod(leaf.shape) * itemsize
    shard = sharding.shard_shape(leaf.shape) if sharding is not None else leaf.shape
    per_device += math.prod(shard) * itemsize
  return total, per_device


@dataclasses.dataclass(frozen=True)
class KVCacheSpec:
  """What the sampler allocates: keys and values of every layer for B rows of S slots."""

  layers: int
  batch: int
  slots: int
  kv_heads: int
  head_dim: int
  dtype: Any = np.float32

  def bytes(self, mesh: Mesh | None = None) -> tuple[int, int]:
    """(total, per device); batch over data x fsdp and heads over tensor where they divide."""
    total = 2 * self.layers * self.batch * self.slots * self.kv_heads * self.head_dim * np.dtype(self.dtype).itemsize
    if mesh is None:
      return total, total
    batch_split = mesh.shape['data'] * mesh.shape['fsdp']
    head_split = mesh.shape['tensor']
    split = (batch_split if self.batch % batch_split == 0 else 1) * (head_split if self.kv_heads % head_split == 0 else 1)
    return total, total // split


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
  """Bytes per component: {name: (total, per device)}."""

  parts: dict[str, tuple[int, int]]
  devices: int

  @property
  def per_device(self) -> int:
    return sum(per for _, per in self.parts.values())

  def format(self) -> str:
    lines = [f'memory estimate (floor: activations not counted), {self.devices} device(s):']
    for name, (total, per) in self.parts.items():
      lines.append(f'  {name:<16} {total / GIB:9.3f} GiB total {per / GIB:9.3f} GiB per device')
    lines.append(f'  {"sum":<16} {sum(t for t, _ in self.parts.values()) / GIB:9.3f} GiB total '
                 f'{self.per_device / GIB:9.3f} GiB per device')
    return '\n'.join(lines)


def estimate(params: Any, param_shardings: Any, opt_state: Any, opt_shardings: Any, kv: KVCacheSpec,
             mesh: Mesh, *, reference: bool, extra: dict[str, tuple[int, int]] | None = None) -> MemoryEstimate:
  """Parameters, optimiser state, the reference copy (if any), `extra` parts (e.g. a listener or a
  judge model and its cache: {name: (total, per device)}) and the KV cache on `mesh`."""
  parts = {'params': tree_bytes(params, param_shardings),
           'optimizer': tree_bytes(opt_state, opt_shardings)}
  if reference:
    parts['reference'] = parts['params']
  parts.update(extra or {})
  parts['kv_cache'] = kv.bytes(mesh)
  return MemoryEstimate(parts=parts, devices=mesh.size)
