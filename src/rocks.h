/*-------------------------------------------------------------------------
 *
 * rocks.h
 *	  The rocksdb backend: one embedded RocksDB per database, opened only by
 *	  that database's worker (rocks.c), and the requests through which
 *	  other processes read it (rocks_request.c).
 *
 * IDENTIFICATION
 *	  src/rocks.h
 *-------------------------------------------------------------------------
 */
#ifndef STREAM_STATE_ROCKS_H
#define STREAM_STATE_ROCKS_H

#include "nodes/pg_list.h"

#include "stream_state.h"
#include "store.h"

/*
 * What RocksDB holds durably of one query, written in the same WriteBatch
 * as the state it describes: every commit before applied is in the state,
 * and reading WAL from restart sees every message of the transactions open
 * at applied.
 */
typedef struct StreamStateRdbMeta
{
	uint32		version;
	int32		status;			/* SSQ_RUNNING or SSQ_NEEDS_REBUILD */
	uint64		applied;
	uint64		restart;
	int64		max_event_us;
	int64		dead_below;
	uint64		events_applied;
	uint64		late_events;
	uint64		skipped;
} StreamStateRdbMeta;

#define SSTATE_RDB_META_VERSION	1

/*
 * StreamStateRdbMeta.status of a query moved out of RocksDB at applied:
 * its state there is as of that commit, kept until a checkpoint after the
 * move is durable (a restore from an older one moves it out again).
 */
#define SSTATE_RDB_FROZEN		(-1)

/* worker: the database */
extern bool sstate_rdb_open(Oid dboid, char **error);
extern bool sstate_rdb_is_open(void);
extern void sstate_rdb_reload(void);
extern void sstate_rdb_close(void);
extern void sstate_rdb_remove(Oid dboid);
extern bool sstate_rdb_get_meta(int32 qid, StreamStateRdbMeta *meta);
extern List *sstate_rdb_meta_qids(void);

/* worker: applying (into a pending batch, written by sstate_rdb_write) */
extern void sstate_rdb_add(const StreamStateQueryDef *def, const char *key, uint32 keylen,
						   int64 pane, int64 count);
extern void sstate_rdb_drop_query(int32 qid);
extern void sstate_rdb_merge_value(const StreamStateQueryDef *def, const char *key, uint32 keylen,
								   int64 pane, const char *value, uint32 len,
								   sstate_store_merge_cb merge, void *arg);
extern void sstate_rdb_put_value(const StreamStateQueryDef *def, const char *key, uint32 keylen,
								 int64 pane, const char *value, uint32 len);
extern void sstate_rdb_values_commit(void);
extern void sstate_rdb_values_undo(void);
extern int64 sstate_rdb_drop_idle(const StreamStateQueryDef *def, int64 idle_below);

/*
 * Session windows: a key's sessions are one value, under this pane (see
 * rocks.c); scans and iterations give each session as a pane (its first
 * event) with its value (last event, then the states), as the memory
 * store does.
 */
#define SSTATE_RDB_SESSIONS_PANE	INT64CONST(0)
extern void sstate_rdb_merge_session(const StreamStateQueryDef *def, const char *key,
									 uint32 keylen, int64 first, int64 last,
									 const char *states, uint32 len, int64 closed_until,
									 sstate_store_merge_cb merge, void *arg);
extern int64 sstate_rdb_evict_sessions(const StreamStateQueryDef *def, int64 closed_until);
extern void sstate_rdb_put_sessions(const StreamStateQueryDef *def, const char *key,
									uint32 keylen, const StreamStatePane *panes, int npanes,
									const char *(*value) (void *arg, int64 ref, uint32 *len),
									void *arg);
extern void sstate_rdb_set_dead_below(int32 qid, int64 dead_below);
extern void sstate_rdb_late_init(StreamStateStore *store);
extern void sstate_rdb_late_put(int32 qid, const StreamStateLateGroup *g, bool journal);
extern void sstate_rdb_late_delete(int32 qid, XLogRecPtr upto);
extern void sstate_rdb_late_load(int32 qid);
extern bool sstate_rdb_dirty(void);
extern bool sstate_rdb_write(StreamStateDb *db, XLogRecPtr applied, XLogRecPtr restart,
							 char **error);
extern bool sstate_rdb_flush(char **error);
extern void sstate_rdb_update_sizes(StreamStateDb *db);
extern void sstate_rdb_drop_strays(StreamStateDb *db, XLogRecPtr durable);
extern void sstate_rdb_iterate(const StreamStateQueryDef *def, int64 dead_below,
							   sstate_store_scan_cb cb, void *arg);
extern void sstate_rdb_freeze(StreamStateQuery *q, XLogRecPtr lsn);
extern void sstate_rdb_adopt_meta(StreamStateQuery *q, const StreamStateRdbMeta *m,
								  StreamStateQueryStatus status);

/* worker: failure and recovery */
extern bool sstate_rdb_broken(void);
extern void sstate_rdb_fail(StreamStateDb *db, XLogRecPtr at, const char *error);
extern bool sstate_rdb_retry(StreamStateDb *db);
extern void sstate_rdb_check_space(StreamStateDb *db, XLogRecPtr applied, XLogRecPtr restart);

/* worker: checkpoints and restore */
extern bool sstate_rdb_checkpoint(Oid dboid, int64 id, char **error);
extern bool sstate_rdb_checkpoint_exists(Oid dboid, int64 id);
extern void sstate_rdb_prune_checkpoints(Oid dboid, List *keep);
extern void sstate_rdb_checkpoint_scan(Oid dboid, int64 id, const StreamStateQuery *q,
									   sstate_store_scan_cb cb, void *arg);
extern void sstate_rdb_restore(StreamStateDb *db, int64 ckpt_id, XLogRecPtr ckpt_applied,
							   bool from_copy, bool lost);

/* worker: reading */
extern int64 sstate_rdb_sum(const StreamStateQueryDef *def, const char *key, uint32 keylen,
							int64 lo, int64 hi);
extern StreamStatePane *sstate_rdb_key_panes(const StreamStateQueryDef *def,
											 const char *key, uint32 keylen,
											 int64 dead_below, int *npanes);
extern bool sstate_rdb_batch_empty(void);

/* rocks_cache.c: the read cache of rocksdb queries */
extern void sstate_rdb_cache_init(StreamStateDb *db, StreamStateStore *table);
extern bool sstate_rdb_cache_active(void);
extern bool sstate_rdb_cache_has(int32 qid);
extern void sstate_rdb_cache_add(int32 qid, const char *key, uint32 keylen,
								 int64 pane, int64 count);
extern void sstate_rdb_cache_evict(int32 qid, int64 dead_below);
extern void sstate_rdb_cache_drop(int32 qid);
extern bool sstate_rdb_cache_shrink(void);
extern void sstate_rdb_cache_poll(void);
extern void sstate_rdb_cache_query_stats(int32 qid, int64 *keys, int64 *bytes);
extern int64 sstate_rdb_cache_read(StreamStateDb *db, const StreamStateQueryDef *def,
								   const char *key, uint32 keylen, int64 lo, int64 hi);

/*
 * Scans and iterations of queries in SQL give a pane's value as its count:
 * a pointer to uint32 length and bytes (palloc'd, valid during the
 * callback), read with sstate_rdb_value.
 */
extern int64 sstate_rdb_value_chunk(const char *value, uint32 len);
extern const char *sstate_rdb_value(int64 ref, uint32 *len);

/*
 * A scan writes records into buf: uint32 image length, image, uint32 number
 * of panes, then per pane int64 pane and int64 count (queries in SQL:
 * int64 pane, uint32 value length, value).  It stops before the
 * record that would not fit and says where to go on (*cursor, a raw RocksDB
 * key, palloc'd; *cursorlen 0 when done).  One key's panes may be split over
 * two records; readers merge neighbours with the same image.  When not even
 * the first record fits, *need says how many bytes it takes.
 */
extern bool sstate_rdb_scan(const StreamStateQueryDef *def, int64 dead_below,
							const char *class_prefix, const void *snapshot,
							const char *from, uint32 fromlen,
							char *buf, uint32 bufsize, uint32 *used,
							char **cursor, uint32 *cursorlen, uint32 *need,
							char **error);

/* Scan snapshots: every page of a scan reads what its first page saw */
extern const void *sstate_rdb_scan_snapshot(int slot, int nslots, bool first);
extern void sstate_rdb_scan_snapshot_release(int slot);
extern void sstate_rdb_scan_snapshots_expire(bool all);

/* rocksdb_stats: one database row, then one per query */
typedef struct StreamStateRdbStats
{
	bool		open;			/* false: this database has no RocksDB open */
	int64		memtable_bytes;
	int64		block_cache_bytes;
	int64		block_cache_capacity;
	int64		sst_bytes;
	int64		pending_compaction_bytes;
	int64		running_compactions;
	int64		estimated_entries;
	int64		cache_keys;		/* the read cache */
	int64		cache_bytes;
	int32		nqueries;
	struct
	{
		int32		qid;
		int64		estimated_entries;
		int64		estimated_bytes;
		int64		cache_keys;
		int64		cache_bytes;
	}			queries[FLEXIBLE_ARRAY_MEMBER];
} StreamStateRdbStats;

extern void sstate_rdb_stats(StreamStateDb *db, StreamStateRdbStats *st, uint32 bufsize);

/* rocks_request.c: reads by other processes, answered by the worker */
extern Size sstate_rdb_requests_size(void);
extern void sstate_rdb_requests_init(void *place, bool found);
extern void sstate_rdb_serve(StreamStateDb *db);
extern void sstate_rdb_requests_reset(StreamStateDb *db);

extern int64 sstate_rdb_request_sum(StreamStateDb *db, const StreamStateQueryDef *def,
									const char *key, uint32 keylen, int64 lo, int64 hi);
extern void sstate_rdb_request_scan(StreamStateDb *db, const StreamStateQueryDef *def,
									const char *class_key, uint32 class_keylen,
									sstate_store_scan_cb cb, void *arg);
extern StreamStateRdbStats *sstate_rdb_request_stats(StreamStateDb *db);

#endif							/* STREAM_STATE_ROCKS_H */
