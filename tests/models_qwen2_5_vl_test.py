"""Logit and greedy-generation parity of the Qwen2.5-VL model with transformers (tiny random config)."""

import jax
import numpy as np
import pytest
import torch
import transformers

from rl_reason import models, sampling
from rl_reason.models import config as model_config, convert

VOCAB, IMAGE, VISION_START, VISION_END = 97, 90, 91, 93


@pytest.fixture(scope='module')
def pair():
  torch.manual_seed(0)
  hf_cfg = transformers.Qwen2_5_VLConfig(
      text_config=dict(vocab_size=VOCAB, hidden_size=48, intermediate_size=80, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6,
                       rope_parameters=dict(rope_type='default', rope_theta=10000.0, mrope_section=[2, 2, 2]),
                       tie_word_embeddings=False, max_position_embeddings=512),
      vision_config=dict(depth=3, hidden_size=32, intermediate_size=40, num_heads=2, patch_size=4,
                         spatial_merge_size=2, temporal_patch_size=2, window_size=16,
                         fullatt_block_indexes=[1], out_hidden_size=48),
      image_token_id=IMAGE, vision_start_token_id=VISION_START, video_token_id=92,
      vision_end_token_id=VISION_END, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
  hf = transformers.Qwen2_5_VLForConditionalGeneration(hf_cfg).eval()
  cfg = model_config.ModelConfig(
      text=model_config.TextConfig(vocab_size=VOCAB, hidden_size=48, intermediate_size=80, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0,
                                   mrope_section=(2, 2, 2)),
      vision=model_config.VisionConfig(depth=3, hidden_size=32, intermediate_size=40, num_heads=2, patch_size=4,
                                       window_size=16, fullatt_block_indexes=(1,), out_hidden_size=48),
      image_token_id=IMAGE, vision_start_token_id=VISION_START)
  ours = models.create(cfg, seed=1)
  convert.load_hf_tensors(ours, {k: v.detach().numpy() for k, v in hf.state_dict().items()})
  return hf, ours


def _batch():
  """Row 0: two images of different sizes; row 1: one image, left padded; row 2: text only."""
  grids = np.array([[1, 8, 12], [1, 4, 4], [1, 4, 4]])
  rows = [
      [5, 6, VISION_START] + [IMAGE] * 24 + [VISION_END, 7, 8, 9, VISION_START] + [IMAGE] * 4 + [VISION_END, 3],
      [11, VISION_START] + [IMAGE] * 4 + [VISION_END, 12, 13, 14, 15],
      list(range(20, 35)),
  ]
  length = max(map(len, rows))
  ids = np.zeros((3, length), np.int64)
  mask = np.zeros((3, length), np.int64)
  for r, row in enumerate(rows):
    ids[r, length - len(row):] = row
    mask[r, length - len(row):] = 1
  pixels = np.random.RandomState(0).randn(int(grids.prod(1).sum()), 3 * 2 * 4 * 4).astype(np.float32)
  return ids, mask, pixels, grids


def _hf_kwargs(ids, mask, pixels, grids):
  return dict(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), pixel_values=torch.tensor(pixels),
              image_grid_thw=torch.tensor(grids), mm_token_type_ids=torch.tensor((ids == IMAGE).astype(np.int64)))


def test_logits_match_transformers(pair):
  hf, ours = pair
  ids, mask, pixels, grids = _batch()
  with torch.no_grad():
    expected = hf(**_hf_kwargs(ids, mask, pixels, grids)).logits.numpy()
  got = np.asarray(models.forward(ours, ids, mask, pixel_values=pixels, image_grid_thw=grids))
  real = mask.astype(bool)
  assert np.abs(got[real] - expected[real]).max() < 1e-4


def test_greedy_generation_matches_transformers(pair):
  hf, ours = pair
  ids, mask, pixels, grids = _batch()
  with torch.no_grad():
    expected = hf.generate(**_hf_kwargs(ids, mask, pixels, grids), max_new_tokens=32, do_sample=False,
                           eos_token_id=None, pad_token_id=0).numpy()[:, ids.shape[1]:]
  out = sampling.generate(ours, ids, mask, max_new_tokens=32, pixel_values=pixels, image_grid_thw=grids)
  np.testing.assert_array_equal(np.asarray(out.tokens), expected)


def test_image_token_count_mismatch_is_a_clear_error(pair):
  _, ours = pair
  ids, mask, pixels, grids = _batch()
  with pytest.raises(ValueError, match='image tokens'):
    models.forward(ours, ids, mask, pixel_values=pixels, image_grid_thw=grids[:2])


def test_missing_and_misshapen_tensors_are_named(pair):
  hf, _ = pair
  tensors = {k: v.detach().numpy() for k, v in hf.state_dict().items()}
  target = models.create(pair[1].cfg)
  broken = dict(tensors)
  del broken['model.language_model.norm.weight']
  with pytest.raises(ValueError, match='model.norm.weight'):
    convert.load_hf_tensors(target, broken)
  broken = dict(tensors, **{'model.visual.merger.mlp.0.bias': np.zeros(3, np.float32)})
  with pytest.raises(ValueError, match='merger.mlp.0.bias'):
    convert.load_hf_tensors(target, broken)
