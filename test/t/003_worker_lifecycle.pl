
# Copyright (c) stream_state contributors

# The life of the per-database worker.
#
#   - CREATE EXTENSION and a first query start a worker for that database
#     (backend_type 'stream_state worker' in pg_stat_activity) and create the
#     replication slot stream_state_<database oid>; without them there is no
#     worker.
#   - pg_terminate_backend of the worker: it comes back, and nothing committed
#     meanwhile is lost or counted twice.
#   - SIGHUP (reload) keeps the same worker running.
#   - DROP DATABASE of a database that never used stream_state works (the
#     launcher and workers must not hold it up).
#   - A second database gets its own worker and slot; DROP DATABASE of it
#     succeeds at once (the worker must not hold it: "database is being
#     accessed by other users"), its worker and slot go away, and the first
#     database's worker is untouched.
#   - DROP EXTENSION stops the worker and removes the slot; CREATE EXTENSION
#     again starts afresh and counts the rows already in the table.
#
# Data: table events (k int, ts timestamptz); row g has k = g % 10 and time
# 2026-11-24 10:00:00+00 + g seconds, so rows 1 .. 3599 all lie in the one
# hour [10:00, 11:00) that the query's tumbling window covers.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StreamStateTest;
use Test::More;

my $node = ss_new_node('lifecycle');

sub rows_sql
{
	my ($from, $to) = @_;
	return qq{INSERT INTO events (k, ts)
  SELECT g % 10, timestamptz '2026-11-24 10:00:00+00' + g * interval '1 second'
	FROM generate_series($from, $to) g;};
}

# The pids of all stream_state workers, as a sorted comma-separated list.
# A worker is not connected to the database it serves (so that it never holds
# up DROP DATABASE): pg_stat_activity.datname is NULL for it, and the tests
# tell the workers of different databases apart by their pids.
my $workers_sql = q{
SELECT coalesce(string_agg(pid::text, ',' ORDER BY pid), '') FROM pg_stat_activity
 WHERE backend_type = 'stream_state worker'};

sub worker_pids
{
	return $node->safe_psql('postgres', $workers_sql);
}

# Waits until the set of worker pids satisfies the SQL condition $cond on
# the array "p" of pids, e.g. "cardinality(p) = 1".
sub wait_workers
{
	my ($cond, $label) = @_;
	ok( $node->poll_query_until(
			'postgres', qq{
SELECT $cond FROM (SELECT coalesce(array_agg(pid), '{}') AS p FROM pg_stat_activity
					WHERE backend_type = 'stream_state worker') w}),
		$label);
	return;
}

sub slot_count
{
	my ($dboid) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'stream_state_$dboid'"
	);
}

# The hour window [10:00, 11:00) of query q_hour in $dbname against the
# table: every key, exactly $total rows.
sub check_hour
{
	my ($dbname, $total, $label) = @_;
	ss_check_event_windows(
		$node, $dbname,
		name => $label,
		query => 'q_hour',
		table => 'events',
		key => 'k',
		time => 'ts',
		size => 3600,
		slide => 3600,
		at => [ '2026-11-24 10:30:00+00' ],
		total => $total);
	return;
}

sub setup_db
{
	my ($dbname, $table_exists) = @_;
	$node->safe_psql($dbname, 'CREATE TABLE events (k int, ts timestamptz)')
	  unless $table_exists;
	$node->safe_psql(
		$dbname, q{
CREATE EXTENSION stream_state;
SELECT stream_state.create_query('q_hour', 'events', 'k', 'ts',
								 window_size => '1 hour', lateness => '1 day');
});
	return;
}

# DROP DATABASE $dbname, as one test.  DROP DATABASE waits, for ever, for
# every process of the server to absorb a ProcSignalBarrier (a background
# worker does so in CHECK_FOR_INTERRUPTS), and fails after 5 s if a process is
# still connected to the database.  Give it 60 s; if it hangs, say which
# processes hold it up and cancel it rather than hang the whole test.
# Returns whether the database was dropped.
sub drop_database
{
	my ($dbname) = @_;
	my $timed_out;
	my $offset = -s $node->logfile;
	my ($ret, $stdout, $stderr) = $node->psql(
		'postgres', "DROP DATABASE $dbname",
		timeout => 60,
		timed_out => \$timed_out);
	my $result =
	    $timed_out ? 'still running after 60 s'
	  : $ret == 0 ? 'dropped'
	  :             "failed: $stderr";
	is($result, 'dropped', "DROP DATABASE $dbname succeeds within 60 s");
	return 1 if $result eq 'dropped';

	if ($timed_out)
	{
		my %holdouts = map { $_ => 1 } (
			slurp_file($node->logfile, $offset) =~
			  /waiting for backend with PID (\d+) to accept ProcSignalBarrier/g);
		diag "process $_ ("
		  . $node->safe_psql('postgres',
			"SELECT backend_type FROM pg_stat_activity WHERE pid = $_")
		  . ") did not absorb the ProcSignalBarrier of DROP DATABASE $dbname"
		  for sort keys %holdouts;
		$node->safe_psql('postgres',
			"SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query = 'DROP DATABASE $dbname'"
		);
		$node->poll_query_until('postgres',
			"SELECT count(*) FROM pg_stat_activity WHERE query = 'DROP DATABASE $dbname'",
			'0');
	}
	return 0;
}

my $pg_oid = $node->safe_psql('postgres',
	"SELECT oid FROM pg_database WHERE datname = 'postgres'");

### No extension, no worker.
is(worker_pids(), '', 'no worker before CREATE EXTENSION');

### CREATE EXTENSION and a query: a worker and a slot.
setup_db('postgres');
wait_workers('cardinality(p) = 1', 'after CREATE EXTENSION: one worker');
is(slot_count($pg_oid), '1', "slot stream_state_$pg_oid exists");

$node->safe_psql('postgres', rows_sql(1, 100));
ss_wait_applied($node, 'postgres', 'first rows');
check_hour('postgres', 100, 'first rows');
is( $node->safe_psql(
		'postgres',
		q{SELECT stream_state.window_count('q_hour', 3, '2026-11-24 10:30:00+00')}),
	'10',
	'key 3 has 10 events (rows 3, 13, ..., 93)');

### pg_terminate_backend: the worker comes back, nothing is lost.
my $pid1 = worker_pids();
like($pid1, qr/^\d+$/, 'worker is running');
is( $node->safe_psql(
		'postgres', "SELECT pg_terminate_backend($pid1)"),
	't',
	'terminated the worker');
# Committed while there is no worker, or just as it starts again.
$node->safe_psql('postgres', rows_sql(101, 150));
wait_workers("cardinality(p) = 1 AND p[1] <> $pid1",
	'a new worker replaced the terminated one');
$node->safe_psql('postgres', rows_sql(151, 200));
ss_wait_applied($node, 'postgres', 'after terminate');
check_hour('postgres', 200, 'after terminate');
is( $node->safe_psql(
		'postgres',
		q{SELECT stream_state.window_count('q_hour', 3, '2026-11-24 10:30:00+00')}),
	'20',
	'after terminate: key 3 has 20 events (rows 3, 13, ..., 193)');
is( $node->safe_psql(
		'postgres',
		q{SELECT events_applied FROM stream_state.queries WHERE name = 'q_hour'}),
	'200',
	'after terminate: events_applied is 200');

### SIGHUP: same worker, new setting visible.
my $pid2 = worker_pids();
$node->append_conf('postgresql.conf', "stream_state.worker_naptime = 200ms\n");
$node->reload;
ok( $node->poll_query_until(
		'postgres', 'SHOW stream_state.worker_naptime', '200ms'),
	'reload: new worker_naptime is in effect');
$node->safe_psql('postgres', rows_sql(201, 250));
ss_wait_applied($node, 'postgres', 'after reload');
is(worker_pids(), $pid2, 'reload: the same worker is still running');
check_hour('postgres', 250, 'after reload');

### DROP DATABASE of a database that never used stream_state.
$node->safe_psql('postgres', 'CREATE DATABASE plain');
drop_database('plain');

### A second database: its own worker and slot; DROP DATABASE works.
$node->safe_psql('postgres', 'CREATE DATABASE db2');
my $db2_oid = $node->safe_psql('postgres',
	"SELECT oid FROM pg_database WHERE datname = 'db2'");
setup_db('db2');
wait_workers("cardinality(p) = 2 AND $pid2 = ANY (p)",
	'after CREATE EXTENSION in db2: a second worker beside the first');
is(slot_count($db2_oid), '1', "slot stream_state_$db2_oid exists");
$node->safe_psql('db2', rows_sql(1, 30));
ss_wait_applied($node, 'db2', 'db2 rows');
check_hour('db2', 30, 'db2');
# The databases do not see each other's rows.
check_hour('postgres', 250, 'postgres beside db2');

my $db2_dropped = drop_database('db2');
SKIP:
{
	skip 'db2 was not dropped', 2 unless $db2_dropped;
	wait_workers("p = '{$pid2}'",
		"after DROP DATABASE db2: only the first database's worker is left");
	ok( $node->poll_query_until(
			'postgres',
			"SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'stream_state_$db2_oid'",
			'0'),
		"slot stream_state_$db2_oid is gone after DROP DATABASE");
}
$node->safe_psql('postgres', rows_sql(251, 300));
ss_wait_applied($node, 'postgres', 'after DROP DATABASE db2');
check_hour('postgres', 300, 'after DROP DATABASE db2');

### DROP EXTENSION, with q_hour still defined (no CASCADE needed): its
### trigger goes with it, the worker exits and the slot goes away.
$node->safe_psql('postgres', 'DROP EXTENSION stream_state');
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM pg_trigger WHERE tgrelid = 'events'::regclass AND NOT tgisinternal}),
	'0',
	'DROP EXTENSION dropped the trigger of q_hour');
# (db2's worker, if DROP DATABASE db2 failed, is still there.)
wait_workers('cardinality(p) = ' . ($db2_dropped ? 0 : 1) . " AND NOT $pid2 = ANY (p)",
	'after DROP EXTENSION: no worker for postgres');
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'stream_state_$pg_oid'",
		'0'),
	"slot stream_state_$pg_oid is gone after DROP EXTENSION");
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'stream_state\_%'}
	),
	$db2_dropped ? '0' : '1',
	'no stream_state slot is left (but db2\'s if it was not dropped)');

# Inserts keep working without the extension.
$node->safe_psql('postgres', rows_sql(301, 350));

### CREATE EXTENSION again: a new worker, and the query counts the 350 rows
### already in the table.
setup_db('postgres', 1);
wait_workers('cardinality(p) = ' . ($db2_dropped ? 1 : 2),
	'after CREATE EXTENSION again: a worker for postgres again');
is(slot_count($pg_oid), '1', "slot stream_state_$pg_oid exists again");
$node->safe_psql('postgres', rows_sql(351, 400));
ss_wait_applied($node, 'postgres', 'after CREATE EXTENSION again');
check_hour('postgres', 400, 'after CREATE EXTENSION again');
is( $node->safe_psql(
		'postgres',
		q{SELECT events_applied FROM stream_state.queries WHERE name = 'q_hour'}),
	'400',
	'after CREATE EXTENSION again: events_applied is 400 (350 backfilled + 50)');

$node->stop;
done_testing();
