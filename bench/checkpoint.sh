#!/usr/bin/env bash
# bench/checkpoint.sh - checkpoints of the memory backend (or, with
# BENCH_BACKEND=rocksdb, of the rocksdb backend), as ratios against
# baselines measured in the same run.
#
#   bash bench/checkpoint.sh        (as root; about 5 minutes with 10M entries)
#
# Targets (with 10M (key, pane) entries):
#   checkpoint time / time to write and fsync as many bytes sequentially  <= 1.5
#   restore time at start / time to read the checkpoint file               <= 2
#   worker pause during a checkpoint                                       <= 100 ms
#   and the checkpoint's bytes per (key, pane) entry (reported).
#
# Starts a throwaway PostgreSQL 15 server as user postgres in a temp dir
# (socket in that dir, no TCP; bench/lib.sh) with test/stream_state.conf plus
# the settings below, loads BENCH_ENTRIES (key, pane) entries
# (bench/checkpoint_load.sql: BENCH_ENTRIES/10 int8 keys x 10 six-minute
# panes, count 1 each), then:
#
#  1. one unmeasured warm-up checkpoint (gives the size for the baselines);
#  2. BENCH_RUNS times, alternating: baseline = dd of as many bytes from
#     /dev/zero into a new file in the checkpoint directory with conv=fsync
#     (write + fsync), subject = SELECT stream_state.checkpoint().  Checkpoint
#     time, bytes, entries and pause are the extension's own numbers from
#     stream_state.checkpoints (duration = copy + write + fsync + rename;
#     pause = how long the worker stopped applying to copy the state).  A
#     probe client (pgbench, 1 connection: INSERT one row into probe, then
#     wait_applied) runs across each checkpoint and gives the longest
#     commit-to-applied latency seen during the checkpoint and outside it,
#     the pause as a client sees it (it also catches stalls in the write and
#     fsync phases, which the pause column does not count);
#  3. BENCH_RUNS times, alternating, under two cache conditions:
#     cold: sync + echo 3 > /proc/sys/vm/drop_caches, then dd the newest
#           checkpoint file to /dev/null (baseline); stop the server, drop
#           the caches again, start it (subject);
#     warm: the file in the page cache: dd it to /dev/null; restart the server.
#     The restore time is the worker's "Loading the checkpoint took X ms"
#     (DETAIL of "restored checkpoint N of database D"); after each restart the
#     state is checked (sum(panes) of 'q' must be unchanged).
#     With BENCH_BACKEND=rocksdb 'q' keeps its state in RocksDB, which a
#     restart opens instead of loading it (the same log line times that), and
#     the checkpoint is its file plus a RocksDB checkpoint of hard links: the
#     baselines then write and read the bytes of both (the file and every
#     file under stream_state/<db>/rocksdb-ckpt/<id>), and there is no floor.
#     floor: before each restart, bench/memfloor.c (built with cc) writes
#     state_bytes of 'q' (what the restore builds: slot and pane arrays)
#     into a fresh shared anonymous mapping (MAP_HUGETLB if the server got
#     huge pages), as the restore writes into the fresh DSA area; its first
#     write (page faults and the kernel's zeroing included) is the least any
#     restore into this memory layout can take, and the second write of the
#     same memory the least without faults.
#
# Every ratio is the median of the per-pair ratios; other columns are medians.
# Output goes to bench/out/checkpoint-<date>.txt, the result table also to
# bench/out/checkpoint.txt, the server log to bench/out/checkpoint-server-<date>.log.
#
# Environment knobs (defaults in brackets):
#   PGBIN [/usr/lib/postgresql/15/bin]   the PostgreSQL 15 to run
#   BENCH_SKIP_INSTALL=1   do not run scripts/setup.sh / make install first (with
#                          another PGBIN: make PG_CONFIG=$PGBIN/pg_config install)
#   BENCH_ENTRIES [10000000]  (key, pane) entries (rounded up to a multiple of 10)
#   BENCH_RUNS [3]
#   BENCH_MEMORY_LIMIT [4GB]  stream_state.memory_limit of the bench server
#   BENCH_BACKEND [memory]    the backend of 'q': memory or rocksdb
#   BENCH_EXTRA_CONF='...'    extra postgresql.conf lines (printed); e.g. huge pages
#                          (after sysctl vm.nr_hugepages=800, as root):
#                          BENCH_MEMORY_LIMIT=1GB BENCH_EXTRA_CONF='shared_buffers = 256MB
#                          huge_pages = on'
#   BENCH_PERF=1           perf record -g of the worker during measured checkpoint 1,
#                          and of all processes during restore 1 (warm; the report shows
#                          the worker only); prints the top symbols by self time
#                          (bench/out/checkpoint-perf-*-<date>.data).  Those two
#                          measurements then include perf's overhead.
set -u -o pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
RUNS=${BENCH_RUNS:-3}
ENTRIES_ASKED=${BENCH_ENTRIES:-10000000}
PANES=10
KEYS=$(((ENTRIES_ASKED + PANES - 1) / PANES))
ENTRIES=$((KEYS * PANES))
MEMLIMIT=${BENCH_MEMORY_LIMIT:-4GB}
BACKEND=${BENCH_BACKEND:-memory}
case $BACKEND in memory | rocksdb) ;; *) die "BENCH_BACKEND must be memory or rocksdb, not '$BACKEND'" ;; esac

# 10 panes of 6 minutes from BASE; window_count at AT reads [BASE, BASE + 1h).
BASE='2024-06-01 00:00:00+00'
AT='2024-06-01 00:54:00+00'
WSTART='2024-06-01 00:00:00+00'
WEND='2024-06-01 01:00:00+00'

OUT=$OUTDIR/checkpoint-$STAMP.txt
TABLE_OUT=$OUTDIR/checkpoint.txt
SLOG=$OUTDIR/checkpoint-server-$STAMP.log
STOP_TIMEOUT=120
bench_output "$OUT"

echo "stream_state checkpoint bench  $(date -u '+%Y-%m-%d %H:%M:%S UTC')  host $(hostname)  $(nproc) cores  $(free -g | awk '/^Mem:/ {print $2}') GiB"
echo "git: $(git_desc)"
echo "runs=$RUNS entries=$ENTRIES ($KEYS int8 keys x $PANES panes) backend=$BACKEND memory_limit=$MEMLIMIT"
[ -n "${BENCH_EXTRA_CONF:-}" ] && echo "extra postgresql.conf: $BENCH_EXTRA_CONF"
echo

# ---------------------------------------------------------------- install
bench_install

# Can this run drop the page cache (root, writable /proc/sys/vm/drop_caches)?
CAN_DROP=0
if [ "$(id -u)" = 0 ] && sync && echo 3 2>/dev/null >/proc/sys/vm/drop_caches; then
	CAN_DROP=1
else
	echo "NOTE: cannot write /proc/sys/vm/drop_caches: the cold-cache measurements are skipped"
fi
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }

# ---------------------------------------------------------------- server
bench_initdb ssckpt bench/checkpoint.sh <<EOF
stream_state.memory_limit = $MEMLIMIT
stream_state.checkpoint_interval = 0		# only the checkpoints this script asks for
shared_buffers = 1GB
max_wal_size = 16GB
checkpoint_timeout = 30min
synchronous_commit = on
log_line_prefix = '%m [%p] '
EOF
hp_free() { awk '/^HugePages_Free:/ {f = $2} /^HugePages_Rsvd:/ {r = $2} END {print f - r}' /proc/meminfo; }
HP_BEFORE=$(hp_free)
bench_start_server 300
echo "server: $T (port $PORT), $("$PGBIN/postgres" --version)"
echo "checkpoint directory filesystem: $(findmnt -n -o SOURCE,FSTYPE -T "$T/data" | tr -s ' ')"
bench_connect
# The state lives in the main shared memory segment (its DSA area): with 4 kB
# pages, the restore's and the scanner's page faults can dominate (see README).
HP_MB=$(((HP_BEFORE - $(hp_free)) * $(awk '/^Hugepagesize:/ {print $2}' /proc/meminfo) / 1024))
HUGE=0
[ "$HP_MB" -gt 0 ] && HUGE=1
echo "huge pages: huge_pages = $("${PSQL[@]}" -d postgres -c 'SHOW huge_pages'), vm.nr_hugepages = $(cat /proc/sys/vm/nr_hugepages)," \
	"$HP_MB MB of them reserved by the server" \
	"(transparent huge pages for shared memory: $(cat /sys/kernel/mm/transparent_hugepage/shmem_enabled 2>/dev/null || echo n/a))"

# ---------------------------------------------------------------- helpers
state_counts() {	# -> "keys panes" of query q
	if [ "$BACKEND" = rocksdb ]; then
		# the view's keys are RocksDB's estimate, and it has no panes: count the
		# window that holds every pane (a scan of the whole state)
		sql "SELECT count(*), sum(count) FROM stream_state.window_counts('q', '$AT')" | tr '|' ' '
		return
	fi
	sql "SELECT keys, panes FROM stream_state.queries WHERE name = 'q'" | tr '|' ' '
}

spot_check() {	# window_count of 300 keys vs. a plain SQL count
	sql "
	WITH truth AS (SELECT k, count(*) AS n FROM events
	                WHERE ts >= '$WSTART' AND ts < '$WEND' AND k <= 300 GROUP BY k)
	SELECT count(*) FILTER (WHERE stream_state.window_count('q', g::bigint, '$AT') <> coalesce(t.n, 0))
	       || ' mismatches of 300 keys, sum=' || sum(stream_state.window_count('q', g::bigint, '$AT'))
	       || ' expected ' || sum(coalesce(t.n, 0))
	  FROM generate_series(1, 300) AS g LEFT JOIN truth t ON t.k = g" 2>&1
}

perf_start() {	# file perf-args...
	local f=$1
	shift
	perf record -g -o "$f" "$@" >/dev/null 2>&1 &
	PERF_PID=$!
	sleep 0.5
}
perf_stop() {	# file title [pid: report only that process]
	[ -n "$PERF_PID" ] || return 0
	kill -INT "$PERF_PID"
	wait "$PERF_PID" 2>/dev/null
	PERF_PID=""
	echo "   perf ($2): $1, top symbols by self time:"
	perf report -i "$1" ${3:+--pid "$3" --percentage relative} --no-children --sort dso,sym --stdio 2>/dev/null |
		grep -E '^ +[0-9.]+%' | head -15 | sed 's/^/     /'
}
perf_drop() {	# stop perf without a report (something failed)
	[ -n "$PERF_PID" ] || return 0
	kill -INT "$PERF_PID"
	wait "$PERF_PID" 2>/dev/null
	PERF_PID=""
}

# ---------------------------------------------------------------- setup + load
"${PSQL[@]}" -d postgres -c 'CREATE DATABASE bench' || die "createdb failed"
sql 'CREATE EXTENSION stream_state' || { check_server setup; die "CREATE EXTENSION failed"; }
DBOID=$(sql "SELECT oid FROM pg_database WHERE datname = 'bench'")

echo
echo "== load: $KEYS keys x $PANES panes = $ENTRIES (key, pane) entries (bench/checkpoint_load.sql)"
r=$("${PSQL[@]}" -v keys="$KEYS" -v base="$BASE" -v backend="$BACKEND" -f "$HERE/checkpoint_load.sql" | grep '^LOAD')
check_server "load"
read -r _ load_s apply_s ok <<<"${r:-LOAD NA NA NA}"
echo "   inserts ${load_s} s, then applied in ${apply_s} s (wait_applied: $ok)"
[ "$ok" = t ] || die "the load was not applied (wait_applied returned '$ok')"
read -r L_KEYS L_PANES <<<"$(state_counts)"
echo "   queries view: keys=$L_KEYS panes=$L_PANES (expected $KEYS and $ENTRIES)"
[ "${L_PANES:-}" = "$ENTRIES" ] || echo "   WARNING: sum of panes of 'q' is ${L_PANES:-?}, expected $ENTRIES"
STATE_BYTES=$(sql "SELECT state_bytes FROM stream_state.queries WHERE name = 'q'")
echo "   state_bytes of 'q': $STATE_BYTES"
MEMFLOOR=""
if [ "$BACKEND" = rocksdb ]; then
	:	# nothing to load into memory at start
elif cc -O2 -o "$T/memfloor" "$HERE/memfloor.c" 2>"$T/memfloor.err"; then
	MEMFLOOR=$T/memfloor
else
	echo "   NOTE: cannot build bench/memfloor.c ($(head -1 "$T/memfloor.err")): no restore floor"
fi
echo "   window_count check at '$AT': $(spot_check)"
sql "CHECKPOINT" >/dev/null
sql "VACUUM ANALYZE events" >/dev/null

# ---------------------------------------------------------------- checkpoint helpers
# One checkpoint: sets CK_ID CK_ENTRIES CK_BYTES CK_DUR (s) CK_PAUSE (ms)
# CK_LOC CK_STATUS CK_T0 CK_T1 (epoch around the call, in its session) CK_WALL (s).
take_checkpoint() {
	local out
	CK_ID=NA CK_ENTRIES=NA CK_BYTES=NA CK_DUR=NA CK_PAUSE=NA CK_LOC="" CK_STATUS=NA CK_WALL=NA CK_T0=0 CK_T1=0
	# the client's times are taken in the session (no connection set-up)
	out=$("${PSQL[@]}" -c "SELECT extract(epoch FROM clock_timestamp())" \
		-c "SELECT stream_state.checkpoint()" -c "SELECT extract(epoch FROM clock_timestamp())" 2>&1)
	read -r CK_T0 CK_ID CK_T1 <<<"$(echo $out)"
	if ! isnum "${CK_ID:-}" || ! isnum "${CK_T1:-}"; then
		echo "   checkpoint() failed: $out"
		CK_ID=NA
		return 1
	fi
	CK_WALL=$(calc "$CK_T1 - $CK_T0")
	IFS='|' read -r CK_ENTRIES CK_BYTES CK_DUR CK_PAUSE CK_LOC CK_STATUS <<<"$(sql "
		SELECT entries, bytes, round(extract(epoch FROM duration)::numeric, 3),
		       round((extract(epoch FROM pause) * 1000)::numeric, 0), location, status
		  FROM stream_state.checkpoints WHERE id = $CK_ID")"
	[ -f "$CK_LOC" ] || echo "   WARNING: checkpoint $CK_ID's location '$CK_LOC' is not a file"
	[ "$CK_STATUS" = valid ] || echo "   WARNING: checkpoint $CK_ID has status '$CK_STATUS'"
	return 0
}

# The baselines are timed by dd itself (its "copied, X s", which with
# conv=fsync includes the fsync), so no process start-up is counted.
dd_seconds() {	# dd args... -> seconds, or NA
	LC_ALL=C dd "$@" 2>&1 >/dev/null | awk '/ copied, / { t = $(NF-3) } END { print (t == "") ? "NA" : t }'
}

# Baseline: write + fsync BYTES bytes from /dev/zero into a new file in DIR
# (1 MB writes, one fsync at the end); prints seconds.
write_fsync_baseline() {	# dir bytes
	local f="$1/bench-dd.$$"
	rm -f "$f"
	dd_seconds if=/dev/zero of="$f" bs=1M count="$2" iflag=count_bytes conv=fsync
	rm -f "$f"
}

read_baseline() {	# file [rocksdb checkpoint dir] -> seconds to read it (and every file under dir)
	if [ -z "${2:-}" ]; then
		dd_seconds if="$1" of=/dev/null bs=1M
		return
	fi
	local t0
	t0=$(now)
	cat "$1" "$2"/* >/dev/null || { echo NA; return; }
	calc "$(now) - $t0"
}

# The RocksDB checkpoint of checkpoint id (rocksdb backend), else nothing.
rdb_ckpt_dir() {	# id
	[ "$BACKEND" = rocksdb ] && echo "$T/data/stream_state/$DBOID/rocksdb-ckpt/$1"
}
# The bytes of checkpoint id: its file's (bytes) and its RocksDB checkpoint's.
ckpt_bytes_all() {	# id bytes
	local d
	d=$(rdb_ckpt_dir "$1")
	if [ -n "$d" ] && [ -d "$d" ]; then
		echo $(($2 + $(du -sb "$d" | cut -f1)))
	else
		echo "$2"
	fi
}

# Probe: one client, INSERT one row into probe + wait_applied, for SECONDS;
# per-transaction log in $T/probe_LABEL.<pid>.
cat >"$T/probe.sql" <<'EOF'
INSERT INTO probe VALUES (1, now());
SELECT stream_state.wait_applied(NULL, '60 seconds');
EOF
probe_start() {	# label seconds
	rm -f "$T/probe_$1".*
	"$PGBIN/pgbench" -n -c 1 -j 1 -T "$2" -f "$T/probe.sql" -l --log-prefix="$T/probe_$1" \
		>"$T/pgbench-probe-$1.out" 2>&1 &
	PROBE_PID=$!
}
# -> "max_ms_during max_ms_outside n_during n_outside last_end_after_t1(0/1)"
probe_analyze() {	# label t0 t1
	cat "$T/probe_$1".* 2>/dev/null | awk -v t0="$2" -v t1="$3" '
		{ lat = $3 / 1e6; e = $5 + $6 / 1e6; s = e - lat;
		  if (e > t0 && s < t1) { nd++; if (lat > md) md = lat }
		  else { no++; if (lat > mo) mo = lat }
		  if (e > last) last = e }
		END { printf "%.1f %.1f %d %d %d\n", md * 1000, mo * 1000, nd, no, (last > t1) ? 1 : 0 }'
}

# ---------------------------------------------------------------- warm-up
echo
echo "== warm-up: one unmeasured checkpoint"
take_checkpoint || die "the warm-up checkpoint failed"
check_server "warm-up checkpoint"
log_complaints "the warm-up checkpoint"
echo "   checkpoint $CK_ID: $CK_ENTRIES entries, $CK_BYTES bytes, duration ${CK_DUR} s (client ${CK_WALL} s), pause ${CK_PAUSE} ms"
echo "   file: $CK_LOC"
CK_DIR=$(dirname "$CK_LOC")
W_BYTES=$(ckpt_bytes_all "$CK_ID" "$CK_BYTES")
[ "$BACKEND" = rocksdb ] && echo "   RocksDB checkpoint: $(rdb_ckpt_dir "$CK_ID"), $((W_BYTES - CK_BYTES)) bytes"
PROBE_SECS=$(awk -v w="$CK_WALL" 'BEGIN { s = int(w * 3) + 4; print (s < 5) ? 5 : s }')

# ---------------------------------------------------------------- checkpoints
echo
echo "== checkpoints: baseline = dd $W_BYTES bytes from /dev/zero, conv=fsync, in $CK_DIR;"
echo "   subject = stream_state.checkpoint(), with the probe client running for $PROBE_SECS s around it"
echo "   run side        seconds   client_s  entries    bytes       pause_ms  probe max ms: during / outside (n)"
C_B=(); C_S=(); C_R=(); C_WALL=(); C_PAUSE=(); C_BYTES=(); C_ENT=(); P_DUR=(); P_OUT=()
for i in $(seq 1 "$RUNS"); do
	sql "CHECKPOINT" >/dev/null
	b=$(write_fsync_baseline "$CK_DIR" "$W_BYTES")
	printf '   %-3s write+fsync %7s\n' "$i" "$(fmt "$b" 3)"

	probe_start "ckpt$i" "$PROBE_SECS"
	if [ "${BENCH_PERF:-0}" = 1 ] && [ "$i" = 1 ]; then
		wpid=$(sql "SELECT pid FROM pg_stat_activity WHERE backend_type = 'stream_state worker'")
		perf_start "$OUTDIR/checkpoint-perf-ckpt-$STAMP.data" -p "$wpid"
	fi
	sleep 1
	if ! take_checkpoint; then
		wait "$PROBE_PID"
		check_server "checkpoint run $i"
		continue
	fi
	wait "$PROBE_PID"
	prc=$?
	[ -n "$PERF_PID" ] && perf_stop "$OUTDIR/checkpoint-perf-ckpt-$STAMP.data" "the worker during checkpoint $CK_ID"
	read -r pd po nd no covered <<<"$(probe_analyze "ckpt$i" "$CK_T0" "$CK_T1")"
	[ "$prc" = 0 ] || echo "   WARNING: the probe client failed (exit $prc): $(grep -m3 -iE 'error|abort' "$T/pgbench-probe-ckpt$i.out" | tr '\n' ' ')"
	[ "$covered" = 1 ] || echo "   WARNING: the probe stopped before the checkpoint ended; 'during' is a lower bound"
	printf '   %-3s checkpoint  %7s %10s %-10s %-11s %-9s %s / %s (%s / %s)\n' "$i" "$(fmt "$CK_DUR" 3)" "$(fmt "$CK_WALL" 3)" \
		"$CK_ENTRIES" "$CK_BYTES" "$CK_PAUSE" "$pd" "$po" "$nd" "$no"
	check_server "checkpoint run $i"
	log_complaints "checkpoint run $i"
	C_B+=("$b"); C_S+=("$CK_DUR"); C_R+=("$(div "$CK_DUR" "$b")"); C_WALL+=("$CK_WALL")
	C_PAUSE+=("$CK_PAUSE"); C_BYTES+=("$(ckpt_bytes_all "$CK_ID" "$CK_BYTES")")
	# rocksdb: the view counts the memory state (the probe's); q's is in RocksDB
	if [ "$BACKEND" = rocksdb ]; then C_ENT+=("$((CK_ENTRIES + ENTRIES))"); else C_ENT+=("$CK_ENTRIES"); fi
	P_DUR+=("$pd"); P_OUT+=("$po")
done
NEWEST_ID=$CK_ID
NEWEST_LOC=$CK_LOC
NEWEST_BYTES=$(ckpt_bytes_all "$CK_ID" "$CK_BYTES")
NEWEST_RDB=$(rdb_ckpt_dir "$CK_ID")
NEWEST_ENTRIES=$CK_ENTRIES
read -r PRE_KEYS PRE_PANES <<<"$(state_counts)"
echo "   history: $(sql "SELECT string_agg(id || ':' || status, ' ' ORDER BY id) FROM stream_state.checkpoints")"
ls -l "$CK_DIR" | sed 's/^/   /'

# ---------------------------------------------------------------- restores
# Restart the server and read the restore time from its log: sets R_MS
# (load ms), R_ID (checkpoint restored), R_WAL_S (from that line to "state
# ... restored up to"), R_TOTAL_S (from pg_ctl start to that line, polled).
restart_and_restore() {	# cold|warm
	local t0 deadline region line pid t_a t_b
	R_MS=NA R_ID=NA R_WAL_S=NA R_TOTAL_S=NA
	stop_server
	[ "$1" = cold ] && drop_caches
	[ -n "${2:-}" ] && perf_start "$2" -a
	t0=$(now)
	bench_start_server 300
	deadline=$(($(date +%s) + 1800))
	while :; do
		if new_log | grep -q "stream_state: state of database $DBOID restored up to"; then
			break
		fi
		if [ "$(date +%s)" -gt "$deadline" ]; then
			perf_drop
			echo "   WARNING: no 'state of database $DBOID restored up to' in the log after 1800 s"
			return 1
		fi
		check_server "restore"
		sleep 0.05
	done
	R_TOTAL_S=$(calc "$(now) - $t0")
	region=$(new_log)
	line=$(printf '%s\n' "$region" | grep -m1 "stream_state: restored checkpoint [0-9]* of database $DBOID ")
	if [ -z "$line" ]; then
		perf_drop
		echo "   WARNING: the worker did not restore a checkpoint; its log:"
		printf '%s\n' "$region" | grep 'stream_state' | head -10 | sed 's/^/     /'
		return 1
	fi
	R_ID=$(sed -E 's/.*restored checkpoint ([0-9]+) of database.*/\1/' <<<"$line")
	pid=$(sed -E 's/^[^[]*\[([0-9]+)\].*/\1/' <<<"$line")
	[ -n "${2:-}" ] && perf_stop "$2" "the worker (pid $pid), server start until its state was restored" "$pid"
	R_MS=$(printf '%s\n' "$region" | grep -A20 -F "$line" | grep -m1 "\[$pid\] DETAIL:  Loading the checkpoint took" |
		sed -E 's/.*took ([0-9.]+) ms.*/\1/')
	isnum "${R_MS:-}" || R_MS=NA
	t_a=$(date -d "$(awk '{print $1, $2, $3}' <<<"$line")" +%s.%N 2>/dev/null)
	t_b=$(date -d "$(printf '%s\n' "$region" | grep -m1 "state of database $DBOID restored up to" | awk '{print $1, $2, $3}')" +%s.%N 2>/dev/null)
	R_WAL_S=$(calc "${t_b:-x} - ${t_a:-x}")
	return 0
}

restore_round() {	# cold|warm i -> appends to the arrays of that condition
	local cond=$1 i=$2 b ok keys panes
	[ "$cond" = cold ] && drop_caches
	if [ "$i" = 1 ] && command -v fincore >/dev/null; then
		echo "   $i   $cond pages of the file in the page cache before the read: $(fincore -n -o RES "$NEWEST_LOC" 2>/dev/null | tr -d ' ')"
	fi
	b=$(read_baseline "$NEWEST_LOC" "$NEWEST_RDB")
	printf '   %-3s %-4s read file    %7s s\n' "$i" "$cond" "$(fmt "$b" 3)"
	if [ -n "$MEMFLOOR" ]; then
		local f first again
		f=$("$MEMFLOOR" "$STATE_BYTES" "$HUGE" 2>&1)
		read -r _ first again <<<"$(grep '^FLOOR' <<<"$f")"
		isnum "${first:-}" || { echo "   WARNING: memfloor failed: $f"; first=NA; again=NA; }
		printf '   %-3s %-4s floor      %7s ms  (%s bytes of fresh shared memory, huge pages %s; written again: %s ms)\n' \
			"$i" "$cond" "$first" "$STATE_BYTES" "$HUGE" "$again"
		F_S+=("$first"); F_A+=("$again")
	fi
	if [ "$cond" = warm ] && [ "$i" = 1 ] && [ "${BENCH_PERF:-0}" = 1 ]; then
		restart_and_restore "$cond" "$OUTDIR/checkpoint-perf-restore-$STAMP.data"
	else
		restart_and_restore "$cond"
	fi
	check_server "restore ($cond, run $i)"
	log_complaints "restore ($cond, run $i)"
	ok=$(sql "SELECT stream_state.wait_applied(NULL, '600 seconds')" 2>&1)
	read -r keys panes <<<"$(state_counts)"
	printf '   %-3s %-4s restore    %7s ms  (checkpoint %s; WAL re-read %s s; start to restored %s s; keys=%s panes=%s)\n' \
		"$i" "$cond" "$R_MS" "$R_ID" "$(fmt "$R_WAL_S" 3)" "$(fmt "$R_TOTAL_S" 3)" "$keys" "$panes"
	[ "$R_ID" = "$NEWEST_ID" ] || echo "   WARNING: restored checkpoint $R_ID, the newest is $NEWEST_ID"
	[ "$panes" = "$PRE_PANES" ] && [ "$keys" = "$PRE_KEYS" ] ||
		echo "   WARNING: after the restore 'q' has keys=$keys panes=$panes; before the restart keys=$PRE_KEYS panes=$PRE_PANES"
	local r_s
	r_s=$(calc "$R_MS / 1000")
	if [ "$cond" = cold ]; then
		RC_B+=("$b"); RC_S+=("$R_MS"); RC_R+=("$(div "$r_s" "$b")")
	else
		RW_B+=("$b"); RW_S+=("$R_MS"); RW_R+=("$(div "$r_s" "$b")")
	fi
}

echo
echo "== restores of checkpoint $NEWEST_ID ($NEWEST_BYTES bytes): baseline = dd the file to /dev/null (bs=1M)$( [ -n "$NEWEST_RDB" ] && echo " and cat of the files of its RocksDB checkpoint"),"
echo "   subject = restart the server, 'Loading the checkpoint took X ms' from its log"
echo "   cold: sync; echo 3 > /proc/sys/vm/drop_caches before the read and again before the start"
echo "   warm: the file in the page cache (nothing dropped)"
RC_B=(); RC_S=(); RC_R=(); RW_B=(); RW_S=(); RW_R=(); F_S=(); F_A=()
for i in $(seq 1 "$RUNS"); do
	[ "$CAN_DROP" = 1 ] && restore_round cold "$i"
	restore_round warm "$i"
done
echo "   window_count check at '$AT' after the last restore: $(spot_check)"

# ---------------------------------------------------------------- table
c_r=$(median "${C_R[@]}")
rc_r=$(median "${RC_R[@]}")
rw_r=$(median "${RW_R[@]}")
pause=$(median "${C_PAUSE[@]}")
p_dur=$(median "${P_DUR[@]}")
m_bytes=$(median "${C_BYTES[@]}")
m_ent=$(median "${C_ENT[@]}")
bpe=$(div "$m_bytes" "$m_ent")
{
	echo "stream_state checkpoint bench  $(date -u '+%Y-%m-%d %H:%M:%S UTC')  $(nproc) cores  git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)$(git -C "$ROOT" status --porcelain 2>/dev/null | grep -q . && echo ' (dirty tree)')"
	echo "$BACKEND backend, $ENTRIES (key, pane) entries asked ($KEYS int8 keys x $PANES panes, count 1); median of $RUNS runs,"
	echo "ratio = median of the per-pair ratios"
	echo
	printf '%-9s | %-10s | %-7s | %-8s | %-13s | %-6s | %-8s | %-10s | %-7s | %-6s | %s\n' \
		entries bytes B/entry ckpt_s write+fsync_s ratio pause_ms restore_ms read_s ratio "read/restore cache"
	printf '%s\n' "----------|------------|---------|----------|---------------|--------|----------|------------|---------|--------|-------------------"
	line() {	# restore_ms read_s ratio cache
		printf '%-9s | %-10s | %-7s | %-8s | %-13s | %-6s | %-8s | %-10s | %-7s | %-6s | %s\n' \
			"$m_ent" "$m_bytes" "$(fmt "$bpe" 2)" "$(fmt "$(median "${C_S[@]}")" 3)" "$(fmt "$(median "${C_B[@]}")" 3)" \
			"$(fmt "$c_r" 2)" "$(fmt "$pause" 0)" "$(fmt "$1" 0)" "$(fmt "$2" 3)" "$(fmt "$3" 2)" "$4"
	}
	[ "$CAN_DROP" = 1 ] && line "$(median "${RC_S[@]}")" "$(median "${RC_B[@]}")" "$rc_r" "cold (page cache dropped)"
	line "$(median "${RW_S[@]}")" "$(median "${RW_B[@]}")" "$rw_r" "warm (file in page cache)"
	echo
	echo "targets: checkpoint / write+fsync <= 1.5: $(fmt "$c_r" 2) ($(verdict "$c_r" '<=' 1.5));" \
		"pause <= 100 ms: $(fmt "$pause" 0) ms ($(verdict "$pause" '<=' 100));" \
		"restore / read <= 2: cold $(fmt "$rc_r" 2) ($(verdict "$rc_r" '<=' 2)), warm $(fmt "$rw_r" 2) ($(verdict "$rw_r" '<=' 2))"
	if [ -n "$MEMFLOOR" ]; then
		f_s=$(median "${F_S[@]}")
		f_b=$(median "${RC_B[@]}")
		isnum "$f_b" || f_b=$(median "${RW_B[@]}")
		f_r=$(div "$(calc "$f_s / 1000")" "$f_b")
		echo "restore floor: writing state_bytes ($STATE_BYTES) of fresh shared memory (huge pages $HUGE) took $(fmt "$f_s" 0) ms"
		echo "  ($(fmt "$(median "${F_A[@]}")" 0) ms written again), $(fmt "$f_r" 2) x reading the file ($( [ "$CAN_DROP" = 1 ] && echo cold || echo warm )):" \
			"$( [ "$(calc "${f_r:-x} > 2")" = 1 ] && echo "above the restore target, so no restore into this layout can meet it" || echo "within the restore target")"
	fi
	echo "ckpt_s = the checkpoints view's duration (copy + write + fsync + rename); the client saw $(fmt "$(median "${C_WALL[@]}")" 3) s"
	echo "  for SELECT stream_state.checkpoint(). pause_ms = the view's pause (the copy)."
	echo "probe (1 client: INSERT + wait_applied): longest commit-to-applied $(fmt "$p_dur" 1) ms during a checkpoint,"
	echo "  $(fmt "$(median "${P_OUT[@]}")" 1) ms outside (medians over runs of the per-run maximum)."
} >"$T/table.txt"
echo
echo "== results"
cat "$T/table.txt"
cp "$T/table.txt" "$TABLE_OUT"
echo
echo "results: $OUT (table: $TABLE_OUT)"
