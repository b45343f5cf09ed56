-- test/pgtap/01_api_shape.sql
--
-- The SQL surface of docs/sql-reference.md: schema, functions with their
-- argument types, argument names, defaults and return types, and the views
-- with their columns.
BEGIN;
SELECT plan(57);

SELECT has_extension('stream_state', 'extension stream_state is installed');
SELECT has_schema('stream_state', 'schema stream_state exists');

-- functions: argument types and return types
SELECT has_function('stream_state', 'create_query',
	ARRAY['text', 'regclass', 'text', 'text', 'interval', 'interval', 'interval', 'text'],
	'create_query(name text, source regclass, key_column text, time_column text, window_size interval, slide interval, lateness interval, backend text)');
SELECT function_returns('stream_state', 'create_query',
	ARRAY['text', 'regclass', 'text', 'text', 'interval', 'interval', 'interval', 'text'], 'void',
	'create_query returns void');
SELECT has_function('stream_state', 'create_query',
	ARRAY['text', 'text', 'text', 'text', 'interval', 'interval', 'interval', 'text', 'text', 'interval', 'interval', 'text'],
	'create_query(name text, source text, ..., emit_to text, retention interval, session_gap interval, late_to text): a table with a key column, or a query in SQL');
SELECT has_function('stream_state', 'window_result', ARRAY['text', 'timestamp with time zone'],
	'window_result(name text, at timestamptz)');
SELECT function_returns('stream_state', 'window_result', ARRAY['text', 'timestamp with time zone'],
	'setof record', 'window_result returns setof record');

SELECT has_function('stream_state', 'alter_query', ARRAY['text', 'interval', 'interval', 'text', 'text'],
	'alter_query(name text, lateness interval, retention interval, emit_to text, late_to text)');
SELECT function_returns('stream_state', 'alter_query', ARRAY['text', 'interval', 'interval', 'text', 'text'], 'void',
	'alter_query returns void');
SELECT has_function('stream_state', 'drop_query', ARRAY['text'],
	'drop_query(name text)');
SELECT function_returns('stream_state', 'drop_query', ARRAY['text'], 'void',
	'drop_query returns void');

SELECT has_function('stream_state', 'grant_read', ARRAY['text', 'regrole'],
	'grant_read(query text, role regrole)');
SELECT function_returns('stream_state', 'grant_read', ARRAY['text', 'regrole'], 'void',
	'grant_read returns void');

SELECT has_function('stream_state', 'revoke_read', ARRAY['text', 'regrole'],
	'revoke_read(query text, role regrole)');
SELECT function_returns('stream_state', 'revoke_read', ARRAY['text', 'regrole'], 'void',
	'revoke_read returns void');

SELECT has_function('stream_state', 'window_count',
	ARRAY['text', 'anyelement', 'timestamp with time zone'],
	'window_count(name text, key anyelement, at timestamptz)');
SELECT function_returns('stream_state', 'window_count',
	ARRAY['text', 'anyelement', 'timestamp with time zone'], 'bigint',
	'window_count returns bigint');

SELECT has_function('stream_state', 'window_counts',
	ARRAY['text', 'timestamp with time zone'],
	'window_counts(name text, at timestamptz)');
SELECT function_returns('stream_state', 'window_counts',
	ARRAY['text', 'timestamp with time zone'], 'setof record',
	'window_counts returns a set of rows');

SELECT has_function('stream_state', 'wait_applied', ARRAY['pg_lsn', 'interval'],
	'wait_applied(lsn pg_lsn, timeout interval)');
SELECT function_returns('stream_state', 'wait_applied', ARRAY['pg_lsn', 'interval'], 'boolean',
	'wait_applied returns boolean');

SELECT has_function('stream_state', 'describe_query', ARRAY['text'],
	'describe_query(query text)');
SELECT function_returns('stream_state', 'describe_query', ARRAY['text'], 'setof record',
	'describe_query returns a set of rows');

-- argument names (callers use named notation: key_column => ..., slide => ...)
-- and how many trailing arguments have defaults
SELECT is(
	(SELECT proargnames FROM pg_proc
	  WHERE oid = 'stream_state.create_query(text, regclass, text, text, interval, interval, interval, text)'::regprocedure),
	ARRAY['name', 'source', 'key_column', 'time_column', 'window_size', 'slide', 'lateness', 'backend'],
	'create_query argument names');
SELECT is(
	(SELECT pronargdefaults::int FROM pg_proc
	  WHERE oid = 'stream_state.create_query(text, regclass, text, text, interval, interval, interval, text)'::regprocedure),
	5, 'create_query: time_column, window_size, slide, lateness and backend have defaults');
SELECT is(
	(SELECT proargnames FROM pg_proc
	  WHERE oid = 'stream_state.drop_query(text)'::regprocedure),
	ARRAY['name'], 'drop_query argument names');
SELECT is(
	(SELECT proargnames FROM pg_proc
	  WHERE oid = 'stream_state.grant_read(text, regrole)'::regprocedure),
	ARRAY['query', 'role'], 'grant_read argument names');
SELECT is(
	(SELECT proargnames FROM pg_proc
	  WHERE oid = 'stream_state.revoke_read(text, regrole)'::regprocedure),
	ARRAY['query', 'role'], 'revoke_read argument names');
SELECT is(
	(SELECT proargnames FROM pg_proc
	  WHERE oid = 'stream_state.window_count(text, anyelement, timestamptz)'::regprocedure),
	ARRAY['name', 'key', 'at'], 'window_count argument names');
SELECT is(
	(SELECT pronargdefaults::int FROM pg_proc
	  WHERE oid = 'stream_state.window_count(text, anyelement, timestamptz)'::regprocedure),
	1, 'window_count: at has a default');
SELECT is(
	(SELECT proargnames FROM pg_proc
	  WHERE oid = 'stream_state.window_counts(text, timestamptz)'::regprocedure),
	ARRAY['name', 'at', 'key', 'window_start', 'window_end', 'count'],
	'window_counts argument and result column names');
SELECT is(
	(SELECT array_agg(t::regtype::text ORDER BY n) FROM pg_proc,
			unnest(proallargtypes) WITH ORDINALITY AS a(t, n)
	  WHERE oid = 'stream_state.window_counts(text, timestamptz)'::regprocedure
		AND proargmodes[n::int] IN ('o', 't')),
	ARRAY['text', 'timestamp with time zone', 'timestamp with time zone', 'bigint'],
	'window_counts result types: key text, window_start, window_end timestamptz, count bigint');
SELECT is(
	(SELECT pronargdefaults::int FROM pg_proc
	  WHERE oid = 'stream_state.window_counts(text, timestamptz)'::regprocedure),
	1, 'window_counts: at has a default');
SELECT is(
	(SELECT proargnames FROM pg_proc
	  WHERE oid = 'stream_state.describe_query(text)'::regprocedure),
	ARRAY['query', 'position', 'column_name', 'column_type', 'kind', 'expression',
		  'aggregates', 'state_types', 'fast_path'],
	'describe_query argument and result column names');
SELECT is(
	(SELECT array_agg(t::regtype::text ORDER BY n) FROM pg_proc,
			unnest(proallargtypes) WITH ORDINALITY AS a(t, n)
	  WHERE oid = 'stream_state.describe_query(text)'::regprocedure
		AND proargmodes[n::int] IN ('o', 't')),
	ARRAY['integer', 'text', 'regtype', 'text', 'text', 'text[]', 'regtype[]', 'boolean'],
	'describe_query result types');
SELECT is(
	(SELECT proargnames FROM pg_proc
	  WHERE oid = 'stream_state.wait_applied(pg_lsn, interval)'::regprocedure),
	ARRAY['lsn', 'timeout'], 'wait_applied argument names');
SELECT is(
	(SELECT pronargdefaults::int FROM pg_proc
	  WHERE oid = 'stream_state.wait_applied(pg_lsn, interval)'::regprocedure),
	2, 'wait_applied: lsn and timeout have defaults');

-- the defaults themselves, as documented
SELECT is(
	(SELECT pg_get_function_arguments(oid) FROM pg_proc
	  WHERE oid = 'stream_state.create_query(text, regclass, text, text, interval, interval, interval, text)'::regprocedure),
	'name text, source regclass, key_column text, time_column text DEFAULT NULL::text, '
	'window_size interval DEFAULT NULL::interval, slide interval DEFAULT NULL::interval, '
	'lateness interval DEFAULT ''00:00:00''::interval, backend text DEFAULT NULL::text',
	'create_query defaults: time_column, window_size, slide and backend NULL, lateness 0');
SELECT is(
	(SELECT pg_get_function_arguments(oid) FROM pg_proc
	  WHERE oid = 'stream_state.window_count(text, anyelement, timestamptz)'::regprocedure),
	'name text, key anyelement, at timestamp with time zone DEFAULT now()',
	'window_count default: at = now()');
SELECT is(
	(SELECT pg_get_function_arguments(oid) FROM pg_proc
	  WHERE oid = 'stream_state.wait_applied(pg_lsn, interval)'::regprocedure),
	'lsn pg_lsn DEFAULT NULL::pg_lsn, timeout interval DEFAULT ''00:00:30''::interval',
	'wait_applied defaults: lsn NULL, timeout 30 seconds');

-- views
SELECT has_view('stream_state', 'queries', 'view stream_state.queries exists');
SELECT columns_are('stream_state', 'queries', ARRAY[
	'name', 'source', 'key_column', 'time_column', 'window_size', 'slide',
	'lateness', 'backend', 'owner', 'status', 'applied_lsn', 'lag_bytes',
	'events_applied', 'late_events', 'skipped', 'keys', 'panes', 'state_bytes',
	'watermark', 'emit_to', 'emitted_until', 'retention', 'session_gap', 'late_to',
	'late_written_until'],
	'stream_state.queries has the documented columns');
SELECT is(
	(SELECT array_agg(attname::text ORDER BY attnum) FROM pg_attribute
	  WHERE attrelid = 'stream_state.queries'::regclass AND attnum > 0 AND NOT attisdropped),
	ARRAY['name', 'source', 'key_column', 'time_column', 'window_size', 'slide',
		  'lateness', 'backend', 'owner', 'status', 'applied_lsn', 'lag_bytes',
		  'events_applied', 'late_events', 'skipped', 'keys', 'panes', 'state_bytes',
		  'watermark', 'emit_to', 'emitted_until', 'retention', 'session_gap', 'late_to',
	'late_written_until'],
	'stream_state.queries columns are in the documented order');
SELECT has_view('stream_state', 'state', 'view stream_state.state exists');
SELECT columns_are('stream_state', 'state',
	ARRAY['query', 'key', 'pane_start', 'pane_end', 'count'],
	'stream_state.state has the documented columns');
SELECT is(
	(SELECT array_agg(attname::text ORDER BY attnum) FROM pg_attribute
	  WHERE attrelid = 'stream_state.state'::regclass AND attnum > 0 AND NOT attisdropped),
	ARRAY['query', 'key', 'pane_start', 'pane_end', 'count'],
	'stream_state.state columns are in the documented order');
SELECT col_type_is('stream_state', 'state', 'key', 'text', 'stream_state.state.key is text');
SELECT has_view('stream_state', 'rocksdb_stats', 'view stream_state.rocksdb_stats exists');
SELECT is(
	(SELECT array_agg(attname::text ORDER BY attnum) FROM pg_attribute
	  WHERE attrelid = 'stream_state.rocksdb_stats'::regclass AND attnum > 0 AND NOT attisdropped),
	ARRAY['scope', 'query', 'estimated_entries', 'estimated_bytes', 'memtable_bytes',
		  'block_cache_bytes', 'block_cache_capacity', 'sst_bytes',
		  'pending_compaction_bytes', 'running_compactions', 'read_cache_keys',
		  'read_cache_bytes', 'read_cache_hits', 'read_cache_misses'],
	'stream_state.rocksdb_stats has the documented columns, in order');
SELECT col_type_is('stream_state', 'rocksdb_stats', 'estimated_entries', 'bigint',
	'stream_state.rocksdb_stats.estimated_entries is bigint');

-- everyone may look at the views (rows are filtered by what the caller may read)
SELECT ok(has_table_privilege('public', 'stream_state.queries', 'SELECT'),
	'PUBLIC may SELECT from stream_state.queries');
SELECT ok(has_table_privilege('public', 'stream_state.state', 'SELECT'),
	'PUBLIC may SELECT from stream_state.state');
SELECT ok(has_table_privilege('public', 'stream_state.rocksdb_stats', 'SELECT'),
	'PUBLIC may SELECT from stream_state.rocksdb_stats');
SELECT ok(has_function_privilege('public', 'stream_state.describe_query(text)', 'EXECUTE'),
	'PUBLIC may call stream_state.describe_query');
SELECT ok(NOT has_function_privilege('public', 'stream_state._cq_evaluate(text, boolean)', 'EXECUTE'),
	'PUBLIC may not call the internal stream_state._cq_evaluate');
SELECT is(current_setting('stream_state.default_backend'), 'memory',
	'stream_state.default_backend is memory by default');
SELECT is(current_setting('stream_state.rocksdb_read_cache_size'), '32MB',
	'stream_state.rocksdb_read_cache_size is 32MB by default');

SELECT * FROM finish();
ROLLBACK;
