-- bench/cq_insert.sql: one timed bulk insert of bench/cq.sh.
--
-- Called by bench/cq.sh as
--   psql -X -At -v base='...' -v amount=bigint|numeric -v nrows=N -v nkeys=K -v stmts=S -v wait=true|false -f bench/cq_insert.sql
-- into the table events(user_id bigint, amount :amount, page text, kind text,
-- ts timestamptz) that bench/cq.sh has just created, with whatever it put on
-- it (nothing, a PL/pgSQL trigger or a stream_state query).  Inserts :nrows
-- rows in :stmts INSERT ... SELECT statements of about :nrows / :stmts rows
-- each, in one transaction: user_id random in 0..:nkeys - 1, amount random in
-- 0..9999 (bigint) or in [0, 100) with 2 decimals (numeric), page one of
-- 1,000, kind 'purchase' for about 5% of the rows, ts :base + (row - 1) * 300 us.  The random generator is seeded
-- first, so every run inserts the same rows.  Prints one line
--   RESULT t0 t1 t2 t3 ok
-- (epoch seconds): t0 before the first INSERT, t1 after the last INSERT but
-- before the COMMIT, t2 after the COMMIT, t3 after wait_applied() returned
-- (when :wait is true; ok is its result) or t2 (ok "-").
\set ON_ERROR_STOP 1
\pset pager off

-- Same starting conditions for every configuration: no dirty buffers from the
-- previous run, and the worker (if any query exists) done with all earlier WAL.
CHECKPOINT;
SELECT exists (SELECT 1 FROM stream_state.query_def) AS have_query \gset
\if :have_query
SELECT stream_state.wait_applied(NULL, '300 seconds') AS pre_ok \gset
\endif
SELECT setseed(0.42) \g /dev/null
SELECT CASE :'amount' WHEN 'bigint' THEN '(random() * 9999)::bigint'
       ELSE 'round((random() * 100)::numeric, 2)' END AS amount_expr \gset

SELECT extract(epoch FROM clock_timestamp()) AS t0 \gset
BEGIN;
SELECT format($f$INSERT INTO events (user_id, amount, page, kind, ts)
SELECT (random() * %s)::bigint,
       %s,
       '/p/' || (random() * 999)::int,
       CASE WHEN random() < 0.05 THEN 'purchase' ELSE 'view' END,
       %L::timestamptz + (g - 1) * interval '300 microseconds'
  FROM generate_series(%s, %s) AS g$f$,
              :nkeys - 1, :'amount_expr', :'base', s * :nrows / :stmts + 1, (s + 1) * :nrows / :stmts)
  FROM generate_series(0, :stmts - 1) AS s \gexec
SELECT extract(epoch FROM clock_timestamp()) AS t1 \gset
COMMIT;
SELECT extract(epoch FROM clock_timestamp()) AS t2 \gset

\if :wait
SELECT stream_state.wait_applied(NULL, '600 seconds') AS ok \gset
SELECT extract(epoch FROM clock_timestamp()) AS t3 \gset
\else
\set ok '-'
\set t3 :t2
\endif

\echo RESULT :t0 :t1 :t2 :t3 :ok
