#!/usr/bin/env bash
# One training process per host of a Cloud TPU pod slice (TPU VMs): the same command on every worker.
#
#   launch/tpu_pod.sh TPU_NAME ZONE --config=configs/recipes/dapo.py --workdir=gs://BUCKET/runs/dapo
#
# Each worker needs the repository at REPO_DIR (default ~/rl_reason) with its dependencies
# (pip install -e . 'jax[tpu]'); the workdir must be one place every host sees (a GCS bucket or a
# shared disk): checkpoints are written by every host, metrics by the first. --distributed lets
# JAX find the slice's hosts itself. GCLOUD (default gcloud) is the CLI that runs it.
set -euo pipefail
if [[ $# -lt 2 ]]; then
  echo "usage: $0 TPU_NAME ZONE [rl_reason.main flags...]" >&2
  exit 2
fi
name=$1
zone=$2
shift 2
printf -v flags ' %q' "$@"
"${GCLOUD:-gcloud}" compute tpus tpu-vm ssh "$name" --zone="$zone" --worker=all \
  --command="cd ${REPO_DIR:-~/rl_reason} && python -m rl_reason.main --distributed$flags"
