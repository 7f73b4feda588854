"""Jigsaw task: ground truth reassembles the crop, uniform shuffles, determinism, prompts, position cues."""

import collections
import dataclasses

import numpy as np
import pytest

from rl_reason import rewards
from rl_reason.data import tokenizer as tokenizer_lib
from rl_reason.tasks import images, jigsaw

GRIDS = [(1, 2), (2, 1), (3, 1), (2, 2), (2, 3), (3, 3), (4, 4)]
IMAGE_SIZES = [(32, 32), (33, 47), (17, 50), (31, 9)]


def _pieces(image, rows, cols):
  h, w = image.shape[0] // rows, image.shape[1] // cols
  return [image[r * h:(r + 1) * h, c * w:(c + 1) * w] for r in range(rows) for c in range(cols)]


@pytest.mark.parametrize('rows, cols', GRIDS)
def test_ground_truth_maps_pieces_and_reassembles_crop(rows, cols):
  for seed in range(12):
    height, width = IMAGE_SIZES[seed % len(IMAGE_SIZES)]
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    shuffled, gt = jigsaw.make_puzzle(image, rows, cols, rng)
    crop = image[:height // rows * rows, :width // cols * cols]
    assert shuffled.shape == crop.shape
    assert sorted(gt) == list(range(1, rows * cols + 1))
    original, now = _pieces(crop, rows, cols), _pieces(shuffled, rows, cols)
    for x, y in enumerate(gt):  # the piece now at X + 1 came from Y
      np.testing.assert_array_equal(now[x], original[y - 1])
    np.testing.assert_array_equal(jigsaw.reassemble(shuffled, gt, rows, cols), crop)


def test_task_examples_reassemble_the_procedural_image():
  task = jigsaw.JigsawTask(jigsaw.JigsawConfig(rows=2, cols=3, image_size=(31, 45)))
  for seed in range(20):
    example = task.example(seed)
    meta = example['meta']
    image = images.procedural_image(np.random.default_rng(seed), 31, 45)  # the task's first draw
    restored = jigsaw.reassemble(example['images'][0], meta['gt'], meta['rows'], meta['cols'])
    np.testing.assert_array_equal(restored, jigsaw.crop_to_grid(image, meta['rows'], meta['cols']))
    assert meta['answer'] == jigsaw.render_answer(meta['gt'], meta['rows'], meta['cols'])


def test_examples_are_deterministic_per_seed():
  task = jigsaw.JigsawTask(jigsaw.JigsawConfig(rows=3, cols=3))
  first, again, other = task.example(7), task.example(7), task.example(8)
  assert first['prompt'] == again['prompt'] and first['meta'] == again['meta']
  np.testing.assert_array_equal(first['images'][0], again['images'][0])
  assert first['images'][0].dtype == np.uint8 and first['images'][0].shape == (30, 30, 3)  # 32 cropped to 3 x 10
  assert not np.array_equal(first['images'][0], other['images'][0])


def test_identity_permutation_occurs_about_half_the_time_for_two_pieces():
  rng = np.random.default_rng(0)
  image = np.zeros((4, 4, 3), np.uint8)
  identity = sum(jigsaw.make_puzzle(image, 2, 1, rng)[1] == [1, 2] for _ in range(400))
  assert 150 <= identity <= 250  # Binomial(400, 1/2): mean 200, std 10


def test_three_piece_shuffles_are_uniform():
  rng = np.random.default_rng(1)
  image = np.zeros((3, 3, 3), np.uint8)
  counts = collections.Counter(tuple(jigsaw.make_puzzle(image, 1, 3, rng)[1]) for _ in range(1200))
  assert len(counts) == 6
  assert all(140 <= c <= 260 for c in counts.values()), counts  # mean 200, std ~13


def test_shuffle_mn_swaps_rows_and_columns_half_the_time():
  cfg = jigsaw.JigsawConfig(rows=1, cols=3, image_size=(30, 30))
  shapes = collections.Counter((e['meta']['rows'], e['meta']['cols'])
                               for e in map(jigsaw.JigsawTask(cfg).example, range(200)))
  assert set(shapes) == {(1, 3), (3, 1)}
  assert 70 <= shapes[(3, 1)] <= 130
  fixed = jigsaw.JigsawTask(dataclasses.replace(cfg, shuffle_mn=False))
  assert all(fixed.example(s)['meta']['rows'] == 1 for s in range(50))


def test_images_carry_absolute_position_cues():
  for seed in range(100):
    image = images.procedural_image(np.random.default_rng(seed), 32, 32).astype(np.float64)
    top, bottom = image[:16].mean(axis=(0, 1)), image[16:].mean(axis=(0, 1))
    left, right = image[:, :16].mean(axis=(0, 1)), image[:, 16:].mean(axis=(0, 1))
    assert bottom[1] - top[1] > 40, seed  # green grows downwards
    assert right[0] - left[0] > 40, seed  # red grows to the right


def test_images_vary_between_seeds():
  a, b = (images.procedural_image(np.random.default_rng(s), 16, 16) for s in (0, 1))
  assert np.abs(a.astype(int) - b.astype(int)).mean() > 10


def test_render_answer():
  assert jigsaw.render_answer([2, 1, 4, 3], 2, 2) == '2 1\n4 3'
  assert jigsaw.render_answer([3, 1, 2, 6, 5, 4], 2, 3) == '3 1 2\n6 5 4'
  assert jigsaw.render_answer([10, 1], 2, 1) == '10\n1'
  with pytest.raises(ValueError, match='needs 4 numbers, got 3'):
    jigsaw.render_answer([1, 2, 3], 2, 2)


def test_compact_prompts_are_short():
  tokenizer = tokenizer_lib.build_tiny_tokenizer()
  for rows in range(1, 5):
    for cols in range(1, 5):
      prompt = jigsaw.render_prompt(rows, cols, think=True, style='compact')
      assert f'{rows}x{cols}' in prompt
      assert len(tokenizer.encode(prompt, add_special_tokens=False)) <= 15


def test_full_prompt_explains_layout_convention_and_mode():
  think = jigsaw.render_prompt(2, 3, think=True, style='full')
  direct = jigsaw.render_prompt(2, 3, think=False, style='full')
  for prompt in (think, direct):
    assert '1 2 3\n4 5 6' in prompt and 'position X' in prompt and 'position Y' in prompt
  assert '<think>' in think and '<answer>' in think
  assert '<think>' not in direct and 'only the final answer' in direct


def test_random_answer_completion_has_the_rewarded_format():
  task = jigsaw.JigsawTask(jigsaw.JigsawConfig(rows=2, cols=3, image_size=(30, 30)))
  meta = task.example(0)['meta']
  completions = {task.random_answer_completion(meta, seed=s) for s in range(20)}
  assert len(completions) > 5
  assert all(rewards.get('jigsaw_format').fn(c, meta) == 1.0 for c in completions)
  direct = jigsaw.JigsawTask(jigsaw.JigsawConfig(rows=2, cols=3, image_size=(30, 30), think=False))
  completion = direct.random_answer_completion(meta, seed=0)
  assert '<' not in completion and sorted(map(int, completion.split())) == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize('kwargs, message', [
    ({'rows': 1, 'cols': 1}, 'at least 2 pieces'),
    ({'rows': 0, 'cols': 3}, 'at least 2 pieces'),
    ({'rows': 1, 'cols': 8, 'image_size': (4, 16)}, 'too small'),
    ({'image_size': (32,)}, 'height, width'),
    ({'prompt_style': 'verbose'}, 'prompt_style'),
    ({'question_type': 'pair'}, 'question_type'),
])
def test_config_validation(kwargs, message):
  with pytest.raises(ValueError, match=message):
    jigsaw.JigsawConfig(**kwargs)


def test_config_accepts_list_image_size():
  cfg = jigsaw.JigsawConfig(image_size=[24, 40])
  assert cfg.image_size == (24, 40) and hash(cfg) == hash(jigsaw.JigsawConfig(image_size=(24, 40)))
