"""Tiny tokenizer: byte-level round trip, digit splitting, single-token tags, determinism, chat template."""

import json
import subprocess
import sys

from hypothesis import example, given, settings, strategies as st
from tokenizers import pre_tokenizers

from rl_reason.data import tokenizer as tokenizer_lib

TOKENIZER = tokenizer_lib.build_tiny_tokenizer()


def _encode(text):
  return TOKENIZER.encode(text, add_special_tokens=False)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
@example('<|im_start|>user\n<|image_pad|> 12\r\n\t<think>é</think><answer>1 2</answer><|im_end|>  ')
@example('\x00\U0001F600 \u200b\ufeff  x')
def test_any_unicode_text_round_trips(text):
  assert TOKENIZER.decode(_encode(text)) == text


@given(st.lists(st.integers(0, len(TOKENIZER) - 1), max_size=50))
@settings(max_examples=100, deadline=None)
def test_any_id_sequence_decodes(ids):
  assert isinstance(TOKENIZER.decode(ids), str)


def test_vocabulary_size_and_byte_coverage():
  assert 384 <= len(TOKENIZER) <= 512
  assert set(pre_tokenizers.ByteLevel.alphabet()) <= set(TOKENIZER.get_vocab())


def test_digits_are_individual_tokens():
  for text in ('0123456789', 'grid 12 34\n56', 'abc2024def', '  907 '):
    tokens = TOKENIZER.convert_ids_to_tokens(_encode(text))
    digit_tokens = [t for t in tokens if any(ch.isdigit() for ch in t)]
    assert all(len(t) == 1 for t in digit_tokens), tokens
    assert len(digit_tokens) == sum(ch.isdigit() for ch in text)


def test_special_and_tag_tokens_are_single_tokens():
  for token in tokenizer_lib.SPECIAL_TOKENS + tokenizer_lib.TAG_TOKENS:
    ids = _encode(f'a{token}b')
    assert TOKENIZER.convert_ids_to_tokens(ids[1:-1]) == [token], token
  text = '<|im_start|>x<think>y</think><answer>1</answer><|im_end|>'
  assert TOKENIZER.decode(_encode(text), skip_special_tokens=True) == 'x<think>y</think><answer>1</answer>'


def test_special_ids_match_tokens():
  ids = tokenizer_lib.special_ids(TOKENIZER)
  assert len(set(ids.values())) == len(ids)
  assert TOKENIZER.convert_ids_to_tokens(ids['image_pad_id']) == tokenizer_lib.IMAGE_PAD
  assert TOKENIZER.convert_ids_to_tokens(ids['vision_start_id']) == tokenizer_lib.VISION_START
  assert TOKENIZER.convert_ids_to_tokens(ids['vision_end_id']) == tokenizer_lib.VISION_END
  assert ids['pad_id'] == TOKENIZER.pad_token_id and ids['eos_id'] == TOKENIZER.eos_token_id
  assert TOKENIZER.convert_ids_to_tokens(ids['eos_id']) == tokenizer_lib.IM_END


def test_answer_string_is_short_and_exact():
  answer = '<think></think><answer>2 1\n4 3</answer>'
  ids = _encode(answer)
  assert len(ids) <= 12
  assert TOKENIZER.decode(ids, skip_special_tokens=True) == answer


def test_training_is_deterministic_within_and_across_processes():
  first = json.loads(tokenizer_lib._tokenizer_json.__wrapped__())  # pylint: disable=protected-access
  second = json.loads(tokenizer_lib._tokenizer_json.__wrapped__())  # pylint: disable=protected-access
  assert first['model'] == second['model']
  code = ('import json; from rl_reason.data import tokenizer as t; '
          'print(json.dumps(t.build_tiny_tokenizer().get_vocab()))')
  other = json.loads(subprocess.run([sys.executable, '-c', code], check=True, capture_output=True, text=True).stdout)
  assert other == TOKENIZER.get_vocab()


def test_builds_are_independent_objects():
  mutated = tokenizer_lib.build_tiny_tokenizer()
  mutated.add_tokens(['<extra>'])
  assert len(tokenizer_lib.build_tiny_tokenizer()) == len(TOKENIZER) == len(mutated) - 1


def test_chat_template_with_images_and_generation_prompt():
  messages = [{'role': 'user', 'content': [{'type': 'image'}, {'type': 'image'}, {'type': 'text', 'text': 'Q?'}]}]
  rendered = TOKENIZER.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
  vision = '<|vision_start|><|image_pad|><|vision_end|>'
  assert rendered == f'<|im_start|>user\n{vision}{vision}Q?<|im_end|>\n<|im_start|>assistant\n'


def test_chat_template_string_content_system_and_no_generation_prompt():
  messages = [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Hi'},
              {'role': 'assistant', 'content': '<answer>1</answer>'}]
  rendered = TOKENIZER.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
  assert rendered == ('<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n'
                      '<|im_start|>assistant\n<answer>1</answer><|im_end|>\n')
