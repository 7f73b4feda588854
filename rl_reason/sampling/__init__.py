"""KV-cache generation for text and vision-language models.

    out = generate(model, input_ids, attention_mask, max_new_tokens=64, temperature=0.7, top_p=0.9,
                   eos_token_ids=(eos,), stop_sequences=((13, 13),), num_samples=4, rng=0,
                   return_entropy=True)
    out.tokens, out.logprobs, out.entropy  # [B, N] with B = prompts * num_samples, N = max_new_tokens
    out.lengths, out.finish_reason  # [B]; FINISH_REASONS[out.finish_reason[b]] in length | eos | stop

`generate` takes the numpy arrays a Hugging Face processor returns (left or right padded), pads
them into static shape buckets (buckets.ShapeBuckets), runs a cached Sampler and cuts the
padding off again. Training code holds a Sampler itself and calls it on device arrays.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import numpy as np
from flax import nnx

from rl_reason.models import Model, prepare_inputs
from rl_reason.parallel import multihost
from rl_reason.parallel import sharding as shd
from rl_reason.sampling import buckets as buckets_lib
from rl_reason.sampling.buckets import EXACT_BUCKETS, ShapeBuckets
from rl_reason.sampling.logits import (Knobs, inverse_cdf, sample_tokens, sampling_probs, scaled_logprobs, token_stats,
                                       truncate_logits)
from rl_reason.sampling.sampler import (DEFAULT_KV_STAGES, EOS, FINISH_REASONS, LENGTH, STOP, DecodeState, SampleOutput,
                                        Sampler, SamplingConfig)


@functools.lru_cache(maxsize=16)
def _sampler_for(graphdef: nnx.GraphDef, mesh: jax.sharding.Mesh | None, rules: tuple) -> Sampler:
  return Sampler(graphdef, mesh=mesh, rules=rules)


def get_sampler(model: Model, *, mesh: jax.sharding.Mesh | None = None,
                rules: tuple[tuple[str, Any], ...] = shd.DEFAULT_RULES) -> Sampler:
  """The Sampler that `generate` uses for this model's graph (its compilation counters included)."""
  return _sampler_for(nnx.graphdef(model), mesh, tuple(rules))


def _put_rows(path, x, *, mesh, rules):
  """Places a prompt array with its row dimension (1 for positions [3, P, T], else 0) over the batch axes."""
  dim = shd.prompt_row_dim(path)
  return jax.device_put(x, shd.batch_sharding(mesh, x.ndim, dim, rules, batch_size=x.shape[dim]))


def _check_ids(name: str, ids, vocab: int) -> None:
  bad = [int(i) for i in ids if not 0 <= int(i) < vocab]
  if bad:
    raise ValueError(f'{name} {bad} outside the vocabulary [0, {vocab})')


@dataclasses.dataclass
class PreparedGeneration:
  """A request padded into its shape buckets: what `generate` runs (benchmarks time the phases)."""

  sampler: Sampler
  params: nnx.State
  inputs: dict[str, Any]  # models.prepare_inputs arrays (bucketed) plus `live` [P'] bool
  cfg: SamplingConfig
  max_new_tokens: int
  rows: int  # real rows P * G; the rest are padding

  def prefill(self, rng: jax.Array | int) -> DecodeState:
    return self.sampler.prefill(self.params, self.inputs, rng, self.cfg, max_new_tokens=self.max_new_tokens)

  def decode(self, state: DecodeState) -> DecodeState:
    return self.sampler.decode(self.params, state, self.cfg)

  def output(self, state: DecodeState) -> SampleOutput:
    """The real rows and the first max_new_tokens columns of a finished state."""
    cut = lambda x: None if x is None else x[:self.rows, :self.max_new_tokens]
    return SampleOutput(tokens=cut(state.tokens), logprobs=cut(state.logprobs), lengths=state.lengths[:self.rows],
                        finish_reason=state.finish_reason[:self.rows], entropy=cut(state.entropy), steps=state.step)


def prepare_generation(model: Model, input_ids, attention_mask, *, max_new_tokens: int, temperature: float = 0.0,
                       top_p: float = 1.0, top_k: int = 0, min_p: float = 0.0, eos_token_ids=(),
                       stop_sequences=(), pixel_values=None, image_grid_thw=None, num_samples: int = 1,
                       pad_token_id: int = 0, return_entropy: bool = False, cache_dtype: str | None = None,
                       kv_stages: int = DEFAULT_KV_STAGES, buckets: ShapeBuckets = ShapeBuckets(),
                       mesh: jax.sharding.Mesh | None = None,
                       rules: tuple[tuple[str, Any], ...] = shd.DEFAULT_RULES,
                       prefill_chunk: int = 0) -> PreparedGeneration:
  """Validates a `generate` request and pads it into its shape buckets (arguments as for generate)."""
  vocab = model.cfg.text.vocab_size
  eos_token_ids = tuple(int(e) for e in eos_token_ids)
  stop_sequences = tuple(tuple(int(t) for t in s) for s in stop_sequences)
  _check_ids('eos_token_ids', eos_token_ids, vocab)
  _check_ids('stop_sequences', [t for s in stop_sequences for t in s], vocab)
  _check_ids('pad_token_id', [pad_token_id], vocab)
  if not isinstance(buckets, ShapeBuckets):
    raise ValueError(f'buckets must be a ShapeBuckets, got {type(buckets).__name__}')
  input_ids, attention_mask = np.asarray(input_ids), np.asarray(attention_mask)
  if input_ids.ndim != 2 or input_ids.shape != attention_mask.shape:
    raise ValueError(f'input_ids {input_ids.shape} and attention_mask {attention_mask.shape} must be '
                     'equal [batch, tokens] shapes')
  if not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 1:
    raise ValueError(f'max_new_tokens must be a positive int, got {max_new_tokens!r}')
  num_prompts, prompt_len = input_ids.shape
  divisor = shd.batch_divisor(mesh, rules) if mesh is not None else 1
  capacity = buckets_lib.bucket_size(max_new_tokens, buckets.new_tokens, name='max_new_tokens',
                                     minimum=buckets_lib.MIN_NEW_TOKENS)
  cfg = SamplingConfig(max_new_tokens=capacity, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                       eos_token_ids=eos_token_ids, stop_sequences=stop_sequences, pad_token_id=pad_token_id,
                       num_samples=num_samples, cache_dtype=cache_dtype, return_entropy=return_entropy,
                       kv_stages=kv_stages, prefill_chunk=prefill_chunk)
  rows = buckets_lib.bucket_size(num_prompts, buckets.batch, name='batch (prompts)', multiple=divisor)
  length = buckets_lib.bucket_size(prompt_len, buckets.prompt_len, name='prompt length',
                                   minimum=buckets_lib.MIN_PROMPT_LEN)
  image_token = model.cfg.image_token_id if model.cfg.vision is not None else -1
  filler = pad_token_id if pad_token_id != image_token else (image_token + 1) % vocab
  input_ids, attention_mask = buckets_lib.left_align(input_ids, attention_mask)
  input_ids, attention_mask = buckets_lib.pad_prompts(input_ids, attention_mask, length=length, rows=rows,
                                                      pad_id=pad_token_id, filler_id=filler)
  inputs = prepare_inputs(model.cfg, input_ids, attention_mask, pixel_values, image_grid_thw)
  inputs['live'] = np.arange(rows) < num_prompts  # dummy rows start finished
  if 'vision' in inputs:
    unit = model.cfg.vision.merge_unit
    patches = buckets_lib.bucket_size(inputs['vision']['patches'].shape[1], buckets.image_patches,
                                      name='image patches per row', minimum=unit, multiple=unit)
    inputs['vision'] = buckets_lib.pad_vision(inputs['vision'], patches=patches, merge_unit=unit)
  graphdef, params = nnx.split(model)
  sampler = _sampler_for(graphdef, mesh, tuple(rules))
  if mesh is not None:
    params = multihost.put(params, shd.state_shardings(params, mesh, rules))
    inputs = jax.tree_util.tree_map_with_path(functools.partial(_put_rows, mesh=mesh, rules=rules), inputs)
  return PreparedGeneration(sampler=sampler, params=params, inputs=inputs, cfg=cfg, max_new_tokens=max_new_tokens,
                            rows=num_prompts * num_samples)


def generate(model: Model, input_ids, attention_mask, *, max_new_tokens: int, temperature: float = 0.0,
             top_p: float = 1.0, top_k: int = 0, min_p: float = 0.0, eos_token_ids=(), stop_sequences=(),
             rng: jax.Array | int | None = None, pixel_values=None, image_grid_thw=None, num_samples: int = 1,
             pad_token_id: int = 0, return_entropy: bool = False, cache_dtype: str | None = None,
             kv_stages: int = DEFAULT_KV_STAGES, buckets: ShapeBuckets = ShapeBuckets(),
             mesh: jax.sharding.Mesh | None = None,
             rules: tuple[tuple[str, Any], ...] = shd.DEFAULT_RULES, prefill_chunk: int = 0) -> SampleOutput:
  """Samples `num_samples` completions per prompt with a KV cache.

  Args:
    model: the model.
    input_ids, attention_mask: [P, T] numpy arrays; each row's real tokens one contiguous run
      (left or right padding).
    max_new_tokens: tokens generated per row at most.
    temperature: 0 is greedy (then top_p, top_k and min_p must stay off).
    top_p, top_k, min_p: truncation (transformers' order: top-k, top-p, min-p); 1 / 0 / 0 = off.
    eos_token_ids: token ids that end a row (finish reason 'eos'; the EOS token is kept).
    stop_sequences: token-id sequences; a row ends when its completion ends with one (finish
      reason 'stop'; the sequence is kept).
    rng: a PRNG key or an int seed; None means seed 0.
    pixel_values, image_grid_thw: HF image-processor arrays for VLMs.
    num_samples: G completions per prompt from one prefill; rows p*G .. p*G+G-1 belong to prompt p.
    pad_token_id: written after a row's end (and used to pad prompts).
    return_entropy: also return per-token entropies of the temperature-scaled distribution.
    cache_dtype: KV cache dtype (float32 | bfloat16); None = the model's compute dtype.
    kv_stages: cache growth stages (1 = one cache of T + N slots for the whole generation).
    buckets: static shape buckets (EXACT_BUCKETS: no padding, one program per distinct shape).
    mesh: shard rows over ('data', 'fsdp') and heads over 'tensor' on this mesh (single process).
    rules: logical-axis rules for the mesh.
    prefill_chunk: prompt tokens per prefill pass (0: the whole prompt at once); bounds the
      prefill's attention scores and activations by the chunk for long prompts.

  Returns:
    SampleOutput: tokens, logprobs (of the temperature-scaled, untruncated distribution; temperature
    0 counts as 1) and entropy [P*G, max_new_tokens]; lengths, finish_reason [P*G]; steps.
  """
  request = prepare_generation(
      model, input_ids, attention_mask, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
      top_k=top_k, min_p=min_p, eos_token_ids=eos_token_ids, stop_sequences=stop_sequences,
      pixel_values=pixel_values, image_grid_thw=image_grid_thw, num_samples=num_samples, pad_token_id=pad_token_id,
      return_entropy=return_entropy, cache_dtype=cache_dtype, kv_stages=kv_stages, buckets=buckets, mesh=mesh,
      rules=rules, prefill_chunk=prefill_chunk)
  rng = 0 if rng is None else rng
  return request.output(request.decode(request.prefill(rng)))


__all__ = ['DEFAULT_KV_STAGES', 'DecodeState', 'EOS', 'EXACT_BUCKETS', 'FINISH_REASONS', 'Knobs', 'LENGTH',
           'PreparedGeneration', 'STOP', 'SampleOutput', 'Sampler', 'SamplingConfig', 'ShapeBuckets', 'generate',
           'get_sampler', 'inverse_cdf', 'prepare_generation', 'sample_tokens', 'sampling_probs',
           'scaled_logprobs', 'token_stats', 'truncate_logits']
