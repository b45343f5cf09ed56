/* stream_state--0.6.0--0.7.0.sql: late events of continuous queries in SQL written into a table (late_to) */

\echo Use "ALTER EXTENSION stream_state UPDATE TO '0.7.0'" to load this file. \quit

-- late_to: the table the late groups of a query go to (its qualified name,
-- as create_query resolved it), and how far they have gone: the groups of
-- every commit at or before written_until have been inserted, exactly once.
-- The helper that inserts them advances written_until in the same
-- transaction.  pg_dump leaves late_progress out: its positions are this
-- cluster's WAL, meaningless in another, and a restored query starts with
-- no late group pending (the helper makes its row again).
ALTER TABLE stream_state.query_def ADD COLUMN late_to text;

CREATE TABLE stream_state.late_progress (
	query_id		integer PRIMARY KEY,
	written_until	pg_lsn
);
REVOKE ALL ON stream_state.late_progress FROM PUBLIC;
GRANT SELECT ON stream_state.late_progress TO PUBLIC;

DROP FUNCTION stream_state.create_query(text, text, text, text, interval, interval, interval, text,
										text, interval, interval);
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
	session_gap interval DEFAULT NULL,
	late_to text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'stream_state_create_query'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;

-- alter_query changes late_to too (late_to => '' stops writing late groups)
DROP FUNCTION stream_state.alter_query(text, interval, interval, text);
CREATE FUNCTION stream_state.alter_query(
	name text,
	lateness interval DEFAULT NULL,
	retention interval DEFAULT NULL,
	emit_to text DEFAULT NULL,
	late_to text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'stream_state_alter_query'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;

-- the late groups of a query with late_to committed in (after, upto] and
-- still in state, with their commit's LSN and time and their events' time
-- range first (what late_to receives); as window_result, for those who may
-- read the query
CREATE FUNCTION stream_state._late_result(name text, after pg_lsn, upto pg_lsn)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'stream_state_late_result'
LANGUAGE C CALLED ON NULL INPUT STABLE;

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
	   d.session_gap,
	   d.late_to,
	   l.written_until AS late_written_until
  FROM stream_state.query_def d
  CROSS JOIN stream_state._worker_status() w(status)
  LEFT JOIN stream_state._query_stats() s ON s.id = d.id
  LEFT JOIN stream_state.emit_progress e ON e.query_id = d.id
  LEFT JOIN stream_state.late_progress l ON l.query_id = d.id;
