
# Copyright (c) stream_state contributors

# Nothing is lost when the memory for state runs out.
#
# With stream_state.memory_limit = 2MB (the minimum is 1MB), a query that
# needs more must be paused, say so in stream_state.queries
# ('paused: memory full') and in the server log, keep its WAL, and resume
# when space returns, applying every event exactly once.  Space returns in
# two ways here:
#   A. another query that holds memory is dropped (stream_state.drop_query);
#   B. the server restarts with a larger memory_limit.
# Writers never wait for the worker: inserts keep committing while a query
# is paused.
#
# Every row has event time 2026-11-24 10:00:00+00, so all keys of a query
# share one pane and every distinct key costs one state entry.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StreamStateTest;
use Test::More;

# Two nodes, one per way space returns, so that a failure of one does not
# hide the result of the other.  $node is the one the helpers use.
my $node;
my $db = 'postgres';

# Rows with keys $from .. $to, each $times times, into $table.
sub keys_sql
{
	my ($table, $from, $to, $times) = @_;
	$times = 1 unless defined $times;
	return qq{INSERT INTO $table (k, ts)
  SELECT g, '2026-11-24 10:00:00+00'
	FROM generate_series($from, $to) g, generate_series(1, $times);};
}

sub status
{
	my ($query) = @_;
	return $node->safe_psql($db,
		"SELECT status FROM stream_state.queries WHERE name = '$query'");
}

# The one hour window [10:00, 11:00) of $query against $table.
sub check_query
{
	my ($query, $table, $total, $label) = @_;
	ss_check_hour_window($node, $db, $label, $query, $table, $total);
	is( $node->safe_psql(
			$db,
			"SELECT events_applied FROM stream_state.queries WHERE name = '$query'"
		),
		$total,
		"$label: $query has applied $total events");
	return;
}

###
### A. Space returns when another query is dropped.
###
$node = ss_new_node('memory_drop', "stream_state.memory_limit = 2MB\n");
is($node->safe_psql($db, 'SHOW stream_state.memory_limit'),
	'2MB', 'A: memory_limit is 2MB');
$node->safe_psql(
	$db, q{
CREATE EXTENSION stream_state;
CREATE TABLE hold (k bigint, ts timestamptz);
CREATE TABLE fill (k bigint, ts timestamptz);
SELECT stream_state.create_query('q_hold', 'hold', 'k', 'ts',
								 window_size => '1 hour', lateness => '1 day');
SELECT stream_state.create_query('q_fill', 'fill', 'k', 'ts',
								 window_size => '1 hour', lateness => '1 day');
});

# q_hold takes 5,000 entries (a fraction of 2MB).
$node->safe_psql($db, keys_sql('hold', 0, 4999));
ss_wait_applied($node, $db, 'q_hold filled');
check_query('q_hold', 'hold', 5000, 'q_hold filled');

# q_fill takes batches of 1,000 new keys, one transaction each, until its
# memory runs out.  Up to 200 batches (200,000 keys: far more than 2MB can
# hold).  After each batch: either the worker catches up, or q_fill is
# paused and the worker cannot get past that batch's commit.
my $paused_at;
BATCH: for my $b (1 .. 200)
{
	$node->safe_psql($db, keys_sql('fill', ($b - 1) * 1000, $b * 1000 - 1));
	for my $try (1 .. 60)
	{
		next BATCH
		  if $node->safe_psql($db,
			"SELECT stream_state.wait_applied(NULL, '2 seconds')") eq 't';
		if (status('q_fill') eq 'paused: memory full')
		{
			$paused_at = $b;
			last BATCH;
		}
	}
	last;    # neither caught up nor paused for 2 minutes: stop, fail below
}
ok(defined $paused_at, 'q_fill ran out of memory within 200,000 keys');
$paused_at = 0 unless defined $paused_at;
note "q_fill paused at batch $paused_at";

is(status('q_fill'), 'paused: memory full',
	"q_fill's status says it is paused");
ok($node->wait_for_log(qr/memory full/), 'the server log says memory is full');
like(slurp_file($node->logfile), qr/memory full: continuous query "q_fill" paused/,
	'the log line names q_fill');

# A commit is applied all or nothing: q_fill holds exactly the batches
# before the paused one.
is( $node->safe_psql(
		$db,
		q{SELECT events_applied || ' events, ' || (SELECT count(*) FROM stream_state.state WHERE query = 'q_fill') || ' entries' FROM stream_state.queries WHERE name = 'q_fill'}
	),
	($paused_at - 1) * 1000 . ' events, ' . ($paused_at - 1) * 1000 . ' entries',
	'while paused: q_fill holds exactly the ' . ($paused_at - 1) . ' batches before the paused one');

# The state that was applied can still be read (a fresh session has no
# commits of its own to wait for under read_consistency = session).
is( $node->safe_psql(
		$db,
		q{SELECT sum(count) FROM stream_state.window_counts('q_hold', '2026-11-24 10:30:00+00')}
	),
	'5000',
	'while paused: q_hold still reads 5000 events');

# Writers do not wait for a paused worker: one more batch of new keys into
# fill, and 100 more rows for existing keys into hold, both commit now.
$node->safe_psql($db,
	keys_sql('fill', $paused_at * 1000, ($paused_at + 1) * 1000 - 1));
$node->safe_psql($db, keys_sql('hold', 0, 99));
is( $node->safe_psql(
		$db, "SELECT stream_state.wait_applied(NULL, '1 second')"),
	'f',
	'while paused: the worker does not get past the paused commit');

# Dropping q_hold frees its 5,000 entries; q_fill needs 2,000 more.
$node->safe_psql($db, q{SELECT stream_state.drop_query('q_hold')});
# Bounded wait (the worker retries a paused commit about once a second).
is( $node->safe_psql(
		$db, "SELECT stream_state.wait_applied(NULL, '60 seconds')"),
	't',
	'after drop_query: the worker gets past the paused commit within 60 s');
is(status('q_fill'), 'running', 'after drop_query: q_fill runs again');
my $fill_total = ($paused_at + 1) * 1000;
check_query('q_fill', 'fill', $fill_total, 'after drop_query');
is( $node->safe_psql(
		$db,
		q{SELECT count(*) FROM stream_state.window_counts('q_fill', '2026-11-24 10:30:00+00')}
	),
	$fill_total,
	"after drop_query: q_fill has all $fill_total keys");

$node->stop;

###
### B. Space returns when the server restarts with a larger memory_limit.
###
$node = ss_new_node('memory_restart', "stream_state.memory_limit = 2MB\n");
is($node->safe_psql($db, 'SHOW stream_state.memory_limit'),
	'2MB', 'B: memory_limit is 2MB');
$node->safe_psql(
	$db, q{
CREATE EXTENSION stream_state;
CREATE TABLE big (k bigint, ts timestamptz);
CREATE TABLE small (k bigint, ts timestamptz);
SELECT stream_state.create_query('q_small', 'small', 'k', 'ts',
								 window_size => '1 hour', lateness => '1 day');
SELECT stream_state.create_query('q_big', 'big', 'k', 'ts',
								 window_size => '1 hour', lateness => '1 day');
});
# A small query that fits, to check it comes through the restart too.
$node->safe_psql($db, keys_sql('small', 0, 99, 2));
ss_wait_applied($node, $db, 'B: q_small');
check_query('q_small', 'small', 200, 'B: before the big insert');
# 200,000 distinct keys in one transaction: more than 2MB can hold.
$node->safe_psql($db, keys_sql('big', 0, 199999));
ok($node->poll_query_until($db,
		"SELECT status FROM stream_state.queries WHERE name = 'q_big'",
		'paused: memory full'),
	'q_big is paused: memory full');
ok($node->wait_for_log(qr/memory full: continuous query "q_big" paused/),
	'the server log says memory is full for q_big');

is( $node->safe_psql(
		$db,
		q{SELECT events_applied || ' events, ' || (SELECT count(*) FROM stream_state.state WHERE query = 'q_big') || ' entries' FROM stream_state.queries WHERE name = 'q_big'}
	),
	'0 events, 0 entries',
	'while paused: nothing of the 200,000-key commit is applied (all or nothing)');

# Still committing while paused: keys 0 .. 9 three more times each.
$node->safe_psql($db, keys_sql('big', 0, 9, 3));

$node->append_conf('postgresql.conf', "stream_state.memory_limit = 64MB\n");
$node->restart;
is($node->safe_psql($db, 'SHOW stream_state.memory_limit'),
	'64MB', 'memory_limit is now 64MB');

ss_wait_applied($node, $db, 'after restart with 64MB');
is(status('q_big'), 'running', 'q_big runs after the restart');
is(status('q_small'), 'running', 'q_small runs after the restart');
check_query('q_big', 'big', 200030, 'after restart with 64MB');
is( $node->safe_psql(
		$db,
		q{SELECT count(*) FROM stream_state.window_counts('q_big', '2026-11-24 10:30:00+00')}
	),
	'200000',
	'after restart: q_big has all 200000 keys');
is( $node->safe_psql(
		$db,
		q{SELECT stream_state.window_count('q_big', 7::bigint, '2026-11-24 10:30:00+00')}
	),
	'4',
	'after restart: key 7 of q_big has 4 events (1 + 3)');
check_query('q_small', 'small', 200, 'after restart with 64MB');

$node->stop;
done_testing();
