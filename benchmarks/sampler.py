"""Sampler speed: rl_reason (KV cache), rl_reason without a KV cache, and transformers `generate`.

    python benchmarks/sampler.py --out /tmp/sampler.json          # full run: use an idle machine
    python benchmarks/sampler.py --quick --out /tmp/quick.json    # smoke run (seconds)

Every implementation runs the same random weights (ours, exported with models.save_pretrained and
loaded by transformers), the same left-padded prompts and the same settings (temperature sampling,
no truncation, no EOS: every row generates exactly the requested tokens). Times are medians over
--repeats runs after one warm-up run; compile time is the warm-up run minus that median (for
transformers: its first-call overhead). Throughput counts generated tokens per second, prefill
included. Per-token decode time at n tokens is the decode loop's time / (n - 1) (rl_reason times its
prefill and decode phases separately; for transformers decode = t(n) - t(1)). The achieved fraction of
the machine's dense matmul FLOP/s (a large jnp.dot in the same dtype) counts the decode loop's
useful FLOPs: 2 * params per token plus attention (4 * layers * heads * head_dim * context).

transformers runs in a process of its own (this script with --transformers_worker), with torch
using every core and no JAX runtime beside it, so neither library's thread pool slows the other.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rl_reason import models, sampling
from rl_reason.models import config as model_config

DTYPE = 'float32'


def text_configs() -> dict[str, model_config.ModelConfig]:
  """The tiny preset's decoder (tiny_vl's text part, as a text-only qwen2) and a ~20M-parameter qwen2."""
  tiny = models.get_preset('tiny_vl').text
  tiny = model_config.TextConfig(
      vocab_size=tiny.vocab_size, hidden_size=tiny.hidden_size, intermediate_size=tiny.intermediate_size,
      num_hidden_layers=tiny.num_hidden_layers, num_attention_heads=tiny.num_attention_heads,
      num_key_value_heads=tiny.num_key_value_heads, rope_theta=tiny.rope_theta, mrope_section=None,
      tie_word_embeddings=tiny.tie_word_embeddings)
  small = model_config.TextConfig(vocab_size=20480, hidden_size=384, intermediate_size=1024, num_hidden_layers=8,
                                  num_attention_heads=6, num_key_value_heads=2, rope_theta=10000.0,
                                  mrope_section=None, tie_word_embeddings=True)
  return {name: model_config.ModelConfig(text=text, dtype=DTYPE, param_dtype=DTYPE)
          for name, text in (('tiny', tiny), ('qwen2_20m', small))}


def prompts(batch: int, length: int, vocab: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Left-padded random prompts of length//2 .. length real tokens."""
  rng = np.random.RandomState(seed)
  ids = np.zeros((batch, length), np.int64)
  mask = np.zeros_like(ids)
  for row, n in enumerate(rng.randint(max(1, length // 2), length + 1, batch)):
    ids[row, length - n:] = rng.randint(1, vocab, n)
    mask[row, length - n:] = 1
  return ids, mask


def timed(fn: Callable[[], Any], repeats: int) -> dict[str, Any]:
  """First call (compile / warm-up) and the median of `repeats` further calls, in seconds."""
  start = time.perf_counter()
  fn()
  first = time.perf_counter() - start
  runs = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    runs.append(time.perf_counter() - start)
  median = statistics.median(runs)
  return dict(compile_s=max(first - median, 0.0), run_s=median, runs_s=runs)


# ---------------------------------------------------------------------------------------------- rl_reason


def rl_reason_fn(model, ids, mask, new_tokens: int, temperature: float) -> Callable[[], Any]:
  """The public path, end to end: sampling.generate (host padding included)."""
  def run():
    out = sampling.generate(model, ids, mask, max_new_tokens=new_tokens, temperature=temperature, rng=0)
    return jax.block_until_ready(out.tokens)
  return run


def rl_reason_phases(model, ids, mask, new_tokens: int, temperature: float, repeats: int) -> dict[str, float]:
  """Median prefill (+ first token) and decode-loop seconds, each timed on its own."""
  request = sampling.prepare_generation(model, ids, mask, max_new_tokens=new_tokens, temperature=temperature)
  prefill, decode = [], []
  for _ in range(repeats + 1):  # the first round compiles
    start = time.perf_counter()
    state = jax.block_until_ready(request.prefill(0))
    middle = time.perf_counter()
    jax.block_until_ready(request.decode(state, 0).tokens)
    prefill.append(middle - start)
    decode.append(time.perf_counter() - middle)
  return dict(prefill_s=statistics.median(prefill[1:]), decode_s=statistics.median(decode[1:]))


def no_cache_fn(model, ids, mask, new_tokens: int, temperature: float, chunk: int) -> Callable[[], Any]:
  """Recomputes the whole prefix for every token (no KV cache).

  The token buffer [B, T + N] is processed up to the current length rounded up to `chunk` tokens
  (one program per chunk length; causality makes the not-yet-written slots irrelevant). Like
  generate, each run splits the model and prepares the inputs on the host.
  """
  batch, prompt_len = ids.shape
  total = prompt_len + new_tokens
  knobs = sampling.Knobs(temperature=temperature)

  @functools.partial(jax.jit, static_argnums=(0,), static_argnames=('length',))
  def segment(graphdef, params, buffer, positions, attention, step, stop, rng, length):
    net = nnx.merge(graphdef, params)
    pos, att = positions[:, :, :length], attention[:, :length]

    def body(carry):
      buf, s = carry
      hidden, _ = net.decoder(net.embed(buf[:, :length]), pos, att)  # [B, length, D]
      last = jax.lax.dynamic_slice_in_dim(hidden, prompt_len + s - 1, 1, axis=1)
      logits = net.decoder.logits(last)[:, 0]
      token = sampling.sample_tokens(logits, jax.random.fold_in(rng, s), knobs)
      return jax.lax.dynamic_update_slice(buf, token[:, None], (0, prompt_len + s)), s + 1

    return jax.lax.while_loop(lambda c: c[1] < stop, body, (buffer, step))[0]

  def run():
    graphdef, params = nnx.split(model)
    inputs = models.prepare_inputs(model.cfg, ids, mask)
    next_position = inputs['positions'].max(axis=(0, 2)) + 1  # [B]
    generated = next_position[None, :, None] + np.arange(new_tokens)[None, None, :]  # [1, B, N]
    positions = np.concatenate([inputs['positions'], np.broadcast_to(generated, (3, batch, new_tokens))], 2)
    attention = np.concatenate([inputs['attention_mask'], np.ones((batch, new_tokens), np.int32)], 1)
    buffer = np.concatenate([inputs['input_ids'], np.zeros((batch, new_tokens), np.int32)], 1)
    rng = jax.random.key(0)
    step = 0
    while step < new_tokens:
      length = min(total, -(-(prompt_len + step + 1) // chunk) * chunk)  # holds the tokens fed this segment
      stop = min(new_tokens, length - prompt_len)
      buffer = segment(graphdef, params, buffer, positions.astype(np.int32), attention, np.int32(step),
                       np.int32(stop), rng, length=length)
      step = stop
    return jax.block_until_ready(buffer)
  return run


# ---------------------------------------------------------------------------------------------- transformers


def transformers_fn(hf_model, ids, mask, new_tokens: int, temperature: float) -> Callable[[], Any]:
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  config = transformers.GenerationConfig(do_sample=True, temperature=temperature, top_k=0, top_p=1.0,
                                         max_new_tokens=new_tokens, min_new_tokens=new_tokens, eos_token_id=None,
                                         pad_token_id=0, bos_token_id=None)
  input_ids, attention_mask = torch.tensor(ids), torch.tensor(mask)

  def run():
    with torch.no_grad():
      out = hf_model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=config)
    assert out.shape == (ids.shape[0], ids.shape[1] + new_tokens), out.shape
    return out
  return run


def transformers_worker(spec_path: str) -> None:
  """Child process: times transformers generate for every job of the spec; writes the timings JSON.

  spec: {model_dir, threads, repeats, temperature, prompts (npz path), jobs: [{key, new_tokens}],
  out}; the npz holds ids_<key> and mask_<key>.
  """
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  with open(spec_path) as f:
    spec = json.load(f)
  torch.set_num_threads(spec['threads'])
  transformers.logging.set_verbosity_error()
  hf_model = transformers.AutoModelForCausalLM.from_pretrained(spec['model_dir'], dtype=torch.float32).eval()
  arrays = np.load(spec['prompts'])
  results = []
  for job in spec['jobs']:
    ids, mask = arrays[f'ids_{job["key"]}'], arrays[f'mask_{job["key"]}']
    timing = timed(transformers_fn(hf_model, ids, mask, job['new_tokens'], spec['temperature']), spec['repeats'])
    results.append(dict(job, **timing))
  with open(spec['out'], 'w') as f:
    json.dump(dict(results=results, torch_threads=torch.get_num_threads(), torch_version=torch.__version__,
                   transformers_version=transformers.__version__), f)


def run_transformers(model_dir: str, prompt_sets: dict[str, tuple[np.ndarray, np.ndarray]],
                     jobs: list[dict[str, Any]], *, threads: int, repeats: int, temperature: float) -> dict[str, Any]:
  """Runs transformers_worker in a fresh Python process; returns its timings keyed (key, new_tokens)."""
  with tempfile.TemporaryDirectory() as tmp:
    np.savez(os.path.join(tmp, 'prompts.npz'),
             **{f'{kind}_{key}': array for key, pair in prompt_sets.items() for kind, array in zip(('ids', 'mask'), pair)})
    spec = dict(model_dir=model_dir, threads=threads, repeats=repeats, temperature=temperature,
                prompts=os.path.join(tmp, 'prompts.npz'), jobs=jobs, out=os.path.join(tmp, 'timings.json'))
    with open(os.path.join(tmp, 'spec.json'), 'w') as f:
      json.dump(spec, f)
    env = dict(os.environ, JAX_PLATFORMS='cpu')
    subprocess.run([sys.executable, os.path.abspath(__file__), '--transformers_worker', os.path.join(tmp, 'spec.json')],
                   check=True, env=env)
    with open(spec['out']) as f:
      out = json.load(f)
  out['timings'] = {(r['key'], r['new_tokens']): r for r in out.pop('results')}
  return out


# ---------------------------------------------------------------------------------------------- FLOPs


def matmul_flops_per_s(n: int, repeats: int) -> float:
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.dtype(DTYPE))
  b = jax.random.normal(jax.random.key(1), (n, n), jnp.dtype(DTYPE))
  dot = jax.jit(jnp.dot)
  t = timed(lambda: jax.block_until_ready(dot(a, b)), max(repeats, 3))
  return 2 * n**3 / min(t['runs_s'])  # the best run: what the machine can do


def decode_flops(cfg: model_config.ModelConfig, params: int, prompt_lengths: np.ndarray, new_tokens: int) -> float:
  """Useful FLOPs of decode steps 1 .. N-1 (step 0 comes from the prefill)."""
  text = cfg.text
  steps = np.arange(1, new_tokens)
  context = (prompt_lengths[:, None] + steps[None, :] + 1).sum()  # keys each decoded token attends to
  attention = 4 * text.num_hidden_layers * text.num_attention_heads * text.dim_per_head * context
  return 2.0 * params * len(prompt_lengths) * len(steps) + attention


# ---------------------------------------------------------------------------------------------- main


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--out', default='sampler_benchmark.json', help='JSON output path')
  parser.add_argument('--repeats', type=int, default=5, help='timed runs per measurement (median)')
  parser.add_argument('--quick', action='store_true', help='smoke run: tiny model, batch 2, few tokens')
  parser.add_argument('--models', default=None, help='comma-separated subset of ' + ','.join(text_configs()))
  parser.add_argument('--prompt_len', type=int, default=64, help='prompt bucket (real lengths T/2 .. T)')
  parser.add_argument('--torch_threads', type=int, default=os.cpu_count(),
                      help='torch intra-op threads for transformers (default: os.cpu_count())')
  parser.add_argument('--temperature', type=float, default=1.0, help='sampling temperature (no truncation)')
  parser.add_argument('--no_cache_max_batch', type=int, default=1 << 30,
                      help='run the no-KV-cache baseline only up to this batch (it is slow: minutes per run)')
  args = parser.parse_args(argv)
  if args.quick:
    args.repeats = min(args.repeats, 2)
    args.models = args.models or 'tiny'
    args.prompt_len = min(args.prompt_len, 16)
    args.batches, args.new_tokens, args.per_token_lengths = (2,), 8, (8, 16)
    args.matmul_n, args.no_cache_chunk, args.per_token_batch = 256, 8, 2
  else:
    args.batches, args.new_tokens, args.per_token_lengths = (8, 64), 128, (64, 256, 1024)
    args.matmul_n, args.no_cache_chunk, args.per_token_batch = 2048, 64, 8
  args.models = (args.models or ','.join(text_configs())).split(',')
  unknown = sorted(set(args.models) - set(text_configs()))
  if unknown:
    parser.error(f'--models {unknown} unknown; choose from {sorted(text_configs())}')
  if args.repeats < 1:
    parser.error('--repeats must be >= 1')
  return args


def main(argv=None) -> dict[str, Any]:
  args = parse_args(argv)
  peak = matmul_flops_per_s(args.matmul_n, args.repeats)
  result: dict[str, Any] = dict(
      settings=dict(quick=args.quick, repeats=args.repeats, prompt_len=args.prompt_len, new_tokens=args.new_tokens,
                    batches=list(args.batches), per_token_lengths=list(args.per_token_lengths),
                    per_token_batch=args.per_token_batch, temperature=args.temperature, dtype=DTYPE,
                    no_cache_chunk=args.no_cache_chunk, cpu_count=os.cpu_count(), torch_threads=args.torch_threads,
                    transformers_process='separate', jax_backend=jax.default_backend(),
                    jax_devices=[str(d) for d in jax.devices()], platform=platform.platform(),
                    jax_version=jax.__version__),
      matmul=dict(n=args.matmul_n, dtype=DTYPE, flops_per_s=peak),
      throughput=[], per_token_decode=[], ratios={})
  for name in args.models:
    cfg = text_configs()[name]
    model = models.create(cfg, seed=0)
    params = models.param_count(model)
    prompt_sets = {f'b{batch}': prompts(batch, args.prompt_len, cfg.text.vocab_size) for batch in args.batches}
    prompt_sets['per_token'] = prompts(args.per_token_batch, args.prompt_len, cfg.text.vocab_size, seed=1)
    jobs = [dict(key=f'b{batch}', new_tokens=n) for batch in args.batches for n in (args.new_tokens, 1)]
    jobs += [dict(key='per_token', new_tokens=n) for n in (1, *args.per_token_lengths)]
    with tempfile.TemporaryDirectory() as tmp:
      models.save_pretrained(model, tmp)
      hf = run_transformers(tmp, prompt_sets, jobs, threads=args.torch_threads, repeats=args.repeats,
                            temperature=args.temperature)
    result['settings'].update(torch_threads=hf['torch_threads'], torch_version=hf['torch_version'],
                              transformers_version=hf['transformers_version'])
    hf_run = lambda key, n: hf['timings'][(key, n)]
    for batch in args.batches:
      ids, mask = prompt_sets[f'b{batch}']
      runners = {'rl_reason': rl_reason_fn(model, ids, mask, args.new_tokens, args.temperature)}
      if batch <= args.no_cache_max_batch:
        runners['rl_reason_no_cache'] = no_cache_fn(model, ids, mask, args.new_tokens, args.temperature,
                                                    args.no_cache_chunk)
      flops = decode_flops(cfg, params, mask.sum(1), args.new_tokens)
      rows = {}
      for impl in (*runners, 'transformers'):
        t = timed(runners[impl], args.repeats) if impl in runners else {
            k: v for k, v in hf_run(f'b{batch}', args.new_tokens).items() if k in ('compile_s', 'run_s', 'runs_s')}
        row = dict(model=name, params=params, batch=batch, new_tokens=args.new_tokens, impl=impl, **t,
                   tokens_per_s=batch * args.new_tokens / t['run_s'])
        if impl == 'rl_reason':
          row.update(rl_reason_phases(model, ids, mask, args.new_tokens, args.temperature, args.repeats))
        elif impl == 'transformers':  # no separate phases: decode = run - (prefill + first token)
          row['prefill_s'] = hf_run(f'b{batch}', 1)['run_s']
          row['decode_s'] = max(t['run_s'] - row['prefill_s'], 1e-9)
        if 'decode_s' in row:
          row['decode_flops'] = flops
          row['decode_flop_fraction'] = flops / row['decode_s'] / peak
        rows[impl] = row
        result['throughput'].append(row)
        print(f'{name:10s} b={batch:<3d} {impl:19s} {row["tokens_per_s"]:10.1f} tok/s  run {t["run_s"]:.3f}s  '
              f'compile {t["compile_s"]:.2f}s', flush=True)
      result['ratios'][f'{name}/b{batch}'] = dict(
          rl_reason_vs_transformers=rows['rl_reason']['tokens_per_s'] / rows['transformers']['tokens_per_s'],
          rl_reason_vs_no_cache=(rows['rl_reason']['tokens_per_s'] / rows['rl_reason_no_cache']['tokens_per_s']
                                 if 'rl_reason_no_cache' in rows else float('nan')))
    ids, mask = prompt_sets['per_token']
    for n in args.per_token_lengths:
      phases = rl_reason_phases(model, ids, mask, n, args.temperature, args.repeats)
      hf_decode = max(hf_run('per_token', n)['run_s'] - hf_run('per_token', 1)['run_s'], 0.0)
      for impl, seconds in (('rl_reason', phases['decode_s']), ('transformers', hf_decode)):
        result['per_token_decode'].append(dict(model=name, batch=args.per_token_batch, impl=impl, new_tokens=n,
                                               per_token_ms=seconds / (n - 1) * 1e3, decode_s=seconds))
        print(f'{name:10s} b={args.per_token_batch:<3d} {impl:19s} {n:5d} tokens: {seconds / (n - 1) * 1e3:8.3f} '
              'ms/token', flush=True)
  print(format_table(result))
  with open(args.out, 'w') as f:
    json.dump(result, f, indent=2)
  print(f'wrote {args.out}')
  return result


def format_table(result: dict[str, Any]) -> str:
  lines = [f'dense matmul ({result["matmul"]["n"]}^2, {result["matmul"]["dtype"]}): '
           f'{result["matmul"]["flops_per_s"] / 1e9:.1f} GFLOP/s', '',
           f'{"model":10s} {"params":>9s} {"batch":>5s} {"impl":19s} {"tok/s":>10s} {"run s":>8s} {"compile s":>9s} '
           f'{"FLOP frac":>9s}']
  for row in result['throughput']:
    frac = f'{row["decode_flop_fraction"]:9.4f}' if 'decode_flop_fraction' in row else f'{"-":>9s}'
    lines.append(f'{row["model"]:10s} {row["params"]:9d} {row["batch"]:5d} {row["impl"]:19s} '
                 f'{row["tokens_per_s"]:10.1f} {row["run_s"]:8.3f} {row["compile_s"]:9.2f} {frac}')
  lines += ['', f'{"model":10s} {"batch":>5s} {"impl":19s} {"tokens":>6s} {"ms/token":>9s}']
  for row in result['per_token_decode']:
    lines.append(f'{row["model"]:10s} {row["batch"]:5d} {row["impl"]:19s} {row["new_tokens"]:6d} '
                 f'{row["per_token_ms"]:9.3f}')
  lines += ['', 'ratios (tokens/s):']
  for key, ratio in result['ratios'].items():
    lines.append(f'  {key:18s} rl_reason / transformers {ratio["rl_reason_vs_transformers"]:7.2f}x   '
                 f'rl_reason / no cache {ratio["rl_reason_vs_no_cache"]:7.2f}x')
  return '\n'.join(lines)


if __name__ == '__main__':
  if len(sys.argv) == 3 and sys.argv[1] == '--transformers_worker':
    transformers_worker(sys.argv[2])
  else:
    sys.exit(0 if main() else 1)
