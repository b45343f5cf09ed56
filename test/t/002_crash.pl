
# Copyright (c) stream_state contributors

# State stays exact across crashes.
#
# Three crashes, each in the middle of a stream of committing inserts and
# with transactions open at the crash moment:
#   1. an immediate shutdown of the postmaster ($node->stop('immediate'): no
#      shutdown checkpoint, recovery at the next start);
#   2. kill -9 of an ordinary backend (the one holding an open transaction),
#      after which the postmaster kills every process and re-initialises
#      shared memory (restart_after_crash = on);
#   3. kill -9 of the stream_state worker itself, same consequence.
# After each, every committed row must be counted exactly once and rows of
# transactions that were open at the crash never, including those of a large
# open transaction whose deltas were already written to WAL early
# (stream_state.max_delta_entries), and of transactions prepared before the
# crash and committed after it.
#
# Row pattern as in 001_restart.pl: row g has user_id 1 + g % 4 and event
# time 2026-11-24 10:00:00+00 + ((g * 37) % 2100) s, always within
# 10:00:00 .. 10:34:59.  Rows that must never count have user_id >= 900.
# The streams number their rows g = base + 1, base + 2, ... and commit each
# row on its own, so the rows that survive a crash are base + 1 .. base + n
# for some n that the test reads back from the table.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StreamStateTest;
use Test::More;

# The cluster module turns restart_after_crash off; a backend crash must
# re-initialise the server here, as it does in production.
my $node = ss_new_node('crash', "restart_after_crash = on\n");
my $db = 'postgres';

# Rows g = $from .. $to of the pattern, under user_id 1 + g % 4, or under
# $marker when given.
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

# Windows read, as in 001_restart.pl: the nine tumbling windows
# [09:55, 10:00) .. [10:35, 10:40) (their counts add up to the number of
# rows), and the sliding windows ending at 09:58 .. 10:46 (5 times the rows).
my @tumble_at = map { ss_ts(300 * $_ + 60) } (-1 .. 7);
my @slide_at = map { ss_ts(120 * $_ + 30) } (-2 .. 22);

# Every check of the three queries, given the number of committed rows
# (no row of this test has a NULL key or time).
sub check_all
{
	my ($label, $rows) = @_;

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
		total => $rows);
	is( $node->safe_psql(
			$db,
			q{SELECT count(*) FROM stream_state.state WHERE key::bigint >= 900}),
		'0',
		"$label: no state entry for keys of rolled-back or uncommitted rows");
	for my $q ('tumble_5m', 'slide_10m', 'proc_all')
	{
		is(ss_query_stats($node, $db, $q),
			"running|$rows|0|0",
			"$label: $q: running, $rows events applied, 0 skipped, 0 late");
	}
	return;
}

# A background session inserting rows base + 1, base + 2, ... one per
# transaction, until the server goes away.  Returns once it is running.
sub start_stream
{
	my ($base) = @_;
	my $s = $node->background_psql($db, on_error_stop => 0);
	$s->query_until(
		qr/streaming/, qq{
\\echo streaming
DO \$\$
BEGIN
	FOR i IN 1 .. 9999999 LOOP
		INSERT INTO events (user_id, ts, g)
		VALUES (1 + i % 4,
				timestamptz '2026-11-24 10:00:00+00' + ((i * 37) % 2100) * interval '1 second',
				$base + i);
		COMMIT;
	END LOOP;
END
\$\$;
});
	return $s;
}

# Waits until the stream from $base has committed at least $n rows.
sub wait_stream
{
	my ($base, $n) = @_;
	ok( $node->poll_query_until(
			$db,
			"SELECT count(*) >= $n FROM events WHERE g > $base AND g <= $base + 9999999"
		),
		"stream from $base committed at least $n rows");
	return;
}

# After a crash: how many rows of the stream from $base survived.  They must
# be exactly $base + 1 .. $base + n (one commit per row, one session).
sub stream_survivors
{
	my ($base, $label) = @_;
	my ($n, $max) = split /\|/,
	  $node->safe_psql($db,
		"SELECT count(*), coalesce(max(g) - $base, 0) FROM events WHERE g > $base AND g <= $base + 9999999"
	  );
	is($n, $max, "$label: the stream's surviving rows are $base + 1 .. $base + $n");
	return $n;
}

# A session holding an open transaction with rows that must never count:
# 50 rows under key $marker, a released savepoint and then, with deltas
# flushed to WAL early every 100 entries, 1000 distinct keys
# ($marker * 10 .. $marker * 10 + 999).
sub open_transaction
{
	my ($marker) = @_;
	my $s = $node->background_psql($db);
	$s->query_safe(
		    "SET stream_state.max_delta_entries = 100;\nBEGIN;\n"
		  . rows_sql(0, 49, $marker)
		  . "\nSAVEPOINT s;\n"
		  . "INSERT INTO events (user_id, ts, g) SELECT $marker * 10 + g, '2026-11-24 10:01:00+00', g FROM generate_series(0, 999) g;\n"
		  . "RELEASE SAVEPOINT s;");
	return $s;
}

sub wait_crash_restart
{
	my ($offset, $label) = @_;
	$node->wait_for_log(qr/all server processes terminated; reinitializing/,
		$offset);
	ok($node->poll_query_until($db, 'SELECT 1', '1'),
		"$label: server accepts connections again after the crash");
	return;
}

$node->safe_psql($db, 'CREATE EXTENSION stream_state');
$node->safe_psql($db, 'CREATE TABLE events (user_id bigint, ts timestamptz, g int)');

# Rows 0 .. 29 before the queries exist (counted by create_query).
$node->safe_psql($db, rows_sql(0, 29));
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

# Rows 30 .. 89; a rollback (key 900); rows 90 .. 119 around a savepoint
# rolled back (key 901).
$node->safe_psql($db, rows_sql(30, 89));
$node->safe_psql($db, "BEGIN;\n" . rows_sql(0, 29, 900) . "\nROLLBACK;");
$node->safe_psql(
	$db, "BEGIN;\n"
	  . rows_sql(90, 104)
	  . "\nSAVEPOINT a;\n"
	  . rows_sql(0, 29, 901)
	  . "\nROLLBACK TO SAVEPOINT a;\n"
	  . rows_sql(105, 119)
	  . "\nCOMMIT;");

# A committed transaction large enough to write its deltas early: rows
# 1000 .. 1499, 500 distinct keys (100 .. 599) in flushes of 100 entries.
$node->safe_psql(
	$db, q{
SET stream_state.max_delta_entries = 100;
INSERT INTO events (user_id, ts, g)
SELECT 100 + g % 500,
	   timestamptz '2026-11-24 10:00:00+00' + ((g * 37) % 2100) * interval '1 second',
	   g
  FROM generate_series(1000, 1499) g;
});

# Prepared before the crash, committed after it: rows 120 .. 149.
$node->safe_psql($db,
	"BEGIN;\n" . rows_sql(120, 149) . "\nPREPARE TRANSACTION 'p_crash';");

# Committed so far: 30 + 60 + 30 + 500 = 620 rows.
ss_wait_applied($node, $db, 'before the crashes');
check_all('before the crashes', 620);

###
### 1. Immediate shutdown in the middle of a stream of commits.
###
my $stream = start_stream(10_000_000);
my $open1 = open_transaction(950);
my $open2 = open_transaction(951);
wait_stream(10_000_000, 300);

$node->stop('immediate');
ss_bg_abandon($_) for ($stream, $open1, $open2);
$node->start;

my $n1 = stream_survivors(10_000_000, 'after immediate shutdown');
cmp_ok($n1, '>=', 300, 'at least the 300 rows seen committed survived');
ss_wait_applied($node, $db, 'after immediate shutdown');
check_all('after immediate shutdown', 620 + $n1);

$node->safe_psql($db, "COMMIT PREPARED 'p_crash'");
ss_wait_applied($node, $db, 'after COMMIT PREPARED p_crash');
check_all('after COMMIT PREPARED p_crash', 650 + $n1);

###
### 2. kill -9 of a backend that holds an open transaction.
###
$node->safe_psql($db,
	"BEGIN;\n" . rows_sql(150, 179) . "\nPREPARE TRANSACTION 'p_kill';");
$stream = start_stream(20_000_000);
my $victim = open_transaction(960);
my $victim_pid = $victim->query_safe('SELECT pg_backend_pid()');
wait_stream(20_000_000, 200);

my $offset = -s $node->logfile;
is(kill('KILL', $victim_pid), 1, "sent SIGKILL to backend $victim_pid");
wait_crash_restart($offset, 'backend kill');
ok( $node->log_contains(
		qr/server process \(PID $victim_pid\) was terminated by signal 9/,
		$offset),
	'the postmaster saw the backend die of SIGKILL');
ss_bg_abandon($_) for ($stream, $victim);

my $n2 = stream_survivors(20_000_000, 'after backend kill');
cmp_ok($n2, '>=', 200, 'at least the 200 rows seen committed survived');
ss_wait_applied($node, $db, 'after backend kill');
check_all('after backend kill', 650 + $n1 + $n2);

$node->safe_psql($db, "COMMIT PREPARED 'p_kill'");
ss_wait_applied($node, $db, 'after COMMIT PREPARED p_kill');
check_all('after COMMIT PREPARED p_kill', 680 + $n1 + $n2);

###
### 3. kill -9 of the stream_state worker.
###
# Rows 180 .. 209 are committed just before the kill: the worker may or may
# not have applied them; either way they count once.
$stream = start_stream(30_000_000);
my $open3 = open_transaction(970);
wait_stream(30_000_000, 100);
$node->safe_psql($db, rows_sql(180, 209));
my $worker_pid = $node->safe_psql(
	$db, q{
SELECT pid FROM pg_stat_activity WHERE backend_type = 'stream_state worker'});
like($worker_pid, qr/^\d+$/, 'found the one worker (one database uses stream_state)');

$offset = -s $node->logfile;
is(kill('KILL', $worker_pid), 1, "sent SIGKILL to worker $worker_pid");
wait_crash_restart($offset, 'worker kill');
ss_bg_abandon($_) for ($stream, $open3);

my $n3 = stream_survivors(30_000_000, 'after worker kill');
cmp_ok($n3, '>=', 100, 'at least the 100 rows seen committed survived');
ss_wait_applied($node, $db, 'after worker kill');
check_all('after worker kill', 710 + $n1 + $n2 + $n3);

# A clean restart after all that changes nothing.
$node->restart;
ss_wait_applied($node, $db, 'after final restart');
check_all('after final restart', 710 + $n1 + $n2 + $n3);

$node->stop;
done_testing();
