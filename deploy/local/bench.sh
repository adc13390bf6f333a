#!/usr/bin/env bash
# `make bench`: build release, run the whole-peer benchmark (crates/bench: the
# whole-peer figures, then the same workloads side by side with upstream IPFS Cluster v1.1.6 in raft
# and crdt mode) and every owner's benchmark example that exists; each rewrites
# its own section of docs/benchmarks.md. Extra arguments go to `ipfs-cluster-bench run`
# (e.g. --sizes 100000, --impl ours,upstream-raft, --workloads ingest,state).
# Budget: about 60 minutes on the 2-core dev machine with upstream included (20 of them
# for the whole-peer figures; `--fill rest` builds the big pinsets through REST instead of
# Consensus.Import / `state import`: add the time of 1M pins at each one's ingest rate).
# Diagnosis: BENCH_PEER_LOG sets the peers' RUST_LOG (e.g.
# "warn,ipfs_cluster_consensus::node=debug,ipfs_cluster_consensus::raft=debug" for the raft
# write path's timings) and BENCH_KEEP=1 keeps their folders (daemon.log) after the run.
set -euo pipefail
cd "$(dirname "$0")/../.."
CARGO="${CARGO:-cargo}"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
OUT="${BENCH_OUT:-docs/benchmarks.md}"

# The Kubo node (installed on demand; the benchmark starts it through the test kit).
deploy/local/kubo.sh path >/dev/null
# Upstream IPFS Cluster v1.1.6 (installed on demand from the Go module proxy), unless the
# run names implementations without it (`--impl ours`).
args=" $* "
if [[ "$args" != *" --impl "* && "$args" != *" --impl="* ]] || [[ "$args" == *upstream* ]]; then
  deploy/local/upstream.sh path >/dev/null || {
    echo "bench: upstream IPFS Cluster is needed for the side-by-side figures (deploy/local/upstream.sh needs Go >= 1.26); pass --impl ours to run without it" >&2
    exit 1
  }
fi

echo "bench: cargo build --release --workspace --bins" >&2
"$CARGO" build --release --workspace --bins

status=0
echo "bench: whole peer (ipfs-cluster-bench)" >&2
timeout 5400 "$TARGET_DIR/release/ipfs-cluster-bench" run \
  --bin-dir "$TARGET_DIR/release" --out "$OUT" "$@" || status=$?

# The other owners' benchmarks, each only when its example exists (names as their owners
# chose them); their output is kept in $TARGET_DIR/bench-logs/, and each owner keeps its own
# section of the report.
mkdir -p "$TARGET_DIR/bench-logs"
# Each example's output becomes its generated block in the report, with the command
# (`ipfs-cluster-bench section`): no figure in docs/benchmarks.md is copied by hand.
# FEATURES: the crate features the example requires (e.g. a crate's test doubles).
run_example() { # heading, block name, crate, example, args...
  local heading="$1" name="$2" crate="$3" example="$4"; shift 4
  [ -f "crates/$crate/examples/$example.rs" ] || return 0
  local log="$TARGET_DIR/bench-logs/$name.txt"
  local features=()
  if [ -n "${FEATURES:-}" ]; then features=(--features "$FEATURES"); fi
  local cmd="cargo run --release -p ipfs-cluster-$crate ${features[*]} --example $example"
  if [ $# -gt 0 ]; then cmd="$cmd -- $*"; set -- -- "$@"; fi
  echo "bench: $cmd (output: $log)" >&2
  # stdout is the figures; stderr (diagnostics, e.g. raft's vote errors while the nodes
  # connect) goes beside it and is shown only when the example fails.
  if timeout 900 "$CARGO" run --release -q -p "ipfs-cluster-$crate" "${features[@]}" --example "$example" "$@" >"$log" 2>"$log.stderr"; then
    cat "$log"
    "$TARGET_DIR/release/ipfs-cluster-bench" section --out "$OUT" --heading "$heading" \
      --name "$name" --command "$cmd" --log "$log" || status=1
  else
    tail -20 "$log" "$log.stderr" >&2
    echo "bench: $cmd failed (see $log and $log.stderr)" >&2
    status=1
  fi
}
run_example "## Peer calls" peer-calls transport peer_call_bench --secs 5
run_example "## Peer calls" peer-calls-nodelay transport peer_call_bench --secs 5 --server-nodelay
run_example "## IPFS connector" ipfs-connector ipfs-connector connector_bench
FEATURES=test-doubles run_example "## Consensus" consensus consensus bench 2000 100000

# Collaborative clusters: how long a pinset takes to reach 50 followers (the scale test of
# tests/follow.rs, run in release; its result lines become the followers block).
run_followers() { # followers pins
  local n="$1" pins="$2" raw="$TARGET_DIR/bench-logs/followers-$1-$2.raw"
  local log="$TARGET_DIR/bench-logs/followers.txt"
  echo "bench: FOLLOWERS=$n PINS=$pins cargo test --release -p ipfs-cluster-tests --test follow -- --ignored many_followers (output: $raw)" >&2
  if FOLLOWERS="$n" PINS="$pins" timeout 2400 "$CARGO" test --release -q -p ipfs-cluster-tests \
      --test follow -- --ignored many_followers --nocapture >"$raw" 2>&1; then
    grep '^FOLLOWERS=' "$raw" >>"$log"
  else
    tail -20 "$raw" >&2
    echo "bench: the followers run ($n followers, $pins pins) failed (see $raw)" >&2
    status=1
    return 1
  fi
}
rm -f "$TARGET_DIR/bench-logs/followers.txt"
# The 10,000-pin run only when 1,000 pins reached every follower (it takes far longer).
{ run_followers 50 1000 && run_followers 50 10000; } || true
if [ -s "$TARGET_DIR/bench-logs/followers.txt" ]; then
  cat "$TARGET_DIR/bench-logs/followers.txt"
  "$TARGET_DIR/release/ipfs-cluster-bench" section --out "$OUT" --heading "## Followers" \
    --name followers --command "FOLLOWERS=50 PINS=1000|10000 cargo test --release -p ipfs-cluster-tests --test follow -- --ignored many_followers --nocapture" \
    --log "$TARGET_DIR/bench-logs/followers.txt" || status=1
fi

echo "bench: report in $OUT" >&2
exit "$status"
