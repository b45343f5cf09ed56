-- cq_analyze: continuous queries' SQL text, parsed, analysed and validated
-- by stream_state.describe_query.  Accepted queries show their columns,
-- kinds, aggregates, state types and fast paths; every unsupported construct
-- gets its own error (SQLSTATE: message), a few of them shown in full with
-- their position in the query text.
CREATE EXTENSION hll;
CREATE EXTENSION tdigest;
CREATE TABLE cq_events (user_id bigint, ts timestamptz, kind text, amount numeric,
	a int, s smallint, b bigint, page text, tags int[], ok bool, x float8, m money);
CREATE TABLE cq_pk (id int PRIMARY KEY, name text, v int);
CREATE TABLE cq_parted (k int, v int) PARTITION BY RANGE (k);
CREATE TABLE cq_parted_1 PARTITION OF cq_parted FOR VALUES FROM (0) TO (100);
CREATE TABLE cq_parent (k int, v int);
CREATE TABLE cq_child () INHERITS (cq_parent);
CREATE VIEW cq_view AS SELECT * FROM cq_events;
CREATE MATERIALIZED VIEW cq_mv AS SELECT 1 AS a;
CREATE SEQUENCE cq_seq;
-- an internal state without serialization functions
CREATE AGGREGATE cq_numsum(numeric) (SFUNC = numeric_avg_accum, STYPE = internal,
	COMBINEFUNC = numeric_avg_combine, FINALFUNC = numeric_sum);

-- one line per column: how describe_query's rows are read below
CREATE FUNCTION ss_test.describe(q text)
RETURNS TABLE ("position" int, column_name text, column_type regtype, kind text,
			   expression text, aggregates text[], state_types regtype[], fast_path bool)
LANGUAGE sql AS $$
	SELECT * FROM stream_state.describe_query(q)
$$;

-- accepted: the issue's example
SELECT * FROM ss_test.describe($$
	SELECT user_id, count(*), sum(amount), avg(amount), max(amount),
		   hll_cardinality(hll_add_agg(hll_hash_text(page))) AS pages
	  FROM cq_events WHERE kind = 'purchase' GROUP BY user_id$$);
-- min, bool_and, FILTER, expressions over aggregates, several keys (one of
-- them an expression, one not selected), an aggregate used only in HAVING,
-- the same aggregate twice (kept once), t-digest
SELECT * FROM ss_test.describe($$
	SELECT lower(kind) AS k, date_trunc('hour', ts AT TIME ZONE 'UTC') AS hour,
		   min(a), bool_and(ok), count(*) FILTER (WHERE amount > 10) AS big,
		   sum(a) / count(*) AS mean, count(*) AS n,
		   tdigest(x, 100) AS digest, tdigest_percentile(x, 100, 0.95) AS p95
	  FROM cq_events GROUP BY lower(kind), 2, user_id
	HAVING count(*) > 1 AND sum(b) > 0$$);
-- no GROUP BY: one group; fast paths: count(*), count(c), count(x),
-- sum(int2), sum(int4); not sum(int8), avg, max
SELECT * FROM ss_test.describe($$
	SELECT count(*) AS c_star, count(1) AS c_one, count(a) AS c_a, sum(s) AS sum_s,
		   sum(a) AS sum_a, sum(b) AS sum_b, avg(a) AS avg_a, max(tags) AS max_tags,
		   sum(a) + sum(s) AS both_fast, sum(a) + avg(a) AS one_slow, 42 AS answer
	  FROM cq_events$$);
-- a partitioned table; ONLY a table with inheritance children; a key of a
-- whole row; a qualified, aliased table
SELECT * FROM ss_test.describe($$SELECT k, sum(v) FROM cq_parted GROUP BY k$$);
SELECT * FROM ss_test.describe($$SELECT k, count(*) FROM ONLY cq_parent GROUP BY k$$);
SELECT * FROM ss_test.describe($$SELECT p AS row, count(*) FROM public.cq_pk p GROUP BY p$$);

-- the text itself
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query(' -- nothing')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT count(*) FROM cq_events; SELECT 1')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('INSERT INTO cq_pk VALUES (1)')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT count(*) FORM cq_events')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT count(*) FROM cq_events WHERE nope = 1')$$);
-- clauses
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('WITH e AS (SELECT * FROM cq_events) SELECT count(*) FROM e')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT count(*) FROM cq_events UNION SELECT count(*) FROM cq_pk')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT count(*) INTO cq_new FROM cq_events')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('VALUES (1)')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT DISTINCT kind, count(*) FROM cq_events GROUP BY kind')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT DISTINCT ON (kind) kind, count(*) FROM cq_events GROUP BY kind')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT kind, count(*) FROM cq_events GROUP BY kind ORDER BY 2')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT kind, count(*) FROM cq_events GROUP BY kind LIMIT 10')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT kind, count(*) FROM cq_events GROUP BY kind OFFSET 1')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT count(*) FROM cq_events FOR UPDATE')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT count(*) FROM cq_events FOR SHARE')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT count(*) FROM cq_events WINDOW w AS (ORDER BY ts)')$$);
-- FROM
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT count(*)')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT count(*) FROM cq_events, cq_pk')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT count(*) FROM cq_events e JOIN cq_pk p ON p.id = e.a')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT count(*) FROM (SELECT * FROM cq_events) e')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT count(*) FROM (VALUES (1), (2)) v(a)')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT count(*) FROM generate_series(1, 10) g')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT count(*) FROM cq_events TABLESAMPLE system (10)')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT count(*) FROM no_such_table')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT count(*) FROM cq_view')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT count(*) FROM cq_mv')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT count(*) FROM cq_seq')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT count(*) FROM ONLY cq_parted')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT count(*) FROM cq_parent')$$);
-- expressions anywhere: subqueries, parameters, window functions, grouping sets
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT count(*) FROM cq_events WHERE a IN (SELECT id FROM cq_pk)')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT EXISTS (SELECT 1) AS e, count(*) FROM cq_events')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT count(*) FILTER (WHERE a > (SELECT 1)) FROM cq_events')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT count(*) FROM cq_events WHERE a = $1')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT kind, count(*), rank() OVER (ORDER BY count(*)) FROM cq_events GROUP BY kind')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT kind, count(*) FROM cq_events GROUP BY ROLLUP (kind)')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT kind, count(*) FROM cq_events GROUP BY CUBE (kind, a)')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT kind, count(*) FROM cq_events GROUP BY GROUPING SETS ((kind), ())')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT count(*) FROM cq_events GROUP BY ()')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT kind, GROUPING(kind), count(*) FROM cq_events GROUP BY kind')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT generate_series(1, 3) AS g, count(*) FROM cq_events')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT count(*) FROM cq_events GROUP BY generate_series(1, 3)')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT count(*) FROM cq_events WHERE generate_series(1, 3) > 1')$$);
-- aggregates
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT kind FROM cq_events GROUP BY kind')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT count(DISTINCT page) FROM cq_events')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT sum(DISTINCT a) FROM cq_events')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT string_agg(page, '','' ORDER BY page) FROM cq_events')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT sum(a ORDER BY a) FROM cq_events')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x) FROM cq_events')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT mode() WITHIN GROUP (ORDER BY a) FROM cq_events')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT rank(3) WITHIN GROUP (ORDER BY a) FROM cq_events')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT array_agg(a) FROM cq_events')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT string_agg(page, '','') FROM cq_events')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT cq_numsum(amount) FROM cq_events')$$);
-- only immutable functions, wherever they are
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT count(*) FROM cq_events WHERE x < random()')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT count(*) FROM cq_events WHERE ts > now() - interval ''1 hour''')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT count(*) FROM cq_events WHERE ts + interval ''1 day'' > ''2026-11-24''')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT ts::date AS day, count(*) FROM cq_events GROUP BY 1')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT max(to_char(ts, ''YYYY'')) FROM cq_events')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT count(*) FILTER (WHERE ts::text LIKE ''2026%'') FROM cq_events')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT count(*) * random() AS r FROM cq_events')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT CURRENT_DATE AS d, count(*) FROM cq_events')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT kind, count(*) FROM cq_events GROUP BY kind HAVING count(*) > 10 * random()')$$);
-- columns
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT count(*) FROM cq_events WHERE ctid > ''(0,1)''')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT xmin, count(*) FROM cq_events GROUP BY xmin')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT count(tableoid) FROM cq_events')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT id, name, count(*) FROM cq_pk GROUP BY id')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT kind, a, count(*) FROM cq_events GROUP BY kind')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT count(*), count(a) FROM cq_events')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT sum(a) / 2, sum(s) / 2 FROM cq_events')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT m, count(*) FROM cq_events GROUP BY m')$$);

-- a few in full: position in the query text, detail, hint, context
\set VERBOSITY default
SELECT * FROM stream_state.describe_query('SELECT count(*) FORM cq_events');
SELECT * FROM stream_state.describe_query($$SELECT kind, count(*)
  FROM cq_events
 WHERE ts > now() - interval '1 hour'
 GROUP BY kind$$);
SELECT * FROM stream_state.describe_query('SELECT count(DISTINCT page) AS pages FROM cq_events');
SELECT * FROM stream_state.describe_query('SELECT count(*), count(a) FROM cq_events');
SELECT * FROM stream_state.describe_query('SELECT count(*) FROM cq_parent');
SELECT * FROM stream_state.describe_query('SELECT count(*) FROM cq_view');
-- multibyte text before the error: the position counts characters
SELECT * FROM stream_state.describe_query('SELECT count(*) AS "zählung" FROM cq_events WHERE a = $1');

-- privileges: SELECT on what the query reads (the table, or the columns),
-- EXECUTE on its functions; row-level security is refused
CREATE ROLE ss_cq_user;
GRANT SELECT (kind, a) ON cq_events TO ss_cq_user;
CREATE FUNCTION cq_secret(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1';
REVOKE EXECUTE ON FUNCTION cq_secret(int) FROM PUBLIC;
CREATE TABLE cq_rls (k int, v int);
ALTER TABLE cq_rls ENABLE ROW LEVEL SECURITY;
CREATE POLICY cq_rls_some ON cq_rls FOR SELECT USING (k > 0);
GRANT SELECT ON cq_rls TO ss_cq_user;
GRANT SELECT ON cq_pk TO ss_cq_user;
SET ROLE ss_cq_user;
SELECT column_name, kind FROM stream_state.describe_query('SELECT kind, sum(a) FROM cq_events GROUP BY kind');
SELECT column_name, kind FROM stream_state.describe_query('SELECT count(*) FROM cq_events');
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT kind, sum(amount) FROM cq_events GROUP BY kind')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT count(*) FROM cq_events WHERE ok')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT count(e) FROM cq_events e')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT count(*) FROM cq_mv')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT sum(cq_secret(a)) FROM cq_events')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.describe_query('SELECT k, count(*) FROM cq_rls GROUP BY k')$$);
SELECT column_name, kind FROM stream_state.describe_query('SELECT id, count(*) FROM cq_pk GROUP BY id');
RESET ROLE;
-- a superuser is not subject to the policies
SELECT column_name, kind FROM stream_state.describe_query('SELECT k, count(*) FROM cq_rls GROUP BY k');

-- describe_query is STRICT: no text, no rows
SELECT count(*) FROM stream_state.describe_query(NULL);

REVOKE ALL ON cq_events, cq_rls, cq_pk FROM ss_cq_user;
DROP ROLE ss_cq_user;
DROP TABLE cq_rls;
DROP FUNCTION cq_secret(int);
DROP FUNCTION ss_test.describe(text);
DROP VIEW cq_view;
DROP MATERIALIZED VIEW cq_mv;
DROP SEQUENCE cq_seq;
DROP TABLE cq_events, cq_pk, cq_parted, cq_parent CASCADE;
DROP AGGREGATE cq_numsum(numeric);
DROP EXTENSION tdigest;
DROP EXTENSION hll;
