-- keys: int4, int8, text (short, long, toasted), uuid, date event time;
-- NULL keys and times are skipped, not counted and not errors
CREATE TABLE k_int (k int, ts timestamptz);
CREATE TABLE k_text (k text, ts timestamp);
CREATE TABLE k_uuid (k uuid, d date);
SELECT stream_state.create_query('k_int', 'k_int', 'k', 'ts', '1 hour');
SELECT stream_state.create_query('k_text', 'k_text', 'k', 'ts', '1 hour', '30 minutes');
SELECT stream_state.create_query('k_uuid', 'k_uuid', 'k', 'd', '7 days', '1 day');

INSERT INTO k_int VALUES (1, '2026-11-24 10:00+00'), (1, '2026-11-24 10:59:59+00'),
	(-2147483648, '2026-11-24 10:30+00'), (2147483647, '2026-11-24 10:30+00'),
	(NULL, '2026-11-24 10:30+00'), (3, NULL), (4, 'infinity'), (0, '2026-11-24 10:45+00');
SELECT * FROM stream_state.window_counts('k_int', '2026-11-24 10:30+00') ORDER BY key COLLATE "C";
SELECT stream_state.window_count('k_int', 1, '2026-11-24 10:30+00') AS one,
	   stream_state.window_count('k_int', -2147483648, '2026-11-24 10:30+00') AS min_int;
SELECT skipped, events_applied FROM stream_state.queries WHERE name = 'k_int';
SELECT ss_test.mismatches('k_int', '2026-11-24 10:30+00') AS diff;
-- an event at 11:00 closes the 10:00-11:00 window (lateness 0)
INSERT INTO k_int VALUES (0, '2026-11-24 11:00+00');
SELECT ss_test.error_of($$SELECT stream_state.window_count('k_int', 1, '2026-11-24 10:30+00')$$);
SELECT * FROM stream_state.window_counts('k_int', '2026-11-24 11:00+00');

INSERT INTO k_text VALUES ('a', '2026-11-24 10:00'), ('a', '2026-11-24 10:10'),
	('', '2026-11-24 10:10'), ('exactly sixteen.', '2026-11-24 10:10'),
	('seventeen bytes..', '2026-11-24 10:10'), (repeat('long key ', 20), '2026-11-24 10:10'),
	(repeat('long key ', 20), '2026-11-24 10:20'), (repeat('x', 100000), '2026-11-24 10:20'),
	('ünïcödé', '2026-11-24 10:20'), (NULL, '2026-11-24 10:20');
SELECT left(key, 20) AS key, length(key) AS len, window_start, window_end, count
  FROM stream_state.window_counts('k_text', '2026-11-24 10:25+00') ORDER BY key COLLATE "C";
SELECT stream_state.window_count('k_text', repeat('long key ', 20), '2026-11-24 10:25+00') AS long_key,
	   stream_state.window_count('k_text', repeat('x', 100000), '2026-11-24 10:25+00') AS toasted_key,
	   stream_state.window_count('k_text', ''::text, '2026-11-24 10:25+00') AS empty_key,
	   stream_state.window_count('k_text', 'ünïcödé'::text, '2026-11-24 10:25+00') AS unicode_key;
SELECT ss_test.mismatches('k_text', '2026-11-24 10:25+00') AS diff;

INSERT INTO k_uuid VALUES ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2026-11-20'),
	('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2026-11-24'),
	('00000000-0000-0000-0000-000000000000', '2026-11-24'),
	('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2026-11-10'),
	(NULL, '2026-11-24'), ('00000000-0000-0000-0000-000000000000', NULL);
SELECT * FROM stream_state.window_counts('k_uuid', '2026-11-24 12:00+00') ORDER BY key COLLATE "C";
SELECT stream_state.window_count('k_uuid', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid,
	'2026-11-24 12:00+00') AS uuid_count;
SELECT name, events_applied, late_events, skipped, ss_test.state_keys(name) AS keys
  FROM stream_state.queries
 WHERE name LIKE 'k\_%' ORDER BY name COLLATE "C";

-- numeric and float keys: equal values count together, however written
CREATE TABLE k_num (k numeric, f float8, r real, ts timestamptz);
SELECT stream_state.create_query('k_num', 'k_num', 'k', 'ts', '1 hour');
SELECT stream_state.create_query('k_f8', 'k_num', 'f', 'ts', '1 hour');
SELECT stream_state.create_query('k_f4', 'k_num', 'r', 'ts', '1 hour');
INSERT INTO k_num VALUES
	(1, 0, 0, '2026-11-24 10:00+00'), (1.0, -0, -0, '2026-11-24 10:00+00'),
	(1.000, 'NaN', 'NaN', '2026-11-24 10:00+00'), (2.50, 'NaN', 'NaN', '2026-11-24 10:00+00'),
	(2.5, 1e300, 1.5, '2026-11-24 10:00+00'), (0.00, 'Infinity', 'Infinity', '2026-11-24 10:00+00'),
	(-0.0, '-Infinity', '-Infinity', '2026-11-24 10:00+00'), ('NaN', 1e300, 1.5, '2026-11-24 10:00+00');
SELECT * FROM stream_state.window_counts('k_num', '2026-11-24 10:30+00') ORDER BY key COLLATE "C";
-- the same groups as GROUP BY (which compares by value)
SELECT (SELECT array_agg(c ORDER BY c) FROM (SELECT count(*) AS c FROM k_num GROUP BY k) g) AS group_by,
	   (SELECT array_agg(count ORDER BY count) FROM stream_state.window_counts('k_num', '2026-11-24 10:30+00')) AS state;
SELECT stream_state.window_count('k_num', 1.00000::numeric, '2026-11-24 10:30+00') AS one,
	   stream_state.window_count('k_num', 2.5::numeric, '2026-11-24 10:30+00') AS two_and_a_half;
SELECT key, count FROM stream_state.window_counts('k_f8', '2026-11-24 10:30+00') ORDER BY key COLLATE "C";
SELECT (SELECT array_agg(c ORDER BY c) FROM (SELECT count(*) AS c FROM k_num GROUP BY f) g) AS group_by,
	   (SELECT array_agg(count ORDER BY count) FROM stream_state.window_counts('k_f8', '2026-11-24 10:30+00')) AS state;
SELECT key, count FROM stream_state.window_counts('k_f4', '2026-11-24 10:30+00') ORDER BY key COLLATE "C";
SELECT stream_state.window_count('k_f8', '-0'::float8, '2026-11-24 10:30+00') AS zero,
	   stream_state.window_count('k_f4', 'NaN'::real, '2026-11-24 10:30+00') AS nan;

-- key type mismatches are errors with a hint
\set VERBOSITY default
SELECT stream_state.window_count('k_int', 1::bigint);
SELECT stream_state.window_count('k_uuid', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11');
