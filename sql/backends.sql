-- backends: set_backend moves a live query between memory and rocksdb at
-- its commit; every event before it and after it counted once
CREATE TABLE mv (k int, ts timestamptz);
SELECT stream_state.create_query('mv', 'mv', key_column => 'k', time_column => 'ts',
	window_size => '1 hour', slide => '10 minutes', lateness => '1 day', backend => 'memory');
INSERT INTO mv SELECT g % 5, '2026-11-24 12:00:00+00'::timestamptz + g * interval '7 seconds'
  FROM generate_series(1, 500) g;
SELECT backend FROM stream_state.queries WHERE name = 'mv';

-- to rocksdb, with rows inserted before and after the move in its transaction
BEGIN;
INSERT INTO mv VALUES (1, '2026-11-24 12:05:00+00');
SELECT stream_state.set_backend('mv', 'rocksdb');
INSERT INTO mv VALUES (1, '2026-11-24 12:06:00+00'), (9, '2026-11-24 12:06:00+00');
COMMIT;
SELECT backend FROM stream_state.queries WHERE name = 'mv';
SELECT ss_test.mismatches('mv', '2026-11-24 12:30:00+00') AS diff;
SELECT * FROM stream_state.window_counts('mv', '2026-11-24 12:30:00+00') ORDER BY key COLLATE "C";
INSERT INTO mv SELECT g % 3, '2026-11-24 12:40:00+00' FROM generate_series(1, 30) g;
SELECT ss_test.mismatches('mv', '2026-11-24 12:45:00+00') AS diff;

-- a rolled-back move changes nothing
BEGIN;
SELECT stream_state.set_backend('mv', 'memory');
INSERT INTO mv VALUES (2, '2026-11-24 12:41:00+00');
ROLLBACK;
SELECT backend FROM stream_state.queries WHERE name = 'mv';
SELECT ss_test.mismatches('mv', '2026-11-24 12:45:00+00') AS diff;

-- and back to memory
SELECT stream_state.set_backend('mv', 'memory');
INSERT INTO mv SELECT g % 4, '2026-11-24 12:42:00+00' FROM generate_series(1, 40) g;
SELECT backend FROM stream_state.queries WHERE name = 'mv';
SELECT ss_test.mismatches('mv', '2026-11-24 12:45:00+00') AS diff;
SELECT ss_test.mismatches('mv', '2026-11-24 12:30:00+00') AS diff_earlier_window;
SELECT sum(count) AS state_events, (SELECT count(*) FROM mv) AS table_rows
  FROM stream_state.state WHERE query = 'mv';
SELECT events_applied FROM stream_state.queries WHERE name = 'mv';

-- two moves in one transaction: the state ends where the last one says
BEGIN;
SELECT stream_state.set_backend('mv', 'rocksdb');
INSERT INTO mv VALUES (3, '2026-11-24 12:43:00+00');
SELECT stream_state.set_backend('mv', 'memory');
INSERT INTO mv VALUES (3, '2026-11-24 12:44:00+00');
COMMIT;
SELECT backend FROM stream_state.queries WHERE name = 'mv';
SELECT ss_test.mismatches('mv', '2026-11-24 12:45:00+00') AS diff;

-- errors
SELECT stream_state.set_backend('mv', 'memory');
SELECT ss_test.error_of($$SELECT stream_state.set_backend('nope', 'memory')$$);
SELECT ss_test.error_of($$SELECT stream_state.set_backend('mv', 'disk')$$);
SELECT ss_test.error_of($$SELECT stream_state.set_backend('mv', NULL)$$);
SELECT ss_test.error_of($$SELECT stream_state.set_backend(NULL, 'memory')$$);
CREATE ROLE ss_backends_other;
GRANT USAGE ON SCHEMA ss_test TO ss_backends_other;
SET ROLE ss_backends_other;
SELECT ss_test.error_of($$SELECT stream_state.set_backend('mv', 'rocksdb')$$);
RESET ROLE;
REVOKE USAGE ON SCHEMA ss_test FROM ss_backends_other;
DROP ROLE ss_backends_other;
SELECT backend FROM stream_state.queries WHERE name = 'mv';
SELECT stream_state.drop_query('mv');
