
# Copyright (c) stream_state contributors

# late_to exactly once: the late groups of a continuous query in SQL are
# inserted into their table once each, and equal the query over the late
# rows of each commit, key and pane, across kill -9 at random moments (often
# while the helper is inserting them), rolled-back and prepared
# transactions, checkpoints and restarts; and a table that cannot be
# written keeps the groups in state (and in checkpoints) until it can.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StreamStateTest;
use Test::More;
use Time::HiRes qw(usleep);

my $node = ss_new_node('late', "stream_state.checkpoint_interval = 2\nrestart_after_crash = on\n");
my $db = 'postgres';

$node->safe_psql($db, 'CREATE EXTENSION stream_state');
$node->safe_psql($db, 'CREATE TABLE ev (r int, k int, v int, ts timestamptz)');
$node->safe_psql($db,
	q{SELECT stream_state.create_query('l', $$SELECT k, count(*) AS n, sum(v) AS s FROM ev GROUP BY k$$,
		time_column => 'ts', window_size => '1 minute', slide => '10 seconds', late_to => 'late_rows')});
# a slow table: each row takes 5 ms, so that a kill lands in the middle of
# a helper's transaction; and a switch that makes it fail
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
# WAL positions well ahead of a fresh cluster's (see pg_dump below)
for (1 .. 6)
{
	$node->safe_psql($db, 'CREATE TABLE filler (); DROP TABLE filler; SELECT pg_switch_wal()');
}
# the watermark at noon: every row before 11:00 is late from then on
$node->safe_psql($db, q{INSERT INTO ev VALUES (0, 0, 0, '2026-11-24 12:00+00')});

# late rows of round r: keys 0..4, times spread over 10:00 to 11:00 (panes
# of 10 s), in several transactions of one session
my $rows = sub {
	my ($r, $tag) = @_;
	return "INSERT INTO ev SELECT $r, (random() * 4)::int, $tag * 1000 + g,
			'2026-11-24 10:00+00'::timestamptz + (random() * 3599)::int * interval '1 second'
			FROM generate_series(1, 40) g";
};

# late groups written, distinct (commit, key, pane), rows that differ from
# the late rows of ev grouped by transaction (r and the tag in v), key and
# pane, the late rows counted, and those of ev
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

srand(20261124);
my $midway = 0;
for my $round (1 .. 10)
{
	# each transaction its own tag (v / 1000), so that a group is one commit's
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
	usleep(int(rand(800_000)));
	$midway++
	  if $node->safe_psql($db,
		q{SELECT (SELECT coalesce(sum(n), 0) FROM late_rows) < late_events
			FROM stream_state.queries WHERE name = 'l'}) eq 't';
	ss_kill9_and_restart($node);
	# the prepared transaction survived the crash: half of them commit now
	$node->safe_psql($db, ($round % 2 ? 'COMMIT' : 'ROLLBACK') . " PREPARED 'q$round'");
	ss_wait_applied($node, $db, "round $round");
	$wait_written->("round $round");
	my ($n, $distinct, $diff, $late, $truth) = split / /, $node->safe_psql($db, $check);
	ok($n > 0 && $n == $distinct && $diff == 0 && $late == $truth,
		"round $round: $n late groups written, each once ($distinct distinct), $diff differ, $late late events of $truth");
	ss_checkpoint($node, $db) if $round % 2;
}
ok($node->log_contains(qr/restored checkpoint \d+ of database/), 'some restarts restored a checkpoint');
note("$midway of 10 kills came before every late group was written");

# the table cannot be written: the helper says why and keeps trying; the
# groups wait in state, go into a checkpoint and come back from it after a
# crash, then go once the table can be written
my $offset = -s $node->logfile;
$node->safe_psql($db, 'INSERT INTO blocked VALUES (true)');
$node->safe_psql($db, $rows->(11, 111));
ok( ss_wait_log(
		$node,
		qr/WARNING:  stream_state: could not write the late groups of continuous query \d+: late_rows is blocked/,
		$offset),
	'a table that fails: the log says why');
my $pending = q{SELECT count(*) FROM stream_state._late_result('l',
	(SELECT late_written_until FROM stream_state.queries WHERE name = 'l'), 'FFFFFFFF/FFFFFFFF')
	AS t(commit_lsn pg_lsn, committed_at timestamptz, events_from timestamptz, events_to timestamptz,
		 k int, n bigint, s bigint)};
my $waiting = $node->safe_psql($db, $pending);
ok($waiting > 0, "the late groups wait in state ($waiting)");
ss_checkpoint($node, $db);
ss_kill9_and_restart($node);
ss_wait_applied($node, $db, 'restart while blocked');
ok($node->log_contains(qr/restored checkpoint \d+ of database/, $offset), 'the restart restored the checkpoint');
is($node->safe_psql($db, $pending), $waiting, 'the waiting late groups came back from the checkpoint');
$node->safe_psql($db, 'DELETE FROM blocked');
$wait_written->('unblocked');
my ($n, $distinct, $diff, $late, $truth) = split / /, $node->safe_psql($db, $check);
ok($n == $distinct && $diff == 0 && $late == $truth,
	"after the block: $n late groups, each once ($distinct distinct), $diff differ, $late late events of $truth");
is($node->safe_psql($db, $pending), '0', 'nothing waits any more');

# a restart with nothing new writes nothing more
$node->restart;
ss_wait_applied($node, $db, 'restart');
usleep(500_000);
is($node->safe_psql($db, 'SELECT count(*) FROM late_rows'), $n, 'a restart writes nothing again');

# pg_dump into a fresh cluster, whose WAL positions are far behind this
# one's: late_progress is not dumped, so the restored query writes the late
# groups of its own commits (a dumped position would hide them)
my $dump = $node->basedir . '/late.sql';
$node->command_ok([ 'pg_dump', '-Fp', '-f', $dump, '-d', $node->connstr($db) ], 'pg_dump of the database');
my $new = ss_new_node('late_new');
$new->safe_psql('postgres', 'CREATE DATABASE restored');
my ($stdout, $stderr);
ok( IPC::Run::run(
		[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', $dump, '-d', $new->connstr('restored') ],
		'>', \$stdout, '2>', \$stderr),
	'psql replays the dump');
my $written = $node->safe_psql($db, 'SELECT max(commit_lsn) FROM late_rows');
is($new->safe_psql('restored', "SELECT pg_current_wal_lsn() < '$written'"), 't',
	'the new cluster is behind the written positions');
is($new->safe_psql('restored', 'SELECT count(*) FROM stream_state.late_progress'), '0',
	'no late_to progress came with the dump');
$new->safe_psql('restored', 'TRUNCATE late_rows');
$new->safe_psql('restored', $rows->(12, 121));
ss_wait_applied($new, 'restored', 'restored');
ok( $new->poll_query_until(
		'restored', q{SELECT (SELECT count(*) FROM late_rows) > 0
			AND (SELECT coalesce(sum(n), 0) FROM late_rows) = late_events
			FROM stream_state.queries WHERE name = 'l'}),
	'the restored query writes its late groups');
is($new->safe_psql('restored', 'SELECT late_events FROM stream_state.queries WHERE name = \'l\''), '40',
	'its 40 late events, all of them');
$new->stop;

$node->stop;
done_testing();
