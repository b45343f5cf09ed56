#!/usr/bin/env bash
# scripts/demo.sh - stream_state in one minute.
#
#   bash scripts/demo.sh         (as root; installs and builds first)
#
# Starts a throwaway server as postgres (temp dir, unix socket only, with
# test/stream_state.conf), defines a sliding-window count over an events
# table, inserts a few thousand events (and one transaction that rolls
# back), then shows the state next to a recomputation from the table; takes
# a checkpoint, commits more events, kills the server (immediate stop) and
# starts it again, and shows the state restored, again next to the table.
# The server and its directory are removed on exit.
#
#   DEMO_SKIP_SETUP=1   do not run scripts/setup.sh (use what is installed)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
T=""

# shellcheck source=scripts/cluster.sh
. "$HERE/cluster.sh"

cleanup()
{
	local rc=$?

	ss_cluster_stop
	if [ "$rc" != 0 ] && [ -f "$T/server.log" ]; then
		echo "demo: failed (exit $rc); last lines of the server log:" >&2
		tail -n 30 "$T/server.log" >&2
	fi
	[ -n "$T" ] && rm -rf "$T"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$(id -u)" != 0 ]; then
	echo "demo: run as root (it installs the extension and runs the server as postgres)" >&2
	exit 2
fi

if [ "${DEMO_SKIP_SETUP:-0}" != 1 ]; then
	echo "demo: installing (scripts/setup.sh) ..."
	log=$(mktemp /tmp/stream_state-setup.XXXXXX.log)
	if ! bash "$HERE/setup.sh" >"$log" 2>&1; then
		cat "$log" >&2
		echo "demo: scripts/setup.sh failed" >&2
		exit 1
	fi
	rm -f "$log"
fi

T=$(mktemp -d /tmp/stream_state-demo.XXXXXX)
chown postgres: "$T"
chmod 700 "$T"
ss_cluster_start "$T"
echo "demo: server running in $T (port $SS_PORT)"

ss_psql -q -d postgres -c 'CREATE DATABASE demo'

# psql echoes each query (-e) before its result.
ss_psql -d demo -e <<'SQL'
\set QUIET on
CREATE EXTENSION stream_state;
CREATE TABLE events (user_id bigint, ts timestamptz, kind text);

\echo
\echo '-- a 5-minute window sliding every minute, counted per user_id, on event time ts'
\set QUIET off
SELECT stream_state.create_query('clicks_5m', 'events',
         key_column => 'user_id', time_column => 'ts',
         window_size => '5 minutes', slide => '1 minute');
\echo '-- the same query with its state in RocksDB (for state larger than memory)'
SELECT stream_state.create_query('clicks_5m_rocksdb', 'events',
         key_column => 'user_id', time_column => 'ts',
         window_size => '5 minutes', slide => '1 minute', backend => 'rocksdb');
\set QUIET on

-- the instant everything below reads at, and the window it falls in: the
-- window ends at the first minute boundary strictly after it
SELECT now() AS at,
       to_timestamp((floor(extract(epoch FROM now()) / 60) + 1) * 60) AS window_end
\gset
\echo
\echo '-- 6000 events for users 1..6 over the 10 minutes before' :at', in time order, in three commits'
\set QUIET off
INSERT INTO events
SELECT 1 + (g * 7) % 6, :'at'::timestamptz - interval '10 minutes' + g * interval '100 ms',
       CASE WHEN g % 5 = 0 THEN 'purchase' ELSE 'click' END
  FROM generate_series(0, 1999) g;
INSERT INTO events
SELECT 1 + (g * 7) % 6, :'at'::timestamptz - interval '10 minutes' + g * interval '100 ms',
       CASE WHEN g % 5 = 0 THEN 'purchase' ELSE 'click' END
  FROM generate_series(2000, 4999) g;
INSERT INTO events
SELECT 1 + g % 3, :'at'::timestamptz - interval '10 minutes' + g * interval '100 ms', 'click'
  FROM generate_series(5000, 5999) g;

\echo
\echo '-- a transaction that rolls back: its 1000 rows for user 1 must never be counted'
BEGIN;
INSERT INTO events SELECT 1, :'at'::timestamptz - interval '1 second', 'rolled back'
  FROM generate_series(1, 1000);
ROLLBACK;

\echo
\echo '-- wait until the worker has applied everything committed so far'
SELECT stream_state.wait_applied();

\echo
\echo '-- user 1: its count in the 5-minute window containing' :at
SELECT stream_state.window_count('clicks_5m', 1::bigint, :'at') AS user_1_last_5m;

\echo
\echo '-- every key in that window [' :window_end '- 5 minutes,' :window_end '), from stream_state next to the recomputation from the table'
WITH state AS (
    SELECT key::bigint AS user_id, window_start, window_end, count
      FROM stream_state.window_counts('clicks_5m', :'at')
), recomputed AS (
    SELECT user_id, count(*) AS count
      FROM events
     WHERE ts >= :'window_end'::timestamptz - interval '5 minutes'
       AND ts < :'window_end'::timestamptz
     GROUP BY user_id
)
SELECT coalesce(s.user_id, r.user_id) AS user_id, s.window_start, s.window_end,
       s.count AS stream_state_count, r.count AS recomputed_count,
       CASE WHEN s.count IS NOT DISTINCT FROM r.count THEN 'equal' ELSE 'DIFFERENT' END AS check
  FROM state s
  FULL JOIN recomputed r ON r.user_id = s.user_id
 ORDER BY 1;

\echo
\echo '-- the query, its status and its counters'
\set QUIET on
\pset expanded on
SELECT * FROM stream_state.queries;
SQL


# Checkpoints and a crash: the state comes back exactly.
ss_psql -d demo -e <<'SQL'
\set QUIET on
\echo
\echo '-- a checkpoint now (periodic ones come every stream_state.checkpoint_interval)'
\set QUIET off
SELECT stream_state.checkpoint();
SELECT id, applied_lsn, restart_lsn, entries, bytes, status FROM stream_state.checkpoints;
\echo
\echo '-- 500 more events for user 1, committed after the checkpoint'
INSERT INTO events SELECT 1, now() - interval '1 second', 'click' FROM generate_series(1, 500);
SQL
echo
echo "demo: kill -9 of the whole server (an immediate stop: no shutdown checkpoint), then a start"
ss_as_pg "$SS_PGBIN/pg_ctl" -D "$SS_DIR/data" -m immediate -t 60 stop >/dev/null
ss_as_pg "$SS_PGBIN/pg_ctl" -D "$SS_DIR/data" -l "$SS_DIR/server.log" -w -t 120 start >/dev/null
grep -E 'stream_state: (restored checkpoint|state of database)' "$SS_DIR/server.log" | sed 's/^/  server log: /'
ss_psql -d demo -e <<'SQL'
\set QUIET on
\echo
\echo '-- after the crash: the state is the checkpoint plus the WAL after it, still equal to the table'
\set QUIET off
SELECT stream_state.wait_applied();
SELECT s.key AS user_id, s.count AS stream_state_count,
       stream_state.window_count('clicks_5m_rocksdb', s.key::bigint) AS rocksdb_count,
       (SELECT count(*) FROM events e
         WHERE e.user_id = s.key::bigint
           AND e.ts >= s.window_start AND e.ts < s.window_end) AS recomputed_count
  FROM stream_state.window_counts('clicks_5m') s
 ORDER BY 1;
\set QUIET on
\echo
\echo '-- move the memory query into RocksDB while it runs; nothing is lost or counted twice'
\set QUIET off
SELECT stream_state.set_backend('clicks_5m', 'rocksdb');
INSERT INTO events SELECT 2, now() - interval '1 second', 'click' FROM generate_series(1, 100);
SELECT name, backend, status, events_applied FROM stream_state.queries ORDER BY name;
SELECT stream_state.window_count('clicks_5m', 2::bigint) AS user_2_memory_then_rocksdb,
       stream_state.window_count('clicks_5m_rocksdb', 2::bigint) AS user_2_rocksdb;
SELECT scope, query, estimated_entries, memtable_bytes, sst_bytes FROM stream_state.rocksdb_stats;
SQL
echo
echo "demo: done; stopping the server and removing $T"
