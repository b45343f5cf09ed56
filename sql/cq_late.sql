-- cq_late: late_to.  Events behind the watermark are late: counted, left
-- out of every window, and with late_to inserted into a table, one row per
-- commit, key and pane (session queries: key and session group), holding
-- the query's columns over those late events, exactly once.
CREATE TABLE lt_events (b int, k int, v int, ts timestamptz);
SELECT stream_state.create_query('lt_sliding',
	$$SELECT k, count(*) AS n, sum(v) AS s, max(v) AS mx FROM lt_events GROUP BY k HAVING count(*) > 1$$,
	time_column => 'ts', window_size => '10 minutes', slide => '5 minutes', lateness => '3 minutes',
	late_to => 'lt_late');
-- the table is made with commit_lsn, committed_at, events_from, events_to
-- and the query's columns
SELECT attname, format_type(atttypid, atttypmod), attnotnull FROM pg_attribute
 WHERE attrelid = 'lt_late'::regclass AND attnum > 0 ORDER BY attnum;
SELECT late_to, late_written_until FROM stream_state.queries WHERE name = 'lt_sliding';

-- 60 transactions (b) of 15 rows each, time moving forward two minutes a
-- transaction and each row up to 25 minutes behind it: many are late.
-- Every seventh transaction rolls back, every fifth has a subtransaction
-- that rolls back.
CREATE PROCEDURE pg_temp.fill(first int, last int) LANGUAGE plpgsql AS $$
BEGIN
	PERFORM setseed(0.42);
	FOR b IN first .. last LOOP
		INSERT INTO lt_events
		SELECT b, (random() * 4)::int, (random() * 1000)::int,
			   '2026-11-24 10:00+00'::timestamptz + b * interval '2 minutes'
			   - (random() * 1500)::int * interval '1 second'
		  FROM generate_series(1, 15);
		IF b % 5 = 0 THEN
			BEGIN
				INSERT INTO lt_events VALUES (b, 1, 100000, '2026-11-24 09:00+00');
				RAISE EXCEPTION 'undo';
			EXCEPTION WHEN raise_exception THEN
				NULL;
			END;
		END IF;
		IF b % 7 = 0 THEN
			ROLLBACK;
		ELSE
			COMMIT;
		END IF;
	END LOOP;
END $$;
CALL pg_temp.fill(1, 60);

-- Which rows are late: those whose pane is below the first pane alive
-- under the watermark before their transaction (the newest event of the
-- transactions before it, less the lateness).  Panes are 5 minutes.
CREATE FUNCTION pg_temp.us(t timestamptz) RETURNS bigint LANGUAGE sql
	AS $$ SELECT (extract(epoch FROM t) * 1000000)::bigint $$;
CREATE VIEW pg_temp.lt_truth AS
	WITH wm AS (
		SELECT b, (SELECT pg_temp.us(max(ts)) - 180000000 FROM lt_events p WHERE p.b < e.b) AS wm
		  FROM (SELECT DISTINCT b FROM lt_events) e)
	SELECT e.*, pg_temp.us(e.ts) / 300000000 AS pane,
		   coalesce(pg_temp.us(e.ts) / 300000000 <
					  ((floor(wm.wm / 300000000.0)::bigint + 1) * 300000000 - 600000000) / 300000000,
					false) AS late
	  FROM lt_events e JOIN wm USING (b);

SELECT stream_state.wait_applied();
SELECT ss_test.wait_until($$(SELECT coalesce(sum(n), 0) FROM lt_late) =
	(SELECT late_events FROM stream_state.queries WHERE name = 'lt_sliding')$$) AS written;
SELECT count(*) FILTER (WHERE late) AS late_rows, count(*) AS rows,
	   (SELECT late_events FROM stream_state.queries WHERE name = 'lt_sliding') AS late_events
  FROM pg_temp.lt_truth;
-- per commit, key and pane, the query's columns over the late rows (HAVING
-- is left out: a late group is a correction, not a window)
SELECT count(*) AS late_groups,
	   (SELECT count(*) FROM ((SELECT k, n, s, mx, events_from, events_to FROM lt_late
							   EXCEPT ALL
							   SELECT k, count(*), sum(v), max(v),
									  to_timestamp(pane * 300), to_timestamp(pane * 300 + 300)
								 FROM pg_temp.lt_truth WHERE late GROUP BY b, k, pane)
							  UNION ALL
							  (SELECT k, count(*), sum(v), max(v),
									  to_timestamp(pane * 300), to_timestamp(pane * 300 + 300)
								 FROM pg_temp.lt_truth WHERE late GROUP BY b, k, pane
							   EXCEPT ALL
							   SELECT k, n, s, mx, events_from, events_to FROM lt_late)) d) AS diff
  FROM lt_late;
-- each group once; one commit per transaction, in commit order
SELECT count(*) = count(DISTINCT (commit_lsn, k, events_from)) AS once,
	   count(DISTINCT commit_lsn) = count(DISTINCT (commit_lsn, committed_at)) AS one_time_per_commit
  FROM lt_late;
SELECT count(*) AS late_transactions FROM (SELECT DISTINCT b FROM pg_temp.lt_truth WHERE late) t;
SELECT count(DISTINCT commit_lsn) AS late_commits FROM lt_late;
-- the windows still open hold no late row: the last one equals the query
-- over the rows of its time that were not late
CREATE VIEW pg_temp.lt_open AS
	SELECT * FROM stream_state.window_result('lt_sliding', '2026-11-24 11:58+00')
		AS t(k int, n bigint, s bigint, mx int);
SELECT (SELECT count(*) FROM pg_temp.lt_open) AS open_rows,
	   (SELECT count(*) FROM ((SELECT * FROM pg_temp.lt_open
							   EXCEPT ALL
							   SELECT k, count(*), sum(v), max(v) FROM pg_temp.lt_truth
								WHERE NOT late AND ts >= '2026-11-24 11:50+00' AND ts < '2026-11-24 12:00+00'
								GROUP BY k HAVING count(*) > 1)
							  UNION ALL
							  (SELECT k, count(*), sum(v), max(v) FROM pg_temp.lt_truth
								WHERE NOT late AND ts >= '2026-11-24 11:50+00' AND ts < '2026-11-24 12:00+00'
								GROUP BY k HAVING count(*) > 1
							   EXCEPT ALL
							   SELECT * FROM pg_temp.lt_open)) d) AS window_diff;
SELECT late_written_until = (SELECT max(commit_lsn) FROM lt_late) AS progress
  FROM stream_state.queries WHERE name = 'lt_sliding';
-- written groups leave state: nothing is left to write
SELECT count(*) AS pending FROM stream_state._late_result('lt_sliding',
	(SELECT late_written_until FROM stream_state.queries WHERE name = 'lt_sliding'), 'FFFFFFFF/FFFFFFFF')
	AS t(commit_lsn pg_lsn, committed_at timestamptz, events_from timestamptz, events_to timestamptz,
		 k int, n bigint, s bigint, mx int);

-- a query without GROUP BY: a late row has the aggregates only, and none
-- is written for a commit without late events
CREATE TABLE lt_total (v int, ts timestamptz);
SELECT stream_state.create_query('lt_total_q', $$SELECT count(*) AS n, avg(v) AS a FROM lt_total$$,
	time_column => 'ts', window_size => '1 minute', late_to => 'lt_total_late');
INSERT INTO lt_total VALUES (1, '2026-11-24 10:00:30+00'), (2, '2026-11-24 10:05:00+00');
INSERT INTO lt_total VALUES (3, '2026-11-24 10:05:10+00');
INSERT INTO lt_total VALUES (4, '2026-11-24 10:01:00+00'), (6, '2026-11-24 10:01:59+00'),
	(8, '2026-11-24 10:04:00+00'), (10, '2026-11-24 10:06:00+00');
SELECT ss_test.wait_until($$(SELECT count(*) FROM lt_total_late) = 2$$) AS written;
SELECT events_from, events_to, n, a FROM lt_total_late ORDER BY events_from;

-- session windows: a late group is a key's events of one gap bucket whose
-- session had ended; events_from and events_to are its first and last
-- (on either backend: make installcheck-rocksdb runs it on rocksdb)
CREATE TABLE lt_clicks (u int, ts timestamptz);
SELECT stream_state.create_query('lt_sessions', $$SELECT u, count(*) AS n FROM lt_clicks GROUP BY u$$,
	time_column => 'ts', session_gap => '10 minutes', late_to => 'lt_session_late');
INSERT INTO lt_clicks VALUES (1, '2026-11-24 10:00+00'), (1, '2026-11-24 10:05+00');
INSERT INTO lt_clicks VALUES (2, '2026-11-24 11:00+00');
-- user 1's session ended at 10:15, before the watermark (11:00): late
INSERT INTO lt_clicks VALUES (1, '2026-11-24 10:06+00'), (1, '2026-11-24 10:07+00'),
	(2, '2026-11-24 10:59+00');
SELECT ss_test.wait_until($$(SELECT count(*) FROM lt_session_late) = 1$$) AS written;
SELECT u, n, events_from, events_to FROM lt_session_late;
SELECT late_events FROM stream_state.queries WHERE name = 'lt_sessions';

-- alter_query: late_to off, on again with another table, and an existing
-- table in place of one
SELECT stream_state.alter_query('lt_total_q', late_to => '');
SELECT late_to, late_written_until FROM stream_state.queries WHERE name = 'lt_total_q';
INSERT INTO lt_total VALUES (20, '2026-11-24 10:02:00+00');
SELECT stream_state.wait_applied();
SELECT late_events FROM stream_state.queries WHERE name = 'lt_total_q';
CREATE TABLE lt_total_late2 (commit_lsn pg_lsn, committed_at timestamptz, events_from timestamptz,
	events_to timestamptz, n bigint, a numeric, note text DEFAULT 'mine');
SELECT stream_state.alter_query('lt_total_q', late_to => 'lt_total_late2');
SELECT stream_state.alter_query('lt_total_q', late_to => 'lt_total_late2');
INSERT INTO lt_total VALUES (30, '2026-11-24 10:03:00+00'), (40, '2026-11-24 10:03:30+00');
SELECT ss_test.wait_until($$(SELECT count(*) FROM lt_total_late2) = 1$$) AS written;
SELECT events_from, n, a, note FROM lt_total_late2;
SELECT count(*) AS old_table_rows FROM lt_total_late;

-- bad input; each leaves the query as it was
SELECT stream_state.create_query('lt_bad', 'lt_events', key_column => 'k', time_column => 'ts',
	window_size => '5 minutes', late_to => 'lt_x');
SELECT stream_state.create_query('lt_bad', $$SELECT k, count(*) FROM lt_events GROUP BY k$$,
	time_column => 'ts', window_size => '5 minutes', late_to => '');
SELECT stream_state.create_query('lt_bad', $$SELECT k, count(*) FROM lt_events GROUP BY k$$,
	time_column => 'ts', window_size => '5 minutes', late_to => 'lt_sliding');
CREATE TABLE lt_wrong (commit_lsn pg_lsn, committed_at timestamptz, events_from timestamptz,
	events_to timestamptz, k int);
SELECT stream_state.create_query('lt_bad', $$SELECT k, count(*) FROM lt_events GROUP BY k$$,
	time_column => 'ts', window_size => '5 minutes', late_to => 'lt_wrong');
ALTER TABLE lt_wrong ADD COLUMN count int;
SELECT stream_state.create_query('lt_bad', $$SELECT k, count(*) FROM lt_events GROUP BY k$$,
	time_column => 'ts', window_size => '5 minutes', late_to => 'lt_wrong');
ALTER TABLE lt_wrong DROP COLUMN commit_lsn;
SELECT stream_state.create_query('lt_bad', $$SELECT k, count(*) FROM lt_events GROUP BY k$$,
	time_column => 'ts', window_size => '5 minutes', late_to => 'lt_wrong');
SELECT stream_state.create_query('lt_bad', $$SELECT k, count(*) FROM lt_events GROUP BY k$$,
	time_column => 'ts', window_size => '5 minutes', emit_to => 'lt_same', late_to => 'lt_same');
SELECT to_regclass('lt_same') AS not_made;
SELECT stream_state.alter_query('lt_sliding', emit_to => 'lt_late');
SELECT stream_state.create_query('lt_count', 'lt_events', key_column => 'k', time_column => 'ts',
	window_size => '5 minutes');
SELECT stream_state.alter_query('lt_count', late_to => 'lt_count_late');
CREATE TABLE lt_theirs (commit_lsn pg_lsn, committed_at timestamptz, events_from timestamptz,
	events_to timestamptz, n bigint, a numeric);
CREATE ROLE ss_late_user;
GRANT USAGE ON SCHEMA public TO ss_late_user;
GRANT SELECT, TRIGGER ON lt_total TO ss_late_user;
SET ROLE ss_late_user;
SELECT stream_state.create_query('lt_theirs_q', $$SELECT count(*) AS n, avg(v) AS a FROM lt_total$$,
	time_column => 'ts', window_size => '1 minute', late_to => 'lt_theirs');
RESET ROLE;
SELECT count(*) AS queries FROM stream_state.queries WHERE name LIKE 'lt\_%';
SELECT name, late_to FROM stream_state.queries WHERE name LIKE 'lt\_%' ORDER BY name;

-- the rocksdb backend keeps late groups too (in RocksDB, with the state):
-- create_query and alter_query of late_to there, and set_backend there and
-- back while groups wait for a table that refuses rows
CREATE TABLE lt_rtotal (v int, ts timestamptz);
SELECT stream_state.create_query('lt_rocks', $$SELECT count(*) AS n, sum(v) AS s FROM lt_rtotal$$,
	time_column => 'ts', window_size => '1 minute', late_to => 'lt_rocks_late', backend => 'rocksdb');
INSERT INTO lt_rtotal VALUES (1, '2026-11-24 10:00:30+00'), (2, '2026-11-24 10:05:00+00');
INSERT INTO lt_rtotal VALUES (3, '2026-11-24 10:01:10+00'), (4, '2026-11-24 10:01:20+00');
SELECT ss_test.wait_until($$(SELECT count(*) FROM lt_rocks_late) = 1$$) AS written;
SELECT stream_state.alter_query('lt_rocks', late_to => '');
INSERT INTO lt_rtotal VALUES (5, '2026-11-24 10:02:00+00');
SELECT stream_state.wait_applied();
SELECT stream_state.alter_query('lt_rocks', late_to => 'lt_rocks_late');
CREATE TABLE lt_block (blocked bool);
CREATE FUNCTION lt_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF EXISTS (SELECT FROM public.lt_block) THEN
		RAISE EXCEPTION 'lt_rocks_late is blocked';
	END IF;
	RETURN NEW;
END $$;
CREATE TRIGGER lt_refuse BEFORE INSERT ON lt_rocks_late FOR EACH ROW EXECUTE FUNCTION public.lt_refuse();
INSERT INTO lt_block VALUES (true);
INSERT INTO lt_rtotal VALUES (6, '2026-11-24 10:03:00+00'), (7, '2026-11-24 10:03:10+00');
INSERT INTO lt_rtotal VALUES (8, '2026-11-24 10:04:00+00'), (9, '2026-11-24 10:02:40+00');
SELECT stream_state.wait_applied();
CREATE VIEW pg_temp.lt_rocks_pending AS
	SELECT * FROM stream_state._late_result('lt_rocks',
		(SELECT coalesce(late_written_until, '0/0') FROM stream_state.queries WHERE name = 'lt_rocks'),
		'FFFFFFFF/FFFFFFFF')
	AS t(commit_lsn pg_lsn, committed_at timestamptz, events_from timestamptz, events_to timestamptz,
		 n bigint, s bigint);
SELECT events_from, n, s FROM pg_temp.lt_rocks_pending ORDER BY commit_lsn, events_from;
-- to memory, back to rocksdb, and on to the default backend (a no-op for
-- make installcheck-rocksdb): the groups stay pending
SET client_min_messages = warning;
SELECT stream_state.set_backend('lt_rocks', 'memory');
SELECT stream_state.set_backend('lt_rocks', 'rocksdb');
SELECT stream_state.set_backend('lt_rocks', current_setting('stream_state.default_backend'));
RESET client_min_messages;
INSERT INTO lt_rtotal VALUES (10, '2026-11-24 10:04:30+00');
SELECT stream_state.wait_applied();
SELECT events_from, n, s FROM pg_temp.lt_rocks_pending ORDER BY commit_lsn, events_from;
SELECT count(*) AS blocked_rows FROM lt_rocks_late;
DELETE FROM lt_block;
SELECT ss_test.wait_until($$(SELECT count(*) FROM lt_rocks_late) = 5$$) AS written;
-- each late row once, against the late rows of the table: v 5 was late
-- with late_to off, so it is counted and not written
SELECT events_from, n, s FROM lt_rocks_late ORDER BY commit_lsn, events_from;
SELECT count(*) = count(DISTINCT (commit_lsn, events_from)) AS once FROM lt_rocks_late;
SELECT late_events, late_written_until = (SELECT max(commit_lsn) FROM lt_rocks_late) AS progress
  FROM stream_state.queries WHERE name = 'lt_rocks';
SELECT count(*) AS pending FROM pg_temp.lt_rocks_pending;
SELECT stream_state.drop_query('lt_rocks');
DROP VIEW pg_temp.lt_rocks_pending;
DROP TABLE lt_rtotal, lt_rocks_late, lt_block;
DROP FUNCTION lt_refuse();

-- dropping a query leaves its late_to table, and no progress
SELECT stream_state.drop_query('lt_sessions');
SELECT count(*) AS rows_kept FROM lt_session_late;
SELECT count(*) AS progress_rows FROM stream_state.late_progress;

SELECT stream_state.drop_query('lt_sliding');
SELECT stream_state.drop_query('lt_total_q');
SELECT stream_state.drop_query('lt_count');
DROP VIEW pg_temp.lt_open, pg_temp.lt_truth;
DROP TABLE lt_events, lt_total, lt_clicks, lt_late, lt_total_late, lt_total_late2, lt_session_late,
	lt_wrong, lt_theirs;
REVOKE USAGE ON SCHEMA public FROM ss_late_user;
DROP ROLE ss_late_user;
