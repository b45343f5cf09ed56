-- cq_sessions: session windows.  A key's events less than session_gap apart
-- are one session, [first event, last event + gap); an event that bridges
-- two sessions merges them (their partial states combined); a session that
-- has ended (the watermark passed its end) is final, and goes to emit_to.
-- Compared with the sessions computed in plain SQL over the source table.
-- The same on both backends (installcheck-rocksdb runs it on rocksdb).
CREATE TABLE sv (k int, v int, ts timestamptz);
SELECT stream_state.create_query('sq', $$SELECT k, count(*), sum(v), max(v) FROM sv GROUP BY k$$,
	time_column => 'ts', session_gap => '10 minutes', lateness => '1 day', emit_to => 'sv_closed');
SELECT window_size, slide, session_gap FROM stream_state.queries WHERE name = 'sq';

-- the sessions of sv in plain SQL: a new one where the gap to the key's
-- previous event is 10 minutes or more
CREATE FUNCTION ss_test.sv_sessions()
RETURNS TABLE (window_start timestamptz, window_end timestamptz, k int, count bigint, sum bigint, max int)
LANGUAGE sql AS $$
	WITH o AS (
		SELECT k, v, ts, CASE WHEN ts - lag(ts) OVER (PARTITION BY k ORDER BY ts, v) < interval '10 minutes'
							  THEN 0 ELSE 1 END AS brk
		  FROM sv),
	g AS (
		SELECT k, v, ts, sum(brk) OVER (PARTITION BY k ORDER BY ts, v ROWS UNBOUNDED PRECEDING) AS sid
		  FROM o)
	SELECT min(ts), max(ts) + interval '10 minutes', k, count(*), sum(v), max(v) FROM g GROUP BY k, sid
$$;
-- sessions in state (all of them: nothing has ended) against that
CREATE FUNCTION ss_test.sv_diff() RETURNS bigint
LANGUAGE sql AS $$
	WITH got AS (
		SELECT * FROM stream_state._session_result('sq', NULL, 'infinity')
			AS t(window_start timestamptz, window_end timestamptz, k int, count bigint, sum bigint, max int))
	SELECT count(*) FROM ((SELECT * FROM got EXCEPT ALL SELECT * FROM ss_test.sv_sessions())
						  UNION ALL (SELECT * FROM ss_test.sv_sessions() EXCEPT ALL SELECT * FROM got)) d
$$;

-- three events of key 1: two sessions, then one that bridges them
INSERT INTO sv VALUES (1, 1, '2026-11-24 10:00+00'), (1, 2, '2026-11-24 10:05+00'), (1, 4, '2026-11-24 10:24+00');
SELECT * FROM stream_state._session_result('sq', NULL, 'infinity')
	AS t(window_start timestamptz, window_end timestamptz, k int, count bigint, sum bigint, max int) ORDER BY 1;
INSERT INTO sv VALUES (1, 8, '2026-11-24 10:14:59+00');
SELECT * FROM stream_state._session_result('sq', NULL, 'infinity')
	AS t(window_start timestamptz, window_end timestamptz, k int, count bigint, sum bigint, max int) ORDER BY 1;
-- exactly the gap apart is another session
INSERT INTO sv VALUES (1, 16, '2026-11-24 10:44+00');
SELECT * FROM stream_state.window_result('sq', '2026-11-24 10:50+00') AS t(k int, count bigint, sum bigint, max int);
SELECT ss_test.sv_diff() AS diff;

-- sessions in state against those in plain SQL, leaving out those that end
-- by 2026-11-24 12:00: once the watermark (about 2026-11-25 11:00, with
-- lateness 1 day) has closed them, the helper may emit them, and the worker
-- evict them, at any time.
CREATE FUNCTION ss_test.sv_diff_open() RETURNS TABLE (sessions bigint, diff bigint)
LANGUAGE sql AS $$
	WITH got AS (
		SELECT * FROM stream_state._session_result('sq', '2026-11-24 12:00+00', 'infinity')
			AS t(window_start timestamptz, window_end timestamptz, k int, count bigint, sum bigint, max int)),
	want AS (SELECT * FROM ss_test.sv_sessions() WHERE window_end > '2026-11-24 12:00+00')
	SELECT (SELECT count(*) FROM want),
		   (SELECT count(*) FROM ((SELECT * FROM got EXCEPT ALL SELECT * FROM want)
								  UNION ALL (SELECT * FROM want EXCEPT ALL SELECT * FROM got)) d)
$$;
-- out of order: 400 events of 5 keys over a day in random order, in
-- statements of several transactions, one rolled back, one with a savepoint
-- rolled back, one with a sub-transaction kept
SELECT setseed(0.5);
CREATE TABLE sv_src AS
SELECT (random() * 4)::int AS k, g + 100 AS v,
	   '2026-11-24 11:00+00'::timestamptz + (random() * 1440)::int * interval '1 minute'
		 + (g % 60) * interval '1 second' AS ts
  FROM generate_series(1, 400) g ORDER BY random();
INSERT INTO sv SELECT * FROM sv_src WHERE v % 5 = 0;
BEGIN;
INSERT INTO sv SELECT * FROM sv_src WHERE v % 5 = 1;
SAVEPOINT a;
INSERT INTO sv SELECT * FROM sv_src WHERE v % 5 = 2;
ROLLBACK TO SAVEPOINT a;
SAVEPOINT b;
INSERT INTO sv SELECT * FROM sv_src WHERE v % 5 = 3;
RELEASE SAVEPOINT b;
COMMIT;
BEGIN;
INSERT INTO sv SELECT * FROM sv_src WHERE v % 5 = 4;
ROLLBACK;
INSERT INTO sv SELECT * FROM sv_src WHERE v % 5 IN (2, 4);
SELECT count(*) AS rows, (SELECT count(*) FROM ss_test.sv_sessions()) AS sessions FROM sv;
SELECT diff AS diff_out_of_order FROM ss_test.sv_diff_open();
-- moved to the other backend and back (a key's sessions are one value in
-- RocksDB, one pane each in memory), merging after each move (before the
-- watermark: nothing closes): the same.
SELECT * FROM ss_test.sv_diff_open();
SELECT stream_state.set_backend('sq', CASE current_setting('stream_state.default_backend')
	WHEN 'memory' THEN 'rocksdb' ELSE 'memory' END);
SELECT backend <> current_setting('stream_state.default_backend') AS moved FROM stream_state.queries WHERE name = 'sq';
SELECT * FROM ss_test.sv_diff_open();
INSERT INTO sv VALUES (7, 7, '2026-11-25 09:00+00'), (7, 11, '2026-11-25 09:09+00');
SELECT * FROM ss_test.sv_diff_open();
SELECT stream_state.set_backend('sq', current_setting('stream_state.default_backend'));
INSERT INTO sv VALUES (7, 13, '2026-11-25 09:04+00');
SELECT * FROM ss_test.sv_diff_open();
SELECT * FROM stream_state._session_result('sq', '2026-11-24 12:00+00', 'infinity')
	AS t(window_start timestamptz, window_end timestamptz, k int, count bigint, sum bigint, max int)
 WHERE k = 7;

-- an event days later: every session above ends, and is emitted once
INSERT INTO sv VALUES (9, 9, '2026-11-27 00:00+00');
SELECT ss_test.wait_emitted('sq', '2026-11-26 00:00+00') AS emitted;
SELECT count(*) AS emitted_rows,
	   (SELECT count(*) FROM ((SELECT * FROM sv_closed EXCEPT ALL
							   SELECT * FROM ss_test.sv_sessions() WHERE k <> 9)
							  UNION ALL (SELECT * FROM ss_test.sv_sessions() WHERE k <> 9
										 EXCEPT ALL SELECT * FROM sv_closed)) d) AS diff_emitted
  FROM sv_closed;
-- emitted sessions leave state (once the helper has told the worker): only
-- the new one stays
CREATE FUNCTION pg_temp.poll(cond text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
	ok boolean;
BEGIN
	FOR i IN 1 .. 600 LOOP
		EXECUTE cond INTO ok;
		IF ok THEN
			RETURN true;
		END IF;
		PERFORM pg_sleep(0.05);
	END LOOP;
	RETURN false;
END $$;
SELECT pg_temp.poll($$SELECT count(*) = 1 FROM stream_state._session_result('sq', NULL, 'infinity')
	AS t(window_start timestamptz, window_end timestamptz, k int, count bigint, sum bigint, max int)$$) AS evicted;
-- an event for a session that has ended is late: counted, and dropped
INSERT INTO sv VALUES (1, 5000, '2026-11-24 10:06+00');
SELECT stream_state.wait_applied();
SELECT late_events FROM stream_state.queries WHERE name = 'sq';
SELECT count(*) AS emitted_rows_after_late FROM sv_closed;

-- a query without GROUP BY: one group, its sessions (a session that has
-- ended leaves state: lateness keeps these two)
CREATE TABLE sv2 (v int, ts timestamptz);
SELECT stream_state.create_query('sq2', $$SELECT count(*) AS n, sum(v) AS total FROM sv2$$,
	time_column => 'ts', session_gap => '1 minute', lateness => '10 minutes');
INSERT INTO sv2 VALUES (1, '2026-11-24 10:00:00+00'), (2, '2026-11-24 10:00:50+00'), (4, '2026-11-24 10:03:00+00');
SELECT * FROM stream_state.window_result('sq2', '2026-11-24 10:00:30+00') AS t(n bigint, total bigint);
SELECT * FROM stream_state.window_result('sq2', '2026-11-24 10:03:30+00') AS t(n bigint, total bigint);
SELECT * FROM stream_state.window_result('sq2', '2026-11-24 10:02:00+00') AS t(n bigint, total bigint);

-- refusals
SELECT ss_test.error_of($$SELECT stream_state.create_query('sq_bad', 'SELECT k, count(*) FROM sv GROUP BY k', time_column => 'ts', window_size => '1 hour', session_gap => '5 minutes')$$);
SELECT ss_test.error_of($$SELECT stream_state.create_query('sq_bad', 'SELECT k, count(*) FROM sv GROUP BY k', time_column => 'ts', session_gap => '5 minutes', retention => '1 hour')$$);
SELECT ss_test.error_of($$SELECT stream_state.create_query('sq_bad', 'sv', 'k', 'ts', session_gap => '5 minutes')$$);
SELECT ss_test.error_of($$SELECT stream_state.create_query('sq_bad', 'SELECT k, count(*) FROM sv GROUP BY k', time_column => 'ts', session_gap => '0')$$);
SELECT ss_test.error_of($$SELECT stream_state.alter_query('sq', retention => '1 hour')$$);
SELECT stream_state.create_query('sq_fixed', $$SELECT k, count(*) FROM sv GROUP BY k$$, time_column => 'ts', window_size => '1 hour');
SELECT ss_test.error_of($$SELECT * FROM stream_state._session_result('sq_fixed', NULL, now()) AS t(s timestamptz, e timestamptz, k int, count bigint)$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state._session_result('sq', NULL, now()) AS t(k int, count bigint)$$);

SELECT stream_state.drop_query('sq');
SELECT stream_state.drop_query('sq2');
SELECT stream_state.drop_query('sq_fixed');
DROP FUNCTION ss_test.sv_diff(), ss_test.sv_diff_open(), ss_test.sv_sessions();
DROP TABLE sv, sv2, sv_src, sv_closed;

-- sessions through a sorted spill: with capture_memory this small, the hll
-- states (about 130 kB each) make the statement sort the rows of the groups
-- that do not fit and fold them a group at a time; keys longer than a
-- group entry holds; the same sessions as in plain SQL
CREATE TABLE sl (who text, page text, ts timestamptz);
SELECT stream_state.create_query('slq',
	$$SELECT who, count(*), hll_cardinality(hll_add_agg(hll_hash_text(page))) AS pages FROM sl GROUP BY who$$,
	time_column => 'ts', session_gap => '10 minutes', lateness => '1 day');
SET stream_state.capture_memory = '64kB';
INSERT INTO sl SELECT 'a visitor with a long name, number ' || (g % 30), 'p' || (g % 11),
	   '2026-11-24 10:00+00'::timestamptz + (g % 7) * interval '3 minutes' + (g % 4) * interval '45 minutes'
  FROM generate_series(1, 600) g;
RESET stream_state.capture_memory;
WITH o AS (
	SELECT who, page, ts, CASE WHEN ts - lag(ts) OVER (PARTITION BY who ORDER BY ts) < interval '10 minutes'
							   THEN 0 ELSE 1 END AS brk
	  FROM sl),
g AS (
	SELECT who, page, ts, sum(brk) OVER (PARTITION BY who ORDER BY ts ROWS UNBOUNDED PRECEDING) AS sid
	  FROM o),
truth AS (
	SELECT min(ts) AS window_start, max(ts) + interval '10 minutes' AS window_end, who, count(*),
		   hll_cardinality(hll_add_agg(hll_hash_text(page))) AS pages
	  FROM g GROUP BY who, sid),
got AS (
	SELECT * FROM stream_state._session_result('slq', NULL, 'infinity')
		AS t(window_start timestamptz, window_end timestamptz, who text, count bigint, pages float8))
SELECT (SELECT count(*) FROM got) AS sessions, (SELECT sum(count) FROM got) AS events,
	   (SELECT count(*) FROM ((SELECT * FROM got EXCEPT ALL SELECT * FROM truth)
							 UNION ALL (SELECT * FROM truth EXCEPT ALL SELECT * FROM got)) d) AS diff;
SELECT stream_state.drop_query('slq');
DROP TABLE sl;
