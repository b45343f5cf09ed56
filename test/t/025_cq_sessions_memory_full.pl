
# Copyright (c) stream_state contributors

# A session query that runs out of memory in the middle of a commit whose
# events merge sessions: the commit is applied all or nothing (the worker's
# journal puts back every session merged away and removes the merged ones),
# the query pauses and keeps its WAL, and once memory returns it catches
# up; its sessions then equal the sessions computed in SQL.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StreamStateTest;
use Test::More;

my $node = ss_new_node('sess_full', "stream_state.memory_limit = 2MB\n");
my $db = 'postgres';

$node->safe_psql(
	$db, q{
CREATE EXTENSION stream_state;
CREATE TABLE hold (k bigint, ts timestamptz);
CREATE TABLE ev (k bigint, v int, ts timestamptz);
SELECT stream_state.create_query('q_hold', 'hold', 'k', 'ts', window_size => '1 hour', lateness => '1 day');
SELECT stream_state.create_query('q_sess', $$SELECT k, count(*), sum(v) FROM ev GROUP BY k$$,
	time_column => 'ts', session_gap => '10 minutes', lateness => '1 day');
INSERT INTO hold SELECT g, '2026-11-24 10:00+00' FROM generate_series(0, 7999) g;
});
ss_wait_applied($node, $db, 'q_hold filled');

sub status
{
	return $node->safe_psql($db, "SELECT status FROM stream_state.queries WHERE name = '$_[0]'");
}

# batch b: 500 new keys with two sessions each (10:00 and 10:15), and for
# the keys of batch b - 1 an event at 10:07 that merges their two sessions
my $paused;
BATCH: for my $b (1 .. 200)
{
	my ($lo, $hi) = (($b - 1) * 500, $b * 500 - 1);
	my ($plo, $phi) = ($lo - 500, $hi - 500);
	$node->safe_psql($db,
		"INSERT INTO ev SELECT g, 1, '2026-11-24 10:00+00'::timestamptz + s * interval '15 minutes'
		   FROM generate_series($lo, $hi) g, generate_series(0, 1) s
		 UNION ALL
		 SELECT g, 100, '2026-11-24 10:07+00' FROM generate_series(greatest($plo, 0), $phi) g");
	for (1 .. 60)
	{
		next BATCH
		  if $node->safe_psql($db, "SELECT stream_state.wait_applied(NULL, '2 seconds')") eq 't';
		if (status('q_sess') eq 'paused: memory full')
		{
			$paused = $b;
			last BATCH;
		}
	}
	last;
}
ok(defined $paused && $paused > 1, 'q_sess ran out of memory in a commit that merges sessions');
is(status('q_sess'), 'paused: memory full', 'q_sess says it is paused');

# more while paused: a rolled-back bridge, a committed one
$node->safe_psql($db, q{BEGIN; INSERT INTO ev VALUES (1, 1000, '2026-11-24 10:07+00'); ROLLBACK;});
$node->safe_psql($db, q{INSERT INTO ev VALUES (0, 7, '2026-11-24 10:20+00')});

$node->safe_psql($db, q{SELECT stream_state.drop_query('q_hold')});
$node->poll_query_until($db, q{SELECT status = 'running' FROM stream_state.queries WHERE name = 'q_sess'})
  or die 'q_sess did not resume';
ss_wait_applied($node, $db, 'q_sess resumed');
is( $node->safe_psql(
		$db, q{
WITH o AS (SELECT k, v, ts, CASE WHEN ts - lag(ts) OVER (PARTITION BY k ORDER BY ts, v) < interval '10 minutes'
								 THEN 0 ELSE 1 END AS brk FROM ev),
g AS (SELECT k, v, ts, sum(brk) OVER (PARTITION BY k ORDER BY ts, v ROWS UNBOUNDED PRECEDING) AS sid FROM o),
truth AS (SELECT min(ts) AS s, max(ts) + interval '10 minutes' AS e, k, count(*), sum(v) FROM g GROUP BY k, sid),
got AS (SELECT * FROM stream_state._session_result('q_sess', NULL, 'infinity')
			AS t(s timestamptz, e timestamptz, k bigint, count bigint, sum bigint))
SELECT (SELECT count(*) FROM truth) || ' ' || (SELECT count(*) FROM got) || ' ' || count(*)
  FROM ((SELECT * FROM got EXCEPT ALL SELECT * FROM truth)
		UNION ALL (SELECT * FROM truth EXCEPT ALL SELECT * FROM got)) d}) =~ /^(\d+) \1 0$/ ? 1 : 0,
	1,
	'q_sess after its catch-up: every session exact (merges undone and redone, nothing twice or lost)');

$node->stop;
done_testing();
