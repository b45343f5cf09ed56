/*-------------------------------------------------------------------------
 *
 * rocks_cache.c
 *	  The read cache of rocksdb-backend queries: complete copies of the
 *	  panes of recently read keys, in shared memory, so that window_count
 *	  of a cached key is answered by the reading backend itself.
 *
 * Why.  A read of a rocksdb query otherwise asks the worker, which alone
 * has RocksDB open (rocks_request.c): two process wake-ups per read, which
 * on the development machine cost more than RocksDB's own lookup and held
 * point reads to a quarter of the memory backend's rate.
 *
 * Where.  The copies live in the memory backend's table (store_memory.c)
 * under the negated query id, so a hit costs what a memory-backend read
 * costs: one partition lock taken shared and one probe.  Snapshots and
 * whole-table scans pass over negative ids; a copy is never checkpointed.
 *
 * Exactness.  Only the worker writes the cache, and it keeps each copy
 * equal to RocksDB's state of that key:
 *	- a key is copied when the worker answers a read of it, with the live
 *	  panes RocksDB has, and only when the pending batch is empty: adds not
 *	  yet in the batch reach the copy when they go in (below);
 *	- every add that goes into a batch also goes to the copy
 *	  (flush_adds in rocks.c), before the batch is written and the round's
 *	  applied position is published, so a reader that waited for a commit
 *	  finds it in the copy as it would in RocksDB;
 *	- eviction (dead_below) removes the same panes from copies; anything
 *	  else that changes a query's state in RocksDB (drop, reset, adopting a
 *	  meta, restore, a failed write, a pause) drops the query's copies.
 * Readers use the cache of a query only while it is running.  Queries with
 * classed keys are not cached: a read of one merges every image of a class.
 * Nor are queries in SQL on the rocksdb backend: the cache holds counts
 * only, their panes hold values (partial states, rocks.c), and the one
 * read it serves, window_count, refuses them; their values never go
 * through flush_adds, and no read of them asks for a copy.
 *
 * Size.  stream_state.rocksdb_read_cache_size per database.  A full cache
 * drops every copy in one partition of the table (round robin) before it
 * takes a new key: about 1/128 of it, as good as random, for one walk of
 * one partition.  The cache shares stream_state.memory_limit with
 * memory-backend state, and gives way to it: a key is copied only while
 * memory-backend state and all caches use less than 3/4 of the limit, and
 * when a memory query cannot get memory, its worker drops its own cache
 * and asks the other databases' workers to drop theirs.
 *
 * IDENTIFICATION
 *	  src/rocks_cache.c
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "storage/lwlock.h"
#include "utils/memutils.h"

#include "rocks.h"

/* what one copied key costs, beyond its panes: its slot, a share of empty ones */
#define KEY_OVERHEAD	96

static StreamStateDb *cache_db = NULL;
static StreamStateStore *cache_table = NULL;

/*
 * Per cached query, the accounting the store keeps (keys, panes, bytes),
 * with def.id the negated query id; def.id 0: unused.  Worker-local.
 */
static StreamStateQuery *cache_qs = NULL;
static StreamStateQuery *cache_last = NULL; /* the one found last */
static int	cache_nactive = 0;	/* entries with keys */
static int	next_partition = 0;
static uint32 shrink_seen = 0;

void
sstate_rdb_cache_init(StreamStateDb *db, StreamStateStore *table)
{
	cache_db = db;
	cache_table = table;
	if (cache_qs == NULL)
		cache_qs = MemoryContextAllocZero(TopMemoryContext,
										  sizeof(StreamStateQuery) * sstate_shared->max_queries);
	else
		memset(cache_qs, 0, sizeof(StreamStateQuery) * sstate_shared->max_queries);
	cache_nactive = 0;
	shrink_seen = pg_atomic_read_u32(&sstate_shared->cache_shrinks);
	db->rdb_cache_keys = 0;
	db->rdb_cache_bytes = 0;
}

static StreamStateQuery *
cache_query(int32 qid, bool create)
{
	StreamStateQuery *free_one = NULL;

	if (cache_last != NULL && cache_last->def.id == -qid)
		return cache_last;
	if (cache_qs == NULL)
		return NULL;
	for (int i = 0; i < sstate_shared->max_queries; i++)
	{
		if (cache_qs[i].def.id == -qid)
			return cache_last = &cache_qs[i];
		if (cache_qs[i].def.id == 0 && free_one == NULL)
			free_one = &cache_qs[i];
	}
	if (!create || free_one == NULL)
		return NULL;
	memset(free_one, 0, sizeof(StreamStateQuery));
	free_one->def.id = -qid;
	free_one->def.backend = SSB_MEMORY;
	return cache_last = free_one;
}

/* the store's callback: the accounting of a cached key's query */
static StreamStateQuery *
owner_of(int32 negated)
{
	return cache_query(-negated, false);
}

/* Publish the totals (for monitoring) and forget queries left empty. */
static void
cache_account(void)
{
	int64		keys = 0;
	int64		bytes = 0;

	cache_nactive = 0;
	for (int i = 0; i < sstate_shared->max_queries; i++)
	{
		StreamStateQuery *c = &cache_qs[i];

		if (c->def.id == 0)
			continue;
		if (c->keys == 0)
		{
			c->def.id = 0;
			continue;
		}
		keys += c->keys;
		bytes += c->bytes;
		cache_nactive++;
	}
	cache_db->rdb_cache_keys = keys;
	cache_db->rdb_cache_bytes = bytes;
}

bool
sstate_rdb_cache_active(void)
{
	return cache_nactive > 0;
}

bool
sstate_rdb_cache_has(int32 qid)
{
	StreamStateQuery *c = cache_query(qid, false);

	return c != NULL && c->keys > 0;
}

void
sstate_rdb_cache_add(int32 qid, const char *key, uint32 keylen, int64 pane, int64 count)
{
	StreamStateQuery *c = cache_query(qid, false);

	if (c == NULL || c->keys == 0)
		return;
	if (sstate_store_add_cached(cache_table, c, key, keylen, pane, count) && c->keys == 0)
		cache_account();
}

void
sstate_rdb_cache_evict(int32 qid, int64 dead_below)
{
	StreamStateQuery *c = cache_query(qid, false);

	if (c == NULL || c->keys == 0)
		return;
	sstate_store_evict(cache_table, c, dead_below);
	cache_account();
}

/* Drop the copies of query qid; of every query when qid is 0. */
void
sstate_rdb_cache_drop(int32 qid)
{
	if (cache_qs == NULL || cache_nactive == 0)
		return;
	for (int i = 0; i < sstate_shared->max_queries; i++)
	{
		StreamStateQuery *c = &cache_qs[i];

		if (c->def.id == 0 || (qid != 0 && c->def.id != -qid))
			continue;
		if (c->keys > 0)
			sstate_store_drop_query(cache_table, c);
		c->def.id = 0;
	}
	cache_account();
}

/*
 * Memory-backend state of this database needs the room: drop this
 * database's cache, and ask the other databases' workers to drop theirs.
 * True when there was anything to drop here (an add that failed is worth
 * trying again).
 */
bool
sstate_rdb_cache_shrink(void)
{
	bool		had = cache_nactive > 0;

	sstate_rdb_cache_drop(0);
	shrink_seen = pg_atomic_add_fetch_u32(&sstate_shared->cache_shrinks, 1);
	return had;
}

/*
 * Called from the worker's loop: has another database's worker asked for
 * room, or has stream_state.rocksdb_read_cache_size shrunk (to 0: off)?
 */
void
sstate_rdb_cache_poll(void)
{
	uint32		now = pg_atomic_read_u32(&sstate_shared->cache_shrinks);
	int64		limit = (int64) sstate_rocksdb_read_cache_size_kb * 1024;
	int			walks = 0;

	if (now != shrink_seen)
	{
		shrink_seen = now;
		sstate_rdb_cache_drop(0);
	}
	if (cache_db == NULL || cache_db->rdb_cache_bytes <= limit)
		return;
	if (limit == 0)
		sstate_rdb_cache_drop(0);
	while (cache_db->rdb_cache_bytes > limit && walks++ < sstate_store_partitions())
	{
		sstate_store_drop_cached_partition(cache_table, next_partition++, owner_of);
		cache_account();
	}
}

/* Bytes of memory-backend state and of every read cache, all databases. */
static int64
area_bytes(void)
{
	int64		total = 0;

	for (int d = 0; d < sstate_shared->max_databases; d++)
	{
		StreamStateDb *db = &sstate_shared->dbs[d];
		StreamStateQuery *qs;

		if (db->dboid == InvalidOid)
			continue;
		total += db->rdb_cache_bytes;
		qs = sstate_db_queries(db);
		for (int i = 0; i < sstate_shared->max_queries; i++)
			if (qs[i].status != SSQ_FREE && qs[i].def.backend == SSB_MEMORY)
				total += qs[i].bytes;
	}
	return total;
}

/* Copy one key's live panes into the cache of query q, if there is room. */
static void
cache_fill(StreamStateQuery *q, const char *key, uint32 keylen,
		   const StreamStatePane *panes, int npanes)
{
	int64		limit = (int64) sstate_rocksdb_read_cache_size_kb * 1024;
	int64		need = KEY_OVERHEAD + keylen + (int64) npanes * sizeof(StreamStatePane);
	StreamStateQuery *c;
	int			walks = 0;

	while (cache_db->rdb_cache_bytes > 0 && cache_db->rdb_cache_bytes + need > limit &&
		   walks++ < sstate_store_partitions())
	{
		sstate_store_drop_cached_partition(cache_table, next_partition++, owner_of);
		cache_account();
	}
	if (cache_db->rdb_cache_bytes + need > limit ||
		area_bytes() + need > (int64) sstate_memory_limit_kb * 1024 / 4 * 3)
		return;
	c = cache_query(q->def.id, true);
	if (c == NULL)
		return;
	(void) sstate_store_load(cache_table, c, key, keylen, panes, npanes);
	sstate_store_load_end();
	cache_account();
}

/* For rocksdb_stats: query qid's cached keys and their bytes. */
void
sstate_rdb_cache_query_stats(int32 qid, int64 *keys, int64 *bytes)
{
	StreamStateQuery *c = cache_query(qid, false);

	*keys = c != NULL ? c->keys : 0;
	*bytes = c != NULL ? c->bytes : 0;
}

/*
 * The worker answers a read of one key of a rocksdb query (panes [lo, hi)):
 * from RocksDB, copying the key into the cache when it may.
 */
int64
sstate_rdb_cache_read(StreamStateDb *db, const StreamStateQueryDef *def,
					  const char *key, uint32 keylen, int64 lo, int64 hi)
{
	StreamStateQuery *qs = sstate_db_queries(db);
	StreamStateQuery *q = NULL;
	StreamStatePane *panes;
	int			npanes;
	int64		sum = 0;

	for (int i = 0; i < sstate_shared->max_queries; i++)
		if (qs[i].status != SSQ_FREE && qs[i].def.id == def->id)
			q = &qs[i];
	if (sstate_rocksdb_read_cache_size_kb <= 0 || cache_table == NULL || q == NULL ||
		q->status != SSQ_RUNNING || q->def.backend != SSB_ROCKSDB ||
		q->def.key_classed || !sstate_rdb_batch_empty())
		return sstate_rdb_sum(def, key, keylen, lo, hi);

	panes = sstate_rdb_key_panes(def, key, keylen, q->dead_below, &npanes);
	for (int i = 0; i < npanes; i++)
		if (panes[i].pane >= lo && panes[i].pane < hi)
			sum += panes[i].count;
	if (npanes > 0)
		cache_fill(q, key, keylen, panes, npanes);
	pfree(panes);
	return sum;
}
