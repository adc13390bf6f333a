#!/usr/bin/env bash
# Runs every cargo-fuzz target of tests/fuzz for a bounded time (`make fuzz`).
#
#   FUZZ_SECONDS  seconds per target (default 60)
#   FUZZ_TARGETS  space-separated subset (default: every target of tests/fuzz)
#   FUZZ_NICE     nice level of the fuzzers (default 19: the machine is shared)
#   FUZZ_TARGET_DIR  cargo target dir of the sanitizer build (default tests/fuzz/target)
#
# The fuzz project is its own workspace with its own target dir (tests/fuzz/target), so
# the sanitizer build never touches the shared target/. Only the stable toolchain is
# needed: RUSTC_BOOTSTRAP=1 unlocks the -Z flags cargo-fuzz passes. Each target starts
# from its committed seeds (tests/fuzz/corpus/<target>, every past crash included) and
# grows a working corpus in tests/fuzz/target/corpus/<target>. A crash leaves its input
# in tests/fuzz/artifacts/<target>/ and makes this script exit 1.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
FUZZ_DIR="$ROOT/tests/fuzz"
SECONDS_PER_TARGET="${FUZZ_SECONDS:-60}"
NICE="${FUZZ_NICE:-19}"

if ! [[ "$SECONDS_PER_TARGET" =~ ^[0-9]+$ ]] || [ "$SECONDS_PER_TARGET" -eq 0 ]; then
  echo "error: FUZZ_SECONDS must be a positive number of seconds, got '$SECONDS_PER_TARGET'" >&2
  exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "error: cargo-fuzz is not installed; run 'cargo install cargo-fuzz'" >&2
  exit 2
fi

export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$FUZZ_DIR/target}"
cd "$ROOT"

TARGETS="${FUZZ_TARGETS:-$(cargo fuzz list --fuzz-dir "$FUZZ_DIR")}"

echo "== building fuzz targets (sanitizer build in $CARGO_TARGET_DIR)"
nice -n "$NICE" cargo fuzz build --fuzz-dir "$FUZZ_DIR" -a

failed=()
summary=()
for t in $TARGETS; do
  seeds="$FUZZ_DIR/corpus/$t"
  work="$CARGO_TARGET_DIR/corpus/$t"
  if [ ! -d "$seeds" ]; then
    echo "error: no seed corpus for target '$t' (expected $seeds)" >&2
    exit 2
  fi
  mkdir -p "$work"
  log="$CARGO_TARGET_DIR/fuzz-$t.log"
  echo "== $t: ${SECONDS_PER_TARGET}s (log: $log)"
  set +e
  nice -n "$NICE" cargo fuzz run --fuzz-dir "$FUZZ_DIR" -a "$t" "$work" "$seeds" -- \
    -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 >"$log" 2>&1
  rc=$?
  set -e
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
  if [ "$rc" -ne 0 ]; then
    failed+=("$t")
    summary+=("$t: FAILED (exit $rc) after ${execs:-?} execs; see $log and $FUZZ_DIR/artifacts/$t/")
    tail -40 "$log" >&2
  else
    summary+=("$t: ok, ${execs:-?} execs, ${rate:-?} execs/s, ${cov:-cov: ?}")
  fi
done

echo "== summary (${SECONDS_PER_TARGET}s per target)"
printf '  %s\n' "${summary[@]}"
if [ "${#failed[@]}" -ne 0 ]; then
  echo "error: crashes in: ${failed[*]}" >&2
  exit 1
fi
