#!/usr/bin/env bash
# System packages the test suite needs beyond the virtualenv (installed once, then a no-op).
set -euo pipefail
need=()
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
if ((${#need[@]})); then
  echo "test-deps: installing ${need[*]} from Debian"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # The Debian package starts a service on :9090; the tests run their own Prometheus.
  { $SUDO systemctl disable --now prometheus 2>/dev/null || $SUDO service prometheus stop 2>/dev/null || pkill -x prometheus || true; } >/dev/null 2>&1
fi
