/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The launcher and the per-database workers.
 *
 * Lifecycle.  The launcher is a static background worker.  Each database
 * that uses stream_state owns a physical replication slot named
 * stream_state_<database oid>, created by the first create_query; the slot
 * is the persistent registry of databases.  The launcher starts one dynamic
 * worker per such slot (BGW_NEVER_RESTART) and starts it again, a second
 * later, whenever it has stopped: after its own ERROR (FATAL in a worker), a
 * pg_terminate_backend, or a crash-restart of the whole server, which also
 * restarts the launcher.
 *
 * A worker connects to no database (so DROP DATABASE never waits for it),
 * acquires its slot, builds an empty state table, and reads the WAL from the
 * slot's restart position: first "restoring" up to the WAL end it saw at
 * start, then "running".  It exits for good, dropping its slot, when it
 * reads DROP DATABASE of its database, or applies DROP EXTENSION with no
 * create_query after it (StreamStateDb->last_ensure_lsn, compared under
 * StreamStateShared->lock, which create_query holds while it creates the
 * slot).
 *
 * SIGTERM ends the loop; SIGHUP re-reads the configuration.  Cleanup of the
 * shared slot is registered with before_shmem_exit before the slot is
 * claimed.
 *
 * IDENTIFICATION
 *	  src/worker.c
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "access/xlog_internal.h"
#include "access/xlogreader.h"
#include "access/xlogutils.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "replication/slot.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/wait_event.h"

#include "checkpoint.h"
#include "emit.h"
#include "rocks.h"
#include "store.h"
#include "wal_reader.h"

#define WORKER_BATCH		10000	/* records between progress reports */
#define RESTART_DELAY_MS	1000
#define CKPT_WRITE_BUDGET	(8 * 1024 * 1024)	/* bytes between WAL batches */

typedef struct LauncherEntry
{
	Oid			dboid;
	BackgroundWorkerHandle *handle;
	TimestampTz last_start;
} LauncherEntry;

static StreamStateDb *worker_db = NULL;
static StreamStateCkptWriter *worker_ckpt = NULL;

static void launcher_exit(int code, Datum arg);
static void worker_exit(int code, Datum arg);
static void launcher_start_worker(LauncherEntry *entry);
static void worker_release_database(bool drop_slot);
static void publish_applied(XLogRecPtr lsn);
static void checkpoint_answer(uint32 request, int64 id, const char *error, int sqlstate);
static void checkpoint_finish(uint32 request, int64 id, XLogRecPtr slot_target,
							  const char *error, int sqlstate);
static void slot_advance(XLogRecPtr target);

void
sstate_slot_name(Oid dboid, char *buf)
{
	snprintf(buf, NAMEDATALEN, STREAM_STATE_SLOT_PREFIX "%u", dboid);
}

/*
 * Describe a short-lived process of database dboid that runs function (of
 * this library) once and notifies the caller when it ends: the worker, the
 * checkpoint scanner, the checkpoint table helper.  what names it in
 * pg_stat_activity ("stream_state <what>") and in the log.
 */
void
sstate_bgworker_for_db(BackgroundWorker *bgw, Oid dboid, const char *function,
					   const char *what)
{
	memset(bgw, 0, sizeof(*bgw));
	bgw->bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw->bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw->bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(bgw->bgw_library_name, BGW_MAXLEN, "stream_state");
	snprintf(bgw->bgw_function_name, BGW_MAXLEN, "%s", function);
	snprintf(bgw->bgw_name, BGW_MAXLEN, "stream_state %s for database %u", what, dboid);
	snprintf(bgw->bgw_type, BGW_MAXLEN, "stream_state %s", what);
	bgw->bgw_main_arg = ObjectIdGetDatum(dboid);
	bgw->bgw_notify_pid = MyProcPid;
}

void
sstate_worker_register_launcher(void)
{
	BackgroundWorker bgw;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = 1;
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "stream_state");
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "stream_state_launcher_main");
	snprintf(bgw.bgw_name, BGW_MAXLEN, "stream_state launcher");
	snprintf(bgw.bgw_type, BGW_MAXLEN, "stream_state launcher");
	RegisterBackgroundWorker(&bgw);
}

void
sstate_launcher_wake(void)
{
	Latch	   *latch = sstate_shared->launcher_latch;

	if (latch != NULL)
		SetLatch(latch);
}

/*
 * Make sure this database has its slot and its registry entry, then wake the
 * launcher.  Called by create_query, before it writes anything to the WAL,
 * so the slot's restart position precedes the query's first message.
 */
void
sstate_ensure_slot(Oid dboid)
{
	char		name[NAMEDATALEN];
	StreamStateDb *db;

	CheckSlotRequirements();
	sstate_slot_name(dboid, name);

	LWLockAcquire(sstate_shared->lock, LW_EXCLUSIVE);
	db = sstate_db_find_or_add_locked(dboid);
	if (db == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("too many databases use stream_state"),
				 errdetail("stream_state.max_databases is %d.", sstate_shared->max_databases),
				 errhint("Increase stream_state.max_databases and restart the server.")));
	db->last_ensure_lsn = GetXLogInsertRecPtr();
	if (SearchNamedReplicationSlot(name, true) == NULL)
	{
		ReplicationSlotCreate(name, false, RS_PERSISTENT, false);
		ReplicationSlotReserveWal();
		ReplicationSlotMarkDirty();
		ReplicationSlotSave();
		ReplicationSlotsComputeRequiredLSN();
		ReplicationSlotRelease();
	}
	LWLockRelease(sstate_shared->lock);
	sstate_launcher_wake();
}

/* ---------------------------------------------------------------------
 * Launcher
 * ---------------------------------------------------------------------
 */

static void
launcher_exit(int code, Datum arg)
{
	if (sstate_shared != NULL && sstate_shared->launcher_pid == MyProcPid)
	{
		sstate_shared->launcher_latch = NULL;
		sstate_shared->launcher_pid = 0;
	}
}

static void
launcher_start_worker(LauncherEntry *entry)
{
	BackgroundWorker bgw;

	sstate_bgworker_for_db(&bgw, entry->dboid, "stream_state_worker_main", "worker");

	entry->last_start = GetCurrentTimestamp();
	if (entry->handle != NULL)
	{
		pfree(entry->handle);
		entry->handle = NULL;
	}
	if (!RegisterDynamicBackgroundWorker(&bgw, &entry->handle))
	{
		entry->handle = NULL;
		ereport(LOG,
				(errmsg("stream_state: could not start the worker for database %u", entry->dboid),
				 errhint("Increase max_worker_processes.")));
	}
}

void
stream_state_launcher_main(Datum arg)
{
	LauncherEntry *entries;
	int			nentries = 0;
	int			maxentries;

	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	before_shmem_exit(launcher_exit, (Datum) 0);
	sstate_shared->launcher_pid = MyProcPid;
	sstate_shared->launcher_latch = MyLatch;
	pgstat_report_activity(STATE_IDLE, NULL);

	maxentries = max_replication_slots > 0 ? max_replication_slots : 1;
	entries = MemoryContextAllocZero(TopMemoryContext,
									 sizeof(LauncherEntry) * maxentries);

	while (!ShutdownRequestPending)
	{
		Oid			dbs[1024];
		int			ndbs = 0;
		int			i;
		long		wait_ms = 5000;

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		/* every database with a slot of ours needs a worker */
		LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
		for (i = 0; i < max_replication_slots && ndbs < lengthof(dbs); i++)
		{
			ReplicationSlot *s = &ReplicationSlotCtl->replication_slots[i];
			const char *name = NameStr(s->data.name);

			if (s->in_use &&
				strncmp(name, STREAM_STATE_SLOT_PREFIX, strlen(STREAM_STATE_SLOT_PREFIX)) == 0)
				dbs[ndbs++] = (Oid) strtoul(name + strlen(STREAM_STATE_SLOT_PREFIX), NULL, 10);
		}
		LWLockRelease(ReplicationSlotControlLock);

		for (i = 0; i < ndbs; i++)
		{
			LauncherEntry *entry = NULL;
			int			j;
			pid_t		pid;

			for (j = 0; j < nentries; j++)
				if (entries[j].dboid == dbs[i])
					entry = &entries[j];
			if (entry == NULL)
			{
				if (nentries == maxentries)
					continue;
				entry = &entries[nentries++];
				entry->dboid = dbs[i];
				entry->handle = NULL;
				entry->last_start = 0;
			}
			if (entry->handle != NULL &&
				GetBackgroundWorkerPid(entry->handle, &pid) != BGWH_STOPPED)
				continue;		/* running or starting */
			if (!TimestampDifferenceExceeds(entry->last_start, GetCurrentTimestamp(),
											RESTART_DELAY_MS))
			{
				wait_ms = Min(wait_ms, RESTART_DELAY_MS);
				continue;
			}
			launcher_start_worker(entry);
		}

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 wait_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		/* absorbs ProcSignalBarriers too, which DROP DATABASE waits for */
		CHECK_FOR_INTERRUPTS();
	}
	proc_exit(0);
}

/* ---------------------------------------------------------------------
 * Worker
 * ---------------------------------------------------------------------
 */

static void
worker_exit(int code, Datum arg)
{
	StreamStateDb *db = worker_db;

	if (worker_ckpt != NULL)
	{
		sstate_ckpt_abandon(worker_ckpt);
		worker_ckpt = NULL;
	}
	sstate_ckpt_table_abandon();
	sstate_rdb_close();
	if (db == NULL)
		return;
	LWLockReleaseAll();
	SpinLockAcquire(&db->mutex);
	db->ckpt_running = false;
	SpinLockRelease(&db->mutex);
	LWLockAcquire(&db->lock, LW_EXCLUSIVE);
	if (db->worker_pid == MyProcPid)
	{
		db->worker_pid = 0;
		db->worker_latch = NULL;
		db->worker_state = SSW_NONE;
	}
	LWLockRelease(&db->lock);
	ConditionVariableBroadcast(&db->applied_cv);
	worker_db = NULL;
}

static void
publish_applied(XLogRecPtr lsn)
{
	StreamStateDb *db = worker_db;

	if (lsn > pg_atomic_read_u64(&db->applied_lsn))
		pg_atomic_write_u64(&db->applied_lsn, lsn);
	ConditionVariableBroadcast(&db->applied_cv);
}

/*
 * The database is gone, or its extension is: free the state, the registry
 * entry and (if asked) the slot.  Caller holds sstate_shared->lock.
 */
static void
worker_release_database(bool drop_slot)
{
	StreamStateDb *db = worker_db;

	if (worker_ckpt != NULL)
	{
		sstate_ckpt_abandon(worker_ckpt);
		worker_ckpt = NULL;
	}
	sstate_ckpt_table_abandon();
	sstate_ckpt_wait_scanner(db);
	sstate_rdb_remove(db->dboid);
	sstate_ckpt_remove_all(db->dboid);

	LWLockAcquire(&db->lock, LW_EXCLUSIVE);
	if (DsaPointerIsValid(db->table))
	{
		StreamStateStore *t = sstate_store_attach(sstate_area(), db->table);

		sstate_store_destroy(t);
		db->table = InvalidDsaPointer;
		db->generation++;
	}
	memset(sstate_db_queries(db), 0, sizeof(StreamStateQuery) * sstate_shared->max_queries);
	db->worker_pid = 0;
	db->worker_latch = NULL;
	db->worker_state = SSW_NONE;
	db->state_lost = false;
	db->ckpt_restored_id = 0;
	db->dboid = InvalidOid;
	LWLockRelease(&db->lock);
	ConditionVariableBroadcast(&db->applied_cv);
	worker_db = NULL;

	if (drop_slot && MyReplicationSlot != NULL)
	{
		char		name[NAMEDATALEN];

		strlcpy(name, NameStr(MyReplicationSlot->data.name), NAMEDATALEN);
		ReplicationSlotRelease();
		ReplicationSlotDrop(name, true);
	}
}

/*
 * Tell the backend that asked for checkpoint number request how it went:
 * id 0 and error: it failed; id and error: it was asked for the table and
 * is kept as a file (error, with SQLSTATE sqlstate, says why).
 */
static void
checkpoint_answer(uint32 request, int64 id, const char *error, int sqlstate)
{
	StreamStateDb *db = worker_db;

	SpinLockAcquire(&db->mutex);
	db->ckpt_running = false;
	if (request != 0)
	{
		db->ckpt_answered = request;
		db->ckpt_result_id = id;
		db->ckpt_result_sqlstate = sqlstate;
		strlcpy(db->ckpt_result_error, error ? error : "", sizeof(db->ckpt_result_error));
	}
	SpinLockRelease(&db->mutex);
	ConditionVariableBroadcast(&db->applied_cv);
}

/*
 * Checkpoint id is durable (as a file, or its rows committed): move the
 * slot, apply retention, answer.  error: a copy into the table failed and
 * the checkpoint is kept as a file.
 */
static void
checkpoint_finish(uint32 request, int64 id, XLogRecPtr slot_target,
				  const char *error, int sqlstate)
{
	if (error != NULL)
		ereport(LOG,
				(errmsg("stream_state: could not copy checkpoint %lld of database %u into table %s: %s",
						(long long) id, worker_db->dboid, STREAM_STATE_CKPT_TABLE_NAME, error),
				 errdetail("The checkpoint is kept as a file.")));
	slot_advance(slot_target);
	sstate_ckpt_retain(slot_target);
	{
		List	   *keep = NIL;
		ListCell   *lc;
		XLogRecPtr	durable = InvalidXLogRecPtr;

		/* RocksDB checkpoints of deleted ones, and state only they needed */
		foreach(lc, sstate_ckpt_worker_entries())
		{
			StreamStateCkptInfo *ci = lfirst(lc);

			if (strcmp(ci->status, "deleted") != 0)
				keep = lappend(keep, &ci->id);
			if (ci->id == id)
				durable = ci->applied;
		}
		sstate_rdb_prune_checkpoints(worker_db->dboid, keep);
		list_free(keep);
		sstate_rdb_drop_strays(worker_db, durable);
	}
	ereport(DEBUG1,
			(errmsg("stream_state: checkpoint %lld of database %u written; WAL is kept from %X/%X",
					(long long) id, worker_db->dboid, LSN_FORMAT_ARGS(slot_target))));
	checkpoint_answer(request, id, error, sqlstate);
	pgstat_report_activity(STATE_RUNNING, NULL);
}

/*
 * Move the slot's restart position forward to target (never back) and make
 * that durable, so the WAL before it can be removed.
 */
static void
slot_advance(XLogRecPtr target)
{
	XLogRecPtr	current;

	SpinLockAcquire(&MyReplicationSlot->mutex);
	current = MyReplicationSlot->data.restart_lsn;
	if (target > current)
		MyReplicationSlot->data.restart_lsn = target;
	SpinLockRelease(&MyReplicationSlot->mutex);
	if (target <= current)
		return;
	ReplicationSlotMarkDirty();
	ReplicationSlotSave();
	ReplicationSlotsComputeRequiredLSN();
}

/*
 * Before a checkpoint at applied position next: RocksDB holds every
 * rocksdb query's state and meta as of next, durably (so the slot may move
 * past what it held before).
 */
static bool
rdb_checkpoint_begin(StreamStateDb *db, XLogRecPtr next, XLogRecPtr restart, char **error)
{
	if (sstate_rdb_broken())
	{
		/* the slot must keep the WAL of the paused rocksdb queries */
		*error = pstrdup("the RocksDB of this database cannot be written; its queries are paused");
		return false;
	}
	if (!sstate_rdb_is_open())
		return true;
	if (!sstate_rdb_write(db, next, restart, error) || !sstate_rdb_flush(error))
	{
		sstate_rdb_fail(db, next, *error);
		return false;
	}
	return true;
}

void
stream_state_worker_main(Datum arg)
{
	Oid			dboid = DatumGetObjectId(arg);
	char		slotname[NAMEDATALEN];
	StreamStateDb *db;
	StreamStateStore *table;
	XLogReaderState *reader;
	ReadLocalXLogPageNoWaitPrivate priv;
	XLogRecPtr	start;
	XLogRecPtr	next = InvalidXLogRecPtr;
	XLogRecPtr	restore_target;
	MemoryContext loopcxt;
	bool		dropped_extension = false;
	TimestampTz last_catch_up = 0;
	bool		reported_paused = false;
	StreamStateCkptRestored restored;
	long		restore_ms;
	bool		wal_gone = false;
	TimestampTz last_ckpt;
	XLogRecPtr	last_ckpt_applied;
	uint32		ckpt_request = 0;
	XLogRecPtr	ckpt_restart = InvalidXLogRecPtr;
	bool		ckpt_to_table = false;
	int64		ckpt_id = 0;
	XLogRecPtr	ckpt_slot_target = InvalidXLogRecPtr;
	bool		rdb_from_copy = false;
	TimestampTz last_sizes = 0;
	TimestampTz last_rdb_retry = 0;

	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	sstate_slot_name(dboid, slotname);
	if (SearchNamedReplicationSlot(slotname, true) == NULL)
		proc_exit(0);			/* dropped meanwhile: nothing to do */

	db = sstate_db_find_or_add(dboid);
	if (db == NULL)
		ereport(FATAL,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("too many databases use stream_state"),
				 errhint("Increase stream_state.max_databases and restart the server.")));

	before_shmem_exit(worker_exit, (Datum) 0);
	worker_db = db;

	ReplicationSlotAcquire(slotname, true);
	SpinLockAcquire(&MyReplicationSlot->mutex);
	start = MyReplicationSlot->data.restart_lsn;
	SpinLockRelease(&MyReplicationSlot->mutex);
	if (XLogRecPtrIsInvalid(start))
	{
		/*
		 * The slot was invalidated (max_slot_wal_keep_size): the WAL it kept
		 * is gone.  Keep WAL from here on and go on, with every query whose
		 * commits may be in the lost WAL marked as needing a rebuild.
		 */
		ReplicationSlotReserveWal();
		ReplicationSlotMarkDirty();
		ReplicationSlotSave();
		ReplicationSlotsComputeRequiredLSN();
		SpinLockAcquire(&MyReplicationSlot->mutex);
		start = MyReplicationSlot->data.restart_lsn;
		SpinLockRelease(&MyReplicationSlot->mutex);
		wal_gone = true;
		ereport(WARNING,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("stream_state: replication slot \"%s\" lost its WAL; it keeps WAL from %X/%X again",
						slotname, LSN_FORMAT_ARGS(start)),
				 errdetail("The server removed WAL the slot still needed (max_slot_wal_keep_size)."),
				 errhint("Queries shown as \"needs rebuild\" in stream_state.queries must be rebuilt with stream_state.rebuild(name).")));
	}

	/* a fresh table, filled from the newest usable checkpoint */
	sstate_ckpt_wait_scanner(db);
	LWLockAcquire(&db->lock, LW_EXCLUSIVE);
	if (DsaPointerIsValid(db->table))
		sstate_store_destroy(sstate_store_attach(sstate_area(), db->table));
	memset(sstate_db_queries(db), 0, sizeof(StreamStateQuery) * sstate_shared->max_queries);
	table = sstate_store_create(sstate_area());
	db->table = sstate_store_handle(table);
	db->generation++;
	db->worker_pid = MyProcPid;
	db->worker_latch = MyLatch;
	db->worker_state = SSW_RESTORING;
	db->state_lost = false;
	db->ckpt_restored_id = 0;
	pg_atomic_write_u64(&db->applied_lsn, 0);
	LWLockRelease(&db->lock);
	SpinLockAcquire(&db->mutex);
	db->ckpt_running = false;
	SpinLockRelease(&db->mutex);
	sstate_rdb_requests_reset(db);

	sstate_apply_init(db, table);
	loopcxt = AllocSetContextCreate(TopMemoryContext, "stream_state worker loop",
									ALLOCSET_DEFAULT_SIZES);

	reader = sstate_wal_reader_create(&priv);
	restore_target = GetFlushRecPtr(NULL);

	pgstat_report_activity(STATE_RUNNING, "restoring state from a checkpoint");
	sstate_ckpt_worker_init(dboid);
	sstate_ckpt_table_worker_init(dboid);
	{
		TimestampTz t0 = GetCurrentTimestamp();
		int64		asked;

		SpinLockAcquire(&db->mutex);
		asked = db->restore_requested;
		SpinLockRelease(&db->mutex);
		restored.id = 0;
		if (asked != 0)
		{
			int			result;

			/* restore_checkpoint(asked): that one, or the newest if it fails */
			sstate_ckpt_restore(db, table, start, asked, &restored);
			result = restored.id == 0 ? SSR_FAILED :
				restored.partial ? SSR_REBUILD : SSR_REPLAYED;
			if (restored.partial)
			{
				/* commits between it and the WAL kept are gone: rebuild */
				StreamStateQuery *qs = sstate_db_queries(db);

				LWLockAcquire(&db->lock, LW_EXCLUSIVE);
				for (int i = 0; i < sstate_shared->max_queries; i++)
					if (qs[i].status != SSQ_FREE)
						qs[i].status = SSQ_NEEDS_REBUILD;
				db->state_lost = true;
				LWLockRelease(&db->lock);
				for (int i = 0; i < sstate_shared->max_queries; i++)
					if (qs[i].status != SSQ_FREE)
						sstate_store_drop_query(table, &qs[i]);
				restored.applied = start;
				restored.restart = start;
			}
			else if (restored.id == asked)
				rdb_from_copy = true;
			SpinLockAcquire(&db->mutex);
			db->restore_requested = 0;
			db->restore_answered = asked;
			db->restore_result = result;
			SpinLockRelease(&db->mutex);
			ConditionVariableBroadcast(&db->applied_cv);
		}
		if (restored.id == 0)
			sstate_ckpt_restore(db, table, start, 0, &restored);
		if (restored.id == 0 && wal_gone)
			restored.wal_lost = true;
		sstate_rdb_restore(db, restored.id, restored.id > 0 ? restored.applied : InvalidXLogRecPtr,
						   rdb_from_copy, restored.partial);
		restore_ms = TimestampDifferenceMilliseconds(t0, GetCurrentTimestamp());
	}
	if (restored.id > 0)
	{
		start = restored.restart;
		sstate_apply_skip_below(restored.applied);
		dropped_extension = (restored.flags & SSC_FLAG_EXTENSION_DROPPED) != 0;
		db->ckpt_restored_id = restored.id;
		ereport(LOG,
				(errmsg("stream_state: restored checkpoint %lld of database %u at %X/%X; re-reading WAL from %X/%X up to %X/%X",
						(long long) restored.id, dboid, LSN_FORMAT_ARGS(restored.applied),
						LSN_FORMAT_ARGS(start), LSN_FORMAT_ARGS(restore_target)),
				 errdetail("Loading the checkpoint took %ld ms.", restore_ms)));
	}
	else if (restored.wal_lost)
	{
		db->state_lost = true;
		ereport(WARNING,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("stream_state: no usable checkpoint of database %u, and its WAL before %X/%X is gone",
						dboid, LSN_FORMAT_ARGS(start)),
				 errdetail("Continuous queries created before that position have lost their state."),
				 errhint("Run SELECT stream_state.rebuild(name) for each query that stream_state.queries shows as \"needs rebuild\".")));
	}
	else
		ereport(LOG,
				(errmsg("stream_state: rebuilding state of database %u from WAL at %X/%X up to %X/%X",
						dboid, LSN_FORMAT_ARGS(start), LSN_FORMAT_ARGS(restore_target))));
	pgstat_report_activity(STATE_RUNNING, "restoring state from WAL");
	last_ckpt = GetCurrentTimestamp();
	last_ckpt_applied = restored.id > 0 ? restored.applied : InvalidXLogRecPtr;

	while (!ShutdownRequestPending)
	{
		XLogRecPtr	flush_before;
		XLogRecPtr	applied;
		bool		end_of_wal = false;
		int			n = 0;

		/* reads first: a wake-up is often a reader's */
		sstate_rdb_serve(db);

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			sstate_rdb_reload();
		}

		flush_before = GetFlushRecPtr(NULL);
		priv.end_of_wal = false;

		if (XLogRecPtrIsInvalid(next))
		{
			/* the first record at or after the slot's position */
			next = XLogFindNextRecord(reader, start);
			if (XLogRecPtrIsInvalid(next))
				end_of_wal = true;
			else
				XLogBeginRead(reader, next);
		}

		while (!end_of_wal && n < WORKER_BATCH && !ShutdownRequestPending)
		{
			XLogRecord *record;
			char	   *errormsg = NULL;
			StreamStateApplyResult res;
			MemoryContext old;

			record = XLogReadRecord(reader, &errormsg);
			if (record == NULL)
			{
				if (priv.end_of_wal)
				{
					end_of_wal = true;
					break;
				}
				ereport(ERROR,
						(errcode(ERRCODE_DATA_CORRUPTED),
						 errmsg("stream_state: could not read WAL at %X/%X: %s",
								LSN_FORMAT_ARGS(reader->EndRecPtr),
								errormsg ? errormsg : "unknown error")));
			}

			old = MemoryContextSwitchTo(loopcxt);
			res = sstate_apply_record(reader);
			MemoryContextSwitchTo(old);
			MemoryContextReset(loopcxt);

			if (res == SSA_DROP_DATABASE)
			{
				ereport(LOG,
						(errmsg("stream_state: database %u was dropped; its worker exits and its slot is dropped",
								dboid)));
				LWLockAcquire(sstate_shared->lock, LW_EXCLUSIVE);
				worker_release_database(true);
				LWLockRelease(sstate_shared->lock);
				proc_exit(0);
			}
			if (res == SSA_DROP_EXTENSION)
				dropped_extension = true;
			else if (res == SSA_CREATED)
				dropped_extension = false;
			next = reader->EndRecPtr;
			if (++n % 1000 == 0)
			{
				CHECK_FOR_INTERRUPTS();
				sstate_rdb_serve(db);
			}
		}

		/* this round's rocksdb changes, with their position, before it is published */
		if (sstate_rdb_dirty())
		{
			char	   *error = NULL;

			XLogRecPtr	restart = sstate_apply_restart_lsn(next);

			if (!sstate_rdb_write(db, next, restart, &error))
				sstate_rdb_fail(db, next, error);
			else
				sstate_rdb_check_space(db, next, restart);
		}

		if (end_of_wal)
		{
			/* everything flushed before this round has been read */
			applied = Max(next, flush_before);
			if (!XLogRecPtrIsInvalid(next))
				XLogBeginRead(reader, next);
		}
		else
			applied = next;

		if (!XLogRecPtrIsInvalid(applied))
			publish_applied(applied);
		sstate_rdb_serve(db);
		if (sstate_rdb_is_open() &&
			TimestampDifferenceExceeds(last_sizes, GetCurrentTimestamp(), 10000))
		{
			last_sizes = GetCurrentTimestamp();
			sstate_rdb_update_sizes(db);
		}

		/* RocksDB failed: try it again, at most once a second */
		if (sstate_rdb_broken() &&
			TimestampDifferenceExceeds(last_rdb_retry, GetCurrentTimestamp(), 1000))
		{
			last_rdb_retry = GetCurrentTimestamp();
			(void) sstate_rdb_retry(db);
		}

		/* paused queries: try to catch up, at most once a second */
		if (sstate_apply_any_paused() && !XLogRecPtrIsInvalid(next) &&
			TimestampDifferenceExceeds(last_catch_up, GetCurrentTimestamp(), 1000))
		{
			last_catch_up = GetCurrentTimestamp();
			if (sstate_apply_catch_up(next) > 0)
			{
				/* a rocksdb query that caught up: its commits, written */
				char	   *error = NULL;

				if (sstate_rdb_dirty() &&
					!sstate_rdb_write(db, next, sstate_apply_restart_lsn(next), &error))
					sstate_rdb_fail(db, next, error);
				ConditionVariableBroadcast(&db->applied_cv);
			}
			else if (sstate_rdb_dirty())
			{
				char	   *error = NULL;

				if (!sstate_rdb_write(db, next, sstate_apply_restart_lsn(next), &error))
					sstate_rdb_fail(db, next, error);
			}
		}

		if (db->worker_state == SSW_RESTORING && applied >= restore_target)
		{
			db->worker_state = SSW_RUNNING;
			ConditionVariableBroadcast(&db->applied_cv);
			ereport(LOG,
					(errmsg("stream_state: state of database %u restored up to %X/%X",
							dboid, LSN_FORMAT_ARGS(applied))));
			pgstat_report_activity(STATE_RUNNING, NULL);
		}

		/*
		 * Checkpoints: asked for, or due.  The state is copied at a record
		 * boundary (next), then written a few megabytes per round.
		 */
		if (worker_ckpt == NULL && !sstate_ckpt_table_busy() &&
			db->worker_state == SSW_RUNNING && !XLogRecPtrIsInvalid(next))
		{
			uint32		requested;
			bool		asked;
			bool		due;
			bool		to_table;
			char	   *rdb_error = NULL;

			SpinLockAcquire(&db->mutex);
			requested = db->ckpt_requested;
			asked = (requested != db->ckpt_answered);
			to_table = db->ckpt_request_table;
			SpinLockRelease(&db->mutex);
			due = sstate_checkpoint_interval_s > 0 && next > last_ckpt_applied &&
				TimestampDifferenceExceeds(last_ckpt, GetCurrentTimestamp(),
										   sstate_checkpoint_interval_s * 1000);
			/* paused queries that hold back too much WAL: give up, release */
			if (sstate_apply_any_paused() && sstate_apply_limit_kept_wal(next) > 0)
				due = true;
			if (asked || due)
			{
				ckpt_request = asked ? requested : 0;
				ckpt_to_table = asked ? to_table :
					(sstate_checkpoint_target == SSTATE_CKPT_TABLE);
				ckpt_restart = sstate_apply_restart_lsn(next);
				SpinLockAcquire(&db->mutex);
				db->ckpt_running = true;
				SpinLockRelease(&db->mutex);
				pgstat_report_activity(STATE_RUNNING, "writing a checkpoint");
				last_ckpt_applied = next;
				if (!rdb_checkpoint_begin(db, next, ckpt_restart, &rdb_error))
					worker_ckpt = NULL;
				else
				{
					worker_ckpt = sstate_ckpt_begin(db, table, next, ckpt_restart,
													dropped_extension ? SSC_FLAG_EXTENSION_DROPPED : 0);
					if (sstate_rdb_is_open() &&
						!sstate_rdb_checkpoint(dboid, sstate_ckpt_writer_id(worker_ckpt), &rdb_error))
					{
						sstate_ckpt_abandon(worker_ckpt);
						worker_ckpt = NULL;
					}
				}
				if (worker_ckpt == NULL)
				{
					ereport(LOG,
							(errmsg("stream_state: could not write a checkpoint of database %u: %s",
									dboid, rdb_error)));
					last_ckpt_applied = InvalidXLogRecPtr;	/* try again when due */
					checkpoint_answer(ckpt_request, 0, rdb_error, 0);
					pgstat_report_activity(STATE_RUNNING, NULL);
				}
			}
		}
		if (worker_ckpt != NULL)
		{
			int64		id;
			char	   *error;

			if (sstate_ckpt_continue(worker_ckpt, CKPT_WRITE_BUDGET, &id, &error))
			{
				worker_ckpt = NULL;
				last_ckpt = GetCurrentTimestamp();
				reported_paused = false;
				if (id > 0)
				{
					int			sqlstate;

					/*
					 * The file is durable.  For the table target a helper
					 * copies it into rows first; the slot moves only once
					 * that transaction is committed and flushed (or the
					 * copy failed and the checkpoint stays a file).
					 */
					ckpt_id = id;
					ckpt_slot_target = sstate_ckpt_slot_target(ckpt_restart);
					if (sstate_ckpt_table_begin(db, id, ckpt_to_table, ckpt_slot_target,
												&error, &sqlstate))
						pgstat_report_activity(STATE_RUNNING,
											   ckpt_to_table ? "copying a checkpoint into its table" :
											   "deleting old checkpoints from their table");
					else
						checkpoint_finish(ckpt_request, id, ckpt_slot_target, error, sqlstate);
				}
				else
				{
					ereport(LOG,
							(errmsg("stream_state: could not write a checkpoint of database %u: %s",
									dboid, error)));
					last_ckpt_applied = InvalidXLogRecPtr;	/* try again when due */
					checkpoint_answer(ckpt_request, id, error, 0);
					pgstat_report_activity(STATE_RUNNING, NULL);
				}
			}
		}
		if (worker_ckpt == NULL && sstate_ckpt_table_busy())
		{
			char	   *error;
			int			sqlstate;

			if (sstate_ckpt_table_poll(&error, &sqlstate))
			{
				/*
				 * The helper's own WAL (the rows) must not make the next
				 * periodic checkpoint due, or an idle database would copy
				 * one every interval forever; commits during the copy wait
				 * for the next WAL to be checkpointed (they are in the
				 * WAL the slot keeps).
				 */
				last_ckpt_applied = Max(last_ckpt_applied, GetXLogInsertRecPtr());
				checkpoint_finish(ckpt_request, ckpt_id, ckpt_slot_target, error, sqlstate);
			}
		}

		/* closed windows of queries with emit_to */
		sstate_emit_poll(db);

		/*
		 * The extension was dropped and nothing was created since: once the
		 * WAL is read to its end, with no transaction of ours open and no
		 * create_query since (in this server's lifetime), drop the slot and
		 * exit.  Deciding only at the end keeps a replay of an old DROP
		 * EXTENSION from killing a newer incarnation.
		 */
		if (end_of_wal && dropped_extension && sstate_apply_open_xacts() == 0)
		{
			LWLockAcquire(sstate_shared->lock, LW_EXCLUSIVE);
			if (XLogRecPtrIsInvalid(db->last_ensure_lsn) || db->last_ensure_lsn < next)
			{
				ereport(LOG,
						(errmsg("stream_state: extension dropped in database %u; its worker exits and its slot is dropped",
								dboid)));
				worker_release_database(true);
				LWLockRelease(sstate_shared->lock);
				proc_exit(0);
			}
			LWLockRelease(sstate_shared->lock);
		}

		if (end_of_wal)
		{
			bool		paused = sstate_apply_any_paused();

			/* report only changes: this runs after every commit */
			if (paused != reported_paused)
			{
				pgstat_report_activity(STATE_RUNNING,
									   paused ? "a query is paused: memory full" : NULL);
				reported_paused = paused;
			}
			/* writing a checkpoint: go on at once; its scanner wakes us */
			if (worker_ckpt == NULL || sstate_ckpt_scanning(worker_ckpt))
			{
				long		nap = paused ? Min(sstate_worker_naptime_ms, 1000) :
					sstate_worker_naptime_ms;

				if (sstate_checkpoint_interval_s > 0)
					nap = Min(nap, sstate_checkpoint_interval_s * 1000L);
				if (worker_ckpt != NULL || sstate_ckpt_table_busy() || sstate_emit_busy())
					nap = Min(nap, 100);
				(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
								 nap, PG_WAIT_EXTENSION);
				ResetLatch(MyLatch);
			}
		}
		/* absorbs ProcSignalBarriers too, which DROP DATABASE waits for */
		CHECK_FOR_INTERRUPTS();
	}
	proc_exit(0);
}
