
# Copyright (c) stream_state contributors

# alter_query across restarts: the new lateness is the worker's after a
# kill -9 (replayed from WAL) and after a clean restart from a checkpoint
# taken after it, and windows keep their counts.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StreamStateTest;
use Test::More;

my $node = ss_new_node('alter', "stream_state.checkpoint_interval = 0\nrestart_after_crash = on\n");
my $db = 'postgres';

$node->safe_psql($db, 'CREATE EXTENSION stream_state');
$node->safe_psql($db, 'CREATE TABLE ev (k int, ts timestamptz)');
$node->safe_psql($db,
	q{SELECT stream_state.create_query('q', 'ev', key_column => 'k', time_column => 'ts',
		window_size => '10 minutes', backend => 'memory')});
$node->safe_psql($db,
	q{SELECT stream_state.create_query('r', 'ev', key_column => 'k', time_column => 'ts',
		window_size => '10 minutes', backend => 'rocksdb')});
$node->safe_psql($db,
	q{INSERT INTO ev SELECT g % 3, '2026-11-24 10:00+00'::timestamptz + g * interval '1 minute'
		FROM generate_series(0, 25) g});

# (wait first: a condition on the view would be checked after its rows were read)
my $state = q{SET timezone = 'UTC'; SELECT stream_state.wait_applied() \g /dev/null
				SELECT string_agg(name || ' ' || lateness || ' ' || late_events || ' ' || watermark, ', ' ORDER BY name)
				FROM stream_state.queries};

$node->safe_psql($db,
	q{SELECT stream_state.alter_query('q', lateness => '15 minutes');
	  SELECT stream_state.alter_query('r', lateness => '15 minutes')});
$node->safe_psql($db, q{INSERT INTO ev VALUES (1, '2026-11-24 10:40+00'), (1, '2026-11-24 10:22+00')});
my $before = $node->safe_psql($db, $state);
is($before,
	'q 00:15:00 0 2026-11-24 10:25:00+00, r 00:15:00 0 2026-11-24 10:25:00+00',
	'after alter_query: lateness 15 minutes, the watermark 15 minutes behind the newest event');

ss_kill9_and_restart($node);
is($node->safe_psql($db, $state), $before, 'after kill -9: the same (the ALTER replayed from WAL)');
is( $node->safe_psql(
		$db, q{SELECT stream_state.window_count('q', 1, '2026-11-24 10:25+00') || ' '
			  || stream_state.window_count('r', 1, '2026-11-24 10:25+00')}),
	'3 3',
	'after kill -9: the window [10:20, 10:30) of key 1 holds its three rows in both backends');

# lowered after a checkpoint, then a clean restart: from the checkpoint and
# the WAL after it
$node->safe_psql($db, 'SELECT stream_state.checkpoint()');
$node->safe_psql($db,
	q{SELECT stream_state.alter_query('q', lateness => '0');
	  SELECT stream_state.alter_query('r', lateness => '0')});
$node->safe_psql($db, q{INSERT INTO ev VALUES (2, '2026-11-24 10:39+00')});
my $lowered = $node->safe_psql($db, $state);
is($lowered,
	'q 00:00:00 1 2026-11-24 10:40:00+00, r 00:00:00 1 2026-11-24 10:40:00+00',
	'lowered to 0: the watermark at the newest event, 10:39 late');
$node->restart;
is($node->safe_psql($db, $state), $lowered, 'after a restart: the same');
$node->safe_psql($db, 'SELECT stream_state.checkpoint()');
$node->restart;
is($node->safe_psql($db, $state), $lowered, 'after a checkpoint and a restart: the same');
like(ss_error_of($node, $db, q{SELECT stream_state.window_count('q', 1, '2026-11-24 10:25+00')}),
	qr/22023: window ending at .* has closed/, 'the window [10:20, 10:30) is closed');

$node->stop;
done_testing();
