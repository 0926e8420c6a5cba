# shellcheck shell=bash
# Pinned versions of the e2e control plane. Sourced by build.sh / up.sh.
# Changing a version here makes build.sh build a new cache entry (the old one is kept).
K8S_VERSION=v1.36.3      # k8s.io/kubernetes (kube-apiserver, kube-controller-manager, kube-scheduler)
K8S_STAGING_VERSION=v0.36.3
ETCD_VERSION=v3.6.16     # go.etcd.io/etcd/server/v3
KWOK_VERSION=v0.8.0      # sigs.k8s.io/kwok (kwok, kwokctl)
HELM_VERSION=v3.21.4     # helm.sh/helm/v3 (uses k8s.io/client-go v0.36.2)
