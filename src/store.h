/*-------------------------------------------------------------------------
 *
 * store.h
 *	  The state store interface: per (query, key) a sorted array of panes.
 *
 * IDENTIFICATION
 *	  src/store.h
 *-------------------------------------------------------------------------
 */
#ifndef STREAM_STATE_STORE_H
#define STREAM_STATE_STORE_H

#include <signal.h>

#include "stream_state.h"

/*
 * One pane of one key.  count is the first aggregate; later aggregates add
 * fixed-width slots (or DSA pointers to variable-width partial states) after
 * it, with the per-query stride kept in the query definition.
 */
typedef struct StreamStatePane
{
	int64		pane;
	int64		count;
} StreamStatePane;

/* A database's store, as one process sees it (opaque) */
typedef struct StreamStateStore StreamStateStore;

/* What a reader's scan callback is given for one key */
typedef void (*sstate_store_scan_cb) (void *arg, int32 qid,
									  const char *key, uint32 keylen,
									  const StreamStatePane *panes, int npanes);

extern StreamStateStore *sstate_store_create(dsa_area *area);
extern StreamStateStore *sstate_store_attach(dsa_area *area, dsa_pointer handle);
extern dsa_pointer sstate_store_handle(StreamStateStore *store);
extern void sstate_store_detach(StreamStateStore *store);
extern void sstate_store_destroy(StreamStateStore *store);

/* worker only */
extern bool sstate_store_add(StreamStateStore *store, StreamStateQuery *q,
							 const char *key, uint32 keylen,
							 int64 pane, int64 count);
extern void sstate_store_evict(StreamStateStore *store, StreamStateQuery *q,
							   int64 dead_below);
extern void sstate_store_drop_idle(StreamStateStore *store, StreamStateQuery *q,
								   int64 idle_below);
extern void sstate_store_evict_sessions(StreamStateStore *store, StreamStateQuery *q,
										int64 closed_until);
extern void sstate_store_drop_query(StreamStateStore *store, StreamStateQuery *q);

/* values of queries in SQL: a pane's count refers to its partial states */
typedef bool (*sstate_store_merge_cb) (void *arg, const char *old, uint32 oldlen,
									   const char *add, uint32 addlen,
									   const char **out, uint32 *outlen);
extern void sstate_store_set_values(StreamStateStore *store, int32 qid, bool on);
extern bool sstate_store_is_values(StreamStateStore *store, int32 qid);
extern int64 sstate_store_value_make(StreamStateStore *store, const char *bytes, uint32 len);
extern void sstate_store_value_free(StreamStateStore *store, int64 ref);
extern bool sstate_store_merge_value(StreamStateStore *store, StreamStateQuery *q,
									 const char *key, uint32 keylen, int64 pane,
									 const char *value, uint32 len,
									 sstate_store_merge_cb merge, void *arg);
extern bool sstate_store_merge_session(StreamStateStore *store, StreamStateQuery *q,
									   const char *key, uint32 keylen, int64 first, int64 last,
									   const char *states, uint32 len, int64 closed_until,
									   sstate_store_merge_cb merge, void *arg);
extern const char *sstate_store_value(StreamStateStore *store, int64 ref, uint32 *len);
extern void sstate_store_values_commit(StreamStateStore *store);
extern void sstate_store_values_undo(StreamStateStore *store,
									 StreamStateQuery *(*owner) (int32 qid));

/*
 * late_to: groups of late events of a query, each from one commit, kept
 * until written into the late_to table (store_memory.c, "Late groups")
 */
typedef struct StreamStateLateGroup
{
	XLogRecPtr	lsn;			/* the commit's record */
	int64		commit_us;		/* its time, Unix us */
	int64		from_us;		/* the events' times: a pane [from, to); a */
	int64		to_us;			/* session group's first and last event */
	int64		count;
	const char *key;
	uint32		keylen;
	const char *value;			/* partial states (none for counts) */
	uint32		valuelen;
} StreamStateLateGroup;

typedef void (*sstate_store_late_cb) (void *arg, int32 qid, const StreamStateLateGroup *g);

extern bool sstate_store_late_add(StreamStateStore *store, int32 qid,
								  const StreamStateLateGroup *g, bool journal);
extern void sstate_store_late_trim(StreamStateStore *store, int32 qid, XLogRecPtr upto);
extern void sstate_store_late_drop(StreamStateStore *store, int32 qid);
extern void sstate_store_late_info(StreamStateStore *store, int32 qid, int64 *count,
								   int64 *bytes, XLogRecPtr *last);
extern void sstate_store_late_scan(StreamStateStore *store, int32 qid, XLogRecPtr after,
								   XLogRecPtr upto, sstate_store_late_cb cb, void *arg);

/* read caches of rocksdb queries (rocks_cache.c): negated query ids */
extern bool sstate_store_add_cached(StreamStateStore *store, StreamStateQuery *q,
									const char *key, uint32 keylen,
									int64 pane, int64 count);
extern void sstate_store_drop_cached_partition(StreamStateStore *store, int n,
											   StreamStateQuery *(*owner) (int32 qid));
extern int	sstate_store_partitions(void);
extern bool sstate_store_sum_cached(StreamStateStore *store, int32 qid,
									const char *key, uint32 keylen,
									int64 pane_lo, int64 pane_hi, int64 *sum);

/* copy-on-write snapshots for checkpoints */
extern void sstate_store_cow_begin(uint32 epoch, sstate_store_scan_cb cb, void *arg);
extern void sstate_store_cow_end(void);
extern void sstate_store_snapshot(StreamStateStore *store, uint32 epoch, int part, int nparts,
								  sstate_store_scan_cb cb, void *arg,
								  volatile sig_atomic_t *stop);

/* restoring a checkpoint (worker only) */
typedef enum StreamStateLoadResult
{
	SSL_OK,
	SSL_OUT_OF_MEMORY,
	SSL_DUPLICATE
} StreamStateLoadResult;

extern StreamStateLoadResult sstate_store_load(StreamStateStore *store, StreamStateQuery *q,
											   const char *key, uint32 keylen,
											   const StreamStatePane *panes, int npanes);
extern void sstate_store_load_end(void);
extern void sstate_store_presize(StreamStateStore *store, uint64 nkeys);
extern void sstate_store_trim(StreamStateStore *store);

/* readers */
extern int64 sstate_store_sum(StreamStateStore *store, int32 qid,
							  const char *key, uint32 keylen,
							  int64 pane_lo, int64 pane_hi);
extern void sstate_store_scan(StreamStateStore *store, int32 qid,
							  sstate_store_scan_cb cb, void *arg);
extern void sstate_store_scan_class(StreamStateStore *store, int32 qid,
									const char *key, uint32 keylen,
									sstate_store_scan_cb cb, void *arg);

/* accounting: bytes one (key, pane) costs beyond the key's own entry */
extern Size sstate_store_entry_bytes(void);

#endif							/* STREAM_STATE_STORE_H */
