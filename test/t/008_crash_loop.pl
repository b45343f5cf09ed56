
# Copyright (c) stream_state contributors

# The crash loop: 20 rounds of random inserts, rollbacks, rolled-back
# sub-transactions and two-phase commits from several sessions, with
# checkpoints every second (and, every third round, one asked for just
# before the kill, which lands while it runs or just after), then kill -9
# of the postmaster and its processes at a random moment, and a restart.
# After every round both queries equal their recomputation from the source
# table: the state restored from the newest checkpoint plus the WAL after it
# counts every committed row once, and nothing else.
#
# Event times are random within 2026-11-24 10:00:00 .. 10:34:59, keys random
# in 1 .. 50; lateness is a day, so no event is ever late.
#
# Backends: both queries on the memory backend, unless SS_CRASH_BACKENDS
# names them ("tumble,slide", e.g. "rocksdb,memory": 018_crash_loop_rocksdb.pl
# runs this file so, with one query on each backend).

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StreamStateTest;
use Test::More;
use Time::HiRes qw(usleep);

my $rounds = 20;
my $node = ss_new_node('loop',
	"restart_after_crash = on\nstream_state.checkpoint_interval = 1\nstream_state.checkpoint_retain = 3\n");
my $db = 'postgres';

sub check_all
{
	my ($label) = @_;
	ss_wait_applied($node, $db, $label);
	ss_check_tumble_slide($node, $db, $label,
		$node->safe_psql($db, 'SELECT count(*) FROM events'));
	return;
}

# A session committing, rolling back, and rolling back sub-transactions at
# random, until the server goes away.
sub start_writer
{
	my $rows = sub {
		return "INSERT INTO events (user_id, ts)
		SELECT 1 + (random() * 49)::int,
			   timestamptz '2026-11-24 10:00:00+00' + (random() * 2099)::int * interval '1 second'
		  FROM generate_series(1, $_[0])";
	};
	return ss_start_writer($node, $db, $rows->('1 + (random() * 10)::int'),
		$rows->('1 + (random() * 5)::int'), 0.01);
}

# Two-phase commits: prepared, then committed or rolled back; the last one
# of each round stays prepared across the crash.
sub two_phase
{
	my ($round) = @_;
	for my $i (1 .. 4)
	{
		my $gid = "r${round}_$i";
		$node->safe_psql(
			$db, qq{BEGIN;
INSERT INTO events (user_id, ts)
SELECT 1 + (random() * 49)::int,
	   timestamptz '2026-11-24 10:00:00+00' + (random() * 2099)::int * interval '1 second'
  FROM generate_series(1, 10);
PREPARE TRANSACTION '$gid';});
		next if $i == 4;
		$node->safe_psql($db,
			($i % 2 ? 'COMMIT' : 'ROLLBACK') . " PREPARED '$gid'");
	}
	return;
}

$node->safe_psql($db, 'CREATE EXTENSION stream_state');
my ($tumble_backend, $slide_backend) = split /,/,
  ($ENV{SS_CRASH_BACKENDS} // 'memory,memory');
ss_create_tumble_slide($node, $db, $tumble_backend, $slide_backend);
is( $node->safe_psql($db, q{SELECT string_agg(backend, ',' ORDER BY name DESC) FROM stream_state.queries}),
	"$tumble_backend,$slide_backend",
	"queries on backends $tumble_backend and $slide_backend");

my $restored = 0;
for my $round (1 .. $rounds)
{
	my $offset = -s $node->logfile;
	my @writers = map { start_writer() } (1 .. 3);
	two_phase($round);
	usleep(200_000 + int(rand(1_300_000)));
	my $asker;
	if ($round % 3 == 0)
	{
		# a checkpoint asked for right before the kill, likely still running
		$asker = $node->background_psql($db, on_error_stop => 0);
		$asker->query_until(qr/asking/,
			"\\echo asking\nSELECT stream_state.checkpoint();\n");
		usleep(int(rand(50_000)));
	}
	ss_kill9_and_restart($node);
	ss_bg_abandon($_) for @writers;
	# its psql may have reconnected to the new server: no waiting for it
	eval { $asker->{run}->kill_kill; 1 } if $asker;

	# transactions prepared before the crash are resolved after it
	for my $gid (split /\n/,
		$node->safe_psql($db, 'SELECT gid FROM pg_prepared_xacts ORDER BY gid'))
	{
		$node->safe_psql($db, (rand() < 0.5 ? 'COMMIT' : 'ROLLBACK') . " PREPARED '$gid'");
	}
	check_all("round $round");
	# the worker has logged how it started: wait_applied waited for it
	$restored++
	  if $node->log_contains(qr/stream_state: restored checkpoint \d+ of database/, $offset);
}
ok($restored >= $rounds / 2,
	"the worker restored from a checkpoint after most crashes ($restored of $rounds)");
is( $node->safe_psql(
		$db, q{SELECT count(*) FROM stream_state.checkpoints WHERE status = 'damaged'}),
	'0',
	'no checkpoint was left damaged by a crash (they are renamed into place only when complete)');

$node->stop;
done_testing();
