-- exactness: state equals the recomputation from the source table, for
-- sliding, tumbling and processing-time queries, over INSERT, multi-row
-- INSERT, INSERT ... SELECT, COPY, and rows that were there before.
CREATE TABLE events (user_id bigint, ts timestamptz, kind text);

-- rows already there are counted by create_query
INSERT INTO events
SELECT g % 7, '2026-11-24 10:00:00+00'::timestamptz + g * interval '1 second', 'old'
  FROM generate_series(0, 599) g;

SELECT stream_state.create_query('sliding', 'events', key_column => 'user_id',
	time_column => 'ts', window_size => '5 minutes', slide => '1 minute');
SELECT stream_state.create_query('tumbling', 'events', key_column => 'user_id',
	time_column => 'ts', window_size => '10 minutes');
-- processing time: 30-day windows sliding by a day, so a test that runs
-- across midnight still sees every row in the current window
SELECT stream_state.create_query('by_commit', 'events', key_column => 'user_id',
	window_size => '30 days', slide => '1 day');

-- the backfill alone: 600 rows, 10:00:00 .. 10:09:59
SELECT ss_test.mismatches('sliding', '2026-11-24 10:09:30+00') AS sliding_diff,
	   ss_test.mismatches('tumbling', '2026-11-24 10:05:00+00') AS tumbling_diff;
SELECT sum(count) AS sliding_total FROM stream_state.window_counts('sliding', '2026-11-24 10:09:30+00');
SELECT sum(count) AS tumbling_total FROM stream_state.window_counts('tumbling', '2026-11-24 10:05:00+00');
SELECT * FROM stream_state.window_counts('tumbling', '2026-11-24 10:05:00+00') ORDER BY key COLLATE "C";

-- single and multi-row inserts
INSERT INTO events VALUES (1, '2026-11-24 10:08:00+00', 'a');
INSERT INTO events VALUES (1, '2026-11-24 10:08:01+00', 'b'), (2, '2026-11-24 10:08:02+00', 'c'),
	(100, '2026-11-24 10:09:59.999999+00', 'd'), (100, '2026-11-24 10:05:00+00', 'e');
-- COPY
COPY events FROM stdin;
3	2026-11-24 10:07:00+00	copy
3	2026-11-24 10:07:30+00	copy
4	2026-11-24 10:06:00+00	copy
\.
-- INSERT ... SELECT of many rows in one statement
INSERT INTO events
SELECT g % 13, '2026-11-24 10:05:00+00'::timestamptz + (g % 300) * interval '1 second', 'bulk'
  FROM generate_series(1, 20000) g;

SELECT ss_test.mismatches('sliding', '2026-11-24 10:09:30+00') AS sliding_diff,
	   ss_test.mismatches('tumbling', '2026-11-24 10:05:00+00') AS tumbling_diff;
SELECT stream_state.window_count('sliding', 100::bigint, '2026-11-24 10:09:30+00') AS key100,
	   stream_state.window_count('sliding', 3::bigint, '2026-11-24 10:09:30+00') AS key3,
	   stream_state.window_count('sliding', 999::bigint, '2026-11-24 10:09:30+00') AS unknown_key;
SELECT sum(count) AS tumbling_total FROM stream_state.window_counts('tumbling', '2026-11-24 10:05:00+00');
SELECT count(*) AS source_rows FROM events;

-- processing time: every row so far was committed in the current window
SELECT sum(count) AS by_commit_total FROM stream_state.window_counts('by_commit');
SELECT sum(count) AS by_commit_state FROM stream_state.state WHERE query = 'by_commit';
SELECT events_applied, late_events, skipped FROM stream_state.queries WHERE name = 'by_commit';

-- the state view agrees with the window reads
SELECT sum(count) AS state_total FROM stream_state.state
 WHERE query = 'sliding' AND pane_start >= '2026-11-24 10:05:00+00' AND pane_end <= '2026-11-24 10:10:00+00';
SELECT DISTINCT pane_end - pane_start AS pane_width FROM stream_state.state WHERE query = 'sliding';
SELECT DISTINCT pane_end - pane_start AS pane_width FROM stream_state.state WHERE query = 'tumbling';

-- a partitioned source, inserted through its parent
CREATE TABLE pevents (user_id int, ts timestamptz) PARTITION BY RANGE (ts);
CREATE TABLE pevents_a PARTITION OF pevents FOR VALUES FROM ('2026-11-24 00:00+00') TO ('2026-11-24 10:05+00');
CREATE TABLE pevents_b PARTITION OF pevents FOR VALUES FROM ('2026-11-24 10:05+00') TO ('2026-11-25 00:00+00');
INSERT INTO pevents SELECT g % 5, '2026-11-24 10:00:00+00'::timestamptz + g * interval '1 second'
  FROM generate_series(0, 299) g;
SELECT stream_state.create_query('parted', 'pevents', key_column => 'user_id',
	time_column => 'ts', window_size => '10 minutes', slide => '5 minutes');
INSERT INTO pevents SELECT g % 5, '2026-11-24 10:04:00+00'::timestamptz + g * interval '1 second'
  FROM generate_series(0, 299) g;
SELECT ss_test.mismatches('parted', '2026-11-24 10:06:00+00') AS parted_diff;
SELECT * FROM stream_state.window_counts('parted', '2026-11-24 10:06:00+00') ORDER BY key COLLATE "C";

SELECT name, status, events_applied, late_events, skipped, ss_test.state_keys(name) AS keys
  FROM stream_state.queries ORDER BY name COLLATE "C";
