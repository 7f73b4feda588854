"""One mesh ('data', 'fsdp', 'tensor') and logical-axis rules that place params and activations on it.

Parameters carry their logical axes as variable metadata (`nnx.Param(x, logical_axes=(EMBED, MLP))`);
`logical_to_sharding` maps them through the rules. A dimension that the mapped mesh axes do not
divide is replicated instead (the tiny preset has 2 KV heads; a mesh may have 4 tensor devices).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ('data', 'fsdp', 'tensor')

# Logical axis names used by the models and the learner.
BATCH = 'batch'
EMBED = 'embed'
MLP = 'mlp'
HEADS = 'heads'
KV_HEADS = 'kv_heads'
VOCAB = 'vocab'
LAYERS = 'layers'

DEFAULT_RULES: tuple[tuple[str, Any], ...] = (
    (BATCH, ('data', 'fsdp')),
    (EMBED, 'fsdp'),
    (MLP, 'tensor'),
    (HEADS, 'tensor'),
    (KV_HEADS, 'tensor'),
    (VOCAB, 'tensor'),
    (LAYERS, None),
)


@dataclasses.dataclass(frozen=True)
class MeshConfig:
  """Device counts per mesh axis; -1 on one axis takes the remaining devices."""

  data: int = -1
  fsdp: int = 1
  tensor: int = 1
  rules: tuple[tuple[str, Any], ...] = DEFAULT_RULES
  num_devices: int = 0  # > 0: only the first this many devices (single process); 0: all of them

  def shape(self, num_devices: int) -> tuple[int, int, int]:
    sizes = [self.data, self.fsdp, self.tensor]
    if sum(s == -1 for s in sizes) > 1:
      raise ValueError(f'mesh: at most one axis may be -1, got {sizes}')
    if any(s == 0 or s < -1 for s in sizes):
      raise ValueError(f'mesh sizes must be positive or -1, got {sizes}')
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
      if num_devices % known:
        raise ValueError(f'mesh {dict(zip(MESH_AXES, sizes))} does not divide {num_devices} devices')
      sizes[sizes.index(-1)] = num_devices // known
    if math.prod(sizes) != num_devices:
      raise ValueError(f'mesh {dict(zip(MESH_AXES, sizes))} needs {math.prod(sizes)} devices, '
                       f'have {num_devices}')
    return tuple(sizes)


def make_mesh(cfg: MeshConfig, devices: Sequence[jax.Device] | None = None) -> Mesh:
  """The ('data', 'fsdp', 'tensor') mesh over `devices` (default jax.devices(), cut to cfg.num_devices)."""
  devices = list(devices if devices is not None else jax.devices())
  if cfg.num_devices:
    if not 0 < cfg.num_devices <= len(devices):
      raise ValueError(f'mesh.num_devices must be in [1, {len(devices)}] (the devices there are) or 0 for all, '
                       f'got {cfg.num_devices}')
    if jax.process_count() > 1:
      raise ValueError(f'mesh.num_devices={cfg.num_devices} picks devices of a single-process run; with '
                       f'{jax.process_count()} processes leave it 0 and size the mesh axes instead')
    devices = devices[:cfg.num_devices]
  shape = cfg.shape(len(devices))
  return Mesh(np.asarray(devices).reshape(shape), MESH_AXES)


def _mesh_axes_for(logical: str | None, rules: dict[str, Any]) -> tuple[str, ...]:
  if logical is None:
    return ()
  if logical not in rules:
    raise ValueError(f'logical axis {logical!r} has no sharding rule; rules: {sorted(rules)}')
  target = rules[logical]
  if target is None:
    return ()
  return (target,) if isinstance(target, str) else tuple(target)


def logical_to_spec(shape: Sequence[int], logical_axes: Sequence[str | None], mesh: Mesh,
                    rules: Sequence[tuple[str, Any]] = DEFAULT_RULES) -> PartitionSpec:
  """PartitionSpec for an array; replicates dims that the mesh axes do not divide."""
  if len(shape) != len(logical_axes):
    raise ValueError(f'shape {tuple(shape)} and logical axes {tuple(logical_axes)} differ in rank')
  rules = dict(rules)
  used: set[str] = set()
  spec = []
  for size, logical in zip(shape, logical_axes):
    axes = tuple(a for a in _mesh_axes_for(logical, rules) if a not in used and mesh.shape[a] > 1)
    if axes and size % math.prod(mesh.shape[a] for a in axes) == 0:
      used.update(axes)
      spec.append(axes[0] if len(axes) == 1 else axes)
    else:
      spec.append(None)
  return PartitionSpec(*spec)


def logical_to_sharding(shape, logical_axes, mesh, rules=DEFAULT_RULES) -> NamedSharding:
  return NamedSharding(mesh, logical_to_spec(shape, logical_axes, mesh, rules))


def state_shardings(state: nnx.State, mesh: Mesh, rules=DEFAULT_RULES) -> nnx.State:
  """NamedShardings for every variable of an nnx state, from its `logical_axes` metadata."""

  def one(variable):
    value = variable.get_value() if hasattr(variable, 'get_value') else variable.value
    axes = variable.get_metadata().get('logical_axes') or (None,) * value.ndim
    return variable.replace(logical_to_sharding(value.shape, axes, mesh, rules))

  return jax.tree.map(one, state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh, ndim: int, batch_dim: int = 0, rules=DEFAULT_RULES,
                   batch_size: int | None = None) -> NamedSharding:
  """Shard dimension `batch_dim` over the batch axes, the rest replicated."""
  axes = [None] * ndim
  axes[batch_dim] = BATCH
  shape = [1] * ndim
  shape[batch_dim] = batch_size if batch_size is not None else math.prod(
      mesh.shape[a] for a in _mesh_axes_for(BATCH, dict(rules)))
  return logical_to_sharding(shape, axes, mesh, rules)


def batch_divisor(mesh: Mesh, rules=DEFAULT_RULES) -> int:
  """How many ways the batch dimension is split on this mesh."""
  return math.prod(mesh.shape[a] for a in _mesh_axes_for(BATCH, dict(rules)))


def prompt_row_dim(path: tuple) -> int:
  """The row dimension of a prompt array at `path` (a models.prepare_inputs dict, or one nested in a
  batch): 1 for the text `positions` [3, B, T], 0 for the rest (`vision/positions` [B, P, 2] too)."""
  keys = [getattr(entry, 'key', None) for entry in path]
  return 1 if keys[-1:] == ['positions'] and keys[-2:-1] != ['vision'] else 0


@functools.lru_cache(maxsize=8)
def check_rows_split_over_processes(mesh: Mesh, rules=DEFAULT_RULES) -> None:
  """Raises unless the batch axes give every process its own equal block of rows.

  Each process feeds only its own rows (`host_to_global`): a mesh that puts the same rows on devices
  of several processes (the batch split fewer ways than there are processes, e.g. 'tensor' across
  them) would join different rows into one array without a word.
  """
  divisor = batch_divisor(mesh, rules)
  rows_of = {}
  for device, index in batch_sharding(mesh, 1, 0, rules, batch_size=divisor).devices_indices_map((divisor,)).items():
    rows_of.setdefault(device.process_index, set()).update(range(divisor)[index[0]])
  blocks = list(rows_of.values())
  overlap = any(a & b for i, a in enumerate(blocks) for b in blocks[i + 1:])
  if overlap or len({len(b) for b in blocks}) > 1:
    raise ValueError(f'the mesh {dict(mesh.shape)} splits the rows {divisor} ways (batch axes '
                     f'{_mesh_axes_for(BATCH, dict(rules))}) over {jax.process_count()} processes: each process feeds '
                     'its own rows, so the batch axes must give every process rows of its own (make data x fsdp a '
                     'multiple of the process count, with tensor inside each process)')


def host_to_global(tree: dict[str, Any], mesh: Mesh, rules=DEFAULT_RULES) -> dict[str, Any]:
  """Host arrays holding this process's rows -> global arrays sharded over the batch axes.

  Every array's batch dimension is 0, except the text `positions` [3, B, T] (dimension 1). Each
  process passes only its own rows, so multi-host feeding needs no gather; the shares' other
  dimensions must agree (`multihost.agree_max`).
  """

  if jax.process_count() > 1:
    check_rows_split_over_processes(mesh, tuple(rules))

  def put(path, value):
    value = np.asarray(value)
    dim = prompt_row_dim(path)
    global_rows = value.shape[dim] * jax.process_count()
    sharding = batch_sharding(mesh, value.ndim, dim, rules, batch_size=global_rows)
    return jax.make_array_from_process_local_data(sharding, value)

  return jax.tree_util.tree_map_with_path(put, tree)


def host_rows(x: Any) -> np.ndarray:
  """This process's rows of an array split over the batch axes in dimension 0, as numpy.

  The inverse of `host_to_global` for one leaf: with one process the whole array; with several,
  the rows of the shards this process holds, in order, which are the rows it fed (a process's
  devices hold one contiguous block of rows). Replicated arrays come back whole.
  """
  if not isinstance(x, jax.Array) or x.is_fully_addressable or x.is_fully_replicated:
    return np.asarray(jax.device_get(x))
  blocks = {}
  for shard in x.addressable_shards:
    rows = shard.index[0] if shard.index else slice(None)
    if shard.data.shape[1:] != x.shape[1:]:
      raise ValueError(f'host_rows: a {x.shape} array split beyond its rows ({shard.data.shape} per shard)')
    blocks.setdefault(rows.start or 0, shard.data)
  starts = sorted(blocks)
  return np.concatenate([np.asarray(blocks[start]) for start in starts], axis=0)


def optimizer_shardings(tx, params, param_shardings, mesh: Mesh):
  """Shardings of `tx`'s state: a leaf whose tree path ends with a parameter's path, at its shape (Adam's
  moments), follows that parameter; the rest (step counts) replicate. Matching paths rather than tree
  structures also covers optax.multi_transform, whose state leaves out the parameters it freezes."""
  abstract = jax.eval_shape(tx.init, params)
  shardings = jax.tree.leaves(param_shardings, is_leaf=lambda x: isinstance(x, NamedSharding))
  by_path = {tuple(path): (leaf.shape, sharding)
             for (path, leaf), sharding in zip(jax.tree_util.tree_leaves_with_path(params), shardings, strict=True)}

  def place(path, leaf):
    for start in range(len(path)):
      shape, sharding = by_path.get(tuple(path[start:]), (None, None))
      if shape == leaf.shape:
        return sharding
    return replicated(mesh)
  return jax.tree_util.tree_map_with_path(place, abstract)
