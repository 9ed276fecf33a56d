#!/usr/bin/env bash
# Many tables in one pipeline: how long siphon takes to converge twenty
# PostgreSQL tables into another PostgreSQL database with `max_parallel: 1`
# (one table after another) and with `max_parallel: 4` (issue 11, "Many tables
# at once").
#
# Starts a throwaway PostgreSQL 15 cluster (see lib.sh), builds TABLES tables
# t01…tNN of ROWS rows each (bigint key, int, numeric(12,2), text, timestamptz,
# text) in database `src`, VACUUMs them, then for each setting runs
#   siphon run -f bench.yaml --once   (mode: full, tables: public.*)
# into a fresh database with a fresh state store, after a CHECKPOINT, and
# checks that every target table holds the source's rows (count, sum, md5 of
# the keys). Prints the seconds each setting took and the speed-up.
#
# Usage:
#   bash bench/service_parallel.sh                       # 20 tables × 50,000 rows
#   TABLES=40 ROWS=20000 bash bench/service_parallel.sh
# Environment:
#   TABLES      number of tables (default 20)
#   ROWS        rows per table (default 50000)
#   PARALLEL    the max_parallel compared with 1 (default 4)
#   SIPHON_BIN  binary to run (default: target/release/siphon, built when missing)
#   PG_BIN      PostgreSQL binaries (default: /usr/lib/postgresql/15/bin)
#   PG_FSYNC    fsync setting of the throwaway server: off (default) or on
#   BENCH_DIR   parent of the scratch directory (default: $TMPDIR or /tmp)
#   KEEP=1      keep the scratch directory (the server is stopped anyway)
#
# Needs bash, psql, python3 (free port), awk, runuser.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tables="${TABLES:-20}"
rows="${ROWS:-50000}"
wide="${PARALLEL:-4}"
for v in "$tables" "$rows" "$wide"; do
    [[ "$v" =~ ^[1-9][0-9]*$ ]] || { echo "error: '$v' is not a positive integer" >&2; exit 2; }
done
pg_require
bench_siphon
bench_workdir siphon-parallel
cleanup() {
    pg_stop
    bench_remove_workdir
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pg_start
q -d postgres -c "CREATE DATABASE src"

echo "== $tables tables × $rows rows: generating the source (PostgreSQL on port $port, fsync=$fsync)…" >&2
for i in $(seq -f '%02g' 1 "$tables"); do
    q -d src <<SQL
CREATE TABLE t$i (
  id bigint PRIMARY KEY,
  customer_id integer NOT NULL,
  amount numeric(12,2) NOT NULL,
  status text NOT NULL,
  created_at timestamptz NOT NULL,
  notes text
);
INSERT INTO t$i
SELECT g,
       1 + (g * 7919) % 100000,
       ((g * 104729) % 10000000) / 100.0,
       (ARRAY['new', 'paid', 'shipped', 'returned'])[1 + g % 4],
       timestamptz '2025-01-01 00:00:00+00' + g * interval '6 seconds',
       CASE WHEN g % 5 = 0 THEN NULL ELSE 'row ' || g || ' of t$i' END
FROM generate_series(1::bigint, $rows) AS g;
SQL
done
q -d src -c "VACUUM ANALYZE"

# check DB: one line per table: name, rows, sum(amount), md5 of the keys.
check() {
    local i
    for i in $(seq -f '%02g' 1 "$tables"); do
        q -d "$1" -Atc "SELECT 't$i ' || count(*) || ' ' || coalesce(sum(amount), 0) || ' ' || coalesce(md5(string_agg(id::text, ',' ORDER BY id)), '') FROM t$i"
    done
}
want=$(check src)

# run N: siphon with max_parallel N into database dst_N; sets $secs.
run() {
    local n="$1" db="dst_$1" dir="$work/run_$1"
    mkdir -p "$dir"
    q -d postgres -c "CREATE DATABASE $db"
    cat >"$dir/bench.yaml" <<YAML
state: sqlite://$dir/state.db
connections:
  src: $(url src)
  dst: $(url "$db")
pipelines:
  many:
    source: src
    target: dst
    mode: full
    tables: ["public.*"]
    max_parallel: $n
YAML
    q -d postgres -c CHECKPOINT; sync
    echo "== max_parallel: $n…" >&2
    local t0 t1
    t0=$(date +%s%N)
    if ! (cd "$dir" && "$siphon" run -f "$dir/bench.yaml" --once >"$dir/siphon.log" 2>&1); then
        echo "error: siphon failed with max_parallel $n:" >&2
        tail -n 40 "$dir/siphon.log" >&2
        exit 1
    fi
    t1=$(date +%s%N)
    local got
    got=$(check "$db")
    if [[ "$got" != "$want" ]]; then
        echo "error: with max_parallel $n the target differs from the source:" >&2
        diff <(echo "$want") <(echo "$got") >&2 || true
        exit 1
    fi
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
}

run 1
one=$secs
run "$wide"
many=$secs

total=$((tables * rows))
echo
echo "PostgreSQL 15 → PostgreSQL 15, same throwaway server (127.0.0.1, fsync=$fsync), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$tables tables × $rows rows ($total rows), mode: full, run --once, until every table equals the source"
awk -v one="$one" -v many="$many" -v w="$wide" -v total="$total" 'BEGIN {
    printf "%14s | %9s | %12s\n", "max_parallel", "seconds", "rows/s"
    printf "%14s-+-%9s-+-%12s\n", "--------------", "---------", "------------"
    printf "%14d | %9.2f | %12.0f\n", 1, one, total / (one > 0 ? one : 0.001)
    printf "%14d | %9.2f | %12.0f\n", w, many, total / (many > 0 ? many : 0.001)
    printf "speed-up with max_parallel %d: %.2f×\n", w, one / (many > 0 ? many : 0.001)
}'
