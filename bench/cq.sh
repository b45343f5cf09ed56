#!/usr/bin/env bash
# bench/cq.sh - continuous queries in SQL (issue 5): the cost of keeping
# count, sum, avg and max (and an HLL distinct count) per user over a sliding
# window, as ratios against a plain insert measured in the same run, beside
# the same aggregates kept by a PL/pgSQL statement trigger.
#
#   bash bench/cq.sh             (as root; about 3 minutes, 4 with the cq rows)
#
# Targets (continuous queries in SQL):
#   insert time with the query / plain insert time                        <= 1.3
#   apply catch-up (just before COMMIT until wait_applied() returned)
#     / insert time with the query                                         <= 0.3
#
# Starts a throwaway PostgreSQL 15 server as user postgres in a temp dir
# (socket in that dir, no TCP; bench/lib.sh) with test/stream_state.conf plus
# the settings below, creates the extensions stream_state and hll, then
# measures BENCH_RUNS rounds after one unmeasured plain insert (warm-up).
# Each round runs every configuration once, in this order, each on a fresh
# table events(user_id bigint, amount AMOUNT, page text, kind text, ts
# timestamptz) with a fresh counter table or query (bench/cq_insert.sql: a
# BENCH_ROWS-row INSERT ... SELECT in one transaction, BENCH_KEYS random
# users, rows 300 us apart, the same rows every time):
#
#   plain        nothing on the table: the baseline of the round;
#   transition   an AFTER INSERT ... REFERENCING NEW TABLE ... FOR EACH
#                STATEMENT trigger in PL/pgSQL that returns at once: what
#                PostgreSQL itself charges for the transition table every
#                statement trigger that reads the inserted rows has (the
#                PL/pgSQL ones below and stream_state's capture): the floor
#                of this design;
#   plpgsql      an AFTER INSERT ... REFERENCING NEW TABLE ... FOR EACH
#                STATEMENT trigger in PL/pgSQL upserting one row per (user_id,
#                5 minute pane) of a counter table with count, sum(amount)
#                and max(amount) (avg = sum / count): INSERT ... SELECT ...
#                GROUP BY ... ON CONFLICT DO UPDATE;
#   plpgsql_hll  the same plus hll_add_agg(hll_hash_text(page)), merged with
#                hll_union on conflict;
#   count        the windowed count of 0.4.0 (create_query with key_column):
#                the reference;
#   cq           create_query('q', $$SELECT user_id, count(*), sum(amount),
#                avg(amount), max(amount) FROM events GROUP BY user_id$$,
#                time_column => 'ts', window_size => '1 hour', slide =>
#                '5 minutes');
#   cq_hll       the same with hll_cardinality(hll_add_agg(hll_hash_text(page)))
#                added.
#
# insert = from just before the first INSERT until COMMIT returned; ratio =
# insert / the plain insert of the same round.  catch-up (stream_state only)
# = from just before COMMIT until wait_applied() returned; ratio = catch-up /
# insert of the same run.  The table shows medians of each column and the
# median of the per-round ratios.  After every run the result is checked
# against a GROUP BY of the source table, and the mismatches printed (they
# must be 0): the counter table per (user_id, pane) against the same GROUP BY
# of all rows; window_counts (count) and window_result (cq) per user at the
# last event's window against the rows in that window.  A key missing on one
# side or with any value different is one mismatch.
#
# Continuous queries in SQL are being built: when create_query does not accept
# query text (tried once at setup on an empty table), the cq rows say so and
# the rest is measured as usual.  Their check reads window_result with the
# columns describe_query gives.
#
# Output goes to bench/out/cq-<date>.txt, the result table also to
# bench/out/cq.txt, the server log to bench/out/cq-server-<date>.log.
#
# Environment knobs (defaults in brackets):
#   PGBIN [/usr/lib/postgresql/15/bin]   the PostgreSQL 15 to run (with the hll
#                          extension for the hll rows)
#   BENCH_SKIP_INSTALL=1   do not run scripts/setup.sh / make install first (with
#                          another PGBIN: make PG_CONFIG=$PGBIN/pg_config install)
#   BENCH_RUNS [3]  BENCH_ROWS [2000000]  BENCH_KEYS [100000]
#   BENCH_AMOUNT [bigint]  the type of events.amount: bigint (cents, random in
#                          0..9999) or numeric (random in [0, 100), 2 decimals);
#                          the same type in every configuration, plain included
#   BENCH_STATEMENTS [1]   split the rows into this many INSERT statements (one
#                          transaction): a statement trigger's cost per statement
#   BENCH_CONFIGS ["transition plpgsql plpgsql_hll count cq cq_hll"]   the subjects to run
#   BENCH_EXTRA_CONF='work_mem = 64MB'   extra postgresql.conf lines (printed)
# A smoke run (about a minute):
#   BENCH_ROWS=100000 BENCH_RUNS=1 bash bench/cq.sh
set -u -o pipefail

# how this run was started, for the result table
CMD="$(for v in $(compgen -e | grep -E '^(PGBIN|BENCH_[A-Z_]+)$' | sort); do
	printf '%s=%q ' "$v" "${!v}"
done)bash bench/cq.sh"

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
RUNS=${BENCH_RUNS:-3}
NROWS=${BENCH_ROWS:-2000000}
NKEYS=${BENCH_KEYS:-100000}
AMOUNT=${BENCH_AMOUNT:-bigint}
case $AMOUNT in bigint | numeric) ;; *) die "BENCH_AMOUNT must be bigint or numeric, not '$AMOUNT'" ;; esac
NSTMTS=${BENCH_STATEMENTS:-1}
read -r -a SUBJECTS <<<"${BENCH_CONFIGS:-transition plpgsql plpgsql_hll count cq cq_hll}"

# Event times: NROWS rows 300 us apart from BASE (2M rows = 10 minutes).
# Reads are at AT, the last event's time: the window of 1 hour ending at the
# first 5 minute boundary after it ([BASE - 50 min, BASE + 10 min) for 2M
# rows), still open since the watermark is the last event time.
BASE='2024-06-01 00:00:00+00'
WINDOW='1 hour'
SLIDE='5 minutes'
CQ_TEXT='SELECT user_id, count(*), sum(amount), avg(amount), max(amount) FROM events GROUP BY user_id'
CQ_HLL_TEXT='SELECT user_id, count(*), sum(amount), avg(amount), max(amount),
       hll_cardinality(hll_add_agg(hll_hash_text(page))) AS pages FROM events GROUP BY user_id'

declare -A LABEL=(
	[plain]="plain INSERT ... SELECT"
	[transition]="transition table only (empty trigger)"
	[plpgsql]="PL/pgSQL trigger: count, sum, max"
	[plpgsql_hll]="PL/pgSQL trigger: the same + hll"
	[count]="stream_state: count only, 0.4.0 API"
	[cq]="stream_state: count, sum, avg, max"
	[cq_hll]="stream_state: the same + hll"
)

OUT=$OUTDIR/cq-$STAMP.txt
TABLE_OUT=$OUTDIR/cq.txt
SLOG=$OUTDIR/cq-server-$STAMP.log
STOP_TIMEOUT=120
for c in "${SUBJECTS[@]}"; do
	case $c in transition | plpgsql | plpgsql_hll | count | cq | cq_hll) ;; *) SLOG=/dev/null; die "unknown configuration in BENCH_CONFIGS: $c" ;; esac
done
bench_output "$OUT"

echo "stream_state continuous query bench  $(date -u '+%Y-%m-%d %H:%M:%S UTC')  host $(hostname)  $(nproc) cores  $(free -g | awk '/^Mem:/ {print $2}') GiB"
echo "git: $(git_desc)"
echo "command: $CMD"
echo "runs=$RUNS rows=$NROWS keys=$NKEYS statements=$NSTMTS configurations: plain ${SUBJECTS[*]}"
[ -n "${BENCH_EXTRA_CONF:-}" ] && echo "extra postgresql.conf: $BENCH_EXTRA_CONF"
echo

# ---------------------------------------------------------------- install
bench_install

# ---------------------------------------------------------------- server
bench_initdb sscq bench/cq.sh <<EOF
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
sql 'CREATE EXTENSION stream_state' || { check_server "setup"; die "CREATE EXTENSION stream_state failed"; }
HAVE_HLL=1
HLL_WHY=""
if ! HLL_WHY=$(sql 'CREATE EXTENSION hll' 2>&1); then
	HAVE_HLL=0
	HLL_WHY="hll extension not available: $(head -1 <<<"$HLL_WHY")"
fi
echo "stream_state $(sql "SELECT extversion FROM pg_extension WHERE extname = 'stream_state'")," \
	"hll $( [ "$HAVE_HLL" = 1 ] && sql "SELECT extversion FROM pg_extension WHERE extname = 'hll'" || echo 'missing')," \
	"$(sql "SELECT version()")"
echo "work_mem = $(sql 'SHOW work_mem'), jit = $(sql 'SHOW jit')"

# The PL/pgSQL triggers: one upsert per statement into the counter table
# pane_counts, which every plpgsql run creates afresh; and the empty one.
"${PSQL[@]}" <<'EOF' || die "creating the trigger functions failed"
CREATE FUNCTION bench_nothing() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RETURN NULL;
END $$;
CREATE FUNCTION bench_panes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO pane_counts AS c (user_id, pane, n, total, maxv)
	SELECT user_id, date_bin('5 minutes', ts, 'epoch'), count(*), sum(amount), max(amount)
	  FROM new_rows GROUP BY 1, 2
	ON CONFLICT (user_id, pane) DO UPDATE
	   SET n = c.n + excluded.n, total = c.total + excluded.total,
	       maxv = greatest(c.maxv, excluded.maxv);
	RETURN NULL;
END $$;
EOF
if [ "$HAVE_HLL" = 1 ]; then
	"${PSQL[@]}" <<'EOF' || die "creating the hll trigger function failed"
CREATE FUNCTION bench_panes_hll() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO pane_counts AS c (user_id, pane, n, total, maxv, pages)
	SELECT user_id, date_bin('5 minutes', ts, 'epoch'), count(*), sum(amount), max(amount),
	       hll_add_agg(hll_hash_text(page))
	  FROM new_rows GROUP BY 1, 2
	ON CONFLICT (user_id, pane) DO UPDATE
	   SET n = c.n + excluded.n, total = c.total + excluded.total,
	       maxv = greatest(c.maxv, excluded.maxv), pages = hll_union(c.pages, excluded.pages);
	RETURN NULL;
END $$;
EOF
fi

qname() { case $1 in count) echo c ;; cq) echo q ;; cq_hll) echo q_hll ;; esac; }
qtext() { case $1 in cq) echo "$CQ_TEXT" ;; cq_hll) echo "$CQ_HLL_TEXT" ;; esac; }

# A fresh events table with configuration $1 on it (queries and counter
# table of the previous run dropped first).
fresh_table() {	# configuration
	sql "SELECT stream_state.drop_query(name) FROM stream_state.query_def" >/dev/null || return 1
	local r
	for r in q q_hll q_probe; do	# the typed views of continuous queries go with them
		if [ -n "$(sql "SELECT to_regclass('$r')")" ]; then
			echo "   WARNING: relation $r still exists after drop_query; dropping it"
			sql "DROP VIEW $r" >/dev/null
		fi
	done
	sql "DROP TABLE IF EXISTS events, pane_counts" >/dev/null || return 1
	sql "CREATE TABLE events (user_id bigint, amount $AMOUNT, page text, kind text, ts timestamptz)" >/dev/null || return 1
	case $1 in
	transition)
		sql "CREATE TRIGGER events_nothing AFTER INSERT ON events REFERENCING NEW TABLE AS new_rows
		     FOR EACH STATEMENT EXECUTE FUNCTION bench_nothing()" >/dev/null
		;;
	plpgsql | plpgsql_hll)
		sql "CREATE TABLE pane_counts (user_id bigint, pane timestamptz, n bigint NOT NULL, total numeric,
		     maxv $AMOUNT$([ "$1" = plpgsql_hll ] && echo ', pages hll'), PRIMARY KEY (user_id, pane))" >/dev/null &&
			sql "CREATE TRIGGER events_panes AFTER INSERT ON events REFERENCING NEW TABLE AS new_rows
			     FOR EACH STATEMENT EXECUTE FUNCTION $([ "$1" = plpgsql_hll ] && echo bench_panes_hll || echo bench_panes)()" >/dev/null
		;;
	count)
		sql "SELECT stream_state.create_query('c', 'events', key_column => 'user_id', time_column => 'ts',
		     window_size => '$WINDOW', slide => '$SLIDE')" >/dev/null
		;;
	cq | cq_hll)
		sql "SELECT stream_state.create_query('$(qname "$1")', \$cq\$$(qtext "$1")\$cq\$, time_column => 'ts',
		     window_size => '$WINDOW', slide => '$SLIDE')" >/dev/null
		;;
	esac
}

# Can create_query take query text?  Tried once per query on an empty table;
# CQ_WHY[config] is empty when it can, else the reason.
declare -A CQ_WHY=()
HAVE_WINDOW_RESULT=$(sql "SELECT count(*) FROM pg_proc WHERE proname = 'window_result'
                          AND pronamespace = 'stream_state'::regnamespace")
echo "stream_state.window_result: $([ "$HAVE_WINDOW_RESULT" -gt 0 ] && echo present || echo absent)"
fresh_table plain || die "creating the table events failed"
for c in cq cq_hll; do
	if [ "$c" = cq_hll ] && [ "$HAVE_HLL" = 0 ]; then
		CQ_WHY[$c]=$HLL_WHY
		continue
	fi
	if out=$(sql "SELECT stream_state.create_query('q_probe', \$cq\$$(qtext "$c")\$cq\$, time_column => 'ts',
	              window_size => '$WINDOW', slide => '$SLIDE')" 2>&1); then
		CQ_WHY[$c]=""
		sql "SELECT stream_state.drop_query('q_probe')" >/dev/null
		echo "create_query with the query text of $c: accepted"
	else
		CQ_WHY[$c]="create_query('q_probe', \$\$...\$\$, time_column => ...) failed: $(head -1 <<<"$out")"
		echo "create_query with the query text of $c: ${CQ_WHY[$c]}"
	fi
done
[ "$HAVE_HLL" = 0 ] && CQ_WHY[plpgsql_hll]=$HLL_WHY
CQ_WHY[plpgsql]="" CQ_WHY[count]="" CQ_WHY[transition]=""
NOT_AVAILABLE="stream_state: continuous queries in SQL not available in this build"
check_server "setup"

# What a configuration's runs are skipped for, or nothing.
skip_reason() {	# configuration
	case $1 in
	cq | cq_hll)
		if [ -n "${CQ_WHY[$1]}" ]; then
			if [ "$1" = cq_hll ] && [ "$HAVE_HLL" = 0 ]; then echo "$HLL_WHY"; else echo "$NOT_AVAILABLE"; fi
		fi
		;;
	plpgsql_hll) echo "${CQ_WHY[plpgsql_hll]:-}" ;;
	esac
}

# The window the checks read: at the last event, its end the first slide
# boundary after it.
AT=$(sql "SELECT '$BASE'::timestamptz + ($NROWS - 1) * interval '300 microseconds'")
WEND=$(sql "SELECT date_bin('$SLIDE', '$AT'::timestamptz, 'epoch') + interval '$SLIDE'")
WSTART=$(sql "SELECT '$WEND'::timestamptz - interval '$WINDOW'")
echo "checks read the window at '$AT': [$WSTART, $WEND)"

# ---------------------------------------------------------------- checks
# Each prints "<mismatching rows> <rows compared>", or "ERROR: ..." when the
# check could not run.
check_plpgsql() {	# hll 0|1
	local pages_truth="" pages_cmp=""
	if [ "$1" = 1 ]; then
		pages_truth=", hll_cardinality(hll_add_agg(hll_hash_text(page))) AS pages"
		pages_cmp="OR t.pages IS DISTINCT FROM hll_cardinality(c.pages)"
	fi
	sql "WITH truth AS (SELECT user_id, date_bin('5 minutes', ts, 'epoch') AS pane, count(*) AS n,
	                           sum(amount) AS total, max(amount) AS maxv $pages_truth
	                      FROM events GROUP BY 1, 2)
	     SELECT count(*) FILTER (WHERE t.n IS DISTINCT FROM c.n OR t.total IS DISTINCT FROM c.total
	                              OR t.maxv IS DISTINCT FROM c.maxv $pages_cmp) || ' ' || count(*)
	       FROM truth t FULL JOIN pane_counts c USING (user_id, pane)" 2>&1 | head -1 | sed 's/^psql:[^E]*//'
}

check_count() {
	sql "WITH truth AS (SELECT user_id::text AS key, count(*) AS n FROM events
	                     WHERE ts >= '$WSTART' AND ts < '$WEND' GROUP BY 1)
	     SELECT count(*) FILTER (WHERE t.n IS DISTINCT FROM w.count) || ' ' || count(*)
	       FROM truth t FULL JOIN stream_state.window_counts('c', '$AT') w USING (key)" 2>&1 | head -1 | sed 's/^psql:[^E]*//'
}

# window_result at AT with the query's own columns (from describe_query)
# against the query text run over the rows of that window (a CTE named
# events hides the table), joined on the query's keys: a key whose row
# differs or is missing on one side is one mismatch.
check_cq() {	# configuration
	local name text cols keys
	name=$(qname "$1")
	text=$(qtext "$1")
	[ "$HAVE_WINDOW_RESULT" -gt 0 ] || { echo "ERROR: no stream_state.window_result"; return; }
	cols=$(sql "SELECT string_agg(quote_ident(column_name) || ' ' || column_type::text, ', ' ORDER BY position)
	              || ' ' || string_agg(quote_ident(column_name), ', ') FILTER (WHERE kind = 'key')
	              FROM stream_state.describe_query(\$cq\$$text\$cq\$) WHERE position IS NOT NULL" 2>&1) ||
		{ echo "ERROR: describe_query: $(head -1 <<<"$cols")"; return; }
	keys=${cols##* }
	cols=${cols% *}
	sql "WITH events AS (SELECT * FROM public.events WHERE ts >= '$WSTART' AND ts < '$WEND'),
	          got AS (SELECT * FROM stream_state.window_result('$name', at => '$AT') AS t($cols)),
	          truth AS ($text)
	     SELECT count(*) FILTER (WHERE g IS DISTINCT FROM t) || ' ' || count(*)
	       FROM got g FULL JOIN truth t USING ($keys)" 2>&1 | head -1 | sed 's/^psql:[^E]*//'
}

# ---------------------------------------------------------------- one run
# Sets R_INS R_APPLY R_CHECK (R_APPLY "-" without a query).
one_run() {	# configuration label
	local cfg=$1 r t0 t1 t2 t3 ok wait=false stats=""
	R_INS=NA R_APPLY=- R_CHECK=-
	LOGOFF=$(stat -c %s "$T/server.log")	# log_complaints: this run's lines only
	fresh_table "$cfg" || { check_server "setup of $cfg, run $2"; die "setting up $cfg failed"; }
	case $cfg in count | cq | cq_hll) wait=true ;; esac
	r=$("${PSQL[@]}" -v base="$BASE" -v amount="$AMOUNT" -v nrows="$NROWS" -v nkeys="$NKEYS" -v stmts="$NSTMTS" -v wait="$wait" \
		-f "$HERE/cq_insert.sql" | grep '^RESULT')
	check_server "$cfg, run $2"
	read -r _ t0 t1 t2 t3 ok <<<"${r:-RESULT NA NA NA NA NA}"
	R_INS=$(calc "$t2 - $t0")
	[ "$wait" = true ] && R_APPLY=$(calc "$t3 - $t1")
	case $cfg in
	plpgsql) R_CHECK=$(check_plpgsql 0) ;;
	plpgsql_hll) R_CHECK=$(check_plpgsql 1) ;;
	count) R_CHECK=$(check_count) ;;
	cq | cq_hll) R_CHECK=$(check_cq "$cfg") ;;
	esac
	if [ "$wait" = true ]; then
		stats=$(sql "SELECT 'keys ' || keys || ' panes ' || panes || ' state_bytes ' || state_bytes || ' ' || status
		               FROM stream_state.queries WHERE name = '$(qname "$cfg")'" 2>&1 | head -1)
	elif [ "$cfg" != plain ] && [ "$cfg" != transition ]; then
		stats="counter rows $(sql "SELECT count(*) FROM pane_counts"), $(sql "SELECT pg_size_pretty(pg_total_relation_size('pane_counts'))")"
	fi
	printf '   %-3s %-12s %9s %9s %10s %7s  %-7s %-22s %s\n' "$2" "$cfg" "$(fmt "$R_INS" 3)" "$(fmt "$(calc "$t2 - $t1")" 3)" \
		"$(fmt "$R_APPLY" 3)" "$([ "$wait" = true ] && fmt "$(calc "$t3 - $t2")" 3 || echo -)" "$ok" \
		"$(case $R_CHECK in -) echo - ;; ERROR*) echo "check failed" ;; *) echo "${R_CHECK% *} of ${R_CHECK#* } bad" ;; esac)" "$stats"
	[ "$wait" = true ] && [ "$ok" != t ] && echo "   WARNING: wait_applied() did not return true (got '$ok'); catch-up is a lower bound"
	[[ "$R_CHECK" == ERROR* ]] && echo "   check of $cfg: $R_CHECK"
	log_complaints "$cfg, run $2"
}

# ---------------------------------------------------------------- warm-up
echo
echo "== warm-up: one unmeasured $NROWS-row plain insert (creates WAL segments, warms caches)"
one_run plain warm

# ---------------------------------------------------------------- rounds
echo
echo "== $RUNS rounds of: plain, ${SUBJECTS[*]}; $NROWS rows in $NSTMTS statement(s), one transaction"
echo "   insert = first INSERT until COMMIT returned; catch-up = just before COMMIT until wait_applied() returned"
echo "   check = rows of the result that differ from a GROUP BY of the source (counter table: per (user, pane);"
echo "           stream_state: per user, window at '$AT')"
echo "   run config        insert_s  commit_s  catchup_s  wait_s  applied check                  state"
declare -A INS=() APPLY=() RINS=() RAPPLY=() CHECKS=()
for s in "${SUBJECTS[@]}"; do
	reason=$(skip_reason "$s")
	[ -n "$reason" ] && echo "   $s: skipped: $reason"
done
for i in $(seq 1 "$RUNS"); do
	one_run plain "$i"
	base_ins=$R_INS
	INS[plain]+="$R_INS "
	for s in "${SUBJECTS[@]}"; do
		[ -n "$(skip_reason "$s")" ] && continue
		one_run "$s" "$i"
		INS[$s]+="$R_INS "
		RINS[$s]+="$(div "$R_INS" "$base_ins") "
		if [ "$R_APPLY" != - ]; then
			APPLY[$s]+="$R_APPLY "
			RAPPLY[$s]+="$(div "$R_APPLY" "$R_INS") "
		fi
		if [[ "$R_CHECK" == ERROR* ]]; then CHECKS[$s]+="ERROR/"; else CHECKS[$s]+="${R_CHECK%% *}/"; fi
	done
done
sql "SELECT stream_state.drop_query(name) FROM stream_state.query_def" >/dev/null
sql "DROP TABLE IF EXISTS events, pane_counts" >/dev/null
check_server "the end"

# ---------------------------------------------------------------- table
med() { median ${1:-}; }	# a space-separated list -> its median
row() { printf '%-38s | %9s | %7s | %-13s | %10s | %8s | %-13s | %s\n' "$@"; }
rule() { row "$(printf '%38s' '' | tr ' ' -)" "---------" "-------" "-------------" "----------" "--------" "-------------" "-----------"; }
{
	echo "stream_state continuous query bench  $(date -u '+%Y-%m-%d %H:%M:%S UTC')  $(nproc) cores  git $(git_desc)"
	echo "$("$PGBIN/postgres" --version), stream_state $(sql "SELECT extversion FROM pg_extension WHERE extname = 'stream_state'")"
	echo "command: $CMD"
	echo "BENCH_ROWS=$NROWS BENCH_RUNS=$RUNS BENCH_KEYS=$NKEYS BENCH_STATEMENTS=$NSTMTS BENCH_AMOUNT=$AMOUNT; window $WINDOW sliding by $SLIDE"
	echo "median of $RUNS runs; ratios = median of the per-run ratios"
	echo
	row "configuration" "insert_s" "÷ plain" "target" "catch-up_s" "÷ insert" "target" "mismatches"
	rule
	row "${LABEL[plain]}, $NROWS rows" "$(fmt "$(med "${INS[plain]:-}")" 3)" "1" "-" "-" "-" "-" "-"
	for s in "${SUBJECTS[@]}"; do
		reason=$(skip_reason "$s")
		if [ -n "$reason" ]; then
			printf '%-38s | %s\n' "${LABEL[$s]}" "$reason"
			continue
		fi
		ri=$(med "${RINS[$s]:-}")
		ra=$(med "${RAPPLY[$s]:-}")
		case $s in
		cq | cq_hll) ti="<= 1.3 ($(verdict "$ri" '<=' 1.3))" ta="<= 0.3 ($(verdict "$ra" '<=' 0.3))" ;;
		count) ti="reference" ta="reference" ;;
		transition) ti="floor" ta="-" ;;
		*) ti="-" ta="-" ;;
		esac
		if [ -z "${APPLY[$s]:-}" ]; then
			row "${LABEL[$s]}" "$(fmt "$(med "${INS[$s]:-}")" 3)" "$(fmt "$ri" 2)" "$ti" "-" "-" "-" "${CHECKS[$s]%/}"
		else
			row "${LABEL[$s]}" "$(fmt "$(med "${INS[$s]:-}")" 3)" "$(fmt "$ri" 2)" "$ti" \
				"$(fmt "$(med "${APPLY[$s]:-}")" 3)" "$(fmt "$ra" 2)" "$ta" "${CHECKS[$s]%/}"
		fi
	done
	echo
	echo "insert: INSERT ... SELECT of $NROWS rows ($NKEYS random users, 300 us apart) in $NSTMTS statement(s), with COMMIT."
	echo "transition table only: the same kind of trigger returning at once; PostgreSQL fills its transition table"
	echo "  (a tuplestore, spilled to a temporary file past work_mem) all the same: every trigger below pays it."
	if [ -n "${RINS[transition]:-}" ]; then
		for s in count cq cq_hll; do
			[ -n "${RINS[$s]:-}" ] || continue
			echo "  $s beyond the transition table: $(fmt "$(calc "$(med "${RINS[$s]}") - $(med "${RINS[transition]}")")" 2) of the plain insert"
		done
	fi
	echo "PL/pgSQL: AFTER INSERT statement trigger (REFERENCING NEW TABLE) upserting (user_id, 5 min pane) rows of a"
	echo "  counter table: count, sum(amount), max(amount) (+ hll_add_agg(hll_hash_text(page)), merged by hll_union);"
	echo "  its work is done inside the insert, so it has no catch-up."
	echo "stream_state: create_query(..., time_column => 'ts', window_size => '$WINDOW', slide => '$SLIDE');"
	echo "  catch-up = just before COMMIT until wait_applied() returned, ÷ the insert of the same run."
	echo "mismatches: per run, rows differing from a GROUP BY of the source (must be 0); 'ERROR' = check could not run."
	for c in cq cq_hll; do
		[ -n "${CQ_WHY[$c]:-}" ] && [[ " ${SUBJECTS[*]} " == *" $c "* ]] && echo "$c: ${CQ_WHY[$c]}"
	done
} >"$T/table.txt"
echo
echo "== results"
cat "$T/table.txt"
cp "$T/table.txt" "$TABLE_OUT"
echo
echo "results: $OUT (table: $TABLE_OUT)"
