"""What the decode loop could reach with free attention: a ceiling for any attention kernel.

    python benchmarks/decode_ceiling.py --out /tmp/ceiling.json            # 20M, batch 64, 128 tokens
    python benchmarks/decode_ceiling.py --model tiny --batch 2 --new_tokens 16 --pairs 1 --out /tmp/c.json

Times `benchmarks/sampler.py`'s decode loop (PhaseTimer: decode steps 1 .. N-1, prefill apart) of the
same random weights and prompts twice: as it is ('attention'), and with every decode step's
attention replaced by a stand-in that still writes the new keys and values into the cache but
never reads it ('no_attention': the output projection of (q + v_new) / 2, the same matmuls).
No attention kernel can make the loop faster than the second, so its FLOP fraction is the ceiling
of the first. FLOPs and the dense rate are sampler.py's (`decode_flops`: 2 x params per token plus
attention; a 2048^2 matmul of the same dtype, timed beside each decode call). Each variant runs in
a process of its own (JAX's compilation caches key on the model, not on the patched method), the
two alternating `--pairs` times; the JSON holds every call and the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

VARIANTS = ('attention', 'no_attention')


def _worker(args: argparse.Namespace) -> dict:
  """One process: the decode loop's median time and FLOP fraction for one variant."""
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  import sampler as bench  # pylint: disable=g-import-not-at-top
  from rl_reason import models  # pylint: disable=g-import-not-at-top
  from rl_reason.models import decoder  # pylint: disable=g-import-not-at-top

  if args.variant == 'no_attention':
    with_attention = decoder.Attention.__call__

    def cache_write_only(self, x, cos, sin, mask, kv=None, layer=None, write=None, queries=None):
      if kv is None or x.shape[1] != 1:  # the prefill (and cache-less passes) keep their attention
        return with_attention(self, x, cos, sin, mask, kv, layer, write, queries)
      batch = x.shape[0]
      q = self.q_proj(x)
      k = self.k_proj(x).reshape(batch, 1, self.num_kv_heads, self.head_dim)
      v = self.v_proj(x).reshape(batch, 1, self.num_kv_heads, self.head_dim)
      rows, slots = write
      kv = (decoder._write(kv[0], k, layer, rows, slots, keys=True),  # pylint: disable=protected-access
            decoder._write(kv[1], v, layer, rows, slots, keys=False))  # pylint: disable=protected-access
      values = jnp.tile(v.reshape(batch, 1, -1), (1, 1, self.num_heads // self.num_kv_heads))
      return self.o_proj((q + values) * 0.5), kv

    decoder.Attention.__call__ = cache_write_only
  cfg = bench.text_configs(args.dtype)[args.model]
  model = models.create(cfg, seed=0)
  ids, mask = bench.prompts(args.batch, args.prompt_len, cfg.text.vocab_size)
  timer = bench.PhaseTimer(model, ids, mask, args.new_tokens, temperature=1.0)
  a = jnp.ones((2048, 2048), jnp.dtype(args.dtype))
  dot = jax.jit(lambda m: m @ m)
  jax.block_until_ready(dot(a))
  timer()  # compiles
  dense = []
  for _ in range(args.repeats):
    timer()
    start = time.perf_counter()
    for _ in range(5):
      jax.block_until_ready(dot(a))
    dense.append(2 * 2048**3 / ((time.perf_counter() - start) / 5))
  decode_s = timer.medians()['decode_s']
  # what the variant generates: the stand-in must change the tokens, or it did not replace the attention
  tokens = timer.request.decode(timer.request.prefill(0)).tokens
  checksum = int(jnp.sum(jnp.asarray(tokens, jnp.int32) * (1 + jnp.arange(tokens.shape[-1]))))
  flops = bench.decode_flops(cfg, models.param_count(model), mask.sum(axis=1), args.new_tokens) / decode_s
  return dict(variant=args.variant, decode_s=decode_s, decode_calls_s=timer.decode_s[1:], tokens_checksum=checksum,
              flops_per_s=flops, dense_flops_per_s=statistics.median(dense),
              fraction_of_dense=flops / statistics.median(dense))


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--out', default='decode_ceiling.json', help='JSON output path')
  parser.add_argument('--model', default='qwen2_20m', help='a config of benchmarks/sampler.py (tiny, qwen2_20m)')
  parser.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16'))
  parser.add_argument('--batch', type=int, default=64)
  parser.add_argument('--prompt_len', type=int, default=64)
  parser.add_argument('--new_tokens', type=int, default=128)
  parser.add_argument('--repeats', type=int, default=5, help='timed decode calls per process (median)')
  parser.add_argument('--pairs', type=int, default=4, help='alternating (attention, no_attention) processes')
  parser.add_argument('--variant', choices=VARIANTS, help=argparse.SUPPRESS)  # a worker process
  args = parser.parse_args(argv)
  if min(args.batch, args.prompt_len, args.repeats, args.pairs) < 1 or args.new_tokens < 2:
    parser.error('batch, prompt_len, repeats and pairs must be >= 1 and new_tokens >= 2')
  return args


def main(argv=None) -> None:
  args = parse_args(argv)
  if args.variant:
    with open(args.out, 'w') as f:
      json.dump(_worker(args), f)
    return
  runs = {variant: [] for variant in VARIANTS}
  for pair in range(args.pairs):
    for variant in VARIANTS:
      out = f'{args.out}.{variant}.{pair}.json'
      command = [sys.executable, os.path.abspath(__file__), '--variant', variant, '--out', out, '--model', args.model,
                 '--dtype', args.dtype, '--batch', str(args.batch), '--prompt_len', str(args.prompt_len),
                 '--new_tokens', str(args.new_tokens), '--repeats', str(args.repeats)]
      done = subprocess.run(command, capture_output=True, text=True)
      if done.returncode:
        raise SystemExit(f'{variant} process failed:\n{done.stderr[-3000:]}')
      with open(out) as f:
        runs[variant].append(json.load(f))
      os.remove(out)
  medians = {variant: dict(decode_s=statistics.median(r['decode_s'] for r in rows),
                           fraction_of_dense=statistics.median(r['fraction_of_dense'] for r in rows))
             for variant, rows in runs.items()}
  result = dict(settings={k: v for k, v in vars(args).items() if k != 'variant'}, runs=runs, medians=medians)
  with open(args.out, 'w') as f:
    json.dump(result, f, indent=1)
  print(f'{args.model} batch {args.batch}, {args.new_tokens} new tokens, {args.pairs} process pairs:')
  for variant, m in medians.items():
    fractions = ', '.join(f'{r["fraction_of_dense"]:.2f}' for r in runs[variant])
    print(f'  {variant:<13} decode {m["decode_s"] * 1e3:8.1f} ms   FLOP frac {m["fraction_of_dense"]:.2f} '
          f'(per process: {fractions})')


if __name__ == '__main__':
  main()
