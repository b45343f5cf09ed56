-- read_cache: window_count of a rocksdb query answers keys read recently
-- from a copy in shared memory (rocks_cache.c).  The copy must equal
-- RocksDB's state through commits, rollbacks, new panes, eviction, moves
-- and a cache turned off; and a reload resizing RocksDB's block cache.
CREATE TABLE rc (k int, ts timestamptz);
SELECT stream_state.create_query('rc', 'rc', key_column => 'k', time_column => 'ts',
	window_size => '1 hour', slide => '10 minutes', lateness => '30 minutes', backend => 'rocksdb');
INSERT INTO rc SELECT g % 50, '2026-11-24 12:00:00+00'::timestamptz + g * interval '3 seconds'
  FROM generate_series(1, 1000) g;

-- keys -1 .. 60 whose window_count differs from the recomputation
CREATE FUNCTION ss_test.point_mismatches(q text, at timestamptz)
RETURNS bigint
LANGUAGE sql AS $$
	SELECT count(*) FROM generate_series(-1, 60) k
	  LEFT JOIN ss_test.recount(q, at) r ON r.key = k::text
	 WHERE stream_state.window_count(q, k, at) <> coalesce(r.count, 0)
$$;
CREATE FUNCTION ss_test.cache_counters(q text, OUT keys bigint, OUT hits bigint, OUT misses bigint)
LANGUAGE sql AS $$
	SELECT (SELECT read_cache_keys FROM stream_state.rocksdb_stats WHERE query = q),
		   read_cache_hits, read_cache_misses
	  FROM stream_state.rocksdb_stats WHERE scope = 'database'
$$;
SELECT stream_state.wait_applied() IS NOT NULL AS applied;
CREATE TEMP TABLE c0 AS SELECT * FROM ss_test.cache_counters('rc');
SELECT keys FROM c0;
CREATE FUNCTION pg_temp.counters(OUT keys bigint, OUT hits bigint, OUT misses bigint)
LANGUAGE sql AS $$
	SELECT c.keys, c.hits - c0.hits, c.misses - c0.misses
	  FROM ss_test.cache_counters('rc') c, c0
$$;

-- the first reads miss and copy the 50 keys that have panes; the next hit
SELECT ss_test.point_mismatches('rc', '2026-11-24 12:40:00+00') AS diff;
SELECT * FROM pg_temp.counters();
SELECT ss_test.point_mismatches('rc', '2026-11-24 12:40:00+00') AS diff;
SELECT * FROM pg_temp.counters();

-- commits, a rollback and a savepoint on cached keys; a new pane of a
-- cached key; a new key
INSERT INTO rc SELECT g % 10, '2026-11-24 12:41:00+00' FROM generate_series(1, 100) g;
BEGIN;
INSERT INTO rc SELECT 3, '2026-11-24 12:42:00+00' FROM generate_series(1, 7);
ROLLBACK;
BEGIN;
INSERT INTO rc VALUES (4, '2026-11-24 12:43:00+00');
SAVEPOINT s;
INSERT INTO rc SELECT 4, '2026-11-24 12:43:00+00' FROM generate_series(1, 5);
ROLLBACK TO s;
INSERT INTO rc VALUES (5, '2026-11-24 12:44:00+00'), (55, '2026-11-24 12:44:00+00');
COMMIT;
INSERT INTO rc SELECT 6, '2026-11-24 12:55:00+00' FROM generate_series(1, 3);
SELECT stream_state.window_count('rc', 3, '2026-11-24 12:40:00+00') AS k3,
	   stream_state.window_count('rc', 4, '2026-11-24 12:40:00+00') AS k4,
	   stream_state.window_count('rc', 5, '2026-11-24 12:40:00+00') AS k5,
	   stream_state.window_count('rc', 6, '2026-11-24 12:50:00+00') AS k6_next,
	   stream_state.window_count('rc', 55, '2026-11-24 12:40:00+00') AS k55;
SELECT * FROM pg_temp.counters();
SELECT ss_test.point_mismatches('rc', '2026-11-24 12:40:00+00') AS diff;
SELECT ss_test.point_mismatches('rc', '2026-11-24 12:50:00+00') AS diff_next;
SELECT * FROM pg_temp.counters();

-- the watermark passes: closed panes leave the copies (keys left without
-- panes leave the cache), the open windows stay exact
INSERT INTO rc VALUES (7, '2026-11-24 13:45:00+00');
SELECT ss_test.point_mismatches('rc', '2026-11-24 13:20:00+00') AS diff;
SELECT ss_test.point_mismatches('rc', '2026-11-24 13:20:00+00') AS diff;
SELECT keys FROM pg_temp.counters();
INSERT INTO rc VALUES (7, '2026-11-24 14:30:00+00');
SELECT ss_test.point_mismatches('rc', '2026-11-24 14:30:00+00') AS diff;
SELECT keys FROM pg_temp.counters();
SELECT ss_test.error_of($$SELECT stream_state.window_count('rc', 1, '2026-11-24 12:40:00+00')$$);

-- moves drop the copies; reads after moving back copy again
SELECT stream_state.set_backend('rc', 'memory');
INSERT INTO rc VALUES (7, '2026-11-24 14:31:00+00'), (8, '2026-11-24 14:31:00+00');
SELECT stream_state.set_backend('rc', 'rocksdb');
SELECT keys FROM pg_temp.counters();
INSERT INTO rc VALUES (7, '2026-11-24 14:32:00+00'), (9, '2026-11-24 14:32:00+00');
SELECT ss_test.point_mismatches('rc', '2026-11-24 14:30:00+00') AS diff;
SELECT * FROM pg_temp.counters();
SELECT ss_test.point_mismatches('rc', '2026-11-24 14:30:00+00') AS diff;
SELECT * FROM pg_temp.counters();

-- a checkpoint holds no copies (the state of rocksdb queries is RocksDB's):
-- its entries are the memory queries' (key, pane) entries, no more.  Taken
-- here, after the checks of counted fills: while the worker finishes a
-- checkpoint it may answer a read without copying the key.
SELECT stream_state.checkpoint() AS ck \gset
SELECT c.entries = (SELECT count(*) FROM stream_state.state s
					  JOIN stream_state.queries q ON q.name = s.query
					 WHERE q.backend = 'memory') AS only_memory_entries,
	   (SELECT read_cache_keys FROM stream_state.rocksdb_stats WHERE query = 'rc') AS cached_keys
  FROM stream_state.checkpoints c WHERE c.id = :ck;

-- keys of a type compared by more than their bytes (jsonb) are not copied
CREATE TABLE rcj (j jsonb, ts timestamptz);
SELECT stream_state.create_query('rcj', 'rcj', key_column => 'j', time_column => 'ts',
	window_size => '1 hour', backend => 'rocksdb');
INSERT INTO rcj VALUES ('{"a": 1, "b": 2}', '2026-11-24 12:00:00+00'),
	('{"b": 2, "a": 1}', '2026-11-24 12:01:00+00');
SELECT stream_state.window_count('rcj', '{"a":1,"b":2}'::jsonb, '2026-11-24 12:30:00+00') AS n1,
	   stream_state.window_count('rcj', '{"a":1,"b":2}'::jsonb, '2026-11-24 12:30:00+00') AS n2;
SELECT read_cache_keys FROM stream_state.rocksdb_stats WHERE query = 'rcj';

-- stream_state.rocksdb_read_cache_size = 0 turns the cache off: the
-- worker drops the copies (at its next read of anything) and makes none
ALTER SYSTEM SET stream_state.rocksdb_read_cache_size = 0;
SELECT pg_reload_conf();
DO $$
BEGIN
	FOR i IN 1 .. 100 LOOP
		EXIT WHEN (SELECT keys FROM pg_temp.counters()) = 0;
		PERFORM pg_sleep(0.1);
	END LOOP;
END $$;
SELECT keys FROM pg_temp.counters();
SELECT ss_test.point_mismatches('rc', '2026-11-24 14:30:00+00') AS diff;
SELECT * FROM pg_temp.counters();
ALTER SYSTEM RESET stream_state.rocksdb_read_cache_size;
SELECT pg_reload_conf();

-- stream_state.rocksdb_cache_size: a reload resizes RocksDB's block cache
ALTER SYSTEM SET stream_state.rocksdb_cache_size = '16MB';
SELECT pg_reload_conf();
DO $$
BEGIN
	FOR i IN 1 .. 100 LOOP
		EXIT WHEN (SELECT block_cache_capacity FROM stream_state.rocksdb_stats
					WHERE scope = 'database') = 16 * 1024 * 1024;
		PERFORM pg_sleep(0.1);
	END LOOP;
END $$;
SELECT block_cache_capacity FROM stream_state.rocksdb_stats WHERE scope = 'database';
ALTER SYSTEM RESET stream_state.rocksdb_cache_size;
SELECT pg_reload_conf();
DO $$
BEGIN
	FOR i IN 1 .. 100 LOOP
		EXIT WHEN (SELECT block_cache_capacity FROM stream_state.rocksdb_stats
					WHERE scope = 'database') = 64 * 1024 * 1024;
		PERFORM pg_sleep(0.1);
	END LOOP;
END $$;
SELECT block_cache_capacity FROM stream_state.rocksdb_stats WHERE scope = 'database';

SELECT stream_state.drop_query('rc');
SELECT stream_state.drop_query('rcj');
DROP TABLE rc, rcj;
DROP FUNCTION ss_test.point_mismatches(text, timestamptz);
DROP FUNCTION ss_test.cache_counters(text);
