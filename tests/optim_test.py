"""Learning-rate schedules, the AdamW chain and OptimConfig validation."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from rl_reason import models, optim


@pytest.mark.parametrize('step,expected', [(0, 0.0), (2, 0.5), (4, 1.0), (100, 1.0)])
def test_constant_schedule_with_warmup(step, expected):
  schedule = optim.make_schedule(optim.OptimConfig(learning_rate=1.0, warmup_steps=4))
  assert float(schedule(step)) == pytest.approx(expected)


@pytest.mark.parametrize('step,expected', [
    (0, 0.0),
    (5, 1.0),  # peak at the end of the warm-up
    (10, 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 5 / 10))),  # half-way through the cosine
    (15, 0.1),  # the horizon
    (40, 0.1),  # held afterwards
])
def test_cosine_schedule_values(step, expected):
  cfg = optim.OptimConfig(learning_rate=1.0, warmup_steps=5, schedule='cosine', total_steps=15, end_lr_factor=0.1)
  assert float(optim.make_schedule(cfg)(step)) == pytest.approx(expected, abs=1e-6)


def test_cosine_without_warmup_starts_at_peak():
  cfg = optim.OptimConfig(learning_rate=2.0, schedule='cosine', total_steps=10, end_lr_factor=0.0)
  schedule = optim.make_schedule(cfg)
  assert float(schedule(0)) == pytest.approx(2.0)
  assert float(schedule(5)) == pytest.approx(1.0)
  assert float(schedule(10)) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize('cfg', [
    optim.OptimConfig(learning_rate=0.1, warmup_steps=5, total_steps=300),
    optim.OptimConfig(learning_rate=0.1, schedule='cosine', total_steps=300, grad_clip_norm=0.0,
                      weight_decay=1e-4),
], ids=['constant', 'cosine'])
def test_minimises_a_quadratic(cfg):
  target = jnp.asarray([1.0, -2.0, 3.0])
  loss_fn = lambda p: jnp.sum(jnp.square(p['w'] - target))
  tx = optim.make_optimizer(cfg)
  params = {'w': jnp.zeros(3)}
  state = tx.init(params)

  @jax.jit
  def step(params, state):
    updates, state = tx.update(jax.grad(loss_fn)(params), state, params)
    return optax.apply_updates(params, updates), state

  for _ in range(cfg.total_steps):
    params, state = step(params, state)
  np.testing.assert_allclose(np.asarray(params['w']), np.asarray(target), atol=2e-2)


def _two_updates(tx):
  # Gradients of very different norms: clipping changes Adam's moment ratios, hence the update.
  params = {'w': jnp.zeros(3)}
  state = tx.init(params)
  for grad in (jnp.asarray([30.0, -40.0, 0.0]), jnp.asarray([0.1, 0.2, -0.3])):
    updates, state = tx.update({'w': grad}, state, params)
    params = optax.apply_updates(params, updates)
  return np.asarray(params['w'])


def test_optimizer_is_clip_then_adamw():
  cfg = optim.OptimConfig(learning_rate=0.1, warmup_steps=2, weight_decay=0.01, b2=0.99, grad_clip_norm=0.5)
  reference = optax.chain(optax.clip_by_global_norm(0.5),
                          optax.adamw(optim.make_schedule(cfg), b1=0.9, b2=0.99, eps=1e-8, weight_decay=0.01))
  np.testing.assert_allclose(_two_updates(optim.make_optimizer(cfg)), _two_updates(reference), rtol=1e-6)
  unclipped = _two_updates(optim.make_optimizer(dataclasses.replace(cfg, grad_clip_norm=0.0)))
  assert not np.allclose(unclipped, _two_updates(reference), rtol=1e-3)


@pytest.mark.parametrize('field,value,message', [
    ('schedule', 'linear', r"'linear'.*\['constant', 'cosine'\]"),
    ('learning_rate', 0.0, 'learning_rate'),
    ('warmup_steps', -1, 'warmup_steps'),
    ('total_steps', 0, 'total_steps'),
    ('end_lr_factor', 1.5, 'end_lr_factor'),
    ('b1', 1.0, 'b1'),
    ('b2', -0.1, 'b2'),
    ('eps', 0.0, 'eps'),
    ('weight_decay', -1e-4, 'weight_decay'),
    ('grad_clip_norm', -1.0, 'grad_clip_norm'),
])
def test_bad_values_raise(field, value, message):
  with pytest.raises(ValueError, match=message):
    dataclasses.replace(optim.OptimConfig(), **{field: value})


def test_cosine_warmup_must_leave_decay_steps():
  with pytest.raises(ValueError, match='cosine'):
    optim.OptimConfig(schedule='cosine', warmup_steps=10, total_steps=10)
  optim.OptimConfig(schedule='constant', warmup_steps=10, total_steps=5)  # harmless when constant


def test_freeze_leaves_the_selected_parameters_alone_and_out_of_clipping():
  # eps 1 makes Adam's first step depend on the gradient's scale, so clipping shows in the update.
  cfg = optim.OptimConfig(learning_rate=0.1, warmup_steps=0, weight_decay=0.1, eps=1.0, grad_clip_norm=1.0)
  params = {'visual': {'w': jnp.ones(2)}, 'decoder': {'w': jnp.ones(2)}}
  grads = {'visual': {'w': jnp.asarray([300.0, -400.0])}, 'decoder': {'w': jnp.asarray([0.3, 0.4])}}
  tx = optim.freeze(optim.make_optimizer(cfg), lambda path: path[0].key == 'visual')
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_array_equal(np.asarray(updates['visual']['w']), 0.0)  # no gradient step, no weight decay
  # The trained part's update is what tx gives it alone: counted, the frozen gradients' norm of 500
  # would clip the decoder's gradient to 1/500 of its size.
  alone = optim.make_optimizer(cfg)
  expected, _ = alone.update({'decoder': grads['decoder']}, alone.init({'decoder': params['decoder']}),
                             {'decoder': params['decoder']})
  np.testing.assert_allclose(np.asarray(updates['decoder']['w']), np.asarray(expected['decoder']['w']), rtol=1e-6)
  assert np.all(np.asarray(updates['decoder']['w']) != 0)


def test_vision_parameter_paths():
  model = models.create(models.get_preset('tiny_vl'), seed=0)
  paths = [path for path, _ in jax.tree_util.tree_leaves_with_path(nnx.state(model, nnx.Param))]
  vision = [p for p in paths if models.is_vision_param(p)]
  assert vision and len(vision) < len(paths)
  assert all('visual' in jax.tree_util.keystr(p) for p in vision)
  assert not any('visual' in jax.tree_util.keystr(p) for p in paths if not models.is_vision_param(p))
