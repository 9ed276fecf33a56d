#!/usr/bin/env bash
# CDC apply rate and lag of siphon's PostgreSQL → PostgreSQL path (mode: cdc,
# logical replication), against PostgreSQL's own CREATE PUBLICATION /
# CREATE SUBSCRIPTION on the same server and the same workload (issue 3, "Benchmarks").
#
# Starts a throwaway PostgreSQL 15 cluster (initdb in a scratch directory, run as
# the `postgres` user, TCP on a free 127.0.0.1 port, wal_level=logical) with
# database `src` holding public.items (id bigint pk, qty int, amount numeric(12,2),
# note text, updated_at timestamptz, index on updated_at), seeded with SEED rows.
#   siphon  `siphon run --once` (mode: cdc: snapshot) into database `dst`, then
#           `siphon run` (schedule: continuous) in the background;
#   native  CREATE PUBLICATION in `src`, pg_create_logical_replication_slot(…,
#           'pgoutput'), database `sub` with the same table, CREATE SUBSCRIPTION …
#           WITH (create_slot = false, slot_name = …) (copy_data; waits for 'r').
# Each side: one warm-up update must arrive, then the workload runs: UPDATES
# single-row updates (qty+1, amount+0.01, updated_at = clock_timestamp()) in
# transactions of TX_SIZE, by a procedure that COMMITs in a loop. Ids are
# 1 + (i·7919 mod SEED), so the rows of one transaction are distinct.
# Measured, all on the server's clock:
#   apply rate  UPDATES ÷ (first target observation with max(updated_at) ≥ the
#               source's final max(updated_at) − workload start);
#               at the end count/sum(qty)/sum(amount)/max(updated_at) must match.
#   lag         a sampler every SAMPLE_MS records (clock_timestamp(), max(updated_at))
#               on the source and on the target; for each source value T seen
#               during the workload, lag = first target observation time with
#               max(updated_at) ≥ T, minus T. p50/p99/max reported. T is the update's
#               clock_timestamp(), so lag includes the rest of its transaction
#               (≤ one transaction, a few ms) and the sampling period (≤ SAMPLE_MS).
#   RSS         siphon's peak resident set (VmHWM) over the snapshot run and the
#               continuous run.
#
# Usage:
#   bash bench/pg_cdc.sh                                  # 100,000 rows, 500,000 updates, tx 1,000
#   UPDATES=100000 SEED=20000 bash bench/pg_cdc.sh
# Environment:
#   SEED        seeded rows (default 100000)
#   UPDATES     single-row updates in the workload (default 500000)
#   TX_SIZE     updates per transaction (default 1000)
#   SAMPLE_MS   sampler period in ms (default 100)
#   CATCHUP_TIMEOUT  seconds to wait for a target to catch up (default 600)
#   SIPHON_BIN  binary to run (default: target/release/siphon, built when missing)
#   BATCH_SIZE  pipeline batch_size (default: siphon's own default)
#   PG_BIN      PostgreSQL binaries (default: /usr/lib/postgresql/15/bin)
#   PG_FSYNC    fsync setting of the throwaway server: off (default) or on
#   BENCH_DIR   parent of the scratch directory (default: $TMPDIR or /tmp)
#   KEEP=1      keep the scratch directory (the server is stopped anyway)
#
# Needs bash, psql, python3, awk, runuser.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
seed="${SEED:-100000}"
updates="${UPDATES:-500000}"
txsize="${TX_SIZE:-1000}"
sample_ms="${SAMPLE_MS:-100}"
catchup="${CATCHUP_TIMEOUT:-600}"
for v in "$seed" "$updates" "$txsize" "$sample_ms" "$catchup"; do
    [[ "$v" =~ ^[1-9][0-9]*$ ]] || { echo "error: '$v' is not a positive integer" >&2; exit 2; }
done
pg_require
bench_siphon
bench_workdir siphon-pgcdc
siphon_pid=""
sampler_pids=""
cleanup() {
    [[ -n "$siphon_pid" ]] && kill "$siphon_pid" 2>/dev/null || true
    for p in $sampler_pids; do kill "$p" 2>/dev/null || true; done
    pg_stop
    bench_remove_workdir
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- throwaway server -------------------------------------------------------
pg_start 'max_logical_replication_workers = 8'
for db in src dst sub; do q -d postgres -c "CREATE DATABASE $db"; done

ddl="CREATE TABLE items (
  id bigint PRIMARY KEY,
  qty integer NOT NULL,
  amount numeric(12,2) NOT NULL,
  note text,
  updated_at timestamptz NOT NULL
);
CREATE INDEX items_updated_at ON items (updated_at);"
echo "== PostgreSQL on port $port (fsync=$fsync); seeding $seed rows…" >&2
q -d src -c "$ddl"
q -d src <<SQL
INSERT INTO items
SELECT i, (i * 7) % 1000, ((i * 104729) % 1000000) / 100.0, 'item ' || i,
       timestamptz '2025-01-01 00:00:00+00' + i * interval '1 millisecond'
FROM generate_series(1::bigint, $seed) AS i;
VACUUM ANALYZE items;
CREATE PROCEDURE workload(n bigint, per integer, seed bigint)
LANGUAGE plpgsql AS \$\$
BEGIN
  FOR i IN 0 .. n - 1 LOOP
    UPDATE items SET qty = qty + 1, amount = amount + 0.01, updated_at = clock_timestamp()
     WHERE id = 1 + (i::bigint * 7919) % seed;
    IF (i + 1) % per = 0 THEN
      COMMIT;
    END IF;
  END LOOP;
  COMMIT;
END
\$\$;
SQL
# Index on the target's updated_at for cheap max() polling: the native side's
# table is created here with it; siphon's target is whatever siphon creates.
check() { q -d "$1" -Atc "SELECT count(*) || ' ' || sum(qty) || ' ' || sum(amount) || ' ' || max(updated_at) FROM items"; }
maxts() { q -d "$1" -Atc "SELECT coalesce(extract(epoch FROM max(updated_at)), 0) FROM items"; }
now_epoch() { q -d src -Atc "SELECT extract(epoch FROM clock_timestamp())"; }

# wait_for DB SECONDS : until DB's items matches src's (count, sums, max(updated_at))
wait_for() {
    local db="$1" limit="$2" start=$SECONDS want got
    want=$(check src)
    while :; do
        got=$(check "$db" 2>/dev/null || true)
        [[ "$got" == "$want" ]] && return 0
        (( SECONDS - start > limit )) && { echo "error: $db did not catch up in ${limit}s: '$got' vs '$want'" >&2; return 1; }
        sleep 0.2
    done
}

# sampler DB OUT : every SAMPLE_MS, "<clock epoch> <max(updated_at) epoch>" into OUT,
# through one long-lived psql session fed by a loop; stopped when $work/stop.DB exists.
sampler() {
    local db="$1" out="$2" period
    period=$(awk -v m="$sample_ms" 'BEGIN { printf "%.3f", m / 1000 }')
    (
        while [[ ! -e "$work/stop.$db" ]]; do
            echo "SELECT extract(epoch FROM clock_timestamp()) || ' ' || coalesce(extract(epoch FROM max(updated_at)), 0) FROM items;"
            sleep "$period"
        done
    ) | q -d "$db" -At >"$out" &
    sampler_pids="$sampler_pids $!"
}

# run_workload NAME TARGETDB : warm-up, samplers, workload, catch-up; writes $work/NAME.result
run_workload() {
    local name="$1" db="$2" t0 t1 final
    echo "== $name: warm-up update…" >&2
    q -d src -c "UPDATE items SET updated_at = clock_timestamp() WHERE id = 1"
    wait_for "$db" 300 || return 1
    rm -f "$work/stop.src" "$work/stop.$db"
    sampler_pids=""
    sampler src "$work/$name.src.obs"
    sampler "$db" "$work/$name.dst.obs"
    sleep 0.5
    echo "== $name: workload ($updates updates, $txsize per transaction)…" >&2
    t0=$(now_epoch)
    q -d src -c "CALL workload($updates, $txsize, $seed)" || { echo "error: the workload failed" >&2; return 1; }
    t1=$(now_epoch)
    final=$(maxts src)
    echo "== $name: workload done in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s; waiting for the target…" >&2
    wait_for "$db" "$catchup" || return 1
    sleep 0.5
    touch "$work/stop.src" "$work/stop.$db"
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

# --- (a) siphon -------------------------------------------------------------------
{
    echo "state: sqlite://$work/state.db"
    echo "connections:"
    echo "  src: $(url src)"
    echo "  dst: $(url dst)"
    echo "pipelines:"
    echo "  p:"
    echo "    source: src"
    echo "    target: dst"
    echo "    mode: cdc"
    echo "    schedule: continuous"
    echo "    tables: [public.items]"
    [[ -n "${BATCH_SIZE:-}" ]] && echo "    batch_size: $BATCH_SIZE"
} >"$work/siphon.yaml"
echo "== siphon: snapshot (run --once)…" >&2
snap_rss=$(cd "$work" && python3 - "$siphon" run -f "$work/siphon.yaml" --once 2>>"$work/siphon.log" <<'PY'
import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:], stdout=sys.stderr, stderr=sys.stderr)
_, status, usage = os.wait4(child.pid, 0)
code = os.waitstatus_to_exitcode(status)
print(usage.ru_maxrss)
sys.exit(code)
PY
) || { echo "error: siphon's snapshot failed:" >&2; tail -n 40 "$work/siphon.log" >&2; exit 1; }
wait_for dst 60 || { tail -n 40 "$work/siphon.log" >&2; exit 1; }
echo "== siphon: run (continuous) in the background…" >&2
(cd "$work" && exec "$siphon" run -f "$work/siphon.yaml" >>"$work/siphon.log" 2>&1) &
siphon_pid=$!
sleep 1
kill -0 "$siphon_pid" 2>/dev/null || { echo "error: siphon run exited:" >&2; tail -n 40 "$work/siphon.log" >&2; exit 1; }
if ! run_workload siphon dst; then
    tail -n 40 "$work/siphon.log" >&2
    exit 1
fi
run_rss=$(awk '/^VmHWM:/ {print $2}' "/proc/$siphon_pid/status")
kill -INT "$siphon_pid" 2>/dev/null || true
for _ in $(seq 1 100); do kill -0 "$siphon_pid" 2>/dev/null || break; sleep 0.1; done
kill "$siphon_pid" 2>/dev/null || true
wait "$siphon_pid" 2>/dev/null || true
siphon_pid=""
rss=$(( snap_rss > run_rss ? snap_rss : run_rss ))

# --- (b) native logical replication -------------------------------------------------
echo "== native: publication, slot, subscription (copy_data)…" >&2
q -d sub -c "$ddl"
q -d src -c "CREATE PUBLICATION bench_pub FOR TABLE items"
q -d src -Atc "SELECT pg_create_logical_replication_slot('bench_sub', 'pgoutput')" >/dev/null
q -d sub -c "CREATE SUBSCRIPTION bench_sub CONNECTION 'host=127.0.0.1 port=$port user=postgres dbname=src' PUBLICATION bench_pub WITH (create_slot = false, slot_name = 'bench_sub', copy_data = true)"
start=$SECONDS
until [[ "$(q -d sub -Atc "SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> 'r'")" == 0 ]]; do
    (( SECONDS - start > 300 )) && { echo "error: the subscription's initial sync did not finish" >&2; exit 1; }
    sleep 0.2
done
run_workload native sub || exit 1
q -d sub -c "DROP SUBSCRIPTION bench_sub" >/dev/null

echo
echo "PostgreSQL 15 → PostgreSQL 15, same throwaway server (127.0.0.1, fsync=$fsync), $(nproc) CPUs"
echo "workload: $updates single-row updates in transactions of $txsize on $seed rows; sampler every ${SAMPLE_MS:-100} ms"
read -r sw sd sr s50 s99 smax sn <"$work/siphon.result"
read -r nw nd nr n50 n99 nmax nn <"$work/native.result"
printf "%-24s | %14s | %21s\n" "" "siphon" "native (SUBSCRIPTION)"
printf "%-24s-+-%14s-+-%21s\n" "------------------------" "--------------" "---------------------"
printf "%-24s | %14s | %21s\n" "workload duration (s)" "$sw" "$nw"
printf "%-24s | %14s | %21s\n" "all applied after (s)" "$sd" "$nd"
printf "%-24s | %14s | %21s\n" "apply rate (rows/s)" "$sr" "$nr"
printf "%-24s | %14s | %21s\n" "lag p50 (s)" "$s50" "$n50"
printf "%-24s | %14s | %21s\n" "lag p99 (s)" "$s99" "$n99"
printf "%-24s | %14s | %21s\n" "lag max (s)" "$smax" "$nmax"
printf "%-24s | %14s | %21s\n" "lag samples" "$sn" "$nn"
printf "%-24s | %14s | %21s\n" "peak RSS (MiB)" "$(awk -v r="$rss" 'BEGIN { printf "%.1f", r / 1024 }')" "-"
echo "(rate = updates ÷ time from workload start until the target's max(updated_at) reached the source's final value;"
echo " lag = first target observation with max(updated_at) ≥ T minus T, for source values T sampled during the workload;"
echo " siphon RSS = peak over the snapshot run and the continuous run)"
