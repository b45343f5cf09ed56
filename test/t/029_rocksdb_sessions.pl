
# Copyright (c) stream_state contributors

# Session windows and retention of continuous queries in SQL on the rocksdb
# backend, through kill -9 of the postmaster while sessions insert, commit,
# roll back and roll back sub-transactions, several rounds (a checkpoint, with
# its RocksDB checkpoint, amid some of them):
#
#  - s: sessions (gap 5 minutes) of events in random order over ten days, so
#    that late events keep bridging and merging sessions; nothing closes
#    (lateness 30 days).  After each round, every session in state equals the
#    sessions computed in plain SQL from the table.
#  - se: sessions (gap 1 minute, lateness 30 minutes) of events in time order,
#    with emit_to: the sessions that end are emitted and leave state.  At the
#    end an event a year later closes them all: the emit_to table holds every
#    session computed in SQL exactly once.
#  - rq: a sliding window with retention 20 minutes: keys idle longer leave
#    state.  The keys written all along are never idle: window_result of the
#    newest window equals the query over its rows after each round.  At the
#    end, a key idle for 30 minutes comes back with only its new row, though
#    its window still holds the old one.
#
# Then restore_checkpoint, set_backend of the session query to memory and
# back, with a kill -9 after, and export_checkpoint of it (from the RocksDB
# checkpoint) imported into a rocksdb session query of another cluster.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StreamStateTest;
use Test::More;
use Time::HiRes qw(usleep);

my $node = ss_new_node('rsess', "stream_state.checkpoint_interval = 3\nrestart_after_crash = on\n");
my $db = 'postgres';

$node->safe_psql($db, 'CREATE EXTENSION stream_state');
$node->safe_psql($db, q{
CREATE TABLE sv (k int, v numeric, ts timestamptz);
CREATE TABLE se_ev (k int, v int, ts timestamptz);
CREATE TABLE rt (k int, v int, ts timestamptz);
CREATE SEQUENCE tick;
});

# rows: sv at random times over ten days; se_ev and rt in time order, a
# tick (2 seconds) apart, rt every key in every statement (none is idle)
my $rows = sub {
	my ($n) = @_;
	return qq{
INSERT INTO sv SELECT (random() * 15)::int, round((random() * 100)::numeric, 2),
		'2026-11-24 10:00+00'::timestamptz + (random() * 864000)::int * interval '1 second'
	  FROM generate_series(1, $n);
INSERT INTO se_ev SELECT (random() * 9)::int, g,
		'2026-11-24 10:00+00'::timestamptz + nextval('tick') * interval '2 seconds'
	  FROM generate_series(1, $n) g;
INSERT INTO rt SELECT g % 10, g, '2026-11-24 10:00+00'::timestamptz + nextval('tick') * interval '2 seconds'
	  FROM generate_series(1, 10 + $n) g};
};
$node->safe_psql($db, $rows->(200));
$node->safe_psql($db, q{
SELECT stream_state.create_query('s', $$SELECT k, count(*), sum(v), max(v) FROM sv GROUP BY k$$,
	time_column => 'ts', session_gap => '5 minutes', lateness => '30 days', backend => 'rocksdb');
SELECT stream_state.create_query('se', $$SELECT k, count(*), sum(v) FROM se_ev GROUP BY k$$,
	time_column => 'ts', session_gap => '1 minute', lateness => '30 minutes', emit_to => 'se_out',
	backend => 'rocksdb');
SELECT stream_state.create_query('rq', $$SELECT k, count(*), sum(v) FROM rt GROUP BY k$$,
	time_column => 'ts', window_size => '1 hour', slide => '10 minutes', lateness => '10 minutes',
	retention => '20 minutes', backend => 'rocksdb');
});
is($node->safe_psql($db, q{SELECT string_agg(name || ':' || backend, ',' ORDER BY name) FROM stream_state.queries}),
	'rq:rocksdb,s:rocksdb,se:rocksdb', 'the three queries are on the rocksdb backend');

# sessions of a table in plain SQL: a new one where the gap to the key's
# previous event is the gap or more
sub sessions_sql
{
	my ($table, $gap, $cols) = @_;
	return qq{
	WITH o AS (
		SELECT *, CASE WHEN ts - lag(ts) OVER (PARTITION BY k ORDER BY ts, v) < interval '$gap'
					   THEN 0 ELSE 1 END AS brk
		  FROM $table),
	g AS (SELECT *, sum(brk) OVER (PARTITION BY k ORDER BY ts, v ROWS UNBOUNDED PRECEDING) AS sid FROM o)
	SELECT min(ts) AS window_start, max(ts) + interval '$gap' AS window_end, k, $cols FROM g GROUP BY k, sid};
}

my $s_cols = 'window_start timestamptz, window_end timestamptz, k int, count bigint, sum numeric, max numeric';
my $s_truth = sessions_sql('sv', '5 minutes', 'count(*), sum(v), max(v)');
my $rq_cols = 'k int, count bigint, sum bigint';

sub check
{
	my ($label) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	ss_wait_applied($node, $db, $label);

	# every session of s
	my ($n, $diff) = split / /, $node->safe_psql(
		$db, qq{
WITH truth AS ($s_truth),
got AS (SELECT * FROM stream_state._session_result('s', NULL, 'infinity') AS t($s_cols))
SELECT (SELECT count(*) FROM truth) || ' ' || count(*)
  FROM ((SELECT * FROM got EXCEPT ALL SELECT * FROM truth)
		UNION ALL (SELECT * FROM truth EXCEPT ALL SELECT * FROM got)) d});
	cmp_ok($n, '>', 0, "$label: s has sessions ($n)");
	is($diff, 0, "$label: the sessions of s equal the sessions computed from sv");

	# the newest window of rq
	my ($k, $d) = split / /, $node->safe_psql(
		$db, qq{
WITH w AS (SELECT max(ts) AS at, date_bin('10 minutes', max(ts), 'epoch') + interval '10 minutes' AS e FROM rt),
truth AS (SELECT k, count(*), sum(v) FROM rt, w WHERE ts >= w.e - interval '1 hour' AND ts < w.e GROUP BY k),
got AS (SELECT t.* FROM w, stream_state.window_result('rq', w.at) AS t($rq_cols))
SELECT (SELECT count(*) FROM truth) || ' ' || count(*)
  FROM ((SELECT * FROM got EXCEPT ALL SELECT * FROM truth)
		UNION ALL (SELECT * FROM truth EXCEPT ALL SELECT * FROM got)) d});
	is($k, 10, "$label: the newest window of rq holds the 10 keys");
	is($d, 0, "$label: window_result of rq equals the query over the window's rows");
	return;
}

check('after create (backfill and inserts)');

# a session inserting, rolling back and rolling back sub-transactions until
# the server goes away
sub start_writer
{
	return ss_start_writer($node, $db, $rows->('1 + (random() * 10)::int'));
}

for my $round (1 .. 4)
{
	my @writers = map { start_writer() } (1 .. 2);
	usleep(500_000 + int(rand(1_000_000)));
	ss_checkpoint($node, $db) if $round % 2 == 0;
	usleep(int(rand(1_000_000)));
	ss_kill9_and_restart($node);
	ss_bg_abandon($_) for @writers;
	check("round $round, after kill -9 during inserts");
}
my $n = $node->safe_psql($db, 'SELECT count(*) FROM sv');
cmp_ok($n, '>', 200, "the writers committed rows ($n)");
ok($node->log_contains(qr/restored checkpoint \d+ of database \d+/),
	'a worker restored a checkpoint (with its RocksDB) after a kill -9');

# ------------------------------------------------------- restore_checkpoint
my $c1 = ss_checkpoint($node, $db);
$node->safe_psql($db, $rows->(100));
check("after checkpoint $c1 and more rows");
is( $node->safe_psql($db,
		"SELECT string_agg(query || ':' || action, ',' ORDER BY query) FROM stream_state.restore_checkpoint($c1)"),
	'rq:replayed,s:replayed,se:replayed', "restore_checkpoint($c1) replays the WAL after it");
check("after restore_checkpoint($c1)");

# ------------------------------------------------------ set_backend both ways
$node->safe_psql($db, q{SELECT stream_state.set_backend('s', 'memory')});
$node->safe_psql($db, $rows->(50));
is($node->safe_psql($db, q{SELECT backend FROM stream_state.queries WHERE name = 's'}),
	'memory', 'set_backend moved the session query to memory');
check('s on memory, moved out of RocksDB');
$node->safe_psql($db, q{SELECT stream_state.set_backend('s', 'rocksdb')});
$node->safe_psql($db, $rows->(50));
check('s back on rocksdb');
ss_kill9_and_restart($node);
check('s back on rocksdb, after kill -9');
is($node->safe_psql($db, q{SELECT backend FROM stream_state.queries WHERE name = 's'}),
	'rocksdb', 's still on rocksdb');

# ------------------------------------- export (from RocksDB's checkpoint) and import
my $c2 = ss_checkpoint($node, $db);
my $file = $node->basedir . '/s.ckpt';
cmp_ok($node->safe_psql($db, "SELECT stream_state.export_checkpoint($c2, '$file')"),
	'>', 0, "export_checkpoint($c2) of a rocksdb session query");
my $all = qq{SELECT md5(string_agg(t::text, ';' ORDER BY window_start, k))
	FROM stream_state._session_result('s', NULL, 'infinity') AS t($s_cols)};
my $want = $node->safe_psql($db, $all);
my $dst = ss_new_node('rsess_dst');
$dst->safe_psql($db, 'CREATE EXTENSION stream_state');
$dst->safe_psql($db, q{
CREATE TABLE sv (k int, v numeric, ts timestamptz);
SELECT stream_state.create_query('s', $$SELECT k, count(*), sum(v), max(v) FROM sv GROUP BY k$$,
	time_column => 'ts', session_gap => '5 minutes', lateness => '30 days', backend => 'rocksdb');
});
$dst->safe_psql($db, "SELECT * FROM stream_state.import_checkpoint('$file')");
ss_wait_applied($dst, $db, 'after import');
is($dst->safe_psql($db, $all), $want,
	'import_checkpoint into a rocksdb session query gives the exported sessions');
$dst->stop;

# -------------------------------------------- se: every session emitted once
# an event a year later closes every session; the helper emits them
$node->safe_psql($db, q{INSERT INTO se_ev VALUES (99, 0, '2027-11-24 00:00+00')});
my $se_truth = sessions_sql('se_ev', '1 minute', 'count(*), sum(v)');
my $se_want = $node->safe_psql($db, "SELECT count(*) FROM ($se_truth) t WHERE k <> 99");
cmp_ok($se_want, '>', 10, "se_ev has sessions ($se_want)");
ok( $node->poll_query_until($db, "SELECT count(*) >= $se_want FROM se_out"),
	'the helper emitted the sessions of se');
is( $node->safe_psql(
		$db, qq{
WITH truth AS (SELECT * FROM ($se_truth) t WHERE k <> 99)
SELECT count(*) FROM ((SELECT * FROM se_out EXCEPT ALL SELECT * FROM truth)
					  UNION ALL (SELECT * FROM truth EXCEPT ALL SELECT * FROM se_out)) d}),
	'0', 'se_out holds every session of se_ev exactly once (emitted across kill -9)');
# and they left state: only key 99's session stays
ok( $node->poll_query_until(
		$db, q{SELECT count(*) = 1 FROM stream_state._session_result('se', NULL, 'infinity')
			AS t(window_start timestamptz, window_end timestamptz, k int, count bigint, sum bigint)}),
	'the emitted sessions of se left RocksDB');

# -------------------------------------------------- rq: an idle key is dropped
# key 50 at the newest time, then 30 minutes of the other keys: key 50 has
# been idle 20 minutes (past the lateness) and leaves state; its new row
# comes back alone, though the window still holds the old one
my $t0 = $node->safe_psql($db, q{SELECT max(ts) FROM rt});
$node->safe_psql($db, qq{INSERT INTO rt VALUES (50, 1000, '$t0'::timestamptz + interval '1 second')});
$node->safe_psql($db, qq{INSERT INTO rt SELECT g % 10, g, '$t0'::timestamptz + g * interval '10 seconds'
	FROM generate_series(1, 240) g});
ss_kill9_and_restart($node);
$node->safe_psql($db, qq{INSERT INTO rt VALUES (50, 2000, '$t0'::timestamptz + interval '40 minutes')});
ss_wait_applied($node, $db, 'after key 50 came back');
is( $node->safe_psql(
		$db, qq{SELECT count || ':' || sum FROM stream_state.window_result('rq', '$t0'::timestamptz + interval '40 minutes')
			AS t($rq_cols) WHERE k = 50}),
	'1:2000', 'the idle key was dropped by retention: only its new row');
is( $node->safe_psql(
		$db, qq{SELECT count(*) FROM rt WHERE k = 50
			AND ts >= date_bin('10 minutes', '$t0'::timestamptz + interval '40 minutes', 'epoch') - interval '50 minutes'}),
	'2', 'though the window holds both of its rows');

$node->stop;
done_testing();
