
# Copyright (c) stream_state contributors

# The rocksdb backend: state in an embedded RocksDB per database, opened by
# the worker only.
#
#  - a restart and a kill -9 keep every rocksdb query equal to its
#    recomputation (RocksDB's durable state plus the WAL after it);
#  - state larger than the memory backend's limit: with memory_limit at its
#    minimum, a memory query pauses and a rocksdb query over the same rows
#    holds them all, exactly;
#  - rocksdb_stats shows the database and each rocksdb query;
#  - checkpoints take a RocksDB checkpoint (hard links); restore_checkpoint
#    makes it the live RocksDB again; retention removes old ones;
#  - a live RocksDB that cannot be opened is replaced by the newest
#    checkpoint's, and the WAL after it re-applied;
#  - drop_query deletes a query's data; DROP EXTENSION removes the
#    directory.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use File::Path qw(rmtree);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StreamStateTest;
use Test::More;
use Time::HiRes qw(usleep);

my $node = ss_new_node('rocks',
	"stream_state.memory_limit = 1MB\nstream_state.checkpoint_interval = 0\n"
	  . "stream_state.checkpoint_retain = 2\nrestart_after_crash = on\n");
my $db = 'postgres';

$node->safe_psql($db, 'CREATE EXTENSION stream_state');
$node->safe_psql($db, 'CREATE TABLE wide (k bigint, ts timestamptz)');
ss_create_tumble_slide($node, $db, 'rocksdb', 'rocksdb');
my $dboid = $node->safe_psql($db, "SELECT oid FROM pg_database WHERE datname = '$db'");
my $rdir = $node->data_dir . "/stream_state/$dboid/rocksdb";

# n rows, then 100 more that roll back
sub insert_events
{
	my ($n) = @_;
	ss_insert_events($node, $db, $n, 50);
	$node->safe_psql(
		$db, q{
BEGIN;
INSERT INTO events (user_id, ts) SELECT 7, timestamptz '2026-11-24 10:00:00+00'
  FROM generate_series(1, 100);
ROLLBACK;
});
	return;
}

sub check_all
{
	my ($label) = @_;
	ss_wait_applied($node, $db, $label);
	ss_check_tumble_slide($node, $db, $label,
		$node->safe_psql($db, 'SELECT count(*) FROM events'));
	return;
}

insert_events(5000);
ok(-f "$rdir/CURRENT", 'the database has a RocksDB under the data directory');
check_all('after inserts');

# ---------------------------------------------------------------- restarts
$node->restart;
check_all('after a restart');
insert_events(3000);
ss_kill9_and_restart($node);
check_all('after kill -9 (memtables lost, WAL re-applied)');
insert_events(3000);
check_all('inserts after the crash');

# ------------------------------------------- larger than the memory backend
# 40000 keys in one pane: about 3.5 MB in the memory store, whose limit is 1 MB
$node->safe_psql(
	$db, q{
SELECT stream_state.create_query('wide_mem', 'wide', 'k', 'ts', window_size => '1 hour');
SELECT stream_state.create_query('wide_rdb', 'wide', 'k', 'ts', window_size => '1 hour',
								 backend => 'rocksdb');
INSERT INTO wide SELECT g, timestamptz '2026-11-24 10:00:00+00' FROM generate_series(1, 40000) g;
INSERT INTO wide SELECT g, timestamptz '2026-11-24 10:30:00+00' FROM generate_series(1, 40000, 7) g;
});
# (wait_applied() waits for the paused query too: poll its status instead)
my $status;
for (1 .. 600)
{
	$status = $node->safe_psql($db, q{SELECT status FROM stream_state.queries WHERE name = 'wide_mem'});
	last if $status eq 'paused: memory full';
	usleep(100_000);
}
is($status, 'paused: memory full', 'the memory query over the wide table is paused: memory full');
is( $node->safe_psql($db, q{SELECT status FROM stream_state.queries WHERE name = 'wide_rdb'}),
	'running', 'the rocksdb query over the same rows runs');
ss_check_hour_window($node, $db, 'state larger than memory_limit', 'wide_rdb', 'wide',
	$node->safe_psql($db, 'SELECT count(*) FROM wide'));
is( $node->safe_psql(
		$db, q{SELECT count(*), sum(count) FROM stream_state.window_counts('wide_rdb', '2026-11-24 10:30+00')}),
	'40000|45715', 'window_counts of the rocksdb query: 40000 keys, 45715 events');
$node->safe_psql($db, q{SELECT stream_state.drop_query('wide_mem')});

# ---------------------------------------------------------------- stats
my $stats = $node->safe_psql($db,
	q{SELECT scope, coalesce(query, '-') FROM stream_state.rocksdb_stats ORDER BY 1, 2});
is($stats, "database|-\nquery|slide_10m\nquery|tumble_5m\nquery|wide_rdb",
	'rocksdb_stats: a row for the database and one per rocksdb query');
cmp_ok(
	$node->safe_psql($db,
		q{SELECT estimated_entries FROM stream_state.rocksdb_stats WHERE scope = 'database'}),
	'>', 0, 'rocksdb_stats: the database holds entries');

# ---------------------------------------------------------------- checkpoints
my $c1 = $node->safe_psql($db, 'SELECT stream_state.checkpoint()');
ok(-f $node->data_dir . "/stream_state/$dboid/rocksdb-ckpt/$c1/CURRENT",
	"checkpoint $c1 has a RocksDB checkpoint");
cmp_ok(
	$node->safe_psql($db,
		q{SELECT sst_bytes FROM stream_state.rocksdb_stats WHERE scope = 'database'}),
	'>', 0, 'a checkpoint flushed RocksDB to SST files');
insert_events(2000);
check_all("after checkpoint $c1");

my $offset = -s $node->logfile;
is( $node->safe_psql($db,
		"SELECT string_agg(query || ':' || action, ',' ORDER BY query) FROM stream_state.restore_checkpoint($c1)"),
	'slide_10m:replayed,tumble_5m:replayed,wide_rdb:replayed',
	"restore_checkpoint($c1) replays the WAL after it");
ok( $node->wait_for_log(
		qr/the RocksDB of database $dboid is restored from checkpoint $c1/, $offset),
	'the live RocksDB became the checkpoint\'s');
check_all("after restore_checkpoint($c1)");

# retention keeps two: the RocksDB checkpoints of older ones go too
my $c2 = $node->safe_psql($db, 'SELECT stream_state.checkpoint()');
insert_events(500);
my $c3 = $node->safe_psql($db, 'SELECT stream_state.checkpoint()');
ok(!-e $node->data_dir . "/stream_state/$dboid/rocksdb-ckpt/$c1",
	"retention removed the RocksDB checkpoint of $c1");
ok(-f $node->data_dir . "/stream_state/$dboid/rocksdb-ckpt/$c3/CURRENT",
	"the RocksDB checkpoint of $c3 is kept");

# export writes one portable file, with the rocksdb queries' state read from
# the RocksDB checkpoint; imported into queries of either backend elsewhere
cmp_ok($node->safe_psql($db, "SELECT stream_state.export_checkpoint($c3, 'ss-export.ckpt')"),
	'>', 0, "export_checkpoint($c3) of a checkpoint with rocksdb queries");
$node->safe_psql($db, 'CREATE DATABASE third');
$node->safe_psql('third', 'CREATE EXTENSION stream_state');
$node->safe_psql('third', 'CREATE TABLE wide (k bigint, ts timestamptz)');
ss_create_tumble_slide($node, 'third', 'memory', 'rocksdb');
$node->safe_psql('third',
	q{SELECT stream_state.create_query('wide_rdb', 'wide', 'k', 'ts', window_size => '1 hour', backend => 'rocksdb')});
my $state_sql = q{SELECT string_agg(query || ':' || n || ':' || s, ' ' ORDER BY query)
  FROM (SELECT query, count(*) AS n, sum(count) AS s FROM stream_state.state GROUP BY query) x};
my $exported = $node->safe_psql($db, $state_sql);
is( $node->safe_psql('third',
		q{SELECT string_agg(query || ':' || keys || ':' || entries, ' ' ORDER BY query)
			FROM stream_state.import_checkpoint('ss-export.ckpt')}),
	$node->safe_psql($db,
		q{SELECT string_agg(query || ':' || k || ':' || n, ' ' ORDER BY query)
			FROM (SELECT query, count(DISTINCT key) AS k, count(*) AS n
					FROM stream_state.state GROUP BY query) x}),
	'import_checkpoint of the export: every query\'s keys and entries');
ss_wait_applied($node, 'third', 'import');
is($node->safe_psql('third', $state_sql), $exported,
	'the imported state (on memory and rocksdb queries) equals the exported database\'s');

# ------------------------------------------- a live RocksDB that is damaged
insert_events(1000);
ss_wait_applied($node, $db, 'before damage');
$node->stop;
unlink("$rdir/CURRENT") or die "could not remove $rdir/CURRENT: $!";
$offset = -s $node->logfile;
$node->start;
check_all('after the live RocksDB lost its CURRENT file');
ok( $node->log_contains(
		qr/the RocksDB of database $dboid is restored from checkpoint $c3 instead/, $offset),
	"the damaged RocksDB was replaced by the one of checkpoint $c3");

# ------------------------------------------- set_backend under concurrent inserts
# Two sessions insert and commit (or roll back) in a loop while the query
# moves between the backends eight times; then kill -9 in the middle of it
# all.  Every committed row counted once, by whichever backend held the
# query at its commit.
$node->safe_psql($db, 'CREATE TABLE flip (k bigint, ts timestamptz)');
$node->safe_psql($db,
	q{SELECT stream_state.create_query('flip_q', 'flip', 'k', 'ts', window_size => '1 hour', lateness => '1 day')});
sub start_flip_writer
{
	my $s = $node->background_psql($db, on_error_stop => 0);
	$s->query_until(
		qr/writing/, q{
\echo writing
DO $$
BEGIN
	LOOP
		INSERT INTO flip SELECT (random() * 200)::int,
			   timestamptz '2026-11-24 10:00:00+00' + (random() * 3599)::int * interval '1 second'
		  FROM generate_series(1, 1 + (random() * 20)::int);
		IF random() < 0.2 THEN ROLLBACK; ELSE COMMIT; END IF;
		PERFORM pg_sleep(0.005);
	END LOOP;
END
$$;
});
	return $s;
}
my @flip_writers = map { start_flip_writer() } (1 .. 2);
for my $i (1 .. 8)
{
	usleep(150_000);
	$node->safe_psql($db,
		"SELECT stream_state.set_backend('flip_q', '" . ($i % 2 ? 'rocksdb' : 'memory') . "')");
}
usleep(200_000);
$node->safe_psql($db,
	q{SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query LIKE 'DO $$%' AND pid <> pg_backend_pid()});
ss_bg_abandon($_) for @flip_writers;
ss_wait_applied($node, $db, 'set_backend under inserts');
is($node->safe_psql($db, q{SELECT backend FROM stream_state.queries WHERE name = 'flip_q'}),
	'memory', 'after eight moves the query is back on memory');
ss_check_hour_window($node, $db, 'set_backend under concurrent inserts', 'flip_q', 'flip',
	$node->safe_psql($db, 'SELECT count(*) FROM flip'));

@flip_writers = map { start_flip_writer() } (1 .. 2);
for my $i (1 .. 3)
{
	usleep(150_000);
	$node->safe_psql($db,
		"SELECT stream_state.set_backend('flip_q', '" . ($i % 2 ? 'rocksdb' : 'memory') . "')");
}
usleep(100_000);
ss_kill9_and_restart($node);
ss_bg_abandon($_) for @flip_writers;
ss_wait_applied($node, $db, 'set_backend and kill -9');
is($node->safe_psql($db, q{SELECT backend FROM stream_state.queries WHERE name = 'flip_q'}),
	'rocksdb', 'after a kill -9, the query is where its last committed move put it');
ss_check_hour_window($node, $db, 'moves replayed after kill -9', 'flip_q', 'flip',
	$node->safe_psql($db, 'SELECT count(*) FROM flip'));
$node->safe_psql($db, q{SELECT stream_state.drop_query('flip_q')});

# ------------------------------------------- an unwritable directory
# In a second database, a rocksdb query whose RocksDB cannot be created:
# it waits, paused, and catches up from its definition once it can.
$node->safe_psql($db, 'CREATE DATABASE second');
$node->safe_psql('second', 'CREATE EXTENSION stream_state');
$node->safe_psql('second', 'CREATE TABLE wide (k bigint, ts timestamptz)');
$node->safe_psql('second',
	q{SELECT stream_state.create_query('m', 'wide', 'k', 'ts', window_size => '1 hour')});
my $oid2 = $node->safe_psql($db, q{SELECT oid FROM pg_database WHERE datname = 'second'});
my $dir2 = $node->data_dir . "/stream_state/$oid2";
mkdir($dir2);
chmod(0500, $dir2) or die "could not chmod $dir2: $!";
$offset = -s $node->logfile;
$node->safe_psql(
	'second', q{
INSERT INTO wide SELECT g % 100, timestamptz '2026-11-24 10:00:00+00' FROM generate_series(1, 1000) g;
SELECT stream_state.create_query('r', 'wide', 'k', 'ts', window_size => '1 hour', backend => 'rocksdb');
INSERT INTO wide SELECT g % 100, timestamptz '2026-11-24 10:10:00+00' FROM generate_series(1, 500) g;
});
my $st2;
for (1 .. 600)
{
	$st2 = $node->safe_psql('second', q{SELECT status FROM stream_state.queries WHERE name = 'r'});
	last if $st2 eq 'paused: RocksDB not writable';
	usleep(100_000);
}
is($st2, 'paused: RocksDB not writable',
	'a rocksdb query whose RocksDB cannot be created is paused: RocksDB not writable');
ok( $node->log_contains(
		qr/WARNING:  stream_state: the RocksDB of database $oid2 failed: could not open RocksDB at "stream_state\/$oid2\/rocksdb": IO error: .*Permission denied/,
		$offset),
	'the worker logs why');
like(
	ss_error_of($node, 'second', q{SELECT stream_state.window_count('r', 1::bigint, '2026-11-24 10:30+00')}),
	qr/ERROR:  55000: continuous query "r" is paused: the RocksDB of this database cannot be written/,
	'reads of it fail (55000)');
ss_check_hour_window($node, 'second', 'the memory query beside it', 'm', 'wide', 1500);
chmod(0700, $dir2) or die "could not chmod $dir2: $!";
for (1 .. 600)
{
	$st2 = $node->safe_psql('second', q{SELECT status FROM stream_state.queries WHERE name = 'r'});
	last if $st2 eq 'running';
	usleep(100_000);
}
is($st2, 'running', 'once the directory is writable, the query catches up and runs');
ss_check_hour_window($node, 'second', 'after the directory became writable', 'r', 'wide', 1500);

# ---------------------------------------------------------------- drops
$node->safe_psql($db, q{SELECT stream_state.drop_query('wide_rdb')});
$node->safe_psql($db, 'SELECT stream_state.checkpoint()');
is( $node->safe_psql($db,
		q{SELECT string_agg(query, ',' ORDER BY query) FROM stream_state.rocksdb_stats WHERE scope = 'query'}),
	'slide_10m,tumble_5m', 'drop_query: the dropped query is gone from RocksDB');
check_all('after a drop');

$node->safe_psql($db, 'DROP EXTENSION stream_state');
my $gone = 0;
for (1 .. 100)
{
	if (!-e $node->data_dir . "/stream_state/$dboid")
	{
		$gone = 1;
		last;
	}
	usleep(100_000);
}
ok($gone, 'DROP EXTENSION removed the RocksDB directory');

$node->stop;
done_testing();
