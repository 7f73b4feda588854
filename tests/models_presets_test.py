"""Published-checkpoint presets: parameter counts, the values of config.json, agreement with transformers.

Parameter counts come from shapes only (create_abstract, jax.eval_shape of the model creation),
never from allocated weights. Published totals (safetensors totals / model cards; a tied LM head
counted once) are written out here, not recomputed from the config.
"""

import copy
import dataclasses

import pytest
import torch
import transformers

from rl_reason import models
from rl_reason.models import presets

PUBLISHED_PARAMS = {
    'qwen2_5_0_5b': 494_032_768,
    'qwen2_5_1_5b': 1_543_714_304,
    'qwen2_5_3b': 3_085_938_688,
    'qwen2_5_7b': 7_615_616_512,
    'qwen2_5_vl_3b': 3_754_622_976,
    'qwen2_5_vl_7b': 8_292_166_656,
    'llama3_1_8b': 8_030_261_248,
    'qwen3_0_6b': 596_049_920,
    # The model card's "1.7B" (1.4B non-embedding). The hub's safetensors total, 2,031,739,904, is this
    # plus vocab x hidden = 311,164,928: the checkpoint also stores lm_head.weight although
    # tie_word_embeddings is true (the loader skips it; test_qwen3_1_7b_stored_lm_head checks the sum).
    'qwen3_1_7b': 1_720_574_976,
    'qwen3_4b': 4_022_468_096,
    'qwen3_8b': 8_190_735_360,
}


def test_every_published_preset_is_registered_and_counted():
  assert set(presets.PUBLISHED) == set(PUBLISHED_PARAMS)
  assert set(PUBLISHED_PARAMS) <= set(models.PRESETS)


@pytest.mark.parametrize('name', list(PUBLISHED_PARAMS))
def test_param_count_equals_published_total(name):
  cfg = models.get_preset(name)
  assert models.param_count(models.create_abstract(cfg)) == PUBLISHED_PARAMS[name]
  assert models.param_count(models.create_abstract(cfg.replace(scan_layers=True))) == PUBLISHED_PARAMS[name]


def test_qwen3_1_7b_stored_lm_head():
  text = models.get_preset('qwen3_1_7b').text
  assert text.tie_word_embeddings
  assert PUBLISHED_PARAMS['qwen3_1_7b'] + text.vocab_size * text.hidden_size == 2_031_739_904


def _transformers_model(config_json):
  """transformers' own reading of the published dict, instantiated on the meta device (no memory)."""
  cfg = transformers.AutoConfig.for_model(**copy.deepcopy(config_json))
  with torch.device('meta'):
    if config_json['model_type'] == 'qwen2_5_vl':
      return cfg, transformers.Qwen2_5_VLForConditionalGeneration._from_config(cfg)  # pylint: disable=protected-access
    return cfg, transformers.AutoModelForCausalLM.from_config(cfg)


@pytest.mark.parametrize('name', list(PUBLISHED_PARAMS))
def test_transformers_reads_the_same_model(name):
  """transformers parses the dict to the same config (its v5 to_dict) and builds as many parameters."""
  hf_cfg, hf_model = _transformers_model(presets.PUBLISHED[name][1])
  assert sum(p.numel() for p in hf_model.parameters()) == PUBLISHED_PARAMS[name]
  ours = models.get_preset(name)
  theirs = models.config_from_hf(hf_cfg.to_dict())
  # transformers writes the derived head_dim out; ours keeps None where config.json has no head_dim.
  theirs = theirs.replace(text=dataclasses.replace(theirs.text, head_dim=ours.text.head_dim))
  assert theirs.text.dim_per_head == ours.text.dim_per_head
  assert theirs == ours


@pytest.mark.parametrize('name', list(PUBLISHED_PARAMS))
def test_config_to_hf_round_trip(name):
  cfg = models.get_preset(name)
  assert models.config_from_hf(models.config_to_hf(cfg)) == cfg


def test_published_values():
  """Spot values of the hub files, so an edit to a dict shows up here as well as in the counts."""
  q05 = models.get_preset('qwen2_5_0_5b').text
  assert (q05.vocab_size, q05.hidden_size, q05.intermediate_size, q05.num_hidden_layers) == (151936, 896, 4864, 24)
  assert (q05.num_attention_heads, q05.num_key_value_heads, q05.dim_per_head) == (14, 2, 64)
  assert (q05.rope_theta, q05.rms_norm_eps, q05.tie_word_embeddings) == (1e6, 1e-6, True)
  assert (q05.sliding_window, q05.layer_types, q05.max_position_embeddings) == (None, None, 32768)
  assert models.get_preset('qwen2_5_7b').text.max_position_embeddings == 131072
  assert not models.get_preset('qwen2_5_7b').text.tie_word_embeddings

  llama = models.get_preset('llama3_1_8b').text
  assert llama.model_type == 'llama' and not llama.attention_bias and not llama.mlp_bias
  assert (llama.rope_theta, llama.rms_norm_eps, llama.max_position_embeddings) == (500000.0, 1e-5, 131072)
  scaling = llama.rope_scaling
  assert (scaling.rope_type, scaling.factor, scaling.low_freq_factor, scaling.high_freq_factor,
          scaling.original_max_position_embeddings) == ('llama3', 8.0, 1.0, 4.0, 8192)

  qwen3 = models.get_preset('qwen3_0_6b').text
  assert (qwen3.model_type, qwen3.head_dim, qwen3.hidden_size, qwen3.num_attention_heads) == ('qwen3', 128, 1024, 16)
  assert (qwen3.max_position_embeddings, qwen3.tie_word_embeddings, qwen3.attention_bias) == (40960, True, False)

  for name, width, tied in (('qwen2_5_vl_3b', 2048, True), ('qwen2_5_vl_7b', 3584, False)):
    cfg = models.get_preset(name)
    assert cfg.model_type == 'qwen2_5_vl' and cfg.text.hidden_size == width
    assert cfg.text.tie_word_embeddings == tied and cfg.text.mrope_section == (16, 24, 24)
    assert (cfg.text.max_position_embeddings, cfg.text.rms_norm_eps, cfg.text.rope_theta) == (128000, 1e-6, 1e6)
    assert (cfg.image_token_id, cfg.vision_start_token_id) == (151655, 151652)
    v = cfg.vision
    assert (v.depth, v.hidden_size, v.intermediate_size, v.num_heads, v.out_hidden_size) == (32, 1280, 3420, 16, width)
    assert (v.patch_size, v.spatial_merge_size, v.temporal_patch_size, v.window_size) == (14, 2, 2, 112)
    assert v.fullatt_block_indexes == (7, 15, 23, 31) and v.hidden_act == 'silu'


def test_overrides_name_config_json_keys():
  cfg = models.get_preset('qwen2_5_vl_3b', vocab_size=512, image_token_id=7, vision_start_token_id=8)
  assert (cfg.text.vocab_size, cfg.image_token_id, cfg.vision_start_token_id) == (512, 7, 8)
  assert cfg.text.hidden_size == 2048
  with pytest.raises(ValueError, match=r"preset qwen3_8b .*has no keys \['image_token_id'\]"):
    models.get_preset('qwen3_8b', image_token_id=3)
  with pytest.raises(ValueError, match="unknown model preset 'qwen9'"):
    models.get_preset('qwen9')
