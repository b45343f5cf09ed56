-- bench/rocksdb_batch.sql: one timed batch of measurement 4 of bench/rocksdb.sh.
--
-- Called by bench/rocksdb.sh as
--   psql -X -At -d DB -v keys=N -v nrows=N -v base='...' -f bench/rocksdb_batch.sql
-- in a database whose events(k bigint, ts timestamptz) has a query with a
-- 1 hour window and 6 minute panes, loaded with keys 1..:keys x the 10 panes
-- from :base.  Inserts :nrows rows, keys uniformly random in 1..:keys and
-- times uniformly random (whole seconds) in [:base, :base + 1 hour): every
-- row adds to a (key, pane) entry that already exists.  Prints one line
--   RESULT t0 t1 t2 t3 ok
-- (epoch seconds): t0 before the INSERT, t1 after the INSERT but before its
-- COMMIT, t2 after the COMMIT, t3 after wait_applied() returned; ok is its
-- result.
\set ON_ERROR_STOP 1
\pset pager off

-- the worker done with all earlier WAL
SELECT stream_state.wait_applied(NULL, '600 seconds') AS pre_ok \gset

SELECT extract(epoch FROM clock_timestamp()) AS t0 \gset
BEGIN;
INSERT INTO events
SELECT 1 + floor(random() * :keys)::bigint,
       :'base'::timestamptz + floor(random() * 3600) * interval '1 second'
  FROM generate_series(1, :nrows) AS g;
SELECT extract(epoch FROM clock_timestamp()) AS t1 \gset
COMMIT;
SELECT extract(epoch FROM clock_timestamp()) AS t2 \gset
SELECT stream_state.wait_applied(NULL, '600 seconds') AS ok \gset
SELECT extract(epoch FROM clock_timestamp()) AS t3 \gset

\echo RESULT :t0 :t1 :t2 :t3 :ok
