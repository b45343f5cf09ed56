/*-------------------------------------------------------------------------
 *
 * sql_api.c
 *	  SQL-callable functions of stream_state.
 *
 * Definitions: create_query validates its arguments and the caller's
 * privileges, then writes the catalog row and the trigger as the extension
 * owner (the catalog is not writable by others), logs the CREATE message and
 * counts the rows already in the table into the same transaction's delta.
 * It holds SHARE ROW EXCLUSIVE on the table from validation to commit, so no
 * insert falls between the backfill's snapshot and the trigger.
 *
 * Reads: every read first waits as stream_state.read_consistency says, then
 * looks at the shared state table under db->lock (shared).
 *
 * IDENTIFICATION
 *	  src/sql_api.c
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/nbtree.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/xlog.h"
#include "access/xlog_internal.h"
#include "catalog/dependency.h"
#include "common/hashfn.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_opclass.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "executor/executor.h"
#include "executor/tuptable.h"
#include "optimizer/optimizer.h"
#include "nodes/makefuncs.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "parser/parse_func.h"
#include "pgstat.h"
#include "replication/slot.h"
#include "storage/condition_variable.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/regproc.h"
#include "utils/ruleutils.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/pg_lsn.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "capture.h"
#include "cq_capture.h"
#include "delta.h"
#include "query.h"
#include "rocks.h"
#include "store.h"
#include "tcop/utility.h"
#include "window.h"

PG_FUNCTION_INFO_V1(stream_state_create_query);
PG_FUNCTION_INFO_V1(stream_state_drop_query);
PG_FUNCTION_INFO_V1(stream_state_grant_read);
PG_FUNCTION_INFO_V1(stream_state_revoke_read);
PG_FUNCTION_INFO_V1(stream_state_window_count);
PG_FUNCTION_INFO_V1(stream_state_window_counts);
PG_FUNCTION_INFO_V1(stream_state_wait_applied);
PG_FUNCTION_INFO_V1(stream_state_query_stats);
PG_FUNCTION_INFO_V1(stream_state_state);
PG_FUNCTION_INFO_V1(stream_state_rebuild);
PG_FUNCTION_INFO_V1(stream_state_worker_status);
PG_FUNCTION_INFO_V1(stream_state_rocksdb_stats);
PG_FUNCTION_INFO_V1(stream_state_set_backend);
PG_FUNCTION_INFO_V1(stream_state_alter_query);
PG_FUNCTION_INFO_V1(stream_state_window_result);
PG_FUNCTION_INFO_V1(stream_state_session_result);
PG_FUNCTION_INFO_V1(stream_state_late_result);

/* This backend's mapping of its database's state table */
static StreamStateStore *read_table = NULL;
static uint32 read_generation = 0;
static StreamStateDb *read_db_slot = NULL;

static StreamStateDb *read_begin(bool wait, int32 qid);
static bool database_has_slot(void);
static void read_end(StreamStateDb *db);
static StreamStateQuery *db_query(StreamStateDb *db, int32 qid);
static void check_key_type(Oid keytype, const char *column);

/* ---------------------------------------------------------------------
 * Waiting for the worker
 * ---------------------------------------------------------------------
 */

/*
 * Wait until this database's worker has applied WAL up to lsn and finished
 * restoring.  Returns false on timeout, or raises the error if asked.
 */
/*
 * The end of the WAL inserted so far.  GetXLogInsertRecPtr() gives the
 * position after the page header when the next record will start a new
 * page, and that page may not exist yet, so XLogFlush() of it fails: step
 * back to the page boundary, where the last record ended.
 */
static XLogRecPtr
inserted_end(void)
{
	XLogRecPtr	p = GetXLogInsertRecPtr();

	if (XLogSegmentOffset(p, wal_segment_size) == SizeOfXLogLongPHD)
		return p - SizeOfXLogLongPHD;
	if (p % XLOG_BLCKSZ == SizeOfXLogShortPHD &&
		XLogSegmentOffset(p, wal_segment_size) > XLOG_BLCKSZ)
		return p - SizeOfXLogShortPHD;
	return p;
}

/*
 * How far this database's state is applied: the worker's position, or the
 * commit a paused query stopped at if that is earlier (all queries, just
 * query qid when it is positive, none when it is negative).  Caller need not hold db->lock: a stale value
 * only makes a wait a little longer.
 */
static XLogRecPtr
effective_applied(StreamStateDb *db, int32 qid)
{
	XLogRecPtr	result = pg_atomic_read_u64(&db->applied_lsn);
	StreamStateQuery *qs = sstate_db_queries(db);
	int			i;

	for (i = 0; i < sstate_shared->max_queries; i++)
	{
		StreamStateQuery *q = &qs[i];

		if (qid >= 0 && (q->status == SSQ_PAUSED_MEMORY || q->status == SSQ_PAUSED_DISK) &&
			(qid == 0 || q->def.id == qid) &&
			q->paused_lsn < result)
			result = q->paused_lsn;
	}
	return result;
}

/*
 * Wait until this database's worker has applied WAL up to lsn (for query
 * qid, or all queries when 0) and finished restoring.  Returns false on
 * timeout, or raises the error if asked.
 */
static bool
wait_applied_internal(XLogRecPtr lsn, int32 qid, int timeout_ms, bool error_on_timeout)
{
	TimestampTz deadline;
	StreamStateDb *db = NULL;
	bool		result = false;
	bool		paused = false;

	if (!RecoveryInProgress() && lsn > GetFlushRecPtr(NULL))
		XLogFlush(Min(lsn, inserted_end()));

	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	for (;;)
	{
		long		remaining;

		if (db == NULL || db->dboid != MyDatabaseId)
			db = sstate_db_find(MyDatabaseId);
		if (db != NULL)
		{
			Latch	   *latch = db->worker_latch;
			XLogRecPtr	applied = effective_applied(db, qid);

			if (db->worker_state == SSW_RUNNING && applied >= lsn)
			{
				result = true;
				break;
			}
			paused = (applied < pg_atomic_read_u64(&db->applied_lsn));
			if (latch != NULL)
				SetLatch(latch);
		}

		remaining = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		if (remaining <= 0)
			break;
		if (db != NULL)
			(void) ConditionVariableTimedSleep(&db->applied_cv, Min(remaining, 100),
											   PG_WAIT_EXTENSION);
		else
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 Min(remaining, 100), PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
		CHECK_FOR_INTERRUPTS();
	}
	ConditionVariableCancelSleep();

	if (!result && error_on_timeout)
	{
		const char *why;

		if (db == NULL || db->worker_state == SSW_NONE)
			why = "The stream_state worker of this database is not running.";
		else if (db->worker_state != SSW_RUNNING)
			why = "The stream_state worker of this database is still restoring its state from WAL.";
		else if (paused)
			why = "The query is paused because stream_state.memory_limit is reached; see stream_state.queries.";
		else
			why = "The stream_state worker of this database has not caught up yet.";
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("timed out waiting for stream_state to apply WAL up to %X/%X",
						LSN_FORMAT_ARGS(lsn)),
				 errdetail("%s", why),
				 errhint("Raise stream_state.read_timeout, or set stream_state.read_consistency to \"none\" to read without waiting.")));
	}
	return result;
}

void
sstate_wait_applied(XLogRecPtr lsn, int timeout_ms, bool error_on_timeout)
{
	(void) wait_applied_internal(lsn, 0, timeout_ms, error_on_timeout);
}

/*
 * Wait until the worker has applied (for query qid: a paused other query
 * does not hold it back) everything in the WAL inserted so far.
 */
void
sstate_wait_applied_now(int32 qid, int timeout_ms, bool error_on_timeout)
{
	(void) wait_applied_internal(inserted_end(), qid, timeout_ms, error_on_timeout);
}

static bool
database_has_slot(void)
{
	char		name[NAMEDATALEN];

	sstate_slot_name(MyDatabaseId, name);
	return SearchNamedReplicationSlot(name, true) != NULL;
}

/*
 * Wait as read_consistency says, then return this database's slot with its
 * lock held shared and read_table attached, or NULL if the database has no
 * state yet.
 */
static StreamStateDb *
read_begin(bool wait, int32 qid)
{
	StreamStateDb *db;

	db = sstate_db_find(MyDatabaseId);
	if (wait && sstate_read_consistency != SSTATE_READ_NONE)
	{
		XLogRecPtr	target = InvalidXLogRecPtr;

		if (sstate_read_consistency == SSTATE_READ_SESSION)
			target = sstate_capture_last_commit();
		else
			target = inserted_end();

		/*
		 * A database without a registry entry and without a slot has no
		 * state to wait for; one with a slot is waiting for its worker.
		 */
		if (db != NULL || database_has_slot())
		{
			wait_applied_internal(target, qid, sstate_read_timeout_ms, true);
			db = sstate_db_find(MyDatabaseId);
		}
	}
	if (db == NULL)
		return NULL;
	LWLockAcquire(&db->lock, LW_SHARED);
	if (!DsaPointerIsValid(db->table))
	{
		LWLockRelease(&db->lock);
		return NULL;
	}
	if (read_table == NULL || read_db_slot != db || read_generation != db->generation)
	{
		if (read_table != NULL)
			sstate_store_detach(read_table);
		read_table = NULL;
		read_table = sstate_store_attach(sstate_area(), db->table);
		read_generation = db->generation;
		read_db_slot = db;
	}
	return db;
}

static void
read_end(StreamStateDb *db)
{
	if (db != NULL)
		LWLockRelease(&db->lock);
}

static StreamStateQuery *
db_query(StreamStateDb *db, int32 qid)
{
	StreamStateQuery *qs = sstate_db_queries(db);
	int			i;

	for (i = 0; i < sstate_shared->max_queries; i++)
		if (qs[i].status != SSQ_FREE && qs[i].def.id == qid)
			return &qs[i];
	return NULL;
}

/* ---------------------------------------------------------------------
 * Definitions
 * ---------------------------------------------------------------------
 */

const char *
sstate_backend_name(uint8 backend)
{
	return backend == SSB_ROCKSDB ? "rocksdb" : "memory";
}

uint8
sstate_backend_from_text(const char *name)
{
	if (strcmp(name, "memory") == 0)
		return SSB_MEMORY;
	if (strcmp(name, "rocksdb") == 0)
		return SSB_ROCKSDB;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown backend \"%s\"", name),
			 errhint("Use 'memory' or 'rocksdb'.")));
	return SSB_MEMORY;			/* keep the compiler quiet */
}

/*
 * A key type needs a default hash operator class: its hash function and
 * equality define which keys are the same (see sstate_key_image).
 */
static void
check_key_type(Oid keytype, const char *column)
{
	if (!OidIsValid(GetDefaultOpClass(keytype, HASH_AM_OID)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("key column \"%s\" of type %s has no default hash operator class",
						column, format_type_be(keytype)),
				 errhint("Use a key column of a type that can be grouped by hashing, such as bigint, text or uuid.")));
}

static AttrNumber
lookup_column(Relation rel, const char *column, Oid *type, Oid *collation)
{
	AttrNumber	attnum = get_attnum(RelationGetRelid(rel), column);

	if (attnum == InvalidAttrNumber || attnum < 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of relation \"%s\" does not exist",
						column, RelationGetRelationName(rel))));
	*type = TupleDescAttr(RelationGetDescr(rel), attnum - 1)->atttypid;
	*collation = TupleDescAttr(RelationGetDescr(rel), attnum - 1)->attcollation;
	return attnum;
}

static void
check_column_select(Relation rel, AttrNumber attnum, const char *column)
{
	/* table-level SELECT covers every column; column ACLs add to it */
	if (pg_class_aclcheck(RelationGetRelid(rel), GetUserId(), ACL_SELECT) != ACLCHECK_OK &&
		pg_attribute_aclcheck(RelationGetRelid(rel), attnum, GetUserId(),
							  ACL_SELECT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for column \"%s\" of relation \"%s\"",
						column, RelationGetRelationName(rel)),
				 errdetail("Defining a continuous query needs SELECT on the columns it reads.")));
}

/*
 * Catalog writes and trigger DDL run as the owner of the extension's schema
 * (the catalog is not writable by others), with search_path pinned to
 * pg_catalog, so no object of the caller's can be picked up while running
 * with the owner's rights.
 */
typedef struct OwnerContext
{
	Oid			save_userid;
	int			save_sec;
	int			save_nestlevel;
} OwnerContext;

static void
owner_begin(OwnerContext *oc)
{
	GetUserIdAndSecContext(&oc->save_userid, &oc->save_sec);
	SetUserIdAndSecContext(sstate_extension_owner(),
						   oc->save_sec | SECURITY_LOCAL_USERID_CHANGE);
	oc->save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

static void
owner_end(OwnerContext *oc)
{
	SPI_finish();
	AtEOXact_GUC(false, oc->save_nestlevel);
	SetUserIdAndSecContext(oc->save_userid, oc->save_sec);
}

/*
 * Make a trigger of ours depend automatically, not normally, on its
 * function: DROP EXTENSION then takes it along without CASCADE.
 */
static void
trigger_depend_auto(Oid trigger_oid, const char *funcname)
{
	ObjectAddress trigobj;
	ObjectAddress funcobj;
	List	   *fname = list_make2(makeString("stream_state"), makeString(pstrdup(funcname)));
	Oid			fn = LookupFuncName(fname, 0, NULL, false);

	deleteDependencyRecordsForSpecific(TriggerRelationId, trigger_oid,
									   DEPENDENCY_NORMAL, ProcedureRelationId, fn);
	ObjectAddressSet(trigobj, TriggerRelationId, trigger_oid);
	ObjectAddressSet(funcobj, ProcedureRelationId, fn);
	recordDependencyOn(&trigobj, &funcobj, DEPENDENCY_AUTO);
}

/* create_query is creating a capture trigger itself (not a restore) */
static bool own_trigger_ddl = false;
static ProcessUtility_hook_type prev_process_utility = NULL;

static void
spi_exec(const char *sql, int expected)
{
	int			ret = SPI_execute(sql, false, 0);

	if (ret != expected)
		elog(ERROR, "stream_state: \"%s\" failed: %s", sql, SPI_result_code_string(ret));
}

/* The CREATE message that tells the worker about a query. */
static void
log_definition(const StreamStateQueryInfo *info)
{
	StringInfoData msg;

	initStringInfo(&msg);
	sstate_delta_begin(&msg, SSM_CREATE);
	sstate_delta_put_def(&msg, &info->def);
	sstate_capture_log_ddl(msg.data, msg.len);
	pfree(msg.data);
}

/*
 * Count the rows of the source into this transaction's delta.  Caller holds
 * a lock on the source that conflicts with inserts, and is connected to SPI
 * as the extension owner.
 */
static void
backfill(const StreamStateQueryInfo *info, Oid relid, const char *key_column,
		 const char *time_column)
{
	StreamStateCapture cap;
	Portal		portal;
	MemoryContext rowcxt;
	StringInfoData sql;

	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT %s, %s FROM %s",
					 quote_identifier(key_column),
					 time_column ? quote_identifier(time_column) : "NULL::timestamptz",
					 quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
												get_rel_name(relid)));

	/*
	 * A snapshot taken now, with the lock held: the statement's own snapshot
	 * (or a repeatable-read transaction's) can predate inserts that committed
	 * while we waited for the lock, and those fired no trigger of ours.
	 */
	PushActiveSnapshot(GetLatestSnapshot());
	portal = SPI_cursor_open_with_args(NULL, sql.data, 0, NULL, NULL, NULL, true, 0);
	sstate_capture_begin(&cap, info);
	/* detoasted keys and classed key images, per batch */
	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "stream_state backfill rows",
								   ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		uint64		i;
		MemoryContext old;

		SPI_cursor_fetch(portal, true, 10000);
		if (SPI_processed == 0)
			break;
		old = MemoryContextSwitchTo(rowcxt);
		for (i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			bool		knull;
			bool		tnull;
			Datum		k = SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &knull);
			Datum		t = SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &tnull);

			sstate_capture_row(&cap, k, knull, t, tnull);
		}
		MemoryContextSwitchTo(old);
		MemoryContextReset(rowcxt);
		SPI_freetuptable(SPI_tuptable);
	}
	MemoryContextDelete(rowcxt);
	SPI_cursor_close(portal);
	PopActiveSnapshot();
	pfree(sql.data);
}

/*
 * The arguments of create_query's two forms that are the same: window_size,
 * slide and lateness (4-6) and the backend (7; the 0.3.0 function has no
 * such argument): into info, the intervals for the catalog row.
 */
static void
window_args(FunctionCallInfo fcinfo, StreamStateQueryInfo *info, Interval **window_iv,
			Interval **slide_iv, Interval **lateness_iv)
{
	if (PG_ARGISNULL(4))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("window_size must be a positive interval")));
	*window_iv = PG_GETARG_INTERVAL_P(4);
	info->def.window_us = sstate_interval_us(*window_iv, "window_size", false);
	*slide_iv = PG_ARGISNULL(5) ? *window_iv : PG_GETARG_INTERVAL_P(5);
	info->def.slide_us = sstate_interval_us(*slide_iv, "slide", false);
	if (info->def.slide_us > info->def.window_us)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("slide must not be larger than window_size"),
				 errdetail("Events between windows would belong to no window.")));
	*lateness_iv = PG_ARGISNULL(6) ? palloc0(sizeof(Interval)) : PG_GETARG_INTERVAL_P(6);
	info->def.lateness_us = sstate_interval_us(*lateness_iv, "lateness", true);
	info->def.pane_us = sstate_gcd(info->def.window_us, info->def.slide_us);
	info->def.backend = (uint8) sstate_default_backend;
	if (PG_NARGS() > 7 && !PG_ARGISNULL(7))
		info->def.backend = sstate_backend_from_text(text_to_cstring(PG_GETARG_TEXT_PP(7)));
}

/* Is there room for one more query in this database?  (SPI connected) */
static void
check_room(void)
{
	bool		isnull;

	spi_exec("SELECT count(*) FROM stream_state.query_def", SPI_OK_SELECT);
	if (DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
									&isnull)) >= sstate_shared->max_queries)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("too many continuous queries in this database"),
				 errdetail("stream_state.max_queries is %d.", sstate_shared->max_queries),
				 errhint("Drop a query, or increase stream_state.max_queries and restart the server.")));
}

/*
 * Query id's triggers on relid (relname, quoted): the capture trigger,
 * whose oid is returned, and the one that empties the state on TRUNCATE.
 * As the extension owner (SPI connected).
 */
static Oid
create_triggers(Oid relid, const char *relname, int32 id)
{
	StringInfoData sql;
	char		trigname[NAMEDATALEN];
	Oid			capture_oid;

	initStringInfo(&sql);
	snprintf(trigname, sizeof(trigname), "stream_state_q%d", id);
	appendStringInfo(&sql,
					 "CREATE TRIGGER %s AFTER INSERT ON %s REFERENCING NEW TABLE AS stream_state_new "
					 "FOR EACH STATEMENT EXECUTE FUNCTION stream_state._capture('%d')",
					 quote_identifier(trigname), relname, id);
	own_trigger_ddl = true;
	PG_TRY();
	{
		spi_exec(sql.data, SPI_OK_UTILITY);
	}
	PG_FINALLY();
	{
		own_trigger_ddl = false;
	}
	PG_END_TRY();
	capture_oid = get_trigger_oid(relid, trigname, false);
	trigger_depend_auto(capture_oid, "_capture");

	/* TRUNCATE empties the table, and so the query's state */
	snprintf(trigname, sizeof(trigname), "stream_state_t%d", id);
	resetStringInfo(&sql);
	appendStringInfo(&sql,
					 "CREATE TRIGGER %s AFTER TRUNCATE ON %s "
					 "FOR EACH STATEMENT EXECUTE FUNCTION stream_state._truncate('%d')",
					 quote_identifier(trigname), relname, id);
	spi_exec(sql.data, SPI_OK_UTILITY);
	trigger_depend_auto(get_trigger_oid(relid, trigname, false), "_truncate");
	CommandCounterIncrement();
	return capture_oid;
}

/* The table text names, if it is a (qualified) name of one; else InvalidOid */
static Oid
table_named(const char *text)
{
	for (const char *p = text; *p; p++)
		if (!(isalnum((unsigned char) *p) || *p == '_' || *p == '$' || *p == '.' ||
			  *p == '"' || IS_HIGHBIT_SET(*p)))
			return InvalidOid;	/* a query, not a name */
	return RangeVarGetRelid(makeRangeVarFromNameList(stringToQualifiedNameList(text)),
							NoLock, true);
}

/* read a table through SPI's cursor of create_query_sql */
static bool
next_cursor_row(void *arg, TupleTableSlot *slot)
{
	Portal		portal = (Portal) arg;

	SPI_cursor_fetch(portal, true, 1);
	if (SPI_processed == 0)
		return false;
	ExecStoreHeapTuple(SPI_copytuple(SPI_tuptable->vals[0]), slot, true);
	SPI_freetuptable(SPI_tuptable);
	return true;
}

/* The time column of a query: its number and type, which must be a time */
static void
time_column_arg(Relation rel, const char *time_column, StreamStateQueryInfo *info)
{
	Oid			time_collation;

	info->time_attnum = lookup_column(rel, time_column, &info->time_type, &time_collation);
	if (info->time_type != TIMESTAMPTZOID && info->time_type != TIMESTAMPOID &&
		info->time_type != DATEOID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("time column \"%s\" must be of type timestamp with time zone, timestamp without time zone or date",
						time_column),
				 errdetail("Column \"%s\" has type %s.", time_column,
						   format_type_be(info->time_type))));
}

/*
 * The qualified, quoted name of the table target names, existing or to be
 * made; NULL for NULL or ''.
 */
static char *
target_name(const char *target)
{
	RangeVar   *rv;
	Oid			relid;

	if (target == NULL || target[0] == '\0')
		return NULL;
	rv = makeRangeVarFromNameList(stringToQualifiedNameList(target));
	relid = RangeVarGetRelid(rv, NoLock, true);
	if (OidIsValid(relid))
		return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
										  get_rel_name(relid));
	return quote_qualified_identifier(get_namespace_name(RangeVarGetCreationNamespace(rv)),
									  rv->relname);
}

/* emit_to and late_to name two tables */
static void
check_two_targets(const char *emit_to, const char *late_to)
{
	char	   *e = target_name(emit_to);
	char	   *l = target_name(late_to);

	if (e != NULL && l != NULL && strcmp(e, l) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("emit_to and late_to must be different tables"),
				 errdetail("Both name %s.", e)));
}

/*
 * The leading columns of an emit_to table (closed windows) and of a late_to
 * table (late groups), before the query's own
 */
static const char *const emit_columns[] = {"window_start", "window_end"};
static const Oid emit_types[] = {TIMESTAMPTZOID, TIMESTAMPTZOID};
static const char *const late_columns[] = {"commit_lsn", "committed_at", "events_from", "events_to"};
static const Oid late_types[] = {LSNOID, TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID};

/*
 * The table emit_to (late: late_to) names, for a query of analysis an: made
 * (as the caller, in the schema the name gives or the current one) with the
 * leading columns above and the query's columns when it does not exist;
 * checked to have those columns, with those types, when it does.  Returns
 * its name, qualified and quoted.
 */
static char *
emit_target(StreamStateCqAnalysis *an, const char *target, bool late)
{
	RangeVar   *rv = makeRangeVarFromNameList(stringToQualifiedNameList(target));
	Oid			relid = RangeVarGetRelid(rv, AccessShareLock, true);
	Oid			nsp;
	StringInfoData q;
	const char *option = late ? "late_to" : "emit_to";
	const char *const *lead = late ? late_columns : emit_columns;
	const Oid  *lead_types = late ? late_types : emit_types;
	int			nlead = late ? lengthof(late_columns) : lengthof(emit_columns);

	if (OidIsValid(relid))
	{
		Relation	rel = relation_open(relid, NoLock);
		TupleDesc	desc = RelationGetDescr(rel);
		const char *relname = RelationGetRelationName(rel);

		if (rel->rd_rel->relkind != RELKIND_RELATION &&
			rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
			ereport(ERROR,
					(errcode(ERRCODE_WRONG_OBJECT_TYPE),
					 errmsg("%s \"%s\" is not a table", option, target),
					 errdetail("%s are inserted into a plain or partitioned table.",
							   late ? "Late groups" : "Closed windows")));
		for (int c = -nlead; c < an->ncolumns; c++)
		{
			const char *col = c < 0 ? lead[c + nlead] : an->columns[c].name;
			Oid			type = c < 0 ? lead_types[c + nlead] : an->columns[c].type;
			AttrNumber	att = InvalidAttrNumber;

			for (int i = 0; i < desc->natts; i++)
				if (!TupleDescAttr(desc, i)->attisdropped &&
					strcmp(NameStr(TupleDescAttr(desc, i)->attname), col) == 0)
					att = i + 1;
			if (att == InvalidAttrNumber)
				ereport(ERROR,
						(errcode(ERRCODE_UNDEFINED_COLUMN),
						 errmsg("%s table \"%s\" has no column \"%s\"", option, relname, col),
						 late ?
						 errdetail("Late groups are inserted as commit_lsn, committed_at, events_from, events_to and the query's columns.") :
						 errdetail("Closed windows are inserted as window_start, window_end and the query's columns."),
						 errhint("Add the column (of type %s), or name a table that does not exist yet and create_query makes it.",
								 format_type_be(type))));
			if (TupleDescAttr(desc, att - 1)->atttypid != type)
				ereport(ERROR,
						(errcode(ERRCODE_DATATYPE_MISMATCH),
						 errmsg("column \"%s\" of %s table \"%s\" has type %s, not %s",
								col, option, relname, format_type_be(TupleDescAttr(desc, att - 1)->atttypid),
								format_type_be(type))));
		}
		if (pg_class_aclcheck(relid, GetUserId(), ACL_INSERT) != ACLCHECK_OK)
			aclcheck_error(ACLCHECK_NO_PRIV, get_relkind_objtype(rel->rd_rel->relkind), relname);
		nsp = RelationGetNamespace(rel);
		relation_close(rel, NoLock);
		return quote_qualified_identifier(get_namespace_name(nsp), get_rel_name(relid));
	}

	/* a new table, the caller's */
	nsp = RangeVarGetCreationNamespace(rv);
	initStringInfo(&q);
	appendStringInfo(&q, "CREATE TABLE %s (",
					 quote_qualified_identifier(get_namespace_name(nsp), rv->relname));
	for (int c = 0; c < nlead; c++)
		appendStringInfo(&q, "%s%s %s NOT NULL", c > 0 ? ", " : "", lead[c],
						 format_type_be(lead_types[c]));
	for (int c = 0; c < an->ncolumns; c++)
		appendStringInfo(&q, ", %s %s", quote_identifier(an->columns[c].name),
						 sstate_cq_column_type_sql(an, c));
	appendStringInfoChar(&q, ')');
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute(q.data, false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "could not create table %s", rv->relname);
	SPI_finish();
	CommandCounterIncrement();
	return quote_qualified_identifier(get_namespace_name(nsp), rv->relname);
}

/*
 * The definition of a query in SQL, with what the worker needs of its
 * aggregates, into the WAL; then the rows of its source already there,
 * folded in with a snapshot taken now (create_query, and a dump's restore,
 * which resets what the worker may hold of it first, as for a count).
 * Rows are read with every column at its number, dropped ones as NULLs, so
 * that the analysis's column numbers apply; from the table and its
 * partitions or children, as the windowed count's backfill reads them.
 */
static void
sql_define_and_backfill(StreamStateQueryInfo *info, StreamStateCqAnalysis *an, Relation rel,
						bool reset)
{
	StreamStateCqWorkerAgg *aggs = palloc0(sizeof(StreamStateCqWorkerAgg) * Max(an->naggs, 1));
	StringInfoData q;
	TupleDesc	desc = RelationGetDescr(rel);
	Portal		portal;
	TupleTableSlot *slot;

	for (int j = 0; j < an->naggs; j++)
		sstate_cq_worker_agg(&an->aggs[j], &aggs[j]);
	initStringInfo(&q);
	sstate_delta_begin(&q, SSM_CREATE);
	sstate_delta_put_def(&q, &info->def);
	sstate_delta_put_layout(&q, an->naggs, aggs, sizeof(StreamStateCqWorkerAgg));
	sstate_capture_log_ddl(q.data, q.len);
	if (reset)
		sstate_capture_reset(info->id);

	resetStringInfo(&q);
	appendStringInfoString(&q, "SELECT ");
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (i > 0)
			appendStringInfoString(&q, ", ");
		if (att->attisdropped)
			appendStringInfoString(&q, "NULL::pg_catalog.int4");
		else
			appendStringInfoString(&q, quote_identifier(NameStr(att->attname)));
	}
	appendStringInfo(&q, " FROM %s",
					 quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
												RelationGetRelationName(rel)));
	slot = MakeSingleTupleTableSlot(desc, &TTSOpsHeapTuple);
	PushActiveSnapshot(GetLatestSnapshot());
	portal = SPI_cursor_open_with_args(NULL, q.data, 0, NULL, NULL, NULL, true, 0);
	sstate_cq_capture_rows(info, slot, next_cursor_row, portal);
	SPI_cursor_close(portal);
	PopActiveSnapshot();
	ExecDropSingleTupleTableSlot(slot);
}

/*
 * create_query of a query in SQL (0.5.0): analysed (cq_analyze.c), then as
 * for a table: catalog row, triggers, definition (with its aggregates, for
 * the worker), the rows already there, and the typed view.
 */
static Datum
create_query_sql(FunctionCallInfo fcinfo, const char *name, const char *sql)
{
	StreamStateCqAnalysis *an;
	Relation	rel;
	StreamStateQueryInfo info;
	char	   *time_column = NULL;
	Interval   *window_iv;
	Interval   *slide_iv;
	Interval   *lateness_iv;
	OwnerContext oc;
	StringInfoData q;
	const char *relname;
	const char *view;
	char	   *emit_to = NULL;
	char	   *late_to = NULL;
	Interval   *retention_iv = NULL;
	int64		info_retention_us = 0;

	if (!PG_ARGISNULL(3))
		time_column = text_to_cstring(PG_GETARG_TEXT_PP(3));
	if (PG_NARGS() > 9 && !PG_ARGISNULL(9))
	{
		retention_iv = PG_GETARG_INTERVAL_P(9);
		info_retention_us = sstate_interval_us(retention_iv, "retention", true);
		if (info_retention_us == 0)
			retention_iv = NULL;	/* no retention */
	}
	if (PG_NARGS() > 8 && !PG_ARGISNULL(8))
	{
		emit_to = text_to_cstring(PG_GETARG_TEXT_PP(8));
		if (emit_to[0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("emit_to must not be empty")));
	}
	if (PG_NARGS() > 11 && !PG_ARGISNULL(11))
	{
		late_to = text_to_cstring(PG_GETARG_TEXT_PP(11));
		if (late_to[0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("late_to must not be empty")));
	}
	if (wal_level < WAL_LEVEL_REPLICA)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("stream_state requires wal_level \"replica\" or higher"),
				 errhint("Set wal_level to \"replica\" and restart the server.")));
	an = sstate_cq_analyze(sql, name);
	rel = relation_open(an->source, ShareRowExclusiveLock);

	/*
	 * Stored as PostgreSQL deparses it with every name qualified, so that it
	 * means the same under any search_path (the capture trigger's, a
	 * reader's).
	 */
	{
		int			nest = NewGUCNestLevel();

		(void) set_config_option("search_path", "pg_catalog", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		sql = pg_get_querydef(copyObject(an->query), false);
		AtEOXact_GUC(true, nest);
	}

	memset(&info, 0, sizeof(info));
	strlcpy(info.name, name, NAMEDATALEN);
	info.source = an->source;
	info.query_text = pstrdup(sql);
	if (time_column != NULL)
	{
		time_column_arg(rel, time_column, &info);
		check_column_select(rel, info.time_attnum, time_column);
	}
	if (PG_NARGS() > 10 && !PG_ARGISNULL(10))
	{
		/* session windows: window_size, slide and pane are the gap */
		if (!PG_ARGISNULL(4) || !PG_ARGISNULL(5))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("give window_size (and slide) or session_gap, not both")));
		if (retention_iv != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("retention does not apply to session windows"),
					 errdetail("A session ends, and leaves state, session_gap after its key's last event.")));
		window_iv = PG_GETARG_INTERVAL_P(10);
		slide_iv = window_iv;
		info.def.session_gap_us = sstate_interval_us(window_iv, "session_gap", false);
		info.def.window_us = info.def.slide_us = info.def.pane_us = info.def.session_gap_us;
		lateness_iv = PG_ARGISNULL(6) ? palloc0(sizeof(Interval)) : PG_GETARG_INTERVAL_P(6);
		info.def.lateness_us = sstate_interval_us(lateness_iv, "lateness", true);
		info.def.backend = (uint8) sstate_default_backend;
		if (!PG_ARGISNULL(7))
			info.def.backend = sstate_backend_from_text(text_to_cstring(PG_GETARG_TEXT_PP(7)));
	}
	else
		window_args(fcinfo, &info, &window_iv, &slide_iv, &lateness_iv);
	for (int i = 0; i < an->nkeys; i++)
	{
		RegProcedure hashfn;

		if (!an->keys[i].classed)
			continue;
		/* equal values with other bytes: merged by reads, by hash and equality */
		if (info.def.session_gap_us > 0)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("session windows do not support GROUP BY keys of type %s yet",
							format_type_be(an->keys[i].type)),
					 errdetail("Equal values of this type (or collation) can differ in their bytes, and sessions are kept per byte image.")));
		if (!get_op_hash_functions(an->keys[i].eqop, &hashfn, NULL))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("continuous queries in SQL do not support GROUP BY keys of type %s",
							format_type_be(an->keys[i].type)),
					 errdetail("Equal values of this type can differ in their bytes, and it has no hash function.")));
	}
	if (pg_class_aclcheck(an->source, GetUserId(), ACL_TRIGGER) != ACLCHECK_OK)
		aclcheck_error(ACLCHECK_NO_PRIV, get_relkind_objtype(rel->rd_rel->relkind),
					   RelationGetRelationName(rel));
	if (sstate_query_by_name(name, true) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("continuous query \"%s\" already exists", name)));
	view = quote_qualified_identifier(get_namespace_name(RangeVarGetCreationNamespace(makeRangeVar(NULL, pstrdup(name), -1))),
									  name);
	check_two_targets(emit_to, late_to);
	if (emit_to != NULL)
		emit_to = emit_target(an, emit_to, false);
	if (late_to != NULL)
		late_to = emit_target(an, late_to, true);

	sstate_ensure_slot(MyDatabaseId);
	owner_begin(&oc);
	check_room();
	initStringInfo(&q);
	appendStringInfo(&q,
					 "INSERT INTO stream_state.query_def (name, source, time_column, time_attnum, time_type, "
					 "window_size, slide, lateness, owner, backend, query, view%s%s%s%s) "
					 "VALUES (%s, %u, %s, %s, %s, %s::interval, %s::interval, %s::interval, %u, %s, %s, %s%s%s%s%s) "
					 "RETURNING id",
					 emit_to ? ", emit_to" : "", retention_iv ? ", retention" : "",
					 info.def.session_gap_us > 0 ? ", session_gap" : "",
					 late_to ? ", late_to" : "",
					 quote_literal_cstr(name), an->source,
					 time_column ? quote_literal_cstr(time_column) : "NULL",
					 time_column ? psprintf("%d", info.time_attnum) : "NULL",
					 time_column ? psprintf("%u", info.time_type) : "NULL",
					 quote_literal_cstr(DatumGetCString(DirectFunctionCall1(interval_out, IntervalPGetDatum(window_iv)))),
					 quote_literal_cstr(DatumGetCString(DirectFunctionCall1(interval_out, IntervalPGetDatum(slide_iv)))),
					 quote_literal_cstr(DatumGetCString(DirectFunctionCall1(interval_out, IntervalPGetDatum(lateness_iv)))),
					 GetUserId(), quote_literal_cstr(sstate_backend_name(info.def.backend)),
					 quote_literal_cstr(sql), quote_literal_cstr(view),
					 emit_to ? psprintf(", %s", quote_literal_cstr(emit_to)) : "",
					 retention_iv ? psprintf(", %s::interval",
											 quote_literal_cstr(DatumGetCString(DirectFunctionCall1(interval_out,
																									IntervalPGetDatum(retention_iv))))) : "",
					 info.def.session_gap_us > 0 ? psprintf(", %s::interval",
															quote_literal_cstr(DatumGetCString(DirectFunctionCall1(interval_out,
																												   IntervalPGetDatum(window_iv))))) : "",
					 late_to ? psprintf(", %s", quote_literal_cstr(late_to)) : "");
	spi_exec(q.data, SPI_OK_INSERT_RETURNING);
	{
		bool		isnull;

		info.id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
											  &isnull));
	}
	if (emit_to != NULL)
	{
		/* nothing emitted yet */
		resetStringInfo(&q);
		appendStringInfo(&q, "INSERT INTO stream_state.emit_progress (query_id) VALUES (%d)", info.id);
		spi_exec(q.data, SPI_OK_INSERT);
		info.emit_to = emit_to;
	}
	if (late_to != NULL)
	{
		/* no late group written yet */
		resetStringInfo(&q);
		appendStringInfo(&q, "INSERT INTO stream_state.late_progress (query_id) VALUES (%d)", info.id);
		spi_exec(q.data, SPI_OK_INSERT);
		info.late_to = late_to;
	}

	relname = quote_qualified_identifier(get_namespace_name(get_rel_namespace(an->source)),
										 get_rel_name(an->source));
	(void) create_triggers(an->source, relname, info.id);

	{
		int64		gap = info.def.session_gap_us;

		sstate_query_fill(&info);
		info.def.session_gap_us = gap;
	}
	info.def.retention_us = info_retention_us;
	sql_define_and_backfill(&info, an, rel, false);
	owner_end(&oc);

	/* the typed view, the caller's, in the current schema */
	{
		StringInfoData cols;

		initStringInfo(&cols);
		for (int c = 0; c < an->ncolumns; c++)
			appendStringInfo(&cols, "%s%s %s", c > 0 ? ", " : "",
							 quote_identifier(an->columns[c].name),
							 sstate_cq_column_type_sql(an, c));
		resetStringInfo(&q);
		appendStringInfo(&q,
						 "CREATE VIEW %s AS SELECT * FROM stream_state.window_result(%s) AS t(%s)",
						 view, quote_literal_cstr(name), cols.data);
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		if (SPI_execute(q.data, false, 0) != SPI_OK_UTILITY)
			elog(ERROR, "could not create view %s", view);
		SPI_finish();
	}
	relation_close(rel, NoLock);
	PG_RETURN_VOID();
}

Datum
stream_state_create_query(PG_FUNCTION_ARGS)
{
	char	   *name;
	Oid			relid;
	char	   *key_column;
	char	   *time_column = NULL;
	Relation	rel;
	StreamStateQueryInfo info;
	Oid			key_collation;
	Interval   *window_iv;
	Interval   *slide_iv;
	Interval   *lateness_iv;
	OwnerContext oc;
	Oid			owner;
	Oid			trigger_oid;
	StringInfoData sql;
	const char *relname;

	sstate_shmem_check();

	if (PG_ARGISNULL(0) || VARSIZE_ANY_EXHDR(PG_GETARG_TEXT_PP(0)) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("query name must not be empty")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (strlen(name) >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("query name \"%s\" is too long", name),
				 errdetail("Query names are at most %d bytes long.", NAMEDATALEN - 1)));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("source must not be NULL")));
	if (get_fn_expr_argtype(fcinfo->flinfo, 1) == TEXTOID)
	{
		/* the text overload (0.5.0): a table with a key column, or a SELECT */
		char	   *src = text_to_cstring(PG_GETARG_TEXT_PP(1));

		/* a table's name without a key column: the error it always had */
		if (PG_ARGISNULL(2) && OidIsValid(table_named(src)))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("key_column must not be NULL")));
		if (PG_ARGISNULL(2))
			return create_query_sql(fcinfo, name, src);
		if (PG_NARGS() > 10 && !PG_ARGISNULL(10))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("session windows need a continuous query in SQL"),
					 errhint("Write the query as SQL: create_query(name, 'SELECT key, count(*) FROM table GROUP BY key', ...).")));
		if (PG_NARGS() > 9 && !PG_ARGISNULL(9))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("retention needs a continuous query in SQL"),
					 errdetail("A windowed count keeps a key only as long as its windows need it."),
					 errhint("Write the query as SQL: create_query(name, 'SELECT key, count(*) FROM table GROUP BY key', ...).")));
		if (PG_NARGS() > 11 && !PG_ARGISNULL(11))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("late_to needs a continuous query in SQL"),
					 errdetail("A windowed count counts its late events in stream_state.queries.late_events."),
					 errhint("Write the query as SQL: create_query(name, 'SELECT key, count(*) FROM table GROUP BY key', ...).")));
		if (PG_NARGS() > 8 && !PG_ARGISNULL(8))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("emit_to needs a continuous query in SQL"),
					 errdetail("A windowed count (a table with a key column) keeps no final rows to insert."),
					 errhint("Write the query as SQL: create_query(name, 'SELECT key, count(*) FROM table GROUP BY key', ...).")));
		relid = DatumGetObjectId(DirectFunctionCall1(regclassin, CStringGetDatum(src)));
	}
	else
		relid = PG_GETARG_OID(1);
	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("key_column must not be NULL")));
	key_column = text_to_cstring(PG_GETARG_TEXT_PP(2));
	if (!PG_ARGISNULL(3))
		time_column = text_to_cstring(PG_GETARG_TEXT_PP(3));

	if (wal_level < WAL_LEVEL_REPLICA)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("stream_state requires wal_level \"replica\" or higher"),
				 errhint("Set wal_level to \"replica\" and restart the server.")));

	/* lock out inserts until commit: backfill and trigger see the same rows */
	rel = relation_open(relid, ShareRowExclusiveLock);
	if (rel->rd_rel->relkind != RELKIND_RELATION &&
		rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", RelationGetRelationName(rel)),
				 errdetail("Continuous queries read plain or partitioned tables.")));

	memset(&info, 0, sizeof(info));
	strlcpy(info.name, name, NAMEDATALEN);
	info.source = relid;
	info.key_attnum = lookup_column(rel, key_column, &info.key_type, &key_collation);
	if (time_column != NULL)
		time_column_arg(rel, time_column, &info);
	check_key_type(info.key_type, key_column);

	window_args(fcinfo, &info, &window_iv, &slide_iv, &lateness_iv);

	/* privileges: read the columns, and be allowed to put a trigger there */
	check_column_select(rel, info.key_attnum, key_column);
	if (info.time_attnum > 0)
		check_column_select(rel, info.time_attnum, time_column);
	if (pg_class_aclcheck(relid, GetUserId(), ACL_TRIGGER) != ACLCHECK_OK)
		aclcheck_error(ACLCHECK_NO_PRIV, get_relkind_objtype(rel->rd_rel->relkind),
					   RelationGetRelationName(rel));

	if (sstate_query_by_name(name, true) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("continuous query \"%s\" already exists", name)));

	owner = GetUserId();

	/* the slot first: its restart position must precede our messages */
	sstate_ensure_slot(MyDatabaseId);

	/* catalog row and trigger, as the extension owner */
	owner_begin(&oc);

	check_room();

	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "INSERT INTO stream_state.query_def (name, source, key_column, key_attnum, key_type, "
					 "time_column, time_attnum, time_type, window_size, slide, lateness, owner, backend) "
					 "VALUES (%s, %u, %s, %d, %u, %s, %s, %s, %s::interval, %s::interval, %s::interval, %u, %s) "
					 "RETURNING id",
					 quote_literal_cstr(name), relid, quote_literal_cstr(key_column),
					 info.key_attnum, info.key_type,
					 time_column ? quote_literal_cstr(time_column) : "NULL",
					 time_column ? psprintf("%d", info.time_attnum) : "NULL",
					 time_column ? psprintf("%u", info.time_type) : "NULL",
					 quote_literal_cstr(DatumGetCString(DirectFunctionCall1(interval_out, IntervalPGetDatum(window_iv)))),
					 quote_literal_cstr(DatumGetCString(DirectFunctionCall1(interval_out, IntervalPGetDatum(slide_iv)))),
					 quote_literal_cstr(DatumGetCString(DirectFunctionCall1(interval_out, IntervalPGetDatum(lateness_iv)))),
					 owner, quote_literal_cstr(sstate_backend_name(info.def.backend)));
	spi_exec(sql.data, SPI_OK_INSERT_RETURNING);
	{
		bool		isnull;

		info.id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
											  SPI_tuptable->tupdesc, 1, &isnull));
	}

	relname = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
										 get_rel_name(relid));
	trigger_oid = create_triggers(relid, relname, info.id);

	/* the trigger goes when its columns would change under it */
	{
		ObjectAddress trigobj;
		ObjectAddress colobj;

		ObjectAddressSet(trigobj, TriggerRelationId, trigger_oid);
		ObjectAddressSubSet(colobj, RelationRelationId, relid, info.key_attnum);
		recordDependencyOn(&trigobj, &colobj, DEPENDENCY_NORMAL);
		if (info.time_attnum > 0)
		{
			ObjectAddressSubSet(colobj, RelationRelationId, relid, info.time_attnum);
			recordDependencyOn(&trigobj, &colobj, DEPENDENCY_NORMAL);
		}
		CommandCounterIncrement();
	}

	/* the definition message, then the rows already there */
	sstate_query_fill(&info);
	log_definition(&info);
	backfill(&info, relid, key_column, time_column);

	owner_end(&oc);
	relation_close(rel, NoLock);
	PG_RETURN_VOID();
}

Datum
stream_state_drop_query(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	StreamStateQueryInfo *info = sstate_query_by_name(name, false);
	int32		id = info->id;
	Oid			source = info->source;
	OwnerContext oc;
	StringInfoData sql;

	sstate_query_check_owner(info);

	owner_begin(&oc);

	initStringInfo(&sql);
	if (get_rel_name(source) != NULL)
	{
		/* dropping the trigger logs the DROP message (capture.c) */
		const char *relname = quote_qualified_identifier(get_namespace_name(get_rel_namespace(source)),
														 get_rel_name(source));

		appendStringInfo(&sql, "DROP TRIGGER IF EXISTS stream_state_q%d ON %s", id, relname);
		spi_exec(sql.data, SPI_OK_UTILITY);
		resetStringInfo(&sql);
		appendStringInfo(&sql, "DROP TRIGGER IF EXISTS stream_state_t%d ON %s", id, relname);
		spi_exec(sql.data, SPI_OK_UTILITY);
		resetStringInfo(&sql);
	}
	appendStringInfo(&sql, "DELETE FROM stream_state.query_def WHERE id = %d", id);
	spi_exec(sql.data, SPI_OK_DELETE);
	if (info->emit_to != NULL)
	{
		/* the table of its closed windows stays */
		resetStringInfo(&sql);
		appendStringInfo(&sql, "DELETE FROM stream_state.emit_progress WHERE query_id = %d", id);
		spi_exec(sql.data, SPI_OK_DELETE);
	}
	if (info->late_to != NULL)
	{
		/* and so does the table of its late groups */
		resetStringInfo(&sql);
		appendStringInfo(&sql, "DELETE FROM stream_state.late_progress WHERE query_id = %d", id);
		spi_exec(sql.data, SPI_OK_DELETE);
	}

	owner_end(&oc);
	if (info->view != NULL)
	{
		/* the typed view of a query in SQL goes with it */
		resetStringInfo(&sql);
		appendStringInfo(&sql, "DROP VIEW IF EXISTS %s", info->view);
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		SPI_execute(sql.data, false, 0);
		SPI_finish();
	}
	sstate_capture_note_ddl();
	PG_RETURN_VOID();
}

/*
 * set_backend(name, backend): move a live query's state to another
 * backend.  The catalog row changes and a SET_BACKEND message goes into the
 * WAL, in this transaction: the worker moves the state when it applies the
 * commit, between the commits before it (in the old backend) and those
 * after it (in the new one), so no event is lost or counted twice.  The
 * row lock on the definition orders concurrent calls.
 */
Datum
stream_state_set_backend(PG_FUNCTION_ARGS)
{
	char	   *name;
	char	   *bname;
	StreamStateQueryInfo *info;
	uint8		backend;
	int32		id;
	OwnerContext oc;
	StringInfoData sql;
	StringInfoData msg;
	char	   *current;

	sstate_shmem_check();
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("query name must not be NULL")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("backend must not be NULL"),
				 errhint("Use 'memory' or 'rocksdb'.")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	bname = text_to_cstring(PG_GETARG_TEXT_PP(1));
	info = sstate_query_by_name(name, false);
	sstate_query_check_owner(info);
	backend = sstate_backend_from_text(bname);
	id = info->id;

	owner_begin(&oc);
	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT backend FROM stream_state.query_def WHERE id = %d FOR UPDATE", id);
	spi_exec(sql.data, SPI_OK_SELECT);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("continuous query \"%s\" does not exist", name)));
	current = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	if (strcmp(current, sstate_backend_name(backend)) == 0)
	{
		owner_end(&oc);
		ereport(NOTICE,
				(errmsg("continuous query \"%s\" is already on backend %s, skipping",
						name, sstate_backend_name(backend))));
		PG_RETURN_VOID();
	}
	resetStringInfo(&sql);
	appendStringInfo(&sql, "UPDATE stream_state.query_def SET backend = %s WHERE id = %d",
					 quote_literal_cstr(sstate_backend_name(backend)), id);
	spi_exec(sql.data, SPI_OK_UPDATE);
	owner_end(&oc);

	initStringInfo(&msg);
	sstate_delta_begin(&msg, SSM_SET_BACKEND);
	sstate_delta_put_backend(&msg, id, backend);
	sstate_capture_log_ddl(msg.data, msg.len);
	PG_RETURN_VOID();
}

/*
 * alter_query(name, lateness): change what can change without losing state,
 * at this transaction's commit (an ALTER message the worker applies in WAL
 * order).  A larger lateness holds windows open longer from then on; the
 * windows already closed stay closed, since their panes are gone (the
 * worker never lowers a query's eviction horizon, and reads refuse windows
 * with evicted panes).  A smaller one closes windows at once.
 */
Datum
stream_state_alter_query(PG_FUNCTION_ARGS)
{
	char	   *name;
	StreamStateQueryInfo *info;
	OwnerContext oc;
	StringInfoData sql;
	StringInfoData msg;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	Interval   *lateness_iv;
	int64		lateness_us;
	int64		retention_us = 0;
	bool		have_retention = PG_NARGS() > 2 && !PG_ARGISNULL(2);
	bool		have_emit = PG_NARGS() > 3 && !PG_ARGISNULL(3);
	bool		have_late = PG_NARGS() > 4 && !PG_ARGISNULL(4);
	char	   *emit_to = NULL;
	char	   *late_to = NULL;
	bool		emit = false;
	bool		late = false;
	bool		change_lateness;
	bool		change_retention = false;
	bool		change_emit = false;
	bool		change_late = false;
	bool		late_was_on = false;

	sstate_shmem_check();
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("query name must not be NULL")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	info = sstate_query_by_name(name, false);
	sstate_query_check_owner(info);
	if (PG_ARGISNULL(1) && !have_retention && !have_emit && !have_late)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("alter_query needs something to change"),
				 errhint("Give lateness, retention, emit_to or late_to.  A query's text, source, key or window cannot change: create another query, which computes its state from the table.")));
	if ((have_retention || have_emit || have_late) && !info->def.sql)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s needs a continuous query in SQL",
						have_retention ? "retention" : have_emit ? "emit_to" : "late_to"),
				 errdetail("Continuous query \"%s\" is a windowed count.", name)));
	if (have_retention)
		retention_us = sstate_interval_us(PG_GETARG_INTERVAL_P(2), "retention", true);
	if (retention_us > 0 && info->def.session_gap_us > 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("retention does not apply to session windows"),
				 errdetail("A session ends, and leaves state, session_gap after its key's last event.")));
	check_two_targets(have_emit ? text_to_cstring(PG_GETARG_TEXT_PP(3)) : info->emit_to,
					  have_late ? text_to_cstring(PG_GETARG_TEXT_PP(4)) : info->late_to);
	if (have_emit)
	{
		emit_to = text_to_cstring(PG_GETARG_TEXT_PP(3));
		emit = (emit_to[0] != '\0');	/* '' stops emitting */
		if (emit)
			emit_to = emit_target(sstate_cq_compiled_analysis(sstate_cq_compiled(info)), emit_to, false);
	}
	if (have_late)
	{
		late_to = text_to_cstring(PG_GETARG_TEXT_PP(4));
		late = (late_to[0] != '\0');	/* '' stops writing late groups */
		if (late)
			late_to = emit_target(sstate_cq_compiled_analysis(sstate_cq_compiled(info)), late_to, true);
	}

	owner_begin(&oc);
	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "SELECT lateness, retention, emit_to, late_to FROM stream_state.query_def WHERE id = %d FOR UPDATE",
					 info->id);
	spi_exec(sql.data, SPI_OK_SELECT);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("continuous query \"%s\" does not exist", name)));
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	lateness_iv = PG_ARGISNULL(1) ? DatumGetIntervalP(SPI_getbinval(tup, desc, 1, &isnull)) :
		PG_GETARG_INTERVAL_P(1);
	lateness_us = sstate_interval_us(lateness_iv, "lateness", true);
	change_lateness = lateness_us !=
		sstate_interval_us(DatumGetIntervalP(SPI_getbinval(tup, desc, 1, &isnull)), "lateness", true);
	if (have_retention)
	{
		Datum		d = SPI_getbinval(tup, desc, 2, &isnull);

		change_retention = retention_us != (isnull ? 0 : sstate_interval_us(DatumGetIntervalP(d), "retention", true));
	}
	if (have_emit)
	{
		char	   *old = SPI_getvalue(tup, desc, 3);

		change_emit = emit ? (old == NULL || strcmp(old, emit_to) != 0) : (old != NULL);
	}
	if (have_late)
	{
		char	   *old = SPI_getvalue(tup, desc, 4);

		late_was_on = (old != NULL);
		change_late = late ? (old == NULL || strcmp(old, late_to) != 0) : (old != NULL);
	}
	if (!change_lateness && !change_retention && !change_emit && !change_late)
	{
		owner_end(&oc);
		if (!have_retention && !have_emit && !have_late)
			ereport(NOTICE,
					(errmsg("continuous query \"%s\" already has lateness %s, skipping", name,
							DatumGetCString(DirectFunctionCall1(interval_out,
																IntervalPGetDatum(lateness_iv))))));
		else
			ereport(NOTICE,
					(errmsg("continuous query \"%s\" already has those settings, skipping", name)));
		PG_RETURN_VOID();
	}
	resetStringInfo(&sql);
	appendStringInfo(&sql, "UPDATE stream_state.query_def SET lateness = %s::interval",
					 quote_literal_cstr(DatumGetCString(DirectFunctionCall1(interval_out,
																			IntervalPGetDatum(lateness_iv)))));
	if (change_retention)
		appendStringInfo(&sql, ", retention = %s",
						 retention_us == 0 ? "NULL" :
						 psprintf("%s::interval",
								  quote_literal_cstr(DatumGetCString(DirectFunctionCall1(interval_out,
																						 PG_GETARG_DATUM(2))))));
	if (change_emit)
		appendStringInfo(&sql, ", emit_to = %s", emit ? quote_literal_cstr(emit_to) : "NULL");
	if (change_late)
		appendStringInfo(&sql, ", late_to = %s", late ? quote_literal_cstr(late_to) : "NULL");
	appendStringInfo(&sql, " WHERE id = %d", info->id);
	spi_exec(sql.data, SPI_OK_UPDATE);
	if (change_emit)
	{
		/* a new table starts with nothing emitted; no table, no progress */
		resetStringInfo(&sql);
		appendStringInfo(&sql, "DELETE FROM stream_state.emit_progress WHERE query_id = %d", info->id);
		spi_exec(sql.data, SPI_OK_DELETE);
		if (emit)
		{
			resetStringInfo(&sql);
			appendStringInfo(&sql, "INSERT INTO stream_state.emit_progress (query_id) VALUES (%d)",
							 info->id);
			spi_exec(sql.data, SPI_OK_INSERT);
		}
	}
	if (change_late && (!late || !late_was_on))
	{
		/*
		 * late_to switched on: the groups of commits after this one (the
		 * worker records from then on); off: no table, no progress.  A new
		 * table in place of another gets what was not written to the old
		 * one: the progress stays.
		 */
		resetStringInfo(&sql);
		appendStringInfo(&sql, "DELETE FROM stream_state.late_progress WHERE query_id = %d", info->id);
		spi_exec(sql.data, SPI_OK_DELETE);
		if (late)
		{
			resetStringInfo(&sql);
			appendStringInfo(&sql, "INSERT INTO stream_state.late_progress (query_id) VALUES (%d)",
							 info->id);
			spi_exec(sql.data, SPI_OK_INSERT);
		}
	}
	owner_end(&oc);

	initStringInfo(&msg);
	sstate_delta_begin(&msg, SSM_ALTER);
	sstate_delta_put_alter(&msg, info->id, lateness_us, change_retention ? &retention_us : NULL,
						   change_emit ? &emit : NULL, change_late ? &late : NULL);
	sstate_capture_log_ddl(msg.data, msg.len);
	PG_RETURN_VOID();
}

/*
 * rebuild(name): recompute a query's state from its source table.  In one
 * transaction, holding the lock create_query holds (no insert can fall
 * between the count and the trigger): the definition again (for a worker
 * that lost it), a RESET that drops the state of every earlier commit, and
 * a count of the rows there now.  The worker applies all three at commit.
 */
/*
 * Rebuild query qid (see stream_state_rebuild); no owner check.  False if
 * the query or its source is gone.
 */
bool
sstate_rebuild_query(int32 qid)
{
	StreamStateQueryInfo *found = sstate_query_by_id(qid);
	StreamStateQueryInfo copy;
	Relation	rel;
	char	   *key_column;
	char	   *time_column = NULL;
	OwnerContext oc;

	if (found == NULL || get_rel_name(found->source) == NULL)
		return false;
	copy = *found;
	rel = relation_open(copy.source, ShareRowExclusiveLock);
	if (copy.query_text != NULL)
	{
		/* a query in SQL: its definition with its aggregates, and its rows */
		sstate_ensure_slot(MyDatabaseId);
		owner_begin(&oc);
		sql_define_and_backfill(&copy, sstate_cq_analyze_defined(copy.query_text, copy.name), rel,
								true);
		owner_end(&oc);
		relation_close(rel, NoLock);
		return true;
	}
	key_column = get_attname(copy.source, copy.key_attnum, false);
	if (copy.time_attnum > 0)
		time_column = get_attname(copy.source, copy.time_attnum, false);

	sstate_ensure_slot(MyDatabaseId);
	owner_begin(&oc);
	log_definition(&copy);
	sstate_capture_reset(copy.id);
	backfill(&copy, copy.source, key_column, time_column);
	owner_end(&oc);
	relation_close(rel, NoLock);
	return true;
}

Datum
stream_state_rebuild(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	StreamStateQueryInfo *info = sstate_query_by_name(name, false);

	sstate_shmem_check();
	sstate_query_check_owner(info);
	if (!sstate_rebuild_query(info->id))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("continuous query \"%s\" cannot be rebuilt: its source table was dropped",
						info->name),
				 errhint("Drop the query with stream_state.drop_query.")));
	PG_RETURN_VOID();
}

/*
 * pg_restore: the column numbers of a dumped definition are those of the
 * dumped server, where dropped columns may have taken numbers.  Keep a
 * number that still names a column of the right type, else find the column
 * by its name.
 */
static void
restore_fix_attnums(StreamStateQueryInfo *info)
{
	const char *cols[2] = {"key", "time"};

	for (int i = 0; i < 2; i++)
	{
		AttrNumber	attnum = (i == 0) ? info->key_attnum : info->time_attnum;
		Oid			type = (i == 0) ? info->key_type : info->time_type;
		char	   *sql;
		AttrNumber	found;

		if (attnum <= 0)
			continue;
		if (get_atttype(info->source, attnum) == type)
			continue;
		sql = psprintf("SELECT %s_column FROM stream_state.query_def WHERE id = %d",
					   cols[i], info->id);
		spi_exec(sql, SPI_OK_SELECT);
		{
			bool		isnull;
			Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

			found = isnull ? InvalidAttrNumber :
				get_attnum(info->source, NameStr(*DatumGetName(d)));
		}
		if (found == InvalidAttrNumber || get_atttype(info->source, found) != type)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("restored continuous query \"%s\" does not match its source table",
							info->name),
					 errdetail("Its %s column is not in table %s with type %s.", cols[i],
							   get_rel_name(info->source), format_type_be(type))));
		sql = psprintf("UPDATE stream_state.query_def SET %s_attnum = %d WHERE id = %d",
					   cols[i], found, info->id);
		spi_exec(sql, SPI_OK_UPDATE);
		if (i == 0)
			info->key_attnum = found;
		else
			info->time_attnum = found;
	}
	sstate_capture_note_ddl();
}

/*
 * A capture trigger created by someone else than create_query: pg_restore
 * (or psql replaying a dump) re-creating it after loading the data.  The
 * rows it loaded fired no trigger; count them now, once, as rebuild does.
 */
static void
restore_trigger(int32 qid, Oid relid)
{
	StreamStateQueryInfo *found;
	StreamStateQueryInfo info;
	OwnerContext oc;
	char	   *key_column;
	char	   *time_column = NULL;

	sstate_query_cache_reset();
	found = sstate_query_by_id(qid);
	if (found == NULL || found->source != relid)
		return;					/* not a definition of this database */
	info = *found;

	sstate_ensure_slot(MyDatabaseId);
	owner_begin(&oc);
	restore_fix_attnums(&info);
	if (info.query_text != NULL)
	{
		/* a query in SQL: its text names its columns */
		Relation	rel = relation_open(relid, NoLock);

		sql_define_and_backfill(&info, sstate_cq_analyze_defined(info.query_text, info.name), rel,
								true);
		relation_close(rel, NoLock);
		owner_end(&oc);
		ereport(NOTICE,
				(errmsg("continuous query \"%s\" folded in the rows of %s",
						info.name, get_rel_name(relid))));
		return;
	}
	key_column = get_attname(relid, info.key_attnum, false);
	if (info.time_attnum > 0)
		time_column = get_attname(relid, info.time_attnum, false);
	log_definition(&info);
	sstate_capture_reset(info.id);
	backfill(&info, relid, key_column, time_column);
	owner_end(&oc);
	ereport(NOTICE,
			(errmsg("continuous query \"%s\" counted the rows of %s",
					info.name, get_rel_name(relid))));
}

/* "EXECUTE FUNCTION stream_state._capture('<id>')": the id, else 0 */
static int32
capture_trigger_qid(CreateTrigStmt *stmt)
{
	if (list_length(stmt->funcname) != 2 || list_length(stmt->args) != 1 ||
		strcmp(strVal(linitial(stmt->funcname)), "stream_state") != 0 ||
		strcmp(strVal(lsecond(stmt->funcname)), "_capture") != 0)
		return 0;
	return pg_strtoint32(strVal(linitial(stmt->args)));
}

static void
sstate_process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
					   ProcessUtilityContext context, ParamListInfo params,
					   QueryEnvironment *queryEnv, DestReceiver *dest,
					   QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;
	int32		qid = 0;
	Oid			relid = InvalidOid;

	if (IsA(parsetree, CreateTrigStmt) && !own_trigger_ddl && sstate_shared != NULL)
		qid = capture_trigger_qid((CreateTrigStmt *) parsetree);

	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context, params,
							 queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);

	if (qid > 0)
	{
		/* CREATE TRIGGER holds a lock on it that conflicts with inserts */
		relid = RangeVarGetRelid(((CreateTrigStmt *) parsetree)->relation, NoLock, false);
		CommandCounterIncrement();
		restore_trigger(qid, relid);
	}
}

void
sstate_sql_api_init(void)
{
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = sstate_process_utility;
}

static void
change_readers(FunctionCallInfo fcinfo, bool grant)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Oid			role = PG_GETARG_OID(1);
	StreamStateQueryInfo *info = sstate_query_by_name(name, false);
	int32		id = info->id;
	OwnerContext oc;
	char	   *sql;

	sstate_query_check_owner(info);
	owner_begin(&oc);
	if (grant)
		sql = psprintf("UPDATE stream_state.query_def SET readers = array_append(array_remove(readers, %u::regrole), %u::regrole) WHERE id = %d",
					   role, role, id);
	else
		sql = psprintf("UPDATE stream_state.query_def SET readers = array_remove(readers, %u::regrole) WHERE id = %d",
					   role, id);
	spi_exec(sql, SPI_OK_UPDATE);
	owner_end(&oc);
	sstate_capture_note_ddl();
}

Datum
stream_state_grant_read(PG_FUNCTION_ARGS)
{
	change_readers(fcinfo, true);
	PG_RETURN_VOID();
}

Datum
stream_state_revoke_read(PG_FUNCTION_ARGS)
{
	change_readers(fcinfo, false);
	PG_RETURN_VOID();
}

/* ---------------------------------------------------------------------
 * Reads
 * ---------------------------------------------------------------------
 */

/*
 * A query whose state was lost (no usable checkpoint and no WAL) reads as an
 * error until it is rebuilt, never as zero.  Releases db on error.
 */
static void
check_not_lost(StreamStateDb *db, StreamStateQuery *q, const StreamStateQueryInfo *info)
{
	if ((q == NULL && db->state_lost) || (q != NULL && q->status == SSQ_NEEDS_REBUILD))
	{
		read_end(db);
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the state of continuous query \"%s\" was lost", info->name),
				 errdetail("No usable checkpoint held it, and the WAL needed to rebuild it is gone."),
				 errhint("Run SELECT stream_state.rebuild('%s') to recompute it from its source table.",
						 info->name)));
	}
}

/*
 * read_begin for reading one query: its slot in *qp (NULL when the worker
 * does not know it and this transaction may have created it).  A query the
 * catalog has and a running worker does not know, once the worker has
 * applied every commit, has lost its state (its checkpoint and the WAL
 * behind it are gone): that is an ERROR, never a count of zero.
 */
static StreamStateDb *
read_query_begin_once(const StreamStateQueryInfo *info, StreamStateQuery **qp)
{
	StreamStateDb *db = read_begin(true, info->id);
	StreamStateQuery *q;

	if (db == NULL)
		return NULL;
	q = db_query(db, info->id);
	if (q == NULL && !db->state_lost && db->worker_state == SSW_RUNNING &&
		!TransactionIdIsValid(GetTopTransactionIdIfAny()))
	{
		/* perhaps created by a commit the worker has not reached yet */
		read_end(db);
		(void) wait_applied_internal(inserted_end(), info->id, sstate_read_timeout_ms, true);
		db = read_begin(false, info->id);
		if (db == NULL)
			return NULL;
		q = db_query(db, info->id);
		if (q == NULL && db->worker_state == SSW_RUNNING)
		{
			read_end(db);
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the state of continuous query \"%s\" was lost", info->name),
					 errdetail("The worker has applied every commit and does not know the query: the checkpoint and the WAL that held it are gone."),
					 errhint("Run SELECT stream_state.rebuild('%s') to recompute it from its source table.",
							 info->name)));
		}
	}
	check_not_lost(db, q, info);
	if (q != NULL && q->status == SSQ_PAUSED_DISK)
	{
		bool		full = db->rdb_full;

		read_end(db);
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("continuous query \"%s\" is paused: %s",
						info->name, full ? "the disk of its RocksDB is full" :
						"the RocksDB of this database cannot be written"),
				 errdetail("Its commits stay in the kept WAL; the worker tries RocksDB again every second and then catches up."),
				 errhint("See the server log for RocksDB's error; free disk space if it is full.")));
	}
	*qp = q;
	return db;
}

/* ---------------------------------------------------------------------
 * Stable reads
 *
 * A read shows a query's state between two commits, never part of one.
 * The worker applies a commit to the memory store entry by entry, and
 * brackets it with two bumps of the query's apply_seq (wal_reader.c).  A
 * read takes the number when it starts (odd: it waits for the commit to be
 * done, without db->lock, which the worker may need), and after its scan
 * compares; if it moved, the scan is thrown away and done again, as a
 * seqlock reader does.  After two such failures the reader asks the worker
 * to hold the query's next commit back for about twice its last scan (at
 * most STABLE_HOLD_MAX_MS), so that a long scan of a busy query ends.  A
 * rocksdb query's scans read one RocksDB snapshot from their first page to
 * their last (rocks.c), taken between two of the worker's rounds; a read of
 * one key in its read cache (sstate_store_sum_cached), which the worker
 * updates a round at a time under the key's partition lock, is checked
 * here too, at no cost.
 * ---------------------------------------------------------------------
 */
#define STABLE_HOLD_MAX_MS	1000

typedef struct StableRead
{
	StreamStateQuery *q;		/* NULL: nothing to check */
	uint32		seq;
	int			failures;
	TimestampTz started;
} StableRead;

/* Wait, holding no lock, until the worker is done with q's commit */
static void
stable_wait(StreamStateQuery *q, const char *name)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   sstate_read_timeout_ms);

	while (pg_atomic_read_u32(&q->apply_seq) & 1)
	{
		if (GetCurrentTimestamp() >= deadline)
			ereport(ERROR,
					(errcode(ERRCODE_QUERY_CANCELED),
					 errmsg("timed out waiting for stream_state to finish applying a commit to continuous query \"%s\"",
							name),
					 errdetail("A read shows the state between two commits, never part of one."),
					 errhint("Raise stream_state.read_timeout.")));
		pg_usleep(100L);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * read_query_begin_once, and with sr, the start of a stable read of the
 * query: returns with db->lock held and no commit being applied to it.
 */
static StreamStateDb *
read_query_begin(const StreamStateQueryInfo *info, StreamStateQuery **qp, StableRead *sr)
{
	for (;;)
	{
		StreamStateDb *db = read_query_begin_once(info, qp);
		StreamStateQuery *q = *qp;
		uint32		seq;

		if (sr == NULL)
			return db;
		sr->q = NULL;
		if (db == NULL || q == NULL)
			return db;
		seq = pg_atomic_read_u32(&q->apply_seq);
		if ((seq & 1) == 0)
		{
			pg_read_barrier();	/* the number before the state */
			sr->q = q;
			sr->seq = seq;
			/* timed only when it is read again (stable_end) */
			sr->started = sr->failures > 0 ? GetCurrentTimestamp() : 0;
			return db;
		}
		read_end(db);
		stable_wait(q, info->name);
	}
}

/*
 * After the scan of a stable read (db->lock still held): true if no commit
 * was applied to the query while it ran; else the caller releases the lock,
 * throws the scan away and starts again.
 */
static bool
stable_end(StableRead *sr)
{
	TimestampTz now;

	if (sr->q == NULL)
		return true;
	pg_read_barrier();			/* the state before the number */
	if (pg_atomic_read_u32(&sr->q->apply_seq) == sr->seq)
	{
		if (sr->failures >= 2)
			pg_atomic_write_u64(&sr->q->reader_hold_until, 0);
		return true;
	}
	now = GetCurrentTimestamp();
	if (++sr->failures >= 2)
	{
		long		ms = 2 * TimestampDifferenceMilliseconds(sr->started, now) + 10;

		pg_atomic_write_u64(&sr->q->reader_hold_until,
							(uint64) TimestampTzPlusMilliseconds(now, Min(ms, STABLE_HOLD_MAX_MS)));
	}
	return false;
}

/*
 * The memory of a stable read's attempts, a child of the caller's context:
 * each attempt starts it afresh (a retried scan of many keys would otherwise
 * keep every attempt's copies).  The caller switches back after the last.
 */
static void
attempt_begin(MemoryContext *attempt)
{
	if (*attempt == NULL)
		*attempt = AllocSetContextCreate(CurrentMemoryContext, "stream_state read",
										 ALLOCSET_DEFAULT_SIZES);
	else
		MemoryContextReset(*attempt);
	MemoryContextSwitchTo(*attempt);
}

static void
check_window_open(const StreamStateQuery *q, int64 start_us, int64 end_us)
{
	int64		wm = sstate_watermark(q);

	/* closed windows of a query with emit_to are kept until emitted */
	if (wm != SSTATE_NO_TIME && end_us <= wm &&
		!(q->def.emit && sstate_pane_of(&q->def, start_us) >= q->dead_below))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("window ending at %s of continuous query \"%s\" has closed",
						timestamptz_to_str(sstate_unix_us_to_ts(end_us)), q->def.name),
				 errdetail("The watermark is %s; panes of closed windows are evicted.",
						   timestamptz_to_str(sstate_unix_us_to_ts(wm))),
				 errhint("Read a window that ends after the watermark, or create the query with a larger lateness.")));
	/* it had closed before the lateness was raised: its first panes are gone */
	if (sstate_pane_of(&q->def, start_us) < q->dead_below)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("window ending at %s of continuous query \"%s\" has closed",
						timestamptz_to_str(sstate_unix_us_to_ts(end_us)), q->def.name),
				 errdetail("It closed, and its first panes were evicted, before the query's lateness was raised."),
				 errhint("Read a window that starts at or after %s.",
						 timestamptz_to_str(sstate_unix_us_to_ts(q->dead_below * q->def.pane_us)))));
}

/*
 * After reading the memory store (db->lock still held): the worker may have
 * evicted panes of the window [start_us, end_us) while the scan ran (it
 * publishes dead_below first, then evicts), so the keys read may be short.
 * Then the read fails, as it would had it started a moment later.
 */
static void
check_window_kept(const StreamStateQuery *q, int64 start_us, int64 end_us)
{
	if (sstate_pane_of(&q->def, start_us) < q->dead_below)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("window ending at %s of continuous query \"%s\" has closed",
						timestamptz_to_str(sstate_unix_us_to_ts(end_us)), q->def.name),
				 errdetail("It closed and its panes were evicted while it was being read."),
				 errhint("Read a window that ends after the watermark, or create the query with a larger lateness.")));
}

/*
 * Every key of query q (read_query_begin gave db and q, db's lock held, and
 * began the stable read sr), through cb; releases the lock.  False if a
 * commit was applied to the query while the memory store was read: the
 * caller throws away what cb gathered and reads again.  Of a rocksdb query the worker answers,
 * asked without the lock.  The panes of a query in SQL refer to their
 * values: in the memory store (sstate_store_value), or, when *rocksdb is
 * set (before cb is called), in the scan's copies (sstate_rdb_value).
 */
static bool
scan_query_locked(StreamStateDb *db, StreamStateQuery *q, sstate_store_scan_cb cb, void *arg,
				  bool *rocksdb, const int64 *window, StableRead *sr)
{
	bool		stable;

	*rocksdb = (q != NULL && q->def.backend == SSB_ROCKSDB);
	if (*rocksdb)
	{
		StreamStateQueryDef def = q->def;

		read_end(db);
		sstate_rdb_request_scan(db, &def, NULL, 0, cb, arg);
		return true;
	}
	if (q != NULL)
	{
		PG_TRY();
		{
			sstate_store_scan(read_table, q->def.id, cb, arg);
			if (window != NULL)
				check_window_kept(q, window[0], window[1]);
		}
		PG_CATCH();
		{
			read_end(db);
			PG_RE_THROW();
		}
		PG_END_TRY();
	}
	stable = stable_end(sr);
	read_end(db);
	return stable;
}

/*
 * Every key of query info, through cb (none if no state yet), as a stable
 * read: reset(arg) throws away what a scan that overlapped a commit gave.
 */
static void
scan_query(const StreamStateQueryInfo *info, sstate_store_scan_cb cb, void *arg, bool *rocksdb,
		   void (*reset) (void *arg))
{
	StableRead	sr = {0};
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext attempt = NULL;

	for (;;)
	{
		StreamStateQuery *q;
		StreamStateDb *db;

		attempt_begin(&attempt);
		db = read_query_begin(info, &q, &sr);
		*rocksdb = false;
		if (db == NULL || scan_query_locked(db, q, cb, arg, rocksdb, NULL, &sr))
			break;
		reset(arg);
	}
	MemoryContextSwitchTo(caller);
}

static void
min_pane_cb(void *arg, int32 qid, const char *key, uint32 keylen,
			const StreamStatePane *panes, int npanes)
{
	int64	   *min = arg;

	if (npanes > 0 && panes[0].pane < *min)
		*min = panes[0].pane;
}

static void
min_pane_reset(void *arg)
{
	*(int64 *) arg = PG_INT64_MAX;
}

/*
 * The lowest pane query info has in state (panes are kept sorted); false
 * if it has none (emit.c).
 */
bool
sstate_query_min_pane(const StreamStateQueryInfo *info, int64 *pane)
{
	int64		min = PG_INT64_MAX;
	bool		rocksdb;

	scan_query(info, min_pane_cb, &min, &rocksdb, min_pane_reset);
	*pane = min;
	return min != PG_INT64_MAX;
}

/* window_count of a classed key: the panes of every image equal to it */
typedef struct ClassSum
{
	const StreamStateQueryInfo *info;
	const char *key;
	uint32		keylen;
	int64		lo;
	int64		hi;
	int64		sum;
} ClassSum;

static void
class_sum_cb(void *arg, int32 qid, const char *key, uint32 keylen,
			 const StreamStatePane *panes, int npanes)
{
	ClassSum   *cs = arg;
	int			i;

	if (!sstate_key_equal(cs->info, cs->key, cs->keylen, key, keylen))
		return;
	for (i = 0; i < npanes; i++)
		if (panes[i].pane >= cs->lo && panes[i].pane < cs->hi)
			cs->sum += panes[i].count;
}

Datum
stream_state_window_count(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Datum		key = PG_GETARG_DATUM(1);
	TimestampTz at = PG_GETARG_TIMESTAMPTZ(2);
	Oid			argtype = get_fn_expr_argtype(fcinfo->flinfo, 1);
	StreamStateQueryInfo *info = sstate_query_by_name(name, false);
	StreamStateDb *db;
	StreamStateQuery *q;
	StableRead	sr = {0};
	int64		result = 0;

	sstate_query_check_read(info);
	if (info->def.sql)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("continuous query \"%s\" is a query in SQL", info->name),
				 errhint("Read it with window_result or its view.")));
	if (argtype != info->key_type)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("key has type %s, but query \"%s\" has key type %s",
						format_type_be(argtype), info->name,
						format_type_be(info->key_type)),
				 errhint("Cast the key to %s.", format_type_be(info->key_type))));

retry:
	db = read_query_begin(info, &q, &sr);
	if (db == NULL)
		PG_RETURN_INT64(0);
	if (q != NULL)
	{
		char		buf[SSTATE_KEYBUF];
		const char *img;
		uint32		len;
		int64		start_us,
					end_us;

		if (TIMESTAMP_NOT_FINITE(at))
			ereport(ERROR,
					(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
					 errmsg("at must be a finite timestamp")));
		sstate_window_at(&q->def, at + STREAM_STATE_UNIX_OFFSET_US, &start_us, &end_us);
		PG_TRY();
		{
			check_window_open(q, start_us, end_us);
		}
		PG_CATCH();
		{
			read_end(db);
			PG_RE_THROW();
		}
		PG_END_TRY();
		sstate_key_image(info, key, buf, &img, &len);
		if (q->def.backend == SSB_ROCKSDB)
		{
			StreamStateQueryDef def = q->def;

			/* a key in the read cache (rocks_cache.c) is answered here */
			if (!info->def.key_classed && q->status == SSQ_RUNNING)
			{
				if (sstate_store_sum_cached(read_table, -def.id, img, len,
											start_us / def.pane_us, end_us / def.pane_us,
											&result))
				{
					bool		stable = stable_end(&sr);

					read_end(db);
					if (!stable)
						goto retry;
					pg_atomic_fetch_add_u64(&db->rdb_cache_hits, 1);
					PG_RETURN_INT64(result);
				}
				pg_atomic_fetch_add_u64(&db->rdb_cache_misses, 1);
			}
			/* the worker answers: never wait for it holding db->lock */
			read_end(db);
			if (info->def.key_classed)
			{
				ClassSum	cs;

				cs.info = info;
				cs.key = img;
				cs.keylen = len;
				cs.lo = start_us / def.pane_us;
				cs.hi = end_us / def.pane_us;
				cs.sum = 0;
				sstate_rdb_request_scan(db, &def, img, len, class_sum_cb, &cs);
				result = cs.sum;
			}
			else
				result = sstate_rdb_request_sum(db, &def, img, len,
												start_us / def.pane_us, end_us / def.pane_us);
			PG_RETURN_INT64(result);
		}
		if (info->def.key_classed)
		{
			ClassSum	cs;

			cs.info = info;
			cs.key = img;
			cs.keylen = len;
			cs.lo = start_us / q->def.pane_us;
			cs.hi = end_us / q->def.pane_us;
			cs.sum = 0;
			PG_TRY();
			{
				sstate_store_scan_class(read_table, info->id, img, len, class_sum_cb, &cs);
			}
			PG_CATCH();
			{
				read_end(db);
				PG_RE_THROW();
			}
			PG_END_TRY();
			result = cs.sum;
		}
		else
			result = sstate_store_sum(read_table, info->id, img, len,
									  start_us / q->def.pane_us, end_us / q->def.pane_us);
		PG_TRY();
		{
			check_window_kept(q, start_us, end_us);
		}
		PG_CATCH();
		{
			read_end(db);
			PG_RE_THROW();
		}
		PG_END_TRY();
		if (!stable_end(&sr))
		{
			read_end(db);
			result = 0;
			goto retry;
		}
	}
	read_end(db);
	PG_RETURN_INT64(result);
}

/*
 * window_result: the values of each key's panes in the window, copied; or
 * for session windows, each session's (SCAN_SESSIONS_AT: those that hold
 * lo; SCAN_SESSIONS_ENDED: those that end in (lo, hi]) as a group of its
 * own, with its start and end.
 */
typedef enum ResultScanMode
{
	SCAN_PANES,
	SCAN_SESSIONS_AT,
	SCAN_SESSIONS_ENDED
} ResultScanMode;

typedef struct ResultScan
{
	ResultScanMode mode;
	bool		rocksdb;		/* values come from a RocksDB scan */
	int64		lo;
	int64		hi;
	int64		gap;
	List	   *keys;			/* of ResultKey */
} ResultScan;

typedef struct ResultKey
{
	char	   *img;
	uint32		imglen;
	List	   *values;			/* of StringInfo: one per pane in the window */
	int64		start;			/* sessions: first event, last event + gap */
	int64		end;
	XLogRecPtr	lsn;			/* late groups: the commit's */
	int64		commit_us;
} ResultKey;

/* What result_rows puts before the query's columns */
typedef enum ResultLead
{
	RESULT_PLAIN,
	RESULT_BOUNDS,				/* window_start, window_end */
	RESULT_LATE					/* commit_lsn, committed_at, events_from,
								 * events_to */
} ResultLead;

static ResultKey *
result_key(ResultScan *rs, const char *key, uint32 keylen)
{
	ResultKey  *rk = palloc0(sizeof(ResultKey));

	rk->img = palloc(Max(keylen, 1));
	memcpy(rk->img, key, keylen);
	rk->imglen = keylen;
	rs->keys = lappend(rs->keys, rk);
	return rk;
}

static void
result_cb(void *arg, int32 qid, const char *key, uint32 keylen,
		  const StreamStatePane *panes, int npanes)
{
	ResultScan *rs = arg;
	ResultKey  *rk = NULL;

	for (int i = 0; i < npanes; i++)
	{
		uint32		len;
		const char *v = rs->rocksdb ? sstate_rdb_value(panes[i].count, &len) :
			sstate_store_value(read_table, panes[i].count, &len);
		StringInfo	si;

		if (rs->mode == SCAN_PANES)
		{
			if (panes[i].pane < rs->lo || panes[i].pane >= rs->hi)
				continue;
			if (rk == NULL)
				rk = result_key(rs, key, keylen);
		}
		else
		{
			int64		last;
			int64		end;

			memcpy(&last, v, sizeof(int64));
			end = last + rs->gap;
			if (rs->mode == SCAN_SESSIONS_AT ? !(panes[i].pane <= rs->lo && rs->lo < end) :
				!(rs->lo < end && end <= rs->hi))
				continue;
			rk = result_key(rs, key, keylen);
			rk->start = panes[i].pane;
			rk->end = end;
			v += sizeof(int64);
			len -= sizeof(int64);
		}
		si = makeStringInfo();
		appendBinaryStringInfo(si, v, len);
		rk->values = lappend(rk->values, si);
	}
}

/*
 * Keys whose types (or collations) let equal values differ in bytes are
 * kept per byte image (the capture groups by image; the worker has no
 * catalog to compare them): merge the scanned keys that GROUP BY would
 * take as one, by the key columns' hash functions and equality operators,
 * into the one with the smallest image (so the value shown is stable).
 */
static uint32 *sort_hashes;

static int
by_hash(const void *a, const void *b)
{
	uint32		x = sort_hashes[*(const int *) a];
	uint32		y = sort_hashes[*(const int *) b];

	return x < y ? -1 : x > y ? 1 : (*(const int *) a - *(const int *) b);
}

static List *
merge_classed_keys(CqCompiled *c, List *keys)
{
	StreamStateCqAnalysis *an = sstate_cq_compiled_analysis(c);
	int			n = list_length(keys);
	FmgrInfo   *hashfns = palloc(sizeof(FmgrInfo) * an->nkeys);
	FmgrInfo   *eqfns = palloc(sizeof(FmgrInfo) * an->nkeys);
	Datum	   *vals = palloc(sizeof(Datum) * Max(n, 1) * an->nkeys);
	bool	   *nulls = palloc(sizeof(bool) * Max(n, 1) * an->nkeys);
	uint32	   *hashes = palloc(sizeof(uint32) * Max(n, 1));
	ResultKey **rks = palloc(sizeof(ResultKey *) * Max(n, 1));
	bool	   *gone = palloc0(sizeof(bool) * Max(n, 1));
	List	   *result = NIL;
	int			i = 0;
	int		   *order;
	ListCell   *lc;

	for (int k = 0; k < an->nkeys; k++)
	{
		RegProcedure hashfn;

		if (!get_op_hash_functions(an->keys[k].eqop, &hashfn, NULL))
			elog(ERROR, "no hash function for operator %u", an->keys[k].eqop);
		fmgr_info(hashfn, &hashfns[k]);
		fmgr_info(get_opcode(an->keys[k].eqop), &eqfns[k]);
	}
	foreach(lc, keys)
	{
		ResultKey  *rk = lfirst(lc);
		uint32		h = 0;

		rks[i] = rk;
		if (!sstate_cq_key_values(c, rk->img, rk->imglen, &vals[i * an->nkeys], &nulls[i * an->nkeys]))
			elog(ERROR, "stream_state: a key of a continuous query is malformed");
		for (int k = 0; k < an->nkeys; k++)
			h = hash_combine(h, nulls[i * an->nkeys + k] ? 0 :
							 DatumGetUInt32(FunctionCall1Coll(&hashfns[k], an->keys[k].collation,
															  vals[i * an->nkeys + k])));
		hashes[i++] = h;
	}
	/* candidates are the keys of equal hash: sorted by it, they are neighbours */
	order = palloc(sizeof(int) * Max(n, 1));
	for (i = 0; i < n; i++)
		order[i] = i;
	sort_hashes = hashes;
	qsort(order, n, sizeof(int), by_hash);
	for (int oi = 0; oi < n; oi++)
	{
		ResultKey  *keep;

		i = order[oi];
		if (gone[i])
			continue;
		keep = rks[i];
		for (int oj = oi + 1; oj < n && hashes[order[oj]] == hashes[i]; oj++)
		{
			int			j = order[oj];
			bool		equal = !gone[j];

			for (int k = 0; equal && k < an->nkeys; k++)
			{
				bool		n1 = nulls[i * an->nkeys + k];
				bool		n2 = nulls[j * an->nkeys + k];

				equal = (n1 && n2) ||
					(!n1 && !n2 &&
					 DatumGetBool(FunctionCall2Coll(&eqfns[k], an->keys[k].collation,
													vals[i * an->nkeys + k], vals[j * an->nkeys + k])));
			}
			if (!equal)
				continue;
			gone[j] = true;
			keep->values = list_concat(keep->values, rks[j]->values);
			if (rks[j]->imglen < keep->imglen ||
				(rks[j]->imglen == keep->imglen && memcmp(rks[j]->img, keep->img, keep->imglen) < 0))
			{
				keep->img = rks[j]->img;
				keep->imglen = rks[j]->imglen;
			}
		}
		result = lappend(result, keep);
	}
	return result;
}

/*
 * The rows of scanned keys: per key (or session) its values combined,
 * finalised, the select list and HAVING evaluated, into rsinfo's store;
 * with lead RESULT_BOUNDS, the group's start and end come first, with
 * RESULT_LATE its commit's LSN and time and its events' time range (and
 * HAVING, a condition on whole groups, is not evaluated).  A query without
 * GROUP BY gives one row even for no rows, unless sessions were scanned.
 */
static void
result_rows(const char *name, CqCompiled *c, List *keys, ReturnSetInfo *rsinfo, ResultLead lead,
			bool empty_row)
{
	StreamStateCqAnalysis *an = sstate_cq_compiled_analysis(c);
	StreamStateCqAggFns *fns = sstate_cq_compiled_fns(c);
	StreamStateCqAggContext *cx = sstate_cq_agg_context_create(CurrentMemoryContext);
	TupleDesc	resdesc = sstate_cq_result_desc(an);
	TupleTableSlot *resslot = MakeSingleTupleTableSlot(resdesc, &TTSOpsVirtual);
	ExprContext *econtext = CreateStandaloneExprContext();
	ExprState **colexprs = palloc0(sizeof(ExprState *) * Max(an->ncolumns, 1));
	ExprState  *having;
	int			off = lead == RESULT_BOUNDS ? 2 : lead == RESULT_LATE ? 4 : 0;
	Datum	   *ovals = palloc(sizeof(Datum) * (an->ncolumns + off));
	bool	   *onulls = palloc0(sizeof(bool) * (an->ncolumns + off));
	bool		any = false;
	ListCell   *lc;

	for (int i = 0; i < an->ncolumns; i++)
		colexprs[i] = ExecInitExpr(expression_planner(an->columns[i].expr), NULL);
	having = an->having && lead != RESULT_LATE ?
		ExecInitQual(make_ands_implicit(expression_planner(an->having)), NULL) : NULL;
	for (lc = list_head(keys);; lc = lnext(keys, lc))
	{
		ResultKey  *rk = lc ? lfirst(lc) : NULL;
		StreamStateCqState *st = palloc(sizeof(StreamStateCqState) * Max(an->naggs, 1));
		ListCell   *lv;

		if (rk == NULL && (any || an->nkeys > 0 || !empty_row))
			break;				/* no GROUP BY: one row, even for no rows */
		any = true;
		ResetExprContext(econtext);
		ExecClearTuple(resslot);
		for (int j = 0; j < an->naggs; j++)
			sstate_cq_state_init(cx, &fns[j], &st[j]);
		if (rk != NULL)
		{
			if (!sstate_cq_key_values(c, rk->img, rk->imglen, resslot->tts_values,
									  resslot->tts_isnull))
				elog(ERROR, "stream_state: a key of continuous query \"%s\" is malformed", name);
			foreach(lv, rk->values)
			{
				StringInfo	si = lfirst(lv);
				const char *p = si->data;
				const char *end = si->data + si->len;

				for (int j = 0; j < an->naggs; j++)
				{
					StreamStateCqState part;

					p = sstate_cq_state_deserialize(cx, &fns[j], &part, p, end);
					if (p == NULL)
						elog(ERROR, "stream_state: a partial state of continuous query \"%s\" is malformed", name);
					sstate_cq_state_combine(cx, &fns[j], &st[j], &part);
				}
			}
		}
		for (int j = 0; j < an->naggs; j++)
			resslot->tts_values[an->nkeys + j] =
				sstate_cq_state_final(cx, &fns[j], &st[j], &resslot->tts_isnull[an->nkeys + j]);
		ExecStoreVirtualTuple(resslot);
		econtext->ecxt_outertuple = resslot;
		if (having == NULL || ExecQual(having, econtext))
		{
			if (lead == RESULT_LATE)
			{
				ovals[0] = LSNGetDatum(rk->lsn);
				ovals[1] = TimestampTzGetDatum(sstate_unix_us_to_ts(rk->commit_us));
				ovals[2] = TimestampTzGetDatum(sstate_unix_us_to_ts(rk->start));
				ovals[3] = TimestampTzGetDatum(sstate_unix_us_to_ts(rk->end));
			}
			else if (lead == RESULT_BOUNDS)
			{
				ovals[0] = TimestampTzGetDatum(sstate_unix_us_to_ts(rk->start));
				ovals[1] = TimestampTzGetDatum(sstate_unix_us_to_ts(rk->end));
			}
			for (int i = 0; i < an->ncolumns; i++)
				ovals[off + i] = ExecEvalExpr(colexprs[i], econtext, &onulls[off + i]);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, ovals, onulls);
		}
		if (rk == NULL)
			break;
	}
	ExecDropSingleTupleTableSlot(resslot);
	FreeExprContext(econtext, true);
	sstate_cq_agg_context_reset(cx);
}

/* A query in SQL to read with a column definition list of ncols + extra columns */
static CqCompiled *
result_query(FunctionCallInfo fcinfo, const char *name, StreamStateQueryInfo *info, int extra)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	CqCompiled *c;
	StreamStateCqAnalysis *an;

	sstate_query_check_read(info);
	if (!info->def.sql)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("continuous query \"%s\" is a windowed count", name),
				 errhint("Read it with window_count or window_counts.")));
	c = sstate_cq_compiled(info);
	an = sstate_cq_compiled_analysis(c);
	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	if (rsinfo->setDesc->natts != an->ncolumns + extra)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("continuous query \"%s\" has %d columns, not %d",
						name, an->ncolumns + extra, rsinfo->setDesc->natts)));
	return c;
}

/*
 * window_result(name, at): the rows of a continuous query in SQL for the
 * window that contains at and closes next: per key, its panes' partial
 * states combined, finalised, and the select list and HAVING evaluated.
 * Of a session query: a row per session that holds at.
 */
Datum
stream_state_window_result(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	TimestampTz at = PG_GETARG_TIMESTAMPTZ(1);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	StreamStateQueryInfo *info = sstate_query_by_name(name, false);
	CqCompiled *c;
	StreamStateDb *db;
	StreamStateQuery *q;
	int64		start_us = 0,
				end_us = 0;
	ResultScan	rs;
	StableRead	sr = {0};
	MemoryContext caller;
	MemoryContext attempt = NULL;

	if (TIMESTAMP_NOT_FINITE(at))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("at must be a finite timestamp")));
	c = result_query(fcinfo, name, info, 0);
	caller = CurrentMemoryContext;

retry:
	attempt_begin(&attempt);
	memset(&rs, 0, sizeof(rs));
	db = read_query_begin(info, &q, &sr);
	if (db == NULL)
	{
		MemoryContextSwitchTo(caller);
		return (Datum) 0;
	}
	if (q != NULL)
	{
		PG_TRY();
		{
			if (q->def.session_gap_us > 0)
			{
				rs.mode = SCAN_SESSIONS_AT;
				rs.lo = at + STREAM_STATE_UNIX_OFFSET_US;
				rs.gap = q->def.session_gap_us;
			}
			else
			{
				sstate_window_at(&q->def, at + STREAM_STATE_UNIX_OFFSET_US, &start_us, &end_us);
				check_window_open(q, start_us, end_us);
				rs.mode = SCAN_PANES;
				rs.lo = start_us / q->def.pane_us;
				rs.hi = end_us / q->def.pane_us;
			}
		}
		PG_CATCH();
		{
			read_end(db);
			PG_RE_THROW();
		}
		PG_END_TRY();
	}
	{
		int64		window[2] = {start_us, end_us};

		if (!scan_query_locked(db, q, result_cb, &rs, &rs.rocksdb,
							   q != NULL && rs.mode == SCAN_PANES ? window : NULL, &sr))
			goto retry;
	}
	MemoryContextSwitchTo(caller);
	for (int k = 0; k < sstate_cq_compiled_analysis(c)->nkeys; k++)
		if (sstate_cq_compiled_analysis(c)->keys[k].classed)
		{
			rs.keys = merge_classed_keys(c, rs.keys);
			break;
		}
	result_rows(name, c, rs.keys, rsinfo, RESULT_PLAIN, info->def.session_gap_us == 0);
	return (Datum) 0;
}

/* A scan that overlapped a commit: its keys go (scan_query) */
static void
result_reset(void *arg)
{
	((ResultScan *) arg)->keys = NIL;
}

/* A timestamptz as Unix microseconds, infinities as the ends of int64 */
static int64
ts_bound_us(TimestampTz t)
{
	if (TIMESTAMP_IS_NOBEGIN(t))
		return PG_INT64_MIN;
	if (TIMESTAMP_IS_NOEND(t))
		return PG_INT64_MAX;
	return t + STREAM_STATE_UNIX_OFFSET_US;
}

/*
 * _session_result(name, after, upto): the sessions of a session query that
 * end in (after, upto] and are in state, with their start and end first
 * (what emit_to inserts; after NULL: from the first).
 */
Datum
stream_state_session_result(PG_FUNCTION_ARGS)
{
	char	   *name;
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	StreamStateQueryInfo *info;
	CqCompiled *c;
	ResultScan	rs;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("name and upto must not be NULL")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	info = sstate_query_by_name(name, false);
	c = result_query(fcinfo, name, info, 2);
	if (info->def.session_gap_us == 0)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("continuous query \"%s\" has no session windows", name)));
	memset(&rs, 0, sizeof(rs));
	rs.mode = SCAN_SESSIONS_ENDED;
	rs.lo = PG_ARGISNULL(1) ? PG_INT64_MIN : ts_bound_us(PG_GETARG_TIMESTAMPTZ(1));
	rs.hi = ts_bound_us(PG_GETARG_TIMESTAMPTZ(2));
	rs.gap = info->def.session_gap_us;
	scan_query(info, result_cb, &rs, &rs.rocksdb, result_reset);
	result_rows(name, c, rs.keys, rsinfo, RESULT_BOUNDS, false);
	return (Datum) 0;
}

/*
 * _late_result(name, after, upto): the late groups of a query with late_to
 * committed in (after, upto] and not yet trimmed, oldest first, with their
 * commit's LSN and time and their events' time range first (what the
 * helper inserts into the late_to table; after NULL: from the first).
 */
static void
late_cb(void *arg, int32 qid, const StreamStateLateGroup *g)
{
	List	  **keys = arg;
	ResultKey  *rk = palloc0(sizeof(ResultKey));
	StringInfo	si = makeStringInfo();

	rk->img = palloc(Max(g->keylen, 1));
	memcpy(rk->img, g->key, g->keylen);
	rk->imglen = g->keylen;
	rk->start = g->from_us;
	rk->end = g->to_us;
	rk->lsn = g->lsn;
	rk->commit_us = g->commit_us;
	appendBinaryStringInfo(si, g->value, g->valuelen);
	rk->values = list_make1(si);
	*keys = lappend(*keys, rk);
}

typedef struct LateUpto
{
	int64		limit;
	int64		seen;
	XLogRecPtr	upto;
} LateUpto;

static void
late_upto_cb(void *arg, int32 qid, const StreamStateLateGroup *g)
{
	LateUpto   *lu = arg;

	/* whole commits: the limit falls on a commit boundary */
	if (lu->seen < lu->limit || g->lsn == lu->upto)
	{
		lu->upto = g->lsn;
		lu->seen++;
	}
}

/*
 * The commit LSN up to which query info's late groups after after come to
 * about limit groups, counting whole commits (emit.c); false if it has none
 * after after.
 */
bool
sstate_query_late_upto(const StreamStateQueryInfo *info, XLogRecPtr after, int64 limit,
					   XLogRecPtr *upto)
{
	StreamStateQuery *q;
	StreamStateDb *db = read_query_begin(info, &q, NULL);	/* whole commits: done_lsn */
	LateUpto	lu = {limit, 0, InvalidXLogRecPtr};

	if (db == NULL)
		return false;
	if (q != NULL)
		sstate_store_late_scan(read_table, info->id, after, PG_UINT64_MAX, late_upto_cb, &lu);
	read_end(db);
	*upto = lu.upto;
	return lu.seen > 0;
}

Datum
stream_state_late_result(PG_FUNCTION_ARGS)
{
	char	   *name;
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	StreamStateQueryInfo *info;
	CqCompiled *c;
	StreamStateDb *db;
	StreamStateQuery *q;
	List	   *keys = NIL;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("name and upto must not be NULL")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	info = sstate_query_by_name(name, false);
	c = result_query(fcinfo, name, info, 4);
	db = read_query_begin(info, &q, NULL);	/* whole commits: done_lsn */
	if (db == NULL)
		return (Datum) 0;
	if (q != NULL)
		sstate_store_late_scan(read_table, info->id,
							   PG_ARGISNULL(1) ? InvalidXLogRecPtr : PG_GETARG_LSN(1),
							   PG_GETARG_LSN(2), late_cb, &keys);
	read_end(db);
	result_rows(name, c, keys, rsinfo, RESULT_LATE, false);
	return (Datum) 0;
}

typedef struct CountsScan
{
	int64		lo;
	int64		hi;
	List	   *keys;			/* copied key images with counts */
} CountsScan;

typedef struct KeyCount
{
	int32		qid;
	uint32		len;
	int64		count;
	int64		pane;			/* for the state view */
	char		key[FLEXIBLE_ARRAY_MEMBER];
} KeyCount;

/* Sort order of merge_classed: query, class prefix, pane, image */
static int
key_count_cmp(const ListCell *a, const ListCell *b)
{
	const KeyCount *x = lfirst(a);
	const KeyCount *y = lfirst(b);
	int			c;

	if (x->qid != y->qid)
		return x->qid < y->qid ? -1 : 1;
	c = memcmp(x->key, y->key, Min(Min(x->len, y->len), SSTATE_CLASS_PREFIX));
	if (c != 0)
		return c;
	if (x->pane != y->pane)
		return x->pane < y->pane ? -1 : 1;
	c = memcmp(x->key, y->key, Min(x->len, y->len));
	if (c != 0)
		return c;
	return (x->len > y->len) - (x->len < y->len);
}

/*
 * Rows of a query with classed keys come per image; merge the rows of one
 * pane whose keys the type calls equal (the same value written differently:
 * 'A' and 'a' under a case-insensitive collation, '1 day' and '24 hours')
 * into one, shown with the smallest image.  Rows of other queries pass
 * through.  Returns the merged list, in (query, prefix, pane, image) order.
 */
static List *
merge_classed(List *rows)
{
	List	   *out = NIL;
	List	   *groups = NIL;	/* representatives within the current run */
	KeyCount   *run = NULL;		/* first row of the run */
	const StreamStateQueryInfo *info = NULL;
	ListCell   *lc;

	list_sort(rows, key_count_cmp);
	foreach(lc, rows)
	{
		KeyCount   *kc = lfirst(lc);
		ListCell   *gc;
		bool		merged = false;

		if (info == NULL || info->id != kc->qid)
			info = sstate_query_by_id(kc->qid);
		if (info == NULL || !info->def.key_classed || kc->len < SSTATE_CLASS_PREFIX)
		{
			out = lappend(out, kc);
			continue;
		}
		if (run == NULL || run->qid != kc->qid || run->pane != kc->pane ||
			run->len < SSTATE_CLASS_PREFIX ||
			memcmp(run->key, kc->key, SSTATE_CLASS_PREFIX) != 0)
		{
			list_free(groups);
			groups = NIL;
			run = kc;
		}
		foreach(gc, groups)
		{
			KeyCount   *g = lfirst(gc);

			if (sstate_key_equal(info, g->key, g->len, kc->key, kc->len))
			{
				g->count += kc->count;
				merged = true;
				break;
			}
		}
		if (!merged)
		{
			groups = lappend(groups, kc);
			out = lappend(out, kc);
		}
	}
	list_free(groups);
	return out;
}

static void
counts_cb(void *arg, int32 qid, const char *key, uint32 keylen,
		  const StreamStatePane *panes, int npanes)
{
	CountsScan *cs = arg;
	int64		sum = 0;
	int			i;

	for (i = 0; i < npanes; i++)
		if (panes[i].pane >= cs->lo && panes[i].pane < cs->hi)
			sum += panes[i].count;
	if (sum != 0)
	{
		KeyCount   *kc = palloc(offsetof(KeyCount, key) + keylen);

		kc->qid = qid;
		kc->len = keylen;
		kc->count = sum;
		kc->pane = 0;
		memcpy(kc->key, key, keylen);
		cs->keys = lappend(cs->keys, kc);
	}
}

Datum
stream_state_window_counts(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	TimestampTz at = PG_GETARG_TIMESTAMPTZ(1);
	StreamStateQueryInfo *info = sstate_query_by_name(name, false);
	StreamStateDb *db;
	StreamStateQuery *q;
	CountsScan cs;
	StableRead	sr = {0};
	MemoryContext caller;
	MemoryContext attempt = NULL;
	int64		start_us = 0,
				end_us = 0;
	ListCell   *lc;

	sstate_query_check_read(info);
	if (info->def.sql)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("continuous query \"%s\" is a query in SQL", info->name),
				 errhint("Read it with window_result or its view.")));
	if (TIMESTAMP_NOT_FINITE(at))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("at must be a finite timestamp")));
	InitMaterializedSRF(fcinfo, 0);

	caller = CurrentMemoryContext;
retry:
	attempt_begin(&attempt);
	cs.keys = NIL;
	db = read_query_begin(info, &q, &sr);
	if (db == NULL)
	{
		MemoryContextSwitchTo(caller);
		return (Datum) 0;
	}
	if (q != NULL)
	{
		sstate_window_at(&q->def, at + STREAM_STATE_UNIX_OFFSET_US, &start_us, &end_us);
		PG_TRY();
		{
			check_window_open(q, start_us, end_us);
			cs.lo = start_us / q->def.pane_us;
			cs.hi = end_us / q->def.pane_us;
			if (q->def.backend != SSB_ROCKSDB)
			{
				sstate_store_scan(read_table, info->id, counts_cb, &cs);
				check_window_kept(q, start_us, end_us);
			}
		}
		PG_CATCH();
		{
			read_end(db);
			PG_RE_THROW();
		}
		PG_END_TRY();
		if (q->def.backend == SSB_ROCKSDB)
		{
			StreamStateQueryDef def = q->def;

			read_end(db);
			sstate_rdb_request_scan(db, &def, NULL, 0, counts_cb, &cs);
			db = NULL;
		}
		else if (!stable_end(&sr))
		{
			read_end(db);
			goto retry;
		}
	}
	read_end(db);
	MemoryContextSwitchTo(caller);
	if (info->def.key_classed)
		cs.keys = merge_classed(cs.keys);

	foreach(lc, cs.keys)
	{
		KeyCount   *kc = lfirst(lc);
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};

		values[0] = CStringGetTextDatum(sstate_key_text(info, kc->key, kc->len));
		values[1] = TimestampTzGetDatum(sstate_unix_us_to_ts(start_us));
		values[2] = TimestampTzGetDatum(sstate_unix_us_to_ts(end_us));
		values[3] = Int64GetDatum(kc->count);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

Datum
stream_state_wait_applied(PG_FUNCTION_ARGS)
{
	XLogRecPtr	lsn;
	int64		timeout_ms = 30000;

	sstate_shmem_check();
	lsn = PG_ARGISNULL(0) ? inserted_end() : PG_GETARG_LSN(0);
	if (!PG_ARGISNULL(1))
	{
		Interval   *iv = PG_GETARG_INTERVAL_P(1);

		timeout_ms = sstate_interval_us(iv, "timeout", true) / 1000;
	}
	PG_RETURN_BOOL(wait_applied_internal(lsn, 0, (int) Min(timeout_ms, INT_MAX), false));
}

static const char *
query_status(StreamStateDb *db, StreamStateQuery *q)
{
	if (db->worker_state == SSW_NONE)
		return "stopped";
	if (db->worker_state == SSW_STARTING)
		return "starting";
	if (db->worker_state == SSW_RESTORING)
		return "restoring";
	if (q->status == SSQ_PAUSED_MEMORY && q->def.backend == SSB_ROCKSDB)
		return "paused: catching up";	/* after RocksDB failed */
	if (q->status == SSQ_PAUSED_MEMORY)
		return "paused: memory full";
	if (q->status == SSQ_PAUSED_DISK)
		return db->rdb_full ? "paused: disk full" : "paused: RocksDB not writable";
	if (q->status == SSQ_NEEDS_REBUILD)
		return "needs rebuild";
	return "running";
}

/*
 * The worker of this database, for the queries view: stopped, starting,
 * restoring, running, or "state lost" (queries it does not know need a
 * rebuild).
 */
Datum
stream_state_worker_status(PG_FUNCTION_ARGS)
{
	StreamStateDb *db;
	const char *status;

	sstate_shmem_check();
	db = sstate_db_find(MyDatabaseId);
	if (db == NULL || db->worker_state == SSW_NONE)
		status = "stopped";
	else if (db->worker_state == SSW_STARTING)
		status = "starting";
	else if (db->worker_state == SSW_RESTORING)
		status = "restoring";
	else if (db->state_lost)
		status = "state lost";
	else
		status = "running";
	PG_RETURN_TEXT_P(cstring_to_text(status));
}

Datum
stream_state_query_stats(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	StreamStateDb *db;
	StreamStateQuery *qs;
	XLogRecPtr	applied;
	XLogRecPtr	insert;
	int			i;

	sstate_shmem_check();
	InitMaterializedSRF(fcinfo, 0);
	db = sstate_db_find(MyDatabaseId);
	if (db == NULL)
		return (Datum) 0;

	/*
	 * The counters of this session's own commits, as read_consistency says;
	 * but a monitoring view never fails and never waits for a worker that
	 * is not running, nor for a paused query.
	 */
	if (db->worker_state == SSW_RUNNING && sstate_read_consistency != SSTATE_READ_NONE)
	{
		XLogRecPtr	target = (sstate_read_consistency == SSTATE_READ_SESSION) ?
			sstate_capture_last_commit() : inserted_end();

		if (!XLogRecPtrIsInvalid(target))
			(void) wait_applied_internal(target, -1, sstate_read_timeout_ms, false);
	}

	insert = GetXLogInsertRecPtr();
	LWLockAcquire(&db->lock, LW_SHARED);
	applied = pg_atomic_read_u64(&db->applied_lsn);
	qs = sstate_db_queries(db);
	for (i = 0; i < sstate_shared->max_queries; i++)
	{
		StreamStateQuery *q = &qs[i];
		Datum		values[11];
		bool		nulls[11] = {0};
		int64		wm;

		if (q->status == SSQ_FREE)
			continue;
		values[0] = Int32GetDatum(q->def.id);
		values[1] = CStringGetTextDatum(query_status(db, q));
		values[2] = LSNGetDatum(applied);
		values[3] = Int64GetDatum(insert > applied ? (int64) (insert - applied) : 0);
		values[4] = Int64GetDatum((int64) q->events_applied);
		values[5] = Int64GetDatum((int64) q->late_events);
		values[6] = Int64GetDatum((int64) q->skipped);
		values[7] = Int64GetDatum(q->keys);
		values[8] = Int64GetDatum(q->panes);
		values[9] = Int64GetDatum(q->bytes);
		if (q->def.backend == SSB_ROCKSDB)
			nulls[7] = true;	/* panes and bytes are RocksDB's estimates */
		wm = sstate_watermark(q);
		if (wm == SSTATE_NO_TIME)
			nulls[10] = true;
		else
			values[10] = TimestampTzGetDatum(sstate_unix_us_to_ts(wm));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	LWLockRelease(&db->lock);
	return (Datum) 0;
}

typedef struct StateScan
{
	List	   *rows;
} StateScan;

static void
state_cb(void *arg, int32 qid, const char *key, uint32 keylen,
		 const StreamStatePane *panes, int npanes)
{
	StateScan  *ss = arg;
	int			i;

	if (sstate_store_is_values(read_table, qid))
		return;					/* a query in SQL: see window_result */
	for (i = 0; i < npanes; i++)
	{
		KeyCount   *kc = palloc(offsetof(KeyCount, key) + keylen);

		kc->qid = qid;
		kc->len = keylen;
		kc->count = panes[i].count;
		kc->pane = panes[i].pane;
		memcpy(kc->key, key, keylen);
		ss->rows = lappend(ss->rows, kc);
	}
}

/* A scan that overlapped a commit: its rows go (scan_query) */
static void
state_reset(void *arg)
{
	((StateScan *) arg)->rows = NIL;
}

Datum
stream_state_state(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	StreamStateDb *db;
	StateScan	ss;
	ListCell   *lc;

	sstate_shmem_check();
	InitMaterializedSRF(fcinfo, 0);
	ss.rows = NIL;
	db = read_begin(true, 0);
	if (db == NULL)
		return (Datum) 0;
	{
		/*
		 * Each query as a stable read of its own (the memory store), or asked
		 * of the worker (rocksdb), without db->lock held between them; queries
		 * in SQL have values, not counts: see window_result.
		 */
		StreamStateQuery *qs = sstate_db_queries(db);
		List	   *mems = NIL;
		List	   *rdefs = NIL;
		ListCell   *dc;

		for (int i = 0; i < sstate_shared->max_queries; i++)
		{
			if (qs[i].status == SSQ_FREE || qs[i].status == SSQ_NEEDS_REBUILD || qs[i].def.sql)
				continue;
			if (qs[i].def.backend == SSB_ROCKSDB)
			{
				StreamStateQueryDef *d;

				if (qs[i].status != SSQ_RUNNING)
					continue;
				d = palloc(sizeof(StreamStateQueryDef));
				*d = qs[i].def;
				rdefs = lappend(rdefs, d);
			}
			else
				mems = lappend_int(mems, qs[i].def.id);
		}
		read_end(db);
		foreach(dc, mems)
		{
			StreamStateQueryInfo *info = sstate_query_by_id(lfirst_int(dc));
			StateScan	one = {NIL};
			bool		rocksdb;

			if (info == NULL || !sstate_query_can_read(info))
				continue;
			scan_query(info, state_cb, &one, &rocksdb, state_reset);
			ss.rows = list_concat(ss.rows, one.rows);
		}
		foreach(dc, rdefs)
		{
			StreamStateQueryDef *d = lfirst(dc);
			StreamStateQueryInfo *info = sstate_query_by_id(d->id);

			if (info != NULL && sstate_query_can_read(info))
				sstate_rdb_request_scan(db, d, NULL, 0, state_cb, &ss);
		}
	}
	foreach(lc, ss.rows)
	{
		KeyCount   *kc = lfirst(lc);
		StreamStateQueryInfo *info = sstate_query_by_id(kc->qid);

		if (info != NULL && info->def.key_classed)
		{
			ss.rows = merge_classed(ss.rows);
			break;
		}
	}

	foreach(lc, ss.rows)
	{
		KeyCount   *kc = lfirst(lc);
		StreamStateQueryInfo *info = sstate_query_by_id(kc->qid);
		Datum		values[5];
		bool		nulls[5] = {0};

		if (info == NULL || !sstate_query_can_read(info))
			continue;
		values[0] = CStringGetTextDatum(info->name);
		values[1] = CStringGetTextDatum(sstate_key_text(info, kc->key, kc->len));
		values[2] = TimestampTzGetDatum(sstate_unix_us_to_ts(kc->pane * info->def.pane_us));
		values[3] = TimestampTzGetDatum(sstate_unix_us_to_ts((kc->pane + 1) * info->def.pane_us));
		values[4] = Int64GetDatum(kc->count);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * RocksDB of this database, for the rocksdb_stats view: a row for the
 * database (query_id NULL), then one per rocksdb query, with RocksDB's
 * estimates.  No rows when the worker is not running.
 */
Datum
stream_state_rocksdb_stats(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	StreamStateDb *db;
	StreamStateRdbStats *st;
	Datum		values[13];
	bool		nulls[13];
	bool		with_cache;

	sstate_shmem_check();
	InitMaterializedSRF(fcinfo, 0);
	/* 0.4.0 defined the function without the read cache's columns */
	with_cache = (rsinfo->setDesc->natts == 13);
	db = sstate_db_find(MyDatabaseId);
	if (db == NULL || db->worker_state != SSW_RUNNING)
		return (Datum) 0;
	st = sstate_rdb_request_stats(db);
	if (!st->open)
		return (Datum) 0;		/* no rocksdb query has opened it */

	memset(nulls, 0, sizeof(nulls));
	nulls[0] = true;
	values[1] = Int64GetDatum(st->estimated_entries);
	values[2] = Int64GetDatum(st->sst_bytes + st->memtable_bytes);
	values[3] = Int64GetDatum(st->memtable_bytes);
	values[4] = Int64GetDatum(st->block_cache_bytes);
	values[5] = Int64GetDatum(st->block_cache_capacity);
	values[6] = Int64GetDatum(st->sst_bytes);
	values[7] = Int64GetDatum(st->pending_compaction_bytes);
	values[8] = Int64GetDatum(st->running_compactions);
	values[9] = Int64GetDatum(st->cache_keys);
	values[10] = Int64GetDatum(st->cache_bytes);
	values[11] = Int64GetDatum((int64) pg_atomic_read_u64(&db->rdb_cache_hits));
	values[12] = Int64GetDatum((int64) pg_atomic_read_u64(&db->rdb_cache_misses));
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);

	for (int i = 0; i < st->nqueries; i++)
	{
		memset(nulls, true, sizeof(nulls));
		nulls[0] = nulls[1] = nulls[2] = false;
		values[0] = Int32GetDatum(st->queries[i].qid);
		values[1] = Int64GetDatum(st->queries[i].estimated_entries);
		values[2] = Int64GetDatum(st->queries[i].estimated_bytes);
		if (with_cache)
		{
			nulls[9] = nulls[10] = false;
			values[9] = Int64GetDatum(st->queries[i].cache_keys);
			values[10] = Int64GetDatum(st->queries[i].cache_bytes);
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
