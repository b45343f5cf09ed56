-- cq_emit: emit_to.  When a window of a continuous query in SQL closes (the
-- watermark passes its end, lateness allowed for), its final rows go into
-- a table exactly once; they equal the query run over the window's rows.
CREATE TABLE em_events (k int, v int, ts timestamptz);
SELECT stream_state.create_query('em_sliding',
	$$SELECT k, count(*), sum(v), max(v) FROM em_events GROUP BY k$$,
	time_column => 'ts', window_size => '10 minutes', slide => '5 minutes',
	emit_to => 'em_closed');
-- the table is made with window_start, window_end and the query's columns
SELECT attname, format_type(atttypid, atttypmod), attnotnull FROM pg_attribute
 WHERE attrelid = 'em_closed'::regclass AND attnum > 0 ORDER BY attnum;
SELECT emit_to, emitted_until FROM stream_state.queries WHERE name = 'em_sliding';


-- rows of emitted windows that differ from the query over each window's
-- rows, plus windows missing, plus rows emitted more than once
CREATE FUNCTION ss_test.emit_diff(first_end timestamptz, last_end timestamptz) RETURNS bigint
LANGUAGE sql AS $$
	WITH ends AS (
		SELECT e FROM generate_series(first_end, last_end, interval '5 minutes') e),
	truth AS (
		SELECT e - interval '10 minutes' AS window_start, e AS window_end, k, count(*), sum(v), max(v)
		  FROM ends JOIN em_events ON ts >= e - interval '10 minutes' AND ts < e
		 GROUP BY e, k)
	SELECT (SELECT count(*) FROM ((SELECT * FROM em_closed EXCEPT ALL SELECT * FROM truth)
								 UNION ALL (SELECT * FROM truth EXCEPT ALL SELECT * FROM em_closed)) d)
$$;

-- keys 0..2, a row a minute from 10:00 to 10:30, in three transactions, one
-- of them with a savepoint rolled back, and one transaction rolled back
INSERT INTO em_events SELECT g % 3, g, '2026-11-24 10:00+00'::timestamptz + g * interval '1 minute'
  FROM generate_series(0, 12) g;
BEGIN;
INSERT INTO em_events SELECT g % 3, g, '2026-11-24 10:00+00'::timestamptz + g * interval '1 minute'
  FROM generate_series(13, 20) g;
SAVEPOINT s;
INSERT INTO em_events VALUES (1, 1000, '2026-11-24 10:14+00');
ROLLBACK TO SAVEPOINT s;
COMMIT;
BEGIN;
INSERT INTO em_events VALUES (2, 2000, '2026-11-24 10:16+00');
ROLLBACK;
INSERT INTO em_events SELECT g % 3, g, '2026-11-24 10:00+00'::timestamptz + g * interval '1 minute'
  FROM generate_series(21, 30) g;
-- the watermark is 10:30: windows ending 10:05 .. 10:30 are closed
SELECT ss_test.wait_emitted('em_sliding', '2026-11-24 10:30+00') AS emitted;
SELECT min(window_end), max(window_end), count(DISTINCT window_end) AS windows, count(*) AS rows
  FROM em_closed;
SELECT ss_test.emit_diff('2026-11-24 10:05+00', '2026-11-24 10:30+00') AS diff;

-- a late event (lateness 0, before the watermark) is counted and dropped:
-- what was emitted stays; the next windows close with the next events
INSERT INTO em_events VALUES (0, 500, '2026-11-24 10:12+00');
INSERT INTO em_events VALUES (1, 31, '2026-11-24 10:41+00');
SELECT ss_test.wait_emitted('em_sliding', '2026-11-24 10:40+00') AS emitted;
SELECT late_events, emitted_until FROM stream_state.queries WHERE name = 'em_sliding';
DELETE FROM em_events WHERE v = 500;	-- the late row is in no window's rows
SELECT ss_test.emit_diff('2026-11-24 10:05+00', '2026-11-24 10:40+00') AS diff_after_late;
SELECT count(*) AS rows, count(DISTINCT (window_end, k)) AS distinct_rows FROM em_closed;
-- the windows not emitted yet are still readable; emitted ones are evicted
SELECT * FROM stream_state.window_result('em_sliding', '2026-11-24 10:42+00')
	AS t(k int, count bigint, sum bigint, max int);

-- a query without GROUP BY emits one row per closed window, empty ones
-- included (as count(*) over no rows gives one row); into an existing
-- table with an extra column that has a default
CREATE TABLE em_totals (window_start timestamptz, window_end timestamptz, n bigint, total bigint,
						emitted_at timestamptz DEFAULT '2000-01-01');
CREATE TABLE em_tumbling (v int, ts timestamptz);
SELECT stream_state.create_query('em_total',
	$$SELECT count(*) AS n, sum(v) AS total FROM em_tumbling$$,
	time_column => 'ts', window_size => '1 minute', lateness => '1 minute',
	emit_to => 'em_totals');
INSERT INTO em_tumbling VALUES (1, '2026-11-24 10:00:10+00'), (2, '2026-11-24 10:00:50+00'),
	(4, '2026-11-24 10:03:00+00'), (8, '2026-11-24 10:01:30+00');
-- the watermark is 10:02 (10:03 less the lateness): windows to 10:02 closed
SELECT ss_test.wait_emitted('em_total', '2026-11-24 10:02+00') AS emitted;
SELECT * FROM em_totals ORDER BY window_end;
INSERT INTO em_tumbling VALUES (16, '2026-11-24 10:06:00+00');
SELECT ss_test.wait_emitted('em_total', '2026-11-24 10:05+00') AS emitted;
SELECT window_end, n, total FROM em_totals ORDER BY window_end;

-- refusals
SELECT ss_test.error_of($$SELECT stream_state.create_query('em_bad', 'em_events', 'k', 'ts', '1 hour', emit_to => 'x')$$);
SELECT ss_test.error_of($$SELECT stream_state.create_query('em_bad', 'SELECT k, count(*) FROM em_events GROUP BY k', time_column => 'ts', window_size => '1 hour', emit_to => '')$$);
CREATE VIEW em_view AS SELECT * FROM em_closed;
SELECT ss_test.error_of($$SELECT stream_state.create_query('em_bad', 'SELECT k, count(*) FROM em_events GROUP BY k', time_column => 'ts', window_size => '1 hour', emit_to => 'em_view')$$);
CREATE TABLE em_wrong (window_start timestamptz, window_end timestamptz, k bigint, count bigint);
SELECT ss_test.error_of($$SELECT stream_state.create_query('em_bad', 'SELECT k, count(*) FROM em_events GROUP BY k', time_column => 'ts', window_size => '1 hour', emit_to => 'em_wrong')$$);
CREATE TABLE em_short (window_start timestamptz, window_end timestamptz, k int);
SELECT ss_test.error_of($$SELECT stream_state.create_query('em_bad', 'SELECT k, count(*) FROM em_events GROUP BY k', time_column => 'ts', window_size => '1 hour', emit_to => 'em_short')$$);
SELECT ss_test.error_of($$SELECT stream_state.create_query('em_bad', 'SELECT k, count(*) FROM em_events GROUP BY k', time_column => 'ts', window_size => '1 hour', emit_to => 'no_such_schema.t')$$);
CREATE ROLE ss_emit_user;
GRANT SELECT, TRIGGER ON em_events TO ss_emit_user;
GRANT CREATE ON SCHEMA public TO ss_emit_user;
CREATE TABLE em_theirs (window_start timestamptz, window_end timestamptz, k int, count bigint);
SET ROLE ss_emit_user;
SELECT ss_test.error_of($$SELECT stream_state.create_query('em_bad', 'SELECT k, count(*) FROM em_events GROUP BY k', time_column => 'ts', window_size => '1 hour', emit_to => 'em_theirs')$$);
RESET ROLE;
SELECT count(*) AS bad_queries FROM stream_state.query_def WHERE name = 'em_bad';
SELECT to_regclass('em_bad') AS no_view;

-- drop_query keeps the table of closed windows and forgets the progress
SELECT stream_state.drop_query('em_sliding');
SELECT stream_state.drop_query('em_total');
SELECT count(*) AS kept_rows FROM em_closed;
SELECT count(*) AS progress_rows FROM stream_state.emit_progress;
DROP VIEW em_view;
DROP TABLE em_events, em_closed, em_totals, em_tumbling, em_wrong, em_short, em_theirs;
REVOKE CREATE ON SCHEMA public FROM ss_emit_user;
DROP ROLE ss_emit_user;
DROP FUNCTION ss_test.emit_diff(timestamptz, timestamptz);
