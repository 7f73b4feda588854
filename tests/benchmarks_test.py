"""benchmarks/sampler.py --quick runs and writes the JSON it promises (keys, positive numbers)."""

import json
import math
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _positive(value) -> bool:
  return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.mark.slow  # ~45 s on 2 shared cores (a transformers model load and several compilations)
def test_sampler_benchmark_quick(tmp_path):
  out = tmp_path / 'sampler.json'
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}  # one CPU device, as a user runs it
  # --cpu_devices 2: rl_reason is timed on one device and with its rows split over two CPU devices;
  # --dtype bfloat16: both libraries' weights, activations and caches, and the dense matmul
  done = subprocess.run([sys.executable, os.path.join(ROOT, 'benchmarks', 'sampler.py'), '--quick', '--out', str(out),
                         '--torch_threads', '1', '--cpu_devices', '2', '--dtype', 'bfloat16', '--batches', '2,4'],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
  assert 'rl_reason / transformers' in done.stdout and 'ms/token' in done.stdout
  result = json.loads(out.read_text())
  assert set(result) == {'settings', 'matmul', 'memory', 'throughput', 'per_token_decode', 'per_token_growth',
                         'ratios', 'weight_matmuls'}
  assert result['settings']['batches'] == [2, 4]
  assert {(r['model'], r['batch']) for r in result['weight_matmuls']} == {
      (r['model'], r['batch']) for r in result['throughput']}
  memory_rate = result['memory']['read_bytes_per_s']
  assert _positive(memory_rate)
  for row in result['weight_matmuls']:
    assert _positive(row['flops_per_s']) and row['fraction_of_dense'] == row['flops_per_s'] / result['matmul']['flops_per_s']
    assert _positive(row['fraction_of_dense_per_round'])
    assert _positive(row['cache_read_bytes']) and row['bound_decode_s'] > row['cache_read_bytes'] / memory_rate
    ours = next(r for r in result['throughput']
                if (r['model'], r['batch'], r['impl']) == (row['model'], row['batch'], 'rl_reason'))
    assert math.isclose(row['decode_flop_fraction_bound'],
                        ours['decode_flops'] / row['bound_decode_s'] / result['matmul']['flops_per_s'])
  assert result['settings']['quick'] is True and result['settings']['torch_threads'] == 1
  assert result['settings']['dtype'] == result['matmul']['dtype'] == 'bfloat16'
  assert result['settings']['cpu_devices'] == 2 and len(result['settings']['jax_devices']) == 2
  ours = ('rl_reason', 'rl_reason_2_devices')
  assert _positive(result['matmul']['flops_per_s'])
  impls = {row['impl'] for row in result['throughput']}
  assert impls == {*ours, 'rl_reason_no_cache', 'transformers'}
  for row in result['throughput']:
    for key in ('params', 'batch', 'new_tokens', 'run_s', 'tokens_per_s'):
      assert _positive(row[key]), (row['impl'], key, row[key])
    assert row['compile_s'] >= 0 and len(row['runs_s']) == result['settings']['repeats']
    if row['impl'] != 'rl_reason_no_cache':
      for key in ('prefill_s', 'decode_s', 'decode_flops', 'decode_flop_fraction',
                  'decode_flop_fraction_of_weight_matmuls'):
        assert _positive(row[key]), (row['impl'], key, row[key])
      # the memory roofline: every weight once per decode step (tied embeddings: read once, as the LM head)
      # plus the KV-cache reads, over the decode's time and the memory read rate
      weights = next(w for w in result['weight_matmuls'] if (w['model'], w['batch']) == (row['model'], row['batch']))
      expected = row['params'] * 2 * (row['new_tokens'] - 1) + weights['cache_read_bytes']  # bfloat16
      assert math.isclose(row['decode_bytes'], expected)
      assert math.isclose(row['decode_memory_fraction'], expected / row['decode_s'] / memory_rate)
    if row['impl'] in ours:  # one fraction per round, against the dense matmul called in that round
      pairs = row['decode_flop_fraction_pairs']
      assert len(pairs) == result['settings']['repeats'] and all(map(_positive, pairs))
      assert min(pairs) <= row['decode_flop_fraction_pair_median'] <= max(pairs)
  lengths = result['settings']['per_token_lengths']
  assert {(r['impl'], r['new_tokens']) for r in result['per_token_decode']} == {
      (impl, n) for impl in (*ours, 'transformers') for n in lengths}
  for row in result['per_token_decode']:
    if row['impl'] in ours:  # timed directly; transformers' is a difference of two timings
      assert _positive(row['per_token_ms']), row
    else:
      assert row['per_token_ms'] >= 0, row
  # growth from the shortest to the longest length: the ratio of their per-token medians, and one
  # ratio per round of alternating calls
  ours_ms = {(r['impl'], r['model'], r['new_tokens']): r['per_token_ms'] for r in result['per_token_decode']
             if r['impl'] in ours}
  assert set(result['per_token_growth']) == {r['model'] for r in result['throughput']}
  for model, growth in result['per_token_growth'].items():
    assert (growth['short'], growth['long']) == (lengths[0], lengths[-1])
    for impl in ours:
      assert math.isclose(growth[impl], ours_ms[impl, model, lengths[-1]] / ours_ms[impl, model, lengths[0]])
      rounds = growth[f'{impl}_rounds']
      assert len(rounds) == result['settings']['repeats'] and all(map(_positive, rounds))
      assert min(rounds) <= growth[f'{impl}_round_median'] <= max(rounds)
  for ratio in result['ratios'].values():
    assert _positive(ratio['rl_reason_vs_no_cache'])
    for impl in ours:
      assert _positive(ratio[f'{impl}_vs_transformers'])
      # one ratio per alternating (rl_reason, transformers) pair of calls, and their median
      pairs = ratio[f'{impl}_vs_transformers_pairs']
      assert len(pairs) == result['settings']['repeats'] and all(map(_positive, pairs))
      assert min(pairs) <= ratio[f'{impl}_vs_transformers_pair_median'] <= max(pairs)


@pytest.mark.slow  # ~15 s: one tiny model, batch 2
def test_gpu_script_runs_the_sampler_benchmark_into_out(tmp_path):
  """benchmarks/gpu.sh, a device session's one call, here as a CPU smoke run (later flags override its GPU
  defaults): it writes the environment, the log and the JSON into $OUT and passes the benchmark's exit code on."""
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  env.update(OUT=str(tmp_path), PATH=os.path.dirname(sys.executable) + os.pathsep + env.get('PATH', ''))
  smoke = ['--quick', '--models', 'tiny', '--torch_device', 'cpu', '--dtype', 'float32', '--batches', '2',
           '--torch_threads', '1']
  done = subprocess.run(['bash', os.path.join(ROOT, 'benchmarks', 'gpu.sh'), *smoke], cwd=tmp_path, env=env,
                        capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
  assert sorted(os.listdir(tmp_path)) == ['env.txt', 'sampler_gpu.json', 'sampler_gpu.log']
  environment = (tmp_path / 'env.txt').read_text()
  assert 'jax ' in environment and 'transformers ' in environment
  result = json.loads((tmp_path / 'sampler_gpu.json').read_text())
  assert result['settings']['dtype'] == 'float32' and result['settings']['batches'] == [2]
  assert {row['impl'] for row in result['throughput']} == {'rl_reason', 'transformers'}  # no-cache run off
  assert 'rl_reason / transformers' in (tmp_path / 'sampler_gpu.log').read_text()
  failed = subprocess.run(['bash', os.path.join(ROOT, 'benchmarks', 'gpu.sh'), *smoke, '--models', 'nope'],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
  assert failed.returncode != 0 and 'unknown' in failed.stdout


def _bench():
  sys.path.insert(0, os.path.join(ROOT, 'benchmarks'))
  try:
    import sampler as bench  # benchmarks/sampler.py
  finally:
    sys.path.pop(0)
  return bench


def test_throughput_figures_are_on_disk_before_the_per_token_calls(tmp_path, monkeypatch):
  """A run cut short in its per-token calls (a device call's time limit) keeps its throughput rows."""
  bench = _bench()
  out = tmp_path / 'partial.json'

  def cut_short(*args, **kwargs):
    del args, kwargs
    raise RuntimeError('stopped in the per-token calls')

  monkeypatch.setattr(bench, 'measure_per_token', cut_short)
  with pytest.raises(RuntimeError, match='per-token'):
    bench.main(['--quick', '--models', 'tiny', '--batches', '2', '--torch_threads', '1', '--no_cache_max_batch', '0',
                '--out', str(out)])
  result = json.loads(out.read_text())
  assert 'throughput only' in result['partial'] and not result['per_token_decode']
  rows = {row['impl']: row for row in result['throughput']}
  assert set(rows) == {'rl_reason', 'transformers'}
  assert _positive(rows['rl_reason']['tokens_per_s']) and _positive(rows['rl_reason']['decode_memory_fraction'])


def test_accelerator_size_is_qwen2_5_half_b_shaped_and_batches_are_validated():
  from rl_reason import models
  bench = _bench()
  cfg = bench.text_configs('bfloat16')['qwen2_0_5b']
  assert models.param_count(models.create_abstract(cfg)) == 494_032_768  # Qwen2.5-0.5B's count
  assert cfg.dtype == cfg.param_dtype == 'bfloat16'
  assert bench.parse_args(['--batches', '128']).batches == (128,)
  assert bench.parse_args([]).models == list(bench.DEFAULT_MODELS)
  for bad in ('8,x', '0'):
    with pytest.raises(SystemExit):
      bench.parse_args(['--batches', bad])


def test_cache_read_bytes_counts_each_stages_slots_for_its_steps():
  """Steps 1 .. N-1 of a 128-token decode in stages of 64, 96 and 128 tokens over a 16-slot prompt bucket."""
  bench = _bench()
  from rl_reason import models, sampling
  from rl_reason.models import config as model_config
  text = model_config.TextConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                 num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0,
                                 mrope_section=None, tie_word_embeddings=True)
  model = models.create(model_config.ModelConfig(text=text, dtype='float32', param_dtype='float32'), seed=0)
  ids, mask = bench.prompts(3, 16, text.vocab_size)
  request = sampling.prepare_generation(model, ids, mask, max_new_tokens=128, temperature=1.0, num_samples=2)
  assert request.cfg.stage_capacities == (64, 96, 128)
  rows, prompt_len = request.inputs['input_ids'].shape[0] * 2, request.inputs['input_ids'].shape[1]
  slot_steps = 64 * (prompt_len + 64) + 32 * (prompt_len + 96) + 31 * (prompt_len + 128)
  per_slot = 2 * 3 * rows * 2 * (32 // 4) * 4  # k and v, layers, rows, kv heads, head dim, float32 bytes
  assert bench.cache_read_bytes(text, request, 4) == slot_steps * per_slot


def test_decode_ceiling_replaces_only_the_decode_attention(tmp_path):
  """benchmarks/decode_ceiling.py: both variants time the decode loop; the no-attention stand-in changes
  the generated tokens (so it did replace the attention) and the JSON holds every process's call."""
  out = tmp_path / 'ceiling.json'
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  done = subprocess.run([sys.executable, os.path.join(ROOT, 'benchmarks', 'decode_ceiling.py'), '--model', 'tiny',
                         '--batch', '2', '--new_tokens', '16', '--pairs', '1', '--repeats', '2', '--out', str(out)],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
  assert 'no_attention' in done.stdout and 'FLOP frac' in done.stdout
  result = json.loads(out.read_text())
  runs = result['runs']
  assert set(runs) == {'attention', 'no_attention'} and all(len(rows) == 1 for rows in runs.values())
  for rows in runs.values():
    assert _positive(rows[0]['decode_s']) and len(rows[0]['decode_calls_s']) == 2
    assert _positive(rows[0]['fraction_of_dense']) and _positive(rows[0]['dense_flops_per_s'])
  assert runs['attention'][0]['tokens_checksum'] != runs['no_attention'][0]['tokens_checksum']
  assert not list(tmp_path.glob('ceiling.json.*'))  # the workers' files are cleaned up


def test_rewards_benchmark_runs_and_writes_its_table(tmp_path):
  """benchmarks/rewards.py on a few items: one row per (case, workers), positive rates, nothing failed."""
  out = tmp_path / 'rewards.json'
  done = subprocess.run([sys.executable, os.path.join(ROOT, 'benchmarks', 'rewards.py'), '--items', '16',
                         '--repeats', '1', '--workers', '0,1', '--cases', 'jigsaw_grid,math_equiv_latex',
                         '--out', str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
  assert 'items/s' in done.stdout
  result = json.loads(out.read_text())
  assert result['settings']['items'] == 16 and result['settings']['workers'] == [0, 1]
  assert [(r['case'], r['workers']) for r in result['results']] == [
      ('jigsaw_grid', 0), ('jigsaw_grid', 1), ('math_equiv_latex', 0), ('math_equiv_latex', 1)]
  for row in result['results']:
    assert row['items'] == 16 and len(row['runs_s']) == 1
    assert _positive(row['items_per_s']) and _positive(row['median_s']) and _positive(row['first_call_s'])


def test_judge_benchmark_quick_times_the_prompts_whole_and_with_the_head_shared(tmp_path):
  """benchmarks/judge.py --quick: the shared head is split off (128 of its 130 tokens), the rest bucketed
  smaller than the whole prompts, the rl_reason runs (whole, head apart, whole in chunks of 64) agree on the
  tokens, and every timing is positive."""
  out = tmp_path / 'judge.json'
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  done = subprocess.run([sys.executable, os.path.join(ROOT, 'benchmarks', 'judge.py'), '--quick', '--torch_threads',
                         '1', '--prefill_chunk', '64', '--out', str(out)], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=600)
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
  assert 'whole / shared prefix' in done.stdout
  result = json.loads(out.read_text())
  settings = result['settings']
  assert settings['prefix_tokens'] == 128 and settings['torch_threads'] == 1
  assert settings['prefix_tokens'] + settings['rest_bucket'] >= settings['longest_prompt']
  assert settings['rest_bucket'] < settings['whole_bucket']
  assert set(result['timings']) == {'rl_reason_whole', 'rl_reason_shared_prefix', 'transformers',
                                    'rl_reason_whole_chunked'}
  for name, row in result['timings'].items():
    keys = ('seconds', 'tokens_per_s') + (('prefill_s', 'decode_s') if name != 'transformers' else ())
    assert all(_positive(row[key]) for key in keys), (name, row)
    assert len(row['runs_s']) == 2 and row['compile_s'] >= 0
  assert all(_positive(value) for value in result['ratios'].values())
  assert result['same_tokens_fraction'] > 0.9 and result['same_tokens_fraction_chunked'] > 0.9
