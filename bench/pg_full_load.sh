#!/usr/bin/env bash
# Full-load throughput of siphon's PostgreSQL → PostgreSQL path, against a raw
# binary COPY pipe as the baseline (issue 3, "Benchmarks").
#
# Starts a throwaway PostgreSQL 15 cluster (initdb in a scratch directory, run as
# the `postgres` user, TCP on a free 127.0.0.1 port, wal_level=logical), builds
# an orders-shaped table (bigint key, int, numeric(12,2), text, varchar, boolean,
# timestamptz, date, jsonb, uuid, text) of N rows in database `src`, then times:
#   baseline  psql -d src -c "COPY (SELECT * FROM orders) TO STDOUT (FORMAT binary)"
#               | psql -d base -c "COPY orders FROM STDIN (FORMAT binary)"
#             (into an identical empty table, primary key included)
#   siphon    siphon run -f bench.yaml --once   (mode: full, into a fresh database `dst`)
# and checks that both targets hold N rows with the source's sum(amount).
# Each timed run starts after a CHECKPOINT; the source is VACUUMed first.
#
# Usage:
#   bash bench/pg_full_load.sh                # N = 5,000,000
#   ROWS=1000000 bash bench/pg_full_load.sh   # or: bash bench/pg_full_load.sh 1000000
# Environment:
#   ROWS        row count (an argument wins)
#   SIPHON_BIN  binary to run (default: target/release/siphon, built when missing)
#   BATCH_SIZE  pipeline batch_size (default: siphon's own default)
#   PARALLEL    pipeline parallel: workers over key ranges (default: siphon's own, 1)
#   PG_BIN      PostgreSQL binaries (default: /usr/lib/postgresql/15/bin)
#   PG_FSYNC    fsync setting of the throwaway server: off (default) or on
#   BENCH_DIR   parent of the scratch directory (default: $TMPDIR or /tmp)
#   KEEP=1      keep the scratch directory (the server is stopped anyway)
#
# Needs bash, psql, python3 (free port, peak RSS through wait4(2)), awk, runuser.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
n="${1:-${ROWS:-5000000}}"
[[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "error: row count '$n' is not a positive integer" >&2; exit 2; }
pg_require
bench_siphon
bench_workdir siphon-pgbench
cleanup() {
    pg_stop
    bench_remove_workdir
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- throwaway server -------------------------------------------------------
pg_start
for db in src base dst; do q -d postgres -c "CREATE DATABASE $db"; done

# measure OUT LOG CMD… : "<seconds> <peak RSS KiB> <exit code>" into OUT (wait4).
measure() {
    python3 - "$@" <<'PY'
import os, subprocess, sys, time
out, log, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
with open(log, "ab") as lf:
    start = time.monotonic()
    child = subprocess.Popen(cmd, stdout=lf, stderr=lf)
    _, status, usage = os.wait4(child.pid, 0)
    secs = time.monotonic() - start
    code = os.waitstatus_to_exitcode(status)
with open(out, "w") as f:
    f.write(f"{secs:.3f} {usage.ru_maxrss} {code}\n")
sys.exit(code)
PY
}

# --- source -------------------------------------------------------------------
ddl="CREATE TABLE orders (
  id bigint PRIMARY KEY,
  customer_id integer NOT NULL,
  amount numeric(12,2) NOT NULL,
  status text NOT NULL,
  channel varchar(16),
  paid boolean NOT NULL,
  created_at timestamptz NOT NULL,
  ordered_on date NOT NULL,
  attrs jsonb,
  ref uuid NOT NULL,
  notes text
);"
echo "== $n rows: generating the source (PostgreSQL on port $port, fsync=$fsync)…" >&2
q -d src -c "$ddl"
q -d base -c "$ddl"
q -d src <<SQL
INSERT INTO orders
SELECT i,
       1 + (i * 7919) % 100000,
       ((i * 104729) % 10000000) / 100.0,
       (ARRAY['new', 'paid', 'shipped', 'returned'])[1 + i % 4],
       CASE WHEN i % 10 = 0 THEN NULL WHEN i % 2 = 0 THEN 'web' ELSE 'shop' END,
       i % 3 <> 0,
       timestamptz '2025-01-01 00:00:00+00' + i * interval '6 seconds' + (i % 1000) * interval '1 microsecond',
       date '2025-01-01' + (i / 14400)::int,
       CASE WHEN i % 7 = 0 THEN NULL
            ELSE jsonb_build_object('channel', CASE i % 2 WHEN 0 THEN 'web' ELSE 'shop' END,
                                    'gift', i % 5 = 0, 'items', 1 + i % 9) END,
       md5(i::text)::uuid,
       CASE WHEN i % 5 = 0 THEN NULL ELSE 'order ' || i || ' — note ✓' END
FROM generate_series(1::bigint, $n) AS i;
VACUUM ANALYZE orders;
SQL
check() { q -d "$1" -Atc "SELECT count(*) || ' ' || coalesce(sum(amount), 0) || ' ' || count(attrs) || ' ' || count(DISTINCT ref) FROM orders"; }
want=$(check src)
[[ "${want%% *}" == "$n" ]] || { echo "error: the source has ${want%% *} rows, expected $n" >&2; exit 1; }

# --- baseline: binary COPY pipe ----------------------------------------------------
echo "== $n rows: baseline (COPY TO STDOUT binary | COPY FROM STDIN binary)…" >&2
q -d postgres -c CHECKPOINT; sync
t0=$(date +%s%N)
q -d src -c "COPY (SELECT * FROM orders) TO STDOUT (FORMAT binary)" \
    | q -d base -c "COPY orders FROM STDIN (FORMAT binary)"
t1=$(date +%s%N)
bs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
got=$(check base)
[[ "$got" == "$want" ]] || { echo "error: the baseline target has '$got', the source '$want'" >&2; exit 1; }
q -d postgres -c "DROP DATABASE base"

# --- siphon -----------------------------------------------------------------------
echo "== $n rows: siphon run --once (mode: full)…" >&2
{
    echo "state: sqlite://$work/state.db"
    echo "connections:"
    echo "  src: $(url src)"
    echo "  dst: $(url dst)"
    echo "pipelines:"
    echo "  p:"
    echo "    source: src"
    echo "    target: dst"
    echo "    mode: full"
    echo "    tables: [public.orders]"
    [[ -n "${BATCH_SIZE:-}" ]] && echo "    batch_size: $BATCH_SIZE"
    [[ -n "${PARALLEL:-}" ]] && echo "    parallel: $PARALLEL"
} >"$work/bench.yaml"
q -d postgres -c CHECKPOINT; sync
if ! (cd "$work" && measure "$work/siphon.time" "$work/siphon.log" "$siphon" run -f "$work/bench.yaml" --once); then
    echo "error: siphon failed:" >&2
    tail -n 40 "$work/siphon.log" >&2
    exit 1
fi
got=$(check dst)
if [[ "$got" != "$want" ]]; then
    echo "error: siphon's target has '$got' (count sum(amount) count(attrs) distinct refs), the source '$want'" >&2
    tail -n 40 "$work/siphon.log" >&2
    exit 1
fi
read -r ss srss _ <"$work/siphon.time"

echo
echo "PostgreSQL 15 → PostgreSQL 15, same throwaway server (127.0.0.1, fsync=$fsync), $(nproc) CPUs, parallel ${PARALLEL:-1}"
awk -v n="$n" -v b="$bs" -v s="$ss" -v r="$srss" 'BEGIN {
    printf "%12s | %10s %13s | %10s %13s | %7s | %10s\n",
           "rows", "baseline s", "baseline r/s", "siphon s", "siphon r/s", "ratio", "siphon RSS"
    printf "%12s-+-%10s-%13s-+-%10s-%13s-+-%7s-+-%10s\n",
           "------------", "----------", "-------------", "----------", "-------------", "-------", "----------"
    b = (b > 0 ? b : 0.001); s = (s > 0 ? s : 0.001)
    printf "%12d | %10.2f %13.0f | %10.2f %13.0f | %7.3f | %6.1f MiB\n",
           n, b, n / b, s, n / s, (n / s) / (n / b), r / 1024
}'
echo "(baseline = binary COPY pipe through two psql; ratio = siphon rows/s ÷ baseline rows/s; RSS = siphon's peak resident set)"
