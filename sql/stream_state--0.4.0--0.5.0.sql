/* stream_state 0.4.0 -> 0.5.0: continuous queries in SQL (their analysis); the read cache of rocksdb queries */

\echo Use "ALTER EXTENSION stream_state UPDATE TO '0.5.0'" to load this file. \quit

-- What create_query would make of a continuous query's text: one row per
-- output column, then one (position NULL) per GROUP BY key outside the
-- select list and per aggregate used only in HAVING.  Errors say what is not
-- supported, pointing into the text.
CREATE FUNCTION stream_state.describe_query(
	query text,
	OUT "position" integer,
	OUT column_name text,
	OUT column_type regtype,
	OUT kind text,
	OUT expression text,
	OUT aggregates text[],
	OUT state_types regtype[],
	OUT fast_path boolean)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'stream_state_describe_query'
LANGUAGE C STRICT STABLE;

-- Anyone may ask; the analysis needs SELECT on what the query reads.
GRANT EXECUTE ON FUNCTION stream_state.describe_query(text) TO PUBLIC;

-- rocksdb_stats gains the read cache of rocksdb-backend queries: keys and
-- bytes (per database and per query), hits and misses (per database)
DROP VIEW stream_state.rocksdb_stats;
DROP FUNCTION stream_state._rocksdb_stats();
CREATE FUNCTION stream_state._rocksdb_stats(
	OUT query_id integer, OUT estimated_entries bigint, OUT estimated_bytes bigint,
	OUT memtable_bytes bigint, OUT block_cache_bytes bigint,
	OUT block_cache_capacity bigint, OUT sst_bytes bigint,
	OUT pending_compaction_bytes bigint, OUT running_compactions bigint,
	OUT read_cache_keys bigint, OUT read_cache_bytes bigint,
	OUT read_cache_hits bigint, OUT read_cache_misses bigint)
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
	   s.running_compactions,
	   s.read_cache_keys,
	   s.read_cache_bytes,
	   s.read_cache_hits,
	   s.read_cache_misses
  FROM stream_state._rocksdb_stats() s
  LEFT JOIN stream_state.query_def d ON d.id = s.query_id;

GRANT SELECT ON stream_state.rocksdb_stats TO PUBLIC;

-- A continuous query evaluated over its whole source table through partial
-- aggregate states (serialised, deserialised and combined as the worker
-- combines them; in_worker: combined by a background process with no
-- database connection, as the worker is); its rows as text.  For tests:
-- they compare it with the query run by PostgreSQL.
CREATE FUNCTION stream_state._cq_evaluate(query text, in_worker boolean DEFAULT false)
RETURNS SETOF text
AS 'MODULE_PATHNAME', 'stream_state__cq_evaluate'
LANGUAGE C STRICT VOLATILE;
REVOKE ALL ON FUNCTION stream_state._cq_evaluate(text, boolean) FROM PUBLIC;

-- change a live query's lateness, at its commit, keeping its state
CREATE FUNCTION stream_state.alter_query(name text, lateness interval DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'stream_state_alter_query'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;

-- continuous queries in SQL: create_query(name, 'SELECT ...', time_column,
-- window_size, ...).  A second overload, with the source as text: a literal
-- resolves to it (PostgreSQL prefers text for unknown literals), and with a
-- key_column it names a table as before; a regclass value still finds the
-- first one.
ALTER TABLE stream_state.query_def
	ADD COLUMN query text,
	ADD COLUMN view text,
	ALTER COLUMN key_column DROP NOT NULL,
	ALTER COLUMN key_attnum DROP NOT NULL,
	ALTER COLUMN key_type DROP NOT NULL;

CREATE FUNCTION stream_state.create_query(
	name text,
	source text,
	key_column text DEFAULT NULL,
	time_column text DEFAULT NULL,
	window_size interval DEFAULT NULL,
	slide interval DEFAULT NULL,
	lateness interval DEFAULT '0',
	backend text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'stream_state_create_query'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;

-- the rows of a continuous query in SQL for the window that contains at
CREATE FUNCTION stream_state.window_result(name text, at timestamptz DEFAULT now())
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'stream_state_window_result'
LANGUAGE C STRICT STABLE;
