-- bench/setup.sql: objects every bench run needs, in a fresh database.
\set ON_ERROR_STOP 1
CREATE EXTENSION stream_state;

-- Baseline of measurement (c): an indexed counter table with 100k keys.
CREATE TABLE counters (user_id bigint PRIMARY KEY, count bigint NOT NULL);
INSERT INTO counters SELECT g, (g % 97) FROM generate_series(1, 100000) AS g;
VACUUM ANALYZE counters;

-- Smoke test: a query can be created, applies a commit, and can be read.
CREATE TABLE smoke (user_id bigint, ts timestamptz, kind text);
SELECT stream_state.create_query('smoke', 'smoke', key_column => 'user_id',
       time_column => 'ts', window_size => '5 minutes', slide => '1 minute') \g /dev/null
INSERT INTO smoke VALUES (7, '2024-06-01 00:00:30+00', 'x'), (7, '2024-06-01 00:01:30+00', 'x');
DO $$
BEGIN
  IF NOT stream_state.wait_applied(NULL, '60 seconds') THEN
    RAISE EXCEPTION 'smoke test: wait_applied() returned false after 60 s';
  END IF;
END $$;
SELECT stream_state.window_count('smoke', 7::bigint, '2024-06-01 00:02:00+00') AS smoke_count \gset
\echo smoke: window_count = :smoke_count (expected 2)
SELECT stream_state.drop_query('smoke') \g /dev/null
DROP TABLE smoke;
