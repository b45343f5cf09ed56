
# Copyright (c) stream_state contributors

# pg_dump of a database and pg_restore into a fresh cluster: the queries
# come back (definitions, owners, readers) and count every restored row
# once.  The rows are loaded before pg_restore creates the capture triggers,
# so nothing counts them during the load; creating the trigger counts them
# (sql_api.c, restore_trigger).  The source table has a dropped column, so
# its columns have other numbers in the restored table.
#
# Rows as in 001_restart.pl: row g has user_id 1 + g % 4 and event time
# 2026-11-24 10:00:00+00 + ((g * 37) % 2100) s.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StreamStateTest;
use Test::More;

my $old = ss_new_node('old');
my $db = 'shop';

my @tumble_at = map { ss_ts(300 * $_ + 60) } (-1 .. 7);
my @slide_at = map { ss_ts(120 * $_ + 30) } (-2 .. 22);

sub check_all
{
	my ($node, $label, $rows) = @_;
	ss_wait_applied($node, $db, $label);
	ss_check_tumble_slide($node, $db, $label, $rows);
	return;
}

sub insert_rows
{
	my ($node, $from, $to) = @_;
	$node->safe_psql($db, qq{INSERT INTO events (user_id, ts)
  SELECT 1 + g % 4,
		 timestamptz '2026-11-24 10:00:00+00' + ((g * 37) % 2100) * interval '1 second'
	FROM generate_series($from, $to) g});
	return;
}

# every window of both queries, as text, to compare two servers
my $tumble_ats = join(',', map { "'$_'" } @tumble_at);
my $slide_ats = join(',', map { "'$_'" } @slide_at);
my $all_windows = qq{
SELECT string_agg(concat_ws(' ', q, key, window_end, count), E'\\n'
				  ORDER BY q, window_end, key)
  FROM (SELECT 'tumble_5m' AS q, at FROM unnest(ARRAY[$tumble_ats]::timestamptz[]) at
		UNION ALL
		SELECT 'slide_10m', at FROM unnest(ARRAY[$slide_ats]::timestamptz[]) at) a,
	   LATERAL stream_state.window_counts(q, at)};

$old->safe_psql('postgres', "CREATE ROLE analyst LOGIN; CREATE ROLE viewer LOGIN; CREATE DATABASE $db");
$old->safe_psql($db, 'CREATE EXTENSION stream_state');
$old->safe_psql(
	$db, q{
CREATE TABLE events (junk int, user_id bigint, ts timestamptz);
ALTER TABLE events DROP COLUMN junk;
ALTER TABLE events OWNER TO analyst;
});
insert_rows($old, 0, 499);
$old->safe_psql(
	$db, q{
SET ROLE analyst;
SELECT stream_state.create_query('tumble_5m', 'events', 'user_id', 'ts',
								 window_size => '5 minutes', lateness => '1 day');
SELECT stream_state.create_query('slide_10m', 'events', 'user_id', 'ts',
								 window_size => '10 minutes', slide => '2 minutes',
								 lateness => '1 day');
SELECT stream_state.grant_read('tumble_5m', 'viewer');
});
insert_rows($old, 500, 1199);
check_all($old, 'before the dump', 1200);
my $before = $old->safe_psql($db, $all_windows);

my $dump = $old->basedir . '/shop.dump';
$old->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $old->connstr($db) ],
	'pg_dump of the database');

my $new = ss_new_node('new');
$new->safe_psql('postgres', "CREATE ROLE analyst LOGIN; CREATE ROLE viewer LOGIN; CREATE DATABASE $db");
my ($stdout, $stderr);
my $ok = IPC::Run::run [ 'pg_restore', '-d', $new->connstr($db), $dump ], '>', \$stdout, '2>',
  \$stderr;
ok($ok, 'pg_restore into a fresh cluster') or diag $stderr;
unlike($stderr // '', qr/error|warning/i, 'pg_restore reports no error or warning');

is( $new->safe_psql(
		$db, q{
SELECT string_agg(concat_ws(' ', name, q.source, q.owner, q.status,
						   (SELECT array_agg(r::text) FROM unnest(d.readers) r)), ', ' ORDER BY name)
  FROM stream_state.queries q JOIN stream_state.query_def d USING (name)}),
	'slide_10m events analyst running, tumble_5m events analyst running {viewer}',
	'restored: both definitions, with their source, owner and reader, and they run');
check_all($new, 'restored', 1200);
is($new->safe_psql($db, $all_windows), $before,
	'restored: every window of both queries equals the dumped server\'s');

insert_rows($new, 1200, 1299);
check_all($new, 'rows inserted after the restore', 1300);
is( $new->safe_psql(
		$db,
		"SELECT stream_state.window_count('tumble_5m', 2::bigint, '2026-11-24 10:01:00+00')",
		extra_params => [ '-U', 'viewer' ]),
	$new->safe_psql(
		$db,
		"SELECT count(*) FROM events WHERE user_id = 2 AND ts >= '2026-11-24 10:00:00+00' AND ts < '2026-11-24 10:05:00+00'"
	),
	'restored: the reader granted on the old server reads on the new one');

# a restart of the new server restores the same (from WAL or a checkpoint)
$new->safe_psql($db, 'SELECT stream_state.checkpoint()');
$new->stop('immediate');
$new->start;
check_all($new, 'restored, then restarted', 1300);

$old->stop;
$new->stop;
done_testing();
