#!/usr/bin/env bash
# Peak memory of siphon for one huge row, PostgreSQL → PostgreSQL, in a full
# load and in `cdc` (issue: "peak memory for a row is at most about three times
# its size").
#
# Starts a throwaway PostgreSQL 15 cluster (initdb in a scratch directory, run as
# the `postgres` user, TCP on a free 127.0.0.1 port, wal_level=logical) with
# database `src` and two targets, `dst_full` and `dst_cdc`. Tables (id int primary
# key, note text, and a payload column with STORAGE EXTERNAL, so PostgreSQL keeps
# it out of line and uncompressed):
#   big_full   payload text: one ROW_MB row, copied by a `full` pipeline;
#   big_text   payload text: streamed by a `cdc` pipeline;
#   big_bytea  payload bytea: streamed by the same `cdc` pipeline.
# Each case is one `siphon run --once`, whose peak resident set (ru_maxrss of
# the process) is printed beside the row's size:
#   baseline        the cdc pipeline's first run (two small rows snapshotted);
#   full load       ROW_MB text row copied by `mode: full`;
#   cdc insert      ROW_MB text row inserted while the pipeline is streaming;
#   cdc unchanged   an update of the other column of that row: the log sends
#                   the payload as "unchanged TOAST", siphon reads it back;
#   cdc bytea       the bytea payload updated to BYTEA_MB bytes (the log
#                   carries it as hex text, twice the size);
#   psql \copy      psql writing the ROW_MB row to /dev/null (a reference:
#                   what a client that holds the row once needs).
# After each case the target's md5 and length of the payload must match the
# source's.
#
# Usage:
#   bash bench/pg_huge_rows.sh                    # 150 MiB text row, 50 MiB bytea
#   ROW_MB=20 BYTEA_MB=10 bash bench/pg_huge_rows.sh
# Environment:
#   ROW_MB      size of the text row in MiB (default 150)
#   BYTEA_MB    size of the bytea value in MiB (default 50)
#   SIPHON_BIN  binary to run (default: target/release/siphon, built when missing)
#   PG_BIN      PostgreSQL binaries (default: /usr/lib/postgresql/15/bin)
#   PG_FSYNC    fsync setting of the throwaway server: off (default) or on
#   BENCH_DIR   parent of the scratch directory (default: $TMPDIR or /tmp)
#   KEEP=1      keep the scratch directory (the server is stopped anyway)
#
# Needs bash, psql, python3, awk, runuser.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
row_mb="${ROW_MB:-150}"
bytea_mb="${BYTEA_MB:-50}"
for v in "$row_mb" "$bytea_mb"; do
    [[ "$v" =~ ^[1-9][0-9]*$ ]] || { echo "error: '$v' is not a positive integer" >&2; exit 2; }
done
pg_require
bench_siphon
bench_workdir siphon-pghuge
cleanup() {
    pg_stop
    bench_remove_workdir
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pg_start 'wal_sender_timeout = 10min' 'max_wal_size = 16GB'
for db in src dst_full dst_cdc; do q -d postgres -c "CREATE DATABASE $db"; done

# text of N MiB (md5 hex digits repeated), as SQL
text_of() { echo "repeat(md5('siphon'), $1 * 32768)"; }
# bytea of N MiB, as SQL
bytea_of() { echo "decode(repeat(md5('siphon'), $1 * 65536), 'hex')"; }

q -d src <<SQL
CREATE TABLE big_full (id int PRIMARY KEY, note text, payload text);
CREATE TABLE big_text (id int PRIMARY KEY, note text, payload text);
CREATE TABLE big_bytea (id int PRIMARY KEY, note text, payload bytea);
ALTER TABLE big_full ALTER payload SET STORAGE EXTERNAL;
ALTER TABLE big_text ALTER payload SET STORAGE EXTERNAL;
ALTER TABLE big_bytea ALTER payload SET STORAGE EXTERNAL;
INSERT INTO big_full VALUES (1, 'small', 'x'), (3, 'small', 'z');
INSERT INTO big_full VALUES (2, 'huge', $(text_of "$row_mb"));
INSERT INTO big_text VALUES (1, 'small', 'x');
INSERT INTO big_bytea VALUES (1, 'small', '\x00');
SQL

cat >"$work/siphon.yaml" <<YAML
state: sqlite://$work/state.db
connections:
  src: $(url src)
  dst_full: $(url dst_full)
  dst_cdc: $(url dst_cdc)
pipelines:
  full:
    source: src
    target: dst_full
    mode: full
    tables: [public.big_full]
  cdc:
    source: src
    target: dst_cdc
    mode: cdc
    tables: [public.big_text, public.big_bytea]
YAML

# peak KIND ARGS…: runs ARGS in $work, prints its peak RSS in KiB.
peak() {
    (cd "$work" && python3 - "$@" 2>>"$work/run.log" <<'PY'
import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=sys.stderr)
_, status, usage = os.wait4(child.pid, 0)
code = os.waitstatus_to_exitcode(status)
print(usage.ru_maxrss)
sys.exit(code)
PY
    ) || { echo "error: $* failed:" >&2; tail -n 40 "$work/run.log" >&2; exit 1; }
}

# same DB TABLE ID: the target's payload equals the source's
same() {
    local sql="SELECT coalesce(md5(payload::text), 'null') || ' ' || coalesce(length(payload), -1) || ' ' || coalesce(note, '') FROM $2 WHERE id = $3"
    local want got
    want=$(q -d src -Atc "$sql")
    got=$(q -d "$1" -Atc "$sql")
    [[ -n "$want" && "$want" == "$got" ]] || {
        echo "error: $1.$2 id $3 differs: '$got' vs '$want'" >&2
        tail -n 40 "$work/run.log" >&2
        exit 1
    }
}

results=()
# record NAME SIZE_MIB RSS_KIB
record() { results+=("$1|$2|$3"); echo "== $1: $(awk -v r="$3" 'BEGIN { printf "%.0f", r / 1024 }') MiB" >&2; }

echo "== PostgreSQL on port $port; ${row_mb} MiB text row, ${bytea_mb} MiB bytea" >&2
base=$(peak "$siphon" run -f "$work/siphon.yaml" cdc --once)
record "baseline (cdc snapshot of 2 small rows)" 0 "$base"

rss=$(peak "$siphon" run -f "$work/siphon.yaml" full --once)
same dst_full big_full 2
record "full load, text row" "$row_mb" "$rss"

q -d src -c "INSERT INTO big_text VALUES (2, 'huge', $(text_of "$row_mb"))"
rss=$(peak "$siphon" run -f "$work/siphon.yaml" cdc --once)
same dst_cdc big_text 2
record "cdc insert, text row" "$row_mb" "$rss"

q -d src -c "UPDATE big_text SET note = 'changed' WHERE id = 2"
rss=$(peak "$siphon" run -f "$work/siphon.yaml" cdc --once)
same dst_cdc big_text 2
record "cdc update, text unchanged (TOAST)" "$row_mb" "$rss"

q -d src -c "UPDATE big_bytea SET payload = $(bytea_of "$bytea_mb") WHERE id = 1"
rss=$(peak "$siphon" run -f "$work/siphon.yaml" cdc --once)
same dst_cdc big_bytea 1
record "cdc update, bytea value" "$bytea_mb" "$rss"

rss=$(peak psql -X -q -h 127.0.0.1 -p "$port" -U postgres -d src \
    -c "\\copy (SELECT payload FROM big_full WHERE id = 2) TO '/dev/null'")
record "psql \\copy of the text row (reference)" "$row_mb" "$rss"

echo
echo "siphon $(basename "$siphon"), PostgreSQL 15 → PostgreSQL 15 on 127.0.0.1, $(nproc) CPUs"
printf "%-42s | %9s | %14s | %21s\n" "case" "row (MiB)" "peak RSS (MiB)" "(peak - baseline)/row"
printf "%-42s-+-%9s-+-%14s-+-%21s\n" "------------------------------------------" "---------" "--------------" "---------------------"
for r in "${results[@]}"; do
    IFS='|' read -r name size kib <<<"$r"
    # The name through the environment: awk -v would read its backslashes.
    NAME="$name" awk -v s="$size" -v k="$kib" -v b="$base" 'BEGIN {
        n = ENVIRON["NAME"]
        ratio = s > 0 && n !~ /psql/ ? sprintf("%.2f", (k - b) / 1024 / s) : "-"
        printf "%-42s | %9s | %14.0f | %21s\n", n, s, k / 1024, ratio
    }'
done
echo "(peak RSS = ru_maxrss of one 'siphon run --once' (or psql), which starts the process;"
echo " baseline = the same binary's peak on a run with small rows only)"
