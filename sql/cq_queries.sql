-- cq_queries: continuous queries in SQL: window_result and the typed view
-- equal the query run over the window's rows, through backfill, statements,
-- rollbacks and savepoints.  Also run with every query on the rocksdb
-- backend (make installcheck-rocksdb), with the same output.
CREATE EXTENSION IF NOT EXISTS hll;
CREATE TABLE cq_events (user_id bigint, amount numeric, page text, kind text, ts timestamptz);
INSERT INTO cq_events
SELECT g % 5, g % 7, 'p' || (g % 3), CASE WHEN g % 2 = 0 THEN 'purchase' ELSE 'view' END,
	   '2026-11-24 10:00+00'::timestamptz + g * interval '1 minute'
  FROM generate_series(1, 50) g;
SELECT stream_state.create_query('cq_spend',
	$$SELECT user_id, count(*), sum(amount), avg(amount), max(amount),
			 hll_cardinality(hll_add_agg(hll_hash_text(page))) AS pages
		FROM cq_events WHERE kind = 'purchase' GROUP BY user_id$$,
	time_column => 'ts', window_size => '1 hour', slide => '10 minutes');
-- rows that differ between window_result and the query over the window's rows
CREATE FUNCTION ss_test.cq_window_diff(at timestamptz) RETURNS bigint
LANGUAGE sql AS $$
	WITH w AS (SELECT date_bin('10 minutes', at, 'epoch') + interval '10 minutes' AS e),
	truth AS (
		SELECT user_id, count(*), sum(amount), avg(amount), max(amount),
			   hll_cardinality(hll_add_agg(hll_hash_text(page))) AS pages
		  FROM cq_events, w WHERE kind = 'purchase' AND ts >= w.e - interval '1 hour' AND ts < w.e
		 GROUP BY user_id),
	got AS (
		SELECT * FROM stream_state.window_result('cq_spend', at)
			AS t(user_id bigint, count bigint, sum numeric, avg numeric, max numeric, pages float8))
	SELECT count(*) FROM ((SELECT * FROM got EXCEPT ALL SELECT * FROM truth)
						  UNION ALL (SELECT * FROM truth EXCEPT ALL SELECT * FROM got)) d
$$;
SELECT ss_test.cq_window_diff('2026-11-24 10:55+00') AS diff;

-- two statements in one transaction, a rollback, a savepoint rolled back
BEGIN;
INSERT INTO cq_events SELECT g % 5, g, 'p9', 'purchase', '2026-11-24 10:00+00'::timestamptz + g * interval '1 minute'
  FROM generate_series(51, 55) g;
INSERT INTO cq_events VALUES (7, 1.5, 'p1', 'purchase', '2026-11-24 10:56+00');
COMMIT;
BEGIN;
INSERT INTO cq_events VALUES (1, 100, 'x', 'purchase', '2026-11-24 10:30+00');
ROLLBACK;
BEGIN;
INSERT INTO cq_events VALUES (2, 3, 'p2', 'purchase', '2026-11-24 10:57+00');
SAVEPOINT s;
INSERT INTO cq_events VALUES (2, 1000, 'p5', 'purchase', '2026-11-24 10:57+00');
ROLLBACK TO s;
INSERT INTO cq_events VALUES (3, 4, 'p3', 'purchase', '2026-11-24 10:58+00');
COMMIT;
SELECT ss_test.cq_window_diff('2026-11-24 10:55+00') AS diff;
SELECT * FROM stream_state.window_result('cq_spend', '2026-11-24 10:55+00')
	AS t(user_id bigint, count bigint, sum numeric, avg numeric, max numeric, pages float8)
 ORDER BY user_id;
-- the typed view: the window of now(), none of these rows
SELECT count(*) FROM cq_spend;
SELECT attname, atttypid::regtype FROM pg_attribute
 WHERE attrelid = 'cq_spend'::regclass AND attnum > 0 ORDER BY attnum;

-- a transaction whose partial states outgrow 1 MB writes them to the WAL
-- during the statement (30,000 groups of about 60 bytes each), also inside
-- a savepoint that is rolled back and one that is released, and before a
-- TRUNCATE; every case is exact
CREATE TABLE cq_big (k bigint, v bigint, ts timestamptz);
SELECT stream_state.create_query('cq_bigq',
	'SELECT k, count(*), sum(v), avg(v), max(v) FROM cq_big GROUP BY k',
	time_column => 'ts', window_size => '1 hour');
CREATE FUNCTION ss_test.cq_big_diff() RETURNS bigint
LANGUAGE sql AS $$
	WITH truth AS (
		SELECT k, count(*), sum(v), avg(v), max(v) FROM cq_big
		 WHERE ts >= '2026-11-24 10:00+00' AND ts < '2026-11-24 11:00+00' GROUP BY k),
	got AS (
		SELECT * FROM stream_state.window_result('cq_bigq', '2026-11-24 10:30+00')
			AS t(k bigint, count bigint, sum numeric, avg numeric, max bigint))
	SELECT count(*) FROM ((SELECT * FROM got EXCEPT ALL SELECT * FROM truth)
						  UNION ALL (SELECT * FROM truth EXCEPT ALL SELECT * FROM got)) d
$$;
CREATE EXTENSION IF NOT EXISTS pg_walinspect;
SELECT pg_current_wal_insert_lsn() AS big_from \gset
BEGIN;
INSERT INTO cq_big SELECT g, g % 1000, '2026-11-24 10:00+00' FROM generate_series(1, 30000) g;
SELECT pg_current_xact_id()::xid AS big_xid \gset
SAVEPOINT a;
INSERT INTO cq_big SELECT 100000 + g, 5, '2026-11-24 10:01+00' FROM generate_series(1, 30000) g;
ROLLBACK TO a;
SAVEPOINT b;
INSERT INTO cq_big SELECT g, 7, '2026-11-24 10:02+00' FROM generate_series(1, 30000, 2) g;
RELEASE b;
COMMIT;
-- the first statement's groups were carried to pre-commit (cq_statements)
-- and went out there with the released savepoint's, in messages of 1 MB
SELECT count(*) AS messages_of_top_xid FROM pg_get_wal_records_info(:'big_from', pg_current_wal_flush_lsn())
 WHERE resource_manager = 'LogicalMessage' AND xid = :'big_xid';
BEGIN;
INSERT INTO cq_big SELECT 200000 + g, 1, '2026-11-24 10:03+00' FROM generate_series(1, 30000) g;
ROLLBACK;
SELECT count(*) AS keys, sum(count) AS events, sum(sum) AS total, max(max)
  FROM stream_state.window_result('cq_bigq', '2026-11-24 10:30+00')
	AS t(k bigint, count bigint, sum numeric, avg numeric, max bigint);
SELECT ss_test.cq_big_diff() AS diff;
BEGIN;
INSERT INTO cq_big SELECT g, 1, '2026-11-24 10:04+00' FROM generate_series(1, 30000) g;
TRUNCATE cq_big;
INSERT INTO cq_big VALUES (1, 10, '2026-11-24 10:05+00'), (2, 20, '2026-11-24 10:05+00');
COMMIT;
SELECT * FROM stream_state.window_result('cq_bigq', '2026-11-24 10:30+00')
	AS t(k bigint, count bigint, sum numeric, avg numeric, max bigint) ORDER BY k;
SELECT ss_test.cq_big_diff() AS diff;
SELECT stream_state.drop_query('cq_bigq');
DROP TABLE cq_big;
DROP EXTENSION pg_walinspect;

-- errors
-- the rocksdb backend keeps session windows and retention too
SELECT stream_state.create_query('cq_r', 'SELECT user_id, count(*) FROM cq_events GROUP BY user_id',
	time_column => 'ts', session_gap => '1 hour', backend => 'rocksdb');
SELECT backend, session_gap FROM stream_state.queries WHERE name = 'cq_r';
SELECT stream_state.drop_query('cq_r');
SELECT stream_state.create_query('cq_r', 'SELECT user_id, count(*) FROM cq_events GROUP BY user_id',
	time_column => 'ts', window_size => '1 hour', retention => '2 hours', backend => 'rocksdb');
SELECT backend, retention FROM stream_state.queries WHERE name = 'cq_r';
SELECT stream_state.drop_query('cq_r');
SELECT stream_state.create_query('cq_r', 'SELECT user_id, count(*) FROM cq_events GROUP BY user_id',
	time_column => 'ts', window_size => '1 hour', backend => 'rocksdb');
SELECT stream_state.alter_query('cq_r', retention => '2 hours');
SELECT backend, retention FROM stream_state.queries WHERE name = 'cq_r';
SELECT stream_state.drop_query('cq_r');
SELECT stream_state.create_query('cq_r', 'SELECT user_id, count(*) FROM cq_events GROUP BY user_id',
	time_column => 'ts', window_size => '1 hour', retention => '2 hours', backend => 'memory');
SELECT stream_state.set_backend('cq_r', 'rocksdb');
SELECT backend, retention FROM stream_state.queries WHERE name = 'cq_r';
SELECT stream_state.drop_query('cq_r');
SELECT stream_state.create_query('cq_r', 'SELECT user_id, count(*) FROM cq_events GROUP BY user_id',
	time_column => 'ts', session_gap => '1 hour', backend => 'memory');
SELECT stream_state.set_backend('cq_r', 'rocksdb');
SELECT backend, session_gap FROM stream_state.queries WHERE name = 'cq_r';
SELECT stream_state.drop_query('cq_r');
SELECT ss_test.error_of($$SELECT stream_state.create_query('cq_j', 'SELECT page::jsonb AS j, count(*) FROM cq_events GROUP BY 1', time_column => 'ts', session_gap => '1 hour')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.window_result('cq_spend', '2026-11-24 10:55+00') AS t(user_id bigint)$$);
SELECT ss_test.error_of($$SELECT stream_state.window_count('cq_spend', 1::bigint, '2026-11-24 10:55+00')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.window_counts('cq_spend', '2026-11-24 10:55+00')$$);
-- moved to the other backend and back (on either, at the commit, before
-- its rows): the same result
SELECT stream_state.set_backend('cq_spend', CASE current_setting('stream_state.default_backend')
	WHEN 'memory' THEN 'rocksdb' ELSE 'memory' END);
INSERT INTO cq_events VALUES (4, 6, 'p4', 'purchase', '2026-11-24 10:58:30+00');
SELECT ss_test.cq_window_diff('2026-11-24 10:55+00') AS diff_moved;
SELECT stream_state.set_backend('cq_spend', current_setting('stream_state.default_backend'));
INSERT INTO cq_events VALUES (4, 7, 'p6', 'purchase', '2026-11-24 10:58:40+00');
SELECT ss_test.cq_window_diff('2026-11-24 10:55+00') AS diff_moved_back;
SELECT ss_test.error_of($$SELECT stream_state.create_query('cq_t', 'cq_events', NULL, 'ts', '1 hour')$$);
SELECT count(*) AS state_rows FROM stream_state.state WHERE query = 'cq_spend';
-- rebuild recomputes it from the table (rebuild_sql_during_inserts.spec
-- shows it under concurrent inserts)
SELECT stream_state.rebuild('cq_spend');
SELECT ss_test.cq_window_diff('2026-11-24 10:55+00') AS diff_after_rebuild;

-- a statement whose groups outgrow stream_state.capture_memory spills the
-- rows of the groups that do not fit: small states (cq_small's) by hash,
-- read again a partition at a time, several levels deep; large ones
-- (cq_spend's hll, about 130 kB each) sorted and folded a group at a time.
-- The same results
SELECT stream_state.create_query('cq_small',
	'SELECT user_id, count(*), sum(amount), max(page) FROM cq_events GROUP BY user_id',
	time_column => 'ts', window_size => '1 hour', slide => '10 minutes');
SET stream_state.capture_memory = '64kB';
INSERT INTO cq_events SELECT g % 500, g % 9, 'p' || (g % 37), 'purchase',
	   '2026-11-24 10:00+00'::timestamptz + (g % 50) * interval '1 minute'
  FROM generate_series(1, 3000) g;
RESET stream_state.capture_memory;
SELECT ss_test.cq_window_diff('2026-11-24 10:55+00') AS diff_after_spills;
WITH truth AS (
	SELECT user_id, count(*), sum(amount), max(page) FROM cq_events
	 WHERE ts >= '2026-11-24 10:00+00' AND ts < '2026-11-24 11:00+00' GROUP BY user_id),
got AS (
	SELECT * FROM stream_state.window_result('cq_small', '2026-11-24 10:55+00')
		AS t(user_id bigint, count bigint, sum numeric, max text))
SELECT (SELECT count(*) FROM got) AS small_keys,
	   (SELECT count(*) FROM ((SELECT * FROM got EXCEPT ALL SELECT * FROM truth)
							 UNION ALL (SELECT * FROM truth EXCEPT ALL SELECT * FROM got)) d) AS small_diff;
SELECT stream_state.drop_query('cq_small');
SELECT count(*) AS keys FROM stream_state.window_result('cq_spend', '2026-11-24 10:55+00')
	AS t(user_id bigint, count bigint, sum numeric, avg numeric, max numeric, pages float8);

-- aggregates with the same transition share one state per statement (sum
-- and avg of one argument); a different argument or FILTER keeps its own
SELECT stream_state.create_query('cq_shared',
	$$SELECT user_id, sum(amount) AS s, avg(amount) AS a,
			 avg(amount) FILTER (WHERE kind = 'view') AS av, sum(amount + 1) AS s1,
			 count(amount) AS c, count(*) AS n, max(amount) AS m
		FROM cq_events GROUP BY user_id$$,
	time_column => 'ts', window_size => '1 hour', slide => '10 minutes');
INSERT INTO cq_events SELECT g % 4, CASE WHEN g % 5 = 0 THEN NULL ELSE g / 3.0 END, 'p',
	   CASE WHEN g % 3 = 0 THEN 'view' ELSE 'purchase' END,
	   '2026-11-24 10:00+00'::timestamptz + g * interval '13 seconds'
  FROM generate_series(1, 200) g;
WITH truth AS (
	SELECT user_id, sum(amount) AS s, avg(amount) AS a,
		   avg(amount) FILTER (WHERE kind = 'view') AS av, sum(amount + 1) AS s1,
		   count(amount) AS c, count(*) AS n, max(amount) AS m
	  FROM cq_events WHERE ts >= '2026-11-24 10:00+00' AND ts < '2026-11-24 11:00+00'
	 GROUP BY user_id),
got AS (
	SELECT * FROM stream_state.window_result('cq_shared', '2026-11-24 10:55+00')
		AS t(user_id bigint, s numeric, a numeric, av numeric, s1 numeric, c bigint, n bigint, m numeric))
SELECT (SELECT count(*) FROM truth) AS keys,
	   (SELECT count(*) FROM ((SELECT * FROM got EXCEPT ALL SELECT * FROM truth)
							  UNION ALL (SELECT * FROM truth EXCEPT ALL SELECT * FROM got)) d) AS diff;
SELECT stream_state.drop_query('cq_shared');

-- sum(bigint) and avg(bigint) are folded without their internal state (a
-- count and an int128 sum in the group, serialised as int8_avg_serialize
-- would: cq_agg.c): NULLs, both signs, sums past 64 bits, a FILTER that
-- leaves a group with no input, a statement whose groups spill, a savepoint
-- rolled back; sliding and session windows
CREATE TABLE cq_int8 (k int, v bigint, f bool, ts timestamptz);
SELECT stream_state.create_query('cq_int8_sliding',
	$$SELECT k, count(*) AS n, sum(v) AS s, avg(v) AS a, sum(v) FILTER (WHERE f) AS sf,
			 avg(v) FILTER (WHERE f) AS af, count(v) AS c FROM cq_int8 GROUP BY k$$,
	time_column => 'ts', window_size => '1 hour', slide => '10 minutes');
SELECT stream_state.create_query('cq_int8_sessions',
	$$SELECT k, sum(v) AS s, avg(v) AS a, max(v) AS m FROM cq_int8 GROUP BY k$$,
	time_column => 'ts', session_gap => '1 hour');
CREATE FUNCTION ss_test.cq_int8_rows(g int) RETURNS cq_int8 LANGUAGE sql AS $$
	SELECT g % 7,
		   CASE WHEN g % 11 = 0 THEN NULL
				WHEN g % 13 = 0 THEN 9223372036854775807
				WHEN g % 17 = 0 THEN -9223372036854775808
				ELSE (g * 7919) % 20001 - 10000 END,
		   g % 7 <> 3 AND g % 4 = 0,	-- never for k = 3
		   '2026-11-24 10:00+00'::timestamptz + (g % 500) * interval '7 seconds'
$$;
BEGIN;
INSERT INTO cq_int8 SELECT (ss_test.cq_int8_rows(g)).* FROM generate_series(1, 500) g;
SAVEPOINT s;
INSERT INTO cq_int8 SELECT (ss_test.cq_int8_rows(g)).* FROM generate_series(501, 900) g;
ROLLBACK TO SAVEPOINT s;
-- 3,000 keys more, in 64 kB: the groups of this statement spill
SET LOCAL stream_state.capture_memory = '64kB';
INSERT INTO cq_int8 SELECT 7 + g % 3000, (ss_test.cq_int8_rows(g)).v, (ss_test.cq_int8_rows(g)).f,
	   (ss_test.cq_int8_rows(g)).ts FROM generate_series(1, 9000) g;
COMMIT;
WITH truth AS (
	SELECT k, count(*) AS n, sum(v) AS s, avg(v) AS a, sum(v) FILTER (WHERE f) AS sf,
		   avg(v) FILTER (WHERE f) AS af, count(v) AS c
	  FROM cq_int8 WHERE ts >= '2026-11-24 10:00+00' AND ts < '2026-11-24 11:00+00'
	 GROUP BY k),
got AS (
	SELECT * FROM stream_state.window_result('cq_int8_sliding', '2026-11-24 10:55+00')
		AS t(k int, n bigint, s numeric, a numeric, sf numeric, af numeric, c bigint))
SELECT (SELECT count(*) FROM truth) AS keys,
	   (SELECT count(*) FROM truth WHERE s > 9223372036854775807 OR s < -9223372036854775808) AS past_64_bits,
	   (SELECT count(*) FROM truth WHERE sf IS NULL) AS no_filtered_input,
	   (SELECT count(*) FROM ((SELECT * FROM got EXCEPT ALL SELECT * FROM truth)
							  UNION ALL (SELECT * FROM truth EXCEPT ALL SELECT * FROM got)) d) AS diff;
-- every key's events are less than the gap apart: one session each
WITH truth AS (
	SELECT min(ts) AS window_start, max(ts) + interval '1 hour' AS window_end, k,
		   sum(v) AS s, avg(v) AS a, max(v) AS m
	  FROM cq_int8 GROUP BY k),
got AS (
	SELECT * FROM stream_state._session_result('cq_int8_sessions', NULL, 'infinity')
		AS t(window_start timestamptz, window_end timestamptz, k int, s numeric, a numeric, m bigint))
SELECT (SELECT count(*) FROM truth) AS sessions,
	   (SELECT count(*) FROM ((SELECT * FROM got EXCEPT ALL SELECT * FROM truth)
							  UNION ALL (SELECT * FROM truth EXCEPT ALL SELECT * FROM got)) d) AS diff;
SELECT stream_state.drop_query('cq_int8_sliding'), stream_state.drop_query('cq_int8_sessions');
DROP FUNCTION ss_test.cq_int8_rows(int);
DROP TABLE cq_int8;

-- GROUP BY keys whose equal values can differ in bytes (jsonb, text under a
-- case-insensitive collation): kept per spelling, merged by reads as GROUP
-- BY merges them (the smallest image shown)
CREATE COLLATION cq_ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE TABLE cq_classed (j jsonb, name text COLLATE cq_ci, v int, ts timestamptz);
SELECT stream_state.create_query('cq_classed_q',
	$$SELECT j, name, count(*), sum(v) FROM cq_classed GROUP BY j, name$$,
	time_column => 'ts', window_size => '1 hour');
INSERT INTO cq_classed VALUES
	('{"a": 1}', 'Alice', 1, '2026-11-24 10:00+00'), ('{"a": 1.0}', 'ALICE', 2, '2026-11-24 10:01+00'),
	('{"a": 1.00}', 'alice', 4, '2026-11-24 10:02+00'), ('{"a": 2}', 'Alice', 8, '2026-11-24 10:03+00'),
	('{"a": 1}', 'Bob', 16, '2026-11-24 10:04+00'), (NULL, 'bob', 32, '2026-11-24 10:05+00'),
	(NULL, 'BOB', 64, '2026-11-24 10:06+00');
INSERT INTO cq_classed VALUES ('{"a": 1.000}', 'aLiCe', 128, '2026-11-24 10:07+00');
SELECT * FROM stream_state.window_result('cq_classed_q', '2026-11-24 10:30+00')
	AS t(j jsonb, name text COLLATE cq_ci, count bigint, sum bigint) ORDER BY sum;
SELECT count(*) AS diff FROM (
	(SELECT * FROM stream_state.window_result('cq_classed_q', '2026-11-24 10:30+00')
		AS t(j jsonb, name text COLLATE cq_ci, count bigint, sum bigint)
	 EXCEPT ALL SELECT j, name, count(*), sum(v) FROM cq_classed GROUP BY j, name)
	UNION ALL
	(SELECT j, name, count(*), sum(v) FROM cq_classed GROUP BY j, name
	 EXCEPT ALL SELECT * FROM stream_state.window_result('cq_classed_q', '2026-11-24 10:30+00')
		AS t(j jsonb, name text COLLATE cq_ci, count bigint, sum bigint))) d;
-- the typed view keeps the key's collation
SELECT attname, attcollation::regcollation FROM pg_attribute
 WHERE attrelid = 'cq_classed_q'::regclass AND attname = 'name';
SELECT stream_state.drop_query('cq_classed_q');
DROP TABLE cq_classed;
DROP COLLATION cq_ci;

SELECT stream_state.drop_query('cq_spend');
SELECT to_regclass('cq_spend') AS view_after_drop;
DROP FUNCTION ss_test.cq_window_diff(timestamptz);
DROP TABLE cq_events;
