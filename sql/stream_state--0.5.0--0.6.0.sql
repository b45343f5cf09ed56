/* stream_state--0.5.0--0.6.0.sql: closed windows of continuous queries in SQL written into a table; retention; alter_query of both; session windows */

\echo Use "ALTER EXTENSION stream_state UPDATE TO '0.6.0'" to load this file. \quit

-- emit_to: the table a query's closed windows go to (its qualified name, as
-- create_query resolved it), and how far they have gone: every window
-- ending at or before emitted_until has been inserted, exactly once.  The
-- helper that inserts them advances emitted_until in the same transaction.
ALTER TABLE stream_state.query_def ADD COLUMN emit_to text;

-- retention: keys whose newest event is older than the watermark less this
-- are dropped from state (an event-time TTL); NULL: kept as windows need
ALTER TABLE stream_state.query_def ADD COLUMN retention interval;

-- session windows: a key's events less than session_gap apart are one
-- session; window_size and slide then hold the gap too
ALTER TABLE stream_state.query_def ADD COLUMN session_gap interval;

CREATE TABLE stream_state.emit_progress (
	query_id		integer PRIMARY KEY,
	emitted_until	timestamptz
);
REVOKE ALL ON stream_state.emit_progress FROM PUBLIC;
GRANT SELECT ON stream_state.emit_progress TO PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('stream_state.emit_progress', '');

DROP FUNCTION stream_state.create_query(text, text, text, text, interval, interval, interval, text);
CREATE FUNCTION stream_state.create_query(
	name text,
	source text,
	key_column text DEFAULT NULL,
	time_column text DEFAULT NULL,
	window_size interval DEFAULT NULL,
	slide interval DEFAULT NULL,
	lateness interval DEFAULT '0',
	backend text DEFAULT NULL,
	emit_to text DEFAULT NULL,
	retention interval DEFAULT NULL,
	session_gap interval DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'stream_state_create_query'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;

-- the sessions of a session query that end in (after, upto], with their
-- start and end first (what emit_to inserts); as window_result, for those
-- who may read the query
CREATE FUNCTION stream_state._session_result(name text, after timestamptz, upto timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'stream_state_session_result'
LANGUAGE C CALLED ON NULL INPUT STABLE;

-- alter_query changes lateness, retention and emit_to without losing state
-- (emit_to => '' stops emitting); NULL leaves one as it is
DROP FUNCTION stream_state.alter_query(text, interval);
CREATE FUNCTION stream_state.alter_query(
	name text,
	lateness interval DEFAULT NULL,
	retention interval DEFAULT NULL,
	emit_to text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'stream_state_alter_query'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;

CREATE OR REPLACE VIEW stream_state.queries AS
SELECT d.name,
	   d.source::regclass AS source,
	   d.key_column,
	   d.time_column,
	   d.window_size,
	   d.slide,
	   d.lateness,
	   d.backend,
	   d.owner::regrole AS owner,
	   CASE WHEN NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = d.source)
			THEN 'source dropped'
			WHEN s.status IS NOT NULL THEN s.status
			WHEN w.status = 'state lost' THEN 'needs rebuild'
			WHEN w.status = 'restoring' THEN 'restoring'
			ELSE 'starting' END AS status,
	   s.applied_lsn,
	   s.lag_bytes,
	   coalesce(s.events_applied, 0) AS events_applied,
	   coalesce(s.late_events, 0) AS late_events,
	   coalesce(s.skipped, 0) AS skipped,
	   CASE WHEN d.backend = 'rocksdb' THEN s.keys ELSE coalesce(s.keys, 0) END AS keys,
	   coalesce(s.panes, 0) AS panes,
	   coalesce(s.state_bytes, 0) AS state_bytes,
	   s.watermark,
	   d.emit_to,
	   e.emitted_until,
	   d.retention,
	   d.session_gap
  FROM stream_state.query_def d
  CROSS JOIN stream_state._worker_status() w(status)
  LEFT JOIN stream_state._query_stats() s ON s.id = d.id
  LEFT JOIN stream_state.emit_progress e ON e.query_id = d.id;
