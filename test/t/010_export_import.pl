
# Copyright (c) stream_state contributors

# export_checkpoint / import_checkpoint: state moved to another cluster
# through a file, applied in the importing transaction (rolled back with it,
# counted once when committed), and the errors of bad input: an unknown or
# damaged checkpoint, a file that exists, paths outside the data directory
# without the server-file roles, a file that is not a checkpoint, and a
# query whose windows differ.
#
# Rows as in 001_restart.pl: row g has user_id 1 + g % 4 and event time
# 2026-11-24 10:00:00+00 + ((g * 37) % 2100) s.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StreamStateTest;
use Test::More;

my $src = ss_new_node('src', "stream_state.checkpoint_interval = 0\n");
my $dst = ss_new_node('dst', "stream_state.checkpoint_interval = 0\n");
my $db = 'postgres';
my $dir = PostgreSQL::Test::Utils::tempdir;
chmod 0777, $dir;

my @tumble_at = map { ss_ts(300 * $_ + 60) } (-1 .. 7);
my $tumble_ats = join(',', map { "'$_'" } @tumble_at);
my $windows = qq{
SELECT string_agg(concat_ws(' ', key, window_end, count), E'\\\\n' ORDER BY window_end, key)
  FROM unnest(ARRAY[$tumble_ats]::timestamptz[]) at,
	   LATERAL stream_state.window_counts('tumble_5m', at)};

my $schema = q{
CREATE EXTENSION stream_state;
CREATE TABLE events (user_id bigint, ts timestamptz);
SELECT stream_state.create_query('tumble_5m', 'events', 'user_id', 'ts',
								 window_size => '5 minutes', lateness => '1 day');
SELECT stream_state.create_query('hourly', 'events', 'user_id', 'ts',
								 window_size => '1 hour');
};
$src->safe_psql($db, $schema);
$src->safe_psql($db, q{
SELECT stream_state.create_query('only_here', 'events', 'user_id', 'ts', window_size => '1 day');
INSERT INTO events (user_id, ts)
  SELECT 1 + g % 4, timestamptz '2026-11-24 10:00:00+00' + ((g * 37) % 2100) * interval '1 second'
	FROM generate_series(0, 999) g;});
ss_wait_applied($src, $db, 'source');
my $src_windows = $src->safe_psql($db, $windows);
my $id = $src->safe_psql($db, 'SELECT stream_state.checkpoint()');
my $file = "$dir/src.ckpt";
is($src->safe_psql($db, "SELECT stream_state.export_checkpoint($id, '$file')"),
	-s $file, 'export_checkpoint returns the size of the file it wrote');
is( $src->safe_psql($db,
		"SELECT bytes = (pg_stat_file('$file')).size FROM stream_state.checkpoints WHERE id = $id"),
	't', 'the exported file is the checkpoint, byte for byte in size');

# --- into another cluster ---------------------------------------------------
# "hourly" has other windows there
$dst->safe_psql($db, $schema =~ s/window_size => '1 hour'/window_size => '2 hours'/r);
my ($ret, $out, $err) = $dst->psql($db, "SELECT * FROM stream_state.import_checkpoint('$file')");
like($err, qr/ERROR:  continuous query "hourly" of the checkpoint has other windows than the one of this database/,
	'a query whose windows differ is refused, and nothing is imported');
$dst->safe_psql($db, q{SELECT stream_state.drop_query('hourly');
SELECT stream_state.create_query('hourly', 'events', 'user_id', 'ts', window_size => '1 hour');});

# rolled back: nothing
$dst->safe_psql($db, "BEGIN; SELECT * FROM stream_state.import_checkpoint('$file'); ROLLBACK;");
ss_wait_applied($dst, $db, 'import rolled back');
is($dst->safe_psql($db, "SELECT count(*) FROM stream_state.state"), '0',
	'an import that rolls back leaves no state');

($ret, $out, $err) = $dst->psql($db, "SELECT * FROM stream_state.import_checkpoint('$file') ORDER BY 1");
is($out, "hourly|4|4\ntumble_5m|4|28",
	'import_checkpoint says, per query, how many keys and (key, pane) entries it imported');
like($err, qr/NOTICE:  continuous query "only_here" of the checkpoint is not defined in this database; its state is not imported/,
	'a query the database does not define is named and skipped');
ss_wait_applied($dst, $db, 'imported');
is($dst->safe_psql($db, $windows), $src_windows,
	'imported: every window of tumble_5m equals the exporting server\'s');
is( $dst->safe_psql($db,
		q{SELECT watermark FROM stream_state.queries WHERE name = 'tumble_5m'}),
	$src->safe_psql($db,
		q{SELECT watermark FROM stream_state.queries WHERE name = 'tumble_5m'}),
	'imported: the watermark comes along');

# importing again replaces, it does not add
$dst->safe_psql($db, "SELECT * FROM stream_state.import_checkpoint('$file')");
ss_wait_applied($dst, $db, 'imported twice');
is($dst->safe_psql($db, $windows), $src_windows, 'a second import replaces the state instead of adding to it');

# new rows count on top
$dst->safe_psql($db, q{INSERT INTO events VALUES (1, '2026-11-24 10:00:01+00'), (1, '2026-11-24 10:00:02+00')});
is( $dst->safe_psql($db,
		q{SELECT stream_state.window_count('tumble_5m', 1::bigint, '2026-11-24 10:01:00+00')}),
	$src->safe_psql($db,
		q{SELECT stream_state.window_count('tumble_5m', 1::bigint, '2026-11-24 10:01:00+00')}) + 2,
	'rows inserted after the import count on top of it');

# and survive a restart (the import is in the WAL like any insert)
$dst->stop('immediate');
$dst->start;
ss_wait_applied($dst, $db, 'imported, restarted');
is( $dst->safe_psql($db,
		q{SELECT stream_state.window_count('tumble_5m', 1::bigint, '2026-11-24 10:01:00+00')}),
	$src->safe_psql($db,
		q{SELECT stream_state.window_count('tumble_5m', 1::bigint, '2026-11-24 10:01:00+00')}) + 2,
	'the imported state survives a crash restart');

# --- bad input ------------------------------------------------------------------
like(ss_error_of($src, $db, "SELECT stream_state.export_checkpoint(9999, '$dir/x.ckpt')"),
	qr/ERROR:  42704: checkpoint 9999 of this database does not exist\nHINT:  See stream_state.checkpoints\./,
	'export of an unknown checkpoint id (42704)');
like(ss_error_of($src, $db, "SELECT stream_state.export_checkpoint($id, '$file')"),
	qr/ERROR:  58P02: file ".*src.ckpt" already exists/,
	'export onto an existing file (58P02)');
$src->safe_psql($db, q{CREATE ROLE ops LOGIN;
GRANT EXECUTE ON FUNCTION stream_state.export_checkpoint(bigint, text),
	stream_state.import_checkpoint(text) TO ops;});
like(ss_error_of($src, $db, "SELECT stream_state.export_checkpoint($id, '$dir/ops.ckpt')", 'ops'),
	qr/ERROR:  42501: permission denied to write checkpoint file ".*ops.ckpt"\nDETAIL:  Only roles with privileges of the "pg_write_server_files" role may write files outside the data directory\./,
	'export outside the data directory needs pg_write_server_files (42501)');
like(ss_error_of($src, $db, "SELECT * FROM stream_state.import_checkpoint('$file')", 'ops'),
	qr/ERROR:  42501: permission denied to read checkpoint file/,
	'import from outside the data directory needs pg_read_server_files (42501)');
is( $src->safe_psql($db, "SELECT stream_state.export_checkpoint($id, 'exported.ckpt') > 0",
		extra_params => [ '-U', 'ops' ]),
	't', 'a relative path is inside the data directory, where no server-file role is needed');

open(my $fh, '>', "$dir/garbage.ckpt") or die;
print $fh "not a checkpoint at all, just text\n";
close $fh;
like(ss_error_of($dst, $db, "SELECT * FROM stream_state.import_checkpoint('$dir/garbage.ckpt')"),
	qr/ERROR:  XX001: could not import checkpoint file ".*garbage.ckpt": it is not a stream_state checkpoint file/,
	'a file that is not a checkpoint is refused (XX001)');
my $cut = "$dir/cut.ckpt";
open(my $in, '<:raw', $file) or die;
read($in, my $half, int((-s $file) / 2));
close $in;
open(my $o2, '>:raw', $cut) or die;
print $o2 $half;
close $o2;
my $before = $dst->safe_psql($db, $windows);
like(ss_error_of($dst, $db, "SELECT * FROM stream_state.import_checkpoint('$cut')"),
	qr/ERROR:  XX001: could not import checkpoint file ".*cut.ckpt": the file ends at byte \d+, inside a block/,
	'a truncated checkpoint is refused (XX001)');
ss_wait_applied($dst, $db, 'after the refused import');
is($dst->safe_psql($db, $windows), $before, 'a refused import leaves the state as it was');
like(ss_error_of($dst, $db, "SELECT * FROM stream_state.import_checkpoint('$dir/none.ckpt')"),
	qr/ERROR:  XX001: could not import checkpoint file ".*none.ckpt": could not open it: No such file or directory/,
	'a missing file is refused');

$src->stop;
$dst->stop;
done_testing();
