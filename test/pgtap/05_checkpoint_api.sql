-- test/pgtap/05_checkpoint_api.sql
--
-- The 0.2.0 surface of docs/sql-reference.md ("Rebuilding", "Checkpoints"):
-- functions with their argument and result types, the checkpoints view and
-- its columns, who may call what (checkpoint, restore, export and import are
-- not granted to PUBLIC; the view is for pg_monitor; rebuild is for the
-- query's owner), the catalog columns pg_dump restores by name, and the
-- argument errors that need no worker.  The roles exist only inside this
-- transaction.
BEGIN;
SELECT plan(36);

SELECT has_function('stream_state', 'checkpoint', ARRAY['text'], 'checkpoint(target text)');
SELECT function_returns('stream_state', 'checkpoint', ARRAY['text'], 'bigint',
	'checkpoint returns bigint (the new id)');
SELECT has_function('stream_state', 'restore_checkpoint', ARRAY['bigint'],
	'restore_checkpoint(id bigint)');
SELECT function_returns('stream_state', 'restore_checkpoint', ARRAY['bigint'], 'setof record',
	'restore_checkpoint returns (query, action) rows');
SELECT has_function('stream_state', 'export_checkpoint', ARRAY['bigint', 'text'],
	'export_checkpoint(id bigint, path text)');
SELECT function_returns('stream_state', 'export_checkpoint', ARRAY['bigint', 'text'], 'bigint',
	'export_checkpoint returns bigint (bytes)');
SELECT has_function('stream_state', 'import_checkpoint', ARRAY['text'],
	'import_checkpoint(path text)');
SELECT function_returns('stream_state', 'import_checkpoint', ARRAY['text'], 'setof record',
	'import_checkpoint returns (query, keys, entries) rows');
SELECT has_function('stream_state', 'rebuild', ARRAY['text'], 'rebuild(name text)');
SELECT function_returns('stream_state', 'rebuild', ARRAY['text'], 'void', 'rebuild returns void');

SELECT is(
	(SELECT pg_get_function_arguments('stream_state.checkpoint(text)'::regprocedure)),
	'target text DEFAULT NULL::text',
	'checkpoint(target) defaults to NULL: stream_state.checkpoint_target');
SELECT is(
	(SELECT pg_get_function_arguments('stream_state.restore_checkpoint(bigint)'::regprocedure)),
	'id bigint, OUT query text, OUT action text',
	'restore_checkpoint result columns');
SELECT is(
	(SELECT pg_get_function_arguments('stream_state.import_checkpoint(text)'::regprocedure)),
	'path text, OUT query text, OUT keys bigint, OUT entries bigint',
	'import_checkpoint result columns');

-- the view
SELECT has_view('stream_state', 'checkpoints', 'view stream_state.checkpoints exists');
SELECT columns_are('stream_state', 'checkpoints',
	ARRAY['id', 'target', 'location', 'created_at', 'applied_lsn', 'restart_lsn', 'queries',
		  'entries', 'bytes', 'duration', 'pause', 'status'],
	'stream_state.checkpoints columns');
SELECT col_type_is('stream_state', 'checkpoints', 'applied_lsn', 'pg_lsn', 'applied_lsn is pg_lsn');
SELECT col_type_is('stream_state', 'checkpoints', 'duration', 'interval', 'duration is an interval');

-- the catalog restores by name
SELECT col_type_is('stream_state', 'query_def', 'source', 'regclass', 'query_def.source is regclass');
SELECT col_type_is('stream_state', 'query_def', 'owner', 'regrole', 'query_def.owner is regrole');
SELECT col_type_is('stream_state', 'query_def', 'readers', 'regrole[]', 'query_def.readers is regrole[]');
SELECT is(
	(SELECT array_agg(c.relname::text ORDER BY c.relname)
	   FROM pg_extension e, unnest(e.extconfig) cfg, pg_class c
	  WHERE e.extname = 'stream_state' AND c.oid = cfg),
	ARRAY['emit_progress', 'query_def', 'query_id_seq'],
	'pg_dump dumps the catalog, its sequence and the emit_to progress (extension configuration), not late_to''s (WAL positions of this cluster)');

-- who may call what
SELECT ok(NOT has_function_privilege('public', 'stream_state.checkpoint(text)', 'EXECUTE'),
	'PUBLIC may not call checkpoint');
SELECT ok(NOT has_function_privilege('public', 'stream_state.restore_checkpoint(bigint)', 'EXECUTE'),
	'PUBLIC may not call restore_checkpoint');
SELECT ok(NOT has_function_privilege('public', 'stream_state.export_checkpoint(bigint, text)', 'EXECUTE'),
	'PUBLIC may not call export_checkpoint');
SELECT ok(NOT has_function_privilege('public', 'stream_state.import_checkpoint(text)', 'EXECUTE'),
	'PUBLIC may not call import_checkpoint');
SELECT ok(has_function_privilege('public', 'stream_state.rebuild(text)', 'EXECUTE'),
	'PUBLIC may call rebuild (which checks ownership of the query)');
SELECT ok(NOT has_table_privilege('public', 'stream_state.checkpoints', 'SELECT'),
	'PUBLIC may not read the checkpoints view');
SELECT ok(has_table_privilege('pg_monitor', 'stream_state.checkpoints', 'SELECT')
		  AND has_function_privilege('pg_monitor', 'stream_state._checkpoints()', 'EXECUTE'),
	'pg_monitor may read the checkpoints view');

CREATE ROLE ss_pgtap5_owner;
CREATE ROLE ss_pgtap5_other;
CREATE TABLE t5 (k bigint, ts timestamptz);
GRANT SELECT, TRIGGER ON t5 TO ss_pgtap5_owner;
INSERT INTO t5 VALUES (1, '2026-11-24 10:00:00+00'), (2, '2026-11-24 10:00:00+00');
SET ROLE ss_pgtap5_owner;
SELECT lives_ok(
	$$SELECT stream_state.create_query('p5', 't5', 'k', 'ts', '5 minutes')$$,
	'the owner creates p5');
SELECT lives_ok($$SELECT stream_state.rebuild('p5')$$, 'the owner may rebuild p5');
RESET ROLE;
SET ROLE ss_pgtap5_other;
SELECT throws_ok($$SELECT stream_state.rebuild('p5')$$,
	'42501', 'must be owner of continuous query "p5"', 'rebuild by another role: 42501');
SELECT throws_ok($$SELECT stream_state.checkpoint()$$,
	'42501', 'permission denied for function checkpoint', 'checkpoint by PUBLIC: 42501');
RESET ROLE;

-- argument errors
SELECT throws_ok($$SELECT stream_state.rebuild('no_such_query')$$,
	'42704', NULL, 'rebuild of an unknown query: 42704');
SELECT throws_ok($$SELECT stream_state.checkpoint('tape')$$,
	'22023', 'unknown checkpoint target "tape"', 'checkpoint to an unknown target: 22023');
SELECT throws_ok($$SELECT stream_state.export_checkpoint(999999, 'x.ckpt')$$,
	'42704', 'checkpoint 999999 of this database does not exist', 'export of an unknown id: 42704');
SELECT throws_ok($$SELECT * FROM stream_state.import_checkpoint('')$$,
	'22023', 'path must not be empty', 'import from an empty path: 22023');

SELECT * FROM finish();
ROLLBACK;
