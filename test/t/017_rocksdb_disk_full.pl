
# Copyright (c) stream_state contributors

# The rocksdb backend when its disk is full: the RocksDB of the database
# lives on a small file system (SS_SMALL_FS: a directory on a tmpfs of 16
# MB, writable by this test's user, which scripts/test.sh mounts as root),
# and the test fills it until less than stream_state.rocksdb_min_free_space
# (4 MB here) is free.
#
#  - the worker pauses the rocksdb query ("paused: disk full"), says so in
#    the log, refuses checkpoints (the slot keeps the WAL), reads of it fail
#    with a clear error, and the memory query goes on, exact;
#  - rows inserted meanwhile are kept in the WAL;
#  - the space comes back: the worker opens RocksDB again, the query
#    catches up from what RocksDB had made durable, and equals its
#    recomputation; checkpoints work again.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use File::Copy qw(move);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StreamStateTest;
use Test::More;
use Time::HiRes qw(usleep);

my $small = $ENV{SS_SMALL_FS};
plan skip_all => 'SS_SMALL_FS is not set: scripts/test.sh mounts a small tmpfs for this test'
  unless defined $small && -d $small && -w $small;

my $node = ss_new_node('full',
	"stream_state.checkpoint_interval = 0\nstream_state.rocksdb_write_buffer_size = 256kB\n"
	  . "stream_state.rocksdb_min_free_space = 4MB\n");
my $db = 'postgres';

$node->safe_psql($db, 'CREATE EXTENSION stream_state');
ss_create_tumble_slide($node, $db, 'rocksdb', 'memory');
my $dboid = $node->safe_psql($db, "SELECT oid FROM pg_database WHERE datname = '$db'");
my $rdir = $node->data_dir . "/stream_state/$dboid/rocksdb";

sub insert_events
{
	my ($n) = @_;
	ss_insert_events($node, $db, $n, 5000);
	return;
}

sub status
{
	return $node->safe_psql($db,
		q{SELECT status FROM stream_state.queries WHERE name = 'tumble_5m'});
}

sub wait_status
{
	my ($want) = @_;
	my $got;
	for (1 .. 600)
	{
		$got = status();
		return $got if $got eq $want;
		usleep(100_000);
	}
	return $got;
}

# RocksDB onto the small file system
insert_events(2000);
$node->safe_psql($db, 'SELECT stream_state.checkpoint()');
$node->stop;
my $target = "$small/rocksdb-$dboid";
system('cp', '-a', $rdir, $target) == 0 or die "could not copy $rdir to $target";
system('rm', '-rf', $rdir) == 0 or die "could not remove $rdir";
symlink($target, $rdir) or die "could not link $rdir to $target: $!";
$node->start;
ss_wait_applied($node, $db, 'on the small file system');
ss_check_tumble_slide($node, $db, 'RocksDB on the small file system',
	$node->safe_psql($db, 'SELECT count(*) FROM events'));

# fill it, leaving 1 MB
my $filler = "$small/filler";
{
	my $free = (split /\s+/, (split /\n/, `df -k -P $small`)[1])[3];
	my $n = int(($free - 1024) / 64);
	open(my $fh, '>', $filler) or die "could not create $filler: $!";
	my $block = 'x' x 65536;
	for (1 .. $n) { syswrite($fh, $block) or die "could not fill $small: $!"; }
	close($fh);
}
note 'file system filled: ' . `df -k -P $small | tail -1`;

my $slot_before = $node->safe_psql($db,
	q{SELECT restart_lsn FROM pg_replication_slots WHERE slot_name LIKE 'stream_state_%'});
my $offset = -s $node->logfile;

# the next batch written to RocksDB finds the disk full: the query pauses
insert_events(3000);
is(wait_status('paused: disk full'), 'paused: disk full',
	'the rocksdb query is paused: disk full');
ok( $node->wait_for_log(
		qr/WARNING:  stream_state: less than stream_state.rocksdb_min_free_space \(4096 kB\) is free for the RocksDB of database $dboid\n.*DETAIL:  1 rocksdb-backend queries are paused at/,
		$offset),
	'the worker logs that the disk is full and the query paused');

# rows keep coming; the memory query keeps up, exactly
insert_events(3000);
ss_check_slide($node, $db, 'while the disk is full', $node->safe_psql($db, 'SELECT count(*) FROM events'));
like(
	ss_error_of($node, $db, q{SELECT stream_state.window_count('tumble_5m', 1::bigint, '2026-11-24 10:01+00')}),
	qr/ERROR:  55000: continuous query "tumble_5m" is paused: the disk of its RocksDB is full/,
	'a read of the paused query fails (55000) and says why');
like(
	ss_error_of($node, $db, 'SELECT stream_state.checkpoint()'),
	qr/cannot be written; its queries are paused/,
	'checkpoints are refused while RocksDB cannot be written');
is( $node->safe_psql($db,
		q{SELECT restart_lsn FROM pg_replication_slots WHERE slot_name LIKE 'stream_state_%'}),
	$slot_before, 'the slot keeps the WAL of the paused query');

# moving the memory query into RocksDB now: it stays where it is, exact
$node->safe_psql($db, q{SELECT stream_state.set_backend('slide_10m', 'rocksdb')});
ok( $node->wait_for_log(
		qr/WARNING:  stream_state: continuous query "slide_10m" stays on backend memory: RocksDB cannot be written/,
		$offset),
	'set_backend into a RocksDB that cannot be written: the query stays on memory, with a WARNING');
insert_events(500);
ss_check_slide($node, $db, 'after a refused move', $node->safe_psql($db, 'SELECT count(*) FROM events'));

# space comes back
unlink($filler) or die "could not remove $filler: $!";
is(wait_status('running'), 'running', 'the query runs again once RocksDB can be written');
ok( $node->log_contains(
		qr/stream_state: the RocksDB of database $dboid has space again; 1 queries catch up from the kept WAL/,
		$offset),
	'the worker logs that RocksDB is back');
ss_wait_applied($node, $db, 'after the disk-full episode');
ss_check_tumble_slide($node, $db, 'after the disk-full episode',
	$node->safe_psql($db, 'SELECT count(*) FROM events'));
like($node->safe_psql($db, 'SELECT stream_state.checkpoint()'),
	qr/^\d+$/, 'checkpoints work again');

# and after a restart, from RocksDB and the checkpoint
insert_events(1000);
$node->restart;
ss_check_tumble_slide($node, $db, 'after a restart',
	$node->safe_psql($db, 'SELECT count(*) FROM events'));

$node->stop;
unlink($rdir);
system('rm', '-rf', $target);
done_testing();
