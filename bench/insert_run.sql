-- bench/insert_run.sql: one timed 2M-row bulk insert (measurements a and b
-- of bench/run.sh, 1 of bench/rocksdb.sh).
--
-- Called by bench/run.sh as
--   psql -X -At -v tbl=NAME -v subject=true|false -v base='...' -v nrows=N -f bench/insert_run.sql
-- and by bench/rocksdb.sh with -v backend=memory|rocksdb as well.
-- Creates a fresh table :tbl; when :subject is true it puts the sliding-window
-- query 'q' on it first, on backend :backend if that is set (else create_query
-- is called without one: stream_state.default_backend).  Prints one line
--   RESULT t0 t1 t2 t3 ok
-- (epoch seconds): t0 before the INSERT, t1 after the INSERT but before its
-- COMMIT, t2 after the COMMIT, t3 after wait_applied() returned (subject
-- only; ok is its result, or "-" for the baseline).
\set ON_ERROR_STOP 1
\pset pager off

DROP TABLE IF EXISTS :"tbl";
CREATE TABLE :"tbl" (user_id bigint, ts timestamptz, kind text);

\if :subject
\if :{?backend}
SELECT stream_state.create_query('q', :'tbl', key_column => 'user_id',
       time_column => 'ts', window_size => '5 minutes', slide => '1 minute',
       backend => :'backend');
\else
SELECT stream_state.create_query('q', :'tbl', key_column => 'user_id',
       time_column => 'ts', window_size => '5 minutes', slide => '1 minute');
\endif
\endif

-- Same starting conditions for both sides: no dirty buffers from the previous
-- run, and the worker (if any query exists) done with all earlier WAL.
CHECKPOINT;
SELECT exists (SELECT 1 FROM stream_state.query_def) AS have_query \gset
\if :have_query
SELECT stream_state.wait_applied(NULL, '120 seconds') AS pre_ok \gset
\endif

SELECT extract(epoch FROM clock_timestamp()) AS t0 \gset
BEGIN;
INSERT INTO :"tbl"
SELECT (random() * 99999)::bigint,
       :'base'::timestamptz + (g - 1) * interval '300 microseconds',
       'click'
  FROM generate_series(1, :nrows) AS g;
SELECT extract(epoch FROM clock_timestamp()) AS t1 \gset
COMMIT;
SELECT extract(epoch FROM clock_timestamp()) AS t2 \gset

\if :subject
SELECT stream_state.wait_applied(NULL, '300 seconds') AS ok \gset
SELECT extract(epoch FROM clock_timestamp()) AS t3 \gset
\else
\set ok '-'
\set t3 :t2
\endif

\echo RESULT :t0 :t1 :t2 :t3 :ok
