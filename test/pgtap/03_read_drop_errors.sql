-- test/pgtap/03_read_drop_errors.sql
--
-- window_count, window_counts, drop_query, grant_read and revoke_read: the
-- errors of docs/sql-reference.md that a single transaction can reach
-- (unknown query, key of another type), what a definition looks like in
-- stream_state.queries, and that drop_query removes the definition and its
-- trigger.  Counts are not tested here: this transaction rolls back, so the
-- worker never applies anything from it.  Runs as superuser.
BEGIN;
SELECT plan(30);

CREATE TABLE t1 (k bigint, ts timestamptz);

-- ---------------------------------------------------------------- unknown query
SELECT throws_ok(
	$$SELECT stream_state.window_count('nope', 1::bigint)$$,
	'42704', 'continuous query "nope" does not exist', 'window_count of an unknown query: 42704');
SELECT throws_ok(
	$$SELECT stream_state.window_count('nope', 1::bigint, '2026-11-24 10:00+00')$$,
	'42704', 'continuous query "nope" does not exist',
	'window_count of an unknown query, with at: 42704');
SELECT throws_ok(
	$$SELECT * FROM stream_state.window_counts('nope')$$,
	'42704', 'continuous query "nope" does not exist', 'window_counts of an unknown query: 42704');
SELECT throws_ok(
	$$SELECT stream_state.drop_query('nope')$$,
	'42704', 'continuous query "nope" does not exist', 'drop_query of an unknown query: 42704');
SELECT throws_ok(
	$$SELECT stream_state.grant_read('nope', 'pg_monitor')$$,
	'42704', 'continuous query "nope" does not exist', 'grant_read of an unknown query: 42704');
SELECT throws_ok(
	$$SELECT stream_state.revoke_read('nope', 'pg_monitor')$$,
	'42704', 'continuous query "nope" does not exist', 'revoke_read of an unknown query: 42704');

-- ---------------------------------------------------------------- definitions
SELECT lives_ok(
	$$SELECT stream_state.create_query('q1', 't1', key_column => 'k', time_column => 'ts',
									  window_size => '5 minutes', slide => '1 minute')$$,
	'create_query q1: sliding 5 minutes every minute, named arguments');
SELECT lives_ok(
	$$SELECT stream_state.create_query('q_tumble', 't1', 'k', 'ts', '10 minutes', lateness => '30 seconds')$$,
	'create_query q_tumble: tumbling 10 minutes (slide NULL), lateness 30 seconds');
SELECT lives_ok(
	$$SELECT stream_state.create_query('q_proc', 't1', 'k', window_size => '1 hour')$$,
	'create_query q_proc: processing time (time_column NULL)');

SELECT is(
	(SELECT string_agg(concat_ws(' ', name, source, key_column, coalesce(time_column::text, '-'),
								 window_size, slide, lateness, owner::text = current_user),
					   ', ' ORDER BY name COLLATE "C")
	   FROM stream_state.queries),
	'q1 t1 k ts 00:05:00 00:01:00 00:00:00 t, '
	'q_proc t1 k - 01:00:00 01:00:00 00:00:00 t, '
	'q_tumble t1 k ts 00:10:00 00:10:00 00:00:30 t',
	'stream_state.queries shows the definitions (slide NULL = window_size, lateness default 0, owner = creator)');
SELECT ok(
	(SELECT bool_and(status IN ('starting', 'restoring', 'running', 'paused: memory full'))
	   FROM stream_state.queries),
	'every status is one of the documented ones');
SELECT is(
	(SELECT count(*)::int FROM pg_trigger
	  WHERE tgrelid = 't1'::regclass AND tgname ~ '^stream_state_q[0-9]+$'),
	3, 'create_query installed one stream_state_q<id> trigger per query on t1');

-- ---------------------------------------------------------------- key type
SELECT throws_ok(
	$$SELECT stream_state.window_count('q1', 'abc'::text)$$,
	'42804', 'key has type text, but query "q1" has key type bigint',
	'window_count with a text key for a bigint query: 42804');
SELECT throws_ok(
	$$SELECT stream_state.window_count('q1', 1)$$,
	'42804', 'key has type integer, but query "q1" has key type bigint',
	'window_count with an integer key for a bigint query: 42804 (cast it)');
SELECT throws_ok(
	$$SELECT stream_state.window_count('q1', 1::numeric)$$,
	'42804', 'key has type numeric, but query "q1" has key type bigint',
	'window_count with a numeric key for a bigint query: 42804');

-- ---------------------------------------------------------------- reads that work
SELECT is(
	stream_state.window_count('q1', 1::bigint, '2026-11-24 10:00+00'), 0::bigint,
	'window_count of a key without events is 0');
SELECT is(
	stream_state.window_count('q1', NULL::bigint), NULL::bigint,
	'window_count with a NULL key is NULL');
SELECT is_empty(
	$$SELECT * FROM stream_state.window_counts('q1', '2026-11-24 10:00+00')$$,
	'window_counts of a query without committed events is empty');
SELECT is(
	stream_state.wait_applied(NULL, '30 seconds'), true,
	'wait_applied(): the worker of this database applies the WAL written so far');

-- ---------------------------------------------------------------- drop_query
SELECT lives_ok(
	$$SELECT stream_state.drop_query('q1')$$, 'drop_query q1');
SELECT is(
	(SELECT count(*)::int FROM stream_state.queries WHERE name = 'q1'), 0,
	'q1 is gone from stream_state.queries');
SELECT is(
	(SELECT count(*)::int FROM pg_trigger
	  WHERE tgrelid = 't1'::regclass AND tgname ~ '^stream_state_q[0-9]+$'),
	2, 'drop_query removed the trigger of q1 and no other');
SELECT throws_ok(
	$$SELECT stream_state.window_count('q1', 1::bigint)$$,
	'42704', 'continuous query "q1" does not exist',
	'window_count of a dropped query (same transaction): 42704');
SELECT throws_ok(
	$$SELECT * FROM stream_state.window_counts('q1')$$,
	'42704', 'continuous query "q1" does not exist',
	'window_counts of a dropped query (same transaction): 42704');
SELECT throws_ok(
	$$SELECT stream_state.drop_query('q1')$$,
	'42704', 'continuous query "q1" does not exist',
	'drop_query of a dropped query (same transaction): 42704');
SELECT lives_ok(
	$$SELECT stream_state.create_query('q1', 't1', 'k', 'ts', '1 minute')$$,
	'the name of a dropped query can be used again (same transaction)');
SELECT results_eq(
	$$SELECT window_size, slide FROM stream_state.queries WHERE name = 'q1'$$,
	$$VALUES (interval '1 minute', interval '1 minute')$$,
	'the new q1 has the new definition');

-- a query whose source table was dropped can still be dropped
SELECT lives_ok($$DROP TABLE t1$$, 'DROP TABLE of a source table');
SELECT lives_ok(
	$$SELECT stream_state.drop_query('q_tumble')$$,
	'drop_query of a query whose source table was dropped');
SELECT is(
	(SELECT count(*)::int FROM stream_state.queries WHERE name = 'q_tumble'), 0,
	'q_tumble is gone from stream_state.queries');

SELECT * FROM finish();
ROLLBACK;
