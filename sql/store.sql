-- store: the memory store's table under growth and deletion.  30000 keys
-- spread over the 128 partitions grow every partition's slot array several
-- times; as the watermark moves, keys whose panes all close are deleted
-- (backward shift within their probe runs), while their neighbours live on.
-- After every step each window equals its recount, and the queries view's
-- keys and panes equal the live (key, pane) pairs of the table.
CREATE TABLE st (k int, ts timestamptz);
SELECT stream_state.create_query('st', 'st', 'k', 'ts', '2 minutes', '1 minute');

-- live keys and (key, pane) pairs: panes of the minutes at or after m - 1
CREATE FUNCTION ss_test.st_live(m int)
RETURNS TABLE (keys bigint, panes bigint)
LANGUAGE sql AS $$
	SELECT count(DISTINCT k), count(DISTINCT (k, date_trunc('minute', ts)))
	  FROM st WHERE ts >= timestamptz '2026-11-24 10:00+00' + (m - 1) * interval '1 minute'
$$;

-- minute m: keys g * (m + 1) % 30000 for g < 30000 / (m + 1), so each minute
-- has another set of keys, some shared with the minutes before it
CREATE FUNCTION ss_test.st_minute(m int)
RETURNS void
LANGUAGE sql AS $$
	INSERT INTO st
	SELECT (g * (m + 1)) % 30000,
		   timestamptz '2026-11-24 10:00+00' + m * interval '1 minute' + (g % 60) * interval '1 second'
	  FROM generate_series(0, 30000 / (m + 1) - 1) g
$$;

SELECT ss_test.st_minute(0);
SELECT ss_test.mismatches('st', '2026-11-24 10:00:30+00') AS diff;
SELECT q.keys, q.panes, l.* FROM stream_state.queries q, ss_test.st_live(0) l WHERE q.name = 'st';

SELECT ss_test.st_minute(1);
SELECT ss_test.mismatches('st', '2026-11-24 10:01:30+00') AS diff;
SELECT q.keys, q.panes, l.* FROM stream_state.queries q, ss_test.st_live(1) l WHERE q.name = 'st';

SELECT ss_test.st_minute(2);
SELECT ss_test.mismatches('st', '2026-11-24 10:02:30+00') AS diff;
SELECT q.keys, q.panes, l.* FROM stream_state.queries q, ss_test.st_live(2) l WHERE q.name = 'st';

SELECT ss_test.st_minute(3);
SELECT ss_test.mismatches('st', '2026-11-24 10:03:30+00') AS diff;
SELECT q.keys, q.panes, l.* FROM stream_state.queries q, ss_test.st_live(3) l WHERE q.name = 'st';

SELECT ss_test.st_minute(6);
SELECT ss_test.mismatches('st', '2026-11-24 10:06:30+00') AS diff;
SELECT q.keys, q.panes, l.* FROM stream_state.queries q, ss_test.st_live(6) l WHERE q.name = 'st';

-- a far jump: every pane closes but the last minute's
SELECT ss_test.st_minute(29);
SELECT ss_test.mismatches('st', '2026-11-24 10:29:30+00') AS diff;
SELECT q.keys, q.panes, l.* FROM stream_state.queries q, ss_test.st_live(29) l WHERE q.name = 'st';
SELECT count(*) AS state_rows FROM stream_state.state WHERE query = 'st';

-- dropping the query empties the table of its keys
SELECT stream_state.drop_query('st');
SELECT count(*) AS state_rows FROM stream_state.state WHERE query = 'st';
DROP TABLE st;
