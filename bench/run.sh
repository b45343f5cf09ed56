#!/usr/bin/env bash
# bench/run.sh - stream_state performance, as ratios against a baseline
# measured in the same run (issue 2).
#
#   bash bench/run.sh            (as root; about 4 minutes)
#
# Starts a throwaway PostgreSQL 15 server as user postgres in a temp dir
# (socket in that dir, no TCP; bench/lib.sh), with test/stream_state.conf
# plus the bench settings below, measures, prints a table and stops the
# server on exit.
# Every measurement runs BENCH_RUNS times (3), alternating baseline and
# subject; the table shows the median of each side and the median of the
# per-pair ratios (pair i = baseline run i and the subject run right after it).
# The output is also written to bench/out/results-<date>.txt, with the
# server log beside it.
#
# Environment knobs (defaults in brackets):
#   PGBIN [/usr/lib/postgresql/15/bin]   the PostgreSQL 15 to run
#   BENCH_SKIP_INSTALL=1   do not run scripts/setup.sh / make install first (with
#                          another PGBIN: make PG_CONFIG=$PGBIN/pg_config install)
#   BENCH_RUNS [3]  BENCH_ROWS [2000000]  BENCH_PGBENCH_SECONDS [15]
#   BENCH_EXTRA_CONF='work_mem = 64MB'   extra postgresql.conf lines (printed)
#   BENCH_PERF=1           perf record -a -g during the first subject insert
#                          (bench/out/perf-<date>.data)
set -u -o pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
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

OUT=$OUTDIR/results-$STAMP.txt
bench_output "$OUT"

echo "stream_state bench  $(date -u '+%Y-%m-%d %H:%M:%S UTC')  host $(hostname)  $(nproc) cores"
echo "git: $(git_desc)"
echo "runs=$RUNS rows=$NROWS pgbench_seconds=$PGB_T"
[ -n "${BENCH_EXTRA_CONF:-}" ] && echo "extra postgresql.conf: $BENCH_EXTRA_CONF"
echo

# ---------------------------------------------------------------- install
bench_install

# ---------------------------------------------------------------- server
bench_initdb ssbench bench/run.sh <<EOF
stream_state.memory_limit = 1GB
shared_buffers = 1GB
max_wal_size = 8GB
checkpoint_timeout = 30min
synchronous_commit = on
EOF
bench_start_server 120
echo "server: $T (port $PORT), $("$PGBIN/postgres" --version)"
bench_connect

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
