-- privileges: defining needs SELECT on the columns and TRIGGER on the table;
-- state is readable by the owner and by roles the owner grants it to
CREATE ROLE ss_alice;
CREATE ROLE ss_bob;
CREATE ROLE ss_carol;
GRANT USAGE ON SCHEMA public TO ss_alice, ss_bob, ss_carol;
CREATE TABLE priv_events (k int, ts timestamptz, secret text);
GRANT INSERT ON priv_events TO ss_alice, ss_bob;
GRANT SELECT (k, ts), TRIGGER ON priv_events TO ss_alice;
GRANT SELECT (k) , TRIGGER ON priv_events TO ss_bob;
GRANT SELECT ON priv_events TO ss_carol;

SET ROLE ss_bob;
SELECT ss_test.error_of($$SELECT stream_state.create_query('pq', 'priv_events', 'k', 'ts', '1 hour')$$);
RESET ROLE;
SET ROLE ss_carol;
SELECT ss_test.error_of($$SELECT stream_state.create_query('pq', 'priv_events', 'k', 'ts', '1 hour')$$);
RESET ROLE;

SET ROLE ss_alice;
SELECT stream_state.create_query('pq', 'priv_events', 'k', 'ts', '1 hour');
INSERT INTO priv_events VALUES (1, '2026-11-24 10:00+00', 's'), (1, '2026-11-24 10:01+00', 's');
SELECT stream_state.window_count('pq', 1, '2026-11-24 10:30+00') AS alice_reads;
SELECT owner FROM stream_state.queries WHERE name = 'pq';
RESET ROLE;

-- bob may insert, but not read the state or drop the query
SET ROLE ss_bob;
INSERT INTO priv_events VALUES (1, '2026-11-24 10:02+00', 's');
SELECT ss_test.error_of($$SELECT stream_state.window_count('pq', 1, '2026-11-24 10:30+00')$$);
SELECT ss_test.error_of($$SELECT * FROM stream_state.window_counts('pq', '2026-11-24 10:30+00')$$);
SELECT count(*) AS bob_sees_state FROM stream_state.state WHERE query = 'pq';
SELECT ss_test.error_of($$SELECT stream_state.drop_query('pq')$$);
SELECT ss_test.error_of($$SELECT stream_state.grant_read('pq', 'ss_bob')$$);
RESET ROLE;

SET ROLE ss_alice;
SELECT stream_state.grant_read('pq', 'ss_bob');
RESET ROLE;
SET ROLE ss_bob;
SELECT stream_state.window_count('pq', 1, '2026-11-24 10:30+00') AS bob_reads;
SELECT count(*) AS bob_sees_state FROM stream_state.state WHERE query = 'pq';
RESET ROLE;
SET ROLE ss_alice;
SELECT stream_state.revoke_read('pq', 'ss_bob');
RESET ROLE;
SET ROLE ss_bob;
SELECT ss_test.error_of($$SELECT stream_state.window_count('pq', 1, '2026-11-24 10:30+00')$$);
RESET ROLE;

-- the catalog is not writable by others
SET ROLE ss_bob;
SELECT ss_test.error_of($$DELETE FROM stream_state.query_def$$);
RESET ROLE;

SET ROLE ss_alice;
SELECT stream_state.drop_query('pq');
RESET ROLE;
DROP TABLE priv_events;
DROP OWNED BY ss_alice, ss_bob, ss_carol;
DROP ROLE ss_alice, ss_bob, ss_carol;
