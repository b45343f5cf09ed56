
# Copyright (c) stream_state contributors

# WAL kept for stream_state is bounded even while a query is paused (DESIGN
# invariant 7).  A query paused because memory is full keeps the WAL since
# it paused; once that exceeds stream_state.max_kept_wal, the worker gives it
# up: a WARNING names it, its status becomes "needs rebuild", its state is
# dropped, a checkpoint moves the slot past the paused point, and the other
# queries go on untouched.  rebuild() brings it back exactly once memory is
# there.
#
# Every row has event time 2026-11-24 10:00:00+00, so each distinct key of a
# query costs one state entry (as in 004_memory_full.pl).

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StreamStateTest;
use Test::More;

my $node = ss_new_node('kept',
	"stream_state.memory_limit = 2MB\nstream_state.max_kept_wal = 4MB\nstream_state.checkpoint_interval = 0\n");
my $db = 'postgres';

sub keys_sql
{
	my ($table, $from, $to) = @_;
	return qq{INSERT INTO $table (k, ts)
  SELECT g, '2026-11-24 10:00:00+00' FROM generate_series($from, $to) g;};
}

sub status
{
	my ($query) = @_;
	return $node->safe_psql($db, "SELECT status FROM stream_state.queries WHERE name = '$query'");
}

sub check_query
{
	my ($query, $table, $total, $label) = @_;
	ss_check_hour_window($node, $db, $label, $query, $table, $total);
	return;
}

$node->safe_psql(
	$db, q{
CREATE EXTENSION stream_state;
CREATE TABLE small (k bigint, ts timestamptz);
CREATE TABLE fill (k bigint, ts timestamptz);
CREATE TABLE filler (x text);
SELECT stream_state.create_query('q_small', 'small', 'k', 'ts', window_size => '1 hour', lateness => '1 day');
SELECT stream_state.create_query('q_fill', 'fill', 'k', 'ts', window_size => '1 hour', lateness => '1 day');
});
$node->safe_psql($db, keys_sql('small', 0, 99));

# q_fill grows by 1,000 keys per transaction until memory runs out
my $paused;
BATCH: for my $b (1 .. 200)
{
	$node->safe_psql($db, keys_sql('fill', ($b - 1) * 1000, $b * 1000 - 1));
	for (1 .. 60)
	{
		next BATCH
		  if $node->safe_psql($db, "SELECT stream_state.wait_applied(NULL, '2 seconds')") eq 't';
		if (status('q_fill') eq 'paused: memory full')
		{
			$paused = $b;
			last BATCH;
		}
	}
	last;
}
ok(defined $paused, 'q_fill ran out of memory and paused');
my $slot_before = $node->safe_psql($db,
	"SELECT restart_lsn FROM pg_replication_slots WHERE slot_name LIKE 'stream_state_%'");

# WAL of another table, past max_kept_wal, while q_fill stays paused
my $offset = -s $node->logfile;
$node->safe_psql($db, q{INSERT INTO filler SELECT repeat('x', 200) FROM generate_series(1, 40000)});
$node->safe_psql($db, keys_sql('small', 100, 199));
ok( eval {
		$node->wait_for_log(
			qr/WARNING:  stream_state: continuous query "q_fill" was paused for too long and needs a rebuild/,
			$offset);
		1;
	},
	'the worker warns that q_fill held back more than max_kept_wal');
ok($node->log_contains(qr/It held back \d+ MB of WAL, more than stream_state.max_kept_wal \(4 MB\)/, $offset),
	'the warning says how much WAL and the limit');
ok($node->poll_query_until($db, "SELECT status FROM stream_state.queries WHERE name = 'q_fill'", 'needs rebuild'),
	'q_fill shows "needs rebuild"');
ok( $node->poll_query_until(
		$db,
		"SELECT restart_lsn > '$slot_before'::pg_lsn FROM pg_replication_slots WHERE slot_name LIKE 'stream_state_%'"),
	'a checkpoint moved the slot past where q_fill paused: the WAL is released');
is($node->safe_psql($db, "SELECT keys FROM stream_state.queries WHERE name = 'q_fill'"),
	'0', "q_fill's state is dropped");

ss_wait_applied($node, $db, 'q_small goes on');
check_query('q_small', 'small', 200, 'q_small went on');
my ($ret, $out, $err) = $node->psql($db,
	"SELECT stream_state.window_count('q_fill', 1::bigint, '2026-11-24 10:30:00+00')");
like($err, qr/ERROR:  the state of continuous query "q_fill" was lost/,
	'reading q_fill is an error until it is rebuilt');

# room for q_fill: most of its rows go (retention), then rebuild
$node->safe_psql($db, 'DELETE FROM fill WHERE k >= 1000');
$node->safe_psql($db, q{SELECT stream_state.rebuild('q_fill')});
ss_wait_applied($node, $db, 'q_fill rebuilt');
is(status('q_fill'), 'running', 'rebuilt: q_fill runs');
check_query('q_fill', 'fill', 1000, 'q_fill rebuilt');
check_query('q_small', 'small', 200, 'q_small after the rebuild of q_fill');

$node->stop;
done_testing();
