#!/usr/bin/env bash
# bench/run.sh - stream_state performance, as ratios against a baseline
# measured in the same run (issue 2).
#
#   bash bench/run.sh            (as root; about 4 minutes)
#
# Starts a throwaway PostgreSQL 15 server as user postgres in a temp dir
# (socket in that dir, no TCP), with test/stream_state.conf plus the bench
# settings below, measures, prints a table and stops the server on exit.
# Every measurement runs BENCH_RUNS times (3), alternating baseline and
# subject; the table shows the median of each side and the median of the
# per-pair ratios (pair i = baseline run i and the subject run right after it).
# The output is also written to bench/out/results-<date>.txt, with the
# server log beside it.
#
# Environment knobs (defaults in brackets):
#   BENCH_SKIP_INSTALL=1   do not run scripts/setup.sh / make install first
#   BENCH_RUNS [3]  BENCH_ROWS [2000000]  BENCH_PGBENCH_SECONDS [15]
#   BENCH_EXTRA_CONF='work_mem = 64MB'   extra postgresql.conf lines (printed)
#   BENCH_PERF=1           perf record -a -g during the first subject insert
#                          (bench/out/perf-<date>.data)
set -u -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
RUNS=${BENCH_RUNS:-3}
NROWS=${BENCH_ROWS:-2000000}
PGB_T=${BENCH_PGBENCH_SECONDS:-15}

# Event times: NROWS rows 300 us apart from BASE (2M rows = 10 minutes).
# Reads of (c) are at AT = BASE + 10 min: window [BASE+6min, BASE+11min),
# still open since the watermark is the last event time (BASE + 9:59.9997).
BASE='2024-06-01 00:00:00+00'
AT='2024-06-01 00:10:00+00'
WSTART='2024-06-01 00:06:00+00'
WEND='2024-06-01 00:11:00+00'

STAMP=$(date +%Y%m%d-%H%M%S)
OUTDIR=$HERE/out
mkdir -p "$OUTDIR"
OUT=$OUTDIR/results-$STAMP.txt
exec > >(tee "$OUT") 2>&1

T=""
SERVER_UP=0

die() { echo "bench: ERROR: $*"; exit 1; }

cleanup() {
	local rc=$?
	if [ "$SERVER_UP" = 1 ]; then
		(cd "$T" && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$T/data" -m fast -t 60 stop >/dev/null 2>&1) ||
			(cd "$T" && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$T/data" -m immediate stop >/dev/null 2>&1)
	fi
	if [ -n "$T" ] && [ -d "$T" ]; then
		[ -f "$T/server.log" ] && cp "$T/server.log" "$OUTDIR/server-$STAMP.log"
		rm -rf "$T"
	fi
	[ "$rc" != 0 ] && echo "bench: exit status $rc (server log: $OUTDIR/server-$STAMP.log)"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "stream_state bench  $(date -u '+%Y-%m-%d %H:%M:%S UTC')  host $(hostname)  $(nproc) cores"
echo "git: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo 'no commit') $(git -C "$ROOT" status --porcelain 2>/dev/null | grep -q . && echo '(dirty tree)')"
echo "runs=$RUNS rows=$NROWS pgbench_seconds=$PGB_T"
[ -n "${BENCH_EXTRA_CONF:-}" ] && echo "extra postgresql.conf: $BENCH_EXTRA_CONF"
echo

# ---------------------------------------------------------------- install
if [ "${BENCH_SKIP_INSTALL:-0}" != 1 ]; then
	mkdir -p "$OUTDIR"
	if [ -f "$ROOT/scripts/setup.sh" ]; then
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

# ---------------------------------------------------------------- server
T=$(mktemp -d /tmp/ssbench.XXXXXX)
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
	echo "# ---- bench/run.sh"
	echo "listen_addresses = ''"
	echo "port = $PORT"
	echo "unix_socket_directories = '$T'"
	echo "# ---- test/stream_state.conf"
	cat "$ROOT/test/stream_state.conf"
	echo
	echo "# ---- bench settings"
	echo "stream_state.memory_limit = 1GB"
	echo "shared_buffers = 1GB"
	echo "max_wal_size = 8GB"
	echo "checkpoint_timeout = 30min"
	echo "synchronous_commit = on"
	if [ -n "${BENCH_EXTRA_CONF:-}" ]; then
		echo "# ---- BENCH_EXTRA_CONF"
		printf '%s\n' "$BENCH_EXTRA_CONF"
	fi
} >>"$T/data/postgresql.conf"

(cd "$T" && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$T/data" -l "$T/server.log" -w -t 120 start) >/dev/null 2>&1 ||
	{ tail -30 "$T/server.log"; die "server did not start"; }
SERVER_UP=1
echo "server: $T (port $PORT), $("$PGBIN/postgres" --version)"

export PGHOST=$T PGPORT=$PORT PGUSER=postgres PGDATABASE=bench
unset PGSERVICE PGPASSWORD
export PGOPTIONS='-c client_min_messages=warning'
PSQL=("$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1)

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

# Abort (with the log lines that say why) once the server has crashed: every
# later number would be meaningless.
check_server() {	# where
	if grep -qE 'terminated by signal|PANIC:|was terminated by exception' "$T/server.log"; then
		echo "bench: the server crashed during $1:"
		grep -E -B2 -A3 'terminated by signal|PANIC:|was terminated by exception' "$T/server.log" | head -20 | sed 's/^/   /'
		die "server crash (full log: $OUTDIR/server-$STAMP.log)"
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

# ---------------------------------------------------------------- setup
"${PSQL[@]}" -d postgres -c 'CREATE DATABASE bench' || die "createdb failed"
if ! "${PSQL[@]}" -f "$HERE/setup.sql"; then
	check_server "setup"
	die "setup.sql failed (extension or smoke test)"
fi
check_server "setup"

# ---------------------------------------------------------------- warm-up
echo
echo "== warm-up: one unmeasured $NROWS-row insert with the query (creates WAL segments, warms caches)"
"${PSQL[@]}" -v tbl=warmup -v subject=true -v base="$BASE" -v nrows="$NROWS" \
	-f "$HERE/insert_run.sql" >/dev/null
check_server "warm-up"
drop_query_if_exists q
sql "DROP TABLE IF EXISTS warmup" >/dev/null

# ---------------------------------------------------------------- (a) + (b)
echo
echo "== (a) bulk insert of $NROWS rows, (b) wait_applied after commit"
echo "   run side     insert_s  commit_s  t_apply_s  wait_s   applied"
A_B=(); A_S=(); A_R=(); B_APPLY=(); B_R=()
PERF_PID=""
for i in $(seq 1 "$RUNS"); do
	# baseline: no query anywhere (drop the previous subject's query and table)
	drop_query_if_exists q
	sql "DROP TABLE IF EXISTS ev_a_s$((i - 1))" >/dev/null
	r=$("${PSQL[@]}" -v tbl="ev_a_b$i" -v subject=false -v base="$BASE" -v nrows="$NROWS" \
		-f "$HERE/insert_run.sql" | grep '^RESULT')
	read -r _ t0 t1 t2 t3 ok <<<"${r:-RESULT NA NA NA NA NA}"
	bins=$(calc "$t2 - $t0")
	printf '   %-3s baseline %9s %9s\n' "$i" "$(fmt "$bins" 3)" "$(fmt "$(calc "$t2 - $t1")" 3)"
	check_server "(a) baseline run $i"
	sql "DROP TABLE ev_a_b$i" >/dev/null

	# subject: fresh table with the query 'q'
	if [ "${BENCH_PERF:-0}" = 1 ] && [ "$i" = 1 ]; then
		perf record -a -g -o "$OUTDIR/perf-$STAMP.data" >/dev/null 2>&1 &
		PERF_PID=$!
	fi
	r=$("${PSQL[@]}" -v tbl="ev_a_s$i" -v subject=true -v base="$BASE" -v nrows="$NROWS" \
		-f "$HERE/insert_run.sql" | grep '^RESULT')
	if [ -n "$PERF_PID" ]; then
		kill -INT "$PERF_PID"; wait "$PERF_PID" 2>/dev/null; PERF_PID=""
		echo "   perf data: $OUTDIR/perf-$STAMP.data"
	fi
	check_server "(a) subject run $i"
	read -r _ t0 t1 t2 t3 ok <<<"${r:-RESULT NA NA NA NA NA}"
	sins=$(calc "$t2 - $t0")
	apply=$(calc "$t3 - $t1")
	printf '   %-3s subject  %9s %9s %10s %7s   %s\n' "$i" "$(fmt "$sins" 3)" "$(fmt "$(calc "$t2 - $t1")" 3)" \
		"$(fmt "$apply" 3)" "$(fmt "$(calc "$t3 - $t2")" 3)" "$ok"
	[ "$ok" = t ] || echo "   WARNING: wait_applied() did not return true (got '$ok'); t_apply is a lower bound"

	A_B+=("$bins"); A_S+=("$sins"); A_R+=("$(div "$sins" "$bins")")
	B_APPLY+=("$apply"); B_R+=("$(div "$apply" "$sins")")
done
LAST_A=ev_a_s$RUNS

# ---------------------------------------------------------------- (d)
check_server "(d)"
echo
echo "== (d) state size of 'q' after (a) run $RUNS"
sql "SELECT stream_state.wait_applied(NULL, '120 seconds')" >/dev/null
"${PSQL[@]}" -P footer=off -F ' | ' -c "
	SELECT 'status', status FROM stream_state.queries WHERE name = 'q'
	UNION ALL SELECT 'events_applied', events_applied::text FROM stream_state.queries WHERE name = 'q'
	UNION ALL SELECT 'late_events', late_events::text FROM stream_state.queries WHERE name = 'q'
	UNION ALL SELECT 'skipped', skipped::text FROM stream_state.queries WHERE name = 'q'
	UNION ALL SELECT 'keys', keys::text FROM stream_state.queries WHERE name = 'q'
	UNION ALL SELECT 'panes', panes::text FROM stream_state.queries WHERE name = 'q'
	UNION ALL SELECT 'state_bytes', state_bytes::text FROM stream_state.queries WHERE name = 'q'
	UNION ALL SELECT 'watermark', watermark::text FROM stream_state.queries WHERE name = 'q'" |
	sed 's/^/   /'
read -r D_BYTES D_PANES <<<"$(sql "SELECT state_bytes, panes FROM stream_state.queries WHERE name = 'q'" | tr '|' ' ')"
D_ROWS=$(sql "SELECT count(*) FROM stream_state.state WHERE query = 'q'" 2>/dev/null || echo NA)
D_PER=$(div "${D_BYTES:-NA}" "${D_PANES:-NA}")
D_PER_ROW=$(div "${D_BYTES:-NA}" "$D_ROWS")
echo "   live (key, pane) rows in stream_state.state: $D_ROWS"
echo "   state_bytes / panes = $D_PER   state_bytes / state rows = $D_PER_ROW"
# True DSA usage: only if the C code exposes it (a function or a column whose
# name mentions dsa/memory/shmem).
DSA_FN=$(sql "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
	WHERE n.nspname = 'stream_state' AND p.proname ~* '(dsa|memory|shmem|mem_)' AND p.pronargs = 0
	  AND p.prorettype IN ('int8'::regtype, 'int4'::regtype, 'numeric'::regtype) ORDER BY 1 LIMIT 1")
DSA_COL=$(sql "SELECT attname FROM pg_attribute WHERE attrelid = 'stream_state.queries'::regclass
	AND attname ~* '(dsa|memory|shmem)' AND attnum > 0 LIMIT 1")
D_DSA=NA
if [ -n "$DSA_FN" ]; then
	D_DSA=$(sql "SELECT stream_state.$DSA_FN()" 2>/dev/null || echo NA)
	echo "   true DSA usage (stream_state.$DSA_FN()): $D_DSA bytes = $(div "$D_DSA" "$D_ROWS") per live (key, pane)"
elif [ -n "$DSA_COL" ]; then
	D_DSA=$(sql "SELECT $DSA_COL FROM stream_state.queries WHERE name = 'q'" 2>/dev/null || echo NA)
	echo "   true DSA usage (queries.$DSA_COL): $D_DSA bytes = $(div "$D_DSA" "$D_ROWS") per live (key, pane)"
else
	echo "   true DSA usage: not exposed by the extension"
fi

# Correctness spot check of what (c) reads: 300 keys vs. a plain SQL count.
C_CHECK=$(sql "
	WITH truth AS (SELECT user_id, count(*) AS n FROM $LAST_A
	                WHERE ts >= '$WSTART' AND ts < '$WEND' AND user_id < 300 GROUP BY user_id)
	SELECT count(*) FILTER (WHERE stream_state.window_count('q', k::bigint, '$AT') <> coalesce(t.n, 0))
	       || ' mismatches of 300 keys, sum=' || sum(stream_state.window_count('q', k::bigint, '$AT'))
	       || ' expected ' || sum(coalesce(t.n, 0))
	  FROM generate_series(0, 299) AS k LEFT JOIN truth t ON t.user_id = k" 2>&1)
echo "   window_count check at '$AT': $C_CHECK"

# ---------------------------------------------------------------- (c)
echo
echo "== (c) point reads, pgbench -n -T $PGB_T -c 2 -j 2, read_consistency=none"
cat >"$T/read_counters.sql" <<EOF
\set k random(1, 100000)
SELECT count FROM counters WHERE user_id = :k;
EOF
cat >"$T/read_window.sql" <<EOF
\set k random(1, 100000)
SELECT stream_state.window_count('q', :k::bigint, '$AT');
EOF
C_B=(); C_S=(); C_R=()
for i in $(seq 1 "$RUNS"); do
	b=$(run_pgbench "$T/read_counters.sql" "read_counters_$i")
	s=$(run_pgbench "$T/read_window.sql" "read_window_$i")
	printf '   %-3s counters %10s tps   window_count %10s tps\n' "$i" "$(fmt "$b" 0)" "$(fmt "$s" 0)"
	check_server "(c) run $i"
	C_B+=("$b"); C_S+=("$s"); C_R+=("$(div "$s" "$b")")
done

drop_query_if_exists q
sql "DROP TABLE IF EXISTS $LAST_A" >/dev/null

# ---------------------------------------------------------------- (e)
echo
echo "== (e) single-row insert transactions, pgbench -n -T $PGB_T -c 2 -j 2"
E_B=(); E_S=(); E_R=()
for i in $(seq 1 "$RUNS"); do
	sql "CREATE TABLE ev_e_b$i (user_id bigint, ts timestamptz, kind text)" >/dev/null
	printf '\\set k random(1, 100000)\nINSERT INTO ev_e_b%s VALUES (:k, now(), '"'x'"');\n' "$i" >"$T/ins_b$i.sql"
	sql "CHECKPOINT" >/dev/null
	b=$(run_pgbench "$T/ins_b$i.sql" "insert_baseline_$i")
	sql "DROP TABLE ev_e_b$i" >/dev/null

	sql "CREATE TABLE ev_e_s$i (user_id bigint, ts timestamptz, kind text)" >/dev/null
	sql "SELECT stream_state.create_query('qe', 'ev_e_s$i', key_column => 'user_id', time_column => 'ts',
	     window_size => '5 minutes', slide => '1 minute')" >/dev/null
	printf '\\set k random(1, 100000)\nINSERT INTO ev_e_s%s VALUES (:k, now(), '"'x'"');\n' "$i" >"$T/ins_s$i.sql"
	sql "CHECKPOINT" >/dev/null
	sql "SELECT stream_state.wait_applied(NULL, '60 seconds')" >/dev/null
	s=$(run_pgbench "$T/ins_s$i.sql" "insert_subject_$i")
	ok=$(sql "SELECT stream_state.wait_applied(NULL, '120 seconds')")
	chk=$(sql "SELECT (SELECT count(*) FROM ev_e_s$i) || ' rows, events_applied ' || events_applied
	           || ', status ' || status FROM stream_state.queries WHERE name = 'qe'")
	printf '   %-3s baseline %10s tps   with query %10s tps   (applied=%s: %s)\n' "$i" "$(fmt "$b" 0)" "$(fmt "$s" 0)" "$ok" "$chk"
	drop_query_if_exists qe
	sql "DROP TABLE ev_e_s$i" >/dev/null
	check_server "(e) run $i"
	E_B+=("$b"); E_S+=("$s"); E_R+=("$(div "$s" "$b")")
done

# ---------------------------------------------------------------- table
verdict() {	# value op target
	if ! isnum "$1"; then echo "?"; elif [ "$(calc "$1 $2 $3")" = 1 ]; then echo "met"; else echo "MISSED"; fi
}
row() { printf '%-44s | %14s | %17s | %8s | %s\n' "$@"; }

a_r=$(median "${A_R[@]}"); b_r=$(median "${B_R[@]}"); c_r=$(median "${C_R[@]}"); e_r=$(median "${E_R[@]}")
echo
echo "== results (median of $RUNS; ratio = median of the per-pair ratios)"
row "metric" "baseline" "with stream_state" "ratio" "target"
row "--------------------------------------------" "--------------" "-----------------" "--------" "---------------"
row "(a) INSERT ... SELECT $NROWS rows, seconds" "$(fmt "$(median "${A_B[@]}")" 3)" "$(fmt "$(median "${A_S[@]}")" 3)" \
	"$(fmt "$a_r" 3)" "<= 1.15 ($(verdict "$a_r" '<=' 1.15))"
row "(b) t_apply (pre-commit -> applied) / insert" "$(fmt "$(median "${A_S[@]}")" 3)" "$(fmt "$(median "${B_APPLY[@]}")" 3)" \
	"$(fmt "$b_r" 3)" "<= 0.20 ($(verdict "$b_r" '<=' 0.2))"
row "(c) point reads, TPS (counters / window)" "$(fmt "$(median "${C_B[@]}")" 0)" "$(fmt "$(median "${C_S[@]}")" 0)" \
	"$(fmt "$c_r" 3)" ">= 1.0 ($(verdict "$c_r" '>=' 1.0))"
row "(d) state_bytes / panes (int8 key)" "-" "$(fmt "$D_PER" 1)" "-" "<= 64 B ($(verdict "$D_PER" '<=' 64))"
row "(e) single-row INSERT, TPS" "$(fmt "$(median "${E_B[@]}")" 0)" "$(fmt "$(median "${E_S[@]}")" 0)" \
	"$(fmt "$e_r" 3)" ">= 0.9 ($(verdict "$e_r" '>=' 0.9))"
echo
echo "(b): baseline column = subject insert time (s, incl. commit); with stream_state = time from just"
echo "     before COMMIT until wait_applied() returned (s). (d): state_bytes=$D_BYTES panes=$D_PANES"
echo "     state rows=$D_ROWS -> $D_PER_ROW B per live (key, pane); DSA: $D_DSA"
echo "results: $OUT"
