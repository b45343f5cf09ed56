
# Copyright (c) stream_state contributors

# The crash loop of 008_crash_loop.pl with its 5-minute tumbling query on
# the rocksdb backend and its sliding one on memory: kill -9 during writes,
# during checkpoints (which take a RocksDB checkpoint), and after each round
# both queries equal their recomputation from the source table.  RocksDB
# loses what it had not flushed; the worker re-applies it from the WAL the
# slot kept, query by query from each one's own position.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

# loaded here, at compile time: their INIT blocks must run before do FILE
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StreamStateTest;
use Test::More;

$ENV{SS_CRASH_BACKENDS} = 'rocksdb,memory';
my $file = "$FindBin::RealBin/008_crash_loop.pl";
do $file;
die "could not run $file: $@" if $@;
