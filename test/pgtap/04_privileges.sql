-- test/pgtap/04_privileges.sql
--
-- Privileges (docs/sql-reference.md, SQLSTATE 42501): defining a query needs
-- SELECT on the key and time columns and TRIGGER on the table; drop_query,
-- grant_read and revoke_read are for the owner; window_count and
-- window_counts for the owner and the roles it granted.  The roles exist
-- only inside this transaction.
BEGIN;
SELECT plan(27);

CREATE ROLE ss_pgtap_owner;
CREATE ROLE ss_pgtap_other;
CREATE ROLE ss_pgtap_reader;
CREATE ROLE ss_pgtap_member IN ROLE ss_pgtap_reader;

-- ss_pgtap_owner may read k and ts (column privileges) and add triggers
CREATE TABLE t2 (k bigint, ts timestamptz, x bigint);
GRANT SELECT (k, ts), TRIGGER ON t2 TO ss_pgtap_owner;
-- ss_pgtap_other may read k only, and add triggers
GRANT SELECT (k), TRIGGER ON t2 TO ss_pgtap_other;
-- t3: ss_pgtap_other may read everything but may not add triggers
CREATE TABLE t3 (k bigint, ts timestamptz);
GRANT SELECT ON t3 TO ss_pgtap_other;

-- ---------------------------------------------------------------- create_query
SET ROLE ss_pgtap_other;
SELECT throws_ok(
	$$SELECT stream_state.create_query('p_x', 't2', 'x', 'ts', '5 minutes')$$,
	'42501', NULL, 'create_query without SELECT on the key column: 42501');
SELECT throws_ok(
	$$SELECT stream_state.create_query('p_ts', 't2', 'k', 'ts', '5 minutes')$$,
	'42501', NULL, 'create_query without SELECT on the time column: 42501');
SELECT throws_ok(
	$$SELECT stream_state.create_query('p_trig', 't3', 'k', 'ts', '5 minutes')$$,
	'42501', NULL, 'create_query without TRIGGER on the table: 42501');
SELECT lives_ok(
	$$SELECT stream_state.create_query('p_proc', 't2', 'k', NULL, '5 minutes')$$,
	'create_query with SELECT on the key column only, processing time: allowed');
RESET ROLE;

SET ROLE ss_pgtap_owner;
SELECT lives_ok(
	$$SELECT stream_state.create_query('p1', 't2', 'k', 'ts', '5 minutes')$$,
	'create_query with column SELECT on key and time and TRIGGER: allowed');
SELECT lives_ok(
	$$SELECT stream_state.window_count('p1', 1::bigint)$$, 'the owner may read its query');
SELECT lives_ok(
	$$SELECT * FROM stream_state.window_counts('p1')$$, 'the owner may list its query');
RESET ROLE;

SELECT is(
	(SELECT owner::text FROM stream_state.queries WHERE name = 'p1'), 'ss_pgtap_owner',
	'stream_state.queries shows the creator as owner');
SELECT is(
	(SELECT count(*)::int FROM pg_trigger
	  WHERE tgrelid = 't2'::regclass AND tgname ~ '^stream_state_q[0-9]+$'),
	2, 'only the two allowed create_query calls installed triggers on t2');
SELECT is(
	(SELECT count(*)::int FROM pg_trigger
	  WHERE tgrelid = 't3'::regclass AND tgname ~ '^stream_state_q[0-9]+$'),
	0, 'the refused create_query installed no trigger on t3');

-- ---------------------------------------------------------------- not the owner
SET ROLE ss_pgtap_other;
SELECT throws_ok(
	$$SELECT stream_state.window_count('p1', 1::bigint)$$,
	'42501', NULL, 'window_count of a query the caller may not read: 42501');
SELECT throws_ok(
	$$SELECT * FROM stream_state.window_counts('p1')$$,
	'42501', NULL, 'window_counts of a query the caller may not read: 42501');
SELECT throws_ok(
	$$SELECT stream_state.drop_query('p1')$$,
	'42501', NULL, 'drop_query by a role that is not the owner: 42501');
SELECT throws_ok(
	$$SELECT stream_state.grant_read('p1', 'ss_pgtap_other')$$,
	'42501', NULL, 'grant_read by a role that is not the owner: 42501');
SELECT throws_ok(
	$$SELECT stream_state.revoke_read('p1', 'ss_pgtap_reader')$$,
	'42501', NULL, 'revoke_read by a role that is not the owner: 42501');
RESET ROLE;

-- ---------------------------------------------------------------- grant_read
SET ROLE ss_pgtap_owner;
SELECT lives_ok(
	$$SELECT stream_state.grant_read('p1', 'ss_pgtap_reader')$$,
	'the owner grants reads to ss_pgtap_reader');
RESET ROLE;

SET ROLE ss_pgtap_reader;
SELECT lives_ok(
	$$SELECT stream_state.window_count('p1', 1::bigint)$$,
	'a granted role may read (window_count)');
SELECT lives_ok(
	$$SELECT * FROM stream_state.window_counts('p1')$$,
	'a granted role may read (window_counts)');
SELECT throws_ok(
	$$SELECT stream_state.drop_query('p1')$$,
	'42501', NULL, 'a granted role may read but not drop: 42501');
SELECT throws_ok(
	$$SELECT stream_state.grant_read('p1', 'ss_pgtap_other')$$,
	'42501', NULL, 'a granted role may read but not grant: 42501');
RESET ROLE;

SET ROLE ss_pgtap_member;
SELECT lives_ok(
	$$SELECT stream_state.window_count('p1', 1::bigint)$$,
	'a member of a granted role may read');
RESET ROLE;

SET ROLE ss_pgtap_other;
SELECT throws_ok(
	$$SELECT stream_state.window_count('p1', 1::bigint)$$,
	'42501', NULL, 'a role that was not granted still may not read: 42501');
RESET ROLE;

-- ---------------------------------------------------------------- revoke_read
SET ROLE ss_pgtap_owner;
SELECT lives_ok(
	$$SELECT stream_state.revoke_read('p1', 'ss_pgtap_reader')$$,
	'the owner revokes reads from ss_pgtap_reader');
RESET ROLE;

SET ROLE ss_pgtap_reader;
SELECT throws_ok(
	$$SELECT stream_state.window_count('p1', 1::bigint)$$,
	'42501', NULL, 'after revoke_read the role may not read: 42501');
RESET ROLE;

-- ---------------------------------------------------------------- drop_query
SET ROLE ss_pgtap_owner;
SELECT lives_ok(
	$$SELECT stream_state.drop_query('p1')$$, 'the owner drops its query');
RESET ROLE;
SELECT lives_ok(
	$$SELECT stream_state.drop_query('p_proc')$$, 'a superuser may drop any query');
SELECT is(
	(SELECT count(*)::int FROM stream_state.queries WHERE name IN ('p1', 'p_proc')), 0,
	'both queries are gone');

SELECT * FROM finish();
ROLLBACK;
