
# Copyright (c) stream_state contributors

# The WAL kept for stream_state is bounded by PostgreSQL's
# max_slot_wal_keep_size: when the server invalidates the database's slot,
# the worker says so loudly (a WARNING naming the slot), keeps WAL from there
# on, and every query shows "needs rebuild" and refuses reads until rebuilt,
# instead of serving a state with commits missing.  rebuild() makes it exact
# again.  No checkpoint is taken (checkpoint_interval = 0), so the slot stays
# where the query was created while other tables write WAL.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StreamStateTest;
use Test::More;

my $node = ss_new_node('inval',
	"stream_state.checkpoint_interval = 0\nmax_slot_wal_keep_size = 1MB\nmin_wal_size = 32MB\n");
my $db = 'postgres';

my @at = map { ss_ts(300 * $_ + 60) } (-1 .. 7);

sub check
{
	my ($label, $rows) = @_;
	ss_wait_applied($node, $db, $label);
	ss_check_event_windows(
		$node, $db,
		name => $label,
		query => 'tumble_5m',
		table => 'events',
		key => 'user_id',
		time => 'ts',
		size => 300,
		slide => 300,
		at => \@at,
		total => $rows);
	return;
}

sub insert_rows
{
	my ($from, $to) = @_;
	$node->safe_psql($db, qq{INSERT INTO events (user_id, ts)
  SELECT 1 + g % 4, timestamptz '2026-11-24 10:00:00+00' + ((g * 37) % 2100) * interval '1 second'
	FROM generate_series($from, $to) g});
	return;
}

$node->safe_psql($db, q{
CREATE EXTENSION stream_state;
CREATE TABLE events (user_id bigint, ts timestamptz);
CREATE TABLE filler (x text);
SELECT stream_state.create_query('tumble_5m', 'events', 'user_id', 'ts',
								 window_size => '5 minutes', lateness => '1 day');
CREATE TABLE late_src (k bigint, ts timestamptz);
SELECT stream_state.create_query('with_late', 'SELECT k, count(*) FROM late_src GROUP BY k',
	time_column => 'ts', window_size => '1 minute', late_to => 'late_rows');});
insert_rows(0, 499);
check('before', 500);

# WAL of other tables, past max_slot_wal_keep_size, then a checkpoint of the
# server, which invalidates the slot (terminating the worker that holds it)
my $offset = -s $node->logfile;
for (1 .. 3)
{
	$node->safe_psql($db,
		q{INSERT INTO filler SELECT repeat('x', 100) FROM generate_series(1, 20000); SELECT pg_switch_wal();});
}
$node->safe_psql($db, 'CHECKPOINT');
ok( eval {
		$node->wait_for_log(
			qr/WARNING:  stream_state: replication slot "stream_state_\d+" lost its WAL; it keeps WAL from [0-9A-F\/]+ again/,
			$offset);
		1;
	},
	'the worker warns that the slot lost its WAL and keeps WAL again');
ok( $node->poll_query_until(
		$db, q{SELECT status FROM stream_state.queries WHERE name = 'tumble_5m'},
		'needs rebuild'),
	'the query shows "needs rebuild"');
my ($ret, $out, $err) = $node->psql($db,
	"SELECT stream_state.window_count('tumble_5m', 1::bigint, '2026-11-24 10:01:00+00')");
like($err, qr/ERROR:  the state of continuous query "tumble_5m" was lost/,
	'reading it is an error, not a count with commits missing');
is($node->safe_psql($db,
		q{SELECT wal_status <> 'lost' FROM pg_replication_slots WHERE slot_name LIKE 'stream_state_%'}),
	't', 'the slot keeps WAL again');

# a query made now runs, and its emit helper passes over the lost query
# with late_to (whose late groups cannot be read) without a warning each
# time it runs
$offset = -s $node->logfile;
$node->safe_psql($db, q{
CREATE TABLE em_src (k bigint, ts timestamptz);
SELECT stream_state.create_query('emitting', 'SELECT k, count(*) FROM em_src GROUP BY k',
	time_column => 'ts', window_size => '1 minute', emit_to => 'em_closed');});
for my $m (0 .. 4)
{
	$node->safe_psql($db,
		"INSERT INTO em_src SELECT g % 3, timestamptz '2026-11-24 10:00:00+00' + interval '$m minutes' + g * interval '1 second'
		   FROM generate_series(0, 29) g");
	ok( $node->poll_query_until(
			$db, "SELECT count(*) FROM em_closed WHERE window_end <= timestamptz '2026-11-24 10:00:00+00' + interval '$m minutes'",
			$m * 3),
		"emitting: the $m windows closed so far are emitted");
}
is( $node->safe_psql($db,
		q{SELECT string_agg(status, ',' ORDER BY name) FROM stream_state.queries WHERE name IN ('emitting', 'with_late')}),
	'running,needs rebuild', 'the new query runs, the one with late_to needs rebuild');
unlike(slurp_file($node->logfile, $offset), qr/could not (write the late groups|emit the closed windows)/,
	'no warning about the lost query from the helper');

insert_rows(500, 599);
$node->safe_psql($db, q{SELECT stream_state.rebuild('tumble_5m')});
check('rebuilt', 600);
is($node->safe_psql($db, q{SELECT status FROM stream_state.queries WHERE name = 'tumble_5m'}),
	'running', 'rebuilt: the query runs');

# and it survives a restart (WAL kept from the new position)
insert_rows(600, 649);
$node->stop('immediate');
$node->start;
check('rebuilt, then restarted', 650);

$node->stop;
done_testing();
