-- test/pgtap/02_create_query_errors.sql
--
-- create_query: every error row of the table in docs/sql-reference.md
-- (except privileges: 04_privileges.sql), each with its SQLSTATE and, where
-- the message is fixed, its exact message; and next to each, the valid
-- call it is the boundary of, so that a check which rejects everything
-- fails here too.  Runs as superuser.
BEGIN;
SELECT plan(57);

CREATE TABLE t1 (
	k	bigint,
	ts	timestamptz,
	p	point,
	s	text,
	j	jsonb,
	d	date,
	tsl	timestamp,
	dropme int
);
ALTER TABLE t1 DROP COLUMN dropme;
CREATE VIEW v1 AS SELECT * FROM t1;
CREATE MATERIALIZED VIEW mv1 AS SELECT * FROM t1;
CREATE SEQUENCE s1;
CREATE INDEX t1_k_idx ON t1 (k);
CREATE TYPE ct1 AS (k bigint, ts timestamptz);
CREATE FOREIGN DATA WRAPPER ss_pgtap_fdw;
CREATE SERVER ss_pgtap_srv FOREIGN DATA WRAPPER ss_pgtap_fdw;
CREATE FOREIGN TABLE ft1 (k bigint, ts timestamptz) SERVER ss_pgtap_srv;
CREATE TABLE pt1 (k bigint, ts timestamptz) PARTITION BY RANGE (ts);
CREATE TABLE pt1_2026 PARTITION OF pt1
	FOR VALUES FROM ('2026-01-01 00:00+00') TO ('2027-01-01 00:00+00');

-- ---------------------------------------------------------------- name
SELECT throws_ok(
	$$SELECT stream_state.create_query(NULL, 't1', 'k', 'ts', '5 minutes')$$,
	'22023', NULL, 'name NULL: 22023');
SELECT throws_ok(
	$$SELECT stream_state.create_query('', 't1', 'k', 'ts', '5 minutes')$$,
	'22023', NULL, 'name empty: 22023');
SELECT throws_ok(
	format($$SELECT stream_state.create_query(%L, 't1', 'k', 'ts', '5 minutes')$$, repeat('x', 64)),
	'22023', NULL, 'name of 64 bytes: 22023');
SELECT throws_ok(
	format($$SELECT stream_state.create_query(%L, 't1', 'k', 'ts', '5 minutes')$$, repeat('é', 32)),
	'22023', NULL, 'name of 32 characters but 64 bytes: 22023');
SELECT lives_ok(
	format($$SELECT stream_state.create_query(%L, 't1', 'k', 'ts', '5 minutes')$$, repeat('x', 63)),
	'name of 63 bytes is accepted');

-- ---------------------------------------------------------------- duplicate
SELECT lives_ok(
	$$SELECT stream_state.create_query('q1', 't1', 'k', 'ts', '5 minutes', '1 minute')$$,
	'create_query q1 (sliding window on t1)');
SELECT throws_ok(
	$$SELECT stream_state.create_query('q1', 't1', 'k', 'ts', '5 minutes', '1 minute')$$,
	'42710', 'continuous query "q1" already exists',
	'same definition under an existing name: 42710');
SELECT throws_ok(
	$$SELECT stream_state.create_query('q1', 'pt1', 'k', NULL, '1 hour')$$,
	'42710', 'continuous query "q1" already exists',
	'another definition under an existing name: 42710');

-- ---------------------------------------------------------------- source
SELECT throws_ok(
	$$SELECT stream_state.create_query('q_src', 'no_such_table', 'k', 'ts', '5 minutes')$$,
	'42P01', 'relation "no_such_table" does not exist',
	'source does not exist: 42P01');
SELECT throws_ok(
	$$SELECT stream_state.create_query('q_src', NULL, 'k', 'ts', '5 minutes')$$,
	'22023', NULL, 'source NULL: 22023');
SELECT throws_ok(
	$$SELECT stream_state.create_query('q_src', 'v1', 'k', 'ts', '5 minutes')$$,
	'42809', '"v1" is not a table', 'source is a view: 42809');
SELECT throws_ok(
	$$SELECT stream_state.create_query('q_src', 'mv1', 'k', 'ts', '5 minutes')$$,
	'42809', '"mv1" is not a table', 'source is a materialized view: 42809');
SELECT throws_ok(
	$$SELECT stream_state.create_query('q_src', 's1', 'k', 'ts', '5 minutes')$$,
	'42809', '"s1" is not a table', 'source is a sequence: 42809');
SELECT throws_ok(
	$$SELECT stream_state.create_query('q_src', 't1_k_idx', 'k', 'ts', '5 minutes')$$,
	'42809', '"t1_k_idx" is not a table', 'source is an index: 42809');
SELECT throws_ok(
	$$SELECT stream_state.create_query('q_src', 'ft1', 'k', 'ts', '5 minutes')$$,
	'42809', '"ft1" is not a table', 'source is a foreign table: 42809');
SELECT throws_ok(
	$$SELECT stream_state.create_query('q_src', 'ct1', 'k', 'ts', '5 minutes')$$,
	'42809', '"ct1" is not a table', 'source is a composite type: 42809');
SELECT lives_ok(
	$$SELECT stream_state.create_query('q_part', 'pt1', 'k', 'ts', '5 minutes')$$,
	'source may be a partitioned table');

-- ---------------------------------------------------------------- columns
SELECT throws_ok(
	$$SELECT stream_state.create_query('q_col', 't1', 'nope', 'ts', '5 minutes')$$,
	'42703', 'column "nope" of relation "t1" does not exist',
	'key column does not exist: 42703');
SELECT throws_ok(
	$$SELECT stream_state.create_query('q_col', 't1', 'k', 'nope', '5 minutes')$$,
	'42703', 'column "nope" of relation "t1" does not exist',
	'time column does not exist: 42703');
SELECT throws_ok(
	$$SELECT stream_state.create_query('q_col', 't1', 'dropme', 'ts', '5 minutes')$$,
	'42703', 'column "dropme" of relation "t1" does not exist',
	'key column was dropped: 42703');
SELECT throws_ok(
	$$SELECT stream_state.create_query('q_col', 't1', 'ctid', 'ts', '5 minutes')$$,
	'42703', 'column "ctid" of relation "t1" does not exist',
	'key column is a system column (ctid): 42703');
SELECT throws_ok(
	$$SELECT stream_state.create_query('q_col', 't1', 'k', 'xmin', '5 minutes')$$,
	'42703', 'column "xmin" of relation "t1" does not exist',
	'time column is a system column (xmin): 42703');
SELECT throws_ok(
	$$SELECT stream_state.create_query('q_col', 't1', NULL, 'ts', '5 minutes')$$,
	'22023', NULL, 'key column NULL: 22023');

-- ---------------------------------------------------------------- key type
SELECT throws_ok(
	$$SELECT stream_state.create_query('q_key', 't1', 'p', 'ts', '5 minutes')$$,
	'42704', 'key column "p" of type point has no default hash operator class',
	'key type without a default hash operator class (point): 42704');
SELECT lives_ok(
	$$SELECT stream_state.create_query('q_key_jsonb', 't1', 'j', 'ts', '5 minutes')$$,
	'key of type jsonb is accepted (equal values that differ in bytes are merged when read)');
SELECT lives_ok(
	$$SELECT stream_state.create_query('q_key_text', 't1', 's', 'ts', '5 minutes')$$,
	'key of type text is accepted');

-- ---------------------------------------------------------------- time type
SELECT throws_ok(
	$$SELECT stream_state.create_query('q_time', 't1', 'k', 'k', '5 minutes')$$,
	'42804', 'time column "k" must be of type timestamp with time zone, timestamp without time zone or date',
	'time column of type bigint: 42804');
SELECT throws_ok(
	$$SELECT stream_state.create_query('q_time', 't1', 'k', 's', '5 minutes')$$,
	'42804', 'time column "s" must be of type timestamp with time zone, timestamp without time zone or date',
	'time column of type text: 42804');
SELECT lives_ok(
	$$SELECT stream_state.create_query('q_time_date', 't1', 'k', 'd', '1 day')$$,
	'time column of type date is accepted');
SELECT lives_ok(
	$$SELECT stream_state.create_query('q_time_ts', 't1', 'k', 'tsl', '5 minutes')$$,
	'time column of type timestamp is accepted');
SELECT lives_ok(
	$$SELECT stream_state.create_query('q_proc', 't1', 'k', NULL, '5 minutes')$$,
	'time column NULL (processing time) is accepted');

-- ---------------------------------------------------------------- window_size
SELECT throws_ok(
	$$SELECT stream_state.create_query('q_win', 't1', 'k', 'ts')$$,
	'22023', 'window_size must be a positive interval', 'window_size omitted: 22023');
SELECT throws_ok(
	$$SELECT stream_state.create_query('q_win', 't1', 'k', 'ts', NULL)$$,
	'22023', 'window_size must be a positive interval', 'window_size NULL: 22023');
SELECT throws_ok(
	$$SELECT stream_state.create_query('q_win', 't1', 'k', NULL, NULL)$$,
	'22023', 'window_size must be a positive interval',
	'window_size NULL with processing time: 22023');
SELECT throws_ok(
	$$SELECT stream_state.create_query('q_win', 't1', 'k', 'ts', '0')$$,
	'22023', 'window_size must be a positive interval', 'window_size 0: 22023');
SELECT throws_ok(
	$$SELECT stream_state.create_query('q_win', 't1', 'k', 'ts', '-5 minutes')$$,
	'22023', 'window_size must be a positive interval', 'window_size negative: 22023');
SELECT throws_ok(
	$$SELECT stream_state.create_query('q_win', 't1', 'k', 'ts', '1 month')$$,
	'22023', 'window_size must not contain months or years', 'window_size of a month: 22023');
SELECT throws_ok(
	$$SELECT stream_state.create_query('q_win', 't1', 'k', 'ts', '1 year')$$,
	'22023', 'window_size must not contain months or years', 'window_size of a year: 22023');
SELECT throws_ok(
	$$SELECT stream_state.create_query('q_win', 't1', 'k', 'ts', '1 month 1 day')$$,
	'22023', 'window_size must not contain months or years',
	'window_size with months and days: 22023');
SELECT lives_ok(
	$$SELECT stream_state.create_query('q_win_1us', 't1', 'k', 'ts', '1 microsecond')$$,
	'window_size of 1 microsecond is accepted');
SELECT lives_ok(
	$$SELECT stream_state.create_query('q_win_days', 't1', 'k', 'ts', '30 days')$$,
	'window_size of 30 days is accepted');

-- ---------------------------------------------------------------- slide
SELECT throws_ok(
	$$SELECT stream_state.create_query('q_slide', 't1', 'k', 'ts', '5 minutes', '0')$$,
	'22023', 'slide must be a positive interval', 'slide 0: 22023');
SELECT throws_ok(
	$$SELECT stream_state.create_query('q_slide', 't1', 'k', 'ts', '5 minutes', '-1 minute')$$,
	'22023', 'slide must be a positive interval', 'slide negative: 22023');
SELECT throws_ok(
	$$SELECT stream_state.create_query('q_slide', 't1', 'k', 'ts', '60 days', '1 month')$$,
	'22023', 'slide must not contain months or years', 'slide of a month: 22023');
SELECT throws_ok(
	$$SELECT stream_state.create_query('q_slide', 't1', 'k', 'ts', '5 minutes', '6 minutes')$$,
	'22023', 'slide must not be larger than window_size', 'slide larger than window_size: 22023');
SELECT throws_ok(
	$$SELECT stream_state.create_query('q_slide', 't1', 'k', 'ts', '5 minutes', '5 minutes 1 microsecond')$$,
	'22023', 'slide must not be larger than window_size',
	'slide 1 microsecond larger than window_size: 22023');
SELECT lives_ok(
	$$SELECT stream_state.create_query('q_slide_eq', 't1', 'k', 'ts', '5 minutes', '5 minutes')$$,
	'slide equal to window_size is accepted');
SELECT lives_ok(
	$$SELECT stream_state.create_query('q_slide_odd', 't1', 'k', 'ts', '5 minutes', '2 minutes')$$,
	'slide that does not divide window_size is accepted (panes of gcd)');

-- ---------------------------------------------------------------- lateness
SELECT throws_ok(
	$$SELECT stream_state.create_query('q_late', 't1', 'k', 'ts', '5 minutes', lateness => '-1 second')$$,
	'22023', 'lateness must not be negative', 'lateness negative: 22023');
SELECT throws_ok(
	$$SELECT stream_state.create_query('q_late', 't1', 'k', 'ts', '5 minutes', lateness => '-1 microsecond')$$,
	'22023', 'lateness must not be negative', 'lateness of -1 microsecond: 22023');
SELECT throws_ok(
	$$SELECT stream_state.create_query('q_late', 't1', 'k', 'ts', '5 minutes', lateness => '1 month')$$,
	'22023', 'lateness must not contain months or years', 'lateness of a month: 22023');
SELECT lives_ok(
	$$SELECT stream_state.create_query('q_late_0', 't1', 'k', 'ts', '5 minutes', lateness => '0')$$,
	'lateness 0 is accepted');
SELECT lives_ok(
	$$SELECT stream_state.create_query('q_late_1d', 't1', 'k', 'ts', '5 minutes', lateness => '1 day')$$,
	'lateness of a day is accepted');

-- ---------------------------------------------------------------- no side effects
-- none of the failed calls above left a definition or a trigger behind
SELECT is(
	(SELECT count(*)::int FROM stream_state.queries WHERE source IN ('t1'::regclass, 'pt1'::regclass)),
	14, 'exactly the 14 accepted definitions are in stream_state.queries');
SELECT is(
	(SELECT array_agg(name ORDER BY name COLLATE "C") FROM stream_state.queries
	  WHERE name !~ '^x+$'),
	ARRAY['q1', 'q_key_jsonb', 'q_key_text', 'q_late_0', 'q_late_1d', 'q_part', 'q_proc',
		  'q_slide_eq', 'q_slide_odd', 'q_time_date', 'q_time_ts', 'q_win_1us', 'q_win_days'],
	'the accepted definitions are the ones named in this file');
SELECT is(
	(SELECT count(*)::int FROM pg_trigger
	  WHERE tgrelid = 't1'::regclass AND tgname ~ '^stream_state_q[0-9]+$'),
	13, 'one stream_state_q<id> trigger on t1 per accepted query on t1 (13)');
SELECT is(
	(SELECT count(*)::int FROM pg_trigger
	  WHERE tgrelid = 'pt1'::regclass AND tgname ~ '^stream_state_q[0-9]+$'),
	1, 'one stream_state_q<id> trigger on the partitioned table pt1');

SELECT * FROM finish();
ROLLBACK;
