"""Sampler speed: rl_reason (KV cache), rl_reason without a KV cache, and transformers `generate`.

    python benchmarks/sampler.py --out /tmp/sampler.json          # full run: use an idle machine
    python benchmarks/sampler.py --quick --out /tmp/quick.json    # smoke run (seconds)
    python benchmarks/sampler.py --cpu_devices 2 --out /tmp/s.json  # also rows split over 2 CPU devices
    python benchmarks/sampler.py --dtype bfloat16 --out /tmp/b.json  # both libraries in bfloat16
    python benchmarks/sampler.py --models qwen2_0_5b --dtype bfloat16 --batches 128 --torch_device cuda \
        --no_cache_max_batch 0 --out /tmp/gpu.json             # on a GPU: Qwen2.5-0.5B's shape

Every implementation runs the same random weights (ours, exported with models.save_pretrained and
loaded by transformers), the same left-padded prompts and the same settings (temperature sampling,
no truncation, no EOS: every row generates exactly the requested tokens) and the same dtype (--dtype:
weights, activations and KV cache; float32 by default). Times are medians over
--repeats runs after one warm-up run; compile time is the warm-up run minus that median (for
transformers: its first-call overhead). Throughput counts generated tokens per second, prefill
included. Per-token decode time at n tokens is the decode loop's time / (n - 1) (rl_reason times its
prefill and decode phases separately; for transformers decode = t(n) - t(1)). The achieved fraction of
the machine's dense matmul FLOP/s (a large jnp.dot in the same dtype) counts the decode loop's
useful FLOPs: 2 * params per token plus attention (4 * layers * heads * head_dim * context). Beside
it, the fraction of what the model's weight matmuls alone reach at the same batch (chained as in a
decode step, no attention or sampling): at 64 rows on a CPU that is well below the large matmul. From
that rate and the machine's memory read rate (a jitted sum over 256 MB) comes a bound on the decode
FLOP fraction: the loop's weight FLOPs at the weight-matmul rate plus its KV-cache reads (each stage
reads its T + C_i slots of every layer's keys and values) at the memory rate, with nothing else in a step.
The memory-bandwidth roofline fraction ("mem frac") is the other bound, the one that holds at small
batch on an accelerator: the bytes a decode must move (every weight once per step, the KV-cache
reads) over its time, against the same memory read rate. On an accelerator the dense matmul is
8192^2 and the read 2 GB, so that both reach the device's peaks.

With --cpu_devices N > 1 the process starts N CPU devices and rl_reason is timed twice, alternating: on
one device ('rl_reason') and with its rows split over the N devices ('rl_reason_N_devices', the
model's params replicated on them once): XLA's CPU backend runs each small per-row op of a decode
step on one thread, so one device per core keeps every core busy.

transformers runs in a process of its own (this script with --transformers_worker), with torch
using every core and no JAX runtime beside it, so neither library's thread pool slows the other. The
two libraries' calls alternate (rl_reason, transformers, rl_reason, ...), so a drift in the machine's
speed reaches both; each ratio is also given as the median of the per-pair ratios.
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
from rl_reason.parallel import sharding as shd

DTYPES = ('float32', 'bfloat16')  # --dtype: weights, activations, KV cache and the dense matmul alike


def text_configs(dtype: str = 'float32') -> dict[str, model_config.ModelConfig]:
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
  # Qwen2.5-0.5B's shape (random weights): for an accelerator (--models qwen2_0_5b --dtype bfloat16 --batches 128)
  half_b = model_config.TextConfig(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                                   num_attention_heads=14, num_key_value_heads=2, rope_theta=1000000.0,
                                   mrope_section=None, tie_word_embeddings=True)
  return {name: model_config.ModelConfig(text=text, dtype=dtype, param_dtype=dtype)
          for name, text in (('tiny', tiny), ('qwen2_20m', small), ('qwen2_0_5b', half_b))}


DEFAULT_MODELS = ('tiny', 'qwen2_20m')  # the CPU sizes; qwen2_0_5b by name (minutes per call on a CPU)


def prompts(batch: int, length: int, vocab: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Left-padded random prompts of length//2 .. length real tokens."""
  rng = np.random.RandomState(seed)
  ids = np.zeros((batch, length), np.int64)
  mask = np.zeros_like(ids)
  for row, n in enumerate(rng.randint(max(1, length // 2), length + 1, batch)):
    ids[row, length - n:] = rng.randint(1, vocab, n)
    mask[row, length - n:] = 1
  return ids, mask


# ---------------------------------------------------------------------------------------------- rl_reason


def rl_reason_fn(model, ids, mask, new_tokens: int, temperature: float, mesh=None) -> Callable[[], Any]:
  """The public path, end to end: sampling.generate (host padding included)."""
  def run():
    out = sampling.generate(model, ids, mask, max_new_tokens=new_tokens, temperature=temperature, rng=0, mesh=mesh)
    return jax.block_until_ready(out.tokens)
  return run


class PhaseTimer:
  """Each call runs one prefill (+ first token) and one decode loop, records both, returns the decode's seconds."""

  def __init__(self, model, ids, mask, new_tokens: int, temperature: float, mesh=None):
    self.request = sampling.prepare_generation(model, ids, mask, max_new_tokens=new_tokens, temperature=temperature,
                                               mesh=mesh)
    self.prefill_s: list[float] = []
    self.decode_s: list[float] = []

  def __call__(self) -> float:
    start = time.perf_counter()
    state = jax.block_until_ready(self.request.prefill(0))
    middle = time.perf_counter()
    jax.block_until_ready(self.request.decode(state).tokens)
    self.prefill_s.append(middle - start)
    self.decode_s.append(time.perf_counter() - middle)
    return self.decode_s[-1]

  def medians(self) -> dict[str, float]:
    """Median prefill and decode seconds, the first (compiling) call left out."""
    return dict(prefill_s=statistics.median(self.prefill_s[1:]), decode_s=statistics.median(self.decode_s[1:]))


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


def transformers_fn(hf_model, ids, mask, new_tokens: int, temperature: float,
                    device: str = 'cpu') -> Callable[[], Any]:
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  drawn = dict(do_sample=True, temperature=temperature, top_k=0, top_p=1.0) if temperature > 0 else dict(
      do_sample=False)  # temperature 0: greedy
  config = transformers.GenerationConfig(**drawn, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                         eos_token_id=None, pad_token_id=0, bos_token_id=None)
  input_ids, attention_mask = torch.tensor(ids, device=device), torch.tensor(mask, device=device)

  def run():
    with torch.no_grad():
      out = hf_model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=config)
    if device != 'cpu':
      torch.cuda.synchronize()
    assert out.shape == (ids.shape[0], ids.shape[1] + new_tokens), out.shape
    return out
  return run


_REPLY = '@reply '  # marks the worker's reply lines on its stdout


def transformers_worker(spec_path: str) -> None:
  """Child process: loads the model, then runs one timed `generate` per request line until 'quit'.

  spec: {model_dir, dtype, device, threads, temperature, prompts (npz path)}; the npz holds ids_<key> and mask_<key>.
  A request is {"key": ..., "new_tokens": ...}; the reply {"seconds": ...} (one call, prompts ready).
  """
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  with open(spec_path) as f:
    spec = json.load(f)
  torch.set_num_threads(spec['threads'])
  transformers.logging.set_verbosity_error()
  hf_model = transformers.AutoModelForCausalLM.from_pretrained(spec['model_dir'], dtype=getattr(torch, spec['dtype']))
  hf_model = hf_model.to(spec['device']).eval()
  arrays = np.load(spec['prompts'])
  reply = lambda value: print(_REPLY + json.dumps(value), flush=True)
  reply(dict(torch_threads=torch.get_num_threads(), torch_version=torch.__version__,
             transformers_version=transformers.__version__))
  runners = {}
  for line in sys.stdin:
    if line.strip() == 'quit':
      break
    job = json.loads(line)
    name = (job['key'], job['new_tokens'])
    if name not in runners:
      ids, mask = arrays[f'ids_{job["key"]}'], arrays[f'mask_{job["key"]}']
      runners[name] = transformers_fn(hf_model, ids, mask, job['new_tokens'], spec['temperature'], spec['device'])
    start = time.perf_counter()
    runners[name]()
    reply(dict(seconds=time.perf_counter() - start))


class TransformersWorker:
  """transformers_worker in a fresh Python process, asked for one timed call at a time."""

  def __init__(self, model_dir: str, prompt_sets: dict[str, tuple[np.ndarray, np.ndarray]], *, dtype: str,
               device: str, threads: int, temperature: float, tmp: str):
    np.savez(os.path.join(tmp, 'prompts.npz'),
             **{f'{kind}_{key}': array for key, pair in prompt_sets.items() for kind, array in zip(('ids', 'mask'), pair)})
    spec = dict(model_dir=model_dir, dtype=dtype, device=device, threads=threads, temperature=temperature,
                prompts=os.path.join(tmp, 'prompts.npz'))
    with open(os.path.join(tmp, 'spec.json'), 'w') as f:
      json.dump(spec, f)
    env = dict(os.environ, JAX_PLATFORMS='cpu')
    self.process = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), '--transformers_worker', os.path.join(tmp, 'spec.json')],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    self.info = self._reply()  # torch_threads, torch_version, transformers_version

  def _reply(self) -> dict[str, Any]:
    while True:  # skips anything else a library prints to stdout
      line = self.process.stdout.readline()
      if not line:
        raise RuntimeError(f'the transformers worker exited (code {self.process.wait()})')
      if line.startswith(_REPLY):
        return json.loads(line[len(_REPLY):])

  def run(self, key: str, new_tokens: int) -> float:
    """Seconds of one transformers `generate` call on prompt set `key`."""
    self.process.stdin.write(json.dumps(dict(key=key, new_tokens=new_tokens)) + '\n')
    self.process.stdin.flush()
    return self._reply()['seconds']

  def close(self) -> None:
    if self.process.poll() is None:
      self.process.stdin.write('quit\n')
      self.process.stdin.close()
      self.process.wait(timeout=60)


def summarize(runs: list[float]) -> dict[str, Any]:
  """First call (compile / warm-up) and the median of the others, in seconds."""
  median = statistics.median(runs[1:])
  return dict(compile_s=max(runs[0] - median, 0.0), run_s=median, runs_s=runs[1:])


def alternate(calls: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
  """repeats + 1 rounds (the first warms up), each calling every function once in turn; their seconds."""
  times = {name: [] for name in calls}
  for _ in range(repeats + 1):
    for name, call in calls.items():
      times[name].append(call())
  return times


def seconds_of(fn: Callable[[], Any]) -> Callable[[], float]:
  def timed_call() -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
  return timed_call


# ---------------------------------------------------------------------------------------------- FLOPs


def dense_matmul(n: int, dtype: str) -> tuple[Callable[[], float], float]:
  """A timed [n, n] x [n, n] jnp.dot in `dtype` (as the model's Linear: same dtype in and out), and its FLOPs."""
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.dtype(dtype))
  b = jax.random.normal(jax.random.key(1), (n, n), jnp.dtype(dtype))
  dot = jax.jit(jnp.dot)
  return seconds_of(lambda: jax.block_until_ready(dot(a, b))), 2.0 * n**3


def best_rate(call: Callable[[], float], amount: float, repeats: int) -> float:
  """amount (FLOPs, bytes) per second of the best of the timed call's runs after a warm-up."""
  runs = alternate({'call': call}, max(repeats, 3))['call']
  return amount / min(runs[1:])  # the best run: what the machine can do


def weight_matmuls(model, batch: int, steps: int = 8) -> tuple[Callable[[], float], float]:
  """The model's weight matmuls alone at `batch` rows, timed, and their FLOPs: every layer's q, k, v, o,
  gate, up and down projections and the LM head, chained as in `steps` decode steps (weights read from
  memory each step), with no attention, sampling or loop bookkeeping: the matmul part of a decode
  step's ceiling."""
  layers = [nnx.state(layer, nnx.Param) for layer in model.decoder.layers]
  head = model.decoder.embed_tokens.get_value()  # [V, D]: tied (the benchmark's configs tie embeddings)
  kernel = lambda state, *path: functools.reduce(lambda node, key: node[key], path, state).get_value()
  weights = [dict(q=kernel(s, 'self_attn', 'q_proj', 'kernel'), k=kernel(s, 'self_attn', 'k_proj', 'kernel'),
                  v=kernel(s, 'self_attn', 'v_proj', 'kernel'), o=kernel(s, 'self_attn', 'o_proj', 'kernel'),
                  gate=kernel(s, 'mlp', 'gate_proj', 'kernel'), up=kernel(s, 'mlp', 'up_proj', 'kernel'),
                  down=kernel(s, 'mlp', 'down_proj', 'kernel')) for s in layers]

  @jax.jit  # the weights as arguments: closed over, they would be baked into the program as constants
  def run(x, weights, head):
    def step(_, carry):
      x, checksum = carry
      for w in weights:
        k, v = x @ w['k'], x @ w['v']
        x = x + jnp.tanh(x @ w['q']) @ w['o']  # tanh keeps the chain bounded over the steps
        x = x + (jax.nn.silu(x @ w['gate']) * (x @ w['up'])) @ w['down']
        checksum = checksum + jnp.sum(k) + jnp.sum(v)
      return jnp.tanh(x), checksum + jnp.sum(x @ head.T)
    return jax.lax.fori_loop(0, steps, step, (x, jnp.float32(0)))

  x = jax.random.normal(jax.random.key(2), (batch, head.shape[1]), head.dtype)
  matmul_params = sum(a.size for w in weights for a in w.values()) + head.size
  return seconds_of(lambda: jax.block_until_ready(run(x, weights, head))), 2.0 * matmul_params * batch * steps


def memory_read_bytes_per_s(repeats: int, megabytes: int = 256) -> float:
  """Bytes/s of a jitted sum over an array far larger than the caches: this machine's memory read rate."""
  x = jnp.ones((megabytes << 18,), jnp.float32)  # 2^18 float32 = 1 MB
  total = jax.jit(jnp.sum)
  return best_rate(seconds_of(lambda: jax.block_until_ready(total(x))), x.nbytes, repeats)


def cache_read_bytes(text: model_config.TextConfig, request: sampling.PreparedGeneration, itemsize: int) -> int:
  """KV-cache bytes the attention reads over decode steps 1 .. N-1: step s runs in the first stage whose
  capacity C_i >= s and reads that stage's T + C_i slots of every layer's keys and values."""
  rows, prompt_len = request.inputs['input_ids'].shape
  rows *= request.cfg.num_samples
  capacities = np.asarray(request.cfg.stage_capacities)
  steps = np.arange(1, request.max_new_tokens)
  slots = prompt_len + capacities[np.searchsorted(capacities, steps)]
  per_slot = 2 * text.num_hidden_layers * rows * text.num_key_value_heads * text.dim_per_head * itemsize
  return int(slots.sum()) * per_slot


def decode_bytes(cfg: model_config.ModelConfig, params: int, new_tokens: int, cache_bytes: int) -> float:
  """Bytes decode steps 1 .. N-1 must read at the least: every weight once per step (the input embedding
  only where tied, as the LM head) plus the KV-cache reads (`cache_read_bytes`): the memory roofline's
  numerator, what bounds a decode at small batch on an accelerator."""
  text = cfg.text
  weights = params - (0 if text.tie_word_embeddings else text.vocab_size * text.hidden_size)
  return float(weights * jnp.dtype(cfg.param_dtype).itemsize * (new_tokens - 1) + cache_bytes)


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
  parser.add_argument('--models', default=None, help=f'comma-separated subset of {",".join(text_configs())} '
                                                     f'(default {",".join(DEFAULT_MODELS)})')
  parser.add_argument('--batches', default=None, help='comma-separated batch sizes (default 8,64)')
  parser.add_argument('--prompt_len', type=int, default=64, help='prompt bucket (real lengths T/2 .. T)')
  parser.add_argument('--torch_threads', type=int, default=os.cpu_count(),
                      help='torch intra-op threads for transformers (default: os.cpu_count())')
  parser.add_argument('--torch_device', default='cpu', choices=('cpu', 'cuda'),
                      help='where transformers runs (cuda: beside rl_reason on a GPU)')
  parser.add_argument('--dtype', default='float32', choices=DTYPES,
                      help='weights, activations and KV cache of both libraries, and the dense matmul the FLOP '
                           'fraction is measured against')
  parser.add_argument('--temperature', type=float, default=1.0, help='sampling temperature (no truncation)')
  parser.add_argument('--cpu_devices', type=int, default=1,
                      help='also time rl_reason with its rows split over this many CPU devices (jax_num_cpu_devices; '
                           'one per core is the layout that keeps every core busy in a small model\'s decode)')
  parser.add_argument('--no_cache_max_batch', type=int, default=1 << 30,
                      help='run the no-KV-cache baseline only up to this batch (it is slow: minutes per run)')
  args = parser.parse_args(argv)
  if args.batches:
    try:
      args.batches = tuple(int(b) for b in args.batches.split(','))
    except ValueError:
      parser.error(f'--batches must be comma-separated integers, got {args.batches!r}')
    if min(args.batches) < 1:
      parser.error(f'--batches must be >= 1, got {args.batches}')
  if args.quick:
    args.repeats = min(args.repeats, 2)
    args.models = args.models or 'tiny'
    args.prompt_len = min(args.prompt_len, 16)
    args.batches, args.new_tokens, args.per_token_lengths = args.batches or (2,), 8, (8, 16)
    args.matmul_n, args.no_cache_chunk, args.per_token_batch, args.memory_mb = 256, 8, 2, 16
  else:
    args.batches, args.new_tokens, args.per_token_lengths = args.batches or (8, 64), 128, (64, 256, 1024)
    args.matmul_n, args.no_cache_chunk, args.per_token_batch, args.memory_mb = 2048, 64, 8, 256
  args.models = (args.models or ','.join(DEFAULT_MODELS)).split(',')
  unknown = sorted(set(args.models) - set(text_configs()))
  if unknown:
    parser.error(f'--models {unknown} unknown; choose from {sorted(text_configs())}')
  if args.repeats < 1:
    parser.error('--repeats must be >= 1')
  if args.cpu_devices < 1 or any(batch % args.cpu_devices for batch in (*args.batches, args.per_token_batch)):
    parser.error(f'--cpu_devices must be >= 1 and divide every batch ({args.batches}, per-token '
                 f'{args.per_token_batch}), got {args.cpu_devices}')
  return args


def measure_model(result: dict[str, Any], name: str, cfg: model_config.ModelConfig, model, prompt_sets,
                  hf: TransformersWorker, args: argparse.Namespace, peak: float,
                  dense: tuple[Callable[[], float], float], memory_rate: float,
                  ours: dict[str, tuple[Any, Any]]) -> None:
  """Throughput per batch, rl_reason and transformers calls alternating.

  peak: the dense matmul's best FLOP/s; dense: (its timed call, its FLOPs), also called in every round of
  the throughput calls, so each round's decode FLOP fraction compares two calls made a few seconds apart.

  ours: impl name -> (model, mesh or None): 'rl_reason' on one device, and with --cpu_devices N > 1
  also 'rl_reason_N_devices' (rows split over N CPU devices, the model's params replicated on them).
  """
  params = models.param_count(model)
  for batch in args.batches:
    key = f'b{batch}'
    ids, mask = prompt_sets[key]
    phases = {impl: PhaseTimer(m, ids, mask, args.new_tokens, args.temperature, mesh) for impl, (m, mesh) in ours.items()}
    calls = {}
    for impl, (impl_model, mesh) in ours.items():
      calls[impl] = seconds_of(rl_reason_fn(impl_model, ids, mask, args.new_tokens, args.temperature, mesh))
      calls[impl + '_phases'] = phases[impl]
    calls.update({'transformers': lambda key=key: hf.run(key, args.new_tokens),
                  'transformers_first_token': lambda key=key: hf.run(key, 1), 'dense_matmul': dense[0]})
    calls['weight_matmuls'], chain_flops = weight_matmuls(model, batch)
    times = alternate(calls, args.repeats)
    if batch <= args.no_cache_max_batch:  # slow: timed on its own, after the pairs
      no_cache = no_cache_fn(model, ids, mask, args.new_tokens, args.temperature, args.no_cache_chunk)
      times.update(alternate({'rl_reason_no_cache': seconds_of(no_cache)}, args.repeats))
    flops = decode_flops(cfg, params, mask.sum(1), args.new_tokens)
    cache_bytes = cache_read_bytes(cfg.text, phases['rl_reason'].request, jnp.dtype(cfg.dtype).itemsize)
    moved = decode_bytes(cfg, params, args.new_tokens, cache_bytes)
    weight_rate = chain_flops / min(times['weight_matmuls'][1:])
    # each round's FLOP/s against the dense matmul called in the same round
    per_round = lambda amount, seconds: [amount / s / (dense[1] / dense_s)
                                         for s, dense_s in zip(seconds, times['dense_matmul'][1:])]
    # A bound on the decode loop: its weight FLOPs at the weight-matmul rate plus its KV-cache reads at
    # the memory read rate, with nothing else (norms, softmax, sampling, loop) in the step.
    bound_s = 2.0 * params * batch * (args.new_tokens - 1) / weight_rate + cache_bytes / memory_rate
    result['weight_matmuls'].append(dict(model=name, batch=batch, flops_per_s=weight_rate,
                                         fraction_of_dense=weight_rate / peak,
                                         fraction_of_dense_per_round=statistics.median(
                                             per_round(chain_flops, times['weight_matmuls'][1:])),
                                         cache_read_bytes=cache_bytes,
                                         bound_decode_s=bound_s, decode_flop_fraction_bound=flops / bound_s / peak))
    rows = {}
    for impl in (*ours, 'rl_reason_no_cache', 'transformers'):
      if impl not in times:
        continue
      t = summarize(times[impl])
      row = dict(model=name, params=params, batch=batch, new_tokens=args.new_tokens, impl=impl, **t,
                 tokens_per_s=batch * args.new_tokens / t['run_s'])
      if impl in ours:
        row.update(phases[impl].medians())
      elif impl == 'transformers':  # no separate phases: decode = run - (prefill + first token)
        row['prefill_s'] = summarize(times['transformers_first_token'])['run_s']
        row['decode_s'] = max(t['run_s'] - row['prefill_s'], 1e-9)
      if 'decode_s' in row:
        row['decode_flops'] = flops
        row['decode_flop_fraction'] = flops / row['decode_s'] / peak
        row['decode_flop_fraction_of_weight_matmuls'] = flops / row['decode_s'] / weight_rate
        row['decode_bytes'] = moved
        row['decode_memory_fraction'] = moved / row['decode_s'] / memory_rate
      if impl in ours:
        pairs = per_round(flops, phases[impl].decode_s[1:])
        row.update(decode_flop_fraction_pairs=pairs, decode_flop_fraction_pair_median=statistics.median(pairs))
      rows[impl] = row
      result['throughput'].append(row)
      print(f'{name:10s} b={batch:<3d} {impl:19s} {row["tokens_per_s"]:10.1f} tok/s  run {t["run_s"]:.3f}s  '
            f'compile {t["compile_s"]:.2f}s', flush=True)
    ratios = result['ratios'][f'{name}/{key}'] = dict(
        rl_reason_vs_no_cache=(rows['rl_reason']['tokens_per_s'] / rows['rl_reason_no_cache']['tokens_per_s']
                               if 'rl_reason_no_cache' in rows else float('nan')))
    for impl in ours:  # also per pair: one rl_reason call and the transformers call right after it
      pairs = [hf_s / ours_s for ours_s, hf_s in zip(times[impl][1:], times['transformers'][1:])]
      ratios.update({f'{impl}_vs_transformers': rows[impl]['tokens_per_s'] / rows['transformers']['tokens_per_s'],
                     f'{impl}_vs_transformers_pairs': pairs,
                     f'{impl}_vs_transformers_pair_median': statistics.median(pairs)})


def measure_per_token(result: dict[str, Any], name: str, prompt_sets, hf: TransformersWorker,
                      args: argparse.Namespace, ours: dict[str, tuple[Any, Any]]) -> None:
  """Per-token decode times at each of args.per_token_lengths (64, 256, 1024; --quick: 8, 16) and their growth."""
  # The lengths' calls alternate too, so a drift in the machine's speed hits each length alike.
  ids, mask = prompt_sets['per_token']
  lengths = args.per_token_lengths
  phases = {(impl, n): PhaseTimer(m, ids, mask, n, args.temperature, mesh)
            for impl, (m, mesh) in ours.items() for n in lengths}
  calls = {'transformers_first_token': lambda: hf.run('per_token', 1)}
  for n in lengths:
    calls.update({f'{impl}/{n}': phases[impl, n] for impl in ours})
    calls[f'transformers/{n}'] = lambda n=n: hf.run('per_token', n)
  times = alternate(calls, args.repeats)
  hf_first_token = summarize(times['transformers_first_token'])['run_s']
  per_token_ms = {}
  for n in lengths:
    hf_decode = max(summarize(times[f'transformers/{n}'])['run_s'] - hf_first_token, 0.0)
    for impl, seconds in (*((impl, phases[impl, n].medians()['decode_s']) for impl in ours),
                          ('transformers', hf_decode)):
      per_token_ms[impl, n] = seconds / (n - 1) * 1e3
      result['per_token_decode'].append(dict(model=name, batch=args.per_token_batch, impl=impl, new_tokens=n,
                                             per_token_ms=per_token_ms[impl, n], decode_s=seconds))
      print(f'{name:10s} b={args.per_token_batch:<3d} {impl:19s} {n:5d} tokens: {per_token_ms[impl, n]:8.3f} '
            'ms/token', flush=True)
  short, long = lengths[0], lengths[-1]
  growth = result['per_token_growth'][name] = dict(
      short=short, long=long, transformers=(per_token_ms['transformers', long] / per_token_ms['transformers', short]
                                            if per_token_ms['transformers', short] > 0 else float('nan')))
  for impl in ours:
    rounds = [(b / (long - 1)) / (a / (short - 1))
              for a, b in zip(phases[impl, short].decode_s[1:], phases[impl, long].decode_s[1:])]
    growth.update({impl: per_token_ms[impl, long] / per_token_ms[impl, short], f'{impl}_rounds': rounds,
                   f'{impl}_round_median': statistics.median(rounds)})


def main(argv=None) -> dict[str, Any]:
  args = parse_args(argv)
  if args.torch_device == 'cuda':  # before JAX starts: its default 75% of the GPU would leave torch too little
    os.environ.setdefault('XLA_PYTHON_CLIENT_MEM_FRACTION', '0.5')
  mesh = None
  if args.cpu_devices > 1:
    jax.config.update('jax_num_cpu_devices', args.cpu_devices)  # before the backend starts
    if jax.default_backend() != 'cpu' or len(jax.devices()) != args.cpu_devices:
      raise SystemExit(f'--cpu_devices {args.cpu_devices}: got {len(jax.devices())} {jax.default_backend()} devices '
                       '(CPU only; XLA_FLAGS may already set a device count)')
    mesh = shd.make_mesh(shd.MeshConfig(data=args.cpu_devices))
  if jax.default_backend() != 'cpu':  # an accelerator: a matmul and a read large enough to reach its peaks
    args.matmul_n, args.memory_mb = max(args.matmul_n, 8192), max(args.memory_mb, 2048)
  dense = dense_matmul(args.matmul_n, args.dtype)
  peak = best_rate(*dense, args.repeats)
  memory_rate = memory_read_bytes_per_s(args.repeats, megabytes=args.memory_mb)
  result: dict[str, Any] = dict(
      settings=dict(quick=args.quick, repeats=args.repeats, prompt_len=args.prompt_len, new_tokens=args.new_tokens,
                    batches=list(args.batches), per_token_lengths=list(args.per_token_lengths),
                    per_token_batch=args.per_token_batch, temperature=args.temperature, dtype=args.dtype,
                    no_cache_chunk=args.no_cache_chunk, cpu_count=os.cpu_count(), torch_threads=args.torch_threads,
                    cpu_devices=args.cpu_devices,
                    transformers_process='separate, calls alternating', jax_backend=jax.default_backend(),
                    jax_devices=[str(d) for d in jax.devices()], platform=platform.platform(),
                    jax_version=jax.__version__),
      matmul=dict(n=args.matmul_n, dtype=args.dtype, flops_per_s=peak),
      memory=dict(megabytes=args.memory_mb, read_bytes_per_s=memory_rate),
      throughput=[], per_token_decode=[], per_token_growth={}, ratios={}, weight_matmuls=[])
  for name in args.models:
    cfg = text_configs(args.dtype)[name]
    model = models.create(cfg, seed=0)
    ours = {'rl_reason': (model, None)}
    if mesh is not None:  # a copy of the model with its params replicated on the mesh once, as a run keeps them
      placed = nnx.clone(model)
      nnx.update(placed, jax.device_put(nnx.state(placed), shd.state_shardings(nnx.state(placed), mesh)))
      ours[f'rl_reason_{args.cpu_devices}_devices'] = (placed, mesh)
    prompt_sets = {f'b{batch}': prompts(batch, args.prompt_len, cfg.text.vocab_size) for batch in args.batches}
    prompt_sets['per_token'] = prompts(args.per_token_batch, args.prompt_len, cfg.text.vocab_size, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
      model_dir = os.path.join(tmp, 'model')
      models.save_pretrained(model, model_dir)
      hf = TransformersWorker(model_dir, prompt_sets, dtype=args.dtype, device=args.torch_device,
                              threads=args.torch_threads, temperature=args.temperature, tmp=tmp)
      try:
        result['settings'].update(torch_threads=hf.info['torch_threads'], torch_version=hf.info['torch_version'],
                                  transformers_version=hf.info['transformers_version'])
        measure_model(result, name, cfg, model, prompt_sets, hf, args, peak, dense, memory_rate, ours)
        # The throughput figures on disk before the long per-token calls (a device call can end mid-run).
        save(dict(result, partial=f'{name}: throughput only; per-token decode not finished'), args.out)
        measure_per_token(result, name, prompt_sets, hf, args, ours)
      finally:
        hf.close()
  return report(result, format_table(result), args.out)


def report(result: dict[str, Any], table: str, path: str) -> dict[str, Any]:
  """Prints the table, writes the JSON."""
  print(table)
  save(result, path)
  print(f'wrote {path}')
  return result


def save(result: dict[str, Any], path: str) -> None:
  with open(path, 'w') as f:
    json.dump(result, f, indent=2)


def format_table(result: dict[str, Any]) -> str:
  lines = [f'dense matmul ({result["matmul"]["n"]}^2, {result["matmul"]["dtype"]}): '
           f'{result["matmul"]["flops_per_s"] / 1e9:.1f} GFLOP/s', '',
           f'{"model":10s} {"params":>9s} {"batch":>5s} {"impl":19s} {"tok/s":>10s} {"run s":>8s} {"compile s":>9s} '
           f'{"FLOP frac":>9s} {"per round":>9s} {"of weights":>10s} {"mem frac":>8s}']
  for row in result['throughput']:
    frac = f'{row["decode_flop_fraction"]:9.4f}' if 'decode_flop_fraction' in row else f'{"-":>9s}'
    frac += (f' {row["decode_flop_fraction_pair_median"]:9.4f}' if 'decode_flop_fraction_pair_median' in row
             else f' {"-":>9s}')
    of_weights = (f'{row["decode_flop_fraction_of_weight_matmuls"]:10.4f}'
                  if 'decode_flop_fraction_of_weight_matmuls' in row else f'{"-":>10s}')
    memory = f'{row["decode_memory_fraction"]:8.4f}' if 'decode_memory_fraction' in row else f'{"-":>8s}'
    lines.append(f'{row["model"]:10s} {row["params"]:9d} {row["batch"]:5d} {row["impl"]:19s} '
                 f'{row["tokens_per_s"]:10.1f} {row["run_s"]:8.3f} {row["compile_s"]:9.2f} {frac} {of_weights} '
                 f'{memory}')
  lines += ['', 'FLOP frac: the decode loop\'s FLOP/s over the dense matmul\'s best; per round: the median over '
            'rounds of the decode against the dense matmul called in the same round; mem frac: the bytes a '
            'decode must move (every weight once per step, the KV-cache reads) over its time, as a fraction of '
            'the memory read rate (the memory-bandwidth roofline)',
            '', 'weight matmuls alone (each layer\'s projections and the LM head, chained at the batch\'s rows), '
            f'and the decode bound they give with the KV-cache reads at {result["memory"]["read_bytes_per_s"] / 1e9:.1f} '
            'GB/s (memory read rate):']
  for row in result['weight_matmuls']:
    lines.append(f'  {row["model"]:10s} b={row["batch"]:<3d} {row["flops_per_s"] / 1e9:7.1f} GFLOP/s '
                 f'({row["fraction_of_dense"]:.2f} of the dense matmul, per round '
                 f'{row["fraction_of_dense_per_round"]:.2f}); bound on the decode FLOP fraction '
                 f'{row["decode_flop_fraction_bound"]:.2f} ({row["cache_read_bytes"] / 1e9:.2f} GB of cache reads)')
  lines += ['', f'{"model":10s} {"batch":>5s} {"impl":19s} {"tokens":>6s} {"ms/token":>9s}']
  for row in result['per_token_decode']:
    lines.append(f'{row["model"]:10s} {row["batch"]:5d} {row["impl"]:19s} {row["new_tokens"]:6d} '
                 f'{row["per_token_ms"]:9.3f}')
  ours = ['rl_reason'] + ([f'rl_reason_{result["settings"]["cpu_devices"]}_devices']
                          if result['settings']['cpu_devices'] > 1 else [])
  for model, growth in result['per_token_growth'].items():
    for impl in ours:
      lines.append(f'  {model:10s} per-token growth {growth["short"]} -> {growth["long"]} tokens: {impl} '
                   f'{growth[impl]:.2f}x (median of rounds {growth[impl + "_round_median"]:.2f}x), '
                   f'transformers {growth["transformers"]:.2f}x')
  lines += ['', 'ratios (tokens/s):']
  for key, ratio in result['ratios'].items():
    for impl in ours:
      lines.append(f'  {key:18s} {impl} / transformers {ratio[impl + "_vs_transformers"]:7.2f}x '
                   f'(median of pairs {ratio[impl + "_vs_transformers_pair_median"]:.2f}x)')
    lines.append(f'  {key:18s} rl_reason / no cache {ratio["rl_reason_vs_no_cache"]:7.2f}x')
  return '\n'.join(lines)


if __name__ == '__main__':
  if len(sys.argv) == 3 and sys.argv[1] == '--transformers_worker':
    transformers_worker(sys.argv[2])
  else:
    sys.exit(0 if main() else 1)
