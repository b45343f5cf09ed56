-- cq_statements: a transaction's statements fold into the same groups (the
-- capture carries them from one statement to the next at each
-- (sub)transaction level), and window_result still equals the query run over
-- the committed rows, through savepoints rolled back and released, a
-- statement that fails half-way, TRUNCATE at either level, PL/pgSQL
-- exception blocks and two-phase commit.  Also run with every query on the
-- rocksdb backend (make installcheck-rocksdb), with the same output.
CREATE EXTENSION IF NOT EXISTS pg_walinspect;
CREATE TABLE st_ev (k bigint, v int, ts timestamptz);
CREATE TABLE st_other (k bigint, ts timestamptz);
SELECT stream_state.create_query('st_q',
	'SELECT k, count(*), sum(100 / v) AS s, max(v) FROM st_ev GROUP BY k',
	time_column => 'ts', window_size => '1 hour');
SELECT stream_state.create_query('st_q2',
	'SELECT k % 10 AS g, count(*), avg(v) FROM st_ev GROUP BY k % 10',
	time_column => 'ts', window_size => '1 hour');
SELECT stream_state.create_query('st_o',
	'SELECT k, count(*) FROM st_other GROUP BY k',
	time_column => 'ts', window_size => '1 hour');
-- rows of the three queries' windows at 10:30 that differ from the queries
-- over the committed rows (0: none)
CREATE FUNCTION ss_test.st_diff() RETURNS TABLE (q text, diff bigint)
LANGUAGE sql AS $$
	WITH t1 AS (SELECT k, count(*), sum(100 / v) AS s, max(v) FROM st_ev
				 WHERE ts >= '2026-11-24 10:00+00' AND ts < '2026-11-24 11:00+00' GROUP BY k),
	g1 AS (SELECT * FROM stream_state.window_result('st_q', '2026-11-24 10:30+00')
			   AS t(k bigint, count bigint, s bigint, max int)),
	t2 AS (SELECT k % 10 AS g, count(*), avg(v) FROM st_ev
			WHERE ts >= '2026-11-24 10:00+00' AND ts < '2026-11-24 11:00+00' GROUP BY k % 10),
	g2 AS (SELECT * FROM stream_state.window_result('st_q2', '2026-11-24 10:30+00')
			   AS t(g bigint, count bigint, avg numeric)),
	t3 AS (SELECT k, count(*) FROM st_other
			WHERE ts >= '2026-11-24 10:00+00' AND ts < '2026-11-24 11:00+00' GROUP BY k),
	g3 AS (SELECT * FROM stream_state.window_result('st_o', '2026-11-24 10:30+00')
			   AS t(k bigint, count bigint))
	SELECT 'st_q', count(*) FROM ((SELECT * FROM g1 EXCEPT ALL SELECT * FROM t1)
								  UNION ALL (SELECT * FROM t1 EXCEPT ALL SELECT * FROM g1)) d
	UNION ALL
	SELECT 'st_q2', count(*) FROM ((SELECT * FROM g2 EXCEPT ALL SELECT * FROM t2)
								   UNION ALL (SELECT * FROM t2 EXCEPT ALL SELECT * FROM g2)) d
	UNION ALL
	SELECT 'st_o', count(*) FROM ((SELECT * FROM g3 EXCEPT ALL SELECT * FROM t3)
								  UNION ALL (SELECT * FROM t3 EXCEPT ALL SELECT * FROM g3)) d
$$;
-- keys, rows and the sum of st_q's window at 10:30
CREATE FUNCTION ss_test.st_totals(OUT keys bigint, OUT events numeric, OUT total numeric)
LANGUAGE sql AS $$
	SELECT count(*), sum(count), sum(s)
	  FROM stream_state.window_result('st_q', '2026-11-24 10:30+00')
		AS t(k bigint, count bigint, s bigint, max int)
$$;

-- Ten statements of the same 3,000 keys in one transaction: one group per
-- key and query, written once, at pre-commit, in one message (a statement
-- at a time, it was 30,000 partial states of st_q, one per key and
-- statement, for the worker to combine)
SELECT pg_current_wal_insert_lsn() AS st_from \gset
BEGIN;
SELECT format('INSERT INTO st_ev SELECT g, 1 + (g + %s) %% 9, ''2026-11-24 10:%s+00'' FROM generate_series(1, 3000) g',
			  s, lpad(s::text, 2, '0'))
  FROM generate_series(1, 10) s \gexec
INSERT INTO st_other SELECT g, '2026-11-24 10:20+00' FROM generate_series(1, 50) g;
SELECT pg_current_xact_id()::xid AS st_xid \gset
COMMIT;
SELECT count(*) AS messages FROM pg_get_wal_records_info(:'st_from', pg_current_wal_flush_lsn())
 WHERE resource_manager = 'LogicalMessage' AND xid = :'st_xid';
SELECT * FROM ss_test.st_totals();
SELECT * FROM ss_test.st_diff();

-- savepoints: one rolled back, one released, one nested in a released one
-- and rolled back; rows of the same keys at every level
BEGIN;
INSERT INTO st_ev SELECT g, 2, '2026-11-24 10:30+00' FROM generate_series(1, 100) g;
SAVEPOINT a;
INSERT INTO st_ev SELECT g, 3, '2026-11-24 10:31+00' FROM generate_series(1, 100) g;
INSERT INTO st_other VALUES (1, '2026-11-24 10:31+00');
ROLLBACK TO a;
INSERT INTO st_ev SELECT g, 4, '2026-11-24 10:32+00' FROM generate_series(50, 150) g;
SAVEPOINT b;
INSERT INTO st_ev SELECT g, 5, '2026-11-24 10:33+00' FROM generate_series(1, 100) g;
SAVEPOINT c;
INSERT INTO st_ev SELECT g, 6, '2026-11-24 10:34+00' FROM generate_series(1, 100) g;
ROLLBACK TO c;
INSERT INTO st_ev SELECT g, 7, '2026-11-24 10:35+00' FROM generate_series(90, 110) g;
RELEASE b;
INSERT INTO st_ev SELECT g, 8, '2026-11-24 10:36+00' FROM generate_series(1, 10) g;
COMMIT;
SELECT * FROM ss_test.st_totals();
SELECT * FROM ss_test.st_diff();

-- a statement that fails half-way through the capture (100 / 0 in st_q's
-- sum, at its 500th row): its savepoint rolls back what it had folded into
-- the groups the statements before it built
BEGIN;
INSERT INTO st_ev SELECT g, 9, '2026-11-24 10:40+00' FROM generate_series(1, 1000) g;
SAVEPOINT d;
INSERT INTO st_ev SELECT g, CASE WHEN g = 500 THEN 0 ELSE 1 END, '2026-11-24 10:41+00'
  FROM generate_series(1, 1000) g;
ROLLBACK TO d;
INSERT INTO st_ev SELECT g, 9, '2026-11-24 10:42+00' FROM generate_series(1, 1000) g;
COMMIT;
SELECT * FROM ss_test.st_totals();
SELECT * FROM ss_test.st_diff();
-- the same without a savepoint: nothing of the transaction counts
BEGIN;
INSERT INTO st_ev SELECT g, 9, '2026-11-24 10:43+00' FROM generate_series(1, 1000) g;
INSERT INTO st_ev SELECT g, CASE WHEN g = 500 THEN 0 ELSE 1 END, '2026-11-24 10:44+00'
  FROM generate_series(1, 1000) g;
COMMIT;
SELECT * FROM ss_test.st_totals();

-- TRUNCATE in a savepoint: released, it empties what the outer level had
-- carried; rolled back, it does not
BEGIN;
INSERT INTO st_other SELECT g, '2026-11-24 10:45+00' FROM generate_series(1, 20) g;
SAVEPOINT e;
TRUNCATE st_other;
INSERT INTO st_other VALUES (7, '2026-11-24 10:46+00');
ROLLBACK TO e;
INSERT INTO st_other VALUES (8, '2026-11-24 10:47+00');
COMMIT;
SELECT * FROM ss_test.st_diff() WHERE q = 'st_o';
SELECT count(*) AS keys, sum(count) AS events FROM stream_state.window_result('st_o', '2026-11-24 10:30+00')
	AS t(k bigint, count bigint);
BEGIN;
INSERT INTO st_other SELECT g, '2026-11-24 10:48+00' FROM generate_series(1, 20) g;
SAVEPOINT f;
TRUNCATE st_other;
INSERT INTO st_other VALUES (9, '2026-11-24 10:49+00');
RELEASE f;
INSERT INTO st_other VALUES (9, '2026-11-24 10:50+00');
COMMIT;
SELECT * FROM stream_state.window_result('st_o', '2026-11-24 10:30+00')
	AS t(k bigint, count bigint);
SELECT * FROM ss_test.st_diff() WHERE q = 'st_o';

-- a PL/pgSQL loop whose exception block rolls back every third iteration's
-- insert after it was captured
DO $$
BEGIN
	FOR i IN 1..30 LOOP
		BEGIN
			INSERT INTO st_ev SELECT g, 1 + i % 5, '2026-11-24 10:51+00' FROM generate_series(1, 200) g;
			IF i % 3 = 0 THEN
				RAISE EXCEPTION 'skip %', i;
			END IF;
		EXCEPTION WHEN raise_exception THEN
			NULL;
		END;
	END LOOP;
END $$;
SELECT * FROM ss_test.st_totals();
SELECT * FROM ss_test.st_diff();

-- two-phase commit: prepared with carried groups, then committed; another
-- prepared and rolled back
BEGIN;
INSERT INTO st_ev SELECT g, 2, '2026-11-24 10:52+00' FROM generate_series(1, 300) g;
INSERT INTO st_ev SELECT g, 3, '2026-11-24 10:53+00' FROM generate_series(1, 300) g;
PREPARE TRANSACTION 'st_2pc_a';
BEGIN;
INSERT INTO st_ev SELECT g, 4, '2026-11-24 10:54+00' FROM generate_series(1, 300) g;
INSERT INTO st_ev SELECT g, 5, '2026-11-24 10:55+00' FROM generate_series(1, 300) g;
PREPARE TRANSACTION 'st_2pc_b';
COMMIT PREPARED 'st_2pc_a';
ROLLBACK PREPARED 'st_2pc_b';
SELECT * FROM ss_test.st_totals();
SELECT * FROM ss_test.st_diff();

-- capture_memory bounds the groups carried for all queries together: one
-- query's groups of 4,000 keys (about 0.7 MB) fit in 1 MB, two queries' do
-- not, so the second query's groups are written at the end of each of
-- twenty statements (about 2 MB of partial states: more than one message)
-- while the first's are carried to the commit
SELECT stream_state.create_query('st_q3', 'SELECT k, min(v) FROM st_ev GROUP BY k',
	time_column => 'ts', window_size => '1 hour');
SET stream_state.capture_memory = '1MB';
SELECT pg_current_wal_insert_lsn() AS st_from \gset
BEGIN;
SELECT format('INSERT INTO st_ev SELECT g, 1 + (g + %s) %% 7, ''2026-11-24 10:%s+00'' FROM generate_series(1, 4000) g',
			  s, lpad((s + 10)::text, 2, '0'))
  FROM generate_series(1, 20) s \gexec
SELECT pg_current_xact_id()::xid AS st_xid \gset
COMMIT;
RESET stream_state.capture_memory;
SELECT count(*) AS messages FROM pg_get_wal_records_info(:'st_from', pg_current_wal_flush_lsn())
 WHERE resource_manager = 'LogicalMessage' AND xid = :'st_xid';
SELECT * FROM ss_test.st_totals();
SELECT * FROM ss_test.st_diff();
SELECT count(*) AS diff FROM (
	(SELECT * FROM stream_state.window_result('st_q3', '2026-11-24 10:30+00') AS t(k bigint, min int)
	 EXCEPT ALL
	 SELECT k, min(v) FROM st_ev WHERE ts >= '2026-11-24 10:00+00' AND ts < '2026-11-24 11:00+00' GROUP BY k)
	UNION ALL
	(SELECT k, min(v) FROM st_ev WHERE ts >= '2026-11-24 10:00+00' AND ts < '2026-11-24 11:00+00' GROUP BY k
	 EXCEPT ALL
	 SELECT * FROM stream_state.window_result('st_q3', '2026-11-24 10:30+00') AS t(k bigint, min int))) d;

SELECT stream_state.drop_query(name) FROM stream_state.query_def WHERE name LIKE 'st\_%' ORDER BY name;
DROP TABLE st_ev, st_other;
DROP FUNCTION ss_test.st_diff(), ss_test.st_totals();
DROP EXTENSION pg_walinspect;
