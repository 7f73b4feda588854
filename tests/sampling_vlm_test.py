"""The sampler on Qwen2.5-VL: cached decoding equals the full forward at every step (images of two
sizes, ragged left padding, padded prompt length / batch / patch buckets); EOS parity with transformers."""

import jax
import numpy as np
import torch

from models_qwen2_5_vl_test import IMAGE
from models_qwen2_5_vl_test import _batch as vl_batch  # rows: 2 images, 1 image, text only
from models_qwen2_5_vl_test import _hf_kwargs as vl_hf_kwargs
from models_qwen2_5_vl_test import pair  # pylint: disable=unused-import  (the fixture)
from rl_reason import models, sampling


def test_vlm_cached_decoding_equals_full_forward_at_every_step(pair):  # pylint: disable=redefined-outer-name
  _, ours = pair
  ids, mask, pixels, grids = vl_batch()
  # The uncached reference would read a sampled image-token id as an image placeholder (the sampler,
  # like transformers, embeds generated tokens as text), so take the first seed without one.
  for seed in range(20):
    out = sampling.generate(ours, ids, mask, max_new_tokens=12, temperature=1.0, rng=jax.random.key(seed),
                            num_samples=2, return_entropy=True, pixel_values=pixels, image_grid_thw=grids,
                            buckets=sampling.ShapeBuckets(batch=(4,)))  # + a dummy prompt; 112 -> 128 patches
    if not (np.asarray(out.tokens) == IMAGE).any():
      break
  else:
    raise AssertionError('every seed sampled an image token')
  tokens = np.asarray(out.tokens)
  rows = np.repeat(np.arange(3), 2)
  # The uncached reference repeats each prompt (and its images) for its two samples.
  image_rows = [0, 0, 1]  # row of each image in grids
  order = [i for r in rows for i in range(len(grids)) if image_rows[i] == r]
  offsets = np.concatenate([[0], np.cumsum(grids.prod(1))])
  full_pixels = np.concatenate([pixels[offsets[i]:offsets[i + 1]] for i in order])
  full_ids = np.concatenate([ids[rows], tokens], 1)
  full_mask = np.concatenate([mask[rows], np.ones_like(tokens)], 1)
  logits = np.asarray(models.forward(ours, full_ids, full_mask, pixel_values=full_pixels,
                                     image_grid_thw=grids[order]), np.float64)[:, ids.shape[1] - 1:-1]
  logp = logits - logits.max(-1, keepdims=True)
  logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
  np.testing.assert_allclose(np.asarray(out.logprobs), np.take_along_axis(logp, tokens[..., None], -1)[..., 0],
                             atol=1e-5)
  np.testing.assert_allclose(np.asarray(out.entropy), -(np.exp(logp) * logp).sum(-1), atol=1e-5)


def test_vlm_greedy_with_several_eos_matches_transformers(pair):  # pylint: disable=redefined-outer-name
  hf, ours = pair
  ids, mask, pixels, grids = vl_batch()
  free = np.asarray(sampling.generate(ours, ids, mask, max_new_tokens=16, pixel_values=pixels,
                                      image_grid_thw=grids).tokens)
  eos = (int(free[0, 5]), int(free[2, 2]))
  pad = next(t for t in range(90) if t not in free)
  with torch.no_grad():
    expected = hf.generate(**vl_hf_kwargs(ids, mask, pixels, grids), max_new_tokens=16, do_sample=False,
                           eos_token_id=list(eos), pad_token_id=pad).numpy()[:, ids.shape[1]:]
  out = sampling.generate(ours, ids, mask, max_new_tokens=16, eos_token_ids=eos, pad_token_id=pad,
                          pixel_values=pixels, image_grid_thw=grids)
  tokens = np.asarray(out.tokens)
  assert 'eos' in out.finish_reason_names()
  np.testing.assert_array_equal(tokens[:, :expected.shape[1]], expected)
  assert (tokens[:, expected.shape[1]:] == pad).all()
