"""Checkpoint loading: rl_reason.models.from_pretrained vs transformers, time and peak host memory.

  python benchmarks/load.py --preset=qwen2_5_0_5b --dtype=bfloat16 --out=/tmp/load.json

Builds a random-init checkpoint of the preset's architecture with transformers in a temporary
directory (safetensors, in `dtype`), then loads it in fresh processes, `--repeats` times each:
rl_reason (`from_pretrained`, one CPU device) and transformers (`AutoModelForCausalLM` /
`AutoModelForImageTextToText`, same dtype). Reports the median wall time and the median peak
resident memory of each loading process (VmHWM), with the interpreter + imports baseline
measured separately so that the loader's own memory is visible. Writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

_LOADERS = {
    'rl_reason': ('from rl_reason import models', 'model = models.from_pretrained(PATH, dtype=DTYPE)\n'
                  'import jax; jax.block_until_ready(jax.tree.leaves(__import__("flax").nnx.state(model)))'),
    'transformers': ('import torch, transformers',
                     'cls = transformers.AutoModelForImageTextToText if VL else transformers.AutoModelForCausalLM\n'
                     'model = cls.from_pretrained(PATH, dtype=getattr(torch, DTYPE))'),
}


def _child(loader: str, path: str, dtype: str, vl: bool, load: bool) -> dict[str, float]:
  imports, body = _LOADERS[loader]
  code = (f'import time\nPATH, DTYPE, VL = {path!r}, {dtype!r}, {vl!r}\n{imports}\n'
          f't0 = time.perf_counter()\n{body if load else "pass"}\n'
          # VmHWM is this process's own peak (ru_maxrss would include the parent's, inherited at exec).
          'print(time.perf_counter() - t0, [l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM")][0])')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True,
                       env=dict(os.environ, JAX_PLATFORMS='cpu'))
  seconds, rss_kb = out.stdout.split()[-2:]
  return {'seconds': float(seconds), 'peak_rss_gib': int(rss_kb) / 2**20}


def _build_checkpoint(preset: str, dtype: str, path: str) -> tuple[bool, int]:
  import torch  # pylint: disable=import-outside-toplevel
  import transformers  # pylint: disable=import-outside-toplevel
  from rl_reason import models  # pylint: disable=import-outside-toplevel
  hf_config = models.config_to_hf(models.get_preset(preset))
  config = transformers.AutoConfig.for_model(**hf_config)
  vl = config.model_type in ('qwen2_vl', 'qwen2_5_vl')
  cls = transformers.AutoModelForImageTextToText if vl else transformers.AutoModelForCausalLM
  torch.manual_seed(0)
  with torch.device('cpu'):
    model = cls.from_config(config, dtype=getattr(torch, dtype))
  model.save_pretrained(path)
  return vl, sum(p.numel() for p in model.parameters())


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--preset', default='qwen2_5_0_5b')
  parser.add_argument('--dtype', default='bfloat16', choices=('bfloat16', 'float32'))
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--out', default='')
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as path:
    vl, params = _build_checkpoint(args.preset, args.dtype, path)
    size = sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path)) / 2**30
    results = {'preset': args.preset, 'dtype': args.dtype, 'params': params, 'checkpoint_gib': size}
    for loader in _LOADERS:
      baseline = [_child(loader, path, args.dtype, vl, load=False) for _ in range(args.repeats)]
      loads = [_child(loader, path, args.dtype, vl, load=True) for _ in range(args.repeats)]
      results[loader] = {
          'seconds_median': statistics.median(r['seconds'] for r in loads),
          'peak_rss_gib_median': statistics.median(r['peak_rss_gib'] for r in loads),
          'import_baseline_rss_gib': statistics.median(r['peak_rss_gib'] for r in baseline),
      }
  results['time_ratio_transformers_over_rl_reason'] = (results['transformers']['seconds_median']
                                                       / results['rl_reason']['seconds_median'])
  print(f'{args.preset} ({params / 1e6:.0f}M params, {args.dtype}, checkpoint {size:.2f} GiB), '
        f'median of {args.repeats}:')
  for loader in _LOADERS:
    r = results[loader]
    print(f'  {loader:<13} load {r["seconds_median"]:6.2f} s   peak RSS {r["peak_rss_gib_median"]:5.2f} GiB '
          f'(imports alone {r["import_baseline_rss_gib"]:.2f} GiB)')
  print(f'  transformers / rl_reason load time: {results["time_ratio_transformers_over_rl_reason"]:.2f}x')
  if args.out:
    with open(args.out, 'w') as f:
      json.dump(results, f, indent=2)


if __name__ == '__main__':
  main()
