
# Copyright (c) stream_state contributors

# The read cache of rocksdb queries (rocks_cache.c) under memory pressure
# and across a crash.
#
#  - Its size holds to stream_state.rocksdb_read_cache_size.
#  - It gives way to memory-backend state of another database: when a
#    memory query there cannot get memory, that database's worker asks
#    every other worker to drop its cache, and the memory query ends up
#    running, with exact state, without anything else done by hand.
#  - It never takes the room memory-backend state needs: a key is copied
#    only while state and caches use less than 3/4 of memory_limit.
#  - kill -9: the cache starts empty, and reads are exact before and after
#    it fills again.
# Every read is compared with a count of the source table.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StreamStateTest;
use Test::More;

my $limit = 8 * 1024 * 1024;
my $cache_limit = 3 * 1024 * 1024;
my $node = ss_new_node('cache',
	"stream_state.memory_limit = 8MB\nstream_state.rocksdb_read_cache_size = 3MB\n"
	  . "stream_state.checkpoint_interval = 0\nrestart_after_crash = on\n");

for my $db ('a', 'b')
{
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, 'CREATE EXTENSION stream_state');
	$node->safe_psql($db, 'CREATE TABLE events (k int, ts timestamptz)');
}
$node->safe_psql('a',
	q{SELECT stream_state.create_query('qa', 'events', key_column => 'k', time_column => 'ts',
		window_size => '1 hour', lateness => '1 day', backend => 'rocksdb')});
$node->safe_psql('b',
	q{SELECT stream_state.create_query('qb', 'events', key_column => 'k', time_column => 'ts',
		window_size => '1 hour', lateness => '1 day', backend => 'memory')});

# keys 1 .. 40000 in database a, key k k % 3 + 1 times
$node->safe_psql('a',
	q{INSERT INTO events SELECT k, '2026-11-24 10:00:00+00'::timestamptz + (k % 60) * interval '1 minute'
	    FROM generate_series(1, 40000) k, generate_series(0, 2) r WHERE r <= k % 3});

# point reads of keys 0 .. 40001 that differ from a count of the table
my $mismatches = q{
SELECT count(*) FROM generate_series(0, 40001) k
  LEFT JOIN (SELECT k, count(*) AS n FROM events GROUP BY k) t USING (k)
 WHERE stream_state.window_count('qa', k, '2026-11-24 10:30:00+00') <> coalesce(t.n, 0)};
my $cache = q{SELECT read_cache_keys, read_cache_bytes FROM stream_state.rocksdb_stats
				WHERE scope = 'database'};

is($node->safe_psql('a', $mismatches), '0', 'a: every point read is exact (the cache fills)');
my ($keys, $bytes) = split /\|/, $node->safe_psql('a', $cache);
cmp_ok($keys, '>', 1000, "a: the cache holds keys ($keys)");
cmp_ok($bytes, '<=', $cache_limit,
	"a: the cache holds to rocksdb_read_cache_size ($bytes bytes of $cache_limit)");
is($node->safe_psql('a', $mismatches), '0', 'a: every point read is exact (mostly hits)');
my ($hits) = $node->safe_psql('a',
	q{SELECT read_cache_hits FROM stream_state.rocksdb_stats WHERE scope = 'database'});
cmp_ok($hits, '>', 1000, "a: the second pass hit the cache ($hits hits)");

# database b: a memory query that needs most of memory_limit.  With a's
# cache holding its 3MB, it runs out; a's worker drops its cache and qb
# runs again, exact (alone, it fits).
$node->safe_psql('b',
	q{INSERT INTO events SELECT k, '2026-11-24 10:00:00+00' FROM generate_series(1, 44000) k});
$node->poll_query_until('b',
	q{SELECT status = 'running' FROM stream_state.queries WHERE name = 'qb'})
  or die 'qb did not end up running';
ss_wait_applied($node, 'b', 'b after 44000 keys');
is( $node->safe_psql(
		'b', q{
SELECT count(*) FROM generate_series(1, 44000) k
 WHERE stream_state.window_count('qb', k, '2026-11-24 10:30:00+00') <> 1}),
	'0',
	'b: the memory query holds every key once, running');
my $qb_bytes = $node->safe_psql('b', q{SELECT state_bytes FROM stream_state.queries WHERE name = 'qb'});
cmp_ok($qb_bytes + $bytes, '>', $limit * 3 / 4,
	"b: qb's state ($qb_bytes bytes) and a's cache did not fit together");
ok($node->log_contains('memory full: continuous query "qb" paused'),
	'b: qb ran out of memory beside the cache');
is($node->safe_psql('a', $cache), '0|0', 'a: its worker dropped the cache when b needed the memory');

# a's reads now copy keys only while state and caches stay under 3/4
is($node->safe_psql('a', $mismatches), '0', 'a: point reads exact while memory is short');
($keys, $bytes) = split /\|/, $node->safe_psql('a', $cache);
cmp_ok($bytes + $qb_bytes, '<=', $limit * 3 / 4,
	"a: the cache ($bytes bytes) and b's state stay under 3/4 of memory_limit");

# a crash: the cache starts empty, reads are exact before and after it fills
$node->safe_psql('b', 'SELECT stream_state.drop_query(\'qb\')');
ss_kill9_and_restart($node);
ss_wait_applied($node, 'a', 'a after the crash');
is($node->safe_psql('a', $cache), '0|0', 'a: after kill -9 the cache is empty');
$node->safe_psql('a',
	q{INSERT INTO events SELECT k, '2026-11-24 10:20:00+00' FROM generate_series(1, 40000, 7) k});
is($node->safe_psql('a', $mismatches), '0', 'a: exact after the crash (the cache fills)');
$node->safe_psql('a',
	q{BEGIN;
INSERT INTO events SELECT k, '2026-11-24 10:21:00+00' FROM generate_series(1, 40000, 3) k;
ROLLBACK;
INSERT INTO events SELECT k, '2026-11-24 10:22:00+00' FROM generate_series(1, 40000, 5) k;});
is($node->safe_psql('a', $mismatches), '0', 'a: exact after more commits and a rollback on cached keys');
($keys, $bytes) = split /\|/, $node->safe_psql('a', $cache);
cmp_ok($keys, '>', 1000, "a: the cache filled again ($keys keys)");

$node->stop;
done_testing();
