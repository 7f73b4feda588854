"""Across processes: placing arrays on a mesh that spans them, gathering and agreeing what the host holds.

With one process every helper is the identity (or jax.device_put). With several (a multi-host run,
`jax.distributed`), each process holds its own rows of a batch on the host: these helpers put
replicated values on every process's devices, gather the whole batch where something reads it
(metrics, reward shaping, DAPO's filter) and agree the shapes every process pads its share to.
The gathering helpers are collectives: every process calls them, in the same order.
"""

from __future__ import annotations

import pickle
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils


def put(tree: Any, shardings: Any) -> Any:
  """jax.device_put onto a mesh, also one that spans several processes.

  `shardings` is one sharding for every leaf or a tree of them. With one process this is
  jax.device_put. With several, a process cannot put its own jax arrays on devices another
  process owns, so each leaf goes through host memory, one leaf at a time; every process must
  then pass the same values (parameters initialised from one seed, the key of one seed).
  Typed PRNG keys travel as their key data.
  """
  if jax.process_count() == 1:
    return jax.device_put(tree, shardings)

  def one(value, sharding):
    if isinstance(value, jax.Array) and jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):
      return jax.random.wrap_key_data(one(jax.random.key_data(value), sharding), impl=jax.random.key_impl(value))
    if isinstance(value, jax.Array) and not value.is_fully_addressable:
      return jax.device_put(value, sharding)  # already global: a reshard
    return jax.device_put(np.asarray(value), sharding)

  if isinstance(shardings, jax.sharding.Sharding):
    return jax.tree.map(lambda value: one(value, shardings), tree)
  return jax.tree.map(one, tree, shardings)


def to_host(x: Any) -> np.ndarray:
  """The whole of a jax array as numpy, also where its shards live on several processes.

  A collective when they do (every process calls it, in the same order, and gets the whole array).
  """
  if not isinstance(x, jax.Array) or x.is_fully_addressable or x.is_fully_replicated:
    return np.asarray(jax.device_get(x))
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def agree_max(*sizes: int) -> tuple[int, ...]:
  """Each size's maximum over the processes (the sizes themselves with one process).

  Every process pads its share of a batch to the same shapes (prompt length, image patches per
  row): the global array is built from the shares, whose shapes must agree. A collective: every
  process calls it, in the same order.
  """
  if jax.process_count() == 1:
    return tuple(int(s) for s in sizes)
  gathered = np.asarray(multihost_utils.process_allgather(np.asarray(sizes, np.int64)))  # [processes, n]
  return tuple(int(s) for s in gathered.reshape(-1, len(sizes)).max(axis=0))


def all_rows(tree: Any) -> Any:
  """Every process's rows of a tree of host arrays, concatenated along dimension 0 in process order.

  With one process the tree itself. 0-d leaves are counts and come back summed; string arrays
  travel as code points, 64-bit numbers as their bits (exact). A collective: every process calls
  it, in the same order. For what reads the whole batch (the logged metrics, reward shaping); what
  is trained stays each process's own rows (`process_rows` of a whole-batch result).
  """
  if jax.process_count() == 1:
    return tree

  def gather(leaf):
    leaf = np.asarray(leaf)
    if leaf.ndim == 0:
      return gather(leaf[None]).sum(axis=0).astype(leaf.dtype)
    if leaf.dtype.kind == 'U':
      width = max(agree_max(leaf.dtype.itemsize // 4)[0], 1)
      codes = leaf.astype(f'<U{width}').view(np.uint32).reshape(*leaf.shape, width)
      return gather(codes).view(f'<U{width}').reshape(-1, *leaf.shape[1:])
    if leaf.dtype.itemsize == 8:  # float64 / int64 as bit pairs: JAX without x64 would round them to 32 bits
      pairs = np.ascontiguousarray(leaf).view(np.uint32).reshape(*leaf.shape, 2)
      return gather(pairs).reshape(-1, *leaf.shape[1:], 2).view(leaf.dtype).reshape(-1, *leaf.shape[1:])
    return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))

  return jax.tree.map(gather, tree)


def all_objects(items: list[Any]) -> list[Any]:
  """Every process's list of picklable host objects (task examples, texts), joined in process order.

  With one process the list itself. A collective: every process calls it, in the same order.
  """
  if jax.process_count() == 1:
    return items
  data = np.frombuffer(pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL), np.uint8)
  width = agree_max(data.size)[0]
  sizes, padded = all_rows((np.asarray([data.size]), np.pad(data, (0, width - data.size))[None]))
  return [item for size, row in zip(sizes, padded) for item in pickle.loads(row[:size].tobytes())]


def process_rows(whole: np.ndarray, rows: int) -> np.ndarray:
  """This process's `rows` rows of a whole-batch host array (`all_rows` of equal shares)."""
  start = jax.process_index() * rows
  return whole[start:start + rows]
