"""Deterministic, resumable prompt batches; each process builds only its own share.

Example i of a split is generated from the seed (run seed, split, i), so a batch depends only on
its position in the stream: resuming restores one integer, and no process reads another's data.
Prompts are left padded to a static length bucket; images go through the Qwen2-VL preprocessing.

Shapes: P prompts of this process, T prompt bucket (after the shared prefix, with prefix_step), T0
shared prefix tokens.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any, Callable

import numpy as np

from rl_reason import models
from rl_reason.data import image_processor, processor
from rl_reason.parallel import multihost
from rl_reason.sampling import buckets as buckets_lib

SPLITS = {'train': 0, 'eval': 1, 'warmup': 2}
DOMAIN = 'domain'  # meta key: the domain an example was drawn from (domain-weighted sampling, per-domain metrics)


def example_seed(seed: int, split: str, index: int) -> int:
  return int(np.random.SeedSequence((seed, SPLITS[split], index)).generate_state(1)[0])


@dataclasses.dataclass
class HostBatch:
  examples: list[dict[str, Any]]  # task examples: prompt, images, meta
  inputs: dict[str, Any]  # numpy model inputs: input_ids, attention_mask, positions, vision


def image_config(model_cfg: models.ModelConfig, path: str,
                 probe_images: Sequence[np.ndarray]) -> image_processor.ImageProcessorConfig | None:
  """Qwen2-VL preprocessing for a model's vision tower (None without one): the checkpoint's own
  preprocessor_config.json when `path` holds one, else room for images up to twice the side lengths
  of `probe_images` (the processor resizes, never crops)."""
  vision = model_cfg.vision
  if vision is None:
    return None
  if path and os.path.exists(os.path.join(path, processor.PREPROCESSOR_CONFIG)):
    # A checkpoint's own processor settings (pixel bounds, normalisation); with them the numpy preprocessing
    # gives the arrays of its HF image processor (processor.hf_preprocess_images; data_hf_processor_test).
    image_cfg = image_processor.config_from_pretrained(path)
    ours = (image_cfg.patch_size, image_cfg.merge_size, image_cfg.temporal_patch_size)
    tower = (vision.patch_size, vision.spatial_merge_size, vision.temporal_patch_size)
    if ours != tower:
      raise ValueError(f'{path}: preprocessor_config.json patch/merge/temporal patch size {ours} != the '
                       f'vision tower\'s {tower}')
    return image_cfg
  pixels = max([image.shape[0] * image.shape[1] for image in probe_images] or [1])
  return image_processor.ImageProcessorConfig(
      patch_size=vision.patch_size, temporal_patch_size=vision.temporal_patch_size,
      merge_size=vision.spatial_merge_size, min_pixels=(vision.patch_size * vision.spatial_merge_size)**2,
      max_pixels=4 * pixels)


class PromptEncoder:
  """Turns task examples into padded model inputs (chat template, image tokens, positions).

  With `prefix_step` > 0 the tokens every prompt of the batch begins with (every process's prompts,
  cut before the first image token, a multiple of prefix_step: T0 of them) come apart as
  `prefix_ids` [P, T0], and `input_ids`, `attention_mask` and `positions` hold the rest, left padded
  to a bucket, its positions counted from T0: the sampler then runs the prefix once for the batch
  (a judge template read before every completion). Off with sliding-window layers, whose windows
  count cache slots and so would count the padding between the prefix and the rest.
  """

  def __init__(self, tokenizer, model_cfg: models.ModelConfig, image_cfg: image_processor.ImageProcessorConfig | None,
               buckets: tuple[int, ...], *, images_first: bool = True, prefix_step: int = 0):
    self.tokenizer = tokenizer
    self.images_first = images_first  # False: the text, then the images (the thinking judge's prompts)
    text = model_cfg.text
    if prefix_step and any(text.window_of_layer(i) for i in range(text.num_hidden_layers)):
      prefix_step = 0
    self.prefix_step = prefix_step
    self.model_cfg = model_cfg
    self.image_cfg = image_cfg
    self.buckets = buckets
    self.pad_id = tokenizer.pad_token_id

  def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
    images, sequences = [], []
    preprocessed = {}  # the same image objects (a prompt's judged completions) are preprocessed once
    for example in examples:
      grids = []
      if example.get('images'):
        if self.image_cfg is None:
          raise ValueError('the task produced images but the model has no vision tower')
        key = tuple(map(id, example['images']))
        if key not in preprocessed:
          preprocessed[key] = image_processor.preprocess(example['images'], self.image_cfg)
        processed = preprocessed[key]
        images.append(processed)
        grids = [tuple(g) for g in processed['image_grid_thw']]
        # Coordinate rewards rescale answers given in the resized frame (W, H) of the first image.
        _, grid_h, grid_w = grids[0]
        example['meta']['resized_size'] = [int(grid_w) * self.image_cfg.patch_size,
                                           int(grid_h) * self.image_cfg.patch_size]
      merge = self.image_cfg.merge_size if self.image_cfg else 1
      sequences.append(processor.encode_prompt(self.tokenizer, example['prompt'], grids, merge,
                                               images_first=self.images_first))
    pixel_values = grid_thw = None
    if images:
      pixel_values = np.concatenate([p['pixel_values'] for p in images])
      grid_thw = np.concatenate([p['image_grid_thw'] for p in images])
    return self.arrays(sequences, pixel_values, grid_thw)

  def arrays(self, sequences: list[list[int]], pixel_values: np.ndarray | None = None,
             grid_thw: np.ndarray | None = None) -> dict[str, Any]:
    """Token ids of this process's P prompts (image tokens expanded) and their images -> model inputs."""
    prefix = self._shared_prefix(sequences)
    rests = [s[len(prefix):] for s in sequences]
    # Every process's share of a batch pads to one length (and, below, one image width): the global
    # arrays are built from the shares.
    length = processor.bucket_length(multihost.agree_max(max(map(len, rests)))[0], self.buckets)
    input_ids, attention_mask = processor.pad_batch(rests, length=length, pad_id=self.pad_id, side='left')
    if prefix:  # [prefix | padding | rest]: positions count real tokens, so the rest continues from T0
      input_ids = np.concatenate([np.broadcast_to(np.asarray(prefix, np.int32), (len(rests), len(prefix))),
                                  input_ids], axis=1)
      attention_mask = np.concatenate([np.ones((len(rests), len(prefix)), np.int32), attention_mask], axis=1)
    inputs = models.prepare_inputs(self.model_cfg, input_ids, attention_mask, pixel_values, grid_thw)
    if self.model_cfg.vision is not None:
      local = inputs['vision']['patches'].shape[1] if 'vision' in inputs else 0
      patches, some_without = multihost.agree_max(local, int('vision' not in inputs))
      if patches and some_without:
        raise ValueError('the prompts of some processes hold images and those of others none: a batch that '
                         'mixes image and text-only prompts across processes is not supported')
      if patches > local:
        inputs['vision'] = buckets_lib.pad_vision(inputs['vision'], patches=patches,
                                                  merge_unit=self.model_cfg.vision.merge_unit)
    if prefix:  # its positions are 0 .. T0 - 1 (text before any image): the sampler makes them
      cut = len(prefix)
      inputs.update(prefix_ids=inputs['input_ids'][:, :cut], input_ids=inputs['input_ids'][:, cut:],
                    attention_mask=inputs['attention_mask'][:, cut:], positions=inputs['positions'][:, :, cut:])
    return inputs

  def _shared_prefix(self, sequences: list[list[int]]) -> list[int]:
    """The tokens every process's prompts begin with (processor.shared_prefix_length); [] when off."""
    if not self.prefix_step:
      return []
    image_id = self.model_cfg.image_token_id
    length = processor.shared_prefix_length(sequences, image_token_id=image_id, step=self.prefix_step)
    heads = multihost.all_objects([sequences[0][:length]])  # one per process: they must agree as well
    if len(heads) > 1:
      length = processor.shared_prefix_length([h + [image_id] for h in heads], image_token_id=image_id,
                                              step=self.prefix_step)
    return sequences[0][:length]


class PromptStream:
  """Batches of `global_batch` prompts per step; this process takes rows [start, start + local)."""

  def __init__(self, make_example: Callable[[int], dict[str, Any]], encode: PromptEncoder, *, seed: int,
               split: str, global_batch: int, process_index: int = 0, process_count: int = 1,
               make_example_for: Callable[[str, int], dict[str, Any]] | None = None):
    if global_batch % process_count:
      raise ValueError(f'{global_batch} prompts per step do not split over {process_count} processes')
    self.make_example = make_example
    self.make_example_for = make_example_for  # (domain, seed) -> example: batches with chosen domains
    self.encode = encode
    self.seed = seed
    self.split = split
    self.global_batch = global_batch
    self.local_batch = global_batch // process_count
    self.process_index = process_index
    self.position = 0  # batches consumed

  def examples_at(self, position: int, domains: Sequence[str] = ()) -> list[dict[str, Any]]:
    """This process's examples of batch `position`.

    `domains` (one per prompt of the global batch, e.g. a domain-weighted curriculum's draw) draws
    prompt j from `make_example_for(domains[j], seed)` with the seed it has anyway, so the batch
    is still a function of its position (and the domains).
    """
    offset = self.process_index * self.local_batch
    first = position * self.global_batch + offset
    seeds = [example_seed(self.seed, self.split, i) for i in range(first, first + self.local_batch)]
    if not domains:
      return [self.make_example(seed) for seed in seeds]
    if len(domains) != self.global_batch:
      raise ValueError(f'{len(domains)} domains for a batch of {self.global_batch} prompts')
    if self.make_example_for is None:
      raise ValueError(f'the {self.split} stream cannot draw examples of a chosen domain')
    return [self._example_for(str(domains[offset + k]), seed) for k, seed in enumerate(seeds)]

  def _example_for(self, domain: str, seed: int) -> dict[str, Any]:
    example = self.make_example_for(domain, seed)
    # The domain travels with the example (in meta) to the per-domain metrics and the curriculum's columns.
    if example['meta'].setdefault(DOMAIN, domain) != domain:
      raise ValueError(f'asked for an example of domain {domain!r}, got meta {DOMAIN}={example["meta"][DOMAIN]!r}')
    return example

  def next_examples(self, domains: Sequence[str] = ()) -> list[dict[str, Any]]:
    examples = self.examples_at(self.position, domains)
    self.position += 1
    return examples

  def next(self, domains: Sequence[str] = ()) -> HostBatch:
    examples = self.next_examples(domains)
    return HostBatch(examples=examples, inputs=self.encode(examples))

  def state(self) -> dict[str, int]:
    return {'position': self.position, 'seed': self.seed, 'global_batch': self.global_batch}

  def restore(self, state: dict[str, int]) -> None:
    if state.get('seed') != self.seed or state.get('global_batch') != self.global_batch:
      raise ValueError(f'data stream state {state} was saved with another seed or batch size '
                       f'(now seed {self.seed}, batch {self.global_batch})')
    self.position = int(state['position'])


PARAPHRASE = 'paraphrase'  # meta key: the same question in other words (Co-Reward's rephrased prompt)
REPHRASED = 'rephrased'  # meta key set on the rephrased copy


def rephrased(example: dict[str, Any]) -> dict[str, Any]:
  """The example with its prompt replaced by meta['paraphrase'] (same images and answer), marked rephrased."""
  meta = example['meta']
  if not isinstance(meta.get(PARAPHRASE), str) or not meta[PARAPHRASE]:
    raise ValueError(f"Co-Reward pairs each prompt with its rephrasing, meta[{PARAPHRASE!r}], which this task's "
                     f'examples do not carry (meta keys: {sorted(meta)}); the arithmetic task has it')
  return {**example, 'prompt': meta[PARAPHRASE], 'meta': {**meta, REPHRASED: True}}


class PairedStream:
  """Each prompt of an inner stream followed by its rephrasing: [x_0, x'_0, x_1, x'_1, ...] (Co-Reward).

  The inner stream yields half the prompts (its global batch is half this stream's); its state is
  this stream's. Each process pairs its own prompts, so pairs never straddle processes.
  """

  def __init__(self, inner):
    self.inner = inner
    self.encode = inner.encode

  def next(self, domains: Sequence[str] = ()) -> HostBatch:
    if domains:
      raise ValueError('Co-Reward pairs (rephrased prompts) cannot draw prompts of chosen domains')
    examples = [e for example in self.inner.next_examples() for e in (example, rephrased(example))]
    return HostBatch(examples=examples, inputs=self.encode(examples))

  @property
  def dropped(self) -> int:
    return self.inner.dropped

  def state(self) -> dict[str, Any]:
    return self.inner.state()

  def restore(self, state: dict[str, Any]) -> None:
    self.inner.restore(state)


class SourceStream:
  """Batches of `global_batch` prompts from a row source (data/sources.py); this process reads only its rows.

  The source keeps its own position (epoch, row, examples its filter dropped), which is the
  stream's checkpointed state; batches are read in order (no random access by position).
  """

  def __init__(self, source, encode: PromptEncoder, *, global_batch: int, process_count: int = 1):
    if global_batch % process_count:
      raise ValueError(f'{global_batch} prompts per step do not split over {process_count} processes')
    self.source = source
    self.encode = encode
    self.global_batch = global_batch
    self.local_batch = global_batch // process_count

  def next_examples(self, domains: Sequence[str] = ()) -> list[dict[str, Any]]:
    if domains:
      raise ValueError('a row source cannot draw prompts of chosen domains')
    return self.source.take(self.local_batch)

  def next(self, domains: Sequence[str] = ()) -> HostBatch:
    examples = self.next_examples(domains)
    return HostBatch(examples=examples, inputs=self.encode(examples))

  @property
  def dropped(self) -> int:
    """Examples the prompt-length filter dropped so far (over-long prompts are never truncated)."""
    return self.source.dropped

  def state(self) -> dict[str, Any]:
    return {'global_batch': self.global_batch, 'source': self.source.state()}

  def restore(self, state: dict[str, Any]) -> None:
    if 'source' not in state:
      raise ValueError(f'data stream state {sorted(state)} is not a row source\'s (the checkpoint was written with '
                       'another data.source)')
    if state.get('global_batch') != self.global_batch:
      raise ValueError(f'data stream state was saved with {state.get("global_batch")} prompts per batch, now '
                       f'{self.global_batch}')
    self.source.restore(state['source'])
