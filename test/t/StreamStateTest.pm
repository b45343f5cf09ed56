
# Copyright (c) stream_state contributors

=pod

=head1 NAME

StreamStateTest - helpers shared by the stream_state TAP tests

=head1 SYNOPSIS

  use FindBin;
  use lib $FindBin::RealBin;
  use StreamStateTest;

  my $node = ss_new_node('main');
  $node->safe_psql('postgres', 'CREATE EXTENSION stream_state');
  ss_wait_applied($node, 'postgres', 'after the inserts');
  ss_check_event_windows($node, 'postgres', query => 'tumble_5m', ...);

=head1 DESCRIPTION

Every helper that checks state compares what stream_state returns with a
recomputation from the source table, in one SQL statement, and reports both
sides' totals, so a failing test says by how much it is off.  The helpers
never sleep: they wait with stream_state.wait_applied() or poll_query_until.

=cut

package StreamStateTest;

use strict;
use warnings FATAL => 'all';

use Exporter 'import';
use FindBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

our @EXPORT = qw(
  ss_new_node
  ss_wait_applied
  ss_check_event_windows
  ss_check_tumble_slide
  ss_check_slide
  ss_create_tumble_slide
  ss_insert_events
  ss_check_hour_window
  ss_check_processing_windows
  ss_query_stats
  ss_bg_abandon
  ss_start_writer
  ss_wait_log
  ss_checkpoint
  ss_slot_restart
  ss_ckpt_dir
  ss_error_of
  ss_kill9_and_restart
  ss_ts
);

# How long wait_applied() may wait.  Generous: the worker may have to re-read
# all WAL since the extension was created after a restart or a crash.
our $WAIT_TIMEOUT = "$PostgreSQL::Test::Utils::timeout_default seconds";

# test/stream_state.conf, found next to this file's directory (test/t/..),
# so the tests do not depend on prove's working directory.
my $conf_file = "$FindBin::RealBin/../stream_state.conf";

=pod

=over

=item ss_new_node(name, extra_conf)

A new, started node whose postgresql.conf has test/stream_state.conf
appended (and then extra_conf, when given: later settings win).  The
extension is not created: each test does that itself, in the databases it
wants.

=cut

sub ss_new_node
{
	my ($name, $extra_conf) = @_;

	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->append_conf('postgresql.conf', slurp_file($conf_file));
	$node->append_conf('postgresql.conf', $extra_conf)
	  if defined $extra_conf;
	$node->start;
	return $node;
}

=pod

=item ss_wait_applied(node, dbname, label)

One test: stream_state.wait_applied() returns true, i.e. the worker of
dbname has applied all WAL written so far.

=cut

sub ss_wait_applied
{
	my ($node, $dbname, $label) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;

	my $res = $node->safe_psql($dbname,
		"SELECT stream_state.wait_applied(NULL, '$WAIT_TIMEOUT')");
	is($res, 't', "$label: worker of \"$dbname\" caught up (wait_applied)");
	return $res eq 't';
}

=pod

=item ss_ts(seconds)

The timestamptz literal for 2026-11-24 10:00:00+00 plus seconds (which may
be negative), e.g. ss_ts(90) is '2026-11-24 10:01:30+00'.  Used to write
COPY data and to name instants in test names.

=cut

sub ss_ts
{
	my ($sec) = @_;
	my ($y, $mo, $d, $h) = (2026, 11, 24, 10);
	my $total = $h * 3600 + $sec;
	die "ss_ts: $sec leaves 2026-11-24" if $total < 0 || $total >= 86400;
	return sprintf("%04d-%02d-%02d %02d:%02d:%02d+00",
		$y, $mo, $d, int($total / 3600), int(($total % 3600) / 60),
		$total % 60);
}

=pod

=item ss_check_event_windows(node, dbname, %args)

Compares stream_state.window_counts(query, at) with a recomputation from the
source table, for every instant in at => [...] (timestamptz literals), all in
one statement.  Arguments: query, table, key, time (column names), size and
slide (window size and slide in seconds), at, total (the exact expected sum
of counts over all those windows) and name.

The recomputation follows docs/sql-reference.md: the window of "at" ends at
the first multiple of slide (counted from the Unix epoch) strictly after at,
and starts size before that; rows with a NULL key or time are not counted.
Rows (at, key, window_start, window_end, count) are compared with EXCEPT ALL
both ways, so a wrong window bound, a missing or extra key, a wrong count or
a duplicate row all show up.

Two tests: no differing rows, and the exact totals of both sides.

=cut

sub ss_check_event_windows
{
	my ($node, $dbname, %a) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;

	my $ats = join(',', map { "'$_'::timestamptz" } @{ $a{at} });
	my $n_at = scalar @{ $a{at} };

	my $cte = qq{
WITH ats AS (
	SELECT unnest(ARRAY[$ats]) AS at
), got AS (
	SELECT a.at, c.key, c.window_start, c.window_end, c.count
	  FROM ats a, LATERAL stream_state.window_counts('$a{query}', a.at) c
), bounds AS (
	SELECT at,
		   to_timestamp((floor(extract(epoch FROM at) / $a{slide}) + 1) * $a{slide}) AS we
	  FROM ats
), want AS (
	SELECT b.at, s.$a{key}::text AS key,
		   b.we - make_interval(secs => $a{size}) AS window_start,
		   b.we AS window_end,
		   count(*) AS count
	  FROM bounds b
	  JOIN $a{table} s
		ON s.$a{time} >= b.we - make_interval(secs => $a{size})
	   AND s.$a{time} < b.we
	 WHERE s.$a{key} IS NOT NULL
	 GROUP BY 1, 2, 3, 4
)};

	my $res = $node->safe_psql(
		$dbname, qq{$cte
SELECT (SELECT count(*) FROM (SELECT * FROM got EXCEPT ALL SELECT * FROM want) x)
	   || ' rows only in state, '
	   || (SELECT count(*) FROM (SELECT * FROM want EXCEPT ALL SELECT * FROM got) y)
	   || ' rows only in recomputation'});
	is($res, '0 rows only in state, 0 rows only in recomputation',
		"$a{name}: window_counts('$a{query}') at $n_at instants equals the recomputation from $a{table}"
	);
	if ($res ne '0 rows only in state, 0 rows only in recomputation')
	{
		# The first 20 differing rows (at, key, window, count), by instant and key.
		diag "first differing rows:\n"
		  . $node->safe_psql(
			$dbname, qq{$cte
SELECT * FROM (
	SELECT 'state only', * FROM (SELECT * FROM got EXCEPT ALL SELECT * FROM want) x
	UNION ALL
	SELECT 'recomputation only', * FROM (SELECT * FROM want EXCEPT ALL SELECT * FROM got) y
) d ORDER BY 2, 3, 1 LIMIT 20});
	}

	my $totals = $node->safe_psql(
		$dbname, qq{$cte
SELECT (SELECT coalesce(sum(count), 0) FROM got) || ' in state, '
	   || (SELECT coalesce(sum(count), 0) FROM want) || ' recomputed'});
	is($totals, "$a{total} in state, $a{total} recomputed",
		"$a{name}: '$a{query}' counts $a{total} events over those windows");
	return;
}

=pod

=item ss_create_tumble_slide(node, dbname, tumble_backend, slide_backend)

Creates events(user_id bigint, ts timestamptz) and on it the two queries
that ss_check_tumble_slide reads, 'tumble_5m' and 'slide_10m', with a
lateness of a day (no event of the tests is late), on the backends given
('memory' or 'rocksdb').

=cut

sub ss_create_tumble_slide
{
	my ($node, $dbname, $tumble_backend, $slide_backend) = @_;

	$node->safe_psql($dbname, 'CREATE TABLE events (user_id bigint, ts timestamptz)');
	$node->safe_psql(
		$dbname, qq{
SELECT stream_state.create_query('tumble_5m', 'events', 'user_id', 'ts',
								 window_size => '5 minutes', lateness => '1 day',
								 backend => '$tumble_backend');
SELECT stream_state.create_query('slide_10m', 'events', 'user_id', 'ts',
								 window_size => '10 minutes', slide => '2 minutes',
								 lateness => '1 day', backend => '$slide_backend');
});
	return;
}

=pod

=item ss_insert_events(node, dbname, rows, keys)

Inserts rows rows into events(user_id, ts) in one statement: keys random in
1 .. keys, event times random within 2026-11-24 10:00:00 .. 10:34:59 (where
ss_check_tumble_slide reads).

=cut

sub ss_insert_events
{
	my ($node, $dbname, $rows, $keys) = @_;

	$node->safe_psql(
		$dbname, qq{
INSERT INTO events (user_id, ts)
SELECT 1 + (random() * ($keys - 1))::int,
	   timestamptz '2026-11-24 10:00:00+00' + (random() * 2099)::int * interval '1 second'
  FROM generate_series(1, $rows);});
	return;
}

=pod

=item ss_check_tumble_slide(node, dbname, label, rows)

The two event-time queries most tests define over
events(user_id bigint, ts timestamptz, ...) with every event time within
2026-11-24 10:00:00 .. 10:34:59: 'tumble_5m' (5-minute tumbling windows)
read at 09:56 .. 10:36 every 5 minutes, where the counts add up to rows, and
'slide_10m' (10 minutes sliding by 2) read at 09:56:30 .. 10:44:30 every 2
minutes, where each row lies in five of the windows read.  Four tests.

=cut

sub ss_check_tumble_slide
{
	my ($node, $dbname, $label, $rows) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;

	ss_check_event_windows(
		$node, $dbname,
		name => $label,
		query => 'tumble_5m',
		table => 'events',
		key => 'user_id',
		time => 'ts',
		size => 300,
		slide => 300,
		at => [ map { ss_ts(300 * $_ + 60) } (-1 .. 7) ],
		total => $rows);
	ss_check_slide($node, $dbname, $label, $rows);
	return;
}

=pod

=item ss_check_slide(node, dbname, label, rows)

The 'slide_10m' half of ss_check_tumble_slide alone.  Two tests.

=cut

sub ss_check_slide
{
	my ($node, $dbname, $label, $rows) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;

	ss_check_event_windows(
		$node, $dbname,
		name => $label,
		query => 'slide_10m',
		table => 'events',
		key => 'user_id',
		time => 'ts',
		size => 600,
		slide => 120,
		at => [ map { ss_ts(120 * $_ + 30) } (-2 .. 22) ],
		total => 5 * $rows);
	return;
}

=pod

=item ss_check_hour_window(node, dbname, label, query, table, total)

For a query over table(k, ts) whose rows all have event time
2026-11-24 10:00:00+00: its one-hour tumbling window [10:00, 11:00), read at
10:30, against the table, with total events.  Two tests.

=cut

sub ss_check_hour_window
{
	my ($node, $dbname, $label, $query, $table, $total) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;

	ss_check_event_windows(
		$node, $dbname,
		name => $label,
		query => $query,
		table => $table,
		key => 'k',
		time => 'ts',
		size => 3600,
		slide => 3600,
		at => ['2026-11-24 10:30:00+00'],
		total => $total);
	return;
}

=pod

=item ss_check_processing_windows(node, dbname, %args)

For a processing-time query whose window is so long (10000 days) that every
commit of the test falls into the window containing now(): compares
window_counts(query) (at = now()) per key with a count of all rows of the
source table with a non-NULL key (the time column is not used: the event time
is the commit time).  Arguments: query, table, key, size_days, total, name.
Also checks that the window returned contains now() and is size_days long.

=cut

sub ss_check_processing_windows
{
	my ($node, $dbname, %a) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;

	my $cte = qq{
WITH got AS (
	SELECT key, count, window_start, window_end
	  FROM stream_state.window_counts('$a{query}')
), want AS (
	SELECT $a{key}::text AS key, count(*) AS count
	  FROM $a{table}
	 WHERE $a{key} IS NOT NULL
	 GROUP BY 1
)};
	my $res = $node->safe_psql(
		$dbname, qq{$cte
SELECT (SELECT count(*) FROM (SELECT key, count FROM got EXCEPT ALL SELECT * FROM want) x)
	   || ' rows only in state, '
	   || (SELECT count(*) FROM (SELECT * FROM want EXCEPT ALL SELECT key, count FROM got) y)
	   || ' rows only in recomputation, '
	   || (SELECT coalesce(sum(count), 0) FROM got) || ' in state, '
	   || (SELECT coalesce(sum(count), 0) FROM want) || ' recomputed'});
	is($res,
		"0 rows only in state, 0 rows only in recomputation, $a{total} in state, $a{total} recomputed",
		"$a{name}: processing-time '$a{query}' counts every committed row of $a{table} once ($a{total})"
	);

	my $bounds = $node->safe_psql(
		$dbname, qq{$cte
SELECT count(*) FILTER (WHERE window_start <= now() AND window_end > now()
						AND window_end - window_start = interval '$a{size_days} days')
	   || ' of ' || count(*)
  FROM got});
	my $n = $node->safe_psql($dbname,
		"SELECT count(DISTINCT $a{key}) FROM $a{table} WHERE $a{key} IS NOT NULL"
	);
	is($bounds, "$n of $n",
		"$a{name}: every row of '$a{query}' is in the $a{size_days}-day window containing now()"
	);
	return;
}

=pod

=item ss_query_stats(node, dbname, query)

The row of stream_state.queries for query as
"status|events_applied|skipped|late_events".

=cut

sub ss_query_stats
{
	my ($node, $dbname, $query) = @_;
	return $node->safe_psql(
		$dbname, qq{
SELECT status, events_applied, skipped, late_events
  FROM stream_state.queries WHERE name = '$query'});
}

=pod

=item ss_bg_abandon(session)

Ends a background_psql session whose server connection is gone (after a
crash or an immediate shutdown).  BackgroundPsql's quit would write "\q" to a
psql that may have exited already, which IPC::Run reports as an error; this
closes its stdin and reaps it, and kills it if it does not exit.

=cut

sub ss_bg_abandon
{
	my ($session) = @_;
	my $h = $session->{run};
	eval { $h->finish; 1 } or eval { $h->kill_kill; 1 };
	return;
}

=pod

=item ss_start_writer(node, dbname, insert, sub_insert, pause)

A background session that, until the server goes away, runs insert, then
sub_insert (insert if undef) in a sub-transaction rolled back three times
in ten, then commits or (three times in ten) rolls back, pausing pause
seconds (0.005 if undef) between transactions.  Returns the session, for
ss_bg_abandon once the server has gone.

=cut

sub ss_start_writer
{
	my ($node, $dbname, $ins, $sub_ins, $pause) = @_;
	$sub_ins //= $ins;
	$pause //= 0.005;
	my $s = $node->background_psql($dbname, on_error_stop => 0);
	$s->query_until(
		qr/writing/, qq{
\\echo writing
DO \$\$
BEGIN
	LOOP
		$ins;
		BEGIN
			$sub_ins;
			IF random() < 0.3 THEN
				RAISE EXCEPTION 'roll back the sub-transaction';
			END IF;
		EXCEPTION WHEN raise_exception THEN
			NULL;
		END;
		IF random() < 0.3 THEN
			ROLLBACK;
		ELSE
			COMMIT;
		END IF;
		PERFORM pg_sleep($pause);
	END LOOP;
END
\$\$;
});
	return $s;
}

=pod

=item ss_wait_log(node, regexp, offset)

True once the node's log has a line matching regexp after offset, false
when none comes within the default timeout.  The worker starts after the
server, so its lines can come after the start returns.

=cut

sub ss_wait_log
{
	my ($node, $re, $offset) = @_;
	return eval { $node->wait_for_log($re, $offset); 1 } ? 1 : 0;
}

=pod

=item ss_checkpoint(node, dbname)

An on-demand checkpoint's id.  A periodic checkpoint (a short
stream_state.checkpoint_interval) may be running; then it asks again,
for up to a minute.

=cut

sub ss_checkpoint
{
	my ($node, $dbname) = @_;
	for (1 .. 600)
	{
		my ($ret, $out, $err) = $node->psql($dbname, 'SELECT stream_state.checkpoint()');
		return $out if $ret == 0;
		die "checkpoint failed: $err"
		  unless $err =~ /a checkpoint of this database is already running/;
		usleep(100_000);
	}
	die 'no checkpoint in 60 seconds';
}

=pod

=item ss_slot_restart(node, dbname)

The restart LSN of the extension's replication slot.

=cut

sub ss_slot_restart
{
	my ($node, $dbname) = @_;
	return $node->safe_psql($dbname,
		"SELECT restart_lsn FROM pg_replication_slots WHERE slot_name LIKE 'stream_state_%'");
}

=pod

=item ss_ckpt_dir(node, dbname)

The directory of dbname's checkpoint files under the data directory.

=cut

sub ss_ckpt_dir
{
	my ($node, $dbname) = @_;
	my $oid = $node->safe_psql($dbname, "SELECT oid FROM pg_database WHERE datname = '$dbname'");
	return $node->data_dir . "/stream_state/$oid";
}

=pod

=item ss_error_of(node, dbname, sql, role)

What psql prints on stderr for sql in dbname (as role, when given), with
VERBOSITY verbose so the SQLSTATE shows, and without the LOCATION line.

=cut

sub ss_error_of
{
	my ($node, $dbname, $sql, $role) = @_;
	my @opts = defined $role ? (extra_params => [ '-U', $role ]) : ();
	my ($r, $o, $e) = $node->psql($dbname, "\\set VERBOSITY verbose\n$sql", @opts);
	$e =~ s/\n?LOCATION:.*//s;
	return $e;
}

=pod

=item ss_kill9_and_restart(node)

kill -9 of the postmaster and of every process it started, as when the
whole service is killed at once (backends busy in a loop would not notice a
dead postmaster on their own), then a start.  The postmaster is stopped
first so it forks nothing between the listing of its children and the kill.

=cut

sub ss_kill9_and_restart
{
	my ($node) = @_;
	my $pid = $node->{_pid};
	kill 'STOP', $pid;
	my @children = grep { /^\d+$/ } split /\s+/, `ps -o pid= --ppid $pid`;
	$node->kill9;
	kill 'KILL', @children;
	for (1 .. 300)
	{
		last unless grep { kill(0, $_) } @children;
		usleep(100_000);
	}
	$node->start;
	return;
}

=pod

=back



=cut

1;
