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
    ({'question_type': 'triple'}, 'question_type'),
    ({'question_type': 'multiple', 'rows': 2, 'cols': 1, 'num_choices': 4}, 'only 2 layouts'),
    ({'num_choices': 1}, 'num_choices'),
    ({'mask_ratio': 0.5}, 'mask_ratio'),
    ({'box_size': (0.5, 0.2)}, 'box_size'),
    ({'question_type': 'box', 'rows': 2, 'cols': 2, 'image_size': (32, 32), 'mask_ratio': 0.3,
      'box_size': (0.5, 0.9)}, 'does not fit'),
])
def test_config_validation(kwargs, message):
  with pytest.raises(ValueError, match=message):
    jigsaw.JigsawConfig(**kwargs)


def test_config_accepts_list_image_size():
  cfg = jigsaw.JigsawConfig(image_size=[24, 40])
  assert cfg.image_size == (24, 40) and hash(cfg) == hash(jigsaw.JigsawConfig(image_size=(24, 40)))


# Question types beyond 'full'.


def _original(seed, image_size):
  return images.procedural_image(np.random.default_rng(seed), *image_size)  # the task's first draw


def _find_original_position(piece, crop, rows, cols):
  """1-based original position of a piece, found by pixel comparison (independent of the task code)."""
  matches = [i + 1 for i, p in enumerate(_pieces(crop, rows, cols)) if np.array_equal(p, piece)]
  assert len(matches) == 1
  return matches[0]


@pytest.mark.parametrize('question_type', ['full', 'multiple', 'pair', 'single'])
def test_grid_question_types_reassemble_the_image(question_type):
  cfg = jigsaw.JigsawConfig(rows=2, cols=3, image_size=(36, 42), question_type=question_type)
  task = jigsaw.JigsawTask(cfg)
  for seed in range(10):
    example = task.example(seed)
    meta = example['meta']
    rows, cols = meta['rows'], meta['cols']
    crop = jigsaw.crop_to_grid(_original(seed, cfg.image_size), rows, cols)
    np.testing.assert_array_equal(jigsaw.reassemble(example['images'][0], meta['gt'], rows, cols), crop)
    assert meta['question_type'] == question_type
    assert meta['answer_type'] == jigsaw.ANSWER_TYPES[question_type]


def test_multiple_choice_candidates_are_distinct_with_the_truth_at_the_answer_letter():
  task = jigsaw.JigsawTask(jigsaw.JigsawConfig(rows=2, cols=2, question_type='multiple', num_choices=5))
  letters = set()
  for seed in range(30):
    example = task.example(seed)
    meta = example['meta']
    choices = meta['choices']
    assert len(choices) == 5 and len({tuple(c) for c in choices}) == 5
    assert all(sorted(c) == [1, 2, 3, 4] for c in choices)
    index = ord(meta['answer']) - ord('A')
    assert choices[index] == meta['gt']
    assert [i for i, c in enumerate(choices) if c == meta['gt']] == [index]
    for i, c in enumerate(choices):
      assert f'({chr(65 + i)})\n' + jigsaw.render_answer(c, meta['rows'], meta['cols']) in example['prompt']
    letters.add(meta['answer'])
  assert letters == set('ABCDE')  # the right letter moves around


def _relation(k_original, l_original, cols):
  (kr, kc), (lr, lc) = divmod(k_original - 1, cols), divmod(l_original - 1, cols)
  vertical = 'above' if kr < lr else 'below' if kr > lr else ''
  horizontal = 'left' if kc < lc else 'right' if kc > lc else ''
  if not vertical:
    return f'directly to the {horizontal} of'
  if not horizontal:
    return f'directly {vertical}'
  return f'on the {"upper" if vertical == "above" else "lower"} {horizontal} of'


@pytest.mark.parametrize('rows, cols, options', [(2, 3, 8), (1, 3, 2), (3, 1, 2)])
def test_pair_answer_is_the_true_relation_of_the_original_positions(rows, cols, options):
  cfg = jigsaw.JigsawConfig(rows=rows, cols=cols, image_size=(30, 30), question_type='pair', shuffle_mn=False)
  task = jigsaw.JigsawTask(cfg)
  for seed in range(20):
    example = task.example(seed)
    meta = example['meta']
    k, l = meta['pair']
    assert k != l and len(meta['options']) == options
    crop = jigsaw.crop_to_grid(_original(seed, cfg.image_size), rows, cols)
    now = _pieces(example['images'][0], rows, cols)
    k_orig = _find_original_position(now[k - 1], crop, rows, cols)
    l_orig = _find_original_position(now[l - 1], crop, rows, cols)
    assert meta['options'][ord(meta['answer']) - ord('A')] == _relation(k_orig, l_orig, cols)
    assert f'({meta["answer"]}) {k} is {_relation(k_orig, l_orig, cols)} {l}' in example['prompt']
    if rows == 1:
      assert set(meta['options']) == {'directly to the left of', 'directly to the right of'}
    if cols == 1:
      assert set(meta['options']) == {'directly above', 'directly below'}


def test_single_answer_is_the_original_position_of_the_asked_piece():
  cfg = jigsaw.JigsawConfig(rows=3, cols=3, image_size=(33, 33), question_type='single')
  task = jigsaw.JigsawTask(cfg)
  for seed in range(20):
    example = task.example(seed)
    meta = example['meta']
    k = meta['position']
    crop = jigsaw.crop_to_grid(_original(seed, cfg.image_size), 3, 3)
    piece = _pieces(example['images'][0], 3, 3)[k - 1]
    assert meta['answer'] == str(_find_original_position(piece, crop, 3, 3))
    assert f'position {k}' in jigsaw.render_question('single', 3, 3, think=True, style='full', k=k)


def test_box_puzzle_moves_the_asked_box_and_the_sources_restore_the_image():
  cfg = jigsaw.JigsawConfig(rows=2, cols=2, image_size=(40, 48), question_type='box', mask_ratio=0.1)
  task = jigsaw.JigsawTask(cfg)
  for seed in range(20):
    example = task.example(seed)
    meta, puzzle = example['meta'], example['images'][0]
    rows, cols = meta['rows'], meta['cols']
    original = jigsaw.mask_borders(jigsaw.crop_to_grid(_original(seed, cfg.image_size), rows, cols), rows, cols, 0.1)
    np.testing.assert_array_equal(jigsaw.reassemble_boxes(puzzle, meta['boxes'], meta['box_sources']), original)
    k = meta['region']
    x1, y1, x2, y2 = meta['boxes'][k - 1]
    gx1, gy1, gx2, gy2 = meta['gt_box']
    assert meta['gt_box'] != meta['boxes'][k - 1]  # the asked box always moved
    np.testing.assert_array_equal(puzzle[y1:y2, x1:x2], original[gy1:gy2, gx1:gx2])
    assert meta['answer'] == f'[{gx1}, {gy1}, {gx2}, {gy2}]'
    assert meta['image_size'] == [puzzle.shape[1], puzzle.shape[0]]
    piece_h, piece_w = puzzle.shape[0] // rows, puzzle.shape[1] // cols
    sizes = {(b[2] - b[0], b[3] - b[1]) for b in meta['boxes']}
    assert len(sizes) == 1  # one common box size
    for j, (bx1, by1, bx2, by2) in enumerate(meta['boxes']):
      r, c = divmod(j, cols)
      top, bottom, left, right = jigsaw.cell_borders(piece_h, piece_w, r, c, rows, cols, 0.1)
      assert c * piece_w + left <= bx1 and bx2 <= (c + 1) * piece_w - right  # inside the unmasked cell
      assert r * piece_h + top <= by1 and by2 <= (r + 1) * piece_h - bottom


def test_mask_blackens_only_the_border_bands_of_the_shuffled_image():
  base = dict(rows=2, cols=2, image_size=(40, 40), shuffle_mn=False)
  plain = jigsaw.JigsawTask(jigsaw.JigsawConfig(**base))
  masked = jigsaw.JigsawTask(jigsaw.JigsawConfig(**base, mask_ratio=0.2))
  for seed in range(5):
    a, b = plain.example(seed), masked.example(seed)
    assert a['meta']['gt'] == b['meta']['gt']
    band = np.zeros((40, 40), bool)
    for r in range(2):
      for c in range(2):  # 20x20 cells: 4 pixels on the image border, 2 between cells
        cell = band[r * 20:(r + 1) * 20, c * 20:(c + 1) * 20]
        cell[:4 if r == 0 else 2] = True
        cell[20 - (4 if r == 1 else 2):] = True
        cell[:, :4 if c == 0 else 2] = True
        cell[:, 20 - (4 if c == 1 else 2):] = True
    assert (b['images'][0][band] == 0).all()
    np.testing.assert_array_equal(b['images'][0][~band], a['images'][0][~band])


@pytest.mark.parametrize('question_type', ['multiple', 'pair', 'single', 'box'])
def test_other_question_prompts_name_the_answer_type_and_mode(question_type):
  for think in (True, False):
    cfg = jigsaw.JigsawConfig(question_type=question_type, prompt_style='full', think=think, image_size=(40, 40))
    prompt = jigsaw.JigsawTask(cfg).example(0)['prompt']
    assert jigsaw.ANSWER_HINTS[jigsaw.ANSWER_TYPES[question_type]] in prompt
    assert ('<answer>' in prompt) == think
    compact = jigsaw.JigsawTask(dataclasses.replace(cfg, prompt_style='compact')).example(0)['prompt']
    assert len(compact) < len(prompt)


def test_full_question_type_keeps_its_original_examples():
  # Golden values from before the other question types existed: the 'full' stream must not change.
  task = jigsaw.JigsawTask(jigsaw.JigsawConfig(rows=2, cols=3, image_size=(31, 45)))
  example = task.example(3)
  assert (example['meta']['rows'], example['meta']['cols'], example['meta']['gt']) == (3, 2, [6, 5, 4, 1, 3, 2])
  assert int(example['images'][0].astype(np.int64).sum()) == 471804
  assert task.random_answer_completion(example['meta'], 5) == '<think></think><answer>2 5\n3 4\n6 1</answer>'
