"""Llama, Qwen3, Qwen2 (sliding window) and Qwen2-VL checkpoints against transformers (tiny, CPU).

For each case a random transformers model is saved with save_pretrained and loaded with
models.from_pretrained: logits on a left-padded batch agree to 1e-4 (float32), our
save_pretrained gives a checkpoint transformers loads with the same logits, and greedy generation
of 32 tokens agrees token for token (Llama with dynamic rope, Qwen3 with sliding windows,
Qwen2-VL with 1 and 2 images per prompt and a text-only row). Each rope scaling / window case
also checks that the setting moves transformers' logits, so ignoring it would fail.
"""

import copy
import dataclasses
import json
import os

import numpy as np
import pytest
import torch
import transformers

from models_qwen2_5_vl_test import IMAGE, VISION_END, VISION_START, VOCAB as VL_VOCAB
from models_qwen2_5_vl_test import _batch as vl_batch  # rows: 2 images, 1 image, text only
from models_qwen2_5_vl_test import _hf_kwargs as vl_hf_kwargs
from rl_reason import models, sampling

VOCAB = 301
NEW_TOKENS = 32
_SHAPE = dict(vocab_size=VOCAB, hidden_size=48, intermediate_size=72, num_hidden_layers=3, num_attention_heads=4,
              num_key_value_heads=2, initializer_range=0.1, bos_token_id=1, eos_token_id=2, pad_token_id=0)

# name -> (transformers class, config class, config kwargs). max_position_embeddings 16 < the 20-token
# prompt, so dynamic rope scales in the forward pass and keeps growing during generation.
TEXT_CASES = {
    'llama_dynamic_biases_tied': (transformers.LlamaForCausalLM, transformers.LlamaConfig, dict(
        rope_parameters=dict(rope_type='dynamic', factor=3.0, rope_theta=10000.0), max_position_embeddings=16,
        attention_bias=True, mlp_bias=True, tie_word_embeddings=True, head_dim=16, rms_norm_eps=1e-5)),
    'llama_linear': (transformers.LlamaForCausalLM, transformers.LlamaConfig, dict(
        rope_parameters=dict(rope_type='linear', factor=2.0, rope_theta=500.0))),
    'llama_llama3': (transformers.LlamaForCausalLM, transformers.LlamaConfig, dict(
        rope_parameters=dict(rope_type='llama3', factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                             original_max_position_embeddings=32, rope_theta=10000.0))),
    'qwen3': (transformers.Qwen3ForCausalLM, transformers.Qwen3Config, dict(
        head_dim=20, rope_parameters=dict(rope_type='default', rope_theta=1000.0), rms_norm_eps=1e-5,
        attention_bias=True)),
    'qwen3_sliding_window': (transformers.Qwen3ForCausalLM, transformers.Qwen3Config, dict(
        head_dim=20, use_sliding_window=True, sliding_window=6, max_window_layers=1)),
    'qwen2_sliding_window': (transformers.Qwen2ForCausalLM, transformers.Qwen2Config, dict(
        use_sliding_window=True, sliding_window=5,
        layer_types=['sliding_attention', 'full_attention', 'sliding_attention'])),
}
# Greedy generation runs where the cached decode path differs from a plain forward pass: dynamic rope
# (frequencies grow with every token) and sliding windows (old cache slots drop out). A sampler
# compile costs seconds on CPU, so the static-rope cases stop at logits.
GENERATION_CASES = ['llama_dynamic_biases_tied', 'qwen3_sliding_window']
SETTING_CASES = [name for name in TEXT_CASES if name != 'qwen3']  # those with rope scaling or windows


@pytest.fixture(scope='module', autouse=True)
def _one_torch_thread():
  """transformers on 2 threads next to XLA's thread pools runs 20x slower on a 2-core machine."""
  threads = torch.get_num_threads()
  torch.set_num_threads(1)
  yield
  torch.set_num_threads(threads)


def _text_batch():
  """Three prompts of 20, 13 and 7 tokens, left padded."""
  rng = np.random.RandomState(0)
  lengths = (20, 13, 7)
  ids = np.zeros((3, 20), np.int64)
  mask = np.zeros((3, 20), np.int64)
  for row, length in enumerate(lengths):
    ids[row, 20 - length:] = rng.randint(3, VOCAB, size=length)
    mask[row, 20 - length:] = 1
  return ids, mask


def _hf_text_logits(hf, ids, mask):
  positions = np.maximum(np.cumsum(mask, 1) - 1, 0)  # what generate uses for left padding
  with torch.no_grad():
    return hf(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
              position_ids=torch.tensor(positions)).logits.numpy()


def _max_diff(got, expected, mask):
  real = mask.astype(bool)
  return float(np.abs(np.asarray(got)[real] - expected[real]).max())


@dataclasses.dataclass
class Pair:
  hf_class: type
  hf_config: transformers.PreTrainedConfig
  state: dict  # transformers state dict
  path: str  # transformers save_pretrained directory
  ours: models.Model

  def fresh_hf(self):
    """A new transformers module with the same weights (dynamic rope keeps state across calls)."""
    hf = self.hf_class(copy.deepcopy(self.hf_config)).eval()
    hf.load_state_dict(self.state)
    return hf


def _pair(tmp_path_factory, name, hf_class, config):
  torch.manual_seed(0)
  hf = hf_class(config).eval()
  path = str(tmp_path_factory.mktemp(name) / 'hf')
  hf.save_pretrained(path)
  return Pair(hf_class, config, {k: v.clone() for k, v in hf.state_dict().items()}, path,
              models.from_pretrained(path))


@pytest.fixture(scope='module')
def _text_pairs(tmp_path_factory):
  """name -> Pair, built once (pytest sets text_pair up again around indirectly parametrized tests)."""
  pairs = {}

  def get(name):
    if name not in pairs:
      hf_class, config_class, kwargs = TEXT_CASES[name]
      pairs[name] = _pair(tmp_path_factory, name, hf_class, config_class(**_SHAPE, **kwargs))
    return pairs[name]
  return get


@pytest.fixture(scope='module', params=list(TEXT_CASES))
def text_pair(request, _text_pairs):  # pylint: disable=redefined-outer-name
  return request.param, _text_pairs(request.param)


def test_text_config_is_read(text_pair):
  _, pair = text_pair
  text, hf = pair.ours.cfg.text, pair.hf_config
  assert (pair.ours.cfg.model_type, text.model_type) == (hf.model_type, hf.model_type)
  assert text.rms_norm_eps == hf.rms_norm_eps
  assert text.rope_theta == hf.rope_parameters['rope_theta']
  assert text.dim_per_head == getattr(hf, 'head_dim', hf.hidden_size // hf.num_attention_heads)
  assert text.tie_word_embeddings == hf.tie_word_embeddings
  assert (text.rope_scaling.rope_type if text.rope_scaling else 'default') == hf.rope_parameters['rope_type']
  sliding = 'sliding_attention' in hf.layer_types if hasattr(hf, 'layer_types') else False
  assert text.layer_types == (tuple(hf.layer_types) if sliding else None)
  assert text.sliding_window == (hf.sliding_window if sliding else None)


def test_text_logits_match_transformers(text_pair):
  name, pair = text_pair
  ids, mask = _text_batch()
  expected = _hf_text_logits(pair.fresh_hf(), ids, mask)
  diff = _max_diff(models.forward(pair.ours, ids, mask), expected, mask)
  print(f'{name}: max |logit diff| {diff:.2e}')
  assert diff <= 1e-4


@pytest.mark.parametrize('text_pair', SETTING_CASES, indirect=True)
def test_the_batch_exercises_the_setting(text_pair):
  """The parity test can fail: without the case's rope scaling / sliding window the logits move."""
  name, pair = text_pair
  plain = copy.deepcopy(pair.hf_config)
  if 'sliding' in name:
    plain.layer_types = ['full_attention'] * plain.num_hidden_layers
  else:
    plain.rope_parameters = dict(rope_type='default', rope_theta=pair.hf_config.rope_parameters['rope_theta'])
  ids, mask = _text_batch()
  baseline = pair.hf_class(plain).eval()
  baseline.load_state_dict(pair.state)
  assert _max_diff(_hf_text_logits(baseline, ids, mask), _hf_text_logits(pair.fresh_hf(), ids, mask), mask) > 1e-2


@pytest.mark.parametrize('text_pair', GENERATION_CASES, indirect=True)
def test_text_greedy_generation_matches_transformers(text_pair):
  name, pair = text_pair
  ids, mask = _text_batch()
  with torch.no_grad():
    expected = pair.fresh_hf().generate(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                                        max_new_tokens=NEW_TOKENS, do_sample=False, eos_token_id=None,
                                        pad_token_id=0).numpy()[:, ids.shape[1]:]
  out = sampling.generate(pair.ours, ids, mask, max_new_tokens=NEW_TOKENS)
  got = np.asarray(out.tokens)
  assert len(set(expected.ravel().tolist())) > 3, f'{name}: degenerate generation {expected}'
  np.testing.assert_array_equal(got, expected)


def test_text_save_pretrained_round_trip(text_pair, tmp_path):
  _, pair = text_pair
  out = str(tmp_path / 'ours')
  models.save_pretrained(pair.ours, out)
  reloaded = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
  assert type(reloaded) is pair.hf_class
  ids, mask = _text_batch()
  assert _max_diff(models.forward(pair.ours, ids, mask), _hf_text_logits(reloaded, ids, mask), mask) <= 1e-4
  with open(os.path.join(out, 'config.json')) as f:
    assert models.config_from_hf(json.load(f)) == pair.ours.cfg


# ---------------------------------------------------------------------------------------------- Qwen2-VL


def _qwen2_vl_config():
  return transformers.Qwen2VLConfig(
      text_config=dict(vocab_size=VL_VOCAB, hidden_size=48, intermediate_size=72, num_hidden_layers=3,
                       num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6,
                       rope_parameters=dict(rope_type='default', rope_theta=10000.0, mrope_section=[2, 2, 2]),
                       initializer_range=0.1, bos_token_id=1, eos_token_id=2, pad_token_id=0),
      vision_config=dict(depth=3, embed_dim=40, hidden_size=48, mlp_ratio=2, num_heads=2, patch_size=4,
                         spatial_merge_size=2, temporal_patch_size=2, in_channels=3),
      image_token_id=IMAGE, vision_start_token_id=VISION_START, video_token_id=92,
      vision_end_token_id=VISION_END, bos_token_id=1, eos_token_id=2, pad_token_id=0)


@pytest.fixture(scope='module')
def vl_pair(tmp_path_factory):
  return _pair(tmp_path_factory, 'qwen2_vl', transformers.Qwen2VLForConditionalGeneration, _qwen2_vl_config())


def test_qwen2_vl_config_is_read(vl_pair):
  cfg = vl_pair.ours.cfg
  assert cfg.model_type == 'qwen2_vl' and cfg.text.mrope_section == (2, 2, 2)
  v = cfg.vision
  assert (v.hidden_size, v.intermediate_size, v.out_hidden_size, v.hidden_act) == (40, 80, 48, 'quick_gelu')
  assert v.window_size is None and v.fullatt_block_indexes == ()


def test_qwen2_vl_logits_match_transformers(vl_pair):
  ids, mask, pixels, grids = vl_batch()
  with torch.no_grad():
    expected = vl_pair.fresh_hf()(**vl_hf_kwargs(ids, mask, pixels, grids)).logits.numpy()
  got = models.forward(vl_pair.ours, ids, mask, pixel_values=pixels, image_grid_thw=grids)
  diff = _max_diff(got, expected, mask)
  print(f'qwen2_vl: max |logit diff| {diff:.2e}')
  assert diff <= 1e-4


def test_qwen2_vl_greedy_generation_matches_transformers(vl_pair):
  ids, mask, pixels, grids = vl_batch()
  with torch.no_grad():
    expected = vl_pair.fresh_hf().generate(**vl_hf_kwargs(ids, mask, pixels, grids),
                                           max_new_tokens=NEW_TOKENS, do_sample=False, eos_token_id=None,
                                           pad_token_id=0).numpy()[:, ids.shape[1]:]
  out = sampling.generate(vl_pair.ours, ids, mask, max_new_tokens=NEW_TOKENS, pixel_values=pixels,
                          image_grid_thw=grids)
  assert len(set(expected.ravel().tolist())) > 3, f'degenerate generation {expected}'
  np.testing.assert_array_equal(np.asarray(out.tokens), expected)


def test_qwen2_vl_save_pretrained_round_trip(vl_pair, tmp_path):
  out = str(tmp_path / 'ours')
  models.save_pretrained(vl_pair.ours, out)
  reloaded = transformers.Qwen2VLForConditionalGeneration.from_pretrained(out).eval()
  ids, mask, pixels, grids = vl_batch()
  with torch.no_grad():
    expected = reloaded(**vl_hf_kwargs(ids, mask, pixels, grids)).logits.numpy()
  got = models.forward(vl_pair.ours, ids, mask, pixel_values=pixels, image_grid_thw=grids)
  assert _max_diff(got, expected, mask) <= 1e-4
  with open(os.path.join(out, 'config.json')) as f:
    assert models.config_from_hf(json.load(f)) == vl_pair.ours.cfg


def test_qwen2_vl_hub_layout_config(vl_pair):
  """The flat config.json of the Qwen2-VL hub checkpoints (rope_scaling type mrope, in_chans) reads the same."""
  with open(os.path.join(vl_pair.path, 'config.json')) as f:
    v5 = json.load(f)
  text = dict(v5['text_config'])
  text.pop('rope_parameters')
  vision = dict(v5['vision_config'], in_chans=3, spatial_patch_size=4, model_type='qwen2_vl')
  vision.pop('in_channels')
  vision.pop('rope_parameters')
  hub = dict(text, model_type='qwen2_vl', vision_config=vision, image_token_id=IMAGE,
             vision_start_token_id=VISION_START, rope_theta=10000.0,
             rope_scaling=dict(type='mrope', mrope_section=[2, 2, 2]))
  assert models.config_from_hf(hub) == vl_pair.ours.cfg
  with pytest.raises(ValueError, match="hub.json.*spatial_patch_size=8"):
    models.config_from_hf(dict(hub, vision_config=dict(vision, spatial_patch_size=8)), where='hub.json')


# -------------------------------------------------------------------------------------- config.json keys


def _llama_json(**overrides):
  config = transformers.LlamaConfig(**_SHAPE).to_dict()
  config.update(overrides)
  return config


def test_llama_v4_layout_reads_like_v5():
  v5 = _llama_json(rope_parameters=dict(rope_type='llama3', factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                        original_max_position_embeddings=64, rope_theta=500000.0))
  v4 = _llama_json(rope_theta=500000.0, rope_scaling=dict(rope_type='llama3', factor=8.0, low_freq_factor=1.0,
                                                          high_freq_factor=4.0, original_max_position_embeddings=64))
  del v4['rope_parameters']
  assert models.config_from_hf(v5) == models.config_from_hf(v4)
  old_linear = _llama_json(rope_theta=500.0, rope_scaling=dict(type='linear', factor=4.0))
  del old_linear['rope_parameters']
  scaling = models.config_from_hf(old_linear).text.rope_scaling
  assert (scaling.rope_type, scaling.factor) == ('linear', 4.0)
  assert models.config_from_hf(old_linear).text.rope_theta == 500.0


@pytest.mark.parametrize('overrides, message', [
    (dict(rope_parameters=dict(rope_type='yarn', factor=4.0, rope_theta=1e4)), "rope type 'yarn' is not supported"),
    (dict(rope_parameters=dict(rope_type='longrope', rope_theta=1e4)), "rope type 'longrope'"),
    (dict(rope_parameters=dict(rope_type='llama3', factor=8.0, rope_theta=1e4)),
     r"needs \['low_freq_factor', 'high_freq_factor'\]"),
    (dict(rope_parameters=dict(rope_type='default', rope_theta=1e4, partial_rotary_factor=0.5)),
     'partial_rotary_factor=0.5'),
    (dict(attention_dropout=0.1), 'attention_dropout=0.1'),
    (dict(hidden_act='relu2'), "hidden_act 'relu2'"),
])
def test_unsupported_llama_settings_name_key_and_file(overrides, message):
  with pytest.raises(ValueError, match=f'ckpt/config.json: .*{message}'):
    models.config_from_hf(_llama_json(**overrides), where='ckpt/config.json')


def _qwen3_json(**overrides):
  config = transformers.Qwen3Config(**_SHAPE, head_dim=20).to_dict()
  config.update(overrides)
  return config


@pytest.mark.parametrize('overrides, message', [
    (dict(layer_types=['full_attention', 'chunked_attention', 'full_attention']), "layer_types.*chunked_attention"),
    (dict(layer_types=['full_attention', 'sliding_attention', 'full_attention'], use_sliding_window=False),
     'layer_types names sliding_attention layers but use_sliding_window is false'),
    (dict(rope_parameters=dict(rope_type='dynamic', rope_theta=1e4)), r"rope type 'dynamic' needs \['factor'\]"),
])
def test_unsupported_qwen3_settings_name_key_and_file(overrides, message):
  with pytest.raises(ValueError, match=f'ckpt/config.json: .*{message}'):
    models.config_from_hf(_qwen3_json(**overrides), where='ckpt/config.json')


def test_qwen3_sliding_window_keys_resolve_as_transformers_does():
  cfg = models.config_from_hf(_qwen3_json(use_sliding_window=True, sliding_window=6, max_window_layers=2,
                                          layer_types=None)).text
  assert (cfg.sliding_window, cfg.layer_types) == (6, ('full_attention', 'full_attention', 'sliding_attention'))
  off = models.config_from_hf(_qwen3_json(use_sliding_window=False, sliding_window=6, layer_types=None)).text
  assert (off.sliding_window, off.layer_types) == (None, None)


def test_config_registries_match_the_layer_registries():
  from rl_reason.models import config as model_config, layers  # pylint: disable=g-import-not-at-top
  assert set(model_config.ACTIVATIONS) == set(layers.ACTIVATIONS)
  assert set(model_config.ROPE_SCALING_KEYS) == set(layers.ROPE_SCALINGS)
  assert set(models.hf.FAMILIES) == {'llama', 'qwen2', 'qwen3', 'qwen2_vl', 'qwen2_5_vl'}
