"""Thinking-judge generation: prompts that share a long template head, run whole and with the head run
once (a shared prefix), beside transformers' greedy `generate`.

    python benchmarks/judge.py --out /tmp/judge.json             # full run: use an idle machine
    python benchmarks/judge.py --quick --out /tmp/judge_quick.json  # smoke run (seconds)

The prompts are Trust-GRPO's judge prompts (SophiaVL-R1) in shape: --batch rows, each the --head
template tokens every row begins with, then a question and a completion of --rest_min..--rest_max
tokens (random ids, ragged), answered greedily for --new_tokens tokens (no EOS: every row generates
them all). One process times, in turns (medians of --repeats after a warm-up call):

- rl_reason_whole: the Sampler on the whole prompts, left padded to the judge's buckets
  (rl.judge.PROMPT_BUCKETS), as the judge ran before it shared the head;
- rl_reason_shared_prefix: the same prompts with the head apart (PromptEncoder prefix_step =
  rl.judge.PREFIX_STEP): the head runs for one row and its cache is copied to all, the rest is
  padded to the buckets;
- transformers: greedy `generate` on the whole prompts (left padded to the longest), in a process
  of its own with torch using every core (benchmarks/sampler.py's worker), calls alternating;
- with --prefill_chunk N, rl_reason_whole_chunked: the whole prompts prefilled N tokens at a time
  (SamplingConfig.prefill_chunk; each chunk reads only the slots written so far).

The two rl_reason runs are also compared token by token (the fraction of equal tokens; greedy argmax
ties aside they are the same). Prefill and decode are timed apart for rl_reason. Writes JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import tempfile
import time
import types
from typing import Any

import jax
import numpy as np
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sampler as sampler_bench  # pylint: disable=g-import-not-at-top  (the model sizes, the transformers worker)

from rl_reason import models  # pylint: disable=g-import-not-at-top
from rl_reason.data import pipeline  # pylint: disable=g-import-not-at-top
from rl_reason.rl import judge as judge_lib  # pylint: disable=g-import-not-at-top
from rl_reason.sampling import Sampler, SamplingConfig  # pylint: disable=g-import-not-at-top

PAD_ID = 0


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--out', default='judge_benchmark.json', help='JSON output path')
  parser.add_argument('--quick', action='store_true', help='smoke run: tiny model, a small batch, few tokens')
  parser.add_argument('--model', default='tiny', help=f'one of {",".join(sampler_bench.text_configs())}')
  parser.add_argument('--batch', type=int, default=64, help='judged rows (the tiny SophiaVL task: 16 prompts x 4)')
  parser.add_argument('--head', type=int, default=520,
                      help='template tokens every prompt begins with (the default template is 517 tokens of '
                           'the tiny tokenizer with the chat header)')
  parser.add_argument('--rest_min', type=int, default=180, help='fewest tokens after the head (question + completion)')
  parser.add_argument('--rest_max', type=int, default=280, help='most tokens after the head')
  parser.add_argument('--new_tokens', type=int, default=16, help='answer tokens (the judge_max_new_tokens default)')
  parser.add_argument('--repeats', type=int, default=5, help='timed calls per implementation (median)')
  parser.add_argument('--dtype', default='float32', choices=sampler_bench.DTYPES)
  parser.add_argument('--torch_threads', type=int, default=os.cpu_count())
  parser.add_argument('--prefill_chunk', type=int, default=0,
                      help='also time the whole prompts prefilled in chunks of this many tokens (rl_reason_whole_chunked)')
  args = parser.parse_args(argv)
  if args.quick:
    args.batch, args.head, args.rest_min, args.rest_max = 8, 130, 20, 60
    args.new_tokens, args.repeats = 4, min(args.repeats, 2)
  if args.model not in sampler_bench.text_configs():
    parser.error(f'--model {args.model!r} unknown; choose from {sorted(sampler_bench.text_configs())}')
  if not 0 < args.rest_min <= args.rest_max or args.head < judge_lib.PREFIX_STEP or args.batch < 1:
    parser.error('need 0 < --rest_min <= --rest_max, --head >= the prefix step '
                 f'({judge_lib.PREFIX_STEP}) and --batch >= 1')
  return args


def judge_prompts(args, vocab: int) -> list[list[int]]:
  """--batch token lists: the shared head, then a ragged rest of random ids."""
  rng = np.random.default_rng(0)
  head = rng.integers(1, vocab, args.head).tolist()
  return [head + rng.integers(1, vocab, int(n)).tolist()
          for n in rng.integers(args.rest_min, args.rest_max + 1, args.batch)]


def main(argv=None) -> dict[str, Any]:
  args = parse_args(argv)
  cfg = sampler_bench.text_configs(args.dtype)[args.model]
  model = models.create(cfg, seed=0)
  graphdef, params = nnx.split(model)
  sequences = judge_prompts(args, cfg.text.vocab_size)
  pad = types.SimpleNamespace(pad_token_id=PAD_ID)  # the encoder reads only the pad id here
  inputs = {'whole': pipeline.PromptEncoder(pad, cfg, None, judge_lib.PROMPT_BUCKETS).arrays(sequences),
            'shared_prefix': pipeline.PromptEncoder(pad, cfg, None, judge_lib.PROMPT_BUCKETS,
                                                    prefix_step=judge_lib.PREFIX_STEP).arrays(sequences)}
  sampler = Sampler(graphdef)
  sampling = SamplingConfig(max_new_tokens=args.new_tokens, temperature=0.0, pad_token_id=PAD_ID)
  tokens = {}

  def ours(name: str, chunk: int = 0):
    cfg = dataclasses.replace(sampling, prefill_chunk=chunk)

    def call() -> dict[str, float]:
      start = time.perf_counter()
      state = sampler.prefill(params, inputs[name], 0, cfg)
      jax.block_until_ready(state.tokens)
      middle = time.perf_counter()
      tokens[name + ('_chunked' if chunk else '')] = np.asarray(sampler.decode(params, state, cfg).tokens)
      end = time.perf_counter()
      return dict(prefill_s=middle - start, decode_s=end - middle, seconds=end - start)
    return call

  longest = max(map(len, sequences))
  whole_ids = np.full((len(sequences), longest), PAD_ID, np.int32)
  whole_mask = np.zeros_like(whole_ids)
  for row, seq in enumerate(sequences):
    whole_ids[row, longest - len(seq):], whole_mask[row, longest - len(seq):] = seq, 1
  result: dict[str, Any] = dict(settings=dict(
      quick=args.quick, model=args.model, params=models.param_count(model), batch=args.batch, head=args.head,
      rest=[args.rest_min, args.rest_max], new_tokens=args.new_tokens, repeats=args.repeats, dtype=args.dtype,
      prefix_tokens=int(inputs['shared_prefix']['prefix_ids'].shape[1]),
      rest_bucket=int(inputs['shared_prefix']['input_ids'].shape[1]),
      whole_bucket=int(inputs['whole']['input_ids'].shape[1]), longest_prompt=longest, cpu_count=os.cpu_count(),
      jax_version=jax.__version__, platform=platform.platform(), transformers_process='separate, calls alternating',
      prefill_chunk=args.prefill_chunk))
  with tempfile.TemporaryDirectory() as tmp:
    models.save_pretrained(model, os.path.join(tmp, 'model'))
    hf = sampler_bench.TransformersWorker(os.path.join(tmp, 'model'), {'whole': (whole_ids, whole_mask)},
                                          dtype=args.dtype, device='cpu', threads=args.torch_threads,
                                          temperature=0.0, tmp=tmp)
    try:
      result['settings'].update(torch_threads=hf.info['torch_threads'], torch_version=hf.info['torch_version'],
                                transformers_version=hf.info['transformers_version'])
      calls = {'rl_reason_whole': ours('whole'), 'rl_reason_shared_prefix': ours('shared_prefix'),
               'transformers': lambda: dict(seconds=hf.run('whole', args.new_tokens))}
      if args.prefill_chunk:
        calls['rl_reason_whole_chunked'] = ours('whole', args.prefill_chunk)
      runs = {name: [] for name in calls}
      for _ in range(args.repeats + 1):  # the first round compiles / warms up
        for name, call in calls.items():
          runs[name].append(call())
    finally:
      hf.close()
  result['timings'] = {}
  for name, measured in runs.items():
    row = {key: statistics.median(r[key] for r in measured[1:]) for key in measured[0]}
    row['compile_s'] = max(measured[0]['seconds'] - row['seconds'], 0.0)
    row['runs_s'] = [r['seconds'] for r in measured[1:]]
    row['tokens_per_s'] = args.batch * args.new_tokens / row['seconds']
    result['timings'][name] = row
  pairs = lambda a, b: statistics.median(x['seconds'] / y['seconds'] for x, y in zip(runs[a][1:], runs[b][1:]))
  result['ratios'] = dict(
      whole_over_shared_prefix=pairs('rl_reason_whole', 'rl_reason_shared_prefix'),
      whole_over_shared_prefix_prefill=(result['timings']['rl_reason_whole']['prefill_s']
                                        / result['timings']['rl_reason_shared_prefix']['prefill_s']),
      transformers_over_shared_prefix=pairs('transformers', 'rl_reason_shared_prefix'),
      transformers_over_whole=pairs('transformers', 'rl_reason_whole'))
  result['same_tokens_fraction'] = float((tokens['whole'] == tokens['shared_prefix']).mean())
  if args.prefill_chunk:
    result['ratios']['whole_over_whole_chunked'] = pairs('rl_reason_whole', 'rl_reason_whole_chunked')
    result['same_tokens_fraction_chunked'] = float((tokens['whole'] == tokens['whole_chunked']).mean())
  return sampler_bench.report(result, format_table(result), args.out)


def format_table(result: dict[str, Any]) -> str:
  s = result['settings']
  lines = [f'{s["model"]} ({s["params"] / 1e6:.1f}M params, {s["dtype"]}): {s["batch"]} judge prompts of a '
           f'{s["head"]}-token head + {s["rest"][0]}..{s["rest"][1]} tokens, {s["new_tokens"]} greedy tokens; '
           f'buckets: whole {s["whole_bucket"]}, shared prefix {s["prefix_tokens"]} + {s["rest_bucket"]}; '
           f'medians of {s["repeats"]}',
           f'{"impl":<26}{"seconds":>9}{"prefill":>9}{"decode":>9}{"tok/s":>9}{"compile":>9}']
  for name, row in result['timings'].items():
    fmt = lambda key: f'{row[key]:9.3f}' if key in row else f'{"-":>9}'
    lines.append(f'{name:<26}{fmt("seconds")}{fmt("prefill_s")}{fmt("decode_s")}{row["tokens_per_s"]:9.0f}'
                 f'{fmt("compile_s")}')
  r = result['ratios']
  lines.append(f'whole / shared prefix: {r["whole_over_shared_prefix"]:.2f}x (prefill '
               f'{r["whole_over_shared_prefix_prefill"]:.2f}x); transformers / shared prefix: '
               f'{r["transformers_over_shared_prefix"]:.2f}x; transformers / whole: '
               f'{r["transformers_over_whole"]:.2f}x; '
               f'equal tokens {result["same_tokens_fraction"]:.3f}')
  if 'whole_over_whole_chunked' in r:
    lines.append(f'whole / whole prefilled in chunks of {s["prefill_chunk"]}: {r["whole_over_whole_chunked"]:.2f}x; '
                 f'equal tokens {result["same_tokens_fraction_chunked"]:.3f}')
  return '\n'.join(lines)


if __name__ == '__main__':
  main()
