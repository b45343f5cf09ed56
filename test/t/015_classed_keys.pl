
# Copyright (c) stream_state contributors

# Classed keys (types whose equal values can differ in bytes: text under a
# nondeterministic collation, citext, jsonb, interval) stay exact across a
# checkpoint, a clean restart, kill -9 of the postmaster, and an export and
# import into another cluster.
#
# Their images start with the type's hash of the value; the store hashes
# only that prefix, and readers merge the images the type calls equal.  A
# restart or a restore must put every image back where readers look for its
# class (the checkpoint file carries the flag per query), and an import must
# take the prefix again from the value.
#
# Data: row g has event time 10:00 + (g * 37) % 3600 seconds and a key that
# cycles through five spellings of each of (g / 5) % 7 names; some rows are
# rolled back, some come through 2PC.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StreamStateTest;
use Test::More;

my $conf = "stream_state.checkpoint_interval = 0\nmax_prepared_transactions = 5\n";
my $node = ss_new_node('classed', $conf);
my $db = 'postgres';
my $at = ss_ts(3599);          # the window [10:00, 11:00)

my $schema = q{
CREATE EXTENSION stream_state;
CREATE EXTENSION citext;
CREATE COLLATION ss_ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE TABLE ev (t text COLLATE ss_ci, c citext, j jsonb, i interval, ts timestamptz);
SELECT stream_state.create_query('q_t', 'ev', 't', 'ts', '1 hour', lateness => '1 day');
SELECT stream_state.create_query('q_c', 'ev', 'c', 'ts', '1 hour', lateness => '1 day');
SELECT stream_state.create_query('q_j', 'ev', 'j', 'ts', '1 hour', lateness => '1 day');
SELECT stream_state.create_query('q_i', 'ev', 'i', 'ts', '1 hour', lateness => '1 day');
};

# one row per GROUP BY group, each with the count of the rows equal to it
my $recheck = q{
CREATE FUNCTION class_mismatches(q text, col text, typ text, at timestamptz)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
	groups bigint;
	nrows bigint;
	wrong bigint;
BEGIN
	EXECUTE format('SELECT count(*) FROM (SELECT %1$I FROM ev WHERE ts >= $1 - interval ''1 hour''
					  AND ts < $1 AND %1$I IS NOT NULL GROUP BY 1) g', col)
		INTO groups USING date_trunc('hour', at) + interval '1 hour';
	SELECT count(*) INTO nrows FROM stream_state.window_counts(q, at);
	EXECUTE format('SELECT count(*) FROM stream_state.window_counts(%L, $1) w
					 WHERE w.count <> (SELECT count(*) FROM ev WHERE ts >= $2 AND ts < $2 + interval ''1 hour''
										 AND %I = w.key::%s)', q, col, typ)
		INTO wrong USING at, date_trunc('hour', at);
	RETURN abs(groups - nrows) + wrong;
END $$;
};

# rows g = $from .. $to
sub rows_sql
{
	my ($from, $to) = @_;
	return qq{INSERT INTO ev
  SELECT CASE g % 5 WHEN 0 THEN n WHEN 1 THEN upper(n) WHEN 2 THEN lower(n)
					WHEN 3 THEN initcap(n) ELSE n || '' END,
		 CASE g % 2 WHEN 0 THEN upper(n) ELSE n END,
		 format('{"n": "%s", "v": %s}', n, CASE g % 3 WHEN 0 THEN '1' WHEN 1 THEN '1.0' ELSE '1.00' END)::jsonb,
		 CASE g % 3 WHEN 0 THEN make_interval(days => k) WHEN 1 THEN make_interval(hours => 24 * k)
					ELSE make_interval(mins => 1440 * k) END,
		 timestamptz '2026-11-24 10:00:00+00' + ((g * 37) % 3600) * interval '1 second'
	FROM generate_series($from, $to) g,
		 LATERAL (SELECT (g / 5) % 7 AS k) kk,
		 LATERAL (SELECT (ARRAY['Alice', 'bOB', 'Carol', 'dave', 'Eve', 'frank', 'Grace'])[k + 1] AS n) nn;};
}

sub check_all
{
	my ($n, $dbname, $label) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;

	ss_wait_applied($n, $dbname, $label);
	is( $n->safe_psql($dbname, qq{
SELECT string_agg(q || '=' || class_mismatches(q, col, typ, '$at'), ' ' ORDER BY q)
  FROM (VALUES ('q_t', 't', 'text'), ('q_c', 'c', 'citext'), ('q_j', 'j', 'jsonb'),
			   ('q_i', 'i', 'interval')) v(q, col, typ)}),
		'q_c=0 q_i=0 q_j=0 q_t=0',
		"$label: every classed query equals its recomputation by the type's equality");
	return;
}

$node->safe_psql($db, $schema . $recheck);
$node->safe_psql($db, rows_sql(0, 399));
$node->safe_psql($db, 'BEGIN; ' . rows_sql(400, 449) . ' ROLLBACK;');
check_all($node, $db, 'after the first rows');

# the exact numbers: 400 rows, 7 names; name k has the rows with (g / 5) % 7 = k
is( $node->safe_psql($db, qq{
SELECT string_agg(key || ':' || count, ' ' ORDER BY key COLLATE "C")
  FROM stream_state.window_counts('q_t', '$at')}),
	'ALICE:60 BOB:60 CAROL:60 DAVE:55 EVE:55 FRANK:55 GRACE:55',
	'q_t: one row per name, all five spellings counted together, shown by the smallest image');
is( $node->safe_psql($db, qq{
SELECT stream_state.window_count('q_c', 'aLiCe'::citext, '$at') || ' ' ||
	   stream_state.window_count('q_j', '{"v": 1.000, "n": "Alice"}'::jsonb, '$at') || ' ' ||
	   stream_state.window_count('q_i', '0 days'::interval, '$at') || ' ' ||
	   stream_state.window_count('q_i', '1440 minutes'::interval, '$at')}),
	'60 60 60 60', 'window_count by another spelling of the value counts all of it');

# 2PC: one prepared transaction survives the checkpoint and the restart
$node->safe_psql($db, 'BEGIN; ' . rows_sql(450, 499) . " PREPARE TRANSACTION 'p1';");
$node->safe_psql($db, 'BEGIN; ' . rows_sql(500, 519) . " PREPARE TRANSACTION 'p2';");
$node->safe_psql($db, "COMMIT PREPARED 'p2';");
my $id = $node->safe_psql($db, 'SELECT stream_state.checkpoint()');
is($id, '1', 'checkpoint 1 taken');
$node->safe_psql($db, rows_sql(520, 599));
check_all($node, $db, 'before the restart');

$node->restart;
check_all($node, $db, 'after a clean restart (checkpoint + WAL)');
ok($node->log_contains(qr/restored checkpoint 1 of database/), 'the restart restored checkpoint 1');
$node->safe_psql($db, "COMMIT PREPARED 'p1';");
check_all($node, $db, 'after COMMIT PREPARED of a transaction prepared before the restart');

# kill -9 of the postmaster after a second checkpoint and more rows
is($node->safe_psql($db, 'SELECT stream_state.checkpoint()'), '2', 'checkpoint 2 taken');
$node->safe_psql($db, rows_sql(600, 699));
$node->stop('immediate');
$node->start;
check_all($node, $db, 'after kill -9 of the postmaster');
is( $node->safe_psql($db, qq{
SELECT sum(count) FROM stream_state.window_counts('q_t', '$at')}),
	$node->safe_psql($db, 'SELECT count(*) FROM ev'),
	'q_t counts every committed row once (700 - 50 rolled back)');

# export, and import into another cluster: the prefix is taken again there
my $dir = PostgreSQL::Test::Utils::tempdir;
chmod 0777, $dir;
$id = $node->safe_psql($db, 'SELECT stream_state.checkpoint()');
my $file = "$dir/classed.ckpt";
$node->safe_psql($db, "SELECT stream_state.export_checkpoint($id, '$file')");
my $dst = ss_new_node('classed_dst', $conf);
$dst->safe_psql($db, $schema . $recheck);
$dst->safe_psql($db, "SELECT * FROM stream_state.import_checkpoint('$file')");
ss_wait_applied($dst, $db, 'import');
my $counts = q{
SELECT string_agg(q || ' ' || key || ' ' || count, E'\n' ORDER BY q, key COLLATE "C")
  FROM unnest(ARRAY['q_t', 'q_c', 'q_j', 'q_i']) q,
	   LATERAL stream_state.window_counts(q, '} . $at . q{')};
is($dst->safe_psql($db, $counts), $node->safe_psql($db, $counts),
	'the imported state reads the same as the source, query by query and value by value');
is( $dst->safe_psql($db, qq{
SELECT stream_state.window_count('q_t', 'grace'::text, '$at') = (
	   SELECT count FROM stream_state.window_counts('q_t', '$at') WHERE key = 'GRACE')}),
	't', 'point reads find the imported images of a value by another spelling');

$dst->stop;
$node->stop;
done_testing();
