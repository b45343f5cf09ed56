-- errors: every bad input gets its SQLSTATE and message, and changes nothing
CREATE TABLE err_events (user_id bigint, ts timestamptz, p point, j jsonb, k text, d date);
CREATE VIEW err_view AS SELECT * FROM err_events;
CREATE SEQUENCE err_seq;
CREATE MATERIALIZED VIEW err_mv AS SELECT 1 AS a;
SELECT stream_state.create_query('q1', 'err_events', key_column => 'user_id',
	time_column => 'ts', window_size => '5 minutes', slide => '1 minute');

-- names
SELECT ss_test.error_of($$SELECT stream_state.create_query('q1', 'err_events', 'user_id', 'ts', '5 minutes')$$);
SELECT ss_test.error_of($$SELECT stream_state.create_query('', 'err_events', 'user_id', 'ts', '5 minutes')$$);
SELECT ss_test.error_of($$SELECT stream_state.create_query(NULL, 'err_events', 'user_id', 'ts', '5 minutes')$$);
SELECT ss_test.error_of($$SELECT stream_state.create_query(repeat('x', 64), 'err_events', 'user_id', 'ts', '5 minutes')$$);
-- sources
SELECT ss_test.error_of($$SELECT stream_state.create_query('q2', 'no_such_table', 'user_id', 'ts', '5 minutes')$$);
SELECT ss_test.error_of($$SELECT stream_state.create_query('q2', 'err_view', 'user_id', 'ts', '5 minutes')$$);
SELECT ss_test.error_of($$SELECT stream_state.create_query('q2', 'err_seq', 'last_value', NULL, '5 minutes')$$);
SELECT ss_test.error_of($$SELECT stream_state.create_query('q2', 'err_mv', 'a', NULL, '5 minutes')$$);
SELECT ss_test.error_of($$SELECT stream_state.create_query('q2', NULL, 'user_id', 'ts', '5 minutes')$$);
-- columns
SELECT ss_test.error_of($$SELECT stream_state.create_query('q2', 'err_events', 'nope', 'ts', '5 minutes')$$);
SELECT ss_test.error_of($$SELECT stream_state.create_query('q2', 'err_events', 'user_id', 'nope', '5 minutes')$$);
SELECT ss_test.error_of($$SELECT stream_state.create_query('q2', 'err_events', 'ctid', 'ts', '5 minutes')$$);
SELECT ss_test.error_of($$SELECT stream_state.create_query('q2', 'err_events', NULL, 'ts', '5 minutes')$$);
SELECT ss_test.error_of($$SELECT stream_state.create_query('q2', 'err_events', 'p', 'ts', '5 minutes')$$);
SELECT ss_test.error_of($$SELECT stream_state.create_query('q2', 'err_events', 'k', 'user_id', '5 minutes')$$);
SELECT ss_test.error_of($$SELECT stream_state.create_query('q2', 'err_events', 'k', 'k', '5 minutes')$$);
-- intervals
SELECT ss_test.error_of($$SELECT stream_state.create_query('q2', 'err_events', 'user_id', 'ts')$$);
SELECT ss_test.error_of($$SELECT stream_state.create_query('q2', 'err_events', 'user_id', 'ts', '0 minutes')$$);
SELECT ss_test.error_of($$SELECT stream_state.create_query('q2', 'err_events', 'user_id', 'ts', '-5 minutes')$$);
SELECT ss_test.error_of($$SELECT stream_state.create_query('q2', 'err_events', 'user_id', 'ts', '1 month')$$);
SELECT ss_test.error_of($$SELECT stream_state.create_query('q2', 'err_events', 'user_id', 'ts', '5 minutes', '0 seconds')$$);
SELECT ss_test.error_of($$SELECT stream_state.create_query('q2', 'err_events', 'user_id', 'ts', '5 minutes', '-1 minute')$$);
SELECT ss_test.error_of($$SELECT stream_state.create_query('q2', 'err_events', 'user_id', 'ts', '5 minutes', '1 year')$$);
SELECT ss_test.error_of($$SELECT stream_state.create_query('q2', 'err_events', 'user_id', 'ts', '5 minutes', '10 minutes')$$);
SELECT ss_test.error_of($$SELECT stream_state.create_query('q2', 'err_events', 'user_id', 'ts', '5 minutes', '1 minute', '-1 second')$$);
SELECT ss_test.error_of($$SELECT stream_state.create_query('q2', 'err_events', 'user_id', 'ts', '5 minutes', '1 minute', '2 months')$$);

-- one error in full, with detail and hint
\set VERBOSITY default
SELECT stream_state.create_query('q2', 'err_events', 'p', 'ts', '5 minutes');
SELECT stream_state.create_query('q2', 'err_events', 'user_id', 'ts', '1 mon');

-- reads and drops
SELECT ss_test.error_of($$SELECT stream_state.window_count('nope', 1::bigint)$$);
SELECT ss_test.error_of($$SELECT stream_state.window_count('q1', 1)$$);
SELECT ss_test.error_of($$SELECT stream_state.window_count('q1', 'x'::text)$$);
SELECT ss_test.error_of($$SELECT stream_state.window_count('q1', 1::bigint, 'infinity')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.window_counts('nope')$$);
SELECT ss_test.error_of($$SELECT stream_state.drop_query('nope')$$);
SELECT ss_test.error_of($$SELECT stream_state.grant_read('nope', 'postgres')$$);
SELECT ss_test.error_of($$SELECT stream_state.wait_applied(NULL, '-1 second')$$);
-- backends
SELECT ss_test.error_of($$SELECT stream_state.create_query('q2', 'err_events', 'user_id', 'ts', '5 minutes', backend => 'disk')$$);
SELECT ss_test.error_of($$SELECT stream_state.create_query('q2', 'err_events', 'user_id', 'ts', '5 minutes', backend => 'RocksDB')$$);
SELECT ss_test.error_of($$SET stream_state.default_backend = 'disk'$$);
\set VERBOSITY default
SELECT stream_state.create_query('q2', 'err_events', 'user_id', 'ts', '5 minutes', backend => '');
\set VERBOSITY terse

-- nothing above changed anything
SELECT name, source, key_column, time_column, window_size, slide, lateness
  FROM stream_state.queries ORDER BY name COLLATE "C";
SELECT tgname FROM pg_trigger WHERE tgrelid = 'err_events'::regclass ORDER BY 1;

-- a trigger function called the wrong way
SELECT ss_test.error_of($$SELECT stream_state._capture()$$);
CREATE TABLE err_other (a int);
CREATE TRIGGER bad BEFORE INSERT ON err_other FOR EACH ROW EXECUTE FUNCTION stream_state._capture('1');
SELECT ss_test.error_of($$INSERT INTO err_other VALUES (1)$$);
DROP TABLE err_other;

-- dropping the query drops its trigger; its columns were protected meanwhile
DROP VIEW err_view;
SELECT ss_test.error_of($$ALTER TABLE err_events DROP COLUMN user_id$$);
SELECT ss_test.error_of($$ALTER TABLE err_events ALTER COLUMN user_id TYPE int$$);
SELECT stream_state.drop_query('q1');
SELECT count(*) FROM stream_state.queries;
SELECT tgname FROM pg_trigger WHERE tgrelid = 'err_events'::regclass ORDER BY 1;
DROP TABLE err_events;
DROP SEQUENCE err_seq;
DROP MATERIALIZED VIEW err_mv;

-- dropping a source table drops its query's state; the definition stays,
-- marked, until drop_query
CREATE TABLE gone (k int, ts timestamptz);
SELECT stream_state.create_query('gone', 'gone', 'k', 'ts', '1 hour');
INSERT INTO gone VALUES (1, '2026-11-24 10:00+00'), (2, '2026-11-24 10:00+00');
SELECT count(*) AS entries FROM stream_state.state WHERE query = 'gone';
DROP TABLE gone;
-- (the state view waits for this session's commits: the DROP is applied)
SELECT count(*) AS entries FROM stream_state.state WHERE query = 'gone';
SELECT name, status, ss_test.state_keys(name) AS keys FROM stream_state.queries WHERE name = 'gone';
SELECT stream_state.drop_query('gone');
SELECT count(*) AS queries FROM stream_state.queries WHERE name = 'gone';
