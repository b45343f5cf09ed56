/* stream_state 0.2.0 -> 0.3.0: checkpoint target "table" */

\echo Use "ALTER EXTENSION stream_state UPDATE TO '0.3.0'" to load this file. \quit

-- Checkpoints with target 'table': each one is its checkpoint file, byte
-- for byte, in chunks of 1 MB numbered from 0 (checkpoint_table.c).  Written
-- and deleted only by the worker's helper process.  Not an extension
-- configuration table, so pg_dump leaves it out: a checkpoint is tied to
-- this cluster's system identifier and WAL positions.
CREATE TABLE stream_state.checkpoint_data (
	checkpoint_id bigint NOT NULL,
	chunk integer NOT NULL,
	data bytea NOT NULL,
	PRIMARY KEY (checkpoint_id, chunk)
);
-- the chunks are dense varints: compressing them costs time for little
ALTER TABLE stream_state.checkpoint_data ALTER COLUMN data SET STORAGE EXTERNAL;
COMMENT ON TABLE stream_state.checkpoint_data IS
	'stream_state checkpoints with target ''table'': see stream_state.checkpoints';

-- like the checkpoints view: superusers and pg_monitor only
REVOKE ALL ON TABLE stream_state.checkpoint_data FROM PUBLIC;
GRANT SELECT ON TABLE stream_state.checkpoint_data TO pg_monitor;
