
# Copyright (c) stream_state contributors

# A continuous query in SQL on the rocksdb backend (count, sum, avg, max,
# and hll when it is installed): kill -9 of the postmaster while sessions
# insert, commit, roll back and roll back sub-transactions, several rounds;
# after each, window_result of several windows equals the query run over
# each window's rows.  RocksDB holds the values (read, combined and Put by
# the worker) with the query's meta; what it had not flushed comes back
# from the kept WAL.  Then restore_checkpoint, set_backend to memory and
# back, and export_checkpoint read from the RocksDB checkpoint into another
# cluster by import_checkpoint.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StreamStateTest;
use Test::More;
use Time::HiRes qw(usleep);

my $node = ss_new_node('rsql', "stream_state.checkpoint_interval = 3\nrestart_after_crash = on\n");
my $db = 'postgres';

my $hll = $node->safe_psql($db,
	q{SELECT count(*) FROM pg_available_extensions WHERE name = 'hll'}) eq '1';
$node->safe_psql($db, 'CREATE EXTENSION stream_state');
$node->safe_psql($db, 'CREATE EXTENSION hll') if $hll;
$node->safe_psql($db, 'CREATE TABLE ev (k bigint, v numeric, page text, ts timestamptz)');

my $aggs = 'count(*), sum(v), avg(v), max(v)'
  . ($hll ? ', hll_cardinality(hll_add_agg(hll_hash_text(page))) AS pages' : '');
my $cols = 'k bigint, count bigint, sum numeric, avg numeric, max numeric'
  . ($hll ? ', pages float8' : '');

my $rows = sub {
	my ($n) = @_;
	return "INSERT INTO ev SELECT (random() * 20)::int, round((random() * 100)::numeric, 2),
			'p' || (random() * 30)::int,
			'2026-11-24 10:00+00'::timestamptz + (random() * 2100)::int * interval '1 second'
		  FROM generate_series(1, $n)";
};
$node->safe_psql($db, $rows->(300));
$node->safe_psql($db,
	qq{SELECT stream_state.create_query('r', \$\$SELECT k, $aggs FROM ev GROUP BY k\$\$,
		time_column => 'ts', window_size => '1 hour', slide => '10 minutes', lateness => '1 day',
		backend => 'rocksdb')});
is($node->safe_psql($db, q{SELECT backend FROM stream_state.queries WHERE name = 'r'}),
	'rocksdb', 'the query in SQL is on the rocksdb backend');

# every window that holds rows: its keys, and rows that differ between
# window_result and the query over the window's rows
my @ats = ('10:05', '10:25', '10:45', '10:55', '11:15', '11:30');
sub check
{
	my ($label) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	ss_wait_applied($node, $db, $label);
	my ($keys, $diff) = (0, 0);
	for my $at (@ats)
	{
		my ($k, $d) = split / /, $node->safe_psql(
			$db, qq{
WITH w AS (SELECT date_bin('10 minutes', '2026-11-24 $at+00'::timestamptz, 'epoch') + interval '10 minutes' AS e),
truth AS (SELECT k, $aggs FROM ev, w WHERE ts >= w.e - interval '1 hour' AND ts < w.e GROUP BY k),
got AS (SELECT * FROM stream_state.window_result('r', '2026-11-24 $at+00') AS t($cols))
SELECT (SELECT count(*) FROM truth) || ' ' || count(*)
  FROM ((SELECT * FROM got EXCEPT ALL SELECT * FROM truth)
		UNION ALL (SELECT * FROM truth EXCEPT ALL SELECT * FROM got)) d});
		$keys += $k;
		$diff += $d;
	}
	cmp_ok($keys, '>', 0, "$label: windows hold keys ($keys over " . scalar(@ats) . " windows)");
	is($diff, 0, "$label: window_result equals the query over each window's rows");
	return;
}

check('after create (backfill and inserts)');

# a session inserting, rolling back and rolling back sub-transactions until
# the server goes away
sub start_writer
{
	return ss_start_writer($node, $db, $rows->('1 + (random() * 20)::int'));
}

for my $round (1 .. 4)
{
	my @writers = map { start_writer() } (1 .. 2);
	usleep(500_000 + int(rand(1_000_000)));
	# a checkpoint (and its RocksDB checkpoint) amid the writes: the restart
	# restores it and applies the WAL after it
	ss_checkpoint($node, $db) if $round % 2 == 0;
	usleep(int(rand(1_000_000)));
	ss_kill9_and_restart($node);
	ss_bg_abandon($_) for @writers;
	check("round $round, after kill -9 during inserts");
}
my $n = $node->safe_psql($db, 'SELECT count(*) FROM ev');
cmp_ok($n, '>', 300, "the writers committed rows ($n)");
ok($node->log_contains(qr/restored checkpoint \d+ of database \d+/),
	'a worker restored a checkpoint (with its RocksDB) after a kill -9');

# ------------------------------------------------------- restore_checkpoint
my $c1 = ss_checkpoint($node, $db);
$node->safe_psql($db, $rows->(200));
check("after checkpoint $c1 and more rows");
is( $node->safe_psql($db,
		"SELECT string_agg(query || ':' || action, ',') FROM stream_state.restore_checkpoint($c1)"),
	'r:replayed', "restore_checkpoint($c1) replays the WAL after it");
check("after restore_checkpoint($c1)");

# ------------------------------------------------------ set_backend both ways
$node->safe_psql($db, q{SELECT stream_state.set_backend('r', 'memory')});
$node->safe_psql($db, $rows->(100));
is($node->safe_psql($db, q{SELECT backend FROM stream_state.queries WHERE name = 'r'}),
	'memory', 'set_backend moved it to memory');
check('on memory, moved out of RocksDB');
$node->safe_psql($db, q{SELECT stream_state.set_backend('r', 'rocksdb')});
$node->safe_psql($db, $rows->(100));
check('back on rocksdb');
$node->safe_psql($db, q{BEGIN; SELECT stream_state.set_backend('r', 'memory'); } . $rows->(50) . '; ROLLBACK');
ss_kill9_and_restart($node);
check('back on rocksdb, after a rolled-back move and kill -9');
is($node->safe_psql($db, q{SELECT backend FROM stream_state.queries WHERE name = 'r'}),
	'rocksdb', 'still on rocksdb');

# ------------------------------------------------------- rebuild
$node->safe_psql($db, q{SELECT stream_state.rebuild('r')});
check('after rebuild');

# ------------------------------------- export (from RocksDB's checkpoint) and import
my $c2 = ss_checkpoint($node, $db);
my $file = $node->basedir . '/r.ckpt';
cmp_ok($node->safe_psql($db, "SELECT stream_state.export_checkpoint($c2, '$file')"),
	'>', 0, "export_checkpoint($c2) of a rocksdb query in SQL");
my $result = qq{SELECT string_agg(t::text, ';' ORDER BY k)
	FROM stream_state.window_result('r', '2026-11-24 10:55+00') AS t($cols)};
my $want = $node->safe_psql($db, $result);

my $dst = ss_new_node('rsql_dst');
$dst->safe_psql($db, 'CREATE EXTENSION stream_state');
$dst->safe_psql($db, 'CREATE EXTENSION hll') if $hll;
$dst->safe_psql($db, 'CREATE TABLE ev (k bigint, v numeric, page text, ts timestamptz)');
$dst->safe_psql($db,
	qq{SELECT stream_state.create_query('r', \$\$SELECT k, $aggs FROM ev GROUP BY k\$\$,
		time_column => 'ts', window_size => '1 hour', slide => '10 minutes', lateness => '1 day',
		backend => 'rocksdb')});
$dst->safe_psql($db, "SELECT * FROM stream_state.import_checkpoint('$file')");
ss_wait_applied($dst, $db, 'after import');
is($dst->safe_psql($db, $result), $want,
	'import_checkpoint into a rocksdb query in SQL gives the exported windows');
$dst->stop;

$node->stop;
done_testing();
