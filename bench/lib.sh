# Setup shared by the benchmark scripts; sourced (`. "$(dirname …)/lib.sh"`),
# never run. Every function exits the script with a message on failure.
#
# Environment read here:
#   SIPHON_BIN  binary to run (default: target/release/siphon, built when missing)
#   BENCH_DIR   parent of the scratch directory (default: $TMPDIR or /tmp)
#   KEEP=1      keep the scratch directory
#   PG_BIN      PostgreSQL binaries (default: /usr/lib/postgresql/15/bin)
#   PG_FSYNC    fsync setting of the throwaway server: off (default) or on

bench_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Sets $siphon to the release binary, building it when missing.
bench_siphon() {
    siphon="${SIPHON_BIN:-$bench_repo/target/release/siphon}"
    if [[ ! -x "$siphon" ]]; then
        echo "building the release binary (cargo build --release -p siphon-cli)…" >&2
        (cd "$bench_repo" && cargo build --release -p siphon-cli) >&2
    fi
    [[ -x "$siphon" ]] || { echo "error: $siphon was not built" >&2; exit 1; }
}

# bench_workdir NAME: sets $work to a fresh scratch directory.
bench_workdir() {
    work="$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/$1.XXXXXX")"
    chmod 755 "$work"
}

# Removes $work, or says where it was kept (KEEP=1).
bench_remove_workdir() {
    if [[ "${KEEP:-0}" == 1 ]]; then
        echo "kept $work" >&2
    else
        rm -rf "$work"
    fi
}

# Checks for PostgreSQL, psql and python3; sets $pgbin and $fsync.
pg_require() {
    pgbin="${PG_BIN:-/usr/lib/postgresql/15/bin}"
    fsync="${PG_FSYNC:-off}"
    [[ -x "$pgbin/postgres" ]] || { echo "error: no PostgreSQL server in $pgbin" >&2; exit 2; }
    command -v psql >/dev/null || { echo "error: psql is required" >&2; exit 2; }
    command -v python3 >/dev/null || { echo "error: python3 is required" >&2; exit 2; }
}

# pg_start [SETTING…]: a throwaway PostgreSQL cluster in $work/pg, run as the
# `postgres` user on a free 127.0.0.1 port ($port), wal_level=logical, with
# each extra `name = value` SETTING; sets $pgdir and $pgdata. Stop it with pg_stop.
pg_start() {
    pgdir="$work/pg"      # owned by postgres: data directory, server log, socket
    pgdata="$pgdir/data"
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    mkdir -p "$pgdata" && chown -R postgres: "$pgdir" && chmod 700 "$pgdata"
    runuser -u postgres -- "$pgbin/initdb" -D "$pgdata" -U postgres -A trust -E UTF8 --no-locale >"$work/initdb.log" 2>&1 \
        || { cat "$work/initdb.log" >&2; exit 1; }
    {
        cat <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$pgdir'
wal_level = logical
max_wal_senders = 20
max_replication_slots = 20
fsync = $fsync
shared_buffers = 256MB
max_wal_size = 8GB
checkpoint_timeout = 30min
CONF
        local setting
        for setting in "$@"; do echo "$setting"; done
    } >>"$pgdata/postgresql.conf"
    runuser -u postgres -- "$pgbin/pg_ctl" -D "$pgdata" -l "$pgdir/server.log" -w -t 60 start >/dev/null \
        || { cat "$pgdir/server.log" >&2; exit 1; }
}

# Stops the cluster pg_start started, if it runs.
pg_stop() {
    if [[ -n "${pgdata:-}" && -f "$pgdata/postmaster.pid" ]]; then
        runuser -u postgres -- "$pgbin/pg_ctl" -D "$pgdata" -m immediate -w stop >/dev/null 2>&1 || true
    fi
}

# q ARGS…: psql against the cluster, stopping at the first error.
q() { psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres "$@"; }

# url DB: the cluster's URL for database DB.
url() { echo "postgres://postgres@127.0.0.1:$port/$1"; }
