#!/usr/bin/env bash
# Bounded soak test of the release build.
#
#   scripts/soak.sh [DURATION_SECONDS]      (default 180)
#
# Starts a throwaway PostgreSQL on 127.0.0.1 (as the postgres user when run as root), two
# databases as two targets, and the exporter with CHECKS checks (default 300) at one-second
# intervals on both targets (a few of them archived to CSV), warms up under scrape load, then
# hammers /metrics with wrk for DURATION seconds. Records RSS, open file descriptors and the
# exporter's database sessions before and after (and every 15 s in between), and the run
# counters (skipped runs are reported: they show the machine could not keep up). Exits 1 if a scrape
# failed, a run failed, sessions exceeded the pool sizes, or RSS/fds grew beyond noise.
# Needs: the PostgreSQL server binaries, psql, wrk (apt-get install wrk), curl.
# Everything stays on 127.0.0.1; everything is removed at exit.
set -euo pipefail

DURATION="${1:-180}"
CHECKS="${CHECKS:-200}"
POOL=5
WARMUP=20
ROOT_DIR="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$ROOT_DIR/target/release/redshift-exporter"

for tool in wrk curl psql; do
  command -v "$tool" >/dev/null || { echo "soak: $tool is required" >&2; exit 2; }
done
if [ ! -x "$BIN" ] || [ -n "$(find "$ROOT_DIR/src" -newer "$BIN" -name '*.rs' | head -1)" ]; then
  (cd "$ROOT_DIR" && cargo build --release --quiet)
fi
BINDIR="$(pg_config --bindir 2>/dev/null || true)"
[ -x "$BINDIR/initdb" ] || BINDIR="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"

WORK="$(mktemp -d /tmp/rse-soak-XXXXXX)"
chmod 755 "$WORK"
PG_PID=""
EXP_PID=""
cleanup() {
  [ -n "$EXP_PID" ] && kill "$EXP_PID" 2>/dev/null && wait "$EXP_PID" 2>/dev/null || true
  [ -n "$PG_PID" ] && kill -INT "$PG_PID" 2>/dev/null || true
  for _ in $(seq 50); do [ -n "$PG_PID" ] && kill -0 "$PG_PID" 2>/dev/null && sleep 0.1; done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

# --- PostgreSQL ---------------------------------------------------------------------------
PG_PORT="$(free_port)"
mkdir -p "$WORK/pg"
[ "$(id -u)" = 0 ] && chown postgres: "$WORK/pg"
as_pg "$BINDIR/initdb" -D "$WORK/pg/data" -U postgres -A trust -E UTF8 --locale=C --no-sync >"$WORK/initdb.log" 2>&1 || { cat "$WORK/initdb.log" >&2; exit 1; }
as_pg "$BINDIR/postgres" -D "$WORK/pg/data" -k "$WORK/pg" -c listen_addresses=127.0.0.1 \
  -c port="$PG_PORT" -c fsync=off -c max_connections=60 >"$WORK/pg.log" 2>&1 &
PG_PID=$!
for _ in $(seq 100); do psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -Atqc 'SELECT 1' postgres >/dev/null 2>&1 && break; sleep 0.2; done
for db in soak_a soak_b; do psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "CREATE DATABASE $db" postgres; done

# --- exporter config ----------------------------------------------------------------------
HTTP_PORT="$(free_port)"
CFG="$WORK/checks.toml"
{
  cat <<EOF
[exporter]
namespace = "soak"
archive_dir = "$WORK/archive"
default_interval = "1s"
default_timeout = "5s"
drain_timeout = "10s"
EOF
  for t in a b; do
    cat <<EOF

[targets.$t]
host = "127.0.0.1"
port = $PG_PORT
database = "soak_$t"
user = "postgres"
sslmode = "disable"
pool_size = $POOL
EOF
  done
  for i in $(seq -w 1 "$CHECKS"); do
    archive=false
    [ $((10#$i % 50)) = 0 ] && archive=true
    cat <<EOF

[[checks]]
name = "c$i"
query = "SELECT g::text AS k, g * $((10#$i)) AS v FROM generate_series(1, 5) g"
labels = ["k"]
values = ["v"]
archive = $archive
EOF
  done
} >"$CFG"

"$BIN" run --config "$CFG" --web.listen-address "127.0.0.1:$HTTP_PORT" --log.level warn \
  --log.format json 2>"$WORK/exporter.log" &
EXP_PID=$!
URL="http://127.0.0.1:$HTTP_PORT"
for _ in $(seq 300); do [ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/-/ready")" = 200 ] && break; sleep 0.2; done
[ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/-/ready")" = 200 ] || { echo "soak: exporter never ready" >&2; cat "$WORK/exporter.log" >&2; exit 1; }

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$EXP_PID/status"; }
fds() { ls "/proc/$EXP_PID/fd" | wc -l; }
sessions() { psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -Atqc "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'redshift-exporter'" postgres; }
counter() { # sum of a self metric's samples matching a label filter
  curl -s "$URL/metrics" | awk -v n="$1" -v f="$2" 'index($0, n"{") == 1 && index($0, f) { s += $NF } END { printf "%d\n", s }'
}

echo "soak: $CHECKS checks x 2 targets every 1 s, pool $POOL per target, wrk on /metrics for ${DURATION}s (warm-up ${WARMUP}s)"
# Each wrk connection waits SCRAPE_DELAY_MS between requests (~4 x 1000/delay scrapes/s): heavy
# for Prometheus, yet leaves the 2-core test machine time to run the checks.
echo "function delay() return ${SCRAPE_DELAY_MS:-20} end" >"$WORK/delay.lua"
wrk -t1 -c4 -d"${WARMUP}s" -s "$WORK/delay.lua" "$URL/metrics" >"$WORK/wrk-warmup.log" 2>&1 || true
RSS0=$(rss_kb); FD0=$(fds); S0=$(sessions)
OK0=$(counter redshift_exporter_check_runs_total 'result="success"')
SKIP0=$(counter redshift_exporter_check_runs_total 'result="skipped"')
echo "before: rss_kb=$RSS0 fds=$FD0 sessions=$S0 successful_runs=$OK0"

( while kill -0 "$EXP_PID" 2>/dev/null; do echo "$(date +%s) rss_kb=$(rss_kb) fds=$(fds) sessions=$(sessions)"; sleep 15; done ) >"$WORK/samples.log" 2>/dev/null &
SAMPLER=$!
wrk -t1 -c4 -d"${DURATION}s" -s "$WORK/delay.lua" --latency "$URL/metrics" >"$WORK/wrk.log" 2>&1 || true
kill "$SAMPLER" 2>/dev/null || true

RSS1=$(rss_kb); FD1=$(fds); S1=$(sessions)
OK1=$(counter redshift_exporter_check_runs_total 'result="success"')
ERR=$(counter redshift_exporter_check_runs_total 'result="error"')
TMO=$(counter redshift_exporter_check_runs_total 'result="timeout"')
SKIP=$(counter redshift_exporter_check_runs_total 'result="skipped"')
ARCH=$(counter redshift_exporter_archive_files_total 'check=')
ARCH_ERR=$(counter redshift_exporter_archive_errors_total 'check=')
echo "after:  rss_kb=$RSS1 fds=$FD1 sessions=$S1 successful_runs=$OK1"
echo "samples (every 15 s):"; sed 's/^/  /' "$WORK/samples.log"
echo "runs during the soak: success=$((OK1 - OK0)) skipped=$((SKIP - SKIP0)); since start: error=$ERR timeout=$TMO; CSV files=$ARCH archive_errors=$ARCH_ERR"
echo "wrk:"; sed 's/^/  /' "$WORK/wrk.log"

fail=0
grep -q 'Non-2xx' "$WORK/wrk.log" && { echo "FAIL: non-2xx scrapes"; fail=1; }
grep -q 'Socket errors' "$WORK/wrk.log" && { echo "FAIL: socket errors during scrapes"; fail=1; }
[ "$ERR" = 0 ] && [ "$TMO" = 0 ] || { echo "FAIL: failed runs"; fail=1; }
[ "$S1" -le $((2 * POOL)) ] || { echo "FAIL: $S1 sessions > $((2 * POOL))"; fail=1; }
[ $((FD1 - FD0)) -le 8 ] || { echo "FAIL: fds grew $FD0 -> $FD1"; fail=1; }
# RSS: allowed 25 % or 16 MB of allocator noise, whichever is larger.
limit=$(( RSS0 / 4 > 16384 ? RSS0 / 4 : 16384 ))
[ $((RSS1 - RSS0)) -le "$limit" ] || { echo "FAIL: RSS grew $RSS0 -> $RSS1 kB"; fail=1; }
echo "exporter log: $(grep -c '"level":"WARN"' "$WORK/exporter.log" || true) WARN, $(grep -c '"level":"ERROR"' "$WORK/exporter.log" || true) ERROR lines"
grep '"level":"ERROR"' "$WORK/exporter.log" | sed 's/"timestamp":"[^"]*",//' | sort | uniq -c | sort -rn | head -5 || true
[ "$fail" = 0 ] && echo "soak: PASS" || echo "soak: FAIL"
exit "$fail"
