/*-------------------------------------------------------------------------
 *
 * stream_state.h
 *	  Shared declarations of stream_state: shared memory layout, GUCs and
 *	  the calls that cross files.
 *
 * Shared memory holds one StreamStateShared: a registry of per-database
 * slots (StreamStateDb), each with its query slots (StreamStateQuery) right
 * behind the registry, and one DSA area created in place (sized by
 * stream_state.memory_limit and never grown beyond it) that holds the state
 * hash tables of every database.
 *
 * Locking: StreamStateShared->lock guards allocation of database slots.
 * StreamStateDb->lock is taken shared by every reader of that database's
 * state table and query slots, and exclusively by its worker when it creates,
 * destroys or replaces the table or defines/drops a query.  Counters in the
 * query slots are written by the worker only, under db->mutex.
 *
 * IDENTIFICATION
 *	  src/stream_state.h
 *-------------------------------------------------------------------------
 */
#ifndef STREAM_STATE_H
#define STREAM_STATE_H

#include "access/xlogdefs.h"
#include "port/atomics.h"
#include "postmaster/bgworker.h"
#include "storage/condition_variable.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/spin.h"
#include "utils/dsa.h"
#include "utils/timestamp.h"

#define STREAM_STATE_MSG_PREFIX		"stream_state"
#define STREAM_STATE_SLOT_PREFIX	"stream_state_"

/* the largest stream_state.checkpoint_retain */
#define STREAM_STATE_CKPT_RETAIN_MAX	1000

/* Microseconds between the Unix epoch and the PostgreSQL epoch. */
#define STREAM_STATE_UNIX_OFFSET_US \
	((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY)

/* Worker states, as shown in stream_state.queries.status */
typedef enum StreamStateWorkerState
{
	SSW_NONE = 0,				/* no worker */
	SSW_STARTING,				/* registered, not yet reading */
	SSW_RESTORING,				/* re-reading kept WAL up to where it stopped */
	SSW_RUNNING					/* caught up at least once */
} StreamStateWorkerState;

/* Query slot states */
typedef enum StreamStateQueryStatus
{
	SSQ_FREE = 0,
	SSQ_RUNNING,
	SSQ_PAUSED_MEMORY,			/* a commit could not be applied: memory full */
	SSQ_NEEDS_REBUILD,			/* its state is lost; a RESET (rebuild or
								 * TRUNCATE) brings it back */
	SSQ_PAUSED_DISK				/* rocksdb: RocksDB cannot be written; the
								 * worker retries, then it catches up as a
								 * paused query does */
} StreamStateQueryStatus;

/* Where a query's state lives (StreamStateQueryDef.backend) */
#define SSB_MEMORY		0
#define SSB_ROCKSDB		1

/*
 * What the worker knows of a query: everything it needs to apply deltas,
 * carried by the CREATE message (so the worker never reads catalogs).
 */
typedef struct StreamStateQueryDef
{
	int32		id;
	bool		processing_time;	/* event time = commit time */
	bool		key_classed;	/* key images start with the type's hash
								 * (see sstate_key_image) */
	uint8		backend;		/* SSB_* */
	bool		sql;			/* a query in SQL: values are partial states */
	bool		emit;			/* closed windows are written into a table
								 * (emit.c): panes are kept until then */
	bool		late;			/* late groups are written into a table
								 * (late_to, 0.7.0): kept until then */
	int64		pane_us;		/* gcd(window, slide) */
	int64		window_us;
	int64		slide_us;
	int64		lateness_us;
	int64		retention_us;	/* keys idle this long (event time) are
								 * dropped; 0: no retention (0.6.0) */
	int64		session_gap_us; /* session windows (0.6.0): a key's events
								 * less than this apart are one session;
								 * window, slide and pane are the gap too.
								 * 0: fixed windows */
	char		name[NAMEDATALEN];
} StreamStateQueryDef;

/* Length of the class prefix of a classed key's image (sstate_key_image) */
#define SSTATE_CLASS_PREFIX		((uint32) sizeof(uint32))

/* One query's slot in shared memory */
typedef struct StreamStateQuery
{
	StreamStateQueryDef def;
	StreamStateQueryStatus status;
	XLogRecPtr	paused_lsn;		/* commit it could not apply (paused) */
	XLogRecPtr	paused_restart; /* where its catch-up starts reading */
	XLogRecPtr	defined_lsn;	/* commit that defined it, when the worker
								 * applied it (not restored from a
								 * checkpoint) */
	XLogRecPtr	skip_below;		/* its state holds every commit before this
								 * (rocksdb: RocksDB's own applied position
								 * at start, when it is ahead) */
	int64		max_event_us;	/* Unix microseconds; INT64_MIN: none yet */
	int64		dead_below;		/* panes below this index are evicted */
	bool		emit_known;		/* emitted_end read from the catalog since
								 * the worker started (def.emit) */
	int64		emitted_end;	/* every window ending at or before this
								 * (Unix us) has been emitted; SSTATE_NO_TIME:
								 * none yet */
	bool		late_known;		/* late_written read from the catalog since
								 * the worker started (def.late) */
	XLogRecPtr	late_written;	/* late groups of commits at or before this
								 * are in the late_to table */
	int64		idle_below;		/* retention: keys whose newest pane is
								 * below this have been dropped; session
								 * windows: sessions closed by this (Unix
								 * us) have been evicted (worker) */
	uint64		events_applied;
	uint64		late_events;
	uint64		skipped;
	int64		keys;
	int64		panes;
	int64		bytes;

	/*
	 * Stable reads (sql_api.c): odd while the worker applies a commit to the
	 * query, bumped when it starts and when it is done.  A reader that sees
	 * it odd, or changed across its scan, reads again.  A reader that had to
	 * read again twice asks the worker, through reader_hold_until (a
	 * TimestampTz; 0: nobody), to wait that long before it starts the
	 * query's next commit.  Zero (even) when the slot is set up.
	 */
	pg_atomic_uint32 apply_seq;
	pg_atomic_uint64 reader_hold_until;
} StreamStateQuery;

/* One database's slot in shared memory */
typedef struct StreamStateDb
{
	Oid			dboid;			/* InvalidOid: slot free */
	StreamStateWorkerState worker_state;
	pid_t		worker_pid;
	Latch	   *worker_latch;
	pg_atomic_uint64 applied_lsn;	/* how far the worker has read */
	ConditionVariable applied_cv;
	LWLock		lock;
	slock_t		mutex;
	uint32		generation;		/* bumped whenever the table is replaced */
	dsa_pointer table;			/* InvalidDsaPointer: none */
	XLogRecPtr	last_ensure_lsn;	/* WAL insert position at the last
									 * create_query; under shared->lock */
	bool		state_lost;		/* restored without a usable checkpoint
								 * after the slot had moved: queries the
								 * worker does not know need a rebuild */

	bool		emit_done;		/* the last emit helper succeeded (emit.c);
								 * under mutex */

	/* checkpoints, under mutex */
	uint32		ckpt_requested; /* bumped by checkpoint() */
	uint32		ckpt_answered;	/* the request the worker answered last */
	bool		ckpt_running;
	int64		ckpt_result_id; /* of the last answered request; 0: failed */
	char		ckpt_result_error[256];
	int64		ckpt_restored_id;	/* the checkpoint the worker started from */
	bool		ckpt_request_table; /* the request asks for target "table" */
	int			ckpt_result_sqlstate;	/* of ckpt_result_error, when it has one */

	/*
	 * The checkpoint scanner processes (checkpoint.c), under mutex: up to
	 * SSTATE_SCANNERS, each copying the partitions whose number modulo
	 * scan_count is its own; scan_count is 0 until the worker has started
	 * them all.
	 */
#define SSTATE_SCANNERS 2
	int			scan_count;
	uint32		scan_epoch;
	char		scan_path[MAXPGPATH];
	pid_t		scan_pid[SSTATE_SCANNERS];
	bool		scan_done[SSTATE_SCANNERS];
	int32		scan_nblocks[SSTATE_SCANNERS];
	int64		scan_nkeys[SSTATE_SCANNERS];
	int64		scan_nentries[SSTATE_SCANNERS];
	int64		scan_bytes[SSTATE_SCANNERS];
	char		scan_error[256];	/* the first scanner's error */

	/* the checkpoint table helper process (checkpoint_table.c), under mutex */
	uint32		tbl_job;		/* number of the current job */
	int			tbl_kind;		/* SSCT_JOB_* */
	int64		tbl_id;			/* the checkpoint to copy or fetch */
	int64		tbl_bytes;		/* its size */
	char		tbl_path[MAXPGPATH];	/* file to copy from or fetch into */
	int			tbl_nkeep;
	int64		tbl_keep[STREAM_STATE_CKPT_RETAIN_MAX + 1]; /* ids whose rows stay */
	bool		tbl_done;
	int			tbl_result;		/* SSCT_* */
	int			tbl_sqlstate;
	char		tbl_error[256];

	/* reads of rocksdb queries (rocks_request.c) */
	pg_atomic_uint32 rdb_posted;	/* bumped by every request */
	bool		rdb_full;		/* rocksdb queries paused: disk full */
	int64		rdb_cache_keys; /* the read cache (rocks_cache.c), written */
	int64		rdb_cache_bytes;	/* by the worker alone */
	pg_atomic_uint64 rdb_cache_hits;	/* reads it answered */
	pg_atomic_uint64 rdb_cache_misses;	/* reads it could have, and did not */

	/* restore_checkpoint(), under mutex */
	int64		restore_requested;	/* checkpoint id asked for; 0: none */
	int64		restore_answered;	/* the id the worker answered last */
	int			restore_result; /* SSR_* */
} StreamStateDb;

/* How the worker answered a restore_checkpoint() */
#define SSR_REPLAYED	1		/* loaded, and the WAL after it re-applied */
#define SSR_REBUILD		2		/* loaded, but its WAL is gone: rebuild */
#define SSR_FAILED		3		/* it could not be loaded (see the log) */

typedef struct StreamStateShared
{
	LWLock	   *lock;			/* guards dbs[].dboid allocation */
	int			lwtranche;		/* tranche of per-db locks and store partitions */
	pid_t		launcher_pid;
	Latch	   *launcher_latch;
	pg_atomic_uint64 def_generation;	/* bumped at commit of DDL */
	pg_atomic_uint32 cache_shrinks; /* bumped when memory-backend state
									 * needs the read caches' room */
	int			max_databases;
	int			max_queries;
	Size		area_size;
	Size		area_offset;	/* from the start of this struct */
	StreamStateDb dbs[FLEXIBLE_ARRAY_MEMBER];
} StreamStateShared;

/* guc.c */
extern int	sstate_memory_limit_kb;
extern int	sstate_max_databases;
extern int	sstate_max_queries;
extern int	sstate_read_consistency;
extern int	sstate_read_timeout_ms;
extern int	sstate_max_delta_entries;
extern int	sstate_worker_naptime_ms;
extern int	sstate_checkpoint_interval_s;
extern int	sstate_checkpoint_retain;
extern int	sstate_max_kept_wal_mb;
extern int	sstate_checkpoint_target;
extern char *sstate_checkpoint_directory;
extern int	sstate_default_backend;
extern int	sstate_rocksdb_cache_size_kb;
extern int	sstate_rocksdb_read_cache_size_kb;
extern int	sstate_rocksdb_min_free_space_kb;
extern int	sstate_rocksdb_write_buffer_size_kb;
extern int	sstate_capture_memory_kb;
extern int	sstate_emit_batch;
extern void sstate_guc_define(void);

typedef enum
{
	SSTATE_CKPT_FILE,
	SSTATE_CKPT_TABLE
} StreamStateCheckpointTarget;

typedef enum
{
	SSTATE_READ_NONE,
	SSTATE_READ_SESSION,
	SSTATE_READ_COMMITTED
} StreamStateReadConsistency;

/* shmem.c */
extern StreamStateShared *sstate_shared;
extern void sstate_shmem_install_hooks(void);
extern void sstate_shmem_check(void);
extern StreamStateQuery *sstate_db_queries(StreamStateDb *db);
extern StreamStateDb *sstate_db_find(Oid dboid);
extern StreamStateDb *sstate_db_find_or_add(Oid dboid);
extern StreamStateDb *sstate_db_find_or_add_locked(Oid dboid);
extern dsa_area *sstate_area(void);

/* capture.c */
extern void sstate_capture_init(void);
extern XLogRecPtr sstate_capture_last_commit(void);
extern void sstate_capture_log_ddl(const char *data, Size len);
extern void sstate_capture_note_ddl(void);
extern void sstate_capture_reset(int32 qid);

/* worker.c */
extern void sstate_worker_register_launcher(void);
extern void sstate_bgworker_for_db(BackgroundWorker *bgw, Oid dboid,
								   const char *function, const char *what);
extern void sstate_launcher_wake(void);
extern void sstate_ensure_slot(Oid dboid);
extern void sstate_slot_name(Oid dboid, char *buf);
extern PGDLLEXPORT void stream_state_launcher_main(Datum arg);
extern PGDLLEXPORT void stream_state_worker_main(Datum arg);

/* sql_api.c */
extern void sstate_sql_api_init(void);
extern bool sstate_rebuild_query(int32 qid);
extern void sstate_wait_applied(XLogRecPtr lsn, int timeout_ms, bool error_on_timeout);
extern void sstate_wait_applied_now(int32 qid, int timeout_ms, bool error_on_timeout);

#endif							/* STREAM_STATE_H */
