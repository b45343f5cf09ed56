-- windows: alignment to the Unix epoch, window ends on slide boundaries,
-- lateness, late events, eviction of closed panes, closed-window reads
CREATE TABLE w (k int, ts timestamptz);
SELECT stream_state.create_query('w', 'w', 'k', 'ts', window_size => '10 minutes',
	slide => '4 minutes', lateness => '2 minutes');
SELECT pg_catalog.gcd(600, 240) AS pane_seconds;

-- one event per minute, 10:00 .. 10:29
INSERT INTO w SELECT 1, '2026-11-24 10:00+00'::timestamptz + g * interval '1 minute'
  FROM generate_series(0, 29) g;
-- the window containing 10:27 ends at the next 4-minute boundary after it
SELECT * FROM stream_state.window_counts('w', '2026-11-24 10:27+00');
SELECT ss_test.mismatches('w', '2026-11-24 10:27+00') AS diff;
-- watermark = 10:29 - 2 minutes
SELECT watermark, late_events, ss_test.state_panes(name) AS panes FROM stream_state.queries WHERE name = 'w';
-- panes older than the last window still open are evicted
SELECT min(pane_start), max(pane_end), count(*) FROM stream_state.state WHERE query = 'w';

-- an event whose every window has closed is late; one in an open window is not
INSERT INTO w VALUES (2, '2026-11-24 10:10+00'), (3, '2026-11-24 10:24+00');
SELECT late_events, events_applied FROM stream_state.queries WHERE name = 'w';
SELECT stream_state.window_count('w', 3, '2026-11-24 10:27+00') AS in_time;

-- reading a closed window is an error
\set VERBOSITY default
SELECT stream_state.window_count('w', 1, '2026-11-24 10:10+00');
\set VERBOSITY terse
SELECT ss_test.error_of($$SELECT * FROM stream_state.window_counts('w', '2026-11-24 10:20+00')$$);
-- the window ending exactly at the next boundary is still open
SELECT stream_state.window_count('w', 1, '2026-11-24 10:24+00') AS open_window;

-- events far in the future move the watermark: everything before closes
INSERT INTO w VALUES (1, '2026-11-25 00:00+00');
SELECT count(*) AS panes_left, min(pane_start) FROM stream_state.state WHERE query = 'w';
SELECT ss_test.state_keys('w') AS keys, ss_test.state_panes('w') AS panes;

-- before the Unix epoch and across it
CREATE TABLE old (k int, ts timestamptz);
SELECT stream_state.create_query('old', 'old', 'k', 'ts', '1 day', '12 hours');
INSERT INTO old VALUES (1, '1969-12-31 23:00+00'), (1, '1970-01-01 01:00+00'), (1, '1969-12-31 11:59:59+00');
SELECT * FROM stream_state.window_counts('old', '1970-01-01 00:00+00');
SELECT ss_test.mismatches('old', '1970-01-01 00:00+00') AS diff;
SELECT pane_start, pane_end, count FROM stream_state.state WHERE query = 'old' ORDER BY 1;
