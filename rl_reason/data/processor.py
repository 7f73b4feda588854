"""Prompt encoding and batching: chat template, image-token expansion, padding to length buckets.

`encode_prompt` does what the Hugging Face Qwen2.5-VL processor does to a prompt: render the chat
with one image part per image before the text, then expand every `<|image_pad|>` into as many
copies as the vision tower emits tokens for that image (t * h * w / merge_size**2).

A checkpoint directory's own Hugging Face processor (local files only, never the network):
`load_processor(path)` gives the Qwen2-VL / Qwen2.5-VL processor (tokenizer, the image processor
class named in preprocessor_config.json, chat template) or, for text models, the tokenizer;
`load_prompt_tokenizer(path)` the tokenizer prompts are encoded with, carrying the checkpoint's
chat template; `hf_preprocess_images` runs the checkpoint's image processor class on the host (the
training pipeline uses the numpy equivalent, image_processor.preprocess with
image_processor.config_from_pretrained(path), which gives the same arrays).

Shapes: N patches of all images, C flattened patch dim, I images, B batch, T tokens.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import transformers

from rl_reason.data import image_processor
from rl_reason.data import tokenizer as tokenizer_lib
from rl_reason.data.tokenizer import IMAGE_PAD

PREPROCESSOR_CONFIG = 'preprocessor_config.json'
TOKENIZER_CONFIG = 'tokenizer_config.json'
# The processor class of each vision model_type (config.json), when no processor file names one.
PROCESSOR_CLASSES = {'qwen2_vl': 'Qwen2VLProcessor', 'qwen2_5_vl': 'Qwen2_5_VLProcessor'}
# Files a processor's chat template may come from, in transformers' order of preference.
CHAT_TEMPLATE_FILES = ('chat_template.jinja', 'chat_template.json', TOKENIZER_CONFIG)


def encode_prompt(tokenizer: transformers.PreTrainedTokenizerBase, text: str,
                  image_grid_thws: Sequence[Sequence[int]], merge_size: int, system: str | None = None,
                  images_first: bool = True) -> list[int]:
  """Token ids of a user turn (images first, then text) followed by the assistant generation prompt.

  Args:
    tokenizer: a tokenizer with the Qwen2-VL chat template (`build_tiny_tokenizer`).
    text: the question.
    image_grid_thws: the (t, h, w) patch grid of each image, in order.
    merge_size: the vision tower's spatial merge size.
    system: optional system message.
    images_first: False puts the images after the text (SophiaVL's judge messages).

  Returns:
    The ids, with each image's single `<|image_pad|>` expanded to its number of image tokens.
  """
  images = [{'type': 'image'} for _ in image_grid_thws]
  content = images + [{'type': 'text', 'text': text}] if images_first else [{'type': 'text', 'text': text}] + images
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


def shared_prefix_length(sequences: Sequence[Sequence[int]], *, image_token_id: int, step: int) -> int:
  """How many leading tokens every sequence shares, cut before the first image token and so that
  every sequence keeps at least one token of its own, rounded down to a multiple of `step` (few
  distinct prefix lengths: few compiled programs). 0 when fewer than `step` are shared."""
  if not sequences or step <= 0:
    return 0
  width = min(len(s) for s in sequences) - 1
  if width < step:
    return 0
  head = np.array([list(s[:width]) for s in sequences], np.int64)  # [B, width]
  same = np.all(head == head[:1], axis=0) & (head[0] != image_token_id)
  shared = width if same.all() else int(np.argmin(same))
  return shared // step * step


def bucket_length(n: int, buckets: Sequence[int]) -> int:
  """The smallest bucket >= n (static shapes: one compiled program per bucket)."""
  fitting = [b for b in buckets if b >= n]
  if not fitting:
    raise ValueError(f'a length of {n} tokens fits none of the buckets {tuple(buckets)}; add a larger bucket')
  return min(fitting)


# ----------------------------------------------------------------------------- checkpoint processors


def _read_json(path: str, name: str) -> dict[str, Any]:
  file = os.path.join(path, name)
  if not os.path.exists(file):
    return {}
  with open(file) as f:
    try:
      return json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f'{file}: not valid JSON ({e})') from e


def is_vision_checkpoint(path: str) -> bool:
  """Whether a checkpoint directory is a vision-language model: its config.json model_type, else the
  presence of preprocessor_config.json (a processor saved without the model)."""
  model_type = _read_json(path, 'config.json').get('model_type')
  if model_type is not None:
    return model_type in PROCESSOR_CLASSES
  return os.path.exists(os.path.join(path, PREPROCESSOR_CONFIG))


def _check_files(path: str, vision: bool) -> None:
  """Refuses a directory that lacks a file the processor needs, naming the file."""
  if not os.path.isdir(path):
    raise FileNotFoundError(f'{path}: not a directory (expected a checkpoint directory with tokenizer files)')
  has = lambda name: os.path.exists(os.path.join(path, name))
  if not has(TOKENIZER_CONFIG):
    raise FileNotFoundError(f'{path}: missing {TOKENIZER_CONFIG} (the tokenizer class and special tokens)')
  if not (has('tokenizer.json') or has('tokenizer.model') or (has('vocab.json') and has('merges.txt'))):
    lacking = 'merges.txt' if has('vocab.json') else 'tokenizer.json (or vocab.json + merges.txt, or tokenizer.model)'
    raise FileNotFoundError(f'{path}: missing {lacking} (the tokenizer vocabulary)')
  if vision and not has(PREPROCESSOR_CONFIG):
    raise FileNotFoundError(f'{path}: missing {PREPROCESSOR_CONFIG} (the image processor settings of this '
                            'vision-language checkpoint)')


def _processor_class(path: str) -> type:
  """The processor class a checkpoint names (processor_class in a processor or tokenizer file, else by
  config.json model_type)."""
  for name in ('processor_config.json', PREPROCESSOR_CONFIG, TOKENIZER_CONFIG):
    class_name = _read_json(path, name).get('processor_class')
    if class_name:
      break
  else:
    class_name = PROCESSOR_CLASSES.get(_read_json(path, 'config.json').get('model_type'))
  if class_name not in PROCESSOR_CLASSES.values():
    raise ValueError(f'{path}: processor class {class_name!r} is not supported; supported: '
                     f'{sorted(PROCESSOR_CLASSES.values())} (set processor_class in {PREPROCESSOR_CONFIG})')
  return getattr(transformers, class_name)


def _without_video(cls: type) -> type:
  """`cls` (Qwen2VLProcessor / Qwen2_5_VLProcessor) minus its video processor.

  transformers' Qwen2-VL video processor needs torchvision, so without it AutoProcessor cannot
  build these processors at all. Images and text are handled by `cls`'s own code unchanged; the
  subclass only leaves `video_processor` out of the sub-processors it declares and loads. It is for
  use, not for save_pretrained (the saved processor_class would name this subclass).
  """

  class ImagesOnly(cls):
    attributes = ['image_processor', 'tokenizer']  # transformers 4.x reads the sub-processors from here

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
      # cls sets its image/video token ids, then hands (image_processor, tokenizer, None) to
      # ProcessorMixin, which keeps only the sub-processors this signature declares.
      super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)

  ImagesOnly.__name__ = ImagesOnly.__qualname__ = f'{cls.__name__}ImagesOnly'
  return ImagesOnly


def load_processor(path: str):
  """The Hugging Face processor of a local checkpoint directory; never the network.

  Vision-language checkpoints (config.json model_type qwen2_vl / qwen2_5_vl, or a processor
  directory with preprocessor_config.json): `transformers.AutoProcessor.from_pretrained(path,
  local_files_only=True)`, i.e. the checkpoint's tokenizer, its chat template and the image processor
  class its preprocessor_config.json names. Where torchvision is missing (transformers' Qwen2-VL video
  processor needs it) the same processor class is built without its video processor. Text
  checkpoints: the tokenizer (`AutoTokenizer`).

  Raises FileNotFoundError naming a missing file (tokenizer_config.json, the tokenizer vocabulary,
  preprocessor_config.json), ValueError for an unsupported processor.
  """
  vision = is_vision_checkpoint(path) if os.path.isdir(path) else False
  _check_files(path, vision)
  if not vision:
    return transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
  try:
    processor = transformers.AutoProcessor.from_pretrained(path, local_files_only=True)
  except ImportError:  # torchvision absent: the video processor cannot be built
    processor = None
  # Without a file naming the processor class, AutoProcessor gives back the bare tokenizer.
  if not isinstance(processor, transformers.ProcessorMixin):
    processor = _without_video(_processor_class(path)).from_pretrained(path, local_files_only=True)
  # Only these expand image tokens per image grid as encode_prompt and the models expect.
  supported = tuple(getattr(transformers, name) for name in PROCESSOR_CLASSES.values())
  if not isinstance(processor, supported):
    raise ValueError(f'{path}: processor class {type(processor).__name__} is not supported; supported: '
                     f'{sorted(PROCESSOR_CLASSES.values())} (processor_class in {PREPROCESSOR_CONFIG})')
  image = getattr(processor, 'image_processor', None)
  if not all(hasattr(image, key) for key in ('patch_size', 'merge_size', 'temporal_patch_size')):
    raise ValueError(f'{path}/{PREPROCESSOR_CONFIG}: {type(image).__name__} is not a Qwen2-VL image processor '
                     '(patch_size, merge_size, temporal_patch_size)')
  return processor


def _chat_template(processor) -> str | None:
  """The template processor.apply_chat_template renders with (its own, else its tokenizer's)."""
  template = getattr(processor, 'chat_template', None)
  if isinstance(template, dict):  # several named templates: transformers uses 'default'
    template = template.get('default')
  tokenizer = getattr(processor, 'tokenizer', processor)
  return template or tokenizer.chat_template


def load_prompt_tokenizer(path: str) -> transformers.PreTrainedTokenizerBase:
  """The tokenizer a checkpoint's prompts are encoded with (`encode_prompt`), with its own chat template.

  With processor files (preprocessor_config.json) the processor is loaded and its chat template
  (chat_template.jinja / chat_template.json, else the tokenizer's) is the one used, as
  `processor.apply_chat_template` would; otherwise the tokenizer and its template. The tokenizer
  must hold the Qwen chat and vision tokens.
  """
  if os.path.exists(os.path.join(path, PREPROCESSOR_CONFIG)):
    processor = load_processor(path)
    tokenizer = processor.tokenizer
    tokenizer.chat_template = _chat_template(processor)
  else:
    tokenizer = tokenizer_lib.load_tokenizer(path)
  tokenizer = tokenizer_lib.check_prompt_tokens(tokenizer, path)
  if not tokenizer.chat_template:
    raise ValueError(f'{path}: no chat template in any of {list(CHAT_TEMPLATE_FILES)}; prompts need the '
                     "checkpoint's own (an instruct checkpoint ships one)")
  return tokenizer


def hf_preprocess_images(processor, images: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
  """The checkpoint's Hugging Face image processor on the host.

  Args:
    processor: a processor from `load_processor`, or its image processor.
    images: uint8 [H, W, 3] RGB arrays, sizes may differ.

  Returns:
    pixel_values float32 [N, C] and image_grid_thw int64 [I, 3], as image_processor.preprocess
    returns them (and equal to them for the PIL image processor and the same settings).
  """
  if not images:
    raise ValueError('hf_preprocess_images needs at least one image')
  processor = getattr(processor, 'image_processor', processor)
  out = processor(images=list(images), return_tensors='np')
  return {'pixel_values': np.asarray(out['pixel_values'], np.float32),
          'image_grid_thw': np.asarray(out['image_grid_thw'], np.int64)}
