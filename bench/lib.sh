# bench/lib.sh - what the bench scripts share: a throwaway PostgreSQL 15
# server, its clean-up, and the helpers that time, compare and format.
#
# Sourced, not run, by bench/run.sh, bench/checkpoint.sh, bench/rocksdb.sh, bench/cq_ab.sh and
# bench/cq.sh right after their `set -u -o pipefail`.  Sourcing sets HERE (bench/), ROOT,
# PGBIN (${PGBIN:-/usr/lib/postgresql/15/bin}), STAMP, OUTDIR (bench/out,
# created), T="" and SERVER_UP=0, and installs the EXIT/INT/TERM traps.
# The script then sets
#   SLOG           where the clean-up copies the server log [bench/out/server-<date>.log]
#   STOP_TIMEOUT   seconds "pg_ctl stop -m fast" may take before -m immediate [60]
#   PGB_T          seconds of each run_pgbench (if it uses run_pgbench)
# and calls, in this order:
#   bench_output FILE          tee all further output to FILE
#   bench_install              scripts/setup.sh (or make install), unless BENCH_SKIP_INSTALL=1;
#                              make PG_CONFIG=$PGBIN/pg_config install if PGBIN is not the
#                              PostgreSQL whose pg_config is on PATH
#   bench_initdb PREFIX LABEL  temp dir T (owned by postgres), a free PORT, initdb; appends
#                              to postgresql.conf the socket settings, test/stream_state.conf,
#                              stdin as "# ---- bench settings", then BENCH_EXTRA_CONF
#   bench_start_server SECS    pg_ctl start -w -t SECS (LOGOFF = log size before it)
#   bench_connect              PG* variables for psql and pgbench, the PSQL array
#
# On exit (also on error or ^C) the clean-up stops a perf left running
# (PERF_PID), stops the server (fast, then immediate), copies server.log to
# SLOG, removes T, and says the exit status if it is not 0.

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
STAMP=$(date +%Y%m%d-%H%M%S)
OUTDIR=$HERE/out
mkdir -p "$OUTDIR"
SLOG=$OUTDIR/server-$STAMP.log
STOP_TIMEOUT=60

T=""
SERVER_UP=0
LOGOFF=0	# size of server.log before the last start: where its lines begin
PERF_PID=""

die() { echo "bench: ERROR: $*"; exit 1; }

bench_output() {	# file: everything from here on goes to the terminal and to file
	exec > >(tee "$1") 2>&1
}

stop_server() {	# fast, then immediate
	[ "$SERVER_UP" = 1 ] || return 0
	(cd "$T" && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$T/data" -m fast -t "$STOP_TIMEOUT" stop >/dev/null 2>&1) ||
		(cd "$T" && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$T/data" -m immediate stop >/dev/null 2>&1)
	SERVER_UP=0
}

cleanup() {
	local rc=$?
	[ -n "${PERF_PID:-}" ] && { kill -INT "$PERF_PID" 2>/dev/null; wait "$PERF_PID" 2>/dev/null; }
	stop_server
	if [ -n "$T" ] && [ -d "$T" ]; then
		[ -f "$T/server.log" ] && cp "$T/server.log" "$SLOG"
		rm -rf "$T"
	fi
	[ "$rc" != 0 ] && echo "bench: exit status $rc (server log: $SLOG)"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

git_desc() {	# -> "<short HEAD> (dirty tree)" as the result headers show it
	echo "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo 'no commit') $(git -C "$ROOT" status --porcelain 2>/dev/null | grep -q . && echo '(dirty tree)')"
}

# ---------------------------------------------------------------- install
# scripts/setup.sh and a plain make install use the pg_config on PATH: for
# another PostgreSQL (PGBIN) only make install with its pg_config is right.
bench_install() {
	if [ "${BENCH_SKIP_INSTALL:-0}" != 1 ]; then
		if [ "$("$PGBIN/pg_config" --pkglibdir)" != "$(pg_config --pkglibdir 2>/dev/null)" ]; then
			echo "== make PG_CONFIG=$PGBIN/pg_config install"
			make -C "$ROOT" PG_CONFIG="$PGBIN/pg_config" install >"$OUTDIR/install-$STAMP.log" 2>&1 ||
				die "make install failed, see $OUTDIR/install-$STAMP.log"
		elif [ -f "$ROOT/scripts/setup.sh" ]; then
			echo "== bash scripts/setup.sh"
			(cd "$ROOT" && bash scripts/setup.sh) >"$OUTDIR/install-$STAMP.log" 2>&1 ||
				die "scripts/setup.sh failed, see $OUTDIR/install-$STAMP.log"
		else
			echo "== make install"
			make -C "$ROOT" install >"$OUTDIR/install-$STAMP.log" 2>&1 ||
				die "make install failed, see $OUTDIR/install-$STAMP.log"
		fi
	fi
	[ -f "$("$PGBIN/pg_config" --pkglibdir)/stream_state.so" ] || die "stream_state.so is not installed"
}

# ---------------------------------------------------------------- server
bench_initdb() {	# prefix label < bench settings
	local p
	T=$(mktemp -d "/tmp/$1.XXXXXX")
	chown postgres: "$T"
	chmod 700 "$T"
	PORT=""
	for p in $(shuf -i 20000-60000 -n 100); do
		if ! ss -Hltn "sport = :$p" | grep -q . && [ ! -e "/tmp/.s.PGSQL.$p" ] &&
			[ ! -e "/var/run/postgresql/.s.PGSQL.$p" ]; then
			PORT=$p
			break
		fi
	done
	[ -n "$PORT" ] || die "no free port"

	(cd "$T" && runuser -u postgres -- "$PGBIN/initdb" -D "$T/data" -U postgres -A trust \
		-E UTF8 --locale=C --no-sync) >"$T/initdb.log" 2>&1 || { cat "$T/initdb.log"; die "initdb failed"; }
	{
		echo
		echo "# ---- $2"
		echo "listen_addresses = ''"
		echo "port = $PORT"
		echo "unix_socket_directories = '$T'"
		echo "# ---- test/stream_state.conf"
		cat "$ROOT/test/stream_state.conf"
		echo
		echo "# ---- bench settings"
		cat
		if [ -n "${BENCH_EXTRA_CONF:-}" ]; then
			echo "# ---- BENCH_EXTRA_CONF"
			printf '%s\n' "$BENCH_EXTRA_CONF"
		fi
	} >>"$T/data/postgresql.conf"
}

bench_start_server() {	# seconds pg_ctl may wait for the start
	LOGOFF=$(stat -c %s "$T/server.log" 2>/dev/null || echo 0)
	(cd "$T" && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$T/data" -l "$T/server.log" -w -t "$1" start) >/dev/null 2>&1 ||
		{ tail -30 "$T/server.log"; die "server did not start"; }
	SERVER_UP=1
}

bench_connect() {
	export PGHOST=$T PGPORT=$PORT PGUSER=postgres PGDATABASE=bench
	unset PGSERVICE PGPASSWORD
	export PGOPTIONS='-c client_min_messages=warning'
	PSQL=("$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1)
}

# ---------------------------------------------------------------- helpers
sql() { "${PSQL[@]}" -c "$1"; }

median() {	# numbers in args (non-numeric ones ignored) -> median or NA
	printf '%s\n' "$@" | grep -E '^-?[0-9.]+(e[-+]?[0-9]+)?$' | sort -g |
		awk '{a[NR]=$1} END {if (NR == 0) print "NA"; else if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'
}
calc() {	# calc 'arithmetic on plain numbers' -> result, or NA if an operand is not a number
	if [[ "$1" =~ [a-df-zA-DF-Z] || -z "${1// /}" ]]; then echo NA; return; fi
	awk "BEGIN { x = $1; printf \"%.6g\", x }" 2>/dev/null || echo NA
}
isnum() { [[ "$1" =~ ^-?[0-9.]+(e[-+]?[0-9]+)?$ ]]; }
fmt() { if isnum "$1"; then printf "%.${2}f" "$1"; else echo "$1"; fi; }
div() { if isnum "$1" && isnum "$2" && [ "$(calc "$2 != 0")" = 1 ]; then calc "$1 / $2"; else echo NA; fi; }
now() { date +%s.%N; }
verdict() {	# value op target
	if ! isnum "$1"; then echo "?"; elif [ "$(calc "$1 $2 $3")" = 1 ]; then echo "met"; else echo "MISSED"; fi
}

# Abort (with the log lines that say why) once the server has crashed: every
# later number would be meaningless.
check_server() {	# where
	if grep -qE 'terminated by signal|PANIC:|was terminated by exception' "$T/server.log"; then
		echo "bench: the server crashed during $1:"
		grep -E -B2 -A3 'terminated by signal|PANIC:|was terminated by exception' "$T/server.log" | head -20 | sed 's/^/   /'
		die "server crash (full log: $SLOG)"
	fi
}

# Lines of the server log written since the last start, stream_state's
# complaints only (damaged checkpoints, memory full, errors).
new_log() { tail -c +"$((LOGOFF + 1))" "$T/server.log"; }
log_complaints() {	# where
	local c
	c=$(new_log | grep -E 'stream_state' | grep -E 'ERROR|WARNING|damaged|not used|memory full|could not|no usable|needs a rebuild' | head -10)
	if [ -n "$c" ]; then
		echo "   server log during $1:"
		printf '%s\n' "$c" | sed 's/^/     /'
	fi
}

drop_query_if_exists() {	# name
	sql "SELECT stream_state.drop_query(name) FROM stream_state.query_def WHERE name = '$1'" >/dev/null
}

# pgbench SCRIPT -> prints TPS (or NA); full output appended to $T/pgbench.log
run_pgbench() {
	local script=$1 label=$2
	local outf="$T/pgbench.$label.out" tps
	PGOPTIONS="$PGOPTIONS -c stream_state.read_consistency=none" \
		"$PGBIN/pgbench" -n -T "$PGB_T" -c 2 -j 2 -f "$script" >"$outf" 2>&1
	local rc=$?
	tps=$(awk '/^tps = / {print $3; exit}' "$outf")
	{ echo "--- $label (exit $rc)"; cat "$outf"; } >>"$T/pgbench.log"
	if [ "$rc" != 0 ] || ! isnum "${tps:-}"; then
		echo "    $label: pgbench failed (exit $rc): $(grep -m3 -iE 'error|abort' "$outf" | tr '\n' ' ')" >&2
		echo NA
		return
	fi
	echo "$tps"
}
