
# Copyright (c) stream_state contributors

# emit_to exactly once: closed windows of a continuous query in SQL are
# inserted into their table once each, and equal the query over each
# window's rows, across kill -9 at random moments (often while the helper
# is inserting a backlog of windows), checkpoints and restarts; and a table
# that cannot be written stops emission (the log says why) without losing
# anything: the windows wait in state and go once the table is back.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StreamStateTest;
use Test::More;
use Time::HiRes qw(usleep);

# one window per transaction: a kill -9 lands in the middle of a backlog
my $node = ss_new_node('emit',
	"stream_state.checkpoint_interval = 2\nrestart_after_crash = on\nstream_state.emit_batch = 1\n");
my $db = 'postgres';

$node->safe_psql($db, 'CREATE EXTENSION stream_state');
$node->safe_psql($db, 'CREATE TABLE ev (k int, v int, ts timestamptz)');
# windows of 1 minute every 10 seconds: a jump of the watermark closes many;
# and sessions with a gap of 30 seconds over the same rows
$node->safe_psql($db,
	q{SELECT stream_state.create_query('e', $$SELECT k, count(*), sum(v) FROM ev GROUP BY k$$,
		time_column => 'ts', window_size => '1 minute', slide => '10 seconds', emit_to => 'closed')});
$node->safe_psql($db,
	q{SELECT stream_state.create_query('s', $$SELECT k, count(*), sum(v) FROM ev GROUP BY k$$,
		time_column => 'ts', session_gap => '30 seconds', emit_to => 'sessions')});

# sessions emitted, distinct sessions, and rows that differ from the
# sessions of ev computed in SQL that ended by emitted_until
my $check_sessions = q{
WITH o AS (SELECT k, v, ts, CASE WHEN ts - lag(ts) OVER (PARTITION BY k ORDER BY ts, v) < interval '30 seconds'
								 THEN 0 ELSE 1 END AS brk FROM ev),
g AS (SELECT k, v, ts, sum(brk) OVER (PARTITION BY k ORDER BY ts, v ROWS UNBOUNDED PRECEDING) AS sid FROM o),
truth AS (SELECT min(ts) AS window_start, max(ts) + interval '30 seconds' AS window_end, k, count(*), sum(v)
			FROM g GROUP BY k, sid
		  HAVING max(ts) + interval '30 seconds' <= (SELECT emitted_until FROM stream_state.queries WHERE name = 's'))
SELECT (SELECT count(*) FROM sessions) || ' ' ||
	   (SELECT count(DISTINCT (window_start, k)) FROM sessions) || ' ' ||
	   (SELECT count(*) FROM ((SELECT * FROM sessions EXCEPT ALL SELECT * FROM truth)
							  UNION ALL (SELECT * FROM truth EXCEPT ALL SELECT * FROM sessions)) d)};

# the row count of windows emitted, of distinct (window, key), and of rows
# that differ from the query over each window's rows, up to the last end
# emitted; plus whether every window end from the first to the last is there
my $check = q{
WITH last AS (SELECT emitted_until AS e FROM stream_state.queries WHERE name = 'e'),
ends AS (SELECT g AS e FROM last, generate_series((SELECT min(window_end) FROM closed), last.e,
											   interval '10 seconds') g),
truth AS (SELECT e - interval '1 minute' AS window_start, e AS window_end, k, count(*), sum(v)
			FROM ends JOIN ev ON ts >= e - interval '1 minute' AND ts < e GROUP BY e, k)
SELECT (SELECT count(*) FROM closed) || ' ' ||
	   (SELECT count(DISTINCT (window_end, k)) FROM closed) || ' ' ||
	   (SELECT count(*) FROM ((SELECT * FROM closed EXCEPT ALL SELECT * FROM truth)
							  UNION ALL (SELECT * FROM truth EXCEPT ALL SELECT * FROM closed)) d) || ' ' ||
	   (SELECT count(*) FROM ends e WHERE NOT EXISTS (SELECT 1 FROM closed c WHERE c.window_end = e.e)
			AND EXISTS (SELECT 1 FROM ev WHERE ts >= e.e - interval '1 minute' AND ts < e.e))};

# rows of minute m (each 3 keys, 6 rows, 10 s apart)
my $minute = sub {
	my ($m) = @_;
	return "INSERT INTO ev SELECT g % 3, $m * 100 + g, '2026-11-24 10:00+00'::timestamptz
			+ $m * interval '1 minute' + g * interval '10 seconds' FROM generate_series(0, 5) g";
};

# wait until everything closed by the watermark is emitted (sessions: by
# the watermark floored to the gap)
my $wait_emitted = sub {
	my ($what) = @_;
	ok( $node->poll_query_until(
			$db, q{SELECT bool_and(emitted_until >= date_bin(CASE name WHEN 'e' THEN interval '10 seconds'
															  ELSE interval '30 seconds' END, watermark, 'epoch'))
				FROM stream_state.queries WHERE emit_to IS NOT NULL}),
		"$what: everything closed is emitted");
};

srand(20261124);
my $m = 0;
my $midway = 0;
for my $round (1 .. 10)
{
	# a few minutes of events, some rolled back, then a jump of two hours
	# that closes about 720 windows; kill -9 somewhere in the emission
	for (1 .. 3)
	{
		$node->safe_psql($db, $minute->($m++));
		$node->safe_psql($db, 'BEGIN; ' . $minute->(1000) . '; ROLLBACK');
	}
	$m += 120;
	$node->safe_psql($db, $minute->($m++));
	usleep(int(rand(150_000)));
	# (whether windows the rows close are still to be emitted, just before the kill)
	$midway++
	  if $node->safe_psql($db,
		q{SELECT coalesce(emitted_until, '-infinity') < (SELECT date_bin('10 seconds', max(ts), 'epoch') FROM ev)
			FROM stream_state.queries WHERE name = 'e'}) eq 't';
	ss_kill9_and_restart($node);
	ss_wait_applied($node, $db, "round $round");
	$wait_emitted->("round $round");
	my ($rows, $distinct, $diff, $missing) = split / /, $node->safe_psql($db, $check);
	ok($rows > 0 && $rows == $distinct && $diff == 0 && $missing == 0,
		"round $round: $rows rows emitted, each window once ($distinct distinct), $diff differ, $missing windows missing");
	my ($srows, $sdistinct, $sdiff) = split / /, $node->safe_psql($db, $check_sessions);
	ok($srows > 0 && $srows == $sdistinct && $sdiff == 0,
		"round $round: $srows sessions emitted, each once ($sdistinct distinct), $sdiff differ from the sessions computed in SQL");
	# the next round's restart starts from a checkpoint every other round
	ss_checkpoint($node, $db) if $round % 2;
}
ok($node->log_contains(qr/restored checkpoint \d+ of database/), 'some restarts restored a checkpoint');
note("$midway of 10 kills came before every closed window was emitted");

# the table goes away: the helper fails, says why, and keeps trying; the
# windows wait in state (the panes stay), then go once the table is back
my $offset = -s $node->logfile;
$node->safe_psql($db, 'ALTER TABLE closed RENAME TO closed_away');
$node->safe_psql($db, $minute->($m));
$m += 5;
$node->safe_psql($db, $minute->($m++));
ok( ss_wait_log(
		$node,
		qr/WARNING:  stream_state: could not emit the closed windows of continuous query \d+: relation "public.closed" does not exist/,
		$offset),
	'a missing table: the log says why');
ss_wait_applied($node, $db, 'the table away');
is( $node->safe_psql(
		$db, q{SELECT q.panes || ' ' || (SELECT count(DISTINCT (k, date_bin('10 seconds', ts, 'epoch'))) FROM ev
			WHERE ts >= q.emitted_until + interval '10 seconds' - interval '1 minute')
			FROM stream_state.queries q WHERE name = 'e'}) =~ /^(\d+) \1$/ ? 1 : 0,
	1, 'the closed windows wait in state: every pane from the first window not emitted on');
$node->safe_psql($db, 'ALTER TABLE closed_away RENAME TO closed');
$wait_emitted->('the table is back');
is((split / /, $node->safe_psql($db, $check))[2], '0', 'the windows that waited are emitted, exact');
my ($rows, $distinct) = split / /, $node->safe_psql($db, $check);
is($rows, $distinct, 'each window once');

is($node->safe_psql($db, q{SELECT min(window_end) AT TIME ZONE 'UTC' FROM closed}), '2026-11-24 10:00:10',
	'the first window emitted is the first that holds an event');

# a restart with nothing new emits nothing more
$node->restart;
ss_wait_applied($node, $db, 'restart');
$wait_emitted->('restart');
is($node->safe_psql($db, 'SELECT count(*) FROM closed'), $rows, 'a restart emits nothing again');

$node->stop;
done_testing();
