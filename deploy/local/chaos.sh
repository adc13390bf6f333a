#!/usr/bin/env bash
# The long fault-injection runs (`make chaos`, issue 9): repeated 3-peer and 5-peer clusters
# (each peer its own Kubo node, started by the real launcher) under a steady stream of
# pins/unpins while services are SIGKILLed, whole peers SIGKILLed and restarted, peers
# SIGSTOPped/SIGCONTed and IPFS nodes restarted; plus the namespace partition test. After
# every run the independent checker prints its counts (lost must be 0). Runs continue until
# CHAOS_TOTAL faults were injected in total.
#   CHAOS_TOTAL=1000     faults to reach over all runs
#   CHAOS_FAULTS=150     faults per run (the cluster is rebuilt between runs)
#   CHAOS_SIZES="3 5"    cluster sizes, used in turn
#   CHAOS_PARTITIONS=1   also run the partition test after every size cycle (needs root)
#   CHAOS_SEED=…         repeat a run's randomness (printed at the start of each run)
# Counts go to stdout and to $CHAOS_LOG (default .run/chaos/results.txt).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
total="${CHAOS_TOTAL:-1000}"
per_run="${CHAOS_FAULTS:-150}"
sizes="${CHAOS_SIZES:-3 5}"
partitions="${CHAOS_PARTITIONS:-1}"
log="${CHAOS_LOG:-$root/.run/chaos/results.txt}"
mkdir -p "$(dirname "$log")"
cargo build --workspace --bins
cargo test -p ipfs-cluster-tests --test chaos --no-run

done_faults=0
runs=0
run_test() { # name, extra env…
  local name="$1"; shift
  local out; out="$(mktemp)"
  if ! env "$@" cargo test -q -p ipfs-cluster-tests --test chaos -- --exact "$name" --include-ignored --nocapture >"$out" 2>&1; then
    echo "FAILED: $name $*; output: $out" | tee -a "$log"
    grep -E "checker:|panicked|seed" "$out" | tail -20
    exit 1
  fi
  local line; line="$(grep -E '^checker:' "$out" | tail -1)"
  echo "$(date -u +%FT%TZ) $name $* $line" | tee -a "$log"
  local f; f="$(sed -n 's/.*faults_injected=\([0-9]*\).*/\1/p' <<<"$line")"
  done_faults=$((done_faults + ${f:-0}))
  runs=$((runs + 1))
  rm -f "$out"
}

while [ "$done_faults" -lt "$total" ]; do
  for n in $sizes; do
    left=$((total - done_faults))
    [ "$left" -le 0 ] && break
    run_test long_run CHAOS_PEERS="$n" CHAOS_FAULTS="$(( left < per_run ? left : per_run ))"
  done
  if [ "$partitions" = 1 ] && [ "$done_faults" -lt "$total" ]; then
    run_test partition_minority_refuses_majority_commits
  fi
done
echo "chaos: $runs runs, $done_faults faults injected in total, lost 0 (every run's checker passed)" | tee -a "$log"
