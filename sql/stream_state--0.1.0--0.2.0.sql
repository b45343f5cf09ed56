/* stream_state 0.1.0 -> 0.2.0: checkpoints and rebuild */

\echo Use "ALTER EXTENSION stream_state UPDATE TO '0.2.0'" to load this file. \quit

CREATE FUNCTION stream_state.checkpoint(target text DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'stream_state_checkpoint'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;

CREATE FUNCTION stream_state.export_checkpoint(id bigint, path text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'stream_state_export_checkpoint'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION stream_state.import_checkpoint(path text,
	OUT query text, OUT keys bigint, OUT entries bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'stream_state_import_checkpoint'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION stream_state.restore_checkpoint(id bigint,
	OUT query text, OUT action text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'stream_state_restore_checkpoint'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION stream_state.rebuild(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'stream_state_rebuild'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION stream_state._worker_status()
RETURNS text
AS 'MODULE_PATHNAME', 'stream_state_worker_status'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION stream_state._checkpoints(
	OUT id bigint, OUT target text, OUT location text, OUT created_at timestamptz,
	OUT applied_lsn pg_lsn, OUT restart_lsn pg_lsn, OUT queries integer,
	OUT entries bigint, OUT bytes bigint, OUT duration interval, OUT pause interval,
	OUT status text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'stream_state_checkpoints'
LANGUAGE C STRICT VOLATILE;

CREATE VIEW stream_state.checkpoints AS
SELECT id, target, location, created_at, applied_lsn, restart_lsn, queries,
	   entries, bytes, duration, pause, status
  FROM stream_state._checkpoints()
 ORDER BY id;

-- checkpoints cost I/O and name server paths: not for everyone
REVOKE EXECUTE ON FUNCTION stream_state.checkpoint(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION stream_state.export_checkpoint(bigint, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION stream_state.import_checkpoint(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION stream_state.restore_checkpoint(bigint) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION stream_state._checkpoints() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION stream_state._checkpoints() TO pg_monitor;
GRANT SELECT ON stream_state.checkpoints TO pg_monitor;

-- pg_dump: definitions are dumped with the data, by name (regclass,
-- regrole) so that they restore into another cluster; the triggers that
-- pg_dump creates after the data make the queries count the restored rows
-- once (sql_api.c, sstate_restore_trigger)
DROP VIEW stream_state.queries;
ALTER TABLE stream_state.query_def
	ALTER COLUMN source TYPE regclass USING source::regclass,
	ALTER COLUMN owner TYPE regrole USING owner::regrole,
	ALTER COLUMN readers DROP DEFAULT,
	ALTER COLUMN readers TYPE regrole[] USING readers::regrole[],
	ALTER COLUMN readers SET DEFAULT '{}';
SELECT pg_catalog.pg_extension_config_dump('stream_state.query_def', '');
SELECT pg_catalog.pg_extension_config_dump('stream_state.query_id_seq', '');

-- a query the worker lost shows as needing a rebuild
CREATE VIEW stream_state.queries AS
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
	   coalesce(s.keys, 0) AS keys,
	   coalesce(s.panes, 0) AS panes,
	   coalesce(s.state_bytes, 0) AS state_bytes,
	   s.watermark
  FROM stream_state.query_def d
  CROSS JOIN stream_state._worker_status() w(status)
  LEFT JOIN stream_state._query_stats() s ON s.id = d.id;
GRANT SELECT ON stream_state.queries TO PUBLIC;
