
# Copyright (c) stream_state contributors

# The worker never trusts a message blindly: a stream_state message of an
# unknown format version, or a malformed one, is reported in the log and
# skipped; the worker stays up and the state stays exact.  Messages of
# another prefix, and non-transactional ones, are not ours and are ignored.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StreamStateTest;
use Test::More;

my $node = ss_new_node('bad_messages');
my $db = 'postgres';

$node->safe_psql(
	$db, q{
CREATE EXTENSION stream_state;
CREATE TABLE events (k int, ts timestamptz);
SELECT stream_state.create_query('q', 'events', 'k', 'ts', '1 hour');
INSERT INTO events SELECT g % 3, '2026-11-24 10:00+00' FROM generate_series(1, 30) g;
});
is($node->safe_psql($db, 'SELECT stream_state.wait_applied()'), 't', 'worker caught up');
my $pid = $node->safe_psql($db,
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'stream_state worker'});
my $log_offset = -s $node->logfile;

# version 99 (first byte 0x63); a version-1 DATA message cut short; a
# version-1 message of an unknown kind; an empty one
foreach my $bytes ('\x6301000000', '\x0101ffff', '\x0109', '\x')
{
	$node->safe_psql($db,
		"SELECT pg_logical_emit_message(true, 'stream_state', '$bytes'::bytea)");
}
# not ours: another prefix, and a non-transactional message of our prefix
$node->safe_psql($db,
	q{SELECT pg_logical_emit_message(true, 'other', '\x0101'::bytea)});
$node->safe_psql($db,
	q{SELECT pg_logical_emit_message(false, 'stream_state', '\x0101'::bytea)});
# and good data after all of it
$node->safe_psql($db,
	q{INSERT INTO events SELECT g % 3, '2026-11-24 10:30+00' FROM generate_series(1, 12) g});

is($node->safe_psql($db, 'SELECT stream_state.wait_applied()'), 't',
	'worker caught up past the bad messages');
is( $node->safe_psql(
		$db,
		q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'stream_state worker'}),
	$pid,
	'the same worker is still running');
ok($node->wait_for_log(qr/skipping unreadable message/, $log_offset),
	'the log says a message was skipped');
like(slurp_file($node->logfile, $log_offset),
	qr/Message format version 99, kind 1; this server reads version 1/,
	'the log names the unknown version');
like(slurp_file($node->logfile, $log_offset),
	qr/malformed data message/,
	'the log names the malformed data message');
is( $node->safe_psql(
		$db,
		q{SELECT string_agg(key || '=' || count, ',' ORDER BY key)
		    FROM stream_state.window_counts('q', '2026-11-24 10:30+00')}),
	'0=14,1=14,2=14',
	'the state counts exactly the 42 good rows');
is( $node->safe_psql(
		$db,
		q{SELECT events_applied FROM stream_state.queries WHERE name = 'q'}),
	'42',
	'events_applied is 42');

$node->stop;
done_testing();
