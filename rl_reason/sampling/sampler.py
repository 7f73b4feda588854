"""KV-cache sampler: one jitted prefill per prompt, cache fan-out to G samples, while_loop decode.

Shapes: P prompts, G samples per prompt, B = P*G rows, T prompt bucket, N max new tokens,
S = T + N cache slots, V vocab, X image tokens.

The whole generation (vision encoding, prefill, fan-out, decode) is one jitted function of
(params, prompt arrays, rng); the decode loop exits as soon as every row has emitted an EOS.
Returned log-probs are those of the temperature-scaled distribution before top-k/top-p
truncation, which is what the learner recomputes.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from rl_reason.models.decoder import init_cache
from rl_reason.models.model import DTYPES, Model


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
  """Static sampling settings (hashable: part of the jit cache key)."""

  max_new_tokens: int
  temperature: float = 1.0  # 0 = greedy
  top_k: int = 0  # 0 = off
  top_p: float = 1.0  # 1 = off
  eos_token_ids: tuple[int, ...] = ()
  pad_token_id: int = 0
  num_samples: int = 1  # G: samples per prompt, sharing one prefill
  cache_dtype: str = 'float32'

  def __post_init__(self):
    if self.max_new_tokens <= 0:
      raise ValueError(f'max_new_tokens must be positive, got {self.max_new_tokens}')
    if self.temperature < 0:
      raise ValueError(f'temperature must be >= 0, got {self.temperature}')
    if self.top_k < 0:
      raise ValueError(f'top_k must be >= 0, got {self.top_k}')
    if not 0 < self.top_p <= 1:
      raise ValueError(f'top_p must be in (0, 1], got {self.top_p}')
    if self.num_samples < 1:
      raise ValueError(f'num_samples must be >= 1, got {self.num_samples}')
    if self.cache_dtype not in DTYPES:
      raise ValueError(f'cache_dtype must be one of {sorted(DTYPES)}, got {self.cache_dtype!r}')


@dataclasses.dataclass
class SampleOutput:
  tokens: jax.Array  # [B, N] int32, pad after the end
  logprobs: jax.Array  # [B, N] float32, 0 after the end
  lengths: jax.Array  # [B] int32, generated tokens including the EOS token
  finished: jax.Array  # [B] bool, ended with an EOS (else: hit max_new_tokens)


jax.tree_util.register_dataclass(SampleOutput, data_fields=['tokens', 'logprobs', 'lengths', 'finished'],
                                 meta_fields=[])


def scaled_logprobs(logits: jax.Array, temperature: float) -> jax.Array:
  """log-softmax of logits / temperature in float32 (temperature 0 counts as 1)."""
  scale = temperature if temperature > 0 else 1.0
  return jax.nn.log_softmax(logits.astype(jnp.float32) / scale, axis=-1)


def truncate_logits(logits: jax.Array, top_k: int, top_p: float) -> jax.Array:
  """Masks logits outside the top-k and outside the smallest top-p nucleus to -inf."""
  if top_k > 0:
    kth = jax.lax.top_k(logits, top_k)[0][..., -1:]
    logits = jnp.where(logits < kth, -jnp.inf, logits)
  if top_p < 1.0:
    sorted_logits = jnp.sort(logits, axis=-1)[..., ::-1]
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    # Keep a token while the mass before it is < top_p (the first token is always kept).
    mass_before = jnp.cumsum(probs, axis=-1) - probs
    keep = mass_before < top_p
    threshold = jnp.min(jnp.where(keep, sorted_logits, jnp.inf), axis=-1, keepdims=True)
    logits = jnp.where(logits < threshold, -jnp.inf, logits)
  return logits


def sample_tokens(logits: jax.Array, rng: jax.Array, cfg: SamplingConfig) -> jax.Array:
  """[B, V] logits -> [B] int32 tokens."""
  if cfg.temperature == 0:
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  logits = truncate_logits(logits.astype(jnp.float32) / cfg.temperature, cfg.top_k, cfg.top_p)
  return jax.random.categorical(rng, logits, axis=-1).astype(jnp.int32)


def _fan_out(tree, groups: int, axis_of):
  return jax.tree.map(lambda x, ax: jnp.repeat(x, groups, axis=ax), tree, axis_of)


def generate_arrays(model: Model, prompt: dict[str, jax.Array], rng: jax.Array,
                    cfg: SamplingConfig) -> SampleOutput:
  """Generates G samples per prompt (pure; call inside jit).

  Args:
    model: the merged model.
    prompt: input_ids [P, T], attention_mask [P, T] (left padded), positions [3, P, T], and
      optionally `vision` (positions.vision_inputs arrays for the prompts' images).
    rng: PRNG key.
    cfg: sampling settings.
  """
  input_ids, attention_mask, positions = prompt['input_ids'], prompt['attention_mask'], prompt['positions']
  num_prompts, prompt_len = input_ids.shape
  groups, steps = cfg.num_samples, cfg.max_new_tokens
  batch = num_prompts * groups
  image_embeds = model.encode_images(prompt['vision']) if prompt.get('vision') is not None else None
  cache = init_cache(model.cfg.text, num_prompts, prompt_len + steps, DTYPES[cfg.cache_dtype])
  logits, cache = model(input_ids, positions, attention_mask, image_embeds=image_embeds, cache=cache,
                        write_index=jnp.zeros((num_prompts,), jnp.int32), logits_slice=slice(-1, None))
  logits = logits[:, 0]  # [P, V]
  next_position = jnp.max(positions, axis=(0, 2)) + 1  # [P]
  logits, cache, next_position = _fan_out((logits, cache, next_position), groups,
                                          (0, dict(k=1, v=1, valid=0), 0))
  eos = jnp.asarray(cfg.eos_token_ids or (-1,), jnp.int32)

  def cond(state):
    return (state['step'] < steps) & ~jnp.all(state['done'])

  def body(state):
    step, done = state['step'], state['done']
    token = sample_tokens(state['logits'], jax.random.fold_in(rng, step), cfg)
    logprob = jnp.take_along_axis(scaled_logprobs(state['logits'], cfg.temperature), token[:, None], axis=-1)[:, 0]
    token = jnp.where(done, cfg.pad_token_id, token)
    logprob = jnp.where(done, 0.0, logprob)
    lengths = state['lengths'] + (~done).astype(jnp.int32)
    done = done | jnp.isin(token, eos)
    tokens = jax.lax.dynamic_update_slice(state['tokens'], token[:, None], (0, step))
    logprobs = jax.lax.dynamic_update_slice(state['logprobs'], logprob[:, None], (0, step))
    pos = jnp.broadcast_to((next_position + step)[None, :, None], (3, batch, 1))
    new_logits, cache = model(token[:, None], pos, jnp.ones((batch, 1), jnp.int32), cache=state['cache'],
                              write_index=jnp.full((batch,), prompt_len, jnp.int32) + step)
    return dict(step=step + 1, done=done, tokens=tokens, logprobs=logprobs, lengths=lengths,
                logits=new_logits[:, 0], cache=cache)

  state = dict(step=jnp.int32(0), done=jnp.zeros((batch,), jnp.bool_),
               tokens=jnp.full((batch, steps), cfg.pad_token_id, jnp.int32),
               logprobs=jnp.zeros((batch, steps), jnp.float32), lengths=jnp.zeros((batch,), jnp.int32),
               logits=logits, cache=cache)
  state = jax.lax.while_loop(cond, body, state)
  return SampleOutput(tokens=state['tokens'], logprobs=state['logprobs'], lengths=state['lengths'],
                      finished=state['done'])


class Sampler:
  """Holds the jitted generation function for one model graph; counts compilations."""

  def __init__(self, graphdef: nnx.GraphDef, *, in_shardings: Any = None, out_shardings: Any = None):
    self.graphdef = graphdef
    self.compilations = 0

    def run(params, prompt, rng, cfg):
      self.compilations += 1  # runs at trace time only
      return generate_arrays(nnx.merge(graphdef, params), prompt, rng, cfg)

    self._run = jax.jit(run, static_argnames=('cfg',))

  def __call__(self, params: nnx.State, prompt: dict[str, Any], rng: jax.Array,
               cfg: SamplingConfig) -> SampleOutput:
    return self._run(params, prompt, rng, cfg)
