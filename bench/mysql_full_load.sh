#!/usr/bin/env bash
# Full-load throughput and type fidelity of siphon's MariaDB → PostgreSQL path,
# against pgloader and sling on the same servers in the same run (issue 10,
# "Benchmarks").
#
# Starts a throwaway MariaDB (mariadb-install-db + mariadbd in a scratch
# directory, TCP on a free 127.0.0.1 port, binlog in ROW format) and a throwaway
# PostgreSQL 15 cluster (initdb, run as the `postgres` user, free 127.0.0.1
# port). Builds src.orders in MariaDB, N orders-shaped rows:
#   id bigint pk, customer_id int, status enum(4 values), amount decimal(12,2),
#   paid tinyint(1), note varchar(200) utf8mb4 (with an emoji; NULL every 5th),
#   payload json (NULL every 7th), created_at datetime(6), updated_at timestamp(6)
#   (no DEFAULT CURRENT_TIMESTAMP(6): pgloader 3.6.9 fails to create a table with it)
# (generated with MariaDB's sequence engine), then loads it into a fresh
# PostgreSQL database per tool, each tool creating the table itself:
#   pgloader  `pgloader bench.load` (LOAD DATABASE FROM mysql://… INTO
#             postgresql://…, defaults, schema `src` renamed to `public`)
#   sling     `sling run --src-stream src.orders --tgt-object public.orders
#             --mode full-refresh` (PyPI `sling-linux-amd64`, SLING_DISABLE_TELEMETRY)
#   siphon    `siphon run -f bench.yaml --once` (mode: full)
# Measured for each: wall time of the command, rows/s = N ÷ wall time, and the
# tool's peak resident set (wait4(2) ru_maxrss of the process, its waited-for
# children included), its CPU time (user + system), and the CPU time MariaDB
# and PostgreSQL spent during its run (where the time goes on a small machine);
# the load average is printed at the start and the end, as other work on the
# machine slows every tool. After each load the target's count(*) and
# sum(round(amount, 2)) must equal the source's, or the script fails.
# Type fidelity, per tool: the column types the tool created, and whether
#   amount  is numeric(12,2) with the source's text values,
#   paid    is boolean with the source's 0/1 as false/true,
#   payload is json or jsonb with values equal to the source's as JSON,
# checked on the rows ids 1…14, N/2 and N (NULLs included).
#
# Usage:
#   bash bench/mysql_full_load.sh                # N = 1,000,000
#   ROWS=200000 bash bench/mysql_full_load.sh    # or: bash bench/mysql_full_load.sh 200000
# Environment:
#   ROWS        row count (an argument wins)
#   TOOLS       tools to run, in order (default "pgloader sling siphon")
#   SIPHON_BIN  binary to run (default: target/release/siphon, built when missing)
#   SLING_BIN   sling binary (default: `sling` on PATH, else the one inside the
#               installed `sling-linux-amd64` wheel; `pip install sling-linux-amd64`)
#   BATCH_SIZE  siphon pipeline batch_size (default: siphon's own default)
#   PARALLEL    siphon pipeline parallel: workers over key ranges (default: siphon's own)
#   PG_BIN      PostgreSQL binaries (default: /usr/lib/postgresql/15/bin)
#   PG_FSYNC    fsync setting of the throwaway PostgreSQL: off (default) or on
#   MY_FSYNC    durability of the throwaway MariaDB: off (default) or on
#   MY_BUFFER_POOL  innodb_buffer_pool_size of the MariaDB (default 256M)
#   BENCH_DIR   parent of the scratch directory (default: $TMPDIR or /tmp)
#   KEEP=1      keep the scratch directory (the servers are stopped anyway)
#
# Needs bash, psql, python3, awk, runuser, mariadbd, mariadb-install-db, the
# mariadb client; pgloader (Debian package `pgloader`) and sling when they are in TOOLS.
set -Eeuo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
n="${1:-${ROWS:-1000000}}"
[[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "error: row count '$n' is not a positive integer" >&2; exit 2; }
tools="${TOOLS:-pgloader sling siphon}"
for tool in $tools; do
    case "$tool" in
        pgloader) command -v pgloader >/dev/null || { echo "error: pgloader is required (apt-get install pgloader), or leave it out of TOOLS" >&2; exit 2; } ;;
        sling)
            sling="${SLING_BIN:-$(command -v sling || true)}"
            if [[ -z "$sling" ]]; then
                sling=$(python3 -c 'import sling_linux_amd64; print(sling_linux_amd64.SLING_BIN)' 2>/dev/null || true)
            fi
            [[ -n "$sling" && -x "$sling" ]] || { echo "error: sling is required (pip install sling-linux-amd64, or SLING_BIN), or leave it out of TOOLS" >&2; exit 2; }
            ;;
        siphon) bench_siphon ;;
        *) echo "error: unknown tool '$tool' in TOOLS (pgloader, sling, siphon)" >&2; exit 2 ;;
    esac
done
pg_require
my_require
bench_workdir siphon-mybench
cleanup() {
    my_stop_all
    pg_stop
    bench_remove_workdir
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'echo "error: ${BASH_SOURCE[0]##*/} line $LINENO: a command failed (exit $?)" >&2' ERR

# --- throwaway servers --------------------------------------------------------
pg_start
my_start src 1
echo "== MariaDB on port ${my_port[src]}, PostgreSQL on port $port (fsync: MariaDB $my_fsync, PostgreSQL $fsync)" >&2
load_before=$(cut -d ' ' -f 1-3 /proc/loadavg)

# --- source ---------------------------------------------------------------------
echo "== $n rows: generating src.orders…" >&2
myq src >/dev/null <<SQL
CREATE DATABASE src;
USE src;
CREATE TABLE orders (
  id bigint NOT NULL PRIMARY KEY,
  customer_id int NOT NULL,
  status enum('new', 'paid', 'shipped', 'returned') NOT NULL,
  amount decimal(12,2) NOT NULL,
  paid tinyint(1) NOT NULL,
  note varchar(200) CHARACTER SET utf8mb4 NULL,
  payload json NULL,
  created_at datetime(6) NOT NULL,
  updated_at timestamp(6) NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
SET time_zone = '+00:00';
INSERT INTO orders
SELECT seq,
       1 + (seq * 7919) % 100000,
       ELT(1 + seq % 4, 'new', 'paid', 'shipped', 'returned'),
       ((seq * 104729) % 10000000) / 100,
       seq % 3 <> 0,
       IF(seq % 5 = 0, NULL, CONCAT('order ', seq, ' — note ✓ 🚀')),
       IF(seq % 7 = 0, NULL,
          CONCAT('{"channel": "', IF(seq % 2 = 0, 'web', 'shop'), '", "gift": ',
                 IF(seq % 5 = 0, 'true', 'false'), ', "items": ', 1 + seq % 9,
                 ', "ratio": ', (seq % 100) / 100, ', "tags": ["a", "b"]}')),
       TIMESTAMP '2025-01-01 00:00:00' + INTERVAL (seq * 6) SECOND + INTERVAL (seq % 1000) MICROSECOND,
       TIMESTAMP '2025-01-01 01:00:00' + INTERVAL (seq * 6) SECOND + INTERVAL (seq % 997) MICROSECOND
FROM seq_1_to_$n;
ANALYZE TABLE orders;
SQL
want=$(myq src --database=src -e "SELECT CONCAT(COUNT(*), ' ', SUM(amount)) FROM orders")
[[ "${want%% *}" == "$n" ]] || { echo "error: the source has ${want%% *} rows, expected $n" >&2; exit 1; }
sample_ids="1,2,3,4,5,6,7,8,9,10,11,12,13,14,$(( (n + 1) / 2 )),$n"
myq src --database=src -e "SELECT id, amount, paid, payload FROM orders WHERE id IN ($sample_ids) ORDER BY id" \
    >"$work/src.sample"

# located DB: the schema-qualified table named `orders` that a tool created in DB.
located() {
    local found
    found=$(q -d "$1" -Atc "SELECT string_agg(quote_ident(table_schema) || '.' || quote_ident(table_name), ' ')
                            FROM information_schema.tables
                            WHERE lower(table_name) = 'orders' AND table_schema NOT IN ('pg_catalog', 'information_schema')")
    [[ -n "$found" && "$found" != *" "* ]] || { echo "error: expected one table named orders in database $1, found '${found}'" >&2; return 1; }
    echo "$found"
}

# verify TOOL DB: count and sum(amount) against the source (fails loudly), then
# writes the type-fidelity line into $work/TOOL.fidelity.
verify() {
    local tool="$1" db="$2" table got
    table=$(located "$db") || return 1
    got=$(q -d "$db" -Atc "SELECT count(*) || ' ' || coalesce(sum(round(amount::numeric, 2)), 0) FROM $table")
    if [[ "$got" != "$want" ]]; then
        echo "error: $tool's target $db $table has '$got' (count sum(amount)), the source '$want'" >&2
        return 1
    fi
    q -d "$db" -Atc "SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum)
                     FROM pg_attribute WHERE attrelid = '$table'::regclass AND attnum > 0 AND NOT attisdropped" \
        >"$work/$tool.types"
    q -d "$db" -At -F $'\t' -P null=NULL -c "SELECT id, amount, paid, payload FROM $table WHERE id IN ($sample_ids) ORDER BY id" \
        >"$work/$tool.sample"
    python3 - "$work/src.sample" "$work/$tool.sample" "$work/$tool.types" >"$work/$tool.fidelity" <<'PY'
import json, sys
from decimal import Decimal
def rows(path):
    out = {}
    for line in open(path, encoding="utf-8"):
        parts = line.rstrip("\n").split("\t")
        if len(parts) == 4:
            out[parts[0]] = parts[1:]
    return out
src, dst = rows(sys.argv[1]), rows(sys.argv[2])
types = {}
for col in open(sys.argv[3], encoding="utf-8").read().strip().split(", "):
    name, _, typ = col.partition(" ")
    types[name.strip('"').lower()] = typ
same_rows = set(src) == set(dst)
def parse(v):
    return None if v == "NULL" else json.loads(v, parse_float=Decimal)
def check(col, ok_type, same):
    typ = types.get(col, "missing")
    good = ok_type(typ) and same_rows and all(same(src[k], dst[k]) for k in src)
    return f"{col} {typ} {'exact' if good else 'LOST'}"
amount = check("amount", lambda t: t == "numeric(12,2)", lambda s, d: s[0] == d[0])
paid = check("paid", lambda t: t == "boolean", lambda s, d: d[1] == {"1": "t", "0": "f"}.get(s[1]))
def json_same(s, d):
    try:
        return parse(s[2]) == parse(d[2])
    except ValueError:
        return False
payload = check("payload", lambda t: t in ("json", "jsonb"), json_same)
print(f"{amount}; {paid}; {payload}")
PY
}

# --- pgloader -------------------------------------------------------------------
run_pgloader() {
    q -d postgres -c "CREATE DATABASE pgl"
    cat >"$work/bench.load" <<LOAD
LOAD DATABASE
     FROM $(my_url src src)
     INTO $(url pgl)
 ALTER SCHEMA 'src' RENAME TO 'public';
LOAD
    # pgloader writes its own files under its root directory.
    (cd "$work" && bench_measure "$work/pgloader.time" "$work/pgloader.log" \
        pgloader --no-ssl-cert-verification --root-dir "$work/pgloader" "$work/bench.load") || {
        echo "error: pgloader failed:" >&2
        tail -n 40 "$work/pgloader.log" >&2
        return 1
    }
    # pgloader reports rows it could not load in its summary but exits 0.
    if grep -Eq ' (ERROR|FATAL) ' "$work/pgloader.log"; then
        echo "error: pgloader reported errors:" >&2
        grep -E ' (ERROR|FATAL) ' "$work/pgloader.log" | head -n 20 >&2
        return 1
    fi
}

# --- sling ------------------------------------------------------------------------
run_sling() {
    q -d postgres -c "CREATE DATABASE slg"
    mkdir -p "$work/sling"
    (cd "$work" && SLING_HOME_DIR="$work/sling" SLING_DISABLE_TELEMETRY=true \
        BENCH_MY="$(my_url src src)" BENCH_PG="$(url slg)?sslmode=disable" \
        bench_measure "$work/sling.time" "$work/sling.log" \
        "$sling" run --src-conn BENCH_MY --src-stream src.orders \
            --tgt-conn BENCH_PG --tgt-object public.orders --mode full-refresh) || {
        echo "error: sling failed:" >&2
        tail -n 40 "$work/sling.log" >&2
        return 1
    }
}

# --- siphon -----------------------------------------------------------------------
run_siphon() {
    q -d postgres -c "CREATE DATABASE sip"
    {
        echo "state: sqlite://$work/state.db"
        echo "connections:"
        echo "  src: $(my_url src src)"
        echo "  dst: $(url sip)"
        echo "pipelines:"
        echo "  p:"
        echo "    source: src"
        echo "    target: dst"
        echo "    mode: full"
        echo "    tables: [src.orders]"
        if [[ -n "${BATCH_SIZE:-}" ]]; then echo "    batch_size: $BATCH_SIZE"; fi
        if [[ -n "${PARALLEL:-}" ]]; then echo "    parallel: $PARALLEL"; fi
    } >"$work/bench.yaml"
    (cd "$work" && bench_measure "$work/siphon.time" "$work/siphon.log" "$siphon" run -f "$work/bench.yaml" --once) || {
        echo "error: siphon failed:" >&2
        tail -n 40 "$work/siphon.log" >&2
        return 1
    }
}

# server_cpu: "<MariaDB CPU s> <PostgreSQL CPU s>" so far: mariadbd's user +
# system time, and the postmaster's with its exited children (the backends
# that served finished connections; the long-lived background processes are
# left out).
clk=$(getconf CLK_TCK)
ticks() { # ticks PID WITH_CHILDREN: the process's CPU ticks (and its exited children's)
    local stat f
    stat=$(<"/proc/$1/stat") || return 1
    read -r -a f <<<"${stat##*) }"
    if [[ "$2" == 1 ]]; then echo $(( f[11] + f[12] + f[13] + f[14] )); else echo $(( f[11] + f[12] )); fi
}
server_cpu() {
    local my pg
    my=$(ticks "${my_pid[src]}" 0) && pg=$(ticks "$(head -n 1 "$pgdata/postmaster.pid")" 1) \
        && awk -v m="$my" -v p="$pg" -v c="$clk" 'BEGIN { printf "%.2f %.2f\n", m / c, p / c }' \
        || echo "0 0"
}

declare -A dbs=([pgloader]=pgl [sling]=slg [siphon]=sip)
for tool in $tools; do
    echo "== $n rows: $tool…" >&2
    q -d postgres -c CHECKPOINT
    myq src -e "FLUSH TABLES"
    sync
    read -r my_cpu0 pg_cpu0 < <(server_cpu)
    "run_$tool" || exit 1
    read -r my_cpu1 pg_cpu1 < <(server_cpu)
    awk -v a="$my_cpu0" -v b="$my_cpu1" -v c="$pg_cpu0" -v d="$pg_cpu1" \
        'BEGIN { printf "%.1f %.1f\n", b - a, d - c }' >"$work/$tool.servers"
    verify "$tool" "${dbs[$tool]}" || { tail -n 40 "$work/$tool.log" >&2; exit 1; }
    # Free the target's space and the server's caches of it before the next tool.
    q -d postgres -c "DROP DATABASE ${dbs[$tool]}"
done

echo
echo "MariaDB $(myq src -e 'SELECT VERSION()') → PostgreSQL 15, throwaway servers on 127.0.0.1 (fsync: MariaDB $my_fsync, PostgreSQL $fsync), $(nproc) CPUs"
printf "%-9s | %12s | %10s | %12s | %10s | %8s | %11s | %11s\n" "tool" "rows" "wall s" "rows/s" "peak RSS" "tool CPU" "MariaDB CPU" "Postgres CPU"
printf "%-9s-+-%12s-+-%10s-+-%12s-+-%10s-+-%8s-+-%11s-+-%11s\n" "---------" "------------" "----------" "------------" "----------" "--------" "-----------" "-----------"
for tool in $tools; do
    read -r secs rss _ cpu <"$work/$tool.time"
    read -r my_cpu pg_cpu <"$work/$tool.servers"
    awk -v t="$tool" -v n="$n" -v s="$secs" -v r="$rss" -v c="$cpu" -v m="$my_cpu" -v p="$pg_cpu" 'BEGIN {
        s = (s > 0 ? s : 0.001)
        printf "%-9s | %12d | %10.2f | %12.0f | %6.1f MiB | %6.1f s | %9.1f s | %9.1f s\n", t, n, s, n / s, r / 1024, c, m, p }'
done
echo
echo "load average (1, 5, 15 min): $load_before at the start, $(cut -d ' ' -f 1-3 /proc/loadavg) at the end"
echo
echo "type fidelity (target column type; 'exact' = that type with the source's values on the sampled rows):"
for tool in $tools; do
    printf "  %-9s %s\n" "$tool" "$(cat "$work/$tool.fidelity")"
done
echo "target columns:"
for tool in $tools; do
    printf "  %-9s %s\n" "$tool" "$(cat "$work/$tool.types")"
done
echo "(wall s = the tool's command from start to exit; rows/s = rows ÷ wall s; peak RSS = the tool's process,"
echo " children included; tool CPU = its user + system time; MariaDB / Postgres CPU = the servers' CPU time"
echo " during the tool's run, PostgreSQL's counting the backends of closed connections;"
echo " every target was checked: count(*) and sum(amount) equal the source's)"
