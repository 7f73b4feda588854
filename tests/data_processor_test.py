"""Prompt encoding (image-token expansion as in the HF Qwen2.5-VL processor), padding and buckets."""

import numpy as np
import pytest

from rl_reason.data import processor
from rl_reason.data import tokenizer as tokenizer_lib

TOKENIZER = tokenizer_lib.build_tiny_tokenizer()
IDS = tokenizer_lib.special_ids(TOKENIZER)


def test_encode_prompt_expands_each_image_to_its_token_count():
  grids = [(1, 4, 6), (1, 2, 2)]
  ids = processor.encode_prompt(TOKENIZER, 'Which piece?', grids, merge_size=2)
  # Expected: the HF processor's text-level expansion, tokenized.
  vision = lambda n: '<|vision_start|>' + '<|image_pad|>' * n + '<|vision_end|>'
  text = f'<|im_start|>user\n{vision(6)}{vision(1)}Which piece?<|im_end|>\n<|im_start|>assistant\n'
  assert ids == TOKENIZER.encode(text, add_special_tokens=False)
  assert ids.count(IDS['image_pad_id']) == 7
  starts = [i for i, t in enumerate(ids) if t == IDS['vision_start_id']]
  assert [ids[s + 1:s + 8].count(IDS['image_pad_id']) for s in starts] == [6, 1]


def test_encode_prompt_with_the_images_after_the_text():
  ids = processor.encode_prompt(TOKENIZER, 'Rate this', [(1, 2, 2)], merge_size=2, images_first=False)
  vision = '<|vision_start|>' + '<|image_pad|>' + '<|vision_end|>'
  assert ids == TOKENIZER.encode(f'<|im_start|>user\nRate this{vision}<|im_end|>\n<|im_start|>assistant\n',
                                 add_special_tokens=False)


def test_encode_prompt_without_images_and_with_system():
  ids = processor.encode_prompt(TOKENIZER, 'Hi', [], merge_size=2, system='Be brief.')
  text = TOKENIZER.decode(ids)
  assert text == '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n'
  assert IDS['image_pad_id'] not in ids


def test_encode_prompt_rejects_placeholder_mismatch():
  with pytest.raises(ValueError, match='2 <\\|image_pad\\|> placeholders but 1 images'):
    processor.encode_prompt(TOKENIZER, 'sneaky <|image_pad|>', [(1, 2, 2)], merge_size=2)


def test_pad_batch_left_and_right():
  ids, mask = processor.pad_batch([[5, 6, 7], [8]], length=4, pad_id=0, side='left')
  np.testing.assert_array_equal(ids, [[0, 5, 6, 7], [0, 0, 0, 8]])
  np.testing.assert_array_equal(mask, [[0, 1, 1, 1], [0, 0, 0, 1]])
  assert ids.dtype == np.int32 and mask.dtype == np.int32
  ids, mask = processor.pad_batch([[5, 6, 7], []], length=4, pad_id=9, side='right')
  np.testing.assert_array_equal(ids, [[5, 6, 7, 9], [9, 9, 9, 9]])
  np.testing.assert_array_equal(mask, [[1, 1, 1, 0], [0, 0, 0, 0]])


def test_pad_batch_errors():
  with pytest.raises(ValueError, match='sequence 1 has 5 tokens, more than the padded length 4'):
    processor.pad_batch([[1], [1, 2, 3, 4, 5]], length=4, pad_id=0)
  with pytest.raises(ValueError, match='side'):
    processor.pad_batch([[1]], length=4, pad_id=0, side='middle')


def test_bucket_length():
  buckets = (32, 64, 128)
  assert processor.bucket_length(1, buckets) == 32
  assert processor.bucket_length(32, buckets) == 32
  assert processor.bucket_length(33, buckets) == 64
  assert processor.bucket_length(100, (128, 64)) == 128
  with pytest.raises(ValueError, match=r'129 tokens fits none of the buckets \(32, 64, 128\)'):
    processor.bucket_length(129, buckets)
