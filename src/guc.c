/*-------------------------------------------------------------------------
 *
 * guc.c
 *	  Every configuration parameter of stream_state.
 *
 * PGC_POSTMASTER for what sizes shared memory, PGC_SIGHUP for what the
 * worker re-reads, PGC_USERSET for what a session chooses.
 *
 * IDENTIFICATION
 *	  src/guc.c
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/guc.h"

#include "stream_state.h"

int			sstate_memory_limit_kb = 128 * 1024;
int			sstate_max_databases = 8;
int			sstate_max_queries = 64;
int			sstate_read_consistency = SSTATE_READ_SESSION;
int			sstate_read_timeout_ms = 10000;
int			sstate_max_delta_entries = 524288;
int			sstate_worker_naptime_ms = 1000;
int			sstate_checkpoint_interval_s = 300;
int			sstate_max_kept_wal_mb = -1;
int			sstate_checkpoint_retain = 3;
int			sstate_checkpoint_target = SSTATE_CKPT_FILE;
char	   *sstate_checkpoint_directory = NULL;
int			sstate_default_backend = SSB_MEMORY;
int			sstate_rocksdb_cache_size_kb = 64 * 1024;
int			sstate_rocksdb_read_cache_size_kb = 32 * 1024;
int			sstate_rocksdb_min_free_space_kb = 256 * 1024;
int			sstate_rocksdb_write_buffer_size_kb = 32 * 1024;
int			sstate_capture_memory_kb = 64 * 1024;
int			sstate_emit_batch = 256;

static const struct config_enum_entry backend_options[] = {
	{"memory", SSB_MEMORY, false},
	{"rocksdb", SSB_ROCKSDB, false},
	{NULL, 0, false}
};

static const struct config_enum_entry checkpoint_target_options[] = {
	{"file", SSTATE_CKPT_FILE, false},
	{"table", SSTATE_CKPT_TABLE, false},
	{NULL, 0, false}
};

static const struct config_enum_entry read_consistency_options[] = {
	{"none", SSTATE_READ_NONE, false},
	{"session", SSTATE_READ_SESSION, false},
	{"committed", SSTATE_READ_COMMITTED, false},
	{NULL, 0, false}
};

void
sstate_guc_define(void)
{
	DefineCustomEnumVariable("stream_state.read_consistency",
							 "What a read of state waits for: none, this session's commits, or every commit before the read.",
							 NULL,
							 &sstate_read_consistency,
							 SSTATE_READ_SESSION,
							 read_consistency_options,
							 PGC_USERSET, 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("stream_state.read_timeout",
							"How long a read waits for the worker before it fails.",
							NULL,
							&sstate_read_timeout_ms,
							10000, 1, INT_MAX,
							PGC_USERSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("stream_state.max_delta_entries",
							"Number of (query, key, pane) entries a transaction collects before it writes them to WAL early.",
							NULL,
							&sstate_max_delta_entries,
							524288, 100, INT_MAX,
							PGC_USERSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("stream_state.worker_naptime",
							"How long an idle worker sleeps before it looks for new WAL without being woken.",
							NULL,
							&sstate_worker_naptime_ms,
							1000, 10, 60000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("stream_state.checkpoint_interval",
							"Time between periodic checkpoints of each database's state; 0 turns them off.",
							"A checkpoint is taken only if the worker has read WAL since the last one.",
							&sstate_checkpoint_interval_s,
							300, 0, 86400 * 7,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("stream_state.max_kept_wal",
							"WAL a paused query may hold back before it is given up and needs a rebuild; -1: no limit.",
							"A query paused because memory is full keeps the WAL since it paused; past this, its state is dropped and the WAL released.",
							&sstate_max_kept_wal_mb,
							-1, -1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("stream_state.checkpoint_retain",
							"Number of valid checkpoints kept per database; older ones are deleted.",
							NULL,
							&sstate_checkpoint_retain,
							3, 1, STREAM_STATE_CKPT_RETAIN_MAX,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomEnumVariable("stream_state.checkpoint_target",
							 "Where checkpoints go unless checkpoint() says otherwise.",
							 NULL,
							 &sstate_checkpoint_target,
							 SSTATE_CKPT_FILE,
							 checkpoint_target_options,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("stream_state.checkpoint_directory",
							   "Directory for checkpoint files (a subdirectory per database); empty: stream_state/ under the data directory.",
							   NULL,
							   &sstate_checkpoint_directory,
							   "",
							   PGC_SIGHUP, 0,
							   NULL, NULL, NULL);

	DefineCustomEnumVariable("stream_state.default_backend",
							 "Backend of a continuous query whose create_query gives none.",
							 NULL,
							 &sstate_default_backend,
							 SSB_MEMORY,
							 backend_options,
							 PGC_USERSET, 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("stream_state.emit_batch",
							"Closed windows of a query with emit_to inserted per transaction.",
							"A backlog of closed windows commits, and frees their state, this many at a time.",
							&sstate_emit_batch,
							256, 1, 100000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("stream_state.capture_memory",
							"Memory one statement may use per continuous query in SQL for its groups' partial states, and the groups carried between statements together.",
							"Past it, the rows of groups not in memory go to temporary files (by hash, or sorted when the states are large) and are folded in later passes; carried groups past it are written at a statement's end.",
							&sstate_capture_memory_kb,
							64 * 1024, 64, MAX_KILOBYTES,
							PGC_USERSET, GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("stream_state.rocksdb_cache_size",
							"Block cache of each database's RocksDB (rocksdb-backend queries), shared by its queries.",
							"A reload resizes the block cache of every open RocksDB.",
							&sstate_rocksdb_cache_size_kb,
							64 * 1024, 1024, INT_MAX / 2,
							PGC_SIGHUP, GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("stream_state.rocksdb_read_cache_size",
							"Shared memory per database for copies of recently read keys of rocksdb-backend queries; 0: no cache.",
							"A cached key's window_count is answered without asking the worker.  Taken from stream_state.memory_limit, and given back when memory-backend state needs it.",
							&sstate_rocksdb_read_cache_size_kb,
							32 * 1024, 0, INT_MAX / 2,
							PGC_SIGHUP, GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("stream_state.rocksdb_min_free_space",
							"Free space below which the worker stops writing to RocksDB and pauses rocksdb-backend queries; 0: no check.",
							"Checked after every batch written to RocksDB; the queries catch up once the space is back.  It must leave room for RocksDB's flushes and compactions.",
							&sstate_rocksdb_min_free_space_kb,
							256 * 1024, 0, INT_MAX / 2,
							PGC_SIGHUP, GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("stream_state.rocksdb_write_buffer_size",
							"Size of one RocksDB memtable of each database; at most two exist at once.",
							"Read when the worker opens the database's RocksDB (at its start).",
							&sstate_rocksdb_write_buffer_size_kb,
							32 * 1024, 256, INT_MAX / 2,
							PGC_SIGHUP, GUC_UNIT_KB,
							NULL, NULL, NULL);

	/*
	 * What sizes shared memory exists only when the library is preloaded:
	 * PostgreSQL refuses to create PGC_POSTMASTER variables later.
	 */
	if (process_shared_preload_libraries_in_progress)
	{
		DefineCustomIntVariable("stream_state.memory_limit",
								"Shared memory for the state of memory-backend queries, all databases together.",
								"When it is full, the worker pauses the query that needs more and keeps its WAL.",
								&sstate_memory_limit_kb,
								128 * 1024, 1024, INT_MAX / 2,
								PGC_POSTMASTER, GUC_UNIT_KB,
								NULL, NULL, NULL);

		DefineCustomIntVariable("stream_state.max_databases",
								"Maximum number of databases that can use stream_state at once.",
								NULL,
								&sstate_max_databases,
								8, 1, 1024,
								PGC_POSTMASTER, 0,
								NULL, NULL, NULL);

		DefineCustomIntVariable("stream_state.max_queries",
								"Maximum number of continuous queries per database.",
								NULL,
								&sstate_max_queries,
								64, 1, 10000,
								PGC_POSTMASTER, 0,
								NULL, NULL, NULL);
	}

	MarkGUCPrefixReserved("stream_state");
}
