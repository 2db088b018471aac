#!/usr/bin/env bash
# CI smoke run of the fuzz targets on the stable toolchain (no cargo-fuzz, no nightly): builds
# them with libFuzzer's coverage instrumentation passed straight to LLVM (the flags cargo-fuzz
# uses, minus the nightly-only AddressSanitizer), then runs each for SECONDS (default 5). A
# crash fails; a finding is left in fuzz/artifacts/<target>/. For real fuzzing use fuzz/run.sh.
# Usage: fuzz/smoke.sh [SECONDS]
set -euo pipefail
seconds="${1:-5}"
cd "$(dirname "$0")"
export RUSTFLAGS="--cfg fuzzing -Cdebug-assertions -Coverflow-checks \
 -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares"
# An explicit --target keeps RUSTFLAGS off build scripts and proc macros (they are not fuzzed
# and cannot link the coverage hooks).
host="$(rustc -vV | sed -n 's/^host: //p')"
cargo build --release --bins --target "$host"
for target in config_parse sample_map; do
  corpus="$(mktemp -d)"
  if [ -d "corpus/$target" ]; then cp -r "corpus/$target/." "$corpus/"; fi
  mkdir -p "artifacts/$target"
  "target/$host/release/$target" "$corpus" -max_total_time="$seconds" -max_len=4096 \
    -rss_limit_mb=2048 -artifact_prefix="artifacts/$target/" -print_final_stats=1 2>&1 \
    | grep -E 'stat::number_of_executed_units|DONE|ERROR|panicked' || true
  status="${PIPESTATUS[0]}"
  rm -rf "$corpus"
  if [ "$status" != 0 ]; then
    echo "fuzz target $target failed (exit $status), see fuzz/artifacts/$target" >&2
    exit 1
  fi
done
