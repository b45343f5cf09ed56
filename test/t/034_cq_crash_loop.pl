
# Copyright (c) stream_state contributors

# The crash loop for continuous queries in SQL, whose statements fold into
# groups carried to the commit (cq_capture.c, "Carry"): 10 rounds of
# writers whose every transaction inserts at the top level, again inside a
# sub-transaction that rolls back 30% of the time, then commits or rolls
# back; two-phase commits of several statements (one left prepared across
# the crash); checkpoints every second; then kill -9 at a random moment and
# a restart.  After every round each query's window_result equals the
# query run over the committed rows of the window, for every window: the
# carried groups went out once, at the commit, or not at all.
#
# One query on each backend: count, sum and max per user over tumbling 10
# minutes (memory), and count and avg per user over 20 minutes sliding by 5
# (rocksdb).  Event times are random in 10:00:00 .. 10:34:59 of 2026-11-24,
# users in 1 .. 40; lateness is a day, so nothing is late.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StreamStateTest;
use Test::More;
use Time::HiRes qw(usleep);

my $rounds = 10;
my $node = ss_new_node('cqloop',
	"restart_after_crash = on\nstream_state.checkpoint_interval = 1\nstream_state.checkpoint_retain = 3\n");
my $db = 'postgres';

my $rows = sub {
	return "INSERT INTO cev (user_id, amount, ts)
	SELECT 1 + (random() * 39)::int, (random() * 1000)::int,
		   timestamptz '2026-11-24 10:00:00+00' + (random() * 2099)::int * interval '1 second'
	  FROM generate_series(1, $_[0])";
};

# Rows of every window of both queries that differ from the queries run over
# the committed rows (0: none), and the rows of the source.
sub check_all
{
	my ($label) = @_;
	ss_wait_applied($node, $db, $label);
	my $diff = $node->safe_psql(
		$db, q{
WITH tw AS (SELECT timestamptz '2026-11-24 10:00+00' + n * interval '10 minutes' AS s FROM generate_series(0, 3) n),
sw AS (SELECT timestamptz '2026-11-24 09:45+00' + n * interval '5 minutes' AS s FROM generate_series(0, 10) n),
t_got AS (SELECT tw.s, r.* FROM tw, stream_state.window_result('cq_tumble', tw.s)
			AS r(user_id int, count bigint, sum bigint, max int)),
t_truth AS (SELECT tw.s, user_id, count(*), sum(amount), max(amount) FROM tw JOIN cev
			  ON ts >= tw.s AND ts < tw.s + interval '10 minutes' GROUP BY tw.s, user_id),
s_got AS (SELECT sw.s, r.* FROM sw, stream_state.window_result('cq_slide', sw.s + interval '15 minutes')
			AS r(user_id int, count bigint, avg numeric)),
s_truth AS (SELECT sw.s, user_id, count(*), avg(amount) FROM sw JOIN cev
			  ON ts >= sw.s AND ts < sw.s + interval '20 minutes' GROUP BY sw.s, user_id)
SELECT (SELECT count(*) FROM ((SELECT * FROM t_got EXCEPT ALL SELECT * FROM t_truth)
							  UNION ALL (SELECT * FROM t_truth EXCEPT ALL SELECT * FROM t_got)) d)
	   || ' ' ||
	   (SELECT count(*) FROM ((SELECT * FROM s_got EXCEPT ALL SELECT * FROM s_truth)
							  UNION ALL (SELECT * FROM s_truth EXCEPT ALL SELECT * FROM s_got)) d)});
	is($diff, '0 0', "$label: both queries equal their recomputation in every window");
	return;
}

# Two-phase commits of three statements each: committed or rolled back;
# the last one of each round stays prepared across the crash.
sub two_phase
{
	my ($round) = @_;
	for my $i (1 .. 4)
	{
		my $gid = "r${round}_$i";
		$node->safe_psql($db,
			    "BEGIN; "
			  . $rows->(5) . "; "
			  . $rows->(3) . "; "
			  . $rows->(7)
			  . "; PREPARE TRANSACTION '$gid';");
		next if $i == 4;
		$node->safe_psql($db, ($i % 2 ? 'COMMIT' : 'ROLLBACK') . " PREPARED '$gid'");
	}
	return;
}

$node->safe_psql($db, 'CREATE EXTENSION stream_state');
$node->safe_psql(
	$db, q{
CREATE TABLE cev (user_id int, amount int, ts timestamptz);
SELECT stream_state.create_query('cq_tumble',
	'SELECT user_id, count(*), sum(amount), max(amount) FROM cev GROUP BY user_id',
	time_column => 'ts', window_size => '10 minutes', lateness => '1 day', backend => 'memory');
SELECT stream_state.create_query('cq_slide',
	'SELECT user_id, count(*), avg(amount) FROM cev GROUP BY user_id',
	time_column => 'ts', window_size => '20 minutes', slide => '5 minutes', lateness => '1 day',
	backend => 'rocksdb');});
is( $node->safe_psql($db, q{SELECT string_agg(name || ':' || backend, ',' ORDER BY name) FROM stream_state.queries}),
	'cq_slide:rocksdb,cq_tumble:memory',
	'one query on each backend');

my $restored = 0;
for my $round (1 .. $rounds)
{
	my $offset = -s $node->logfile;
	my @writers = map {
		ss_start_writer($node, $db, $rows->('1 + (random() * 20)::int'),
			$rows->('1 + (random() * 8)::int'), 0.01)
	} (1 .. 3);
	two_phase($round);
	usleep(300_000 + int(rand(1_200_000)));
	ss_kill9_and_restart($node);
	ss_bg_abandon($_) for @writers;

	for my $gid (split /\n/,
		$node->safe_psql($db, 'SELECT gid FROM pg_prepared_xacts ORDER BY gid'))
	{
		$node->safe_psql($db, (rand() < 0.5 ? 'COMMIT' : 'ROLLBACK') . " PREPARED '$gid'");
	}
	check_all("round $round");
	$restored++
	  if $node->log_contains(qr/stream_state: restored checkpoint \d+ of database/, $offset);
}
ok($restored >= $rounds / 2,
	"the worker restored from a checkpoint after most crashes ($restored of $rounds)");
cmp_ok($node->safe_psql($db, 'SELECT count(*) FROM cev'), '>', 1000,
	'the writers inserted rows');

$node->stop;
done_testing();
