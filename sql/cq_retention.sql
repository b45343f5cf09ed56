-- cq_retention: retention (an event-time TTL: keys whose newest event is
-- older than the watermark less the retention are dropped from state), and
-- alter_query of retention and emit_to, without losing state.  The same on
-- both backends (installcheck-rocksdb runs it with every query on rocksdb).
CREATE TABLE rt (k int, v int, ts timestamptz);
SELECT stream_state.create_query('rt_q', $$SELECT k, count(*), sum(v) FROM rt GROUP BY k$$,
	time_column => 'ts', window_size => '1 hour', slide => '10 minutes', retention => '20 minutes');
SELECT retention FROM stream_state.queries WHERE name = 'rt_q';
-- keys 1 and 2 last seen at 10:00 and 10:05, key 3 at 10:30: the watermark is
-- 10:30, so keys idle since before 10:10 (their newest pane ends by then) go
INSERT INTO rt VALUES (1, 1, '2026-11-24 10:00+00'), (2, 2, '2026-11-24 10:05+00'),
	(3, 4, '2026-11-24 10:30+00');
SELECT stream_state.wait_applied();
SELECT * FROM stream_state.window_result('rt_q', '2026-11-24 10:35+00') AS t(k int, count bigint, sum bigint)
 ORDER BY k;
-- (the window [09:40, 10:40) still holds the rows of keys 1 and 2: gone)
-- key 1 comes back with only what came after it was dropped, though its
-- window still holds the 10:00 row: the TTL forgets
INSERT INTO rt VALUES (1, 8, '2026-11-24 10:36+00');
SELECT * FROM stream_state.window_result('rt_q', '2026-11-24 10:36+00') AS t(k int, count bigint, sum bigint)
 ORDER BY k;
-- no retention from now on: nothing more is dropped
SELECT stream_state.alter_query('rt_q', retention => '0');
SELECT retention FROM stream_state.queries WHERE name = 'rt_q';
INSERT INTO rt VALUES (3, 16, '2026-11-24 11:20+00');
SELECT * FROM stream_state.window_result('rt_q', '2026-11-24 11:25+00') AS t(k int, count bigint, sum bigint)
 ORDER BY k;
-- and again (in a transaction that rolls back first: nothing changes)
BEGIN;
SELECT stream_state.alter_query('rt_q', retention => '5 minutes');
ROLLBACK;
SELECT retention FROM stream_state.queries WHERE name = 'rt_q';
SELECT stream_state.alter_query('rt_q', retention => '15 minutes');
SELECT stream_state.alter_query('rt_q', retention => '15 minutes');
INSERT INTO rt VALUES (2, 32, '2026-11-24 11:30+00');
SELECT * FROM stream_state.window_result('rt_q', '2026-11-24 11:35+00') AS t(k int, count bigint, sum bigint)
 ORDER BY k;
-- a key idle in what is committed, given a newer pane by the transaction
-- that moves the watermark (on rocksdb that pane is still in the worker's
-- table of values, not in RocksDB, when the walk runs): kept, with its
-- older rows; keys 1, 2 and 3 go.  Then a rolled-back one changes nothing.
INSERT INTO rt VALUES (4, 64, '2026-11-24 11:31+00');
SELECT stream_state.wait_applied();
BEGIN;
INSERT INTO rt VALUES (4, 128, '2026-11-24 11:55+00');
INSERT INTO rt VALUES (5, 256, '2026-11-24 12:00+00');
COMMIT;
BEGIN;
INSERT INTO rt VALUES (4, 512, '2026-11-24 12:01+00'), (6, 1024, '2026-11-24 13:00+00');
ROLLBACK;
SELECT * FROM stream_state.window_result('rt_q', '2026-11-24 12:05+00') AS t(k int, count bigint, sum bigint)
 ORDER BY k;
-- the same as plain SQL over the window [11:10, 12:10) for the keys kept
SELECT k, count(*), sum(v) FROM rt WHERE ts >= '2026-11-24 11:10+00' AND ts < '2026-11-24 12:10+00'
   AND k IN (4, 5) GROUP BY k ORDER BY k;

-- emit_to given and taken back by alter_query
CREATE TABLE em2 (k int, v int, ts timestamptz);
INSERT INTO em2 SELECT g % 2, g, '2026-11-24 10:00+00'::timestamptz + g * interval '1 minute'
  FROM generate_series(0, 40) g;
SELECT stream_state.create_query('em2_q', $$SELECT k, count(*), sum(v) FROM em2 GROUP BY k$$,
	time_column => 'ts', window_size => '10 minutes', slide => '10 minutes');
-- the watermark is 10:40: windows to 10:40 have closed and are gone; the
-- first emitted is [10:40, 10:50)
SELECT stream_state.alter_query('em2_q', emit_to => 'em2_out');
INSERT INTO em2 SELECT g % 2, g, '2026-11-24 10:00+00'::timestamptz + g * interval '1 minute'
  FROM generate_series(41, 70) g;
SELECT ss_test.wait_emitted('em2_q', '2026-11-24 11:10+00') AS emitted;
SELECT e.*, (SELECT count(*) = e.count AND sum(v) = e.sum FROM em2
			  WHERE k = e.k AND ts >= e.window_start AND ts < e.window_end) AS exact
  FROM em2_out e ORDER BY window_end, k;
-- stopped: the table stays, nothing more goes into it
SELECT stream_state.alter_query('em2_q', emit_to => '');
SELECT emit_to, emitted_until FROM stream_state.queries WHERE name = 'em2_q';
INSERT INTO em2 VALUES (0, 100, '2026-11-24 11:40+00');
SELECT stream_state.wait_applied();
SELECT pg_sleep(0.5);
SELECT count(*) AS rows_after_stop FROM em2_out;

-- refusals
SELECT ss_test.error_of($$SELECT stream_state.create_query('rt_bad', 'rt', 'k', 'ts', '1 hour', retention => '1 hour')$$);
SELECT ss_test.error_of($$SELECT stream_state.create_query('rt_bad', 'SELECT k, count(*) FROM rt GROUP BY k', time_column => 'ts', window_size => '1 hour', retention => '-1 hour')$$);
SELECT stream_state.create_query('rt_count', 'rt', 'k', 'ts', '1 hour');
SELECT ss_test.error_of($$SELECT stream_state.alter_query('rt_count', retention => '1 hour')$$);
SELECT ss_test.error_of($$SELECT stream_state.alter_query('rt_count', emit_to => 'x')$$);
SELECT ss_test.error_of($$SELECT stream_state.alter_query('rt_q')$$);
SELECT ss_test.error_of($$SELECT stream_state.alter_query('rt_q', emit_to => 'em2')$$);
SELECT ss_test.error_of($$SELECT stream_state.alter_query('rt_q', retention => '1 month')$$);

SELECT stream_state.drop_query('rt_q');
SELECT stream_state.drop_query('em2_q');
SELECT stream_state.drop_query('rt_count');
DROP TABLE rt, em2, em2_out;
