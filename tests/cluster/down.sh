#!/usr/bin/env bash
# Stop the cluster started by up.sh and remove its work dir (processes, pki, etcd data, logs,
# kubeconfig). `make cluster-down` or `bash tests/cluster/down.sh`. NSM_CLUSTER_NAME as for up.sh.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
  if [[ -x "$REPO/.venv/bin/python" ]]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON=python3; fi
fi
exec "$PYTHON" "$HERE/kwok_cluster.py" down "$@"
