"""KV-cache generation.

`generate(model, input_ids, attention_mask, *, max_new_tokens, temperature=0.0, top_p=1.0,
top_k=0, eos_token_ids=(), rng=None, pixel_values=None, image_grid_thw=None, num_samples=1)`
-> SampleOutput(tokens [B, N], logprobs [B, N], lengths [B], finished [B]), B = prompts * num_samples.
"""

from __future__ import annotations

import functools

import jax
from flax import nnx

from rl_reason.models import Model, prepare_inputs
from rl_reason.sampling.sampler import (SampleOutput, Sampler, SamplingConfig, generate_arrays,
                                        sample_tokens, scaled_logprobs, truncate_logits)


@functools.lru_cache(maxsize=8)
def _sampler_for(graphdef: nnx.GraphDef) -> Sampler:
  return Sampler(graphdef)


def generate(model: Model, input_ids, attention_mask, *, max_new_tokens: int, temperature: float = 0.0,
             top_p: float = 1.0, top_k: int = 0, eos_token_ids=(), rng=None, pixel_values=None,
             image_grid_thw=None, num_samples: int = 1, pad_token_id: int = 0) -> SampleOutput:
  cfg = SamplingConfig(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                       eos_token_ids=tuple(int(e) for e in eos_token_ids), pad_token_id=pad_token_id,
                       num_samples=num_samples)
  inputs = prepare_inputs(model.cfg, input_ids, attention_mask, pixel_values, image_grid_thw)
  graphdef, params = nnx.split(model)
  rng = rng if rng is not None else jax.random.key(0)
  return _sampler_for(graphdef)(params, inputs, rng, cfg)


__all__ = ['SampleOutput', 'Sampler', 'SamplingConfig', 'generate', 'generate_arrays', 'sample_tokens',
           'scaled_logprobs', 'truncate_logits']
