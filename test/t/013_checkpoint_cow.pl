
# Copyright (c) stream_state contributors

# Checkpoints do not stop the worker: scanner processes copy the state
# while the worker goes on applying, and the worker copies an entry itself
# (copy-on-write) just before it changes one the scanner has not reached.
# Here a session keeps inserting into existing keys, new keys and new panes
# (which also closes windows, so the worker evicts during the copy) while
# checkpoints are taken; after each, an immediate stop and a start restore
# that checkpoint plus the WAL after it.  A snapshot that held any entry
# with a value from after its position would count those commits twice; one
# that missed an entry would count it short: either way the comparison with
# the table fails.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StreamStateTest;
use Test::More;
use Time::HiRes qw(usleep);

my $node = ss_new_node('cow',
	"stream_state.checkpoint_interval = 0\nlog_min_messages = debug1\n");
my $db = 'postgres';

$node->safe_psql($db, q{
CREATE EXTENSION stream_state;
CREATE TABLE events (k bigint, ts timestamptz);
-- 200,000 keys in the pane [10:00, 10:01)
INSERT INTO events SELECT g, '2026-11-24 10:00:30+00' FROM generate_series(1, 200000) g;
SELECT stream_state.create_query('per_minute', 'events', 'k', 'ts',
								 window_size => '2 minutes', slide => '1 minute',
								 lateness => '3 minutes');});

# Every live (key, pane) of the state against a count of the table's rows
# in the same panes (every pane from the oldest one still kept), and the
# number of rows in those panes.
sub check
{
	my ($label) = @_;
	ss_wait_applied($node, $db, $label);
	my $cte = q{
WITH got AS (SELECT key, pane_start, count FROM stream_state.state WHERE query = 'per_minute'),
want AS (
	SELECT k::text AS key, date_trunc('minute', ts) AS pane_start, count(*) AS count
	  FROM events
	 WHERE ts >= (SELECT min(pane_start) FROM got)
	 GROUP BY 1, 2)};
	my $rows = $node->safe_psql($db, qq{$cte SELECT sum(count) FROM want});
	is( $node->safe_psql(
			$db, qq{$cte
SELECT (SELECT count(*) FROM (SELECT * FROM got EXCEPT ALL SELECT * FROM want) a) || ' only in state, '
	|| (SELECT count(*) FROM (SELECT * FROM want EXCEPT ALL SELECT * FROM got) b) || ' only in the table, '
	|| (SELECT sum(count) FROM got) || ' events'}),
		"0 only in state, 0 only in the table, $rows events",
		"$label: every live (key, pane) equals the recomputation from the table ($rows events)");
	cmp_ok($rows, '>', 1000, "$label: the live panes hold the rows the writer inserted");
	return;
}

my $minute = 1;

# One round: a checkpoint while a writer inserts, copied by $scanners
# scanner processes, an immediate stop, and the restore checked.
sub round_of
{
	my ($round, $scanners) = @_;

	# a writer: existing keys again, new keys, and a later pane every round
	my $w = $node->background_psql($db, on_error_stop => 0);
	$w->query_until(qr/writing/, qq{
\\echo writing
DO \$\$
BEGIN
	LOOP
		INSERT INTO events
		SELECT 1 + (random() * 199999)::int,
			   timestamptz '2026-11-24 10:00:30+00' + interval '1 minute' * $minute
		  FROM generate_series(1, 200);
		INSERT INTO events
		SELECT 200000 + (random() * 1000000)::int,
			   timestamptz '2026-11-24 10:00:30+00' + interval '1 minute' * ($minute + 1)
		  FROM generate_series(1, 20);
		COMMIT;
		PERFORM pg_sleep(0.001);
	END LOOP;
END
\$\$;
});
	usleep(300_000);
	my $offset = -s $node->logfile;
	my $id = $node->safe_psql($db, 'SELECT stream_state.checkpoint()');
	ok( $node->log_contains(
			qr/checkpoint $id: $scanners scanners? copied \d+ keys, the worker \d+ on write/, $offset),
		"round $round: checkpoint $id was copied by $scanners scanner process(es)");
	usleep(200_000);
	$node->stop('immediate');
	ss_bg_abandon($w);
	$node->start;
	ok( eval { $node->wait_for_log(qr/stream_state: restored checkpoint $id of database/, $offset); 1 },
		"round $round: checkpoint $id restored");
	check("round $round");
	$minute += 2;
	return;
}

round_of($_, 2) for 1 .. 4;

# one free background worker slot (the launchers and the worker take three):
# one scanner copies every partition
$node->append_conf('postgresql.conf', "max_worker_processes = 4\n");
$node->restart;
round_of(5, 1);

my $cow = 0;
my $log = slurp_file($node->logfile);
$cow += $1 while $log =~ /the worker (\d+) on write/g;
ok($cow > 0, "the worker copied entries on write during the checkpoints ($cow)");

$node->stop;
done_testing();
