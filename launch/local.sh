#!/usr/bin/env bash
# N training processes on this machine, joined on loopback: a multi-host run in miniature.
#
#   launch/local.sh 2 --config=configs/vlm_grpo.py:tiny_2x1 --workdir=runs/two_processes
#
# Each process gets JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID (rl_reason.main joins
# the job from them) and, on CPU, gloo collectives and one CPU device (JAX_NUM_CPU_DEVICES, default 1).
# Process i's output goes to $LOG_DIR/process_i.log (default: a fresh temporary folder); process 0's
# is also shown. If one process fails, the others are stopped, and the exit status is non-zero.
# PYTHON (default python) runs `-m rl_reason.main`; PORT picks the coordinator port (default: a free one).
set -euo pipefail
if [[ $# -lt 1 || ! $1 =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 NUM_PROCESSES [rl_reason.main flags...]" >&2
  exit 2
fi
count=$1
shift
python=${PYTHON:-python}
port=${PORT:-$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
log_dir=${LOG_DIR:-$(mktemp -d)}
mkdir -p "$log_dir"
cd "$(dirname "$0")/.."

pids=()
stop_all() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap stop_all INT TERM
for ((i = 0; i < count; i++)); do
  JAX_COORDINATOR_ADDRESS="127.0.0.1:$port" JAX_NUM_PROCESSES="$count" JAX_PROCESS_ID="$i" \
  JAX_CPU_COLLECTIVES_IMPLEMENTATION="${JAX_CPU_COLLECTIVES_IMPLEMENTATION:-gloo}" \
  JAX_NUM_CPU_DEVICES="${JAX_NUM_CPU_DEVICES:-1}" \
    "$python" -m rl_reason.main "$@" >"$log_dir/process_$i.log" 2>&1 &
  pids+=($!)
done
echo "$count processes on 127.0.0.1:$port; logs in $log_dir" >&2
tail -n +1 -f "$log_dir/process_0.log" --pid "${pids[0]}" &

status=0
remaining=("${pids[@]}")
while ((${#remaining[@]})); do
  if wait -n "${remaining[@]}"; then :; else
    code=$?
    if ((status == 0)); then  # the first failure: its status is the launcher's
      status=$code
      echo "a process exited with status $status; stopping the others (logs in $log_dir)" >&2
      stop_all
    fi
  fi
  alive=()
  for pid in "${remaining[@]}"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
  remaining=("${alive[@]+"${alive[@]}"}")
done
wait 2>/dev/null || true
exit "$status"
