"""The jitted update: sharded on 8 fake devices equals 1 device; mu=1 shortcut equals an explicit old pass."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from rl_reason import models, optim
from rl_reason.models import config as model_config
from rl_reason.parallel import sharding as shd
from rl_reason.rl import learner as learner_lib
from rl_reason.rl import losses
from rl_reason.rl import weights

IMAGE, GROUPS = 60, 2


def _cfg():
  return model_config.ModelConfig(
      text=model_config.TextConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0,
                                   mrope_section=(2, 1, 1)),
      vision=model_config.VisionConfig(depth=2, hidden_size=16, intermediate_size=24, num_heads=2, patch_size=4,
                                       window_size=8, fullatt_block_indexes=(1,), out_hidden_size=32),
      image_token_id=IMAGE, vision_start_token_id=61)


def _batch(cfg, prompts=4, new_tokens=5, seed=0, return_pixels=False):
  rng = np.random.RandomState(seed)
  grids = np.array([[1, 4, 4]] * prompts)
  ids = np.zeros((prompts, 12), np.int64)
  mask = np.zeros((prompts, 12), np.int64)
  for p in range(prompts):
    row = [1, 61] + [IMAGE] * 4 + list(rng.randint(2, 50, size=2 + p % 3))
    ids[p, -len(row):] = row
    mask[p, -len(row):] = 1
  pixels = rng.randn(int(grids.prod(1).sum()), cfg.vision.patch_dim).astype(np.float32)
  prompt = models.prepare_inputs(cfg, ids, mask, pixels, grids)
  rows = prompts * GROUPS
  tokens = rng.randint(2, 50, size=(rows, new_tokens)).astype(np.int32)
  lengths = rng.randint(1, new_tokens + 1, size=rows)
  completion_mask = (np.arange(new_tokens)[None] < lengths[:, None]).astype(np.int32)
  batch = dict(prompt=prompt, tokens=tokens, completion_mask=completion_mask,
               advantages=rng.randn(rows).astype(np.float32))
  return (batch, pixels) if return_pixels else batch


def _run_updates(mesh, steps=2, loss=losses.LossConfig(beta=0.05)):
  cfg = _cfg()
  graphdef, params = nnx.split(models.create(cfg, seed=0))
  param_shardings = shd.state_shardings(params, mesh)
  params = jax.device_put(params, param_shardings)
  tx = optax.adam(1e-2)
  opt_shardings = shd.optimizer_shardings(tx, params, param_shardings, mesh)
  opt_state = jax.jit(tx.init, out_shardings=opt_shardings)(params)
  settings = learner_lib.LearnerSettings(groups=GROUPS, temperature=1.0, loss=loss)
  learner = learner_lib.Learner(graphdef, tx, tx, settings, param_shardings=param_shardings,
                                opt_shardings=opt_shardings, replicated=shd.replicated(mesh))
  ref = jax.tree.map(lambda x: x + 0.01, params)
  all_metrics = []
  for step in range(steps):
    batch = shd.host_to_global(_batch(cfg, seed=step), mesh)
    batch['ref_logprobs'] = learner.logprobs(ref, batch)
    params, opt_state, metrics = learner.rl_update(params, opt_state, batch)
    all_metrics.append(jax.device_get(metrics))
  return jax.device_get(params), all_metrics


# The default loss, and the options computed inside the update (chunked TW-GRPO weights from the
# vocab-sharded logits, the global entropy quantile, the global token count of token_mean).
SHARDED_LOSSES = [losses.LossConfig(beta=0.05),
                  losses.LossConfig(beta=0.05, kl_estimator='k3+', eps_high=0.28, dual_clip=3.0,
                                    aggregation='token_mean', token_weighting='tw_grpo', tw_alpha=1.7,
                                    tw_chunk_size=24, top_entropy_quantile=0.5)]


@pytest.mark.parametrize('loss', SHARDED_LOSSES, ids=['default', 'variants'])
def test_sharded_update_equals_single_device(loss):
  assert jax.device_count() == 8
  single, single_metrics = _run_updates(shd.make_mesh(shd.MeshConfig(data=1), jax.devices()[:1]), loss=loss)
  sharded_mesh = shd.make_mesh(shd.MeshConfig(data=2, fsdp=2, tensor=2))
  sharded, sharded_metrics = _run_updates(sharded_mesh, loss=loss)
  for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(sharded)):
    np.testing.assert_allclose(a, b, atol=2e-5, rtol=2e-5)
  np.testing.assert_allclose(single_metrics[-1]['loss'], sharded_metrics[-1]['loss'], rtol=1e-4, atol=1e-6)
  # The sharded run really is sharded: some parameter is split over the tensor axis.
  _, params = nnx.split(models.create(_cfg()))
  specs = jax.tree.leaves(shd.state_shardings(params, sharded_mesh), is_leaf=lambda x: isinstance(x, jax.sharding.NamedSharding))
  assert any('tensor' in str(s.spec) for s in specs) and any('fsdp' in str(s.spec) for s in specs)


def test_on_policy_shortcut_matches_explicit_old_logprobs():
  cfg = _cfg()
  graphdef, params = nnx.split(models.create(cfg, seed=0))
  settings = learner_lib.LearnerSettings(groups=GROUPS, temperature=0.7, loss=losses.LossConfig(beta=0.0))
  batch = jax.tree.map(jnp.asarray, _batch(cfg))

  def grads(with_old):
    def loss_fn(p):
      logits = learner_lib.completion_logits(nnx.merge(graphdef, p), batch, GROUPS)
      logp, _ = learner_lib.token_logprobs(logits, batch['tokens'], settings.temperature)
      old = jax.lax.stop_gradient(logp) if with_old is None else with_old
      return losses.policy_loss(logp, old, None, batch['advantages'], batch['completion_mask'], settings.loss)[0]
    return jax.jit(jax.grad(loss_fn))(params)  # jitted: an eager grad through the model takes minutes

  tx = optax.sgd(0.0)
  learner = learner_lib.Learner(graphdef, tx, tx, settings)
  old = learner.logprobs(params, batch)
  for a, b in zip(jax.tree.leaves(grads(None)), jax.tree.leaves(grads(old))):
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_completion_logprobs_match_full_forward():
  cfg = _cfg()
  model = models.create(cfg, seed=3)
  graphdef, params = nnx.split(model)
  batch, all_pixels = _batch(cfg, return_pixels=True)
  tx = optax.sgd(0.0)
  learner = learner_lib.Learner(graphdef, tx, tx, learner_lib.LearnerSettings(GROUPS, 1.0, losses.LossConfig()))
  got = np.asarray(learner.logprobs(params, jax.tree.map(jnp.asarray, batch)))
  prompt = batch['prompt']
  for row in (0, 3, 7):
    p = row // GROUPS
    ids = np.concatenate([prompt['input_ids'][p], batch['tokens'][row]])[None]
    mask = np.concatenate([prompt['attention_mask'][p], np.ones(batch['tokens'].shape[1], np.int32)])[None]
    pixels = all_pixels[16 * p:16 * (p + 1)]
    logits = np.asarray(models.forward(model, ids, mask, pixel_values=pixels, image_grid_thw=np.array([[1, 4, 4]])))[0]
    logp = np.asarray(jax.nn.log_softmax(logits[prompt['input_ids'].shape[1] - 1:-1], -1))
    expected = np.take_along_axis(logp, batch['tokens'][row][:, None], -1)[:, 0]
    np.testing.assert_allclose(got[row], expected, atol=1e-5)


@pytest.mark.parametrize('scan_layers', [False, True])
def test_shared_prompt_pass_equals_one_pass_in_value_and_gradient(scan_layers):
  """One prompt pass per prompt with its KV cache fanned out to G rows == G full passes (the learner's path)."""
  cfg = _cfg().replace(scan_layers=scan_layers)
  graphdef, params = nnx.split(models.create(cfg, seed=5))
  batch = jax.tree.map(jnp.asarray, _batch(cfg, prompts=3, new_tokens=6, seed=2))
  weights = jax.random.normal(jax.random.key(0), (3 * GROUPS, 6, cfg.text.hidden_size))

  def objective(hidden_fn):
    def f(params):
      hidden = hidden_fn(nnx.merge(graphdef, params), batch, GROUPS)
      return jnp.sum(hidden * weights), hidden
    return jax.jit(jax.value_and_grad(f, has_aux=True))

  (value, shared), grads = objective(learner_lib._shared_prompt_hidden)(params)
  (value_ref, one_pass), grads_ref = objective(learner_lib._one_pass_hidden)(params)
  np.testing.assert_allclose(shared, one_pass, atol=2e-5)
  np.testing.assert_allclose(value, value_ref, rtol=1e-5)
  for (path, got), want in zip(jax.tree_util.tree_leaves_with_path(grads), jax.tree.leaves(grads_ref)):
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4, err_msg=jax.tree_util.keystr(path))
  # The vision tower gets its gradient through the shared pass too.
  assert any(np.abs(np.asarray(g)).max() > 0 for p, g in jax.tree_util.tree_leaves_with_path(grads)
             if 'visual' in jax.tree_util.keystr(p))


def test_update_wires_the_loss_options_it_can_feed():
  """TW-GRPO weights from the logits, sampler IS correction, top-entropy tokens: the jitted update's loss and
  gradient equal policy_loss called by hand with the same inputs."""
  cfg = _cfg()
  graphdef, params = nnx.split(models.create(cfg, seed=1))
  loss_cfg = losses.LossConfig(eps_high=0.28, dual_clip=3.0, beta=0.0, aggregation='token_mean',
                               token_weighting='tw_grpo', tw_alpha=1.7, tw_chunk_size=24,
                               is_correction='token_truncate', is_cap_max=2.0, top_entropy_quantile=0.5,
                               entropy_coef=0.01)
  settings = learner_lib.LearnerSettings(groups=GROUPS, temperature=0.8, loss=loss_cfg)
  batch = jax.tree.map(jnp.asarray, _batch(cfg, seed=4))
  rng = np.random.RandomState(4)
  learner = learner_lib.Learner(graphdef, optax.sgd(0.0), optax.sgd(0.0), settings)
  batch['sampler_logprobs'] = learner.logprobs(params, batch) + jnp.asarray(rng.normal(0, 0.3, batch['tokens'].shape),
                                                                           jnp.float32)

  def by_hand(p):
    logits = learner_lib.completion_logits(nnx.merge(graphdef, p), batch, GROUPS)
    logp, entropy = learner_lib.token_logprobs(logits, batch['tokens'], settings.temperature)
    token_weights = weights.tw_grpo_token_weights(logits, batch['completion_mask'], GROUPS, alpha=1.7, chunk_size=24,
                                                  temperature=settings.temperature)
    return losses.policy_loss(logp, jax.lax.stop_gradient(logp), None, batch['advantages'], batch['completion_mask'],
                              loss_cfg, entropy=entropy, sampler_logprobs=batch['sampler_logprobs'],
                              token_weights=token_weights)

  (loss, expected), grads = jax.jit(jax.value_and_grad(by_hand, has_aux=True))(params)
  _, _, metrics = learner.rl_update(params, optax.sgd(0.0).init(params), batch)
  np.testing.assert_allclose(float(metrics['loss']), float(loss), rtol=1e-5)
  np.testing.assert_allclose(float(metrics['grad_norm']), float(optax.tree.norm(grads)), rtol=1e-4)
  for key in ('token_weight_mean', 'is_weight_mean', 'entropy_kept_frac', 'sampler_logprob_diff_mean', 'entropy'):
    np.testing.assert_allclose(float(metrics[key]), float(expected[key]), rtol=1e-5, err_msg=key)
  assert 0 < float(metrics['entropy_kept_frac']) < 1 and float(metrics['is_weight_max']) == pytest.approx(2.0)


@pytest.mark.parametrize('option,key', [
    (dict(mask_truncated_completions=True), 'truncated'),
    (dict(difficulty_weight='exp'), 'iou'),
    (dict(kl_group_factor='akf_mean_reward'), 'rewards'),
    (dict(beta_schedule='linear', beta_schedule_steps=10), 'step'),
])
def test_update_names_the_batch_input_an_option_needs(option, key):
  cfg = _cfg()
  graphdef, params = nnx.split(models.create(cfg, seed=0))
  settings = learner_lib.LearnerSettings(groups=GROUPS, temperature=1.0, loss=losses.LossConfig(beta=0.1, **option))
  learner = learner_lib.Learner(graphdef, optax.sgd(0.0), optax.sgd(0.0), settings)
  batch = jax.tree.map(jnp.asarray, _batch(cfg))
  batch['ref_logprobs'] = jnp.zeros(batch['tokens'].shape)
  with pytest.raises(ValueError, match=f"needs batch\\['{key}'\\]"):
    learner.rl_update(params, optax.sgd(0.0).init(params), batch)


@pytest.mark.parametrize('batch_size', [6])
def test_batch_not_divisible_by_mesh_is_an_error(batch_size):
  from rl_reason import run_config, train  # pylint: disable=g-import-not-at-top
  from configs import vlm_grpo  # pylint: disable=g-import-not-at-top
  config = vlm_grpo.get_config()
  config.rollout.batch_size = batch_size
  config.rollout.num_generations = 3
  config.mesh.data = 4
  config.mesh.fsdp = 2
  cfg = run_config.from_config_dict(config)
  with pytest.raises(ValueError, match='not divisible by the mesh'):
    train.Trainer(cfg, {}, '/tmp/unused')


@pytest.mark.parametrize('update', ['rl', 'sft'])
def test_a_frozen_vision_tower_gets_no_gradient_and_the_rest_the_same_update(update):
  """rl_train_vision / sft_train_vision False with optim.freeze: the tower does not move, holds no optimiser
  state, and its backward pass is not run (fewer dots compiled); the decoder's update is that of the
  trained tower's run (the tower's gradient never reaches the decoder's)."""
  cfg = _cfg()
  graphdef, params = nnx.split(models.create(cfg, seed=0))
  batch = jax.tree.map(jnp.asarray, _batch(cfg))
  if update == 'sft':
    batch = dict(batch, prompt=jax.tree_util.tree_map_with_path(  # one completion per prompt
        lambda path, x: jnp.repeat(x, GROUPS, axis=learner_lib._prompt_dim(path)), batch['prompt']))
  runs = {}
  for train_vision in (True, False):
    tx = optim.freeze(optax.adamw(1e-2, weight_decay=0.1), models.is_vision_param)
    settings = learner_lib.LearnerSettings(GROUPS, 1.0, losses.LossConfig(beta=0.0),
                                           **{f'{update}_train_vision': train_vision})
    learner = learner_lib.Learner(graphdef, tx, tx, settings)
    step = learner.rl_update if update == 'rl' else learner.sft_update
    opt_state = tx.init(params)
    dots = step.lower(params, opt_state, batch).as_text().count('dot_general')
    new, _, metrics = step(jax.tree.map(jnp.copy, params), opt_state, batch)
    runs[train_vision] = (jax.device_get(new), dots, metrics['grad_norm'])
  frozen_dots, trained_dots = runs[False][1], runs[True][1]
  assert frozen_dots < trained_dots, (frozen_dots, trained_dots)
  state_sizes = sum(x.size for x in jax.tree.leaves(tx.init(params)))
  trained = sum(x.size for p, x in jax.tree_util.tree_leaves_with_path(params) if not models.is_vision_param(p))
  assert state_sizes == 2 * trained + 1  # Adam's two moments of the trained leaves, and the count
  for path, before in jax.tree_util.tree_leaves_with_path(params):
    after_trained, after_frozen = (_leaf(runs[flag][0], path) for flag in (True, False))
    if models.is_vision_param(path):
      np.testing.assert_array_equal(after_frozen, before)
      np.testing.assert_array_equal(after_trained, before)  # optim.freeze alone leaves it too
    else:
      # Adam moves every leaf by ~lr = 1e-2 on its first step: a wrong gradient would differ by that much
      np.testing.assert_allclose(after_frozen, after_trained, rtol=1e-5, atol=2e-5)
  assert float(runs[False][2]) < float(runs[True][2])  # the tower's gradient is no longer in the norm


def _leaf(tree, path):
  return dict(jax.tree_util.tree_leaves_with_path(tree))[path]
