
# Copyright (c) stream_state contributors

# A window is closed only once all of the commit that closed it is in.  A
# transaction's data can be several WAL messages (a query in SQL writes its
# values every 1 MB); the watermark must not move before the last of them
# is applied, or a reader (and the emit_to helper) finds a window closed
# without the events that later messages of the same commit hold for it:
# those events are not late, since lateness is judged by the watermark before
# the commit.
#
# Each of twenty transactions inserts 40,000 rows at 15 s into a 20 s slot
# (more than 1 MB of values: an early message that moves the watermark past
# the slot's first 10 s window), then 40,000 rows at 5 s, into that window.
# Meanwhile a reader that does not wait for the worker (read_consistency
# none) reads key 1 of the newest closed window again and again.  Every read
# must equal that window's rows of key 1 in the table; the emit_to table
# must equal GROUP BY of every closed window (checked for 400 of the keys;
# the others by their number).

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StreamStateTest;
use Test::More;

my $node = ss_new_node('closing');
my $db = 'postgres';

$node->safe_psql($db, 'CREATE EXTENSION stream_state');
$node->safe_psql($db, q{
CREATE TABLE ev (k int, v int, ts timestamptz);
CREATE INDEX ON ev (k);
SELECT stream_state.create_query('e', $q$SELECT k, count(*), sum(v) FROM ev GROUP BY k$q$,
	time_column => 'ts', window_size => '10 seconds', emit_to => 'closed');
CREATE TABLE reads (window_end timestamptz, n bigint, total bigint);
CREATE TABLE refused (window_end timestamptz, message text, detail text);
CREATE TABLE stop_reading (x int);
});

my $reader = $node->background_psql($db, on_error_stop => 0);
$reader->query_until(
	qr/reading/, q{
SET stream_state.read_consistency = none;
\echo reading
DO $$
DECLARE
	wm timestamptz;
	we timestamptz;
	n bigint;
	t bigint;
BEGIN
	WHILE NOT EXISTS (SELECT FROM stop_reading) LOOP
		SELECT watermark INTO wm FROM stream_state.queries WHERE name = 'e';
		IF wm >= '2026-11-24 10:00:10+00' THEN
			we := '2026-11-24 10:00+00'::timestamptz
				+ floor(extract(epoch FROM wm - '2026-11-24 10:00+00') / 10) * interval '10 seconds';
			BEGIN
				SELECT count, sum INTO n, t
				  FROM stream_state.window_result('e', we - interval '1 microsecond')
					AS r(k int, count bigint, sum bigint)
				 WHERE k = 1;
				INSERT INTO reads VALUES (we, n, t);
			EXCEPTION WHEN invalid_parameter_value THEN
				-- emitted and evicted before, or while, it was read
				DECLARE
					d text;
				BEGIN
					GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL;
					INSERT INTO refused VALUES (we, SQLERRM, d);
				END;
			END;
		END IF;
		COMMIT;
	END LOOP;
END
$$;
});

for my $r (0 .. 19)
{
	my $base = 20 * $r;
	$node->safe_psql($db, qq{
BEGIN;
INSERT INTO ev SELECT g, 1, '2026-11-24 10:00+00'::timestamptz + interval '$base seconds' + interval '15 seconds'
  FROM generate_series(1, 40000) g;
INSERT INTO ev SELECT g, 2, '2026-11-24 10:00+00'::timestamptz + interval '$base seconds' + interval '5 seconds'
  FROM generate_series(1, 40000) g;
COMMIT;
});
}
ss_wait_applied($node, $db, 'twenty transactions');
$node->safe_psql($db, 'INSERT INTO stop_reading VALUES (1)');
$reader->quit;

my $nreads = $node->safe_psql($db, 'SELECT count(*) FROM reads');
cmp_ok($nreads, '>', 0, "the reader read closed windows ($nreads reads)");
is( $node->safe_psql(
		$db, q{SELECT count(*) FROM reads r,
				LATERAL (SELECT count(*) AS n, sum(v) AS total FROM ev
						  WHERE k = 1 AND ts >= r.window_end - interval '10 seconds' AND ts < r.window_end) t
				WHERE (r.n, r.total) IS DISTINCT FROM (t.n, t.total)}),
	'0', 'every read of a closed window holds all its events (no commit seen half-applied)')
  or diag(
	$node->safe_psql(
		$db, q{SELECT string_agg(r.window_end || ': ' || coalesce(r.n::text, 'none') || ', ' || coalesce(r.total::text, 'none')
								|| ' against ' || t.n || ', ' || t.total, E'\n')
				 FROM reads r,
				 LATERAL (SELECT count(*) AS n, sum(v) AS total FROM ev
						   WHERE k = 1 AND ts >= r.window_end - interval '10 seconds' AND ts < r.window_end) t
				WHERE (r.n, r.total) IS DISTINCT FROM (t.n, t.total)}));

# reads refused: the window was evicted (emitted) before the read, or
# while it ran
my $refused = $node->safe_psql($db,
	q{SELECT count(*) FILTER (WHERE detail LIKE '%while it was being read%') || '|' || count(*) FROM refused});
note "reads refused (during the eviction | in all): $refused";
is( $node->safe_psql(
		$db, q{SELECT count(*) FROM refused
				WHERE message <> 'window ending at ' || window_end || ' of continuous query "e" has closed'
				   OR detail NOT LIKE 'The watermark is %' AND detail <> 'It closed and its panes were evicted while it was being read.'}),
	'0', 'a read refused says that its window has closed, and why');

# the emit_to table: every window the watermark (10:06:35) has closed
is( $node->poll_query_until(
		$db, q{SELECT count(DISTINCT window_end) = 39 FROM closed}),
	1, 'the helper emitted the 39 closed windows');
is( $node->safe_psql(
		$db, q{WITH truth AS (
				 SELECT '2026-11-24 10:00+00'::timestamptz
						  + floor(extract(epoch FROM ts - '2026-11-24 10:00+00') / 10) * interval '10 seconds' AS ws,
						k, count(*) AS count, sum(v) AS sum
				   FROM ev WHERE k <= 400 GROUP BY 1, 2),
			   want AS (SELECT ws, ws + interval '10 seconds', k, count, sum FROM truth
						 WHERE ws + interval '10 seconds' <= '2026-11-24 10:06:35+00'),
			   got AS (SELECT * FROM closed WHERE k <= 400)
			   SELECT count(*) FROM ((SELECT * FROM got EXCEPT ALL SELECT * FROM want)
									 UNION ALL (SELECT * FROM want EXCEPT ALL SELECT * FROM got)) d}),
	'0', 'every closed window emitted once, equal to GROUP BY (keys 1 to 400)');
is($node->safe_psql($db, 'SELECT count(*) FROM closed'), 39 * 40000, 'the helper emitted 39 windows of 40,000 keys');

$node->stop;
done_testing();
