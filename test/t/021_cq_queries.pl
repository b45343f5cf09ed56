
# Copyright (c) stream_state contributors

# Continuous queries in SQL across a checkpoint, kill -9 and a restart: the
# worker loads the values and the aggregates of the query from the
# checkpoint, replays the WAL after it, and window_result equals the query
# run over the window's rows.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StreamStateTest;
use Test::More;

my $node = ss_new_node('cq', "stream_state.checkpoint_interval = 0\nrestart_after_crash = on\n");
my $db = 'postgres';

$node->safe_psql($db, 'CREATE EXTENSION stream_state; CREATE EXTENSION hll');
$node->safe_psql($db, 'CREATE TABLE ev (user_id bigint, amount numeric, page text, ts timestamptz)');
my $ins = sub {
	my ($from, $to) = @_;
	$node->safe_psql($db,
		"INSERT INTO ev SELECT g % 7, g % 11, 'p' || (g % 5), '2026-11-24 10:00+00'::timestamptz + g * interval '10 seconds'
		   FROM generate_series($from, $to) g");
};
$ins->(1, 200);
$node->safe_psql($db,
	q{SELECT stream_state.create_query('s', $$SELECT user_id, count(*), sum(amount), avg(amount), max(amount),
			hll_cardinality(hll_add_agg(hll_hash_text(page))) AS pages FROM ev GROUP BY user_id$$,
		time_column => 'ts', window_size => '1 hour', slide => '10 minutes', lateness => '1 day')});
$ins->(201, 300);

my $diff = q{
WITH truth AS (
	SELECT user_id, count(*), sum(amount), avg(amount), max(amount),
		   hll_cardinality(hll_add_agg(hll_hash_text(page))) AS pages
	  FROM ev WHERE ts >= '2026-11-24 10:00+00' AND ts < '2026-11-24 11:00+00' GROUP BY user_id),
got AS (
	SELECT * FROM stream_state.window_result('s', '2026-11-24 10:55+00')
		AS t(user_id bigint, count bigint, sum numeric, avg numeric, max numeric, pages float8))
SELECT (SELECT count(*) FROM got) || ' ' || count(*)
  FROM ((SELECT * FROM got EXCEPT ALL SELECT * FROM truth)
		UNION ALL (SELECT * FROM truth EXCEPT ALL SELECT * FROM got)) d};

is($node->safe_psql($db, $diff), '7 0', 'window_result equals the query over the window (7 users)');
$node->safe_psql($db, 'SELECT stream_state.checkpoint()');
$ins->(301, 350);
$node->safe_psql($db, q{BEGIN; INSERT INTO ev VALUES (1, 1000, 'x', '2026-11-24 10:30+00'); ROLLBACK;});
ss_kill9_and_restart($node);
ss_wait_applied($node, $db, 'after kill -9');
is($node->safe_psql($db, $diff), '7 0',
	'after kill -9: the checkpoint (values and aggregates) and the WAL after it, exact');
ok($node->log_contains(qr/restored checkpoint 1 of database \d+/), 'the worker restored the checkpoint');
$ins->(351, 360);
$node->safe_psql($db, 'SELECT stream_state.checkpoint()');
$node->restart;
ss_wait_applied($node, $db, 'after a restart');
is($node->safe_psql($db, $diff), '7 0', 'after a checkpoint and a restart: exact');

# export and import into another database with the same queries (a session
# query too, with a rocksdb count beside them, so that the export re-encodes
# the file): the same rows there
$node->safe_psql($db,
	q{SELECT stream_state.create_query('sess', $$SELECT user_id, count(*), sum(amount) FROM ev GROUP BY user_id$$,
		time_column => 'ts', session_gap => '1 minute', lateness => '1 day');
	  SELECT stream_state.create_query('rc', 'ev', key_column => 'user_id', time_column => 'ts',
		window_size => '1 hour', backend => 'rocksdb')});
ss_wait_applied($node, $db, 'session query');
my $ck = $node->safe_psql($db, 'SELECT stream_state.checkpoint()');
$node->safe_psql($db, qq{SELECT stream_state.export_checkpoint($ck, 'ss.ckpt')});
$node->safe_psql('postgres', 'CREATE DATABASE other');
$node->safe_psql('other',
	q{CREATE EXTENSION stream_state; CREATE EXTENSION hll;
	  CREATE TABLE ev (user_id bigint, amount numeric, page text, ts timestamptz);
	  SELECT stream_state.create_query('s', $$SELECT user_id, count(*), sum(amount), avg(amount), max(amount),
			hll_cardinality(hll_add_agg(hll_hash_text(page))) AS pages FROM ev GROUP BY user_id$$,
		time_column => 'ts', window_size => '1 hour', slide => '10 minutes', lateness => '1 day');
	  SELECT stream_state.create_query('sess', $$SELECT user_id, count(*), sum(amount) FROM ev GROUP BY user_id$$,
		time_column => 'ts', session_gap => '1 minute', lateness => '1 day')});
like( $node->safe_psql('other',
		q{SELECT string_agg(query || ':' || keys || ':' || entries, ' ' ORDER BY query)
			FROM stream_state.import_checkpoint('ss.ckpt')}),
	qr/^s:7:\d+ sess:7:\d+$/, 'import_checkpoint of queries in SQL: the keys of both');
my $rows = q{SELECT string_agg(t::text, ' ' ORDER BY t::text) FROM stream_state.window_result('s', '2026-11-24 10:55+00')
		AS t(user_id bigint, count bigint, sum numeric, avg numeric, max numeric, pages float8)};
my $sessions = q{SELECT string_agg(t::text, ' ' ORDER BY t::text) FROM stream_state._session_result('sess', NULL, 'infinity')
		AS t(s timestamptz, e timestamptz, user_id bigint, count bigint, sum numeric)};
ss_wait_applied($node, 'other', 'import');
is(scalar(() = $node->safe_psql($db, $rows) =~ /\(\d+,/g) . ' ' . scalar(() = $node->safe_psql($db, $sessions) =~ /\("/g),
	'7 360', 'the exported queries have 7 rows and 360 sessions');
is($node->safe_psql('other', $rows), $node->safe_psql($db, $rows), 'imported: the same window_result');
is($node->safe_psql('other', $sessions), $node->safe_psql($db, $sessions), 'imported: the same sessions');
$node->safe_psql('other',
	q{SELECT stream_state.drop_query('sess');
	  SELECT stream_state.create_query('sess', $$SELECT user_id, count(*), max(amount) FROM ev GROUP BY user_id$$,
		time_column => 'ts', session_gap => '1 minute')});
like(ss_error_of($node, 'other', q{SELECT * FROM stream_state.import_checkpoint('ss.ckpt')}),
	qr/ERROR:  22023: continuous query "sess" of the checkpoint has other aggregates than the one of this database/,
	'import refuses a query in SQL whose aggregates differ (22023)');

# retention comes back from a checkpoint (its options block): created, then
# checkpointed, so the restarted worker does not replay the definition
$node->safe_psql($db,
	q{CREATE TABLE rt (k int, ts timestamptz);
	  SELECT stream_state.create_query('r', $$SELECT k, count(*) FROM rt GROUP BY k$$, time_column => 'ts',
		window_size => '1 hour', slide => '5 minutes', retention => '10 minutes');
	  INSERT INTO rt VALUES (1, '2026-11-24 10:00+00'), (2, '2026-11-24 10:01+00'), (2, '2026-11-24 10:02+00')});
$node->safe_psql($db, 'SELECT stream_state.checkpoint()');
ss_kill9_and_restart($node);
ss_wait_applied($node, $db, 'after kill -9 with a retention');
is($node->safe_psql($db, q{SELECT retention FROM stream_state.queries WHERE name = 'r'}),
	'00:10:00', 'the retention is in the catalog');
# key 2 seen again at 10:20: the watermark is 10:20, key 1 idle since 10:00 goes
$node->safe_psql($db, q{INSERT INTO rt VALUES (2, '2026-11-24 10:20+00')});
ss_wait_applied($node, $db, 'after an insert with a retention');
is( $node->safe_psql(
		$db, q{SELECT string_agg(k || ':' || count, ' ' ORDER BY k)
			FROM stream_state.window_result('r', '2026-11-24 10:21+00') AS t(k int, count bigint)}),
	'2:3', 'the restored worker drops the idle key (the retention came back with the checkpoint)');

$node->stop;
done_testing();
