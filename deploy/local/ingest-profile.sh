#!/usr/bin/env bash
# Ingest profile of the whole-peer benchmark beside `make bench`: starts fresh release peers with
# `ipfs-cluster-bench hold`, runs the ingest load RUNS times and prints, per run, the rate
# and the CPU each kind of service used (utime+stime from /proc, in clock ticks), so that
# two builds can be compared on the same machine:
#
#   deploy/local/ingest-profile.sh                      # 3 peers, target/release
#   PEERS=1 BIN_DIR=/tmp/old/target/release deploy/local/ingest-profile.sh
#
# BENCH starts Kubo through deploy/local/kubo.sh of the tree it was built in; an older
# build's binaries can be compared by copying them to <dir>/target/release.
set -euo pipefail
cd "$(dirname "$0")/../.."
PEERS=${PEERS:-3}
RUNS=${RUNS:-2}
SECS=${SECS:-10}
BIN_DIR=${BIN_DIR:-target/release}
BENCH=${BENCH:-target/release/ipfs-cluster-bench}
out=$(mktemp)
"$BENCH" hold --bin-dir "$BIN_DIR" --peers "$PEERS" >"$out" 2>&1 &
hold=$!
trap 'kill -INT $hold 2>/dev/null; wait $hold 2>/dev/null; rm -f "$out"' EXIT
for _ in $(seq 1 120); do
  [ "$(grep -c '^pid' "$out" || true)" -ge $((4 * PEERS)) ] && break
  kill -0 $hold 2>/dev/null || { cat "$out" >&2; exit 1; }
  sleep 1
done
sleep 3
addrs=$(grep '^rest' "$out" | awk '{print $2}' | paste -sd,)
pids=$(grep '^pid' "$out" | awk '{print $2}')
ticks() { for p in $pids; do echo "$p $(awk '{print $14+$15}' "/proc/$p/stat")"; done; }
echo "peers $PEERS, binaries $BIN_DIR, $(nproc) CPUs, clock ticks of $(getconf CLK_TCK)/s"
for r in $(seq 1 "$RUNS"); do
  ticks >"$out.0"
  line=$("$BENCH" load --addr "$addrs" --conns 32 --duration-secs "$SECS" 2>&1 | tail -1)
  ticks >"$out.1"
  ok=$(echo "$line" | grep -o 'ok [0-9]*' | awk '{print $2}')
  echo "run $r: $line"
  join "$out.0" "$out.1" | while read -r p a b; do
    echo "$(grep "pid $p " "$out" | awk '{print $3}') $((b - a))"
  done | awk -v ok="$ok" -v hz="$(getconf CLK_TCK)" '
    { s[$1] += $2; t += $2 }
    END {
      for (k in s) printf "  %-28s %6d ticks\n", k, s[k]
      printf "  %-28s %6d ticks = %.0f us CPU per pin\n", "all services", t, t / hz / ok * 1e6
    }'
  rm -f "$out.0" "$out.1"
done
