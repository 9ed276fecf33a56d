#!/usr/bin/env bash
# CDC apply rate and lag of siphon from MariaDB (binlog, mode: cdc) into
# MariaDB and into PostgreSQL, against MariaDB's own replication on the same
# source and the same workload (issue 10, "Benchmarks").
#
# Starts a throwaway MariaDB source `src` (mariadb-install-db + mariadbd in a
# scratch directory, TCP on a free 127.0.0.1 port, binlog in ROW format, full
# images and row metadata, GTID strict mode, server_id 1) with bench.items
# (id bigint pk, qty int, amount decimal(12,2), note varchar(200),
# updated_at datetime(6), index on updated_at), seeded with SEED rows, and a
# stored procedure bench.workload. Then, in the order of RUNS:
#   native           a second mariadbd (`replica`, server_id 2, same options)
#                    replicating the source from its first binlog:
#                    CHANGE MASTER TO … MASTER_USE_GTID=slave_pos; START SLAVE
#                    (slave_parallel_threads = REPLICA_PARALLEL_THREADS);
#   siphon-mariadb   a third mariadbd (`dst`, server_id 3, same options);
#                    `siphon run --once` (mode: cdc: the snapshot), then
#                    `siphon run` (schedule: continuous) in the background;
#   siphon-postgres  the same into a throwaway PostgreSQL 15 (database `sip`).
# Each run: one warm-up update must arrive, then the workload runs: UPDATES
# single-row updates (qty+1, amount+0.01, updated_at = SYSDATE(6)) in
# transactions of TX_SIZE (a procedure looping with COMMIT; ids are
# 1 + (i·7919 mod SEED), so the rows of one transaction are distinct). A
# target server is stopped when its run is done.
# Measured, on the machine's clock (every server is on this machine, time zone UTC):
#   apply rate  UPDATES ÷ (first target observation with max(updated_at) ≥ the
#               source's final max(updated_at) − workload start);
#               at the end count/sum(qty)/sum(amount)/max(updated_at) must match
#               the source's, or the script fails.
#   lag         a sampler every SAMPLE_MS records (clock, max(updated_at)) on the
#               source and on the target; for each source value T seen during
#               the workload, lag = first target observation time with
#               max(updated_at) ≥ T, minus T. p50/p99/max reported. T is the
#               update's SYSDATE(6), so lag includes the rest of its transaction
#               (≤ one transaction, a few ms) and the sampling period (≤ SAMPLE_MS).
#   RSS         siphon's peak resident set (VmHWM) over the snapshot run and the
#               continuous run.
#   CPU         user + system CPU seconds per 100,000 updates, from /proc/PID/stat,
#               of the applier (siphon's process; the replica's mariadbd, which
#               applies) and of the target server (dst's mariadbd; the PostgreSQL
#               postmaster and its children), from the workload's start (MODE=backlog:
#               the applier's start) until the target matched the source. Both
#               include the bench's own polling queries (five a second) on the
#               target (an indexed max(updated_at)); the native replica's row is its
#               one mariadbd, which is both.
#               On a shared machine these are steadier than the rates.
#
# Usage:
#   bash bench/mysql_cdc.sh                                  # 100,000 rows, 500,000 updates, tx 1,000
#   UPDATES=100000 SEED=20000 bash bench/mysql_cdc.sh
#   RUNS="native siphon-postgres" bash bench/mysql_cdc.sh
# Environment:
#   RUNS        runs, in order (default "native siphon-mariadb siphon-postgres")
#   MODE        live (default: the applier runs during the workload, as above) or
#               backlog (the applier, the replica's threads or siphon's continuous
#               run, is stopped during the workload and started after it; the rate
#               is UPDATES ÷ the time from its start until the target matches the
#               source: the applier's own throughput, not bounded by the workload's;
#               no lag figures)
#   SEED        seeded rows (default 100000)
#   UPDATES     single-row updates in the workload (default 500000)
#   TX_SIZE     updates per transaction (default 1000)
#   SAMPLE_MS   sampler period in ms (default 100)
#   CATCHUP_TIMEOUT  seconds to wait for a target to catch up (default 600)
#   REPLICA_PARALLEL_THREADS  the native replica's slave_parallel_threads (default 0,
#               MariaDB's default: one applier thread)
#   SIPHON_BIN  binary to run (default: target/release/siphon, built when missing)
#   BATCH_SIZE  siphon pipeline batch_size (default: siphon's own default)
#   PG_BIN      PostgreSQL binaries (default: /usr/lib/postgresql/15/bin)
#   PG_FSYNC    fsync setting of the throwaway PostgreSQL: off (default) or on
#   MY_FSYNC    durability of the throwaway MariaDB servers: off (default) or on
#   MY_BUFFER_POOL  innodb_buffer_pool_size of each MariaDB (default 256M)
#   BENCH_DIR   parent of the scratch directory (default: $TMPDIR or /tmp)
#   KEEP=1      keep the scratch directory (the servers are stopped anyway)
#
# Needs bash, python3, awk, mariadbd, mariadb-install-db, the mariadb client;
# psql and runuser for siphon-postgres.
set -Eeuo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
runs="${RUNS:-native siphon-mariadb siphon-postgres}"
seed="${SEED:-100000}"
updates="${UPDATES:-500000}"
txsize="${TX_SIZE:-1000}"
sample_ms="${SAMPLE_MS:-100}"
catchup="${CATCHUP_TIMEOUT:-600}"
replica_threads="${REPLICA_PARALLEL_THREADS:-0}"
mode="${MODE:-live}"
[[ "$mode" == live || "$mode" == backlog ]] || { echo "error: MODE must be live or backlog" >&2; exit 2; }
for v in "$seed" "$updates" "$txsize" "$sample_ms" "$catchup"; do
    [[ "$v" =~ ^[1-9][0-9]*$ ]] || { echo "error: '$v' is not a positive integer" >&2; exit 2; }
done
[[ "$replica_threads" =~ ^[0-9]+$ ]] || { echo "error: REPLICA_PARALLEL_THREADS '$replica_threads' is not a number" >&2; exit 2; }
[[ -n "$runs" ]] || { echo "error: RUNS is empty" >&2; exit 2; }
for r in $runs; do
    case "$r" in
        native) ;;
        siphon-mariadb) bench_siphon ;;
        siphon-postgres) bench_siphon; pg_require ;;
        *) echo "error: unknown run '$r' in RUNS (native, siphon-mariadb, siphon-postgres)" >&2; exit 2 ;;
    esac
done
my_require
bench_workdir siphon-mycdc
siphon_pid=""
sampler_pids=""
cleanup() {
    [[ -n "$siphon_pid" ]] && kill "$siphon_pid" 2>/dev/null || true
    for p in $sampler_pids; do kill "$p" 2>/dev/null || true; done
    my_stop_all
    pg_stop
    bench_remove_workdir
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'echo "error: ${BASH_SOURCE[0]##*/} line $LINENO: a command failed (exit $?)" >&2' ERR

# --- source ---------------------------------------------------------------------
my_start src 1
echo "== MariaDB source on port ${my_port[src]} (fsync $my_fsync); seeding $seed rows…" >&2
ddl="CREATE TABLE items (
  id bigint NOT NULL PRIMARY KEY,
  qty int NOT NULL,
  amount decimal(12,2) NOT NULL,
  note varchar(200),
  updated_at datetime(6) NOT NULL,
  KEY items_updated_at (updated_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;"
myq src >/dev/null <<SQL
CREATE DATABASE bench;
USE bench;
$ddl
INSERT INTO items
SELECT seq, (seq * 7) % 1000, ((seq * 104729) % 1000000) / 100, CONCAT('item ', seq),
       TIMESTAMP '2025-01-01 00:00:00' + INTERVAL seq * 1000 MICROSECOND
FROM seq_1_to_$seed;
ANALYZE TABLE items;
DELIMITER //
CREATE PROCEDURE workload(n bigint, per int, seed bigint)
BEGIN
  DECLARE i bigint DEFAULT 0;
  START TRANSACTION;
  WHILE i < n DO
    UPDATE items SET qty = qty + 1, amount = amount + 0.01, updated_at = SYSDATE(6)
     WHERE id = 1 + (i * 7919) % seed;
    SET i = i + 1;
    IF i % per = 0 THEN
      COMMIT;
      START TRANSACTION;
    END IF;
  END WHILE;
  COMMIT;
END//
DELIMITER ;
SQL

# A side is "my:NAME" (MariaDB server NAME, table bench.items) or "pg:DB"
# (database DB of the PostgreSQL cluster, table $pg_table).
pg_table=""
# check SIDE: "count sum(qty) sum(amount) max(updated_at) as epoch with 6 decimals".
check() {
    case "$1" in
        my:*) myq "${1#my:}" -e "SELECT CONCAT(COUNT(*), ' ', SUM(qty), ' ', SUM(amount), ' ',
                                       CAST(COALESCE(UNIX_TIMESTAMP(MAX(updated_at)), 0) AS DECIMAL(20,6)))
                                FROM bench.items" ;;
        pg:*) q -d "${1#pg:}" -Atc "SELECT count(*) || ' ' || sum(qty) || ' ' || sum(amount) || ' ' ||
                                           round(coalesce(extract(epoch FROM max(updated_at)), 0), 6)
                                    FROM $pg_table" ;;
    esac
}
# maxts SIDE: max(updated_at) as epoch with 6 decimals, as the last field of
# `check` prints it; read through the index on updated_at, so polling it costs
# the target next to nothing.
maxts() {
    case "$1" in
        my:*) myq "${1#my:}" -e "SELECT CAST(COALESCE(UNIX_TIMESTAMP(MAX(updated_at)), 0) AS DECIMAL(20,6)) FROM bench.items" ;;
        pg:*) q -d "${1#pg:}" -Atc "SELECT round(coalesce(extract(epoch FROM max(updated_at)), 0), 6) FROM $pg_table" ;;
    esac
}
now_epoch() { myq src -e "SELECT UNIX_TIMESTAMP(SYSDATE(6))"; }
maxts_src() { myq src -e "SELECT UNIX_TIMESTAMP(MAX(updated_at)) FROM bench.items"; }

# alive WHAT: fails when the applier of this run has stopped (siphon exited,
# or the replica's SQL or IO thread stopped), printing why.
alive() {
    case "$1" in
        siphon)
            kill -0 "$siphon_pid" 2>/dev/null && return 0
            echo "error: siphon run exited:" >&2
            tail -n 40 "$work/siphon.log" >&2
            return 1 ;;
        replica)
            local status
            status=$(myq replica -e "SHOW SLAVE STATUS\G") || return 1
            if grep -Eq 'Slave_(SQL|IO)_Running: No' <<<"$status"; then
                echo "error: the native replica stopped:" >&2
                grep -E 'Running:|Last_(IO|SQL)?_?Err' <<<"$status" >&2
                return 1
            fi ;;
    esac
}

# wait_for SIDE SECONDS WHAT: until SIDE's items matches the source's (count,
# sums, max(updated_at)); fails after SECONDS or when WHAT (alive) stopped.
# The full comparison (a scan of the table) runs only once max(updated_at)
# matches: scanning every 0.2 s would cost the target a good part of a core.
wait_for() {
    local side="$1" limit="$2" what="$3" start=$SECONDS want got
    want=$(check my:src)
    while :; do
        got=""
        if [[ "$(maxts "$side" 2>/dev/null || true)" == "${want##* }" ]]; then
            got=$(check "$side" 2>/dev/null || true)
        fi
        [[ "$got" == "$want" ]] && return 0
        alive "$what" || return 1
        (( SECONDS - start > limit )) && { echo "error: $side did not catch up in ${limit}s: '$got' vs the source's '$want'" >&2; return 1; }
        sleep 0.2
    done
}

# sampler SIDE OUT : every SAMPLE_MS, "<clock epoch> <max(updated_at) epoch>" into OUT,
# through one long-lived client session fed by a loop; stopped when $work/stop exists.
# The max is a subquery of its own: beside SYSDATE(6) in one SELECT, MariaDB
# would not read it from the end of the index but scan the whole index (100,000
# entries ten times a second on each server, half the target's CPU).
sampler() {
    local side="$1" out="$2" period
    period=$(awk -v m="$sample_ms" 'BEGIN { printf "%.3f", m / 1000 }')
    case "$side" in
        my:*)
            (
                while [[ ! -e "$work/stop" ]]; do
                    echo "SELECT UNIX_TIMESTAMP(SYSDATE(6)), (SELECT COALESCE(UNIX_TIMESTAMP(MAX(updated_at)), 0) FROM bench.items);"
                    sleep "$period"
                done
            ) | myq "${side#my:}" >"$out" & ;;
        pg:*)
            (
                while [[ ! -e "$work/stop" ]]; do
                    echo "SELECT extract(epoch FROM clock_timestamp()) || ' ' || coalesce((SELECT extract(epoch FROM max(updated_at)) FROM $pg_table), 0);"
                    sleep "$period"
                done
            ) | q -d "${side#pg:}" -At >"$out" & ;;
    esac
    sampler_pids="$sampler_pids $!"
}

# applier_stop WHAT / applier_start WHAT: stop and start the applier of a run
# (the replica's threads, or siphon's continuous run).
applier_stop() {
    case "$1" in
        replica) myq replica -e "STOP SLAVE" ;;
        siphon) siphon_stop ;;
    esac
}
applier_start() {
    case "$1" in
        replica) myq replica -e "START SLAVE" ;;
        siphon) siphon_start ;;
    esac
}

# cpu_snapshot WHAT SIDE OUT: "<role> <pid> <user+system ticks>" lines into OUT for
# the applier (role a: siphon's process, or the replica's mariadbd) and the
# target server (role t: a mariadbd, or the postmaster and its children).
cpu_snapshot() {
    local what="$1" side="$2" out="$3" pids=() apid="" p
    case "$what" in
        siphon) apid="$siphon_pid" ;;
        replica) apid="${my_pid[replica]:-}" ;;
    esac
    case "$side" in
        my:*) pids=("${my_pid[${side#my:}]:-}") ;;
        pg:*)
            p=$(head -n 1 "$pgdata/postmaster.pid" 2>/dev/null || true)
            [[ -n "$p" ]] && pids=("$p" $(pgrep -P "$p" || true)) ;;
    esac
    {
        [[ -n "$apid" ]] && awk -v pid="$apid" '{ sub(/^.*\) /, ""); print "a", pid, $12 + $13 }' "/proc/$apid/stat" 2>/dev/null
        for p in "${pids[@]}"; do
            [[ -n "$p" ]] && awk -v pid="$p" '{ sub(/^.*\) /, ""); print "t", pid, $12 + $13 }' "/proc/$p/stat" 2>/dev/null
        done
    } >"$out" || true
}
# cpu_per_100k BEFORE AFTER: "<applier s> <target s>" per 100,000 updates
# (processes that ended in between are not counted; new ones count from 0).
cpu_per_100k() {
    awk -v hz="$(getconf CLK_TCK)" -v n="$updates" '
        NR == FNR { before[$1 " " $2] = $3; next }
        { d[$1] += $3 - ($1 " " $2 in before ? before[$1 " " $2] : 0) }
        END { printf "%.2f %.2f\n", d["a"] / hz * 100000 / n, d["t"] / hz * 100000 / n }' "$1" "$2"
}

# run_workload NAME SIDE WHAT : warm-up, samplers, workload, catch-up; writes $work/NAME.result
# (MODE=backlog: the applier is stopped during the workload, and the result is
# "<workload s> <catch-up s> <catch-up rows/s> - - - -").
run_workload() {
    local name="$1" side="$2" what="$3" t0 t1 final
    echo "== $name: warm-up update…" >&2
    myq src -e "UPDATE bench.items SET updated_at = SYSDATE(6) WHERE id = 1"
    wait_for "$side" 300 "$what" || return 1
    if [[ "$mode" == backlog ]]; then
        applier_stop "$what" || return 1
        echo "== $name: workload with the applier stopped ($updates updates, $txsize per transaction)…" >&2
        t0=$(now_epoch)
        myq src --database=bench -e "CALL workload($updates, $txsize, $seed)" || { echo "error: the workload failed" >&2; return 1; }
        t1=$(now_epoch)
        echo "== $name: workload done in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s; starting the applier…" >&2
        local c0 c1
        cpu_snapshot "$what" "$side" "$work/$name.cpu0"
        c0=$(now_epoch)
        applier_start "$what" || return 1
        # siphon's process is new: its CPU counts from its start.
        [[ "$what" == siphon ]] && sed -i '/^a /d' "$work/$name.cpu0"
        wait_for "$side" "$catchup" "$what" || return 1
        c1=$(now_epoch)
        cpu_snapshot "$what" "$side" "$work/$name.cpu1"
        cpu_per_100k "$work/$name.cpu0" "$work/$name.cpu1" >"$work/$name.cpu"
        awk -v a="$t0" -v b="$t1" -v c="$c0" -v d="$c1" -v n="$updates" \
            'BEGIN { printf "%.3f %.3f %.0f - - - -\n", b - a, d - c, n / (d - c > 0 ? d - c : 0.001) }' >"$work/$name.result"
        return 0
    fi
    rm -f "$work/stop"
    sampler_pids=""
    sampler my:src "$work/$name.src.obs"
    sampler "$side" "$work/$name.dst.obs"
    sleep 0.5
    echo "== $name: workload ($updates updates, $txsize per transaction)…" >&2
    cpu_snapshot "$what" "$side" "$work/$name.cpu0"
    t0=$(now_epoch)
    myq src --database=bench -e "CALL workload($updates, $txsize, $seed)" || { echo "error: the workload failed" >&2; return 1; }
    t1=$(now_epoch)
    final=$(maxts_src)
    echo "== $name: workload done in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s; waiting for the target…" >&2
    wait_for "$side" "$catchup" "$what" || return 1
    cpu_snapshot "$what" "$side" "$work/$name.cpu1"
    cpu_per_100k "$work/$name.cpu0" "$work/$name.cpu1" >"$work/$name.cpu"
    sleep 0.5
    touch "$work/stop"
    for p in $sampler_pids; do wait "$p" 2>/dev/null || true; done
    sampler_pids=""
    python3 - "$work/$name.src.obs" "$work/$name.dst.obs" "$t0" "$t1" "$final" "$updates" >"$work/$name.result" <<'PY'
import bisect, sys
def load(path):
    rows = []
    for line in open(path):
        parts = line.split()
        if len(parts) == 2:
            rows.append((float(parts[0]), float(parts[1])))
    return rows
src, dst = load(sys.argv[1]), load(sys.argv[2])
t0, t1, final, n = float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
# target: running max of max(updated_at) by observation time (it only grows anyway)
times, highs, hi = [], [], 0.0
for t, m in sorted(dst):
    hi = max(hi, m)
    times.append(t); highs.append(hi)
def first_reach(T):
    i = bisect.bisect_left(highs, T)
    return times[i] if i < len(times) else None
done = first_reach(final - 1e-6)
Ts = sorted({m for t, m in src if m >= t0 - 1e-6 and m <= t1 + 1e-6})
lags = []
for T in Ts:
    r = first_reach(T - 1e-6)
    if r is not None:
        lags.append(r - T)
lags.sort()
def pct(p):
    if not lags:
        return float("nan")
    return lags[min(len(lags) - 1, max(0, int(round(p / 100 * len(lags) + 0.5)) - 1))]
rate = n / (done - t0) if done else float("nan")
print(f"{t1 - t0:.3f} {(done - t0) if done else float('nan'):.3f} {rate:.0f} {pct(50):.3f} {pct(99):.3f} {lags[-1] if lags else float('nan'):.3f} {len(lags)}")
PY
}

# siphon_config STATE TARGET_URL TABLES FILE
siphon_config() {
    {
        echo "state: sqlite://$1"
        echo "connections:"
        echo "  src: $(my_url src bench)"
        echo "  dst: $2"
        echo "pipelines:"
        echo "  p:"
        echo "    source: src"
        echo "    target: dst"
        echo "    mode: cdc"
        echo "    schedule: continuous"
        echo "    tables: [$3]"
        if [[ -n "${BATCH_SIZE:-}" ]]; then echo "    batch_size: $BATCH_SIZE"; fi
    } >"$4"
}

# siphon_start / siphon_stop: the continuous `siphon run -f $siphon_yaml` in the
# background; siphon_stop stops it (SIGINT, then SIGTERM after 10 s) and raises
# $siphon_rss to its peak resident set (VmHWM).
siphon_rss=0
siphon_start() {
    (cd "$work" && exec "$siphon" run -f "$siphon_yaml" >>"$work/siphon.log" 2>&1) &
    siphon_pid=$!
    sleep 1
    alive siphon
}
siphon_stop() {
    local hwm
    hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$siphon_pid/status" 2>/dev/null || true)
    if (( ${hwm:-0} > siphon_rss )); then siphon_rss=$hwm; fi
    kill -INT "$siphon_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$siphon_pid" 2>/dev/null || break; sleep 0.1; done
    kill "$siphon_pid" 2>/dev/null || true
    wait "$siphon_pid" 2>/dev/null || true
    siphon_pid=""
}

# siphon_run NAME SIDE CONFIG: snapshot, continuous run, workload; sets $work/NAME.rss.
siphon_run() {
    local name="$1" side="$2" snap_rss
    siphon_yaml="$3"
    siphon_rss=0
    echo "== $name: snapshot (siphon run --once)…" >&2
    (cd "$work" && bench_measure "$work/$name.snap.time" "$work/siphon.log" "$siphon" run -f "$siphon_yaml" --once) \
        || { echo "error: siphon's snapshot failed:" >&2; tail -n 40 "$work/siphon.log" >&2; return 1; }
    read -r _ snap_rss _ <"$work/$name.snap.time"
    if [[ "$side" == pg:* ]]; then
        pg_table=$(q -d "${side#pg:}" -Atc "SELECT string_agg(quote_ident(table_schema) || '.' || quote_ident(table_name), ' ')
                                             FROM information_schema.tables
                                             WHERE table_name = 'items' AND table_schema NOT IN ('pg_catalog', 'information_schema')")
        [[ -n "$pg_table" && "$pg_table" != *" "* ]] || { echo "error: expected one table named items in ${side#pg:}, found '$pg_table'" >&2; return 1; }
    fi
    echo "== $name: siphon run (continuous) in the background…" >&2
    siphon_start || return 1
    run_workload "$name" "$side" siphon || { tail -n 40 "$work/siphon.log" >&2; return 1; }
    siphon_stop
    echo $(( snap_rss > siphon_rss ? snap_rss : siphon_rss )) >"$work/$name.rss"
}

for r in $runs; do
    case "$r" in
        native)
            echo "== native: replica server, CHANGE MASTER TO … MASTER_USE_GTID=slave_pos, START SLAVE…" >&2
            my_start replica 2 --slave-parallel-threads="$replica_threads"
            myq replica -e "CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = ${my_port[src]},
                                MASTER_USER = 'root', MASTER_PASSWORD = '', MASTER_USE_GTID = slave_pos;
                            START SLAVE;"
            wait_for my:replica 300 replica || exit 1
            run_workload native my:replica replica || exit 1
            myq replica -e "STOP SLAVE"
            my_stop replica
            ;;
        siphon-mariadb)
            my_start dst 3
            myq dst -e "CREATE DATABASE bench"
            siphon_config "$work/state-mariadb.db" "$(my_url dst bench)" bench.items "$work/siphon-mariadb.yaml"
            siphon_run siphon-mariadb my:dst "$work/siphon-mariadb.yaml" || exit 1
            my_stop dst
            ;;
        siphon-postgres)
            pg_start
            q -d postgres -c "CREATE DATABASE sip"
            siphon_config "$work/state-postgres.db" "$(url sip)" bench.items "$work/siphon-postgres.yaml"
            siphon_run siphon-postgres pg:sip "$work/siphon-postgres.yaml" || exit 1
            pg_stop
            ;;
    esac
done

echo
echo "MariaDB $(myq src -e 'SELECT VERSION()') source, throwaway servers on 127.0.0.1 (fsync: MariaDB $my_fsync${pgbin:+, PostgreSQL $fsync}), $(nproc) CPUs"
echo "workload: $updates single-row updates in transactions of $txsize on $seed rows; sampler every $sample_ms ms"
declare -A label=([native]="native replica" [siphon-mariadb]="siphon to MariaDB" [siphon-postgres]="siphon to PostgreSQL")
row() {
    local title="$1" field="$2" r line
    line=$(printf "%-24s" "$title")
    for r in $runs; do
        if [[ "$field" == cpu-* ]]; then
            if [[ -f "$work/$r.cpu" ]]; then
                line+=$(printf " | %20s" "$(awk -v f="${field#cpu-}" '{ print $f }' "$work/$r.cpu")")
            else
                line+=$(printf " | %20s" "-")
            fi
        elif [[ "$field" == rss ]]; then
            if [[ -f "$work/$r.rss" ]]; then
                line+=$(printf " | %20s" "$(awk -v k="$(cat "$work/$r.rss")" 'BEGIN { printf "%.1f", k / 1024 }')")
            else
                line+=$(printf " | %20s" "-")
            fi
        else
            line+=$(printf " | %20s" "$(awk -v f="$field" '{ print $f }' "$work/$r.result")")
        fi
    done
    echo "$line"
}
header=$(printf "%-24s" "")
rule=$(printf "%-24s" "------------------------")
for r in $runs; do
    header+=$(printf " | %20s" "${label[$r]}")
    rule+="-+---------------------"
done
echo "$header"
echo "$rule"
row "workload duration (s)" 1
if [[ "$mode" == backlog ]]; then
    row "catch-up time (s)" 2
    row "catch-up rate (rows/s)" 3
else
    row "all applied after (s)" 2
    row "apply rate (rows/s)" 3
fi
if [[ "$mode" == live ]]; then
    row "lag p50 (s)" 4
    row "lag p99 (s)" 5
    row "lag max (s)" 6
    row "lag samples" 7
fi
row "applier CPU s/100k rows" cpu-1
row "target CPU s/100k rows" cpu-2
row "peak RSS (MiB)" rss
if [[ "$mode" == backlog ]]; then
    echo "(MODE=backlog: each applier was stopped during the workload; catch-up = from its start until the target matched"
    echo " the source (count, sums, max(updated_at)); rate = updates ÷ catch-up time; no lag figures;"
else
    echo "(rate = updates ÷ time from workload start until the target's max(updated_at) reached the source's final value;"
    echo " lag = first target observation with max(updated_at) ≥ T minus T, for source values T sampled during the workload;"
fi
echo " siphon RSS = peak over the snapshot run and the continuous run(s); native = MariaDB's replica"
echo " (slave_parallel_threads $replica_threads), started empty and caught up before the workload)"
