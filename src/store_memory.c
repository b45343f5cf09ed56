/*-------------------------------------------------------------------------
 *
 * store_memory.c
 *	  The memory state backend: one dshash table per database in the shared
 *	  DSA area, keyed by (query id, key image), each entry holding a sorted
 *	  array of panes.
 *
 * Locking: the worker is the only writer.  It changes an entry only while
 * holding that entry's partition lock exclusively (dshash_find_or_insert /
 * dshash_find(..., true)); readers hold it shared while they look, so a
 * pane array is never freed under a reader.  The table itself lives as long
 * as StreamStateDb->table points at it; readers hold db->lock shared while
 * they use it and the worker takes db->lock exclusively to replace it.
 *
 * Keys of up to 16 bytes are stored in the entry; longer ones in their own
 * DSA chunk.  A search key for a long key carries a process-local pointer
 * (tag.u.ext.local) instead: dshash always passes the search key first to
 * the compare function, and the entry copied from it is fixed up before the
 * partition lock is released.
 *
 * Memory is bounded by the area's size limit.  Allocations ask for
 * DSA_ALLOC_NO_OOM; dshash's own allocations (entries, bucket arrays) raise
 * ERROR when the area is full, which sstate_store_add catches and turns into
 * "false, nothing changed" so the worker can pause instead of dying.
 *
 * IDENTIFICATION
 *	  src/store_memory.c
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "miscadmin.h"
#include "utils/memutils.h"

#include "store.h"

#define KEY_INLINE 16

typedef struct KeyTag
{
	int32		qid;
	uint32		len;
	union
	{
		char		data[KEY_INLINE];
		struct
		{
			dsa_pointer dp;		/* stored entries */
			const char *local;	/* search keys */
		}			ext;
	}			u;
} KeyTag;

typedef struct Entry
{
	KeyTag		tag;
	dsa_pointer panes;			/* StreamStatePane[cap], sorted by pane */
	int32		npanes;
	int32		cap;
	uint32		epoch;			/* checkpoint snapshot that copied it last */
	uint32		reserved;
} Entry;

/* dshash puts a next pointer and the hash in front of every entry */
#define ENTRY_BYTES		(MAXALIGN(sizeof(dsa_pointer) + sizeof(uint32)) + MAXALIGN(sizeof(Entry)))

static const char *tag_bytes(const KeyTag *tag, dsa_area *area);
static int	keytag_compare(const void *a, const void *b, size_t size, void *arg);
static dshash_hash keytag_hash(const void *key, size_t size, void *arg);
static void make_tag(KeyTag *tag, int32 qid, const char *key, uint32 keylen);
static void free_entry(dsa_area *area, StreamStateQuery *q, Entry *e);
static int	pane_search(const StreamStatePane *panes, int n, int64 pane, bool *found);

/*
 * Copy-on-write snapshots.  While a checkpoint's snapshot (epoch E) is
 * taken by the scanner process, the worker hands every entry it is about to
 * change or delete, and that the scanner has not copied yet (epoch < E), to
 * cow_cb first, and marks it copied.  Entries created meanwhile get epoch E:
 * they are not part of the snapshot.  Both sides decide under the entry's
 * partition lock, held exclusively, so each entry is copied exactly once,
 * with its value as of the snapshot.
 */
static uint32 cow_epoch = 0;
static sstate_store_scan_cb cow_cb = NULL;
static void *cow_arg = NULL;

static inline void
cow_touch(Entry *e)
{
	if (unlikely(cow_cb != NULL) && e->epoch < cow_epoch)
	{
		if (e->npanes > 0)
			cow_cb(cow_arg, e->tag.qid, tag_bytes(&e->tag, sstate_area()), e->tag.len,
				   dsa_get_address(sstate_area(), e->panes), e->npanes);
		e->epoch = cow_epoch;
	}
}

void
sstate_store_cow_begin(uint32 epoch, sstate_store_scan_cb cb, void *arg)
{
	cow_epoch = epoch;
	cow_cb = cb;
	cow_arg = arg;
}

void
sstate_store_cow_end(void)
{
	cow_cb = NULL;
	cow_arg = NULL;
}

static dshash_parameters
store_params(void)
{
	dshash_parameters p;

	p.key_size = sizeof(KeyTag);
	p.entry_size = sizeof(Entry);
	p.compare_function = keytag_compare;
	p.hash_function = keytag_hash;
	p.tranche_id = sstate_shared->lwtranche;
	return p;
}

static const char *
tag_bytes(const KeyTag *tag, dsa_area *area)
{
	if (tag->len <= KEY_INLINE)
		return tag->u.data;
	if (tag->u.ext.local != NULL)
		return tag->u.ext.local;
	return dsa_get_address(area, tag->u.ext.dp);
}

static int
keytag_compare(const void *a, const void *b, size_t size, void *arg)
{
	const KeyTag *ta = a;
	const KeyTag *tb = b;

	if (ta->qid != tb->qid || ta->len != tb->len)
		return 1;
	return memcmp(tag_bytes(ta, arg), tag_bytes(tb, arg), ta->len);
}

static dshash_hash
keytag_hash(const void *key, size_t size, void *arg)
{
	const KeyTag *t = key;

	return hash_bytes((const unsigned char *) tag_bytes(t, arg), (int) t->len) ^
		murmurhash32((uint32) t->qid);
}

static void
make_tag(KeyTag *tag, int32 qid, const char *key, uint32 keylen)
{
	memset(tag, 0, sizeof(KeyTag));
	tag->qid = qid;
	tag->len = keylen;
	if (keylen <= KEY_INLINE)
		memcpy(tag->u.data, key, keylen);
	else
	{
		tag->u.ext.dp = InvalidDsaPointer;
		tag->u.ext.local = key;
	}
}

Size
sstate_store_entry_bytes(void)
{
	return sizeof(StreamStatePane);
}

/* The local handle lives in TopMemoryContext: it is kept across calls. */
dshash_table *
sstate_store_create(dsa_area *area)
{
	dshash_parameters p = store_params();
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	dshash_table *t = dshash_create(area, &p, area);

	MemoryContextSwitchTo(old);
	return t;
}

dshash_table *
sstate_store_attach(dsa_area *area, dshash_table_handle handle)
{
	dshash_parameters p = store_params();
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	dshash_table *t = dshash_attach(area, &p, handle, area);

	MemoryContextSwitchTo(old);
	return t;
}

void
sstate_store_detach(dshash_table *table)
{
	dshash_detach(table);
}

/*
 * Free every entry's own chunks, then the table.  Caller holds db->lock
 * exclusively.
 */
void
sstate_store_destroy(dshash_table *table)
{
	dsa_area   *area = sstate_area();
	dshash_seq_status status;
	Entry	   *e;

	dshash_seq_init(&status, table, true);
	while ((e = dshash_seq_next(&status)) != NULL)
	{
		if (DsaPointerIsValid(e->panes))
			dsa_free(area, e->panes);
		if (e->tag.len > KEY_INLINE)
			dsa_free(area, e->tag.u.ext.dp);
	}
	dshash_seq_term(&status);
	dshash_destroy(table);
}

static int
pane_search(const StreamStatePane *panes, int n, int64 pane, bool *found)
{
	int			lo = 0;
	int			hi = n;

	/* panes mostly arrive at the end */
	if (n > 0 && panes[n - 1].pane <= pane)
	{
		*found = (panes[n - 1].pane == pane);
		return *found ? n - 1 : n;
	}
	while (lo < hi)
	{
		int			mid = (lo + hi) / 2;

		if (panes[mid].pane < pane)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = (lo < n && panes[lo].pane == pane);
	return lo;
}

/* Caller holds the entry's partition lock exclusively and deletes it next. */
static void
free_entry(dsa_area *area, StreamStateQuery *q, Entry *e)
{
	if (DsaPointerIsValid(e->panes))
	{
		dsa_free(area, e->panes);
		q->bytes -= (int64) e->cap * sizeof(StreamStatePane);
	}
	if (e->tag.len > KEY_INLINE)
	{
		dsa_free(area, e->tag.u.ext.dp);
		q->bytes -= e->tag.len;
	}
	q->bytes -= ENTRY_BYTES;
	q->keys--;
	e->panes = InvalidDsaPointer;
}

/*
 * dshash_find_or_insert, turning an out-of-memory ERROR (a full area) into
 * NULL.  The ERROR can only come from dshash's allocations, before it links
 * anything, so the table is unchanged; the locks it held are released here.
 */
static Entry *
find_or_insert_no_oom(dshash_table *table, KeyTag *tag, bool *found)
{
	MemoryContext cxt = CurrentMemoryContext;
	uint32		holdoff = InterruptHoldoffCount;
	Entry	   *e = NULL;

	PG_TRY();
	{
		e = dshash_find_or_insert(table, tag, found);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		if (edata->sqlerrcode != ERRCODE_OUT_OF_MEMORY)
			PG_RE_THROW();
		FlushErrorState();
		FreeErrorData(edata);
		LWLockReleaseAll();
		InterruptHoldoffCount = holdoff;
		e = NULL;
	}
	PG_END_TRY();
	return e;
}

/*
 * Add count to (query, key, pane).  A negative count undoes an earlier add
 * of this transaction and never allocates; panes and keys left empty by it
 * are removed.  Returns false when memory is exhausted, with nothing
 * changed.  Worker only.
 */
bool
sstate_store_add(dshash_table *table, StreamStateQuery *q, const char *key,
				 uint32 keylen, int64 pane, int64 count)
{
	dsa_area   *area = sstate_area();
	KeyTag		tag;
	Entry	   *e;
	StreamStatePane *panes;
	bool		found;
	bool		pfound;
	int			pos;

	make_tag(&tag, q->def.id, key, keylen);

	if (count < 0)
	{
		e = dshash_find(table, &tag, true);
		if (e == NULL)
			elog(ERROR, "stream_state: undo of a missing key");
		cow_touch(e);
		panes = dsa_get_address(area, e->panes);
		pos = pane_search(panes, e->npanes, pane, &pfound);
		if (!pfound)
			elog(ERROR, "stream_state: undo of a missing pane");
		panes[pos].count += count;
		if (panes[pos].count == 0)
		{
			memmove(&panes[pos], &panes[pos + 1],
					sizeof(StreamStatePane) * (e->npanes - pos - 1));
			e->npanes--;
			q->panes--;
		}
		if (e->npanes == 0)
		{
			free_entry(area, q, e);
			dshash_delete_entry(table, e);
		}
		else
			dshash_release_lock(table, e);
		return true;
	}

	e = find_or_insert_no_oom(table, &tag, &found);
	if (e == NULL)
		return false;
	if (found)
		cow_touch(e);
	else
	{
		e->panes = InvalidDsaPointer;
		e->npanes = 0;
		e->cap = 0;
		e->epoch = cow_epoch;	/* not part of a snapshot being taken */
		if (keylen > KEY_INLINE)
		{
			dsa_pointer dp = dsa_allocate_extended(area, keylen, DSA_ALLOC_NO_OOM);

			if (!DsaPointerIsValid(dp))
			{
				dshash_delete_entry(table, e);
				return false;
			}
			memcpy(dsa_get_address(area, dp), key, keylen);
			e->tag.u.ext.dp = dp;
			e->tag.u.ext.local = NULL;
			q->bytes += keylen;
		}
		q->keys++;
		q->bytes += ENTRY_BYTES;
	}

	panes = e->npanes > 0 ? dsa_get_address(area, e->panes) : NULL;
	pos = e->npanes > 0 ? pane_search(panes, e->npanes, pane, &pfound) : 0;
	if (e->npanes > 0 && pfound)
	{
		panes[pos].count += count;
		dshash_release_lock(table, e);
		return true;
	}

	if (e->npanes == e->cap)
	{
		int32		newcap = e->cap == 0 ? 2 : e->cap * 2;
		dsa_pointer dp = dsa_allocate_extended(area,
											   sizeof(StreamStatePane) * newcap,
											   DSA_ALLOC_NO_OOM);

		if (!DsaPointerIsValid(dp))
		{
			if (e->npanes == 0)
			{
				free_entry(area, q, e);
				dshash_delete_entry(table, e);
			}
			else
				dshash_release_lock(table, e);
			return false;
		}
		if (e->npanes > 0)
		{
			memcpy(dsa_get_address(area, dp), panes,
				   sizeof(StreamStatePane) * e->npanes);
			dsa_free(area, e->panes);
		}
		q->bytes += (int64) (newcap - e->cap) * sizeof(StreamStatePane);
		e->panes = dp;
		e->cap = newcap;
		panes = dsa_get_address(area, dp);
	}

	memmove(&panes[pos + 1], &panes[pos],
			sizeof(StreamStatePane) * (e->npanes - pos));
	panes[pos].pane = pane;
	panes[pos].count = count;
	e->npanes++;
	q->panes++;
	dshash_release_lock(table, e);
	return true;
}

/*
 * Remove every pane below dead_below of one query, and keys left without
 * panes.  Worker only.
 */
void
sstate_store_evict(dshash_table *table, StreamStateQuery *q, int64 dead_below)
{
	dsa_area   *area = sstate_area();
	dshash_seq_status status;
	Entry	   *e;

	dshash_seq_init(&status, table, true);
	while ((e = dshash_seq_next(&status)) != NULL)
	{
		StreamStatePane *panes;
		int			k = 0;

		if (e->tag.qid != q->def.id)
			continue;
		panes = dsa_get_address(area, e->panes);
		while (k < e->npanes && panes[k].pane < dead_below)
			k++;
		if (k == 0)
			continue;
		cow_touch(e);
		if (k < e->npanes)
		{
			memmove(&panes[0], &panes[k], sizeof(StreamStatePane) * (e->npanes - k));
			e->npanes -= k;
			q->panes -= k;
		}
		else
		{
			q->panes -= e->npanes;
			e->npanes = 0;
			free_entry(area, q, e);
			dshash_delete_current(&status);
		}
	}
	dshash_seq_term(&status);
}

/* Remove every key of one query.  Worker only. */
void
sstate_store_drop_query(dshash_table *table, StreamStateQuery *q)
{
	sstate_store_evict(table, q, PG_INT64_MAX);
}

/*
 * Sum of the counts of panes [pane_lo, pane_hi) of one key.
 */
int64
sstate_store_sum(dshash_table *table, int32 qid, const char *key,
				 uint32 keylen, int64 pane_lo, int64 pane_hi)
{
	KeyTag		tag;
	Entry	   *e;
	int64		sum = 0;

	make_tag(&tag, qid, key, keylen);
	e = dshash_find(table, &tag, false);
	if (e != NULL)
	{
		StreamStatePane *panes = dsa_get_address(sstate_area(), e->panes);
		int			i;

		for (i = 0; i < e->npanes; i++)
			if (panes[i].pane >= pane_lo && panes[i].pane < pane_hi)
				sum += panes[i].count;
		dshash_release_lock(table, e);
	}
	return sum;
}

/*
 * Call cb for every key of query qid (every query when qid is 0), holding a
 * partition lock shared: cb must copy what it keeps and must not wait.
 */
void
sstate_store_scan(dshash_table *table, int32 qid, sstate_store_scan_cb cb, void *arg)
{
	dsa_area   *area = sstate_area();
	dshash_seq_status status;
	Entry	   *e;

	dshash_seq_init(&status, table, false);
	while ((e = dshash_seq_next(&status)) != NULL)
	{
		if (qid != 0 && e->tag.qid != qid)
			continue;
		if (e->npanes == 0)
			continue;
		cb(arg, e->tag.qid, tag_bytes(&e->tag, area), e->tag.len,
		   dsa_get_address(area, e->panes), e->npanes);
	}
	dshash_seq_term(&status);
}

/*
 * Put one key with its panes (sorted, distinct, nonzero counts) into an
 * empty slot of the table: restoring a checkpoint.  Worker only.
 */
StreamStateLoadResult
sstate_store_load(dshash_table *table, StreamStateQuery *q, const char *key,
				  uint32 keylen, const StreamStatePane *panes, int npanes)
{
	dsa_area   *area = sstate_area();
	KeyTag		tag;
	Entry	   *e;
	bool		found;
	dsa_pointer dp;
	dsa_pointer kp = InvalidDsaPointer;

	make_tag(&tag, q->def.id, key, keylen);
	e = find_or_insert_no_oom(table, &tag, &found);
	if (e == NULL)
		return SSL_OUT_OF_MEMORY;
	if (found)
	{
		dshash_release_lock(table, e);
		return SSL_DUPLICATE;
	}
	if (keylen > KEY_INLINE)
	{
		kp = dsa_allocate_extended(area, keylen, DSA_ALLOC_NO_OOM);
		if (!DsaPointerIsValid(kp))
		{
			dshash_delete_entry(table, e);
			return SSL_OUT_OF_MEMORY;
		}
		memcpy(dsa_get_address(area, kp), key, keylen);
		e->tag.u.ext.dp = kp;
		e->tag.u.ext.local = NULL;
	}
	dp = dsa_allocate_extended(area, sizeof(StreamStatePane) * npanes, DSA_ALLOC_NO_OOM);
	if (!DsaPointerIsValid(dp))
	{
		if (DsaPointerIsValid(kp))
			dsa_free(area, kp);
		dshash_delete_entry(table, e);
		return SSL_OUT_OF_MEMORY;
	}
	memcpy(dsa_get_address(area, dp), panes, sizeof(StreamStatePane) * npanes);
	e->panes = dp;
	e->npanes = npanes;
	e->cap = npanes;
	e->epoch = 0;
	q->keys++;
	q->panes += npanes;
	q->bytes += ENTRY_BYTES + (int64) npanes * sizeof(StreamStatePane) +
		(keylen > KEY_INLINE ? keylen : 0);
	dshash_release_lock(table, e);
	return SSL_OK;
}

/*
 * The scanner's half of a snapshot: call cb for every entry not copied yet
 * for epoch (by the worker, or created after the snapshot began), and mark
 * it copied.  Holds each partition exclusively while it is scanned.  Stops
 * early when *stop becomes true.
 */
void
sstate_store_snapshot(dshash_table *table, uint32 epoch, sstate_store_scan_cb cb,
					  void *arg, volatile sig_atomic_t *stop)
{
	dsa_area   *area = sstate_area();
	dshash_seq_status status;
	Entry	   *e;
	uint64		n = 0;

	dshash_seq_init(&status, table, true);
	while ((e = dshash_seq_next(&status)) != NULL)
	{
		if (e->epoch >= epoch)
			continue;
		e->epoch = epoch;
		if (e->npanes > 0)
			cb(arg, e->tag.qid, tag_bytes(&e->tag, area), e->tag.len,
			   dsa_get_address(area, e->panes), e->npanes);
		if ((++n & 1023) == 0 && *stop)
			break;
	}
	dshash_seq_term(&status);
}
