"""Presets of published checkpoints: each is the checkpoint's own config.json, read by hf.config_from_hf.

A preset therefore is the published config (the same reader loads the checkpoint directory), and
`get_preset(name, **overrides)` may only override keys the config.json has (train.py sets
vocab_size and the image token ids of VLMs this way for its tiny tokenizer).

Each dict is the hub file https://huggingface.co/<ID>/blob/main/config.json in the layout it was
published in (transformers v4: rope_theta / rope_scaling at the top, Qwen2.5-VL text keys flat
next to vision_config). The values were read from copies of those files kept in public
repositories, named per preset. Keys the reader ignores (token ids other than the image ones,
initializer_range, torch_dtype, use_cache, transformers_version) are kept so the dict stays the file.

The Qwen2.5 text presets are the base checkpoints. Their -Instruct checkpoints have the same
architecture; their config.json differs in max_position_embeddings (32768 for 1.5B and 7B), which
only dynamic rope scaling reads, and in eos_token_id / max_window_layers / sliding_window, which
are unused while use_sliding_window is false. Llama-3.1-8B-Instruct differs from Llama-3.1-8B
only in eos_token_id.
"""

from __future__ import annotations

import functools
from typing import Any

from rl_reason.models import hf
from rl_reason.models.config import ModelConfig, register_preset

_QWEN2_5_BASE = dict(architectures=['Qwen2ForCausalLM'], model_type='qwen2', attention_dropout=0.0,
                     bos_token_id=151643, eos_token_id=151643, hidden_act='silu', initializer_range=0.02,
                     rms_norm_eps=1e-06, rope_theta=1000000.0, use_cache=True, use_mrope=False,
                     use_sliding_window=False, torch_dtype='bfloat16')

_QWEN3 = dict(architectures=['Qwen3ForCausalLM'], model_type='qwen3', attention_bias=False, attention_dropout=0.0,
              bos_token_id=151643, eos_token_id=151645, head_dim=128, hidden_act='silu', initializer_range=0.02,
              max_position_embeddings=40960, rms_norm_eps=1e-06, rope_scaling=None, rope_theta=1000000,
              sliding_window=None, use_sliding_window=False, vocab_size=151936, torch_dtype='bfloat16',
              transformers_version='4.51.0')

_QWEN2_5_VL = dict(architectures=['Qwen2_5_VLForConditionalGeneration'], model_type='qwen2_5_vl',
                   attention_dropout=0.0, bos_token_id=151643, eos_token_id=151645, vision_start_token_id=151652,
                   vision_end_token_id=151653, vision_token_id=151654, image_token_id=151655,
                   video_token_id=151656, hidden_act='silu', initializer_range=0.02, max_position_embeddings=128000,
                   rms_norm_eps=1e-06, rope_theta=1000000.0, sliding_window=32768, torch_dtype='bfloat16',
                   transformers_version='4.41.2', use_cache=True, use_sliding_window=False,
                   rope_scaling=dict(type='mrope', mrope_section=[16, 24, 24]))


def _vl_vision(out_hidden_size: int) -> dict[str, Any]:
  # The same tower in both sizes; only its output width (the text width) differs.
  return dict(depth=32, hidden_act='silu', hidden_size=1280, intermediate_size=3420, num_heads=16, in_chans=3,
              out_hidden_size=out_hidden_size, patch_size=14, spatial_merge_size=2, spatial_patch_size=14,
              window_size=112, fullatt_block_indexes=[7, 15, 23, 31], tokens_per_second=2, temporal_patch_size=2)


PUBLISHED: dict[str, tuple[str, dict[str, Any]]] = {
    # name: (Hugging Face id, config.json)
    # Copies: a transformers.Qwen2Config literal "From https://huggingface.co/Qwen/Qwen2.5-0.5B/blob/main/
    # config.json" and a model-card dump of the file; google/tunix tunix/models/qwen2/model.py qwen2p5_0p5b
    # (architecture fields).
    'qwen2_5_0_5b': ('Qwen/Qwen2.5-0.5B', dict(
        _QWEN2_5_BASE, hidden_size=896, intermediate_size=4864, max_position_embeddings=32768, max_window_layers=24,
        num_attention_heads=14, num_hidden_layers=24, num_key_value_heads=2, sliding_window=32768,
        tie_word_embeddings=True, transformers_version='4.40.1', vocab_size=151936)),
    # Copies: the Qwen2Config literal "From https://huggingface.co/Qwen/Qwen2.5-1.5B/blob/main/config.json"
    # (same file as above); google/tunix qwen2p5_1p5b.
    'qwen2_5_1_5b': ('Qwen/Qwen2.5-1.5B', dict(
        _QWEN2_5_BASE, hidden_size=1536, intermediate_size=8960, max_position_embeddings=131072,
        max_window_layers=28, num_attention_heads=12, num_hidden_layers=28, num_key_value_heads=2,
        sliding_window=131072, tie_word_embeddings=True, vocab_size=151936)),
    # Copies: citsjtu2020/LLM-Prof sglang/Model_Config.md ("Qwen2.5-3B"); the Qwen2Config literal
    # "From https://huggingface.co/Qwen/Qwen2.5-3B/blob/main/config.json"; google/tunix qwen2p5_3b.
    'qwen2_5_3b': ('Qwen/Qwen2.5-3B', dict(
        _QWEN2_5_BASE, hidden_size=2048, intermediate_size=11008, max_position_embeddings=32768,
        max_window_layers=36, num_attention_heads=16, num_hidden_layers=36, num_key_value_heads=2,
        sliding_window=32768, tie_word_embeddings=True, transformers_version='4.40.1', vocab_size=151936)),
    # Copies: citsjtu2020/LLM-Prof sglang/Model_Config.md ("Qwen2.5-7B"); the Qwen2Config literal
    # "From https://huggingface.co/Qwen/Qwen2.5-7B/blob/main/config.json"; google/tunix qwen2p5_7b.
    'qwen2_5_7b': ('Qwen/Qwen2.5-7B', dict(
        _QWEN2_5_BASE, hidden_size=3584, intermediate_size=18944, max_position_embeddings=131072,
        max_window_layers=28, num_attention_heads=28, num_hidden_layers=28, num_key_value_heads=4,
        sliding_window=131072, tie_word_embeddings=False, transformers_version='4.40.1', vocab_size=152064)),
    # Copies: a model-card dump "# Qwen/Qwen2.5-VL-3B-Instruct ## model config" of the file, and a C++
    # JSON-parsing test holding "Selected Json config from Qwen2.5VL-3B" (same values).
    'qwen2_5_vl_3b': ('Qwen/Qwen2.5-VL-3B-Instruct', dict(
        _QWEN2_5_VL, hidden_size=2048, intermediate_size=11008, max_window_layers=70, num_attention_heads=16,
        num_hidden_layers=36, num_key_value_heads=2, tie_word_embeddings=True, vision_config=_vl_vision(2048),
        vocab_size=151936)),
    # Copies: a README quoting ".../Qwen2.5-VL-7B-Instruct/config.json" in full, TensorRT-LLM's Qwen2.5-VL
    # test config (layer counts cut for the test, every other value the same).
    'qwen2_5_vl_7b': ('Qwen/Qwen2.5-VL-7B-Instruct', dict(
        _QWEN2_5_VL, hidden_size=3584, intermediate_size=18944, max_window_layers=28, num_attention_heads=28,
        num_hidden_layers=28, num_key_value_heads=4, tie_word_embeddings=False, vision_config=_vl_vision(3584),
        vocab_size=152064)),
    # Copies: citsjtu2020/LLM-Prof sglang/Model_Config.md ("Llama-3.1-8B"); AI-Hypercomputer/maxtext
    # src/MaxText/utils/ckpt_conversion/utils/hf_model_configs.py llama31_8b_config.
    'llama3_1_8b': ('meta-llama/Llama-3.1-8B', dict(
        architectures=['LlamaForCausalLM'], model_type='llama', attention_bias=False, attention_dropout=0.0,
        bos_token_id=128000, eos_token_id=128001, hidden_act='silu', hidden_size=4096, initializer_range=0.02,
        intermediate_size=14336, max_position_embeddings=131072, mlp_bias=False, num_attention_heads=32,
        num_hidden_layers=32, num_key_value_heads=8, pretraining_tp=1, rms_norm_eps=1e-05,
        rope_scaling=dict(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                          original_max_position_embeddings=8192, rope_type='llama3'),
        rope_theta=500000.0, tie_word_embeddings=False, torch_dtype='bfloat16', transformers_version='4.43.0.dev0',
        use_cache=True, vocab_size=128256)),
    # Copies: AI-Hypercomputer/maxtext hf_model_configs.py qwen3_0_6b_config (every architecture field).
    'qwen3_0_6b': ('Qwen/Qwen3-0.6B', dict(
        _QWEN3, hidden_size=1024, intermediate_size=3072, max_window_layers=28, num_attention_heads=16,
        num_hidden_layers=28, num_key_value_heads=8, tie_word_embeddings=True, use_cache=True)),
    # Copies: a KV-cache planner's "Qwen/Qwen3-1.7B (config.json, fields the planner reads)" (every
    # architecture field).
    'qwen3_1_7b': ('Qwen/Qwen3-1.7B', dict(
        _QWEN3, hidden_size=2048, intermediate_size=6144, max_window_layers=28, num_attention_heads=16,
        num_hidden_layers=28, num_key_value_heads=8, tie_word_embeddings=True, use_cache=True)),
    # Copies: citsjtu2020/LLM-Prof sglang/Model_Config.md ("Qwen3-4B", full file); maxtext qwen3_4b_config.
    'qwen3_4b': ('Qwen/Qwen3-4B', dict(
        _QWEN3, attention_dropout=0, hidden_size=2560, intermediate_size=9728, max_window_layers=36,
        num_attention_heads=32, num_hidden_layers=36, num_key_value_heads=8, tie_word_embeddings=True,
        transformers_version='4.51.2', use_cache=False)),
    # Copies: citsjtu2020/LLM-Prof sglang/Model_Config.md ("Qwen3-8B", full file); maxtext qwen3_8b_config.
    'qwen3_8b': ('Qwen/Qwen3-8B', dict(
        _QWEN3, hidden_size=4096, intermediate_size=12288, max_window_layers=36, num_attention_heads=32,
        num_hidden_layers=36, num_key_value_heads=8, tie_word_embeddings=False, use_cache=True)),
}


def published_config(name: str, **overrides: Any) -> ModelConfig:
  """The ModelConfig of a published checkpoint; overrides replace keys of its config.json."""
  hub_id, config_json = PUBLISHED[name]
  unknown = sorted(set(overrides) - set(config_json))
  if unknown:
    raise ValueError(f'preset {name} ({hub_id} config.json) has no keys {unknown}; overridable keys: '
                     f'{sorted(config_json)}')
  return hf.config_from_hf(dict(config_json, **overrides), where=f'preset {name} ({hub_id} config.json)')


for _name in PUBLISHED:
  register_preset(_name)(functools.partial(published_config, _name))
