-- alter_query: a query's lateness changes at the commit of the calling
-- transaction, with its state kept.  A larger lateness keeps windows open
-- longer from then on, but a window that had closed stays closed (its
-- panes are gone); a smaller one closes windows at once.
CREATE TABLE alt (k int, ts timestamptz);
SELECT stream_state.create_query('alt', 'alt', key_column => 'k', time_column => 'ts',
	window_size => '10 minutes');
-- keys 0, 1, 2 each in turn, a row a minute from 10:00 to 10:25
INSERT INTO alt SELECT g % 3, '2026-11-24 10:00+00'::timestamptz + g * interval '1 minute'
  FROM generate_series(0, 25) g;
-- lateness 0: the watermark is 10:25, so 10:15 is late
INSERT INTO alt VALUES (1, '2026-11-24 10:15+00');
CREATE FUNCTION pg_temp.state() RETURNS TABLE (lateness interval, late_events bigint, watermark timestamptz)
LANGUAGE sql AS $$
	SELECT stream_state.wait_applied();
	SELECT lateness, late_events, watermark FROM stream_state.queries WHERE name = 'alt'
$$;
SELECT * FROM pg_temp.state();
SELECT ss_test.mismatches('alt', '2026-11-24 10:25+00') AS diff_open;

-- rolled back: nothing changes
BEGIN;
SELECT stream_state.alter_query('alt', lateness => '1 hour');
ROLLBACK;
SELECT * FROM pg_temp.state();

-- raised to 15 minutes: the watermark goes back to 10:10, but the window
-- [10:10, 10:20) had closed and stays closed, and 10:15 stays late
SELECT stream_state.alter_query('alt', lateness => '15 minutes');
SELECT * FROM pg_temp.state();
SELECT ss_test.error_of($$SELECT stream_state.window_count('alt', 1, '2026-11-24 10:15+00')$$);
INSERT INTO alt VALUES (1, '2026-11-24 10:16+00');
SELECT * FROM pg_temp.state();

-- a row at 10:40 moves the watermark to 10:25: with lateness 0 the window
-- [10:20, 10:30) would have closed; now 10:22 still counts
INSERT INTO alt VALUES (1, '2026-11-24 10:40+00');
INSERT INTO alt VALUES (1, '2026-11-24 10:22+00');
SELECT * FROM pg_temp.state();
SELECT stream_state.window_count('alt', 1, '2026-11-24 10:25+00') AS k1_10_20;
SELECT ss_test.mismatches('alt', '2026-11-24 10:25+00') AS diff_10_20;
SELECT ss_test.mismatches('alt', '2026-11-24 10:45+00') AS diff_10_40;

-- lowered to 0: the watermark jumps to 10:40, [10:20, 10:30) closes now
SELECT stream_state.alter_query('alt', lateness => '0');
SELECT * FROM pg_temp.state();
SELECT ss_test.error_of($$SELECT stream_state.window_count('alt', 1, '2026-11-24 10:25+00')$$);
INSERT INTO alt VALUES (2, '2026-11-24 10:39+00');
SELECT * FROM pg_temp.state();
SELECT ss_test.mismatches('alt', '2026-11-24 10:45+00') AS diff_10_40;

-- the same value: a NOTICE, nothing logged
SELECT stream_state.alter_query('alt', lateness => '0 seconds');

-- errors
SELECT ss_test.error_of($$SELECT stream_state.alter_query('nope', lateness => '1 minute')$$);
SELECT ss_test.error_of($$SELECT stream_state.alter_query(NULL, lateness => '1 minute')$$);
SELECT ss_test.error_of($$SELECT stream_state.alter_query('alt')$$);
SELECT ss_test.error_of($$SELECT stream_state.alter_query('alt', lateness => '-1 minute')$$);
SELECT ss_test.error_of($$SELECT stream_state.alter_query('alt', lateness => '1 month')$$);
CREATE ROLE ss_alter_other;
GRANT USAGE ON SCHEMA ss_test TO ss_alter_other;
SET ROLE ss_alter_other;
SELECT ss_test.error_of($$SELECT stream_state.alter_query('alt', lateness => '1 minute')$$);
RESET ROLE;
SELECT * FROM pg_temp.state();

SELECT stream_state.drop_query('alt');
DROP TABLE alt;
REVOKE USAGE ON SCHEMA ss_test FROM ss_alter_other;
DROP ROLE ss_alter_other;
