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
 * adds already made for that commit are undone and the query that could not
 * grow is paused: it remembers the commit it stopped at (paused_lsn) and
 * where to start reading again to see every message of the transactions
 * open then (paused_restart, the smallest first-message LSN among them).
 * The commit is applied again at once without that query, and the worker
 * goes on for the other queries.  Every second the worker runs a catch-up
 * reader for each paused query, from paused_restart up to where the main
 * reader is, applying that query's commits from paused_lsn on; when it gets
 * there, the query runs again.  The WAL it needs is kept by the slot.  A
 * DROP of the paused query, read by the main reader, frees its memory at
 * once, so space can return while a query is paused.
 *
 * Which WAL position is safe to release: sstate_apply_restart_lsn() says
 * where reading must start again to rebuild the state as it is now; a
 * checkpoint records it, and once the checkpoint is durable the slot moves
 * there (checkpoint.c).  A worker restored from a checkpoint at applied
 * position L skips commits before L (sstate_apply_skip_below).
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
#include "access/xlogutils.h"
#include "commands/dbcommands_xlog.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "replication/message.h"
#include "storage/standbydefs.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "delta.h"
#include "cq_worker.h"
#include "rocks.h"
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
	XLogRecPtr	first_lsn;
	List	   *msgs;
} XidBuf;

typedef struct SavedQuery
{
	StreamStateQuery *q;
	StreamStateQuery copy;
	int64		max_event_us;	/* the commit's newest event: q's once applied */
} SavedQuery;

/*
 * A reader's view of open transactions.  The main applier applies every
 * running query; a catch-up applier applies one paused query's commits from
 * its paused_lsn on, and nothing else (no definitions).
 */
typedef struct Applier
{
	HTAB	   *xids;
	MemoryContext cxt;
	StreamStateQuery *only;		/* catch-up: the paused query */
	int32		only_id;
	bool		failed;			/* catch-up: paused again */
	List	   *resets;			/* ResetMark of the commit being applied */
	XLogRecPtr	skip_below;		/* commits before it are in the checkpoint
								 * the state was restored from */
} Applier;

/* A query's source was truncated at lsn in the commit being applied */
typedef struct ResetMark
{
	StreamStateQuery *q;
	XLogRecPtr	lsn;
} ResetMark;

static StreamStateDb *apply_db = NULL;
static StreamStateStore *apply_table = NULL;
static Applier main_applier;

static void applier_init(Applier *a);
static void applier_free(Applier *a);
static StreamStateApplyResult applier_record(Applier *a, XLogReaderState *record);
static void buffer_message(Applier *a, TransactionId xid, XLogRecPtr lsn,
						   const char *data, Size len);
static void discard_xids(Applier *a, TransactionId xid, int nsub, TransactionId *subxacts);
static StreamStateApplyResult apply_commit(Applier *a, TransactionId xid, int nsub,
										   TransactionId *subxacts,
										   TimestampTz commit_time, XLogRecPtr lsn);
static bool apply_messages(Applier *a, List *msgs, int64 commit_us, XLogRecPtr lsn,
						   int *ddl, StreamStateQuery **failed);
static StreamStateQuery *find_query(int32 qid);
static void define_query(const StreamStateQueryDef *def, XLogRecPtr lsn);
static void drop_query(StreamStateQuery *q);

static void
applier_init(Applier *a)
{
	HASHCTL		ctl;

	memset(a, 0, sizeof(Applier));
	a->cxt = AllocSetContextCreate(TopMemoryContext, "stream_state apply",
								   ALLOCSET_DEFAULT_SIZES);
	ctl.keysize = sizeof(TransactionId);
	ctl.entrysize = sizeof(XidBuf);
	ctl.hcxt = a->cxt;
	a->xids = hash_create("stream_state open transactions", 256, &ctl,
						  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

static void
applier_free(Applier *a)
{
	MemoryContextDelete(a->cxt);
	a->xids = NULL;
}

/*
 * Stable reads.  A commit reaches the memory store entry by entry, each
 * under its partition's lock, so a reader could see part of it (and, over a
 * long scan, parts of several).  So the worker brackets what a commit does
 * to a query with two bumps of the query's apply_seq: the first when the
 * commit first touches the query (save_query, a truncation, a move), the
 * second when the commit, and the evictions it brings, are done
 * (apply_messages).  A reader whose scan overlapped a bracket reads again
 * (sql_api.c, "Stable reads").  A reader that failed twice sets
 * reader_hold_until, and the next commit of the query waits that long (at
 * most READER_HOLD_MAX_US), so that a long scan of a busy query finishes;
 * but after a hold of t the worker holds for nobody during the next t.
 */
#define READER_HOLD_MAX_US	1000000

static StreamStateQuery **opened = NULL;
static int	nopened = 0;
static TimestampTz hold_again_at = 0;	/* no hold before this */

static void
apply_open(StreamStateQuery *q)
{
	uint64		hold;

	for (int i = 0; i < nopened; i++)
		if (opened[i] == q)
			return;
	if (opened == NULL)
		opened = MemoryContextAlloc(TopMemoryContext,
									sizeof(StreamStateQuery *) * sstate_shared->max_queries);
	hold = pg_atomic_read_u64(&q->reader_hold_until);
	if (hold != 0)
	{
		TimestampTz now = GetCurrentTimestamp();

		/*
		 * After a hold the worker runs at least as long before it holds
		 * again: readers that keep asking get at most half of its time.
		 */
		if (now < (TimestampTz) hold && now >= hold_again_at)
		{
			int64		us = Min((TimestampTz) hold - now, READER_HOLD_MAX_US);

			pg_usleep(us);
			hold_again_at = now + 2 * us;
		}
	}
	opened[nopened++] = q;
	/* odd: a full barrier, so before any change the commit makes */
	pg_atomic_fetch_add_u32(&q->apply_seq, 1);
}

static void
apply_close(void)
{
	/* even: a full barrier, so after every change */
	for (int i = 0; i < nopened; i++)
		pg_atomic_fetch_add_u32(&opened[i]->apply_seq, 1);
	nopened = 0;
}

void
sstate_apply_init(StreamStateDb *db, StreamStateStore *table)
{
	/*
	 * A worker that stopped half-way through a commit left its brackets
	 * open; the new one starts from zeroed query slots (worker.c).
	 */
	nopened = 0;
	apply_db = db;
	apply_table = table;
	applier_init(&main_applier);
	sstate_rdb_cache_init(db, table);
	sstate_rdb_late_init(table);
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

/* Does applier a apply this query's data? */
static inline bool
applies_to(Applier *a, StreamStateQuery *q)
{
	if (a->only != NULL)
		return q == a->only;
	return q->status == SSQ_RUNNING;
}

/*
 * Empty a query's state, in whichever backend it is.
 */
static void
drop_state(StreamStateQuery *q)
{
	if (q->def.backend == SSB_ROCKSDB)
		sstate_rdb_drop_query(q->def.id);
	else
		sstate_store_drop_query(apply_table, q);
}

/*
 * A rocksdb query's state may be ahead of the commit that defines it (the
 * worker restarted, RocksDB kept what it had written): take its position
 * and counters from RocksDB's meta, and skip the commits it holds.  True
 * if it did; the caller then loads the query's late groups from RocksDB
 * (sstate_rdb_late_load, not under apply_db->lock).
 */
static bool
adopt_rdb_meta(StreamStateQuery *q, XLogRecPtr lsn)
{
	StreamStateRdbMeta m;

	if (!sstate_rdb_is_open())
		return false;
	sstate_rdb_set_dead_below(q->def.id, PG_INT64_MIN);
	if (!sstate_rdb_get_meta(q->def.id, &m) || m.applied <= lsn)
		return false;
	sstate_rdb_adopt_meta(q, &m, SSQ_RUNNING);
	return true;
}

static void
define_query(const StreamStateQueryDef *def, XLogRecPtr lsn)
{
	StreamStateQuery *qs = sstate_db_queries(apply_db);
	int			i;
	char	   *open_error = NULL;
	bool		adopted = false;

	if (find_query(def->id) != NULL)
		return;					/* a retried commit */
	if (def->backend == SSB_ROCKSDB && !sstate_rdb_is_open() && !sstate_rdb_broken() &&
		!sstate_rdb_open(apply_db->dboid, &open_error))
		Assert(open_error != NULL);

	LWLockAcquire(&apply_db->lock, LW_EXCLUSIVE);
	for (i = 0; i < sstate_shared->max_queries; i++)
	{
		if (qs[i].status == SSQ_FREE)
		{
			memset(&qs[i], 0, sizeof(StreamStateQuery));
			qs[i].def = *def;
			qs[i].max_event_us = SSTATE_NO_TIME;
			qs[i].dead_below = PG_INT64_MIN;
			qs[i].idle_below = PG_INT64_MIN;
			qs[i].status = SSQ_RUNNING;
			qs[i].defined_lsn = lsn;
			if (def->backend == SSB_ROCKSDB && sstate_rdb_broken())
			{
				/* it waits with the others for RocksDB to come back */
				qs[i].status = SSQ_PAUSED_DISK;
				qs[i].paused_lsn = lsn;
			}
			else if (def->backend == SSB_ROCKSDB)
				adopted = adopt_rdb_meta(&qs[i], lsn);
			break;
		}
	}
	LWLockRelease(&apply_db->lock);
	/* whatever its late_to: an ALTER replayed later may switch it on */
	if (adopted)
		sstate_rdb_late_load(def->id);
	if (open_error != NULL)
		sstate_rdb_fail(apply_db, lsn, open_error);
	if (i == sstate_shared->max_queries)
		ereport(WARNING,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("stream_state: no free query slot for continuous query \"%s\"; its events are ignored",
						def->name),
				 errhint("Increase stream_state.max_queries.")));
}

static void evict_to(StreamStateQuery *q, int64 max_event_us);

/* The store's merge of values: partial states combined (cq_worker.c) */
static bool
merge_values(void *arg, const char *old, uint32 oldlen, const char *add, uint32 addlen,
			 const char **out, uint32 *outlen)
{
	static StringInfoData buf;

	if (buf.data == NULL)
	{
		MemoryContext cxt = MemoryContextSwitchTo(TopMemoryContext);

		initStringInfo(&buf);
		MemoryContextSwitchTo(cxt);
	}
	if (!sstate_cq_merge((CqLayout *) arg, old, oldlen, add, addlen, &buf))
		return false;
	*out = buf.data;
	*outlen = buf.len;
	return true;
}

/*
 * alter_query(): q's lateness, retention or emit_to changes at the commit
 * at lsn.  A smaller lateness evicts at once what the new watermark closes;
 * a larger one evicts nothing more, and brings nothing back (dead_below
 * never goes down).  A retention drops idle keys from now on.  emit_to
 * switched on keeps every pane until a helper has said what it emitted
 * (emit.c); switched off, what it kept goes.  late_to switched on records
 * late groups from the next commit on; switched off, those not written yet
 * go.
 */
static void
alter_query(StreamStateQuery *q, int64 lateness_us, uint8 what, int64 retention_us, bool emit,
			bool late, XLogRecPtr lsn)
{
	bool		changed = false;

	LWLockAcquire(&apply_db->lock, LW_EXCLUSIVE);
	if (q->def.lateness_us != lateness_us)
	{
		q->def.lateness_us = lateness_us;
		changed = true;
	}
	if ((what & SSM_ALTER_RETENTION) && q->def.retention_us != retention_us)
	{
		q->def.retention_us = retention_us;
		q->idle_below = PG_INT64_MIN;
		changed = true;
	}
	if ((what & SSM_ALTER_EMIT) && q->def.emit != emit)
	{
		q->def.emit = emit;
		q->emit_known = false;
		changed = true;
	}
	if ((what & SSM_ALTER_LATE) && q->def.late != late)
	{
		q->def.late = late;
		q->late_known = false;
		changed = true;
	}
	LWLockRelease(&apply_db->lock);
	if (!changed)
		return;					/* replayed */
	/* a rocksdb query's groups after the commit are RocksDB's: kept */
	if (!q->def.late && !(q->def.backend == SSB_ROCKSDB && lsn < q->skip_below))
	{
		sstate_store_late_drop(apply_table, q->def.id);
		if (q->def.backend == SSB_ROCKSDB)
			sstate_rdb_late_delete(q->def.id, PG_UINT64_MAX);
	}
	evict_to(q, q->max_event_us);
	ereport(LOG,
			(errmsg("stream_state: continuous query \"%s\" has lateness %lld us, retention %lld us, %s and %s from %X/%X on",
					q->def.name, (long long) q->def.lateness_us, (long long) q->def.retention_us,
					q->def.emit ? "emit_to" : "no emit_to", q->def.late ? "late_to" : "no late_to",
					LSN_FORMAT_ARGS(lsn))));
}

static void
drop_query(StreamStateQuery *q)
{
	drop_state(q);
	sstate_store_late_drop(apply_table, q->def.id);
	if (q->def.backend == SSB_ROCKSDB)
		sstate_rdb_late_delete(q->def.id, PG_UINT64_MAX);
	if (q->def.sql)
	{
		sstate_cq_layout_forget(q->def.id);
		sstate_store_set_values(apply_table, q->def.id, false);
	}
	LWLockAcquire(&apply_db->lock, LW_EXCLUSIVE);
	q->status = SSQ_FREE;
	q->paused_lsn = InvalidXLogRecPtr;
	LWLockRelease(&apply_db->lock);
}

static void
buffer_message(Applier *a, TransactionId xid, XLogRecPtr lsn, const char *data, Size len)
{
	XidBuf	   *buf;
	BufferedMsg *msg;
	bool		found;
	MemoryContext old;

	buf = hash_search(a->xids, &xid, HASH_ENTER, &found);
	if (!found)
	{
		buf->msgs = NIL;
		buf->first_lsn = lsn;
	}
	old = MemoryContextSwitchTo(a->cxt);
	msg = palloc(offsetof(BufferedMsg, data) + len);
	msg->lsn = lsn;
	msg->len = len;
	memcpy(msg->data, data, len);
	buf->msgs = lappend(buf->msgs, msg);
	MemoryContextSwitchTo(old);
}

static void
discard_one(Applier *a, TransactionId xid)
{
	XidBuf	   *buf = hash_search(a->xids, &xid, HASH_FIND, NULL);

	if (buf == NULL)
		return;
	list_free_deep(buf->msgs);
	hash_search(a->xids, &xid, HASH_REMOVE, NULL);
}

static void
discard_xids(Applier *a, TransactionId xid, int nsub, TransactionId *subxacts)
{
	int			i;

	discard_one(a, xid);
	for (i = 0; i < nsub; i++)
		discard_one(a, subxacts[i]);
}

/* Smallest first-message LSN among the transactions a still buffers. */
static XLogRecPtr
oldest_open_lsn(Applier *a, XLogRecPtr dflt)
{
	HASH_SEQ_STATUS seq;
	XidBuf	   *buf;
	XLogRecPtr	result = dflt;

	hash_seq_init(&seq, a->xids);
	while ((buf = hash_seq_search(&seq)) != NULL)
		if (buf->first_lsn < result)
			result = buf->first_lsn;
	return result;
}

static int
msg_lsn_cmp(const ListCell *a, const ListCell *b)
{
	XLogRecPtr	la = ((BufferedMsg *) lfirst(a))->lsn;
	XLogRecPtr	lb = ((BufferedMsg *) lfirst(b))->lsn;

	return (la > lb) - (la < lb);
}

/*
 * Pause query q at the commit record at lsn: applier a could not apply it.
 */
static void
pause_query(Applier *a, StreamStateQuery *q, XLogRecPtr lsn)
{
	bool		was_running = (q->status == SSQ_RUNNING);

	LWLockAcquire(&apply_db->lock, LW_EXCLUSIVE);
	q->status = SSQ_PAUSED_MEMORY;
	q->paused_lsn = lsn;
	q->paused_restart = oldest_open_lsn(a, lsn);
	LWLockRelease(&apply_db->lock);
	if (was_running)
		ereport(LOG,
				(errmsg("stream_state: memory full: continuous query \"%s\" paused at %X/%X",
						q->def.name, LSN_FORMAT_ARGS(lsn)),
				 errdetail("Its commits from %X/%X on stay in the kept WAL and are applied when memory frees up; the other queries go on.",
						   LSN_FORMAT_ARGS(lsn)),
				 errhint("Increase stream_state.memory_limit, drop queries, or lower their window sizes.")));
}

static StreamStateApplyResult
apply_commit(Applier *a, TransactionId xid, int nsub, TransactionId *subxacts,
			 TimestampTz commit_time, XLogRecPtr lsn)
{
	List	   *msgs = NIL;
	XidBuf	   *buf;
	int			ddl = SSA_OK;
	int			i;

	buf = hash_search(a->xids, &xid, HASH_FIND, NULL);
	if (buf != NULL)
		msgs = list_copy(buf->msgs);
	for (i = 0; i < nsub; i++)
	{
		buf = hash_search(a->xids, &subxacts[i], HASH_FIND, NULL);
		if (buf != NULL)
			msgs = list_concat(msgs, buf->msgs);
	}
	if (msgs == NIL)
		return SSA_OK;

	/* restored from a checkpoint that holds this commit already */
	if (lsn < a->skip_below)
	{
		list_free(msgs);
		discard_xids(a, xid, nsub, subxacts);
		return SSA_OK;
	}

	/* catch-up: commits before the paused one were applied already */
	if (a->only == NULL || lsn >= a->only->paused_lsn)
	{
		list_sort(msgs, msg_lsn_cmp);
		for (;;)
		{
			StreamStateQuery *failed = NULL;

			if (apply_messages(a, msgs, (int64) commit_time + STREAM_STATE_UNIX_OFFSET_US,
							   lsn, &ddl, &failed))
				break;
			Assert(failed != NULL);
			pause_query(a, failed, lsn);
			if (a->only != NULL)
			{
				a->failed = true;
				list_free(msgs);
				return SSA_OK;	/* messages stay buffered; the reader stops */
			}
			/* apply it again without the paused query */
		}
	}
	list_free(msgs);
	discard_xids(a, xid, nsub, subxacts);

	/*
	 * Catch-up progress is recorded commit by commit, so a catch-up that
	 * stops anywhere never applies a commit twice.
	 */
	if (a->only != NULL && lsn >= a->only->paused_lsn)
	{
		LWLockAcquire(&apply_db->lock, LW_EXCLUSIVE);
		a->only->paused_lsn = lsn + 1;
		a->only->paused_restart = oldest_open_lsn(a, lsn + 1);
		LWLockRelease(&apply_db->lock);
	}
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
	apply_open(q);				/* before the copy: an undo keeps it open */
	s = palloc(sizeof(SavedQuery));
	s->q = q;
	s->copy = *q;
	s->max_event_us = SSTATE_NO_TIME;
	*saved = lappend(*saved, s);
	return s;
}

/* Was q's source truncated after lsn, in the commit being applied? */
static bool
reset_after(Applier *a, StreamStateQuery *q, XLogRecPtr lsn)
{
	ListCell   *lc;

	foreach(lc, a->resets)
	{
		ResetMark  *m = lfirst(lc);

		if (m->q == q && m->lsn > lsn)
			return true;
	}
	return false;
}

/*
 * Empty a query's state: its source was truncated.  Its counters keep their
 * history; its watermark starts again.
 */
static void
reset_query(StreamStateQuery *q)
{
	drop_state(q);
	q->max_event_us = SSTATE_NO_TIME;
	q->dead_below = PG_INT64_MIN;
	q->idle_below = PG_INT64_MIN;
}

static const char *
memory_value(void *arg, int64 ref, uint32 *len)
{
	return sstate_store_value(apply_table, ref, len);
}

static void
move_to_rdb_cb(void *arg, int32 qid, const char *key, uint32 keylen,
			   const StreamStatePane *panes, int npanes)
{
	StreamStateQuery *q = arg;

	/* a key's sessions are one list in RocksDB */
	if (q->def.sql && q->def.session_gap_us > 0)
	{
		sstate_rdb_put_sessions(&q->def, key, keylen, panes, npanes, memory_value, NULL);
		return;
	}
	for (int i = 0; i < npanes; i++)
	{
		if (q->def.sql)
		{
			uint32		len;
			const char *v = sstate_store_value(apply_table, panes[i].count, &len);

			sstate_rdb_put_value(&q->def, key, keylen, panes[i].pane, v, len);
		}
		else
			sstate_rdb_add(&q->def, key, keylen, panes[i].pane, panes[i].count);
	}
}

/* The query's late groups into RocksDB, as they are in the memory store */
static void
move_late_to_rdb_cb(void *arg, int32 qid, const StreamStateLateGroup *g)
{
	sstate_rdb_late_put(qid, g, false);
}

/* A move's values need no undo: the journal holds none of the commit's yet */
static bool
merge_none(void *arg, const char *old, uint32 oldlen, const char *add, uint32 addlen,
		   const char **out, uint32 *outlen)
{
	return false;
}

typedef struct MoveToMemory
{
	StreamStateQuery *q;
	bool		full;
} MoveToMemory;

static void
move_to_memory_cb(void *arg, int32 qid, const char *key, uint32 keylen,
				  const StreamStatePane *panes, int npanes)
{
	MoveToMemory *m = arg;

	for (int i = 0; i < npanes && !m->full; i++)
	{
		if (m->q->def.sql)
		{
			uint32		len;
			const char *v = sstate_rdb_value(panes[i].count, &len);

			/* a new pane: merge_none is never called */
			if (!sstate_store_merge_value(apply_table, m->q, key, keylen, panes[i].pane,
										  v, len, merge_none, NULL))
				m->full = true;
		}
		else if (!sstate_store_add(apply_table, m->q, key, keylen, panes[i].pane, panes[i].count))
			m->full = true;
	}
}

/*
 * set_backend(): query q moves to backend at the commit at lsn, before that
 * commit's data is applied, so every commit before it is in the old
 * backend's state and every one from it on goes to the new one.
 *
 * Replayed after a restart, RocksDB may be ahead of lsn: moving in, its
 * meta (newer than lsn) holds the moved state and what came after, which
 * is taken over as a restart would; moving out, a query whose RocksDB
 * state is newer than lsn (it moved back in later) stays.  Moving out to a
 * memory store that is full leaves the query in RocksDB, with a WARNING.
 */
static void
move_query(StreamStateQuery *q, uint8 backend, XLogRecPtr lsn)
{
	uint8		from = q->def.backend;

	if (from == backend)
		return;
	if (backend == SSB_ROCKSDB)
	{
		StreamStateRdbMeta m;
		char	   *error = NULL;

		if (sstate_rdb_broken() || !sstate_rdb_open(apply_db->dboid, &error))
		{
			ereport(WARNING,
					(errcode(ERRCODE_IO_ERROR),
					 errmsg("stream_state: continuous query \"%s\" stays on backend memory: RocksDB cannot be written",
							q->def.name),
					 errdetail("%s", error ? error : "RocksDB's disk is full, or it failed earlier; see the log."),
					 errhint("Call set_backend again once RocksDB can be written.")));
			return;
		}
		if (q->status != SSQ_NEEDS_REBUILD && sstate_rdb_get_meta(q->def.id, &m) &&
			m.status != SSTATE_RDB_FROZEN && m.applied > lsn)
		{
			LWLockAcquire(&apply_db->lock, LW_EXCLUSIVE);
			q->def.backend = SSB_ROCKSDB;
			LWLockRelease(&apply_db->lock);
			sstate_store_drop_query(apply_table, q);
			if (adopt_rdb_meta(q, lsn))
				sstate_rdb_late_load(q->def.id);
			return;
		}
		sstate_rdb_drop_query(q->def.id);	/* anything older of it */
		sstate_rdb_late_delete(q->def.id, PG_UINT64_MAX);
		if (q->status != SSQ_NEEDS_REBUILD)
			sstate_store_scan(apply_table, q->def.id, move_to_rdb_cb, q);

		/*
		 * Its late groups not written yet go into RocksDB too (and stay in
		 * the memory store's list, which readers use): from now on a
		 * restart takes them from there, not from checkpoint files.
		 */
		if (q->def.late)
			sstate_store_late_scan(apply_table, q->def.id, InvalidXLogRecPtr, PG_UINT64_MAX,
								   move_late_to_rdb_cb, NULL);

		/*
		 * Readers must find the whole state on one side or the other at
		 * every moment: a read of a memory query holds db->lock shared, and
		 * one of a rocksdb query is answered by this worker from RocksDB,
		 * which has only what was written.  So the state goes into RocksDB
		 * first (the pending batch holds only commits before this one, so
		 * it is RocksDB's state at lsn, as in the move out below), then the
		 * query switches under the lock, then its memory is freed.  Had it
		 * been freed first, or the batch been left to the round's end, a
		 * read in between would see part of the keys or none, and the
		 * emit_to helper would move its progress past sessions it never
		 * saw.  If RocksDB cannot be written the query stays on memory.
		 */
		if (sstate_rdb_dirty())
		{
			char	   *error = NULL;

			if (!sstate_rdb_write(apply_db, lsn, sstate_apply_restart_lsn(lsn), &error))
			{
				sstate_rdb_fail(apply_db, lsn, error);
				ereport(WARNING,
						(errcode(ERRCODE_IO_ERROR),
						 errmsg("stream_state: continuous query \"%s\" stays on backend memory: RocksDB cannot be written",
								q->def.name),
						 errdetail("%s", error),
						 errhint("Call set_backend again once RocksDB can be written.")));
				return;
			}
		}
		LWLockAcquire(&apply_db->lock, LW_EXCLUSIVE);
		q->def.backend = SSB_ROCKSDB;
		LWLockRelease(&apply_db->lock);
		sstate_store_drop_query(apply_table, q);	/* counts down keys, panes, bytes */
		LWLockAcquire(&apply_db->lock, LW_EXCLUSIVE);
		q->keys = -1;
		q->panes = 0;
		q->bytes = 0;
		LWLockRelease(&apply_db->lock);
		sstate_rdb_set_dead_below(q->def.id, q->dead_below);
	}
	else
	{
		MoveToMemory mm;

		if (lsn < q->skip_below)
			return;				/* RocksDB holds a later move back in */

		/*
		 * What this round moved in is still in the pending batch: write it
		 * first.  Everything in it is of commits before this one (or is
		 * this one's moves, of the state before it), so it is RocksDB's
		 * state at lsn.
		 */
		if (sstate_rdb_broken())
			return;				/* paused with the others; it moves on replay */
		if (sstate_rdb_dirty())
		{
			char	   *error = NULL;

			if (!sstate_rdb_write(apply_db, lsn, sstate_apply_restart_lsn(lsn), &error))
			{
				sstate_rdb_fail(apply_db, lsn, error);
				return;
			}
		}
		mm.q = q;
		mm.full = false;
		q->keys = 0;
		q->panes = 0;
		q->bytes = 0;
		if (q->status != SSQ_NEEDS_REBUILD)
			sstate_rdb_iterate(&q->def, q->dead_below, move_to_memory_cb, &mm);
		/* values moved in are kept (or dropped below) whatever the commit does */
		sstate_store_values_commit(apply_table);
		if (mm.full)
		{
			sstate_store_drop_query(apply_table, q);
			q->keys = -1;
			ereport(WARNING,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("stream_state: continuous query \"%s\" stays on backend rocksdb: its state does not fit into stream_state.memory_limit",
							q->def.name),
					 errhint("Increase stream_state.memory_limit and call set_backend again.")));
			return;
		}
		if (q->status == SSQ_NEEDS_REBUILD)
		{
			sstate_rdb_drop_query(q->def.id);
			sstate_rdb_late_delete(q->def.id, PG_UINT64_MAX);
		}
		else
			sstate_rdb_freeze(q, lsn);
		LWLockAcquire(&apply_db->lock, LW_EXCLUSIVE);
		q->def.backend = SSB_MEMORY;
		q->skip_below = InvalidXLogRecPtr;
		LWLockRelease(&apply_db->lock);
	}
	ereport(LOG,
			(errmsg("stream_state: continuous query \"%s\" moved from backend %s to %s at %X/%X",
					q->def.name, from == SSB_ROCKSDB ? "rocksdb" : "memory",
					backend == SSB_ROCKSDB ? "rocksdb" : "memory", LSN_FORMAT_ARGS(lsn))));
}

static void
report_malformed(XLogRecPtr lsn)
{
	ereport(WARNING,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("stream_state: malformed data message at %X/%X; the rest of it is skipped",
					LSN_FORMAT_ARGS(lsn))));
}

/*
 * Keep a late group of q for its late_to table (emit.c writes it): the
 * entry's states after skip bytes, the events' time range and the commit.
 * False when memory is full.
 */
static bool
record_late(StreamStateQuery *q, XLogRecPtr lsn, int64 commit_us, int64 from_us, int64 to_us,
			const StreamStateDeltaEntry *e, uint32 skip)
{
	StreamStateLateGroup g;

	g.lsn = lsn;
	g.commit_us = commit_us;
	g.from_us = from_us;
	g.to_us = to_us;
	g.count = e->count;
	g.key = e->key;
	g.keylen = e->keylen;
	g.value = e->value ? e->value + skip : NULL;
	g.valuelen = e->value ? e->valuelen - skip : 0;
	if (!sstate_store_late_add(apply_table, q->def.id, &g, true) &&
		!(sstate_rdb_cache_shrink() && sstate_store_late_add(apply_table, q->def.id, &g, true)))
		return false;
	/* a rocksdb query restarts from RocksDB's position: the group goes there too */
	if (q->def.backend == SSB_ROCKSDB)
		sstate_rdb_late_put(q->def.id, &g, true);
	return true;
}

/*
 * Walk the DATA messages of a committed transaction.  With undo_limit < 0,
 * apply them: add every entry that is not late, update the counters, and
 * stop at the first add that finds memory full (returns false, *failed
 * set).  With undo_limit >= 0, subtract the first undo_limit entries that an
 * earlier walk added, which puts the store back as it was.  Both walks judge
 * lateness against the saved (pre-transaction) copy of each query, so they
 * make the same decisions.  *napplied counts the adds made.
 */
static bool
walk_data(Applier *a, List *msgs, int64 commit_us, XLogRecPtr lsn, List **saved,
		  long undo_limit, long *napplied, StreamStateQuery **failed)
{
	bool		undo = (undo_limit >= 0);
	ListCell   *lc;

	*napplied = 0;
	foreach(lc, msgs)
	{
		BufferedMsg *msg = lfirst(lc);
		StreamStateDeltaReader r;

		if (!sstate_delta_open(&r, msg->data, msg->len) || r.kind != SSM_DATA)
			continue;
		for (;;)
		{
			StreamStateDeltaQuery sec;
			StreamStateDeltaEntry e;
			StreamStateQuery *q;
			SavedQuery *sq = NULL;
			int64		dead_before = PG_INT64_MIN;
			int64		wm_before = SSTATE_NO_TIME;
			int64		max_event;
			bool		done;

			if (!sstate_delta_next_query(&r, &sec, &done))
			{
				if (!undo)
					report_malformed(msg->lsn);
				break;
			}
			if (done)
				break;
			q = find_query(sec.qid);
			if (q != NULL && !applies_to(a, q))
				q = NULL;
			if (q != NULL && reset_after(a, q, msg->lsn))
				q = NULL;		/* rows truncated later in this transaction */
			if (q != NULL && lsn < q->skip_below)
				q = NULL;		/* its state holds this commit already */
			if (q != NULL)
			{
				sq = save_query(saved, q);
				/* never below what is evicted (a lateness raised since) */
				dead_before = Max(sstate_dead_below(&q->def, sstate_watermark(&sq->copy)),
								  sq->copy.dead_below);
				wm_before = sstate_watermark(&sq->copy);
				if (!undo)
					q->skipped += sec.skipped;
			}
			max_event = (sec.flags & SSM_FLAG_NO_PANE) ? commit_us : sec.max_event_us;

			while (sec.nentries-- > 0)
			{
				int64		pane;

				if (!sstate_delta_next_entry(&r, &e))
				{
					if (!undo)
						report_malformed(msg->lsn);
					break;
				}
				if (q == NULL)
					continue;
				pane = (sec.flags & SSM_FLAG_NO_PANE) ?
					sstate_pane_of(&q->def, commit_us) : e.pane;
				if (q->def.session_gap_us > 0)
				{
					/* a session's group: late if its own session has closed */
					int64		first,
								last;

					if (e.value == NULL || e.valuelen < 2 * sizeof(int64))
					{
						report_malformed(msg->lsn);
						break;
					}
					memcpy(&first, e.value, sizeof(int64));
					memcpy(&last, e.value + sizeof(int64), sizeof(int64));
					if (sec.flags & SSM_FLAG_NO_PANE)
						first = last = commit_us;
					if (wm_before != SSTATE_NO_TIME && last + q->def.session_gap_us <= wm_before)
					{
						if (undo)
							continue;
						if (q->def.late &&
							!record_late(q, lsn, commit_us, first, last, &e,
										 2 * sizeof(int64)))
						{
							*failed = q;
							return false;
						}
						q->late_events += e.count;
						continue;
					}
					if (undo)
					{
						if (*napplied == undo_limit)
							return true;
						(*napplied)++;	/* the journal puts it back */
						continue;
					}
					if (q->def.backend == SSB_ROCKSDB)
						sstate_rdb_merge_session(&q->def, e.key, e.keylen, first, last,
												 e.value + 2 * sizeof(int64),
												 e.valuelen - 2 * sizeof(int64),
												 wm_before, merge_values,
												 sstate_cq_layout_get(q->def.id));
					else if (!sstate_store_merge_session(apply_table, q, e.key, e.keylen, first, last,
													e.value + 2 * sizeof(int64),
													e.valuelen - 2 * sizeof(int64),
													wm_before, merge_values,
													sstate_cq_layout_get(q->def.id)) &&
						!(sstate_rdb_cache_shrink() &&
						  sstate_store_merge_session(apply_table, q, e.key, e.keylen, first, last,
													 e.value + 2 * sizeof(int64),
													 e.valuelen - 2 * sizeof(int64),
													 wm_before, merge_values,
													 sstate_cq_layout_get(q->def.id))))
					{
						*failed = q;
						return false;
					}
					(*napplied)++;
					q->events_applied += e.count;
					continue;
				}
				if (pane < dead_before)
				{
					if (undo)
						continue;
					if (q->def.late &&
						!record_late(q, lsn, commit_us, pane * q->def.pane_us,
									 (pane + 1) * q->def.pane_us, &e, 0))
					{
						*failed = q;
						return false;
					}
					q->late_events += e.count;
					continue;
				}
				if (undo)
				{
					if (*napplied == undo_limit)
						return true;
					if (q->def.sql)
						;		/* values: the journal puts them back */
					else if (q->def.backend == SSB_ROCKSDB)
						sstate_rdb_add(&q->def, e.key, e.keylen, pane, -e.count);
					else
						sstate_store_add(apply_table, q, e.key, e.keylen, pane, -e.count);
					(*napplied)++;
					continue;
				}
				if (q->def.sql)
				{
					CqLayout   *l = sstate_cq_layout_get(q->def.id);

					if (l == NULL || e.value == NULL)
					{
						report_malformed(msg->lsn);
						break;
					}
					if (q->def.backend == SSB_ROCKSDB)
						sstate_rdb_merge_value(&q->def, e.key, e.keylen, pane,
											   e.value, e.valuelen, merge_values, l);
					else if (!sstate_store_merge_value(apply_table, q, e.key, e.keylen, pane,
												  e.value, e.valuelen, merge_values, l) &&
						!(sstate_rdb_cache_shrink() &&
						  sstate_store_merge_value(apply_table, q, e.key, e.keylen, pane,
												   e.value, e.valuelen, merge_values, l)))
					{
						*failed = q;
						return false;
					}
				}
				else if (q->def.backend == SSB_ROCKSDB)
					sstate_rdb_add(&q->def, e.key, e.keylen, pane, e.count);
				else if (!sstate_store_add(apply_table, q, e.key, e.keylen, pane, e.count) &&
						 !(sstate_rdb_cache_shrink() &&
						   sstate_store_add(apply_table, q, e.key, e.keylen, pane, e.count)))
				{
					*failed = q;
					return false;
				}
				(*napplied)++;
				q->events_applied += e.count;
			}
			if (!undo && q != NULL && max_event != SSTATE_NO_TIME &&
				max_event > sq->max_event_us)
				sq->max_event_us = max_event;
		}
	}
	return true;
}

/*
 * One attempt at applying a committed transaction's messages.  On failure
 * (memory full) every add is undone, the touched queries' counters restored,
 * and *failed names the query that could not grow.
 */
static bool
try_apply(Applier *a, List *msgs, int64 commit_us, XLogRecPtr lsn, int *ddl,
		  StreamStateQuery **failed, List **saved_out)
{
	List	   *saved = NIL;
	ListCell   *lc;
	long		napplied;
	bool		ok;

	a->resets = NIL;			/* in the per-record memory context */

	/* definitions first, in LSN order, and a check of every message */
	foreach(lc, msgs)
	{
		BufferedMsg *msg = lfirst(lc);
		StreamStateDeltaReader r;

		if (!sstate_delta_open(&r, msg->data, msg->len))
		{
			if (a->only != NULL)
				continue;		/* reported by the main reader */
			ereport(WARNING,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("stream_state: skipping unreadable message at %X/%X",
							LSN_FORMAT_ARGS(msg->lsn)),
					 errdetail("Message format version %d, kind %d; this server reads version %d.",
							   (int) r.version, (int) r.kind, STREAM_STATE_DELTA_VERSION)));
			continue;
		}

		if (r.kind == SSM_RESET)
		{
			int32		qid;
			StreamStateQuery *q;

			if (!sstate_delta_get_qid(&r, &qid) || (q = find_query(qid)) == NULL)
				continue;
			if (lsn < q->skip_below)
				continue;		/* its state holds this commit already */

			/* a rebuild, or a TRUNCATE, gives a lost query its state back */
			if (q->status == SSQ_NEEDS_REBUILD && a->only == NULL)
			{
				LWLockAcquire(&apply_db->lock, LW_EXCLUSIVE);
				q->status = SSQ_RUNNING;
				LWLockRelease(&apply_db->lock);
				ereport(LOG,
						(errmsg("stream_state: continuous query \"%s\" is rebuilt from its source at %X/%X",
								q->def.name, LSN_FORMAT_ARGS(msg->lsn))));
			}

			/* whoever applies the query's data applies its truncation */
			if (applies_to(a, q))
			{
				ResetMark  *m = palloc(sizeof(ResetMark));

				apply_open(q);
				reset_query(q);
				m->q = q;
				m->lsn = msg->lsn;
				a->resets = lappend(a->resets, m);
			}
		}
		else if (r.kind == SSM_SET_BACKEND)
		{
			int32		qid;
			uint8		backend;
			StreamStateQuery *q;

			/* whoever applies the query's data moves it */
			if (sstate_delta_get_backend(&r, &qid, &backend) && (q = find_query(qid)) != NULL &&
				(applies_to(a, q) || (a->only == NULL && q->status == SSQ_NEEDS_REBUILD)))
			{
				apply_open(q);
				move_query(q, backend, lsn);
			}
		}
		else if (r.kind == SSM_ALTER)
		{
			int32		qid;
			int64		lateness_us;
			uint8		what;
			int64		retention_us = 0;
			bool		emit = false;
			bool		late = false;
			StreamStateQuery *q;

			/* whoever applies the query's data changes it, in WAL order */
			if (sstate_delta_get_alter(&r, &qid, &lateness_us, &what, &retention_us, &emit, &late) &&
				(q = find_query(qid)) != NULL &&
				(applies_to(a, q) || (a->only == NULL && q->status == SSQ_NEEDS_REBUILD)))
			{
				apply_open(q);	/* it may evict */
				alter_query(q, lateness_us, what, retention_us, emit, late, lsn);
			}
		}
		else if (a->only != NULL)
			continue;			/* catch-up: definitions are the main reader's */
		else if (r.kind == SSM_CREATE)
		{
			StreamStateQueryDef def;
			int			naggs = 0;
			const char *aggs = NULL;

			if (sstate_delta_get_def(&r, &def) &&
				(!def.sql || sstate_delta_get_layout(&r, &naggs, &aggs,
													 sizeof(StreamStateCqWorkerAgg))))
			{
				if (def.sql)
				{
					StreamStateCqWorkerAgg *copy = palloc(sizeof(StreamStateCqWorkerAgg) * Max(naggs, 1));

					memcpy(copy, aggs, sizeof(StreamStateCqWorkerAgg) * naggs);
					sstate_cq_layout_set(def.id, naggs, copy);
					sstate_store_set_values(apply_table, def.id, true);
				}
				define_query(&def, lsn);
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
	}

	/*
	 * Definitions before data gives what LSN order gives: a query's data
	 * always follows its CREATE, and data of a query dropped in the same
	 * transaction would have been dropped with it.
	 */
	ok = walk_data(a, msgs, commit_us, lsn, &saved, -1, &napplied, failed);
	if (ok)
	{
		sstate_store_values_commit(apply_table);
		sstate_rdb_values_commit();

		/*
		 * The watermark moves once every message of the commit is in: a
		 * reader that finds a window (session) closed by it must find all
		 * of the commit's events in it.  Moved after the first of several
		 * messages, it let the emit_to helper emit a window before the
		 * later messages' events for it were applied (they are not late:
		 * lateness is judged by the watermark before the commit).
		 */
		foreach(lc, saved)
		{
			SavedQuery *sq = lfirst(lc);

			if (sq->max_event_us > sq->q->max_event_us && sq->q->status != SSQ_FREE &&
				sq->q->def.id == sq->copy.def.id)
				sq->q->max_event_us = sq->max_event_us;
		}
	}
	else
	{
		long		undone;
		ListCell   *lc2;

		(void) walk_data(a, msgs, commit_us, lsn, &saved, napplied, &undone, failed);
		sstate_store_values_undo(apply_table, find_query);
		sstate_rdb_values_undo();
		foreach(lc2, saved)
		{
			SavedQuery *sq = lfirst(lc2);
			int64		keys = sq->q->keys,
						panes = sq->q->panes,
						bytes = sq->q->bytes,
						max_event = Max(sq->q->max_event_us, sq->max_event_us);

			if (sq->q->status == SSQ_FREE || sq->q->def.id != sq->copy.def.id)
				continue;
			*sq->q = sq->copy;
			sq->q->keys = keys;
			sq->q->panes = panes;
			sq->q->bytes = bytes;
			/* remembered for evict-ahead; restored by the caller */
			sq->copy.max_event_us = max_event;
		}
	}
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
	if (q->def.session_gap_us > 0)
	{
		/*
		 * Sessions closed by the watermark (and emitted, with emit_to): a
		 * walk of the query's keys each time the watermark has moved an
		 * eighth of the gap.
		 */
		int64		bound = wm;

		if (q->def.emit)
			bound = (!q->emit_known || q->emitted_end == SSTATE_NO_TIME) ? PG_INT64_MIN :
				Min(bound, q->emitted_end);
		if (bound != PG_INT64_MIN &&
			(q->def.backend == SSB_MEMORY || (sstate_rdb_is_open() && !sstate_rdb_broken())) &&
			(q->idle_below == PG_INT64_MIN ||
			 bound >= q->idle_below + Max(1, q->def.session_gap_us / 8)))
		{
			/* rocksdb: into the pending batch, over the table of values */
			if (q->def.backend == SSB_ROCKSDB)
				(void) sstate_rdb_evict_sessions(&q->def, bound);
			else
				sstate_store_evict_sessions(apply_table, q, bound);
			q->idle_below = bound;
		}
		return;
	}
	dead = Min(sstate_dead_below(&q->def, wm), sstate_emit_hold(q));
	if (dead > q->dead_below)
	{
		/*
		 * Published before the panes go: a reader of the memory store
		 * checks it again after its scan (sql_api.c, check_window_kept), so
		 * a read that met the eviction fails rather than miss keys.
		 */
		q->dead_below = dead;
		if (q->def.backend == SSB_ROCKSDB)
			sstate_rdb_set_dead_below(q->def.id, dead);
		else
			sstate_store_evict(apply_table, q, dead);
	}

	/*
	 * Retention: keys whose newest pane ended retention or more before the
	 * watermark, except what emit_to still needs.  A walk of the query's
	 * keys each time that moves by a pane, or by an eighth of the retention
	 * when that is more.
	 */
	if (q->def.retention_us > 0 &&
		(q->def.backend == SSB_MEMORY || (sstate_rdb_is_open() && !sstate_rdb_broken())))
	{
		int64		idle = Min(sstate_floor_div(wm - q->def.retention_us, q->def.pane_us),
							   sstate_emit_hold(q));
		int64		step = Max(1, q->def.retention_us / q->def.pane_us / 8);

		if (q->idle_below == PG_INT64_MIN || idle >= q->idle_below + step)
		{
			/* rocksdb: into the pending batch, over the table of values */
			if (q->def.backend == SSB_ROCKSDB)
				(void) sstate_rdb_drop_idle(&q->def, idle);
			else
				sstate_store_drop_idle(apply_table, q, idle);
			q->idle_below = idle;
		}
	}
}

/*
 * Evict what a query with emit_to no longer keeps, once more of its windows
 * have been emitted (emit.c).  Worker only.
 */
void
sstate_apply_evict_emitted(StreamStateQuery *q)
{
	if (q->status != SSQ_FREE)
	{
		apply_open(q);			/* readers see all of it or none */
		evict_to(q, q->max_event_us);
		apply_close();
	}
}

/*
 * The commit LSN of the newest late group q keeps for its late_to table
 * (InvalidXLogRecPtr: none).  Worker only.
 */
XLogRecPtr
sstate_apply_late_last(StreamStateQuery *q)
{
	int64		count,
				bytes;
	XLogRecPtr	last;

	sstate_store_late_info(apply_table, q->def.id, &count, &bytes, &last);
	return last;
}

/*
 * Free the late groups of q that a helper has written into its late_to
 * table (emit.c).  Worker only.
 */
void
sstate_apply_trim_late(StreamStateQuery *q)
{
	int64		before,
				after,
				bytes;
	XLogRecPtr	last;

	if (q->status == SSQ_FREE || !q->def.late || !q->late_known)
		return;
	sstate_store_late_info(apply_table, q->def.id, &before, &bytes, &last);
	sstate_store_late_trim(apply_table, q->def.id, q->late_written);
	sstate_store_late_info(apply_table, q->def.id, &after, &bytes, &last);
	/* RocksDB's copies too; a helper that wrote nothing costs no tombstone */
	if (q->def.backend == SSB_ROCKSDB && after < before)
		sstate_rdb_late_delete(q->def.id, q->late_written);
}

static bool
apply_messages(Applier *a, List *msgs, int64 commit_us, XLogRecPtr lsn,
			   int *ddl, StreamStateQuery **failed)
{
	List	   *saved = NIL;
	ListCell   *lc;
	int			attempt;

	for (attempt = 0; attempt < 2; attempt++)
	{
		if (try_apply(a, msgs, commit_us, lsn, ddl, failed, &saved))
		{
			foreach(lc, saved)
			{
				SavedQuery *s = lfirst(lc);

				if (s->q->status != SSQ_FREE)
					evict_to(s->q, s->q->max_event_us);
			}
			list_free_deep(saved);
			apply_close();
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
	apply_close();
	return false;
}

static StreamStateApplyResult
applier_record(Applier *a, XLogReaderState *record)
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
		buffer_message(a, XLogRecGetXid(record), record->ReadRecPtr,
					   m->message + m->prefix_size, m->message_size);
	}
	else if (rmid == RM_XACT_ID)
	{
		uint8		op = info & XLOG_XACT_OPMASK;

		if (hash_get_num_entries(a->xids) == 0)
			return SSA_OK;
		if (op == XLOG_XACT_COMMIT || op == XLOG_XACT_COMMIT_PREPARED)
		{
			xl_xact_parsed_commit parsed;
			TransactionId xid;

			ParseCommitRecord(XLogRecGetInfo(record),
							  (xl_xact_commit *) XLogRecGetData(record), &parsed);
			xid = (op == XLOG_XACT_COMMIT_PREPARED) ? parsed.twophase_xid :
				XLogRecGetXid(record);
			return apply_commit(a, xid, parsed.nsubxacts, parsed.subxacts,
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
			discard_xids(a, xid, parsed.nsubxacts, parsed.subxacts);
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

		if (hash_get_num_entries(a->xids) == 0)
			return SSA_OK;
		dead = palloc(sizeof(TransactionId) * hash_get_num_entries(a->xids));
		hash_seq_init(&seq, a->xids);
		while ((buf = hash_seq_search(&seq)) != NULL)
			if (TransactionIdPrecedes(buf->xid, rx->oldestRunningXid))
				dead[ndead++] = buf->xid;
		for (i = 0; i < ndead; i++)
			discard_one(a, dead[i]);
		pfree(dead);
	}
	else if (rmid == RM_DBASE_ID && info == XLOG_DBASE_DROP && a->only == NULL)
	{
		xl_dbase_drop_rec *rec = (xl_dbase_drop_rec *) XLogRecGetData(record);

		if (rec->db_id == apply_db->dboid)
			return SSA_DROP_DATABASE;
	}
	return SSA_OK;
}

/*
 * A reader of the local WAL that stops, instead of waiting, at the end of
 * what is flushed (priv->end_of_wal says so).
 */
XLogReaderState *
sstate_wal_reader_create(ReadLocalXLogPageNoWaitPrivate *priv)
{
	XLogReaderState *reader;

	memset(priv, 0, sizeof(*priv));
	reader = XLogReaderAllocate(wal_segment_size, NULL,
								XL_ROUTINE(.page_read = read_local_xlog_page_no_wait,
										   .segment_open = wal_segment_open,
										   .segment_close = wal_segment_close),
								priv);
	if (reader == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("Failed while allocating a WAL reading processor.")));
	return reader;
}

/*
 * Look at one WAL record with the main applier.
 */
StreamStateApplyResult
sstate_apply_record(XLogReaderState *record)
{
	return applier_record(&main_applier, record);
}

/*
 * The state was restored from a checkpoint at applied position L: commits
 * before it are already in the state.
 */
void
sstate_apply_skip_below(XLogRecPtr lsn)
{
	main_applier.skip_below = lsn;
}

/*
 * Where WAL must be read again to rebuild the state as it is when the main
 * reader is at applied: the first message of every transaction still open,
 * and every paused query's own restart position.
 */
XLogRecPtr
sstate_apply_restart_lsn(XLogRecPtr applied)
{
	StreamStateQuery *qs = sstate_db_queries(apply_db);
	XLogRecPtr	result = oldest_open_lsn(&main_applier, applied);

	for (int i = 0; i < sstate_shared->max_queries; i++)
		if (qs[i].status == SSQ_PAUSED_MEMORY && qs[i].paused_restart < result)
			result = qs[i].paused_restart;
	return result;
}

/* Number of transactions with buffered messages. */
long
sstate_apply_open_xacts(void)
{
	return main_applier.xids ? hash_get_num_entries(main_applier.xids) : 0;
}

/*
 * Catch up paused queries, each with a reader of its own from its
 * paused_restart up to upto, where the main reader is (the start of the next
 * record it will read).  Returns the number of queries that run again.
 */
int
sstate_apply_catch_up(XLogRecPtr upto)
{
	StreamStateQuery *qs = sstate_db_queries(apply_db);
	int			resumed = 0;
	int			i;
	MemoryContext reccxt = AllocSetContextCreate(CurrentMemoryContext,
												 "stream_state catch-up record",
												 ALLOCSET_DEFAULT_SIZES);

	for (i = 0; i < sstate_shared->max_queries; i++)
	{
		StreamStateQuery *q = &qs[i];
		Applier		a;
		XLogReaderState *reader;
		ReadLocalXLogPageNoWaitPrivate priv;
		XLogRecPtr	first;
		bool		reached = false;

		if (q->status != SSQ_PAUSED_MEMORY)
			continue;

		applier_init(&a);
		a.only = q;
		a.only_id = q->def.id;
		reader = sstate_wal_reader_create(&priv);
		first = XLogFindNextRecord(reader, q->paused_restart);
		if (!XLogRecPtrIsInvalid(first) && first >= upto)
			reached = true;
		else if (!XLogRecPtrIsInvalid(first))
		{
			XLogBeginRead(reader, first);
			for (;;)
			{
				char	   *errormsg = NULL;
				XLogRecord *record;

				record = XLogReadRecord(reader, &errormsg);
				if (record == NULL)
					break;		/* end of flushed WAL: try again later */
				if (reader->ReadRecPtr >= upto)
				{
					reached = true;
					break;
				}
				{
					MemoryContext old = MemoryContextSwitchTo(reccxt);

					(void) applier_record(&a, reader);
					MemoryContextSwitchTo(old);
					MemoryContextReset(reccxt);
				}
				if (a.failed || q->status != SSQ_PAUSED_MEMORY || q->def.id != a.only_id)
					break;
				if (reader->EndRecPtr >= upto)
				{
					reached = true;
					break;
				}
				CHECK_FOR_INTERRUPTS();
			}
		}
		XLogReaderFree(reader);
		applier_free(&a);

		if (reached && !a.failed && q->status == SSQ_PAUSED_MEMORY && q->def.id == a.only_id)
		{
			LWLockAcquire(&apply_db->lock, LW_EXCLUSIVE);
			q->status = SSQ_RUNNING;
			q->paused_lsn = InvalidXLogRecPtr;
			LWLockRelease(&apply_db->lock);
			ereport(LOG,
					(errmsg("stream_state: continuous query \"%s\" resumed at %X/%X",
							q->def.name, LSN_FORMAT_ARGS(upto))));
			resumed++;
		}
	}
	MemoryContextDelete(reccxt);
	return resumed;
}

/*
 * Give up paused queries that hold back more than stream_state.max_kept_wal
 * of WAL behind the reader at applied: their state is dropped and they need
 * a rebuild, so the slot can move on.  Returns how many were given up.
 */
int
sstate_apply_limit_kept_wal(XLogRecPtr applied)
{
	StreamStateQuery *qs = sstate_db_queries(apply_db);
	int			n = 0;

	if (sstate_max_kept_wal_mb < 0)
		return 0;
	for (int i = 0; i < sstate_shared->max_queries; i++)
	{
		StreamStateQuery *q = &qs[i];
		uint64		held;

		if (q->status != SSQ_PAUSED_MEMORY || q->paused_restart >= applied)
			continue;
		held = applied - q->paused_restart;
		if (held <= (uint64) sstate_max_kept_wal_mb * 1024 * 1024)
			continue;
		drop_state(q);
		LWLockAcquire(&apply_db->lock, LW_EXCLUSIVE);
		q->status = SSQ_NEEDS_REBUILD;
		q->paused_lsn = InvalidXLogRecPtr;
		q->paused_restart = InvalidXLogRecPtr;
		LWLockRelease(&apply_db->lock);
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("stream_state: continuous query \"%s\" was paused for too long and needs a rebuild",
						q->def.name),
				 errdetail("It held back %llu MB of WAL, more than stream_state.max_kept_wal (%d MB); its state was dropped and that WAL is released.",
						   (unsigned long long) (held / (1024 * 1024)), sstate_max_kept_wal_mb),
				 errhint("Free memory (stream_state.memory_limit), then run SELECT stream_state.rebuild('%s').",
						 q->def.name)));
		n++;
	}
	return n;
}

/* Does any query of this database wait for memory? */
bool
sstate_apply_any_paused(void)
{
	StreamStateQuery *qs = sstate_db_queries(apply_db);
	int			i;

	for (i = 0; i < sstate_shared->max_queries; i++)
		if (qs[i].status == SSQ_PAUSED_MEMORY)
			return true;
	return false;
}
