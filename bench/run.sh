#!/usr/bin/env bash
# Performance benchmark of redshift-exporter: every scenario of the "Performance" issue, each
# next to a baseline measured in the same run, printed as a table of figures and ratios.
#
#   bash bench/run.sh            # full run (about 4 minutes after the release build)
#   bash bench/run.sh recovery   # only the recovery scenario (about 30 s)
#   bash bench/run.sh fleet      # only the fleet scenario (FLEET_N targets x the shipped pack, about 1.5 min)
#   bash bench/run.sh archive    # only the archive scenario (ROWS rows to CSV next to psql COPY, about 15 s)
#   bash bench/run.sh pack       # only the shipped pack's idle RSS (and BIN_ALL's: a build with every feature)
#   bash bench/run.sh --smoke    # every scenario for a second or two: keeps the script working;
#                                # the figures mean nothing and nothing ever fails on a timing
#
# Starts what it needs and removes it on exit: a throwaway PostgreSQL cluster (initdb, as the
# `postgres` user when run as root), nginx on 127.0.0.1 as the static-file ceiling (and on-the-fly
# gzip), the exporter itself. Needs: PostgreSQL 15 server binaries, psql, nginx, wrk, curl.
# Debian: apt-get install postgresql nginx wrk curl. Load goes to 127.0.0.1 only, bounded in time.
#
# Environment: BIN=path skips the build and benchmarks that binary; KEEP=1 keeps the work folder.
set -euo pipefail

SMOKE=0
ONLY=
[[ ${1:-} == --smoke ]] && SMOKE=1
[[ ${1:-} == recovery ]] && ONLY=recovery
[[ ${1:-} == fleet ]] && ONLY=fleet
[[ ${1:-} == archive ]] && ONLY=archive
[[ ${1:-} == pack ]] && ONLY=pack
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if ((SMOKE)); then WRK_S=1; IDLE_S=1; CPU_S=3; ROWS=20000; FLEET_N=${FLEET_N:-5}; else WRK_S=10; IDLE_S=12; CPU_S=10; ROWS=1000000; FLEET_N=${FLEET_N:-100}; fi

for tool in wrk nginx curl psql; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is not installed (Debian: apt-get install wrk nginx curl postgresql-client)" >&2; exit 2; }
done
pgbin=$(dirname "$(command -v initdb 2>/dev/null || ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | tail -1)")
[[ -x $pgbin/initdb ]] || { echo "bench: PostgreSQL server binaries (initdb, postgres) not found" >&2; exit 2; }

if [[ -z ${BIN:-} ]]; then
    (cd "$here" && cargo build --release --quiet)
    BIN=$here/target/release/redshift-exporter
fi

work=$(mktemp -d /tmp/rsx-bench.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    if [[ -f $work/pg/postmaster.pid ]]; then as_pg "$pgbin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true; fi
    [[ ${KEEP:-0} == 1 ]] || rm -rf "$work"
}
trap cleanup EXIT

as_pg() {
    if ((EUID == 0)); then runuser -u postgres -- "$@"; else "$@"; fi
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
calc() { python3 -c "import sys; print($1)"; }
status_kb() { awk -v k="$2:" '$1==k {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }

# --- PostgreSQL ------------------------------------------------------------------------------------
((EUID == 0)) && chown postgres "$work"
pgport=$(free_port)
as_pg "$pgbin/initdb" -D "$work/pg" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
as_pg "$pgbin/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w -o "-p $pgport -k $work -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" start >/dev/null
pg="postgresql://postgres@127.0.0.1:$pgport"
psql "$pg/postgres" -XqAt -c "CREATE DATABASE bench" -c "CREATE DATABASE redshift_provisioned"
PGOPTIONS="-c client_min_messages=warning" bash "$here/tests/fixtures/redshift/load.sh" "$pg/redshift_provisioned" provisioned healthy >/dev/null

# --- helpers ---------------------------------------------------------------------------------------
# exporter CONFIG [args...]: starts the daemon on a free port; sets $epid, $eaddr, $t_start.
exporter() {
    local cfg=$1; shift
    local log=$work/exporter.$RANDOM.log
    t_start=$(now)
    "$BIN" --config "$cfg" --log.format json --web.listen-address 127.0.0.1:0 "$@" >/dev/null 2>"$log" &
    epid=$!
    pids+=("$epid")
    eaddr=
    for _ in $(seq 1 500); do
        eaddr=$(grep -o '"address":"[^"]*"' "$log" 2>/dev/null | head -1 | cut -d'"' -f4 || true)
        [[ -n $eaddr ]] && break
        sleep 0.01
    done
    [[ -n $eaddr ]] || { echo "bench: the exporter did not start:" >&2; cat "$log" >&2; exit 1; }
}
stop_exporter() { kill "$epid" 2>/dev/null || true; wait "$epid" 2>/dev/null || true; }
metrics() { curl -sf "http://$eaddr/metrics"; }
# wait_metrics AWK-CONDITION: polls /metrics until the awk program prints "yes" (10 ms steps).
wait_for() {
    local deadline=$(($(date +%s) + ${2:-120}))
    until metrics | awk "$1" | grep -q yes; do
        (($(date +%s) < deadline)) || { echo "bench: timed out waiting for: $1" >&2; exit 1; }
        sleep 0.01
    done
}

config() { # config FILE POOL MAX_SERIES ARCHIVE_DIR|"" ; checks follow on stdin
    {
        echo "[exporter]"
        echo "namespace = \"bench\""
        echo "default_interval = \"1h\""
        echo "default_timeout = \"5m\""
        echo "max_series_per_check = ${3}"
        if [[ -n $4 ]]; then echo "archive_dir = \"$4\""; else echo "archive = false"; fi
        echo "[targets.main]"
        echo "host = \"127.0.0.1\""
        echo "port = $pgport"
        echo "database = \"bench\""
        echo "user = \"postgres\""
        echo "sslmode = \"disable\""
        echo "pool_size = $2"
        cat
    } >"$1"
}
check() { # check NAME QUERY LABELS VALUES [extra]
    printf '[[checks]]\nname = "%s"\nquery = "%s"\nlabels = %s\nvalues = %s\n%s\n' "$1" "$2" "$3" "$4" "${5:-}"
}

declare -a rows_out
row() { rows_out+=("$(printf '%-44s %16s %16s %10s  %s' "$1" "$2" "$3" "$4" "$5")"); }
wrk_run() { # wrk_run URL [header] -> "req/s p99_ms"
    local out
    out=$(wrk -t2 -c16 -d"${WRK_S}s" --latency ${2:+-H "$2"} "$1")
    local rps p99
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; print v}' <<<"$out")
    echo "$rps $p99"
}

table() {
    echo
    echo "redshift-exporter benchmark $( ((SMOKE)) && echo '(SMOKE: figures are meaningless)') — $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r), $(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo '?')"
    printf '%-44s %16s %16s %10s  %s\n' "scenario" "exporter" "baseline" "ratio" "note"
    printf '%s\n' "${rows_out[@]}"
}

# --- nginx: the baseline of the scrape scenarios (serves $work/www) ------------------------------------------
mkdir -p "$work/www"
ngport=$(free_port)
cat >"$work/nginx.conf" <<EOF
worker_processes 2;
pid $work/nginx.pid;
error_log $work/nginx.err;
daemon off;
events { worker_connections 1024; }
http {
  access_log off; sendfile on; tcp_nopush on; tcp_nodelay on;
  client_body_temp_path $work/ncb; proxy_temp_path $work/npt; fastcgi_temp_path $work/nft; uwsgi_temp_path $work/nut; scgi_temp_path $work/nst;
  types { text/plain metrics; }
  server { listen 127.0.0.1:$ngport; root $work/www; gzip on; gzip_types text/plain; gzip_min_length 0; gzip_vary on; }
}
EOF
nginx -c "$work/nginx.conf" &
pids+=("$!")
sleep 0.3

# --- 0. recovery: PostgreSQL down, then back ----------------------------------------------------------
# A 5 s and a 5 min check start while PostgreSQL is stopped (both fail), it stays down DOWN_S
# seconds, then comes back (pg_ctl -w: accepting connections). Measured: from then until each
# check is back to success. Baseline: the check's interval, what waiting for the next scheduled
# run costs (the worst case before the per-target probe).
recovery() {
    local down_s=10
    ((SMOKE)) && down_s=2
    { check "r5s" "SELECT 1 AS v" "[]" '["v"]' 'interval = "5s"'
      check "r5m" "SELECT 1 AS v" "[]" '["v"]' 'interval = "5m"'; } | config "$work/recovery.toml" 4 10000 ""
    as_pg "$pgbin/pg_ctl" -D "$work/pg" -m fast -w stop >/dev/null
    exporter "$work/recovery.toml"
    wait_for '/^redshift_exporter_check_errors_total\{/ && /kind="connect"/ && $2 >= 1 {n++} END {if (n >= 2) print "yes"}' 30
    sleep "$down_s"
    as_pg "$pgbin/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w -o "-p $pgport -k $work -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" start >/dev/null
    local t_up; t_up=$(now)
    local t5s= t5m=
    local deadline=$(($(date +%s) + 400))
    while [[ -z $t5s || -z $t5m ]]; do
        (($(date +%s) < deadline)) || { echo "bench: no recovery within 400 s" >&2; exit 1; }
        local m; m=$(metrics)
        [[ -z $t5s ]] && grep -q '^redshift_exporter_check_success{.*check="r5s".*} 1' <<<"$m" && t5s=$(now)
        [[ -z $t5m ]] && grep -q '^redshift_exporter_check_success{.*check="r5m".*} 1' <<<"$m" && t5m=$(now)
        sleep 0.01
    done
    stop_exporter
    local r5s r5m
    r5s=$(calc "round($t5s - $t_up, 2)"); r5m=$(calc "round($t5m - $t_up, 2)")
    row "recovery after ${down_s} s down: 5 s check" "${r5s} s" "interval 5 s" "$(calc "round($r5s/5, 3)")" "from PostgreSQL accepting connections to success"
    row "recovery after ${down_s} s down: 5 min check" "${r5m} s" "interval 300 s" "$(calc "round($r5m/300, 4)")" "target <= 5 s"
}
# --- 4. archive: a large result streamed to CSV -----------------------------------------------------------
archive_scenario() {
    # Best of ARCHIVE_RUNS (default 3) alternating runs of each side: one run of each moved the ratio from
    # 0.75 to 1.33 on this shared box, since a second of work is at the mercy of whatever else runs then.
    query="SELECT g AS id, 'row ' || g AS name, g * 1.5 AS v, TIMESTAMPTZ '2026-01-01 00:00:00+00' + g * INTERVAL '1 second' AS ts FROM generate_series(1, $ROWS) g"
    check "big" "$query" '["id"]' '["v"]' | config "$work/big.toml" 2 10000 "$work/archive"
    local copy_s="" big_dur="" big_hwm=0 m="" r
    for r in $(seq 1 "${ARCHIVE_RUNS:-3}"); do
        t0=$(now)
        psql "$pg/bench" -XqAt -c "COPY ($query) TO STDOUT WITH CSV HEADER" >"$work/copy.csv"
        t1=$(now)
        local s; s=$(calc "$t1 - $t0")
        if [[ -z $copy_s ]] || (($(calc "int($s < $copy_s)"))); then copy_s=$s; fi
        rm -rf "$work/archive"; mkdir -p "$work/archive"
        exporter "$work/big.toml"
        wait_for '/^redshift_exporter_archive_files_total\{/ && $2 == 1 {print "yes"}' 300
        local mm; mm=$(metrics)
        local hwm; hwm=$(status_kb "$epid" VmHWM)
        stop_exporter
        ((hwm > big_hwm)) && big_hwm=$hwm
        local d; d=$(awk '/^redshift_exporter_check_duration_seconds\{/ {print $2}' <<<"$mm")
        if [[ -z $big_dur ]] || (($(calc "int($d < $big_dur)"))); then big_dur=$d; m=$mm; fi
    done
    copy_rps=$(calc "round($ROWS / $copy_s)")
    big_series=$(grep -c '^bench_big_v{' <<<"$m" || true)
    csv_lines=$(find "$work/archive" -name '*.csv' -exec cat {} + | wc -l)
    ex_rps_rows=$(calc "round($ROWS / $big_dur)")
    row "archive $ROWS rows -> CSV: rows/s" "$ex_rps_rows" "psql COPY $copy_rps" "$(calc "round($ex_rps_rows/$copy_rps, 2)")" "best of ${ARCHIVE_RUNS:-3} each; CSV lines $csv_lines; series on /metrics $big_series (cap 10000)"
    row "  peak RSS while streaming" "$((big_hwm / 1024)).$((big_hwm % 1024 * 10 / 1024)) MB" "" "" "target <= 64 MB (highest of the runs)"
}

# pack_idle LABEL TARGET: the shipped pack against the provisioned emulation with "$BIN", idle RSS after one scrape.
pack_idle() {
    mkdir -p "$work/pack-archive"
    sed -e 's/^sslmode = "require"/sslmode = "disable"/' -e "s|^archive_dir = \"archive\"|archive_dir = \"$work/pack-archive\"|" "$here/checks.toml" >"$work/pack.toml"
    REDSHIFT_HOST=127.0.0.1 REDSHIFT_PORT=$pgport REDSHIFT_DATABASE=redshift_provisioned REDSHIFT_USER=postgres REDSHIFT_PASSWORD= exporter "$work/pack.toml"
    until curl -sf "http://$eaddr/-/ready" >/dev/null; do sleep 0.05; done
    sleep "$IDLE_S"
    metrics >/dev/null
    local pack_rss pack_hwm pack_threads
    pack_rss=$(status_kb "$epid" VmRSS)
    pack_hwm=$(status_kb "$epid" VmHWM)
    pack_threads=$(status_kb "$epid" Threads)
    stop_exporter
    row "$1" "$((pack_rss / 1024)).$((pack_rss % 1024 * 10 / 1024)) MB" "" "" "target <= $2 MB; peak $((pack_hwm / 1024)).$((pack_hwm % 1024 * 10 / 1024)) MB, $pack_threads threads"
}
pack_scenario() {
    pack_idle "RSS idle, shipped pack (provisioned emulation)" 8
    # BIN_ALL: a build with every cargo feature (cargo build --release --all-features), measured the same way.
    if [[ -n ${BIN_ALL:-} ]]; then
        local default_bin=$BIN
        BIN=$BIN_ALL
        pack_idle "  the same, every cargo feature on" 12
        BIN=$default_bin
    fi
}

if [[ $ONLY == archive ]]; then archive_scenario; table; exit 0; fi
if [[ $ONLY == pack ]]; then pack_scenario; table; exit 0; fi
[[ $ONLY == fleet ]] || recovery
if [[ $ONLY == recovery ]]; then table; exit 0; fi

# --- 6. fleet: N targets x the shipped pack ----------------------------------------------------------------------
# FLEET_N targets (default 100), each the provisioned emulation as the `rs_monitor` role, every check of the
# shipped pack on each (archive off: the exposition is under test, not the disk). Two configurations: intervals of
# 1 h (after the first runs nothing changes: every scrape is a cached one) and intervals of 20-36 s, a different
# one per check (about 3,300 runs every 28 s: something changes every few ms, so nearly every scrape comes right
# after a change). Baseline: nginx serving the same bytes (saved from the first configuration) in the same run.
fleet_config() { # fleet_config FILE MODE(cached|busy)
    python3 - "$here/checks.toml" "$1" "$2" "$FLEET_N" "$pgport" <<'PY'
import re, sys
pack, out, mode, n, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
lines, skip, ci = [], False, -1
for line in open(pack).read().splitlines():
    if line.startswith('[targets.main]'):
        skip = True
        continue
    if skip and line.startswith('['):
        skip = False
    if skip:
        continue
    if line.startswith('[[checks]]'):
        ci += 1
    if re.match(r'^targets = ', line):
        continue
    if re.match(r'^(interval|schedule) = ', line):
        line = 'interval = "1h"' if mode == 'cached' else f'interval = "{20 + ci % 17}s"'
    if re.match(r'^archive = ', line):
        line = 'archive = false'
    lines.append(line)
for t in range(n):
    lines += [f'[targets.c{t:03}]', 'host = "127.0.0.1"', f'port = {port}', 'database = "redshift_provisioned"',
              'user = "rs_monitor"', 'password = "rs_monitor"', 'sslmode = "disable"', 'pool_size = 2']
open(out, 'w').write('\n'.join(lines) + '\n')
PY
}
wait_ready() { # wait_ready TIMEOUT_S: polls /-/ready every 10 ms; prints seconds since $t_start
    local deadline=$(($(date +%s) + $1))
    until curl -sf "http://$eaddr/-/ready" >/dev/null; do
        (($(date +%s) < deadline)) || { echo "bench: not ready within $1 s" >&2; exit 1; }
        sleep 0.01
    done
    calc "round($(now) - $t_start, 2)"
}
wrk_lat() { # wrk_lat URL [header] -> "p50_ms p99_ms" with one client
    wrk -t1 -c1 -d"${WRK_S}s" --latency ${2:+-H "$2"} "$1" | awk '
        function ms(v) { if (v ~ /us$/) {sub(/us/,"",v); return v/1000} if (v ~ /ms$/) {sub(/ms/,"",v); return v+0} sub(/s$/,"",v); return v*1000 }
        $1=="50%" {p50=ms($2)} $1=="99%" {p99=ms($2)} END {print p50, p99}'
}
runs_total() { metrics | awk '/^redshift_exporter_check_runs_total\{/ && /result="(success|error)"/ {s += $2} END {print s+0}'; }
mb() { echo "$(($1 / 1024)).$(($1 % 1024 * 10 / 1024))"; }
fleet() {
    fleet_config "$work/fleet-cached.toml" cached
    fleet_config "$work/fleet-busy.toml" busy
    # A: nothing changes after the first runs.
    exporter "$work/fleet-cached.toml"
    local ready_a; ready_a=$(wait_ready 120)
    sleep 2
    local pre_a; pre_a=$(status_kb "$epid" VmRSS)
    metrics >"$work/www/fleet.metrics"
    local fbytes fseries; fbytes=$(stat -c %s "$work/www/fleet.metrics")
    fseries=$(grep -vc '^#' "$work/www/fleet.metrics" || true)
    local idle_a; idle_a=$(status_kb "$epid" VmRSS)
    read -r lc50 lc99 <<<"$(wrk_lat "http://$eaddr/metrics")"
    read -r ln50 ln99 <<<"$(wrk_lat "http://127.0.0.1:$ngport/fleet.metrics")"
    stop_exporter
    # B: checks completing continuously.
    exporter "$work/fleet-busy.toml"
    local ready_b; ready_b=$(wait_ready 120)
    sleep "$IDLE_S"
    local hz; hz=$(getconf CLK_TCK)
    local c0 r0 c1 r1
    c0=$(cpu_ticks "$epid"); r0=$(runs_total)
    sleep "$CPU_S"
    c1=$(cpu_ticks "$epid"); r1=$(runs_total)
    local idle_b; idle_b=$(status_kb "$epid" VmRSS)
    local cpu_idle runs_s
    cpu_idle=$(calc "round(($c1 - $c0) / $hz / $CPU_S * 1000)")
    runs_s=$(calc "round(($r1 - $r0) / $CPU_S)")
    read -r lb50 lb99 <<<"$(wrk_lat "http://$eaddr/metrics")"
    echo 5 >"/proc/$epid/clear_refs" 2>/dev/null || true
    c0=$(cpu_ticks "$epid"); local t0; t0=$(now)
    read -r fx_rps fx_p99 <<<"$(wrk_run "http://$eaddr/metrics")"
    read -r fxz_rps fxz_p99 <<<"$(wrk_run "http://$eaddr/metrics" "Accept-Encoding: gzip")"
    c1=$(cpu_ticks "$epid"); local t1; t1=$(now)
    local hwm_b rss_b; hwm_b=$(status_kb "$epid" VmHWM); rss_b=$(status_kb "$epid" VmRSS)
    local cpu_load; cpu_load=$(calc "round(($c1 - $c0) / $hz / ($t1 - $t0) * 1000)")
    stop_exporter
    read -r fn_rps fn_p99 <<<"$(wrk_run "http://127.0.0.1:$ngport/fleet.metrics")"
    read -r fnz_rps fnz_p99 <<<"$(wrk_run "http://127.0.0.1:$ngport/fleet.metrics" "Accept-Encoding: gzip")"
    row "fleet $FLEET_N targets x pack: ready" "${ready_b} s" "" "" "target <= 2 s (1 h intervals: ${ready_a} s); $fseries series, $fbytes B"
    row "  RSS idle (no scrapes)" "$(mb "$idle_b") MB" "" "" "checks running; nothing changing: $(mb "$idle_a") MB ($(mb "$pre_a") MB before the first scrape)"
    row "  scrape p50 / p99, cached (1 client)" "$lc50 / $lc99 ms" "nginx $ln50 / $ln99" "$(calc "round($lc99/$ln99, 2)")" "ratio of p99"
    row "  scrape p50 / p99, changing (1 client)" "$lb50 / $lb99 ms" "nginx $ln50 / $ln99" "$(calc "round($lb99/$ln99, 2)")" "target p99 <= 25 ms; $runs_s runs/s meanwhile"
    row "  plain req/s (changing, 16 clients)" "$fx_rps" "nginx $fn_rps" "$(calc "round($fx_rps/$fn_rps, 2)")" "target >= 0.5; p99 $fx_p99 ms (nginx $fn_p99)"
    row "  gzip req/s (changing, 16 clients)" "$fxz_rps" "nginx $fnz_rps" "$(calc "round($fxz_rps/$fnz_rps, 2)")" "p99 $fxz_p99 ms (nginx $fnz_p99)"
    row "  RSS peak / after plain+gzip load" "$(mb "$hwm_b") / $(mb "$rss_b") MB" "" "" "target <= 48 MB"
    row "  CPU ms/s: checks only / under load" "$cpu_idle / $cpu_load" "$runs_s runs/s" "" "utime+stime of the exporter"
}
fleet
if [[ $ONLY == fleet ]]; then table; exit 0; fi

# --- 1. collection: 20 x pg_sleep(0.5) -------------------------------------------------------------
collection() { # collection POOL: sets $span $slow $all (not in a subshell: it starts the daemon)
    local cfg=$work/collect$1.toml
    for i in $(seq 1 20); do check "s$i" "SELECT pg_sleep(0.5)::text AS s, 1 AS v" "[]" '["v"]'; done | config "$cfg" "$1" 10000 ""
    exporter "$cfg"
    wait_for '/^redshift_exporter_check_success\{/ && $2 == 1 {n++} END {if (n == 20) print "yes"}' 60
    local t_all; t_all=$(now)
    local m; m=$(metrics)
    stop_exporter
    read -r span slow all < <(awk -v t0="$t_start" -v t1="$t_all" '
        /^redshift_exporter_check_last_run_timestamp_seconds\{/ {match($0, /check="[^"]*"/); s[substr($0, RSTART, RLENGTH)] = $2}
        /^redshift_exporter_check_duration_seconds\{/ {match($0, /check="[^"]*"/); d[substr($0, RSTART, RLENGTH)] = $2}
        END {first = 1e18; last = 0; slow = 0
             for (k in s) { if (s[k] < first) first = s[k]; if (s[k] + d[k] > last) last = s[k] + d[k]; if (d[k] > slow) slow = d[k] }
             printf "%.3f %.3f %.3f\n", last - first, slow, t1 - t0}' <<<"$m")
}
# Baseline: one check alone, same query, same run.
for i in 1; do check "alone" "SELECT pg_sleep(0.5)::text AS s, 1 AS v" "[]" '["v"]'; done | config "$work/alone.toml" 1 10000 ""
alone=$("$BIN" once --config "$work/alone.toml" | grep -o 'duration=[0-9.]*m\?s' | head -1 | sed 's/duration=//')
alone_s=$(calc "float('${alone%ms}')/1000 if '$alone'.endswith('ms') else float('${alone%s}')")
collection 20
span20=$span slow20=$slow all20=$all
collection 5
span5=$span
row "collection 20 x pg_sleep(0.5), pool 20: span" "${span20} s" "alone ${alone_s} s" "$(calc "round($span20/$alone_s, 3)")" "target <= 1.05 x slowest check (${slow20} s): $(calc "round($span20/$slow20, 3)")"
row "  process start -> all 20 on /metrics" "${all20} s" "" "" "target <= 0.6 s"
row "collection 20 x pg_sleep(0.5), pool 5: span" "${span5} s" "alone ${alone_s} s" "$(calc "round($span5/$alone_s, 2)")" "rounds; target ~4"

# --- 2. scrape: 10,000 series vs nginx ----------------------------------------------------------------
series_config() { # series_config FILE N
    check "series" "SELECT 'k' || g AS k, g::float8 AS v FROM generate_series(1, $2) g" '["k"]' '["v"]' | config "$1" 2 $(($2 + 10)) ""
}
series_config "$work/s10k.toml" 10000
exporter "$work/s10k.toml"
wait_for '/^bench_series_v\{/ {n++} END {if (n == 10000) print "yes"}'
metrics >"$work/www/metrics"
bytes=$(stat -c %s "$work/www/metrics")
idle_scrape_kb=$(status_kb "$epid" VmRSS)
echo 5 >"/proc/$epid/clear_refs" 2>/dev/null || true   # reset VmHWM: the peak under load only
read -r ng_rps ng_p99 <<<"$(wrk_run "http://127.0.0.1:$ngport/metrics")"
read -r ex_rps ex_p99 <<<"$(wrk_run "http://$eaddr/metrics")"
read -r ngz_rps ngz_p99 <<<"$(wrk_run "http://127.0.0.1:$ngport/metrics" "Accept-Encoding: gzip")"
read -r exz_rps exz_p99 <<<"$(wrk_run "http://$eaddr/metrics" "Accept-Encoding: gzip")"
load_hwm_kb=$(status_kb "$epid" VmHWM)
load_rss_kb=$(status_kb "$epid" VmRSS)
stop_exporter
row "scrape 10k series ($bytes B) plain: req/s" "$ex_rps" "nginx $ng_rps" "$(calc "round($ex_rps/$ng_rps, 2)")" "target >= 0.5 (aim 0.8)"
row "  plain p99" "${ex_p99} ms" "nginx ${ng_p99} ms" "$(calc "round($ex_p99/$ng_p99, 2)")" "target <= 10 ms"
row "scrape 10k series gzip: req/s" "$exz_rps" "nginx $ngz_rps" "$(calc "round($exz_rps/$ngz_rps, 2)")" "target >= 2"
row "  gzip p99" "${exz_p99} ms" "nginx ${ngz_p99} ms" "$(calc "round($exz_p99/$ngz_p99, 2)")" ""
row "RSS 10k series: idle / peak under load" "$((idle_scrape_kb / 1024)).$((idle_scrape_kb % 1024 * 10 / 1024)) / $((load_hwm_kb / 1024)).$((load_hwm_kb % 1024 * 10 / 1024)) MB" "" "" "target peak <= 24 MB (after load: $((load_rss_kb / 1024)) MB)"

# --- 3. memory: the shipped pack, idle --------------------------------------------------------------------
pack_scenario

archive_scenario

# --- 5a. cost curve: scrape latency by series count ---------------------------------------------------------
lat1=
for n in 1000 10000 100000; do
    series_config "$work/s$n.toml" "$n"
    exporter "$work/s$n.toml"
    wait_for "/^bench_series_v\\{/ {n++} END {if (n == $n) print \"yes\"}"
    metrics >"$work/www/metrics"
    out=$(wrk -t1 -c1 -d"$((WRK_S / 2 + 1))s" --latency "http://$eaddr/metrics")
    outn=$(wrk -t1 -c1 -d"$((WRK_S / 2 + 1))s" --latency "http://127.0.0.1:$ngport/metrics")
    stop_exporter
    mean=$(awk '$1=="Latency" && $2 != "Distribution" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else {sub(/s/,"",v); v*=1000}; print v}' <<<"$out")
    meann=$(awk '$1=="Latency" && $2 != "Distribution" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else {sub(/s/,"",v); v*=1000}; print v}' <<<"$outn")
    [[ -z $lat1 ]] && lat1=$mean
    row "scrape latency, $n series (1 client)" "${mean} ms" "nginx ${meann} ms" "$(calc "round($mean/$meann, 2)")" "x$(calc "round($mean/$lat1, 1)") of 1k for x$((n / 1000)) series"
done

# --- 5b. cost curve: scheduler overhead by check count -------------------------------------------------------
cpu1=
for n in 10 100 1000; do
    for i in $(seq 1 "$n"); do check "c$i" "SELECT 1 AS v" "[]" '["v"]' 'interval = "2s"'; done | config "$work/sched$n.toml" 10 10000 ""
    exporter "$work/sched$n.toml"
    sleep 3
    c0=$(cpu_ticks "$epid"); r0=$(metrics | awk '/^redshift_exporter_check_runs_total\{/ && /result="success"/ {s += $2} END {print s}')
    sleep "$CPU_S"
    c1=$(cpu_ticks "$epid"); r1=$(metrics | awk '/^redshift_exporter_check_runs_total\{/ && /result="success"/ {s += $2} END {print s}')
    stop_exporter
    hz=$(getconf CLK_TCK)
    cpu=$(calc "round(($c1 - $c0) / $hz / $CPU_S * 1000, 1)")
    runs=$(calc "round(($r1 - $r0) / $CPU_S, 1)")
    per_run=$(calc "round(($c1 - $c0) / $hz * 1e6 / max($r1 - $r0, 1))")
    [[ -z $cpu1 ]] && cpu1=$per_run
    row "scheduler, $n checks every 2 s: CPU ms/s" "$cpu" "$runs runs/s" "" "${per_run} us CPU per run"
done

# --- table -----------------------------------------------------------------------------------------------------
table
