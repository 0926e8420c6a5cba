#!/usr/bin/env bash
# Start the local e2e control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kwok) with fake A100 nodes and the process-backed node exec-0, for a person: `make cluster-up`
# or `bash tests/cluster/up.sh`.
# Binaries come from tests/cluster/build.sh (built once, cached); nothing is downloaded; everything
# listens on 127.0.0.1 (random free ports). Prints `export KUBECONFIG=...` on stdout.
#   NSM_CLUSTER_NAME  cluster name (default nsm-dev)
#   NSM_CACHE_DIR     cache root; the work dir is $NSM_CACHE_DIR/clusters/<name>
# Stop it and remove every file with tests/cluster/down.sh (`make cluster-down`).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
  if [[ -x "$REPO/.venv/bin/python" ]]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON=python3; fi
fi
bash "$HERE/build.sh" >&2
exec "$PYTHON" "$HERE/kwok_cluster.py" up "$@"
