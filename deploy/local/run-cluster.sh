#!/usr/bin/env bash
# Runs a local N-peer cluster for `make cluster` (default 3): every peer has its own
# Kubo node (deploy/local/kubo.sh) and its own ports on 127.0.0.1, all share one cluster secret, and peers 1..N-1
# join peer 0 with --bootstrap. State lives in .run/cluster/. Ctrl-C stops everything.
#   peer i: REST 9094+100i, proxy 9095+100i, swarm 9096+100i, pinsvc 9097+100i,
#           internal gRPC 9180..9183+100i, IPFS API 5101+i (swarm 4101+i)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
bin="${BIN:-$root/target/debug}"
case "$bin" in /*) ;; *) bin="$root/$bin" ;; esac
n="${PEERS:-3}"
base="$root/.run/cluster"
mkdir -p "$base"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 0' INT TERM

wait_port() { for _ in $(seq 1 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.2; done; return 1; }

secret_file="$base/secret"
[ -f "$secret_file" ] || od -vN 32 -An -tx1 /dev/urandom | tr -d ' \n' > "$secret_file"
secret=$(cat "$secret_file")

KUBO_BIN=$("$root/deploy/local/kubo.sh" path)
export KUBO_BIN
for i in $(seq 0 $((n - 1))); do
  api=$((5101 + i)); swarm=$((4101 + i))
  "$root/deploy/local/kubo.sh" start "$base/ipfs$i" "$api" "$swarm" $((8101 + i)) >"$base/ipfs$i.log" 2>&1 &
  pids+=($!)
done
for i in $(seq 0 $((n - 1))); do wait_port $((5101 + i)) || { echo "IPFS node $i did not start; see $base/ipfs$i.log"; exit 1; }; done
# The cluster connects the IPFS nodes to each other (ipfshttp connect_swarms_delay).

boot=""
for i in $(seq 0 $((n - 1))); do
  o=$((100 * i)); dir="$base/peer$i"
  export CLUSTER_SECRET="$secret" CLUSTER_PEERNAME="peer$i"
  export CLUSTER_RESTAPI_HTTPLISTENMULTIADDRESS=/ip4/127.0.0.1/tcp/$((9094 + o))
  export CLUSTER_IPFSPROXY_LISTENMULTIADDRESS=/ip4/127.0.0.1/tcp/$((9095 + o))
  export CLUSTER_LISTENMULTIADDRESS=/ip4/127.0.0.1/tcp/$((9096 + o))
  export CLUSTER_PINSVCAPI_HTTPLISTENMULTIADDRESS=/ip4/127.0.0.1/tcp/$((9097 + o))
  export CLUSTER_INTERNAL_TRANSPORTLISTENMULTIADDRESS=/ip4/127.0.0.1/tcp/$((9180 + o))
  export CLUSTER_INTERNAL_CONSENSUSLISTENMULTIADDRESS=/ip4/127.0.0.1/tcp/$((9181 + o))
  export CLUSTER_INTERNAL_IPFSCONNECTORLISTENMULTIADDRESS=/ip4/127.0.0.1/tcp/$((9182 + o))
  export CLUSTER_INTERNAL_GATEWAYLISTENMULTIADDRESS=/ip4/127.0.0.1/tcp/$((9183 + o))
  export CLUSTER_IPFSHTTP_NODEMULTIADDRESS=/ip4/127.0.0.1/tcp/$((5101 + i))
  export CLUSTER_IPFSPROXY_NODEMULTIADDRESS=/ip4/127.0.0.1/tcp/$((5101 + i))
  [ -f "$dir/service.json" ] || "$bin/ipfs-cluster-service" --config "$dir" init >/dev/null
  if [ "$i" = 0 ] || [ -d "$dir/raft" ]; then
    "$bin/ipfs-cluster-service" --config "$dir" daemon >"$base/peer$i.log" 2>&1 &
  else
    "$bin/ipfs-cluster-service" --config "$dir" daemon --bootstrap "$boot" >"$base/peer$i.log" 2>&1 &
  fi
  pids+=($!)
  wait_port $((9094 + o)) || { echo "peer $i did not start; see $base/peer$i.log"; exit 1; }
  if [ "$i" = 0 ]; then
    pid0=$(sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' "$dir/identity.json")
    boot="/ip4/127.0.0.1/tcp/9096/p2p/$pid0"
  fi
  echo "peer$i up: REST http://127.0.0.1:$((9094 + o))  (log: $base/peer$i.log)"
done
echo "cluster of $n peers running; try: $bin/ipfs-cluster-ctl peers ls   (Ctrl-C stops it)"
wait
