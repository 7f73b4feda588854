"""KV-cache sampler: one prefill per prompt, cache fan-out to G samples, while_loop decode with early exit.

Shapes: P prompts, G samples per prompt, B = P*G rows, T prompt length (left padded), T0 tokens of a
prefix shared by every prompt (0 without one), N token capacity (max new tokens), S = T0 + T + C cache
slots for a stage capacity C <= N, V vocab,
M longest stop sequence, L layers, K kv heads, H head dim.

Three jitted programs per shape: `prefill` (vision encoding, a shared prefix's prefill over one row
copied to P rows, prompt prefill over P rows, in chunks of `prefill_chunk` tokens if set, fan-out to
B rows, first token), `decode` (a lax.while_loop over a DecodeState; the state is donated, so the
cache is updated in place) and, with kv_stages > 1, `grow` (pads the cache to the next stage).
Decoding runs in stages of growing cache capacity C_1 < ... < C_k = N: attention in stage i reads
only T + C_i slots, so early tokens do not pay for the longest completion. Each loop exits as soon
as every row has finished (EOS, stop sequence, or max_new_tokens); with the rows split over
devices it checks every STEPS_PER_EXIT_CHECK steps (the check is a cross-device reduction).

Row b's token at step s is drawn with the uniform of fold_in(fold_in(rng, s), b): samples do not
depend on the stage layout, on padding rows appended after the real ones, or on how the batch is
sharded. Prefill draws every step's uniforms at once ([B, N], in the decode state): on CPU each
threefry call is a small loop of its own, and three of them per step cost more than the draw.
Log-probs and entropies are those of the temperature-scaled distribution before top-k / top-p /
min-p truncation, which is what the learner recomputes.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rl_reason.models.decoder import init_cache, map_cache
from rl_reason.models.model import DTYPES, Model
from rl_reason.parallel import sharding as shd
from rl_reason.sampling.logits import draw_tokens, step_uniforms, token_stats

FINISH_REASONS = ('length', 'eos', 'stop')  # finish_reason codes 0, 1, 2
LENGTH, EOS, STOP = 0, 1, 2
MIN_STAGE = 64  # smallest stage worth a stage switch (~1-2 ms on CPU: a host sync, the grow copy, a dispatch)
DEFAULT_KV_STAGES = 4
STEPS_PER_EXIT_CHECK = 8  # with the rows split over devices (Sampler.steps_per_exit_check)
_NO_TOKEN = -2  # fills the stop-sequence tail before M tokens exist (never a token id)


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
  """Static sampling settings (hashable: part of the jit cache key)."""

  max_new_tokens: int  # N: token buffer and cache capacity; Sampler.__call__ may stop earlier
  temperature: float = 1.0  # 0 = greedy
  top_k: int = 0  # 0 = off
  top_p: float = 1.0  # 1 = off
  min_p: float = 0.0  # 0 = off; keep tokens with p >= min_p * max p
  eos_token_ids: tuple[int, ...] = ()  # any of them ends a row (finish reason 'eos')
  stop_sequences: tuple[tuple[int, ...], ...] = ()  # a row ends when its completion ends with one ('stop')
  pad_token_id: int = 0  # written after a row's end
  num_samples: int = 1  # G: samples per prompt, sharing one prefill
  cache_dtype: str | None = None  # KV cache dtype: float32 | bfloat16; None = the model's compute dtype
  return_entropy: bool = False  # also return per-token entropies
  kv_stages: int = DEFAULT_KV_STAGES  # cache growth stages of N/kv_stages tokens, >= MIN_STAGE (1: T + N slots)
  # Prompt tokens per prefill pass (0: the whole prompt in one): each chunk attends to the slots written so
  # far, so the prefill's attention scores and MLP activations scale with the chunk, not the prompt.
  prefill_chunk: int = 0

  def __post_init__(self):
    if not isinstance(self.max_new_tokens, (int, np.integer)) or self.max_new_tokens <= 0:
      raise ValueError(f'max_new_tokens must be a positive int, got {self.max_new_tokens!r}')
    if self.temperature < 0:
      raise ValueError(f'temperature must be >= 0, got {self.temperature}')
    if self.top_k < 0:
      raise ValueError(f'top_k must be >= 0, got {self.top_k}')
    if not 0 < self.top_p <= 1:
      raise ValueError(f'top_p must be in (0, 1], got {self.top_p}')
    if not 0 <= self.min_p < 1:
      raise ValueError(f'min_p must be in [0, 1), got {self.min_p}')
    if self.temperature == 0:
      for name, off in (('top_k', 0), ('top_p', 1.0), ('min_p', 0.0)):
        if getattr(self, name) != off:
          raise ValueError(f'{name}={getattr(self, name)} has no effect with temperature 0 (greedy); '
                           f'leave it at {off}')
    if not isinstance(self.eos_token_ids, tuple) or any(
        not isinstance(e, (int, np.integer)) or e < 0 for e in self.eos_token_ids):
      raise ValueError(f'eos_token_ids must be a tuple of non-negative ints, got {self.eos_token_ids!r}')
    if not isinstance(self.stop_sequences, tuple) or any(
        not isinstance(s, tuple) or not s or any(not isinstance(t, (int, np.integer)) or t < 0 for t in s)
        for s in self.stop_sequences):
      raise ValueError('stop_sequences must be a tuple of non-empty tuples of non-negative token ids, got '
                       f'{self.stop_sequences!r}')
    if self.pad_token_id < 0:
      raise ValueError(f'pad_token_id must be >= 0, got {self.pad_token_id}')
    if self.num_samples < 1:
      raise ValueError(f'num_samples must be >= 1, got {self.num_samples}')
    if self.cache_dtype is not None and self.cache_dtype not in DTYPES:
      raise ValueError(f'cache_dtype must be None or one of {sorted(DTYPES)}, got {self.cache_dtype!r}')
    if self.kv_stages < 1:
      raise ValueError(f'kv_stages must be >= 1, got {self.kv_stages}')
    if not isinstance(self.prefill_chunk, (int, np.integer)) or self.prefill_chunk < 0:
      raise ValueError(f'prefill_chunk must be an int >= 0 (0: the whole prompt at once), got {self.prefill_chunk!r}')

  @property
  def stage_capacities(self) -> tuple[int, ...]:
    """Increasing cache capacities C_i = i * N / kv_stages (in new tokens, rounded up to 16), the last N.

    Equal widths rather than halvings: a stage's attention cost grows with its slots, and with
    halvings the last half of a long generation reads all T + N slots.
    """
    caps = {self.max_new_tokens}
    for i in range(1, self.kv_stages):
      cap = -(-self.max_new_tokens * i // self.kv_stages)
      cap = -(-cap // 16) * 16
      if MIN_STAGE <= cap < self.max_new_tokens:
        caps.add(cap)
    return tuple(sorted(caps))


@dataclasses.dataclass
class SampleOutput:
  """Generated tokens per row (B = prompts * num_samples, rows of a prompt adjacent)."""

  tokens: jax.Array  # [B, N] int32, pad_token_id after the end
  logprobs: jax.Array  # [B, N] float32 log-probs of the sampled tokens, 0 after the end
  lengths: jax.Array  # [B] int32 generated tokens, the EOS token / stop sequence included
  finish_reason: jax.Array  # [B] int32 index into FINISH_REASONS: 0 length, 1 eos, 2 stop
  entropy: jax.Array | None = None  # [B, N] float32 entropies (return_entropy), 0 after the end
  # [] int32 decode steps run: max(lengths) after an early exit (with the rows split over devices up
  # to STEPS_PER_EXIT_CHECK - 1 more: the exit is checked every few steps there)
  steps: jax.Array | None = None

  @property
  def finished(self) -> jax.Array:
    """[B] bool: the row ended with an EOS token or a stop sequence (else it hit max_new_tokens)."""
    return self.finish_reason != LENGTH

  def finish_reason_names(self) -> list[str]:
    return [FINISH_REASONS[int(r)] for r in np.asarray(self.finish_reason)]


jax.tree_util.register_dataclass(
    SampleOutput, data_fields=['tokens', 'logprobs', 'lengths', 'finish_reason', 'entropy', 'steps'],
    meta_fields=[])


@dataclasses.dataclass
class DecodeState:
  """The while_loop carry. `step` tokens have been sampled; token `step - 1` is fed next."""

  step: jax.Array  # [] int32
  limit: jax.Array  # [] int32 max_new_tokens of this call (<= N)
  token: jax.Array  # [B] int32 the last sampled token
  next_position: jax.Array  # [B] int32 rotary position of the first generated token
  done: jax.Array  # [B] bool
  finish_reason: jax.Array  # [B] int32
  lengths: jax.Array  # [B] int32
  tokens: jax.Array  # [B, N] int32
  logprobs: jax.Array  # [B, N] float32
  entropy: jax.Array | None  # [B, N] float32 (return_entropy)
  tail: jax.Array | None  # [B, M] int32 last M sampled tokens (stop sequences)
  uniforms: jax.Array | None  # [B, N] float32 the uniform each step draws with (temperature > 0)
  rotary: tuple[jax.Array, jax.Array]  # cos, sin [B, 1, H] of token `step - 1`'s position (carried, see _rotary)
  cache: dict[str, Any]  # per layer k [B, K, H, S], v [B, K, S, H] (models.decoder); valid [B, S]


_STATE_FIELDS = [f.name for f in dataclasses.fields(DecodeState)]
jax.tree_util.register_dataclass(DecodeState, data_fields=_STATE_FIELDS, meta_fields=[])

# Logical axes of the state's arrays (the cache's K axis goes to 'tensor', rows to ('data', 'fsdp')).
_ROW, _ROW_COL = (shd.BATCH,), (shd.BATCH, None)
_STATE_AXES = dict(step=(), limit=(), token=_ROW, next_position=_ROW, done=_ROW, finish_reason=_ROW,
                   lengths=_ROW, tokens=_ROW_COL, logprobs=_ROW_COL, entropy=_ROW_COL, tail=_ROW_COL, uniforms=_ROW_COL,
                   rotary=(shd.BATCH, None, None))
_KV_AXES = (shd.BATCH, shd.KV_HEADS, None, None)  # k [B, K, H, S], v [B, K, S, H], after LAYERS when stacked


def _cache_axes(leaf: jax.Array) -> tuple:
  return _ROW_COL if leaf.ndim == 2 else (shd.LAYERS,) * (leaf.ndim - 4) + _KV_AXES


def _stop_table(stop_sequences: tuple[tuple[int, ...], ...]) -> np.ndarray:
  """[num_stops, M] right-aligned stop sequences, -1 (matches anything) on the left."""
  width = max(map(len, stop_sequences))
  table = np.full((len(stop_sequences), width), -1, np.int32)
  for i, seq in enumerate(stop_sequences):
    table[i, width - len(seq):] = seq
  return table


def _pad_slots(x: jax.Array, slot_axis: int, extra: int) -> jax.Array:
  """Appends `extra` empty (zero / invalid) slots to a cache array."""
  return jnp.pad(x, [(0, extra if a == slot_axis else 0) for a in range(x.ndim)])


def _fan_out(x: jax.Array, groups: int, axis: int) -> jax.Array:
  return x if groups == 1 else jnp.repeat(x, groups, axis=axis)


class Sampler:
  """Jitted prefill / decode / grow programs for one model graph; counts their compilations.

  Args:
    graphdef: the model's nnx graph (params are passed per call).
    mesh: when given, the decode state is constrained to it: rows over the batch axes
      (('data', 'fsdp') by default), the cache's KV heads over 'tensor'. The caller places params
      and prompt arrays (shd.state_shardings / shd.host_to_global). On a CPU host, one JAX device
      per core (jax_num_cpu_devices) with rows over 'data' runs the decode's small per-row ops on
      every core: XLA runs each of them on one thread.
    rules: logical-axis rules for the mesh.
  """

  def __init__(self, graphdef: nnx.GraphDef, *, mesh: jax.sharding.Mesh | None = None,
               rules: tuple[tuple[str, Any], ...] = shd.DEFAULT_RULES):
    self.graphdef = graphdef
    self.mesh = mesh
    self.rules = rules
    # With the rows split over devices "has every row finished?" is a reduction across devices, and a
    # step waiting on it costs more than a tiny model's step (on 2 CPU devices, ~0.1 ms of ~0.3), so
    # the loop asks every few steps; rows that finished in between only write padding.
    rows_split = mesh is not None and shd.batch_divisor(mesh, rules) > 1
    self.steps_per_exit_check = STEPS_PER_EXIT_CHECK if rows_split else 1
    self._traces: collections.Counter[str] = collections.Counter()
    self.prefill_rows = 0  # prompt rows prefilled so far (runtime count, not per trace)
    self.calls = 0  # generations started (prefill calls)
    self._prefill = jax.jit(self._counted('prefill', self._prefill_impl), static_argnames=('cfg',))
    self._decode = jax.jit(self._counted('decode', self._decode_impl), static_argnames=('cfg', 'capacity'),
                           donate_argnums=(1,))
    self._grow = jax.jit(self._counted('grow', self._grow_impl), static_argnames=('slots',))

  # ------------------------------------------------------------------ compile counting
  def _counted(self, name: str, fn: Callable) -> Callable:
    @functools.wraps(fn)  # keeps the signature, which static_argnames / donate_argnums refer to
    def traced(*args, **kwargs):
      self._traces[name] += 1  # the Python body runs only when jax traces (a new shape/static key)
      return fn(*args, **kwargs)
    return traced

  @property
  def compilations(self) -> int:
    """Programs traced (and so compiled) so far, all kinds together."""
    return sum(self._traces.values())

  @property
  def compilations_by_function(self) -> dict[str, int]:
    return {name: self._traces[name] for name in ('prefill', 'decode', 'grow')}

  # ------------------------------------------------------------------ sharding
  def _constrain(self, x: jax.Array | None, axes: tuple) -> jax.Array | None:
    if self.mesh is None or x is None:
      return x
    return jax.lax.with_sharding_constraint(x, shd.logical_to_sharding(x.shape, axes, self.mesh, self.rules))

  def _constrain_cache(self, cache: dict[str, Any]) -> dict[str, Any]:
    return jax.tree.map(lambda leaf: self._constrain(leaf, _cache_axes(leaf)), cache)

  def _constrain_state(self, state: DecodeState) -> DecodeState:
    fields = {name: jax.tree.map(lambda x, axes=axes: self._constrain(x, axes), getattr(state, name))
              for name, axes in _STATE_AXES.items()}
    return DecodeState(**fields, cache=self._constrain_cache(state.cache))

  # ------------------------------------------------------------------ traced bodies
  @staticmethod
  def _rotary(model: Model, position: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Rotary cos, sin [B, 1, H] of the token fed next, at position [B].

    Carried in the loop state: computed inside a step, XLA fuses cos and sin into every layer's
    q and k rotation and evaluates them there, once per element (~10% of a tiny-model step).
    """
    return model.decoder.rotary(jnp.broadcast_to(position[None, :, None], (3, position.shape[0], 1)),
                                model.compute_dtype)

  def _emit(self, state: DecodeState, logits: jax.Array, cfg: SamplingConfig) -> DecodeState:
    """Samples token `step` for every live row from logits [B, V] and records it."""
    step = state.step
    live = ~state.done
    if state.uniforms is None:
      token = jnp.argmax(logits, axis=-1).astype(jnp.int32)  # greedy
    else:
      token = draw_tokens(logits, jax.lax.dynamic_index_in_dim(state.uniforms, step, axis=1, keepdims=False), cfg)
    logprob, entropy = token_stats(logits, token, cfg.temperature, cfg.return_entropy)
    token = jnp.where(live, token, cfg.pad_token_id)
    put = lambda buffer, value: jax.lax.dynamic_update_slice(buffer, value[:, None], (0, step))
    tokens = put(state.tokens, token)
    logprobs = put(state.logprobs, jnp.where(live, logprob, 0.0))
    entropies = None if entropy is None else put(state.entropy, jnp.where(live, entropy, 0.0))
    hit_eos = jnp.zeros_like(live)
    if cfg.eos_token_ids:
      hit_eos = live & jnp.isin(token, jnp.asarray(cfg.eos_token_ids, jnp.int32))
    tail, hit_stop = state.tail, jnp.zeros_like(live)
    if cfg.stop_sequences:
      tail = jnp.concatenate([state.tail[:, 1:], token[:, None]], axis=1)  # [B, M]
      table = jnp.asarray(_stop_table(cfg.stop_sequences))  # [num_stops, M]
      match = jnp.all((tail[:, None, :] == table[None]) | (table[None] < 0), axis=-1)  # [B, num_stops]
      hit_stop = live & ~hit_eos & jnp.any(match, axis=-1)
    reason = jnp.where(hit_eos, EOS, jnp.where(hit_stop, STOP, state.finish_reason))
    return dataclasses.replace(
        state, step=step + 1, token=token, done=state.done | hit_eos | hit_stop, finish_reason=reason,
        lengths=state.lengths + live.astype(jnp.int32), tokens=tokens, logprobs=logprobs, entropy=entropies,
        tail=tail)

  def _prefill_impl(self, params: nnx.State, prompt: dict[str, Any], rng: jax.Array, limit: jax.Array,
                    cfg: SamplingConfig) -> DecodeState:
    model: Model = nnx.merge(self.graphdef, params)
    input_ids, attention_mask, positions = prompt['input_ids'], prompt['attention_mask'], prompt['positions']
    num_prompts, prompt_len = input_ids.shape
    groups, capacity = cfg.num_samples, cfg.max_new_tokens
    batch = num_prompts * groups
    dtype = DTYPES[cfg.cache_dtype] if cfg.cache_dtype else model.compute_dtype
    vision = prompt.get('vision')
    image_embeds = model.encode_images(vision) if vision is not None else None
    if image_embeds is not None and 'vision_rows' in prompt:  # rows that show the same images share a vision row
      image_embeds = jnp.take(image_embeds, prompt['vision_rows'], axis=0)
    # The prompt attends over its own T0 + T slots; the first stage's C_0 empty slots are appended after.
    prefix_ids = prompt.get('prefix_ids')
    prefix_len = 0 if prefix_ids is None else prefix_ids.shape[1]
    if prefix_len:  # every row begins with it: one row runs it, and its cache is copied to the P rows
      head = prefix_ids[:1]
      head_positions = jnp.broadcast_to(jnp.arange(prefix_len, dtype=jnp.int32), (3, 1, prefix_len))
      cache = init_cache(model.cfg.text, 1, prefix_len, dtype, stacked=model.cfg.scan_layers)
      _, cache = model.hidden_states(head, head_positions, jnp.ones_like(head), cache=cache, write_index=jnp.int32(0),
                                     hidden_slice=slice(-1, None))
      cache = map_cache(lambda leaf, rows, slots: jnp.repeat(_pad_slots(leaf, slots, prompt_len), num_prompts, rows),
                        cache)
    else:
      cache = init_cache(model.cfg.text, num_prompts, prompt_len, dtype, stacked=model.cfg.scan_layers)
    embeds = model.embed(input_ids, image_embeds)  # image tokens placed over the whole prompt, before any cut
    chunk = cfg.prefill_chunk or prompt_len
    for start in range(0, prompt_len, chunk):  # each chunk reads the slots written so far, its own included
      stop = min(start + chunk, prompt_len)
      hidden, cache = model.hidden_states(
          None, positions[:, :, start:stop], attention_mask[:, start:stop], embeds=embeds[:, start:stop],
          cache=self._constrain_cache(cache), write_index=jnp.int32(prefix_len + start), hidden_slice=slice(-1, None),
          kv_limit=prefix_len + stop if stop < prompt_len else None)
    logits = model.logits(hidden)  # [P, 1, V]: the prompt's last position
    cache = map_cache(lambda leaf, rows, slots: _fan_out(_pad_slots(leaf, slots, cfg.stage_capacities[0]), groups,
                                                          rows), cache)
    next_position = _fan_out(jnp.max(positions, axis=(0, 2)) + 1, groups, 0)  # [B]
    logits = _fan_out(logits[:, 0], groups, 0)  # [B, V]
    zeros = jnp.zeros((batch,), jnp.int32)
    live = prompt.get('live')
    done = jnp.zeros((batch,), jnp.bool_) if live is None else ~_fan_out(live.astype(jnp.bool_), groups, 0)
    state = DecodeState(
        step=jnp.int32(0), limit=limit.astype(jnp.int32), token=zeros, next_position=next_position.astype(jnp.int32),
        done=done, finish_reason=zeros + LENGTH, lengths=zeros,
        tokens=jnp.full((batch, capacity), cfg.pad_token_id, jnp.int32),
        logprobs=jnp.zeros((batch, capacity), jnp.float32),
        entropy=jnp.zeros((batch, capacity), jnp.float32) if cfg.return_entropy else None,
        tail=(jnp.full((batch, _stop_table(cfg.stop_sequences).shape[1]), _NO_TOKEN, jnp.int32)
              if cfg.stop_sequences else None),
        uniforms=(step_uniforms(rng, capacity, jnp.arange(batch, dtype=jnp.int32))
                  if cfg.temperature > 0 else None),
        rotary=self._rotary(model, next_position.astype(jnp.int32)),  # token 0, fed first
        cache=cache)
    return self._constrain_state(self._emit(self._constrain_state(state), logits, cfg))

  def _decode_impl(self, params: nnx.State, state: DecodeState, cfg: SamplingConfig, capacity: int) -> DecodeState:
    """Runs steps while step < limit, step <= capacity (token step-1 fits the cache) and a row is live."""
    model: Model = nnx.merge(self.graphdef, params)
    batch, slots = state.cache['valid'].shape
    prompt_len = slots - capacity
    ones = jnp.ones((batch, 1), jnp.int32)

    def in_range(s: DecodeState):  # replicated scalars: no cross-device reduction
      return (s.step < s.limit) & (s.step <= capacity)

    def cond(s: DecodeState):
      return in_range(s) & ~jnp.all(s.done)

    def step(s: DecodeState):
      write_index = jnp.int32(prompt_len) + s.step - 1  # every row's slot: prompts are left padded to one length
      logits, cache = model(s.token[:, None], None, ones, cache=s.cache, write_index=write_index, rotary=s.rotary)
      s = self._emit(dataclasses.replace(s, cache=self._constrain_cache(cache)), logits[:, 0], cfg)
      return self._constrain_state(dataclasses.replace(s, rotary=self._rotary(model, s.next_position + s.step - 1)))

    body = step
    if self.steps_per_exit_check > 1:
      def body(s: DecodeState):  # up to steps_per_exit_check steps between two all-rows-done reductions
        run = lambda carry: (carry[0] < self.steps_per_exit_check) & in_range(carry[1])
        return jax.lax.while_loop(run, lambda carry: (carry[0] + 1, step(carry[1])), (jnp.int32(0), s))[1]

    return jax.lax.while_loop(cond, body, self._constrain_state(state))

  def _grow_impl(self, cache: dict[str, Any], slots: int) -> dict[str, Any]:
    extra = slots - cache['valid'].shape[1]
    return self._constrain_cache(map_cache(lambda x, _, slot_axis: _pad_slots(x, slot_axis, extra), cache))

  # ------------------------------------------------------------------ host driver
  @staticmethod
  def _all_done(done: jax.Array) -> bool:
    """Has every row [B] finished? A host read (no eager op) where this process holds every row."""
    if done.is_fully_addressable:
      return bool(jax.device_get(done).all())
    return bool(_all_rows_done(done))  # rows on other processes' devices: reduced on the devices

  def prefill(self, params: nnx.State, prompt: dict[str, Any], rng: jax.Array | int, cfg: SamplingConfig,
              *, max_new_tokens: int | None = None) -> DecodeState:
    """Encodes images, prefills the P prompts once, fans the cache out to P*G rows, samples token 0."""
    limit = cfg.max_new_tokens if max_new_tokens is None else int(max_new_tokens)
    if not 1 <= limit <= cfg.max_new_tokens:
      raise ValueError(f'max_new_tokens must be in [1, {cfg.max_new_tokens}] (the compiled capacity), got {limit}')
    prefix, rows = prompt.get('prefix_ids'), prompt['input_ids'].shape[0]
    vision_rows = prompt.get('vision_rows')
    if vision_rows is not None and (vision_rows.shape != (rows,) or 'vision' not in prompt):
      raise ValueError(f'vision_rows {tuple(vision_rows.shape)} must be [P] for the {rows} prompts of input_ids, '
                       'with vision inputs')
    if prefix is not None and (prefix.ndim != 2 or prefix.shape[0] != rows or not prefix.shape[1]):
      raise ValueError(f'prefix_ids {tuple(prefix.shape)} must be [P, T0] with T0 > 0 for the {rows} prompts of '
                       f'input_ids {tuple(prompt["input_ids"].shape)}')
    state = self._prefill(params, prompt, _as_key(rng), np.int32(limit), cfg)
    self.calls += 1
    self.prefill_rows += prompt['input_ids'].shape[0]
    return state

  def decode(self, params: nnx.State, state: DecodeState, cfg: SamplingConfig) -> DecodeState:
    """Runs the decode stages until every row has finished (with the draws prefill made).

    `state` is donated (unusable afterwards).
    """
    capacities = cfg.stage_capacities
    prompt_len = state.cache['valid'].shape[1] - capacities[0]
    for i, capacity in enumerate(capacities):
      if i > 0:
        step, limit = jax.device_get((state.step, state.limit))
        if step >= limit or self._all_done(state.done):
          break  # every row ended inside the previous stage
        state = dataclasses.replace(state, cache=self._grow(state.cache, prompt_len + capacity))
      state = self._decode(params, state, cfg, capacity)
    return state

  def __call__(self, params: nnx.State, prompt: dict[str, Any], rng: jax.Array | int, cfg: SamplingConfig,
               *, max_new_tokens: int | None = None) -> SampleOutput:
    """Generates cfg.num_samples completions per prompt.

    Args:
      params: the model's nnx state (as nnx.split gives it).
      prompt: input_ids [P, T], attention_mask [P, T] (left padded), positions [3, P, T],
        optionally `vision` (models.prepare_inputs output, host or device arrays), optionally
        `live` [P] bool: False marks a padding row, which starts finished (length 0) so it never
        holds the loop open, and optionally `prefix_ids` [P, T0]: tokens every row begins with
        (identical rows, text at positions 0 .. T0 - 1), read before input_ids and run once for
        the batch (pipeline.PromptEncoder's prefix_step), and optionally `vision_rows` [P] int32:
        prompt p shows the images of vision row vision_rows[p] (the vision arrays then hold only
        the distinct image sets; rl/judge.py).
      rng: a PRNG key or an int seed.
      cfg: static settings; cfg.max_new_tokens is the compiled capacity N.
      max_new_tokens: stop after this many tokens (<= N; default N) without recompiling.

    Returns:
      SampleOutput with [P*G, N] arrays (columns past max_new_tokens hold padding).
    """
    state = self.decode(params, self.prefill(params, prompt, rng, cfg, max_new_tokens=max_new_tokens), cfg)
    return SampleOutput(tokens=state.tokens, logprobs=state.logprobs, lengths=state.lengths,
                        finish_reason=state.finish_reason, entropy=state.entropy, steps=state.step)


_all_rows_done = jax.jit(jnp.all)  # a replicated scalar every process can read


@functools.lru_cache(maxsize=64)
def _seed_key(seed: int) -> jax.Array:
  return jax.random.key(seed)  # an eager op of ~0.7 ms on CPU: made once per seed


def _as_key(rng: jax.Array | int) -> jax.Array:
  if isinstance(rng, (int, np.integer)):
    return _seed_key(int(rng))
  if isinstance(rng, jax.Array) and jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
    return rng
  raise ValueError(f'rng must be a typed PRNG key (jax.random.key) or an int seed, got {type(rng).__name__}')
