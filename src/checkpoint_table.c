/*-------------------------------------------------------------------------
 *
 * checkpoint_table.c
 *	  Checkpoint target "table": checkpoints kept as rows of
 *	  stream_state.checkpoint_data, copied there and back by a short-lived
 *	  helper process connected to the database.
 *
 * The table is (checkpoint_id bigint, chunk int, data bytea), primary key
 * (checkpoint_id, chunk).  A checkpoint's rows are its file, byte for byte,
 * cut into chunks of STREAM_STATE_CKPT_CHUNK bytes (the last one shorter),
 * numbered from 0.  The file format (checkpoint.c) is not changed: its
 * blocks keep their CRC-32C inside the rows.
 *
 * Design decisions, and why:
 *
 * - The worker still writes the file first (checkpoint.c, unchanged), and
 *   a helper copies it into rows.  The worker connects to no database, so
 *   that DROP DATABASE never waits for it; only a short-lived process can
 *   hold a connection.  Writing the file first keeps the snapshot path
 *   (scanner, copy-on-write) identical for both targets, and gives the
 *   helper a finished, checked byte stream to copy.
 *
 * - One transaction per copy, with synchronous_commit on: the new rows and
 *   the deletion of the rows retention drops commit together, and the
 *   commit record is flushed before the helper reports success.  Only then
 *   does the worker record the checkpoint as target "table", remove its
 *   file and move the slot.  A crash before that point leaves a valid file
 *   checkpoint (the history still says "file"; rows the transaction may
 *   have committed are removed by the next copy); a crash after the history
 *   is saved but before the file is gone leaves a file nobody lists, which
 *   the next worker removes (sstate_ckpt_table_worker_init).
 *
 * - When the copy fails (no background worker slot, the table missing
 *   because the extension is older than 0.3.0 in that database, a lock
 *   timeout, any ERROR), the checkpoint is kept as a file: it is durable
 *   already, so the slot may move and the WAL kept stays bounded even while
 *   copies keep failing.  Recording it as failed instead would stop the
 *   slot and fill the disk for as long as the table is unusable.  The log
 *   says why, and checkpoint(target => 'table') raises an ERROR with the
 *   helper's SQLSTATE, naming the checkpoint it kept as a file.
 *
 * - Rows are deleted by keeping, not by listing: every copy (and, after a
 *   file checkpoint, a drop-only job when retention drops a table
 *   checkpoint) deletes every row whose checkpoint_id is not one retention
 *   keeps.  Rows left by a lost history or an earlier failed step go with
 *   the next job.  A table checkpoint is marked deleted in the history only
 *   after the transaction that deleted its rows committed, so the history
 *   never lists a valid checkpoint whose rows are gone.
 *
 * - Restore reads rows back into a temporary file under base/pgsql_tmp
 *   (removed by the server at restart if a crash leaves it) and loads that
 *   with the code that loads files, so every check (CRCs, END counts,
 *   version, system identifier) is the same for both targets.  Checks only
 *   rows can fail are made while reading: a gap in the chunk numbers, fewer
 *   or more chunks than the checkpoint's size implies, or another total
 *   size.  Those, and data errors (XX001/XX002) from reading the rows, mark
 *   the checkpoint damaged; a helper that cannot run or connect (no worker
 *   slot, database being dropped, extension not installed, lock timeout)
 *   makes it "not used" for this start only, without marking it damaged.
 *
 * - The helper never waits long: lock_timeout is set before it connects
 *   (so it also bounds the wait for the database lock that DROP DATABASE
 *   holds), and the worker, while it waits for a fetch at start, keeps
 *   absorbing interrupts (DROP DATABASE's ProcSignalBarrier), gives up on a
 *   helper that does not start within HELPER_START_TIMEOUT_MS and on
 *   SIGTERM.  A copy is polled from the worker's loop, so the worker goes
 *   on applying WAL while it runs.
 *
 * - Rows are read and written as the table's owner with search_path set
 *   to pg_catalog, so a backend that may call export_checkpoint or
 *   restore_checkpoint reads table checkpoints as it reads file ones,
 *   without SELECT on the table (which only pg_monitor has).
 *
 * IDENTIFICATION
 *	  src/checkpoint_table.c
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/stat.h>
#include <unistd.h>

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "common/file_perm.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "checkpoint.h"

#define HELPER_START_TIMEOUT_MS		10000
#define HELPER_LOCK_TIMEOUT			"10s"

/* the job the worker is waiting for */
static StreamStateDb *job_db = NULL;
static BackgroundWorkerHandle *job_handle = NULL;
static uint32 job_number = 0;
static int	job_kind = 0;
static int64 job_id = 0;
static List *job_keep = NIL;	/* int64 ids, in TopMemoryContext */
static TimestampTz job_started = 0;

static Oid	table_oid(void);
static bool start_helper(StreamStateDb *db, int kind, int64 id, int64 bytes,
						 const char *path, List *keep, char **error, int *sqlstate);
static void job_succeeded(void);
static void table_open_as_owner(Oid relid, Oid *save_userid, int *save_sec,
								int *save_nestlevel);
static void table_close_as_owner(Oid save_userid, int save_sec, int save_nestlevel);
static void helper_copy(int kind, int64 id, int64 bytes, const char *path,
						const int64 *keep, int nkeep);

/* ---------------------------------------------------------------------
 * Both sides
 * ---------------------------------------------------------------------
 */

/* stream_state.checkpoint_data, or InvalidOid if it does not exist. */
static Oid
table_oid(void)
{
	Oid			nsp = get_namespace_oid("stream_state", true);

	if (!OidIsValid(nsp))
		return InvalidOid;
	return get_relname_relid("checkpoint_data", nsp);
}

/*
 * A temporary file for checkpoint id read back from the table, in
 * base/pgsql_tmp, named so that the server removes it at restart.
 */
void
sstate_ckpt_table_temp_path(int64 id, char *buf)
{
	(void) MakePGDirectory("base/" PG_TEMP_FILES_DIR);
	snprintf(buf, MAXPGPATH, "base/%s/%s%d.stream_state_%lld",
			 PG_TEMP_FILES_DIR, PG_TEMP_FILE_PREFIX, MyProcPid, (long long) id);
}

/*
 * Run SPI as the table's owner with search_path pinned: no object of the
 * caller's can be picked up, and no privilege on the table is needed.
 */
static void
table_open_as_owner(Oid relid, Oid *save_userid, int *save_sec, int *save_nestlevel)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);

	GetUserIdAndSecContext(save_userid, save_sec);
	SetUserIdAndSecContext(owner, *save_sec | SECURITY_LOCAL_USERID_CHANGE);
	*save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

static void
table_close_as_owner(Oid save_userid, int save_sec, int save_nestlevel)
{
	SPI_finish();
	AtEOXact_GUC(false, save_nestlevel);
	SetUserIdAndSecContext(save_userid, save_sec);
}

/*
 * Write the rows of checkpoint id (of bytes bytes; 0: unknown) to the file
 * path, created or truncated, fsynced when durable.  Returns SSCT_FETCHED,
 * or SSCT_DAMAGED / SSCT_UNAVAILABLE with *why.  Caller is in a
 * transaction with an active snapshot; errors are raised.  The file is
 * left in place in every case: the caller removes it.
 */
int
sstate_ckpt_table_read(int64 id, int64 bytes, const char *path, bool durable, char **why)
{
	Oid			relid = table_oid();
	Oid			save_userid;
	int			save_sec;
	int			save_nestlevel;
	Oid			argtypes[1] = {INT8OID};
	Datum		args[1];
	Portal		portal;
	int			fd;
	int64		expected = bytes > 0 ? (bytes + STREAM_STATE_CKPT_CHUNK - 1) / STREAM_STATE_CKPT_CHUNK : -1;
	int32		next = 0;
	int64		total = 0;
	int			result = SSCT_FETCHED;

	if (!OidIsValid(relid))
	{
		*why = psprintf("table %s does not exist in this database", STREAM_STATE_CKPT_TABLE_NAME);
		return SSCT_UNAVAILABLE;
	}
	fd = OpenTransientFile(path, O_CREAT | O_TRUNC | O_WRONLY | PG_BINARY);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create file \"%s\": %m", path)));

	table_open_as_owner(relid, &save_userid, &save_sec, &save_nestlevel);
	args[0] = Int64GetDatum(id);
	portal = SPI_cursor_open_with_args(NULL,
									   "SELECT chunk, data FROM stream_state.checkpoint_data"
									   " WHERE checkpoint_id OPERATOR(pg_catalog.=) $1"
									   " ORDER BY chunk",
									   1, argtypes, args, NULL, true, 0);
	for (;;)
	{
		bool		isnull;
		int32		chunk;
		Datum		d;
		bytea	   *data;

		SPI_cursor_fetch(portal, true, 1);
		if (SPI_processed == 0)
			break;
		chunk = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		if (chunk != next)
		{
			if (chunk > next)
				*why = psprintf("chunk %d of its %lld chunks is missing from table %s",
								next, (long long) Max(expected, (int64) chunk + 1),
								STREAM_STATE_CKPT_TABLE_NAME);
			else
				*why = psprintf("table %s holds chunk %d of it", STREAM_STATE_CKPT_TABLE_NAME, chunk);
			result = SSCT_DAMAGED;
			break;
		}
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
		if (isnull)
		{
			*why = psprintf("chunk %d of it in table %s is NULL", chunk, STREAM_STATE_CKPT_TABLE_NAME);
			result = SSCT_DAMAGED;
			break;
		}
		data = DatumGetByteaPP(d);
		errno = 0;
		if (write(fd, VARDATA_ANY(data), VARSIZE_ANY_EXHDR(data)) != VARSIZE_ANY_EXHDR(data))
		{
			if (errno == 0)
				errno = ENOSPC;
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not write file \"%s\": %m", path)));
		}
		total += VARSIZE_ANY_EXHDR(data);
		if ((Pointer) data != DatumGetPointer(d))
			pfree(data);		/* detoasted: up to a chunk each */
		next++;
		SPI_freetuptable(SPI_tuptable);
		CHECK_FOR_INTERRUPTS();
	}
	SPI_cursor_close(portal);
	table_close_as_owner(save_userid, save_sec, save_nestlevel);

	if (result == SSCT_FETCHED)
	{
		if (next == 0 && expected < 0)
		{
			*why = psprintf("it has no rows in table %s", STREAM_STATE_CKPT_TABLE_NAME);
			result = SSCT_DAMAGED;
		}
		else if (expected >= 0 && next < expected)
		{
			*why = psprintf("chunk %d of its %lld chunks is missing from table %s",
							next, (long long) expected, STREAM_STATE_CKPT_TABLE_NAME);
			result = SSCT_DAMAGED;
		}
		else if (expected >= 0 && next > expected)
		{
			*why = psprintf("it has %d chunks in table %s where its size of %lld bytes makes %lld",
							next, STREAM_STATE_CKPT_TABLE_NAME, (long long) bytes,
							(long long) expected);
			result = SSCT_DAMAGED;
		}
		else if (bytes > 0 && total != bytes)
		{
			*why = psprintf("its chunks in table %s hold %lld bytes; the checkpoint has %lld",
							STREAM_STATE_CKPT_TABLE_NAME, (long long) total, (long long) bytes);
			result = SSCT_DAMAGED;
		}
	}
	if (durable && pg_fsync(fd) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not fsync file \"%s\": %m", path)));
	if (CloseTransientFile(fd) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not close file \"%s\": %m", path)));
	return result;
}

/* ---------------------------------------------------------------------
 * The worker's side
 * ---------------------------------------------------------------------
 */

/*
 * Hand a job to a new helper process.  False, with *error and *sqlstate,
 * if no process could be registered.
 */
static bool
start_helper(StreamStateDb *db, int kind, int64 id, int64 bytes, const char *path,
			 List *keep, char **error, int *sqlstate)
{
	BackgroundWorker bgw;
	uint32		job;
	ListCell   *lc;
	int			n = 0;

	Assert(list_length(keep) <= STREAM_STATE_CKPT_RETAIN_MAX + 1);
	SpinLockAcquire(&db->mutex);
	job = ++db->tbl_job;
	if (job == 0)
		job = ++db->tbl_job;
	db->tbl_kind = kind;
	db->tbl_id = id;
	db->tbl_bytes = bytes;
	strlcpy(db->tbl_path, path ? path : "", MAXPGPATH);
	foreach(lc, keep)
		db->tbl_keep[n++] = *(int64 *) lfirst(lc);
	db->tbl_nkeep = n;
	db->tbl_done = false;
	db->tbl_result = 0;
	db->tbl_sqlstate = 0;
	db->tbl_error[0] = '\0';
	SpinLockRelease(&db->mutex);

	sstate_bgworker_for_db(&bgw, db->dboid, "stream_state_ckpt_table_main",
						   "checkpoint table helper");
	memcpy(bgw.bgw_extra, &job, sizeof(job));

	if (job_handle != NULL)
	{
		pfree(job_handle);
		job_handle = NULL;
	}
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
		bool		ok = RegisterDynamicBackgroundWorker(&bgw, &job_handle);

		MemoryContextSwitchTo(old);
		if (!ok)
		{
			job_handle = NULL;
			*error = MemoryContextStrdup(TopMemoryContext,
										 "could not start a helper process: no background worker slot is free (max_worker_processes)");
			*sqlstate = ERRCODE_CONFIGURATION_LIMIT_EXCEEDED;
			return false;
		}
	}
	job_db = db;
	job_number = job;
	job_kind = kind;
	job_id = id;
	job_started = GetCurrentTimestamp();
	return true;
}

/*
 * After checkpoint id is durable as a file, with the slot about to move to
 * slot_restart: start a helper that copies it into the table (copy), or,
 * for a file checkpoint, one that deletes the rows of table checkpoints
 * retention drops, if there are any.  Returns true if a job runs (poll it
 * with sstate_ckpt_table_poll); false if there is nothing to do, or, with
 * *error and *sqlstate set, if the copy could not start (the checkpoint
 * stays a file).
 */
bool
sstate_ckpt_table_begin(StreamStateDb *db, int64 id, bool copy, XLogRecPtr slot_restart,
						char **error, int *sqlstate)
{
	List	   *kept = sstate_ckpt_retained(slot_restart);
	List	   *entries = sstate_ckpt_worker_entries();
	ListCell   *lc;
	bool		drops = false;
	StreamStateCkptInfo *self = NULL;
	MemoryContext old;

	*error = NULL;
	*sqlstate = 0;
	list_free_deep(job_keep);
	job_keep = NIL;
	old = MemoryContextSwitchTo(TopMemoryContext);
	foreach(lc, entries)
	{
		StreamStateCkptInfo *ci = lfirst(lc);

		if (ci->id == id)
			self = ci;
		if (list_member_ptr(kept, ci))
		{
			if (strcmp(ci->target, "table") == 0 || (copy && ci->id == id))
			{
				int64	   *p = palloc(sizeof(int64));

				*p = ci->id;
				job_keep = lappend(job_keep, p);
			}
		}
		else if (strcmp(ci->target, "table") == 0 && strcmp(ci->status, "deleted") != 0)
			drops = true;
	}
	MemoryContextSwitchTo(old);
	list_free(kept);

	if (copy && self != NULL)
		return start_helper(db, SSCT_JOB_COPY, id, self->bytes, self->location,
							job_keep, error, sqlstate);
	if (!drops)
		return false;
	if (start_helper(db, SSCT_JOB_DROP, 0, 0, NULL, job_keep, error, sqlstate))
		return true;
	ereport(LOG,
			(errmsg("stream_state: could not delete the rows of old checkpoints of database %u: %s",
					db->dboid, *error)));
	*error = NULL;
	*sqlstate = 0;
	return false;
}

/* Is a job of the helper running? */
bool
sstate_ckpt_table_busy(void)
{
	return job_db != NULL;
}

/*
 * The job succeeded: the copied checkpoint now lives in the table (its
 * file goes), and table checkpoints whose rows the job deleted are marked
 * deleted.
 */
static void
job_succeeded(void)
{
	ListCell   *lc;
	char		oldpath[MAXPGPATH] = "";

	foreach(lc, sstate_ckpt_worker_entries())
	{
		StreamStateCkptInfo *ci = lfirst(lc);
		bool		keep = false;
		ListCell   *k;

		if (job_kind == SSCT_JOB_COPY && ci->id == job_id && strcmp(ci->target, "file") == 0)
		{
			strlcpy(oldpath, ci->location, MAXPGPATH);
			strlcpy(ci->target, "table", sizeof(ci->target));
			strlcpy(ci->location, STREAM_STATE_CKPT_TABLE_NAME, MAXPGPATH);
			/* the duration runs until the rows are committed */
			ci->duration_ms = TimestampDifferenceMilliseconds(ci->created_at,
															  GetCurrentTimestamp());
			continue;
		}
		if (strcmp(ci->target, "table") != 0 || strcmp(ci->status, "deleted") == 0)
			continue;
		foreach(k, job_keep)
			if (*(int64 *) lfirst(k) == ci->id)
				keep = true;
		if (!keep)
			strlcpy(ci->status, "deleted", sizeof(ci->status));
	}
	sstate_ckpt_history_save();
	if (oldpath[0] != '\0' && unlink(oldpath) != 0 && errno != ENOENT)
		ereport(LOG,
				(errcode_for_file_access(),
				 errmsg("stream_state: could not remove checkpoint file \"%s\": %m", oldpath)));
}

/*
 * Has the running job ended?  True when it has: *error is NULL on success,
 * else the reason a copy failed (with its SQLSTATE in *sqlstate; the
 * checkpoint stays a file).  A failed drop-only job is logged here and
 * reported as success: the checkpoint itself is fine.
 */
bool
sstate_ckpt_table_poll(char **error, int *sqlstate)
{
	StreamStateDb *db = job_db;
	bool		done;
	int			result;
	pid_t		pid;
	BgwHandleStatus status;
	char		msg[256];

	*error = NULL;
	*sqlstate = 0;
	if (db == NULL)
		return true;

	SpinLockAcquire(&db->mutex);
	done = db->tbl_done && db->tbl_job == job_number;
	SpinLockRelease(&db->mutex);
	if (!done)
	{
		status = GetBackgroundWorkerPid(job_handle, &pid);
		if (status == BGWH_NOT_YET_STARTED &&
			TimestampDifferenceExceeds(job_started, GetCurrentTimestamp(), HELPER_START_TIMEOUT_MS))
		{
			TerminateBackgroundWorker(job_handle);
			status = BGWH_STOPPED;
			snprintf(msg, sizeof(msg), "the helper process did not start within %d s",
					 HELPER_START_TIMEOUT_MS / 1000);
		}
		else if (status == BGWH_STARTED || status == BGWH_NOT_YET_STARTED)
			return false;
		else
			snprintf(msg, sizeof(msg), "the helper process exited before it finished (see the server log)");
		/* it may have finished between the two looks */
		SpinLockAcquire(&db->mutex);
		done = db->tbl_done && db->tbl_job == job_number;
		SpinLockRelease(&db->mutex);
		if (!done)
		{
			SpinLockAcquire(&db->mutex);
			db->tbl_done = true;
			db->tbl_result = SSCT_UNAVAILABLE;
			db->tbl_sqlstate = ERRCODE_SYSTEM_ERROR;
			strlcpy(db->tbl_error, msg, sizeof(db->tbl_error));
			SpinLockRelease(&db->mutex);
		}
	}

	SpinLockAcquire(&db->mutex);
	result = db->tbl_result;
	*sqlstate = db->tbl_sqlstate;
	strlcpy(msg, db->tbl_error, sizeof(msg));
	SpinLockRelease(&db->mutex);
	job_db = NULL;

	if (job_kind == SSCT_JOB_FETCH)
	{
		/* the fetch's caller reads the result itself */
		return true;
	}
	if (result == SSCT_FETCHED)
	{
		job_succeeded();
		return true;
	}
	if (job_kind == SSCT_JOB_DROP)
	{
		ereport(LOG,
				(errmsg("stream_state: could not delete the rows of old checkpoints of database %u: %s",
						db->dboid, msg)));
		*sqlstate = 0;
		return true;
	}
	*error = MemoryContextStrdup(TopMemoryContext, msg);
	if (*sqlstate == 0)
		*sqlstate = ERRCODE_SYSTEM_ERROR;
	return true;
}

/* The worker exits: stop a helper still working for it. */
void
sstate_ckpt_table_abandon(void)
{
	if (job_db != NULL && job_handle != NULL)
		TerminateBackgroundWorker(job_handle);
	job_db = NULL;
}

/*
 * At worker start: a checkpoint the history says is in the table may still
 * have its file, if the worker stopped between saving the history and
 * removing it.  Remove such files.
 */
void
sstate_ckpt_table_worker_init(Oid dboid)
{
	char		dir[MAXPGPATH];
	ListCell   *lc;

	sstate_ckpt_dir(dboid, dir);
	foreach(lc, sstate_ckpt_worker_entries())
	{
		StreamStateCkptInfo *ci = lfirst(lc);
		char		path[MAXPGPATH];

		if (strcmp(ci->target, "table") != 0)
			continue;
		snprintf(path, MAXPGPATH, "%s/%lld.ckpt", dir, (long long) ci->id);
		if (unlink(path) == 0)
			ereport(LOG,
					(errmsg("stream_state: removed file \"%s\" of checkpoint %lld, which is in table %s",
							path, (long long) ci->id, STREAM_STATE_CKPT_TABLE_NAME)));
	}
}

/*
 * Restore: write the rows of table checkpoint ci to a temporary file
 * (*path) through a helper, and wait for it.  Returns SSCT_FETCHED (the
 * caller loads and removes the file), SSCT_DAMAGED or SSCT_UNAVAILABLE
 * with *why.  Never waits for a helper that does not start, and gives up
 * when the worker is asked to stop.
 */
int
sstate_ckpt_table_fetch(StreamStateDb *db, const StreamStateCkptInfo *ci, char *path, char **why)
{
	char	   *error;
	int			sqlstate;
	int			result;

	sstate_ckpt_table_temp_path(ci->id, path);
	if (!start_helper(db, SSCT_JOB_FETCH, ci->id, ci->bytes, path, NIL, &error, &sqlstate))
	{
		*why = pstrdup(error);
		return SSCT_UNAVAILABLE;
	}
	pgstat_report_activity(STATE_RUNNING, "reading a checkpoint from its table");
	for (;;)
	{
		if (ShutdownRequestPending)
		{
			sstate_ckpt_table_abandon();
			*why = pstrdup("the worker is stopping");
			(void) unlink(path);
			return SSCT_UNAVAILABLE;
		}
		if (sstate_ckpt_table_poll(&error, &sqlstate))
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 100, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		/* absorbs ProcSignalBarriers too, which DROP DATABASE waits for */
		CHECK_FOR_INTERRUPTS();
	}
	pgstat_report_activity(STATE_RUNNING, "restoring state from a checkpoint");

	SpinLockAcquire(&db->mutex);
	result = db->tbl_result;
	sqlstate = db->tbl_sqlstate;
	*why = pstrdup(db->tbl_error);
	SpinLockRelease(&db->mutex);
	if (result != SSCT_FETCHED)
		(void) unlink(path);
	/* an ERROR reading the rows: damage if the data is, else not now */
	if (result == 0)
		result = (sqlstate == ERRCODE_DATA_CORRUPTED || sqlstate == ERRCODE_INDEX_CORRUPTED) ?
			SSCT_DAMAGED : SSCT_UNAVAILABLE;
	return result;
}

/* ---------------------------------------------------------------------
 * The helper process
 * ---------------------------------------------------------------------
 */

/*
 * Copy (SSCT_JOB_COPY) the checkpoint file path of bytes bytes into rows of
 * checkpoint id, and delete every row whose checkpoint_id is not in keep,
 * and any row of id already there (left by a lost history that made ids
 * start again).  Caller is in a transaction with an active snapshot.
 */
static void
helper_copy(int kind, int64 id, int64 bytes, const char *path, const int64 *keep, int nkeep)
{
	Oid			relid = table_oid();
	Oid			save_userid;
	int			save_sec;
	int			save_nestlevel;
	Datum	   *elems;
	Datum		args[3];
	Oid			argtypes[3];
	int			ret;

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table %s does not exist in this database", STREAM_STATE_CKPT_TABLE_NAME),
				 errhint("Update the extension in this database: ALTER EXTENSION stream_state UPDATE.")));

	table_open_as_owner(relid, &save_userid, &save_sec, &save_nestlevel);
	elems = palloc(sizeof(Datum) * Max(nkeep, 1));
	for (int i = 0; i < nkeep; i++)
		elems[i] = Int64GetDatum(keep[i]);
	args[0] = PointerGetDatum(construct_array(elems, nkeep, INT8OID, sizeof(int64),
											  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	argtypes[0] = INT8ARRAYOID;
	args[1] = Int64GetDatum(kind == SSCT_JOB_COPY ? id : 0);
	argtypes[1] = INT8OID;
	ret = SPI_execute_with_args("DELETE FROM stream_state.checkpoint_data"
								" WHERE checkpoint_id OPERATOR(pg_catalog.<>) ALL ($1)"
								" OR checkpoint_id OPERATOR(pg_catalog.=) $2",
								2, argtypes, args, NULL, false, 0);
	if (ret != SPI_OK_DELETE)
		elog(ERROR, "deleting old checkpoint rows failed: %s", SPI_result_code_string(ret));

	if (kind == SSCT_JOB_COPY)
	{
		SPIPlanPtr	plan;
		int			fd;
		bytea	   *chunk = palloc(VARHDRSZ + STREAM_STATE_CKPT_CHUNK);
		int64		total = 0;

		argtypes[0] = INT8OID;
		argtypes[1] = INT4OID;
		argtypes[2] = BYTEAOID;
		plan = SPI_prepare("INSERT INTO stream_state.checkpoint_data (checkpoint_id, chunk, data)"
						   " VALUES ($1, $2, $3)", 3, argtypes);
		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
		if (fd < 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not open file \"%s\": %m", path)));
		for (int32 n = 0;; n++)
		{
			Size		len = 0;

			while (len < STREAM_STATE_CKPT_CHUNK)
			{
				ssize_t		r = read(fd, VARDATA(chunk) + len, STREAM_STATE_CKPT_CHUNK - len);

				if (r < 0)
					ereport(ERROR,
							(errcode_for_file_access(),
							 errmsg("could not read file \"%s\": %m", path)));
				if (r == 0)
					break;
				len += r;
			}
			if (len == 0)
				break;
			SET_VARSIZE(chunk, VARHDRSZ + len);
			args[0] = Int64GetDatum(id);
			args[1] = Int32GetDatum(n);
			args[2] = PointerGetDatum(chunk);
			ret = SPI_execute_plan(plan, args, NULL, false, 0);
			if (ret != SPI_OK_INSERT)
				elog(ERROR, "inserting checkpoint rows failed: %s", SPI_result_code_string(ret));
			total += len;
			CHECK_FOR_INTERRUPTS();
		}
		CloseTransientFile(fd);
		if (total != bytes)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("checkpoint file \"%s\" has %lld bytes; the checkpoint has %lld",
							path, (long long) total, (long long) bytes)));
	}
	table_close_as_owner(save_userid, save_sec, save_nestlevel);
}

/*
 * stream_state checkpoint table helper: started by a database's worker for
 * one job (bgw_extra holds its number), connected to that database.  It
 * copies a checkpoint file into rows, deletes rows retention dropped, or
 * reads a checkpoint's rows back into a file, in one transaction; then
 * reports in the database's slot and exits.
 */
void
stream_state_ckpt_table_main(Datum arg)
{
	Oid			dboid = DatumGetObjectId(arg);
	uint32		job;
	StreamStateDb *db;
	int			kind;
	int64		id;
	int64		bytes;
	char		path[MAXPGPATH];
	int64	   *keep;
	int			nkeep;
	int			result = 0;
	int			sqlstate = 0;
	char	   *why = NULL;
	MemoryContext cxt;

	memcpy(&job, MyBgworkerEntry->bgw_extra, sizeof(job));
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	db = sstate_db_find(dboid);
	if (db == NULL)
		proc_exit(0);
	keep = palloc(sizeof(int64) * (STREAM_STATE_CKPT_RETAIN_MAX + 1));
	SpinLockAcquire(&db->mutex);
	if (db->tbl_job != job)
	{
		SpinLockRelease(&db->mutex);
		proc_exit(0);			/* the worker gave this job up */
	}
	kind = db->tbl_kind;
	id = db->tbl_id;
	bytes = db->tbl_bytes;
	strlcpy(path, db->tbl_path, MAXPGPATH);
	nkeep = db->tbl_nkeep;
	memcpy(keep, db->tbl_keep, sizeof(int64) * nkeep);
	SpinLockRelease(&db->mutex);

	/*
	 * Before connecting, so that it also bounds the wait for the database's
	 * lock, which DROP DATABASE holds.  Durable commits; a database that
	 * defaults to read-only transactions must not stop checkpoints.
	 */
	SetConfigOption("lock_timeout", HELPER_LOCK_TIMEOUT, PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("statement_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("synchronous_commit", "on", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("default_transaction_read_only", "off", PGC_SUSET, PGC_S_OVERRIDE);
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, BGWORKER_BYPASS_ALLOWCONN);

	pgstat_report_activity(STATE_RUNNING,
						   kind == SSCT_JOB_FETCH ? "reading a checkpoint from its table" :
						   kind == SSCT_JOB_COPY ? "copying a checkpoint into its table" :
						   "deleting old checkpoints from their table");
	cxt = CurrentMemoryContext;
	PG_TRY();
	{
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		if (kind == SSCT_JOB_FETCH)
			result = sstate_ckpt_table_read(id, bytes, path, false, &why);
		else
		{
			helper_copy(kind, id, bytes, path, keep, nkeep);
			result = SSCT_FETCHED;
		}
		PopActiveSnapshot();
		/* synchronous_commit is on: the commit record is flushed on return */
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		result = 0;
		sqlstate = edata->sqlerrcode;
		why = edata->hint ? psprintf("%s (%s)", edata->message, edata->hint) :
			pstrdup(edata->message);
	}
	PG_END_TRY();
	pgstat_report_activity(STATE_IDLE, NULL);

	SpinLockAcquire(&db->mutex);
	if (db->tbl_job == job)
	{
		db->tbl_done = true;
		db->tbl_result = result;
		db->tbl_sqlstate = sqlstate;
		strlcpy(db->tbl_error, why ? why : "", sizeof(db->tbl_error));
	}
	SpinLockRelease(&db->mutex);
	if (db->worker_latch != NULL)
		SetLatch(db->worker_latch);
	proc_exit(0);
}
