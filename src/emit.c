/*-------------------------------------------------------------------------
 *
 * emit.c
 *	  emit_to: the final rows of each closed window of a continuous query in
 *	  SQL, inserted into a table exactly once.
 *
 * A window is closed when the query's watermark has passed its end (the
 * watermark already allows for the lateness): no commit can change it any
 * more, since events later than that are late, counted and dropped.  The
 * rows of closed windows are written by a short-lived helper process
 * connected to the database (the worker connects to none, so that DROP
 * DATABASE never waits for it), which the worker starts when a query's
 * last closed window is past what has been emitted.
 *
 * Design decisions, and why:
 *
 * - Exactly once: stream_state.emit_progress holds, per query, the end of
 *   the last window emitted.  The helper locks that row, inserts the rows
 *   of the windows after it (window_result of each, as the query's owner,
 *   with window_start and window_end in front) and moves it, in one
 *   transaction.  A crash before the commit emits nothing; after it, the
 *   next helper starts after what was committed.  No window is inserted
 *   twice or skipped, across crashes, restarts and restores.
 *
 * - The worker keeps what is not emitted yet: eviction stops at the first
 *   pane of the first window not emitted (sstate_emit_hold), and reads of
 *   such closed windows are allowed.  The helper tells the worker how far
 *   it got through shared memory once its transaction has committed; until
 *   a helper has said so since the worker started, nothing of the query is
 *   evicted.  Eviction is not lateness: events are late by the watermark
 *   alone, so a slow helper never changes what counts.  A query whose
 *   emission fails (its table dropped, no INSERT privilege) keeps its panes
 *   and grows until it pauses for memory; the log says why every time.
 *
 * - The first emitted window is the first that can hold a row: the one
 *   that ends at the first slide boundary after the oldest pane in state
 *   when the helper first finds a window closed.  Windows before it hold
 *   nothing and can get nothing (they are closed).  When alter_query gave
 *   emit_to to a query whose closed panes were evicted already, the first
 *   is the first window whose panes are all there.  A query without GROUP
 *   BY emits a row for each closed window from then on, empty ones
 *   included, as SELECT count(*) gives a row for no rows.
 *
 * - Session windows: the sessions that ended by the closed end (the
 *   watermark, floored to the gap, so that a helper runs at most once per
 *   gap of watermark progress) and after the progress, in one transaction
 *   (_session_result).  A session that ended is final: the worker never
 *   merges a later event into it.
 *
 * - A rocksdb query's watermark (shared memory) is ahead of RocksDB while
 *   the worker's round is being applied: the helper waits until the
 *   worker's published position passes the WAL written when it read it.
 *
 * - At most stream_state.emit_batch windows per transaction, so that a long backlog
 *   (a query created over a large table) commits, and frees memory, as it
 *   goes.
 *
 * IDENTIFICATION
 *	  src/emit.c
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "cq_capture.h"
#include "emit.h"
#include "query.h"
#include "wal_reader.h"
#include "window.h"

#define EMIT_RETRY_MS			1000	/* after a failed or unstartable helper */
#define EMIT_LOCK_TIMEOUT		"10s"
#define LATE_BATCH				10000	/* late groups per transaction, about */

PGDLLEXPORT void stream_state_emit_main(Datum arg);

/* The worker's side: its helper, and what it asked the helper for */
static BackgroundWorkerHandle *helper = NULL;
static TimestampTz next_try = 0;
static int64 *asked_end = NULL;	/* per query slot: closed end at the last start */
static int32 *asked_qid = NULL;
static XLogRecPtr *asked_late = NULL;	/* per query slot: newest late group
										 * at the last start */

static StreamStateQuery *
query_slot(StreamStateDb *db, int32 qid)
{
	StreamStateQuery *qs = sstate_db_queries(db);

	for (int i = 0; i < sstate_shared->max_queries; i++)
		if (qs[i].status != SSQ_FREE && qs[i].def.id == qid)
			return &qs[i];
	return NULL;
}

/*
 * Called by the worker once per round: when the helper has finished, evict
 * what it emitted; when a query has windows closed past what was emitted
 * (or has not heard from a helper since the worker started), start one.
 */
void
sstate_emit_poll(StreamStateDb *db)
{
	StreamStateQuery *qs = sstate_db_queries(db);
	bool		pending = false;
	BackgroundWorker bgw;

	if (asked_end == NULL)
	{
		asked_end = MemoryContextAllocZero(TopMemoryContext,
										   sizeof(int64) * sstate_shared->max_queries);
		asked_qid = MemoryContextAllocZero(TopMemoryContext,
										   sizeof(int32) * sstate_shared->max_queries);
		asked_late = MemoryContextAllocZero(TopMemoryContext,
											sizeof(XLogRecPtr) * sstate_shared->max_queries);
	}
	if (helper != NULL)
	{
		pid_t		pid;
		BgwHandleStatus st = GetBackgroundWorkerPid(helper, &pid);
		bool		failed;

		if (st == BGWH_STARTED || st == BGWH_NOT_YET_STARTED)
			return;
		pfree(helper);
		helper = NULL;
		SpinLockAcquire(&db->mutex);
		failed = !db->emit_done;
		SpinLockRelease(&db->mutex);
		for (int i = 0; i < sstate_shared->max_queries; i++)
		{
			if (qs[i].status != SSQ_FREE && qs[i].def.emit)
				sstate_apply_evict_emitted(&qs[i]);
			sstate_apply_trim_late(&qs[i]);
		}
		if (failed)
		{
			/* ask again for everything, after a pause */
			memset(asked_qid, 0, sizeof(int32) * sstate_shared->max_queries);
			memset(asked_late, 0, sizeof(XLogRecPtr) * sstate_shared->max_queries);
			next_try = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), EMIT_RETRY_MS);
		}
	}
	if (db->worker_state != SSW_RUNNING || GetCurrentTimestamp() < next_try)
		return;

	for (int i = 0; i < sstate_shared->max_queries; i++)
	{
		StreamStateQuery *q = &qs[i];
		int64		closed;

		if (q->status != SSQ_RUNNING)
			continue;
		if (asked_qid[i] != q->def.id)
		{
			asked_qid[i] = q->def.id;
			asked_end[i] = SSTATE_NO_TIME;
			asked_late[i] = InvalidXLogRecPtr;
		}
		if (q->def.late)
		{
			/* late groups newer than the last helper saw */
			XLogRecPtr	last = sstate_apply_late_last(q);

			if (last != InvalidXLogRecPtr && last > asked_late[i] &&
				(!q->late_known || last > q->late_written))
				pending = true;
		}
		if (!q->def.emit)
			continue;
		closed = sstate_closed_end(q);
		if (!q->emit_known ||
			(closed != SSTATE_NO_TIME && closed > asked_end[i] &&
			 (q->emitted_end == SSTATE_NO_TIME || closed > q->emitted_end)))
			pending = true;
	}
	if (!pending)
		return;

	SpinLockAcquire(&db->mutex);
	db->emit_done = false;
	SpinLockRelease(&db->mutex);
	sstate_bgworker_for_db(&bgw, db->dboid, "stream_state_emit_main", "emit helper");
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
		bool		ok = RegisterDynamicBackgroundWorker(&bgw, &helper);

		MemoryContextSwitchTo(old);
		if (!ok)
		{
			helper = NULL;
			ereport(LOG,
					(errmsg("stream_state: could not start the emit helper of database %u: no background worker slot is free",
							db->dboid),
					 errhint("Increase max_worker_processes.")));
			next_try = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), EMIT_RETRY_MS);
			return;
		}
	}
	for (int i = 0; i < sstate_shared->max_queries; i++)
	{
		if (qs[i].status == SSQ_RUNNING && qs[i].def.emit)
			asked_end[i] = sstate_closed_end(&qs[i]);
		if (qs[i].status == SSQ_RUNNING && qs[i].def.late)
			asked_late[i] = sstate_apply_late_last(&qs[i]);
	}
}

/* Is a helper running? (the worker naps shorter meanwhile) */
bool
sstate_emit_busy(void)
{
	return helper != NULL;
}

/* ---------------------------------------------------------------------
 * The helper
 * ---------------------------------------------------------------------
 */

static void
spi_check(int ret, int expected, const char *what)
{
	if (ret != expected)
		elog(ERROR, "stream_state: %s failed: %s", what, SPI_result_code_string(ret));
}

/*
 * The closed end, eviction horizon and backend of query qid, read
 * consistently; false when it is not running.
 */
static bool
query_closed_end(StreamStateDb *db, int32 qid, int64 *closed, int64 *dead_below,
				 uint8 *backend)
{
	StreamStateQuery *q;
	bool		ok = false;

	LWLockAcquire(&db->lock, LW_SHARED);
	q = query_slot(db, qid);
	if (q != NULL && q->status == SSQ_RUNNING)
	{
		*closed = sstate_closed_end(q);
		*dead_below = q->dead_below;
		*backend = q->def.backend;
		ok = true;
	}
	LWLockRelease(&db->lock);
	return ok;
}

/*
 * Tell the worker, once a transaction has committed, how far query qid's
 * closed windows (late: its late groups) have gone: every window ending at
 * or before upto (every group of a commit at or before upto).
 */
static void
report(StreamStateDb *db, int32 qid, bool late, int64 upto)
{
	StreamStateQuery *q;

	LWLockAcquire(&db->lock, LW_EXCLUSIVE);
	q = query_slot(db, qid);
	if (q != NULL && late)
	{
		q->late_written = (XLogRecPtr) upto;
		q->late_known = true;
	}
	else if (q != NULL)
	{
		q->emitted_end = upto;
		q->emit_known = true;
	}
	LWLockRelease(&db->lock);
	if (db->worker_latch != NULL)
		SetLatch(db->worker_latch);
}

/*
 * A transaction of the helper, with search_path pg_catalog, pg_temp and
 * SPI connected; txn_commit ends it.  Returns the GUC nest level.
 */
static int
txn_begin(void)
{
	int			nest;

	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	nest = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	return nest;
}

static void
txn_commit(int nest)
{
	SPI_finish();
	AtEOXact_GUC(true, nest);
	PopActiveSnapshot();
	CommitTransactionCommand();
}

static Datum
ts_datum(int64 unix_us)
{
	return TimestampTzGetDatum(sstate_unix_us_to_ts(unix_us));
}

/*
 * The INSERT of query info's rows into its emit_to table.  source_fmt is
 * the SELECT of window_start, window_end and the query's columns, with two
 * %s: the query's name (a literal) and the column definition list of the
 * query's columns.
 */
static char *
insert_sql(StreamStateQueryInfo *info, const char *source_fmt)
{
	StreamStateCqAnalysis *an = sstate_cq_compiled_analysis(sstate_cq_compiled(info));
	StringInfoData ins;
	StringInfoData defs;

	initStringInfo(&ins);
	initStringInfo(&defs);
	appendStringInfo(&ins, "INSERT INTO %s (window_start, window_end", info->emit_to);
	for (int c = 0; c < an->ncolumns; c++)
	{
		appendStringInfo(&ins, ", %s", quote_identifier(an->columns[c].name));
		appendStringInfo(&defs, "%s%s %s", c > 0 ? ", " : "", quote_identifier(an->columns[c].name),
						 sstate_cq_column_type_sql(an, c));
	}
	appendStringInfoString(&ins, ") ");
	appendStringInfo(&ins, source_fmt, quote_literal_cstr(info->name), defs.data);
	return ins.data;
}

/*
 * One transaction of query qid: the windows after its progress, up to
 * stream_state.emit_batch of them, closed by now (sessions: every one that
 * has ended).  Returns true when more are closed.
 */
static bool
emit_some(StreamStateDb *db, int32 qid)
{
	StreamStateQueryInfo *info;
	Datum		arg;
	Oid			argtype = INT4OID;
	bool		isnull;
	int64		emitted = SSTATE_NO_TIME;
	int64		dead_below = PG_INT64_MIN;
	int64		closed;
	uint8		backend = SSB_MEMORY;
	int64		last;
	bool		known_empty = false;
	char	   *ins;
	SPIPlanPtr	plan;
	Oid			types[3] = {TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID};
	Oid			save_userid;
	int			save_sec;
	int			nest;

	nest = txn_begin();

	info = sstate_query_by_id(qid);
	if (info == NULL || info->emit_to == NULL)
		goto done;				/* dropped meanwhile */
	pgstat_report_activity(STATE_RUNNING, psprintf("emitting closed windows of \"%s\"", info->name));

	arg = Int32GetDatum(qid);
	spi_check(SPI_execute_with_args("SELECT emitted_until FROM stream_state.emit_progress "
									"WHERE query_id = $1 FOR UPDATE",
									1, &argtype, &arg, NULL, false, 1),
			  SPI_OK_SELECT, "reading stream_state.emit_progress");
	if (SPI_processed == 0)
	{
		/* its row went missing: nothing is known to be emitted */
		spi_check(SPI_execute_with_args("INSERT INTO stream_state.emit_progress (query_id) VALUES ($1)",
										1, &argtype, &arg, NULL, false, 0),
				  SPI_OK_INSERT, "inserting into stream_state.emit_progress");
		isnull = true;
	}
	else
	{
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			emitted = DatumGetTimestampTz(d) + STREAM_STATE_UNIX_OFFSET_US;
	}
	if (!query_closed_end(db, qid, &closed, &dead_below, &backend) || closed == SSTATE_NO_TIME)
		goto done;				/* paused, or no event yet */

	/*
	 * A rocksdb query's watermark moves as the worker applies a commit, but
	 * RocksDB gets the commit's state only with the round's batch, written
	 * before the round's position is published: wait for that position to
	 * pass every commit that can have moved the watermark read above, or
	 * the windows (sessions) that closed would be read without the round's
	 * events, and their rows (sessions) emitted short or not at all.
	 */
	if (backend == SSB_ROCKSDB)
		sstate_wait_applied_now(qid, sstate_read_timeout_ms, true);
	if (info->def.session_gap_us > 0)
	{
		/* sessions that ended after the progress, by the closed end */
		if (!isnull && closed <= emitted)
		{
			report(db, qid, false, emitted);
			goto done;
		}
		ins = insert_sql(info, "SELECT * FROM stream_state._session_result(%s, $1, $2) "
						 "AS t(window_start timestamptz, window_end timestamptz, %s)");
		{
			Datum		args[2];
			char		nulls[2] = {isnull ? 'n' : ' ', ' '};

			args[0] = isnull ? (Datum) 0 : ts_datum(emitted);
			args[1] = ts_datum(closed);
			GetUserIdAndSecContext(&save_userid, &save_sec);
			SetUserIdAndSecContext(info->owner, save_sec | SECURITY_LOCAL_USERID_CHANGE);
			spi_check(SPI_execute_with_args(ins, 2, types, args, nulls, false, 0), SPI_OK_INSERT,
					  psprintf("inserting into %s", info->emit_to));
			SetUserIdAndSecContext(save_userid, save_sec);
		}
		last = closed;
		goto progress;
	}
	if (isnull)
	{
		int64		minpane;

		if (!sstate_query_min_pane(info, &minpane))
		{
			known_empty = true;
			goto done;
		}
		emitted = sstate_floor_div(minpane * info->def.pane_us, info->def.slide_us) *
			info->def.slide_us;

		/*
		 * emit_to given by alter_query: windows that lost panes before are
		 * not emitted, the first is the first whole one
		 */
		if (dead_below != PG_INT64_MIN)
		{
			int64		first = dead_below * info->def.pane_us + info->def.window_us;

			first = -sstate_floor_div(-first, info->def.slide_us) * info->def.slide_us;
			emitted = Max(emitted, first - info->def.slide_us);
		}
		if (closed <= emitted)
		{
			known_empty = true;		/* nothing closed that can hold a row */
			goto done;
		}
	}
	if (closed <= emitted)
	{
		report(db, qid, false, emitted);
		goto done;
	}

	/* each window: its start and end, and window_result of it */
	ins = insert_sql(info, "SELECT $1, $2, t.* FROM stream_state.window_result(%s, $3) AS t(%s)");
	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(info->owner, save_sec | SECURITY_LOCAL_USERID_CHANGE);
	plan = SPI_prepare(ins, 3, types);
	if (plan == NULL)
		elog(ERROR, "stream_state: could not prepare the insert into %s: %s",
			 info->emit_to, SPI_result_code_string(SPI_result));
	last = emitted;
	for (int n = 0; n < sstate_emit_batch && last + info->def.slide_us <= closed; n++)
	{
		int64		end = last + info->def.slide_us;
		Datum		args[3];

		args[0] = ts_datum(end - info->def.window_us);
		args[1] = ts_datum(end);
		args[2] = ts_datum(end - 1);
		spi_check(SPI_execute_plan(plan, args, NULL, false, 0), SPI_OK_INSERT,
				  psprintf("inserting into %s", info->emit_to));
		last = end;
	}
	SetUserIdAndSecContext(save_userid, save_sec);

progress:
	{
		Datum		pargs[2];
		Oid			ptypes[2] = {TIMESTAMPTZOID, INT4OID};

		pargs[0] = ts_datum(last);
		pargs[1] = arg;
		spi_check(SPI_execute_with_args("UPDATE stream_state.emit_progress SET emitted_until = $1 "
										"WHERE query_id = $2",
										2, ptypes, pargs, NULL, false, 0),
				  SPI_OK_UPDATE, "updating stream_state.emit_progress");
	}
	txn_commit(nest);
	/* committed: the worker may evict what these windows needed */
	report(db, qid, false, last);
	return last < closed;

done:
	txn_commit(nest);
	if (known_empty)
		report(db, qid, false, SSTATE_NO_TIME);
	return false;
}

/*
 * One transaction of query qid's late groups: those of commits after its
 * progress, about LATE_BATCH of them in whole commits, inserted into its
 * late_to table with the progress moved to the last commit's LSN.  Returns
 * true when more are there.
 */
static bool
late_some(StreamStateDb *db, int32 qid)
{
	StreamStateQueryInfo *info;
	Datum		arg;
	Oid			argtype = INT4OID;
	XLogRecPtr	after = InvalidXLogRecPtr;
	XLogRecPtr	upto = InvalidXLogRecPtr;
	bool		found;
	bool		more = false;
	int			nest;

	nest = txn_begin();

	info = sstate_query_by_id(qid);
	if (info == NULL || info->late_to == NULL)
		goto done;				/* dropped or switched off meanwhile */
	pgstat_report_activity(STATE_RUNNING, psprintf("writing late groups of \"%s\"", info->name));

	arg = Int32GetDatum(qid);
	spi_check(SPI_execute_with_args("SELECT written_until FROM stream_state.late_progress "
									"WHERE query_id = $1 FOR UPDATE",
									1, &argtype, &arg, NULL, false, 1),
			  SPI_OK_SELECT, "reading stream_state.late_progress");
	if (SPI_processed == 0)
		spi_check(SPI_execute_with_args("INSERT INTO stream_state.late_progress (query_id) VALUES ($1)",
										1, &argtype, &arg, NULL, false, 0),
				  SPI_OK_INSERT, "inserting into stream_state.late_progress");
	else
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			after = DatumGetLSN(d);
	}
	found = sstate_query_late_upto(info, after, LATE_BATCH, &upto);
	if (found)
	{
		StreamStateCqAnalysis *an = sstate_cq_compiled_analysis(sstate_cq_compiled(info));
		StringInfoData ins;
		Datum		args[2];
		char		nulls[2] = {after == InvalidXLogRecPtr ? 'n' : ' ', ' '};
		Oid			types[2] = {LSNOID, LSNOID};
		Oid			save_userid;
		int			save_sec;

		initStringInfo(&ins);
		appendStringInfo(&ins, "INSERT INTO %s (commit_lsn, committed_at, events_from, events_to",
						 info->late_to);
		for (int c = 0; c < an->ncolumns; c++)
			appendStringInfo(&ins, ", %s", quote_identifier(an->columns[c].name));
		appendStringInfo(&ins, ") SELECT * FROM stream_state._late_result(%s, $1, $2) "
						 "AS t(commit_lsn pg_lsn, committed_at timestamptz, events_from timestamptz, events_to timestamptz",
						 quote_literal_cstr(info->name));
		for (int c = 0; c < an->ncolumns; c++)
			appendStringInfo(&ins, ", %s %s", quote_identifier(an->columns[c].name),
							 sstate_cq_column_type_sql(an, c));
		appendStringInfoChar(&ins, ')');
		args[0] = LSNGetDatum(after);
		args[1] = LSNGetDatum(upto);
		GetUserIdAndSecContext(&save_userid, &save_sec);
		SetUserIdAndSecContext(info->owner, save_sec | SECURITY_LOCAL_USERID_CHANGE);
		spi_check(SPI_execute_with_args(ins.data, 2, types, args, nulls, false, 0), SPI_OK_INSERT,
				  psprintf("inserting into %s", info->late_to));
		SetUserIdAndSecContext(save_userid, save_sec);

		args[0] = LSNGetDatum(upto);
		args[1] = arg;
		types[1] = INT4OID;
		spi_check(SPI_execute_with_args("UPDATE stream_state.late_progress SET written_until = $1 "
										"WHERE query_id = $2",
										2, types, args, NULL, false, 0),
				  SPI_OK_UPDATE, "updating stream_state.late_progress");
		more = true;
	}
	else
		upto = after;			/* nothing after it: what is before is written */

done:
	txn_commit(nest);
	/* committed: the worker may free what these rows held */
	if (info != NULL && info->late_to != NULL)
		report(db, qid, true, (int64) upto);
	return more;
}

/*
 * Call some(db, qid) until it says nothing more is there, one transaction
 * a call; an ERROR becomes a WARNING (errmsg_fmt: the query id and the
 * error's message) and false.
 */
static bool
run_query(StreamStateDb *db, int32 qid, bool (*some) (StreamStateDb *db, int32 qid),
		  MemoryContext cxt, const char *errmsg_fmt, const char *hint)
{
	bool		ok = true;

	PG_TRY();
	{
		while (some(db, qid))
			CHECK_FOR_INTERRUPTS();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		ereport(WARNING,
				(errcode(edata->sqlerrcode),
				 errmsg_internal(errmsg_fmt, qid, edata->message),
				 edata->detail ? errdetail_internal("%s", edata->detail) : 0,
				 errhint("%s", hint)));
		FreeErrorData(edata);
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

/*
 * Whether query qid shows "needs rebuild": its state is lost (its slot says
 * so, or the worker does not know it and lost the database's state), so
 * reading its windows or late groups would only fail, as the readers'
 * check_not_lost says, every time a helper runs for the other queries.
 * Nothing of it is emitted or written until rebuild() makes it run again.
 */
static bool
lost_query(StreamStateDb *db, int32 qid)
{
	StreamStateQuery *q;
	bool		lost;

	LWLockAcquire(&db->lock, LW_SHARED);
	q = query_slot(db, qid);
	lost = (q == NULL && db->state_lost) || (q != NULL && q->status == SSQ_NEEDS_REBUILD);
	LWLockRelease(&db->lock);
	return lost;
}

void
stream_state_emit_main(Datum arg)
{
	Oid			dboid = DatumGetObjectId(arg);
	StreamStateDb *db;
	List	   *qids = NIL;
	List	   *late_qids = NIL;
	ListCell   *lc;
	bool		ok = true;
	MemoryContext cxt;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	db = sstate_db_find(dboid);
	if (db == NULL)
		proc_exit(0);

	/* never wait long for a lock (DROP DATABASE holds the database's) */
	SetConfigOption("lock_timeout", EMIT_LOCK_TIMEOUT, PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("statement_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("default_transaction_read_only", "off", PGC_SUSET, PGC_S_OVERRIDE);
	/* closed windows change no more: no need to wait for the worker */
	SetConfigOption("stream_state.read_consistency", "none", PGC_SUSET, PGC_S_OVERRIDE);
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	cxt = AllocSetContextCreate(TopMemoryContext, "stream_state emit", ALLOCSET_DEFAULT_SIZES);

	PG_TRY();
	{
		MemoryContext old;

		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		/* late_to (0.7.0) read by name: a catalog of 0.6.0 has none */
		spi_check(SPI_execute("SELECT d.id, d.emit_to IS NOT NULL, "
							  "(pg_catalog.to_jsonb(d) OPERATOR(pg_catalog.->>) 'late_to') IS NOT NULL "
							  "FROM stream_state.query_def d ORDER BY d.id",
							  true, 0),
				  SPI_OK_SELECT, "reading stream_state.query_def");
		old = MemoryContextSwitchTo(cxt);
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			bool		isnull;
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			int32		qid = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));

			if (DatumGetBool(SPI_getbinval(tup, desc, 2, &isnull)))
				qids = lappend_int(qids, qid);
			if (DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull)))
				late_qids = lappend_int(late_qids, qid);
		}
		MemoryContextSwitchTo(old);
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		/* no extension (dropped), or a catalog without emit_to: nothing to do */
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		ok = false;
		qids = late_qids = NIL;
	}
	PG_END_TRY();

	foreach(lc, qids)
		if (!lost_query(db, lfirst_int(lc)))
			ok &= run_query(db, lfirst_int(lc), emit_some, cxt,
							"stream_state: could not emit the closed windows of continuous query %d: %s",
							"Its closed windows stay in state until they can be emitted; it is tried again every second.");
	foreach(lc, late_qids)
		if (!lost_query(db, lfirst_int(lc)))
			ok &= run_query(db, lfirst_int(lc), late_some, cxt,
							"stream_state: could not write the late groups of continuous query %d: %s",
							"They stay in state until they can be written; it is tried again every second.");
	pgstat_report_activity(STATE_IDLE, NULL);
	SpinLockAcquire(&db->mutex);
	db->emit_done = ok;
	SpinLockRelease(&db->mutex);
	if (db->worker_latch != NULL)
		SetLatch(db->worker_latch);
	proc_exit(0);
}
