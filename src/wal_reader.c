/*-------------------------------------------------------------------------
 *
 * wal_reader.c
 *	  Picking stream_state's messages out of the WAL and applying them at
 *	  their transaction's commit, in commit order.
 *
 * The worker hands every record it reads to sstate_apply_record().  Our
 * transactional logical messages are buffered per (sub)transaction id; a
 * COMMIT or COMMIT PREPARED record applies the messages of the transaction
 * and of the sub-transactions it lists, in LSN order; ABORT and ABORT
 * PREPARED records discard them.  A transaction that died in a crash has no
 * abort record: a RUNNING_XACTS record tells us every xid older than its
 * oldestRunningXid has ended, so anything still buffered for one was never
 * committed and is dropped.
 *
 * A commit is applied all or nothing.  When the memory backend is full, the
 * adds already made for that commit are undone, the query is marked paused,
 * and SSA_PAUSE tells the worker to stop before this record and retry it
 * later; its messages stay buffered and the WAL stays kept by the slot.
 * CREATE and DROP messages are idempotent, so a retried commit can repeat
 * them.
 *
 * Which WAL position is safe to release: in this version the slot stays at
 * the position it got when the database's first query was created (or at
 * the last DROP EXTENSION), because the state is rebuilt from the WAL on
 * every worker start.  Checkpoints will move it.
 *
 * IDENTIFICATION
 *	  src/wal_reader.c
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "access/xact.h"
#include "access/xlog_internal.h"
#include "access/xlogreader.h"
#include "commands/dbcommands_xlog.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "replication/message.h"
#include "storage/standbydefs.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "delta.h"
#include "store.h"
#include "wal_reader.h"
#include "window.h"

typedef struct BufferedMsg
{
	XLogRecPtr	lsn;
	Size		len;
	char		data[FLEXIBLE_ARRAY_MEMBER];
} BufferedMsg;

typedef struct XidBuf
{
	TransactionId xid;
	List	   *msgs;
} XidBuf;

typedef struct UndoEntry
{
	StreamStateQuery *q;
	int32		qid;
	const char *key;
	uint32		keylen;
	int64		pane;
	int64		count;
} UndoEntry;

typedef struct SavedQuery
{
	StreamStateQuery *q;
	StreamStateQuery copy;
} SavedQuery;

static StreamStateDb *apply_db = NULL;
static dshash_table *apply_table = NULL;
static HTAB *xid_bufs = NULL;
static MemoryContext apply_cxt = NULL;

static void buffer_message(TransactionId xid, XLogRecPtr lsn, const char *data, Size len);
static void discard_xids(TransactionId xid, int nsub, TransactionId *subxacts);
static StreamStateApplyResult apply_commit(TransactionId xid, int nsub,
										   TransactionId *subxacts,
										   TimestampTz commit_time, XLogRecPtr lsn);
static bool apply_messages(List *msgs, int64 commit_us, XLogRecPtr lsn,
						   int *ddl, StreamStateQuery **failed);
static StreamStateQuery *find_query(int32 qid);
static void define_query(const StreamStateQueryDef *def);
static void drop_query(StreamStateQuery *q);

void
sstate_apply_init(StreamStateDb *db, dshash_table *table)
{
	HASHCTL		ctl;

	apply_db = db;
	apply_table = table;
	apply_cxt = AllocSetContextCreate(TopMemoryContext, "stream_state apply",
									  ALLOCSET_DEFAULT_SIZES);
	ctl.keysize = sizeof(TransactionId);
	ctl.entrysize = sizeof(XidBuf);
	ctl.hcxt = apply_cxt;
	xid_bufs = hash_create("stream_state open transactions", 256, &ctl,
						   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

static StreamStateQuery *
find_query(int32 qid)
{
	StreamStateQuery *qs = sstate_db_queries(apply_db);
	int			i;

	for (i = 0; i < sstate_shared->max_queries; i++)
		if (qs[i].status != SSQ_FREE && qs[i].def.id == qid)
			return &qs[i];
	return NULL;
}

static void
define_query(const StreamStateQueryDef *def)
{
	StreamStateQuery *qs = sstate_db_queries(apply_db);
	int			i;

	if (find_query(def->id) != NULL)
		return;					/* a retried commit */

	LWLockAcquire(&apply_db->lock, LW_EXCLUSIVE);
	for (i = 0; i < sstate_shared->max_queries; i++)
	{
		if (qs[i].status == SSQ_FREE)
		{
			memset(&qs[i], 0, sizeof(StreamStateQuery));
			qs[i].def = *def;
			qs[i].max_event_us = SSTATE_NO_TIME;
			qs[i].dead_below = PG_INT64_MIN;
			qs[i].status = SSQ_RUNNING;
			break;
		}
	}
	LWLockRelease(&apply_db->lock);
	if (i == sstate_shared->max_queries)
		ereport(WARNING,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("stream_state: no free query slot for continuous query \"%s\"; its events are ignored",
						def->name),
				 errhint("Increase stream_state.max_queries.")));
}

static void
drop_query(StreamStateQuery *q)
{
	sstate_store_drop_query(apply_table, q);
	LWLockAcquire(&apply_db->lock, LW_EXCLUSIVE);
	if (apply_db->paused_query == q->def.id)
		apply_db->paused_query = 0;
	q->status = SSQ_FREE;
	LWLockRelease(&apply_db->lock);
}

static void
buffer_message(TransactionId xid, XLogRecPtr lsn, const char *data, Size len)
{
	XidBuf	   *buf;
	BufferedMsg *msg;
	bool		found;
	MemoryContext old;

	buf = hash_search(xid_bufs, &xid, HASH_ENTER, &found);
	if (!found)
		buf->msgs = NIL;
	old = MemoryContextSwitchTo(apply_cxt);
	msg = palloc(offsetof(BufferedMsg, data) + len);
	msg->lsn = lsn;
	msg->len = len;
	memcpy(msg->data, data, len);
	buf->msgs = lappend(buf->msgs, msg);
	MemoryContextSwitchTo(old);
}

static void
discard_one(TransactionId xid)
{
	XidBuf	   *buf = hash_search(xid_bufs, &xid, HASH_FIND, NULL);

	if (buf == NULL)
		return;
	list_free_deep(buf->msgs);
	hash_search(xid_bufs, &xid, HASH_REMOVE, NULL);
}

static void
discard_xids(TransactionId xid, int nsub, TransactionId *subxacts)
{
	int			i;

	discard_one(xid);
	for (i = 0; i < nsub; i++)
		discard_one(subxacts[i]);
}

static int
msg_lsn_cmp(const ListCell *a, const ListCell *b)
{
	XLogRecPtr	la = ((BufferedMsg *) lfirst(a))->lsn;
	XLogRecPtr	lb = ((BufferedMsg *) lfirst(b))->lsn;

	return (la > lb) - (la < lb);
}

static StreamStateApplyResult
apply_commit(TransactionId xid, int nsub, TransactionId *subxacts,
			 TimestampTz commit_time, XLogRecPtr lsn)
{
	List	   *msgs = NIL;
	XidBuf	   *buf;
	int			ddl = SSA_OK;
	StreamStateQuery *failed = NULL;
	int			i;

	buf = hash_search(xid_bufs, &xid, HASH_FIND, NULL);
	if (buf != NULL)
		msgs = list_copy(buf->msgs);
	for (i = 0; i < nsub; i++)
	{
		buf = hash_search(xid_bufs, &subxacts[i], HASH_FIND, NULL);
		if (buf != NULL)
			msgs = list_concat(msgs, buf->msgs);
	}
	if (msgs == NIL)
		return SSA_OK;
	list_sort(msgs, msg_lsn_cmp);

	if (!apply_messages(msgs, (int64) commit_time + STREAM_STATE_UNIX_OFFSET_US,
						lsn, &ddl, &failed))
	{
		list_free(msgs);
		if (failed != NULL && failed->status != SSQ_PAUSED_MEMORY)
		{
			failed->status = SSQ_PAUSED_MEMORY;
			apply_db->paused_query = failed->def.id;
			ereport(LOG,
					(errmsg("stream_state: memory full: continuous query \"%s\" paused at %X/%X",
							failed->def.name, LSN_FORMAT_ARGS(lsn)),
					 errdetail("The commit at %X/%X and everything after it stay in the kept WAL and are applied when memory frees up.",
							   LSN_FORMAT_ARGS(lsn)),
					 errhint("Increase stream_state.memory_limit, drop queries, or lower their window sizes.")));
		}
		return SSA_PAUSE;
	}
	list_free(msgs);
	discard_xids(xid, nsub, subxacts);
	return (StreamStateApplyResult) ddl;
}

static SavedQuery *
save_query(List **saved, StreamStateQuery *q)
{
	ListCell   *lc;
	SavedQuery *s;

	foreach(lc, *saved)
	{
		s = lfirst(lc);
		if (s->q == q)
			return s;
	}
	s = palloc(sizeof(SavedQuery));
	s->q = q;
	s->copy = *q;
	*saved = lappend(*saved, s);
	return s;
}

/*
 * One attempt at applying a committed transaction's messages.  On failure
 * (memory full) every add is undone, the touched queries' counters restored,
 * and *failed names the query that could not grow.
 */
static bool
try_apply(List *msgs, int64 commit_us, XLogRecPtr lsn, int *ddl,
		  StreamStateQuery **failed, List **saved_out)
{
	List	   *saved = NIL;
	UndoEntry  *undo = NULL;
	int			nundo = 0;
	int			maxundo = 0;
	ListCell   *lc;
	bool		ok = true;

	foreach(lc, msgs)
	{
		BufferedMsg *msg = lfirst(lc);
		StreamStateDeltaReader r;

		if (!sstate_delta_open(&r, msg->data, msg->len))
		{
			ereport(WARNING,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("stream_state: skipping unreadable message at %X/%X",
							LSN_FORMAT_ARGS(msg->lsn)),
					 errdetail("Message format version %d, kind %d; this server reads version %d.",
							   (int) r.version, (int) r.kind, STREAM_STATE_DELTA_VERSION)));
			continue;
		}

		if (r.kind == SSM_CREATE)
		{
			StreamStateQueryDef def;

			if (sstate_delta_get_def(&r, &def))
			{
				define_query(&def);
				*ddl = SSA_CREATED;
			}
			else
				ereport(WARNING,
						(errcode(ERRCODE_DATA_CORRUPTED),
						 errmsg("stream_state: skipping malformed definition at %X/%X",
								LSN_FORMAT_ARGS(msg->lsn))));
		}
		else if (r.kind == SSM_DROP)
		{
			int32		qid;
			StreamStateQuery *q;

			if (sstate_delta_get_qid(&r, &qid) && (q = find_query(qid)) != NULL)
				drop_query(q);
		}
		else if (r.kind == SSM_DROP_EXTENSION)
		{
			StreamStateQuery *qs = sstate_db_queries(apply_db);
			int			i;

			for (i = 0; i < sstate_shared->max_queries; i++)
				if (qs[i].status != SSQ_FREE)
					drop_query(&qs[i]);
			*ddl = SSA_DROP_EXTENSION;
		}
		else if (r.kind == SSM_DATA)
		{
			for (;;)
			{
				StreamStateDeltaQuery sec;
				StreamStateDeltaEntry e;
				StreamStateQuery *q;
				SavedQuery *s = NULL;
				int64		dead_before = PG_INT64_MIN;
				int64		max_event;
				bool		done;

				if (!sstate_delta_next_query(&r, &sec, &done))
					goto malformed;
				if (done)
					break;
				q = find_query(sec.qid);
				if (q != NULL)
				{
					s = save_query(&saved, q);
					dead_before = sstate_dead_below(&q->def, sstate_watermark(&s->copy));
					q->skipped += sec.skipped;
				}
				max_event = (sec.flags & SSM_FLAG_NO_PANE) ? commit_us : sec.max_event_us;

				while (sec.nentries-- > 0)
				{
					int64		pane;

					if (!sstate_delta_next_entry(&r, &e))
						goto malformed;
					if (q == NULL)
						continue;
					pane = (sec.flags & SSM_FLAG_NO_PANE) ?
						sstate_pane_of(&q->def, commit_us) : e.pane;
					if (pane < dead_before)
					{
						q->late_events += e.count;
						continue;
					}
					if (!sstate_store_add(apply_table, q, e.key, e.keylen, pane, e.count))
					{
						*failed = q;
						ok = false;
						goto done;
					}
					if (nundo == maxundo)
					{
						maxundo = maxundo ? maxundo * 2 : 256;
						undo = undo ? repalloc_huge(undo, sizeof(UndoEntry) * maxundo)
							: palloc(sizeof(UndoEntry) * maxundo);
					}
					undo[nundo].q = q;
					undo[nundo].qid = q->def.id;
					undo[nundo].key = e.key;
					undo[nundo].keylen = e.keylen;
					undo[nundo].pane = pane;
					undo[nundo].count = e.count;
					nundo++;
					q->events_applied += e.count;
				}
				if (q != NULL && max_event != SSTATE_NO_TIME && max_event > q->max_event_us)
					q->max_event_us = max_event;
			}
			continue;
	malformed:
			ereport(WARNING,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("stream_state: malformed data message at %X/%X; the rest of it is skipped",
							LSN_FORMAT_ARGS(msg->lsn))));
		}
	}

done:
	if (!ok)
	{
		int			i;
		ListCell   *lc2;

		for (i = nundo - 1; i >= 0; i--)
		{
			UndoEntry  *u = &undo[i];

			if (u->q->status != SSQ_FREE && u->q->def.id == u->qid)
				sstate_store_add(apply_table, u->q, u->key, u->keylen,
								 u->pane, -u->count);
		}
		foreach(lc2, saved)
		{
			SavedQuery *s = lfirst(lc2);
			int64		keys = s->q->keys,
						panes = s->q->panes,
						bytes = s->q->bytes,
						max_event = s->q->max_event_us;

			if (s->q->status == SSQ_FREE || s->q->def.id != s->copy.def.id)
				continue;
			*s->q = s->copy;
			s->q->keys = keys;
			s->q->panes = panes;
			s->q->bytes = bytes;
			/* remembered for evict-ahead; restored by the caller */
			s->copy.max_event_us = max_event;
		}
	}
	if (undo)
		pfree(undo);
	*saved_out = saved;
	return ok;
}

/*
 * Advance a query's eviction to its current watermark.
 */
static void
evict_to(StreamStateQuery *q, int64 max_event_us)
{
	int64		wm;
	int64		dead;

	if (max_event_us == SSTATE_NO_TIME)
		return;
	wm = max_event_us - q->def.lateness_us;
	dead = sstate_dead_below(&q->def, wm);
	if (dead > q->dead_below)
	{
		sstate_store_evict(apply_table, q, dead);
		q->dead_below = dead;
	}
}

static bool
apply_messages(List *msgs, int64 commit_us, XLogRecPtr lsn,
			   int *ddl, StreamStateQuery **failed)
{
	List	   *saved = NIL;
	ListCell   *lc;
	int			attempt;

	for (attempt = 0; attempt < 2; attempt++)
	{
		if (try_apply(msgs, commit_us, lsn, ddl, failed, &saved))
		{
			foreach(lc, saved)
			{
				SavedQuery *s = lfirst(lc);
				StreamStateQuery *q = s->q;

				if (q->status == SSQ_FREE)
					continue;
				evict_to(q, q->max_event_us);
				if (q->status == SSQ_PAUSED_MEMORY)
				{
					q->status = SSQ_RUNNING;
					apply_db->paused_query = 0;
					ereport(LOG,
							(errmsg("stream_state: continuous query \"%s\" resumed at %X/%X",
									q->def.name, LSN_FORMAT_ARGS(lsn))));
				}
			}
			list_free_deep(saved);
			return true;
		}

		/*
		 * Memory is full.  This commit may itself close windows: evict what
		 * it would evict anyway, and try once more.
		 */
		foreach(lc, saved)
		{
			SavedQuery *s = lfirst(lc);

			if (s->q->status != SSQ_FREE)
				evict_to(s->q, s->copy.max_event_us);
		}
		list_free_deep(saved);
		saved = NIL;
	}
	return false;
}

/*
 * Look at one WAL record.  Returns SSA_PAUSE if the record is a commit that
 * cannot be applied now: the caller must read it again later.
 */
StreamStateApplyResult
sstate_apply_record(XLogReaderState *record)
{
	uint8		rmid = XLogRecGetRmid(record);
	uint8		info = XLogRecGetInfo(record) & ~XLR_INFO_MASK;

	if (rmid == RM_LOGICALMSG_ID)
	{
		xl_logical_message *m;

		if (info != XLOG_LOGICAL_MESSAGE)
			return SSA_OK;
		m = (xl_logical_message *) XLogRecGetData(record);
		if (m->dbId != apply_db->dboid || !m->transactional ||
			m->prefix_size != sizeof(STREAM_STATE_MSG_PREFIX) ||
			strcmp(m->message, STREAM_STATE_MSG_PREFIX) != 0)
			return SSA_OK;
		buffer_message(XLogRecGetXid(record), record->ReadRecPtr,
					   m->message + m->prefix_size, m->message_size);
	}
	else if (rmid == RM_XACT_ID)
	{
		uint8		op = info & XLOG_XACT_OPMASK;

		if (hash_get_num_entries(xid_bufs) == 0)
			return SSA_OK;
		if (op == XLOG_XACT_COMMIT || op == XLOG_XACT_COMMIT_PREPARED)
		{
			xl_xact_parsed_commit parsed;
			TransactionId xid;

			ParseCommitRecord(XLogRecGetInfo(record),
							  (xl_xact_commit *) XLogRecGetData(record), &parsed);
			xid = (op == XLOG_XACT_COMMIT_PREPARED) ? parsed.twophase_xid :
				XLogRecGetXid(record);
			return apply_commit(xid, parsed.nsubxacts, parsed.subxacts,
								parsed.xact_time, record->ReadRecPtr);
		}
		else if (op == XLOG_XACT_ABORT || op == XLOG_XACT_ABORT_PREPARED)
		{
			xl_xact_parsed_abort parsed;
			TransactionId xid;

			ParseAbortRecord(XLogRecGetInfo(record),
							 (xl_xact_abort *) XLogRecGetData(record), &parsed);
			xid = (op == XLOG_XACT_ABORT_PREPARED) ? parsed.twophase_xid :
				XLogRecGetXid(record);
			discard_xids(xid, parsed.nsubxacts, parsed.subxacts);
		}
	}
	else if (rmid == RM_STANDBY_ID && info == XLOG_RUNNING_XACTS)
	{
		xl_running_xacts *rx = (xl_running_xacts *) XLogRecGetData(record);
		HASH_SEQ_STATUS seq;
		XidBuf	   *buf;
		TransactionId *dead;
		long		ndead = 0;
		long		i;

		if (hash_get_num_entries(xid_bufs) == 0)
			return SSA_OK;
		dead = palloc(sizeof(TransactionId) * hash_get_num_entries(xid_bufs));
		hash_seq_init(&seq, xid_bufs);
		while ((buf = hash_seq_search(&seq)) != NULL)
			if (TransactionIdPrecedes(buf->xid, rx->oldestRunningXid))
				dead[ndead++] = buf->xid;
		for (i = 0; i < ndead; i++)
			discard_one(dead[i]);
		pfree(dead);
	}
	else if (rmid == RM_DBASE_ID && info == XLOG_DBASE_DROP)
	{
		xl_dbase_drop_rec *rec = (xl_dbase_drop_rec *) XLogRecGetData(record);

		if (rec->db_id == apply_db->dboid)
			return SSA_DROP_DATABASE;
	}
	return SSA_OK;
}

/* Number of transactions with buffered messages (for the status line). */
long
sstate_apply_open_xacts(void)
{
	return xid_bufs ? hash_get_num_entries(xid_bufs) : 0;
}
