"""Prompt encoding and batching: chat template, image-token expansion, padding to length buckets.

`encode_prompt` does what the Hugging Face Qwen2.5-VL processor does to a prompt: render the chat
with one image part per image before the text, then expand every `<|image_pad|>` into as many
copies as the vision tower emits tokens for that image (t * h * w / merge_size**2).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import transformers

from rl_reason.data import image_processor
from rl_reason.data.tokenizer import IMAGE_PAD


def encode_prompt(tokenizer: transformers.PreTrainedTokenizerBase, text: str,
                  image_grid_thws: Sequence[Sequence[int]], merge_size: int, system: str | None = None) -> list[int]:
  """Token ids of a user turn (images first, then text) followed by the assistant generation prompt.

  Args:
    tokenizer: a tokenizer with the Qwen2-VL chat template (`build_tiny_tokenizer`).
    text: the question.
    image_grid_thws: the (t, h, w) patch grid of each image, in order.
    merge_size: the vision tower's spatial merge size.
    system: optional system message.

  Returns:
    The ids, with each image's single `<|image_pad|>` expanded to its number of image tokens.
  """
  content = [{'type': 'image'} for _ in image_grid_thws] + [{'type': 'text', 'text': text}]
  messages = [{'role': 'user', 'content': content}]
  if system is not None:
    messages.insert(0, {'role': 'system', 'content': system})
  rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
  ids = tokenizer.encode(rendered, add_special_tokens=False)
  pad_id = tokenizer.convert_tokens_to_ids(IMAGE_PAD)
  placeholders = ids.count(pad_id)
  if placeholders != len(image_grid_thws):
    raise ValueError(f'the prompt has {placeholders} {IMAGE_PAD} placeholders but {len(image_grid_thws)} images '
                     f'were given (does the text itself contain {IMAGE_PAD}?)')
  counts = iter(image_processor.num_image_tokens(grid, merge_size) for grid in image_grid_thws)
  expanded = []
  for token in ids:
    expanded.extend([pad_id] * next(counts) if token == pad_id else [token])
  return expanded


def pad_batch(sequences: Sequence[Sequence[int]], *, length: int, pad_id: int,
              side: str = 'left') -> tuple[np.ndarray, np.ndarray]:
  """Pads token lists to one length.

  Args:
    sequences: B lists of token ids, each at most `length` long.
    length: the padded length T.
    pad_id: the id written into padding.
    side: 'left' (prompts: generation continues at the right end) or 'right'.

  Returns:
    input_ids int32 [B, T] and attention_mask int32 [B, T] (1 on real tokens).
  """
  if side not in ('left', 'right'):
    raise ValueError(f"side must be 'left' or 'right', got {side!r}")
  input_ids = np.full((len(sequences), length), pad_id, np.int32)
  attention_mask = np.zeros((len(sequences), length), np.int32)
  for row, sequence in enumerate(sequences):
    n = len(sequence)
    if n > length:
      raise ValueError(f'sequence {row} has {n} tokens, more than the padded length {length}')
    start = length - n if side == 'left' else 0
    input_ids[row, start:start + n] = sequence
    attention_mask[row, start:start + n] = 1
  return input_ids, attention_mask


def bucket_length(n: int, buckets: Sequence[int]) -> int:
  """The smallest bucket >= n (static shapes: one compiled program per bucket)."""
  fitting = [b for b in buckets if b >= n]
  if not fitting:
    raise ValueError(f'a length of {n} tokens fits none of the buckets {tuple(buckets)}; add a larger bucket')
  return min(fitting)
