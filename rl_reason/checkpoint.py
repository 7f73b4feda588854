"""Orbax checkpoints of the training state plus JSON host-side metadata and the run config.

Each step directory holds three items: `state` (a pytree of jax arrays, restored straight into the
requested shardings), `meta` (JSON: data-iterator position, step, ...) and `config` (JSON: the run
config, compared before restoring). Orbax writes `<step>.orbax-checkpoint-tmp` and renames it on
commit, so a crash mid-save leaves the previous checkpoint as the latest one. Arrays this process
holds whole are fetched to the host in one transfer before orbax writes them; arrays spread over
several processes go to orbax as jax arrays, each process writing its own shards.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import orbax.checkpoint as ocp

_ITEMS = ('state', 'meta', 'config')
_MISSING = '<missing>'


class Checkpointer:
  """Saves and restores (state, meta, config) per step in `directory`, keeping the newest `keep`."""

  def __init__(self, directory: str, *, keep: int = 3):
    if keep < 1:
      raise ValueError(f'keep must be >= 1, got {keep}')
    self.directory = os.path.abspath(directory)  # orbax requires absolute paths
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, cleanup_tmp_directories=True)
    handlers = {'state': ocp.StandardCheckpointHandler(), 'meta': ocp.JsonCheckpointHandler(),
                'config': ocp.JsonCheckpointHandler()}
    self._manager = ocp.CheckpointManager(self.directory, item_names=_ITEMS, item_handlers=handlers,
                                          options=options)

  def save(self, step: int, state: Any, *, meta: dict[str, Any], config: dict[str, Any]) -> None:
    """Writes step `step` and blocks until it is committed (a later crash cannot corrupt it)."""
    # Host arrays: orbax's own device-to-host copy compiles slice programs per shape and sharding
    # (2.3 s for a first save of 200 small arrays on 8 CPU devices, 0.2 s with one device_get).
    saved = self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(_local_to_host(state)), meta=ocp.args.JsonSave(meta),
        config=ocp.args.JsonSave(config)))
    self._manager.wait_until_finished()
    if not saved:
      raise ValueError(f'checkpoint step {step} was not written to {self.directory}: '
                       f'it is not newer than the saved steps {self.all_steps()}')

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def step_path(self, step: int) -> str:
    return os.path.join(self.directory, str(step))

  def _check_step(self, step: int) -> None:
    if step not in self._manager.all_steps():
      raise FileNotFoundError(f'no checkpoint of step {step} in {self.directory}; saved steps: {self.all_steps()}')

  def saved_config(self, step: int) -> dict[str, Any]:
    """The run config stored with `step`, without reading the arrays."""
    self._check_step(step)
    return self._manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))['config']

  def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """(state, meta, config) of `step`.

    Args:
      step: a saved step (see `latest_step`).
      abstract_state: pytree of jax.ShapeDtypeStruct with `.sharding`, the structure of the saved
        state; arrays are restored directly into those shardings and dtypes.

    Raises:
      FileNotFoundError: `step` was not saved.
      ValueError: the saved tree's structure or shapes differ from `abstract_state`.
    """
    self._check_step(step)
    # Checked up front: orbax's own shape error leaves its other reads failing noisily.
    mismatches = _shape_mismatches(self._manager.item_metadata(step)['state'].tree, abstract_state)
    if mismatches:
      raise ValueError(f'checkpoint {self.step_path(step)} does not fit the current state (was it written '
                       f'by another model config?): {"; ".join(mismatches)}')
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore(),
          config=ocp.args.JsonRestore()))
    except ValueError as e:  # e.g. leaves added or removed
      raise ValueError(f'checkpoint {self.step_path(step)} does not fit the current state (was it '
                       f'written by another model config?): {e}') from e
    return restored['state'], restored['meta'], restored['config']

  def close(self) -> None:
    self._manager.close()


def _local_to_host(tree: Any) -> Any:
  """The tree with every jax array this process holds whole replaced by a numpy copy (one transfer)."""
  leaves, treedef = jax.tree.flatten(tree)
  local = [i for i, leaf in enumerate(leaves) if isinstance(leaf, jax.Array) and leaf.is_fully_addressable]
  for i, host in zip(local, jax.device_get([leaves[i] for i in local])):
    leaves[i] = host
  return jax.tree.unflatten(treedef, leaves)


def _leaf_shapes(tree: Any) -> dict[str, tuple[int, ...]]:
  # simple keystr: a NamedTuple field and the dict key orbax stores it under print alike.
  return {jax.tree_util.keystr(path, simple=True, separator='/'): tuple(leaf.shape)
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _shape_mismatches(saved_tree: Any, abstract_state: Any) -> list[str]:
  """'path: saved (..) != requested (..)' for each leaf present in both trees with another shape."""
  saved, requested = _leaf_shapes(saved_tree), _leaf_shapes(abstract_state)
  return [f'{path}: saved {saved[path]} != requested {shape}' for path, shape in requested.items()
          if path in saved and saved[path] != shape]


def _lookup(config: dict[str, Any], dotted_key: str) -> Any:
  value = config
  for part in dotted_key.split('.'):
    if not isinstance(value, dict) or part not in value:
      return _MISSING
    value = value[part]
  return value


def _differences(key: str, saved: Any, current: Any) -> list[str]:
  """'key saved != current' for each differing leaf, descending into dicts."""
  if isinstance(saved, dict) and isinstance(current, dict):
    return [diff for sub in sorted(set(saved) | set(current))
            for diff in _differences(f'{key}.{sub}', saved.get(sub, _MISSING), current.get(sub, _MISSING))]
  return [] if saved == current else [f'{key} {saved!r} != {current!r}']


def check_compatible(saved_config: dict[str, Any], config: dict[str, Any], keys: tuple[str, ...], *,
                     where: str = 'the checkpoint directory') -> None:
  """Raises a ValueError naming every differing dotted key under `keys` (sections or leaves).

  Both configs are compared in their JSON form, so tuples and lists of equal items match.
  """
  saved_config, config = json.loads(json.dumps(saved_config)), json.loads(json.dumps(config))
  differences = [diff for key in keys
                 for diff in _differences(key, _lookup(saved_config, key), _lookup(config, key))]
  if differences:
    raise ValueError(f'{where} holds a checkpoint of an incompatible config: {"; ".join(differences)} '
                     '(saved != current). Use a fresh workdir, or restore the saved values.')
