
# Copyright (c) stream_state contributors

# State survives a clean restart exactly.
#
# Three continuous queries over one table: a tumbling and a sliding window on
# event time, and a processing-time window.  Rows arrive through every path a
# transaction can take: rows that exist before the query (backfill), plain
# commits, COPY, a rollback, ROLLBACK TO SAVEPOINT, a PL/pgSQL exception block
# (an aborted subtransaction), a transaction that fails with an error, large
# transactions whose deltas go to the WAL before their commit (committed,
# rolled back, and rolled back to a savepoint), and two prepared transactions
# that stay prepared across the restart; one is committed and one rolled back
# afterwards.  After each step the state must
# equal a recomputation from the table, with the exact numbers written down
# here.
#
# The data: row g has user_id 1 + g % 4 and event time
# 2026-11-24 10:00:00+00 + ((g * 37) % 2100) seconds.  37 and 2100 are
# coprime, so rows 0..209 have 210 distinct times spread irregularly over
# 10:00:00 .. 10:34:59, and different windows hold different counts.  One
# large transaction adds rows 1000 .. 1499 under user_id 100 + g % 500 (same
# times), to make the capture write its deltas early.  Rows that must never
# be counted have a user_id of 900 or more.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StreamStateTest;
use Test::More;

my $node = ss_new_node('restart');
my $db = 'postgres';

# Rows g = $from .. $to of the pattern above, under user_id 1 + g % 4, or
# under $marker (a key that must never show up in state) when given.
sub rows_sql
{
	my ($from, $to, $marker) = @_;
	my $key = defined $marker ? $marker : '1 + g % 4';
	return qq{INSERT INTO events (user_id, ts, g)
  SELECT $key,
		 timestamptz '2026-11-24 10:00:00+00' + ((g * 37) % 2100) * interval '1 second',
		 g
	FROM generate_series($from, $to) g;};
}

# The instants at which the event-time windows are read.
#
# Tumbling 5 minutes: 09:56, 10:01, ..., 10:36, i.e. the nine windows
# [09:55, 10:00) .. [10:35, 10:40).  They partition time, and every row lies
# in 10:00 .. 10:35, so the counts over them add up to the number of rows.
my @tumble_at = map { ss_ts(300 * $_ + 60) } (-1 .. 7);

# Sliding 10 minutes every 2 minutes: 09:56:30, 09:58:30, ..., 10:44:30, i.e.
# the windows ending at 09:58, 10:00, ..., 10:46.  A row at time t lies in
# the five windows ending in (t, t + 10 min]; for t in 10:00 .. 10:35 those
# all end between 10:02 and 10:44, so the counts add up to 5 times the rows.
my @slide_at = map { ss_ts(120 * $_ + 30) } (-2 .. 22);

# All checks of the three queries.  $rows: committed rows with a key and a
# time (the event-time queries count them); $proc_rows: committed rows with a
# key (the processing-time query also counts rows whose ts is NULL).
sub check_all
{
	my ($label, $rows, $proc_rows) = @_;

	ss_check_event_windows(
		$node, $db,
		name => $label,
		query => 'tumble_5m',
		table => 'events',
		key => 'user_id',
		time => 'ts',
		size => 300,
		slide => 300,
		at => \@tumble_at,
		total => $rows);
	ss_check_event_windows(
		$node, $db,
		name => $label,
		query => 'slide_10m',
		table => 'events',
		key => 'user_id',
		time => 'ts',
		size => 600,
		slide => 120,
		at => \@slide_at,
		total => 5 * $rows);
	ss_check_processing_windows(
		$node, $db,
		name => $label,
		query => 'proc_all',
		table => 'events',
		key => 'user_id',
		size_days => 10000,
		total => $proc_rows);

	# No key of a rolled-back row, whatever the window.
	is( $node->safe_psql(
			$db,
			q{SELECT count(*) FROM stream_state.state WHERE key::bigint >= 900}),
		'0',
		"$label: no state entry for keys of rolled-back rows");
	is( $node->safe_psql(
			$db,
			q{SELECT stream_state.window_count('tumble_5m', 900::bigint, '2026-11-24 10:01:00+00')}
		),
		'0',
		"$label: window_count of a rolled-back key is 0");

	# The counters: events applied, rows skipped (NULL key or time), late events.
	# 3 rows have a NULL key and 2 a NULL time; the processing-time query has
	# no time column, so it skips only the 3 NULL keys and counts the others.
	is(ss_query_stats($node, $db, 'tumble_5m'),
		"running|$rows|5|0",
		"$label: tumble_5m: running, $rows events applied, 5 skipped, 0 late");
	is(ss_query_stats($node, $db, 'slide_10m'),
		"running|$rows|5|0",
		"$label: slide_10m: running, $rows events applied, 5 skipped, 0 late");
	is(ss_query_stats($node, $db, 'proc_all'),
		"running|$proc_rows|3|0",
		"$label: proc_all: running, $proc_rows events applied, 3 skipped, 0 late"
	);
	return;
}

$node->safe_psql($db, 'CREATE EXTENSION stream_state');
$node->safe_psql(
	$db, q{
CREATE TABLE events (user_id bigint, ts timestamptz, g int);
});

# Rows 0 .. 29 exist before the queries do: create_query counts them.
$node->safe_psql($db, rows_sql(0, 29));

# The lateness of one day keeps every window of the test open: reading a
# window that has ended at or before the watermark is an error (22023).
$node->safe_psql(
	$db, q{
SELECT stream_state.create_query('tumble_5m', 'events', 'user_id', 'ts',
								 window_size => '5 minutes', lateness => '1 day');
SELECT stream_state.create_query('slide_10m', 'events', 'user_id', 'ts',
								 window_size => '10 minutes', slide => '2 minutes',
								 lateness => '1 day');
SELECT stream_state.create_query('proc_all', 'events', 'user_id',
								 window_size => '10000 days');
});

# Rows 30 .. 89 in one statement, plus rows with a NULL key (3) and with a
# NULL time (2, under key 7).
$node->safe_psql(
	$db, rows_sql(30, 89) . q{
INSERT INTO events (user_id, ts, g) VALUES
	(NULL, '2026-11-24 10:05:00+00', -1),
	(NULL, '2026-11-24 10:06:00+00', -2),
	(NULL, NULL, -3),
	(7, NULL, -4),
	(7, NULL, -5);
});

# A rolled-back transaction: nothing of it may count.
$node->safe_psql($db, "BEGIN;\n" . rows_sql(90, 119, 900) . "\nROLLBACK;");

# Savepoints: rows 90 .. 104, a subtransaction rolled back (key 901), rows
# 105 .. 119 in a released subtransaction, another rolled back (key 902).
$node->safe_psql(
	$db, "BEGIN;\n"
	  . rows_sql(90, 104)
	  . "\nSAVEPOINT a;\n"
	  . rows_sql(90, 119, 901)
	  . "\nROLLBACK TO SAVEPOINT a;\nSAVEPOINT b;\n"
	  . rows_sql(105, 119)
	  . "\nRELEASE SAVEPOINT b;\nSAVEPOINT c;\n"
	  . rows_sql(0, 9, 902)
	  . "\nROLLBACK TO SAVEPOINT c;\nCOMMIT;");

# COPY: rows 120 .. 129.
my $copy = "COPY events (user_id, ts, g) FROM STDIN;\n";
$copy .= join("\t", 1 + $_ % 4, ss_ts(($_ * 37) % 2100), $_) . "\n"
  for (120 .. 129);
$copy .= "\\.\n";
$node->safe_psql($db, $copy);

# A PL/pgSQL exception block is a subtransaction that is rolled back: rows
# 130 .. 149 count, the 20 rows under key 903 do not.
$node->safe_psql(
	$db, q{
DO $$
BEGIN
	INSERT INTO events (user_id, ts, g)
	SELECT 1 + g % 4,
		   timestamptz '2026-11-24 10:00:00+00' + ((g * 37) % 2100) * interval '1 second',
		   g
	  FROM generate_series(130, 149) g;
	BEGIN
		INSERT INTO events (user_id, ts, g)
		SELECT 903, '2026-11-24 10:03:00+00', g FROM generate_series(1, 20) g;
		RAISE EXCEPTION 'roll back the inner block';
	EXCEPTION WHEN raise_exception THEN
		NULL;
	END;
END
$$;
});

# Large transactions write their deltas to WAL early, every
# stream_state.max_delta_entries (query, key, pane) entries, under the
# (sub)transaction id that captured them.  Such early messages must still
# vanish with a rolled-back savepoint or transaction.  Here, with flushes
# every 100 entries: 500 distinct keys (2000 .. 2499) in a savepoint that is
# rolled back; 500 rows 1000 .. 1499 under 500 distinct keys 100 .. 599 in a
# released savepoint, committed; and 500 keys (3000 .. 3499) in a transaction
# that is rolled back.
$node->safe_psql(
	$db, q{
SET stream_state.max_delta_entries = 100;
BEGIN;
SAVEPOINT big_a;
INSERT INTO events (user_id, ts, g)
SELECT 2000 + g, '2026-11-24 10:02:00+00', g FROM generate_series(0, 499) g;
ROLLBACK TO SAVEPOINT big_a;
SAVEPOINT big_b;
INSERT INTO events (user_id, ts, g)
SELECT 100 + g % 500,
	   timestamptz '2026-11-24 10:00:00+00' + ((g * 37) % 2100) * interval '1 second',
	   g
  FROM generate_series(1000, 1499) g;
RELEASE SAVEPOINT big_b;
COMMIT;
BEGIN;
INSERT INTO events (user_id, ts, g)
SELECT 3000 + g, '2026-11-24 10:02:00+00', g FROM generate_series(0, 499) g;
ROLLBACK;
});

# A transaction that fails: division by zero after an insert (key 904).
my ($ret, $stdout, $stderr) = $node->psql($db,
	"BEGIN;\n" . rows_sql(0, 9, 904) . "\nSELECT 1/0;\nCOMMIT;");
is($ret, 3, 'the failing transaction stopped at its error (psql exit 3)');
like($stderr, qr/division by zero/, 'it failed with division by zero');

# Two prepared transactions, left prepared across the restart: rows
# 150 .. 179 (to be committed) and 30 rows under key 905 (to be rolled back).
$node->safe_psql($db,
	"BEGIN;\n" . rows_sql(150, 179) . "\nPREPARE TRANSACTION 'p_commit';");
$node->safe_psql($db,
	"BEGIN;\n" . rows_sql(150, 179, 905) . "\nPREPARE TRANSACTION 'p_abort';");

# So far committed: rows 0 .. 149 and 1000 .. 1499, i.e. 650 rows with key
# and time, and 652 with a key (the two NULL-time rows of key 7).
is($node->safe_psql($db, 'SELECT count(*) FROM events WHERE user_id IS NOT NULL AND ts IS NOT NULL'),
	'650', 'the table holds 650 countable rows before the restart');

ss_wait_applied($node, $db, 'before restart');
check_all('before restart', 650, 652);

# Exact counts of single keys, by hand from the pattern.  Key 1 has the rows
# g = 0, 4, 8, ... ; those with (g * 37) % 2100 < 300 s lie in [10:00, 10:05):
# g = 0 (0 s), 4 (148), 8 (296), 60 (120), 64 (268), 116 (92), 120 (240),
# i.e. 7 among rows 0 .. 149.  Key 2 has g = 1, 5, 9, ... ; in the sliding
# window [10:00, 10:10) (read at 10:09) lie those below 600 s: g = 1, 5, 9, 13,
# 57, 61, 65, 69, 117, 121, 125, 129, i.e. 12.
sub check_keys
{
	my ($label, $key1, $key2) = @_;
	is( $node->safe_psql(
			$db,
			q{SELECT stream_state.window_count('tumble_5m', 1::bigint, '2026-11-24 10:01:00+00')}
		),
		$key1,
		"$label: key 1 has $key1 events in tumbling window [10:00, 10:05)");
	is( $node->safe_psql(
			$db,
			q{SELECT stream_state.window_count('slide_10m', 2::bigint, '2026-11-24 10:09:00+00')}
		),
		$key2,
		"$label: key 2 has $key2 events in sliding window [10:00, 10:10)");
	return;
}
check_keys('before restart', 7, 12);

# A clean restart: shutdown checkpoint, prepared transactions survive.
$node->restart;

ss_wait_applied($node, $db, 'after restart');
check_all('after restart', 650, 652);
check_keys('after restart', 7, 12);
is( $node->safe_psql(
		$db, q{SELECT gid FROM pg_prepared_xacts ORDER BY gid COLLATE "C"}),
	"p_abort\np_commit",
	'both prepared transactions survived the restart');

# Finish the prepared transactions after the restart, then more rows: rows
# 150 .. 179 arrive by COMMIT PREPARED, 180 .. 209 by a plain commit.
$node->safe_psql($db, "COMMIT PREPARED 'p_commit'");
$node->safe_psql($db, "ROLLBACK PREPARED 'p_abort'");
$node->safe_psql($db, rows_sql(180, 209));

ss_wait_applied($node, $db, 'after COMMIT PREPARED');
check_all('after COMMIT PREPARED', 710, 712);
# Rows 150 .. 209 add g = 172 (64 s) and 176 (212 s) to key 1's window, and
# g = 173 (101 s), 177 (249), 181 (397), 185 (545) to key 2's.
check_keys('after COMMIT PREPARED', 9, 16);

# A second restart must not apply anything twice, in particular not the
# COMMIT PREPARED of a transaction prepared before the first one.
$node->restart;

ss_wait_applied($node, $db, 'after second restart');
check_all('after second restart', 710, 712);
check_keys('after second restart', 9, 16);

$node->stop;
done_testing();
