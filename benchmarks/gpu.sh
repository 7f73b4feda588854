#!/usr/bin/env bash
# The sampler's GPU figures in one call, for a session lent a GPU (the device image holds python3 with
# jax, flax, optax, torch and transformers; this checkout is put on PYTHONPATH, nothing is installed):
#
#   bash benchmarks/gpu.sh                      # Qwen2.5-0.5B's shape, bfloat16, batch 128 (~5 min on an H100)
#   bash benchmarks/gpu.sh --quick --torch_device cpu --dtype float32 --batches 2   # a smoke run on a CPU
#
# Extra arguments go to benchmarks/sampler.py after the defaults (a later flag wins). Everything lands in
# $OUT (the device machine's return folder) or ./gpu_out: env.txt (GPU, driver, library versions),
# sampler_gpu.json and sampler_gpu.log. The JSON holds the throughput figures (tokens/s, FLOP and
# memory-roofline fractions) as soon as they are measured, marked "partial" until the per-token calls end.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu_out}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv 2>&1 || true
  python3 -c 'import jax, flax, numpy, torch, transformers
print("jax", jax.__version__, jax.default_backend(), jax.devices())
print("flax", flax.__version__, "numpy", numpy.__version__)
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), "transformers", transformers.__version__)'
} > "$out/env.txt" 2>&1
cat "$out/env.txt"
python3 benchmarks/sampler.py --models qwen2_0_5b --dtype bfloat16 --batches 128 --torch_device cuda \
    --no_cache_max_batch 0 --repeats 3 --out "$out/sampler_gpu.json" "$@" 2>&1 | tee "$out/sampler_gpu.log"
