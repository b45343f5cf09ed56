-- classed keys: types whose equal values can differ in bytes (jsonb,
-- interval, citext, text under a nondeterministic collation, numeric[]) are
-- keyed by the type's hash and compared with the type's equality, so the
-- state groups exactly as GROUP BY does.

-- Rows that differ from the recomputation by the type's own equality: one
-- state row per GROUP BY group, and each row's count is the number of
-- source rows whose key equals it (= of the key type, column collation).
CREATE FUNCTION ss_test.class_mismatches(q text, at timestamptz)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
	d		record;
	e		timestamptz;
	s		timestamptz;
	groups	bigint;
	nrows	bigint;
	wrong	bigint;
BEGIN
	SELECT * INTO d FROM stream_state.query_def WHERE name = q;
	e := to_timestamp((floor(extract(epoch FROM at) / extract(epoch FROM d.slide)) + 1)
					  * extract(epoch FROM d.slide));
	s := e - d.window_size;
	EXECUTE format('SELECT count(*) FROM (SELECT %1$I FROM %2$s WHERE %3$I >= $1 AND %3$I < $2
					  AND %1$I IS NOT NULL GROUP BY 1) g', d.key_column, d.source, d.time_column)
		INTO groups USING s, e;
	SELECT count(*) INTO nrows FROM stream_state.window_counts(q, at);
	EXECUTE format('SELECT count(*) FROM stream_state.window_counts(%5$L, $3) w
					 WHERE w.count <> (SELECT count(*) FROM %2$s
									    WHERE %3$I >= $1 AND %3$I < $2 AND %1$I = w.key::%4$s)',
				   d.key_column, d.source, d.time_column, d.key_type::regtype, q)
		INTO wrong USING s, e, at;
	RETURN abs(groups - nrows) + wrong;
END $$;

CREATE EXTENSION citext;
CREATE COLLATION ss_ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE TABLE kc (j jsonb, i interval, c citext, t text COLLATE ss_ci, a numeric[],
				 ts timestamptz);
SELECT stream_state.create_query('kc_j', 'kc', 'j', 'ts', '1 hour', '30 minutes', '1 hour');
SELECT stream_state.create_query('kc_i', 'kc', 'i', 'ts', '1 hour', '30 minutes', '1 hour');
SELECT stream_state.create_query('kc_c', 'kc', 'c', 'ts', '1 hour', '30 minutes', '1 hour');
SELECT stream_state.create_query('kc_t', 'kc', 't', 'ts', '1 hour', '30 minutes', '1 hour');
SELECT stream_state.create_query('kc_a', 'kc', 'a', 'ts', '1 hour', '30 minutes', '1 hour');

-- Each column has values equal to each other but written differently, in
-- two panes, from two transactions, one with a rolled-back savepoint.
BEGIN;
INSERT INTO kc VALUES
	('{"a": 1.0}', '1 day', 'Alice', 'Alice', '{1.0}', '2026-11-24 10:05+00'),
	('{"a": 1.00}', '24 hours', 'alice', 'ALICE', '{1}', '2026-11-24 10:10+00'),
	('{"a": 1}', '86400 seconds', 'ALICE', 'alice', '{1.000}', '2026-11-24 10:40+00'),
	('{"b": [1, 2]}', '1 mon', 'Bob', 'Bob', '{2,3}', '2026-11-24 10:41+00'),
	('{"b": [1.0, 2]}', '30 days', 'bob', 'bob', '{2.0,3.00}', '2026-11-24 10:42+00');
SAVEPOINT s;
INSERT INTO kc VALUES ('{"a": 1}', '1 day', 'alice', 'alice', '{1}', '2026-11-24 10:43+00');
ROLLBACK TO SAVEPOINT s;
COMMIT;
INSERT INTO kc VALUES
	('{"a": 1.000}', '1440 minutes', 'aLiCe', 'aLICE', '{1.0}', '2026-11-24 10:50+00'),
	('{"c": null}', '1 hour', 'Carol', 'Carol', '{}', '2026-11-24 10:51+00'),
	(NULL, NULL, NULL, NULL, NULL, '2026-11-24 10:52+00');
BEGIN;
INSERT INTO kc VALUES ('{"a": 1}', '1 day', 'alice', 'alice', '{1}', '2026-11-24 10:53+00');
ROLLBACK;

-- one row per value, with all its spellings counted together
SELECT key, count FROM stream_state.window_counts('kc_j', '2026-11-24 10:55+00') ORDER BY count, key COLLATE "C";
SELECT key, count FROM stream_state.window_counts('kc_i', '2026-11-24 10:55+00') ORDER BY count, key COLLATE "C";
SELECT key, count FROM stream_state.window_counts('kc_c', '2026-11-24 10:55+00') ORDER BY count, key COLLATE "C";
SELECT key, count FROM stream_state.window_counts('kc_t', '2026-11-24 10:55+00') ORDER BY count, key COLLATE "C";
SELECT key, count FROM stream_state.window_counts('kc_a', '2026-11-24 10:55+00') ORDER BY count, key COLLATE "C";
SELECT q, ss_test.class_mismatches(q, '2026-11-24 10:55+00') AS diff,
	   ss_test.class_mismatches(q, '2026-11-24 10:20+00') AS diff_first_half
  FROM unnest(ARRAY['kc_j', 'kc_i', 'kc_c', 'kc_t', 'kc_a']) AS q;

-- a point read by any spelling counts the whole value
SELECT stream_state.window_count('kc_j', '{"a": 1.00000}'::jsonb, '2026-11-24 10:55+00') AS j,
	   stream_state.window_count('kc_i', '0.5 day 12 hours'::interval, '2026-11-24 10:55+00') AS i,
	   stream_state.window_count('kc_c', 'ALICE'::citext, '2026-11-24 10:55+00') AS c,
	   stream_state.window_count('kc_t', 'alIce'::text, '2026-11-24 10:55+00') AS t,
	   stream_state.window_count('kc_a', '{1.00}'::numeric[], '2026-11-24 10:55+00') AS a,
	   stream_state.window_count('kc_t', 'nobody'::text, '2026-11-24 10:55+00') AS nobody;
-- the first half hour only: the 10:05 and 10:10 rows
SELECT stream_state.window_count('kc_c', 'alice'::citext, '2026-11-24 10:20+00') AS c_first_half;

-- the state view has one row per (value, pane) too
SELECT key, pane_start, count FROM stream_state.state WHERE query = 'kc_t'
 ORDER BY pane_start, count, key COLLATE "C";
SELECT (SELECT sum(count) FROM stream_state.state WHERE query = 'kc_i') AS state_sum,
	   (SELECT count(i) FROM kc) AS table_rows;

-- the state view shows each class of equal spellings as one key
SELECT name, ss_test.state_keys(name) AS keys, events_applied, skipped FROM stream_state.queries
 WHERE name LIKE 'kc\_%' ORDER BY name COLLATE "C";

-- TRUNCATE empties them like any other query
TRUNCATE kc;
SELECT count(*) AS rows_after_truncate FROM stream_state.state WHERE query LIKE 'kc\_%';
SELECT stream_state.window_count('kc_t', 'alice'::text, '2026-11-24 10:55+00') AS t_after_truncate;

SELECT stream_state.drop_query(q) FROM unnest(ARRAY['kc_j', 'kc_i', 'kc_c', 'kc_t', 'kc_a']) AS q;
DROP TABLE kc;
DROP COLLATION ss_ci;
DROP EXTENSION citext;
