/*-------------------------------------------------------------------------
 *
 * store_memory.c
 *	  The memory state backend: one hash table per database in the shared
 *	  DSA area, keyed by (query id, key image), each entry holding a sorted
 *	  array of panes.
 *
 * The table is our own, not dshash: 128 partitions, each an open-addressing
 * array of 48-byte slots with linear probing (grown by doubling past a load
 * of 3/4, deleted from by backward shift, so there are no tombstones) and
 * its own LWLock.  Against dshash (a chained table with one DSA allocation
 * per entry) this saves an allocation and a pointer chase per key, and makes
 * the whole-table walks of eviction, snapshots and reads sequential over a
 * few large arrays, with the pane arrays prefetched a few slots ahead.  Each
 * slot keeps the full 32-bit hash, so probes compare a word before a key
 * and growing never rehashes a key.  The partition is chosen by the top
 * bits of the hash and the slot by the low bits.
 *
 * Locking: the worker is the only writer.  It changes a partition only while
 * holding its lock exclusively; readers hold it shared while they look, so
 * neither a slot array nor a pane array is freed or moved under a reader.
 * The table itself lives as long as StreamStateDb->table points at it;
 * readers hold db->lock shared while they use it and the worker takes
 * db->lock exclusively to replace it.
 *
 * Keys of up to 16 bytes are stored in the slot; longer ones in their own
 * DSA chunk.
 *
 * Memory is bounded by the area's size limit.  Every allocation asks for
 * DSA_ALLOC_NO_OOM, so a full area makes sstate_store_add return "false,
 * nothing changed" and the worker pauses the query instead of dying.
 *
 * The read cache of rocksdb-backend queries (rocks_cache.c) lives in the
 * same table, under the negated query id: such slots are copies, never part
 * of a checkpoint, so snapshots, copies on write and whole-table scans pass
 * over them.
 *
 * Checkpoints and memory pages.  The area is in the main shared memory
 * segment (shmem.c), so a process touching its memory for the first time
 * takes a page fault per page: the worker restoring a checkpoint into fresh
 * memory, and each checkpoint's scanner process, which maps the whole state
 * anew.  On the development VM such a fault costs about 35 us for a fresh
 * 4 kB page (5 us for one another process already touched), so a restore of
 * 1M keys x 10 panes (about 260 MB of slots and pane arrays) spent nearly
 * all of its 1.6 s of CPU in page faults, and a checkpoint's scanner most
 * of its 2 s on the first load of each key's pane array (a TLB miss per key
 * as well as a cache miss, and the mapping's faults); with huge_pages = on
 * the same restore took 0.13 s of CPU and the checkpoint 0.15 s.  A store laid out as its own checkpoint image was
 * tried after 0.7.0 (commit b3dbe64: each partition's pane arrays
 * written raw and read straight back into one pooled chunk per partition):
 * it removed the decoding and the allocation per key, but the file grew
 * from 3.4 to 19.2 bytes per entry, and on that VM checkpoints took 4x as
 * long (0.57 s against 0.14 s, with huge pages) while restores gained about
 * a third of their CPU (90 ms against 135 ms), so it was reverted: the
 * pages touched, not the encoding, are what a restore costs.  What is kept:
 * a restore sizes every slot array once for the keys the file holds
 * (sstate_store_presize), so it does not touch each array's memory twice
 * while doubling it.
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

#define KEY_INLINE			16
#define PARTITION_BITS		7
#define PARTITIONS			(1 << PARTITION_BITS)
#define MIN_CAPACITY		16
#define PREFETCH_AHEAD		8

typedef struct Slot
{
	uint32		hash;
	int32		qid;			/* 0: the slot is empty */
	uint32		keylen;
	uint32		epoch;			/* checkpoint snapshot that copied it last */
	union
	{
		char		data[KEY_INLINE];
		dsa_pointer dp;
	}			key;
	dsa_pointer panes;			/* StreamStatePane[cap], sorted by pane */
	int32		npanes;
	int32		cap;
} Slot;

StaticAssertDecl(sizeof(Slot) == 48, "a slot is 48 bytes");

typedef struct Partition
{
	LWLock		lock;
	dsa_pointer slots;			/* Slot[mask + 1]; InvalidDsaPointer: none yet */
	uint32		mask;
	uint32		used;
} Partition;

#define STORE_MAGIC		0x53535354	/* "SSST" */

#define MAX_VALUE_QUERIES	256

/*
 * The late groups of one query with late_to, oldest first: a list of
 * LateRecord chunks (see "Late groups" below).
 */
typedef struct LateList
{
	int32		qid;			/* 0: free */
	int32		reserved;
	dsa_pointer head;
	dsa_pointer tail;
	int64		count;
	int64		bytes;
	XLogRecPtr	last_lsn;
	XLogRecPtr	done_lsn;		/* the groups of every commit up to this one
								 * are all in: readers stop here, since the
								 * commit being applied appends after it */
} LateList;

typedef struct StoreHeader
{
	uint32		magic;
	Partition	parts[PARTITIONS];
	int32		value_qids[MAX_VALUE_QUERIES];	/* queries in SQL: 0 free */
	LWLock		late_lock;		/* the late lists: the worker changes them
								 * exclusively, readers look shared */
	LateList	late[MAX_VALUE_QUERIES];
} StoreHeader;

struct StreamStateStore
{
	dsa_area   *area;
	dsa_pointer handle;
	StoreHeader *hdr;
};

/*
 * What one key costs, for the queries view: its slot at the mean load of a
 * table that doubles past 3/4 (about 0.56), rounded.
 */
#define ENTRY_BYTES		(sizeof(Slot) * 4 / 3 + sizeof(Slot) / 2)

/*
 * Loading a checkpoint keeps the lock of the partition it last loaded into:
 * keys come in the order a snapshot walked the table, mostly partition by
 * partition, so most loads need no lock traffic.  Every other entry point
 * releases it first (load_release), so it is never held across anything
 * else; sstate_store_load_end releases it at the end of a load.
 */
static LWLock *load_held = NULL;

static inline void
load_release(void)
{
	if (unlikely(load_held != NULL))
	{
		if (LWLockHeldByMe(load_held))
			LWLockRelease(load_held);
		load_held = NULL;
	}
}

static int	pane_search(const StreamStatePane *panes, int n, int64 pane, bool *found);
static bool is_value_qid(const StoreHeader *hdr, int32 qid);
static void late_commit(StreamStateStore *store);
static void late_undo(StreamStateStore *store);
static dsa_pointer value_alloc(dsa_area *area, const char *bytes, uint32 len);
static void late_free_list(dsa_area *area, LateList *l, XLogRecPtr upto, bool all);
static void free_slot(dsa_area *area, StreamStateQuery *q, Slot *s);

/*
 * The hash of (query, key image).  Classed keys (sstate_key_image) hash by
 * their prefix alone, so that every image of one value lies in one probe
 * run, where sstate_store_scan_class finds them all.
 */
static inline uint32
key_hash(int32 qid, bool classed, const char *key, uint32 keylen)
{
	uint32		h;

	if (classed && keylen >= SSTATE_CLASS_PREFIX)
	{
		memcpy(&h, key, SSTATE_CLASS_PREFIX);
		h = murmurhash32(h);
	}
	else
		h = hash_bytes((const unsigned char *) key, (int) keylen);
	return h ^ murmurhash32((uint32) qid);
}

static inline Partition *
partition_of(StreamStateStore *store, uint32 hash)
{
	return &store->hdr->parts[hash >> (32 - PARTITION_BITS)];
}

static inline const char *
slot_key(dsa_area *area, const Slot *s)
{
	if (s->keylen <= KEY_INLINE)
		return s->key.data;
	return dsa_get_address(area, s->key.dp);
}

static inline Slot *
partition_slots(dsa_area *area, const Partition *p)
{
	return DsaPointerIsValid(p->slots) ? dsa_get_address(area, p->slots) : NULL;
}

/* The slot of (qid, key) in p, or NULL.  Caller holds p->lock. */
static Slot *
partition_find(dsa_area *area, Partition *p, uint32 hash, int32 qid,
			   const char *key, uint32 keylen)
{
	Slot	   *slots = partition_slots(area, p);
	uint32		i;

	if (slots == NULL)
		return NULL;
	for (i = hash & p->mask;; i = (i + 1) & p->mask)
	{
		Slot	   *s = &slots[i];

		if (s->qid == 0)
			return NULL;
		if (s->hash == hash && s->qid == qid && s->keylen == keylen &&
			memcmp(slot_key(area, s), key, keylen) == 0)
			return s;
	}
}

/*
 * Move p's slots into a new array of newcap slots (a power of two, larger
 * than the slots in use).  Returns false when the area has no room for it,
 * with nothing changed.  Caller holds p->lock exclusively.
 */
static bool
partition_resize(dsa_area *area, Partition *p, uint32 newcap)
{
	uint32		cap = DsaPointerIsValid(p->slots) ? p->mask + 1 : 0;
	dsa_pointer dp = dsa_allocate_extended(area, sizeof(Slot) * (Size) newcap,
										   DSA_ALLOC_NO_OOM | DSA_ALLOC_ZERO | DSA_ALLOC_HUGE);
	Slot	   *new;

	if (!DsaPointerIsValid(dp))
		return false;
	new = dsa_get_address(area, dp);
	if (cap > 0)
	{
		Slot	   *old = dsa_get_address(area, p->slots);

		for (uint32 i = 0; i < cap; i++)
		{
			uint32		j;

			if (old[i].qid == 0)
				continue;
			for (j = old[i].hash & (newcap - 1); new[j].qid != 0; j = (j + 1) & (newcap - 1))
				;
			new[j] = old[i];
		}
		dsa_free(area, p->slots);
	}
	p->slots = dp;
	p->mask = newcap - 1;
	return true;
}

/*
 * Make room for one more slot in p: double its array past a load of 3/4.
 * Returns false when the area is full, with nothing changed.  Caller holds
 * p->lock exclusively.
 */
static bool
partition_reserve(dsa_area *area, Partition *p)
{
	uint32		cap = DsaPointerIsValid(p->slots) ? p->mask + 1 : 0;

	if ((uint64) (p->used + 1) * 4 <= (uint64) cap * 3)
		return true;
	return partition_resize(area, p, cap == 0 ? MIN_CAPACITY : cap * 2);
}

/*
 * After deletions: give back the memory of a partition whose array is
 * mostly empty (under 1/8 used), halving it until the load is at least 1/4
 * (below the 3/4 at which it grows again), or freeing it when empty.  So a
 * dropped query or read cache, or a state that shrank after eviction,
 * returns its memory.  Keeps the array when the area has no room for the
 * smaller one.  Caller holds p->lock exclusively.
 */
static void
partition_shrink(dsa_area *area, Partition *p)
{
	uint32		cap = DsaPointerIsValid(p->slots) ? p->mask + 1 : 0;
	uint32		newcap = cap;

	if (cap <= MIN_CAPACITY || (uint64) p->used * 8 >= cap)
		return;
	if (p->used == 0)
	{
		dsa_free(area, p->slots);
		p->slots = InvalidDsaPointer;
		p->mask = 0;
		return;
	}
	while (newcap > MIN_CAPACITY && (uint64) p->used * 4 < newcap)
		newcap /= 2;
	(void) partition_resize(area, p, newcap);
}

/*
 * A new slot for (qid, key) in p, which partition_reserve has made room
 * for; the caller fills in the rest.  Caller holds p->lock exclusively.
 */
static Slot *
partition_insert(dsa_area *area, Partition *p, uint32 hash, int32 qid, uint32 keylen)
{
	Slot	   *slots = dsa_get_address(area, p->slots);
	uint32		i;

	for (i = hash & p->mask; slots[i].qid != 0; i = (i + 1) & p->mask)
		;
	memset(&slots[i], 0, sizeof(Slot));
	slots[i].hash = hash;
	slots[i].qid = qid;
	slots[i].keylen = keylen;
	slots[i].panes = InvalidDsaPointer;
	p->used++;
	return &slots[i];
}

/*
 * Empty slot i of p, moving later slots of its probe run back so that
 * lookups never meet a hole (backward-shift deletion).  A slot moved into i
 * comes from after i; a walk over the array that deletes at i must look at
 * i again.  Caller holds p->lock exclusively and has freed the slot's chunks.
 */
static void
partition_delete_at(dsa_area *area, Partition *p, uint32 i)
{
	Slot	   *slots = dsa_get_address(area, p->slots);
	uint32		j = i;

	for (;;)
	{
		uint32		home;

		j = (j + 1) & p->mask;
		if (slots[j].qid == 0)
			break;
		home = slots[j].hash & p->mask;
		/* slot j may move to i when i lies in [home, j) */
		if (((j - home) & p->mask) >= ((j - i) & p->mask))
		{
			slots[i] = slots[j];
			i = j;
		}
	}
	memset(&slots[i], 0, sizeof(Slot));
	p->used--;
}

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
cow_touch(dsa_area *area, Slot *s)
{
	if (unlikely(cow_cb != NULL) && s->epoch < cow_epoch && s->qid > 0)
	{
		if (s->npanes > 0)
			cow_cb(cow_arg, s->qid, slot_key(area, s), s->keylen,
				   dsa_get_address(area, s->panes), s->npanes);
		s->epoch = cow_epoch;
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

Size
sstate_store_entry_bytes(void)
{
	return sizeof(StreamStatePane);
}

/* ---------------------------------------------------------------------
 * The table
 * ---------------------------------------------------------------------
 */

/* The local handle lives in TopMemoryContext: it is kept across calls. */
StreamStateStore *
sstate_store_attach(dsa_area *area, dsa_pointer handle)
{
	StreamStateStore *store = MemoryContextAlloc(TopMemoryContext,
												 sizeof(StreamStateStore));

	store->area = area;
	store->handle = handle;
	store->hdr = dsa_get_address(area, handle);
	Assert(store->hdr->magic == STORE_MAGIC);
	return store;
}

/* ERROR when the area cannot hold the (16 kB) header */
StreamStateStore *
sstate_store_create(dsa_area *area)
{
	dsa_pointer dp = dsa_allocate_extended(area, sizeof(StoreHeader), DSA_ALLOC_ZERO);
	StoreHeader *hdr = dsa_get_address(area, dp);
	int			i;

	hdr->magic = STORE_MAGIC;
	LWLockInitialize(&hdr->late_lock, sstate_shared->lwtranche);
	for (i = 0; i < PARTITIONS; i++)
	{
		LWLockInitialize(&hdr->parts[i].lock, sstate_shared->lwtranche);
		hdr->parts[i].slots = InvalidDsaPointer;
	}
	return sstate_store_attach(area, dp);
}

dsa_pointer
sstate_store_handle(StreamStateStore *store)
{
	return store->handle;
}

void
sstate_store_detach(StreamStateStore *store)
{
	pfree(store);
}

/*
 * Free every chunk of the table, then the handle.  Caller holds db->lock
 * exclusively: nobody else looks at the table.
 */
void
sstate_store_destroy(StreamStateStore *store)
{
	dsa_area   *area = store->area;
	int			i;

	load_release();
	for (i = 0; i < PARTITIONS; i++)
	{
		Partition  *p = &store->hdr->parts[i];
		Slot	   *slots = partition_slots(area, p);
		uint32		j;

		if (slots == NULL)
			continue;
		for (j = 0; j <= p->mask; j++)
		{
			if (slots[j].qid == 0)
				continue;
			if (DsaPointerIsValid(slots[j].panes))
			{
				if (is_value_qid(store->hdr, slots[j].qid))
				{
					StreamStatePane *panes = dsa_get_address(area, slots[j].panes);

					for (int k = 0; k < slots[j].npanes; k++)
						if (DsaPointerIsValid((dsa_pointer) panes[k].count))
							dsa_free(area, (dsa_pointer) panes[k].count);
				}
				dsa_free(area, slots[j].panes);
			}
			if (slots[j].keylen > KEY_INLINE)
				dsa_free(area, slots[j].key.dp);
		}
		dsa_free(area, p->slots);
	}
	for (i = 0; i < MAX_VALUE_QUERIES; i++)
		if (store->hdr->late[i].qid != 0)
			late_free_list(area, &store->hdr->late[i], InvalidXLogRecPtr, true);
	dsa_free(area, store->handle);
	pfree(store);
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

/*
 * The capacity a full pane array grows to.  A key's live panes are a sliding
 * run of about window / pane (+ lateness / pane) entries, so its array
 * settles at that size: grow in small steps while arrays are small, so that
 * a 5-pane window does not sit in an 8- or 16-pane array, and by half once
 * they are large.
 */
static inline int32
pane_capacity_after(int32 cap)
{
	if (cap < 8)
		return cap + 2;
	return cap + cap / 2;
}

/*
 * Values (queries in SQL, sstate_store_set_values): a pane's count is the
 * dsa_pointer of a chunk holding a uint32 length and the query's partial
 * states (cq_worker.c).
 */
static bool
is_value_qid(const StoreHeader *hdr, int32 qid)
{
	if (qid <= 0)
		return false;
	for (int i = 0; i < MAX_VALUE_QUERIES; i++)
		if (hdr->value_qids[i] == qid)
			return true;
	return false;
}

/* Free the values of panes [from, to) of a value slot. */
static void
free_values(dsa_area *area, StreamStateQuery *q, StreamStatePane *panes, int from, int to)
{
	for (int i = from; i < to; i++)
	{
		dsa_pointer dp = (dsa_pointer) panes[i].count;

		if (DsaPointerIsValid(dp))
		{
			q->bytes -= *(uint32 *) dsa_get_address(area, dp) + sizeof(uint32);
			dsa_free(area, dp);
		}
	}
}

/* Free a slot's chunks and uncount it; the caller deletes it next. */
static void
free_slot(dsa_area *area, StreamStateQuery *q, Slot *s)
{
	if (q->def.sql && s->npanes > 0)
		free_values(area, q, dsa_get_address(area, s->panes), 0, s->npanes);
	if (DsaPointerIsValid(s->panes))
	{
		dsa_free(area, s->panes);
		q->bytes -= (int64) s->cap * sizeof(StreamStatePane);
	}
	if (s->keylen > KEY_INLINE)
	{
		dsa_free(area, s->key.dp);
		q->bytes -= s->keylen;
	}
	q->bytes -= ENTRY_BYTES;
	q->keys--;
	q->panes -= s->npanes;
	s->panes = InvalidDsaPointer;
}

/*
 * A new slot for (query, key) with no panes, or NULL when memory is
 * exhausted (nothing changed).  Caller holds p->lock exclusively.
 */
static Slot *
new_key(dsa_area *area, Partition *p, StreamStateQuery *q, uint32 hash,
		const char *key, uint32 keylen)
{
	dsa_pointer kp = InvalidDsaPointer;
	Slot	   *s;

	if (keylen > KEY_INLINE)
	{
		kp = dsa_allocate_extended(area, keylen, DSA_ALLOC_NO_OOM);
		if (!DsaPointerIsValid(kp))
			return NULL;
		memcpy(dsa_get_address(area, kp), key, keylen);
	}
	if (!partition_reserve(area, p))
	{
		if (DsaPointerIsValid(kp))
			dsa_free(area, kp);
		return NULL;
	}
	s = partition_insert(area, p, hash, q->def.id, keylen);
	if (keylen > KEY_INLINE)
	{
		s->key.dp = kp;
		q->bytes += keylen;
	}
	else
		memcpy(s->key.data, key, keylen);
	s->epoch = cow_epoch;		/* not part of a snapshot being taken */
	q->keys++;
	q->bytes += ENTRY_BYTES;
	return s;
}

/* Delete the slot s of p after freeing its chunks. */
static void
delete_slot(dsa_area *area, Partition *p, StreamStateQuery *q, Slot *s)
{
	Slot	   *slots = dsa_get_address(area, p->slots);

	free_slot(area, q, s);
	partition_delete_at(area, p, (uint32) (s - slots));
}

/*
 * Put a new pane at position pos of s's pane array, growing the array when
 * it is full.  Returns false when memory is exhausted, with nothing
 * changed.  Caller holds the partition's lock exclusively.
 */
static bool
insert_pane(dsa_area *area, StreamStateQuery *q, Slot *s, int pos, int64 pane, int64 count)
{
	/* (a session merge may have emptied an array it then fills again) */
	StreamStatePane *panes = DsaPointerIsValid(s->panes) ? dsa_get_address(area, s->panes) : NULL;

	if (s->npanes == s->cap)
	{
		int32		newcap = pane_capacity_after(s->cap);
		dsa_pointer dp = dsa_allocate_extended(area,
											   sizeof(StreamStatePane) * newcap,
											   DSA_ALLOC_NO_OOM);

		if (!DsaPointerIsValid(dp))
			return false;
		if (s->npanes > 0)
			memcpy(dsa_get_address(area, dp), panes,
				   sizeof(StreamStatePane) * s->npanes);
		if (DsaPointerIsValid(s->panes))
			dsa_free(area, s->panes);
		q->bytes += (int64) (newcap - s->cap) * sizeof(StreamStatePane);
		s->panes = dp;
		s->cap = newcap;
		panes = dsa_get_address(area, dp);
	}
	memmove(&panes[pos + 1], &panes[pos],
			sizeof(StreamStatePane) * (s->npanes - pos));
	panes[pos].pane = pane;
	panes[pos].count = count;
	s->npanes++;
	q->panes++;
	return true;
}

/*
 * Add count to (query, key, pane).  A negative count undoes an earlier add
 * of this transaction and never allocates; panes and keys left empty by it
 * are removed.  Returns false when memory is exhausted, with nothing
 * changed.  Worker only.
 */
bool
sstate_store_add(StreamStateStore *store, StreamStateQuery *q, const char *key,
				 uint32 keylen, int64 pane, int64 count)
{
	dsa_area   *area = store->area;
	uint32		hash = key_hash(q->def.id, q->def.key_classed, key, keylen);
	Partition  *p = partition_of(store, hash);
	Slot	   *s;
	StreamStatePane *panes;
	bool		pfound;
	int			pos;

	load_release();
	LWLockAcquire(&p->lock, LW_EXCLUSIVE);
	s = partition_find(area, p, hash, q->def.id, key, keylen);

	if (count < 0)
	{
		if (s == NULL)
			elog(ERROR, "stream_state: undo of a missing key");
		cow_touch(area, s);
		panes = dsa_get_address(area, s->panes);
		pos = pane_search(panes, s->npanes, pane, &pfound);
		if (!pfound)
			elog(ERROR, "stream_state: undo of a missing pane");
		panes[pos].count += count;
		if (panes[pos].count == 0)
		{
			memmove(&panes[pos], &panes[pos + 1],
					sizeof(StreamStatePane) * (s->npanes - pos - 1));
			s->npanes--;
			q->panes--;
		}
		if (s->npanes == 0)
			delete_slot(area, p, q, s);
		LWLockRelease(&p->lock);
		return true;
	}

	if (s != NULL)
		cow_touch(area, s);
	else
	{
		s = new_key(area, p, q, hash, key, keylen);
		if (s == NULL)
		{
			LWLockRelease(&p->lock);
			return false;
		}
	}

	panes = s->npanes > 0 ? dsa_get_address(area, s->panes) : NULL;
	pos = s->npanes > 0 ? pane_search(panes, s->npanes, pane, &pfound) : 0;
	if (s->npanes > 0 && pfound)
	{
		panes[pos].count += count;
		LWLockRelease(&p->lock);
		return true;
	}

	if (!insert_pane(area, q, s, pos, pane, count))
	{
		if (s->npanes == 0)
			delete_slot(area, p, q, s);
		LWLockRelease(&p->lock);
		return false;
	}
	LWLockRelease(&p->lock);
	return true;
}

/*
 * Add count to (query, key, pane) of a key that is in the table; for the
 * read cache of rocksdb queries, which holds complete copies of some keys.
 * Returns false, changing nothing, when the key is not there.  A count
 * that cannot be applied (no memory for a new pane, or an undo of a pane
 * the copy lacks) removes the key: the cache then misses it, never holds
 * it wrong.  Worker only.
 */
bool
sstate_store_add_cached(StreamStateStore *store, StreamStateQuery *q, const char *key,
						uint32 keylen, int64 pane, int64 count)
{
	dsa_area   *area = store->area;
	uint32		hash = key_hash(q->def.id, false, key, keylen);
	Partition  *p = partition_of(store, hash);
	Slot	   *s;
	StreamStatePane *panes;
	bool		pfound = false;
	int			pos = 0;

	load_release();
	LWLockAcquire(&p->lock, LW_EXCLUSIVE);
	s = partition_find(area, p, hash, q->def.id, key, keylen);
	if (s == NULL)
	{
		LWLockRelease(&p->lock);
		return false;
	}
	panes = s->npanes > 0 ? dsa_get_address(area, s->panes) : NULL;
	if (s->npanes > 0)
		pos = pane_search(panes, s->npanes, pane, &pfound);
	if (pfound)
	{
		panes[pos].count += count;
		if (panes[pos].count == 0)
		{
			memmove(&panes[pos], &panes[pos + 1],
					sizeof(StreamStatePane) * (s->npanes - pos - 1));
			s->npanes--;
			q->panes--;
		}
	}
	else if (count < 0 || !insert_pane(area, q, s, pos, pane, count))
	{
		/* the copy cannot be kept right: drop it */
		delete_slot(area, p, q, s);
		LWLockRelease(&p->lock);
		return true;
	}
	if (s->npanes == 0)
		delete_slot(area, p, q, s);
	LWLockRelease(&p->lock);
	return true;
}

bool
sstate_store_is_values(StreamStateStore *store, int32 qid)
{
	return is_value_qid(store->hdr, qid);
}

/* A value made of bytes, for a load; 0 when memory is exhausted */
int64
sstate_store_value_make(StreamStateStore *store, const char *bytes, uint32 len)
{
	return (int64) value_alloc(store->area, bytes, len);
}

void
sstate_store_value_free(StreamStateStore *store, int64 ref)
{
	if (DsaPointerIsValid((dsa_pointer) ref))
		dsa_free(store->area, (dsa_pointer) ref);
}

/* Mark query qid as one whose panes hold values (or not).  Worker only. */
void
sstate_store_set_values(StreamStateStore *store, int32 qid, bool on)
{
	StoreHeader *hdr = store->hdr;

	if (on == is_value_qid(hdr, qid))
		return;
	for (int i = 0; i < MAX_VALUE_QUERIES; i++)
	{
		if (on && hdr->value_qids[i] == 0)
		{
			hdr->value_qids[i] = qid;
			return;
		}
		if (!on && hdr->value_qids[i] == qid)
		{
			hdr->value_qids[i] = 0;
			return;
		}
	}
	elog(ERROR, "stream_state: more than %d queries in SQL in one database", MAX_VALUE_QUERIES);
}

/* A chunk of a value: its bytes and length (readers hold the partition lock) */
const char *
sstate_store_value(StreamStateStore *store, int64 ref, uint32 *len)
{
	const char *p;

	if (!DsaPointerIsValid((dsa_pointer) ref))
	{
		*len = 0;
		return NULL;
	}
	p = dsa_get_address(store->area, (dsa_pointer) ref);
	memcpy(len, p, sizeof(uint32));
	return p + sizeof(uint32);
}

/*
 * The journal of the values replaced by the commit being applied: a count
 * can be undone by adding its negative, a combined state cannot, so the old
 * value stays allocated until the commit has applied (values_commit) and is
 * put back if it fails (values_undo).  Worker-local.
 */
typedef struct ValueChange
{
	int32		qid;
	uint32		keylen;
	char	   *key;
	int64		pane;
	dsa_pointer old;			/* InvalidDsaPointer: the pane was new */
	dsa_pointer new;
	uint32		oldlen;
	uint32		newlen;
} ValueChange;

static ValueChange *changes = NULL;
static int	nchanges = 0;
static int	changes_cap = 0;

static void
journal(int32 qid, const char *key, uint32 keylen, int64 pane, dsa_pointer old,
		uint32 oldlen, dsa_pointer new, uint32 newlen)
{
	ValueChange *c;

	if (nchanges == changes_cap)
	{
		changes_cap = Max(changes_cap * 2, 256);
		changes = changes ? repalloc(changes, sizeof(ValueChange) * changes_cap) :
			MemoryContextAlloc(TopMemoryContext, sizeof(ValueChange) * changes_cap);
	}
	c = &changes[nchanges++];
	c->qid = qid;
	c->keylen = keylen;
	c->key = MemoryContextAlloc(TopMemoryContext, Max(keylen, 1));
	memcpy(c->key, key, keylen);
	c->pane = pane;
	c->old = old;
	c->oldlen = oldlen;
	c->new = new;
	c->newlen = newlen;
}

/* The commit applied: free the values it replaced. */
void
sstate_store_values_commit(StreamStateStore *store)
{
	for (int i = 0; i < nchanges; i++)
	{
		if (DsaPointerIsValid(changes[i].old))
			dsa_free(store->area, changes[i].old);
		pfree(changes[i].key);
	}
	nchanges = 0;
	late_commit(store);
}

/*
 * The commit failed: put back every value it replaced, newest first, and
 * remove the panes it added.  owner gives each query's accounting.
 */
void
sstate_store_values_undo(StreamStateStore *store, StreamStateQuery *(*owner) (int32 qid))
{
	dsa_area   *area = store->area;

	load_release();
	late_undo(store);
	for (int i = nchanges - 1; i >= 0; i--)
	{
		ValueChange *c = &changes[i];
		StreamStateQuery *q = owner(c->qid);
		uint32		hash = key_hash(c->qid, false, c->key, c->keylen);
		Partition  *p = partition_of(store, hash);
		Slot	   *s;

		LWLockAcquire(&p->lock, LW_EXCLUSIVE);
		s = partition_find(area, p, hash, c->qid, c->key, c->keylen);
		if (!DsaPointerIsValid(c->new))
		{
			/* a session merged away: back in its place (its array has room) */
			if (q != NULL && (s != NULL || (s = new_key(area, p, q, hash, c->key, c->keylen)) != NULL))
			{
				bool		found;
				int			pos = s->npanes > 0 ?
					pane_search(dsa_get_address(area, s->panes), s->npanes, c->pane, &found) : 0;

				cow_touch(area, s);
				if (insert_pane(area, q, s, pos, c->pane, (int64) c->old))
					q->bytes += c->oldlen;
				else
					dsa_free(area, c->old);
			}
			else
				dsa_free(area, c->old);
		}
		else if (s != NULL && q != NULL)
		{
			StreamStatePane *panes = dsa_get_address(area, s->panes);
			bool		found;
			int			pos = pane_search(panes, s->npanes, c->pane, &found);

			if (found && (dsa_pointer) panes[pos].count == c->new)
			{
				cow_touch(area, s);
				q->bytes += (int64) c->oldlen - (int64) c->newlen;
				if (DsaPointerIsValid(c->old))
					panes[pos].count = (int64) c->old;
				else
				{
					memmove(&panes[pos], &panes[pos + 1],
							sizeof(StreamStatePane) * (s->npanes - pos - 1));
					s->npanes--;
					q->panes--;
					if (s->npanes == 0)
						delete_slot(area, p, q, s);
				}
				dsa_free(area, c->new);
			}
			else if (DsaPointerIsValid(c->old))
				dsa_free(area, c->old);	/* the pane went meanwhile */
		}
		else if (DsaPointerIsValid(c->old))
			dsa_free(area, c->old);
		LWLockRelease(&p->lock);
		pfree(c->key);
	}
	nchanges = 0;
}

static dsa_pointer
value_alloc(dsa_area *area, const char *bytes, uint32 len)
{
	dsa_pointer dp = dsa_allocate_extended(area, sizeof(uint32) + len, DSA_ALLOC_NO_OOM);

	if (DsaPointerIsValid(dp))
	{
		char	   *p = dsa_get_address(area, dp);

		memcpy(p, &len, sizeof(uint32));
		memcpy(p + sizeof(uint32), bytes, len);
	}
	return dp;
}

/*
 * Merge value (a commit's partial states for (query, key, pane)) into the
 * pane's value with merge (which combines them), or make it the pane's
 * value; rows is the number of rows it covers (kept nowhere: panes of
 * values are removed only by eviction).  Returns false when memory is
 * exhausted, with nothing changed.  Worker only.
 */
bool
sstate_store_merge_value(StreamStateStore *store, StreamStateQuery *q, const char *key,
						 uint32 keylen, int64 pane, const char *value, uint32 len,
						 sstate_store_merge_cb merge, void *arg)
{
	dsa_area   *area = store->area;
	uint32		hash = key_hash(q->def.id, false, key, keylen);
	Partition  *p = partition_of(store, hash);
	Slot	   *s;
	StreamStatePane *panes;
	bool		pfound = false;
	int			pos = 0;
	dsa_pointer dp;

	load_release();
	LWLockAcquire(&p->lock, LW_EXCLUSIVE);
	s = partition_find(area, p, hash, q->def.id, key, keylen);
	if (s != NULL)
		cow_touch(area, s);
	else if ((s = new_key(area, p, q, hash, key, keylen)) == NULL)
	{
		LWLockRelease(&p->lock);
		return false;
	}
	panes = s->npanes > 0 ? dsa_get_address(area, s->panes) : NULL;
	if (s->npanes > 0)
		pos = pane_search(panes, s->npanes, pane, &pfound);
	if (pfound)
	{
		uint32		oldlen;
		const char *old = sstate_store_value(store, panes[pos].count, &oldlen);
		const char *merged;
		uint32		mlen;

		if (!merge(arg, old, oldlen, value, len, &merged, &mlen))
			elog(ERROR, "stream_state: a partial state of continuous query \"%s\" is malformed",
					 q->def.name);
		dp = value_alloc(area, merged, mlen);
		if (!DsaPointerIsValid(dp))
		{
			LWLockRelease(&p->lock);
			return false;
		}
		journal(q->def.id, key, keylen, pane, (dsa_pointer) panes[pos].count, oldlen + sizeof(uint32),
				dp, mlen + sizeof(uint32));
		q->bytes += (int64) mlen - (int64) oldlen;
		panes[pos].count = (int64) dp;
		LWLockRelease(&p->lock);
		return true;
	}
	dp = value_alloc(area, value, len);
	if (!DsaPointerIsValid(dp) || !insert_pane(area, q, s, pos, pane, (int64) dp))
	{
		if (DsaPointerIsValid(dp))
			dsa_free(area, dp);
		if (s->npanes == 0)
			delete_slot(area, p, q, s);
		LWLockRelease(&p->lock);
		return false;
	}
	q->bytes += sizeof(uint32) + len;
	journal(q->def.id, key, keylen, pane, InvalidDsaPointer, 0, dp, len + sizeof(uint32));
	LWLockRelease(&p->lock);
	return true;
}

/*
 * Walks over a partition prefetch the slots 2 * PREFETCH_AHEAD ahead and the
 * pane array (its first cache lines) of the slot PREFETCH_AHEAD ahead: the
 * arrays are scattered over the area, and a walk is bound by those misses.
 */
static inline void
prefetch_panes(dsa_area *area, const Slot *slots, uint32 i, uint32 mask)
{
	const Slot *ahead = &slots[(i + PREFETCH_AHEAD) & mask];

	__builtin_prefetch(&slots[(i + 2 * PREFETCH_AHEAD) & mask]);
	if (ahead->qid != 0 && DsaPointerIsValid(ahead->panes))
	{
		const char *p = dsa_get_address(area, ahead->panes);
		Size		bytes = Min((Size) ahead->npanes * sizeof(StreamStatePane), 4 * 64);

		for (Size off = 0; off < bytes; off += 64)
			__builtin_prefetch(p + off);
	}
}

/* A session's last event (the start of its value) */
static inline int64
session_last(StreamStateStore *store, int64 ref)
{
	uint32		len;
	const char *v = sstate_store_value(store, ref, &len);
	int64		last;

	memcpy(&last, v, sizeof(int64));
	return last;
}

/*
 * Session windows: merge a group of a commit (its first and last event,
 * less than the gap apart, and its partial states) into key's sessions.  A
 * key's sessions are kept sorted by their first event, whose time is the
 * pane field; the value is the last event's time followed by the states.
 * The group joins every open session within the gap of it (first <
 * last' + gap and first' < last + gap), their states combined with merge,
 * into one session; sessions closed by closed_until (last' + gap <= it)
 * are never joined: what they hold is final, and may have been emitted.
 * Each session merged away and the new one go into the journal, so that a
 * failed commit puts them back.  Returns false when memory is exhausted,
 * with nothing changed.  Worker only.
 */
bool
sstate_store_merge_session(StreamStateStore *store, StreamStateQuery *q, const char *key,
						   uint32 keylen, int64 first, int64 last, const char *states,
						   uint32 len, int64 closed_until, sstate_store_merge_cb merge, void *arg)
{
	dsa_area   *area = store->area;
	int64		gap = q->def.session_gap_us;
	uint32		hash = key_hash(q->def.id, false, key, keylen);
	Partition  *p = partition_of(store, hash);
	Slot	   *s;
	StreamStatePane *panes;
	int		   *hits;
	int			nhits = 0;
	int64		mfirst = first;
	int64		mlast = last;
	char	   *acc;
	uint32		acclen = len;
	char	   *value;
	dsa_pointer dp;
	bool		found;
	int			pos;

	load_release();
	LWLockAcquire(&p->lock, LW_EXCLUSIVE);
	s = partition_find(area, p, hash, q->def.id, key, keylen);
	if (s != NULL)
		cow_touch(area, s);
	else if ((s = new_key(area, p, q, hash, key, keylen)) == NULL)
	{
		LWLockRelease(&p->lock);
		return false;
	}
	panes = s->npanes > 0 ? dsa_get_address(area, s->panes) : NULL;
	hits = palloc(sizeof(int) * Max(s->npanes, 1));
	acc = palloc(Max(len, 1));
	memcpy(acc, states, len);
	for (int i = 0; i < s->npanes; i++)
	{
		int64		sfirst = panes[i].pane;
		int64		slast = session_last(store, panes[i].count);

		if (slast + gap <= closed_until)
			continue;			/* closed: final */
		if (sfirst < last + gap && first < slast + gap)
		{
			uint32		vlen;
			const char *v = sstate_store_value(store, panes[i].count, &vlen);
			const char *merged;
			uint32		mlen;

			hits[nhits++] = i;
			mfirst = Min(mfirst, sfirst);
			mlast = Max(mlast, slast);
			if (!merge(arg, v + sizeof(int64), vlen - sizeof(int64), acc, acclen, &merged, &mlen))
				elog(ERROR, "stream_state: a partial state of continuous query \"%s\" is malformed",
					 q->def.name);
			acc = repalloc(acc, Max(mlen, 1));
			memcpy(acc, merged, mlen);
			acclen = mlen;
		}
	}
	value = palloc(sizeof(int64) + acclen);
	memcpy(value, &mlast, sizeof(int64));
	memcpy(value + sizeof(int64), acc, acclen);
	dp = value_alloc(area, value, sizeof(int64) + acclen);
	if (!DsaPointerIsValid(dp))
	{
		if (s->npanes == 0)
			delete_slot(area, p, q, s);
		LWLockRelease(&p->lock);
		return false;
	}
	if (nhits == 0 && s->npanes == s->cap)
	{
		/* make room first, so that nothing changes if there is none */
		pos = pane_search(panes, s->npanes, mfirst, &found);
		if (!insert_pane(area, q, s, pos, mfirst, (int64) dp))
		{
			dsa_free(area, dp);
			if (s->npanes == 0)
				delete_slot(area, p, q, s);
			LWLockRelease(&p->lock);
			return false;
		}
	}
	else
	{
		for (int k = nhits - 1; k >= 0; k--)
		{
			int			i = hits[k];
			uint32		vlen;

			(void) sstate_store_value(store, panes[i].count, &vlen);
			journal(q->def.id, key, keylen, panes[i].pane, (dsa_pointer) panes[i].count,
					vlen + sizeof(uint32), InvalidDsaPointer, 0);
			q->bytes -= vlen + sizeof(uint32);
			memmove(&panes[i], &panes[i + 1], sizeof(StreamStatePane) * (s->npanes - i - 1));
			s->npanes--;
			q->panes--;
		}
		pos = s->npanes > 0 ? pane_search(panes, s->npanes, mfirst, &found) : 0;
		if (!insert_pane(area, q, s, pos, mfirst, (int64) dp))
			elog(PANIC, "stream_state: no room for a merged session");	/* it had room */
	}
	q->bytes += sizeof(uint32) + sizeof(int64) + acclen;
	journal(q->def.id, key, keylen, mfirst, InvalidDsaPointer, 0, dp,
			sizeof(uint32) + sizeof(int64) + acclen);
	LWLockRelease(&p->lock);
	pfree(hits);
	pfree(acc);
	pfree(value);
	return true;
}

/*
 * Session windows: remove the sessions of one query that closed by
 * closed_until (last event + gap <= it), and keys left without any.
 * Worker only.
 */
void
sstate_store_evict_sessions(StreamStateStore *store, StreamStateQuery *q, int64 closed_until)
{
	dsa_area   *area = store->area;
	int64		gap = q->def.session_gap_us;

	load_release();
	for (int n = 0; n < PARTITIONS; n++)
	{
		Partition  *p = &store->hdr->parts[n];
		Slot	   *slots;

		LWLockAcquire(&p->lock, LW_EXCLUSIVE);
		slots = partition_slots(area, p);
		for (uint32 i = 0; slots != NULL && i <= p->mask; i++)
		{
			Slot	   *s = &slots[i];
			StreamStatePane *panes;
			int			kept = 0;
			bool		any = false;

			prefetch_panes(area, slots, i, p->mask);
			if (s->qid != q->def.id)
				continue;
			panes = dsa_get_address(area, s->panes);
			for (int k = 0; k < s->npanes && !any; k++)
				any = session_last(store, panes[k].count) + gap <= closed_until;
			if (!any)
				continue;
			cow_touch(area, s);
			for (int k = 0; k < s->npanes; k++)
			{
				if (session_last(store, panes[k].count) + gap <= closed_until)
				{
					uint32		vlen;

					(void) sstate_store_value(store, panes[k].count, &vlen);
					q->bytes -= vlen + sizeof(uint32);
					dsa_free(area, (dsa_pointer) panes[k].count);
					q->panes--;
				}
				else
					panes[kept++] = panes[k];
			}
			if (kept > 0)
				s->npanes = kept;
			else
			{
				/* its values are freed: delete_slot must not free them again */
				s->npanes = 0;
				delete_slot(area, p, q, s);
				i--;			/* a later slot may have moved into i */
			}
		}
		partition_shrink(area, p);
		LWLockRelease(&p->lock);
	}
}


/*
 * Remove every pane below dead_below of one query, and keys left without
 * panes.  Worker only.
 */
void
sstate_store_evict(StreamStateStore *store, StreamStateQuery *q, int64 dead_below)
{
	dsa_area   *area = store->area;
	int			n;

	load_release();
	for (n = 0; n < PARTITIONS; n++)
	{
		Partition  *p = &store->hdr->parts[n];
		Slot	   *slots;
		uint32		i;

		LWLockAcquire(&p->lock, LW_EXCLUSIVE);
		slots = partition_slots(area, p);
		for (i = 0; slots != NULL && i <= p->mask; i++)
		{
			Slot	   *s = &slots[i];
			StreamStatePane *panes;
			int			k = 0;

			prefetch_panes(area, slots, i, p->mask);
			if (s->qid != q->def.id)
				continue;
			panes = dsa_get_address(area, s->panes);
			while (k < s->npanes && panes[k].pane < dead_below)
				k++;
			if (k == 0)
				continue;
			cow_touch(area, s);
			if (k < s->npanes)
			{
				if (q->def.sql)
					free_values(area, q, panes, 0, k);
				memmove(&panes[0], &panes[k], sizeof(StreamStatePane) * (s->npanes - k));
				s->npanes -= k;
				q->panes -= k;
			}
			else
			{
				delete_slot(area, p, q, s);
				i--;			/* a later slot may have moved into i */
			}
		}
		partition_shrink(area, p);
		LWLockRelease(&p->lock);
	}
}

/*
 * Remove the keys of one query whose newest pane is below idle_below
 * (retention).  Worker only.
 */
void
sstate_store_drop_idle(StreamStateStore *store, StreamStateQuery *q, int64 idle_below)
{
	dsa_area   *area = store->area;

	load_release();
	for (int n = 0; n < PARTITIONS; n++)
	{
		Partition  *p = &store->hdr->parts[n];
		Slot	   *slots;

		LWLockAcquire(&p->lock, LW_EXCLUSIVE);
		slots = partition_slots(area, p);
		for (uint32 i = 0; slots != NULL && i <= p->mask; i++)
		{
			Slot	   *s = &slots[i];
			StreamStatePane *panes;

			prefetch_panes(area, slots, i, p->mask);
			if (s->qid != q->def.id || s->npanes == 0)
				continue;
			panes = dsa_get_address(area, s->panes);
			if (panes[s->npanes - 1].pane >= idle_below)
				continue;
			cow_touch(area, s);
			delete_slot(area, p, q, s);
			i--;				/* a later slot may have moved into i */
		}
		partition_shrink(area, p);
		LWLockRelease(&p->lock);
	}
}

/* Remove every key of one query.  Worker only. */
void
sstate_store_drop_query(StreamStateStore *store, StreamStateQuery *q)
{
	sstate_store_evict(store, q, PG_INT64_MAX);
}

/*
 * Sum of the counts of panes [pane_lo, pane_hi) of one key, and whether
 * the table has the key.
 */
static int64
store_sum(StreamStateStore *store, int32 qid, const char *key,
		  uint32 keylen, int64 pane_lo, int64 pane_hi, bool *found)
{
	dsa_area   *area = store->area;
	uint32		hash = key_hash(qid, false, key, keylen);
	Partition  *p = partition_of(store, hash);
	Slot	   *s;
	int64		sum = 0;

	load_release();
	LWLockAcquire(&p->lock, LW_SHARED);
	s = partition_find(area, p, hash, qid, key, keylen);
	*found = (s != NULL);
	if (s != NULL && s->npanes > 0)
	{
		StreamStatePane *panes = dsa_get_address(area, s->panes);
		int			i;

		for (i = 0; i < s->npanes; i++)
			if (panes[i].pane >= pane_lo && panes[i].pane < pane_hi)
				sum += panes[i].count;
	}
	LWLockRelease(&p->lock);
	return sum;
}

int64
sstate_store_sum(StreamStateStore *store, int32 qid, const char *key,
				 uint32 keylen, int64 pane_lo, int64 pane_hi)
{
	bool		found;

	return store_sum(store, qid, key, keylen, pane_lo, pane_hi, &found);
}

/*
 * sstate_store_sum of a read cache (qid negated): false when the cache
 * does not hold the key.
 */
bool
sstate_store_sum_cached(StreamStateStore *store, int32 qid, const char *key,
						uint32 keylen, int64 pane_lo, int64 pane_hi, int64 *sum)
{
	bool		found;

	*sum = store_sum(store, qid, key, keylen, pane_lo, pane_hi, &found);
	return found;
}

/*
 * Remove every read-cache key (negative query id) in partition n of the
 * table; owner gives the accounting of each one's query.  The read caches
 * shrink a partition at a time: which keys go is as good as random, and
 * costs one walk of one partition.  Worker only.
 */
void
sstate_store_drop_cached_partition(StreamStateStore *store, int n,
								   StreamStateQuery *(*owner) (int32 qid))
{
	dsa_area   *area = store->area;
	Partition  *p = &store->hdr->parts[n % PARTITIONS];
	Slot	   *slots;
	uint32		i;

	load_release();
	LWLockAcquire(&p->lock, LW_EXCLUSIVE);
	slots = partition_slots(area, p);
	for (i = 0; slots != NULL && i <= p->mask; i++)
	{
		StreamStateQuery *q;

		if (slots[i].qid >= 0 || (q = owner(slots[i].qid)) == NULL)
			continue;
		delete_slot(area, p, q, &slots[i]);
		i--;					/* a later slot may have moved into i */
	}
	partition_shrink(area, p);
	LWLockRelease(&p->lock);
}

int
sstate_store_partitions(void)
{
	return PARTITIONS;
}

/*
 * Call cb for every key of query qid, a query with classed keys, whose image
 * has the class prefix of key's: the candidates for being equal to key.
 * Holds the partition lock shared while it calls cb.
 */
void
sstate_store_scan_class(StreamStateStore *store, int32 qid, const char *key,
						uint32 keylen, sstate_store_scan_cb cb, void *arg)
{
	dsa_area   *area = store->area;
	uint32		hash = key_hash(qid, true, key, keylen);
	Partition  *p = partition_of(store, hash);
	Slot	   *slots;
	uint32		i;

	load_release();
	Assert(keylen >= SSTATE_CLASS_PREFIX);
	LWLockAcquire(&p->lock, LW_SHARED);
	slots = partition_slots(area, p);
	for (i = hash & p->mask; slots != NULL && slots[i].qid != 0; i = (i + 1) & p->mask)
	{
		Slot	   *s = &slots[i];
		const char *k;

		if (s->hash != hash || s->qid != qid || s->keylen < SSTATE_CLASS_PREFIX ||
			s->npanes == 0)
			continue;
		k = slot_key(area, s);
		if (memcmp(k, key, SSTATE_CLASS_PREFIX) == 0)
			cb(arg, qid, k, s->keylen, dsa_get_address(area, s->panes), s->npanes);
	}
	LWLockRelease(&p->lock);
}

/*
 * Call cb for every key of query qid (every query when qid is 0, read
 * caches not included), holding a partition lock shared: cb must copy what
 * it keeps and must not wait.
 */
void
sstate_store_scan(StreamStateStore *store, int32 qid, sstate_store_scan_cb cb, void *arg)
{
	dsa_area   *area = store->area;
	int			n;

	load_release();
	for (n = 0; n < PARTITIONS; n++)
	{
		Partition  *p = &store->hdr->parts[n];
		Slot	   *slots;
		uint32		i;

		LWLockAcquire(&p->lock, LW_SHARED);
		slots = partition_slots(area, p);
		for (i = 0; slots != NULL && i <= p->mask; i++)
		{
			Slot	   *s = &slots[i];

			prefetch_panes(area, slots, i, p->mask);
			if (s->qid == 0 || (qid == 0 ? s->qid < 0 : s->qid != qid) || s->npanes == 0)
				continue;
			cb(arg, s->qid, slot_key(area, s), s->keylen,
			   dsa_get_address(area, s->panes), s->npanes);
		}
		LWLockRelease(&p->lock);
	}
}

/*
 * Put one key with its panes (sorted, distinct, nonzero counts) into the
 * table: restoring a checkpoint.  Keeps the partition's lock (see
 * load_held) until sstate_store_load_end or any other call.  Worker only.
 */
StreamStateLoadResult
sstate_store_load(StreamStateStore *store, StreamStateQuery *q, const char *key,
				  uint32 keylen, const StreamStatePane *panes, int npanes)
{
	dsa_area   *area = store->area;
	uint32		hash = key_hash(q->def.id, q->def.key_classed, key, keylen);
	Partition  *p = partition_of(store, hash);
	Slot	   *s;
	dsa_pointer dp;

	if (load_held != &p->lock)
	{
		load_release();
		LWLockAcquire(&p->lock, LW_EXCLUSIVE);
		load_held = &p->lock;
	}
	if (partition_find(area, p, hash, q->def.id, key, keylen) != NULL)
		return SSL_DUPLICATE;
	dp = dsa_allocate_extended(area, sizeof(StreamStatePane) * npanes, DSA_ALLOC_NO_OOM);
	if (!DsaPointerIsValid(dp))
		return SSL_OUT_OF_MEMORY;
	s = new_key(area, p, q, hash, key, keylen);
	if (s == NULL)
	{
		dsa_free(area, dp);
		return SSL_OUT_OF_MEMORY;
	}
	memcpy(dsa_get_address(area, dp), panes, sizeof(StreamStatePane) * npanes);
	s->panes = dp;
	s->npanes = npanes;
	s->cap = npanes;
	s->epoch = 0;
	q->panes += npanes;
	q->bytes += (int64) npanes * sizeof(StreamStatePane);
	return SSL_OK;
}

/*
 * Before restoring a checkpoint of about nkeys keys: give every partition
 * the slot array it will end with.  Else each array doubles its way up from
 * MIN_CAPACITY, and the load writes about twice the final arrays' memory
 * (zeroing each new array, copying every slot into it), which is what a
 * restore spends most of its time on: fresh shared memory costs a page
 * fault per 4 kB on its first touch.  Keys spread over the partitions by
 * their hash, about nkeys / PARTITIONS each give or take a few times its
 * square root.  Each array is sized for 15/16 of that mean, never for more:
 * a partition the load would have left in a smaller array than a margin
 * above the mean asks for would then hold twice the memory, and a restore
 * that fitted before could run out of it.  The few partitions that get more
 * keys than 3/4 of their array grow as usual.  An array the area has no
 * room for is left as it is.  Worker only.
 */
void
sstate_store_presize(StreamStateStore *store, uint64 nkeys)
{
	uint64		per = nkeys / PARTITIONS;

	per -= per / 16;
	if (per == 0)
		return;					/* a few keys: leave them to the load */
	load_release();
	for (int n = 0; n < PARTITIONS; n++)
	{
		Partition  *p = &store->hdr->parts[n];
		uint64		cap;
		uint64		newcap = MIN_CAPACITY;

		LWLockAcquire(&p->lock, LW_EXCLUSIVE);
		cap = DsaPointerIsValid(p->slots) ? (uint64) p->mask + 1 : 0;
		while ((p->used + per) * 4 > newcap * 3)
			newcap *= 2;
		if (newcap > cap && newcap <= PG_UINT32_MAX / 2)
			(void) partition_resize(store->area, p, (uint32) newcap);
		LWLockRelease(&p->lock);
	}
}

/*
 * Give back the slot arrays of partitions that have no keys (after a
 * restore that failed, sstate_store_presize's).  Worker only.
 */
void
sstate_store_trim(StreamStateStore *store)
{
	load_release();
	for (int n = 0; n < PARTITIONS; n++)
	{
		Partition  *p = &store->hdr->parts[n];

		LWLockAcquire(&p->lock, LW_EXCLUSIVE);
		partition_shrink(store->area, p);
		LWLockRelease(&p->lock);
	}
}

/* The end of a load: release the partition it holds. */
void
sstate_store_load_end(void)
{
	load_release();
}

/*
 * A scanner's half of a snapshot: call cb for every entry not copied yet
 * for epoch (by the worker, or created after the snapshot began), and mark
 * it copied, in the partitions whose number modulo nparts is part (each of
 * nparts scanners takes its share).  Holds each partition exclusively while
 * it is scanned.  Stops early when *stop becomes true.
 */
void
sstate_store_snapshot(StreamStateStore *store, uint32 epoch, int part, int nparts,
					  sstate_store_scan_cb cb, void *arg, volatile sig_atomic_t *stop)
{
	dsa_area   *area = store->area;
	int			n;

	load_release();
	for (n = part; n < PARTITIONS && !*stop; n += nparts)
	{
		Partition  *p = &store->hdr->parts[n];
		Slot	   *slots;
		uint32		i;

		LWLockAcquire(&p->lock, LW_EXCLUSIVE);
		slots = partition_slots(area, p);
		for (i = 0; slots != NULL && i <= p->mask; i++)
		{
			Slot	   *s = &slots[i];

			prefetch_panes(area, slots, i, p->mask);
			if (s->qid <= 0 || s->epoch >= epoch)
				continue;
			s->epoch = epoch;
			if (s->npanes > 0)
				cb(arg, s->qid, slot_key(area, s), s->keylen,
				   dsa_get_address(area, s->panes), s->npanes);
		}
		LWLockRelease(&p->lock);
	}
}

/* ---------------------------------------------------------------------
 * Late groups (late_to)
 *
 * The groups of events that arrived after their window closed, of queries
 * with late_to, kept until a helper has inserted them into the late_to
 * table (emit.c) and trimmed then.  One list per query, in commit order:
 * each record a DSA chunk holding the commit's LSN and time, the group's
 * event time range, its count, key image and partial states.  Only the
 * worker changes the lists, under late_lock exclusively; readers copy what
 * they need under late_lock shared.  Records added while applying a commit
 * go into a journal, so that a commit that fails half-way (memory full)
 * takes them out again (values_undo).
 * ---------------------------------------------------------------------
 */
typedef struct LateRecord
{
	dsa_pointer next;
	XLogRecPtr	lsn;
	int64		commit_us;
	int64		from_us;
	int64		to_us;
	int64		count;
	uint32		keylen;
	uint32		valuelen;
	char		data[FLEXIBLE_ARRAY_MEMBER];	/* key, then value */
} LateRecord;

typedef struct LateAdded
{
	int			list;
	dsa_pointer rec;
	dsa_pointer prev_tail;
	XLogRecPtr	prev_last;
	Size		size;
} LateAdded;

static LateAdded *late_added = NULL;
static int	nlate_added = 0;
static int	late_added_cap = 0;

static LateList *
late_list(StoreHeader *hdr, int32 qid, bool create)
{
	LateList   *free_one = NULL;

	for (int i = 0; i < MAX_VALUE_QUERIES; i++)
	{
		if (hdr->late[i].qid == qid)
			return &hdr->late[i];
		if (hdr->late[i].qid == 0 && free_one == NULL)
			free_one = &hdr->late[i];
	}
	if (!create)
		return NULL;
	if (free_one == NULL)
		elog(ERROR, "stream_state: more than %d queries with late_to in one database",
			 MAX_VALUE_QUERIES);
	memset(free_one, 0, sizeof(LateList));
	free_one->head = free_one->tail = InvalidDsaPointer;
	free_one->qid = qid;
	return free_one;
}

/* Free l's records up to lsn upto (all: every one, and the list) */
static void
late_free_list(dsa_area *area, LateList *l, XLogRecPtr upto, bool all)
{
	while (DsaPointerIsValid(l->head))
	{
		LateRecord *r = dsa_get_address(area, l->head);
		dsa_pointer next = r->next;

		if (!all && r->lsn > upto)
			break;
		l->count--;
		l->bytes -= offsetof(LateRecord, data) + r->keylen + r->valuelen;
		dsa_free(area, l->head);
		l->head = next;
	}
	if (!DsaPointerIsValid(l->head))
	{
		l->tail = InvalidDsaPointer;
		l->count = 0;
		l->bytes = 0;
	}
	if (all)
		memset(l, 0, sizeof(LateList));
}

/*
 * Append a late group of query qid (worker only).  With journal, a failed
 * commit takes it out again; loads of checkpoints go without.  False when
 * memory is full (nothing changed).
 */
bool
sstate_store_late_add(StreamStateStore *store, int32 qid, const StreamStateLateGroup *g,
					  bool journal)
{
	dsa_area   *area = store->area;
	Size		size = offsetof(LateRecord, data) + g->keylen + g->valuelen;
	dsa_pointer dp;
	LateRecord *r;
	LateList   *l;

	load_release();
	dp = dsa_allocate_extended(area, size, DSA_ALLOC_NO_OOM);
	if (!DsaPointerIsValid(dp))
		return false;
	r = dsa_get_address(area, dp);
	r->next = InvalidDsaPointer;
	r->lsn = g->lsn;
	r->commit_us = g->commit_us;
	r->from_us = g->from_us;
	r->to_us = g->to_us;
	r->count = g->count;
	r->keylen = g->keylen;
	r->valuelen = g->valuelen;
	if (g->keylen > 0)
		memcpy(r->data, g->key, g->keylen);
	if (g->valuelen > 0)
		memcpy(r->data + g->keylen, g->value, g->valuelen);

	if (journal && nlate_added == late_added_cap)
	{
		int			cap = Max(16, late_added_cap * 2);

		late_added = late_added == NULL ?
			MemoryContextAlloc(TopMemoryContext, sizeof(LateAdded) * cap) :
			repalloc(late_added, sizeof(LateAdded) * cap);
		late_added_cap = cap;
	}

	LWLockAcquire(&store->hdr->late_lock, LW_EXCLUSIVE);
	l = late_list(store->hdr, qid, true);
	if (journal)
	{
		LateAdded  *a = &late_added[nlate_added++];

		a->list = l - store->hdr->late;
		a->rec = dp;
		a->prev_tail = l->tail;
		a->prev_last = l->last_lsn;
		a->size = size;
	}
	if (DsaPointerIsValid(l->tail))
		((LateRecord *) dsa_get_address(area, l->tail))->next = dp;
	else
		l->head = dp;
	l->tail = dp;
	l->count++;
	l->bytes += size;
	l->last_lsn = Max(l->last_lsn, g->lsn);
	if (!journal)
		l->done_lsn = l->last_lsn;	/* a load: whole commits */
	LWLockRelease(&store->hdr->late_lock);
	return true;
}

/*
 * The commit applied: its late groups stay, and readers may see them.  A
 * reader that saw part of a commit's groups would tell the helper to write
 * up to that commit, and the helper would never write the rest (TAP 033).
 */
static void
late_commit(StreamStateStore *store)
{
	if (nlate_added == 0)
		return;
	LWLockAcquire(&store->hdr->late_lock, LW_EXCLUSIVE);
	for (int i = 0; i < nlate_added; i++)
	{
		LateList   *l = &store->hdr->late[late_added[i].list];

		l->done_lsn = Max(l->done_lsn, l->last_lsn);
	}
	LWLockRelease(&store->hdr->late_lock);
	nlate_added = 0;
}

/* The commit failed: take its late groups out, newest first */
static void
late_undo(StreamStateStore *store)
{
	if (nlate_added == 0)
		return;
	LWLockAcquire(&store->hdr->late_lock, LW_EXCLUSIVE);
	for (int i = nlate_added - 1; i >= 0; i--)
	{
		LateAdded  *a = &late_added[i];
		LateList   *l = &store->hdr->late[a->list];

		Assert(l->tail == a->rec);
		l->tail = a->prev_tail;
		if (DsaPointerIsValid(a->prev_tail))
			((LateRecord *) dsa_get_address(store->area, a->prev_tail))->next = InvalidDsaPointer;
		else
			l->head = InvalidDsaPointer;
		l->count--;
		l->bytes -= a->size;
		l->last_lsn = a->prev_last;
		dsa_free(store->area, a->rec);
	}
	LWLockRelease(&store->hdr->late_lock);
	nlate_added = 0;
}

/* Free the late groups of query qid committed at or before upto (worker) */
void
sstate_store_late_trim(StreamStateStore *store, int32 qid, XLogRecPtr upto)
{
	LateList   *l;

	load_release();
	LWLockAcquire(&store->hdr->late_lock, LW_EXCLUSIVE);
	l = late_list(store->hdr, qid, false);
	if (l != NULL && DsaPointerIsValid(l->head))
		late_free_list(store->area, l, upto, false);
	LWLockRelease(&store->hdr->late_lock);
}

/* Free every late group of query qid, and its list (worker) */
void
sstate_store_late_drop(StreamStateStore *store, int32 qid)
{
	LateList   *l;

	load_release();
	LWLockAcquire(&store->hdr->late_lock, LW_EXCLUSIVE);
	l = late_list(store->hdr, qid, false);
	if (l != NULL)
		late_free_list(store->area, l, InvalidXLogRecPtr, true);
	LWLockRelease(&store->hdr->late_lock);
}

/*
 * How many late groups query qid holds, their bytes and the newest one's
 * commit LSN (InvalidXLogRecPtr: none).
 */
void
sstate_store_late_info(StreamStateStore *store, int32 qid, int64 *count, int64 *bytes,
					   XLogRecPtr *last)
{
	LateList   *l;

	load_release();
	*count = *bytes = 0;
	*last = InvalidXLogRecPtr;
	LWLockAcquire(&store->hdr->late_lock, LW_SHARED);
	l = late_list(store->hdr, qid, false);
	if (l != NULL && DsaPointerIsValid(l->head))
	{
		*count = l->count;
		*bytes = l->bytes;
		*last = l->last_lsn;
	}
	LWLockRelease(&store->hdr->late_lock);
}

/*
 * Every late group of query qid (0: of every query) committed after after
 * and at or before upto, oldest first, through cb; of a commit the worker
 * is still applying, none (LateList.done_lsn).  cb runs under the lock
 * and must not raise an ERROR (copy, then work on the copy).
 */
void
sstate_store_late_scan(StreamStateStore *store, int32 qid, XLogRecPtr after, XLogRecPtr upto,
					   sstate_store_late_cb cb, void *arg)
{
	load_release();
	LWLockAcquire(&store->hdr->late_lock, LW_SHARED);
	for (int i = 0; i < MAX_VALUE_QUERIES; i++)
	{
		LateList   *l = &store->hdr->late[i];
		dsa_pointer dp;

		if (l->qid == 0 || (qid != 0 && l->qid != qid))
			continue;
		for (dp = l->head; DsaPointerIsValid(dp);)
		{
			LateRecord *r = dsa_get_address(store->area, dp);
			StreamStateLateGroup g;

			dp = r->next;
			if (r->lsn <= after)
				continue;
			if (r->lsn > upto || r->lsn > l->done_lsn)
				break;
			g.lsn = r->lsn;
			g.commit_us = r->commit_us;
			g.from_us = r->from_us;
			g.to_us = r->to_us;
			g.count = r->count;
			g.keylen = r->keylen;
			g.key = r->data;
			g.valuelen = r->valuelen;
			g.value = r->data + r->keylen;
			cb(arg, l->qid, &g);
		}
	}
	LWLockRelease(&store->hdr->late_lock);
}
