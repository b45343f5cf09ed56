
# Copyright (c) stream_state contributors

# A continuous query in SQL that runs out of memory: the commit that does
# not fit is applied all or nothing (the values it had combined are put
# back from the worker's journal), the query pauses and keeps its WAL, and
# once memory returns (another query dropped) it catches up, exact.  A
# query in SQL on the rocksdb backend over the same rows, defined first so
# that its values are combined before the memory query's fail, has them put
# back from the rocksdb journal too, and goes on exact.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StreamStateTest;
use Test::More;

my $node = ss_new_node('cq_full', "stream_state.memory_limit = 2MB\n");
my $db = 'postgres';

$node->safe_psql(
	$db, q{
CREATE EXTENSION stream_state;
CREATE TABLE hold (k bigint, ts timestamptz);
CREATE TABLE ev (k bigint, amount numeric, ts timestamptz);
SELECT stream_state.create_query('q_rdb', $$SELECT k, count(*), sum(amount), avg(amount) FROM ev GROUP BY k$$,
	time_column => 'ts', window_size => '1 hour', lateness => '1 day', backend => 'rocksdb');
SELECT stream_state.create_query('q_hold', 'hold', 'k', 'ts', window_size => '1 hour', lateness => '1 day');
SELECT stream_state.create_query('q_sql', $$SELECT k, count(*), sum(amount), avg(amount) FROM ev GROUP BY k$$,
	time_column => 'ts', window_size => '1 hour', lateness => '1 day');
INSERT INTO hold SELECT g, '2026-11-24 10:00+00' FROM generate_series(0, 7999) g;
});
ss_wait_applied($node, $db, 'q_hold filled');

sub status
{
	return $node->safe_psql($db, "SELECT status FROM stream_state.queries WHERE name = '$_[0]'");
}

# batches of 500 new keys, each key in two rows of one pane, until q_sql pauses
my $paused;
BATCH: for my $b (1 .. 200)
{
	$node->safe_psql($db,
		"INSERT INTO ev SELECT g, g % 13, '2026-11-24 10:00+00'::timestamptz + (g % 2) * interval '1 second'
		   FROM generate_series(" . (($b - 1) * 500) . ', ' . ($b * 500 - 1) . ") g, generate_series(1, 2)");
	for (1 .. 60)
	{
		next BATCH
		  if $node->safe_psql($db, "SELECT stream_state.wait_applied(NULL, '2 seconds')") eq 't';
		if (status('q_sql') eq 'paused: memory full')
		{
			$paused = $b;
			last BATCH;
		}
	}
	last;
}
ok(defined $paused, 'q_sql ran out of memory');
is(status('q_sql'), 'paused: memory full', 'q_sql says it is paused');
is(status('q_hold'), 'running', 'q_hold runs on');
is(status('q_rdb'), 'running', 'q_rdb (rocksdb) runs on');

# more rows while paused, one rolled back
$node->safe_psql($db, q{INSERT INTO ev VALUES (1, 5, '2026-11-24 10:30+00'), (2, 7, '2026-11-24 10:31+00')});
$node->safe_psql($db, q{BEGIN; INSERT INTO ev VALUES (1, 1000, '2026-11-24 10:32+00'); ROLLBACK;});

# memory returns: q_hold goes; q_sql catches up
$node->safe_psql($db, q{SELECT stream_state.drop_query('q_hold')});
$node->poll_query_until($db, q{SELECT status = 'running' FROM stream_state.queries WHERE name = 'q_sql'})
  or die 'q_sql did not resume';
ss_wait_applied($node, $db, 'q_sql resumed');
my $exact = sub {
	my ($q) = @_;
	return $node->safe_psql(
		$db, qq{
WITH truth AS (SELECT k, count(*), sum(amount), avg(amount) FROM ev
				WHERE ts >= '2026-11-24 10:00+00' AND ts < '2026-11-24 11:00+00' GROUP BY k),
got AS (SELECT * FROM stream_state.window_result('$q', '2026-11-24 10:30+00')
			AS t(k bigint, count bigint, sum numeric, avg numeric))
SELECT (SELECT count(*) FROM truth) = (SELECT count(*) FROM got) AND count(*) = 0
  FROM ((SELECT * FROM got EXCEPT ALL SELECT * FROM truth)
		UNION ALL (SELECT * FROM truth EXCEPT ALL SELECT * FROM got)) d});
};
is($exact->('q_sql'), 't',
	'q_sql after its catch-up: every key exact, no commit counted twice or lost');
is($exact->('q_rdb'), 't',
	'q_rdb (rocksdb): the failed commit\'s values were put back, every key exact');

$node->stop;
done_testing();
