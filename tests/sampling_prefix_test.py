"""Prefill variants against one pass over whole prompts (tokens, log-probs, entropies; text and VLM, 1 and
8 devices): a prefix every prompt shares, run once for the batch (and what the encoder splits off), and a
prompt prefilled in chunks (and the memory that saves)."""

import dataclasses

import jax
import numpy as np
import pytest
from flax import nnx

from rl_reason import models, sampling
from rl_reason.data import image_processor, pipeline, processor, tokenizer as tokenizer_lib
from rl_reason.parallel import sharding as shd
from rl_reason.sampling import Sampler, SamplingConfig

TOKENIZER = tokenizer_lib.build_tiny_tokenizer()
SPECIAL = tokenizer_lib.special_ids(TOKENIZER)
HEAD = 'Read the question and the answer below, then judge the answer with care. ' * 2


def test_shared_prefix_length_stops_at_a_difference_an_image_or_a_row_end():
  share = lambda seqs, step=4: processor.shared_prefix_length(seqs, image_token_id=9, step=step)
  same = list(range(20, 40))
  assert share([same + [1], same + [2, 3]]) == 20
  assert share([same + [1], same + [2, 3]], step=8) == 16  # rounded down to the step
  assert share([same[:13] + [5, 1], same + [2]]) == 12  # differs at 13
  assert share([same[:6] + [9] + same[7:], same[:6] + [9] + same[7:]]) == 4  # cut before the image token (6)
  assert share([same, same, same]) == 16  # every row keeps a token of its own: 19 shared, 16 rounded
  assert share([same[:3], same[:3]]) == 0  # fewer than a step
  assert share([same]) == 16 and share([]) == 0 and share([same, same], step=0) == 0


def _model(images=True, scan_layers=False):
  cfg = models.get_preset('tiny_vl' if images else 'tiny_lm', vocab_size=len(TOKENIZER),
                          image_token_id=SPECIAL['image_pad_id'],
                          vision_start_token_id=SPECIAL['vision_start_id']).replace(scan_layers=scan_layers)
  graphdef, params = nnx.split(models.create(cfg, seed=3))
  # weights x3: sharper distributions, so that the two runs' draws could tell a wrong prefix apart
  return nnx.merge(graphdef, jax.tree.map(lambda x: x * 3 if x.ndim >= 2 else x, params))


def _examples(images: bool):
  rng = np.random.default_rng(0)
  texts = ['what is shown?', 'count the red squares, then the blue ones', 'is it night', 'name the shape']
  return [dict(prompt=HEAD + text, images=[rng.integers(0, 255, (16 + 8 * (i % 2), 24, 3), np.uint8)] if images
               else [], meta={}) for i, text in enumerate(texts)]


def _encoders(model_cfg, images: bool, prefix_step=16):
  image_cfg = image_processor.ImageProcessorConfig(
      patch_size=8, temporal_patch_size=2, merge_size=2, min_pixels=256, max_pixels=2048) if images else None
  make = lambda step: pipeline.PromptEncoder(TOKENIZER, model_cfg, image_cfg, (32, 64, 128, 256),
                                             images_first=False, prefix_step=step)
  return make(0), make(prefix_step)


@pytest.mark.parametrize('images', [True, False])
def test_the_prefix_and_the_rest_are_the_whole_prompt(images):
  model_cfg = _model(images).cfg
  whole_encode, split_encode = _encoders(model_cfg, images)
  whole, split = whole_encode(_examples(images)), split_encode(_examples(images))
  cut = split['prefix_ids'].shape[1]
  assert cut % 16 == 0 and cut >= 64
  assert (split['prefix_ids'] == split['prefix_ids'][:1]).all()
  for row in range(4):
    real = whole['attention_mask'][row] > 0
    rest = split['attention_mask'][row] > 0
    np.testing.assert_array_equal(np.concatenate([split['prefix_ids'][row], split['input_ids'][row][rest]]),
                                  whole['input_ids'][row][real])
    np.testing.assert_array_equal(np.concatenate([np.broadcast_to(np.arange(cut), (3, cut)),
                                                  split['positions'][:, row][:, rest]], axis=1),
                                  whole['positions'][:, row][:, real])
  assert split['input_ids'].shape[1] < whole['input_ids'].shape[1]  # the rest fits a smaller bucket
  if images:
    for key, value in whole['vision'].items():
      np.testing.assert_array_equal(split['vision'][key], value)


def test_sliding_window_models_keep_the_prompt_whole():
  text = dataclasses.replace(models.get_preset('tiny_lm').text, sliding_window=8,
                             layer_types=('sliding_attention', 'full_attention'))
  cfg = dataclasses.replace(models.get_preset('tiny_lm'), text=text)
  _, split_encode = _encoders(cfg, images=False)
  assert split_encode.prefix_step == 0 and 'prefix_ids' not in split_encode(_examples(False))


def _placed(model, devices):
  """(sampler, params, mesh): the model's sampler and params on 1 device or the 2 x 2 x 2 mesh."""
  graphdef, params = nnx.split(model)
  mesh = shd.make_mesh(shd.MeshConfig(num_devices=devices) if devices == 1 else
                       shd.MeshConfig(data=2, fsdp=2, tensor=2))
  return Sampler(graphdef, mesh=mesh), jax.device_put(params, shd.state_shardings(params, mesh)), mesh


@pytest.mark.parametrize('images, devices', [(True, 1), (False, 1), (True, 8)])
def test_sampling_with_the_prefix_run_once_equals_the_whole_prompts(images, devices):
  model = _model(images)
  sampler, params, mesh = _placed(model, devices)
  whole_encode, split_encode = _encoders(model.cfg, images)
  whole, split = whole_encode(_examples(images)), split_encode(_examples(images))
  assert 'prefix_ids' in split
  for temperature in (0.0, 1.0):
    cfg = SamplingConfig(max_new_tokens=12, temperature=temperature, num_samples=2, return_entropy=True,
                         pad_token_id=SPECIAL['pad_id'])
    runs = [sampler(params, shd.host_to_global(inputs, mesh), 7, cfg) for inputs in (whole, split)]
    (ref, got) = [jax.tree.map(np.asarray, run) for run in runs]
    np.testing.assert_array_equal(got.tokens, ref.tokens)
    np.testing.assert_array_equal(got.lengths, ref.lengths)
    np.testing.assert_allclose(got.logprobs, ref.logprobs, atol=1e-5)
    np.testing.assert_allclose(got.entropy, ref.entropy, atol=1e-5)
    # rows differ: each read its own prompt (greedy: 4 prompts x 2 alike samples), and its own draws
    assert len({tuple(t) for t in ref.tokens}) > (1 if temperature == 0 else 4)
  for bad in (split['prefix_ids'][:3], split['prefix_ids'][:, :0], split['prefix_ids'][0]):
    with pytest.raises(ValueError, match=r'prefix_ids \(.*\) must be \[P, T0\] with T0 > 0 for the 4 prompts'):
      sampler(params, dict(split, prefix_ids=bad), 0, cfg)
  with pytest.raises(ValueError, match=r'vision_rows \(3,\) must be \[P\] for the 4 prompts of input_ids, with vision'):
    sampler(params, dict(split, vision_rows=np.zeros(3, np.int32)), 0, cfg)


@pytest.mark.parametrize('images, devices, scan_layers', [(True, 1, False), (False, 1, False), (True, 8, False),
                                                         (True, 1, True)])
def test_a_prompt_prefilled_in_chunks_samples_as_one_pass(images, devices, scan_layers):
  """prefill_chunk 19 over the rest's 64-token bucket (chunks of 19, 19, 19 and 7) and 40 over the whole
  prompt's 128 (no shared prefix; 40, 40, 40, 8), a chunk end inside an image's tokens each time: the same
  tokens, log-probs and entropies as one pass (also with the layers stacked under scan)."""
  model = _model(images, scan_layers)
  sampler, params, mesh = _placed(model, devices)
  whole_encode, split_encode = _encoders(model.cfg, images)
  for inputs in (whole_encode(_examples(images)), split_encode(_examples(images))):
    placed = shd.host_to_global(inputs, mesh)
    size = 19 if inputs['input_ids'].shape[1] == 64 else 40
    if images:  # some image's tokens straddle a chunk end
      image_columns = np.flatnonzero((inputs['input_ids'] == SPECIAL['image_pad_id']).any(0))
      assert any(image_columns[0] < end <= image_columns[-1] for end in range(size, inputs['input_ids'].shape[1], size))
    runs = []
    for chunk in (0, size):
      cfg = SamplingConfig(max_new_tokens=8, temperature=1.0, num_samples=2, return_entropy=True,
                           pad_token_id=SPECIAL['pad_id'], prefill_chunk=chunk)
      runs.append(jax.tree.map(np.asarray, sampler(params, placed, 3, cfg)))
    ref, got = runs
    np.testing.assert_array_equal(got.tokens, ref.tokens)
    np.testing.assert_allclose(got.logprobs, ref.logprobs, atol=1e-5)
    np.testing.assert_allclose(got.entropy, ref.entropy, atol=1e-5)


def test_chunked_prefill_of_a_sliding_window_model_samples_as_one_pass():
  """Sliding-window layers count the window over cache slots; a chunk that reads only the slots written so
  far sees the same window."""
  base = models.get_preset('tiny_lm', vocab_size=len(TOKENIZER))
  text = dataclasses.replace(base.text, sliding_window=6, layer_types=('sliding_attention', 'full_attention'))
  graphdef, params = nnx.split(models.create(dataclasses.replace(base, text=text), seed=3))
  params = jax.tree.map(lambda x: x * 3 if x.ndim >= 2 else x, params)
  inputs = _encoders(dataclasses.replace(base, text=text), False)[0](_examples(False))
  sampler = Sampler(graphdef)
  runs = [jax.tree.map(np.asarray, sampler(params, inputs, 5, SamplingConfig(
      max_new_tokens=8, temperature=1.0, pad_token_id=SPECIAL['pad_id'], prefill_chunk=chunk)))
          for chunk in (0, 20)]
  np.testing.assert_array_equal(runs[1].tokens, runs[0].tokens)
  np.testing.assert_allclose(runs[1].logprobs, runs[0].logprobs, atol=1e-5)


def test_chunked_prefill_holds_less_memory_and_bad_chunks_are_refused():
  model = _model(False)
  graphdef, params = nnx.split(model)
  sampler = Sampler(graphdef)
  inputs = _encoders(model.cfg, False)[0](_examples(False))
  temp = {}
  for chunk in (0, 32):
    cfg = SamplingConfig(max_new_tokens=8, pad_token_id=SPECIAL['pad_id'], prefill_chunk=chunk)
    compiled = sampler._prefill.lower(params, inputs, jax.random.key(0), np.int32(8), cfg=cfg).compile()
    temp[chunk] = compiled.memory_analysis().temp_size_in_bytes
  assert 0 < temp[32] < temp[0], temp
  request = sampling.prepare_generation(model, inputs['input_ids'], inputs['attention_mask'], max_new_tokens=4,
                                        prefill_chunk=32)
  assert request.cfg.prefill_chunk == 32  # generate's argument reaches the sampler
  for bad in (-1, 2.5):
    with pytest.raises(ValueError, match='prefill_chunk must be an int >= 0'):
      SamplingConfig(max_new_tokens=8, prefill_chunk=bad)
