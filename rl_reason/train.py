"""The RL loop: data -> rollout -> rewards -> advantages -> update -> bookkeeping. Orchestration only.

Shapes: P prompts per step, G samples per prompt, B = P*G completions, T prompt bucket,
N max new tokens.

One step: the sampler (jit) generates G completions per prompt from one prefill each; rewards
are scored on the host in plain Python; group advantages and the update run in jit on the mesh.
A supervised warm-up on random permutations (format only) precedes RL when configured, and its
result becomes the KL reference. Everything a run depends on (params, optimiser state, reference,
RNG, data position, step) is checkpointed, so running the same command again resumes exactly.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx
from ml_collections import config_dict

from rl_reason import checkpoint, curricula, metrics, models, optim, rewards, rollout as rollout_lib, run_config, tasks
from rl_reason.data import image_processor, jsonl_source, pipeline, processor as processor_lib, sources as data_sources
from rl_reason.data import tokenizer as tokenizer_lib
from rl_reason.parallel import memory
from rl_reason.parallel import multihost
from rl_reason.parallel import sharding as shd
from rl_reason.rl import advantages as advantages_lib
from rl_reason.rl import entropy_control
from rl_reason.rl import judge as judge_lib
from rl_reason.rl import kl as kl_lib
from rl_reason.rl import learner as learner_lib
from rl_reason.rl import listener as listener_lib
from rl_reason.sampling import Sampler, SamplingConfig

# Config keys whose change makes a checkpoint in the workdir unusable for this run.
COMPATIBILITY_KEYS = ('seed', 'model', 'task', 'data', 'rollout.batch_size', 'rollout.num_generations')
TIME_KEYS = ('time_sample', 'time_reward', 'time_update', 'time_step')
# Metrics of this process rather than of the run: a resumed run may differ in them.
PROCESS_KEYS = TIME_KEYS + ('sampler_compilations',)


def _flat(tree: Any) -> dict[str, Any]:
  """A pytree as {path: leaf}: the checkpoint layout, independent of container classes."""
  return {jax.tree_util.keystr(path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _unflat(template: Any, flat: dict[str, Any]) -> Any:
  paths, treedef = jax.tree_util.tree_flatten_with_path(template)
  return jax.tree_util.tree_unflatten(treedef, [flat[jax.tree_util.keystr(p)] for p, _ in paths])


def _metric_rewards(task, weights: dict[str, float]) -> dict[str, str]:
  """Summary metric -> reward: the task's own map, else accuracy = the most heavily weighted reward."""
  return dict(getattr(task, 'metric_rewards', None) or {'accuracy': max(weights, key=weights.get)})


# Config fields that base and instruct releases of one architecture may differ in.
_NOT_ARCHITECTURE = ('max_position_embeddings',)


def _check_matches_preset(loaded: models.ModelConfig, preset: str, path: str) -> None:
  """The checkpoint at `path` must have the architecture of the published `preset`."""
  expected = models.get_preset(preset)
  differences = []
  for part in ('text', 'vision'):
    want, got = getattr(expected, part), getattr(loaded, part)
    if want is None:
      continue
    if got is None:
      differences.append(f'{part}: absent in config.json')
      continue
    differences += [f'{part}.{name}: config.json {getattr(got, name)!r}, preset {getattr(want, name)!r}'
                    for name in want.__dataclass_fields__
                    if name not in _NOT_ARCHITECTURE and getattr(got, name) != getattr(want, name)]
  if differences:
    raise ValueError(f'{path}/config.json is not the architecture of model.preset {preset!r}: '
                     f'{"; ".join(differences[:6])} (set --config.model.preset= to train it anyway)')


def _host(x) -> np.ndarray:
  """This process's rows of a sampler or learner output (the whole array with one process)."""
  return shd.host_rows(x)


def _curriculum_domains(curriculum) -> tuple[str, ...]:
  """The domains a curriculum (or a part of a combined one) may draw prompts from; () when it draws none."""
  parts = getattr(curriculum, 'parts', (curriculum,))
  return tuple(d for part in parts if curricula.base.DOMAINS in part.controls() for d in part.cfg.domains)


def _example_domains(examples: list[dict[str, Any]]) -> np.ndarray | None:
  """[P] the domain of each example (meta 'domain'), or None unless every example has one."""
  domains = [e['meta'].get(pipeline.DOMAIN) for e in examples]
  return np.asarray(domains) if all(isinstance(d, str) for d in domains) else None


def _domain_metrics(domains: np.ndarray, total: np.ndarray, accuracy: np.ndarray) -> dict[str, float]:
  """domain/<d>/{prompts, reward_mean, accuracy} from [P] domains and [P, G] reward and accuracy columns."""
  out = {}
  for domain in sorted(set(domains.tolist())):
    rows = domains == domain
    out.update({f'domain/{domain}/prompts': float(rows.sum()),
                f'domain/{domain}/reward_mean': float(total[rows].mean()),
                f'domain/{domain}/accuracy': float(accuracy[rows].mean())})
  return out


class Trainer:
  """Builds every component from a RunConfig and runs the loop."""

  def __init__(self, cfg: run_config.RunConfig, raw_config: dict[str, Any], workdir: str):
    self.cfg = cfg
    self.raw_config = raw_config
    self.workdir = workdir
    self.mesh = shd.make_mesh(cfg.mesh)
    divisor = shd.batch_divisor(self.mesh, cfg.mesh.rules)
    if cfg.rollout.batch_size % divisor:
      raise ValueError(f'rollout.batch_size {cfg.rollout.batch_size} is not divisible by the mesh batch '
                       f'axes (data x fsdp = {divisor})')
    if cfg.train.eval_size % divisor or cfg.warmup.batch_size % divisor:
      raise ValueError(f'train.eval_size {cfg.train.eval_size} and warmup.batch_size '
                       f'{cfg.warmup.batch_size} must be divisible by the mesh batch axes ({divisor})')
    micro = cfg.rl.micro_batch(cfg.rollout)
    if micro % divisor:
      raise ValueError(f'the micro-batch of {micro} completions (rl.mini_batch_size {cfg.rl.mini_batch(cfg.rollout)}'
                       f' / rl.grad_accum_steps {cfg.rl.grad_accum_steps}) is not divisible by the mesh batch axes '
                       f'(data x fsdp = {divisor})')
    model = self._build_model()
    self.model_cfg = model.cfg
    special = tokenizer_lib.special_ids(self.tokenizer)
    self.pad_id, self.eos_id = special['pad_id'], special['eos_id']
    self.from_rows = cfg.data.source != data_sources.PROCEDURAL  # prompts from a TFDS dataset or JSONL files
    source_kwargs = dict(task_name=cfg.task_name, task_cfg=cfg.task, seed=cfg.seed,
                         process_index=jax.process_index(), process_count=jax.process_count())
    # A row source stands in for the task: its rewards, a probe example, format-only warm-up answers.
    self.task = (data_sources.source_task(cfg.data, **source_kwargs) if self.from_rows
                 else tasks.get(cfg.task_name, cfg.task))
    if cfg.warmup.steps and cfg.warmup.answers == 'correct' and not hasattr(self.task, 'answer_completion'):
      raise ValueError(f"warmup.answers='correct' trains on the task's correct answers, but "
                       f"{'data.source ' + repr(cfg.data.source) if self.from_rows else 'task ' + repr(cfg.task_name)}"
                       " has no answer_completion; use warmup.answers='random'")
    # reward.weights = {} takes the task's published rewards and weights.
    self.reward_weights = dict(cfg.reward_weights) or dict(zip(self.task.reward_names, self.task.reward_weights))
    # Summary metrics (solve rate, accuracy, format rate) by reward; logged, trained on only if weighted.
    self.metric_rewards = _metric_rewards(self.task, self.reward_weights)
    # Reward shaping between scoring and advantages (lengths, groups, log-probs); its rewards are scored too.
    self.shaper = rewards.shapers.Shaper(cfg.shaping)
    self._token_texts: dict[int, str] = {}
    # Adaptive entropy control (rl.entropy_target > 0): a host-side coefficient, checkpointed with the run.
    loss_cfg = cfg.loss
    self.entropy_control = (entropy_control.EntropyController(
        target=loss_cfg.entropy_target, delta=loss_cfg.entropy_coef_delta, max_coef=loss_cfg.entropy_coef_max,
        coef=loss_cfg.entropy_coef) if loss_cfg.adaptive_entropy else None)
    probe = self.task.example(0)
    self._check_rewards(self.reward_weights, self.metric_rewards, probe['meta'])
    self.curriculum = self._build_curriculum()
    self.current = (self.task, self.reward_weights, self.metric_rewards)  # what this step trains on
    image_cfg = self._image_config(probe)
    encoder = pipeline.PromptEncoder(self.tokenizer, self.model_cfg, image_cfg, cfg.rollout.prompt_buckets)

    def stream(split, batch, make_example=self.task.example, make_example_for=None):
      if self.from_rows:  # this process's rows of the split; prompts longer than the largest bucket dropped, counted
        keep = jsonl_source.PromptBudget(self.tokenizer, max(cfg.rollout.prompt_buckets), image_cfg)
        return pipeline.SourceStream(data_sources.build(cfg.data, split, keep=keep, **source_kwargs), encoder,
                                     global_batch=batch, process_count=jax.process_count())
      return pipeline.PromptStream(make_example, encoder, seed=cfg.seed, split=split, global_batch=batch,
                                   process_index=jax.process_index(), process_count=jax.process_count(),
                                   make_example_for=make_example_for)
    # Training prompts come from the task of the current curriculum stage (and the domains it draws, if it
    # does); eval and warm-up from the run's.
    ds = cfg.dynamic_sampling
    round_prompts = ds.prompts_per_round or cfg.rollout.prompts_per_step if ds else cfg.rollout.prompts_per_step
    if self.curriculum is not None and curricula.base.DOMAINS in self.curriculum.controls() and (
        round_prompts != cfg.rollout.prompts_per_step):
      raise ValueError(f'the curriculum draws the domains of the step\'s {cfg.rollout.prompts_per_step} prompts, but '
                       f'dynamic_sampling.prompts_per_round is {round_prompts}: set it to 0 with this curriculum')
    paired = 'rephrased' in self.shaper.needs  # Co-Reward: each prompt followed by its rephrasing
    self.train_stream = stream('train', round_prompts // 2 if paired else round_prompts,
                               lambda seed: self.current[0].example(seed),
                               lambda domain, seed: self.current[0].example_for(domain, seed))
    if paired:
      if not self.from_rows:
        pipeline.rephrased(self.task.example(0))  # a task without paraphrases fails here, not at step 0
      self.train_stream = pipeline.PairedStream(self.train_stream)
    self.eval_batch = stream('eval', cfg.train.eval_size).next()
    self.warmup_stream = stream('warmup', cfg.warmup.batch_size)

    self.num_params = models.param_count(model)
    self.graphdef, params = nnx.split(model)
    self.param_shardings = shd.state_shardings(params, self.mesh, cfg.mesh.rules)
    self.replicated = shd.replicated(self.mesh)
    params = multihost.put(params, self.param_shardings)
    self.rl_tx = optim.make_optimizer(cfg.optim)
    self.sft_tx = optim.make_optimizer(optim.OptimConfig(
        learning_rate=cfg.warmup.learning_rate, warmup_steps=0, schedule='constant',
        total_steps=max(cfg.warmup.steps, 1), grad_clip_norm=cfg.optim.grad_clip_norm))
    if not cfg.warmup.train_vision:  # the tower stays as initialised (its warm-up gradients are noise)
      self.sft_tx = optim.freeze(self.sft_tx, models.is_vision_param)
    if not cfg.rl.train_vision:
      if self.model_cfg.vision is None:
        raise ValueError('rl.train_vision=False freezes the vision tower, but the model has none')
      self.rl_tx = optim.freeze(self.rl_tx, models.is_vision_param)
    self.opt_shardings = shd.optimizer_shardings(self.rl_tx, params, self.param_shardings, self.mesh)
    opt_state = jax.jit(self.rl_tx.init, out_shardings=self.opt_shardings)(params)
    self.listener, self.listener_params = self._build_listener()
    self.judge = self._build_judge(probe)
    self.memory = self._memory_estimate(params, opt_state)
    logging.info('%s', self.memory.format())
    settings = learner_lib.LearnerSettings(
        groups=cfg.rollout.num_generations, temperature=cfg.rollout.temperature, loss=cfg.loss,
        micro_batch_size=micro if micro < cfg.rollout.batch_size else 0,
        logprob_chunk_size=cfg.rl.logprob_chunk_size, rl_train_vision=cfg.rl.train_vision,
        sft_train_vision=cfg.warmup.train_vision)
    self.learner = learner_lib.Learner(self.graphdef, self.rl_tx, self.sft_tx, settings,
                                       param_shardings=self.param_shardings, opt_shardings=self.opt_shardings,
                                       replicated=self.replicated, mesh=self.mesh, rules=cfg.mesh.rules)
    self.sampler = Sampler(self.graphdef, mesh=self.mesh, rules=cfg.mesh.rules)
    self.sampling = SamplingConfig(max_new_tokens=cfg.rollout.max_new_tokens, temperature=cfg.rollout.temperature,
                                   top_k=cfg.rollout.top_k, top_p=cfg.rollout.top_p, min_p=cfg.rollout.min_p,
                                   cache_dtype=cfg.rollout.cache_dtype or None, eos_token_ids=(self.eos_id,),
                                   pad_token_id=self.pad_id, num_samples=cfg.rollout.num_generations,
                                   prefill_chunk=cfg.rollout.prefill_chunk,
                                   # PEAR and entropy control read them
                                   return_entropy='entropies' in self.shaper.needs or self.entropy_control is not None)
    self.greedy = SamplingConfig(max_new_tokens=cfg.rollout.max_new_tokens, temperature=0.0,
                                 cache_dtype=cfg.rollout.cache_dtype or None, prefill_chunk=cfg.rollout.prefill_chunk,
                                 eos_token_ids=(self.eos_id,), pad_token_id=self.pad_id, num_samples=1)
    self.base_key = multihost.put(jax.random.key(cfg.seed), self.replicated)
    self.state = dict(params=params, opt_state=opt_state,
                      ref_params=jax.tree.map(jnp.copy, params) if self._keeps_reference() else None)
    self.step = 0
    self.checkpointer = checkpoint.Checkpointer(os.path.join(workdir, 'checkpoints'),
                                                keep=cfg.train.keep_checkpoints)
    self.advantage_fn = advantages_lib.get_advantage_fn(cfg.rl.advantage)

  def _listener_path(self) -> str | None:
    """None without the listener scheme; '' when the listener is the frozen reference; else its checkpoint."""
    chosen = [s.config.path for s in self.cfg.shaping if s.name == 'listener']
    return chosen[0] if chosen else None

  def _keeps_reference(self) -> bool:
    """The frozen reference is the KL's anchor (beta > 0) and, by default, the listener's parameters."""
    return self.cfg.loss.beta > 0 or self._listener_path() == ''

  def _build_listener(self) -> tuple[listener_lib.Listener | None, Any]:
    """(the listener, its own parameters or None when it reads the reference's) for shaping 'listener'."""
    path = self._listener_path()
    if path is None:
      return None, None
    graphdef, params = self.graphdef, None
    if path:  # another checkpoint, frozen; it reads the policy's token ids and image patches
      model = models.from_pretrained(path, dtype=self.cfg.model.param_dtype, compute_dtype=self.cfg.model.dtype,
                                     mesh=self.mesh)
      ours, theirs = self.model_cfg, model.cfg
      checks = [('text.vocab_size', ours.text.vocab_size, theirs.text.vocab_size),
                ('vision (tower present)', ours.vision is not None, theirs.vision is not None)]
      if ours.vision is not None and theirs.vision is not None:
        checks += [('image_token_id', ours.image_token_id, theirs.image_token_id),
                   ('vision patch / merge / temporal patch',
                    (ours.vision.patch_size, ours.vision.spatial_merge_size, ours.vision.temporal_patch_size),
                    (theirs.vision.patch_size, theirs.vision.spatial_merge_size, theirs.vision.temporal_patch_size))]
      for what, a, b in checks:
        if a != b:
          raise ValueError(f'shaping.listener.path {path}: its {what} {b} differs from the policy\'s {a}; the '
                           'listener reads the policy\'s token ids and image patches')
      graphdef, params = nnx.split(model)
      params = multihost.put(params, shd.state_shardings(params, self.mesh, self.cfg.mesh.rules))
    return listener_lib.Listener(graphdef, self.tokenizer, pad_id=self.pad_id, mesh=self.mesh,
                                 rules=self.cfg.mesh.rules), params

  def _trust_grpo(self) -> tuple[Any, Any] | None:
    """(its Selected entry, the scheme) when Trust-GRPO is configured, else None."""
    return next(((s, scheme) for s, scheme in self.shaper.schemes if s.name == 'trust_grpo'), None)

  def _build_judge(self, probe: dict[str, Any]) -> judge_lib.ThinkingJudge | None:
    """Trust-GRPO's thinking reward model (shaping.trust_grpo.judge), frozen; None without one."""
    trust = self._trust_grpo()
    if trust is None or not trust[0].config.judge:
      return None
    cfg = trust[0].config
    return judge_lib.load(cfg.judge, policy_tokenizer=self.tokenizer, probe_images=probe['images'],
                          template=cfg.judge_template, max_new_tokens=cfg.judge_max_new_tokens,
                          param_dtype=self.cfg.model.param_dtype, dtype=self.cfg.model.dtype, mesh=self.mesh,
                          rules=self.cfg.mesh.rules, batch_rows=cfg.judge_batch_size)

  def _image_config(self, probe: dict[str, Any]) -> image_processor.ImageProcessorConfig | None:
    """Qwen2-VL preprocessing for the model's vision tower; None for text-only models."""
    if self.model_cfg.vision is None and probe['images']:
      raise ValueError(f'task {self.cfg.task_name!r} produces images but the model has no vision tower')
    return pipeline.image_config(self.model_cfg, self.cfg.model.path, probe['images'])

  def _build_model(self) -> models.Model:
    """The tokenizer and the model: a Hugging Face checkpoint directory, or a tiny preset from random init.

    A published preset (e.g. qwen2_5_vl_3b) names the architecture a recipe was tuned for; it
    needs model.path, and the checkpoint's config.json must describe that architecture.
    """
    section = self.cfg.model
    layout = dict(scan_layers=section.scan_layers, remat=section.remat)
    if section.path:
      # The checkpoint's own tokenizer and chat template (its processor's, when it has processor files);
      # _image_config reads its image settings.
      self.tokenizer = processor_lib.load_prompt_tokenizer(section.path)
      model = models.from_pretrained(section.path, dtype=section.param_dtype, compute_dtype=section.dtype,
                                     mesh=self.mesh, **layout)
      if section.preset:
        _check_matches_preset(model.cfg, section.preset, section.path)
      return model
    if section.preset in models.presets.PUBLISHED:
      raise ValueError(f'model.preset {section.preset!r} is a published checkpoint architecture: set '
                       f'--config.model.path to its Hugging Face directory (weights and tokenizer)')
    self.tokenizer = tokenizer_lib.build_tiny_tokenizer()
    special = tokenizer_lib.special_ids(self.tokenizer)
    vocab = -(-len(self.tokenizer) // 64) * 64
    model_cfg = models.get_preset(section.preset, vocab_size=vocab, image_token_id=special['image_pad_id'],
                                  vision_start_token_id=special['vision_start_id'])
    return models.create(model_cfg.replace(dtype=section.dtype, param_dtype=section.param_dtype, **layout),
                         seed=self.cfg.seed)

  def _memory_estimate(self, params, opt_state) -> memory.MemoryEstimate:
    text = self.model_cfg.text
    kv = memory.KVCacheSpec(layers=text.num_hidden_layers, batch=self.cfg.rollout.batch_size,
                            slots=max(self.cfg.rollout.prompt_buckets) + self.cfg.rollout.max_new_tokens,
                            kv_heads=text.num_key_value_heads, head_dim=text.dim_per_head,
                            dtype=models.model.DTYPES[self.model_cfg.dtype])
    extra = {}
    if self.listener_params is not None:  # a listener checkpoint of its own
      extra['listener'] = memory.tree_bytes(self.listener_params, jax.tree.map(lambda x: x.sharding,
                                                                                self.listener_params))
    if self.judge is not None:  # Trust-GRPO's thinking reward model, and its cache for a call's rows (all judged)
      extra['judge'] = memory.tree_bytes(self.judge.params, jax.tree.map(lambda x: x.sharding, self.judge.params))
      processes = jax.process_count()
      rows = self.judge.call_rows(self.cfg.rollout.batch_size // processes) * processes
      extra['judge_kv_cache'] = self.judge.kv_cache(rows, max(self.cfg.rollout.prompt_buckets),
                                                    self.cfg.rollout.max_new_tokens).bytes(self.mesh)
    return memory.estimate(params, self.param_shardings, opt_state, self.opt_shardings, kv, self.mesh,
                           reference=self._keeps_reference(), extra=extra)

  def _check_rewards(self, weights: dict[str, float], metric_rewards: dict[str, str], meta: dict) -> None:
    """Unknown reward names and metadata a reward needs but the task lacks fail at start-up."""
    names = list(dict.fromkeys([*weights, *metric_rewards.values(), *self.shaper.reward_names]))
    for name in names:
      rewards.get(name)
    rewards.check_meta(names, meta)

  def _build_curriculum(self):
    """The configured curriculum, with every task variant it may switch to probed now, not at step 500."""
    spec = self.cfg.curriculum
    if not spec:
      return None
    curriculum = curricula.from_spec(spec)
    if curricula.base.LASER_TARGETS in curriculum.controls():
      raise ValueError(f'curriculum {spec.get("name")!r} sets LASER-D length targets, which the training loop does '
                       'not feed; select the shaping scheme laser_d or laser_de, which keeps its own target updater')
    if self.from_rows:  # run_config refused curricula that switch tasks or draw domains: the rows stay the rows
      return curriculum
    self._task_cache = {}
    variants = [(self.cfg.task_name, self.cfg.task),
                *curricula.check(curriculum, self.cfg.task_name, self.cfg.task)]
    domains = _curriculum_domains(curriculum)
    for name, task_cfg in variants:
      task = self._task_for(name, task_cfg)
      weights = dict(self.cfg.reward_weights) or dict(zip(task.reward_names, task.reward_weights))
      self._check_rewards(weights, _metric_rewards(task, weights), task.example(0)['meta'])
      if domains and not hasattr(task, 'example_for'):
        raise ValueError(f'curriculum {spec.get("name")!r} draws prompts by domain {list(domains)}, but task '
                         f'{name!r} has no example_for(domain, seed)')
      for domain in domains:  # an unknown domain fails now, not at the first draw of it
        task.example_for(domain, 0)
    return curriculum

  def _task_for(self, name: str, task_cfg: Any):
    key = (name, task_cfg)
    if key not in self._task_cache:
      self._task_cache[key] = tasks.get(name, task_cfg)
    return self._task_cache[key]

  def _apply_curriculum(self):
    """Sets self.current (task, reward weights, summary rewards) from the curriculum's plan for this step."""
    if self.curriculum is None:
      return None
    plan = self.curriculum.plan(self.step, self.cfg.rollout.prompts_per_step)
    if self.from_rows:
      task = self.task
    else:
      task = self._task_for(*curricula.resolve_task(plan, self.cfg.task_name, self.cfg.task))
    weights = dict(self.cfg.reward_weights) or dict(zip(task.reward_names, task.reward_weights))
    weights.update(plan.reward_weights)
    self.current = (task, weights, _metric_rewards(task, weights))
    return plan

  def _write_eval(self, writer) -> None:
    row = self.evaluate()
    writer.write(self.step, row)
    if self.curriculum is not None:
      self.curriculum.observe_eval(self.step, row)

  # ---------------------------------------------------------------- checkpoints
  def _checkpoint_tree(self) -> dict[str, Any]:
    tree = dict(params=self.state['params'], opt_state=self.state['opt_state'],
                rng=jax.random.key_data(self.base_key))
    if self.state['ref_params'] is not None:
      tree['ref_params'] = self.state['ref_params']
    return _flat(tree)

  def save(self) -> None:
    self.checkpointer.save(self.step, self._checkpoint_tree(),
                           meta={'step': self.step, 'data': self.train_stream.state(),
                                 'curriculum': self.curriculum.state() if self.curriculum is not None else None,
                                 'shaping': self.shaper.state(),
                                 'entropy_control': (self.entropy_control.state()
                                                     if self.entropy_control is not None else None)},
                           config=self.raw_config)

  def maybe_restore(self) -> bool:
    step = self.checkpointer.latest_step()
    if step is None:
      return False
    saved_config = self.checkpointer.saved_config(step)
    if 'data' not in saved_config and not self.from_rows:  # written before the data section: procedural prompts
      saved_config = {**saved_config, 'data': self.raw_config.get('data')}
    checkpoint.check_compatible(saved_config, self.raw_config, COMPATIBILITY_KEYS,
                                where=os.path.join(self.workdir, 'checkpoints'))
    template = self._checkpoint_tree()
    abstract = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=v.sharding) for k, v in template.items()}
    flat, meta, _ = self.checkpointer.restore(step, abstract)
    tree = _unflat(dict(params=self.state['params'], opt_state=self.state['opt_state'],
                        rng=jax.random.key_data(self.base_key),
                        **({'ref_params': self.state['ref_params']} if self.state['ref_params'] is not None else {})),
                   flat)
    self.state = dict(params=tree['params'], opt_state=tree['opt_state'], ref_params=tree.get('ref_params'))
    self.base_key = multihost.put(jax.random.wrap_key_data(tree['rng']), self.replicated)
    self.step = int(meta['step'])
    self.train_stream.restore(meta['data'])
    if self.curriculum is not None:
      self.curriculum.restore(meta['curriculum'])
    self.shaper.restore(meta.get('shaping'))  # evolving shaping state (LASER-D targets); stateless: nothing
    if self.entropy_control is not None:
      self.entropy_control.restore(meta.get('entropy_control'))
    logging.info('resumed from %s at step %d', self.workdir, self.step)
    return True

  # ---------------------------------------------------------------- pieces of a step
  def _completion_arrays(self, tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    return (np.arange(tokens.shape[1])[None, :] < lengths[:, None]).astype(np.int32)

  def _token_text(self, token: int) -> str:
    """One token's text ('' for special tokens), cached: shaping schemes locate spans like '<answer>' by it."""
    if token not in self._token_texts:
      self._token_texts[token] = self.tokenizer.decode([token], skip_special_tokens=True)
    return self._token_texts[token]

  def decode(self, tokens: np.ndarray, lengths: np.ndarray) -> list[str]:
    return [self.tokenizer.decode(row[:n].tolist(), skip_special_tokens=True) for row, n in zip(tokens, lengths)]

  def score(self, texts: list[str], metas: list[dict], reward_weights=None, metric_rewards=None) -> dict[str, np.ndarray]:
    weights = dict(reward_weights or self.reward_weights)
    for name in (*(metric_rewards or self.metric_rewards).values(), *self.shaper.reward_names):
      weights.setdefault(name, 0.0)
    return rewards.score_batch(texts, metas, weights, workers=self.cfg.reward_exec.workers,
                               timeout_s=self.cfg.reward_exec.timeout_s)

  def _warmup_completion(self, meta: dict[str, Any], seed: int) -> str:
    if self.cfg.warmup.answers == 'correct':
      return self.task.answer_completion(meta)
    return self.task.random_answer_completion(meta, seed=seed)

  def warmup(self) -> None:
    """Supervised steps on random valid answers: the format is learned, the answers are not.

    With warmup.answers = 'correct', on the task's correct answers instead (a pretrained stand-in).
    """
    cfg = self.cfg
    params = self.state['params']
    opt_state = jax.jit(self.sft_tx.init, out_shardings=shd.optimizer_shardings(
        self.sft_tx, params, self.param_shardings, self.mesh))(params)
    steps = cfg.rollout.max_new_tokens
    for position in range(cfg.warmup.steps):
      prompts = self.warmup_stream.next()
      examples = prompts.examples
      first = jax.process_index() * len(examples)  # answers seeded by the row's place in the global batch
      targets = [self.tokenizer.encode(self._warmup_completion(e['meta'], seed=position * 7919 + i),
                                       add_special_tokens=False) + [self.eos_id]
                 for i, e in enumerate(examples, start=first)]
      tokens = np.full((len(targets), steps), self.pad_id, np.int32)
      lengths = np.array([min(len(t), steps) for t in targets])
      for row, target in enumerate(targets):
        tokens[row, :lengths[row]] = target[:steps]
      batch = shd.host_to_global(dict(prompt=prompts.inputs, tokens=tokens,
                             completion_mask=self._completion_arrays(tokens, lengths)), self.mesh)
      self.state['params'], opt_state, out = self.learner.sft_update(self.state['params'], opt_state, batch)
      if position % 25 == 0 or position == cfg.warmup.steps - 1:
        logging.info('warm-up %d/%d: loss %.3f', position + 1, cfg.warmup.steps, float(out['sft_loss']))
    if cfg.warmup.reference and self.state['ref_params'] is not None:
      self.state['ref_params'] = jax.tree.map(jnp.copy, self.state['params'])

  def evaluate(self) -> dict[str, float]:
    batch = self.eval_batch
    out = self.sampler(self.state['params'], shd.host_to_global(batch.inputs, self.mesh), self.base_key, self.greedy)
    tokens, lengths = _host(out.tokens), _host(out.lengths)
    scores = self.score(self.decode(tokens, lengths), [e['meta'] for e in batch.examples])
    scores = multihost.all_rows(scores)  # the whole eval batch: every process's rows
    row = {**{f'eval_{k}': v for k, v in self._summary(scores).items()},
           'eval_reward_mean': float(np.nanmean(scores['total']))}
    domains = _example_domains(batch.examples)
    if domains is not None:  # eval_domain/<d>/{prompts, reward_mean, accuracy}
      domains = multihost.all_rows(domains)
      column = lambda name: np.nan_to_num(scores[name], nan=0.0).reshape(-1, 1)
      per_domain = _domain_metrics(domains, column('total'), column(self.metric_rewards['accuracy']))
      row.update({f'eval_{k}': v for k, v in per_domain.items()})
    return row

  def _summary(self, scores: dict[str, np.ndarray], metric_rewards=None) -> dict[str, float]:
    """The task's summary metrics (solve_rate, accuracy, format_rate, ...) from reward columns."""
    return {metric: float(np.nanmean(scores[name])) if np.isfinite(scores[name]).any() else float('nan')
            for metric, name in (metric_rewards or self.metric_rewards).items()}

  def rl_step(self) -> tuple[dict[str, float], list[str]]:
    cfg = self.cfg
    groups = cfg.rollout.num_generations
    t0 = time.perf_counter()
    plan = self._apply_curriculum()
    _, reward_weights, metric_rewards = self.current
    times = {'time_sample': 0.0, 'time_reward': 0.0}
    key = jax.random.fold_in(self.base_key, self.step)

    def generate(round_index: int) -> rollout_lib.Rollout:
      """The next prompts of the stream (of the domains the curriculum drew, if it draws), scored."""
      t0 = time.perf_counter()
      batch = self.train_stream.next(plan.domains if plan is not None else ())
      round_key = key if round_index == 0 else jax.random.fold_in(key, round_index)
      out = self.sampler(self.state['params'], shd.host_to_global(batch.inputs, self.mesh), round_key, self.sampling)
      tokens, lengths = _host(out.tokens), _host(out.lengths)
      t1 = time.perf_counter()
      texts = self.decode(tokens, lengths)
      metas = [e['meta'] for e in batch.examples for _ in range(groups)]
      scores = self.score(texts, metas, reward_weights, metric_rewards)
      times['time_sample'] += t1 - t0
      times['time_reward'] += time.perf_counter() - t1
      return rollout_lib.Rollout(examples=batch.examples, tokens=tokens, logprobs=_host(out.logprobs),
                                 lengths=lengths, finished=_host(out.finished).astype(bool), texts=texts,
                                 scores=scores, inputs=batch.inputs,
                                 entropies=None if out.entropy is None else _host(out.entropy))

    if cfg.dynamic_sampling is None:
      rollout = offered = generate(0)  # this process's rows
      sampling_metrics = {}
    else:
      # Every process filters the whole of each round alike, then trains on its equal share of the kept
      # groups (which may have been sampled on another process).
      column = 'total' if cfg.dynamic_sampling.metric == 'reward' else metric_rewards['accuracy']
      rollout, offered, sampling_metrics = rollout_lib.dynamic_rollout(
          lambda round_index: rollout_lib.whole_batch(generate(round_index)), cfg.dynamic_sampling,
          cfg.rollout.prompts_per_step, column, self.pad_id)
      if jax.process_count() > 1:
        share = cfg.rollout.prompts_per_step // jax.process_count()
        first = jax.process_index() * share
        rollout = rollout_lib.take_groups(rollout, range(first, first + share))
    # `offered` is the whole batch after dynamic sampling, else this process's rows
    gather = (lambda tree: tree) if cfg.dynamic_sampling is not None else multihost.all_rows
    inputs = rollout.inputs if rollout.inputs is not None else self.train_stream.encode(rollout.examples)
    tokens, lengths, finished, texts, scores = (rollout.tokens, rollout.lengths, rollout.finished, rollout.texts,
                                                rollout.scores)
    total = np.nan_to_num(scores['total'], nan=0.0)
    # The advantages see the shaped reward; the logged task metrics (reward_mean, ...) stay the task's.
    # Shaping sees the whole batch (some schemes rank or pool groups across it, and their metrics are
    # the batch's); each process trains on its own rows of the result.
    read_only_by_some = {}  # computed and gathered only when a selected scheme reads them
    if 'texts' in self.shaper.needs:
      read_only_by_some['texts'] = np.asarray(texts)
    prompt = shd.host_to_global(dict(prompt=inputs), self.mesh)['prompt']  # on device once: listener, update
    if self.listener is not None:  # p_listener of the right answer given each completion's reasoning
      params = self.listener_params if self.listener_params is not None else self.state['ref_params']
      read_only_by_some['listener'] = self.listener.probabilities(params, prompt, rollout.examples, texts)
    if self.judge is not None:  # Trust-GRPO's R^t, judged only on the rows it uses
      selected, trust = self._trust_grpo()
      rows = trust.judged_rows(total, scores, groups) if selected.active(self.step) else np.zeros(len(texts), bool)
      read_only_by_some['judge'] = self.judge.scores(rollout.examples, texts, rows)
    whole = multihost.all_rows(dict(total=total, scores=scores, lengths=lengths, tokens=tokens,
                                    logprobs=rollout.logprobs, entropies=rollout.entropies, **read_only_by_some))
    trained, shaping_metrics = self.shaper.apply(rewards.shapers.StepInputs(
        **whole, num_generations=groups, step=self.step, token_text=self._token_text))
    trained = multihost.process_rows(trained, len(total))
    group_std = trained.reshape(-1, groups).std(axis=1)
    t2 = time.perf_counter()
    loss_cfg = cfg.loss
    completion_mask = self._completion_arrays(tokens, lengths)
    update_batch = shd.host_to_global(dict(tokens=tokens, completion_mask=completion_mask,
                                           sampler_logprobs=rollout.logprobs, rewards=trained.astype(np.float32),
                                           truncated=~finished), self.mesh)
    update_batch['prompt'] = prompt
    update_batch['step'] = jax.device_put(np.int32(self.step), self.replicated)
    control_metrics = {}
    if self.entropy_control is not None:  # this rollout's mean token entropy, as the sampler computed it
      # the whole batch's: every process steers the one coefficient the update takes as a replicated scalar
      entropies, logprobs, mask = multihost.all_rows((rollout.entropies, rollout.logprobs, completion_mask))
      entropy = entropy_control.mean_entropy(entropies, mask)
      coef = self.entropy_control.step(entropy)
      update_batch['entropy_coef'] = jax.device_put(np.float32(coef), self.replicated)
      control_metrics = {'entropy_rollout': entropy, 'entropy_sampled': entropy_control.sampled_entropy(logprobs, mask)}
    if loss_cfg.beta > 0:
      update_batch['ref_logprobs'] = self.learner.logprobs(self.state['ref_params'], update_batch)
    if cfg.rl.optimizer_steps(cfg.rollout) > 1:  # the policy moves during the rollout's updates
      update_batch['old_logprobs'] = self.learner.logprobs(self.state['params'], update_batch)
    iou = run_config.difficulty_iou_column([*reward_weights, *metric_rewards.values()], loss_cfg,
                                           f'the task of step {self.step}')
    if iou is not None:  # UniVG-R1 difficulty weight: the per-completion IoU reward
      update_batch['iou'] = shd.host_to_global(
          {'iou': np.nan_to_num(scores[iou], nan=0.0).astype(np.float32)}, self.mesh)['iou']
    if loss_cfg.beta > 0 and loss_cfg.kl_placement == 'reward':
      # Advantages come from the KL-shaped rewards; the logged reward metrics stay the task's.
      update_batch['rewards'] = self._kl_shaped_rewards(update_batch)
    update_batch['advantages'] = self._advantages(scores, update_batch['rewards'])
    update = self._update(update_batch)
    t3 = time.perf_counter()
    # Task metrics over every offered completion: with dynamic sampling the trained batch is a biased
    # pick (groups with a spread), so only all offered rounds together say how the policy does.
    # The logged metrics are the whole batch's: every process's rows (with one process, its own).
    offered_scores, offered_lengths, offered_finished = gather((offered.scores, offered.lengths, offered.finished))
    group_std = multihost.all_rows(group_std)
    offered_column = lambda name: np.nan_to_num(offered_scores[name], nan=0.0).reshape(-1, groups)  # [P, G]
    offered_total = np.nan_to_num(offered_scores['total'], nan=0.0)
    row = {
        'reward_mean': float(offered_total.mean()), 'reward_std': float(offered_total.std()),
        **self._summary(offered_scores, metric_rewards),
        'reward_failures': float(offered_scores.get('failures', 0)),
        **rewards.batch_metrics(offered_scores),  # every reward and sub-score, failure and timeout counts
        'frac_reward_zero_std': float((group_std < 1e-8).mean()),  # of the trained batch
        'completion_length': float(offered_lengths.mean()), 'truncated_rate': float(1 - offered_finished.mean()),
        'sampler_compilations': self.sampler.compilations,  # bounded by the prompt buckets
        **times, 'time_update': t3 - t2, 'time_step': t3 - t0,
        **sampling_metrics,  # dynamic_sampling/{kept, filled, rounds, offered, dropped_*, surplus}
        **control_metrics,  # adaptive entropy control: entropy_rollout, entropy_sampled (the coefficient: entropy_coef)
        **update,
    }
    if sampling_metrics:
      row['batch_reward_mean'] = float(multihost.all_rows(total).mean())
    if self.from_rows:
      # over-long prompts so far (never truncated), every process's
      row['data/dropped'] = float(multihost.all_rows(np.int64(self.train_stream.dropped)))
    row.update(shaping_metrics)  # reward_shaped_mean and shaping/<scheme>/<metric>
    domains = _example_domains(offered.examples)  # tasks with domains: per-domain metrics, curriculum or not
    if domains is not None:
      domains = gather(domains)
      row.update(_domain_metrics(domains, offered_column('total'), offered_column(metric_rewards['accuracy'])))
    if self.curriculum is not None:
      row.update(plan.metrics)
      columns = {'accuracy': offered_column(metric_rewards['accuracy']), 'length': offered_lengths.reshape(-1, groups)}
      if domains is not None:
        columns['domain'] = domains
      self.curriculum.observe(self.step, row, columns)
    return row, texts

  def _update(self, update_batch: dict[str, Any]) -> dict[str, float]:
    """mu epochs over the rollout batch, one optimiser step per mini-batch of whole groups (seeded order)."""
    rl, rollout = self.cfg.rl, self.cfg.rollout
    prompts = rollout.prompts_per_step
    per_minibatch = rl.mini_batch(rollout) // rollout.num_generations
    updates = []
    for epoch in range(rl.num_iterations):
      for groups in learner_lib.minibatch_groups(prompts, per_minibatch, seed=self.cfg.seed, step=self.step,
                                                 epoch=epoch):
        batch = (update_batch if per_minibatch == prompts else
                 self.learner.minibatch(update_batch, jax.device_put(groups, self.replicated)))
        self.state['params'], self.state['opt_state'], metrics = self.learner.rl_update(
            self.state['params'], self.state['opt_state'], batch)
        updates.append(metrics)
    return learner_lib.combine_update_metrics(
        [{k: float(v) for k, v in jax.device_get(u).items()} for u in updates])

  def _kl_shaped_rewards(self, update_batch: dict[str, Any]) -> jax.Array:
    """r - beta * sum_t KL(behaviour || reference) per completion (kl_placement = 'reward')."""
    loss_cfg = self.cfg.loss
    behaviour = update_batch.get('old_logprobs', update_batch['sampler_logprobs'])
    beta = kl_lib.beta_at(loss_cfg.beta_schedule, loss_cfg.beta, loss_cfg.beta_final,
                          loss_cfg.beta_schedule_steps, self.step)
    return kl_lib.kl_penalized_rewards(update_batch['rewards'], behaviour, update_batch['ref_logprobs'],
                                       update_batch['completion_mask'], beta, loss_cfg.kl_estimator)

  def _advantages(self, scores: dict[str, np.ndarray], trained_rewards: jax.Array) -> jax.Array:
    """Group advantages [B] from the (possibly KL-shaped) total, or from per-reward columns."""
    cfg = self.cfg
    groups, eps = cfg.rollout.num_generations, cfg.rl.advantage_eps
    if cfg.rl.advantage in advantages_lib.PER_REWARD_ESTIMATORS:
      _, columns, weights = rewards.reward_columns(scores, self.current[1])
      local = self.advantage_fn(jnp.asarray(columns, jnp.float32), groups, eps=eps, weights=tuple(weights.tolist()))
    else:
      local = self.advantage_fn(jnp.asarray(_host(trained_rewards), jnp.float32), groups, eps=eps)
    return shd.host_to_global({'advantages': _host(local).astype(np.float32)}, self.mesh)['advantages']

  # ---------------------------------------------------------------- the loop
  def run(self) -> list[dict[str, Any]]:
    cfg = self.cfg
    os.makedirs(self.workdir, exist_ok=True)
    start = time.time()
    resumed = self.maybe_restore()
    primary = jax.process_index() == 0  # writes the run's files (metrics, samples, plot) for every process
    writer = metrics.MetricsWriter(self.workdir, active=primary)
    if resumed:  # rows written after the checkpoint by the interrupted run are written again
      for name in ('metrics.jsonl', 'samples.jsonl'):
        if primary:
          metrics.truncate_after(os.path.join(self.workdir, name), self.step)
    else:
      logging.info('model %s: %.2fM parameters', cfg.model.preset, self.num_params / 1e6)
      if cfg.warmup.steps:
        self.warmup()
      self._write_eval(writer)
      self.save()
    bar = metrics.ProgressBar(total=cfg.train.steps, initial=self.step, disable=None if primary else True)
    try:
      while self.step < cfg.train.steps:
        row, texts = self.rl_step()
        self.step += 1
        if self.step % cfg.train.log_every == 0 or self.step == cfg.train.steps:
          writer.write(self.step, row)
        bar.update(self.step, {k: row[k] for k in ('reward_mean', *self.metric_rewards, 'kl')})
        if cfg.train.sample_every and self.step % cfg.train.sample_every == 0:
          writer.write_texts(self.step, texts[:4])
        if (cfg.train.eval_every and self.step % cfg.train.eval_every == 0) or self.step == cfg.train.steps:
          self._write_eval(writer)
        if self.step % cfg.train.checkpoint_every == 0 or self.step == cfg.train.steps:
          self.save()
    finally:
      bar.close()
      writer.close()
    path = os.path.join(self.workdir, metrics.METRICS_FILE)
    if not primary:  # the rows process 0 wrote, where this process sees its files (a shared workdir)
      return metrics.read_metrics(path) if os.path.exists(path) else []
    rows = metrics.read_metrics(path)
    metrics.plot_metrics(path, os.path.join(self.workdir, 'rewards.png'))
    summary = metrics.format_summary(rows)
    print(summary + f'\nwall time this invocation: {time.time() - start:.0f} s; workdir: {self.workdir}')
    return rows


def run(config: config_dict.ConfigDict, workdir: str) -> list[dict[str, Any]]:
  """Trains (or resumes) the run described by `config` in `workdir`; returns the metric rows."""
  cfg = run_config.from_config_dict(config)
  raw = json.loads(json.dumps(run_config.plain(config)))
  return Trainer(cfg, raw, workdir).run()
