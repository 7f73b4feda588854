"""SophiaVL-R1's thinking reward model in the loop: a frozen judge scores each completion's reasoning.

For completion b of prompt p the judge reads one user turn: the judge template with p's question
and the whole completion filled in (`model_signals.judge_prompt`), then p's images (the order of the
SophiaVL code's messages). It answers
greedily (temperature 0, up to `max_new_tokens`) and `model_signals.judge_score` reads the score off
its text: R^t in [0, 1], 0 when it wrote none. As in the SophiaVL code only the rows Trust-GRPO uses
are judged (outcome >= 0.2, outside groups whose outcomes are all high or all low); the others are
NaN. A prompt's images go through the vision tower once per call, not once per judged completion
(`vision_rows`). With `batch_rows` the rows go through the judge in calls of at most that many per
process (the same number of calls on every process), which bounds its prefill activations and KV cache.

The judge is a checkpoint of its own (SophiaVL's is Qwen2.5-VL-3B beside a 7B policy), with its own
tokenizer, chat template and image processor settings when its directory holds them and the
policy's otherwise. Each process judges its own rows; the row count is padded to a power of two
agreed by every process (padding rows are marked not live and end at once); the template's head
runs once per call (the sampler's shared prefix) and the rest of a judge prompt is padded to
PROMPT_BUCKETS (two per octave), so its sampler compiles a few programs in a run.

Shapes: B = P * G completions of this process, J judged rows of a call (padded), U the distinct
prompts among them (their vision rows, padded), T0 the template head's tokens, T the bucket of the
rest of a judge prompt, N the judge's answer cap.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx

from rl_reason import models
from rl_reason.data import pipeline, processor as processor_lib, tokenizer as tokenizer_lib
from rl_reason.parallel import memory, multihost
from rl_reason.parallel import sharding as shd
from rl_reason.rewards import model_signals
from rl_reason.sampling import Sampler, SamplingConfig

# Judge prompt lengths after the shared prefix: 64, 96, 128, 192, .. 131072 (two per octave: the
# padding stays under a third, the compiled programs few).
PROMPT_BUCKETS = tuple(sorted(b << k for b in (64, 96) for k in range(12) if b << k <= 131072))
PREFIX_STEP = 64  # the template's head, read before every completion, runs once per call (a multiple of this)
PREFILL_CHUNK = 512  # judge prompt tokens per prefill pass after the head (SamplingConfig.prefill_chunk)


def _padded_rows(count: int, multiple: int) -> int:
  """count rounded up to a power of two, then to a multiple of `multiple` (the mesh's batch split)."""
  rows = 1 << max(count - 1, 0).bit_length()
  return -(-rows // multiple) * multiple


class ThinkingJudge:
  """Scores completions' reasoning with a frozen judge: `scores(examples, texts, rows)`."""

  def __init__(self, model: models.Model, tokenizer, encode: pipeline.PromptEncoder, *, template: str,
               max_new_tokens: int, mesh: jax.sharding.Mesh, rules=shd.DEFAULT_RULES, batch_rows: int = 0):
    self.graphdef, params = nnx.split(model)
    self.model_cfg = model.cfg
    self.params = multihost.put(params, shd.state_shardings(params, mesh, rules))
    self.tokenizer = tokenizer
    self.encode = encode
    self.template = template or model_signals.JUDGE_TEMPLATE
    self.mesh = mesh
    self.rules = rules
    self.sampler = Sampler(self.graphdef, mesh=mesh, rules=rules)
    special = tokenizer_lib.special_ids(tokenizer)
    self.sampling = SamplingConfig(max_new_tokens=max_new_tokens, temperature=0.0, eos_token_ids=(special['eos_id'],),
                                   pad_token_id=special['pad_id'], num_samples=1, prefill_chunk=PREFILL_CHUNK)
    self.row_multiple = max(1, shd.batch_divisor(mesh, rules) // jax.process_count())
    if 0 < batch_rows < self.row_multiple:
      raise ValueError(f'judge_batch_size {batch_rows} is below the {self.row_multiple} rows of each process\'s share '
                       'of the mesh\'s batch axes')
    self.batch_rows = batch_rows  # judge prompts per call and process (0: all at once)
    self.last_answers: list[str] = []  # the judge's texts of the last call (this process's judged rows)

  def call_rows(self, count: int) -> int:
    """Rows of each judge call (padding included) for `count` judged rows of the fullest process: a power
    of two up to batch_rows, rounded up to the mesh's share."""
    if self.batch_rows:
      count = min(count, 1 << (self.batch_rows.bit_length() - 1))
    return _padded_rows(count, self.row_multiple)

  def kv_cache(self, rows: int, prompt_tokens: int, completion_tokens: int) -> memory.KVCacheSpec:
    """The judge's KV cache for `rows` judge prompts of a policy prompt of `prompt_tokens` (its images
    included) and a completion of `completion_tokens`: the template's tokens added; its text before the
    first field is the shared prefix (rounded down to PREFIX_STEP), the rest bucketed."""
    text = self.model_cfg.text
    count = lambda part: len(self.tokenizer.encode(part, add_special_tokens=False))
    template = count(self.template)
    prefix = count(model_signals.judge_template_head(self.template)) // PREFIX_STEP * PREFIX_STEP
    rest = processor_lib.bucket_length(template + prompt_tokens + completion_tokens - prefix, PROMPT_BUCKETS)
    return memory.KVCacheSpec(layers=text.num_hidden_layers, batch=rows,
                              slots=prefix + rest + self.sampling.max_new_tokens,
                              kv_heads=text.num_key_value_heads, head_dim=text.dim_per_head,
                              dtype=models.model.DTYPES[self.model_cfg.dtype])

  def prompts(self, examples: Sequence[Mapping[str, Any]], texts: Sequence[str], rows: Sequence[int]) -> list[dict]:
    """The judge's examples (question, images) for completions `rows` of this process."""
    groups = len(texts) // len(examples)
    return [dict(prompt=model_signals.judge_prompt(self.template, examples[b // groups]['prompt'], texts[b]),
                 images=list(examples[b // groups].get('images') or []), meta={}) for b in rows]

  def _share_images(self, inputs: dict[str, Any], asked: Sequence[int], groups: int) -> dict[str, Any]:
    """Keeps one vision row per prompt among the asked completions (a prompt's G completions show the
    same images) and adds `vision_rows` [J]: the global vision row of each judge prompt's images. The
    kept rows are padded to a power of two agreed by every process (process i's at i * width)."""
    if 'vision' not in inputs:
      return inputs
    first: dict[int, int] = {}  # prompt -> its first judge row
    for i, b in enumerate(asked):
      first.setdefault(b // groups, i)
    width = _padded_rows(multihost.agree_max(len(first))[0], self.row_multiple)
    keep = [*first.values(), *[0] * (width - len(first))]
    slot = {prompt: jax.process_index() * width + j for j, prompt in enumerate(first)}
    return dict(inputs, vision={name: value[keep] for name, value in inputs['vision'].items()},
                vision_rows=np.asarray([slot[b // groups] for b in asked], np.int32))

  def scores(self, examples: Sequence[Mapping[str, Any]], texts: Sequence[str], rows: np.ndarray) -> np.ndarray:
    """[B] float64 R^t of this process's completions where `rows` [B] is True, NaN elsewhere.

    A collective: every process calls it in the same step, each with its own examples and rows.
    """
    if not examples or len(texts) % len(examples):
      raise ValueError(f'{len(texts)} completions do not split into groups of the {len(examples)} prompts')
    groups = len(texts) // len(examples)
    rows = np.asarray(rows, bool)
    if rows.shape != (len(texts),):
      raise ValueError(f'rows {rows.shape} for {len(texts)} completions')
    chosen = np.flatnonzero(rows)
    out = np.full(len(texts), np.nan)
    count = multihost.agree_max(len(chosen))[0]
    self.last_answers = []
    if count == 0:  # no process has a row to judge
      return out
    width = self.call_rows(count)
    filler = int(chosen[0]) if len(chosen) else 0  # padding rows repeat a row and are not live
    for start in range(0, count, width):  # as many calls on every process (the fullest one's)
      part = chosen[start:start + width]
      asked = [*part, *[filler] * (width - len(part))]
      inputs = self._share_images(self.encode(self.prompts(examples, texts, asked)), asked, groups)
      inputs['live'] = np.arange(width) < len(part)
      sampled = self.sampler(self.params, shd.host_to_global(inputs, self.mesh, self.rules), 0, self.sampling)
      tokens, lengths = shd.host_rows(sampled.tokens), shd.host_rows(sampled.lengths)
      for i, b in enumerate(part):
        answer = self.tokenizer.decode(tokens[i, :lengths[i]].tolist(), skip_special_tokens=True)
        self.last_answers.append(answer)
        out[b] = model_signals.judge_score(answer)
    return out


def prompt_encoder(tokenizer, model_cfg: models.ModelConfig, image_cfg) -> pipeline.PromptEncoder:
  """Judge prompts: the text before the images, the template's shared head apart (run once per call)."""
  return pipeline.PromptEncoder(tokenizer, model_cfg, image_cfg, PROMPT_BUCKETS, images_first=False,
                                prefix_step=PREFIX_STEP)


def load(path: str, *, policy_tokenizer, probe_images: Sequence[np.ndarray], template: str, max_new_tokens: int,
         param_dtype: str, dtype: str, mesh: jax.sharding.Mesh, rules=shd.DEFAULT_RULES,
         batch_rows: int = 0) -> ThinkingJudge:
  """The judge of checkpoint `path`, frozen; its own tokenizer when the directory holds one.

  Raises:
    ValueError: no checkpoint at `path`, the task's prompts hold images and the judge has no vision tower, or the tokenizer
      has more tokens than the judge's vocabulary.
  """
  what = f'shaping.trust_grpo.judge {path}'
  if not os.path.exists(os.path.join(path, 'config.json')):
    raise ValueError(f'{what}: no config.json (a Hugging Face checkpoint directory; SophiaVL-R1\'s judge is '
                     'bunny127/SophiaVL-R1-Thinking-Reward-Model-3B)')
  model = models.from_pretrained(path, dtype=param_dtype, compute_dtype=dtype, mesh=mesh)
  own = os.path.exists(os.path.join(path, processor_lib.TOKENIZER_CONFIG))
  tokenizer = processor_lib.load_prompt_tokenizer(path) if own else policy_tokenizer
  if len(tokenizer) > model.cfg.text.vocab_size:
    raise ValueError(f'{what}: the {"checkpoint" if own else "policy"}\'s tokenizer has {len(tokenizer)} tokens, '
                     f'more than the judge\'s vocabulary of {model.cfg.text.vocab_size}')
  if probe_images and model.cfg.vision is None:
    raise ValueError(f'{what}: the task\'s prompts hold images, but the judge has no vision tower')
  encode = prompt_encoder(tokenizer, model.cfg, pipeline.image_config(model.cfg, path, probe_images))
  return ThinkingJudge(model, tokenizer, encode, template=template, max_new_tokens=max_new_tokens, mesh=mesh,
                       rules=rules, batch_rows=batch_rows)
