#!/usr/bin/env bash
# Full-load throughput of siphon's SQLite → SQLite path, against SQLite's own
# `INSERT INTO … SELECT` from an attached file as the baseline.
#
# For each row count N it builds a source file with an orders-shaped table
# (integer key, integer, NUMERIC(12,2), TEXT, VARCHAR, BOOLEAN, TIMESTAMP, DATE,
# JSON text, UUID text) using the sqlite3 CLI, then times:
#   baseline  sqlite3: ATTACH the source; INSERT INTO main.orders SELECT * FROM s.orders
#             (into a table with the source's declared schema and primary key)
#   siphon    siphon run -f bench.yaml --once   (mode: full, into a fresh target file)
# and checks that siphon's target holds exactly N rows.
#
# Usage:
#   bash bench/sqlite_full_load.sh                 # N = 1,000,000 and 5,000,000
#   bash bench/sqlite_full_load.sh 100000 1000000  # other sizes
#   ROWS="200000" bash bench/sqlite_full_load.sh
# Environment:
#   ROWS        row counts, space separated (arguments win)
#   SIPHON_BIN  binary to run (default: target/release/siphon, built when missing)
#   BATCH_SIZE  pipeline batch_size (default: siphon's own default)
#   BENCH_DIR   parent of the scratch directory (default: $TMPDIR or /tmp)
#   KEEP=1      keep the scratch directory
#
# Needs bash, sqlite3 and awk. Peak RSS comes from wait4(2) through python3 when
# it is installed, else from polling VmHWM in /proc/PID/status; GNU time is not used.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
if [[ $# -gt 0 ]]; then
    sizes="$*"
else
    sizes="${ROWS:-1000000 5000000}"
fi
for n in $sizes; do
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "error: row count '$n' is not a positive integer" >&2; exit 2; }
done
command -v sqlite3 >/dev/null || { echo "error: the sqlite3 CLI is required (apt-get install sqlite3)" >&2; exit 2; }

bench_siphon
bench_workdir siphon-bench
cleanup() {
    bench_remove_workdir
}
trap cleanup EXIT

# measure OUT LOG CMD… : runs CMD with its output in LOG and writes
# "<seconds> <peak RSS KiB> <exit code> <CPU seconds, or - when unknown>" to OUT;
# returns CMD's exit code.
if command -v python3 >/dev/null; then
    measure() {
        python3 - "$@" <<'PY'
import os, subprocess, sys, time
out, log, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
with open(log, "ab") as lf:
    start = time.monotonic()
    child = subprocess.Popen(cmd, stdout=lf, stderr=lf)
    _, status, usage = os.wait4(child.pid, 0)
    secs = time.monotonic() - start
    child.returncode = os.waitstatus_to_exitcode(status)
with open(out, "w") as f:
    cpu = usage.ru_utime + usage.ru_stime
    f.write(f"{secs:.3f} {usage.ru_maxrss} {child.returncode} {cpu:.2f}\n")
sys.exit(child.returncode)
PY
    }
else
    measure() {
        local out="$1" log="$2" pid hwm=0 h code=0 t0 t1
        shift 2
        t0=$(date +%s%N)
        "$@" >>"$log" 2>&1 &
        pid=$!
        while kill -0 "$pid" 2>/dev/null; do
            h=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
            [[ -n "$h" && "$h" -gt "$hwm" ]] && hwm=$h
            sleep 0.05
        done
        wait "$pid" || code=$?
        t1=$(date +%s%N)
        awk -v a="$t0" -v b="$t1" -v h="$hwm" -v c="$code" \
            'BEGIN { printf "%.3f %d %d -\n", (b - a) / 1e9, h, c }' >"$out"
        return "$code"
    }
fi

# make_source FILE N: an orders table of N rows; every value is a function of id.
make_source() {
    sqlite3 "$1" <<SQL
PRAGMA journal_mode = OFF;
PRAGMA synchronous = OFF;
CREATE TABLE orders (
  id INTEGER PRIMARY KEY,
  customer_id INTEGER NOT NULL,
  amount NUMERIC(12,2) NOT NULL,
  status TEXT NOT NULL,
  channel VARCHAR(16),
  paid BOOLEAN NOT NULL,
  created_at TIMESTAMP NOT NULL,
  ordered_on DATE NOT NULL,
  attrs JSON,
  ref UUID NOT NULL,
  notes TEXT
);
WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < $2)
INSERT INTO orders
SELECT i,
       1 + (i * 7919) % 100000,
       printf('%d.%02d', (i * 104729) % 100000, i % 100),
       CASE i % 4 WHEN 0 THEN 'new' WHEN 1 THEN 'paid' WHEN 2 THEN 'shipped' ELSE 'returned' END,
       CASE WHEN i % 10 = 0 THEN NULL WHEN i % 2 = 0 THEN 'web' ELSE 'shop' END,
       i % 3 <> 0,
       datetime(1735689600 + i * 6, 'unixepoch'),
       date(1735689600 + i * 6, 'unixepoch'),
       CASE WHEN i % 7 = 0 THEN NULL
            ELSE printf('{"channel":"%s","gift":%s,"items":%d}',
                        CASE i % 2 WHEN 0 THEN 'web' ELSE 'shop' END,
                        CASE WHEN i % 5 = 0 THEN 'true' ELSE 'false' END, 1 + i % 9) END,
       printf('%08x-%04x-4%03x-%04x-%012x', i % 4294967296, (i * 31) % 65536, i % 4096,
              32768 + (i * 17) % 16384, (i * 2654435761) % 281474976710656),
       CASE WHEN i % 5 = 0 THEN NULL ELSE 'order ' || i || ' — note ✓' END
FROM seq;
SQL
}

count_rows() {
    sqlite3 "$1" "SELECT count(*) FROM orders"
}

results="$work/results.txt"
: >"$results"
for n in $sizes; do
    dir="$work/$n"
    mkdir -p "$dir"
    echo "== $n rows: generating the source…" >&2
    make_source "$dir/source.db" "$n" >/dev/null
    got=$(count_rows "$dir/source.db")
    [[ "$got" == "$n" ]] || { echo "error: the source has $got rows, expected $n" >&2; exit 1; }

    echo "== $n rows: baseline (sqlite3 INSERT … SELECT)…" >&2
    sqlite3 "$dir/source.db" "SELECT sql FROM sqlite_schema WHERE name = 'orders'" | sqlite3 "$dir/baseline.db"
    # Each timed run starts with no earlier writes still on their way to the disk.
    sync
    if ! measure "$dir/baseline.time" "$dir/baseline.log" sqlite3 "$dir/baseline.db" \
        "ATTACH '$dir/source.db' AS s; INSERT INTO main.orders SELECT * FROM s.orders;"; then
        echo "error: the baseline failed:" >&2
        cat "$dir/baseline.log" >&2
        exit 1
    fi
    got=$(count_rows "$dir/baseline.db")
    [[ "$got" == "$n" ]] || { echo "error: the baseline copied $got rows, expected $n" >&2; exit 1; }
    rm -f "$dir/baseline.db"
    sync

    echo "== $n rows: siphon run --once (mode: full)…" >&2
    {
        echo "state: sqlite://$dir/state.db"
        echo "connections:"
        echo "  source: sqlite://$dir/source.db"
        echo "  target: sqlite://$dir/target.db"
        echo "pipelines:"
        echo "  bench:"
        echo "    source: source"
        echo "    target: target"
        echo "    mode: full"
        echo "    tables: [\"*\"]"
        [[ -n "${BATCH_SIZE:-}" ]] && echo "    batch_size: $BATCH_SIZE"
    } >"$dir/bench.yaml"
    if ! (cd "$dir" && measure "$dir/siphon.time" "$dir/siphon.log" "$siphon" run -f "$dir/bench.yaml" --once); then
        echo "error: siphon failed:" >&2
        tail -n 40 "$dir/siphon.log" >&2
        exit 1
    fi
    got=$(count_rows "$dir/target.db")
    if [[ "$got" != "$n" ]]; then
        echo "error: siphon's target has $got rows, expected $n" >&2
        tail -n 40 "$dir/siphon.log" >&2
        exit 1
    fi

    read -r bs _ _ <"$dir/baseline.time"
    read -r ss srss _ scpu <"$dir/siphon.time"
    echo "$n $bs $ss $srss $scpu" >>"$results"
    rm -rf "$dir"
done

echo
awk 'BEGIN {
    printf "%12s | %10s %13s | %10s %13s | %7s | %10s | %9s\n",
           "rows", "baseline s", "baseline r/s", "siphon s", "siphon r/s", "ratio", "siphon RSS", "siphon CPU"
    printf "%12s-+-%10s-%13s-+-%10s-%13s-+-%7s-+-%10s-+-%9s\n",
           "------------", "----------", "-------------", "----------", "-------------", "-------", "----------", "---------"
}
{
    n = $1; b = ($2 > 0 ? $2 : 0.001); s = ($3 > 0 ? $3 : 0.001)
    cpu = ($5 == "-" ? "n/a" : sprintf("%.1f s", $5))
    printf "%12d | %10.2f %13.0f | %10.2f %13.0f | %7.3f | %6.1f MiB | %9s\n",
           n, b, n / b, s, n / s, (n / s) / (n / b), $4 / 1024, cpu
}' "$results"
echo "(ratio = siphon rows/s ÷ baseline rows/s; RSS = siphon's peak resident set;"
echo " CPU = siphon's user + system time, steadier than wall time on a shared disk)"
