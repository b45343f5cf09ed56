/*-------------------------------------------------------------------------
 *
 * sql_checkpoint.c
 *	  SQL functions for checkpoints: checkpoint() and the history behind the
 *	  stream_state.checkpoints view.
 *
 * checkpoint() asks this database's worker for a checkpoint through its
 * shared slot (ckpt_requested / ckpt_answered under the slot's mutex) and
 * waits for the answer.  One checkpoint runs at a time per database; asking
 * while one runs, periodic or asked for, is an error rather than a queue,
 * so a caller never waits behind an unknown amount of work.
 *
 * IDENTIFICATION
 *	  src/sql_checkpoint.c
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/stat.h>
#include <unistd.h>

#include <signal.h>

#include "access/xlog.h"
#include "catalog/pg_authid.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "replication/slot.h"
#include "storage/fd.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/pg_lsn.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "capture.h"
#include "checkpoint.h"
#include "cq_agg.h"
#include "cq_capture.h"
#include "rocks.h"
#include "query.h"

PG_FUNCTION_INFO_V1(stream_state_checkpoint);
PG_FUNCTION_INFO_V1(stream_state_checkpoints);
PG_FUNCTION_INFO_V1(stream_state_export_checkpoint);
PG_FUNCTION_INFO_V1(stream_state_import_checkpoint);
PG_FUNCTION_INFO_V1(stream_state_restore_checkpoint);

/* Is target "table" (true) or "file" (false)?  Anything else is an ERROR. */
static bool
check_target(const char *target)
{
	if (strcmp(target, "file") == 0)
		return false;
	if (strcmp(target, "table") == 0)
		return true;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown checkpoint target \"%s\"", target),
			 errhint("The target is \"file\" or \"table\".")));
	return false;				/* keep compiler quiet */
}

Datum
stream_state_checkpoint(PG_FUNCTION_ARGS)
{
	StreamStateDb *db;
	char		slot[NAMEDATALEN];
	uint32		request;
	int64		id;
	char		error[256];
	int			sqlstate;
	TimestampTz worker_gone_since = 0;
	bool		to_table = (sstate_checkpoint_target == SSTATE_CKPT_TABLE);

	sstate_shmem_check();
	if (!PG_ARGISNULL(0))
		to_table = check_target(text_to_cstring(PG_GETARG_TEXT_PP(0)));

	sstate_slot_name(MyDatabaseId, slot);
	db = sstate_db_find(MyDatabaseId);
	if (SearchNamedReplicationSlot(slot, true) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("this database has no stream_state state to checkpoint"),
				 errhint("Create a continuous query first.")));
	if (db == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the stream_state worker of this database is not running"),
				 errhint("See the server log; max_worker_processes may be too low.")));

	/* the checkpoint holds this session's commits */
	sstate_wait_applied(sstate_capture_last_commit(), sstate_read_timeout_ms, true);

	SpinLockAcquire(&db->mutex);
	if (db->ckpt_running || db->ckpt_requested != db->ckpt_answered)
	{
		SpinLockRelease(&db->mutex);
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("a checkpoint of this database is already running"),
				 errhint("Wait for it to finish, then try again.")));
	}
	request = ++db->ckpt_requested;
	if (request == 0)
		request = ++db->ckpt_requested; /* 0 means "not asked for" */
	db->ckpt_request_table = to_table;
	SpinLockRelease(&db->mutex);
	if (db->worker_latch != NULL)
		SetLatch(db->worker_latch);

	for (;;)
	{
		bool		done;

		SpinLockAcquire(&db->mutex);
		done = (db->ckpt_answered == request);
		id = db->ckpt_result_id;
		sqlstate = db->ckpt_result_sqlstate;
		strlcpy(error, db->ckpt_result_error, sizeof(error));
		SpinLockRelease(&db->mutex);
		if (done)
			break;

		/* a worker that stays away fails the request */
		if (db->worker_state == SSW_NONE)
		{
			if (worker_gone_since == 0)
				worker_gone_since = GetCurrentTimestamp();
			else if (TimestampDifferenceExceeds(worker_gone_since, GetCurrentTimestamp(),
												sstate_read_timeout_ms))
			{
				SpinLockAcquire(&db->mutex);
				if (db->ckpt_answered != request)
					db->ckpt_answered = request;
				SpinLockRelease(&db->mutex);
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("the stream_state worker of this database is not running"),
						 errhint("See the server log.")));
			}
		}
		else
			worker_gone_since = 0;
		(void) ConditionVariableTimedSleep(&db->applied_cv, 100, PG_WAIT_EXTENSION);
		CHECK_FOR_INTERRUPTS();
	}
	ConditionVariableCancelSleep();

	if (id == 0)
		ereport(ERROR,
				(errcode(ERRCODE_IO_ERROR),
				 errmsg("could not write a checkpoint of this database: %s", error),
				 errhint("See the server log; the previous checkpoints are still there.")));
	if (error[0] != '\0')
		ereport(ERROR,
				(errcode(sqlstate != 0 ? sqlstate : ERRCODE_SYSTEM_ERROR),
				 errmsg("could not copy checkpoint %lld into table %s: %s",
						(long long) id, STREAM_STATE_CKPT_TABLE_NAME, error),
				 errdetail("Checkpoint %lld is kept as a file; stream_state.checkpoints shows where.",
						   (long long) id)));
	PG_RETURN_INT64(id);
}

Datum
stream_state_checkpoints(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	List	   *history;
	ListCell   *lc;

	sstate_shmem_check();
	InitMaterializedSRF(fcinfo, 0);
	history = sstate_ckpt_history(MyDatabaseId);
	foreach(lc, history)
	{
		StreamStateCkptInfo *ci = lfirst(lc);
		Datum		values[12];
		bool		nulls[12] = {0};

		values[0] = Int64GetDatum(ci->id);
		values[1] = CStringGetTextDatum(ci->target);
		values[2] = CStringGetTextDatum(ci->location);
		values[3] = TimestampTzGetDatum(ci->created_at);
		values[4] = LSNGetDatum(ci->applied);
		values[5] = LSNGetDatum(ci->restart);
		values[6] = Int32GetDatum(ci->queries);
		values[7] = Int64GetDatum(ci->entries);
		values[8] = Int64GetDatum(ci->bytes);
		{
			Interval   *iv = palloc0(sizeof(Interval));

			iv->time = ci->duration_ms * 1000;
			values[9] = IntervalPGetDatum(iv);
		}
		{
			Interval   *iv = palloc0(sizeof(Interval));

			iv->time = ci->pause_ms * 1000;
			values[10] = IntervalPGetDatum(iv);
		}
		values[11] = CStringGetTextDatum(ci->status);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* ---------------------------------------------------------------------
 * Export and import
 * ---------------------------------------------------------------------
 */

/*
 * A path given by the user, made absolute (relative ones are relative to
 * the data directory, as for COPY).  Outside the data directory, it needs
 * pg_write_server_files (writing) or pg_read_server_files (reading).
 */
static char *
user_path(text *arg, bool writing)
{
	char	   *path = text_to_cstring(arg);
	Oid			role = writing ? ROLE_PG_WRITE_SERVER_FILES : ROLE_PG_READ_SERVER_FILES;

	if (path[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("path must not be empty")));
	canonicalize_path(path);
	if (!is_absolute_path(path))
		path = psprintf("%s/%s", DataDir, path);
	if ((path_contains_parent_reference(path) || !path_is_prefix_of_path(DataDir, path)) &&
		!has_privs_of_role(GetUserId(), role))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to %s checkpoint file \"%s\"",
						writing ? "write" : "read", path),
				 errdetail("Only roles with privileges of the \"%s\" role may %s files outside the data directory.",
						   writing ? "pg_write_server_files" : "pg_read_server_files",
						   writing ? "write" : "read")));
	return path;
}

static StreamStateCkptInfo *
find_checkpoint(int64 id)
{
	List	   *history = sstate_ckpt_history(MyDatabaseId);
	ListCell   *lc;

	foreach(lc, history)
	{
		StreamStateCkptInfo *ci = lfirst(lc);

		if (ci->id == id)
		{
			if (strcmp(ci->status, "valid") != 0)
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("checkpoint %lld of this database is %s", (long long) id, ci->status)));
			return ci;
		}
	}
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("checkpoint %lld of this database does not exist", (long long) id),
			 errhint("See stream_state.checkpoints.")));
	return NULL;				/* keep compiler quiet */
}

/*
 * Check every block of checkpoint ci, raising XX001 if it is damaged.  A
 * checkpoint in the table is first read from its rows into the file into
 * (fsynced, left in place for the caller), or, when into is NULL, into a
 * temporary file that is removed again.
 */
/* export: the state of rocksdb query q, from the RocksDB checkpoint */
static void
export_rocksdb(void *arg, int64 ckpt_id, const StreamStateQuery *q,
			   sstate_store_scan_cb cb, void *cb_arg)
{
	sstate_rdb_checkpoint_scan(MyDatabaseId, ckpt_id, q, cb, cb_arg);
}

/* does a checkpoint have rocksdb queries? */
static bool
rocksdb_query_cb(void *arg, const StreamStateQuery *q, char **why)
{
	if (q->def.backend == SSB_ROCKSDB)
		*(bool *) arg = true;
	return true;
}

static void
check_checkpoint(const StreamStateCkptInfo *ci, const char *into, bool *has_rocksdb)
{
	StreamStateCkptScan cb = {NULL, rocksdb_query_cb, NULL};
	bool		rocksdb = false;
	char		tmp[MAXPGPATH];
	const char *path = ci->location;
	char	   *why = NULL;
	int			fetched = SSCT_FETCHED;
	bool		ok;

	if (strcmp(ci->target, "table") != 0)
	{
		if (!sstate_ckpt_scan_file(ci->location, &cb, &rocksdb, &why))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("checkpoint %lld is damaged: %s", (long long) ci->id, why),
					 errdetail("File \"%s\".", ci->location)));
		if (has_rocksdb)
			*has_rocksdb = rocksdb;
		return;
	}

	if (into == NULL)
		sstate_ckpt_table_temp_path(ci->id, tmp);
	else
		strlcpy(tmp, into, MAXPGPATH);
	path = tmp;
	PG_TRY();
	{
		fetched = sstate_ckpt_table_read(ci->id, ci->bytes, path, into != NULL, &why);
		ok = fetched == SSCT_FETCHED && sstate_ckpt_scan_file(path, &cb, &rocksdb, &why);
	}
	PG_CATCH();
	{
		(void) unlink(path);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (into == NULL || !ok)
		(void) unlink(path);
	if (fetched == SSCT_UNAVAILABLE)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("checkpoint %lld cannot be read: %s", (long long) ci->id, why)));
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("checkpoint %lld is damaged: %s", (long long) ci->id, why),
				 errdetail("Rows of checkpoint_id %lld in table %s.", (long long) ci->id,
						   STREAM_STATE_CKPT_TABLE_NAME)));
	if (has_rocksdb)
		*has_rocksdb = rocksdb;
}

/*
 * export_checkpoint(id, path): a copy of checkpoint id, checked block by
 * block first, written to path (temporary name, fsync, rename).  Returns
 * its size.
 */
Datum
stream_state_export_checkpoint(PG_FUNCTION_ARGS)
{
	int64		id = PG_GETARG_INT64(0);
	char	   *path = user_path(PG_GETARG_TEXT_PP(1), true);
	StreamStateCkptInfo *ci;
	char	   *tmp;
	int			in,
				out;
	char	   *buf;
	int64		total = 0;
	struct stat st;
	bool		rocksdb = false;

	sstate_shmem_check();
	ci = find_checkpoint(id);
	tmp = psprintf("%s.tmp", path);
	if (strcmp(ci->target, "table") == 0)
	{
		char	   *rows = psprintf("%s.rows.tmp", path);

		/* its rows go straight to a temporary file, checked there */
		if (stat(path, &st) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_FILE),
					 errmsg("file \"%s\" already exists", path)));
		check_checkpoint(ci, rows, &rocksdb);
		if (rocksdb)
		{
			PG_TRY();
			{
				(void) sstate_ckpt_export_file(rows, tmp, export_rocksdb, NULL);
			}
			PG_FINALLY();
			{
				unlink(rows);
			}
			PG_END_TRY();
		}
		else if (durable_rename(rows, tmp, ERROR) != 0)
			unlink(rows);
		if (stat(tmp, &st) != 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not stat file \"%s\": %m", tmp)));
		if (durable_rename(tmp, path, ERROR) != 0)
			unlink(tmp);
		PG_RETURN_INT64((int64) st.st_size);
	}
	check_checkpoint(ci, NULL, &rocksdb);
	if (stat(path, &st) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_FILE),
				 errmsg("file \"%s\" already exists", path)));
	if (rocksdb)
	{
		/* their state comes from the RocksDB checkpoint: a file written anew */
		total = sstate_ckpt_export_file(ci->location, tmp, export_rocksdb, NULL);
		if (durable_rename(tmp, path, ERROR) != 0)
			unlink(tmp);
		PG_RETURN_INT64(total);
	}

	in = OpenTransientFile(ci->location, O_RDONLY | PG_BINARY);
	if (in < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open file \"%s\": %m", ci->location)));
	out = OpenTransientFile(tmp, O_CREAT | O_TRUNC | O_WRONLY | PG_BINARY);
	if (out < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create file \"%s\": %m", tmp)));
	buf = palloc(BLCKSZ * 16);
	for (;;)
	{
		ssize_t		n = read(in, buf, BLCKSZ * 16);

		if (n < 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not read file \"%s\": %m", ci->location)));
		if (n == 0)
			break;
		errno = 0;
		if (write(out, buf, n) != n)
		{
			int			save = errno ? errno : ENOSPC;

			unlink(tmp);
			errno = save;
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not write file \"%s\": %m", tmp)));
		}
		total += n;
		CHECK_FOR_INTERRUPTS();
	}
	if (pg_fsync(out) != 0)
	{
		int			save = errno;

		unlink(tmp);
		errno = save;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not fsync file \"%s\": %m", tmp)));
	}
	CloseTransientFile(out);
	CloseTransientFile(in);
	if (durable_rename(tmp, path, ERROR) != 0)
		unlink(tmp);
	PG_RETURN_INT64(total);
}

typedef struct ImportQuery
{
	StreamStateQuery q;			/* as in the file */
	StreamStateQueryInfo *info; /* the query of this database, or NULL */
	StreamStateCapture cap;
	int64		keys;
	int64		entries;
	int			naggs;			/* a query in SQL: its aggregates in the file */
	StreamStateCqWorkerAgg *aggs;
	StringInfoData value;		/* a session's value as a commit carries it */
} ImportQuery;

typedef struct ImportState
{
	List	   *queries;		/* ImportQuery * */
	ImportQuery *last;
	bool		applying;		/* second pass: add to the delta */
	MemoryContext cxt;			/* the scan runs in a context of its own */
} ImportState;

static bool
import_query(void *arg, const StreamStateQuery *q, char **why)
{
	ImportState *is = arg;
	MemoryContext old;
	ImportQuery *iq;

	old = MemoryContextSwitchTo(is->cxt);
	iq = palloc0(sizeof(ImportQuery));
	iq->q = *q;
	is->queries = lappend(is->queries, iq);
	MemoryContextSwitchTo(old);
	return true;
}

static ImportQuery *
import_find(ImportState *is, int32 qid)
{
	ListCell   *lc;

	if (is->last != NULL && is->last->q.def.id == qid)
		return is->last;
	foreach(lc, is->queries)
	{
		ImportQuery *iq = lfirst(lc);

		if (iq->q.def.id == qid)
			return is->last = iq;
	}
	return NULL;
}

static bool
import_layout(void *arg, int32 qid, int naggs, const StreamStateCqWorkerAgg *aggs, char **why)
{
	ImportState *is = arg;
	ImportQuery *iq = import_find(is, qid);

	if (iq == NULL)
	{
		*why = psprintf("it has the aggregates of query id %d, which it does not define", qid);
		return false;
	}
	if (iq->aggs == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(is->cxt);

		iq->naggs = naggs;
		iq->aggs = palloc(sizeof(StreamStateCqWorkerAgg) * Max(naggs, 1));
		memcpy(iq->aggs, aggs, sizeof(StreamStateCqWorkerAgg) * naggs);
		MemoryContextSwitchTo(old);
	}
	return true;
}

static bool
import_options(void *arg, int32 qid, int64 retention_us, int64 session_gap_us, char **why)
{
	ImportQuery *iq = import_find((ImportState *) arg, qid);

	if (iq != NULL)
	{
		iq->q.def.retention_us = retention_us;
		iq->q.def.session_gap_us = session_gap_us;
	}
	return true;
}

/*
 * Do two aggregates' partial states mean the same?  The same state type and
 * functions (built-ins by OID, others by library and symbol: their OIDs
 * differ between servers).
 */
static bool
same_states(const StreamStateCqWorkerAgg *a, const StreamStateCqWorkerAgg *b)
{
	if (a->transtype != b->transtype || a->transtyplen != b->transtyplen ||
		a->transtypbyval != b->transtypbyval || a->has_serial != b->has_serial)
		return false;
	for (int k = 0; k < 3; k++)
	{
		const StreamStateCqFnRef *x = &a->refs[k];
		const StreamStateCqFnRef *y = &b->refs[k];

		if (x->builtin != y->builtin || OidIsValid(x->oid) != OidIsValid(y->oid))
			return false;
		if (x->builtin ? x->oid != y->oid :
			(strcmp(x->library, y->library) != 0 || strcmp(x->symbol, y->symbol) != 0))
			return false;
	}
	return true;
}

/* The file's aggregates of a query in SQL are this database's query's */
static void
import_check_sql(ImportQuery *iq, StreamStateQueryInfo *info)
{
	StreamStateCqAnalysis *an = sstate_cq_compiled_analysis(sstate_cq_compiled(info));
	bool		same = (iq->naggs == an->naggs && iq->aggs != NULL);

	for (int j = 0; same && j < an->naggs; j++)
	{
		StreamStateCqWorkerAgg w;

		sstate_cq_worker_agg(&an->aggs[j], &w);
		same = same_states(&w, &iq->aggs[j]);
	}
	if (!same)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("continuous query \"%s\" of the checkpoint has other aggregates than the one of this database",
						iq->q.def.name),
				 errdetail("Its partial states would not combine with this query's."),
				 errhint("Create the query with the same query text.")));
}

static bool
import_key(void *arg, int32 qid, const char *key, uint32 keylen,
		   const StreamStatePane *panes, int npanes, char **why)
{
	ImportState *is = arg;
	ImportQuery *iq = import_find(is, qid);

	if (iq == NULL)
	{
		*why = psprintf("it has a key of query id %d, which it does not define", qid);
		return false;
	}
	if (!is->applying || iq->info == NULL)
		return true;
	if (iq->q.def.sql)
	{
		/*
		 * Partial states, as a commit carries them; a session's with its
		 * first and last event in front (its pane is its first event).
		 */
		for (int i = 0; i < npanes; i++)
		{
			uint32		len;
			const char *v = sstate_ckpt_entry_value(panes[i].count, &len);
			int64		pane = panes[i].pane;

			if (iq->q.def.session_gap_us > 0)
			{
				if (len < sizeof(int64))
				{
					*why = psprintf("it has a session of query id %d without its end", qid);
					return false;
				}
				resetStringInfo(&iq->value);
				appendBinaryStringInfo(&iq->value, (const char *) &pane, sizeof(int64));
				appendBinaryStringInfo(&iq->value, v, len);
				v = iq->value.data;
				len = iq->value.len;
				pane = pane / iq->q.def.session_gap_us;
			}
			sstate_capture_value(&iq->cap, key, keylen, pane, 0, v, len);
		}
		iq->keys++;
		iq->entries += npanes;
		return true;
	}

	/*
	 * A classed key's image starts with this server's hash of the value
	 * (sstate_key_image): take it again here, from the value.
	 */
	if (iq->q.def.key_classed || iq->info->def.key_classed)
	{
		char		buf[SSTATE_KEYBUF];
		Datum		d;

		if (iq->q.def.key_classed)
		{
			if (keylen < SSTATE_CLASS_PREFIX)
			{
				*why = psprintf("it has a key of query id %d of %u bytes, shorter than its class prefix",
								qid, keylen);
				return false;
			}
			key += SSTATE_CLASS_PREFIX;
			keylen -= SSTATE_CLASS_PREFIX;
		}
		d = sstate_key_datum_raw(iq->info, key, keylen);
		sstate_key_image(iq->info, d, buf, &key, &keylen);
	}
	for (int i = 0; i < npanes; i++)
		sstate_capture_add(&iq->cap, key, keylen, panes[i].pane, panes[i].count);
	iq->keys++;
	iq->entries += npanes;
	return true;
}

/*
 * import_checkpoint(path): the state of every query in the file that this
 * database defines too (by name, with the same panes) replaces that query's
 * state, in this transaction: a RESET and the file's (key, pane) counts go
 * through the same messages as inserts, so the import commits or rolls back
 * with the transaction and the worker applies it exactly once.
 */
Datum
stream_state_import_checkpoint(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *path = user_path(PG_GETARG_TEXT_PP(0), false);
	StreamStateCkptScan cb = {NULL, import_query, import_key, import_layout, import_options};
	ImportState is;
	ListCell   *lc;
	char	   *why;

	sstate_shmem_check();
	InitMaterializedSRF(fcinfo, 0);
	memset(&is, 0, sizeof(is));
	is.cxt = CurrentMemoryContext;

	/* first pass: the whole file is sound, and its queries fit ours */
	if (!sstate_ckpt_scan_file(path, &cb, &is, &why))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("could not import checkpoint file \"%s\": %s", path, why)));
	foreach(lc, is.queries)
	{
		ImportQuery *iq = lfirst(lc);
		StreamStateQueryInfo *info = sstate_query_by_name(iq->q.def.name, true);

		if (info == NULL)
		{
			ereport(NOTICE,
					(errmsg("continuous query \"%s\" of the checkpoint is not defined in this database; its state is not imported",
							iq->q.def.name)));
			continue;
		}
		sstate_query_check_owner(info);
		if (info->def.pane_us != iq->q.def.pane_us || info->def.window_us != iq->q.def.window_us ||
			info->def.slide_us != iq->q.def.slide_us || info->def.processing_time != iq->q.def.processing_time ||
			info->def.session_gap_us != iq->q.def.session_gap_us)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("continuous query \"%s\" of the checkpoint has other windows than the one of this database",
							iq->q.def.name),
					 errhint("Create the query with the same window_size, slide and time column.")));
		if (info->def.processing_time)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("continuous query \"%s\" uses processing time; its state cannot be imported",
							iq->q.def.name),
					 errdetail("Its panes are the commit times of the exporting server.")));
		if (info->def.sql != iq->q.def.sql)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("continuous query \"%s\" of the checkpoint is %s, the one of this database %s",
							iq->q.def.name, iq->q.def.sql ? "a query in SQL" : "a windowed count",
							info->def.sql ? "a query in SQL" : "a windowed count")));
		if (info->def.sql)
		{
			import_check_sql(iq, info);
			initStringInfo(&iq->value);
		}
		iq->info = info;
	}

	/* second pass: replace the state, in this transaction */
	sstate_ensure_slot(MyDatabaseId);
	foreach(lc, is.queries)
	{
		ImportQuery *iq = lfirst(lc);

		if (iq->info == NULL)
			continue;
		sstate_capture_reset(iq->info->id);
		sstate_capture_begin(&iq->cap, iq->info);
		sstate_capture_note_event(&iq->cap, iq->q.max_event_us);
	}
	is.applying = true;
	if (!sstate_ckpt_scan_file(path, &cb, &is, &why))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("could not import checkpoint file \"%s\": %s", path, why)));

	foreach(lc, is.queries)
	{
		ImportQuery *iq = lfirst(lc);
		Datum		values[3];
		bool		nulls[3] = {0};

		if (iq->info == NULL)
			continue;
		values[0] = CStringGetTextDatum(iq->q.def.name);
		values[1] = Int64GetDatum(iq->keys);
		values[2] = Int64GetDatum(iq->entries);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* ---------------------------------------------------------------------
 * restore_checkpoint
 * ---------------------------------------------------------------------
 */

/*
 * restore_checkpoint(id): the worker starts again from checkpoint id.  If
 * the slot still keeps the WAL from its restart position, the commits after
 * it are re-applied from there ("replayed"); if not, every query is rebuilt
 * from its source table in this transaction ("rebuilt").  Returns one row
 * per query saying which.
 */
Datum
stream_state_restore_checkpoint(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int64		id = PG_GETARG_INT64(0);
	StreamStateCkptInfo *ci;
	StreamStateDb *db;
	int			result = 0;
	pid_t		pid;
	int			ret;
	TimestampTz worker_gone_since = 0;

	sstate_shmem_check();
	InitMaterializedSRF(fcinfo, 0);
	db = sstate_db_find(MyDatabaseId);
	ci = find_checkpoint(id);
	if (db == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the stream_state worker of this database is not running")));
	check_checkpoint(ci, NULL, NULL);

	SpinLockAcquire(&db->mutex);
	if (db->restore_requested != 0)
	{
		SpinLockRelease(&db->mutex);
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("a restore of this database's state is already running")));
	}
	db->restore_requested = id;
	db->restore_answered = 0;
	SpinLockRelease(&db->mutex);

	/* the launcher starts the worker again, which takes the request */
	pid = db->worker_pid;
	if (pid != 0)
		kill(pid, SIGTERM);

	/*
	 * Wait for the new worker to take the request and catch up.  A worker
	 * that stays away for read_timeout (the launcher cannot start it, the
	 * extension was dropped meanwhile) fails the call; on any error the
	 * request is withdrawn if no worker has taken it, so that it does not
	 * block later calls.
	 */
	PG_TRY();
	{
		for (;;)
		{
			bool		done;

			SpinLockAcquire(&db->mutex);
			done = (db->restore_answered == id);
			result = db->restore_result;
			SpinLockRelease(&db->mutex);
			if (done && db->worker_state == SSW_RUNNING && db->dboid == MyDatabaseId)
				break;
			if (db->worker_state == SSW_NONE || db->dboid != MyDatabaseId)
			{
				if (worker_gone_since == 0)
					worker_gone_since = GetCurrentTimestamp();
				else if (TimestampDifferenceExceeds(worker_gone_since, GetCurrentTimestamp(),
													sstate_read_timeout_ms))
					ereport(ERROR,
							(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
							 errmsg("the stream_state worker of this database is not running"),
							 errdetail("It did not come back within stream_state.read_timeout (%d ms) to restore checkpoint %lld.",
									   sstate_read_timeout_ms, (long long) id),
							 errhint("See the server log.  Once the worker runs again it starts from the newest valid checkpoint; then call restore_checkpoint again.")));
			}
			else
				worker_gone_since = 0;
			(void) ConditionVariableTimedSleep(&db->applied_cv, 100, PG_WAIT_EXTENSION);
			CHECK_FOR_INTERRUPTS();
		}
	}
	PG_CATCH();
	{
		ConditionVariableCancelSleep();
		SpinLockAcquire(&db->mutex);
		if (db->restore_requested == id && db->restore_answered != id)
			db->restore_requested = 0;
		SpinLockRelease(&db->mutex);
		PG_RE_THROW();
	}
	PG_END_TRY();
	ConditionVariableCancelSleep();

	if (result == SSR_FAILED)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("checkpoint %lld could not be restored", (long long) id),
				 errdetail("The worker restored the newest valid checkpoint instead; the server log says why.")));

	/* every query of the catalog: replayed, or rebuilt from its source */
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = SPI_execute("SELECT id, name FROM stream_state.query_def ORDER BY name", true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "stream_state: reading query_def failed");
	{
		uint64		n = SPI_processed;
		int32	   *ids = palloc(sizeof(int32) * Max(n, 1));
		char	  **names = palloc(sizeof(char *) * Max(n, 1));

		/* copied first: rebuilding runs SPI statements of its own */
		for (uint64 i = 0; i < n; i++)
		{
			bool		isnull;

			ids[i] = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
			names[i] = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
		}
		for (uint64 i = 0; i < n; i++)
		{
			const char *action;
			Datum		values[2];
			bool		nulls[2] = {0};

			if (result == SSR_REBUILD)
				action = sstate_rebuild_query(ids[i]) ? "rebuilt" : "source dropped";
			else
				action = "replayed";
			values[0] = CStringGetTextDatum(names[i]);
			values[1] = CStringGetTextDatum(action);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
	}
	SPI_finish();
	return (Datum) 0;
}
