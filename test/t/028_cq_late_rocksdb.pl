
# Copyright (c) stream_state contributors

# late_to on the rocksdb backend: the late groups of a rocksdb query go
# into RocksDB with its state, since such a query restarts from RocksDB's
# own position, not from the checkpoint file (whose LATE blocks hold memory
# queries' groups only).  Checked as in 027: kill -9 at random moments
# (often while the helper is inserting), rolled-back and prepared
# transactions, checkpoints; every group inserted once and equal to the
# query over the late rows of its commit, key and pane.  Then a table that
# cannot be written, across a checkpoint and kill -9 and across a clean
# restart (RocksDB flushes at close, so it is then ahead of every
# checkpoint: the groups since come from RocksDB alone), and set_backend
# to memory and back with groups waiting, across a crash.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StreamStateTest;
use Test::More;
use Time::HiRes qw(usleep);

# checkpoints only when asked, so that RocksDB can be ahead of the newest
my $node = ss_new_node('late_rdb', "stream_state.checkpoint_interval = 0\nrestart_after_crash = on\n");
my $db = 'postgres';

$node->safe_psql($db, 'CREATE EXTENSION stream_state');
$node->safe_psql($db, 'CREATE TABLE ev (r int, k int, v int, ts timestamptz)');
$node->safe_psql($db,
	q{SELECT stream_state.create_query('l', $$SELECT k, count(*) AS n, sum(v) AS s FROM ev GROUP BY k$$,
		time_column => 'ts', window_size => '1 minute', slide => '10 seconds', late_to => 'late_rows',
		backend => 'rocksdb')});
is($node->safe_psql($db, q{SELECT backend FROM stream_state.queries WHERE name = 'l'}),
	'rocksdb', 'the query with late_to is on the rocksdb backend');
# a slow table (5 ms a row, so that a kill lands in a helper's transaction)
# and a switch that makes it fail
$node->safe_psql($db, q{
CREATE TABLE blocked (on_ boolean);
CREATE FUNCTION slow_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF EXISTS (SELECT 1 FROM public.blocked) THEN
		RAISE EXCEPTION 'late_rows is blocked';
	END IF;
	PERFORM pg_sleep(0.005);
	RETURN NEW;
END $$;
CREATE TRIGGER slow BEFORE INSERT ON late_rows FOR EACH ROW EXECUTE FUNCTION slow_row();
});
# the watermark at noon: every row before 11:00 is late from then on
$node->safe_psql($db, q{INSERT INTO ev VALUES (0, 0, 0, '2026-11-24 12:00+00')});

# late rows of round r: keys 0..4, times spread over 10:00 to 11:00
my $rows = sub {
	my ($r, $tag) = @_;
	return "INSERT INTO ev SELECT $r, (random() * 4)::int, $tag * 1000 + g,
			'2026-11-24 10:00+00'::timestamptz + (random() * 3599)::int * interval '1 second'
			FROM generate_series(1, 40) g";
};

# late groups written, distinct (commit, key, pane), rows that differ from
# the late rows of ev grouped by transaction (r and the tag in v), key and
# pane, the late events counted, and the late rows of ev
my $check = q{
WITH truth AS (
	SELECT k, count(*) AS n, sum(v) AS s, date_bin('10 seconds', ts, 'epoch') AS events_from
	  FROM ev WHERE ts < '2026-11-24 11:00+00' GROUP BY r, v / 1000, k, 4),
got AS (SELECT k, n, s, events_from FROM late_rows)
SELECT (SELECT count(*) FROM late_rows) || ' ' ||
	   (SELECT count(DISTINCT (commit_lsn, k, events_from)) FROM late_rows) || ' ' ||
	   (SELECT count(*) FROM ((SELECT * FROM got EXCEPT ALL SELECT * FROM truth)
							  UNION ALL (SELECT * FROM truth EXCEPT ALL SELECT * FROM got)) d) || ' ' ||
	   (SELECT late_events FROM stream_state.queries WHERE name = 'l') || ' ' ||
	   (SELECT count(*) FROM ev WHERE ts < '2026-11-24 11:00+00')};

my $wait_written = sub {
	my ($what) = @_;
	ok( $node->poll_query_until(
			$db, q{SELECT (SELECT coalesce(sum(n), 0) FROM late_rows) = late_events
				FROM stream_state.queries WHERE name = 'l'}),
		"$what: every late group is written");
};
my $check_exact = sub {
	my ($what) = @_;
	my ($n, $distinct, $diff, $late, $truth) = split / /, $node->safe_psql($db, $check);
	ok($n > 0 && $n == $distinct && $diff == 0 && $late == $truth,
		"$what: $n late groups written, each once ($distinct distinct), $diff differ, $late late events of $truth");
	return $n;
};

srand(20261125);
my $midway = 0;
for my $round (1 .. 10)
{
	my $t = $round * 10;
	my $sql = '';
	$sql .= $rows->($round, $t + 1) . ";\n";
	$sql .= "BEGIN; " . $rows->($round, $t + 2) . "; SAVEPOINT a; " . $rows->($round, $t + 3)
	  . "; ROLLBACK TO SAVEPOINT a; COMMIT;\n";
	$sql .= "BEGIN; " . $rows->($round, $t + 4) . "; ROLLBACK;\n";
	$sql .= "BEGIN; " . $rows->($round, $t + 5) . "; PREPARE TRANSACTION 'p$round'; COMMIT PREPARED 'p$round';\n";
	$sql .= "BEGIN; " . $rows->($round, $t + 6) . "; PREPARE TRANSACTION 'q$round';\n";
	$sql .= $rows->($round, $t + 7) . ";\n";
	$node->safe_psql($db, $sql);
	# in every second round a checkpoint (it flushes RocksDB) amid the writes
	$node->safe_psql($db, 'SELECT stream_state.checkpoint()') if $round % 2;
	usleep(int(rand(800_000)));
	$midway++
	  if $node->safe_psql($db,
		q{SELECT (SELECT coalesce(sum(n), 0) FROM late_rows) < late_events
			FROM stream_state.queries WHERE name = 'l'}) eq 't';
	ss_kill9_and_restart($node);
	$node->safe_psql($db, ($round % 2 ? 'COMMIT' : 'ROLLBACK') . " PREPARED 'q$round'");
	ss_wait_applied($node, $db, "round $round");
	$wait_written->("round $round");
	$check_exact->("round $round");
}
ok($node->log_contains(qr/restored checkpoint \d+ of database/), 'some restarts restored a checkpoint');
note("$midway of 10 kills came before every late group was written");

# the table cannot be written: the groups wait in state
my $pending = q{SELECT count(*) FROM stream_state._late_result('l',
	(SELECT coalesce(late_written_until, '0/0') FROM stream_state.queries WHERE name = 'l'),
	'FFFFFFFF/FFFFFFFF')
	AS t(commit_lsn pg_lsn, committed_at timestamptz, events_from timestamptz, events_to timestamptz,
		 k int, n bigint, s bigint)};
my $offset = -s $node->logfile;
$node->safe_psql($db, 'INSERT INTO blocked VALUES (true)');
$node->safe_psql($db, $rows->(11, 111));
ok( ss_wait_log(
		$node,
		qr/WARNING:  stream_state: could not write the late groups of continuous query \d+: late_rows is blocked/,
		$offset),
	'a table that fails: the log says why');
my $waiting = $node->safe_psql($db, $pending);
ok($waiting > 0, "the late groups wait in state ($waiting)");

# a checkpoint, then kill -9: the file holds no group of a rocksdb query,
# RocksDB (flushed by the checkpoint) does
$node->safe_psql($db, 'SELECT stream_state.checkpoint()');
my $ckpt = $node->safe_psql($db, 'SELECT max(id) FROM stream_state.checkpoints');
ss_kill9_and_restart($node);
ss_wait_applied($node, $db, 'kill -9 while blocked');
ok($node->log_contains(qr/restored checkpoint $ckpt of database/, $offset),
	'the restart restored the checkpoint');
is($node->safe_psql($db, $pending), $waiting, 'the waiting late groups came back from RocksDB');

# more late rows and a clean restart: RocksDB is flushed when the worker
# closes it, past the newest checkpoint, and the query goes on from there;
# the groups of the commits since the checkpoint are in RocksDB only
$node->safe_psql($db, $rows->(12, 121));
ss_wait_applied($node, $db, 'more late rows');
my $waiting2 = $node->safe_psql($db, $pending);
ok($waiting2 > $waiting, "more late groups wait ($waiting2)");
$offset = -s $node->logfile;
$node->restart;
ss_wait_applied($node, $db, 'clean restart while blocked');
ok($node->log_contains(qr/restored checkpoint $ckpt of database/, $offset),
	'the clean restart restored the same checkpoint');
is($node->safe_psql($db, $pending), $waiting2,
	'the late groups since the checkpoint came back from RocksDB');

# set_backend to memory and back with groups waiting, across a crash: on
# memory they are in the memory store (and checkpoint files), back on
# rocksdb in RocksDB again
$node->safe_psql($db, q{SELECT stream_state.set_backend('l', 'memory')});
$node->safe_psql($db, $rows->(13, 131));
ss_wait_applied($node, $db, 'moved to memory');
my $waiting3 = $node->safe_psql($db, $pending);
ok($waiting3 > $waiting2, "on memory, more late groups wait ($waiting3)");
$node->safe_psql($db, 'SELECT stream_state.checkpoint()');
ss_kill9_and_restart($node);
ss_wait_applied($node, $db, 'kill -9 on memory');
is($node->safe_psql($db, $pending), $waiting3, 'on memory: the waiting groups came back');
$node->safe_psql($db, q{SELECT stream_state.set_backend('l', 'rocksdb')});
$node->safe_psql($db, $rows->(14, 141));
ss_wait_applied($node, $db, 'moved back to rocksdb');
my $waiting4 = $node->safe_psql($db, $pending);
ok($waiting4 > $waiting3, "back on rocksdb, more late groups wait ($waiting4)");
$node->safe_psql($db, 'SELECT stream_state.checkpoint()');
$node->restart;
ss_wait_applied($node, $db, 'restart back on rocksdb');
is($node->safe_psql($db, $pending), $waiting4, 'back on rocksdb: the waiting groups came back');
is($node->safe_psql($db, q{SELECT backend FROM stream_state.queries WHERE name = 'l'}),
	'rocksdb', 'the query is on rocksdb again');

$node->safe_psql($db, 'DELETE FROM blocked');
$wait_written->('unblocked');
my $n = $check_exact->('after the block');
is($node->safe_psql($db, $pending), '0', 'nothing waits any more');

# written groups leave RocksDB too: a restart brings none back, writes
# nothing again
$node->restart;
ss_wait_applied($node, $db, 'restart');
is($node->safe_psql($db, $pending), '0', 'a restart brings no written group back');
usleep(500_000);
is($node->safe_psql($db, 'SELECT count(*) FROM late_rows'), $n, 'a restart writes nothing again');

# alter_query(late_to => '') drops the waiting groups, in RocksDB too
$node->safe_psql($db, 'INSERT INTO blocked VALUES (true)');
$node->safe_psql($db, $rows->(15, 151));
ss_wait_applied($node, $db, 'blocked again');
ok($node->safe_psql($db, $pending) > 0, 'groups wait again');
$node->safe_psql($db, q{SELECT stream_state.alter_query('l', late_to => '')});
$node->safe_psql($db, q{SELECT stream_state.alter_query('l', late_to => 'late_rows')});
ss_wait_applied($node, $db, 'late_to off and on');
is($node->safe_psql($db, $pending), '0', 'late_to off drops the waiting groups');
$node->restart;
ss_wait_applied($node, $db, 'restart after late_to off');
is($node->safe_psql($db, $pending), '0', 'and RocksDB holds none of them');

$node->stop;
done_testing();
