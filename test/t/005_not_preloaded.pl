
# Copyright (c) stream_state contributors

# Without shared_preload_libraries = 'stream_state' there is no shared state
# and no worker: CREATE EXTENSION still works (so the extension can be
# installed before the restart that preloads it), and every function that
# needs shared state says, with SQLSTATE 55000, how to fix it.

use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('not_preloaded');
$node->init;
$node->start;

$node->safe_psql('postgres', 'CREATE EXTENSION stream_state');
$node->safe_psql('postgres', 'CREATE TABLE events (k bigint, ts timestamptz)');

my $msg = qr/stream_state must be loaded via "shared_preload_libraries"/;

foreach my $sql (
	q{SELECT stream_state.create_query('q', 'events', 'k', 'ts', '5 minutes')},
	q{SELECT stream_state.window_count('q', 1::bigint)},
	q{SELECT * FROM stream_state.window_counts('q')},
	q{SELECT stream_state.wait_applied()},
	q{SELECT * FROM stream_state._query_stats()},
	q{SELECT * FROM stream_state.state})
{
	my ($ret, $stdout, $stderr) = $node->psql('postgres',
		"\\set VERBOSITY verbose\n$sql");
	isnt($ret, 0, "fails without preloading: $sql");
	like($stderr, qr/ERROR:  55000: /, "SQLSTATE 55000: $sql");
	like($stderr, $msg, "names shared_preload_libraries: $sql");
}

# nothing was defined, no trigger was installed, inserts work
is($node->safe_psql('postgres', 'SELECT count(*) FROM stream_state.query_def'),
	'0', 'no query was defined');
$node->safe_psql('postgres',
	q{INSERT INTO events VALUES (1, '2026-11-24 10:00+00')});
is($node->safe_psql('postgres', 'SELECT count(*) FROM events'),
	'1', 'inserts into the table still work');

# preloaded, but with wal_level = minimal (what Cluster.pm's init sets):
# refused, as the replication slot the worker needs cannot exist
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'stream_state'");
$node->restart;
is($node->safe_psql('postgres', 'SHOW wal_level'), 'minimal', 'wal_level is minimal');
my ($ret, $stdout, $stderr) = $node->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT stream_state.create_query('q', 'events', 'k', 'ts', '1 hour')");
isnt($ret, 0, 'create_query fails at wal_level minimal');
like($stderr, qr/ERROR:  55000: stream_state requires wal_level "replica" or higher/,
	'... with SQLSTATE 55000 and a message naming wal_level');
is($node->safe_psql('postgres', 'SELECT count(*) FROM stream_state.query_def'),
	'0', '... and defines nothing');

# with wal_level = replica it works, and counts the row already there
$node->append_conf('postgresql.conf', "wal_level = replica");
$node->restart;
$node->safe_psql('postgres',
	q{SELECT stream_state.create_query('q', 'events', 'k', 'ts', '1 hour')});
is( $node->safe_psql(
		'postgres',
		q{SELECT stream_state.window_count('q', 1::bigint, '2026-11-24 10:30+00')}),
	'1',
	'after preloading and a restart the existing row is counted');

$node->stop;
done_testing();
