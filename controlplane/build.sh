#!/usr/bin/env bash
# Builds the control plane of the cluster test tier from source: etcd, kube-apiserver,
# kube-controller-manager and kube-scheduler of one pinned Kubernetes release, in one binary
# (voiceop-k8s PART FLAGS...), into a cache outside the work tree. A second run costs nothing.
#
#   controlplane/build.sh            # prints the binary's path
#
# Only the Go module proxy is used (go.mod pins k8s.io/kubernetes and every staging module).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version="$(grep -oE "^\s*k8s.io/kubernetes v[0-9.]+" "$here/go.mod" | awk "{print \$2}")"
minor="$(echo "$version" | cut -d. -f2)"
cache="${VOICEOP_CACHE_DIR:-$HOME/.cache/voiceop}/control-plane/$version"
binary="$cache/voiceop-k8s"
# The recipe: a change to the sources or the pins rebuilds.
recipe="$(cat "$here/go.mod" "$here/go.sum" "$here/main.go" "$0" | sha256sum | cut -c1-16)"

if [[ -x "$binary" && "$(cat "$cache/recipe" 2>/dev/null)" == "$recipe" ]]; then
    echo "$binary"
    exit 0
fi
command -v go >/dev/null || { echo "error: Go is needed to build the control plane (go.dev/dl)" >&2; exit 1; }
mkdir -p "$cache"
echo "building Kubernetes $version (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) into $cache; ~12 min cold on 2 cores" >&2
pkg="k8s.io/component-base/version"
started=$SECONDS
(
    cd "$here"
    GOTOOLCHAIN=local GOFLAGS=-mod=readonly go build -trimpath -o "$binary.new" -ldflags "-s -w \
        -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor \
        -X $pkg.gitTreeState=clean -X $pkg/verflag.programName=kubernetes" .
)
mv "$binary.new" "$binary"
echo "$recipe" > "$cache/recipe"
echo "built in $((SECONDS - started)) s: $("$binary" kube-apiserver --version)" >&2
echo "$binary"
