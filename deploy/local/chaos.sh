#!/usr/bin/env bash
# The long fault-injection runs (`make chaos`): repeated clusters (each peer
# its own Kubo node, started by the real launcher) under a steady stream of pins/unpins while
# services, whole peers and IPFS nodes are killed, peers stopped, several peers taken down at
# once (the leader among them, a majority too), partitioned and their disks filled; plus the
# namespace partition test. After every run the independent checker prints its counts (all
# must be 0). Runs continue until CHAOS_TOTAL faults were injected in total.
#   CHAOS_TOTAL=1000       faults to reach over all runs
#   CHAOS_FAULTS=150       faults per run (the cluster is rebuilt between runs)
#   CHAOS_SIZES="3 5"      cluster sizes, used in turn
#   CHAOS_PARTITIONS=1     also run the 3-peer partition test after every size cycle (root)
#   CHAOS_RUNS=…           stop after this many runs even below CHAOS_TOTAL
#   CHAOS_SECONDS=3600     bound each run's fault phase (seconds)
#   CHAOS_SEED=…           repeat a run's randomness (printed at the start of each run)
# What each run mixes in (tests/chaos.rs, `Mix`; docs/chaos.md):
#   CHAOS_REPLICATION=0    replication_factor_min/max (0: every peer); >0 enables repinning
#   CHAOS_NETNS=0          peers in network namespaces, partitions among the faults (root)
#   CHAOS_DISKS=0          peers' folders on tmpfs mounts, full disks among the faults (root)
#   CHAOS_CONTENT=0        1 pin in 20 of real content that must move between IPFS nodes
#   CHAOS_LOAD_SECONDS=0   a phase of 32 back-to-back connections (the ingest benchmark's)
#   CHAOS_OVERLAP=1        several peers down at once, leader crashes, quorum losses
#   CHAOS_CONSENSUS=raft   raft, or crdt: `init --consensus crdt` peers; no leader
#                          crashes, no quorum losses and no partition test (raft notions);
#                          the checker is the same
# Every run's figures go to the results file $CHAOS_RESULTS (default
# .run/chaos/results-<UTC time>.txt: command, commit, machine, one line per run, totals);
# with CHAOS_DOC=1 (default) docs/chaos.md's figures block is regenerated from it
# (deploy/local/chaos-doc.sh) at the end, also after a failed run. A crdt run never touches
# that block (it is the raft run's): its results file is copied to
# docs/chaos-crdt-results.txt instead, quoted by docs/chaos.md's "crdt mode" section.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
total="${CHAOS_TOTAL:-1000}"
per_run="${CHAOS_FAULTS:-150}"
sizes="${CHAOS_SIZES:-3 5}"
consensus="${CHAOS_CONSENSUS:-raft}"
case "$consensus" in
  raft) partitions="${CHAOS_PARTITIONS:-1}" ;;
  crdt) partitions=0 ;; # the partition test is about raft's quorum
  *) echo "CHAOS_CONSENSUS=$consensus: raft or crdt" >&2; exit 2 ;;
esac
[ "$consensus" = raft ] || export CHAOS_CONSENSUS="$consensus"
results="${CHAOS_RESULTS:-$root/.run/chaos/results-$consensus-$(date -u +%Y%m%dT%H%M%SZ).txt}"
mkdir -p "$(dirname "$results")"
cargo build --workspace --bins
cargo test -p ipfs-cluster-tests --test chaos --no-run

mix=""
for v in CHAOS_TOTAL CHAOS_RUNS CHAOS_FAULTS CHAOS_SIZES CHAOS_PARTITIONS CHAOS_SEED CHAOS_SECONDS \
  CHAOS_REPLICATION CHAOS_NETNS CHAOS_DISKS CHAOS_CONTENT CHAOS_LOAD_SECONDS CHAOS_OVERLAP \
  CHAOS_CONSENSUS; do
  if [ -n "${!v:-}" ]; then mix="$mix $v=\"${!v}\""; fi
done
dirty=""
git diff --quiet HEAD -- crates tests proto 2>/dev/null || dirty=" (with uncommitted changes)"
model="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
mem="$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
{
  if [ "$consensus" = crdt ]; then
    echo "# chaos results: deploy/local/chaos.sh, crdt clusters (docs/chaos.md quotes this file)"
  else
    echo "# chaos results: deploy/local/chaos.sh (docs/chaos.md is generated from this file)"
  fi
  echo "command:${mix} deploy/local/chaos.sh"
  echo "commit: $(git rev-parse --short HEAD)${dirty}"
  echo "build: debug (BIN=${BIN:-target/debug})"
  echo "machine: $(uname -srm), $(nproc) cores ${model:-unknown CPU}, ${mem}, load average at start $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "started: $(date -u +%FT%TZ)"
} >"$results"
started=$(date +%s)

done_faults=0
runs=0
finish() {
  local status="$1"
  {
    echo "finished: $(date -u +%FT%TZ) status=$status runs=$runs faults=$done_faults seconds=$(($(date +%s) - started))"
  } >>"$results"
  echo "results: $results"
  if [ "${CHAOS_DOC:-1}" = 1 ]; then
    if [ "$consensus" = crdt ]; then
      cp "$results" "$root/docs/chaos-crdt-results.txt"
      echo "docs/chaos-crdt-results.txt written (docs/chaos.md's figures block is the raft run's)"
    else
      deploy/local/chaos-doc.sh "$results"
    fi
  fi
}

run_test() { # name, extra env…
  local name="$1"; shift
  local out; out="$(mktemp)"
  local t0; t0=$(date +%s)
  if ! env "$@" cargo test -q -p ipfs-cluster-tests --test chaos -- --exact "$name" --include-ignored --nocapture >"$out" 2>&1; then
    echo "failed: $(date -u +%FT%TZ) $name $* output=$out" | tee -a "$results"
    # What the failed run had injected and what its checker said, when it got that far.
    grep -E '^chaos: kill_service=' "$out" | tail -1 | sed 's/^chaos: /  figures: /' | tee -a "$results"
    grep -E "^checker:|panicked|seed" "$out" | tail -20 | sed 's/^/  /' | tee -a "$results"
    finish failed
    exit 1
  fi
  local checker; checker="$(grep -E '^checker:' "$out" | tail -1)"
  local result; result="$(sed -n 's/^CHAOS-RESULT //p' "$out" | tail -1)"
  if [ -z "$result" ]; then
    # The partition test: one cut per minority, no mix.
    local f; f="$(sed -n 's/.*faults_injected=\([0-9]*\).*/\1/p' <<<"$checker")"
    result="seed=$(sed -n 's/^chaos: seed \([0-9]*\).*/\1/p' "$out" | head -1) peers=3 faults=${f:-0} partition=${f:-0} seconds=$(($(date +%s) - t0))"
  fi
  echo "run: $(date -u +%FT%TZ) $name $* | $result | $checker" | tee -a "$results"
  local f; f="$(sed -n 's/.*faults_injected=\([0-9]*\).*/\1/p' <<<"$checker")"
  done_faults=$((done_faults + ${f:-0}))
  runs=$((runs + 1))
  rm -f "$out"
}

max_runs="${CHAOS_RUNS:-1000000}"
while [ "$done_faults" -lt "$total" ] && [ "$runs" -lt "$max_runs" ]; do
  for n in $sizes; do
    left=$((total - done_faults))
    [ "$left" -le 0 ] || [ "$runs" -ge "$max_runs" ] && break
    run_test long_run CHAOS_PEERS="$n" CHAOS_FAULTS="$(( left < per_run ? left : per_run ))"
  done
  if [ "$partitions" = 1 ] && [ "$done_faults" -lt "$total" ] && [ "$runs" -lt "$max_runs" ]; then
    run_test partition_minority_refuses_majority_commits
  fi
done
finish passed
echo "chaos: $runs runs, $done_faults faults injected in total, every run's checker passed"
