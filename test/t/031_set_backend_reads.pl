
# Copyright (c) stream_state contributors

# set_backend while others read and emit.  A move takes a query's state out
# of one backend and into the other; readers (window_result, the state view,
# the emit_to helper) must see all of it, on one side or the other, at every
# moment of the move.
#
#  - Reads: a query in SQL over 5,000 keys, moved between the backends
#    forty times while a background session reads its window again and
#    again: every read has all 5,000 keys and all 5,000 events.
#  - Emission: session windows (gap 1 minute) with emit_to, fed in time
#    order by a writer so that sessions keep ending, moved ten times while
#    the helper emits them; at the end an event a day later closes them all:
#    the emit_to table holds every session computed in SQL, exactly once.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StreamStateTest;
use Test::More;
use Time::HiRes qw(usleep);

my $node = ss_new_node('moves');
my $db = 'postgres';

$node->safe_psql($db, 'CREATE EXTENSION stream_state');

# ------------------------------------------------------------ reads during moves
$node->safe_psql($db, q{
CREATE TABLE mv (k int, v int, ts timestamptz);
SELECT stream_state.create_query('mvq', $q$SELECT k, count(*), sum(v) FROM mv GROUP BY k$q$,
	time_column => 'ts', window_size => '1 hour', lateness => '1 day');
INSERT INTO mv SELECT g, g % 7, '2026-11-24 10:00+00'::timestamptz + (g % 3600) * interval '1 second'
  FROM generate_series(1, 5000) g;
CREATE TABLE reads (consistency text, keys bigint, events bigint);
CREATE TABLE stop_reading (x int);
});
ss_wait_applied($node, $db, 'reads: rows inserted');

# two readers: one waits for the worker as reads do by default, one reads
# at once (read_consistency none), so that reads fall inside the moves
sub start_reader
{
	my ($consistency) = @_;
	my $s = $node->background_psql($db, on_error_stop => 0);
	$s->query_until(
		qr/reading/, qq{
SET stream_state.read_consistency = $consistency;
\\echo reading
DO \$\$
DECLARE
	n bigint;
	c bigint;
BEGIN
	WHILE NOT EXISTS (SELECT FROM stop_reading) LOOP
		SELECT count(*), sum(count) INTO n, c
		  FROM stream_state.window_result('mvq', '2026-11-24 10:30+00') AS t(k int, count bigint, sum bigint);
		INSERT INTO reads VALUES ('$consistency', n, c);
		COMMIT;
	END LOOP;
END
\$\$;
});
	return $s;
}
my @readers = (start_reader('committed'), start_reader('none'));
for my $i (1 .. 40)
{
	usleep(20_000);
	$node->safe_psql($db,
		"SELECT stream_state.set_backend('mvq', '" . ($i % 2 ? 'rocksdb' : 'memory') . "')");
}
$node->safe_psql($db, 'INSERT INTO stop_reading VALUES (1)');
$_->quit for @readers;
cmp_ok($node->safe_psql($db, 'SELECT count(*) FROM reads'), '>=', 40,
	'reads: the reader read at least once per move');
is( $node->safe_psql(
		$db, q{SELECT count(*) FILTER (WHERE keys IS DISTINCT FROM 5000 OR events IS DISTINCT FROM 5000),
				   string_agg(DISTINCT consistency || ' ' || keys || '/' || events, ', ')
				FILTER (WHERE keys IS DISTINCT FROM 5000 OR events IS DISTINCT FROM 5000)
			  FROM reads}),
	'0|',
	'reads: every read during forty moves saw all 5,000 keys and events');
is( $node->safe_psql(
		$db, q{SELECT count(*) FROM (
				 (SELECT * FROM stream_state.window_result('mvq', '2026-11-24 10:30+00')
					AS t(k int, count bigint, sum bigint)
				  EXCEPT ALL SELECT k, count(*), sum(v) FROM mv GROUP BY k)
				 UNION ALL
				 (SELECT k, count(*), sum(v) FROM mv GROUP BY k
				  EXCEPT ALL SELECT * FROM stream_state.window_result('mvq', '2026-11-24 10:30+00')
					AS t(k int, count bigint, sum bigint))) d}),
	'0', 'reads: after the moves the window equals GROUP BY');

# ------------------------------------------------------- emission during moves
$node->safe_psql($db, q{
CREATE TABLE se (k int, v int, ts timestamptz);
CREATE SEQUENCE tick;
SELECT stream_state.create_query('seq', $q$SELECT k, count(*), sum(v) FROM se GROUP BY k$q$,
	time_column => 'ts', session_gap => '1 minute', lateness => '30 seconds', emit_to => 'se_closed');
});
my $writer = ss_start_writer($node, $db,
	q{INSERT INTO se SELECT (random() * 50)::int, g,
		'2026-11-24 10:00+00'::timestamptz + nextval('tick') * interval '2 seconds'
	  FROM generate_series(1, 3) g}, undef, 0.002);
for my $i (1 .. 10)
{
	usleep(300_000);
	$node->safe_psql($db,
		"SELECT stream_state.set_backend('seq', '" . ($i % 2 ? 'rocksdb' : 'memory') . "')");
}
$node->safe_psql($db,
	q{SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query LIKE '%DO $$%' AND pid <> pg_backend_pid()});
ss_bg_abandon($writer);
$node->safe_psql($db, q{INSERT INTO se VALUES (-1, 0, '2026-11-30 10:00+00')});
ss_wait_applied($node, $db, 'emission: writer stopped');
my $sessions = q{
	WITH o AS (
		SELECT k, v, ts, CASE WHEN ts - lag(ts) OVER (PARTITION BY k ORDER BY ts, v) < interval '1 minute'
							  THEN 0 ELSE 1 END AS brk
		  FROM se WHERE k >= 0),
	g AS (
		SELECT k, v, ts, sum(brk) OVER (PARTITION BY k ORDER BY ts, v ROWS UNBOUNDED PRECEDING) AS sid
		  FROM o)
	SELECT min(ts) AS window_start, max(ts) + interval '1 minute' AS window_end, k, count(*), sum(v)
	  FROM g GROUP BY k, sid};
is( $node->poll_query_until(
		$db, qq{SELECT count(*) = (SELECT count(*) FROM ($sessions) s) FROM se_closed}),
	1, 'emission: the helper emitted as many sessions as SQL computes');
my $n = $node->safe_psql($db, 'SELECT count(*) FROM se_closed');
cmp_ok($n, '>', 100, "emission: sessions kept ending during the moves ($n of them)");
is( $node->safe_psql(
		$db, qq{SELECT count(*) FROM ((SELECT * FROM se_closed EXCEPT ALL ($sessions))
									 UNION ALL (($sessions) EXCEPT ALL SELECT * FROM se_closed)) d}),
	'0', 'emission: every session emitted exactly once, equal to SQL, across ten moves');

$node->stop;
done_testing();
