-- test/pgtap/07_describe_query_errors.sql
--
-- describe_query: each row of the table of refusals in docs/sql-reference.md
-- with its SQLSTATE and message, next to the accepted query it is the
-- boundary of, so that a check which refuses everything fails here too.
-- Runs as superuser (privileges: the pg_regress test cq_analyze).
BEGIN;
SELECT plan(40);

CREATE TABLE dq (k bigint, ts timestamptz, v int, b bigint, t text, m money);
CREATE TABLE dq_pt (k bigint, v int) PARTITION BY RANGE (k);
CREATE VIEW dq_view AS SELECT * FROM dq;
CREATE FOREIGN DATA WRAPPER dq_fdw;
CREATE SERVER dq_srv FOREIGN DATA WRAPPER dq_fdw;
CREATE FOREIGN TABLE dq_ft (k bigint, v int) SERVER dq_srv;

CREATE FUNCTION pg_temp.dq(q text) RETURNS bigint LANGUAGE sql AS $$
	SELECT count(*) FROM stream_state.describe_query(q)
$$;

-- the text
SELECT throws_ok($$SELECT pg_temp.dq('')$$, '22023',
	'continuous query text contains no statement', 'empty text: 22023');
SELECT throws_ok($$SELECT pg_temp.dq('SELECT count(*) FROM dq; SELECT count(*) FROM dq')$$, '42601',
	'continuous query text must contain exactly one statement', 'two statements: 42601');
SELECT lives_ok($$SELECT pg_temp.dq('SELECT count(*) FROM dq;')$$, 'one statement and a semicolon');
SELECT throws_ok($$SELECT pg_temp.dq('DELETE FROM dq')$$, '0A000',
	'continuous query must be a SELECT statement', 'not a SELECT: 0A000');

-- clauses
SELECT throws_ok($$SELECT pg_temp.dq('SELECT k, count(*) FROM dq GROUP BY k ORDER BY k')$$, '0A000',
	'continuous queries do not support ORDER BY', 'ORDER BY: 0A000');
SELECT lives_ok($$SELECT pg_temp.dq('SELECT k, count(*) FROM dq GROUP BY k')$$, 'the same without ORDER BY');
SELECT throws_ok($$SELECT pg_temp.dq('SELECT DISTINCT k, count(*) FROM dq GROUP BY k')$$, '0A000',
	'continuous queries do not support DISTINCT', 'DISTINCT: 0A000');
SELECT throws_ok($$SELECT pg_temp.dq('SELECT count(*) FROM dq LIMIT 1')$$, '0A000',
	'continuous queries do not support LIMIT', 'LIMIT: 0A000');
SELECT throws_ok($$SELECT pg_temp.dq('SELECT count(*) FROM dq UNION ALL SELECT count(*) FROM dq')$$, '0A000',
	'continuous queries do not support UNION', 'UNION: 0A000');

-- FROM
SELECT throws_ok($$SELECT pg_temp.dq('SELECT count(*) FROM dq a JOIN dq b USING (k)')$$, '0A000',
	'continuous queries do not support joins', 'a join: 0A000');
SELECT throws_ok($$SELECT pg_temp.dq('SELECT count(*) FROM dq_view')$$, '42809',
	'"dq_view" is not a table', 'a view: 42809');
SELECT throws_ok($$SELECT pg_temp.dq('SELECT count(*) FROM dq_ft')$$, '42809',
	'"dq_ft" is not a table', 'a foreign table: 42809');
SELECT lives_ok($$SELECT pg_temp.dq('SELECT count(*) FROM dq_pt')$$, 'a partitioned table');
SELECT throws_ok($$SELECT pg_temp.dq('SELECT count(*) FROM ONLY dq_pt')$$, '0A000',
	'continuous queries do not support ONLY on a partitioned table', 'ONLY a partitioned table: 0A000');
SELECT throws_ok($$SELECT pg_temp.dq('SELECT count(*) FROM (SELECT * FROM dq) s')$$, '0A000',
	'continuous queries do not support subqueries', 'a subquery in FROM: 0A000');

-- expressions
SELECT throws_ok($$SELECT pg_temp.dq('SELECT count(*) FROM dq WHERE k = $1')$$, '0A000',
	'continuous queries do not support parameters', 'a parameter: 0A000');
SELECT throws_ok($$SELECT pg_temp.dq('SELECT count(*) FROM dq WHERE k IN (SELECT 1)')$$, '0A000',
	'continuous queries do not support subqueries', 'a subquery in WHERE: 0A000');
SELECT lives_ok($$SELECT pg_temp.dq('SELECT count(*) FROM dq WHERE k IN (1, 2)')$$, 'a list in WHERE');
SELECT throws_ok($$SELECT pg_temp.dq('SELECT k, count(*), sum(count(*)) OVER () FROM dq GROUP BY k')$$, '0A000',
	'continuous queries do not support window functions', 'a window function: 0A000');
SELECT throws_ok($$SELECT pg_temp.dq('SELECT k, count(*) FROM dq GROUP BY CUBE (k, v)')$$, '0A000',
	'continuous queries do not support CUBE', 'CUBE: 0A000');
SELECT throws_ok($$SELECT pg_temp.dq('SELECT count(*) FROM dq GROUP BY unnest(ARRAY[1, 2])')$$, '0A000',
	'continuous queries do not support set-returning functions', 'a set-returning function: 0A000');
SELECT throws_ok($$SELECT pg_temp.dq('SELECT count(*) FROM dq WHERE xmin IS NOT NULL')$$, '0A000',
	'continuous queries do not support system column "xmin"', 'a system column: 0A000');

-- aggregates
SELECT throws_ok($$SELECT pg_temp.dq('SELECT k FROM dq GROUP BY k')$$, '0A000',
	'continuous query computes no aggregate', 'no aggregate: 0A000');
SELECT throws_ok($$SELECT pg_temp.dq('SELECT count(DISTINCT v) FROM dq')$$, '0A000',
	'continuous queries do not support DISTINCT in aggregate count', 'a DISTINCT aggregate: 0A000');
SELECT lives_ok($$SELECT pg_temp.dq('SELECT count(v) FROM dq')$$, 'the same without DISTINCT');
SELECT throws_ok($$SELECT pg_temp.dq('SELECT max(v ORDER BY v) FROM dq')$$, '0A000',
	'continuous queries do not support ORDER BY in aggregate max', 'ORDER BY in an aggregate: 0A000');
SELECT throws_ok($$SELECT pg_temp.dq('SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY v) FROM dq')$$, '0A000',
	'continuous queries do not support ordered-set aggregate percentile_disc', 'an ordered-set aggregate: 0A000');
SELECT throws_ok($$SELECT pg_temp.dq('SELECT array_agg(t) FROM dq')$$, '0A000',
	'aggregate array_agg(anynonarray) has no combine function', 'no combine function: 0A000');
SELECT lives_ok($$SELECT pg_temp.dq('SELECT sum(b), avg(b) FROM dq')$$,
	'internal states with serialization functions (sum and avg of bigint)');

-- immutability, where it is used
SELECT throws_ok($$SELECT pg_temp.dq('SELECT count(*) FROM dq WHERE ts < now()')$$, '42P17',
	'function now() is not immutable', 'a stable function in WHERE: 42P17');
SELECT lives_ok($$SELECT pg_temp.dq('SELECT count(*) FROM dq WHERE ts < ''2026-11-24 10:00+00''')$$,
	'a constant in WHERE');
SELECT throws_ok($$SELECT pg_temp.dq('SELECT ts::date AS d, count(*) FROM dq GROUP BY 1')$$, '42P17',
	'cast from timestamp with time zone to date is not immutable', 'a stable cast in GROUP BY: 42P17');
SELECT lives_ok($$SELECT pg_temp.dq('SELECT (ts AT TIME ZONE ''UTC'')::date AS d, count(*) FROM dq GROUP BY 1')$$,
	'an immutable day in GROUP BY');
SELECT throws_ok($$SELECT pg_temp.dq('SELECT sum(v) FILTER (WHERE random() < 0.5) FROM dq')$$, '42P17',
	'function random() is not immutable', 'a volatile function in FILTER: 42P17');
SELECT throws_ok($$SELECT pg_temp.dq('SELECT count(*) FROM dq HAVING count(*) > extract(hour FROM now())')$$, '42P17',
	'function now() is not immutable', 'a stable function in HAVING: 42P17');

-- columns and keys
SELECT throws_ok($$SELECT pg_temp.dq('SELECT count(*), count(v) FROM dq')$$, '42701',
	'column name "count" appears more than once', 'duplicate output names: 42701');
SELECT lives_ok($$SELECT pg_temp.dq('SELECT count(*), count(v) AS count_v FROM dq')$$, 'the same with AS');
SELECT throws_ok($$SELECT pg_temp.dq('SELECT m, count(*) FROM dq GROUP BY m')$$, '42704',
	'GROUP BY expression of type money has no default hash operator class', 'a key type without hashing: 42704');

-- what the rows say
SELECT is(pg_temp.dq('SELECT k, count(*) FROM dq GROUP BY k, v HAVING sum(b) > 0'), 4::bigint,
	'two output columns, the key v outside the select list, sum(b) only in HAVING: 4 rows');
SELECT results_eq(
	$$SELECT kind, fast_path FROM stream_state.describe_query(
		'SELECT k, count(*) AS n, sum(v) AS s, sum(b) AS sb, count(*) + 1 AS n1 FROM dq GROUP BY k')$$,
	$$VALUES ('key', NULL::boolean), ('aggregate', true), ('aggregate', true), ('aggregate', false),
			 ('expression', true)$$,
	'kinds and fast paths: count and sum(int4) on the fast path, sum(int8) not');

SELECT * FROM finish();
ROLLBACK;
