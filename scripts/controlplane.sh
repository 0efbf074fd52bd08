#!/usr/bin/env bash
# Builds kiln-controlplane (e2e/controlplane: kube-apiserver, embedded etcd and the
# kube-controller-manager controllers, from the Go modules pinned by its go.mod and go.sum) into
# .controlplane/ at the repository root. The tests that need a real Kubernetes API server start
# it through kiln_testkit::ControlPlane. Go's module and build caches make later runs quick; the
# first build downloads the modules and compiles Kubernetes (times in docs/benchmarks.md).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v go >/dev/null 2>&1; then
  echo "scripts/controlplane.sh: Go is needed to build the test control plane (e2e/controlplane); install Go 1.26 or newer" >&2
  exit 1
fi
mkdir -p .controlplane
start=$(date +%s)
# The Kubernetes version, as /version and `kubectl version` report it (a module build has no git
# tree to stamp it from).
version=$(sed -n 's/^[[:space:]]*k8s.io\/kubernetes \(v[0-9][0-9.]*\)$/\1/p' e2e/controlplane/go.mod)
major=$(echo "${version#v}" | cut -d. -f1)
minor=$(echo "${version#v}" | cut -d. -f2)
pkg=k8s.io/component-base/version
ldflags="-s -w -X $pkg.gitVersion=$version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
# -mod=readonly: go.mod and go.sum are the pins; a build that would change them fails.
(cd e2e/controlplane && go build -mod=readonly -trimpath -ldflags="$ldflags" -o ../../.controlplane/kiln-controlplane .)
echo "kiln-controlplane built in $(( $(date +%s) - start ))s ($(go version | cut -d' ' -f3), kube-apiserver $version)"
