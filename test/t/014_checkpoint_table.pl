
# Copyright (c) stream_state contributors

# Checkpoint target 'table': checkpoints copied into stream_state.checkpoint_data
# by a helper process, their file removed; restore at start (clean restart and
# kill -9 of the postmaster) from the rows; the slot moving only once the rows
# are committed; retention deleting rows; damaged rows (a missing chunk, a
# flipped byte) logged with the reason and replaced by the previous
# checkpoint; a history of both targets; export_checkpoint and
# restore_checkpoint of a table checkpoint; the GUC default 'table'; a copy
# that fails (an ERROR in the helper, no background worker slot, a database
# whose extension is still 0.2.0) keeping the checkpoint as a file; and
# restore_checkpoint giving up on a worker that does not come back.
#
# Rows: row g of events has user_id 1 + g % 4 and event time 10:00:00 +
# (g * 37) % 2100 s on 2026-11-24, as in 007_checkpoints.pl.  Table big(k, ts)
# holds one row per key, all at 10:00:00, so that its query's checkpoint
# entries fill several 1 MB chunks.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StreamStateTest;
use Test::More;
use Time::HiRes qw(usleep);

my $node = ss_new_node('ckpt_table',
	"stream_state.checkpoint_interval = 0\nstream_state.checkpoint_retain = 3\n");
my $db = 'postgres';
my $rows = 0;
my $big = 0;
my $g = 0;

sub insert_rows
{
	my ($n) = @_;
	my ($from, $to) = ($g, $g + $n - 1);
	$node->safe_psql($db, qq{INSERT INTO events (user_id, ts)
  SELECT 1 + g % 4,
		 timestamptz '2026-11-24 10:00:00+00' + ((g * 37) % 2100) * interval '1 second'
	FROM generate_series($from, $to) g});
	$rows += $n;
	$g += $n;
	return;
}

sub check_all
{
	my ($label) = @_;
	ss_wait_applied($node, $db, $label);
	ss_check_tumble_slide($node, $db, $label, $rows);
	ss_check_hour_window($node, $db, $label, 'big_1h', 'big', $big);
	return;
}

sub checkpoint
{
	my ($target) = @_;
	return $node->safe_psql($db,
		defined $target
		? "SELECT stream_state.checkpoint(target => '$target')"
		: 'SELECT stream_state.checkpoint()');
}

# "chunks: 0,1,2" for checkpoint id, from the table
sub chunks_of
{
	my ($id) = @_;
	return $node->safe_psql($db,
		"SELECT count(*) || ': ' || coalesce(string_agg(chunk::text, ',' ORDER BY chunk), '') FROM stream_state.checkpoint_data WHERE checkpoint_id = $id"
	);
}

$node->safe_psql($db, 'CREATE EXTENSION stream_state');
$node->safe_psql(
	$db, q{
CREATE TABLE events (user_id bigint, ts timestamptz);
CREATE TABLE big (k bigint, ts timestamptz);
SELECT stream_state.create_query('tumble_5m', 'events', 'user_id', 'ts',
								 window_size => '5 minutes', lateness => '1 day');
SELECT stream_state.create_query('slide_10m', 'events', 'user_id', 'ts',
								 window_size => '10 minutes', slide => '2 minutes',
								 lateness => '1 day');
SELECT stream_state.create_query('big_1h', 'big', 'k', 'ts', window_size => '1 hour');
});
insert_rows(1000);
$node->safe_psql($db,
	q{INSERT INTO big SELECT g, '2026-11-24 10:00:00+00' FROM generate_series(1, 300000) g});
$big = 300000;

# --- a checkpoint into the table ------------------------------------------------
# checkpoint() waits for its own session's commits only; these came from others
ss_wait_applied($node, $db, 'rows inserted');
is(checkpoint('table'), '1', "checkpoint(target => 'table') returns id 1");
is( $node->safe_psql(
		$db, q{
SELECT c.target, c.location, c.status, c.queries,
	   c.entries = (SELECT sum(panes) FROM stream_state.queries),
	   c.bytes = (SELECT sum(length(data)) FROM stream_state.checkpoint_data WHERE checkpoint_id = 1),
	   c.bytes > 3 * 1024 * 1024
  FROM stream_state.checkpoints c}),
	'table|stream_state.checkpoint_data|valid|3|t|t|t',
	'the view shows checkpoint 1 in the table, with every entry; its rows hold its bytes (more than 3 MB)'
);
my $nchunks = $node->safe_psql($db,
	'SELECT ceil(bytes / 1048576.0) FROM stream_state.checkpoints WHERE id = 1');
cmp_ok($nchunks, '>=', 4, "checkpoint 1 needs $nchunks chunks of 1 MB");
is(chunks_of(1), "$nchunks: " . join(',', 0 .. $nchunks - 1),
	'its rows are chunks 0 .. n-1 of checkpoint_id 1');
is( $node->safe_psql(
		$db,
		'SELECT count(*) FILTER (WHERE length(data) = 1048576) FROM stream_state.checkpoint_data WHERE checkpoint_id = 1'),
	$nchunks - 1,
	'every chunk but the last holds 1 MB');
ok(!-e ss_ckpt_dir($node, $db) . '/1.ckpt', 'the file of checkpoint 1 is gone');
is(ss_slot_restart($node, $db),
	$node->safe_psql($db, 'SELECT restart_lsn FROM stream_state.checkpoints WHERE id = 1'),
	'with one (table) checkpoint, the slot keeps WAL from its restart position');

# --- restart: restored from the rows -----------------------------------------------
insert_rows(200);
my $offset = -s $node->logfile;
$node->stop('fast');
$node->start;
ok( ss_wait_log(
		$node,
		qr/stream_state: restored checkpoint 1 of database \d+ at [0-9A-F\/]+; re-reading WAL from/,
		$offset),
	'restart: the worker restored checkpoint 1 from the table');
check_all('restart, restored from the table');
is( $node->safe_psql(
		$db,
		q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'stream_state checkpoint table helper'}),
	'0', 'the helper process has exited');

# --- kill -9 of the postmaster -------------------------------------------------------
is(checkpoint('table'), '2', 'checkpoint 2 into the table');
insert_rows(300);
$offset = -s $node->logfile;
ss_kill9_and_restart($node);
ok(ss_wait_log($node, qr/stream_state: restored checkpoint 2 of database \d+ at/, $offset),
	'kill -9: the worker restored checkpoint 2 from the table');
check_all('kill -9, restored from the table');

# --- the slot moves only after the rows are committed --------------------------------
is(ss_slot_restart($node, $db),
	$node->safe_psql($db, 'SELECT restart_lsn FROM stream_state.checkpoints WHERE id = 1'),
	'two table checkpoints: the slot keeps WAL from the restart position of the older one');
insert_rows(100);
my $slot_before = ss_slot_restart($node, $db);
my $locker = $node->background_psql($db);
$locker->query_safe('BEGIN; LOCK TABLE stream_state.checkpoint_data IN ACCESS EXCLUSIVE MODE;');
my $asker = $node->background_psql($db);
$asker->query_until(qr/asking/, "\\echo asking\nSELECT stream_state.checkpoint(target => 'table');\n");
ok( $node->poll_query_until(
		$db,
		q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'stream_state checkpoint table helper' AND wait_event_type = 'Lock'}
	),
	'the helper waits for the lock on the table');
is( $node->safe_psql($db, 'SELECT target || \'|\' || status FROM stream_state.checkpoints WHERE id = 3'),
	'file|valid',
	'while the helper waits, checkpoint 3 is a (durable) file in the history');
ok(-f ss_ckpt_dir($node, $db) . '/3.ckpt', 'and its file is there');
is(ss_slot_restart($node, $db), $slot_before, 'and the slot has not moved');
# the checks above can take less than the 100 ms the duration is checked for
$node->safe_psql($db, 'SELECT pg_sleep(0.2)');
$locker->query_safe('COMMIT');
$locker->quit;
$asker->quit;
is( $node->safe_psql($db, 'SELECT target || \'|\' || status FROM stream_state.checkpoints WHERE id = 3'),
	'table|valid', 'once the lock is released, checkpoint 3 is in the table');
is( $node->safe_psql(
		$db, q{SELECT duration >= interval '100 ms' FROM stream_state.checkpoints WHERE id = 3}),
	't', 'its duration runs until its rows were committed, so it includes the wait for the lock');
ok(!-e ss_ckpt_dir($node, $db) . '/3.ckpt', 'and its file is gone');
is(ss_slot_restart($node, $db),
	$node->safe_psql($db, 'SELECT restart_lsn FROM stream_state.checkpoints WHERE id = 2'),
	'and the slot moved to the restart position of checkpoint 2');
isnt(ss_slot_restart($node, $db), $slot_before, 'the slot moved forward');

# --- retention deletes rows -----------------------------------------------------------
insert_rows(100);
# rows of a coming id already there (a lost history makes ids start again)
# are replaced by the copy
$node->safe_psql($db,
	q{INSERT INTO stream_state.checkpoint_data VALUES (4, 0, '\x00'), (4, 99, '\x00')});
is(checkpoint('table'), '4', 'checkpoint 4 into the table, where rows of id 4 were already');
is(chunks_of(4), "$nchunks: " . join(',', 0 .. $nchunks - 1),
	'the rows of checkpoint 4 are its own chunks: those that were there are gone');
is( $node->safe_psql(
		$db, q{
SELECT string_agg(id || '=' || target || ':' || status, ',' ORDER BY id) FROM stream_state.checkpoints}),
	'1=table:deleted,2=table:valid,3=table:valid,4=table:valid',
	'retention keeps the newest 3 checkpoints and deletes checkpoint 1');
is( $node->safe_psql(
		$db, 'SELECT string_agg(DISTINCT checkpoint_id::text, \',\') FROM stream_state.checkpoint_data'),
	'2,3,4', 'the rows of checkpoint 1 are deleted with it; those of 2, 3 and 4 stay');
is(chunks_of(1), '0: ', 'no row of checkpoint 1 is left');

# rows of a coming id already there (a lost history makes ids start again)
# go after a file checkpoint too, with the rows retention drops
$node->safe_psql($db,
	q{INSERT INTO stream_state.checkpoint_data VALUES (5, 0, '\x00'), (5, 99, '\x00')});

# --- a history of both targets ----------------------------------------------------------
insert_rows(100);
is(checkpoint('file'), '5', "checkpoint(target => 'file') still writes a file: 5");
is(chunks_of(5), '0: ', 'the rows that were there for id 5 are deleted (5 is not a table checkpoint)');
is( $node->safe_psql(
		$db, q{
SELECT string_agg(id || '=' || target || ':' || status, ',' ORDER BY id) FROM stream_state.checkpoints}),
	'1=table:deleted,2=table:deleted,3=table:valid,4=table:valid,5=file:valid',
	'a file checkpoint after table ones: retention deletes table checkpoint 2');
is( $node->safe_psql(
		$db, 'SELECT string_agg(DISTINCT checkpoint_id::text, \',\') FROM stream_state.checkpoint_data'),
	'3,4', 'after a file checkpoint, the rows of table checkpoint 2 are deleted too');
ok(-f ss_ckpt_dir($node, $db) . '/5.ckpt', 'checkpoint 5 is a file');
insert_rows(100);
$offset = -s $node->logfile;
$node->stop('immediate');
$node->start;
ok(ss_wait_log($node, qr/stream_state: restored checkpoint 5 of database \d+ at/, $offset),
	'mixed history: the newest, a file, is restored');
check_all('mixed history, restored from the file');

# --- damaged rows ---------------------------------------------------------------------------
# Each case: checkpoint N into the table, more rows, damage to N's rows, a
# restart: the log says why N is damaged, the previous one is restored, the
# state is exact.
sub damage_case
{
	my ($label, $damage, $why) = @_;
	my $id = checkpoint('table');
	insert_rows(50);
	my $prev = $node->safe_psql($db,
		"SELECT max(id) FROM stream_state.checkpoints WHERE status = 'valid' AND id < $id");
	$node->safe_psql($db, $damage->($id));
	my $off = -s $node->logfile;
	$node->stop('fast');
	$node->start;
	ok( ss_wait_log(
		$node,
			qr/LOG:  stream_state: checkpoint $id of database \d+ is damaged: $why\n.*DETAIL:  Rows of checkpoint_id $id in table stream_state.checkpoint_data\./,
			$off),
		"$label: the log says checkpoint $id is damaged and why");
	ok( ss_wait_log($node, qr/stream_state: restored checkpoint $prev of database/, $off),
		"$label: checkpoint $prev, the previous one, is restored instead");
	is($node->safe_psql($db, "SELECT status FROM stream_state.checkpoints WHERE id = $id"),
		'damaged', "$label: the checkpoints view marks $id damaged");
	check_all($label);
	return;
}

damage_case(
	'a missing chunk',
	sub { "DELETE FROM stream_state.checkpoint_data WHERE checkpoint_id = $_[0] AND chunk = 1" },
	qr/chunk 1 of its $nchunks chunks is missing from table stream_state.checkpoint_data/);
damage_case(
	'a missing last chunk',
	sub {
		"DELETE FROM stream_state.checkpoint_data WHERE checkpoint_id = $_[0] AND chunk = (SELECT max(chunk) FROM stream_state.checkpoint_data WHERE checkpoint_id = $_[0])";
	},
	qr/chunk \d+ of its $nchunks chunks is missing from table stream_state.checkpoint_data/);
damage_case(
	'a flipped byte',
	sub {
		"UPDATE stream_state.checkpoint_data SET data = set_byte(data, 1000, get_byte(data, 1000) # 255) WHERE checkpoint_id = $_[0] AND chunk = 2";
	},
	qr/block \d+ at byte \d+ fails its CRC-32C check/);
is( $node->safe_psql(
		$db, q{SELECT string_agg(DISTINCT checkpoint_id::text, ',') FROM stream_state.checkpoint_data}),
	$node->safe_psql(
		$db,
		q{SELECT string_agg(id::text, ',' ORDER BY id) FROM stream_state.checkpoints WHERE target = 'table' AND status <> 'deleted'}
	),
	'the table holds rows of exactly the table checkpoints not deleted');

# the next table checkpoint deletes the damaged ones' rows with them
insert_rows(50);
my $c = checkpoint('table');
is( $node->safe_psql(
		$db, q{SELECT string_agg(DISTINCT checkpoint_id::text, ',') FROM stream_state.checkpoint_data}),
	$node->safe_psql(
		$db,
		q{SELECT string_agg(id::text, ',' ORDER BY id) FROM stream_state.checkpoints WHERE target = 'table' AND status = 'valid'}
	),
	"after checkpoint $c, rows of damaged checkpoints are gone: the table holds the valid table checkpoints");
is( $node->safe_psql(
		$db, q{SELECT count(*) FROM stream_state.checkpoints WHERE status IN ('valid', 'damaged')}),
	'3', 'and three checkpoints are kept');

# --- export_checkpoint and restore_checkpoint of a table checkpoint ------------------------------
my $dir = PostgreSQL::Test::Utils::tempdir;
chmod 0777, $dir;
my $e = checkpoint('table');
my $bytes = $node->safe_psql($db, "SELECT bytes FROM stream_state.checkpoints WHERE id = $e");
is($node->safe_psql($db, "SELECT stream_state.export_checkpoint($e, '$dir/e.ckpt')"),
	$bytes, 'export_checkpoint of a table checkpoint returns its size');
is(-s "$dir/e.ckpt", $bytes, 'the exported file has that size');
my $windows = q{
SELECT string_agg(concat_ws(' ', key, window_end, count), ',' ORDER BY window_end, key)
  FROM unnest(ARRAY['2026-11-24 10:01:00+00', '2026-11-24 10:11:00+00', '2026-11-24 10:21:00+00',
					'2026-11-24 10:31:00+00']::timestamptz[]) at,
	   LATERAL stream_state.window_counts('tumble_5m', at)};
my $at_export = $node->safe_psql($db, $windows);
$node->safe_psql('postgres', 'CREATE DATABASE other');
$node->safe_psql(
	'other', q{
CREATE EXTENSION stream_state;
CREATE TABLE events (user_id bigint, ts timestamptz);
SELECT stream_state.create_query('tumble_5m', 'events', 'user_id', 'ts',
								 window_size => '5 minutes', lateness => '1 day');});
is( $node->safe_psql('other', "SELECT * FROM stream_state.import_checkpoint('$dir/e.ckpt')"),
	'tumble_5m|4|28', 'the exported file imports into another database');
ss_wait_applied($node, 'other', 'imported');
is($node->safe_psql('other', $windows), $at_export,
	'the imported windows equal those of the exporting database at the checkpoint');
$node->safe_psql('postgres', 'DROP DATABASE other');
ok( $node->poll_query_until(
		$db, q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'stream_state worker'}),
	'DROP DATABASE other: its worker has gone');
like(ss_error_of($node, $db, "SELECT stream_state.export_checkpoint($e, '$dir/e.ckpt')"),
	qr/ERROR:  58P02: file ".*e.ckpt" already exists/,
	'export of a table checkpoint onto an existing file (58P02)');

insert_rows(100);
$offset = -s $node->logfile;
is( $node->safe_psql($db,
		"SELECT string_agg(query || '=' || action, ',' ORDER BY query) FROM stream_state.restore_checkpoint($e)"),
	'big_1h=replayed,slide_10m=replayed,tumble_5m=replayed',
	"restore_checkpoint($e) of a table checkpoint: every query replayed from the kept WAL");
ok(ss_wait_log($node, qr/stream_state: restored checkpoint $e of database/, $offset),
	"restore_checkpoint($e): the worker started again from it");
check_all("restore_checkpoint($e) from the table");

# a damaged table checkpoint is refused before anything changes
my $d = $node->safe_psql($db,
	"SELECT min(id) FROM stream_state.checkpoints WHERE target = 'table' AND status = 'valid'");
$node->safe_psql($db,
	"DELETE FROM stream_state.checkpoint_data WHERE checkpoint_id = $d AND chunk = 0");
like(ss_error_of($node, $db, "SELECT * FROM stream_state.restore_checkpoint($d)"),
	qr/ERROR:  XX001: checkpoint $d is damaged: chunk 0 of its $nchunks chunks is missing from table stream_state.checkpoint_data\nDETAIL:  Rows of checkpoint_id $d in table stream_state.checkpoint_data\./,
	'restore_checkpoint of a table checkpoint with a missing chunk is refused (XX001)');
like(ss_error_of($node, $db, "SELECT stream_state.export_checkpoint($d, '$dir/d.ckpt')"),
	qr/ERROR:  XX001: checkpoint $d is damaged: chunk 0 of its $nchunks chunks is missing/,
	'export_checkpoint of it is refused too (XX001)');
ok(!-e "$dir/d.ckpt" && !-e "$dir/d.ckpt.tmp", 'and leaves no file behind');

# exporting and restoring read the rows as the table's owner: a role granted
# the functions needs no privilege on the table
$node->safe_psql(
	$db, q{CREATE ROLE ops LOGIN;
GRANT EXECUTE ON FUNCTION stream_state.export_checkpoint(bigint, text) TO ops;});
like(ss_error_of($node, $db, 'SELECT count(*) FROM stream_state.checkpoint_data', 'ops'),
	qr/ERROR:  42501: permission denied for table checkpoint_data/,
	'the table is not readable by PUBLIC (42501)');
is($node->safe_psql($db, "SELECT stream_state.export_checkpoint($e, 'ops.ckpt')", extra_params => [ '-U', 'ops' ]),
	$bytes, 'ops exports a table checkpoint into the data directory');

# --- the GUC default 'table', periodic checkpoints -------------------------------------------------
$node->append_conf('postgresql.conf', "stream_state.checkpoint_target = 'table'\n");
$node->reload;
ok($node->poll_query_until($db, "SELECT current_setting('stream_state.checkpoint_target') = 'table'"),
	"checkpoint_target = 'table' set by a reload");
my $t = checkpoint();
is($node->safe_psql($db, "SELECT target FROM stream_state.checkpoints WHERE id = $t"),
	'table', "checkpoint() goes to the table when checkpoint_target is 'table'");
my $tf = checkpoint('file');
is($node->safe_psql($db, "SELECT target FROM stream_state.checkpoints WHERE id = $tf"),
	'file', "checkpoint(target => 'file') overrides the default");
$node->append_conf('postgresql.conf', "stream_state.checkpoint_interval = 1\n");
$node->reload;
my $newest = $node->safe_psql($db, 'SELECT max(id) FROM stream_state.checkpoints');
insert_rows(10);
ok( $node->poll_query_until(
		$db,
		"SELECT count(*) > 0 FROM stream_state.checkpoints WHERE id > $newest AND target = 'table' AND status = 'valid'"
	),
	'periodic checkpoints go to the table too');
$node->append_conf('postgresql.conf', "stream_state.checkpoint_interval = 0\n");
$node->reload;
ok($node->poll_query_until($db, "SELECT current_setting('stream_state.checkpoint_interval') = '0'"),
	'periodic checkpoints off again');
# a periodic one may still run: ask until one on demand is not refused
ok($node->poll_query_until($db, "SELECT stream_state.checkpoint(target => 'table') > 0"),
	'a checkpoint on demand once the periodic ones have stopped');
check_all('after periodic table checkpoints');

# --- a copy that fails keeps the checkpoint as a file -----------------------------------------------
$node->safe_psql(
	$db, q{
CREATE FUNCTION public.no_rows() RETURNS trigger LANGUAGE plpgsql AS
  $$BEGIN RAISE EXCEPTION 'no rows today'; END$$;
CREATE TRIGGER no_rows BEFORE INSERT ON stream_state.checkpoint_data
  FOR EACH ROW EXECUTE FUNCTION public.no_rows();});
insert_rows(20);
my $f = $node->safe_psql($db, 'SELECT max(id) + 1 FROM stream_state.checkpoints');
$offset = -s $node->logfile;
like(ss_error_of($node, $db, "SELECT stream_state.checkpoint(target => 'table')"),
	qr/ERROR:  P0001: could not copy checkpoint $f into table stream_state.checkpoint_data: no rows today\nDETAIL:  Checkpoint $f is kept as a file; stream_state.checkpoints shows where\./,
	'an ERROR in the helper fails checkpoint(target => table) with its SQLSTATE and message');
ok( ss_wait_log(
		$node,
		qr/LOG:  stream_state: could not copy checkpoint $f of database \d+ into table stream_state.checkpoint_data: no rows today\n.*DETAIL:  The checkpoint is kept as a file\./,
		$offset),
	'the log says so too');
is( $node->safe_psql($db,
		"SELECT target || '|' || status || '|' || ((pg_stat_file(location)).size = bytes) FROM stream_state.checkpoints WHERE id = $f"),
	'file|valid|true', "checkpoint $f is a valid file");
is(chunks_of($f), '0: ', 'and has no rows');
is(ss_slot_restart($node, $db),
	$node->safe_psql($db,
		"SELECT restart_lsn FROM stream_state.checkpoints WHERE status = 'valid' AND id < $f ORDER BY id DESC LIMIT 1"),
	'the slot moved (the file is durable) to the restart position of the previous checkpoint');
$node->safe_psql($db, 'DROP TRIGGER no_rows ON stream_state.checkpoint_data');
insert_rows(20);
$offset = -s $node->logfile;
$node->stop('fast');
$node->start;
ok(ss_wait_log($node, qr/stream_state: restored checkpoint $f of database/, $offset),
	'the checkpoint kept as a file is restored at start');
check_all('restored from the checkpoint kept as a file');

# --- no background worker slot for the helper ------------------------------------------------------
# launcher and logical replication launcher (static) and the worker: no slot
# is left for the scanner (the worker copies itself) nor for the helper
my $tbl = checkpoint('table');
my $before_tbl = $node->safe_psql($db, "SELECT max(id) FROM stream_state.checkpoints WHERE id < $tbl AND status = 'valid'");
insert_rows(20);
$node->append_conf('postgresql.conf', "max_worker_processes = 3\n");
$offset = -s $node->logfile;
$node->restart;
ok( ss_wait_log(
		$node,
		qr/LOG:  stream_state: checkpoint $tbl of database \d+ is not used: could not start a helper process: no background worker slot is free \(max_worker_processes\)/,
		$offset),
	'no worker slot at start: the table checkpoint is not used, and the log says why');
ok(ss_wait_log($node, qr/stream_state: restored checkpoint $before_tbl of database/, $offset),
	"the previous checkpoint, $before_tbl, is restored instead");
is($node->safe_psql($db, "SELECT status FROM stream_state.checkpoints WHERE id = $tbl"),
	'valid', 'the table checkpoint is not marked damaged: it could not be read, it is not broken');
check_all('no worker slot, restored from the previous checkpoint');
my $k = $node->safe_psql($db, 'SELECT max(id) + 1 FROM stream_state.checkpoints');
like(ss_error_of($node, $db, "SELECT stream_state.checkpoint(target => 'table')"),
	qr/ERROR:  53400: could not copy checkpoint $k into table stream_state.checkpoint_data: could not start a helper process: no background worker slot is free \(max_worker_processes\)/,
	'no worker slot: checkpoint(target => table) fails (53400) and keeps a file');
is($node->safe_psql($db, "SELECT target || '|' || status FROM stream_state.checkpoints WHERE id = $k"),
	'file|valid', "checkpoint $k is a valid file");
$node->append_conf('postgresql.conf', "max_worker_processes = 8\n");
$node->restart;
ss_wait_applied($node, $db, 'worker slots back');
is(checkpoint('table') > $k ? 'ok' : 'no', 'ok', 'with worker slots back, checkpoints go to the table again');
check_all('worker slots back');

# --- an extension still at 0.2.0 -------------------------------------------------------------------
$node->safe_psql('postgres', 'CREATE DATABASE old');
$node->safe_psql(
	'old', q{
CREATE EXTENSION stream_state VERSION '0.2.0';
CREATE TABLE events (user_id bigint, ts timestamptz);
SELECT stream_state.create_query('tumble_5m', 'events', 'user_id', 'ts', window_size => '5 minutes');
INSERT INTO events VALUES (1, '2026-11-24 10:00:00+00');});
like(ss_error_of($node, 'old', "SELECT stream_state.checkpoint(target => 'table')"),
	qr/ERROR:  42P01: could not copy checkpoint 1 into table stream_state.checkpoint_data: table stream_state.checkpoint_data does not exist in this database \(Update the extension in this database: ALTER EXTENSION stream_state UPDATE.\)/,
	'0.2.0: checkpoint(target => table) fails (42P01) and says to update the extension');
is( $node->safe_psql(
		'old', q{ALTER EXTENSION stream_state UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'stream_state'}),
	'0.7.0', 'ALTER EXTENSION UPDATE takes 0.2.0 to the current version, 0.7.0');
is($node->safe_psql('old', "SELECT stream_state.checkpoint(target => 'table')"),
	'2', 'after the update, checkpoints go to the table');
is( $node->safe_psql(
		'old',
		q{SELECT string_agg(id || '=' || target || ':' || status, ',' ORDER BY id) FROM stream_state.checkpoints}),
	'1=file:valid,2=table:valid', 'the history of the updated database');
$node->safe_psql('postgres', 'DROP DATABASE old');
ok( $node->poll_query_until(
		$db, q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'stream_state worker'}),
	'DROP DATABASE old (with a table checkpoint): its worker has gone');

# --- restore_checkpoint gives up on a worker that does not come back --------------------------------
my $r = $node->safe_psql($db, 'SELECT max(id) FROM stream_state.checkpoints');
my $launcher = $node->safe_psql($db,
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'stream_state launcher'});
kill 'STOP', $launcher;
like(
	ss_error_of(
		$node,
		$db,
		"SET stream_state.read_timeout = '2s'; SELECT * FROM stream_state.restore_checkpoint($r)"),
	qr/ERROR:  55000: the stream_state worker of this database is not running\nDETAIL:  It did not come back within stream_state.read_timeout \(2000 ms\) to restore checkpoint $r\./,
	'restore_checkpoint fails (55000) when the worker does not come back within read_timeout');
kill 'CONT', $launcher;
ok( $node->poll_query_until(
		$db,
		q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'stream_state worker'}),
	'the worker is back once the launcher runs');
insert_rows(10);
is( $node->safe_psql($db,
		"SELECT string_agg(query || '=' || action, ',' ORDER BY query) FROM stream_state.restore_checkpoint($r)"),
	'big_1h=replayed,slide_10m=replayed,tumble_5m=replayed',
	'the request was withdrawn: a second restore_checkpoint is not "already running" and succeeds');
check_all('after restore_checkpoint gave up once');

# --- DROP EXTENSION: the table goes with it, and so do the files ------------------------------------
my $cdir = ss_ckpt_dir($node, $db);
$node->safe_psql($db, 'DROP EXTENSION stream_state CASCADE');
ok( $node->poll_query_until(
		$db, q{SELECT count(*) = 0 FROM pg_replication_slots WHERE slot_name = (SELECT 'stream_state_' || oid FROM pg_database WHERE datname = current_database())}),
	'DROP EXTENSION: the slot goes');
ok(!-e $cdir, 'DROP EXTENSION: the checkpoint directory goes');
is($node->safe_psql($db, q{SELECT to_regclass('stream_state.checkpoint_data') IS NULL}),
	't', 'DROP EXTENSION: the table goes');

$node->stop;
done_testing();
