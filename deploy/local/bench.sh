#!/usr/bin/env bash
# `make bench`: build release, run the whole-peer benchmark (crates/bench) and every
# owner's benchmark example that exists; each rewrites its own section of
# docs/benchmarks.md. Extra arguments go to `ipfs-cluster-bench run` (e.g. --sizes 100000).
# Budget: about 20 minutes on the 2-core dev machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
CARGO="${CARGO:-cargo}"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
OUT="${BENCH_OUT:-docs/benchmarks.md}"

# The Kubo node (installed on demand; the benchmark starts it through the test kit).
deploy/local/kubo.sh path >/dev/null

echo "bench: cargo build --release --workspace --bins" >&2
"$CARGO" build --release --workspace --bins

status=0
echo "bench: whole peer (ipfs-cluster-bench)" >&2
timeout 1200 "$TARGET_DIR/release/ipfs-cluster-bench" run \
  --bin-dir "$TARGET_DIR/release" --out "$OUT" "$@" || status=$?

# The other owners' benchmarks, each only when its example exists (names as their owners
# chose them); their output is kept in $TARGET_DIR/bench-logs/, and each owner keeps its own
# section of the report.
mkdir -p "$TARGET_DIR/bench-logs"
for pair in transport:peer_call_bench ipfs-connector:connector_bench consensus:bench; do
  crate="${pair%%:*}"; example="${pair#*:}"
  if [ -f "crates/$crate/examples/$example.rs" ]; then
    log="$TARGET_DIR/bench-logs/$crate-$example.txt"
    echo "bench: ipfs-cluster-$crate --example $example (output: $log)" >&2
    if ! timeout 900 "$CARGO" run --release -q -p "ipfs-cluster-$crate" --example "$example" 2>&1 | tee "$log"; then
      echo "bench: ipfs-cluster-$crate --example $example failed (see $log)" >&2
      status=1
    fi
  fi
done

echo "bench: report in $OUT" >&2
exit "$status"
