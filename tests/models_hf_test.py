"""from_pretrained / save_pretrained against transformers on tiny random checkpoints."""

import json
import os

import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import save_file
from safetensors import safe_open

from rl_reason import models

IMAGE = 90


def _vl_hf(tmp_path):
  torch.manual_seed(0)
  cfg = transformers.Qwen2_5_VLConfig(
      text_config=dict(vocab_size=97, hidden_size=48, intermediate_size=80, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5,
                       rope_parameters=dict(rope_type='default', rope_theta=10000.0, mrope_section=[2, 2, 2])),
      vision_config=dict(depth=2, hidden_size=32, intermediate_size=40, num_heads=2, patch_size=4,
                         window_size=16, fullatt_block_indexes=[1], out_hidden_size=48),
      image_token_id=IMAGE, vision_start_token_id=91, video_token_id=92, vision_end_token_id=93,
      bos_token_id=1, eos_token_id=2)
  hf = transformers.Qwen2_5_VLForConditionalGeneration(cfg).eval()
  path = str(tmp_path / 'hf_vl')
  hf.save_pretrained(path)
  return hf, path


def _vl_inputs():
  grids = np.array([[1, 4, 8], [1, 4, 4]])
  rows = [[5, 91] + [IMAGE] * 8 + [93, 7, 8], [3, 4, 91] + [IMAGE] * 4 + [93, 6]]
  ids = np.zeros((2, 13), np.int64)
  mask = np.zeros((2, 13), np.int64)
  for r, row in enumerate(rows):
    ids[r, 13 - len(row):] = row
    mask[r, 13 - len(row):] = 1
  pixels = np.random.RandomState(1).randn(48, 3 * 2 * 4 * 4).astype(np.float32)
  return ids, mask, pixels, grids


def _hf_logits(hf, ids, mask, pixels, grids):
  with torch.no_grad():
    return hf(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), pixel_values=torch.tensor(pixels),
              image_grid_thw=torch.tensor(grids),
              mm_token_type_ids=torch.tensor((ids == IMAGE).astype(np.int64))).logits.numpy()


def test_qwen2_5_vl_from_pretrained_matches_transformers(tmp_path):
  hf, path = _vl_hf(tmp_path)
  ours = models.from_pretrained(path)
  assert ours.cfg.text.rms_norm_eps == 1e-5 and ours.cfg.text.mrope_section == (2, 2, 2)
  ids, mask, pixels, grids = _vl_inputs()
  got = np.asarray(models.forward(ours, ids, mask, pixel_values=pixels, image_grid_thw=grids))
  real = mask.astype(bool)
  assert np.abs(got[real] - _hf_logits(hf, ids, mask, pixels, grids)[real]).max() < 1e-4


@pytest.mark.parametrize('max_shard_bytes', [2 * 1024**3, 20_000])
def test_round_trip_through_save_pretrained(tmp_path, max_shard_bytes):
  _, path = _vl_hf(tmp_path)
  ours = models.from_pretrained(path)
  out = str(tmp_path / 'ours')
  models.save_pretrained(ours, out, max_shard_bytes=max_shard_bytes)
  assert os.path.exists(os.path.join(out, 'model.safetensors.index.json')) == (max_shard_bytes < 1e6)
  reloaded = transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained(out).eval()
  ids, mask, pixels, grids = _vl_inputs()
  got = np.asarray(models.forward(ours, ids, mask, pixel_values=pixels, image_grid_thw=grids))
  real = mask.astype(bool)
  assert np.abs(got[real] - _hf_logits(reloaded, ids, mask, pixels, grids)[real]).max() < 1e-4


def test_qwen2_text_round_trip(tmp_path):
  torch.manual_seed(0)
  hf = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(
      vocab_size=71, hidden_size=40, intermediate_size=56, num_hidden_layers=3, num_attention_heads=4,
      num_key_value_heads=2, tie_word_embeddings=True)).eval()
  hf.save_pretrained(str(tmp_path / 'hf'))
  ours = models.from_pretrained(str(tmp_path / 'hf'))
  ids = np.array([[0, 0, 5, 6, 7], [3, 4, 5, 6, 7]])
  mask = (np.arange(5)[None] >= np.array([[2], [0]])).astype(np.int64)
  with torch.no_grad():
    expected = hf(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                  position_ids=torch.tensor(np.maximum(np.cumsum(mask, 1) - 1, 0))).logits.numpy()
  got = np.asarray(models.forward(ours, ids, mask))
  assert np.abs(got[mask > 0] - expected[mask > 0]).max() < 1e-4
  models.save_pretrained(ours, str(tmp_path / 'ours'))
  again = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / 'ours')).eval()
  with torch.no_grad():
    np.testing.assert_allclose(again(input_ids=torch.tensor(ids[1:])).logits.numpy(), got[1:], atol=1e-4)


def test_bad_checkpoints_are_named(tmp_path):
  _, path = _vl_hf(tmp_path)
  with open(os.path.join(path, 'config.json')) as f:
    config = json.load(f)
  with safe_open(os.path.join(path, 'model.safetensors'), 'np') as f:
    tensors = {k: f.get_tensor(k) for k in f.keys()}

  def write(name, cfg, tensors_):
    d = tmp_path / name
    d.mkdir()
    (d / 'config.json').write_text(json.dumps(cfg))
    if tensors_ is not None:
      save_file(tensors_, str(d / 'model.safetensors'))
    return str(d)

  missing = {k: v for k, v in tensors.items() if not k.endswith('layers.1.mlp.up_proj.weight')}
  with pytest.raises(ValueError, match='missing.*layers.1.mlp.up_proj.weight'):
    models.from_pretrained(write('missing', config, missing))
  with pytest.raises(ValueError, match='unexpected.*extra.weight'):
    models.from_pretrained(write('unexpected', config, dict(tensors, **{'extra.weight': np.zeros(2, np.float32)})))
  bad_shape = dict(tensors)
  key = next(k for k in tensors if k.endswith('norm.weight'))
  bad_shape[key] = np.zeros(3, np.float32)
  with pytest.raises(ValueError, match='shape'):
    models.from_pretrained(write('shape', config, bad_shape))
  with pytest.raises(ValueError, match="model_type 'gpt2'"):
    models.from_pretrained(write('type', dict(config, model_type='gpt2'), tensors))
  rope = json.loads(json.dumps(config))
  rope['text_config']['rope_parameters']['rope_type'] = 'yarn'
  with pytest.raises(ValueError, match="rope type 'yarn'"):
    models.from_pretrained(write('rope', rope, tensors))
  pickled = write('pickle', config, None)
  (tmp_path / 'pickle' / 'pytorch_model.bin').write_bytes(b'not to be unpickled')
  with pytest.raises(ValueError, match='pytorch_model.bin.*never unpickled'):
    models.from_pretrained(pickled)
