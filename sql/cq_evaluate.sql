-- cq_evaluate: continuous queries evaluated through partial aggregate
-- states (stream_state._cq_evaluate: rows folded by the transition
-- function into two sets of states, each serialised and read back as the
-- WAL carries it, combined with the functions the worker calls, finalised)
-- give what PostgreSQL gives for the same query, row for row: combined in
-- this backend, and combined by a background process with no database
-- connection, as the stream_state worker combines (in_worker).
CREATE EXTENSION hll;
CREATE EXTENSION tdigest;
CREATE TABLE cq_ev (user_id bigint, kind text, amount numeric, a int, b int8, s int2,
	x float8, ok bool, page text, ts timestamptz);
INSERT INTO cq_ev
SELECT CASE WHEN g % 29 = 0 THEN NULL ELSE g % 7 END,
	   CASE WHEN g % 3 = 0 THEN 'purchase' ELSE 'view' END,
	   (g % 13) * 1.25, CASE WHEN g % 11 = 0 THEN NULL ELSE g % 17 END, g, (g % 5)::int2,
	   (g % 5)::float8, CASE WHEN g % 19 = 0 THEN NULL ELSE g % 4 <> 0 END,
	   'p' || (g % 9), '2026-11-24 10:00+00'::timestamptz + g * interval '1 minute'
  FROM generate_series(1, 400) g;
-- numeric keys equal under GROUP BY but not in text: one group
INSERT INTO cq_ev (user_id, kind, amount, a) VALUES (100, 'x', 1.0, 1), (100, 'x', 1.00, 2);

-- rows that differ between the two (0: the same rows)
CREATE FUNCTION ss_test.cq_diff(q text, in_worker boolean) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
	n	bigint;
BEGIN
	EXECUTE format('SELECT count(*) FROM (
		(SELECT * FROM stream_state._cq_evaluate(%1$L, %3$L) EXCEPT ALL SELECT t::text FROM (%2$s) t)
		UNION ALL
		(SELECT t::text FROM (%2$s) t EXCEPT ALL SELECT * FROM stream_state._cq_evaluate(%1$L, %3$L))) d',
		q, q, in_worker) INTO n;
	RETURN n;
END $$;

SELECT ss_test.cq_diff(q, false) AS diff, ss_test.cq_diff(q, true) AS diff_worker,
	   (SELECT count(*) FROM stream_state._cq_evaluate(q)) AS rows, q
  FROM (VALUES
	-- counts and sums (the fast-path aggregates and the others)
	('SELECT user_id, count(*) AS c, count(a) AS ca, sum(a) AS sa, sum(s) AS ss, sum(b) AS sb, sum(amount) AS sm, sum(x) AS sx FROM cq_ev GROUP BY user_id'),
	('SELECT user_id, avg(a) AS a1, avg(b) AS a2, avg(s) AS a3, avg(amount) AS a4, avg(x) AS a5 FROM cq_ev GROUP BY user_id'),
	('SELECT kind, min(a) AS a1, max(a) AS a2, min(page) AS a3, max(page) AS a4, min(ts) AS a5, max(ts) AS a6, min(amount) AS a7, max(amount) AS a8, max(x) AS a9 FROM cq_ev GROUP BY kind'),
	-- the transitions done inline (int2/int4/int8 min and max, int2/int4 sum):
	-- negative values, and groups whose inputs are all NULL
	('SELECT user_id, min(s) AS a1, max(s) AS a2, min(b - 300) AS a3, max(-b) AS a4, min(a - 8) AS a5, max(-a) AS a6, sum((s - 3)::int2) AS a7, sum(8 - a) AS a8 FROM cq_ev GROUP BY user_id'),
	('SELECT a IS NULL AS none, sum(a) AS s, sum(s) FILTER (WHERE a IS NULL) AS s2, min(a) AS lo, max(-a) AS hi, max(s) FILTER (WHERE a IS NULL) AS m2 FROM cq_ev GROUP BY 1'),
	('SELECT user_id, bool_and(ok) AS a1, bool_or(ok) AS a2, every(ok) AS a3, bit_and(a) AS a4, bit_or(a) AS a5, bit_xor(b) AS a6 FROM cq_ev GROUP BY user_id'),
	-- statistics: numeric exactly; float8 ones rounded, since float addition
	-- in another order differs in the last bit (as in a parallel aggregate)
	('SELECT user_id, stddev(amount) AS a1, variance(a) AS a2, stddev_pop(b) AS a3, var_pop(s) AS a4, round(var_samp(x)::numeric, 10) AS a5 FROM cq_ev GROUP BY user_id'),
	('SELECT user_id, round(corr(x, a)::numeric, 10) AS a1, round(regr_slope(x, a)::numeric, 10) AS a2, round(covar_pop(x, b)::numeric, 8) AS a3, regr_count(x, a) AS a4 FROM cq_ev GROUP BY user_id'),
	-- extensions: hll (exact at these sizes), tdigest (exact below its compression)
	('SELECT user_id, hll_cardinality(hll_add_agg(hll_hash_text(page))) AS pages FROM cq_ev GROUP BY user_id'),
	('SELECT kind, tdigest_percentile(x, 100, 0.5) AS median, tdigest_percentile(a, 100, 0.9) AS p90 FROM cq_ev WHERE b <= 80 GROUP BY kind'),
	-- FILTER, WHERE, expressions over aggregates and keys, HAVING
	('SELECT user_id, count(*) FILTER (WHERE ok) AS c, sum(a) FILTER (WHERE kind = ''view'') AS s FROM cq_ev WHERE a > 2 GROUP BY user_id'),
	('SELECT user_id % 3 AS g, lower(kind) AS k, sum(a) / count(*) AS mean, count(*) + 1 AS n1 FROM cq_ev GROUP BY user_id % 3, lower(kind) HAVING count(*) > 10'),
	('SELECT date_trunc(''hour'', ts AT TIME ZONE ''UTC'') AS hour, kind, count(*) AS n, max(amount) - min(amount) AS spread FROM cq_ev GROUP BY 1, kind'),
	-- no GROUP BY: one row, also for no rows
	('SELECT count(*) AS c, sum(a) AS s, avg(amount) AS a, max(page) AS m FROM cq_ev'),
	('SELECT count(*) AS c, sum(a) AS s, bool_and(ok) AS b FROM cq_ev WHERE false'),
	-- NULL and numeric keys group as GROUP BY does
	('SELECT a, count(*) AS n FROM cq_ev GROUP BY a'),
	('SELECT amount, count(*) AS n, sum(a) AS s FROM cq_ev GROUP BY amount')
  ) v(q)
 ORDER BY q;

-- an aggregate whose combine function is not C: the worker, which has no
-- database connection, could not call it
CREATE FUNCTION cq_comb(int8, int8) RETURNS int8 LANGUAGE sql IMMUTABLE STRICT AS 'SELECT $1 + $2';
CREATE AGGREGATE cq_sum(int4) (sfunc = int4_sum, stype = int8, combinefunc = cq_comb);
SELECT * FROM stream_state.describe_query('SELECT user_id, cq_sum(a) FROM cq_ev GROUP BY user_id');
SELECT * FROM stream_state._cq_evaluate('SELECT user_id, cq_sum(a) FROM cq_ev GROUP BY user_id');
SELECT ss_test.error_of($$SELECT stream_state._cq_evaluate('SELECT user_id, cq_sum(a) FROM cq_ev GROUP BY user_id')$$);
DROP AGGREGATE cq_sum(int4);
DROP FUNCTION cq_comb(int8, int8);
DROP FUNCTION ss_test.cq_diff(text, boolean);
DROP TABLE cq_ev;
DROP EXTENSION tdigest;
DROP EXTENSION hll;
