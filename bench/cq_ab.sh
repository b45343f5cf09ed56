#!/usr/bin/env bash
# bench/cq_ab.sh - the capture of a continuous query in SQL, two builds side
# by side: how long the statement trigger and the COMMIT after it take, with
# the builds of two git revisions alternated on one server, so that a
# change to the capture can be seen through this machine's noise (the
# whole insert, which bench/cq.sh times, varies by more than the capture
# costs).
#
#   bash bench/cq_ab.sh OLD_REV NEW_REV     (as root; about 4 minutes)
#
# Both revisions are built (make, in temporary clones of this repository)
# for the PostgreSQL of PGBIN; they must have the same extension version (the
# SQL is installed once, from NEW_REV).  A throwaway server (bench/lib.sh,
# test/stream_state.conf plus the settings below) then runs BENCH_RUNS
# rounds; each round, for OLD_REV then NEW_REV: stop the server, put that
# build's stream_state.so in place (a new file renamed over the installed
# one, never written over while mapped), start, and in a fresh table
# events(user_id bigint, amount bigint, page text, kind text, ts timestamptz)
# with the query
#   SELECT user_id, count(*), sum(amount), avg(amount), max(amount)
#     FROM events GROUP BY user_id      (1 hour window sliding by 5 minutes)
# run EXPLAIN ANALYZE of the 2M-row INSERT ... SELECT of bench/cq.sh (100k
# users, rows 300 us apart) in a transaction, then COMMIT:
#   trigger_ms  "Trigger ...: time=" of EXPLAIN ANALYZE: the statement
#               trigger reading the transition table and grouping the rows;
#   commit_ms   the COMMIT: the carried groups serialised into the WAL, and
#               the WAL flushed;
#   exec_ms     "Execution Time": the whole statement.
# Prints each run, then per build the median and minimum of each, and the
# new build's medians over the old's.  The library installed before the
# run is put back at the end.
#
# Environment knobs (defaults in brackets):
#   PGBIN [/usr/lib/postgresql/15/bin]
#   BENCH_RUNS [6]  BENCH_ROWS [2000000]  BENCH_KEYS [100000]
#   BENCH_EXTRA_CONF   extra postgresql.conf lines
# Output goes to bench/out/cq_ab-<date>.txt.
set -u -o pipefail
source "$(dirname "$0")/lib.sh"

[ $# -eq 2 ] || die "usage: bash bench/cq_ab.sh OLD_REV NEW_REV"
[ "$(id -u)" = 0 ] || die "run as root (the server runs as postgres; the library is swapped in $("$PGBIN/pg_config" --pkglibdir))"
RUNS=${BENCH_RUNS:-6}
NROWS=${BENCH_ROWS:-2000000}
NKEYS=${BENCH_KEYS:-100000}
SLOG=$OUTDIR/cq_ab-server-$STAMP.log
bench_output "$OUTDIR/cq_ab-$STAMP.txt"

LIBDIR=$("$PGBIN/pg_config" --pkglibdir)
BUILDS=$(mktemp -d /tmp/cq_ab.XXXXXX)
SAVED=""
restore_lib() {
	[ -n "$SAVED" ] && [ -f "$SAVED" ] && mv -f "$SAVED" "$LIBDIR/stream_state.so"
	rm -rf "$BUILDS"
}
trap 'ab_rc=$?; stop_server; restore_lib; (exit $ab_rc); cleanup' EXIT

echo "stream_state capture A/B  $(date -u '+%Y-%m-%d %H:%M:%S UTC')  $(nproc) cores"
echo "command: bash bench/cq_ab.sh $*  (BENCH_RUNS=$RUNS BENCH_ROWS=$NROWS BENCH_KEYS=$NKEYS)"

# ---------------------------------------------------------------- builds
declare -A DESC=()
for which in old new; do
	rev=$([ "$which" = old ] && echo "$1" || echo "$2")
	DESC[$which]="$rev = $(git -C "$ROOT" rev-parse --short "$rev^{commit}" 2>/dev/null)" ||
		die "not a revision: $rev"
	git clone -q "$ROOT" "$BUILDS/$which" && git -C "$BUILDS/$which" checkout -q "$rev" ||
		die "checking out $rev failed"
	make -C "$BUILDS/$which" PG_CONFIG="$PGBIN/pg_config" -j"$(nproc)" >"$BUILDS/$which.log" 2>&1 ||
		{ tail -20 "$BUILDS/$which.log"; die "building $rev failed"; }
	echo "build $which: ${DESC[$which]}"
done
[ "$(grep -h '^default_version' "$BUILDS/old/stream_state.control")" = \
  "$(grep -h '^default_version' "$BUILDS/new/stream_state.control")" ] ||
	die "the two revisions have different extension versions"
if [ -f "$LIBDIR/stream_state.so" ]; then
	cp "$LIBDIR/stream_state.so" "$LIBDIR/.stream_state.so.cq_ab" && SAVED=$LIBDIR/.stream_state.so.cq_ab
fi
make -C "$BUILDS/new" PG_CONFIG="$PGBIN/pg_config" install >"$BUILDS/install.log" 2>&1 ||
	die "make install of the new build failed"

use_build() {	# old|new: the server restarted with that build's library
	stop_server
	cp "$BUILDS/$1/stream_state.so" "$LIBDIR/.stream_state.so.new" &&
		mv -f "$LIBDIR/.stream_state.so.new" "$LIBDIR/stream_state.so" || die "installing the $1 library failed"
	bench_start_server 120
}

# ---------------------------------------------------------------- server
bench_initdb sscqab bench/cq_ab.sh <<EOF
stream_state.memory_limit = 1GB
shared_buffers = 1GB
max_wal_size = 8GB
checkpoint_timeout = 30min
EOF
bench_start_server 120
bench_connect
"${PSQL[@]}" -d postgres -c 'CREATE DATABASE bench' || die "createdb failed"
sql 'CREATE EXTENSION stream_state' || die "CREATE EXTENSION stream_state failed"

one() {	# build -> "trigger_ms commit_ms exec_ms"
	"${PSQL[@]}" -v nrows="$NROWS" -v nkeys="$NKEYS" <<'EOF' | awk '
		/Trigger .*time=/ { sub(/.*time=/, ""); sub(/ .*/, ""); t = $0 }
		/Execution Time:/ { e = $3 }
		/^COMMIT_MS / { c = $2 }
		END { print (t == "" ? "NA" : t), (c == "" ? "NA" : c), (e == "" ? "NA" : e) }'
SELECT stream_state.drop_query(name) FROM stream_state.query_def \g /dev/null
DROP TABLE IF EXISTS events;
CREATE TABLE events (user_id bigint, amount bigint, page text, kind text, ts timestamptz);
SELECT stream_state.create_query('q', $$SELECT user_id, count(*), sum(amount), avg(amount), max(amount) FROM events GROUP BY user_id$$,
	time_column => 'ts', window_size => '1 hour', slide => '5 minutes') \g /dev/null
CHECKPOINT;
SELECT setseed(0.42) \g /dev/null
BEGIN;
EXPLAIN (ANALYZE, COSTS OFF)
INSERT INTO events (user_id, amount, page, kind, ts)
SELECT (random() * (:nkeys - 1))::bigint, (random() * 9999)::bigint, '/p/' || (random() * 999)::int,
	   CASE WHEN random() < 0.05 THEN 'purchase' ELSE 'view' END,
	   '2024-06-01 00:00:00+00'::timestamptz + (g - 1) * interval '300 microseconds'
  FROM generate_series(1, :nrows) AS g;
SELECT extract(epoch FROM clock_timestamp()) AS t0 \gset
COMMIT;
SELECT 'COMMIT_MS ' || round(((extract(epoch FROM clock_timestamp()) - :t0) * 1000)::numeric, 1);
SELECT stream_state.wait_applied(NULL, '300 seconds') \g /dev/null
EOF
}

echo
echo "== $RUNS rounds of: old, new"
printf '   %-5s %-4s %11s %10s %10s\n' run build trigger_ms commit_ms exec_ms
declare -A TRIG=() COMMIT=() BOTH=()
for i in $(seq 1 "$RUNS"); do
	for b in old new; do
		use_build "$b"
		read -r t c e <<<"$(one "$b")"
		check_server "$b, run $i"
		printf '   %-5s %-4s %11s %10s %10s\n' "$i" "$b" "$t" "$c" "$e"
		TRIG[$b]+="$t "
		COMMIT[$b]+="$c "
		BOTH[$b]+="$(calc "$t + $c") "
	done
done
sql "SELECT stream_state.drop_query(name) FROM stream_state.query_def" >/dev/null

mn() { printf '%s\n' $1 | grep -E '^[0-9.]+$' | sort -g | head -1; }
echo
echo "== results ($NROWS rows, $NKEYS users; ms; median (minimum) of $RUNS runs)"
echo "   old: ${DESC[old]}"
echo "   new: ${DESC[new]}"
printf '   %-22s | %-17s | %-17s | %s\n' "" "old" "new" "new ÷ old (medians)"
for m in trigger commit both; do
	case $m in trigger) declare -n V=TRIG; label="trigger" ;; commit) declare -n V=COMMIT; label="COMMIT" ;;
	both) declare -n V=BOTH; label="trigger + COMMIT" ;; esac
	o=$(median ${V[old]}); n=$(median ${V[new]})
	printf '   %-22s | %7s (%7s) | %7s (%7s) | %s\n' "$label" "$(fmt "$o" 1)" "$(fmt "$(mn "${V[old]}")" 1)" \
		"$(fmt "$n" 1)" "$(fmt "$(mn "${V[new]}")" 1)" "$(fmt "$(div "$n" "$o")" 2)"
	unset -n V
done
