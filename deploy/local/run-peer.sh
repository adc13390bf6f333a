#!/usr/bin/env bash
# Runs a single-peer cluster for `make run`: creates the peer's config in .run/peer0 on the
# first run, starts a Kubo node (deploy/local/kubo.sh: the pinned version, installed on
# demand) on 127.0.0.1:5001 when nothing answers there, then runs `ipfs-cluster-service daemon` in the foreground. Ctrl-C stops everything.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
bin="${BIN:-$root/target/debug}"
case "$bin" in /*) ;; *) bin="$root/$bin" ;; esac
dir="${IPFS_CLUSTER_PATH:-$root/.run/peer0}"
ipfs_pid=""

cleanup() {
  if [ -n "$ipfs_pid" ]; then kill "$ipfs_pid" 2>/dev/null || true; wait "$ipfs_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT

if ! (exec 3<>/dev/tcp/127.0.0.1/5001) 2>/dev/null; then
  echo "no IPFS daemon on 127.0.0.1:5001: starting Kubo $("$root/deploy/local/kubo.sh" version) with its repo in $root/.run/ipfs0"
  mkdir -p "$root/.run"
  KUBO_BIN=$("$root/deploy/local/kubo.sh" path)
  KUBO_BIN="$KUBO_BIN" "$root/deploy/local/kubo.sh" start "$root/.run/ipfs0" 5001 4001 8080 >"$root/.run/ipfs0.log" 2>&1 &
  ipfs_pid=$!
  for _ in $(seq 1 300); do
    if (exec 3<>/dev/tcp/127.0.0.1/5001) 2>/dev/null; then break; fi
    if ! kill -0 "$ipfs_pid" 2>/dev/null; then echo "the IPFS node failed to start; see $root/.run/ipfs0.log"; exit 1; fi
    sleep 0.2
  done
  echo "IPFS node up (log: $root/.run/ipfs0.log)"
fi

if [ ! -f "$dir/service.json" ]; then
  "$bin/ipfs-cluster-service" --config "$dir" init
fi
echo "peer config: $dir  (REST API: http://127.0.0.1:9094)"
"$bin/ipfs-cluster-service" --config "$dir" daemon &
daemon=$!
trap 'kill -TERM $daemon 2>/dev/null || true' INT TERM
wait $daemon || status=$?
wait $daemon 2>/dev/null || true
exit "${status:-0}"
