-- transactions: rolled-back work is never counted; savepoints, prepared
-- transactions and large transactions that write their delta early
CREATE TABLE tx (k int, ts timestamptz);
SELECT stream_state.create_query('tx', 'tx', key_column => 'k', time_column => 'ts',
	window_size => '1 hour', slide => '10 minutes');

BEGIN;
INSERT INTO tx SELECT g % 3, '2026-11-24 12:00:00+00' FROM generate_series(1, 300) g;
ROLLBACK;
SELECT count(*) AS keys_after_rollback FROM stream_state.window_counts('tx', '2026-11-24 12:00:00+00');

BEGIN;
INSERT INTO tx VALUES (1, '2026-11-24 12:00:00+00');
SAVEPOINT a;
INSERT INTO tx VALUES (1, '2026-11-24 12:00:01+00'), (2, '2026-11-24 12:00:01+00');
ROLLBACK TO SAVEPOINT a;
INSERT INTO tx VALUES (2, '2026-11-24 12:00:02+00');
SAVEPOINT b;
INSERT INTO tx VALUES (3, '2026-11-24 12:00:03+00');
SAVEPOINT c;
INSERT INTO tx VALUES (3, '2026-11-24 12:00:04+00');
RELEASE SAVEPOINT c;
ROLLBACK TO SAVEPOINT b;
SAVEPOINT d;
INSERT INTO tx VALUES (4, '2026-11-24 12:00:05+00');
RELEASE SAVEPOINT d;
COMMIT;
SELECT * FROM stream_state.window_counts('tx', '2026-11-24 12:00:00+00') ORDER BY key COLLATE "C";
SELECT ss_test.mismatches('tx', '2026-11-24 12:00:00+00') AS diff;

-- an exception block is a sub-transaction too
DO $$
BEGIN
	INSERT INTO tx VALUES (5, '2026-11-24 12:01:00+00');
	BEGIN
		INSERT INTO tx VALUES (5, '2026-11-24 12:01:01+00');
		RAISE EXCEPTION 'undo';
	EXCEPTION WHEN OTHERS THEN
		NULL;
	END;
END $$;
SELECT stream_state.window_count('tx', 5, '2026-11-24 12:00:00+00') AS key5;

-- prepared transactions
BEGIN;
INSERT INTO tx SELECT 6, '2026-11-24 12:02:00+00' FROM generate_series(1, 10);
PREPARE TRANSACTION 'p1';
BEGIN;
INSERT INTO tx SELECT 7, '2026-11-24 12:02:00+00' FROM generate_series(1, 10);
SAVEPOINT s;
INSERT INTO tx VALUES (7, '2026-11-24 12:02:00+00');
ROLLBACK TO SAVEPOINT s;
PREPARE TRANSACTION 'p2';
SELECT stream_state.window_count('tx', 6, '2026-11-24 12:00:00+00') AS key6_prepared,
	   stream_state.window_count('tx', 7, '2026-11-24 12:00:00+00') AS key7_prepared;
COMMIT PREPARED 'p1';
ROLLBACK PREPARED 'p2';
SELECT stream_state.window_count('tx', 6, '2026-11-24 12:00:00+00') AS key6,
	   stream_state.window_count('tx', 7, '2026-11-24 12:00:00+00') AS key7;

-- a transaction larger than max_delta_entries writes its delta early,
-- also from inside a sub-transaction that is then rolled back
SET stream_state.max_delta_entries = 100;
BEGIN;
INSERT INTO tx SELECT 1000 + g, '2026-11-24 12:03:00+00' FROM generate_series(1, 1000) g;
SAVEPOINT big;
INSERT INTO tx SELECT 5000 + g, '2026-11-24 12:03:00+00' FROM generate_series(1, 1000) g;
ROLLBACK TO SAVEPOINT big;
SAVEPOINT big2;
INSERT INTO tx SELECT 1000 + g, '2026-11-24 12:03:00+00' FROM generate_series(1, 500) g;
RELEASE SAVEPOINT big2;
COMMIT;
BEGIN;
INSERT INTO tx SELECT 9000 + g, '2026-11-24 12:03:00+00' FROM generate_series(1, 1000) g;
ROLLBACK;
RESET stream_state.max_delta_entries;
SELECT count(*) AS keys, sum(count) AS events
  FROM stream_state.window_counts('tx', '2026-11-24 12:00:00+00');
SELECT count(*) AS source_rows FROM tx;
SELECT ss_test.mismatches('tx', '2026-11-24 12:00:00+00') AS diff;

-- read consistency modes
SET stream_state.read_consistency = 'committed';
SELECT stream_state.window_count('tx', 1001, '2026-11-24 12:00:00+00') AS committed_read;
SET stream_state.read_consistency = 'none';
SELECT stream_state.window_count('tx', 1001, '2026-11-24 12:00:00+00') >= 0 AS none_read;
RESET stream_state.read_consistency;

SELECT events_applied, late_events, skipped FROM stream_state.queries WHERE name = 'tx';

-- waiting for a position beyond the end of the WAL times out (and does not
-- try to flush WAL that does not exist)
SELECT stream_state.wait_applied(pg_current_wal_insert_lsn() + 100000000, '50 milliseconds') AS beyond_end;

-- TRUNCATE empties the state with the table, in order within a transaction
CREATE TABLE tr (k int, ts timestamptz);
SELECT stream_state.create_query('tr', 'tr', 'k', 'ts', '1 hour');
SELECT regexp_replace(tgname, '[0-9]+$', '<id>') AS tgname FROM pg_trigger WHERE tgrelid = 'tr'::regclass ORDER BY 1;
INSERT INTO tr VALUES (1, '2026-11-24 12:00+00'), (2, '2026-11-24 12:00+00');
BEGIN;
INSERT INTO tr VALUES (1, '2026-11-24 12:01+00');
TRUNCATE tr;
INSERT INTO tr VALUES (3, '2026-11-24 12:02+00');
COMMIT;
SELECT key, count FROM stream_state.window_counts('tr', '2026-11-24 12:30+00') ORDER BY 1;
-- a TRUNCATE rolled back to a savepoint leaves everything
BEGIN;
INSERT INTO tr VALUES (4, '2026-11-24 12:03+00');
SAVEPOINT s;
TRUNCATE tr;
ROLLBACK TO SAVEPOINT s;
INSERT INTO tr VALUES (4, '2026-11-24 12:04+00');
COMMIT;
SELECT key, count FROM stream_state.window_counts('tr', '2026-11-24 12:30+00') ORDER BY 1;
-- a TRUNCATE in a released savepoint empties what came before it
BEGIN;
INSERT INTO tr VALUES (5, '2026-11-24 12:05+00');
SAVEPOINT s;
INSERT INTO tr VALUES (5, '2026-11-24 12:05+00');
TRUNCATE tr;
RELEASE SAVEPOINT s;
INSERT INTO tr VALUES (6, '2026-11-24 12:06+00');
COMMIT;
SELECT key, count FROM stream_state.window_counts('tr', '2026-11-24 12:30+00') ORDER BY 1;
-- rows written to WAL early before the TRUNCATE are emptied too
SET stream_state.max_delta_entries = 100;
BEGIN;
INSERT INTO tr SELECT 100 + g, '2026-11-24 12:07+00' FROM generate_series(1, 1000) g;
TRUNCATE tr;
INSERT INTO tr VALUES (7, '2026-11-24 12:08+00');
COMMIT;
RESET stream_state.max_delta_entries;
SELECT key, count FROM stream_state.window_counts('tr', '2026-11-24 12:30+00') ORDER BY 1;
SELECT ss_test.mismatches('tr', '2026-11-24 12:30+00') AS diff;
SELECT events_applied, ss_test.state_keys(name) AS keys, ss_test.state_panes(name) AS panes
  FROM stream_state.queries WHERE name = 'tr';
SELECT stream_state.drop_query('tr');
SELECT count(*) AS triggers_left FROM pg_trigger WHERE tgrelid = 'tr'::regclass;
