
# Copyright (c) stream_state contributors

# A statement whose groups outgrow stream_state.capture_memory: when the
# groups that fill it have large states (hll's, about 130 kB each), the rows
# of the other groups are sorted (PostgreSQL's trace_sort shows the sort of
# three keys: hash, pane, key image) and folded a group at a time; with small
# states (count, sum, max) they are spilled by hash, and nothing is sorted.
# Both give what a GROUP BY of the source table gives.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StreamStateTest;
use Test::More;

my $node = ss_new_node('cq_sorted');
my $db = 'postgres';

$node->safe_psql(
	$db, q{
CREATE EXTENSION stream_state;
CREATE EXTENSION hll;
CREATE TABLE big (k bigint, page text, ts timestamptz);
CREATE TABLE small (k bigint, v bigint, ts timestamptz);
SELECT stream_state.create_query('q_big',
	$$SELECT k, count(*), hll_cardinality(hll_add_agg(hll_hash_text(page))) AS pages FROM big GROUP BY k$$,
	time_column => 'ts', window_size => '1 hour');
SELECT stream_state.create_query('q_small', 'SELECT k, count(*), sum(v), max(v) FROM small GROUP BY k',
	time_column => 'ts', window_size => '1 hour');
});

# each statement with 64 kB of capture memory and the sorts it makes logged
sub insert_traced
{
	my ($sql) = @_;
	my ($out, $err);
	$node->psql(
		$db, "SET stream_state.capture_memory = '64kB'; SET trace_sort = on;
			  SET client_min_messages = log; $sql",
		stdout => \$out,
		stderr => \$err,
		on_error_die => 1);
	return $err;
}

my $err = insert_traced(
	"INSERT INTO big SELECT g % 300, 'p' || (g % 17), '2026-11-24 10:00+00'::timestamptz + (g % 50) * interval '1 minute'
	   FROM generate_series(1, 3000) g");
like($err, qr/begin tuple sort: nkeys = 3/, 'large states: the rows of the groups that do not fit are sorted');

$err = insert_traced(
	"INSERT INTO small SELECT g % 2000, g % 97, '2026-11-24 10:00+00'::timestamptz + (g % 50) * interval '1 minute'
	   FROM generate_series(1, 6000) g");
unlike($err, qr/begin tuple sort/, 'small states: spilled by hash, nothing sorted');

ss_wait_applied($node, $db, 'both statements applied');

is( $node->safe_psql(
		$db, q{
WITH truth AS (SELECT k, count(*), hll_cardinality(hll_add_agg(hll_hash_text(page))) AS pages FROM big GROUP BY k),
got AS (SELECT * FROM stream_state.window_result('q_big', '2026-11-24 10:30+00')
		AS t(k bigint, count bigint, pages float8))
SELECT (SELECT count(*) FROM got) || ' ' || (SELECT sum(count) FROM got) || ' ' ||
	   (SELECT count(*) FROM ((SELECT * FROM got EXCEPT ALL SELECT * FROM truth)
							 UNION ALL (SELECT * FROM truth EXCEPT ALL SELECT * FROM got)) d)}),
	'300 3000 0',
	'q_big: 300 keys, 3000 events, equal to GROUP BY');

is( $node->safe_psql(
		$db, q{
WITH truth AS (SELECT k, count(*), sum(v), max(v) FROM small GROUP BY k),
got AS (SELECT * FROM stream_state.window_result('q_small', '2026-11-24 10:30+00')
		AS t(k bigint, count bigint, sum numeric, max bigint))
SELECT (SELECT count(*) FROM got) || ' ' || (SELECT sum(count) FROM got) || ' ' ||
	   (SELECT count(*) FROM ((SELECT * FROM got EXCEPT ALL SELECT * FROM truth)
							 UNION ALL (SELECT * FROM truth EXCEPT ALL SELECT * FROM got)) d)}),
	'2000 6000 0',
	'q_small: 2000 keys, 6000 events, equal to GROUP BY');

$node->stop;
done_testing();
