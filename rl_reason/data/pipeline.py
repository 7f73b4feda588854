"""Deterministic, resumable prompt batches; each process builds only its own share.

Example i of a split is generated from the seed (run seed, split, i), so a batch depends only on
its position in the stream: resuming restores one integer, and no process reads another's data.
Prompts are left padded to a static length bucket; images go through the Qwen2-VL preprocessing.

Shapes: P prompts of this process, T prompt bucket.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

from rl_reason import models
from rl_reason.data import image_processor, processor

SPLITS = {'train': 0, 'eval': 1, 'warmup': 2}


def example_seed(seed: int, split: str, index: int) -> int:
  return int(np.random.SeedSequence((seed, SPLITS[split], index)).generate_state(1)[0])


@dataclasses.dataclass
class HostBatch:
  examples: list[dict[str, Any]]  # task examples: prompt, images, meta
  inputs: dict[str, Any]  # numpy model inputs: input_ids, attention_mask, positions, vision


class PromptEncoder:
  """Turns task examples into padded model inputs (chat template, image tokens, positions)."""

  def __init__(self, tokenizer, model_cfg: models.ModelConfig, image_cfg: image_processor.ImageProcessorConfig | None,
               buckets: tuple[int, ...]):
    self.tokenizer = tokenizer
    self.model_cfg = model_cfg
    self.image_cfg = image_cfg
    self.buckets = buckets
    self.pad_id = tokenizer.pad_token_id

  def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
    images, sequences = [], []
    for example in examples:
      grids = []
      if example.get('images'):
        if self.image_cfg is None:
          raise ValueError('the task produced images but the model has no vision tower')
        processed = image_processor.preprocess(example['images'], self.image_cfg)
        images.append(processed)
        grids = [tuple(g) for g in processed['image_grid_thw']]
        # Coordinate rewards rescale answers given in the resized frame (W, H) of the first image.
        _, grid_h, grid_w = grids[0]
        example['meta']['resized_size'] = [int(grid_w) * self.image_cfg.patch_size,
                                           int(grid_h) * self.image_cfg.patch_size]
      merge = self.image_cfg.merge_size if self.image_cfg else 1
      sequences.append(processor.encode_prompt(self.tokenizer, example['prompt'], grids, merge))
    length = processor.bucket_length(max(map(len, sequences)), self.buckets)
    input_ids, attention_mask = processor.pad_batch(sequences, length=length, pad_id=self.pad_id, side='left')
    pixel_values = grid_thw = None
    if images:
      pixel_values = np.concatenate([p['pixel_values'] for p in images])
      grid_thw = np.concatenate([p['image_grid_thw'] for p in images])
    return models.prepare_inputs(self.model_cfg, input_ids, attention_mask, pixel_values, grid_thw)


class PromptStream:
  """Batches of `global_batch` prompts per step; this process takes rows [start, start + local)."""

  def __init__(self, make_example: Callable[[int], dict[str, Any]], encode: PromptEncoder, *, seed: int,
               split: str, global_batch: int, process_index: int = 0, process_count: int = 1):
    if global_batch % process_count:
      raise ValueError(f'{global_batch} prompts per step do not split over {process_count} processes')
    self.make_example = make_example
    self.encode = encode
    self.seed = seed
    self.split = split
    self.global_batch = global_batch
    self.local_batch = global_batch // process_count
    self.process_index = process_index
    self.position = 0  # batches consumed

  def examples_at(self, position: int) -> list[dict[str, Any]]:
    first = position * self.global_batch + self.process_index * self.local_batch
    return [self.make_example(example_seed(self.seed, self.split, i)) for i in range(first, first + self.local_batch)]

  def next(self) -> HostBatch:
    examples = self.examples_at(self.position)
    self.position += 1
    return HostBatch(examples=examples, inputs=self.encode(examples))

  def state(self) -> dict[str, int]:
    return {'position': self.position, 'seed': self.seed, 'global_batch': self.global_batch}

  def restore(self, state: dict[str, int]) -> None:
    if state.get('seed') != self.seed or state.get('global_batch') != self.global_batch:
      raise ValueError(f'data stream state {state} was saved with another seed or batch size '
                       f'(now seed {self.seed}, batch {self.global_batch})')
    self.position = int(state['position'])
