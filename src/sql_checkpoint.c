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

#include "access/xlog.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "replication/slot.h"
#include "utils/builtins.h"
#include "utils/pg_lsn.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "checkpoint.h"

PG_FUNCTION_INFO_V1(stream_state_checkpoint);
PG_FUNCTION_INFO_V1(stream_state_checkpoints);

static void
check_target(const char *target)
{
	if (strcmp(target, "file") == 0)
		return;
	if (strcmp(target, "table") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("checkpoint target \"table\" is not supported yet"),
				 errhint("Use the target \"file\".")));
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown checkpoint target \"%s\"", target),
			 errhint("The target is \"file\".")));
}

Datum
stream_state_checkpoint(PG_FUNCTION_ARGS)
{
	StreamStateDb *db;
	char		slot[NAMEDATALEN];
	uint32		request;
	int64		id;
	char		error[256];
	TimestampTz worker_gone_since = 0;

	sstate_shmem_check();
	if (!PG_ARGISNULL(0))
		check_target(text_to_cstring(PG_GETARG_TEXT_PP(0)));

	sstate_slot_name(MyDatabaseId, slot);
	db = sstate_db_find(MyDatabaseId);
	if (db == NULL || SearchNamedReplicationSlot(slot, true) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("this database has no stream_state state to checkpoint"),
				 errhint("Create a continuous query first.")));

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
	SpinLockRelease(&db->mutex);
	if (db->worker_latch != NULL)
		SetLatch(db->worker_latch);

	for (;;)
	{
		bool		done;

		SpinLockAcquire(&db->mutex);
		done = (db->ckpt_answered == request);
		id = db->ckpt_result_id;
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
		Datum		values[11];
		bool		nulls[11] = {0};

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
		values[10] = CStringGetTextDatum(ci->status);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
