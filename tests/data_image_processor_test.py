"""Image preprocessing: equality with transformers' Qwen2-VL PIL processor, token counts, bad input."""

import numpy as np
import pytest
import transformers

from rl_reason.data import image_processor as ip

DEFAULT = ip.ImageProcessorConfig()
TINY = ip.ImageProcessorConfig(patch_size=8, temporal_patch_size=2, merge_size=2, min_pixels=16 * 16,
                               max_pixels=64 * 64)
# Square, wide, tall, tiny (scaled up), huge (scaled down), off-factor and odd sizes.
SIZES = [(32, 32), (37, 91), (120, 45), (5, 40), (17, 3), (700, 1100), (64, 64), (29, 57)]


def _reference(cfg):
  return transformers.Qwen2VLImageProcessorPil(
      patch_size=cfg.patch_size, temporal_patch_size=cfg.temporal_patch_size, merge_size=cfg.merge_size,
      min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels, image_mean=list(cfg.image_mean),
      image_std=list(cfg.image_std))


def _images(seed):
  rng = np.random.default_rng(seed)
  return [rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for h, w in SIZES]


@pytest.mark.parametrize('cfg', [DEFAULT, TINY], ids=['default', 'tiny'])
def test_matches_transformers(cfg):
  images = _images(0)
  expected = _reference(cfg)(images=images, return_tensors='np')
  ours = ip.preprocess(images, cfg)
  np.testing.assert_array_equal(ours['image_grid_thw'], expected['image_grid_thw'])
  assert ours['pixel_values'].dtype == np.float32 and ours['image_grid_thw'].dtype == np.int64
  assert ours['pixel_values'].shape == expected['pixel_values'].shape
  assert np.abs(ours['pixel_values'] - np.asarray(expected['pixel_values'])).max() <= 1e-5


@pytest.mark.parametrize('cfg', [DEFAULT, TINY], ids=['default', 'tiny'])
def test_grid_and_token_counts_match_transformers(cfg):
  reference = _reference(cfg)
  grids = ip.preprocess(_images(1), cfg)['image_grid_thw']
  for (h, w), grid in zip(SIZES, grids):
    assert grid[1] * grid[2] == reference.get_number_of_image_patches(h, w)
    assert ip.num_image_tokens(grid, cfg.merge_size) == grid[1] * grid[2] // cfg.merge_size**2
    # Resized area respects the pixel budget unless a side had to be raised to one factor.
    area = grid[1] * grid[2] * cfg.patch_size**2
    assert area >= cfg.min_pixels and (area <= cfg.max_pixels or min(grid[1:]) == cfg.merge_size)


def test_patch_layout_puts_one_merge_window_in_consecutive_rows():
  cfg = ip.ImageProcessorConfig(patch_size=2, temporal_patch_size=2, merge_size=2, min_pixels=16, max_pixels=64)
  out = ip.preprocess([np.zeros((8, 8, 3), np.uint8)], cfg)
  assert out['pixel_values'].shape == (16, 3 * 2 * 2 * 2)
  # An image whose only bright pixel is at (y=4, x=2): merge window (1, 0), patch (0, 1) inside it.
  image = np.zeros((8, 8, 3), np.uint8)
  image[4, 2] = 255
  rows = ip.preprocess([image], cfg)['pixel_values']
  base = ip.preprocess([np.zeros((8, 8, 3), np.uint8)], cfg)['pixel_values']
  changed = np.nonzero(np.any(rows != base, axis=1))[0]
  assert changed.tolist() == [2 * 4 + 1]
  # Channel-major, then the repeated frame, then (y, x) inside the patch: pixel (0, 0) of each.
  assert np.nonzero(rows[9] != base[9])[0].tolist() == [0, 4, 8, 12, 16, 20]


def test_num_image_tokens():
  assert ip.num_image_tokens((1, 4, 6), 2) == 6
  assert ip.num_image_tokens(np.array([2, 8, 8]), 4) == 8


@pytest.mark.parametrize('image, message', [
    (np.zeros((8, 8), np.uint8), r'image 1: expected shape \[H, W, 3\].*\(8, 8\)'),
    (np.zeros((8, 8, 4), np.uint8), r'image 1: .*\(8, 8, 4\)'),
    (np.zeros((8, 8, 3), np.float32), r'image 1: expected a uint8 numpy array, got float32'),
    (np.zeros((0, 8, 3), np.uint8), r'image 1: empty image'),
    (np.zeros((1, 300, 3), np.uint8), r'image 1 of shape \(1, 300, 3\): absolute aspect ratio'),
])
def test_bad_images_are_named(image, message):
  with pytest.raises(ValueError, match=message):
    ip.preprocess([np.zeros((28, 28, 3), np.uint8), image], DEFAULT)


def test_no_images_is_an_error():
  with pytest.raises(ValueError, match='at least one image'):
    ip.preprocess([], DEFAULT)


@pytest.mark.parametrize('kwargs, message', [
    ({'patch_size': 0}, 'patch_size'),
    ({'min_pixels': 100, 'max_pixels': 10}, 'min_pixels'),
    ({'min_pixels': 0}, 'min_pixels'),
    ({'image_std': (1.0, 0.0, 1.0)}, 'image_std'),
    ({'image_mean': (0.5, 0.5)}, 'image_mean'),
    ({'resample': 'box'}, 'resample'),
])
def test_config_validation(kwargs, message):
  with pytest.raises(ValueError, match=message):
    ip.ImageProcessorConfig(**kwargs)


def test_config_from_a_saved_processor_matches_its_output(tmp_path):
  """A checkpoint's preprocessor_config.json gives the settings; the pixels equal that processor's."""
  reference = transformers.Qwen2VLImageProcessorPil(patch_size=8, merge_size=2, min_pixels=16 * 16,
                                                    max_pixels=48 * 48, image_mean=[0.5, 0.4, 0.3],
                                                    image_std=[0.2, 0.25, 0.3])
  reference.save_pretrained(tmp_path)
  cfg = ip.config_from_pretrained(str(tmp_path))
  assert (cfg.patch_size, cfg.min_pixels, cfg.max_pixels) == (8, 16 * 16, 48 * 48)
  assert cfg.image_mean == (0.5, 0.4, 0.3)
  images = _images(3)
  ours = ip.preprocess(images, cfg)
  theirs = reference(images=images, return_tensors='np')
  np.testing.assert_array_equal(ours['image_grid_thw'], theirs['image_grid_thw'])
  np.testing.assert_allclose(ours['pixel_values'], theirs['pixel_values'], atol=1e-6)


def test_config_from_pretrained_errors_name_the_file(tmp_path):
  with pytest.raises(ValueError, match='preprocessor_config.json'):
    ip.config_from_pretrained(str(tmp_path))
  (tmp_path / 'preprocessor_config.json').write_text('{"do_normalize": false}')
  with pytest.raises(ValueError, match='do_normalize'):
    ip.config_from_pretrained(str(tmp_path))
