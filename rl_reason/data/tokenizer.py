"""A tiny, deterministic Qwen2-style byte-level BPE tokenizer for the CPU models.

The tokenizer is trained at build time on the jigsaw prompts (both styles, think and non-think,
grids 1..4 x 1..4) plus a short English text, to about `VOCAB_SIZE` tokens. Like Qwen2 it is
byte-level (any unicode string encodes, any id sequence decodes), it splits text with the Qwen2
regex, whose `\\p{N}` branch makes every digit its own token, and it uses the Qwen2-VL chat
template (without the default system message, to keep prompts short). The chat and vision
markers are special tokens; the reasoning tags are ordinary added tokens, so they survive
`decode(..., skip_special_tokens=True)`.
"""

from __future__ import annotations

import functools

import tokenizers
import transformers
from tokenizers import decoders, models, pre_tokenizers, trainers

from rl_reason.tasks import jigsaw

ENDOFTEXT = '<|endoftext|>'
IM_START = '<|im_start|>'
IM_END = '<|im_end|>'
VISION_START = '<|vision_start|>'
VISION_END = '<|vision_end|>'
IMAGE_PAD = '<|image_pad|>'
SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END, VISION_START, VISION_END, IMAGE_PAD)
TAG_TOKENS = ('<think>', '</think>', '<answer>', '</answer>')

VOCAB_SIZE = 480  # 256 byte symbols + 10 added tokens + ~210 merges
MAX_GRID = 4  # prompts for grids 1..MAX_GRID x 1..MAX_GRID are in the training corpus

# The Qwen2 pre-tokenizer regex; `\p{N}` (one character) keeps digits individual.
QWEN2_SPLIT_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                       r"|\s*[\r\n]+|\s+(?!\S)|\s+")

# Qwen2-VL's template minus the default system message; image parts become vision markers.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}"
    "{{- message['content'] -}}"
    "{%- else -%}"
    "{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' or 'image' in part -%}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif part['type'] == 'text' -%}"
    "{{- part['text'] -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- endif -%}")

ENGLISH_TEXT = """\
A picture is worth a thousand words, but only when every part of it is in the right place. When a
photograph is cut into pieces and the pieces are mixed, the eye still finds many clues. The sky is
usually at the top of the image and the ground is at the bottom. Light often comes from above, so
the upper part of a scene is brighter than the lower part. Lines continue from one piece to the
next, colours change slowly, and the edges of objects run across the borders between pieces.

To solve the puzzle, look at each piece in turn. Ask where it could have been in the original
picture. Compare its left edge with the right edge of every other piece, and its top edge with the
bottom edge of the others. If two edges match, the two pieces were probably neighbours. Start with
the corners, because they have the fewest neighbours, then fill in the rest of the first row, and
continue row by row until the whole grid is complete. Check the result: every number should appear
exactly once, and the picture should look natural again.

Good reasoning is short and clear. First think about the question, then write the final answer in
the requested format. Do not add extra words after the answer. If you are not sure, give your best
guess anyway, because an empty answer is always wrong. The user asks a question, the assistant
thinks step by step and then answers. The answer should be simple, correct and easy to read.

Images are made of small square patches. A vision model looks at these patches, merges nearby
ones, and passes them to the language model together with the text of the question. The model then
writes one token at a time until it reaches the end of its reply. It learns from a reward that
tells it how good each answer was, and it slowly becomes better at the task. This is the idea of
reinforcement learning: try many times, keep what works, and forget what does not.
"""


def _corpus() -> list[str]:
  """Training text: every jigsaw prompt the tiny models can see (as chat turns), plus generic English."""
  texts = [ENGLISH_TEXT]
  for rows in range(1, MAX_GRID + 1):
    for cols in range(1, MAX_GRID + 1):
      for style in jigsaw.PROMPT_STYLES:
        for think in (True, False):
          # Wrapped in the template's role names so that "user" and "assistant" become single tokens.
          texts.append(f'user\n{jigsaw.render_prompt(rows, cols, think=think, style=style)}\nassistant\n')
  # Tags are added tokens and are never split, so BPE merges spent on them would be wasted.
  for tag in TAG_TOKENS:
    texts = [text.replace(tag, ' ') for text in texts]
  return texts


@functools.lru_cache(maxsize=1)
def _tokenizer_json() -> str:
  """The trained tokenizer, serialized (cached: each caller gets a fresh object built from it)."""
  tok = tokenizers.Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.Sequence([
      pre_tokenizers.Split(tokenizers.Regex(QWEN2_SPLIT_PATTERN), behavior='isolated'),
      pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
  ])
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, min_frequency=2, show_progress=False,
                                special_tokens=list(SPECIAL_TOKENS + TAG_TOKENS),
                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
  tok.train_from_iterator(_corpus(), trainer=trainer)
  tok.add_special_tokens([tokenizers.AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
  tok.add_tokens([tokenizers.AddedToken(t, special=False, normalized=False) for t in TAG_TOKENS])
  return tok.to_str()


def build_tiny_tokenizer() -> transformers.PreTrainedTokenizerFast:
  """A new tokenizer object (callers may mutate it); the same ids on every call and in every process."""
  tokenizer = transformers.PreTrainedTokenizerFast(
      tokenizer_object=tokenizers.Tokenizer.from_str(_tokenizer_json()),
      pad_token=ENDOFTEXT, eos_token=IM_END, clean_up_tokenization_spaces=False)
  tokenizer.chat_template = CHAT_TEMPLATE
  return tokenizer


def special_ids(tokenizer: transformers.PreTrainedTokenizerBase) -> dict[str, int]:
  """Ids of the tokens the model and sampler need: pad, eos and the vision markers."""
  ids = {
      'pad_id': tokenizer.convert_tokens_to_ids(ENDOFTEXT),
      'eos_id': tokenizer.convert_tokens_to_ids(IM_END),
      'image_pad_id': tokenizer.convert_tokens_to_ids(IMAGE_PAD),
      'vision_start_id': tokenizer.convert_tokens_to_ids(VISION_START),
      'vision_end_id': tokenizer.convert_tokens_to_ids(VISION_END),
  }
  missing = [name for name, value in ids.items() if value is None or value == tokenizer.unk_token_id]
  if missing:
    raise ValueError(f'tokenizer lacks the tokens for {missing}')
  return ids


def load_tokenizer(path: str) -> transformers.PreTrainedTokenizerBase:
  """The tokenizer of a local checkpoint directory (never the network); needs the Qwen chat tokens."""
  try:
    tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
  except (OSError, ValueError) as e:
    raise ValueError(f'{path}: no usable tokenizer files ({e})') from e
  return check_prompt_tokens(tokenizer, path)


def check_prompt_tokens(tokenizer: transformers.PreTrainedTokenizerBase,
                        path: str) -> transformers.PreTrainedTokenizerBase:
  """The checkpoint tokenizer, checked for the Qwen chat/vision tokens, with a pad token set."""
  missing = [t for t in (IM_END, IMAGE_PAD, VISION_START) if t not in tokenizer.get_vocab()]
  if missing:
    raise ValueError(f'{path}: the tokenizer lacks the tokens {missing} the chat/vision prompts need')
  if tokenizer.pad_token_id is None:
    tokenizer.pad_token = ENDOFTEXT
  return tokenizer
