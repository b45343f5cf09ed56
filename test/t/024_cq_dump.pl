
# Copyright (c) stream_state contributors

# Continuous queries in SQL and pg_dump, and DROP EXTENSION.
#
# 1. A plain pg_dump of a database with two queries in SQL, replayed with
#    psql into a fresh database of a second cluster: window_result reads the
#    same rows as on the dumped server (nothing counted twice, nothing
#    missed), every window equals the query run over the window's rows of
#    the source table, and rows inserted after the restore count on top.
#    As in 009_dump_restore.pl, the rows are loaded before the dump creates
#    the capture triggers; creating each trigger must count its table's rows
#    once (sql_api.c, restore_trigger).  'spend' reads events; 'spend_d'
#    reads events_d, which has a dropped column, so that its columns have
#    other numbers in the restored table (time_attnum 4 there, 3 here).
#
# 2. DROP EXTENSION in a database with a query in SQL: the typed view depends
#    on stream_state.window_result, so a plain DROP EXTENSION fails (2BP01,
#    naming the view) and changes nothing; DROP EXTENSION ... CASCADE drops
#    the view with the extension, the capture triggers go (they depend on the
#    extension's functions), the slot is dropped, and the source table keeps
#    its rows and takes inserts.
#
# Row g has user_id 1 + g % 4, amount (g % 13) + 0.25 * (g % 3) and event
# time 2026-11-24 10:00:00+00 + ((g * 37) % 3000) s, so every row lies in
# [10:00, 10:50).  The windows are 1 hour sliding by 10 minutes; lateness is
# a day so that no row of the test is late (rows come in any time order).

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StreamStateTest;
use Test::More;

my $db = 'shop';
my $cols = 'user_id bigint, count bigint, sum numeric, max numeric';

# 09:55, 10:05, ..., 11:55: one instant in each window that can hold a row
# and the empty windows on both sides (ending 10:00 and 11:50).  Each row is
# in 6 of them; with 4 users the 10 windows ending 10:10 .. 11:40 have 40 rows.
my @at = map { ss_ts(600 * $_ - 300) } (0 .. 12);
my $ats = join(',', map { "'$_'" } @at);

sub insert_rows
{
	my ($node, $dbname, $table, $from, $to) = @_;
	$node->safe_psql($dbname, qq{
INSERT INTO $table (user_id, amount, ts)
SELECT 1 + g % 4, (g % 13) + 0.25 * (g % 3),
	   timestamptz '2026-11-24 10:00:00+00' + ((g * 37) % 3000) * interval '1 second'
  FROM generate_series($from, $to) g});
	return;
}

# stdout of sql, or what psql said on stderr when it failed, so that a
# failing read shows its error in the test's "got" and the test goes on
sub query
{
	my ($node, $dbname, $sql) = @_;
	my ($rc, $out, $err) = $node->psql($dbname, $sql);
	return $rc == 0 ? $out : "psql failed ($rc): $err";
}

sub create_spend
{
	my ($node, $dbname, $name, $table) = @_;
	$node->safe_psql($dbname, qq{
SELECT stream_state.create_query('$name',
	\$\$SELECT user_id, count(*), sum(amount), max(amount) FROM $table GROUP BY user_id\$\$,
	time_column => 'ts', window_size => '1 hour', slide => '10 minutes', lateness => '1 day')});
	return;
}

# every row window_result gives at each instant, as text (to compare servers)
sub all_windows
{
	my ($node, $dbname, $name) = @_;
	return query($node, $dbname, qq{
SELECT string_agg(concat_ws(' ', a.at, r.user_id, r.count, r.sum, r.max), E'\\n'
				  ORDER BY a.at, r.user_id)
  FROM unnest(ARRAY[$ats]::timestamptz[]) a(at),
	   LATERAL stream_state.window_result('$name', a.at) AS r($cols)});
}

# window_result(name, at) at every instant against the query over the rows
# of the window containing at (it ends at the first 10-minute boundary after
# at and is an hour long), compared both ways with EXCEPT ALL; and the rows'
# and events' totals of both sides, stated by the caller
sub check_windows
{
	my ($node, $dbname, $label, $name, $table, $nrows, $events) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;

	my $res = query($node, $dbname, qq{
WITH ats AS (
	SELECT unnest(ARRAY[$ats]::timestamptz[]) AS at
), got AS (
	SELECT a.at, r.* FROM ats a, LATERAL stream_state.window_result('$name', a.at) AS r($cols)
), bounds AS (
	SELECT at, to_timestamp((floor(extract(epoch FROM at) / 600) + 1) * 600) AS we FROM ats
), want AS (
	SELECT b.at, e.user_id, count(*), sum(e.amount), max(e.amount)
	  FROM bounds b JOIN $table e ON e.ts >= b.we - interval '1 hour' AND e.ts < b.we
	 GROUP BY b.at, e.user_id
)
SELECT (SELECT count(*) FROM got) || ' rows in state, '
	   || (SELECT count(*) FROM want) || ' recomputed, '
	   || (SELECT coalesce(sum(count), 0) FROM got) || ' events in state, '
	   || (SELECT coalesce(sum(count), 0) FROM want) || ' recomputed, '
	   || (SELECT count(*) FROM (SELECT * FROM got EXCEPT ALL SELECT * FROM want) x)
	   || ' rows only in state, '
	   || (SELECT count(*) FROM (SELECT * FROM want EXCEPT ALL SELECT * FROM got) y)
	   || ' only in recomputation'});
	is($res,
		"$nrows rows in state, $nrows recomputed, $events events in state, $events recomputed, "
		  . "0 rows only in state, 0 only in recomputation",
		"$label: window_result('$name') at 13 instants equals $table grouped over each window");
	return;
}

# the typed view (the window of now()) against the query over that window
sub check_view
{
	my ($node, $dbname, $label, $name, $table) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;

	is( query($node, $dbname, qq{
WITH b AS (
	SELECT to_timestamp((floor(extract(epoch FROM now()) / 600) + 1) * 600) AS we
), want AS (
	SELECT e.user_id, count(*), sum(e.amount), max(e.amount)
	  FROM b JOIN $table e ON e.ts >= b.we - interval '1 hour' AND e.ts < b.we
	 GROUP BY e.user_id
)
SELECT (SELECT count(*) FROM (SELECT * FROM $name EXCEPT ALL SELECT * FROM want) x) || ' '
	   || (SELECT count(*) FROM (SELECT * FROM want EXCEPT ALL SELECT * FROM $name) y)}),
		'0 0', "$label: the view $name reads the window of now()");
	return;
}

# what the restored server must have of a definition: all but the id, the
# creation time and the column numbers
my $defs = q{
SELECT string_agg(concat_ws(' | ', name, source, time_column, time_type, window_size, slide,
							lateness, backend, owner, view, replace(query, E'\n', ' ')),
				  E'\n' ORDER BY name)
  FROM stream_state.query_def};
my $views = q{
SELECT string_agg(c.relname || ': ' || replace(pg_get_viewdef(c.oid), E'\n', ' '), E'\n'
				  ORDER BY c.relname)
  FROM pg_class c WHERE c.relkind = 'v' AND c.relnamespace = 'public'::regnamespace};

#
# 1. pg_dump and psql
#
my $old = ss_new_node('old');
$old->safe_psql('postgres', "CREATE DATABASE $db");
$old->safe_psql($db, 'CREATE EXTENSION stream_state');
$old->safe_psql($db, q{
CREATE TABLE events (user_id bigint, amount numeric, ts timestamptz);
CREATE TABLE events_d (junk int, user_id bigint, amount numeric, ts timestamptz);
ALTER TABLE events_d DROP COLUMN junk;
});
insert_rows($old, $db, $_, 0, 499) for qw(events events_d);
create_spend($old, $db, 'spend', 'events');
create_spend($old, $db, 'spend_d', 'events_d');
insert_rows($old, $db, $_, 500, 1199) for qw(events events_d);
ss_wait_applied($old, $db, 'before the dump');
check_windows($old, $db, 'before the dump', 'spend', 'events', 40, 7200);
# the rows there before create_query are read by the table's column numbers
# (its dropped column as NULL), so none is skipped
check_windows($old, $db, 'before the dump', 'spend_d', 'events_d', 40, 7200);
check_view($old, $db, 'before the dump', 'spend', 'events');
my %before = map { $_ => all_windows($old, $db, $_) } qw(spend spend_d);
my $defs_before = $old->safe_psql($db, $defs);
my $views_before = $old->safe_psql($db, $views);

my $dump = $old->basedir . '/shop.sql';
$old->command_ok([ 'pg_dump', '-Fp', '-f', $dump, '-d', $old->connstr($db) ],
	'pg_dump (plain) of the database');

my $new = ss_new_node('new');
$new->safe_psql('postgres', "CREATE DATABASE $db");
my ($stdout, $stderr);
my $ok = IPC::Run::run [ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', $dump, '-d',
	$new->connstr($db) ], '>', \$stdout, '2>', \$stderr;
# the dump's CREATE TRIGGER of each query sends its definition, with its
# aggregates, and folds in the rows the dump loaded (restore_trigger)
ok($ok, 'psql replays the dump into a fresh cluster');
is($stderr, '', 'psql reports nothing on stderr while replaying the dump');

is($new->safe_psql($db, $defs), $defs_before, 'restored: both definitions, as dumped');
is($new->safe_psql($db, $views), $views_before, 'restored: both typed views, as dumped');
is( $new->safe_psql($db,
		"SELECT string_agg(name || ' ' || time_attnum, ', ' ORDER BY name) FROM stream_state.query_def"),
	'spend 3, spend_d 3',
	'restored: the time column\'s number is the restored table\'s');
ss_wait_applied($new, $db, 'restored');
is( query($new, $db,
		"SELECT string_agg(name || ' ' || status, ', ' ORDER BY name) FROM stream_state.queries"),
	'spend running, spend_d running', 'restored: both queries run');
for my $q ([ 'spend', 'events' ], [ 'spend_d', 'events_d' ])
{
	my ($name, $table) = @$q;
	is(all_windows($new, $db, $name), $before{$name},
		"restored: every window of $name equals the dumped server's");
	check_windows($new, $db, 'restored', $name, $table, 40, 7200);
}
check_view($new, $db, 'restored', 'spend', 'events');

insert_rows($new, $db, $_, 1200, 1499) for qw(events events_d);
ss_wait_applied($new, $db, 'rows inserted after the restore');
check_windows($new, $db, 'rows inserted after the restore', 'spend', 'events', 40, 9000);
check_windows($new, $db, 'rows inserted after the restore', 'spend_d', 'events_d', 40, 9000);
$new->stop;

#
# 2. DROP EXTENSION
#
my $dropdb = 'dropme';
$old->safe_psql('postgres', "CREATE DATABASE $dropdb");
$old->safe_psql($dropdb, 'CREATE EXTENSION stream_state');
$old->safe_psql($dropdb, 'CREATE TABLE events (user_id bigint, amount numeric, ts timestamptz)');
insert_rows($old, $dropdb, 'events', 0, 599);
create_spend($old, $dropdb, 'spend', 'events');
ss_wait_applied($old, $dropdb, 'before DROP EXTENSION');
check_windows($old, $dropdb, 'before DROP EXTENSION', 'spend', 'events', 40, 3600);

# the slot is physical (no database of its own): its name has the database's OID
my $slots = "SELECT count(*) FROM pg_replication_slots
  WHERE slot_name = 'stream_state_' || (SELECT oid FROM pg_database WHERE datname = '$dropdb')";
is($old->safe_psql($dropdb, $slots), '1', 'before DROP EXTENSION: the database has its slot');

is( ss_error_of($old, $dropdb, 'DROP EXTENSION stream_state'),
	qq{psql:<stdin>:2: ERROR:  2BP01: cannot drop extension stream_state because other objects depend on it
DETAIL:  view spend depends on function stream_state.window_result(text,timestamp with time zone)
HINT:  Use DROP ... CASCADE to drop the dependent objects too.},
	'DROP EXTENSION without CASCADE fails (2BP01), naming the typed view');
insert_rows($old, $dropdb, 'events', 600, 1199);
ss_wait_applied($old, $dropdb, 'after the failed DROP EXTENSION');
check_windows($old, $dropdb, 'after the failed DROP EXTENSION', 'spend', 'events', 40, 7200);

my ($rc, $out, $err) = $old->psql($dropdb, 'DROP EXTENSION stream_state CASCADE');
is("$rc|$err", '0|psql:<stdin>:1: NOTICE:  drop cascades to view spend',
	'DROP EXTENSION ... CASCADE succeeds and drops the view spend with it');
is( $old->safe_psql($dropdb, q{
SELECT (SELECT count(*) FROM pg_extension WHERE extname = 'stream_state') || ' extension, '
	   || (SELECT count(*) FROM pg_class WHERE relname = 'spend') || ' view, '
	   || (SELECT count(*) FROM pg_trigger WHERE tgrelid = 'events'::regclass) || ' triggers on events, '
	   || (SELECT count(*) FROM pg_class WHERE relnamespace = 'stream_state'::regnamespace)
	   || ' relations and '
	   || (SELECT count(*) FROM pg_proc WHERE pronamespace = 'stream_state'::regnamespace)
	   || ' functions in schema stream_state'}),
	'0 extension, 0 view, 0 triggers on events, 0 relations and 0 functions in schema stream_state',
	'after CASCADE: the extension, the view and the capture triggers are gone '
	  . '(the schema CREATE EXTENSION made stays, empty)');
my $table_sum = q{SELECT count(*) || ' ' || sum(amount) || ' ' || count(DISTINCT user_id) FROM events};
is($old->safe_psql($dropdb, $table_sum), '1200 7482.00 4',
	'after CASCADE: the source table keeps its 1200 rows');
insert_rows($old, $dropdb, 'events', 1200, 1299);
is($old->safe_psql($dropdb, $table_sum), '1300 8124.75 4',
	'after CASCADE: inserts into the source table work (no trigger calls into the extension)');
ok($old->poll_query_until('postgres', $slots, '0'),
	'after CASCADE: the worker drops the database\'s slot');
# the other database's query is untouched
check_windows($old, $db, 'after DROP EXTENSION in another database', 'spend', 'events', 40, 7200);

$old->stop;
done_testing();
