"""Users' own data from JSONL files; plus the stream machinery every row-backed source shares.

File format: one JSON object per line (blank lines are skipped and do not count as rows):

    {"prompt": "How many apples are in the picture?",   # required: the user-turn text
     "images": ["imgs/0001.png"],                       # optional: image paths, relative to the JSONL
                                                        #   file's folder (or absolute); RGB-converted
     "answer": "3",                                     # required: what the rewards compare against
     "answer_type": "digit", "rows": 2, ...}            # optional: any other keys, passed to the rewards

An example is {'prompt', 'images': [uint8 HxWx3], 'meta': every key but prompt and images, plus
'source_index'} (the row's index over all files, in order; a row may not use that key). With
`think` set, the think / no-think instruction of `tasks.templates` is appended to the prompt (and to
an optional "paraphrase", Co-Reward's rephrased prompt) and meta 'think' records it (a row may then
not carry its own 'think').

`IndexedSource` is the stream shared with the TFDS source: rows 0..N-1, each process reading only
the rows i with i % process_count == process_index (the last N % process_count rows are left out,
so every process has the same number of rows and epochs stay aligned), shuffled per epoch from the
seed, resumable from `state()`, with an optional `keep` filter whose drops are counted in that
state. `PromptBudget` is such a filter: it drops an example whose encoded prompt (chat template and
expanded image tokens) is longer than a token budget; nothing is ever truncated, so an image's
tokens are never cut.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from PIL import Image

from rl_reason.data import image_processor, processor
from rl_reason.tasks import templates

SOURCE_INDEX = 'source_index'
STATE_IDENTITY = ('seed', 'num_rows', 'process_index', 'process_count', 'shuffle')


class IndexedSource:
  """A deterministic, resumable, process-sharded stream of examples over rows 0..num_rows-1.

  `make_example(row, rng)` builds the example of a row; rng is seeded by (seed, epoch, row), so the
  stream is a function of the seed, the sharding and the position, not of the reading history.
  """

  def __init__(self, num_rows: int, make_example: Callable[[int, np.random.Generator], dict[str, Any]], *,
               seed: int, shuffle: bool = True, process_index: int = 0, process_count: int = 1,
               keep: Callable[[dict[str, Any]], bool] | None = None):
    if process_count < 1 or not 0 <= process_index < process_count:
      raise ValueError(f'need 0 <= process_index < process_count, got {process_index}, {process_count}')
    if num_rows < process_count:
      raise ValueError(f'{num_rows} rows cannot feed {process_count} processes')
    self.num_rows = num_rows
    self.make_example = make_example
    self.seed = seed
    self.shuffle = shuffle
    self.process_index = process_index
    self.process_count = process_count
    self.keep = keep
    self.rows = np.arange(process_index, num_rows // process_count * process_count, process_count)
    self.rows_left_out = num_rows % process_count  # per epoch, identical on every process
    self.epoch = 0
    self.position = 0  # rows of this epoch already read
    self.dropped = 0  # examples `keep` rejected, over the whole stream
    self._order = self._epoch_order(0)

  def _epoch_order(self, epoch: int) -> np.ndarray:
    if not self.shuffle:
      return self.rows
    return self.rows[np.random.default_rng(np.random.SeedSequence((self.seed, epoch))).permutation(len(self.rows))]

  def example_at(self, epoch: int, row: int) -> dict[str, Any]:
    """The example of a row in an epoch (what the stream yields there, before the filter)."""
    example = self.make_example(int(row), np.random.default_rng(np.random.SeedSequence((self.seed, epoch, int(row)))))
    if SOURCE_INDEX in example['meta']:
      raise ValueError(f'row {row}: meta key {SOURCE_INDEX!r} is reserved for the row index')
    example['meta'][SOURCE_INDEX] = int(row)
    return example

  def next(self) -> dict[str, Any]:
    """The next example this process keeps."""
    rejected_in_a_row = 0
    while True:
      if self.position == len(self._order):
        self.epoch += 1
        self.position = 0
        self._order = self._epoch_order(self.epoch)
      row = self._order[self.position]
      self.position += 1
      example = self.example_at(self.epoch, row)
      if self.keep is None or self.keep(example):
        return example
      self.dropped += 1
      rejected_in_a_row += 1
      if rejected_in_a_row >= len(self._order):
        raise ValueError(f'the filter rejected {rejected_in_a_row} examples in a row, as many as this process '
                         f'has rows: nothing passes it')

  def take(self, count: int) -> list[dict[str, Any]]:
    return [self.next() for _ in range(count)]

  def __iter__(self):
    while True:
      yield self.next()

  def state(self) -> dict[str, Any]:
    """Plain ints and bools (JSON- and checkpoint-friendly); `restore` continues exactly here."""
    return {'seed': self.seed, 'num_rows': self.num_rows, 'process_index': self.process_index,
            'process_count': self.process_count, 'shuffle': self.shuffle, 'epoch': self.epoch,
            'position': self.position, 'dropped': self.dropped}

  def restore(self, state: dict[str, Any]) -> None:
    mismatched = {k: (state.get(k), getattr(self, k)) for k in STATE_IDENTITY if state.get(k) != getattr(self, k)}
    if mismatched:
      raise ValueError(f'source state was saved with other settings ({{key: (saved, now)}}: {mismatched})')
    if not 0 <= int(state['position']) <= len(self.rows):
      raise ValueError(f'source state position {state["position"]} is outside [0, {len(self.rows)}]')
    self.epoch = int(state['epoch'])
    self.position = int(state['position'])
    self.dropped = int(state['dropped'])
    self._order = self._epoch_order(self.epoch)


class PromptBudget:
  """A `keep` filter: True iff the encoded prompt (chat template, image tokens expanded) has <= max_tokens.

  The length is that of `processor.encode_prompt`, with each image's token count from the
  processor's resize (`image_processor.smart_resize`), so it is exactly what the model will see.
  Rejected examples are dropped whole; `rejected` counts them (the sources count their own drops
  in their state as well).
  """

  def __init__(self, tokenizer, max_tokens: int, image_cfg: image_processor.ImageProcessorConfig | None = None,
               system: str | None = None):
    if max_tokens < 1:
      raise ValueError(f'max_tokens must be >= 1, got {max_tokens}')
    self.tokenizer = tokenizer
    self.max_tokens = max_tokens
    self.image_cfg = image_cfg
    self.system = system
    self.rejected = 0

  def length(self, example: dict[str, Any]) -> int:
    grids = []
    for image in example['images']:
      if self.image_cfg is None:
        raise ValueError('the example has images but the budget has no image_cfg to count their tokens')
      cfg = self.image_cfg
      height, width = image_processor.smart_resize(image.shape[0], image.shape[1], cfg.factor, cfg.min_pixels,
                                                   cfg.max_pixels)
      grids.append((1, height // cfg.patch_size, width // cfg.patch_size))
    merge = self.image_cfg.merge_size if self.image_cfg else 1
    return len(processor.encode_prompt(self.tokenizer, example['prompt'], grids, merge, system=self.system))

  def __call__(self, example: dict[str, Any]) -> bool:
    fits = self.length(example) <= self.max_tokens
    self.rejected += not fits
    return fits


def filter_examples(examples: Iterable[dict[str, Any]], keep: Callable[[dict[str, Any]], bool]
                    ) -> tuple[list[dict[str, Any]], int]:
  """(the examples `keep` accepts, how many it dropped): for fixed lists such as evaluation sets."""
  kept, dropped = [], 0
  for example in examples:
    if keep(example):
      kept.append(example)
    else:
      dropped += 1
  return kept, dropped


def load_image(path: str) -> np.ndarray:
  """uint8 [H, W, 3] RGB (grey, palette and alpha images are converted)."""
  with Image.open(path) as image:
    return np.asarray(image.convert('RGB'), np.uint8).copy()


def _line_index(path: str) -> list[tuple[int, int, int]]:
  """(byte offset, byte length, 1-based line number) of every non-blank line."""
  with open(path, 'rb') as f:
    data = f.read()
  lines, start, number = [], 0, 0
  while start < len(data):
    end = data.find(b'\n', start)
    end = len(data) if end < 0 else end
    number += 1
    if data[start:end].strip():
      lines.append((start, end - start, number))
    start = end + 1
  return lines


class JsonlSource(IndexedSource):
  """Examples from JSONL files (format in the module docstring); each process parses only its own rows."""

  def __init__(self, paths: str | Sequence[str], *, seed: int = 0, shuffle: bool = True, process_index: int = 0,
               process_count: int = 1, think: bool | None = None,
               keep: Callable[[dict[str, Any]], bool] | None = None):
    self.paths = [paths] if isinstance(paths, str) else list(paths)
    if not self.paths:
      raise ValueError('JsonlSource needs at least one file')
    self.think = think
    self._index = []  # (file, offset, length, line number) per row
    for path in self.paths:
      self._index.extend((path, *entry) for entry in _line_index(path))
    if not self._index:
      raise ValueError(f'{self.paths}: no rows')
    super().__init__(len(self._index), self._make_example, seed=seed, shuffle=shuffle,
                     process_index=process_index, process_count=process_count, keep=keep)

  def read_row(self, row: int) -> dict[str, Any]:
    """The parsed, validated JSON object of a row."""
    path, offset, length, line = self._index[row]
    where = f'{path}:{line}'
    with open(path, 'rb') as f:
      f.seek(offset)
      text = f.read(length)
    try:
      record = json.loads(text)
    except json.JSONDecodeError as e:
      raise ValueError(f'{where}: not valid JSON ({e})') from e
    if not isinstance(record, dict):
      raise ValueError(f'{where}: a row must be a JSON object, got {type(record).__name__}')
    if not isinstance(record.get('prompt'), str) or not record['prompt']:
      raise ValueError(f'{where}: "prompt" must be a non-empty string')
    if 'answer' not in record:
      raise ValueError(f'{where}: "answer" is missing')
    images = record.get('images', [])
    if not isinstance(images, list) or not all(isinstance(p, str) for p in images):
      raise ValueError(f'{where}: "images" must be a list of paths')
    if self.think is not None and 'think' in record:
      raise ValueError(f'{where}: the row sets "think" but the source adds the think instruction itself')
    return record

  def _make_example(self, row: int, rng: np.random.Generator) -> dict[str, Any]:
    del rng  # user data are fixed
    record = self.read_row(row)
    path = self._index[row][0]
    folder = os.path.dirname(os.path.abspath(path))
    images = []
    for image_path in record.get('images', []):
      full = image_path if os.path.isabs(image_path) else os.path.join(folder, image_path)
      if not os.path.exists(full):
        raise FileNotFoundError(f'{path}:{self._index[row][3]}: image {image_path} not found (looked at {full})')
      images.append(load_image(full))
    meta = {k: v for k, v in record.items() if k not in ('prompt', 'images')}
    prompt = record['prompt']
    if self.think is not None:
      prompt = templates.apply(prompt, think=self.think)
      if isinstance(meta.get('paraphrase'), str):  # Co-Reward's rephrased prompt gets the same instruction
        meta['paraphrase'] = templates.apply(meta['paraphrase'], think=self.think)
      meta['think'] = self.think
    return {'prompt': prompt, 'images': images, 'meta': meta}
