"""make_mesh: axis sizes, -1 for the remaining devices, and mesh.num_devices (a subset of one process's devices)."""

import jax
import pytest

from configs import vlm_grpo
from rl_reason import run_config
from rl_reason.parallel import sharding as shd


def test_the_mesh_spans_every_device_by_default():
  mesh = shd.make_mesh(shd.MeshConfig(fsdp=2))
  assert dict(mesh.shape) == {'data': 4, 'fsdp': 2, 'tensor': 1}
  assert list(mesh.devices.flat) == jax.devices()


@pytest.mark.parametrize('count', [1, 2, 4])
def test_num_devices_takes_the_first_devices(count):
  mesh = shd.make_mesh(shd.MeshConfig(num_devices=count))
  assert dict(mesh.shape) == {'data': count, 'fsdp': 1, 'tensor': 1}
  assert list(mesh.devices.flat) == jax.devices()[:count]


@pytest.mark.parametrize('count', [-1, 9])
def test_num_devices_outside_the_devices_there_are_is_a_clear_error(count):
  with pytest.raises(ValueError, match=r'mesh.num_devices must be in \[1, 8\]'):
    shd.make_mesh(shd.MeshConfig(num_devices=count))


def test_the_run_config_carries_num_devices():
  config = vlm_grpo.get_config()
  assert run_config.from_config_dict(config).mesh.num_devices == 0
  config.mesh.num_devices, config.mesh.data = 2, 2
  cfg = run_config.from_config_dict(config).mesh
  assert (cfg.num_devices, cfg.data) == (2, 2)
  assert dict(shd.make_mesh(cfg).shape) == {'data': 2, 'fsdp': 1, 'tensor': 1}
