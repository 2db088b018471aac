#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60) with cargo-fuzz on the nightly toolchain
# and prints, per target, the executions run and whether it found a crash.
# Usage: fuzz/run.sh [SECONDS]     (install once: cargo install cargo-fuzz)
# CI runs the stable-toolchain smoke version instead: fuzz/smoke.sh.
set -euo pipefail
seconds="${1:-60}"
cd "$(dirname "$0")"
status=0
for target in config_parse sample_map; do
  log="$(mktemp)"
  mkdir -p "corpus/$target"
  if cargo +nightly fuzz run "$target" "corpus/$target" -- \
      -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=4096 >"$log" 2>&1; then
    result=ok
  else
    result="CRASH (see fuzz/artifacts/$target)"
    status=1
  fi
  execs="$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' || true)"
  if [ -z "$execs" ]; then
    execs="$(grep -Eo '#[0-9]+' "$log" | tail -1 | tr -d '#' || true)"
  fi
  echo "$target: ${seconds}s, ${execs:-?} executions, $result"
  [ "$result" = ok ] || tail -40 "$log"
  rm -f "$log"
done
exit "$status"
