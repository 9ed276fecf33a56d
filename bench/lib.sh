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

# --- MariaDB -------------------------------------------------------------------
# Environment read here:
#   MY_FSYNC     durability of the throwaway MariaDB servers: off (default: InnoDB
#                nosync, log flushed once a second, no doublewrite; the analogue
#                of PG_FSYNC=off) or on (flush at each commit, sync_binlog=1)
#   MY_BUFFER_POOL  innodb_buffer_pool_size (default 256M)

declare -A my_port=() my_pid=()

# Checks for mariadbd, mariadb-install-db, the mariadb client and python3.
my_require() {
    local b
    for b in mariadbd mariadb-install-db mariadb python3; do
        command -v "$b" >/dev/null || { echo "error: $b is required (Debian: apt-get install mariadb-server mariadb-client)" >&2; exit 2; }
    done
    my_fsync="${MY_FSYNC:-off}"
    [[ "$my_fsync" == off || "$my_fsync" == on ]] || { echo "error: MY_FSYNC must be off or on" >&2; exit 2; }
}

# my_start NAME SERVER_ID [OPTION…]: a throwaway MariaDB server in $work/my-NAME
# (mariadb-install-db, then mariadbd in the background), TCP on a free
# 127.0.0.1 port (${my_port[NAME]}), binary log on in ROW format with full
# images and full row metadata, GTID strict mode, log_slave_updates, UTC as the
# default time zone, utf8mb4, local_infile on, and `root` without password
# over TCP (set up outside the binary log, which starts empty); each extra
# mariadbd OPTION (`--name=value`) is appended last, so it wins. Runs as root
# with --user=root. Stop it with my_stop NAME (or my_stop_all).
my_start() {
    local name="$1" id="$2" dir data port pid start durability=()
    shift 2
    dir="$work/my-$name"
    data="$dir/data"
    mkdir -p "$dir"
    local user=()
    [[ "$(id -u)" == 0 ]] && user=(--user=root)
    if [[ "$my_fsync" == off ]]; then
        durability=(--innodb-flush-method=nosync --innodb-flush-log-at-trx-commit=2 --innodb-doublewrite=0 --sync-binlog=0)
    else
        durability=(--innodb-flush-log-at-trx-commit=1 --sync-binlog=1)
    fi
    local innodb=(--innodb-buffer-pool-size="${MY_BUFFER_POOL:-256M}" --innodb-log-file-size=512M --innodb-use-native-aio=0 "${durability[@]}")
    # --tmpdir: two bootstraps at once in the shared /tmp can collide on a
    # temporary table's file name.
    mariadb-install-db --no-defaults --datadir="$data" --tmpdir="$dir" "${user[@]}" \
        --auth-root-authentication-method=normal --skip-test-db "${innodb[@]}" \
        >"$dir/install-db.log" 2>&1 \
        || { echo "error: mariadb-install-db failed for $name:" >&2; tail -n 30 "$dir/install-db.log" >&2; exit 1; }
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    mariadbd --no-defaults --datadir="$data" --socket="$dir/mysql.sock" \
        --pid-file="$dir/mariadbd.pid" --tmpdir="$dir" --log-error="$dir/server.log" \
        --port="$port" --bind-address=127.0.0.1 --skip-networking=0 "${user[@]}" \
        --log-bin=mysql-bin --binlog-format=ROW --binlog-row-image=FULL \
        --binlog-row-metadata=FULL --server-id="$id" --gtid-strict-mode=ON \
        --log-slave-updates=ON --skip-name-resolve --skip-slave-start \
        --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
        --default-time-zone=+00:00 --local-infile=ON \
        --max-connections=500 --max-allowed-packet=256M \
        "${innodb[@]}" "$@" >"$dir/stdout.log" 2>&1 &
    pid=$!
    my_port[$name]=$port
    my_pid[$name]=$pid
    start=$SECONDS
    until mariadb --no-defaults --protocol=SOCKET --socket="$dir/mysql.sock" -u root \
            --connect-timeout=2 -N -B -e 'SELECT 1' >/dev/null 2>&1; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "error: mariadbd ($name) exited while starting:" >&2
            tail -n 30 "$dir/server.log" >&2
            exit 1
        fi
        (( SECONDS - start > 120 )) && { echo "error: mariadbd ($name) did not start in 120 s" >&2; tail -n 30 "$dir/server.log" >&2; exit 1; }
        sleep 0.2
    done
    # Not written to the binary log: a replica has its own root users, and with
    # gtid_strict_mode a GTID of its own before the source's would stop it.
    mariadb --no-defaults --protocol=SOCKET --socket="$dir/mysql.sock" -u root -N -B -e \
        "SET sql_log_bin = 0;
         CREATE USER IF NOT EXISTS 'root'@'127.0.0.1';
         GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
         CREATE USER IF NOT EXISTS 'root'@'%';
         GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;
         FLUSH PRIVILEGES" \
        || { echo "error: setting up root over TCP on mariadbd ($name) failed" >&2; exit 1; }
    # The port is ours only if the server answering on it has our data directory.
    local answered
    answered=$(myq "$name" -e 'SELECT @@datadir') || exit 1
    [[ "$(realpath -m "$answered")" == "$(realpath -m "$data")" ]] \
        || { echo "error: port $port is served from $answered, not from $data" >&2; exit 1; }
}

# my_stop NAME: stops the server my_start NAME started, if it runs (TERM, then
# KILL after 30 s; the data is thrown away anyway).
my_stop() {
    local name="$1" pid="${my_pid[$1]:-}" i
    [[ -n "$pid" ]] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    unset "my_pid[$name]"
}

# Stops every server my_start started.
my_stop_all() {
    local name
    for name in "${!my_pid[@]}"; do my_stop "$name"; done
}

# myq NAME ARGS…: the mariadb client as root over TCP against server NAME, in
# batch mode without column names (tab-separated rows), unbuffered, utf8mb4; ARGS are
# client options (`-e SQL`, `--database=DB`) and/or SQL on standard input.
myq() {
    local name="$1"
    shift
    mariadb --no-defaults --protocol=TCP -h 127.0.0.1 --port="${my_port[$name]}" \
        -u root --connect-timeout=10 --default-character-set=utf8mb4 -N -B -n "$@"
}

# my_url NAME DB: server NAME's URL for database DB (mysql://root@127.0.0.1:PORT/DB).
my_url() { echo "mysql://root@127.0.0.1:${my_port[$1]}/$2"; }

# --- measuring -------------------------------------------------------------------

# bench_measure OUT LOG CMD…: runs CMD with stdout and stderr appended to LOG and
# writes "<wall seconds> <peak RSS KiB> <exit code> <CPU seconds>" into OUT; the
# peak RSS is the child's own (wait4(2) ru_maxrss, the largest of the process and
# its waited-for descendants), the CPU seconds its user + system time (the same
# descendants included). Returns CMD's exit code.
bench_measure() {
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
    cpu = usage.ru_utime + usage.ru_stime
    f.write(f"{secs:.3f} {usage.ru_maxrss} {code} {cpu:.2f}\n")
sys.exit(code)
PY
}
