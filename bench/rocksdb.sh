#!/usr/bin/env bash
# bench/rocksdb.sh - the rocksdb backend against the memory backend, and
# against itself holding 50x the state, as ratios measured in the same run.
#
#   bash bench/rocksdb.sh        (as root; about 15 minutes, half of it loading
#                                 the 50M entries; needs about 10 GB free in /tmp)
#
# (Estimated from a run at 1/25 of the sizes, 75 s on 2 cores, which loaded
# about 130k entries/s; a full-size run has not been timed.)
#
# Targets:
#   1. apply throughput, rocksdb / memory                                  >= 0.5
#   2. window_count point reads per second, rocksdb / memory               >= 0.5
#   3. bytes on disk per live (key, pane) entry (reported)
#   4. insert + apply throughput of a batch into a rocksdb query holding
#      BENCH_BIG_ENTRIES (50M) (key, pane) entries, more than the memory
#      backend's limit, / the same into one holding 1M                    >= 0.5
#
# Starts a throwaway PostgreSQL 15 server as user postgres in a temp dir
# (socket in that dir, no TCP; bench/lib.sh) with test/stream_state.conf plus
# the settings below: stream_state.memory_limit = BENCH_MEMORY_LIMIT, and no
# periodic stream_state checkpoints (the script takes them where it needs
# them).  Each part has its own database, so each has its own worker and
# RocksDB, holding only that part's state.  Before every measured run: a
# stream_state.checkpoint() (which flushes RocksDB's memtables), CHECKPOINT,
# wait_applied, and no RocksDB compaction running or pending (polled in
# rocksdb_stats, at most 600 s; the wait is printed as settle_s).
#
#  1. database apply, BENCH_RUNS times, alternating memory and rocksdb, after
#     one unmeasured run of each: bench/insert_run.sql, a BENCH_ROWS-row
#     INSERT ... SELECT (100k random keys, rows 300 us apart) into a fresh
#     table with one 5 min window / 1 min slide query on that backend.
#     t_apply = from just before COMMIT until wait_applied() returned (as (b)
#     of bench/run.sh); ratio = t_apply(memory) / t_apply(rocksdb).  The
#     insert times (including the COMMIT) are printed too.
#  2. database bench: the same BENCH_ROWS rows in one table with two such
#     queries, q_mem (memory) and q_rocks (rocksdb), both checked against a
#     plain SQL count for 300 keys; then BENCH_RUNS times, alternating,
#     pgbench -n -T BENCH_PGBENCH_SECONDS -c 2 -j 2 of window_count of a
#     random key of the 100k at the data's last minute, with
#     read_consistency = none, on q_mem, then on q_rocks, whose read cache
#     (rocksdb_read_cache_size, default size) starts empty; then BENCH_RUNS
#     times more with the read cache off (rocksdb_read_cache_size = 0).
#  3. after a stream_state.checkpoint() of database bench: sst_bytes of its
#     rocksdb_stats / the live (key, pane) entries of q_rocks (rows of
#     stream_state.state), beside q_mem's state_bytes / panes (shared memory),
#     and du -sb of $PGDATA/stream_state/<database oid>/rocksdb.  The same
#     for database big of 4 (every entry live there), after its load and
#     after its batches (flushed files are LZ4, the bottommost level zstd).
#  4. databases small and big, one rocksdb query q each on events(k, ts)
#     (1 hour window, 6 min slide, 100 days lateness), loaded with
#     BENCH_SMALL_ENTRIES and BENCH_BIG_ENTRIES (key, pane) entries: keys x
#     10 panes, count 1 each, BENCH_LOAD_ROWS rows per INSERT, wait_applied
#     after each (load times printed).  Then BENCH_RUNS times, alternating
#     small and big, after one unmeasured batch of each:
#     bench/rocksdb_batch.sql, BENCH_ROWS rows on random existing (key, pane)
#     entries, timed from just before the INSERT until wait_applied()
#     returned; ratio = throughput(big) / throughput(small).  The last checks
#     compare window_count with a plain SQL count for 300 keys, and the
#     whole state (stream_state.state) with the table where it has at most
#     10M entries, in both.  The memory backend's need for the big state is
#     estimated from a 10k-key memory query of the same shape and compared
#     with memory_limit.
#
# Every ratio is the median of the per-pair ratios; other columns are medians.
# Output goes to bench/out/rocksdb-<date>.txt, the result table also to
# bench/out/rocksdb.txt, the server log to bench/out/rocksdb-server-<date>.log.
#
# Environment knobs (defaults in brackets):
#   PGBIN [/usr/lib/postgresql/15/bin]   the PostgreSQL 15 to run (its pg_config
#                          says where stream_state.so must be installed)
#   BENCH_SKIP_INSTALL=1   do not run scripts/setup.sh / make install first (with
#                          another PGBIN: make PG_CONFIG=$PGBIN/pg_config install)
#   BENCH_RUNS [3]  BENCH_ROWS [2000000]  BENCH_PGBENCH_SECONDS [15]
#   BENCH_BIG_ENTRIES [50000000]  BENCH_SMALL_ENTRIES [1000000, or
#                          BENCH_BIG_ENTRIES / 50 if that is not smaller]
#                          (key, pane) entries of 4, rounded up to multiples of 10
#   BENCH_LOAD_ROWS [5000000]  rows per INSERT while loading 4
#   BENCH_MEMORY_LIMIT [256MB]  stream_state.memory_limit of the bench server
#   BENCH_EXTRA_CONF='stream_state.rocksdb_cache_size = 256MB'
#                          extra postgresql.conf lines (printed)
# A smoke run (about a minute):
#   BENCH_ROWS=20000 BENCH_BIG_ENTRIES=200000 BENCH_RUNS=1 BENCH_PGBENCH_SECONDS=2 bash bench/rocksdb.sh
set -u -o pipefail

# how this run was started, for the result table
CMD="$(for v in $(compgen -e | grep -E '^(PGBIN|BENCH_[A-Z_]+)$' | sort); do
	printf '%s=%q ' "$v" "${!v}"
done)bash bench/rocksdb.sh"

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
RUNS=${BENCH_RUNS:-3}
NROWS=${BENCH_ROWS:-2000000}
PGB_T=${BENCH_PGBENCH_SECONDS:-15}
PANES=10
BIG_ASKED=${BENCH_BIG_ENTRIES:-50000000}
BIG_KEYS=$(((BIG_ASKED + PANES - 1) / PANES))
BIG_ENTRIES=$((BIG_KEYS * PANES))
SMALL_ASKED=${BENCH_SMALL_ENTRIES:-1000000}
SMALL_NOTE=""
if [ "$SMALL_ASKED" -ge "$BIG_ENTRIES" ]; then
	SMALL_NOTE="(BENCH_SMALL_ENTRIES $SMALL_ASKED is not below the big state's $BIG_ENTRIES: using 1/50 of it)"
	SMALL_ASKED=$((BIG_ENTRIES / 50))
fi
SMALL_KEYS=$(((SMALL_ASKED + PANES - 1) / PANES))
SMALL_ENTRIES=$((SMALL_KEYS * PANES))
LOAD_ROWS=${BENCH_LOAD_ROWS:-5000000}
MEMLIMIT=${BENCH_MEMORY_LIMIT:-256MB}
PROBE_KEYS=10000	# keys of the memory query that sizes the big state's shape
FULL_CHECK_MAX=10000000	# 4 reads the whole state of a query this size or smaller

# 1-3: NROWS rows 300 us apart from BASE (2M rows = 10 minutes), 5 min / 1 min
# windows; 2 reads at AT = BASE + NROWS * 300 us, truncated to the minute
# (BASE + 10 min for 2M rows, as (c) of run.sh): the window [AT - 4 min,
# AT + 1 min), still open.  4: 10 panes of 6 minutes from BASE; the checks
# read [BASE, BASE + 1 h) at AT4.
BASE='2024-06-01 00:00:00+00'
AT4='2024-06-01 00:54:00+00'

OUT=$OUTDIR/rocksdb-$STAMP.txt
TABLE_OUT=$OUTDIR/rocksdb.txt
SLOG=$OUTDIR/rocksdb-server-$STAMP.log
STOP_TIMEOUT=120
bench_output "$OUT"

echo "stream_state rocksdb bench  $(date -u '+%Y-%m-%d %H:%M:%S UTC')  host $(hostname)  $(nproc) cores  $(free -g | awk '/^Mem:/ {print $2}') GiB"
echo "git: $(git_desc)"
echo "command: $CMD"
echo "runs=$RUNS rows=$NROWS pgbench_seconds=$PGB_T memory_limit=$MEMLIMIT"
echo "scale: small $SMALL_ENTRIES entries ($SMALL_KEYS keys x $PANES panes), big $BIG_ENTRIES ($BIG_KEYS keys x $PANES panes), $LOAD_ROWS rows per load INSERT"
[ -n "$SMALL_NOTE" ] && echo "       $SMALL_NOTE"
[ -n "${BENCH_EXTRA_CONF:-}" ] && echo "extra postgresql.conf: $BENCH_EXTRA_CONF"
echo

# ---------------------------------------------------------------- install
bench_install

# ---------------------------------------------------------------- server
bench_initdb ssrocks bench/rocksdb.sh <<EOF
stream_state.memory_limit = $MEMLIMIT
stream_state.checkpoint_interval = 0		# only the checkpoints this script asks for
shared_buffers = 1GB
max_wal_size = 16GB
checkpoint_timeout = 30min
synchronous_commit = on
log_line_prefix = '%m [%p] '
EOF
bench_start_server 300
echo "server: $T (port $PORT), $("$PGBIN/postgres" --version)"
echo "data directory filesystem: $(findmnt -n -o SOURCE,FSTYPE -T "$T/data" | tr -s ' ')"
bench_connect
sqlin() { "${PSQL[@]}" -d "$1" -c "$2"; }	# database sql
echo "rocksdb_cache_size = $(sqlin postgres "SHOW stream_state.rocksdb_cache_size")," \
	"rocksdb_write_buffer_size = $(sqlin postgres "SHOW stream_state.rocksdb_write_buffer_size")"

# ---------------------------------------------------------------- helpers
new_database() {	# name: with the extension
	"${PSQL[@]}" -d postgres -c "CREATE DATABASE $1" || die "CREATE DATABASE $1 failed"
	sqlin "$1" 'CREATE EXTENSION stream_state' || { check_server "setup of $1"; die "CREATE EXTENSION in $1 failed"; }
}

db_oid() { sqlin postgres "SELECT oid FROM pg_database WHERE datname = '$1'"; }

rocksdb_dir() { echo "$T/data/stream_state/$(db_oid "$1")/rocksdb"; }

# Wait until no RocksDB compaction runs or is pending in each database;
# prints the seconds waited.  A database without a RocksDB (never had a
# rocksdb query), whose RocksDB is not open (rocksdb_stats fails) or that
# has no worker yet (no row) has nothing to wait for.
quiesce() {	# database...
	local t0 db st deadline
	t0=$(now)
	deadline=$(($(date +%s) + 600))
	for db in "$@"; do
		[ -e "$(rocksdb_dir "$db")/CURRENT" ] || continue
		while :; do
			st=$(sqlin "$db" "SELECT running_compactions || ' ' || pending_compaction_bytes
			                    FROM stream_state.rocksdb_stats WHERE scope = 'database'" 2>&1)
			[ "$st" = "0 0" ] || [ -z "$st" ] && break
			if ! [[ "$st" =~ ^[0-9]+\ [0-9]+$ ]]; then
				[[ "$st" == *"RocksDB of this database is not open"* ]] ||
					echo "   WARNING: $db: rocksdb_stats: $st" >&2
				break
			fi
			if [ "$(date +%s)" -gt "$deadline" ]; then
				echo "   WARNING: $db: RocksDB compactions still running/pending after 600 s ($st)" >&2
				break
			fi
			sleep 0.2
		done
	done
	calc "$(now) - $t0"
}

# The same starting point for every measured run: state checkpointed
# (RocksDB flushed; a database without queries has nothing to checkpoint),
# CHECKPOINT, no compaction.  Sets SETTLE_S.
prepare() {	# database...
	local db out
	for db in "$@"; do
		out=$(sqlin "$db" "SELECT stream_state.checkpoint()
		                    WHERE EXISTS (SELECT 1 FROM stream_state.query_def)" 2>&1) ||
			echo "   WARNING: stream_state.checkpoint() in $db failed: $out"
	done
	sqlin "$1" "CHECKPOINT" >/dev/null
	SETTLE_S=$(quiesce "$@")
}

rdb_stat() {	# database column -> that column of the 'database' row of rocksdb_stats
	sqlin "$1" "SELECT $2 FROM stream_state.rocksdb_stats WHERE scope = 'database'"
}

show_rdb_stats() {	# database
	"${PSQL[@]}" -d "$1" -F ' ' -c "SELECT 'estimated_entries', estimated_entries, 'sst_bytes', sst_bytes,
	        'memtable_bytes', memtable_bytes, 'block_cache', block_cache_bytes || '/' || block_cache_capacity,
	        'pending_compaction_bytes', pending_compaction_bytes, 'running_compactions', running_compactions,
	        'read_cache keys/bytes/hits/misses', read_cache_keys || '/' || read_cache_bytes || '/'
	        || read_cache_hits || '/' || read_cache_misses
	   FROM stream_state.rocksdb_stats WHERE scope = 'database'" | sed 's/^/   rocksdb_stats: /'
}

set_read_cache() {	# size: stream_state.rocksdb_read_cache_size, reloaded
	sql "ALTER SYSTEM SET stream_state.rocksdb_read_cache_size = '$1'" >/dev/null
	sql "SELECT pg_reload_conf()" >/dev/null
	sleep 2		# the worker drops its cache at its next loop (within worker_naptime)
}

bytes_h() { if isnum "$1"; then numfmt --to=iec --suffix=B --format='%.1f' "$1"; else echo "$1"; fi; }

# ---------------------------------------------------------------- 1. apply
new_database apply
echo
echo "== 1. apply: $NROWS-row INSERT ... SELECT, one 5 min / 1 min query, memory vs rocksdb (database apply)"
echo "   t_apply = just before COMMIT until wait_applied() returned; settle_s = wait for RocksDB compactions before the run"
echo "   run backend   insert_s  commit_s  t_apply_s  wait_s   applied  settle_s"
# one run of bench/insert_run.sql on backend $1; sets R_INS R_APPLY
apply_run() {	# backend label
	local r t0 t1 t2 t3 ok
	prepare apply	# with the previous run's query: its state is flushed before it is dropped
	sqlin apply "SELECT stream_state.drop_query(name) FROM stream_state.query_def WHERE name = 'q'" >/dev/null
	sqlin apply "DROP TABLE IF EXISTS ev" >/dev/null
	r=$("${PSQL[@]}" -d apply -v tbl=ev -v subject=true -v backend="$1" -v base="$BASE" -v nrows="$NROWS" \
		-f "$HERE/insert_run.sql" | grep '^RESULT')
	read -r _ t0 t1 t2 t3 ok <<<"${r:-RESULT NA NA NA NA NA}"
	R_INS=$(calc "$t2 - $t0")
	R_APPLY=$(calc "$t3 - $t1")
	printf '   %-3s %-8s %9s %9s %10s %7s   %-7s %8s\n' "$2" "$1" "$(fmt "$R_INS" 3)" "$(fmt "$(calc "$t2 - $t1")" 3)" \
		"$(fmt "$R_APPLY" 3)" "$(fmt "$(calc "$t3 - $t2")" 3)" "$ok" "$(fmt "$SETTLE_S" 1)"
	[ "$ok" = t ] || echo "   WARNING: wait_applied() did not return true (got '$ok'); t_apply is a lower bound"
	check_server "1 ($1, run $2)"
}
apply_run memory warm
apply_run rocksdb warm
A_INS_M=(); A_INS_R=(); A_M=(); A_R=(); A_RATIO=()
for i in $(seq 1 "$RUNS"); do
	apply_run memory "$i"
	A_INS_M+=("$R_INS"); A_M+=("$R_APPLY")
	m=$R_APPLY
	apply_run rocksdb "$i"
	A_INS_R+=("$R_INS"); A_R+=("$R_APPLY"); A_RATIO+=("$(div "$m" "$R_APPLY")")
done
sqlin apply "SELECT stream_state.drop_query(name) FROM stream_state.query_def WHERE name = 'q'" >/dev/null
sqlin apply "DROP TABLE IF EXISTS ev" >/dev/null
log_complaints "1"

# Shared memory a memory query takes per entry in the shape of 4 (10 panes
# per key): PROBE_KEYS keys x 10 panes.
sqlin apply "CREATE TABLE shape (k bigint, ts timestamptz)" >/dev/null
sqlin apply "SELECT stream_state.create_query('q_shape', 'shape', key_column => 'k', time_column => 'ts',
	window_size => '1 hour', slide => '6 minutes', lateness => '100 days', backend => 'memory')" >/dev/null
sqlin apply "INSERT INTO shape SELECT g, '$BASE'::timestamptz + p * interval '6 minutes'
	FROM generate_series(1, $PROBE_KEYS) AS g, generate_series(0, $((PANES - 1))) AS p" >/dev/null
sqlin apply "SELECT stream_state.wait_applied(NULL, '300 seconds')" >/dev/null
read -r SHAPE_BYTES SHAPE_PANES <<<"$(sqlin apply "SELECT state_bytes, panes FROM stream_state.queries WHERE name = 'q_shape'" | tr '|' ' ')"
SHAPE_PER=$(div "${SHAPE_BYTES:-NA}" "${SHAPE_PANES:-NA}")
sqlin apply "SELECT stream_state.drop_query('q_shape')" >/dev/null
sqlin apply "DROP TABLE shape" >/dev/null

# ---------------------------------------------------------------- 2. reads
new_database bench
echo
echo "== 2. point reads: $NROWS rows into one table with q_mem (memory) and q_rocks (rocksdb) (database bench)"
sql "CREATE TABLE reads (user_id bigint, ts timestamptz, kind text)" >/dev/null
for qb in q_mem:memory q_rocks:rocksdb; do
	sql "SELECT stream_state.create_query('${qb%%:*}', 'reads', key_column => 'user_id', time_column => 'ts',
	     window_size => '5 minutes', slide => '1 minute', backend => '${qb#*:}')" >/dev/null ||
		die "create_query ${qb%%:*} failed"
done
t0=$(now)
sql "INSERT INTO reads SELECT (random() * 99999)::bigint, '$BASE'::timestamptz + (g - 1) * interval '300 microseconds', 'click'
     FROM generate_series(1, $NROWS) AS g" >/dev/null || die "the insert into reads failed"
t1=$(now)
ok=$(sql "SELECT stream_state.wait_applied(NULL, '600 seconds')")
t2=$(now)
echo "   insert $(fmt "$(calc "$t1 - $t0")" 3) s, applied (both queries) $(fmt "$(calc "$t2 - $t1")" 3) s later (wait_applied: $ok)"
check_server "2 (load)"
AT=$(sql "SELECT date_trunc('minute', '$BASE'::timestamptz + $NROWS * interval '300 microseconds')")
WSTART=$(sql "SELECT '$AT'::timestamptz - interval '4 minutes'")
WEND=$(sql "SELECT '$AT'::timestamptz + interval '1 minute'")
C_CHECK=$(sql "
	WITH truth AS (SELECT user_id, count(*) AS n FROM reads
	                WHERE ts >= '$WSTART' AND ts < '$WEND' AND user_id < 300 GROUP BY user_id),
	     got AS (SELECT k, coalesce(t.n, 0) AS n,
	                    stream_state.window_count('q_mem', k::bigint, '$AT') AS m,
	                    stream_state.window_count('q_rocks', k::bigint, '$AT') AS r
	               FROM generate_series(0, 299) AS k LEFT JOIN truth t ON t.user_id = k)
	SELECT 'q_mem ' || count(*) FILTER (WHERE m <> n) || ', q_rocks ' || count(*) FILTER (WHERE r <> n)
	       || ' mismatches of 300 keys; sums ' || sum(m) || ' / ' || sum(r) || ', expected ' || sum(n)
	  FROM got" 2>&1)
echo "   window_count check at '$AT' (window [$WSTART, $WEND)): $C_CHECK"
prepare bench
echo "   after stream_state.checkpoint(): settle $(fmt "$SETTLE_S" 1) s"
show_rdb_stats bench

echo "   pgbench -n -T $PGB_T -c 2 -j 2, window_count of random keys 0..99999 at '$AT', read_consistency=none"
cat >"$T/read_mem.sql" <<EOF
\set k random(0, 99999)
SELECT stream_state.window_count('q_mem', :k::bigint, '$AT');
EOF
cat >"$T/read_rocks.sql" <<EOF
\set k random(0, 99999)
SELECT stream_state.window_count('q_rocks', :k::bigint, '$AT');
EOF
# q_rocks with its read cache (stream_state.rocksdb_read_cache_size, default
# 32MB: enough for the 100k keys; run 1 starts with it empty), and then with
# the cache off (every read asks the worker), each against q_mem
C_M=(); C_R=(); C_RATIO=(); C_N=(); C_NRATIO=()
for i in $(seq 1 "$RUNS"); do
	m=$(run_pgbench "$T/read_mem.sql" "read_mem_$i")
	r=$(run_pgbench "$T/read_rocks.sql" "read_rocks_$i")
	printf '   %-3s q_mem %10s tps   q_rocks %10s tps (read cache on)\n' "$i" "$(fmt "$m" 0)" "$(fmt "$r" 0)"
	check_server "2 (run $i)"
	C_M+=("$m"); C_R+=("$r"); C_RATIO+=("$(div "$r" "$m")")
done
show_rdb_stats bench
set_read_cache 0
for i in $(seq 1 "$RUNS"); do
	m=$(run_pgbench "$T/read_mem.sql" "read_mem_nc_$i")
	r=$(run_pgbench "$T/read_rocks.sql" "read_rocks_nc_$i")
	printf '   %-3s q_mem %10s tps   q_rocks %10s tps (read cache off)\n' "$i" "$(fmt "$m" 0)" "$(fmt "$r" 0)"
	check_server "2 (cache off, run $i)"
	C_N+=("$r"); C_NRATIO+=("$(div "$r" "$m")")
done
show_rdb_stats bench
sql "ALTER SYSTEM RESET stream_state.rocksdb_read_cache_size" >/dev/null
sql "SELECT pg_reload_conf()" >/dev/null
log_complaints "2"

# ---------------------------------------------------------------- 3. bytes on disk
echo
echo "== 3. bytes on disk per live (key, pane) entry (database bench, after stream_state.checkpoint())"
prepare bench
D_SST=$(rdb_stat bench sst_bytes)
D_LIVE_R=$(sql "SELECT count(*) FROM stream_state.state WHERE query = 'q_rocks'")
D_LIVE_M=$(sql "SELECT count(*) FROM stream_state.state WHERE query = 'q_mem'")
D_WRITTEN=$(sql "SELECT count(*) FROM (SELECT DISTINCT user_id, date_trunc('minute', ts) FROM reads) s")
read -r D_MBYTES D_MPANES <<<"$(sql "SELECT state_bytes, panes FROM stream_state.queries WHERE name = 'q_mem'" | tr '|' ' ')"
D_DIR=$(rocksdb_dir bench)
D_DU=$(du -sb "$D_DIR" | cut -f1)
D_PER=$(div "$D_SST" "$D_LIVE_R")
D_MPER=$(div "${D_MBYTES:-NA}" "${D_MPANES:-NA}")
show_rdb_stats bench
echo "   live (key, pane) entries in stream_state.state: q_rocks $D_LIVE_R, q_mem $D_LIVE_M" \
	"$([ "$D_LIVE_R" = "$D_LIVE_M" ] || echo '   WARNING: they differ')"
echo "   (key, pane) entries ever written: $D_WRITTEN (panes of closed windows stay in the SST files until a compaction drops them)"
echo "   sst_bytes $D_SST / $D_LIVE_R live = $(fmt "$D_PER" 1) B per live entry; / $D_WRITTEN written = $(fmt "$(div "$D_SST" "$D_WRITTEN")" 1) B"
echo "   du -sb $D_DIR: $D_DU bytes = $(fmt "$(div "$D_DU" "$D_LIVE_R")" 1) B per live entry"
echo "   memory backend (q_mem): state_bytes $D_MBYTES / panes $D_MPANES = $(fmt "$D_MPER" 1) B per entry (shared memory)"

# ---------------------------------------------------------------- 4. scale
echo
echo "== 4. scale: rocksdb queries holding $SMALL_ENTRIES and $BIG_ENTRIES (key, pane) entries (databases small and big)"
MEMLIMIT_B=$(sql "SELECT pg_size_bytes(current_setting('stream_state.memory_limit'))")
NEED_B=NA
isnum "$SHAPE_PER" && NEED_B=$(awk -v e="$BIG_ENTRIES" -v b="$SHAPE_PER" 'BEGIN { printf "%.0f", e * b }')
if ! isnum "$NEED_B" || ! isnum "$MEMLIMIT_B"; then
	CMP="?" FIT_MSG="may or may not fit the memory backend (its size per entry is unknown)"
elif [ "$(calc "$NEED_B > $MEMLIMIT_B")" = 1 ]; then
	CMP=">" FIT_MSG="does NOT fit the memory backend"
else
	CMP="<=" FIT_MSG="would fit the memory backend (a small run: memory_limit holds about $(fmt "$(div "$MEMLIMIT_B" "$SHAPE_PER")" 0) entries of this shape)"
fi
echo "   $BIG_ENTRIES entries x $(fmt "$SHAPE_PER" 1) B (state_bytes / panes of a $PROBE_KEYS-key memory query of this shape)"
echo "   = at least $(bytes_h "$NEED_B") $CMP stream_state.memory_limit = $MEMLIMIT: the big state $FIT_MSG"

# Load KEYS keys x PANES panes into database DB (query q on events), one
# INSERT of at most LOAD_ROWS rows at a time, wait_applied after each.
# Sets LOAD_INS_S LOAD_APPLY_S.
load_entries() {	# db keys
	local db=$1 keys=$2 p lo hi ta tb tc ok
	LOAD_INS_S=0 LOAD_APPLY_S=0
	sqlin "$db" "CREATE TABLE events (k bigint, ts timestamptz)" >/dev/null
	sqlin "$db" "SELECT stream_state.create_query('q', 'events', key_column => 'k', time_column => 'ts',
		window_size => '1 hour', slide => '6 minutes', lateness => '100 days', backend => 'rocksdb')" >/dev/null ||
		die "create_query in $db failed"
	for p in $(seq 0 $((PANES - 1))); do
		for ((lo = 1; lo <= keys; lo += LOAD_ROWS)); do
			hi=$((lo + LOAD_ROWS - 1))
			[ "$hi" -gt "$keys" ] && hi=$keys
			ta=$(now)
			# pane p: [BASE + 6p min, BASE + 6(p+1) min); rows spread over its first 5 minutes
			sqlin "$db" "INSERT INTO events SELECT g, '$BASE'::timestamptz + $p * interval '6 minutes'
				+ (g % 300) * interval '1 second' FROM generate_series($lo, $hi) AS g" >/dev/null ||
				die "load of $db failed"
			tb=$(now)
			ok=$(sqlin "$db" "SELECT stream_state.wait_applied(NULL, '1800 seconds')")
			tc=$(now)
			[ "$ok" = t ] || die "load of $db: wait_applied() returned '$ok'"
			check_server "load of $db"
			printf '   %-5s pane %d keys %9d-%-9d insert %7s s  apply %7s s\n' "$db" "$p" "$lo" "$hi" \
				"$(fmt "$(calc "$tb - $ta")" 3)" "$(fmt "$(calc "$tc - $tb")" 3)"
			LOAD_INS_S=$(calc "$LOAD_INS_S + $tb - $ta")
			LOAD_APPLY_S=$(calc "$LOAD_APPLY_S + $tc - $tb")
		done
	done
}

L_S=(); L_ENT=()
for db in small big; do
	new_database "$db"
	if [ "$db" = small ]; then keys=$SMALL_KEYS; else keys=$BIG_KEYS; fi
	load_entries "$db" "$keys"
	t0=$(now)
	prepare "$db"
	t1=$(now)
	total=$(calc "$LOAD_INS_S + $LOAD_APPLY_S")
	echo "   $db: $((keys * PANES)) entries loaded in $(fmt "$total" 1) s (inserts $(fmt "$LOAD_INS_S" 1) s, waiting for apply" \
		"$(fmt "$LOAD_APPLY_S" 1) s) = $(fmt "$(div "$((keys * PANES))" "$total")" 0) entries/s; then checkpoint + compactions" \
		"$(fmt "$(calc "$t1 - $t0")" 1) s"
	eval "LOAD_${db}_S=\$total"
	show_rdb_stats "$db"
	log_complaints "the load of $db"
done
LOAD_small_S=${LOAD_small_S:-NA}
LOAD_big_S=${LOAD_big_S:-NA}

B_SST=$(rdb_stat big sst_bytes)
B_DIR=$(rocksdb_dir big)
B_DU=$(du -sb "$B_DIR" | cut -f1)
B_PER=$(div "$B_SST" "$BIG_ENTRIES")
echo "   3 for big: sst_bytes $B_SST / $BIG_ENTRIES live entries = $(fmt "$B_PER" 1) B per entry;" \
	"du -sb $B_DIR: $B_DU bytes = $(fmt "$(div "$B_DU" "$BIG_ENTRIES")" 1) B"
echo "   window_count check in big after the load: $(sqlin big "SELECT count(*) FILTER (WHERE c <> $PANES) || ' of 300 keys not $PANES'
	FROM (SELECT stream_state.window_count('q', g::bigint, '$AT4') AS c FROM generate_series(1, 300) AS g) s" 2>&1)"

# expected distinct (key, pane) entries a batch touches: E (1 - e^(-rows/E))
distinct() { awk -v e="$1" -v n="$NROWS" 'BEGIN { printf "%.0f", e * (1 - exp(-n / e)) }'; }
echo "   a $NROWS-row batch adds to about $(distinct "$SMALL_ENTRIES") distinct entries in small, $(distinct "$BIG_ENTRIES") in big"
echo "   run db     insert_s  commit_s  apply_s  total_s  rows/s     applied  settle_s"
batch_run() {	# db label; sets R_TOTAL R_TPUT
	local r t0 t1 t2 t3 ok keys
	if [ "$1" = small ]; then keys=$SMALL_KEYS; else keys=$BIG_KEYS; fi
	prepare small big
	r=$("${PSQL[@]}" -d "$1" -v keys="$keys" -v nrows="$NROWS" -v base="$BASE" \
		-f "$HERE/rocksdb_batch.sql" | grep '^RESULT')
	read -r _ t0 t1 t2 t3 ok <<<"${r:-RESULT NA NA NA NA NA}"
	R_TOTAL=$(calc "$t3 - $t0")
	R_TPUT=$(div "$NROWS" "$R_TOTAL")
	printf '   %-3s %-6s %9s %9s %8s %8s %10s %-7s %8s\n' "$2" "$1" "$(fmt "$(calc "$t2 - $t0")" 3)" \
		"$(fmt "$(calc "$t2 - $t1")" 3)" "$(fmt "$(calc "$t3 - $t1")" 3)" "$(fmt "$R_TOTAL" 3)" "$(fmt "$R_TPUT" 0)" \
		"$ok" "$(fmt "$SETTLE_S" 1)"
	[ "$ok" = t ] || echo "   WARNING: wait_applied() did not return true (got '$ok'); the time is a lower bound"
	check_server "4 ($1, run $2)"
}
batch_run small warm
batch_run big warm
S_S=(); S_B=(); S_RATIO=()
for i in $(seq 1 "$RUNS"); do
	batch_run small "$i"
	s=$R_TPUT
	S_S+=("$R_TPUT")
	batch_run big "$i"
	S_B+=("$R_TPUT"); S_RATIO+=("$(div "$R_TPUT" "$s")")
done
prepare small big
echo "   after the batches: stream_state.checkpoint() and compactions settled in $(fmt "$SETTLE_S" 1) s"
show_rdb_stats big
E_SST=$(rdb_stat big sst_bytes)
E_DU=$(du -sb "$B_DIR" | cut -f1)
E_PER=$(div "$E_SST" "$BIG_ENTRIES")
echo "   3 for big after the batches: sst_bytes $E_SST / $BIG_ENTRIES live entries = $(fmt "$E_PER" 1) B per entry;" \
	"du -sb: $E_DU bytes = $(fmt "$(div "$E_DU" "$BIG_ENTRIES")" 1) B"
for db in small big; do
	echo "   window_count check in $db: $(sqlin "$db" "
	WITH truth AS (SELECT k, count(*) AS n FROM events
	                WHERE ts >= '$BASE' AND ts < '$BASE'::timestamptz + interval '1 hour' AND k <= 300 GROUP BY k)
	SELECT count(*) FILTER (WHERE stream_state.window_count('q', g::bigint, '$AT4') <> coalesce(t.n, 0))
	       || ' mismatches of 300 keys, sum=' || sum(stream_state.window_count('q', g::bigint, '$AT4'))
	       || ' expected ' || sum(coalesce(t.n, 0))
	  FROM generate_series(1, 300) AS g LEFT JOIN truth t ON t.k = g" 2>&1)"
done
# every entry and every row, where the state view is not too long to read
for db in small big; do
	if [ "$db" = small ]; then n=$SMALL_ENTRIES; else n=$BIG_ENTRIES; fi
	if [ "$n" -gt "$FULL_CHECK_MAX" ]; then
		echo "   all of $db's state: not checked ($n entries, more than $FULL_CHECK_MAX)"
		continue
	fi
	echo "   all of $db's state: $(sqlin "$db" "
	SELECT CASE WHEN count(*) = $n AND sum(count) = (SELECT count(*) FROM events) THEN 'ok, ' ELSE 'MISMATCH, ' END
	       || count(*) || ' entries (expected $n), counts add up to ' || sum(count)
	       || ' (rows: ' || (SELECT count(*) FROM events) || ')'
	  FROM stream_state.state WHERE query = 'q'" 2>&1)"
done
log_complaints "4"
check_server "the end"

# ---------------------------------------------------------------- table
row() { printf '%-53s | %16s | %16s | %7s | %s\n' "$@"; }
rule() { row "$(printf '%53s' '' | tr ' ' -)" "$(printf '%16s' '' | tr ' ' -)" "$(printf '%16s' '' | tr ' ' -)" "-------" "---------------"; }
a_r=$(median "${A_RATIO[@]}")
c_r=$(median "${C_RATIO[@]}")
c_nr=$(median "${C_NRATIO[@]}")
s_r=$(median "${S_RATIO[@]}")
{
	echo "stream_state rocksdb bench  $(date -u '+%Y-%m-%d %H:%M:%S UTC')  $(nproc) cores  git $(git_desc)"
	echo "command: $CMD"
	echo "median of $RUNS runs; ratio = median of the per-pair ratios"
	echo
	row "metric" "memory" "rocksdb" "ratio" "target"
	rule
	row "(1) t_apply of $NROWS rows (pre-commit->applied), s" "$(fmt "$(median "${A_M[@]}")" 3)" "$(fmt "$(median "${A_R[@]}")" 3)" \
		"$(fmt "$a_r" 3)" ">= 0.5 ($(verdict "$a_r" '>=' 0.5))"
	row "(1) INSERT ... SELECT incl. COMMIT, s" "$(fmt "$(median "${A_INS_M[@]}")" 3)" "$(fmt "$(median "${A_INS_R[@]}")" 3)" "-" "-"
	row "(2) window_count point reads, TPS" "$(fmt "$(median "${C_M[@]}")" 0)" "$(fmt "$(median "${C_R[@]}")" 0)" \
		"$(fmt "$c_r" 3)" ">= 0.5 ($(verdict "$c_r" '>=' 0.5))"
	row "(2) the same, read cache off" "-" "$(fmt "$(median "${C_N[@]}")" 0)" "$(fmt "$c_nr" 3)" "reported"
	row "(3) B per live (key, pane), $D_LIVE_R entries" "$(fmt "$D_MPER" 1) shm" "$(fmt "$D_PER" 1) SST" "-" "reported"
	row "(3) B per (key, pane), $BIG_ENTRIES entries (big)" "$(fmt "$SHAPE_PER" 1) shm est" "$(fmt "$B_PER" 1) SST" "-" "reported"
	row "(3)   the same after the batches of (4)" "-" "$(fmt "$E_PER" 1) SST" "-" "reported"
	echo
	row "metric" "$SMALL_ENTRIES entries" "$BIG_ENTRIES entries" "ratio" "target"
	rule
	row "(4) insert + apply of $NROWS rows, rows/s" "$(fmt "$(median "${S_S[@]}")" 0)" "$(fmt "$(median "${S_B[@]}")" 0)" \
		"$(fmt "$s_r" 3)" ">= 0.5 ($(verdict "$s_r" '>=' 0.5))"
	row "(4) load, s (wait_applied after each INSERT)" "$(fmt "$LOAD_small_S" 1)" "$(fmt "$LOAD_big_S" 1)" "-" "-"
	echo
	echo "(1) ratio = t_apply(memory) / t_apply(rocksdb), i.e. rocksdb's apply throughput / memory's."
	echo "(2) ratio = rocksdb TPS / memory TPS (pgbench -c 2 -j 2 -T $PGB_T, read_consistency=none); read cache"
	echo "    on (rocksdb_read_cache_size default; run 1 starts with it empty), then off (= 0; every read asks the worker)."
	echo "(3) rocksdb: sst_bytes of rocksdb_stats after stream_state.checkpoint() / live entries (stream_state.state);"
	echo "    panes of closed windows stay until a compaction drops them: sst_bytes / $D_WRITTEN entries written ="
	echo "    $(fmt "$(div "$D_SST" "$D_WRITTEN")" 1) B. Freshly flushed (L0) files are LZ4, the bottommost level zstd: bytes per entry"
	echo "    fall once compactions have moved the data down. du -sb of the rocksdb directory: $D_DU B"
	echo "    ($(fmt "$(div "$D_DU" "$D_LIVE_R")" 1) B per live entry); big: $B_DU B after the load, $E_DU B after the batches."
	echo "    memory: state_bytes / panes (shared memory); for big, of a $PROBE_KEYS-key query of the same shape."
	echo "    Memory backend: $BIG_ENTRIES entries need at least $(bytes_h "$NEED_B") $CMP memory_limit = $MEMLIMIT:"
	echo "    the big state $FIT_MSG."
	echo "(4) ratio = throughput(big) / throughput(small), time from just before the INSERT until wait_applied() returned;"
	echo "    rows on random existing (key, pane) entries."
} >"$T/table.txt"
echo
echo "== results"
cat "$T/table.txt"
cp "$T/table.txt" "$TABLE_OUT"
echo
echo "results: $OUT (table: $TABLE_OUT)"
