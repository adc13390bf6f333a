#!/usr/bin/env bash
# The project's IPFS node is Kubo, the daemon users run. This script is the one place that
# knows which Kubo version we test with, how to install it, and how a local test node is
# configured; `make run`, `make cluster`, `make test`, `make bench`, `make chaos` and the
# test kit (crates/testkit) all go through it.
#
#   kubo.sh path                       print the Kubo binary to use (install it if missing)
#   kubo.sh install                    install the pinned Kubo into the cache folder
#   kubo.sh start REPO API SWARM [GW]  init REPO once (test profile, loopback ports, no
#                                      bootstrap peers, no DHT, no MDNS), then exec the daemon;
#                                      the swarm listens on $KUBO_SWARM_IP (default 127.0.0.1;
#                                      the chaos runs give each node its namespace's address)
#
# Which binary: $KUBO_BIN when set; else an `ipfs` on PATH whose version is the pinned one;
# else $CACHE/bin/ipfs (installed on demand with the Go toolchain from the Go module proxy).
# $CACHE is $IPFS_CLUSTER_TOOLS, else ${XDG_CACHE_HOME:-~/.cache}/ipfs-cluster-rs.
#
# Why v0.43.0 and not v0.43.1: v0.43.1's go.mod replaces go-libp2p by a personal fork that
# the Go module proxy does not serve, so it cannot be built here. v0.43.0's go.mod only
# has `exclude` lines, which make a plain `go install pkg@version` refuse it; we build it in
# a throw-away wrapper module that repeats those two lines, which is the same build.
set -euo pipefail

KUBO_VERSION=0.43.0
cache="${IPFS_CLUSTER_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/ipfs-cluster-rs}"
cached="$cache/bin/ipfs"

version_of() { "$1" version --number 2>/dev/null || true; }

install_kubo() {
  if [ -x "$cached" ] && [ "$(version_of "$cached")" = "$KUBO_VERSION" ]; then
    return 0
  fi
  command -v go >/dev/null 2>&1 || {
    echo "kubo.sh: Kubo $KUBO_VERSION is not installed and there is no Go toolchain to build it; install Go >= 1.26 (or set KUBO_BIN to a Kubo $KUBO_VERSION binary)" >&2
    exit 1
  }
  echo "kubo.sh: installing Kubo $KUBO_VERSION into $cache/bin (from the Go module proxy; a few minutes the first time)" >&2
  mkdir -p "$cache/bin"
  wrapper=$(mktemp -d)
  trap 'rm -rf "$wrapper"' RETURN
  cat >"$wrapper/go.mod" <<EOF
module kubo-install

go 1.26

exclude (
	github.com/ipfs/go-ipfs-cmds v2.0.1+incompatible
	github.com/libp2p/go-libp2p v6.0.23+incompatible
)
EOF
  (
    cd "$wrapper"
    go get "github.com/ipfs/kubo/cmd/ipfs@v$KUBO_VERSION" >/dev/null 2>&1 ||
      go get "github.com/ipfs/kubo/cmd/ipfs@v$KUBO_VERSION"
    GOBIN="$cache/bin" go install github.com/ipfs/kubo/cmd/ipfs
  )
  [ "$(version_of "$cached")" = "$KUBO_VERSION" ] || {
    echo "kubo.sh: the installed $cached does not report version $KUBO_VERSION" >&2
    exit 1
  }
}

kubo_path() {
  if [ -n "${KUBO_BIN:-}" ]; then
    echo "$KUBO_BIN"
    return
  fi
  if command -v ipfs >/dev/null 2>&1 && [ "$(version_of "$(command -v ipfs)")" = "$KUBO_VERSION" ]; then
    command -v ipfs
    return
  fi
  install_kubo
  echo "$cached"
}

start_node() {
  local repo="$1" api="$2" swarm="$3" gw="${4:-}"
  local ipfs
  ipfs=$(kubo_path)
  export IPFS_PATH="$repo"
  if [ ! -f "$repo/config" ]; then
    mkdir -p "$repo"
    "$ipfs" init --profile test --empty-repo >/dev/null
    "$ipfs" config Addresses.API "/ip4/127.0.0.1/tcp/$api"
    "$ipfs" config --json Addresses.Swarm "[\"/ip4/${KUBO_SWARM_IP:-127.0.0.1}/tcp/$swarm\"]"
    if [ -n "$gw" ]; then
      "$ipfs" config --json Addresses.Gateway "\"/ip4/127.0.0.1/tcp/$gw\""
    else
      "$ipfs" config --json Addresses.Gateway '[]'
    fi
    # No DHT and no public routers: content moves only over connections the cluster makes.
    "$ipfs" config Routing.Type none
  fi
  exec "$ipfs" daemon
}

case "${1:-}" in
  path) kubo_path ;;
  install) install_kubo ;;
  start)
    [ $# -ge 4 ] || { echo "usage: kubo.sh start REPO API_PORT SWARM_PORT [GATEWAY_PORT]" >&2; exit 2; }
    start_node "$2" "$3" "$4" "${5:-}"
    ;;
  version) echo "$KUBO_VERSION" ;;
  *)
    echo "usage: kubo.sh path | install | version | start REPO API_PORT SWARM_PORT [GATEWAY_PORT]" >&2
    exit 2
    ;;
esac
