
# Copyright (c) stream_state contributors

# Checkpoints: restore from the newest one at start, re-reading only the WAL
# after it; the slot moving forward once a checkpoint is durable; retention;
# each kind of damaged checkpoint detected, logged with its reason and
# replaced by the previous one; and state lost for good (no checkpoint
# usable, WAL gone) reported and repaired with rebuild().
#
# Rows: row g has user_id 1 + g % 4 and event time 10:00:00 + (g * 37) % 2100
# s on 2026-11-24, as in 001_restart.pl; rows that must never count have
# user_id >= 900.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StreamStateTest;
use Test::More;
use Time::HiRes qw(usleep);
use File::Path ();

my $node = ss_new_node('ckpt',
	"stream_state.checkpoint_interval = 0\nstream_state.checkpoint_retain = 3\n");
my $db = 'postgres';
my $rows = 0;

sub insert_rows
{
	my ($from, $to) = @_;
	$node->safe_psql($db, qq{INSERT INTO events (user_id, ts, g)
  SELECT 1 + g % 4,
		 timestamptz '2026-11-24 10:00:00+00' + ((g * 37) % 2100) * interval '1 second', g
	FROM generate_series($from, $to) g});
	$rows += $to - $from + 1;
	return;
}

sub check_all
{
	my ($label) = @_;
	ss_wait_applied($node, $db, $label);
	ss_check_tumble_slide($node, $db, $label, $rows);
	return;
}

$node->safe_psql($db, 'CREATE EXTENSION stream_state');
$node->safe_psql($db, 'CREATE TABLE events (user_id bigint, ts timestamptz, g int)');
insert_rows(0, 99);
$node->safe_psql(
	$db, q{
SELECT stream_state.create_query('tumble_5m', 'events', 'user_id', 'ts',
								 window_size => '5 minutes', lateness => '1 day');
SELECT stream_state.create_query('slide_10m', 'events', 'user_id', 'ts',
								 window_size => '10 minutes', slide => '2 minutes',
								 lateness => '1 day');
});
insert_rows(100, 999);

# --- a first checkpoint, on demand ---------------------------------------
is($node->safe_psql($db, 'SELECT stream_state.checkpoint()'), '1', 'checkpoint() returns id 1');
is( $node->safe_psql(
		$db, q{
SELECT c.target, c.status, c.queries,
	   c.entries = (SELECT sum(panes) FROM stream_state.queries),
	   c.applied_lsn = c.restart_lsn, c.applied_lsn <= pg_current_wal_lsn(),
	   c.bytes = (pg_stat_file(c.location)).size
  FROM stream_state.checkpoints c}),
	'file|valid|2|t|t|t|t',
	'the checkpoints view shows checkpoint 1: a valid file of 2 queries, every (key, pane) entry, its size; no open transaction, so R = L'
);
is(ss_slot_restart($node, $db),
	$node->safe_psql($db, 'SELECT restart_lsn FROM stream_state.checkpoints WHERE id = 1'),
	'with one checkpoint, the slot keeps WAL from its restart position');
ok(-f ss_ckpt_dir($node, $db) . '/1.ckpt', 'checkpoint 1 is a file under the data directory');

# --- a checkpoint with transactions open: R before L -----------------------
my $open = $node->background_psql($db);
$open->query_safe(q{BEGIN;
INSERT INTO events (user_id, ts, g)
  SELECT 1 + g % 4, timestamptz '2026-11-24 10:00:00+00' + ((g * 37) % 2100) * interval '1 second', g
	FROM generate_series(1000, 1049) g;});
$node->safe_psql(
	$db, q{BEGIN;
INSERT INTO events (user_id, ts, g)
  SELECT 1 + g % 4, timestamptz '2026-11-24 10:00:00+00' + ((g * 37) % 2100) * interval '1 second', g
	FROM generate_series(1050, 1059) g;
PREPARE TRANSACTION 'ckpt_p1';});
insert_rows(1060, 1099);
is($node->safe_psql($db, 'SELECT stream_state.checkpoint()'), '2', 'checkpoint() returns id 2');
is( $node->safe_psql(
		$db, 'SELECT restart_lsn < applied_lsn FROM stream_state.checkpoints WHERE id = 2'),
	't',
	'checkpoint 2, taken with an open and a prepared transaction, restarts before its applied position'
);
$open->query_safe('COMMIT');
$open->quit;
$rows += 50;
$node->safe_psql($db, "COMMIT PREPARED 'ckpt_p1'");
$rows += 10;
insert_rows(1100, 1199);
check_all('before the restart');

my $offset = -s $node->logfile;
$node->stop('immediate');
$node->start;
ok( ss_wait_log(
		$node,
		qr/stream_state: restored checkpoint 2 of database \d+ at [0-9A-F\/]+; re-reading WAL from/,
		$offset),
	'the worker restored checkpoint 2 at start');
check_all('restored from checkpoint 2, with the transactions open at it committed after');

# --- periodic checkpoints move the slot; retention --------------------------
my $before = ss_slot_restart($node, $db);
$node->append_conf('postgresql.conf', "stream_state.checkpoint_interval = 1\n");
$node->reload;
my $g = 2000;
my $advanced = 0;
for my $i (1 .. 60)
{
	insert_rows($g, $g + 99);
	$g += 100;
	$node->safe_psql($db, 'SELECT pg_switch_wal()') if $i % 10 == 0;
	if ($node->safe_psql($db,
			"SELECT count(*) >= 6 AND '$before'::pg_lsn < (SELECT restart_lsn FROM pg_replication_slots WHERE slot_name LIKE 'stream_state_%') FROM stream_state.checkpoints"
		) eq 't')
	{
		$advanced = 1;
		last;
	}
	usleep(200_000);
}
ok($advanced, "under continuous inserts with periodic checkpoints, the slot's restart LSN advances past $before");
$node->append_conf('postgresql.conf', "stream_state.checkpoint_interval = 0\n");
$node->reload;
# a checkpoint on demand after the reload: the periodic ones have stopped
ok($node->poll_query_until($db, q{SELECT stream_state.checkpoint() > 0}), 'a checkpoint on demand');
my $newest = $node->safe_psql($db, "SELECT max(id) FROM stream_state.checkpoints");
is( $node->safe_psql(
		$db, q{
SELECT count(*) FILTER (WHERE status = 'valid') || ' valid, '
	   || count(*) FILTER (WHERE status = 'deleted' AND (pg_stat_file(location, true)).size IS NULL)
	   || ' deleted without a file, of ' || count(*)
  FROM stream_state.checkpoints}),
	'3 valid, ' . ($newest - 3) . " deleted without a file, of $newest",
	'retention keeps the newest 3 checkpoints and deletes the files of the others');
is( ss_slot_restart($node, $db),
	$node->safe_psql(
		$db,
		"SELECT restart_lsn FROM stream_state.checkpoints WHERE status = 'valid' ORDER BY id DESC OFFSET 1 LIMIT 1"
	),
	'the slot keeps WAL from the restart position of the second newest checkpoint (one fallback)');
$rows = $node->safe_psql($db, 'SELECT count(*) FROM events');
check_all('after periodic checkpoints');

# --- damaged checkpoints ----------------------------------------------------
# Each case: a new checkpoint N, more rows, a stop, damage to N, a start:
# the log says why N is damaged, N - 1 is restored, the state is exact.
sub damage_case
{
	my ($label, $damage, $why) = @_;
	my $id = $node->safe_psql($db, 'SELECT stream_state.checkpoint()');
	insert_rows($g, $g + 49);
	$g += 50;
	my $prev = $node->safe_psql($db,
		"SELECT max(id) FROM stream_state.checkpoints WHERE status = 'valid' AND id < $id");
	my $file = ss_ckpt_dir($node, $db) . "/$id.ckpt";
	$node->stop('fast');
	$damage->($file);
	my $off = -s $node->logfile;
	$node->start;
	ok( ss_wait_log(
		$node,
			qr/stream_state: checkpoint $id of database \d+ is damaged: $why/, $off),
		"$label: the log says checkpoint $id is damaged and why");
	ok( ss_wait_log($node, qr/stream_state: restored checkpoint $prev of database/, $off),
		"$label: checkpoint $prev, the previous one, is restored instead");
	is($node->safe_psql($db, "SELECT status FROM stream_state.checkpoints WHERE id = $id"),
		'damaged', "$label: the checkpoints view marks $id damaged");
	check_all("$label");
	return;
}

sub flip_byte
{
	my ($file, $at) = @_;
	open(my $fh, '+<', $file) or die "open $file: $!";
	binmode $fh;
	seek($fh, $at, 0);
	read($fh, my $c, 1);
	seek($fh, $at, 0);
	print $fh chr(ord($c) ^ 0xFF);
	close $fh;
	return;
}

damage_case('a flipped byte', sub { flip_byte($_[0], (-s $_[0]) - 40) },
	qr/block \d+ at byte \d+ fails its CRC-32C check/);
# The END block's key count sizes the table before the file is read
# (sstate_store_presize); a damaged count must only cost a failed load.
damage_case('a huge key count in the end block',
	sub { flip_byte($_[0], (-s $_[0]) - 24 + 6) },    # CkptEnd.nkeys, byte 6
	qr/block \d+ at byte \d+ fails its CRC-32C check/);
damage_case('a truncated file', sub { truncate($_[0], int((-s $_[0]) / 2)) or die },
	qr/the file ends at byte \d+, inside a block/);
damage_case(
	'a wrong format version',
	sub {
		open(my $fh, '+<', $_[0]) or die;
		binmode $fh;
		seek($fh, 8, 0);
		print $fh pack('L', 99);
		close $fh;
	},
	qr/it has format version 99; this server reads version 1/);
damage_case('a missing file', sub { unlink($_[0]) or die },
	qr/could not open it: No such file or directory/);

# --- state lost: no usable checkpoint, WAL gone -------------------------------
$node->safe_psql($db, 'SELECT stream_state.checkpoint()');
$node->safe_psql($db, 'SELECT stream_state.checkpoint()');
my $cdir = ss_ckpt_dir($node, $db);
$node->stop('fast');
unlink glob("$cdir/*.ckpt");
$offset = -s $node->logfile;
$node->start;
ok( ss_wait_log(
		$node,
		qr/WARNING:  stream_state: no usable checkpoint of database \d+, and its WAL before [0-9A-F\/]+ is gone/,
		$offset),
	'state lost: the log warns that no checkpoint is usable and the WAL is gone');
ok( $node->poll_query_until(
		$db,
		q{SELECT string_agg(name || '=' || status, ',' ORDER BY name) FROM stream_state.queries},
		'slide_10m=needs rebuild,tumble_5m=needs rebuild'),
	'state lost: both queries show "needs rebuild"');
my ($ret, $out, $err) = $node->psql($db,
	"SELECT stream_state.window_count('tumble_5m', 1::bigint, '2026-11-24 10:01:00+00')");
like($err, qr/ERROR:  the state of continuous query "tumble_5m" was lost/,
	'state lost: a read fails instead of returning a wrong count');
like($err, qr/HINT:  Run SELECT stream_state.rebuild\('tumble_5m'\)/,
	'state lost: the error says how to repair it');
insert_rows($g, $g + 49);
$g += 50;
$node->safe_psql($db,
	q{SELECT stream_state.rebuild('tumble_5m'); SELECT stream_state.rebuild('slide_10m');});
check_all('state lost, then rebuilt');
is( $node->safe_psql(
		$db, q{SELECT string_agg(name || '=' || status, ',' ORDER BY name) FROM stream_state.queries}),
	'slide_10m=running,tumble_5m=running',
	'state lost, then rebuilt: both queries run');

# and a checkpoint after the rebuild restores them like any other
$node->safe_psql($db, 'SELECT stream_state.checkpoint()');
insert_rows($g, $g + 49);
$g += 50;
$node->stop('immediate');
$node->start;
check_all('rebuilt, checkpointed and restarted');

# --- the history lost, the checkpoint files kept: they are adopted --------------
my $kept = $node->safe_psql($db, 'SELECT stream_state.checkpoint()');
insert_rows($g, $g + 49);
$g += 50;
my $hdir = ss_ckpt_dir($node, $db);
$node->stop('immediate');
unlink("$hdir/history") or die "unlink $hdir/history: $!";
$offset = -s $node->logfile;
$node->start;
ok( ss_wait_log(
		$node,
		qr/stream_state: checkpoint $kept of database \d+ was not in its history; it is added from its file/,
		$offset),
	'history lost: the worker adopts the checkpoint files from their headers');
ok(ss_wait_log($node, qr/stream_state: restored checkpoint $kept of database/, $offset),
	"history lost: checkpoint $kept, the newest file, is restored");
check_all('history lost, files kept');
is( $node->safe_psql(
		$db, "SELECT status, entries > 0, bytes = (pg_stat_file(location)).size FROM stream_state.checkpoints WHERE id = $kept"),
	'valid|t|t',
	'history lost: the adopted checkpoint is listed again, with its entries (from its END block) and size');


# The worker cannot tell the WAL is incomplete (the history said so); the
# catalog still has the queries, so a read finds them unknown to a worker
# that has applied every commit, and fails instead of counting zero.
$node->safe_psql($db, 'SELECT stream_state.checkpoint()');
$node->safe_psql($db, 'SELECT stream_state.checkpoint()');
my $gone = ss_ckpt_dir($node, $db);
$node->stop('fast');
File::Path::rmtree($gone);
$node->start;
ok( $node->poll_query_until(
		$db,
		q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'stream_state worker'}, '1'),
	'history gone: the worker runs');
($ret, $out, $err) = $node->psql($db,
	"SELECT stream_state.window_count('tumble_5m', 1::bigint, '2026-11-24 10:01:00+00')");
like($err,
	qr/ERROR:  the state of continuous query "tumble_5m" was lost\nDETAIL:  The worker has applied every commit and does not know the query/,
	'history gone: a read fails, it does not count zero');
($ret, $out, $err) = $node->psql($db, "SELECT count(*) FROM stream_state.window_counts('slide_10m', '2026-11-24 10:01:00+00')");
like($err, qr/ERROR:  the state of continuous query "slide_10m" was lost/,
	'history gone: window_counts fails too');
$node->safe_psql($db,
	q{SELECT stream_state.rebuild('tumble_5m'); SELECT stream_state.rebuild('slide_10m');});
check_all('history gone, then rebuilt');
is($node->safe_psql($db, 'SELECT stream_state.checkpoint()'), '1',
	'history gone: checkpoints start again from id 1');

# --- bad input ---------------------------------------------------------------
like(ss_error_of($node, $db, q{SELECT stream_state.checkpoint('tape')}),
	qr/ERROR:  22023: unknown checkpoint target "tape"\nHINT:  The target is "file" or "table"\./,
	'an unknown target is refused (22023)');
$node->safe_psql($db, 'CREATE ROLE plain LOGIN');
like(ss_error_of($node, $db, q{SELECT stream_state.checkpoint()}, 'plain'),
	qr/ERROR:  42501: permission denied for function checkpoint/,
	'checkpoint() needs EXECUTE, which PUBLIC does not have (42501)');
like(ss_error_of($node, $db, q{SELECT * FROM stream_state.checkpoints}, 'plain'),
	qr/ERROR:  42501: permission denied for view checkpoints/,
	'the checkpoints view is for pg_monitor, not PUBLIC (42501)');
$node->safe_psql($db, 'GRANT pg_monitor TO plain');
is($node->safe_psql($db, 'SELECT count(*) > 0 FROM stream_state.checkpoints', extra_params => [ '-U', 'plain' ]),
	't', 'members of pg_monitor read the checkpoints view');
$node->safe_psql($db, 'CREATE DATABASE empty');
# the upgrade path: 0.1.0, then ALTER EXTENSION ... UPDATE to 0.2.0, then to
# the default version
$node->safe_psql('empty', q{CREATE EXTENSION stream_state VERSION '0.1.0'});
is( $node->safe_psql(
		'empty', q{ALTER EXTENSION stream_state UPDATE TO '0.2.0';
SELECT extversion || ' ' || to_regprocedure('stream_state.checkpoint(text)')::text || ' '
	   || to_regprocedure('stream_state.rebuild(text)')::text || ' '
	   || to_regclass('stream_state.checkpoints')::text || ' '
	   || (to_regclass('stream_state.checkpoint_data') IS NULL)
  FROM pg_extension WHERE extname = 'stream_state'}),
	'0.2.0 stream_state.checkpoint(text) stream_state.rebuild(text) stream_state.checkpoints true',
	'ALTER EXTENSION UPDATE takes 0.1.0 to 0.2.0 with checkpoint(), rebuild() and the checkpoints view');
is( $node->safe_psql(
		'empty', q{ALTER EXTENSION stream_state UPDATE TO '0.3.0';
SELECT e.extversion || ' ' || c.oid::regclass::text || ' '
	   || pg_catalog.pg_get_userbyid(c.relowner) || ' '
	   || coalesce(array_to_string(c.relacl, ','), '') || ' '
	   || (SELECT count(*) FROM pg_depend d
			WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
			  AND d.refobjid = e.oid AND d.deptype = 'e') || ' '
	   || (c.oid = ANY (coalesce(e.extconfig, '{}')))
  FROM pg_extension e, pg_class c
 WHERE e.extname = 'stream_state' AND c.oid = 'stream_state.checkpoint_data'::regclass}),
	do
	{
		my $u = $node->safe_psql('empty', 'SELECT current_user');
		"0.3.0 stream_state.checkpoint_data $u $u=arwdDxt/$u,pg_monitor=r/$u 1 false";
	},
	'ALTER EXTENSION UPDATE takes 0.2.0 to 0.3.0: the table checkpoint_data, member of the extension, readable by pg_monitor, not dumped as configuration'
);
is( $node->safe_psql(
		'empty', q{ALTER EXTENSION stream_state UPDATE TO '0.4.0';
SELECT extversion || ' ' || to_regprocedure('stream_state.create_query(text, regclass, text, text, interval, interval, interval, text)')::text || ' '
	   || to_regclass('stream_state.rocksdb_stats')::text || ' '
	   || (to_regprocedure('stream_state.create_query(text, regclass, text, text, interval, interval, interval)') IS NULL)
  FROM pg_extension WHERE extname = 'stream_state'}),
	'0.4.0 stream_state.create_query(text,regclass,text,text,interval,interval,interval,text) stream_state.rocksdb_stats true',
	'ALTER EXTENSION UPDATE takes 0.3.0 to 0.4.0: create_query with a backend argument (and no other), the rocksdb_stats view'
);
is( $node->safe_psql(
		'empty', q{SELECT count(*) FROM stream_state.rocksdb_stats;
ALTER EXTENSION stream_state UPDATE TO '0.5.0';
SELECT extversion || ' ' || to_regprocedure('stream_state.describe_query(text)')::text || ' '
	   || to_regprocedure('stream_state.alter_query(text, interval)')::text || ' '
	   || has_function_privilege('public', 'stream_state.describe_query(text)', 'EXECUTE') || ' '
	   || (SELECT string_agg(column_name || ':' || kind, ',')
			 FROM stream_state.describe_query('SELECT count(*) AS n FROM stream_state.query_def')) || ' '
	   || (SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute
			WHERE attrelid = 'stream_state.rocksdb_stats'::regclass AND attnum > 10)
  FROM pg_extension WHERE extname = 'stream_state'}),
	"0\n0.5.0 stream_state.describe_query(text) stream_state.alter_query(text,interval) true n:aggregate read_cache_keys,read_cache_bytes,read_cache_hits,read_cache_misses",
	'the 0.4.0 rocksdb_stats view works with the 0.5.0 library; ALTER EXTENSION UPDATE takes 0.4.0 to 0.5.0: describe_query, callable by PUBLIC, alter_query, and rocksdb_stats with the read cache columns'
);
is( $node->safe_psql(
		'empty', q{ALTER EXTENSION stream_state UPDATE TO '0.6.0';
SELECT extversion || ' ' || to_regprocedure('stream_state.alter_query(text, interval, interval, text)')::text || ' '
	   || (to_regprocedure('stream_state.alter_query(text, interval)') IS NULL) || ' '
	   || to_regclass('stream_state.emit_progress')::text || ' '
	   || (SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute
			WHERE attrelid = 'stream_state.queries'::regclass AND attnum > 19)
  FROM pg_extension WHERE extname = 'stream_state'}),
	'0.6.0 stream_state.alter_query(text,interval,interval,text) true stream_state.emit_progress emit_to,emitted_until,retention,session_gap',
	'ALTER EXTENSION UPDATE takes 0.5.0 to 0.6.0: alter_query of retention and emit_to, emit_progress, the new columns of queries'
);
is( $node->safe_psql(
		'empty', q{ALTER EXTENSION stream_state UPDATE TO '0.7.0';
SELECT extversion || ' ' || to_regprocedure('stream_state.alter_query(text, interval, interval, text, text)')::text || ' '
	   || (to_regprocedure('stream_state.alter_query(text, interval, interval, text)') IS NULL) || ' '
	   || to_regclass('stream_state.late_progress')::text || ' '
	   || to_regprocedure('stream_state._late_result(text, pg_lsn, pg_lsn)')::text || ' '
	   || (SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute
			WHERE attrelid = 'stream_state.queries'::regclass AND attnum > 23)
  FROM pg_extension WHERE extname = 'stream_state'}),
	'0.7.0 stream_state.alter_query(text,interval,interval,text,text) true stream_state.late_progress stream_state._late_result(text,pg_lsn,pg_lsn) late_to,late_written_until',
	'ALTER EXTENSION UPDATE takes 0.6.0 to 0.7.0: late_to in create_query and alter_query, late_progress, _late_result, the new columns of queries'
);
like(ss_error_of($node, 'empty', q{SELECT stream_state.checkpoint()}),
	qr/ERROR:  55000: this database has no stream_state state to checkpoint\nHINT:  Create a continuous query first\./,
	'a database without queries has nothing to checkpoint (55000)');

# a checkpoint while another runs: the worker is stopped (SIGSTOP) while a
# first request waits, so the second one surely finds it running
my $wpid = $node->safe_psql($db,
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'stream_state worker'});
my $ids_before = $node->safe_psql($db, 'SELECT max(id) FROM stream_state.checkpoints');
kill 'STOP', $wpid;
my $first = $node->background_psql($db);
$first->query_until(qr/asking/, "\\echo asking\nSELECT stream_state.checkpoint();\n");
ok( $node->poll_query_until(
		$db,
		q{SELECT count(*) = 1 FROM pg_stat_activity WHERE query = 'SELECT stream_state.checkpoint();' AND wait_event = 'Extension'}),
	'a first checkpoint() waits for the (stopped) worker');
like(ss_error_of($node, $db, q{SELECT stream_state.checkpoint()}),
	qr/ERROR:  55006: a checkpoint of this database is already running\nHINT:  Wait for it to finish, then try again\./,
	'a second checkpoint() while the first runs is refused (55006)');
kill 'CONT', $wpid;
$first->quit;
is($node->safe_psql($db, 'SELECT max(id) FROM stream_state.checkpoints'),
	$ids_before + 1, 'the first checkpoint() completes once the worker runs again; the refused one wrote nothing');
check_all('after the refused checkpoint');

# --- restore_checkpoint -----------------------------------------------------------
# the newest: its WAL is kept, the commits after it are replayed
my $a = $node->safe_psql($db, 'SELECT stream_state.checkpoint()');
insert_rows($g, $g + 49);
$g += 50;
$offset = -s $node->logfile;
is($node->safe_psql($db, "SELECT string_agg(query || '=' || action, ',' ORDER BY query) FROM stream_state.restore_checkpoint($a)"),
	'slide_10m=replayed,tumble_5m=replayed',
	"restore_checkpoint($a), the newest: both queries replayed from the kept WAL");
ok(ss_wait_log($node, qr/stream_state: restored checkpoint $a of database/, $offset),
	"restore_checkpoint($a): the worker started again from it");
check_all("restore_checkpoint($a), replayed");

# an old one: the slot no longer keeps its WAL, so the queries are rebuilt
my $b = $node->safe_psql($db, 'SELECT stream_state.checkpoint()');
insert_rows($g, $g + 49);
$g += 50;
$node->safe_psql($db, 'SELECT stream_state.checkpoint()');
insert_rows($g, $g + 49);
$g += 50;
$node->safe_psql($db, 'SELECT stream_state.checkpoint()');
is( $node->safe_psql(
		$db, "SELECT restart_lsn < (SELECT restart_lsn FROM pg_replication_slots WHERE slot_name LIKE 'stream_state_%') FROM stream_state.checkpoints WHERE id = $b"),
	't', "checkpoint $b needs WAL the slot no longer keeps");
insert_rows($g, $g + 49);
$g += 50;
is($node->safe_psql($db, "SELECT string_agg(query || '=' || action, ',' ORDER BY query) FROM stream_state.restore_checkpoint($b)"),
	'slide_10m=rebuilt,tumble_5m=rebuilt',
	"restore_checkpoint($b), an old one: both queries rebuilt from their source table");
check_all("restore_checkpoint($b), rebuilt");
is( $node->safe_psql(
		$db, q{SELECT string_agg(name || '=' || status, ',' ORDER BY name) FROM stream_state.queries}),
	'slide_10m=running,tumble_5m=running',
	"restore_checkpoint($b): both queries run");

like(ss_error_of($node, $db, 'SELECT * FROM stream_state.restore_checkpoint(9999)'),
	qr/ERROR:  42704: checkpoint 9999 of this database does not exist/,
	'restore_checkpoint of an unknown id (42704)');
my ($damaged, $dfile) = split /\|/, $node->safe_psql($db,
	"SELECT id, location FROM stream_state.checkpoints WHERE status = 'valid' ORDER BY id LIMIT 1");
flip_byte($dfile, (-s $dfile) - 40);
like(ss_error_of($node, $db, "SELECT * FROM stream_state.restore_checkpoint($damaged)"),
	qr/ERROR:  XX001: checkpoint $damaged is damaged: block \d+ at byte \d+ fails its CRC-32C check/,
	'restore_checkpoint of a damaged checkpoint file is refused before anything changes (XX001)');
like(ss_error_of($node, $db, "SELECT * FROM stream_state.restore_checkpoint($a)", 'plain'),
	qr/ERROR:  42501: permission denied for function restore_checkpoint/,
	'restore_checkpoint needs EXECUTE, which PUBLIC does not have (42501)');

# --- stream_state.checkpoint_directory -------------------------------------------
my $elsewhere = PostgreSQL::Test::Utils::tempdir;
chmod 0777, $elsewhere;
$node->append_conf('postgresql.conf', "stream_state.checkpoint_directory = '$elsewhere'\n");
$node->reload;
my $oid = $node->safe_psql($db, "SELECT oid FROM pg_database WHERE datname = '$db'");
ok($node->poll_query_until($db, "SELECT current_setting('stream_state.checkpoint_directory') = '$elsewhere'"),
	'checkpoint_directory set by a reload');
# the worker re-reads its configuration when woken
my $c = $node->safe_psql($db, 'SELECT stream_state.checkpoint()');
is($node->safe_psql($db, "SELECT location FROM stream_state.checkpoints WHERE id = $c"),
	"$elsewhere/$oid/$c.ckpt",
	'with checkpoint_directory set, the checkpoint file goes to <directory>/<database oid>/');
insert_rows($g, $g + 49);
$g += 50;
$offset = -s $node->logfile;
$node->stop('immediate');
$node->start;
ok(ss_wait_log($node, qr/stream_state: restored checkpoint $c of database/, $offset),
	'a checkpoint in checkpoint_directory is restored at start');
check_all('restored from checkpoint_directory');

# --- DROP EXTENSION removes the checkpoints ---------------------------------
my $dir = ss_ckpt_dir($node, $db);
$node->safe_psql($db, 'DROP EXTENSION stream_state CASCADE');
ok( $node->poll_query_until(
		$db, q{SELECT count(*) = 0 FROM pg_replication_slots WHERE slot_name LIKE 'stream_state_%'}),
	'DROP EXTENSION: the slot goes');
ok(!-e $dir, 'DROP EXTENSION: the checkpoint directory goes with it');
ok(!-e "$elsewhere/$oid", 'DROP EXTENSION: and its directory under checkpoint_directory');

$node->stop;
done_testing();
