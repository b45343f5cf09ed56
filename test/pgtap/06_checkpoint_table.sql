-- test/pgtap/06_checkpoint_table.sql
--
-- The 0.3.0 surface of docs/sql-reference.md ("Checkpoints", target
-- "table"): the table stream_state.checkpoint_data, its columns, key and
-- storage; who may read it (superusers and pg_monitor, like the checkpoints
-- view) and that nobody else may write it; that pg_dump leaves it out; the
-- GUC stream_state.checkpoint_target with its values; and the target
-- argument's error.  Checkpoints themselves need the worker: see
-- test/t/014_checkpoint_table.pl.
BEGIN;
SELECT plan(22);

SELECT has_table('stream_state', 'checkpoint_data', 'table stream_state.checkpoint_data exists');
SELECT columns_are('stream_state', 'checkpoint_data', ARRAY['checkpoint_id', 'chunk', 'data'],
	'checkpoint_data columns');
SELECT col_type_is('stream_state', 'checkpoint_data', 'checkpoint_id', 'bigint', 'checkpoint_id is bigint');
SELECT col_type_is('stream_state', 'checkpoint_data', 'chunk', 'integer', 'chunk is integer');
SELECT col_type_is('stream_state', 'checkpoint_data', 'data', 'bytea', 'data is bytea');
SELECT col_not_null('stream_state', 'checkpoint_data', 'data', 'data is NOT NULL');
SELECT has_pk('stream_state', 'checkpoint_data', 'checkpoint_data has a primary key');
SELECT col_is_pk('stream_state', 'checkpoint_data', ARRAY['checkpoint_id', 'chunk'],
	'its primary key is (checkpoint_id, chunk)');
SELECT is(
	(SELECT attstorage::text FROM pg_attribute
	  WHERE attrelid = 'stream_state.checkpoint_data'::regclass AND attname = 'data'),
	'e', 'data is stored EXTERNAL (not compressed)');

-- the extension owns it; pg_dump leaves it out
SELECT is(
	(SELECT count(*)::int FROM pg_depend d, pg_extension e
	  WHERE d.classid = 'pg_class'::regclass AND d.objid = 'stream_state.checkpoint_data'::regclass
		AND d.refclassid = 'pg_extension'::regclass AND d.refobjid = e.oid
		AND e.extname = 'stream_state' AND d.deptype = 'e'),
	1, 'checkpoint_data is a member of the extension');
SELECT ok(
	(SELECT NOT ('stream_state.checkpoint_data'::regclass = ANY (coalesce(extconfig, '{}')))
	   FROM pg_extension WHERE extname = 'stream_state'),
	'checkpoint_data is not an extension configuration table: pg_dump does not dump its rows');

-- who may read and write it
SELECT ok(NOT has_table_privilege('public', 'stream_state.checkpoint_data', 'SELECT'),
	'PUBLIC may not read checkpoint_data');
SELECT ok(has_table_privilege('pg_monitor', 'stream_state.checkpoint_data', 'SELECT'),
	'pg_monitor may read checkpoint_data');
SELECT ok(NOT has_table_privilege('pg_monitor', 'stream_state.checkpoint_data',
								  'INSERT, UPDATE, DELETE, TRUNCATE'),
	'pg_monitor may not change checkpoint_data');
CREATE ROLE ss_pgtap6_plain;
CREATE ROLE ss_pgtap6_monitor IN ROLE pg_monitor;
SET ROLE ss_pgtap6_plain;
SELECT throws_ok($$SELECT count(*) FROM stream_state.checkpoint_data$$,
	'42501', 'permission denied for table checkpoint_data', 'a plain role reading checkpoint_data: 42501');
SELECT throws_ok($$DELETE FROM stream_state.checkpoint_data$$,
	'42501', 'permission denied for table checkpoint_data', 'a plain role deleting from checkpoint_data: 42501');
RESET ROLE;
SET ROLE ss_pgtap6_monitor;
SELECT lives_ok($$SELECT count(*) FROM stream_state.checkpoint_data$$,
	'a member of pg_monitor reads checkpoint_data');
SELECT throws_ok($$DELETE FROM stream_state.checkpoint_data$$,
	'42501', 'permission denied for table checkpoint_data', 'a member of pg_monitor deleting from checkpoint_data: 42501');
RESET ROLE;

-- the GUC
SELECT is(
	(SELECT enumvals FROM pg_settings WHERE name = 'stream_state.checkpoint_target'),
	ARRAY['file', 'table'], 'stream_state.checkpoint_target takes file or table');
SELECT is(
	(SELECT boot_val || ' ' || context FROM pg_settings WHERE name = 'stream_state.checkpoint_target'),
	'file sighup', 'checkpoint_target defaults to file and is set in the configuration (sighup)');

-- the target argument
SELECT throws_ok($$SELECT stream_state.checkpoint('bogus')$$,
	'22023', 'unknown checkpoint target "bogus"', 'checkpoint to an unknown target: 22023');
SELECT throws_ok($$SELECT stream_state.checkpoint(target => 'TABLE')$$,
	'22023', 'unknown checkpoint target "TABLE"', 'targets are lower case: 22023');

SELECT * FROM finish();
ROLLBACK;
