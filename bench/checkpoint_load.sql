-- bench/checkpoint_load.sql: the state bench/checkpoint.sh checkpoints.
--
-- Called by bench/checkpoint.sh as
--   psql -X -At -v keys=N -v base='...' -v backend=memory|rocksdb -f bench/checkpoint_load.sql
-- Creates events(k bigint, ts timestamptz) with the query 'q' on it (1 hour
-- window, 6 minute slide, so 6 minute panes; lateness 100 days so nothing is
-- late; on the backend :backend), then inserts one row per (key, pane) for keys 1..N and the 10 panes
-- starting at :base, one INSERT (N rows) per pane: N * 10 (key, pane)
-- entries, each with count 1.  Also creates probe(k bigint, ts timestamptz)
-- with the query 'probe' (1 minute window and slide), which the probe
-- client of bench/checkpoint.sh inserts into while a checkpoint runs.
-- Prints one line
--   LOAD load_s apply_s ok
-- load_s: the 10 INSERTs; apply_s: from the last COMMIT until wait_applied()
-- returned; ok: its result.
\set ON_ERROR_STOP 1
\pset pager off

CREATE TABLE events (k bigint, ts timestamptz);
SELECT stream_state.create_query('q', 'events', key_column => 'k', time_column => 'ts',
       window_size => '1 hour', slide => '6 minutes', lateness => '100 days',
       backend => :'backend') \g /dev/null

CREATE TABLE probe (k bigint, ts timestamptz);
SELECT stream_state.create_query('probe', 'probe', key_column => 'k', time_column => 'ts',
       window_size => '1 minute', slide => '1 minute') \g /dev/null

SELECT extract(epoch FROM clock_timestamp()) AS t0 \gset
-- pane p: [base + 6p min, base + 6(p+1) min); rows spread over its first 5 minutes
SELECT format('INSERT INTO events SELECT g, %L::timestamptz + %s * interval ''6 minutes'''
              ' + (g %% 300) * interval ''1 second'' FROM generate_series(1, %s) AS g',
              :'base', p, :keys)
  FROM generate_series(0, 9) AS p \gexec
SELECT extract(epoch FROM clock_timestamp()) AS t1 \gset
SELECT stream_state.wait_applied(NULL, '1800 seconds') AS ok \gset
SELECT extract(epoch FROM clock_timestamp()) AS t2 \gset

SELECT round((:t1 - :t0)::numeric, 3) AS load_s, round((:t2 - :t1)::numeric, 3) AS apply_s \gset
\echo LOAD :load_s :apply_s :ok
