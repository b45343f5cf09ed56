/*-------------------------------------------------------------------------
 *
 * rocks.c
 *	  The rocksdb backend, worker side: one embedded RocksDB per database
 *	  under $PGDATA/stream_state/<database oid>/rocksdb, opened only by that
 *	  database's worker.
 *
 * Keys (all integers big-endian, so that byte order is numeric order):
 *
 *	state	query id (4), [class prefix (4), classed keys only], key image
 *			length (4), key image, pane (8, sign bit flipped)
 *	meta	0 (4), 'm', query id (4)
 *	late	0 (4), 'l', query id (4), commit LSN (8), sequence (8)
 *
 * so the panes of one key are one contiguous range, in pane order, and a
 * query's state is the range of its id.  Meta and late keys live under id
 * 0, which no query has: the compaction filter, the scans, the size
 * estimates and drop_query's DeleteRange of a query's id never see them.  The value of a state key is an
 * int64 count; the worker writes only Merge operands (a count to add), and
 * the merge operator adds them up.  A meta key holds StreamStateRdbMeta.
 *
 * Queries in SQL.  The value of a (key, pane) of a query in SQL is a tag
 * byte (VALUE_TAG) and the query's aggregates' partial states, serialised
 * (cq_worker.c).  Combining them calls PostgreSQL's functions, which must
 * not run on RocksDB's threads, so there is no merge operator for them:
 * the worker reads, combines and Puts (sstate_rdb_merge_value).  What it
 * read or wrote is kept in a worker-local table of values (key -> value):
 * the round's dirty values, which go into the batch sorted at the round's
 * end, and clean ones of earlier rounds as a write-through cache, so a key
 * is read from RocksDB at most once while it stays there.  A Get never
 * sees the pending batch, so a query whose state the pending batch deletes
 * (drop, reset, a move) is marked: its keys read as absent until the batch
 * is written.  A commit that fails mid-way (another query's memory full)
 * puts the values it replaced back from a journal
 * (sstate_rdb_values_undo), as the memory store does; a batch that could
 * not be written drops the whole table.  The tag keeps every value from
 * looking like a count of 0 to the compaction filter.
 *
 * Durability.  The worker collects a round of applied commits in one
 * WriteBatch and writes it, together with the meta of every rocksdb query
 * (its applied and restart positions, watermark and counters), before it
 * publishes the round's applied position; so RocksDB's state and the
 * position it covers change together.  The batch is written without
 * RocksDB's own WAL: what RocksDB loses in a crash (memtables not yet
 * flushed) is the WAL PostgreSQL keeps for us anyway, and every checkpoint
 * flushes RocksDB before the slot may move (sstate_rdb_flush), so the slot
 * never passes what RocksDB has made durable.  After a restart the worker
 * reads each query's meta and re-applies only the commits at or after its
 * applied position (StreamStateQuery.skip_below).
 *
 * Expiry.  Panes of closed windows are never read again; a compaction
 * filter drops them (and counts that add up to zero) as RocksDB compacts.
 * It runs on RocksDB's threads and so reads only a plain C array of
 * (query id, dead_below) that the worker updates with atomic stores.
 *
 * Retention.  A walk of the query's range drops keys whose newest pane is
 * older than the idle horizon (sstate_rdb_drop_idle, called by evict_to
 * as often as the memory store's walk: each pane, or eighth of the
 * retention, of watermark progress).  RocksDB alone does not say what a key
 * holds: the table of values may have a newer pane of it that the pending
 * batch has (or will get), or none that RocksDB still shows.  So the walk
 * merges the range with the table's entries of the query (walk_values),
 * the table's winning; and a dropped key's pane keys become table entries
 * without a value, dirty: the round's end Deletes them after anything the
 * batch put earlier, a Get in the same round reads them as absent (not
 * RocksDB's stale value), and a later merge starts the key afresh.
 *
 * Session windows.  A key's sessions are one value under pane
 * SSTATE_RDB_SESSIONS_PANE: a list, sorted by first event, of (first
 * event, the memory store's session value: last event, then the states).
 * A group merges into the key's list as sstate_store_merge_session merges
 * into its pane array, through the table of values (read once, combined,
 * Put at the round's end, journalled for a commit that fails), so a merge
 * never has to find a key's sessions among RocksDB's keys and the batch's.
 * Ended sessions leave the lists in a walk like retention's
 * (sstate_rdb_evict_sessions).  Scans and iterations give each session as
 * a pane with its value, so reads, export and set_backend to memory share
 * the memory path's code; set_backend to rocksdb packs each key's sessions
 * (sstate_rdb_put_sessions).  The cost: a merge rewrites the key's whole
 * list, which holds every session not yet ended (lateness keeps them).
 *
 * Late groups (late_to, 0.7.0).  The memory store's list of a query's late
 * groups (store_memory.c) is what readers and the emit helper use, for
 * rocksdb queries too; but such a query restarts from RocksDB's own
 * position, past the checkpoint file that carries the lists of memory
 * queries.  So each late group of a rocksdb query also goes into the
 * batch, under a late key, with the commit's state and the meta that
 * covers it (sstate_rdb_late_put); a commit that fails mid-way deletes its
 * groups again in the batch (a journal, as for values); a trim deletes the
 * range up to what the helper wrote; and whenever a query takes its
 * position from RocksDB's meta (start, restore_checkpoint, a replayed move
 * in, RocksDB writable again) its list is loaded from here
 * (sstate_rdb_late_load).  The sequence orders a commit's groups; it is a
 * counter of the worker's lifetime, which is enough: a commit's groups are
 * all put within one lifetime, and a move in deletes the query's late keys
 * before putting its list again.
 *
 * Read cache.  Every add that goes into a batch also goes to the read
 * cache of its query (rocks_cache.c) when that holds the key, and every
 * other change of a query's state (drop, reset, restore, a failed write)
 * drops the query's cache: the cache holds, for the keys it has, exactly
 * what RocksDB does.
 *
 * Threads.  RocksDB starts its threads when the database is opened; every
 * signal is blocked around rocksdb_open so that the threads inherit a mask
 * that keeps PostgreSQL's handlers off them.  The callbacks we give
 * RocksDB (merge, compaction filter) are plain C: no palloc, no ereport.
 *
 * IDENTIFICATION
 *	  src/rocks.c
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <rocksdb/c.h>

#include "common/file_perm.h"
#include "common/hashfn.h"
#include "port/pg_bswap.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "replication/slot.h"
#include "storage/copydir.h"
#include "storage/fd.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "rocks.h"
#include "window.h"

#define SIGN_FLIP		UINT64CONST(0x8000000000000000)
#define META_KEY_LEN	9
#define LATE_KEY_LEN	25

static rocksdb_t *rdb = NULL;
static rocksdb_options_t *rdb_options = NULL;
static rocksdb_writeoptions_t *rdb_wopts = NULL;
static rocksdb_readoptions_t *rdb_ropts = NULL;
static rocksdb_writebatch_t *rdb_batch = NULL;
static rocksdb_cache_t *rdb_cache = NULL;
static rocksdb_block_based_table_options_t *rdb_table_opts = NULL;
static rocksdb_mergeoperator_t *rdb_merge = NULL;
static rocksdb_compactionfilter_t *rdb_filter = NULL;
static rocksdb_filterpolicy_t *rdb_bloom = NULL;
static bool rdb_pending = false;

static void rdb_read_error(char *err) pg_attribute_noreturn();

/* ERROR for a RocksDB read that failed with err (freed here) */
static void
rdb_read_error(char *err)
{
	char	   *msg = pstrdup(err);

	rocksdb_free(err);
	ereport(ERROR,
			(errcode(ERRCODE_IO_ERROR),
			 errmsg("stream_state: could not read RocksDB: %s", msg)));
}

/*
 * Adds of the current round, written to the batch sorted by key (and equal
 * keys summed) before anything else goes into it, and at the round's end.
 * A memtable is a skip list: inserting keys in order reuses the last
 * insert's position, where keys in hash order (as commits bring them) cost
 * a search of the list each, with a cache miss on every level.
 */
typedef struct PendingAdd
{
	uint64		k0;				/* key bytes 0..7, big-endian: sort hint */
	uint64		k1;				/* key bytes 8..15 */
	uint32		off;			/* the key in pending_keys */
	uint32		len;
	int64		count;
} PendingAdd;

static PendingAdd *pending = NULL;
static Size pending_n = 0;
static Size pending_cap = 0;
static char *pending_keys = NULL;
static Size pending_keys_len = 0;
static Size pending_keys_cap = 0;

static inline int
pending_cmp(const PendingAdd *a, const PendingAdd *b)
{
	if (a->k0 != b->k0)
		return a->k0 < b->k0 ? -1 : 1;
	if (a->k1 != b->k1)
		return a->k1 < b->k1 ? -1 : 1;
	{
		uint32		la = a->len,
					lb = b->len;
		int			c;

		if (la <= 16 || lb <= 16)
			return (la > lb) - (la < lb);
		c = memcmp(pending_keys + a->off + 16, pending_keys + b->off + 16,
				   Min(la, lb) - 16);
		if (c != 0)
			return c;
		return (la > lb) - (la < lb);
	}
}

#define ST_SORT sort_pending
#define ST_ELEMENT_TYPE PendingAdd
#define ST_COMPARE(a, b) pending_cmp(a, b)
#define ST_SCOPE static
#define ST_DECLARE
#define ST_DEFINE
#include "lib/sort_template.h"

/*
 * dead_below per query for the compaction filter: an open-addressing table
 * of 2 * max_queries entries, written by the worker only.  A query that
 * finds no entry (or a collision) is not filtered: its dead panes stay until
 * a later compaction, which costs space, never correctness.
 */
typedef struct DeadEntry
{
	int32		qid;
	int64		dead_below;
} DeadEntry;

static DeadEntry *dead_table = NULL;
static int	dead_size = 0;

/*
 * Values of queries in SQL (see the file header): raw RocksDB key -> the
 * value without its tag.  Worker-local, in value_cxt.
 */
#define VALUE_TAG			'v'
#define VALUE_CACHE_BYTES	(64 * 1024 * 1024)	/* clean values kept past a
												 * round */

typedef struct ValueKey
{
	const char *data;
	uint32		len;
} ValueKey;

typedef struct ValueEntry
{
	ValueKey	key;			/* hash key: the raw RocksDB key */
	int32		qid;
	char	   *value;			/* NULL: no value (absent in RocksDB) */
	uint32		len;
	bool		dirty;			/* not in the pending batch yet */
} ValueEntry;

typedef struct ValueUndo
{
	ValueEntry *e;
	char	   *value;
	uint32		len;
	bool		dirty;
} ValueUndo;

static HTAB *values = NULL;
static MemoryContext value_cxt = NULL;
static Size values_bytes = 0;
static ValueUndo *vjournal = NULL;
static int	nvjournal = 0;
static int	vjournal_cap = 0;
static ValueEntry **dirty = NULL;	/* the dirty entries, each once */
static int	ndirty = 0;
static int	dirty_cap = 0;
static int32 *deleted_qids = NULL;	/* state deleted by the pending batch */
static int	ndeleted_qids = 0;

static void values_reset(void);
static void values_forget_query(int32 qid);
static void flush_values(void);

/* Late groups (see the file header): worker-local */
static StreamStateStore *late_store = NULL;
static uint64 late_seq = 0;
static char *late_journal = NULL;	/* keys put by the commit being applied */
static int	nlate_journal = 0;
static int	late_journal_cap = 0;

static void iterate_db(rocksdb_t *db, const StreamStateQueryDef *def, int64 dead_below,
					   sstate_store_scan_cb cb, void *arg);

/* ---------------------------------------------------------------------
 * Encoding
 * ---------------------------------------------------------------------
 */

static inline void
put_be32(char *p, uint32 v)
{
	p[0] = (char) (v >> 24);
	p[1] = (char) (v >> 16);
	p[2] = (char) (v >> 8);
	p[3] = (char) v;
}

static inline uint32
get_be32(const char *p)
{
	const unsigned char *u = (const unsigned char *) p;

	return ((uint32) u[0] << 24) | ((uint32) u[1] << 16) | ((uint32) u[2] << 8) | u[3];
}

static inline void
put_pane(char *p, int64 pane)
{
	uint64		v = ((uint64) pane) ^ SIGN_FLIP;

	for (int i = 7; i >= 0; i--)
	{
		p[i] = (char) (v & 0xff);
		v >>= 8;
	}
}

static inline int64
get_pane(const char *p)
{
	const unsigned char *u = (const unsigned char *) p;
	uint64		v = 0;

	for (int i = 0; i < 8; i++)
		v = (v << 8) | u[i];
	return (int64) (v ^ SIGN_FLIP);
}


/*
 * The key of (query, image) without the pane into buf; returns its length.
 * buf must hold key_prefix_len(def, keylen) + 8 bytes.
 */
static inline Size
key_prefix_len(const StreamStateQueryDef *def, uint32 keylen)
{
	return 4 + (def->key_classed ? SSTATE_CLASS_PREFIX : 0) + 4 + keylen;
}

static Size
put_key_prefix(char *buf, const StreamStateQueryDef *def, const char *key, uint32 keylen)
{
	char	   *p = buf;

	put_be32(p, (uint32) def->id);
	p += 4;
	if (def->key_classed)
	{
		/* classed images always start with the class prefix */
		if (keylen >= SSTATE_CLASS_PREFIX)
			memcpy(p, key, SSTATE_CLASS_PREFIX);
		else
			memset(p, 0, SSTATE_CLASS_PREFIX);
		p += SSTATE_CLASS_PREFIX;
	}
	put_be32(p, keylen);
	p += 4;
	memcpy(p, key, keylen);
	p += keylen;
	return p - buf;
}

static void
meta_key(char *buf, int32 qid)
{
	put_be32(buf, 0);
	buf[4] = 'm';
	put_be32(buf + 5, (uint32) qid);
}

static inline void
put_be64(char *p, uint64 v)
{
	put_be32(p, (uint32) (v >> 32));
	put_be32(p + 4, (uint32) v);
}

static inline uint64
get_be64(const char *p)
{
	return ((uint64) get_be32(p) << 32) | get_be32(p + 4);
}

/* The late key of (query, commit, sequence); its first 9 bytes: the query's */
static void
late_key(char *buf, int32 qid, XLogRecPtr lsn, uint64 seq)
{
	put_be32(buf, 0);
	buf[4] = 'l';
	put_be32(buf + 5, (uint32) qid);
	put_be64(buf + 9, lsn);
	put_be64(buf + 17, seq);
}

/* ---------------------------------------------------------------------
 * Callbacks run on RocksDB's threads: plain C only
 * ---------------------------------------------------------------------
 */

static inline int64
value_count(const char *v, size_t len)
{
	int64		c;

	if (len != sizeof(int64))
		return 0;
	memcpy(&c, v, sizeof(c));
	return c;
}

static char *
merge_full(void *state, const char *key, size_t key_length,
		   const char *existing, size_t existing_length,
		   const char *const *operands, const size_t *operand_lengths, int n,
		   unsigned char *success, size_t *new_length)
{
	int64		sum = existing ? value_count(existing, existing_length) : 0;
	char	   *result;

	for (int i = 0; i < n; i++)
		sum += value_count(operands[i], operand_lengths[i]);
	result = malloc(sizeof(int64));
	if (result == NULL)
	{
		*success = 0;
		return NULL;
	}
	memcpy(result, &sum, sizeof(sum));
	*new_length = sizeof(int64);
	*success = 1;
	return result;
}

static char *
merge_partial(void *state, const char *key, size_t key_length,
			  const char *const *operands, const size_t *operand_lengths, int n,
			  unsigned char *success, size_t *new_length)
{
	return merge_full(state, key, key_length, NULL, 0, operands, operand_lengths, n,
					  success, new_length);
}

static void
merge_delete(void *state, const char *value, size_t value_length)
{
	free((void *) value);
}

/* RocksDB calls the destructor of a callback's state unconditionally */
static void
no_state(void *state)
{
}

static const char *
merge_name(void *state)
{
	return "stream_state.int64add";
}

static unsigned char
filter_drop(void *state, int level, const char *key, size_t key_length,
			const char *value, size_t value_length, char **new_value,
			size_t *new_value_length, unsigned char *value_changed)
{
	uint32		qid;
	int64		pane;
	int			h;
	DeadEntry  *e;

	*value_changed = 0;
	if (key_length < 4 + 4 + 8)
		return 0;
	qid = get_be32(key);
	if (qid == 0)
		return 0;				/* meta */
	if (value_length == sizeof(int64) && value_count(value, value_length) == 0)
		return 1;
	if (dead_table == NULL)
		return 0;
	pane = get_pane(key + key_length - 8);
	h = (int) (qid % (uint32) dead_size);
	e = &dead_table[h];
	if ((uint32) __atomic_load_n(&e->qid, __ATOMIC_ACQUIRE) != qid)
		return 0;
	return pane < __atomic_load_n(&e->dead_below, __ATOMIC_ACQUIRE) ? 1 : 0;
}

static const char *
filter_name(void *state)
{
	return "stream_state.expiry";
}

/* ---------------------------------------------------------------------
 * Opening and closing
 * ---------------------------------------------------------------------
 */

static void
rdb_path(Oid dboid, char *buf)
{
	snprintf(buf, MAXPGPATH, "stream_state/%u/rocksdb", dboid);
}

/* Does directory path hold a RocksDB MANIFEST (a database, if damaged)? */
static bool
has_manifest(const char *path)
{
	DIR		   *d = AllocateDir(path);
	struct dirent *de;
	bool		found = false;

	if (d == NULL)
		return false;
	while ((de = ReadDirExtended(d, path, LOG)) != NULL)
		if (strncmp(de->d_name, "MANIFEST-", 9) == 0)
			found = true;
	FreeDir(d);
	return found;
}

bool
sstate_rdb_is_open(void)
{
	return rdb != NULL;
}

static void
free_options(void)
{
	if (rdb_options)
		rocksdb_options_destroy(rdb_options);
	if (rdb_table_opts)
		rocksdb_block_based_options_destroy(rdb_table_opts);
	if (rdb_cache)
		rocksdb_cache_destroy(rdb_cache);
	if (rdb_wopts)
		rocksdb_writeoptions_destroy(rdb_wopts);
	if (rdb_ropts)
		rocksdb_readoptions_destroy(rdb_ropts);
	if (rdb_batch)
		rocksdb_writebatch_destroy(rdb_batch);
	rdb_options = NULL;
	rdb_table_opts = NULL;
	rdb_cache = NULL;
	rdb_wopts = NULL;
	rdb_ropts = NULL;
	rdb_batch = NULL;
	/* the options own the merge operator and the bloom filter, not this */
	if (rdb_filter)
		rocksdb_compactionfilter_destroy(rdb_filter);
	rdb_merge = NULL;
	rdb_filter = NULL;
	rdb_bloom = NULL;
}

/*
 * Open (creating it if needed) this database's RocksDB.  On failure returns
 * false with *error set (palloc'd); nothing is left open.
 */
bool
sstate_rdb_open(Oid dboid, char **error)
{
	char		path[MAXPGPATH];
	char		parent[MAXPGPATH];
	char	   *err = NULL;
	sigset_t	all,
				old;

	if (rdb != NULL)
		return true;

	snprintf(parent, sizeof(parent), "stream_state/%u", dboid);
	if (MakePGDirectory("stream_state") < 0 && errno != EEXIST)
	{
		*error = psprintf("could not create directory \"stream_state\": %m");
		return false;
	}
	if (MakePGDirectory(parent) < 0 && errno != EEXIST)
	{
		*error = psprintf("could not create directory \"%s\": %m", parent);
		return false;
	}
	rdb_path(dboid, path);

	if (dead_table == NULL)
	{
		dead_size = 2 * Max(sstate_max_queries, 1);
		dead_table = MemoryContextAllocZero(TopMemoryContext, sizeof(DeadEntry) * dead_size);
	}

	rdb_options = rocksdb_options_create();
	/* a RocksDB that lost its CURRENT file is damaged, not new */
	rocksdb_options_set_create_if_missing(rdb_options, !has_manifest(path));
	rocksdb_options_set_paranoid_checks(rdb_options, 1);
	rocksdb_options_set_write_buffer_size(rdb_options,
										  (size_t) sstate_rocksdb_write_buffer_size_kb * 1024);
	rocksdb_options_set_max_write_buffer_number(rdb_options, 2);
	rocksdb_options_set_max_background_jobs(rdb_options, 2);
	rocksdb_options_set_compression(rdb_options, rocksdb_lz4_compression);
	rocksdb_options_set_bottommost_compression(rdb_options, rocksdb_zstd_compression);
	rocksdb_options_set_level_compaction_dynamic_level_bytes(rdb_options, 1);
	rocksdb_options_set_max_open_files(rdb_options, 256);
	rocksdb_options_set_info_log_level(rdb_options, 2); /* WARN */
	rocksdb_options_set_keep_log_file_num(rdb_options, 2);

	rdb_cache = rocksdb_cache_create_lru((size_t) sstate_rocksdb_cache_size_kb * 1024);
	rdb_table_opts = rocksdb_block_based_options_create();
	rocksdb_block_based_options_set_block_cache(rdb_table_opts, rdb_cache);
	rocksdb_block_based_options_set_cache_index_and_filter_blocks(rdb_table_opts, 1);
	rocksdb_block_based_options_set_pin_l0_filter_and_index_blocks_in_cache(rdb_table_opts, 1);
	rdb_bloom = rocksdb_filterpolicy_create_bloom_full(10);
	rocksdb_block_based_options_set_filter_policy(rdb_table_opts, rdb_bloom);
	rocksdb_options_set_block_based_table_factory(rdb_options, rdb_table_opts);

	rdb_merge = rocksdb_mergeoperator_create(NULL, no_state, merge_full, merge_partial,
											 merge_delete, merge_name);
	rocksdb_options_set_merge_operator(rdb_options, rdb_merge);
	rdb_filter = rocksdb_compactionfilter_create(NULL, no_state, filter_drop, filter_name);
	rocksdb_options_set_compaction_filter(rdb_options, rdb_filter);

	rdb_wopts = rocksdb_writeoptions_create();
	rocksdb_writeoptions_disable_WAL(rdb_wopts, 1);
	rdb_ropts = rocksdb_readoptions_create();
	rdb_batch = rocksdb_writebatch_create();
	rdb_pending = false;

	/* RocksDB's threads start here: they must not take our signals */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rdb = rocksdb_open(rdb_options, path, &err);
	pthread_sigmask(SIG_SETMASK, &old, NULL);

	if (rdb == NULL)
	{
		*error = psprintf("could not open RocksDB at \"%s\": %s", path, err ? err : "unknown error");
		if (err)
			rocksdb_free(err);
		free_options();
		return false;
	}
	return true;
}

/*
 * After a configuration reload: stream_state.rocksdb_cache_size resizes the
 * open database's block cache at once (RocksDB evicts down to a smaller
 * capacity as blocks are released).  rocksdb_write_buffer_size is read at
 * the next open.
 */
void
sstate_rdb_reload(void)
{
	size_t		want = (size_t) sstate_rocksdb_cache_size_kb * 1024;

	if (rdb == NULL || rdb_cache == NULL || rocksdb_cache_get_capacity(rdb_cache) == want)
		return;
	rocksdb_cache_set_capacity(rdb_cache, want);
	ereport(LOG,
			(errmsg("stream_state: the RocksDB block cache is now %zu kB", want / 1024)));
}

/*
 * Scan snapshots.  A scan is answered a page at a time (rocks_request.c),
 * and the worker applies rounds between the pages: every page of one scan
 * reads the RocksDB snapshot its first page took, so that the scan shows
 * the state between two rounds, so between two commits, never parts of
 * several (TAP 033).  One per request slot; released by the scan's last
 * page, by the slot's next scan, after SCAN_SNAPSHOT_IDLE_MS unused (a
 * reader that gave up half-way), or when the database closes.
 */
#define SCAN_SNAPSHOT_IDLE_MS	60000

typedef struct ScanSnapshot
{
	const rocksdb_snapshot_t *snap;
	TimestampTz used;
} ScanSnapshot;

static ScanSnapshot *scan_snaps = NULL;
static int	nscan_snaps = 0;

void
sstate_rdb_scan_snapshot_release(int slot)
{
	if (slot < nscan_snaps && scan_snaps[slot].snap != NULL)
	{
		rocksdb_release_snapshot(rdb, scan_snaps[slot].snap);
		scan_snaps[slot].snap = NULL;
	}
}

/*
 * The snapshot of the scan of request slot slot (of nslots): a new one for
 * its first page, else the one the first page took; NULL if that is gone
 * (the database was closed and opened again since).
 */
const void *
sstate_rdb_scan_snapshot(int slot, int nslots, bool first)
{
	if (scan_snaps == NULL)
	{
		scan_snaps = MemoryContextAllocZero(TopMemoryContext, sizeof(ScanSnapshot) * nslots);
		nscan_snaps = nslots;
	}
	Assert(slot < nscan_snaps);
	if (first)
	{
		sstate_rdb_scan_snapshot_release(slot);
		scan_snaps[slot].snap = rocksdb_create_snapshot(rdb);
	}
	scan_snaps[slot].used = GetCurrentTimestamp();
	return scan_snaps[slot].snap;
}

/* Release the snapshots of scans given up (or all of them) */
void
sstate_rdb_scan_snapshots_expire(bool all)
{
	TimestampTz old = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), -SCAN_SNAPSHOT_IDLE_MS);

	for (int i = 0; i < nscan_snaps; i++)
		if (scan_snaps[i].snap != NULL && (all || scan_snaps[i].used < old))
			sstate_rdb_scan_snapshot_release(i);
}

/* Close the database; pending writes are dropped. */
void
sstate_rdb_close(void)
{
	sstate_rdb_cache_drop(0);
	if (rdb == NULL)
		return;
	sstate_rdb_scan_snapshots_expire(true);
	rocksdb_close(rdb);
	rdb = NULL;
	free_options();
	pending_n = 0;
	pending_keys_len = 0;
	rdb_pending = false;
	values_reset();
}

/* Close it if open and remove this database's RocksDB directory. */
void
sstate_rdb_remove(Oid dboid)
{
	char		path[MAXPGPATH];
	struct stat st;

	sstate_rdb_close();
	rdb_path(dboid, path);
	if (stat(path, &st) == 0 && !rmtree(path, true))
		ereport(LOG,
				(errmsg("stream_state: could not remove directory \"%s\"", path)));
}

/* ---------------------------------------------------------------------
 * Meta
 * ---------------------------------------------------------------------
 */

bool
sstate_rdb_get_meta(int32 qid, StreamStateRdbMeta *meta)
{
	char		key[META_KEY_LEN];
	char	   *err = NULL;
	size_t		len;
	char	   *val;

	Assert(rdb != NULL);
	meta_key(key, qid);
	val = rocksdb_get(rdb, rdb_ropts, key, sizeof(key), &len, &err);
	if (err != NULL)
	{
		ereport(LOG,
				(errmsg("stream_state: could not read RocksDB meta of query %d: %s", qid, err)));
		rocksdb_free(err);
		return false;
	}
	if (val == NULL)
		return false;
	if (len != sizeof(StreamStateRdbMeta))
	{
		rocksdb_free(val);
		return false;
	}
	memcpy(meta, val, sizeof(*meta));
	rocksdb_free(val);
	return meta->version == SSTATE_RDB_META_VERSION;
}

/* The ids of every query RocksDB has a meta of. */
List *
sstate_rdb_meta_qids(void)
{
	List	   *result = NIL;
	rocksdb_iterator_t *it;
	char		lo[5];

	Assert(rdb != NULL);
	put_be32(lo, 0);
	lo[4] = 'm';
	it = rocksdb_create_iterator(rdb, rdb_ropts);
	for (rocksdb_iter_seek(it, lo, sizeof(lo)); rocksdb_iter_valid(it); rocksdb_iter_next(it))
	{
		size_t		klen;
		const char *k = rocksdb_iter_key(it, &klen);

		if (klen != META_KEY_LEN || memcmp(k, lo, sizeof(lo)) != 0)
			break;
		result = lappend_int(result, (int32) get_be32(k + 5));
	}
	rocksdb_iter_destroy(it);
	return result;
}

/* ---------------------------------------------------------------------
 * Applying
 * ---------------------------------------------------------------------
 */

void
sstate_rdb_add(const StreamStateQueryDef *def, const char *key, uint32 keylen,
			   int64 pane, int64 count)
{
	Size		need = key_prefix_len(def, keylen) + 8;
	char	   *buf;
	Size		len;
	PendingAdd *a;
	unsigned char pad[16];
	uint64		w0,
				w1;

	Assert(rdb != NULL);
	if (pending_keys_len + need > pending_keys_cap)
	{
		pending_keys_cap = Max(pending_keys_cap * 2, Max(need * 2, 1024 * 1024));
		pending_keys = pending_keys ? repalloc_huge(pending_keys, pending_keys_cap) :
			MemoryContextAllocHuge(TopMemoryContext, pending_keys_cap);
	}
	if (pending_n == pending_cap)
	{
		pending_cap = Max(pending_cap * 2, 16384);
		pending = pending ? repalloc_huge(pending, pending_cap * sizeof(PendingAdd)) :
			MemoryContextAllocHuge(TopMemoryContext, pending_cap * sizeof(PendingAdd));
	}
	buf = pending_keys + pending_keys_len;
	len = put_key_prefix(buf, def, key, keylen);
	put_pane(buf + len, pane);
	len += 8;
	a = &pending[pending_n++];
	memset(pad, 0, sizeof(pad));
	memcpy(pad, buf, Min(len, 16));
	memcpy(&w0, pad, 8);
	memcpy(&w1, pad + 8, 8);
	a->k0 = pg_ntoh64(w0);
	a->k1 = pg_ntoh64(w1);
	a->off = (uint32) pending_keys_len;
	a->len = (uint32) len;
	a->count = count;
	pending_keys_len += len;
	rdb_pending = true;
}

/*
 * Put the pending adds into the batch, sorted, equal keys summed (and
 * dropped when they add up to 0).  Before anything else goes into the batch,
 * so that the batch keeps the order of the operations.
 */
static void
flush_adds(void)
{
	Size		i = 0;

	bool		cached = sstate_rdb_cache_active();

	flush_values();
	if (pending_n == 0)
		return;
	sort_pending(pending, pending_n);
	while (i < pending_n)
	{
		PendingAdd *a = &pending[i];
		const char *k = pending_keys + a->off;
		int64		sum = a->count;
		Size		j = i + 1;

		while (j < pending_n && pending_cmp(a, &pending[j]) == 0)
			sum += pending[j++].count;
		if (sum != 0)
		{
			rocksdb_writebatch_merge(rdb_batch, k, a->len, (const char *) &sum, sizeof(sum));
			/* cached queries have unclassed keys: id, length, image, pane */
			if (cached && sstate_rdb_cache_has((int32) get_be32(k)))
				sstate_rdb_cache_add((int32) get_be32(k), k + 8, get_be32(k + 4),
									 get_pane(k + a->len - 8), sum);
		}
		i = j;
	}
	pending_n = 0;
	pending_keys_len = 0;
	/* a huge round's arrays are not kept */
	if (pending_keys_cap > 64 * 1024 * 1024)
	{
		pfree(pending_keys);
		pending_keys = NULL;
		pending_keys_cap = 0;
		pfree(pending);
		pending = NULL;
		pending_cap = 0;
	}
}

/* ---------------------------------------------------------------------
 * Values of queries in SQL: read, combine, Put (see the file header)
 * ---------------------------------------------------------------------
 */

static uint32
value_key_hash(const void *key, Size keysize)
{
	const ValueKey *k = key;

	return hash_bytes((const unsigned char *) k->data, (int) k->len);
}

static int
value_key_match(const void *a, const void *b, Size keysize)
{
	const ValueKey *x = a;
	const ValueKey *y = b;

	if (x->len != y->len)
		return 1;
	return memcmp(x->data, y->data, x->len);
}

static void
values_init(void)
{
	HASHCTL		ctl;

	if (values != NULL)
		return;
	if (value_cxt == NULL)
		value_cxt = AllocSetContextCreate(TopMemoryContext, "stream_state rocksdb values",
										  ALLOCSET_DEFAULT_SIZES);
	ctl.keysize = sizeof(ValueKey);
	ctl.entrysize = sizeof(ValueEntry);
	ctl.hash = value_key_hash;
	ctl.match = value_key_match;
	ctl.hcxt = value_cxt;
	values = hash_create("stream_state rocksdb values", 1024, &ctl,
						 HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
	values_bytes = 0;
}

/* Forget every value (dirty ones too: the batch they were for is gone). */
static void
values_reset(void)
{
	if (value_cxt != NULL)
		MemoryContextReset(value_cxt);
	values = NULL;
	values_bytes = 0;
	nvjournal = 0;
	ndirty = 0;
	ndeleted_qids = 0;
}

/* e becomes dirty: on the list flush_values walks (rather than the table) */
static void
mark_dirty(ValueEntry *e)
{
	if (e->dirty)
		return;
	if (ndirty == dirty_cap)
	{
		dirty_cap = Max(dirty_cap * 2, 1024);
		dirty = dirty ? repalloc(dirty, sizeof(ValueEntry *) * dirty_cap) :
			MemoryContextAlloc(TopMemoryContext, sizeof(ValueEntry *) * dirty_cap);
	}
	dirty[ndirty++] = e;
	e->dirty = true;
}

/*
 * The pending batch deletes query qid's state: forget its values (dirty
 * ones would come before the deletion, they are gone with it) and read its
 * keys as absent until the batch is written.
 */
static void
values_forget_query(int32 qid)
{
	HASH_SEQ_STATUS seq;
	ValueEntry *e;
	int			n = 0;

	for (int i = 0; i < nvjournal; i++)
		if (vjournal[i].e->qid != qid)
			vjournal[n++] = vjournal[i];
	nvjournal = n;
	n = 0;
	for (int i = 0; i < ndirty; i++)
		if (dirty[i]->qid != qid)
			dirty[n++] = dirty[i];
	ndirty = n;
	if (values != NULL)
	{
		hash_seq_init(&seq, values);
		while ((e = hash_seq_search(&seq)) != NULL)
			if (e->qid == qid)
				(void) hash_search(values, &e->key, HASH_REMOVE, NULL);
	}
	for (int i = 0; i < ndeleted_qids; i++)
		if (deleted_qids[i] == qid)
			return;
	if (deleted_qids == NULL)
		deleted_qids = MemoryContextAlloc(TopMemoryContext,
										  sizeof(int32) * Max(2 * sstate_max_queries, 1));
	if (ndeleted_qids < 2 * Max(sstate_max_queries, 1))
		deleted_qids[ndeleted_qids++] = qid;
	else
		elog(ERROR, "stream_state: too many queries deleted in one RocksDB batch");
}

static bool
deleted_in_batch(int32 qid)
{
	for (int i = 0; i < ndeleted_qids; i++)
		if (deleted_qids[i] == qid)
			return true;
	return false;
}

/*
 * The table's entry of raw key k (len bytes) of query qid; a new one
 * (*found false) holds no value yet.
 */
static ValueEntry *
value_entry_enter(int32 qid, const char *k, uint32 len, bool *found)
{
	ValueKey	vk;
	ValueEntry *e;

	values_init();
	vk.data = k;
	vk.len = len;
	e = hash_search(values, &vk, HASH_ENTER, found);
	if (*found)
		return e;
	e->key.data = MemoryContextAlloc(value_cxt, len);
	memcpy((char *) e->key.data, k, len);
	e->key.len = len;
	e->qid = qid;
	e->value = NULL;
	e->len = 0;
	e->dirty = false;
	values_bytes += len + sizeof(ValueEntry);
	return e;
}

/*
 * The entry of raw key k (len bytes) of query qid, read from RocksDB when
 * it is not in the table yet.  An error reading RocksDB is an ERROR: the
 * worker restarts and goes on from RocksDB's meta.
 */
static ValueEntry *
value_entry(int32 qid, const char *k, uint32 len)
{
	bool		found;
	ValueEntry *e = value_entry_enter(qid, k, len, &found);

	if (found)
		return e;
	if (!deleted_in_batch(qid))
	{
		char	   *err = NULL;
		size_t		vlen;
		char	   *v = rocksdb_get(rdb, rdb_ropts, k, len, &vlen, &err);

		if (err != NULL)
		{
			ValueKey	vk = e->key;

			(void) hash_search(values, &vk, HASH_REMOVE, NULL);
			rdb_read_error(err);
		}
		if (v != NULL && vlen >= 1 && v[0] == VALUE_TAG)
		{
			e->len = (uint32) vlen - 1;
			e->value = MemoryContextAlloc(value_cxt, Max(e->len, 1));
			memcpy(e->value, v + 1, e->len);
			values_bytes += e->len;
		}
		if (v != NULL)
			rocksdb_free(v);
	}
	return e;
}

static void
value_set(ValueEntry *e, const char *value, uint32 len, bool journal)
{
	if (journal)
	{
		if (nvjournal == vjournal_cap)
		{
			vjournal_cap = Max(vjournal_cap * 2, 256);
			vjournal = vjournal ? repalloc(vjournal, sizeof(ValueUndo) * vjournal_cap) :
				MemoryContextAlloc(TopMemoryContext, sizeof(ValueUndo) * vjournal_cap);
		}
		vjournal[nvjournal].e = e;
		vjournal[nvjournal].value = e->value;
		vjournal[nvjournal].len = e->len;
		vjournal[nvjournal].dirty = e->dirty;
		nvjournal++;
	}
	/* the old value stays allocated (the journal, or until the reset) */
	e->value = MemoryContextAlloc(value_cxt, Max(len, 1));
	memcpy(e->value, value, len);
	e->len = len;
	mark_dirty(e);
	values_bytes += len;
	rdb_pending = true;
}

static ValueEntry *
value_entry_of(const StreamStateQueryDef *def, const char *key, uint32 keylen, int64 pane)
{
	Size		klen = key_prefix_len(def, keylen) + 8;
	char	   *k = palloc(klen);
	ValueEntry *e;

	put_key_prefix(k, def, key, keylen);
	put_pane(k + klen - 8, pane);
	e = value_entry(def->id, k, (uint32) klen);
	pfree(k);
	return e;
}

/*
 * Combine value (a commit's partial states for (query, key, pane)) into
 * the pane's value with merge, or make it the pane's value, in the pending
 * batch; journalled until sstate_rdb_values_commit or _undo.  Worker only.
 */
void
sstate_rdb_merge_value(const StreamStateQueryDef *def, const char *key, uint32 keylen,
					   int64 pane, const char *value, uint32 len,
					   sstate_store_merge_cb merge, void *arg)
{
	ValueEntry *e;

	Assert(rdb != NULL);
	e = value_entry_of(def, key, keylen, pane);
	if (e->value != NULL)
	{
		const char *merged;
		uint32		mlen;

		if (!merge(arg, e->value, e->len, value, len, &merged, &mlen))
			elog(ERROR, "stream_state: a partial state of continuous query \"%s\" is malformed",
				 def->name);
		value_set(e, merged, mlen, true);
	}
	else
		value_set(e, value, len, true);
}

/*
 * Make value the value of (query, key, pane), not journalled: a query
 * moving in from the memory backend, whose state here was deleted first.
 */
void
sstate_rdb_put_value(const StreamStateQueryDef *def, const char *key, uint32 keylen,
					 int64 pane, const char *value, uint32 len)
{
	Assert(rdb != NULL);
	value_set(value_entry_of(def, key, keylen, pane), value, len, false);
}

/* The commit applied: its replaced values (and its late keys) stay. */
void
sstate_rdb_values_commit(void)
{
	nvjournal = 0;
	nlate_journal = 0;
}

/*
 * The commit failed: put back every value it replaced, newest first, and
 * delete the late groups it put.
 */
void
sstate_rdb_values_undo(void)
{
	for (int i = 0; i < nlate_journal && rdb_batch != NULL; i++)
		rocksdb_writebatch_delete(rdb_batch, late_journal + (Size) i * LATE_KEY_LEN,
								  LATE_KEY_LEN);
	nlate_journal = 0;
	for (int i = nvjournal - 1; i >= 0; i--)
	{
		ValueUndo  *u = &vjournal[i];

		u->e->value = u->value;
		u->e->len = u->len;
		/* Put again even if it was clean: the batch may hold a newer one */
		mark_dirty(u->e);
	}
	nvjournal = 0;
}

static int
value_entry_cmp(const void *a, const void *b)
{
	const ValueEntry *x = *(ValueEntry *const *) a;
	const ValueEntry *y = *(ValueEntry *const *) b;
	int			c = memcmp(x->key.data, y->key.data, Min(x->key.len, y->key.len));

	if (c != 0)
		return c;
	return (x->key.len > y->key.len) - (x->key.len < y->key.len);
}

/*
 * Put the dirty values into the batch, in key order (as flush_adds does,
 * for the memtable's sake); they stay in the table, clean.
 */
static void
flush_values(void)
{
	ValueEntry *e;
	int			n = ndirty;
	StringInfoData buf;

	if (n == 0)
		return;
	qsort(dirty, n, sizeof(ValueEntry *), value_entry_cmp);
	initStringInfo(&buf);
	for (int i = 0; i < n; i++)
	{
		e = dirty[i];
		resetStringInfo(&buf);
		e->dirty = false;
		if (e->value == NULL)
		{
			/* an undone new value that a flush had put already */
			rocksdb_writebatch_delete(rdb_batch, e->key.data, e->key.len);
			continue;
		}
		appendStringInfoChar(&buf, VALUE_TAG);
		appendBinaryStringInfo(&buf, e->value, e->len);
		rocksdb_writebatch_put(rdb_batch, e->key.data, e->key.len, buf.data, buf.len);
	}
	pfree(buf.data);
	ndirty = 0;
	/* the journal may still refer to them: an undo makes them dirty again */
	rdb_pending = true;
}

/*
 * Values of the table for raw key k, without reading RocksDB: the entry
 * (new ones read as absent).
 */
static ValueEntry *
value_entry_nofetch(int32 qid, const char *k, uint32 len)
{
	bool		found;

	return value_entry_enter(qid, k, len, &found);
}

/* One pane key of the key being looked at by sstate_rdb_drop_idle */
typedef struct IdlePane
{
	const char *k;
	uint32		len;
} IdlePane;

typedef struct IdleWalk
{
	int32		qid;
	int64		idle_below;
	char	   *prefix;			/* the key without its pane */
	uint32		prefixlen;
	IdlePane   *panes;			/* every pane key of it, present or not */
	int			npanes;
	int			cap;
	bool		present;		/* has a pane with a value */
	int64		newest;			/* the newest such pane */
	int64		dropped;
} IdleWalk;

/* The key sstate_rdb_drop_idle has gathered ends: drop it if idle. */
static void
idle_key_end(IdleWalk *w)
{
	if (w->npanes > 0 && w->present && w->newest < w->idle_below)
	{
		for (int i = 0; i < w->npanes; i++)
		{
			ValueEntry *e = value_entry_nofetch(w->qid, w->panes[i].k, w->panes[i].len);

			/* a Delete at the round's end (flush_values), after any Put */
			e->value = NULL;
			e->len = 0;
			mark_dirty(e);
		}
		w->dropped++;
		rdb_pending = true;
	}
	w->npanes = 0;
	w->present = false;
	w->prefixlen = 0;
}

static void
idle_pane(IdleWalk *w, MemoryContext cxt, const char *k, uint32 len, bool present)
{
	uint32		plen;
	int64		pane;

	if (len < 4 + 4 + 8)
		return;
	plen = len - 8;
	if (w->prefixlen != plen || memcmp(w->prefix, k, plen) != 0)
	{
		idle_key_end(w);
		w->prefix = MemoryContextAlloc(cxt, plen);
		memcpy(w->prefix, k, plen);
		w->prefixlen = plen;
	}
	if (w->npanes == w->cap)
	{
		w->cap = Max(w->cap * 2, 16);
		w->panes = w->panes ? repalloc(w->panes, sizeof(IdlePane) * w->cap) :
			MemoryContextAlloc(cxt, sizeof(IdlePane) * w->cap);
	}
	w->panes[w->npanes].k = MemoryContextAlloc(cxt, len);
	memcpy((char *) w->panes[w->npanes].k, k, len);
	w->panes[w->npanes].len = len;
	w->npanes++;
	if (present)
	{
		pane = get_pane(k + plen);
		if (!w->present || pane > w->newest)
			w->newest = pane;
		w->present = true;
	}
}

/*
 * Walk the state of query def as the pending batch will leave it: the
 * query's range in RocksDB merged, in key order, with the table's entries
 * of the query, the table's winning where both have a key (it is what the
 * batch will make of it).  cb gets each raw key and its value without the
 * tag (NULL: absent, deleted by the batch).  cb may change the table's
 * entries (value_entry_nofetch, value_set), not read RocksDB.  Worker
 * only, between commits (nothing journalled).
 */
typedef void (*walk_values_cb) (void *arg, const char *k, uint32 len,
								const char *value, uint32 vlen);

static void
walk_values(const StreamStateQueryDef *def, walk_values_cb cb, void *arg)
{
	ValueEntry **tab = NULL;
	int			ntab = 0;
	int			t = 0;
	rocksdb_readoptions_t *ro = NULL;
	rocksdb_iterator_t *it = NULL;
	char		lo[4],
				hi[4];
	char	   *err = NULL;

	Assert(rdb != NULL);
	Assert(nvjournal == 0);

	/* the table's entries of the query, in key order */
	if (values != NULL)
	{
		HASH_SEQ_STATUS seq;
		ValueEntry *e;
		int			cap = 1024;

		tab = palloc(sizeof(ValueEntry *) * cap);
		hash_seq_init(&seq, values);
		while ((e = hash_seq_search(&seq)) != NULL)
		{
			if (e->qid != def->id)
				continue;
			if (ntab == cap)
			{
				cap *= 2;
				tab = repalloc_huge(tab, sizeof(ValueEntry *) * cap);
			}
			tab[ntab++] = e;
		}
		if (ntab > 1)
			qsort(tab, ntab, sizeof(ValueEntry *), value_entry_cmp);
	}

	/* RocksDB's, unless the pending batch deletes the whole query */
	if (!deleted_in_batch(def->id))
	{
		put_be32(lo, (uint32) def->id);
		put_be32(hi, (uint32) def->id + 1);
		ro = rocksdb_readoptions_create();
		rocksdb_readoptions_set_iterate_upper_bound(ro, hi, sizeof(hi));
		rocksdb_readoptions_set_fill_cache(ro, 0);
		it = rocksdb_create_iterator(rdb, ro);
		rocksdb_iter_seek(it, lo, sizeof(lo));
	}

	for (;;)
	{
		bool		have_it = it != NULL && rocksdb_iter_valid(it);
		const char *k = NULL;
		size_t		klen = 0;
		int			c;

		if (!have_it && t >= ntab)
			break;
		if (have_it)
			k = rocksdb_iter_key(it, &klen);
		if (!have_it)
			c = 1;
		else if (t >= ntab)
			c = -1;
		else
		{
			c = memcmp(k, tab[t]->key.data, Min(klen, tab[t]->key.len));
			if (c == 0)
				c = (klen > tab[t]->key.len) - (klen < tab[t]->key.len);
		}
		if (c < 0)
		{
			size_t		vlen;
			const char *v = rocksdb_iter_value(it, &vlen);

			if (vlen >= 1 && v[0] == VALUE_TAG)
				cb(arg, k, (uint32) klen, v + 1, (uint32) vlen - 1);
			else
				cb(arg, k, (uint32) klen, NULL, 0);
			rocksdb_iter_next(it);
		}
		else
		{
			/* the table's entry, over RocksDB's when both have the key */
			ValueEntry *e = tab[t++];

			cb(arg, e->key.data, e->key.len, e->value, e->len);
			if (c == 0)
				rocksdb_iter_next(it);
		}
	}
	if (it != NULL)
	{
		rocksdb_iter_get_error(it, &err);
		rocksdb_iter_destroy(it);
		rocksdb_readoptions_destroy(ro);
	}
	if (tab != NULL)
		pfree(tab);
	if (err != NULL)
		rdb_read_error(err);
}

static void
idle_walk_cb(void *arg, const char *k, uint32 len, const char *value, uint32 vlen)
{
	IdleWalk   *w = arg;

	idle_pane(w, CurrentMemoryContext, k, len, value != NULL);
}

/*
 * Retention of query def (a query in SQL): drop every key whose newest pane
 * is below idle_below, in the pending batch.  Returns how many keys went.
 * Worker only, between commits.
 *
 * RocksDB alone does not say what a key holds: the pending batch and the
 * table of values may have a newer pane of it (or have deleted one), so
 * this walks walk_values' merge of both.  A dropped key's every pane key
 * becomes a table entry with no value, dirty: the round's end deletes it
 * after whatever the batch put before, a later Get of it in this round
 * finds the entry (absent) rather than RocksDB's stale value, and a later
 * merge starts it afresh.
 */
int64
sstate_rdb_drop_idle(const StreamStateQueryDef *def, int64 idle_below)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext,
											  "stream_state rocksdb retention",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	IdleWalk	w;

	memset(&w, 0, sizeof(w));
	w.qid = def->id;
	w.idle_below = idle_below;
	walk_values(def, idle_walk_cb, &w);
	idle_key_end(&w);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
	if (w.dropped > 0 && sstate_rdb_cache_has(def->id))
		sstate_rdb_cache_drop(def->id);
	return w.dropped;
}

/* ---------------------------------------------------------------------
 * Session windows of queries in SQL (see the file header)
 * ---------------------------------------------------------------------
 */

/*
 * A list of sessions: uint32 count, then per session int64 first event,
 * uint32 length and the session's value as the memory store keeps it
 * (int64 last event, then the partial states); sorted by first event.
 * Native byte order: only this worker reads it (and export, on the same
 * machine, through the scans, which give each session as a pane).
 */
typedef struct SessionItem
{
	int64		first;
	const char *value;
	uint32		len;
} SessionItem;

/* Parse a list into items (palloc'd); false if malformed */
static bool
sessions_parse(const char *v, uint32 len, SessionItem **items, int *n)
{
	uint32		cnt;
	uint32		pos = 4;

	*items = NULL;
	*n = 0;
	if (v == NULL)
		return true;
	if (len < 4)
		return false;
	memcpy(&cnt, v, 4);
	if (cnt > len / 12)
		return false;
	*items = palloc(sizeof(SessionItem) * Max(cnt, 1));
	for (uint32 i = 0; i < cnt; i++)
	{
		SessionItem *it = &(*items)[i];

		if (pos + 12 > len)
			return false;
		memcpy(&it->first, v + pos, 8);
		memcpy(&it->len, v + pos + 8, 4);
		pos += 12;
		if (it->len < sizeof(int64) || it->len > len - pos)
			return false;
		it->value = v + pos;
		pos += it->len;
	}
	*n = (int) cnt;
	return pos == len;
}

static int64
session_item_last(const SessionItem *it)
{
	int64		last;

	memcpy(&last, it->value, sizeof(int64));
	return last;
}

static void
sessions_append(StringInfo buf, int64 first, const char *value, uint32 len)
{
	uint32		cnt;

	if (buf->len == 0)
	{
		cnt = 0;
		appendBinaryStringInfo(buf, (const char *) &cnt, 4);
	}
	memcpy(&cnt, buf->data, 4);
	cnt++;
	memcpy(buf->data, &cnt, 4);
	appendBinaryStringInfo(buf, (const char *) &first, 8);
	appendBinaryStringInfo(buf, (const char *) &len, 4);
	appendBinaryStringInfo(buf, value, len);
}

static bool
is_sessions(const StreamStateQueryDef *def)
{
	return def->sql && def->session_gap_us > 0;
}

/*
 * Merge a group (first and last event, less than the gap apart, and its
 * partial states) into key's sessions, as sstate_store_merge_session does:
 * it joins every open session within the gap of it (closed ones, last +
 * gap <= closed_until, are final); the merged session replaces them.  The
 * key's list is one value (pane SSTATE_RDB_SESSIONS_PANE), read, combined
 * and Put through the table of values, so the journal undoes a failed
 * commit and the round's batch writes it.  Worker only.
 */
void
sstate_rdb_merge_session(const StreamStateQueryDef *def, const char *key, uint32 keylen,
						 int64 first, int64 last, const char *states, uint32 len,
						 int64 closed_until, sstate_store_merge_cb merge, void *arg)
{
	ValueEntry *e;
	SessionItem *items;
	int			n;
	int64		gap = def->session_gap_us;
	int64		mfirst = first;
	int64		mlast = last;
	char	   *acc;
	uint32		acclen = len;
	bool	   *hit;
	StringInfoData buf;
	char	   *mval;
	bool		placed = false;

	Assert(rdb != NULL);
	e = value_entry_of(def, key, keylen, SSTATE_RDB_SESSIONS_PANE);
	if (!sessions_parse(e->value, e->len, &items, &n))
		elog(ERROR, "stream_state: the sessions of a key of continuous query \"%s\" are malformed",
			 def->name);
	hit = palloc0(sizeof(bool) * Max(n, 1));
	acc = palloc(Max(len, 1));
	memcpy(acc, states, len);
	for (int i = 0; i < n; i++)
	{
		int64		sfirst = items[i].first;
		int64		slast = session_item_last(&items[i]);

		if (slast + gap <= closed_until)
			continue;			/* closed: final */
		if (sfirst < last + gap && first < slast + gap)
		{
			const char *merged;
			uint32		mlen;

			hit[i] = true;
			mfirst = Min(mfirst, sfirst);
			mlast = Max(mlast, slast);
			if (!merge(arg, items[i].value + sizeof(int64), items[i].len - sizeof(int64),
					   acc, acclen, &merged, &mlen))
				elog(ERROR, "stream_state: a partial state of continuous query \"%s\" is malformed",
					 def->name);
			acc = repalloc(acc, Max(mlen, 1));
			memcpy(acc, merged, mlen);
			acclen = mlen;
		}
	}
	mval = palloc(sizeof(int64) + acclen);
	memcpy(mval, &mlast, sizeof(int64));
	memcpy(mval + sizeof(int64), acc, acclen);
	initStringInfo(&buf);
	buf.len = 0;
	for (int i = 0; i < n; i++)
	{
		if (hit[i])
			continue;
		if (!placed && mfirst < items[i].first)
		{
			sessions_append(&buf, mfirst, mval, sizeof(int64) + acclen);
			placed = true;
		}
		sessions_append(&buf, items[i].first, items[i].value, items[i].len);
	}
	if (!placed)
		sessions_append(&buf, mfirst, mval, sizeof(int64) + acclen);
	value_set(e, buf.data, buf.len, true);
	pfree(buf.data);
	pfree(mval);
	pfree(acc);
	pfree(hit);
	if (items)
		pfree(items);
}

typedef struct SessionEvict
{
	const StreamStateQueryDef *def;
	int64		closed_until;
	int64		removed;
} SessionEvict;

static void
evict_sessions_cb(void *arg, const char *k, uint32 len, const char *value, uint32 vlen)
{
	SessionEvict *se = arg;
	SessionItem *items;
	int			n;
	int			kept = 0;
	StringInfoData buf;

	if (value == NULL || !sessions_parse(value, vlen, &items, &n))
		return;
	for (int i = 0; i < n; i++)
		if (session_item_last(&items[i]) + se->def->session_gap_us > se->closed_until)
			kept++;
	if (kept < n)
	{
		ValueEntry *e;

		initStringInfo(&buf);
		buf.len = 0;
		for (int i = 0; i < n; i++)
			if (session_item_last(&items[i]) + se->def->session_gap_us > se->closed_until)
				sessions_append(&buf, items[i].first, items[i].value, items[i].len);
		/* copied first: value may be the entry's own */
		e = value_entry_nofetch(se->def->id, k, len);
		if (kept == 0)
		{
			/* a Delete at the round's end */
			e->value = NULL;
			e->len = 0;
			mark_dirty(e);
			rdb_pending = true;
		}
		else
			value_set(e, buf.data, buf.len, false);
		pfree(buf.data);
		se->removed += n - kept;
	}
	if (items)
		pfree(items);
}

/*
 * Remove the sessions of query def that closed by closed_until (last event
 * + gap <= it), and keys left without any, in the pending batch, over the
 * table of values (walk_values).  Returns how many sessions went.  Worker
 * only, between commits.
 */
int64
sstate_rdb_evict_sessions(const StreamStateQueryDef *def, int64 closed_until)
{
	SessionEvict se;

	se.def = def;
	se.closed_until = closed_until;
	se.removed = 0;
	walk_values(def, evict_sessions_cb, &se);
	return se.removed;
}

/*
 * Make the sessions (first event, value: last event and states) of a key
 * of query def its list, not journalled: a query moving in from the memory
 * backend, whose state here was deleted first.  panes are in first-event
 * order; value gives each one's value.
 */
void
sstate_rdb_put_sessions(const StreamStateQueryDef *def, const char *key, uint32 keylen,
						const StreamStatePane *panes, int npanes,
						const char *(*value) (void *arg, int64 ref, uint32 *len), void *arg)
{
	StringInfoData buf;

	Assert(rdb != NULL);
	if (npanes == 0)
		return;
	initStringInfo(&buf);
	buf.len = 0;
	for (int i = 0; i < npanes; i++)
	{
		uint32		len;
		const char *v = value(arg, panes[i].count, &len);

		sessions_append(&buf, panes[i].pane, v, len);
	}
	value_set(value_entry_of(def, key, keylen, SSTATE_RDB_SESSIONS_PANE), buf.data, buf.len,
			  false);
	pfree(buf.data);
}

/* Delete a query's state and meta (in the pending batch). */
void
sstate_rdb_drop_query(int32 qid)
{
	char		lo[4],
				hi[4];
	char		mk[META_KEY_LEN];

	if (rdb == NULL)
		return;
	values_forget_query(qid);
	flush_adds();
	sstate_rdb_cache_drop(qid);
	put_be32(lo, (uint32) qid);
	put_be32(hi, (uint32) qid + 1);
	rocksdb_writebatch_delete_range(rdb_batch, lo, sizeof(lo), hi, sizeof(hi));
	meta_key(mk, qid);
	rocksdb_writebatch_delete(rdb_batch, mk, sizeof(mk));
	sstate_rdb_set_dead_below(qid, PG_INT64_MIN);
	rdb_pending = true;
}

void
sstate_rdb_set_dead_below(int32 qid, int64 dead_below)
{
	DeadEntry  *e;

	if (dead_below == PG_INT64_MIN)
		sstate_rdb_cache_drop(qid);
	else
		sstate_rdb_cache_evict(qid, dead_below);
	if (dead_table == NULL)
		return;
	e = &dead_table[(uint32) qid % (uint32) dead_size];
	if (e->qid != qid)
	{
		/* a new owner: no filtering until both fields are its own */
		__atomic_store_n(&e->qid, 0, __ATOMIC_RELEASE);
		__atomic_store_n(&e->dead_below, dead_below, __ATOMIC_RELEASE);
		__atomic_store_n(&e->qid, qid, __ATOMIC_RELEASE);
	}
	else
		__atomic_store_n(&e->dead_below, dead_below, __ATOMIC_RELEASE);
}

bool
sstate_rdb_dirty(void)
{
	return rdb_pending;
}

/* ---------------------------------------------------------------------
 * Late groups of rocksdb queries (see the file header)
 * ---------------------------------------------------------------------
 */

/* The memory store whose late lists sstate_rdb_late_load fills (worker) */
void
sstate_rdb_late_init(StreamStateStore *store)
{
	late_store = store;
	nlate_journal = 0;
}

/*
 * Put a late group of query qid into the pending batch.  With journal (a
 * group of the commit being applied), a failed commit deletes it again.
 */
void
sstate_rdb_late_put(int32 qid, const StreamStateLateGroup *g, bool journal)
{
	char		key[LATE_KEY_LEN];
	StringInfoData buf;
	uint32		len;

	if (rdb == NULL)
		return;
	late_key(key, qid, g->lsn, late_seq++);
	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, (const char *) &g->commit_us, sizeof(int64));
	appendBinaryStringInfo(&buf, (const char *) &g->from_us, sizeof(int64));
	appendBinaryStringInfo(&buf, (const char *) &g->to_us, sizeof(int64));
	appendBinaryStringInfo(&buf, (const char *) &g->count, sizeof(int64));
	len = g->keylen;
	appendBinaryStringInfo(&buf, (const char *) &len, sizeof(uint32));
	len = g->valuelen;
	appendBinaryStringInfo(&buf, (const char *) &len, sizeof(uint32));
	if (g->keylen > 0)
		appendBinaryStringInfo(&buf, g->key, g->keylen);
	if (g->valuelen > 0)
		appendBinaryStringInfo(&buf, g->value, g->valuelen);
	rocksdb_writebatch_put(rdb_batch, key, sizeof(key), buf.data, buf.len);
	pfree(buf.data);
	rdb_pending = true;
	if (!journal)
		return;
	if (nlate_journal == late_journal_cap)
	{
		late_journal_cap = Max(64, late_journal_cap * 2);
		late_journal = late_journal == NULL ?
			MemoryContextAlloc(TopMemoryContext, (Size) late_journal_cap * LATE_KEY_LEN) :
			repalloc(late_journal, (Size) late_journal_cap * LATE_KEY_LEN);
	}
	memcpy(late_journal + (Size) nlate_journal++ * LATE_KEY_LEN, key, LATE_KEY_LEN);
}

/*
 * Delete the late groups of query qid committed at or before upto
 * (PG_UINT64_MAX: all of them) in the pending batch.
 */
void
sstate_rdb_late_delete(int32 qid, XLogRecPtr upto)
{
	char		lo[LATE_KEY_LEN],
				hi[LATE_KEY_LEN];

	if (rdb == NULL)
		return;
	late_key(lo, qid, 0, 0);
	if (upto == PG_UINT64_MAX)
		late_key(hi, qid, PG_UINT64_MAX, PG_UINT64_MAX);	/* no commit's LSN */
	else
		late_key(hi, qid, upto + 1, 0);
	rocksdb_writebatch_delete_range(rdb_batch, lo, sizeof(lo), hi, sizeof(hi));
	rdb_pending = true;
}

/*
 * Make the memory store's list of query qid's late groups what RocksDB
 * holds (written batches only: call it when the query takes its position
 * from RocksDB's meta, before anything of it is in the pending batch).
 * Groups that do not fit into memory are left out, with a WARNING, as a
 * checkpoint file's are.
 */
void
sstate_rdb_late_load(int32 qid)
{
	rocksdb_iterator_t *it;
	char		lo[LATE_KEY_LEN];
	int64		lost = 0;

	if (rdb == NULL || late_store == NULL)
		return;
	sstate_store_late_drop(late_store, qid);
	late_key(lo, qid, 0, 0);
	it = rocksdb_create_iterator(rdb, rdb_ropts);
	for (rocksdb_iter_seek(it, lo, sizeof(lo)); rocksdb_iter_valid(it); rocksdb_iter_next(it))
	{
		size_t		klen,
					vlen;
		const char *k = rocksdb_iter_key(it, &klen);
		const char *v;
		StreamStateLateGroup g;
		uint32		keylen,
					valuelen;

		if (klen != LATE_KEY_LEN || memcmp(k, lo, 9) != 0)
			break;
		v = rocksdb_iter_value(it, &vlen);
		if (vlen < 4 * sizeof(int64) + 2 * sizeof(uint32))
			continue;
		memcpy(&keylen, v + 4 * sizeof(int64), sizeof(uint32));
		memcpy(&valuelen, v + 4 * sizeof(int64) + sizeof(uint32), sizeof(uint32));
		if (vlen != 4 * sizeof(int64) + 2 * sizeof(uint32) + (Size) keylen + valuelen)
			continue;
		g.lsn = get_be64(k + 9);
		memcpy(&g.commit_us, v, sizeof(int64));
		memcpy(&g.from_us, v + sizeof(int64), sizeof(int64));
		memcpy(&g.to_us, v + 2 * sizeof(int64), sizeof(int64));
		memcpy(&g.count, v + 3 * sizeof(int64), sizeof(int64));
		g.keylen = keylen;
		g.key = v + 4 * sizeof(int64) + 2 * sizeof(uint32);
		g.valuelen = valuelen;
		g.value = valuelen > 0 ? g.key + keylen : NULL;
		if (!sstate_store_late_add(late_store, qid, &g, false))
			lost++;
	}
	rocksdb_iter_destroy(it);
	if (lost > 0)
		ereport(WARNING,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("stream_state: memory full while loading late groups from RocksDB; %lld of them will not reach their late_to tables",
						(long long) lost),
				 errhint("Increase stream_state.memory_limit.")));
}

/* Put q's meta into the pending batch: status, positions, q's counters. */
static void
put_meta(const StreamStateQuery *q, int32 status, XLogRecPtr applied, XLogRecPtr restart)
{
	StreamStateRdbMeta m;
	char		mk[META_KEY_LEN];

	flush_adds();
	memset(&m, 0, sizeof(m));
	m.version = SSTATE_RDB_META_VERSION;
	m.status = status;
	m.applied = applied;
	m.restart = restart;
	m.max_event_us = q->max_event_us;
	m.dead_below = q->dead_below;
	m.events_applied = q->events_applied;
	m.late_events = q->late_events;
	m.skipped = q->skipped;
	meta_key(mk, q->def.id);
	rocksdb_writebatch_put(rdb_batch, mk, sizeof(mk), (const char *) &m, sizeof(m));
	rdb_pending = true;
}

/*
 * q goes on from what RocksDB's meta m says: its commits before m->applied
 * are there, its counters and watermark are m's.
 */
void
sstate_rdb_adopt_meta(StreamStateQuery *q, const StreamStateRdbMeta *m,
					  StreamStateQueryStatus status)
{
	q->status = (m->status == SSQ_NEEDS_REBUILD) ? SSQ_NEEDS_REBUILD : status;
	q->skip_below = m->applied;
	q->max_event_us = m->max_event_us;
	q->dead_below = m->dead_below;
	q->events_applied = m->events_applied;
	q->late_events = m->late_events;
	q->skipped = m->skipped;
	sstate_rdb_set_dead_below(q->def.id, m->dead_below);
}

/*
 * Write the pending batch with the meta of every rocksdb query of db: a
 * running query has applied every commit before applied (and needs WAL
 * from restart), a paused one as far as its own catch-up got.  On failure
 * the batch is dropped and *error says why.
 */
bool
sstate_rdb_write(StreamStateDb *db, XLogRecPtr applied, XLogRecPtr restart, char **error)
{
	StreamStateQuery *qs = sstate_db_queries(db);
	char	   *err = NULL;

	if (rdb == NULL)
		return true;
	flush_adds();
	for (int i = 0; i < sstate_shared->max_queries; i++)
	{
		StreamStateQuery *q = &qs[i];

		if (q->status == SSQ_FREE || q->def.backend != SSB_ROCKSDB ||
			q->status == SSQ_PAUSED_DISK)
			continue;
		if (q->status == SSQ_PAUSED_MEMORY)
			put_meta(q, SSQ_RUNNING, q->paused_lsn, q->paused_restart);
		else
			put_meta(q, q->status, Max(applied, q->skip_below), restart);
	}
	rocksdb_write(rdb, rdb_wopts, rdb_batch, &err);
	rocksdb_writebatch_clear(rdb_batch);
	rdb_pending = false;
	ndeleted_qids = 0;			/* the batch deleted what they said */
	if (err != NULL || values_bytes > VALUE_CACHE_BYTES)
		values_reset();			/* on error: it has what RocksDB has not */
	if (err != NULL)
	{
		sstate_rdb_cache_drop(0);	/* it has what RocksDB has not */
		*error = pstrdup(err);
		rocksdb_free(err);
		return false;
	}
	return true;
}

/* Make everything written so far durable (memtables to SST files). */
bool
sstate_rdb_flush(char **error)
{
	rocksdb_flushoptions_t *fo;
	char	   *err = NULL;

	if (rdb == NULL)
		return true;
	fo = rocksdb_flushoptions_create();
	rocksdb_flushoptions_set_wait(fo, 1);
	rocksdb_flush(rdb, fo, &err);
	rocksdb_flushoptions_destroy(fo);
	if (err != NULL)
	{
		*error = pstrdup(err);
		rocksdb_free(err);
		return false;
	}
	return true;
}

/*
 * Estimates of each rocksdb query's entries and bytes, for the queries
 * view: RocksDB's size of the query's key range (SST files and memtables),
 * and its share of RocksDB's estimate of the number of keys.
 */
void
sstate_rdb_update_sizes(StreamStateDb *db)
{
	StreamStateQuery *qs = sstate_db_queries(db);
	uint64		total_keys = 0;
	uint64		total_bytes = 0;
	char	   *v;

	if (rdb == NULL)
		return;
	v = rocksdb_property_value(rdb, "rocksdb.estimate-num-keys");
	if (v)
	{
		total_keys = strtoull(v, NULL, 10);
		rocksdb_free(v);
	}
	v = rocksdb_property_value(rdb, "rocksdb.total-sst-files-size");
	if (v)
	{
		total_bytes = strtoull(v, NULL, 10);
		rocksdb_free(v);
	}
	v = rocksdb_property_value(rdb, "rocksdb.cur-size-all-mem-tables");
	if (v)
	{
		total_bytes += strtoull(v, NULL, 10);
		rocksdb_free(v);
	}
	for (int i = 0; i < sstate_shared->max_queries; i++)
	{
		StreamStateQuery *q = &qs[i];
		char		lo[4],
					hi[4];
		const char *los[1] = {lo};
		const char *his[1] = {hi};
		size_t		lol[1] = {4};
		size_t		hil[1] = {4};
		uint64_t	size = 0;
		char	   *err = NULL;

		if (q->status == SSQ_FREE || q->def.backend != SSB_ROCKSDB)
			continue;
		put_be32(lo, (uint32) q->def.id);
		put_be32(hi, (uint32) q->def.id + 1);
		rocksdb_approximate_sizes(rdb, 1, los, lol, his, hil, &size, &err);
		if (err)
		{
			rocksdb_free(err);
			continue;
		}
		SpinLockAcquire(&db->mutex);
		q->bytes = (int64) size;
		q->panes = total_bytes > 0 ? (int64) ((double) total_keys * size / total_bytes) : 0;
		q->keys = -1;			/* not known */
		SpinLockRelease(&db->mutex);
	}
}

/* ---------------------------------------------------------------------
 * Reading (the worker answers other processes' requests)
 * ---------------------------------------------------------------------
 */

/*
 * The state entry under iterator it, if it is a live one of a query like
 * def (pane at or after dead_below; a count not 0, or a value): its raw
 * key, the key image in it, the pane, and the count or (queries in SQL)
 * the value without its tag.
 */
static bool
live_entry(rocksdb_iterator_t *it, const StreamStateQueryDef *def, int64 dead_below,
		   const char **key, size_t *keylen, const char **img, uint32 *ilen,
		   int64 *pane, int64 *count, const char **value, uint32 *valuelen)
{
	uint32		off = 4 + (def->key_classed ? SSTATE_CLASS_PREFIX : 0);
	const char *k = rocksdb_iter_key(it, keylen);
	const char *v;
	size_t		vlen;

	if (*keylen < off + 4 + 8)
		return false;
	*ilen = get_be32(k + off);
	if (*keylen != off + 4 + *ilen + 8)
		return false;
	*pane = get_pane(k + *keylen - 8);
	if (*pane < dead_below)
		return false;
	v = rocksdb_iter_value(it, &vlen);
	if (def->sql)
	{
		if (vlen < 1 || v[0] != VALUE_TAG)
			return false;
		*value = v + 1;
		*valuelen = (uint32) vlen - 1;
		*count = 0;
	}
	else
	{
		*count = value_count(v, vlen);
		if (*count == 0)
			return false;
		*value = NULL;
		*valuelen = 0;
	}
	*key = k;
	*img = k + off + 4;
	return true;
}

/*
 * Sum of the counts of panes [lo, hi) of one key: one range scan.
 */
int64
sstate_rdb_sum(const StreamStateQueryDef *def, const char *key, uint32 keylen,
			   int64 lo, int64 hi)
{
	Size		plen = key_prefix_len(def, keylen);
	char	   *lok;
	char	   *hik;
	rocksdb_readoptions_t *ro;
	rocksdb_iterator_t *it;
	int64		sum = 0;

	if (lo >= hi)
		return 0;
	lok = palloc(plen + 8);
	hik = palloc(plen + 8);
	ro = rocksdb_readoptions_create();
	put_key_prefix(lok, def, key, keylen);
	memcpy(hik, lok, plen);
	put_pane(lok + plen, lo);
	put_pane(hik + plen, hi);
	rocksdb_readoptions_set_iterate_upper_bound(ro, hik, plen + 8);
	it = rocksdb_create_iterator(rdb, ro);
	for (rocksdb_iter_seek(it, lok, plen + 8); rocksdb_iter_valid(it); rocksdb_iter_next(it))
	{
		size_t		vlen;
		const char *v = rocksdb_iter_value(it, &vlen);

		sum += value_count(v, vlen);
	}
	rocksdb_iter_destroy(it);
	rocksdb_readoptions_destroy(ro);
	pfree(lok);
	pfree(hik);
	return sum;
}

/*
 * The live panes of one key (at or after dead_below, count not 0), in pane
 * order, palloc'd; *npanes 0 when it has none.
 */
StreamStatePane *
sstate_rdb_key_panes(const StreamStateQueryDef *def, const char *key, uint32 keylen,
					 int64 dead_below, int *npanes)
{
	Size		plen = key_prefix_len(def, keylen);
	char	   *lok = palloc(plen + 8);
	char	   *hik = palloc(plen + 8);
	rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
	rocksdb_iterator_t *it;
	StreamStatePane *panes;
	int			n = 0;
	int			cap = 16;

	panes = palloc(sizeof(StreamStatePane) * cap);
	put_key_prefix(lok, def, key, keylen);
	memcpy(hik, lok, plen);
	put_pane(lok + plen, dead_below);
	put_pane(hik + plen, PG_INT64_MAX);
	rocksdb_readoptions_set_iterate_upper_bound(ro, hik, plen + 8);
	it = rocksdb_create_iterator(rdb, ro);
	for (rocksdb_iter_seek(it, lok, plen + 8); rocksdb_iter_valid(it); rocksdb_iter_next(it))
	{
		size_t		klen;
		size_t		vlen;
		const char *k = rocksdb_iter_key(it, &klen);
		const char *v = rocksdb_iter_value(it, &vlen);
		int64		count = value_count(v, vlen);

		if (count == 0 || klen != plen + 8)
			continue;
		if (n == cap)
		{
			cap *= 2;
			panes = repalloc(panes, sizeof(StreamStatePane) * cap);
		}
		panes[n].pane = get_pane(k + plen);
		panes[n].count = count;
		n++;
	}
	rocksdb_iter_destroy(it);
	rocksdb_readoptions_destroy(ro);
	pfree(lok);
	pfree(hik);
	*npanes = n;
	return panes;
}

/*
 * Has nothing gone into the pending batch since it was last written?  (Adds
 * not yet sorted into it may be pending.)  A read cache copies a key only
 * then: what it reads from RocksDB plus what is added later is the state.
 */
bool
sstate_rdb_batch_empty(void)
{
	return rdb_batch == NULL || rocksdb_writebatch_count(rdb_batch) == 0;
}

/*
 * Scan a query's state (or, with class_prefix, the keys of one class) from
 * the raw key from (inclusive; fromlen 0: the start) into buf; see rocks.h.
 */
bool
sstate_rdb_scan(const StreamStateQueryDef *def, int64 dead_below, const char *class_prefix,
				const void *snapshot,
				const char *from, uint32 fromlen, char *buf, uint32 bufsize, uint32 *used,
				char **cursor, uint32 *cursorlen, uint32 *need, char **error)
{
	char		prefix[8];
	uint32		prefixlen = 4;
	char		upper[8];
	rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
	rocksdb_iterator_t *it;
	uint32		pos = 0;
	uint32		rec = 0;		/* start of the current record */
	uint32		npanes = 0;
	const char *cur_img = NULL; /* image of the current record, in buf */
	uint32		cur_len = 0;
	bool		in_record = false;
	char	   *err = NULL;
	SessionItem *items = NULL;	/* sessions: the current key's */
	int			nitems = 0;

	put_be32(prefix, (uint32) def->id);
	if (class_prefix != NULL)
	{
		memcpy(prefix + 4, class_prefix, SSTATE_CLASS_PREFIX);
		prefixlen += SSTATE_CLASS_PREFIX;
	}
	/* the upper bound: the prefix plus one */
	memcpy(upper, prefix, prefixlen);
	{
		int			i;

		for (i = prefixlen - 1; i >= 0; i--)
		{
			if ((unsigned char) upper[i] != 0xff)
			{
				upper[i] = (char) ((unsigned char) upper[i] + 1);
				break;
			}
			upper[i] = 0;
		}
	}
	rocksdb_readoptions_set_iterate_upper_bound(ro, upper, prefixlen);
	if (snapshot != NULL)
		rocksdb_readoptions_set_snapshot(ro, (const rocksdb_snapshot_t *) snapshot);
	it = rocksdb_create_iterator(rdb, ro);
	if (fromlen > 0)
		rocksdb_iter_seek(it, from, fromlen);
	else
		rocksdb_iter_seek(it, prefix, prefixlen);

	*cursorlen = 0;
	*need = 0;
	for (; rocksdb_iter_valid(it); rocksdb_iter_next(it))
	{
		size_t		klen;
		const char *k;
		const char *img;
		uint32		ilen;
		int64		pane;
		int64		count;
		const char *value;
		uint32		vlen;
		uint32		psize;
		bool		same;

		if (!live_entry(it, def, dead_below, &k, &klen, &img, &ilen, &pane, &count,
						&value, &vlen))
			continue;
		psize = def->sql ? 8 + 4 + vlen : 16;
		if (is_sessions(def))
		{
			/* a key's sessions, each as a pane: in one record, whole */
			if (items)
				pfree(items);
			if (!sessions_parse(value, vlen, &items, &nitems) || nitems == 0)
				continue;
			psize = 0;
			for (int i = 0; i < nitems; i++)
				psize += 8 + 4 + items[i].len;
		}

		same = in_record && cur_len == ilen && memcmp(cur_img, img, ilen) == 0;
		if (!same)
		{
			/* close the current record, open a new one */
			if (in_record)
				memcpy(buf + rec + 4 + cur_len, &npanes, 4);
			if (pos + 4 + ilen + 4 + psize > bufsize)
			{
				if (!in_record)
				{
					/* not even one pane of this key fits: ask for more room */
					*need = 4 + ilen + 4 + psize;
					break;
				}
				*cursor = palloc(klen);
				memcpy(*cursor, k, klen);
				*cursorlen = klen;
				in_record = false;
				break;
			}
			rec = pos;
			memcpy(buf + pos, &ilen, 4);
			memcpy(buf + pos + 4, img, ilen);
			cur_img = buf + pos + 4;
			cur_len = ilen;
			pos += 4 + ilen + 4;
			npanes = 0;
			in_record = true;
		}
		else if (pos + psize > bufsize)
		{
			memcpy(buf + rec + 4 + cur_len, &npanes, 4);
			*cursor = palloc(klen);
			memcpy(*cursor, k, klen);
			*cursorlen = klen;
			in_record = false;
			break;
		}
		if (is_sessions(def))
		{
			for (int i = 0; i < nitems; i++)
			{
				memcpy(buf + pos, &items[i].first, 8);
				memcpy(buf + pos + 8, &items[i].len, 4);
				memcpy(buf + pos + 12, items[i].value, items[i].len);
				pos += 8 + 4 + items[i].len;
				npanes++;
			}
			continue;
		}
		memcpy(buf + pos, &pane, 8);
		if (def->sql)
		{
			memcpy(buf + pos + 8, &vlen, 4);
			memcpy(buf + pos + 12, value, vlen);
		}
		else
			memcpy(buf + pos + 8, &count, 8);
		pos += psize;
		npanes++;
	}
	if (items)
		pfree(items);
	if (in_record)
		memcpy(buf + rec + 4 + cur_len, &npanes, 4);
	rocksdb_iter_get_error(it, &err);
	rocksdb_iter_destroy(it);
	rocksdb_readoptions_destroy(ro);
	if (err != NULL)
	{
		*error = pstrdup(err);
		rocksdb_free(err);
		return false;
	}
	*used = pos;
	return true;
}

static int64
int_property(const char *name)
{
	uint64_t	v = 0;

	if (rocksdb_property_int(rdb, name, &v) != 0)
		return -1;
	return (int64) v;
}

void
sstate_rdb_stats(StreamStateDb *db, StreamStateRdbStats *st, uint32 bufsize)
{
	StreamStateQuery *qs = sstate_db_queries(db);
	int			max = (bufsize - offsetof(StreamStateRdbStats, queries)) / sizeof(st->queries[0]);

	memset(st, 0, offsetof(StreamStateRdbStats, queries));
	if (rdb == NULL)
		return;
	st->open = true;
	st->memtable_bytes = int_property("rocksdb.cur-size-all-mem-tables");
	st->block_cache_bytes = (int64) rocksdb_cache_get_usage(rdb_cache);
	st->block_cache_capacity = (int64) rocksdb_cache_get_capacity(rdb_cache);
	st->sst_bytes = int_property("rocksdb.total-sst-files-size");
	st->pending_compaction_bytes = int_property("rocksdb.estimate-pending-compaction-bytes");
	st->running_compactions = int_property("rocksdb.num-running-compactions");
	st->estimated_entries = int_property("rocksdb.estimate-num-keys");
	st->cache_keys = db->rdb_cache_keys;
	st->cache_bytes = db->rdb_cache_bytes;
	sstate_rdb_update_sizes(db);
	for (int i = 0; i < sstate_shared->max_queries && st->nqueries < max; i++)
	{
		if (qs[i].status == SSQ_FREE || qs[i].def.backend != SSB_ROCKSDB)
			continue;
		st->queries[st->nqueries].qid = qs[i].def.id;
		st->queries[st->nqueries].estimated_entries = qs[i].panes;
		st->queries[st->nqueries].estimated_bytes = qs[i].bytes;
		sstate_rdb_cache_query_stats(qs[i].def.id, &st->queries[st->nqueries].cache_keys,
									 &st->queries[st->nqueries].cache_bytes);
		st->nqueries++;
	}
}

/* ---------------------------------------------------------------------
 * Checkpoints
 *
 * A checkpoint of a database with rocksdb queries is its file (memory
 * queries' state and every query's definition) plus a RocksDB checkpoint
 * taken at the same applied position: stream_state/<database>/rocksdb-ckpt/
 * <id>, hard links of the SST files (so incremental by nature) and copies
 * of the rest.  It stays under the data directory, next to the live
 * RocksDB, whatever the checkpoint's target: hard links need the same file
 * system.
 * ---------------------------------------------------------------------
 */

static void
rdb_ckpt_path(Oid dboid, int64 id, char *buf)
{
	snprintf(buf, MAXPGPATH, "stream_state/%u/rocksdb-ckpt/%lld", dboid, (long long) id);
}

bool
sstate_rdb_checkpoint(Oid dboid, int64 id, char **error)
{
	char		dir[MAXPGPATH];
	char		path[MAXPGPATH];
	char	   *err = NULL;
	rocksdb_checkpoint_t *cp;
	struct stat st;

	if (rdb == NULL)
		return true;
	snprintf(dir, sizeof(dir), "stream_state/%u/rocksdb-ckpt", dboid);
	if (MakePGDirectory(dir) < 0 && errno != EEXIST)
	{
		*error = psprintf("could not create directory \"%s\": %m", dir);
		return false;
	}
	rdb_ckpt_path(dboid, id, path);
	if (stat(path, &st) == 0)
		(void) rmtree(path, true);	/* a leftover of a failed attempt */
	cp = rocksdb_checkpoint_object_create(rdb, &err);
	if (err == NULL)
	{
		rocksdb_checkpoint_create(cp, path, 0, &err);
		rocksdb_checkpoint_object_destroy(cp);
	}
	if (err != NULL)
	{
		*error = psprintf("could not create RocksDB checkpoint \"%s\": %s", path, err);
		rocksdb_free(err);
		return false;
	}
	fsync_fname(dir, true);
	return true;
}

bool
sstate_rdb_checkpoint_exists(Oid dboid, int64 id)
{
	char		path[MAXPGPATH];
	char		current[MAXPGPATH];
	struct stat st;

	rdb_ckpt_path(dboid, id, path);
	snprintf(current, sizeof(current), "%s/CURRENT", path);
	return stat(current, &st) == 0;
}

/* Remove the RocksDB checkpoints whose id is not in keep (a List of int64 *). */
void
sstate_rdb_prune_checkpoints(Oid dboid, List *keep)
{
	char		dir[MAXPGPATH];
	DIR		   *d;
	struct dirent *de;

	snprintf(dir, sizeof(dir), "stream_state/%u/rocksdb-ckpt", dboid);
	d = AllocateDir(dir);
	if (d == NULL)
		return;
	while ((de = ReadDir(d, dir)) != NULL)
	{
		char	   *end;
		long long	id;
		bool		kept = false;
		ListCell   *lc;
		char		path[MAXPGPATH];

		if (de->d_name[0] == '.')
			continue;
		id = strtoll(de->d_name, &end, 10);
		foreach(lc, keep)
			if (*(int64 *) lfirst(lc) == id)
				kept = true;
		if (*end == '\0' && kept)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (!rmtree(path, true))
			ereport(LOG,
					(errmsg("stream_state: could not remove directory \"%s\"", path)));
	}
	FreeDir(d);
}

/*
 * Make the live RocksDB a copy of checkpoint id: SST files linked, the rest
 * copied (RocksDB appends to its MANIFEST; the checkpoint's must not
 * change).  The database must be closed.
 */
static bool
replace_with_checkpoint(Oid dboid, int64 id, char **error)
{
	char		src[MAXPGPATH];
	char		live[MAXPGPATH];
	char		tmp[MAXPGPATH];
	char		old[MAXPGPATH];
	DIR		   *d;
	struct dirent *de;
	struct stat st;

	Assert(rdb == NULL);
	rdb_ckpt_path(dboid, id, src);
	rdb_path(dboid, live);
	snprintf(tmp, sizeof(tmp), "%s.restoring", live);
	snprintf(old, sizeof(old), "%s.old", live);
	if (stat(tmp, &st) == 0)
		(void) rmtree(tmp, true);
	if (MakePGDirectory(tmp) < 0)
	{
		*error = psprintf("could not create directory \"%s\": %m", tmp);
		return false;
	}
	d = AllocateDir(src);
	if (d == NULL)
	{
		*error = psprintf("could not open directory \"%s\": %m", src);
		return false;
	}
	while ((de = ReadDir(d, src)) != NULL)
	{
		char		from[MAXPGPATH];
		char		to[MAXPGPATH];
		size_t		n = strlen(de->d_name);

		if (de->d_name[0] == '.')
			continue;
		snprintf(from, sizeof(from), "%s/%s", src, de->d_name);
		snprintf(to, sizeof(to), "%s/%s", tmp, de->d_name);
		if (n > 4 && strcmp(de->d_name + n - 4, ".sst") == 0)
		{
			if (link(from, to) < 0)
			{
				if (errno != EXDEV)
				{
					*error = psprintf("could not link \"%s\" to \"%s\": %m", from, to);
					FreeDir(d);
					return false;
				}
				copy_file(from, to);	/* on another file system */
			}
		}
		else
			copy_file(from, to);
	}
	FreeDir(d);
	fsync_fname(tmp, true);

	/* swap: the live one stays where it is until the copy is in place */
	if (stat(old, &st) == 0)
		(void) rmtree(old, true);
	if (stat(live, &st) == 0 && rename(live, old) < 0)
	{
		*error = psprintf("could not rename \"%s\" to \"%s\": %m", live, old);
		return false;
	}
	if (rename(tmp, live) < 0)
	{
		*error = psprintf("could not rename \"%s\" to \"%s\": %m", tmp, live);
		if (stat(old, &st) == 0 && rename(old, live) < 0)
			ereport(LOG,
					(errcode_for_file_access(),
					 errmsg("could not rename \"%s\" back to \"%s\": %m", old, live)));
		return false;
	}
	{
		char		parent[MAXPGPATH];

		snprintf(parent, sizeof(parent), "stream_state/%u", dboid);
		fsync_fname(parent, true);
	}
	if (stat(old, &st) == 0)
		(void) rmtree(old, true);
	return true;
}

/*
 * At the worker's start, after the checkpoint ckpt_id (0: none) taken at
 * ckpt_applied was loaded into db's query slots: open RocksDB if this
 * database has one or needs one, and line each rocksdb query up with it.
 *
 * from_copy (restore_checkpoint): the live RocksDB becomes the checkpoint's
 * copy first.  A live RocksDB that cannot be opened is replaced by the
 * copy of checkpoint ckpt_id, if there is one; otherwise it is moved aside
 * and the rocksdb queries need a rebuild.  A query RocksDB holds at or
 * after ckpt_applied goes on from RocksDB's own position (skip_below);
 * one it does not hold (its data was lost) needs a rebuild.  lost: the
 * checkpoint's WAL is gone (restore_checkpoint of an old one), every query
 * needs a rebuild and RocksDB's state of them goes.
 */
void
sstate_rdb_restore(StreamStateDb *db, int64 ckpt_id, XLogRecPtr ckpt_applied, bool from_copy,
				   bool lost)
{
	StreamStateQuery *qs = sstate_db_queries(db);
	bool		any = false;
	char	   *error = NULL;
	bool		fresh = false;
	bool		exists;

	for (int i = 0; i < sstate_shared->max_queries; i++)
		if (qs[i].status != SSQ_FREE && qs[i].def.backend == SSB_ROCKSDB)
			any = true;
	{
		char		live[MAXPGPATH];

		rdb_path(db->dboid, live);
		exists = has_manifest(live);
	}
	if (!any && !exists)
		return;

	sstate_rdb_close();

	/*
	 * restore_checkpoint: the checkpoint's RocksDB; or the live one is gone
	 * (or was never made durable): the checkpoint's is the newest there is
	 */
	if ((from_copy || (any && !exists)) && ckpt_id > 0 &&
		sstate_rdb_checkpoint_exists(db->dboid, ckpt_id))
	{
		if (!replace_with_checkpoint(db->dboid, ckpt_id, &error))
			ereport(ERROR,
					(errcode(ERRCODE_IO_ERROR),
					 errmsg("stream_state: could not restore the RocksDB of checkpoint %lld: %s",
							(long long) ckpt_id, error)));
		ereport(LOG,
				(errmsg("stream_state: the RocksDB of database %u is %srestored from checkpoint %lld",
						db->dboid, from_copy ? "" : "missing; ", (long long) ckpt_id)));
	}
	if (!sstate_rdb_open(db->dboid, &error))
	{
		char		live[MAXPGPATH];
		char		aside[MAXPGPATH];

		ereport(LOG,
				(errmsg("stream_state: %s", error)));
		rdb_path(db->dboid, live);
		if (ckpt_id > 0 && sstate_rdb_checkpoint_exists(db->dboid, ckpt_id) &&
			replace_with_checkpoint(db->dboid, ckpt_id, &error) &&
			sstate_rdb_open(db->dboid, &error))
			ereport(LOG,
					(errmsg("stream_state: the RocksDB of database %u is restored from checkpoint %lld instead",
							db->dboid, (long long) ckpt_id)));
		else
		{
			snprintf(aside, sizeof(aside), "%s.damaged.%lld", live,
					 (long long) GetCurrentTimestamp());
			if (rename(live, aside) < 0 && errno != ENOENT)
				ereport(ERROR,
						(errcode_for_file_access(),
						 errmsg("could not rename \"%s\" to \"%s\": %m", live, aside)));
			if (!sstate_rdb_open(db->dboid, &error))
				ereport(ERROR,
						(errcode(ERRCODE_IO_ERROR),
						 errmsg("stream_state: %s", error)));
			ereport(WARNING,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("stream_state: the RocksDB of database %u could not be opened and was moved to \"%s\"",
							db->dboid, aside),
					 errhint("Queries shown as \"needs rebuild\" in stream_state.queries must be rebuilt with stream_state.rebuild(name).")));
			fresh = true;
		}
	}

	for (int i = 0; i < sstate_shared->max_queries; i++)
	{
		StreamStateQuery *q = &qs[i];
		StreamStateRdbMeta m;

		if (q->status == SSQ_FREE || q->def.backend != SSB_ROCKSDB)
			continue;
		if (lost)
		{
			sstate_rdb_drop_query(q->def.id);
			sstate_rdb_late_delete(q->def.id, PG_UINT64_MAX);
			continue;
		}
		if (!fresh && sstate_rdb_get_meta(q->def.id, &m) && m.applied >= ckpt_applied)
		{
			sstate_rdb_adopt_meta(q, &m, SSQ_RUNNING);
			q->paused_lsn = InvalidXLogRecPtr;
			/* whatever its late_to now: an ALTER replayed below may set it */
			sstate_rdb_late_load(q->def.id);
			continue;
		}
		ereport(WARNING,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("stream_state: RocksDB does not hold the state of continuous query \"%s\" at %X/%X",
						q->def.name, LSN_FORMAT_ARGS(ckpt_applied)),
				 errhint("Run SELECT stream_state.rebuild('%s') to recompute it from its source table.",
						 q->def.name)));
		sstate_rdb_drop_query(q->def.id);
		sstate_rdb_late_delete(q->def.id, PG_UINT64_MAX);
		q->status = SSQ_NEEDS_REBUILD;
	}
	if (sstate_rdb_dirty() && !sstate_rdb_write(db, ckpt_applied, ckpt_applied, &error))
		ereport(ERROR,
				(errcode(ERRCODE_IO_ERROR),
				 errmsg("stream_state: could not write to RocksDB: %s", error)));
}

/*
 * Drop the state RocksDB holds of queries that are not rocksdb queries of
 * db now: dropped, never defined again after a restore, or moved out to
 * memory at or before durable, the applied position of a checkpoint that
 * is durable (one taken before the move still needs the state here).
 */
void
sstate_rdb_drop_strays(StreamStateDb *db, XLogRecPtr durable)
{
	StreamStateQuery *qs = sstate_db_queries(db);
	List	   *qids;
	ListCell   *lc;

	if (rdb == NULL)
		return;
	qids = sstate_rdb_meta_qids();
	foreach(lc, qids)
	{
		int32		qid = lfirst_int(lc);
		StreamStateQuery *q = NULL;
		StreamStateRdbMeta m;

		for (int i = 0; i < sstate_shared->max_queries; i++)
			if (qs[i].status != SSQ_FREE && qs[i].def.id == qid)
				q = &qs[i];
		if (q != NULL && q->def.backend == SSB_ROCKSDB)
			continue;
		if (q != NULL && sstate_rdb_get_meta(qid, &m) && m.applied > durable)
			continue;
		sstate_rdb_drop_query(qid);
		sstate_rdb_late_delete(qid, PG_UINT64_MAX);
	}
	list_free(qids);
}

/*
 * A query moves out to memory at the commit at lsn: its state here stays,
 * frozen as of that commit, until sstate_rdb_drop_strays.
 */
void
sstate_rdb_freeze(StreamStateQuery *q, XLogRecPtr lsn)
{
	sstate_rdb_cache_drop(q->def.id);
	put_meta(q, SSTATE_RDB_FROZEN, lsn, lsn);
}

/*
 * Call cb for every key of a query with its live panes (at or after
 * dead_below, count not 0), in key order, as sstate_store_scan does.
 */
void
sstate_rdb_iterate(const StreamStateQueryDef *def, int64 dead_below,
				   sstate_store_scan_cb cb, void *arg)
{
	iterate_db(rdb, def, dead_below, cb, arg);
}

/*
 * The state of query q in RocksDB checkpoint id, for export: the checkpoint
 * is opened read-only in this process (any process; RocksDB's threads start
 * with every signal blocked) and closed again.
 */
void
sstate_rdb_checkpoint_scan(Oid dboid, int64 id, const StreamStateQuery *q,
						   sstate_store_scan_cb cb, void *arg)
{
	char		path[MAXPGPATH];
	rocksdb_options_t *opts;
	rocksdb_mergeoperator_t *merge;
	rocksdb_t  *db;
	char	   *err = NULL;
	sigset_t	all,
				old;

	if (!sstate_rdb_checkpoint_exists(dboid, id))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FILE),
				 errmsg("the RocksDB checkpoint of checkpoint %lld is missing", (long long) id),
				 errdetail("It holds the state of rocksdb-backend query \"%s\".", q->def.name)));
	rdb_ckpt_path(dboid, id, path);
	opts = rocksdb_options_create();
	merge = rocksdb_mergeoperator_create(NULL, no_state, merge_full, merge_partial,
										 merge_delete, merge_name);
	rocksdb_options_set_merge_operator(opts, merge);
	rocksdb_options_set_max_open_files(opts, 64);
	rocksdb_options_set_info_log_level(opts, 4);	/* FATAL: no LOG file */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	db = rocksdb_open_for_read_only(opts, path, 0, &err);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (db == NULL)
	{
		char	   *msg = pstrdup(err ? err : "unknown error");

		if (err)
			rocksdb_free(err);
		rocksdb_options_destroy(opts);
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("could not open the RocksDB checkpoint of checkpoint %lld: %s",
						(long long) id, msg)));
	}
	PG_TRY();
	{
		iterate_db(db, &q->def, q->dead_below, cb, arg);
	}
	PG_FINALLY();
	{
		rocksdb_close(db);
		rocksdb_options_destroy(opts);
	}
	PG_END_TRY();
}

static void
free_value_chunks(StreamStatePane *panes, int npanes)
{
	for (int i = 0; i < npanes; i++)
		pfree((void *) (uintptr_t) panes[i].count);
}

/*
 * Scans and iterations of a query in SQL give each pane's value as its
 * count: a pointer to a palloc'd chunk of uint32 length and bytes, the form
 * checkpoint.c decodes values into (sstate_ckpt_entry_value), valid during
 * the callback.
 */
int64
sstate_rdb_value_chunk(const char *value, uint32 len)
{
	char	   *chunk = palloc(sizeof(uint32) + Max(len, 1));

	memcpy(chunk, &len, sizeof(uint32));
	memcpy(chunk + sizeof(uint32), value, len);
	return (int64) (uintptr_t) chunk;
}

const char *
sstate_rdb_value(int64 ref, uint32 *len)
{
	const char *p = (const char *) (uintptr_t) ref;

	memcpy(len, p, sizeof(uint32));
	return p + sizeof(uint32);
}

static void
iterate_db(rocksdb_t *db, const StreamStateQueryDef *def, int64 dead_below,
		   sstate_store_scan_cb cb, void *arg)
{
	char		lo[4],
				hi[4];
	rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
	rocksdb_iterator_t *it;
	char	   *key = NULL;
	uint32		keylen = 0;
	int			npanes = 0;
	int			cap = 16;
	StreamStatePane *panes = palloc(sizeof(StreamStatePane) * cap);
	char	   *err = NULL;

	put_be32(lo, (uint32) def->id);
	put_be32(hi, (uint32) def->id + 1);
	rocksdb_readoptions_set_iterate_upper_bound(ro, hi, sizeof(hi));
	it = rocksdb_create_iterator(db, ro);
	for (rocksdb_iter_seek(it, lo, sizeof(lo)); rocksdb_iter_valid(it); rocksdb_iter_next(it))
	{
		size_t		klen;
		const char *k;
		const char *img;
		uint32		ilen;
		int64		pane;
		int64		count;
		const char *value;
		uint32		vlen;

		if (!live_entry(it, def, dead_below, &k, &klen, &img, &ilen, &pane, &count,
						&value, &vlen))
			continue;
		if (key == NULL || keylen != ilen || memcmp(key, img, ilen) != 0)
		{
			if (key != NULL && npanes > 0)
				cb(arg, def->id, key, keylen, panes, npanes);
			if (def->sql)
				free_value_chunks(panes, npanes);
			if (key != NULL)
				pfree(key);
			key = palloc(Max(ilen, 1));
			memcpy(key, img, ilen);
			keylen = ilen;
			npanes = 0;
		}
		if (is_sessions(def))
		{
			/* a key's sessions, each as a pane */
			SessionItem *items;
			int			nitems;

			if (!sessions_parse(value, vlen, &items, &nitems))
				continue;
			for (int i = 0; i < nitems; i++)
			{
				if (npanes == cap)
				{
					cap *= 2;
					panes = repalloc(panes, sizeof(StreamStatePane) * cap);
				}
				panes[npanes].pane = items[i].first;
				panes[npanes].count = sstate_rdb_value_chunk(items[i].value, items[i].len);
				npanes++;
			}
			if (items)
				pfree(items);
			continue;
		}
		if (npanes == cap)
		{
			cap *= 2;
			panes = repalloc(panes, sizeof(StreamStatePane) * cap);
		}
		panes[npanes].pane = pane;
		panes[npanes].count = def->sql ? sstate_rdb_value_chunk(value, vlen) : count;
		npanes++;
	}
	if (key != NULL && npanes > 0)
		cb(arg, def->id, key, keylen, panes, npanes);
	if (def->sql)
		free_value_chunks(panes, npanes);
	rocksdb_iter_get_error(it, &err);
	rocksdb_iter_destroy(it);
	rocksdb_readoptions_destroy(ro);
	if (err != NULL)
		rdb_read_error(err);
}

/* ---------------------------------------------------------------------
 * Failure and recovery
 *
 * A write or flush that fails (disk full, an unwritable directory, an I/O
 * error) puts RocksDB into an error state in which every later write fails
 * too; writes between flushes stayed in memtables that are now lost.  The
 * worker closes it and pauses every rocksdb query (SSQ_PAUSED_DISK): the
 * main reader skips them, checkpoints are refused (so the slot keeps their
 * WAL), and reads of them fail with a clear error; memory queries go on.
 * Every second it opens RocksDB again; once that works, each query goes on
 * from what RocksDB made durable (its meta) as a paused query catching up:
 * a reader of its own re-applies its commits from the kept WAL.
 * ---------------------------------------------------------------------
 */

static bool rdb_broken = false;
static bool rdb_full = false;

/* Can nothing be written to RocksDB now (failed, or its disk full)? */
bool
sstate_rdb_broken(void)
{
	return rdb_broken || rdb_full;
}

/*
 * Is there stream_state.rocksdb_min_free_space on the file system of this
 * database's RocksDB?
 *
 * The reserve keeps RocksDB itself from running out of space: a flush or
 * compaction that hits ENOSPC puts it into an error state, and the build
 * of RocksDB 7.8 in Debian 12 then fails an assertion and aborts the
 * process (WritableFileWriter::AssertFalseAndGetStatusForPrevError), which
 * makes PostgreSQL restart every backend.  So the worker stops writing
 * while there is still room, as PostgreSQL's own WAL never can.
 */
static bool
space_ok(Oid dboid)
{
	char		path[MAXPGPATH];
	struct statvfs st;

	if (sstate_rocksdb_min_free_space_kb <= 0)
		return true;
	rdb_path(dboid, path);
	if (statvfs(path, &st) != 0)
		return true;			/* the next write says what is wrong */
	return (uint64) st.f_bavail * st.f_frsize >= (uint64) sstate_rocksdb_min_free_space_kb * 1024;
}

/*
 * After a batch was written at applied (with restart): if the disk is
 * getting full, pause every running rocksdb query there.  RocksDB stays
 * open and holds them up to applied; sstate_rdb_retry resumes them.
 */
void
sstate_rdb_check_space(StreamStateDb *db, XLogRecPtr applied, XLogRecPtr restart)
{
	StreamStateQuery *qs = sstate_db_queries(db);
	int			n = 0;

	if (rdb == NULL || rdb_broken || rdb_full || space_ok(db->dboid))
		return;
	rdb_full = true;
	sstate_rdb_cache_drop(0);
	LWLockAcquire(&db->lock, LW_EXCLUSIVE);
	db->rdb_full = true;
	for (int i = 0; i < sstate_shared->max_queries; i++)
	{
		StreamStateQuery *q = &qs[i];

		if (q->status != SSQ_RUNNING || q->def.backend != SSB_ROCKSDB)
			continue;
		q->status = SSQ_PAUSED_DISK;
		q->paused_lsn = applied;
		q->paused_restart = restart;
		n++;
	}
	LWLockRelease(&db->lock);
	ereport(WARNING,
			(errcode(ERRCODE_DISK_FULL),
			 errmsg("stream_state: less than stream_state.rocksdb_min_free_space (%d kB) is free for the RocksDB of database %u",
					sstate_rocksdb_min_free_space_kb, db->dboid),
			 errdetail("%d rocksdb-backend queries are paused at %X/%X; their commits stay in the kept WAL and memory-backend queries go on.  They catch up once the space is back.",
					   n, LSN_FORMAT_ARGS(applied)),
			 errhint("Free disk space on the file system of \"stream_state/%u/rocksdb\".", db->dboid)));
}

void
sstate_rdb_fail(StreamStateDb *db, XLogRecPtr at, const char *error)
{
	StreamStateQuery *qs = sstate_db_queries(db);
	int			n = 0;

	/* whatever RocksDB still holds unflushed is re-applied from WAL */
	if (rdb_batch)
		rocksdb_writebatch_clear(rdb_batch);
	pending_n = 0;
	pending_keys_len = 0;
	rdb_pending = false;
	nlate_journal = 0;
	values_reset();
	sstate_rdb_close();
	rdb_broken = true;
	rdb_full = false;
	LWLockAcquire(&db->lock, LW_EXCLUSIVE);
	db->rdb_full = false;
	for (int i = 0; i < sstate_shared->max_queries; i++)
	{
		StreamStateQuery *q = &qs[i];

		if (q->status == SSQ_FREE || q->def.backend != SSB_ROCKSDB ||
			q->status == SSQ_NEEDS_REBUILD || q->status == SSQ_PAUSED_DISK)
			continue;
		q->status = SSQ_PAUSED_DISK;
		if (XLogRecPtrIsInvalid(q->paused_lsn) || q->paused_lsn > at)
			q->paused_lsn = at;
		n++;
	}
	LWLockRelease(&db->lock);
	ereport(WARNING,
			(errcode(ERRCODE_IO_ERROR),
			 errmsg("stream_state: the RocksDB of database %u failed: %s", db->dboid, error),
			 errdetail("%d rocksdb-backend queries are paused; their commits stay in the kept WAL and memory-backend queries go on.  The worker tries RocksDB again every second.", n),
			 errhint("Free disk space on the file system of \"stream_state/%u/rocksdb\", or make it writable.", db->dboid)));
}

/*
 * Try RocksDB again.  On success every query paused by sstate_rdb_fail
 * catches up from RocksDB's durable position; returns true.
 */
bool
sstate_rdb_retry(StreamStateDb *db)
{
	StreamStateQuery *qs = sstate_db_queries(db);
	char	   *error = NULL;
	int			n = 0;
	List	   *reload = NIL;
	ListCell   *lc;

	if (rdb_full && !rdb_broken)
	{
		if (!space_ok(db->dboid))
			return false;
		/* RocksDB holds them up to where they paused: catch up from there */
		rdb_full = false;
		LWLockAcquire(&db->lock, LW_EXCLUSIVE);
		db->rdb_full = false;
		for (int i = 0; i < sstate_shared->max_queries; i++)
			if (qs[i].status == SSQ_PAUSED_DISK)
			{
				qs[i].status = SSQ_PAUSED_MEMORY;
				n++;
			}
		LWLockRelease(&db->lock);
		ereport(LOG,
				(errmsg("stream_state: the RocksDB of database %u has space again; %d queries catch up from the kept WAL",
						db->dboid, n)));
		return true;
	}
	if (!rdb_broken)
		return true;
	if (!sstate_rdb_open(db->dboid, &error))
		return false;
	rdb_broken = false;
	LWLockAcquire(&db->lock, LW_EXCLUSIVE);
	for (int i = 0; i < sstate_shared->max_queries; i++)
	{
		StreamStateQuery *q = &qs[i];
		StreamStateRdbMeta m;

		if (q->status != SSQ_PAUSED_DISK)
			continue;
		reload = lappend_int(reload, q->def.id);
		if (sstate_rdb_get_meta(q->def.id, &m) && m.status != SSTATE_RDB_FROZEN)
		{
			sstate_rdb_adopt_meta(q, &m, SSQ_PAUSED_MEMORY);
			q->paused_lsn = m.applied;
			q->paused_restart = m.restart;
		}
		else if (!XLogRecPtrIsInvalid(q->defined_lsn) && MyReplicationSlot != NULL &&
				 q->defined_lsn >= MyReplicationSlot->data.restart_lsn)
		{
			/*
			 * Defined since the last checkpoint and never flushed: all of it
			 * is in the kept WAL, from its definition on.
			 */
			q->status = SSQ_PAUSED_MEMORY;
			q->paused_lsn = q->defined_lsn;
			q->paused_restart = MyReplicationSlot->data.restart_lsn;
			q->skip_below = InvalidXLogRecPtr;
			q->max_event_us = SSTATE_NO_TIME;
			q->dead_below = PG_INT64_MIN;
			q->events_applied = 0;
			q->late_events = 0;
			q->skipped = 0;
			sstate_rdb_set_dead_below(q->def.id, PG_INT64_MIN);
		}
		else
		{
			/* its state is gone with the memtables, and its WAL too */
			q->status = SSQ_NEEDS_REBUILD;
			q->paused_lsn = InvalidXLogRecPtr;
		}
		n++;
	}
	LWLockRelease(&db->lock);

	/*
	 * The late groups of the batch that failed are in the memory store's
	 * lists and will be derived again by the catch-up: the lists become
	 * what RocksDB holds (nothing for a query that starts again from its
	 * definition).
	 */
	foreach(lc, reload)
		sstate_rdb_late_load(lfirst_int(lc));
	list_free(reload);
	ereport(LOG,
			(errmsg("stream_state: the RocksDB of database %u can be written again; %d queries catch up from the kept WAL",
					db->dboid, n)));
	return true;
}
