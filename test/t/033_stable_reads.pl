
# Copyright (c) stream_state contributors

# A read shows a query's state between two commits, never part of one.  The
# worker applies a commit to the memory store entry by entry; before 0.7.0's
# stable reads a reader could see some of a commit's keys and not others.
#
# 1. Each of 400 transactions adds one row for each of 2,000 keys, so that
#    after every commit all keys have the same count.  Two readers that do
#    not wait for the worker (read_consistency none) read every key's count
#    again and again, of a query in SQL, a windowed count (memory) and a
#    windowed count (rocksdb, read by the worker), and the state view's rows
#    of the memory windowed count: every read must show all 2,000 keys (or
#    none) with equal counts.  Before the fix, about a
#    quarter of the reads of the memory queries were mixed.
# 2. late_to: each of 20 transactions adds 30,000 late groups while the
#    helper writes them; every commit's groups must be written, all of them
#    once.  A helper that read the groups of a commit the worker was still
#    appending wrote part of them and moved its progress past the rest.
# 3. A read that waits longer than stream_state.read_timeout for a commit
#    to be applied fails with a clear message.
# 4. A read longer than the time between two commits of a busy writer ends:
#    the reader holds the query's next commit back after two failed tries.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StreamStateTest;
use Test::More;

my $node = ss_new_node('stable');
my $db = 'postgres';

$node->safe_psql($db, 'CREATE EXTENSION stream_state');
$node->safe_psql($db, q{
CREATE TABLE ev (k int, ts timestamptz);
SELECT stream_state.create_query('a', $q$SELECT k, count(*) FROM ev GROUP BY k$q$,
	time_column => 'ts', window_size => '1 day');
SELECT stream_state.create_query('b', 'ev', key_column => 'k', time_column => 'ts', window_size => '1 day');
SELECT stream_state.create_query('c', 'ev', key_column => 'k', time_column => 'ts', window_size => '1 day',
	backend => 'rocksdb');
CREATE TABLE reads (reader int, q text, nkeys bigint, lo bigint, hi bigint);
CREATE TABLE stop_reading (x int);
});

# Query $q (k, count(*) per k, a window holding every row) against GROUP BY
# of its source $table
sub equals_group_by
{
	my ($q, $table) = @_;
	my $got = qq{SELECT k, count FROM stream_state.window_result('$q', '2026-11-24 12:00+00')
					AS r(k int, count bigint)};
	my $want = "SELECT k, count(*) FROM $table GROUP BY k";
	is( $node->safe_psql(
			$db, qq{SELECT count(*) FROM (($got EXCEPT ALL $want) UNION ALL ($want EXCEPT ALL $got)) d}),
		'0', "query $q equals GROUP BY of the source afterwards");
	return;
}

# ---------------------------------------------------------------- 1
my @readers;
for my $i (1 .. 2)
{
	my $r = $node->background_psql($db, on_error_stop => 1);
	$r->query_until(
		qr/reading/, qq{
SET stream_state.read_consistency = none;
\\echo reading
DO \$\$
DECLARE
	nk bigint; lo bigint; hi bigint;
BEGIN
	WHILE NOT EXISTS (SELECT FROM stop_reading) LOOP
		SELECT count(*), min(count), max(count) INTO nk, lo, hi
		  FROM stream_state.window_result('a', '2026-11-24 12:00+00') AS r(k int, count bigint);
		INSERT INTO reads VALUES ($i, 'a', nk, lo, hi);
		SELECT count(*), min(count), max(count) INTO nk, lo, hi
		  FROM stream_state.window_counts('b', '2026-11-24 12:00+00');
		INSERT INTO reads VALUES ($i, 'b', nk, lo, hi);
		SELECT count(*), min(count), max(count) INTO nk, lo, hi
		  FROM stream_state.window_counts('c', '2026-11-24 12:00+00');
		INSERT INTO reads VALUES ($i, 'c', nk, lo, hi);
		SELECT count(*), min(count), max(count) INTO nk, lo, hi
		  FROM stream_state.state WHERE query = 'b';
		INSERT INTO reads VALUES ($i, 'state', nk, lo, hi);
		COMMIT;
	END LOOP;
END
\$\$;
});
	push @readers, $r;
}

my $batch = join('',
	map { "INSERT INTO ev SELECT g, '2026-11-24 10:00+00' FROM generate_series(1, 2000) g;\n" } 1 .. 400);
$node->safe_psql($db, $batch);
ss_wait_applied($node, $db, '400 transactions of 2,000 keys');
$node->safe_psql($db, 'INSERT INTO stop_reading VALUES (1)');
$_->quit for @readers;

for my $q ('a', 'b', 'c', 'state')
{
	my $n = $node->safe_psql($db, "SELECT count(*) FROM reads WHERE q = '$q'");
	cmp_ok($n, '>=', 20, "$q: the readers read it ($n reads)");
	is( $node->safe_psql(
			$db, qq{SELECT count(*) FROM reads
					 WHERE q = '$q' AND (nkeys NOT IN (0, 2000) OR lo <> hi)}),
		'0',
		"$q: every read shows all 2,000 keys or none, with equal counts (no commit seen in part)"
	  )
	  or diag(
		$node->safe_psql(
			$db, qq{SELECT string_agg(nkeys || ' keys, counts ' || lo || ' to ' || hi, E'\\n')
					 FROM reads WHERE q = '$q' AND (nkeys NOT IN (0, 2000) OR lo <> hi)}));
}
equals_group_by('a', 'ev');

# ---------------------------------------------------------------- 2
$node->safe_psql($db, q{
CREATE TABLE lev (k int, ts timestamptz);
SELECT stream_state.create_query('l', $q$SELECT k, count(*) AS n FROM lev GROUP BY k$q$,
	time_column => 'ts', window_size => '1 minute', late_to => 'late_rows');
INSERT INTO lev VALUES (0, '2026-11-24 12:00+00');
});
# a reader of the late groups as the helper reads them (whole commits)
$node->safe_psql($db, 'CREATE TABLE late_reads (commit_lsn pg_lsn, n bigint)');
my $lr = $node->background_psql($db, on_error_stop => 1);
$lr->query_until(
	qr/reading/, q{
\echo reading
DO $$
BEGIN
	WHILE NOT EXISTS (SELECT FROM stop_reading WHERE x = 2) LOOP
		INSERT INTO late_reads
		SELECT commit_lsn, count(*)
		  FROM stream_state._late_result('l', NULL, 'FFFFFFFF/FFFFFFFF')
			AS t(commit_lsn pg_lsn, committed_at timestamptz, events_from timestamptz, events_to timestamptz,
				 k int, n bigint)
		 GROUP BY commit_lsn;
		COMMIT;
	END LOOP;
END
$$;
});
$node->safe_psql($db,
	join('',
		map { "INSERT INTO lev SELECT g, '2026-11-24 10:00+00'::timestamptz + $_ * interval '1 second'
				 FROM generate_series(1, 30000) g;\n" } 1 .. 20));
ss_wait_applied($node, $db, '20 transactions of 30,000 late groups');
$node->safe_psql($db, 'INSERT INTO stop_reading VALUES (2)');
$lr->quit;
cmp_ok($node->safe_psql($db, 'SELECT count(*) FROM late_reads'), '>', 0, 'the late groups were read');
is($node->safe_psql($db, 'SELECT count(*) FROM late_reads WHERE n <> 30000'),
	'0', 'every read of the late groups shows whole commits (30,000 groups each)')
  or diag($node->safe_psql($db, q{SELECT string_agg(commit_lsn || ': ' || n, E'\n') FROM late_reads WHERE n <> 30000}));
# with the bug, the groups a helper skipped never come: this times out
ok($node->poll_query_until($db, q{SELECT count(*) >= 600000 FROM late_rows}),
	'the helper wrote 600,000 late groups');
is( $node->safe_psql(
		$db, q{SELECT count(*) || ' ' || count(DISTINCT commit_lsn) || ' ' || count(DISTINCT (commit_lsn, k))
				 || ' ' || count(*) FILTER (WHERE n <> 1) FROM late_rows}),
	'600000 20 600000 0',
	'every late group of the 20 commits written once: 30,000 per commit');
is( $node->safe_psql(
		$db, q{SELECT count(*) FROM (SELECT commit_lsn FROM late_rows GROUP BY commit_lsn HAVING count(*) <> 30000) c}),
	'0', 'no commit with part of its late groups');

# ---------------------------------------------------------------- 3
# A commit of 400,000 keys takes the worker well over a millisecond to
# apply; a reader with read_timeout = 1ms that finds it being applied fails.
$node->safe_psql($db, q{
CREATE TABLE big (k int, ts timestamptz);
SELECT stream_state.create_query('big_c', 'big', key_column => 'k', time_column => 'ts', window_size => '1 day');
CREATE TABLE refused (message text, detail text, hint text);
CREATE TABLE big_reads (n bigint);
});
my $r3 = $node->background_psql($db, on_error_stop => 1);
$r3->query_until(
	qr/reading/, q{
SET stream_state.read_consistency = none;
SET stream_state.read_timeout = '1ms';
\echo reading
DO $$
DECLARE
	m text; d text; h text;
BEGIN
	WHILE NOT EXISTS (SELECT FROM stop_reading WHERE x = 3) LOOP
		BEGIN
			INSERT INTO big_reads VALUES (stream_state.window_count('big_c', 1, '2026-11-24 12:00+00'));
		EXCEPTION WHEN query_canceled THEN
			GET STACKED DIAGNOSTICS m = MESSAGE_TEXT, d = PG_EXCEPTION_DETAIL, h = PG_EXCEPTION_HINT;
			INSERT INTO refused VALUES (m, d, h);
		END;
		COMMIT;
	END LOOP;
END
$$;
});
for my $r (1 .. 5)
{
	$node->safe_psql($db, "INSERT INTO big SELECT g, '2026-11-24 10:00+00' FROM generate_series(1, 400000) g");
	ss_wait_applied($node, $db, "commit $r of 400,000 keys");
	last if $node->safe_psql($db, 'SELECT count(*) FROM refused') > 0;
}
$node->safe_psql($db, 'INSERT INTO stop_reading VALUES (3)');
$r3->quit;
cmp_ok($node->safe_psql($db, 'SELECT count(*) FROM refused'),
	'>', 0, 'a read with read_timeout 1ms during the apply of a large commit failed');
is( $node->safe_psql($db, q{SELECT DISTINCT message || E'\n' || detail || E'\n' || hint FROM refused}),
	qq{timed out waiting for stream_state to finish applying a commit to continuous query "big_c"
A read shows the state between two commits, never part of one.
Raise stream_state.read_timeout.},
	'the refused read says why and what to do');
my $commits = $node->safe_psql($db, 'SELECT count(*) / 400000 FROM big');
is( $node->safe_psql($db, "SELECT count(*) FROM big_reads WHERE n NOT BETWEEN 0 AND $commits"),
	'0', 'the reads that did not time out show whole commits');

# ---------------------------------------------------------------- 4
# A scan of 300,000 keys takes longer than the time between two commits of
# a busy writer: every attempt would overlap a commit.  After two failed
# attempts the reader holds the query's next commit back, and its read ends,
# whole.
# (room for it: the queries above go)
$node->safe_psql($db, q{SELECT stream_state.drop_query(name) FROM stream_state.query_def});
$node->safe_psql($db, q{
CREATE TABLE wide (k int, ts timestamptz);
SELECT stream_state.create_query('w', $q$SELECT k, count(*) FROM wide GROUP BY k$q$,
	time_column => 'ts', window_size => '1 day');
INSERT INTO wide SELECT g, '2026-11-24 10:00+00' FROM generate_series(1, 300000) g;
CREATE TABLE stop_writing (x int);
});
ss_wait_applied($node, $db, '300,000 keys');
my $writer = $node->background_psql($db, on_error_stop => 1);
$writer->query_until(
	qr/writing/, q{
\echo writing
DO $$
DECLARE
	i int := 0;
BEGIN
	WHILE NOT EXISTS (SELECT FROM stop_writing) LOOP
		i := i + 1;
		INSERT INTO wide VALUES (i % 300000 + 1, '2026-11-24 10:00+00');
		COMMIT;
	END LOOP;
END
$$;
});
my @wide;
for my $i (1 .. 3)
{
	push @wide,
	  $node->safe_psql(
		$db, q{SET stream_state.read_consistency = none;
			   WITH r AS (SELECT * FROM stream_state.window_result('w', '2026-11-24 12:00+00')
							  AS r(k int, count bigint)),
					s AS (SELECT count, lead(count) OVER (ORDER BY k) AS next FROM r WHERE k >= 2)
			   SELECT (SELECT count(*) FROM r) || ' '
					  || (SELECT bool_and(next IS NULL OR count >= next) AND max(count) - min(count) <= 1 FROM s)});
}
$node->safe_psql($db, 'INSERT INTO stop_writing VALUES (1)');
$writer->quit;
my $wrote = $node->safe_psql($db, 'SELECT count(*) - 300000 FROM wide');
cmp_ok($wrote, '>', 100, "the writer committed while the reads ran ($wrote commits)");
# commit i adds a row to key i % 300000 + 1: a read between two commits
# shows counts that never rise from key 2 on, and differ by at most one
is(join(',', @wide), '300000 true,300000 true,300000 true',
	'three reads of 300,000 keys under a busy writer ended, each between two commits');
ss_wait_applied($node, $db, 'the busy writer');
equals_group_by('w', 'wide');

$node->stop;
done_testing();
