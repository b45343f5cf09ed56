/*-------------------------------------------------------------------------
 *
 * capture.c
 *	  The statement trigger: rows -> backend-local delta; publishing the delta
 *	  as transactional WAL messages at pre-commit.
 *
 * The trigger folds each row of the transition table into a delta keyed by
 * (query, key image, pane).  Nothing shared is touched while a transaction
 * runs.  At XACT_EVENT_PRE_COMMIT / PRE_PREPARE the delta is written with
 * LogLogicalMessage(transactional), so it is in the WAL atomically with the
 * transaction: an aborted transaction contributes nothing.
 *
 * Sub-transactions: the delta is a stack of levels, one per sub-transaction
 * nesting level that captured rows.  A sub-commit merges its level into the
 * parent's; a sub-abort throws its level away.  A level that grows past
 * stream_state.max_delta_entries is written early, under the current
 * (sub)transaction id: the worker then applies or discards those messages
 * with the sub-transaction, as the commit or abort record says.
 *
 * Nothing here runs after the commit record except what cannot fail: noting
 * the commit LSN, bumping a shared counter and setting the worker's latch.
 *
 * IDENTIFICATION
 *	  src/capture.c
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "access/xloginsert.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_trigger.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "replication/message.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/tuplestore.h"

#include "capture.h"
#include "cq_capture.h"
#include "delta.h"
#include "query.h"
#include "window.h"

/*
 * A delta entry's key: pane, and the key image.  Images of up to 8 bytes
 * live in kword itself (zero-padded, so equal images give equal words);
 * longer ones are pointed to by kword.
 */
typedef struct DeltaKey
{
	int64		pane;
	uint64		kword;
	uint32		len;
	uint32		hash;
} DeltaKey;

/* 32 bytes: an entry never straddles a cache line */
typedef struct DeltaEntry
{
	DeltaKey	key;
	int32		count;			/* written early before it would overflow */
	char		status;
} DeltaEntry;

#define DELTA_INLINE	8

StaticAssertDecl(sizeof(DeltaEntry) == 32, "a delta entry is half a cache line");

static inline const char *
delta_key_bytes(const DeltaKey *k)
{
	return k->len <= DELTA_INLINE ? (const char *) &k->kword :
		(const char *) (uintptr_t) k->kword;
}

static inline bool
delta_key_equal(const DeltaKey *a, const DeltaKey *b)
{
	if (a->pane != b->pane || a->len != b->len || (a->len <= DELTA_INLINE && a->kword != b->kword))
		return false;
	return a->len <= DELTA_INLINE ||
		memcmp((const char *) (uintptr_t) a->kword,
			   (const char *) (uintptr_t) b->kword, a->len) == 0;
}

#define SH_PREFIX		delta
#define SH_ELEMENT_TYPE DeltaEntry
#define SH_KEY_TYPE		DeltaKey
#define SH_KEY			key
#define SH_HASH_KEY(tb, k)	((k).hash)
#define SH_EQUAL(tb, a, b)	delta_key_equal(&(a), &(b))
#define SH_STORE_HASH
#define SH_GET_HASH(tb, a)	((a)->key.hash)
#define SH_SCOPE		static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

/*
 * A query in SQL's values (partial states, never combined here) go into the
 * WAL once they take this much, rather than all at pre-commit: a 2M-row
 * statement then reuses 1 MB, hot in the cache when it is copied into the
 * WAL, instead of growing 19 MB of fresh memory (a page fault per 4 kB) to
 * hold until the commit.  The messages carry the current (sub)transaction's
 * id, as those of a delta past stream_state.max_delta_entries do.
 */
#define VALUES_FLUSH_BYTES	(1024 * 1024)

typedef struct DeltaQuery
{
	int32		qid;
	bool		processing_time;
	MemoryContext cxt;			/* the long keys; reset on flush */
	delta_hash *entries;		/* allocated once, emptied on flush */
	uint64		skipped;
	int64		max_event_us;
	StringInfoData values;		/* queries in SQL: entries with values, as
								 * written (SSM_FLAG_VALUES) */
	uint64		nvalues;
	struct DeltaQuery *next;
} DeltaQuery;

typedef struct DeltaLevel
{
	int			nest_level;
	MemoryContext cxt;
	DeltaQuery *queries;
	long		nentries;
	List	   *truncated;		/* qids whose source this level truncated */
	struct DeltaLevel *parent;
} DeltaLevel;

static DeltaLevel *cur_level = NULL;
static bool xact_logged = false;	/* this transaction wrote messages */
static bool defer_wal = false;	/* sstate_capture_defer_wal */
static bool xact_ddl = false;	/* ... changed definitions */
static XLogRecPtr last_commit_lsn = InvalidXLogRecPtr;
static XLogRecPtr xact_wal_end = InvalidXLogRecPtr;	/* see PRE_COMMIT */
static object_access_hook_type prev_object_access_hook = NULL;

static void capture_xact_callback(XactEvent event, void *arg);
static void capture_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
									 SubTransactionId parentSubid, void *arg);
static void capture_object_access(ObjectAccessType access, Oid classId,
								  Oid objectId, int subId, void *arg);
static DeltaLevel *current_level(void);
static DeltaQuery *level_query(DeltaLevel *level, int32 qid, bool processing_time);
static void delta_query_reset(DeltaQuery *dq);
static void delta_add(DeltaLevel *level, DeltaQuery *dq, const char *img,
					  uint32 len, int64 pane, int64 count);
static void level_flush(DeltaLevel *level, bool values_only);
static void level_truncate(DeltaLevel *level, int32 qid);
static void reset_xact_state(void);
static void log_message(const char *data, Size len);

void
sstate_capture_init(void)
{
	RegisterXactCallback(capture_xact_callback, NULL);
	RegisterSubXactCallback(capture_subxact_callback, NULL);
	prev_object_access_hook = object_access_hook;
	object_access_hook = capture_object_access;
}

/*
 * End LSN of this session's last commit that carried stream_state messages.
 */
XLogRecPtr
sstate_capture_last_commit(void)
{
	return last_commit_lsn;
}

/*
 * Write a definition message (CREATE, DROP, ...) now, in this transaction.
 */
void
sstate_capture_log_ddl(const char *data, Size len)
{
	log_message(data, len);
	xact_ddl = true;
	sstate_query_cache_reset();
}

/* A transaction changed definitions without a message (grants). */
void
sstate_capture_note_ddl(void)
{
	xact_ddl = true;
	sstate_query_cache_reset();
}

/*
 * One transactional logical message of ours, its content the parts put one
 * after the other, without copying them into one buffer first (a level's
 * values are megabytes): the record LogLogicalMessage
 * (replication/logical/message.c) writes, the header, the prefix with its
 * NUL, then the message.
 */
static void
log_message_parts(const char *const *parts, const Size *lens, int nparts)
{
	xl_logical_message xlrec;
	Size		size = 0;

	for (int i = 0; i < nparts; i++)
		size += lens[i];
	GetCurrentTransactionId();	/* transactional: the message needs an xid */
	xlrec.dbId = MyDatabaseId;
	xlrec.transactional = true;
	xlrec.prefix_size = strlen(STREAM_STATE_MSG_PREFIX) + 1;
	xlrec.message_size = size;
	XLogEnsureRecordSpace(0, nparts + 2);
	XLogBeginInsert();
	XLogRegisterData((char *) &xlrec, SizeOfLogicalMessage);
	XLogRegisterData(STREAM_STATE_MSG_PREFIX, xlrec.prefix_size);
	for (int i = 0; i < nparts; i++)
		if (lens[i] > 0)
			XLogRegisterData(unconstify(char *, parts[i]), lens[i]);
	XLogSetRecordFlags(XLOG_INCLUDE_ORIGIN);
	XLogInsert(RM_LOGICALMSG_ID, XLOG_LOGICAL_MESSAGE);
	xact_logged = true;
}

static void
log_message(const char *data, Size len)
{
	log_message_parts(&data, &len, 1);
}

static DeltaLevel *
current_level(void)
{
	int			nest = GetCurrentTransactionNestLevel();
	DeltaLevel *level;

	if (cur_level != NULL && cur_level->nest_level == nest)
		return cur_level;

	level = MemoryContextAllocZero(TopTransactionContext, sizeof(DeltaLevel));
	level->nest_level = nest;
	level->cxt = AllocSetContextCreate(TopTransactionContext,
									   "stream_state delta",
									   ALLOCSET_DEFAULT_SIZES);
	level->parent = cur_level;
	cur_level = level;
	return level;
}

static void
delta_query_reset(DeltaQuery *dq)
{
	MemoryContextReset(dq->cxt);
	delta_reset(dq->entries);
	dq->skipped = 0;
	dq->max_event_us = SSTATE_NO_TIME;
	resetStringInfo(&dq->values);
	dq->nvalues = 0;
}

static DeltaQuery *
level_query(DeltaLevel *level, int32 qid, bool processing_time)
{
	DeltaQuery *dq;

	for (dq = level->queries; dq != NULL; dq = dq->next)
		if (dq->qid == qid)
			return dq;

	dq = MemoryContextAllocZero(level->cxt, sizeof(DeltaQuery));
	dq->qid = qid;
	dq->processing_time = processing_time;
	dq->cxt = AllocSetContextCreate(level->cxt, "stream_state delta keys",
									ALLOCSET_DEFAULT_SIZES);
	dq->entries = delta_create(level->cxt, 64, NULL);
	dq->skipped = 0;
	dq->max_event_us = SSTATE_NO_TIME;
	{
		MemoryContext old = MemoryContextSwitchTo(level->cxt);

		initStringInfo(&dq->values);
		MemoryContextSwitchTo(old);
	}
	dq->nvalues = 0;
	dq->next = level->queries;
	level->queries = dq;
	return dq;
}

static inline void
delta_key_make(DeltaKey *key, const char *img, uint32 len, int64 pane)
{
	key->pane = pane;
	key->len = len;
	if (len <= DELTA_INLINE)
	{
		key->kword = 0;
		memcpy(&key->kword, img, len);
		key->hash = murmurhash32((uint32) (key->kword ^ (key->kword >> 32)) ^
								 (uint32) len * 0x9e3779b1u) ^
			murmurhash32((uint32) pane ^ (uint32) (pane >> 32));
	}
	else
	{
		key->kword = (uint64) (uintptr_t) img;
		key->hash = hash_bytes((const unsigned char *) img, (int) len) ^
			murmurhash32((uint32) pane ^ (uint32) (pane >> 32));
	}
}

/*
 * Add count to the entry of key (made by delta_key_make; a long key's bytes
 * are copied when its entry is created).
 */
static inline void
delta_add_key(DeltaLevel *level, DeltaQuery *dq, const DeltaKey *key, int64 count)
{
	DeltaEntry *entry;
	bool		found;

	entry = delta_insert_hash(dq->entries, *key, key->hash, &found);
	if (found)
	{
		if (likely((int64) entry->count + count <= PG_INT32_MAX))
		{
			entry->count += (int32) count;
			return;
		}
		/* 2^31 rows of one key and pane: write the level, start afresh */
		level_flush(level, false);
		entry = delta_insert_hash(dq->entries, *key, key->hash, &found);
		Assert(!found);
	}
	if (key->len > DELTA_INLINE)
	{
		char	   *copy = MemoryContextAlloc(dq->cxt, key->len);

		memcpy(copy, (const char *) (uintptr_t) key->kword, key->len);
		entry->key.kword = (uint64) (uintptr_t) copy;
	}
	entry->count = (int32) count;
	level->nentries++;
}

static inline void
delta_add(DeltaLevel *level, DeltaQuery *dq, const char *img, uint32 len,
		  int64 pane, int64 count)
{
	DeltaKey	key;

	delta_key_make(&key, img, len, pane);
	delta_add_key(level, dq, &key, count);
}

/*
 * The event time and key image of one row; false (and counted as skipped)
 * when either is NULL or the time is infinite.
 */
static inline bool
capture_prepare(StreamStateCapture *cap, Datum key, bool key_null,
				Datum time, bool time_null, char *buf,
				const char **img, uint32 *len, int64 *pane)
{
	const StreamStateQueryInfo *info = cap->info;
	DeltaQuery *dq = cap->dq;

	*pane = 0;
	if (key_null)
	{
		dq->skipped++;
		return false;
	}
	if (!info->def.processing_time)
	{
		int64		us;

		if (time_null || !sstate_time_to_unix_us(time, info->time_type, &us))
		{
			dq->skipped++;
			return false;
		}
		*pane = sstate_floor_div(us, info->def.pane_us);
		if (us > dq->max_event_us)
			dq->max_event_us = us;
	}
	sstate_key_image(info, key, buf, img, len);
	return true;
}

/*
 * Fold one row into the current delta.  Used by the backfill of
 * create_query; the trigger batches rows (capture_batch_add).
 */
void
sstate_capture_row(StreamStateCapture *cap, Datum key, bool key_null,
				   Datum time, bool time_null)
{
	char		buf[SSTATE_KEYBUF];
	const char *img;
	uint32		len;
	int64		pane;

	if (!capture_prepare(cap, key, key_null, time, time_null, buf, &img, &len, &pane))
		return;
	delta_add(cap->level, cap->dq, img, len, pane, 1);
	if (cap->level->nentries >= sstate_max_delta_entries)
		level_flush(cap->level, false);
}

/*
 * Add count events of key image img to pane: importing a checkpoint.
 * Counts beyond a delta entry's 32 bits go in several adds.
 */
void
sstate_capture_add(StreamStateCapture *cap, const char *img, uint32 len,
				   int64 pane, int64 count)
{
	while (count > 0)
	{
		int64		part = Min(count, (int64) PG_INT32_MAX / 2);

		delta_add(cap->level, cap->dq, img, len, pane, part);
		if (cap->level->nentries >= sstate_max_delta_entries)
			level_flush(cap->level, false);
		count -= part;
	}
}

/*
 * One group of a query in SQL: nrows rows of key image img in pane, folded
 * into the partial states value (cq_capture.c).  Written as it will go into
 * the WAL.
 */
void
sstate_capture_value(StreamStateCapture *cap, const char *img, uint32 len, int64 pane,
					 int64 nrows, const char *value, uint32 vlen)
{
	DeltaQuery *dq = cap->dq;
	MemoryContext old = MemoryContextSwitchTo(cap->level->cxt);

	sstate_delta_put_entry(&dq->values, dq->processing_time ? SSM_FLAG_NO_PANE : 0,
						   img, len, pane, nrows);
	sstate_delta_put_value(&dq->values, value, vlen);
	MemoryContextSwitchTo(old);
	dq->nvalues++;
	if (defer_wal)
		cap->level->nentries++;
	else if (++cap->level->nentries >= sstate_max_delta_entries)
		level_flush(cap->level, false);
	else if (dq->values.len >= VALUES_FLUSH_BYTES)
		level_flush(cap->level, true);
}

/*
 * While defer is set, sstate_capture_value writes nothing into the WAL,
 * whatever the level holds: groups a sub-transaction's callback puts into a
 * level (cq_capture.c, Carry) must not go out in a message tagged with
 * whichever transaction is current then.  They go with the level's next
 * write.
 */
void
sstate_capture_defer_wal(bool defer)
{
	defer_wal = defer;
}

/* A row of a query in SQL not counted: a NULL or infinite event time. */
void
sstate_capture_skip(StreamStateCapture *cap)
{
	cap->dq->skipped++;
}

/* The watermark the imported state had: its newest event time. */
void
sstate_capture_note_event(StreamStateCapture *cap, int64 event_us)
{
	if (event_us != SSTATE_NO_TIME && event_us > cap->dq->max_event_us)
		cap->dq->max_event_us = event_us;
}

/*
 * Rows whose key fits in a word wait in small batches: the bucket of each is
 * prefetched when it arrives and filled when the batch is full, so the cache
 * misses of a large delta overlap instead of adding up.
 */
#define CAPTURE_BATCH	16

typedef struct CaptureBatch
{
	int			n;
	DeltaKey	keys[CAPTURE_BATCH];
} CaptureBatch;

static void
capture_batch_flush(StreamStateCapture *cap, CaptureBatch *b)
{
	int			i;

	for (i = 0; i < b->n; i++)
	{
		delta_add_key(cap->level, cap->dq, &b->keys[i], 1);
		if (cap->level->nentries >= sstate_max_delta_entries)
			level_flush(cap->level, false);
	}
	b->n = 0;
}

static inline void
capture_batch_add(StreamStateCapture *cap, CaptureBatch *b, const char *img,
				  uint32 len, int64 pane)
{
	DeltaKey   *k;

	if (len > DELTA_INLINE)
	{
		/* the image points into the current tuple: add it now */
		capture_batch_flush(cap, b);
		delta_add(cap->level, cap->dq, img, len, pane, 1);
		if (cap->level->nentries >= sstate_max_delta_entries)
			level_flush(cap->level, false);
		return;
	}
	k = &b->keys[b->n];
	delta_key_make(k, img, len, pane);
#ifdef __GNUC__
	__builtin_prefetch(&cap->dq->entries->data[k->hash & cap->dq->entries->sizemask], 1);
#endif
	if (++b->n == CAPTURE_BATCH)
		capture_batch_flush(cap, b);
}

void
sstate_capture_begin(StreamStateCapture *cap, const StreamStateQueryInfo *info)
{
	cap->info = info;
	cap->level = current_level();
	cap->dq = level_query(cap->level, info->id, info->def.processing_time);
}

/*
 * Write every query section of a level as one DATA message and empty it;
 * with values_only, just the sections of queries in SQL (their values are
 * never combined here, so writing them early changes nothing the worker
 * makes of them, while the windowed counts' entries keep merging).
 */
static void
level_flush(DeltaLevel *level, bool values_only)
{
	StringInfoData buf;
	DeltaQuery *dq;
	bool		any = false;
	int			nvalued = 0;
	int			maxparts;
	const char **parts;
	Size	   *lens;
	Size	   *ends;
	int			nparts = 0;
	Size		from = 0;

	/*
	 * The queries in SQL's values go into the record as they are, between
	 * the parts of buf (see log_message_parts): ends[] says where in buf
	 * each of them comes.
	 */
	for (dq = level->queries; dq != NULL; dq = dq->next)
		if (dq->nvalues > 0)
			nvalued++;
	maxparts = 2 * nvalued + 1;
	parts = palloc(sizeof(char *) * maxparts);
	lens = palloc(sizeof(Size) * maxparts);
	ends = palloc(sizeof(Size) * Max(nvalued, 1));

	initStringInfo(&buf);
	sstate_delta_begin(&buf, SSM_DATA);
	for (dq = level->queries; dq != NULL; dq = dq->next)
	{
		StreamStateDeltaQuery hdr;
		delta_iterator it;
		DeltaEntry *e;

		hdr.nentries = dq->entries->members;
		if (hdr.nentries == 0 && dq->skipped == 0 && dq->nvalues == 0)
			continue;
		if (values_only && dq->nvalues == 0)
			continue;
		hdr.qid = dq->qid;
		hdr.flags = 0;
		if (dq->nvalues > 0)
		{
			/* a query in SQL: its entries are written already */
			hdr.nentries = dq->nvalues;
			hdr.flags |= SSM_FLAG_VALUES;
			if (dq->processing_time)
				hdr.flags |= SSM_FLAG_NO_PANE;
			if (dq->max_event_us != SSTATE_NO_TIME)
				hdr.flags |= SSM_FLAG_HAS_MAX;
			hdr.skipped = dq->skipped;
			hdr.max_event_us = dq->max_event_us;
			sstate_delta_put_query(&buf, &hdr);
			if (values_only)
				level->nentries -= dq->nvalues;
			ends[nparts / 2] = buf.len;
			parts[nparts + 1] = dq->values.data;
			lens[nparts + 1] = dq->values.len;
			nparts += 2;
			any = true;
			continue;
		}
		if (dq->processing_time)
			hdr.flags |= SSM_FLAG_NO_PANE;
		if (dq->max_event_us != SSTATE_NO_TIME)
			hdr.flags |= SSM_FLAG_HAS_MAX;
		hdr.skipped = dq->skipped;
		hdr.max_event_us = dq->max_event_us;
		sstate_delta_put_query(&buf, &hdr);

		delta_start_iterate(dq->entries, &it);
		while ((e = delta_iterate(dq->entries, &it)) != NULL)
			sstate_delta_put_entry(&buf, hdr.flags, delta_key_bytes(&e->key),
								   e->key.len, e->key.pane, e->count);
		delta_query_reset(dq);
		any = true;
	}
	if (!values_only)
		level->nentries = 0;
	if (any)
	{
		/* buf is complete (no more moves): point into it */
		for (int i = 0; i < nparts; i += 2)
		{
			parts[i] = buf.data + from;
			lens[i] = ends[i / 2] - from;
			from = ends[i / 2];
		}
		parts[nparts] = buf.data + from;
		lens[nparts] = buf.len - from;
		log_message_parts(parts, lens, nparts + 1);
	}
	for (dq = level->queries; dq != NULL; dq = dq->next)
		if (dq->nvalues > 0)
			delta_query_reset(dq);
	pfree(buf.data);
	pfree(parts);
	pfree(lens);
	pfree(ends);
}

/* Forget what a level holds for query qid. */
static void
level_truncate(DeltaLevel *level, int32 qid)
{
	DeltaQuery *dq;

	for (dq = level->queries; dq != NULL; dq = dq->next)
		if (dq->qid == qid)
		{
			level->nentries -= dq->entries->members + dq->nvalues;
			delta_query_reset(dq);
		}
}

/*
 * Merge a committed sub-transaction's level into its parent.
 */
static void
level_merge_into_parent(DeltaLevel *child)
{
	DeltaLevel *parent = child->parent;
	DeltaQuery *dq;

	if (parent == NULL || parent->nest_level < child->nest_level - 1)
	{
		/* no parent level yet: the child becomes it */
		child->nest_level--;
		return;
	}

	/* a TRUNCATE that commits empties what the parent held before it */
	{
		ListCell   *lc;
		MemoryContext old = MemoryContextSwitchTo(parent->cxt);

		foreach(lc, child->truncated)
		{
			level_truncate(parent, lfirst_int(lc));
			sstate_cq_carry_discard(lfirst_int(lc), parent->nest_level);
			parent->truncated = list_append_unique_int(parent->truncated,
													   lfirst_int(lc));
		}
		MemoryContextSwitchTo(old);
	}

	for (dq = child->queries; dq != NULL; dq = dq->next)
	{
		DeltaQuery *pq = level_query(parent, dq->qid, dq->processing_time);
		delta_iterator it;
		DeltaEntry *e;

		pq->skipped += dq->skipped;
		if (dq->max_event_us > pq->max_event_us)
			pq->max_event_us = dq->max_event_us;
		if (dq->nvalues > 0)
		{
			/* partial states need no combining here: the worker does it */
			MemoryContext old = MemoryContextSwitchTo(parent->cxt);

			appendBinaryStringInfo(&pq->values, dq->values.data, dq->values.len);
			MemoryContextSwitchTo(old);
			pq->nvalues += dq->nvalues;
			parent->nentries += dq->nvalues;
		}
		delta_start_iterate(dq->entries, &it);
		while ((e = delta_iterate(dq->entries, &it)) != NULL)
			delta_add(parent, pq, delta_key_bytes(&e->key), e->key.len,
					  e->key.pane, e->count);
	}
	cur_level = parent;
	MemoryContextDelete(child->cxt);
	pfree(child);
}

static void
reset_xact_state(void)
{
	/* the levels live in TopTransactionContext, which goes away with it */
	cur_level = NULL;
	sstate_cq_carry_forget();
	defer_wal = false;
	xact_logged = false;
	xact_wal_end = InvalidXLogRecPtr;
	xact_ddl = false;
}

static void
capture_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			/* groups carried between statements first (cq_capture.c) */
			sstate_cq_carry_flush_all();
			/* every sub-transaction has ended: one level at most remains */
			while (cur_level != NULL)
			{
				DeltaLevel *level = cur_level;

				level_flush(level, false);
				cur_level = level->parent;
			}

			/*
			 * COMMIT PREPARED writes its commit record inside a transaction
			 * of its own, before this point: remember where this
			 * transaction's WAL ends, so the session's reads wait for it.
			 */
			xact_wal_end = XactLastRecEnd;
			break;

		case XACT_EVENT_COMMIT:
			if (!xact_logged && xact_wal_end > last_commit_lsn)
				last_commit_lsn = xact_wal_end;
			if (xact_logged)
			{
				last_commit_lsn = XactLastCommitEnd;
				if (sstate_shared != NULL)
				{
					int			i;

					for (i = 0; i < sstate_shared->max_databases; i++)
					{
						StreamStateDb *db = &sstate_shared->dbs[i];
						Latch	   *latch = db->worker_latch;

						if (db->dboid == MyDatabaseId && latch != NULL)
							SetLatch(latch);
					}
				}
			}
			if (xact_ddl && sstate_shared != NULL)
				pg_atomic_fetch_add_u64(&sstate_shared->def_generation, 1);
			reset_xact_state();
			break;

		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			if (xact_ddl)
				sstate_query_cache_reset();
			reset_xact_state();
			break;

		case XACT_EVENT_PREPARE:
			if (xact_ddl)
				sstate_query_cache_reset();
			reset_xact_state();
			break;

		default:
			break;
	}
}

static void
capture_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						 SubTransactionId parentSubid, void *arg)
{
	int			nest = GetCurrentTransactionNestLevel();

	/*
	 * Groups carried at this level go into it before it commits (while an
	 * error can still roll the sub-transaction back), or away with it
	 * (cq_capture.c).
	 */
	if (event == SUBXACT_EVENT_PRE_COMMIT_SUB || event == SUBXACT_EVENT_ABORT_SUB)
		sstate_cq_carry_end_sub(nest, event == SUBXACT_EVENT_PRE_COMMIT_SUB);
	if (cur_level == NULL)
		return;
	if (cur_level->nest_level != nest)
		return;

	switch (event)
	{
		case SUBXACT_EVENT_COMMIT_SUB:
			level_merge_into_parent(cur_level);
			break;
		case SUBXACT_EVENT_ABORT_SUB:
			{
				DeltaLevel *level = cur_level;

				cur_level = level->parent;
				MemoryContextDelete(level->cxt);
				pfree(level);
				break;
			}
		default:
			break;
	}
}

/*
 * Dropping one of our triggers (drop_query, DROP TABLE, DROP EXTENSION)
 * drops its query: say so in the WAL, in this transaction.  Dropping the
 * extension says so too.
 */
static void
capture_object_access(ObjectAccessType access, Oid classId, Oid objectId,
					  int subId, void *arg)
{
	if (prev_object_access_hook)
		prev_object_access_hook(access, classId, objectId, subId, arg);

	if (access != OAT_DROP || sstate_shared == NULL)
		return;

	if (classId == ExtensionRelationId)
	{
		if (objectId == get_extension_oid("stream_state", true))
		{
			StringInfoData buf;

			initStringInfo(&buf);
			sstate_delta_begin(&buf, SSM_DROP_EXTENSION);
			sstate_capture_log_ddl(buf.data, buf.len);
			pfree(buf.data);
		}
	}
	else if (classId == TriggerRelationId)
	{
		Relation	rel;
		ScanKeyData skey;
		SysScanDesc scan;
		HeapTuple	tup;
		int32		qid = 0;

		rel = table_open(TriggerRelationId, AccessShareLock);
		ScanKeyInit(&skey, Anum_pg_trigger_oid, BTEqualStrategyNumber,
					F_OIDEQ, ObjectIdGetDatum(objectId));
		scan = systable_beginscan(rel, TriggerOidIndexId, true, NULL, 1, &skey);
		tup = systable_getnext(scan);
		if (HeapTupleIsValid(tup))
		{
			Form_pg_trigger trig = (Form_pg_trigger) GETSTRUCT(tup);
			const char *name = NameStr(trig->tgname);

			char	   *fname = get_func_name(trig->tgfoid);

			if (strncmp(name, "stream_state_q", 14) == 0 &&
				fname != NULL && strcmp(fname, "_capture") == 0 &&
				get_func_namespace(trig->tgfoid) == get_namespace_oid("stream_state", true))
				qid = pg_strtoint32(name + 14);
		}
		systable_endscan(scan);
		table_close(rel, AccessShareLock);

		if (qid > 0)
		{
			StringInfoData buf;

			initStringInfo(&buf);
			sstate_delta_begin(&buf, SSM_DROP);
			sstate_delta_put_qid(&buf, qid);
			sstate_capture_log_ddl(buf.data, buf.len);
			pfree(buf.data);
		}
	}
}

/*
 * Empty query qid's state at this point of the transaction: what it
 * captured before is dropped, and a RESET message tells the worker to
 * drop the state of earlier commits when this one commits.
 */
void
sstate_capture_reset(int32 qid)
{
	StringInfoData buf;

	/*
	 * Rows this (sub)transaction inserted before are gone too.  Rows of
	 * enclosing sub-transactions go when this one commits into them
	 * (level_merge_into_parent), not before: it may still roll back.
	 */
	{
		DeltaLevel *level = current_level();
		MemoryContext old = MemoryContextSwitchTo(level->cxt);

		sstate_cq_carry_discard(qid, level->nest_level);
		level_truncate(level, qid);
		level->truncated = list_append_unique_int(level->truncated, qid);
		MemoryContextSwitchTo(old);
	}

	initStringInfo(&buf);
	sstate_delta_begin(&buf, SSM_RESET);
	sstate_delta_put_qid(&buf, qid);
	log_message(buf.data, buf.len);
	pfree(buf.data);
}

/*
 * AFTER TRUNCATE ... FOR EACH STATEMENT EXECUTE FUNCTION
 * stream_state._truncate('<query id>'): the table is empty, so is the
 * query's state, at this transaction's commit.
 */
PG_FUNCTION_INFO_V1(stream_state_truncate);

Datum
stream_state_truncate(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	int32		qid;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_AFTER(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event) ||
		!TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("stream_state._truncate() must be fired AFTER TRUNCATE FOR EACH STATEMENT")));
	if (trigdata->tg_trigger->tgnargs != 1)
		elog(ERROR, "stream_state._truncate() needs one argument, the query id");
	qid = pg_strtoint32(trigdata->tg_trigger->tgargs[0]);

	sstate_capture_reset(qid);
	return PointerGetDatum(NULL);
}

/*
 * The statement trigger: AFTER INSERT ... REFERENCING NEW TABLE ... FOR EACH
 * STATEMENT EXECUTE FUNCTION stream_state._capture('<query id>').
 */
PG_FUNCTION_INFO_V1(stream_state_capture);

static bool
next_transition_row(void *arg, TupleTableSlot *slot)
{
	return tuplestore_gettupleslot((Tuplestorestate *) arg, true, false, slot);
}

Datum
stream_state_capture(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Trigger    *trigger;
	Tuplestorestate *store;
	StreamStateQueryInfo *info;
	StreamStateCapture cap;
	TupleDesc	desc;
	TupleTableSlot *slot;
	MemoryContext rowcxt;
	MemoryContext oldcxt;
	int32		qid;
	long		n = 0;
	CaptureBatch batch;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("stream_state._capture() must be called as a trigger")));
	if (!TRIGGER_FIRED_AFTER(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event) ||
		!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) ||
		trigdata->tg_newtable == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("stream_state._capture() must be fired AFTER INSERT FOR EACH STATEMENT with a NEW TABLE")));

	trigger = trigdata->tg_trigger;
	if (trigger->tgnargs != 1)
		elog(ERROR, "stream_state._capture() needs one argument, the query id");
	qid = pg_strtoint32(trigger->tgargs[0]);

	info = sstate_query_by_id(qid);
	if (info == NULL)
		return PointerGetDatum(NULL);	/* dropped in this transaction */

	desc = RelationGetDescr(trigdata->tg_relation);
	if (info->def.sql)
	{
		/* a query in SQL: its own expressions over the rows (cq_capture.c) */
		if (RelationGetRelid(trigdata->tg_relation) != info->source)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("source table of continuous query \"%s\" no longer matches its definition",
							info->name),
					 errhint("Drop the query and create it again.")));
		slot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
		tuplestore_rescan(trigdata->tg_newtable);
		sstate_cq_capture_rows(info, slot, next_transition_row, trigdata->tg_newtable);
		ExecDropSingleTupleTableSlot(slot);
		return PointerGetDatum(NULL);
	}
	if (RelationGetRelid(trigdata->tg_relation) != info->source ||
		info->key_attnum > desc->natts ||
		TupleDescAttr(desc, info->key_attnum - 1)->atttypid != info->key_type ||
		(info->time_attnum > 0 &&
		 (info->time_attnum > desc->natts ||
		  TupleDescAttr(desc, info->time_attnum - 1)->atttypid != info->time_type)))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("source table of continuous query \"%s\" no longer matches its definition",
						info->name),
				 errhint("Drop the query and create it again.")));

	sstate_capture_begin(&cap, info);
	store = trigdata->tg_newtable;
	slot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "stream_state rows",
								   ALLOCSET_DEFAULT_SIZES);

	/*
	 * Tuples read back from a spilled transition table are owned by the slot
	 * (it frees each when it stores the next), so only the per-row work runs
	 * in rowcxt, which is reset now and then.
	 */
	/*
	 * Size the delta for this statement's rows at once (up to the flush
	 * limit) rather than growing it a step at a time, which rehashes it each
	 * time.
	 */
	{
		uint64		want = Min((uint64) tuplestore_tuple_count(store),
							   (uint64) sstate_max_delta_entries) +
			cap.dq->entries->members;

		if (want > 4096 && want > cap.dq->entries->grow_threshold)
			delta_grow(cap.dq->entries, pg_nextpower2_64((uint64) (want / 0.9) + 1));
	}

	batch.n = 0;
	tuplestore_rescan(store);
	while (tuplestore_gettupleslot(store, true, false, slot))
	{
		Datum		key;
		Datum		time = (Datum) 0;
		bool		key_null;
		bool		time_null = false;

		char		buf[SSTATE_KEYBUF];
		const char *img;
		uint32		len;
		int64		pane;

		key = slot_getattr(slot, info->key_attnum, &key_null);
		if (info->time_attnum > 0)
			time = slot_getattr(slot, info->time_attnum, &time_null);
		oldcxt = MemoryContextSwitchTo(rowcxt);
		if (capture_prepare(&cap, key, key_null, time, time_null, buf, &img, &len, &pane))
			capture_batch_add(&cap, &batch, img, len, pane);
		MemoryContextSwitchTo(oldcxt);

		/* detoasted keys are the only per-row allocations */
		if (++n % 1024 == 0)
			MemoryContextReset(rowcxt);
	}

	capture_batch_flush(&cap, &batch);
	MemoryContextDelete(rowcxt);
	ExecDropSingleTupleTableSlot(slot);
	return PointerGetDatum(NULL);
}
