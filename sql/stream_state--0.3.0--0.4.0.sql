/* stream_state 0.3.0 -> 0.4.0: the rocksdb backend */

\echo Use "ALTER EXTENSION stream_state UPDATE TO '0.4.0'" to load this file. \quit

-- create_query gains backend => 'memory' | 'rocksdb' (NULL: stream_state.default_backend)
DROP FUNCTION stream_state.create_query(text, regclass, text, text, interval, interval, interval);
CREATE FUNCTION stream_state.create_query(
	name text,
	source regclass,
	key_column text,
	time_column text DEFAULT NULL,
	window_size interval DEFAULT NULL,
	slide interval DEFAULT NULL,
	lateness interval DEFAULT '0',
	backend text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'stream_state_create_query'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;

ALTER TABLE stream_state.query_def
	ADD CONSTRAINT query_def_backend_check CHECK (backend IN ('memory', 'rocksdb'));

CREATE FUNCTION stream_state._rocksdb_stats(
	OUT query_id integer, OUT estimated_entries bigint, OUT estimated_bytes bigint,
	OUT memtable_bytes bigint, OUT block_cache_bytes bigint,
	OUT block_cache_capacity bigint, OUT sst_bytes bigint,
	OUT pending_compaction_bytes bigint, OUT running_compactions bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'stream_state_rocksdb_stats'
LANGUAGE C STRICT VOLATILE;

-- The RocksDB of this database: one row for the database, one per
-- rocksdb-backend query (RocksDB's own estimates of entries and bytes).
CREATE VIEW stream_state.rocksdb_stats AS
SELECT CASE WHEN s.query_id IS NULL THEN 'database' ELSE 'query' END AS scope,
	   d.name AS query,
	   s.estimated_entries,
	   s.estimated_bytes,
	   s.memtable_bytes,
	   s.block_cache_bytes,
	   s.block_cache_capacity,
	   s.sst_bytes,
	   s.pending_compaction_bytes,
	   s.running_compactions
  FROM stream_state._rocksdb_stats() s
  LEFT JOIN stream_state.query_def d ON d.id = s.query_id;

GRANT SELECT ON stream_state.rocksdb_stats TO PUBLIC;

-- rocksdb queries: keys are not counted (NULL); panes and state_bytes are
-- RocksDB's estimates from its SST files
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
	   s.watermark
  FROM stream_state.query_def d
  CROSS JOIN stream_state._worker_status() w(status)
  LEFT JOIN stream_state._query_stats() s ON s.id = d.id;

-- move a live query's state to another backend, at its commit
CREATE FUNCTION stream_state.set_backend(name text, backend text)
RETURNS void
AS 'MODULE_PATHNAME', 'stream_state_set_backend'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
