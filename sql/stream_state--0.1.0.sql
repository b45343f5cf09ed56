/* sql/stream_state--0.1.0.sql */

\echo Use "CREATE EXTENSION stream_state" to load this file. \quit

--
-- Catalog of continuous queries.  Rows are written only by the C functions
-- create_query and drop_query (running as the extension owner for the write);
-- everyone may read definitions, as everyone may read pg_class.
--
CREATE SEQUENCE stream_state.query_id_seq;

CREATE TABLE stream_state.query_def (
	id			integer PRIMARY KEY DEFAULT nextval('stream_state.query_id_seq'),
	name		text NOT NULL UNIQUE,
	source		oid NOT NULL,
	key_column	name NOT NULL,
	key_attnum	smallint NOT NULL,
	key_type	regtype NOT NULL,
	time_column	name,
	time_attnum	smallint,
	time_type	regtype,
	window_size	interval NOT NULL,
	slide		interval NOT NULL,
	lateness	interval NOT NULL,
	backend		text NOT NULL DEFAULT 'memory',
	owner		oid NOT NULL,
	readers		oid[] NOT NULL DEFAULT '{}',
	created_at	timestamptz NOT NULL DEFAULT now()
);

REVOKE ALL ON stream_state.query_def FROM PUBLIC;
GRANT SELECT ON stream_state.query_def TO PUBLIC;
REVOKE ALL ON SEQUENCE stream_state.query_id_seq FROM PUBLIC;

-- The statement trigger installed on every source table.
CREATE FUNCTION stream_state._capture()
RETURNS trigger
AS 'MODULE_PATHNAME', 'stream_state_capture'
LANGUAGE C;

-- The AFTER TRUNCATE statement trigger installed beside it.
CREATE FUNCTION stream_state._truncate()
RETURNS trigger
AS 'MODULE_PATHNAME', 'stream_state_truncate'
LANGUAGE C;

CREATE FUNCTION stream_state.create_query(
	name text,
	source regclass,
	key_column text,
	time_column text DEFAULT NULL,
	window_size interval DEFAULT NULL,
	slide interval DEFAULT NULL,
	lateness interval DEFAULT '0')
RETURNS void
AS 'MODULE_PATHNAME', 'stream_state_create_query'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;

CREATE FUNCTION stream_state.drop_query(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'stream_state_drop_query'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION stream_state.grant_read(query text, role regrole)
RETURNS void
AS 'MODULE_PATHNAME', 'stream_state_grant_read'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION stream_state.revoke_read(query text, role regrole)
RETURNS void
AS 'MODULE_PATHNAME', 'stream_state_revoke_read'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION stream_state.window_count(name text, key anyelement,
										  at timestamptz DEFAULT now())
RETURNS bigint
AS 'MODULE_PATHNAME', 'stream_state_window_count'
LANGUAGE C STRICT STABLE;

CREATE FUNCTION stream_state.window_counts(name text, at timestamptz DEFAULT now(),
	OUT key text, OUT window_start timestamptz, OUT window_end timestamptz,
	OUT count bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'stream_state_window_counts'
LANGUAGE C STRICT STABLE;

-- Test and operations seam: wait until the worker of this database has
-- applied WAL up to lsn (default: everything committed so far).  Returns
-- false on timeout.
CREATE FUNCTION stream_state.wait_applied(lsn pg_lsn DEFAULT NULL,
										  timeout interval DEFAULT '30 seconds')
RETURNS boolean
AS 'MODULE_PATHNAME', 'stream_state_wait_applied'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;

CREATE FUNCTION stream_state._query_stats(
	OUT id integer, OUT status text, OUT applied_lsn pg_lsn, OUT lag_bytes bigint,
	OUT events_applied bigint, OUT late_events bigint, OUT skipped bigint,
	OUT keys bigint, OUT panes bigint, OUT state_bytes bigint,
	OUT watermark timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'stream_state_query_stats'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION stream_state._state(
	OUT query text, OUT key text, OUT pane_start timestamptz,
	OUT pane_end timestamptz, OUT count bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'stream_state_state'
LANGUAGE C STRICT VOLATILE;

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
			ELSE coalesce(s.status, 'starting') END AS status,
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
  LEFT JOIN stream_state._query_stats() s ON s.id = d.id;

CREATE VIEW stream_state.state AS
SELECT query, key, pane_start, pane_end, count
  FROM stream_state._state();

GRANT USAGE ON SCHEMA stream_state TO PUBLIC;
GRANT SELECT ON stream_state.queries, stream_state.state TO PUBLIC;
