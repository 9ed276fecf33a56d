#!/usr/bin/env bash
# Lag of a streaming table while a table added to the same running `cdc`
# pipeline is copied (issue 9, "table isolation in CDC"): the new table is
# copied chunk by chunk between watermarks in the log, so the other table's
# changes keep arriving instead of waiting for the copy.
#
# Starts a throwaway PostgreSQL 15 cluster (see lib.sh) with database `src`
# holding public.items (id bigint pk, qty int, note text, updated_at
# timestamptz, index on updated_at), seeded with SEED rows, and one continuous
# `siphon run` of a pipeline over "public.*" into database `dst`. Once items is
# copied, a workload updates items at a steady pace (TX_SIZE single-row updates
# per transaction, PAUSE_MS between transactions, updated_at = clock_timestamp())
# while samplers record (clock_timestamp(), max(updated_at)) of items on both
# sides every SAMPLE_MS. Then public.big (id bigint pk, n int, note text) is
# created at the source with BIG rows; the pipeline picks it up on its next
# pass and copies it. The workload stops once big's copy is complete on the
# target (its checkpoint's phase is `streaming`) and items has caught up.
# Measured, on the server's clock:
#   copy        from big's creation until its copy was complete on the target
#   lag         for each source value T of max(updated_at) sampled while big
#               was copied: first target observation with max(updated_at) ≥ T,
#               minus T; p50/p99/max. The same before the copy, for comparison.
# At the end items and big must match the source (count and checksum).
#
# Usage:
#   bash bench/pg_backfill.sh                       # 20,000 items, 1,000,000 rows of big
#   BIG=200000 bash bench/pg_backfill.sh
# Environment:
#   SEED        rows of items (default 20000)
#   BIG         rows of the added table (default 1000000)
#   TX_SIZE     updates per workload transaction (default 10)
#   PAUSE_MS    pause between workload transactions in ms (default 5)
#   SAMPLE_MS   sampler period in ms (default 100)
#   BATCH_SIZE  pipeline batch_size, also the copy's chunk (default: siphon's own)
#   CATCHUP_TIMEOUT  seconds to wait for the copy and the catch-up (default 900)
#   SIPHON_BIN, PG_BIN, PG_FSYNC, BENCH_DIR, KEEP: see lib.sh
#
# Needs bash, psql, python3, awk, runuser.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
seed="${SEED:-20000}"
big="${BIG:-1000000}"
txsize="${TX_SIZE:-10}"
pause_ms="${PAUSE_MS:-5}"
sample_ms="${SAMPLE_MS:-100}"
catchup="${CATCHUP_TIMEOUT:-900}"
for v in "$seed" "$big" "$txsize" "$sample_ms" "$catchup"; do
    [[ "$v" =~ ^[1-9][0-9]*$ ]] || { echo "error: '$v' is not a positive integer" >&2; exit 2; }
done
[[ "$pause_ms" =~ ^[0-9]+$ ]] || { echo "error: PAUSE_MS '$pause_ms' is not a number" >&2; exit 2; }
pg_require
bench_siphon
bench_workdir siphon-pgbackfill
siphon_pid=""
bg_pids=""
cleanup() {
    [[ -n "$siphon_pid" ]] && kill "$siphon_pid" 2>/dev/null || true
    for p in $bg_pids; do kill "$p" 2>/dev/null || true; done
    pg_stop
    bench_remove_workdir
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pg_start
for db in src dst; do q -d postgres -c "CREATE DATABASE $db"; done
echo "== PostgreSQL on port $port (fsync=$fsync); seeding $seed rows of items…" >&2
q -d src <<SQL
CREATE TABLE items (id bigint PRIMARY KEY, qty integer NOT NULL, note text, updated_at timestamptz NOT NULL);
CREATE INDEX items_updated_at ON items (updated_at);
INSERT INTO items SELECT i, i % 1000, 'item ' || i, timestamptz '2025-01-01 00:00:00+00'
FROM generate_series(1::bigint, $seed) AS i;
CREATE PROCEDURE workload(per integer, pause float8, seed bigint)
LANGUAGE plpgsql AS \$\$
DECLARE i bigint := 0;
BEGIN
  LOOP
    UPDATE items SET qty = qty + 1, updated_at = clock_timestamp() WHERE id = 1 + (i * 7919) % seed;
    i := i + 1;
    IF i % per = 0 THEN
      COMMIT;
      PERFORM pg_sleep(pause);
    END IF;
  END LOOP;
END
\$\$;
SQL

check() { q -d "$1" -Atc "SELECT count(*) || ' ' || coalesce(sum(hashtext(t::text)::bigint), 0) FROM $2 t" 2>/dev/null || true; }
now_epoch() { q -d src -Atc "SELECT extract(epoch FROM clock_timestamp())"; }
phase() {
    q -d dst -Atc "SELECT checkpoint::json->>'phase' FROM siphon_checkpoints WHERE pipeline = 'p' AND tbl = 'public.$1'" 2>/dev/null || true
}
# until TABLE matches on both sides, or LIMIT seconds passed
wait_same() {
    local table="$1" limit="$2" start=$SECONDS
    until [[ "$(check dst "$table")" == "$(check src "$table")" ]]; do
        (( SECONDS - start > limit )) && { echo "error: $table did not catch up in ${limit}s" >&2; return 1; }
        sleep 0.2
    done
}
# sampler DB OUT: every SAMPLE_MS, "<clock epoch> <max(updated_at) epoch>" of items into OUT
sampler() {
    local db="$1" out="$2" period
    period=$(awk -v m="$sample_ms" 'BEGIN { printf "%.3f", m / 1000 }')
    (
        while [[ ! -e "$work/stop" ]]; do
            echo "SELECT extract(epoch FROM clock_timestamp()) || ' ' || coalesce(extract(epoch FROM max(updated_at)), 0) FROM items;"
            sleep "$period"
        done
    ) | q -d "$db" -At >"$out" &
    bg_pids="$bg_pids $!"
}

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
    echo "    tables: [\"public.*\"]"
    [[ -n "${BATCH_SIZE:-}" ]] && echo "    batch_size: $BATCH_SIZE"
} >"$work/siphon.yaml"
echo "== siphon run (continuous)…" >&2
(cd "$work" && exec "$siphon" run -f "$work/siphon.yaml" >>"$work/siphon.log" 2>&1) &
siphon_pid=$!
wait_same items 300 || { tail -n 40 "$work/siphon.log" >&2; exit 1; }

sampler src "$work/src.obs"
sampler dst "$work/dst.obs"
echo "== workload on items ($txsize updates per transaction, ${pause_ms} ms apart)…" >&2
pause=$(awk -v m="$pause_ms" 'BEGIN { printf "%.3f", m / 1000 }')
t_work=$(now_epoch)
(PGAPPNAME=bench_workload q -d src -c "CALL workload($txsize, $pause, $seed)" >/dev/null 2>&1 || true) &
bg_pids="$bg_pids $!"
sleep 5
echo "== creating public.big with $big rows…" >&2
q -d src <<SQL
CREATE TABLE big (id bigint PRIMARY KEY, n integer NOT NULL, note text);
INSERT INTO big SELECT i, i % 1000, 'big row ' || i FROM generate_series(1::bigint, $big) AS i;
SQL
t_big=$(now_epoch)
start=$SECONDS
until [[ "$(phase big)" == streaming ]]; do
    (( SECONDS - start > catchup )) && { echo "error: big was not copied in ${catchup}s" >&2; tail -n 40 "$work/siphon.log" >&2; exit 1; }
    kill -0 "$siphon_pid" 2>/dev/null || { echo "error: siphon run exited" >&2; tail -n 40 "$work/siphon.log" >&2; exit 1; }
    sleep 0.2
done
t_done=$(now_epoch)
sleep 5
q -d src -Atc "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'bench_workload'" >/dev/null
wait_same items "$catchup" || { tail -n 40 "$work/siphon.log" >&2; exit 1; }
wait_same big "$catchup" || { tail -n 40 "$work/siphon.log" >&2; exit 1; }
sleep 0.5
touch "$work/stop"
for p in $bg_pids; do wait "$p" 2>/dev/null || true; done
bg_pids=""
rss=$(awk '/^VmHWM:/ {print $2}' "/proc/$siphon_pid/status" 2>/dev/null || echo 0)

python3 - "$work/src.obs" "$work/dst.obs" "$t_big" "$t_done" "$t_work" <<'PY' >"$work/result"
import bisect, sys
def load(path):
    rows = []
    for line in open(path):
        parts = line.split()
        if len(parts) == 2:
            rows.append((float(parts[0]), float(parts[1])))
    return rows
src, dst = load(sys.argv[1]), load(sys.argv[2])
t_big, t_done, t_work = float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
times, highs, hi = [], [], 0.0
for t, m in sorted(dst):
    hi = max(hi, m)
    times.append(t); highs.append(hi)
def first_reach(T):
    i = bisect.bisect_left(highs, T)
    return times[i] if i < len(times) else None
def lags(lo, up):
    out = []
    for T in sorted({m for t, m in src if lo <= m <= up}):
        r = first_reach(T - 1e-6)
        if r is not None:
            out.append(r - T)
    out.sort()
    return out
def pct(xs, p):
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, max(0, int(round(p / 100 * len(xs) + 0.5)) - 1))]
before = lags(t_work, t_big)
during = lags(t_big, t_done)
for xs in (before, during):
    print(f"{pct(xs, 50):.3f} {pct(xs, 99):.3f} {xs[-1] if xs else float('nan'):.3f} {len(xs)}", end=" ")
print(f"{t_done - t_big:.1f}")
PY
read -r b50 b99 bmax bn d50 d99 dmax dn copy <"$work/result"
kill -INT "$siphon_pid" 2>/dev/null || true
for _ in $(seq 1 100); do kill -0 "$siphon_pid" 2>/dev/null || break; sleep 0.1; done

echo
echo "PostgreSQL 15 → PostgreSQL 15, same throwaway server (127.0.0.1, fsync=$fsync), $(nproc) CPUs"
echo "items: $seed rows, $txsize updates per transaction every ${pause_ms} ms; big: $big rows added while streaming"
printf "%-28s | %14s | %17s\n" "lag of items (s)" "before big" "during big's copy"
printf "%-28s-+-%14s-+-%17s\n" "----------------------------" "--------------" "-----------------"
printf "%-28s | %14s | %17s\n" "p50" "$b50" "$d50"
printf "%-28s | %14s | %17s\n" "p99" "$b99" "$d99"
printf "%-28s | %14s | %17s\n" "max" "$bmax" "$dmax"
printf "%-28s | %14s | %17s\n" "samples" "$bn" "$dn"
echo "big copied in ${copy} s (from its creation at the source until its copy was complete on the target)"
echo "siphon peak RSS: $(awk -v r="$rss" 'BEGIN { printf "%.1f", r / 1024 }') MiB"
echo "(lag = first target observation with max(updated_at) ≥ T minus T, for source values T sampled before and during the copy)"
