#!/usr/bin/env bash
# Upstream IPFS Cluster (the Go implementation we replace), pinned, for the tests and
# benchmarks that compare us with it: `ipfs-cluster-service`, `ipfs-cluster-ctl` and
# `ipfs-cluster-follow` v1.1.6, built from the Go module proxy into the same cache folder
# as Kubo (deploy/local/kubo.sh). Nothing of upstream's source enters this repository.
#
#   upstream.sh path     print the folder holding the three binaries (install when missing)
#   upstream.sh install  install them
#
# Why a wrapper module: `go install <pkg>@v1.1.6` asks the proxy for the module's version
# list (to look for a deprecation notice), which the proxy here refuses; `go get` inside a
# throw-away module resolves the same pinned version without that list.
set -euo pipefail

UPSTREAM_VERSION=1.1.6
MODULE=github.com/ipfs-cluster/ipfs-cluster
BINS=(ipfs-cluster-service ipfs-cluster-ctl ipfs-cluster-follow)
cache="${IPFS_CLUSTER_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/ipfs-cluster-rs}"
dir="$cache/upstream-v$UPSTREAM_VERSION"

installed() {
  for b in "${BINS[@]}"; do [ -x "$dir/$b" ] || return 1; done
  "$dir/ipfs-cluster-ctl" --version 2>/dev/null | grep -q "$UPSTREAM_VERSION"
}

install_upstream() {
  installed && return 0
  command -v go >/dev/null 2>&1 || {
    echo "upstream.sh: IPFS Cluster $UPSTREAM_VERSION is not installed and there is no Go toolchain to build it; install Go >= 1.26" >&2
    exit 1
  }
  echo "upstream.sh: installing IPFS Cluster v$UPSTREAM_VERSION into $dir (from the Go module proxy; a few minutes the first time)" >&2
  mkdir -p "$dir"
  wrapper=$(mktemp -d)
  trap 'rm -rf "$wrapper"' RETURN
  printf 'module upstream-install\n\ngo 1.26\n' >"$wrapper/go.mod"
  (
    cd "$wrapper"
    pkgs=()
    for b in "${BINS[@]}"; do pkgs+=("$MODULE/cmd/$b@v$UPSTREAM_VERSION"); done
    go get "${pkgs[@]}" >/dev/null 2>&1 || go get "${pkgs[@]}"
    pkgs=()
    for b in "${BINS[@]}"; do pkgs+=("$MODULE/cmd/$b"); done
    GOBIN="$dir" go install "${pkgs[@]}"
  )
  installed || {
    echo "upstream.sh: the installed binaries in $dir do not report version $UPSTREAM_VERSION" >&2
    exit 1
  }
}

case "${1:-}" in
  path) install_upstream; echo "$dir" ;;
  install) install_upstream ;;
  version) echo "$UPSTREAM_VERSION" ;;
  *)
    echo "usage: upstream.sh path | install | version" >&2
    exit 2
    ;;
esac
