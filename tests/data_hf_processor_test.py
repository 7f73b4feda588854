"""A checkpoint directory's own Hugging Face processor against our preprocessing and prompt encoding.

The checkpoint is built here: the tiny tokenizer saved with save_pretrained, a Qwen2-VL image
processor saved beside it (preprocessor_config.json naming Qwen2_5_VLProcessor, as released
checkpoints do) and a tiny random Qwen2.5-VL written by rl_reason.models.save_pretrained. The HF
processor's pixel_values / image_grid_thw must equal image_processor.preprocess with the settings
read from preprocessor_config.json, and `processor(text=apply_chat_template(...), images=...)` must
give the input_ids of encode_prompt with the tokenizer the training loop loads from the directory.
"""

import json
import os
import shutil

import numpy as np
import pytest
import transformers

from configs import vlm_grpo
from rl_reason import models, run_config, train
from rl_reason.data import image_processor as ip
from rl_reason.data import processor as processor_lib
from rl_reason.data import tokenizer as tokenizer_lib

TOKENIZER = tokenizer_lib.build_tiny_tokenizer()
SPECIAL = tokenizer_lib.special_ids(TOKENIZER)

# The template Qwen2-VL / Qwen2.5-VL instruct checkpoints ship in chat_template.json: unlike the tiny
# tokenizer's, it opens with a default system message.
QWEN_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in "
    "content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] "
    "== 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content %}"
    "{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "<|im_start|>assistant\n{% endif %}")

# The tiny preset's tower (patch 8, merge 2) with a small pixel budget, and Qwen2.5-VL's own
# settings with another normalisation.
SETTINGS = {
    'tiny': dict(patch_size=8, merge_size=2, min_pixels=16 * 16, max_pixels=64 * 64),
    'qwen': dict(patch_size=14, merge_size=2, min_pixels=56 * 56, max_pixels=28 * 28 * 1280,
                 image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.25, 0.3]),
}
# Square, wide, tall, tiny (scaled up), large (scaled down), off-factor sizes.
SIZES = [(32, 32), (37, 91), (120, 45), (5, 40), (700, 1100), (29, 57)]


def _images(sizes, seed=0):
  rng = np.random.default_rng(seed)
  return [rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for h, w in sizes]


def _write_checkpoint(path, *, settings='tiny', model=True, chat_template_json=None, tokenizer_template=True):
  """A checkpoint directory as released Qwen2.5-VL ones are laid out (tokenizer, processor, model files)."""
  tokenizer = tokenizer_lib.build_tiny_tokenizer()
  if not tokenizer_template:
    tokenizer.chat_template = None
  tokenizer.save_pretrained(path)
  transformers.Qwen2VLImageProcessorPil(**SETTINGS[settings]).save_pretrained(path)
  config_file = os.path.join(path, processor_lib.PREPROCESSOR_CONFIG)
  with open(config_file) as f:
    config = json.load(f)
  with open(config_file, 'w') as f:
    json.dump(dict(config, processor_class='Qwen2_5_VLProcessor'), f)
  if chat_template_json is not None:  # the legacy processor file that released Qwen2-VL checkpoints carry
    with open(os.path.join(path, 'chat_template.json'), 'w') as f:
      json.dump({'chat_template': chat_template_json}, f)
  if model:
    cfg = models.get_preset('tiny_vl', vocab_size=-(-len(tokenizer) // 64) * 64,
                            image_token_id=SPECIAL['image_pad_id'], vision_start_token_id=SPECIAL['vision_start_id'])
    models.save_pretrained(models.create(cfg, seed=0), path)
  return str(path)


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
  return _write_checkpoint(tmp_path_factory.mktemp('tiny_vl'))


def test_load_processor_gives_the_checkpoints_hf_processor(checkpoint):
  processor = processor_lib.load_processor(checkpoint)
  assert isinstance(processor, transformers.Qwen2_5_VLProcessor)
  assert isinstance(processor.image_processor, transformers.Qwen2VLImageProcessorPil)
  image = processor.image_processor
  assert (image.patch_size, image.merge_size, image.temporal_patch_size) == (8, 2, 2)
  assert processor.tokenizer.get_vocab() == TOKENIZER.get_vocab()
  assert processor.chat_template == tokenizer_lib.CHAT_TEMPLATE
  assert processor.image_token_id == SPECIAL['image_pad_id']


@pytest.mark.parametrize('settings', list(SETTINGS))
def test_hf_image_preprocessing_equals_ours(settings, tmp_path):
  path = _write_checkpoint(tmp_path, settings=settings, model=False)  # a processor directory, no config.json
  processor = processor_lib.load_processor(path)
  # Our preprocessing reproduces transformers' PIL backend; with torchvision installed transformers
  # would pick its torchvision backend, whose resize differs slightly.
  assert isinstance(processor.image_processor, transformers.Qwen2VLImageProcessorPil)
  images = _images(SIZES, seed=1)
  theirs = processor_lib.hf_preprocess_images(processor, images)
  ours = ip.preprocess(images, ip.config_from_pretrained(path))
  assert theirs['pixel_values'].dtype == np.float32 and theirs['image_grid_thw'].dtype == np.int64
  np.testing.assert_array_equal(theirs['image_grid_thw'], ours['image_grid_thw'])
  assert len(np.unique(ours['image_grid_thw'], axis=0)) == len(SIZES)  # every size its own grid
  assert theirs['pixel_values'].shape == ours['pixel_values'].shape
  np.testing.assert_allclose(theirs['pixel_values'], ours['pixel_values'], atol=1e-6, rtol=0)


PROMPTS = [  # (image sizes, system message)
    ([], None),
    ([(32, 32)], None),
    ([(37, 91), (120, 45)], None),
    ([(64, 48)], 'Solve the puzzle.'),
]


@pytest.mark.parametrize('template', ['tiny', 'qwen_vl'])
def test_prompts_through_the_hf_processor_equal_encode_prompt(template, tmp_path):
  """processor(text=apply_chat_template(...), images=...) vs encode_prompt with the loop's tokenizer."""
  if template == 'tiny':
    path = _write_checkpoint(tmp_path, model=False)
  else:  # the template lives only in the processor's chat_template.json
    path = _write_checkpoint(tmp_path, model=False, chat_template_json=QWEN_VL_CHAT_TEMPLATE, tokenizer_template=False)
  processor = processor_lib.load_processor(path)
  tokenizer = processor_lib.load_prompt_tokenizer(path)
  image_cfg = ip.config_from_pretrained(path)
  question = 'Which piece goes where? Answer as a 2 x 2 grid.'
  for sizes, system in PROMPTS:
    images = _images(sizes, seed=len(sizes))
    messages = [{'role': 'user', 'content': [{'type': 'image'} for _ in images] + [{'type': 'text', 'text': question}]}]
    if system is not None:
      messages.insert(0, {'role': 'system', 'content': system})
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    theirs = processor(text=[text], images=images or None, return_tensors='np')
    grids = []
    if images:
      ours = ip.preprocess(images, image_cfg)
      np.testing.assert_array_equal(theirs['image_grid_thw'], ours['image_grid_thw'])
      np.testing.assert_allclose(theirs['pixel_values'], ours['pixel_values'], atol=1e-6, rtol=0)
      grids = [tuple(g) for g in ours['image_grid_thw']]
    ids = processor_lib.encode_prompt(tokenizer, question, grids, image_cfg.merge_size, system=system)
    assert theirs['input_ids'][0].tolist() == ids, (template, sizes, system)
    assert ids.count(SPECIAL['image_pad_id']) == sum(ip.num_image_tokens(g, image_cfg.merge_size) for g in grids)
    rendered = tokenizer.decode(ids)
    default_system = '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n'
    assert rendered.startswith(default_system) == (template == 'qwen_vl' and system is None), rendered


def test_missing_files_are_named(checkpoint, tmp_path):
  def without(name):
    path = tmp_path / f'without_{name}'
    if not path.exists():
      shutil.copytree(checkpoint, path)
      os.remove(path / name)
    return str(path)

  for name in ('preprocessor_config.json', 'tokenizer_config.json', 'tokenizer.json'):
    with pytest.raises(FileNotFoundError, match=f'missing {name}'):
      processor_lib.load_processor(without(name))
  with pytest.raises(FileNotFoundError, match='not a directory'):
    processor_lib.load_processor(str(tmp_path / 'absent'))
  # A vision checkpoint without processor files still trains with its tokenizer (and default image settings).
  assert processor_lib.load_prompt_tokenizer(without('preprocessor_config.json')).get_vocab() == TOKENIZER.get_vocab()

  # No chat template anywhere: refused, naming where it was looked for.
  bare = _write_checkpoint(tmp_path / 'bare', model=False, tokenizer_template=False)
  with pytest.raises(ValueError, match=r'no chat template in any of \[.chat_template.jinja., .chat_template.json.'):
    processor_lib.load_prompt_tokenizer(bare)
  # An unsupported processor class is named.
  other = _write_checkpoint(tmp_path / 'other', model=False)
  config_file = os.path.join(other, processor_lib.PREPROCESSOR_CONFIG)
  with open(config_file) as f:
    config = json.load(f)
  with open(config_file, 'w') as f:
    json.dump(dict(config, processor_class='LlavaProcessor'), f)
  with pytest.raises(ValueError, match='processor class LlavaProcessor is not supported'):
    processor_lib.load_processor(other)


def test_text_checkpoints_give_their_tokenizer(tmp_path):
  path = tmp_path / 'text'
  TOKENIZER.save_pretrained(path)
  cfg = models.get_preset('tiny_lm', vocab_size=-(-len(TOKENIZER) // 64) * 64)
  models.save_pretrained(models.create(cfg, seed=0), str(path))
  loaded = processor_lib.load_processor(str(path))
  assert isinstance(loaded, transformers.PreTrainedTokenizerBase)
  assert loaded.get_vocab() == TOKENIZER.get_vocab() and loaded.chat_template == tokenizer_lib.CHAT_TEMPLATE
  os.remove(path / 'tokenizer_config.json')
  with pytest.raises(FileNotFoundError, match='missing tokenizer_config.json'):
    processor_lib.load_processor(str(path))


def test_trainer_encodes_prompts_with_the_checkpoints_chat_template(tmp_path):
  """model.path: prompts use the checkpoint's processor chat template (here only in chat_template.json)."""
  path = _write_checkpoint(tmp_path / 'checkpoint', chat_template_json=QWEN_VL_CHAT_TEMPLATE, tokenizer_template=False)
  config = vlm_grpo.get_config('tiny_2x1')
  config.model.preset, config.model.path = '', path
  config.warmup.batch_size = config.rollout.batch_size = config.train.eval_size = 8
  config.rollout.num_generations = 4
  trainer = train.Trainer(run_config.from_config_dict(config), run_config.plain(config), str(tmp_path / 'run'))
  assert trainer.tokenizer.chat_template == QWEN_VL_CHAT_TEMPLATE
  inputs = trainer.eval_batch.inputs
  first = inputs['input_ids'][0][inputs['attention_mask'][0] > 0].tolist()
  assert trainer.tokenizer.decode(first).startswith('<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n'
                                                    '<|im_start|>user\n<|vision_start|><|image_pad|>')
