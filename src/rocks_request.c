/*-------------------------------------------------------------------------
 *
 * rocks_request.c
 *	  Reads of rocksdb-backend queries: a backend asks the worker, which
 *	  alone has the database's RocksDB open, and waits for its answer.
 *
 * Why ask the worker rather than open RocksDB in each backend as a
 * secondary instance (rocksdb_open_as_secondary): measured on the
 * development machine with RocksDB 7.8, opening a secondary took 2.7 s
 * and each rocksdb_try_catch_up_with_primary 2.3-3.7 ms, which a read
 * that must see this session's last commit (read_consistency) would pay
 * every time; and a secondary sees only what the primary wrote to its WAL,
 * which ours does not write (rocks.c).  A request to the worker costs two
 * latch wake-ups.
 *
 * Protocol.  Shared memory holds one request slot per PGPROC (indexed by
 * pgprocno), so a backend never waits for a slot.  A backend fills its
 * slot, marks it POSTED, bumps its database's rdb_posted counter and sets
 * the worker's latch; the worker (sstate_rdb_serve, called between
 * batches of WAL records and whenever it wakes) marks it SERVING, answers
 * into the slot, marks it DONE and sets the backend's latch.  A backend
 * that gives up (cancel, timeout) marks a SERVING slot ABANDONED, and the
 * worker frees it when done; a worker that starts frees every slot of its
 * database (sstate_rdb_requests_reset).  The slot's spinlock guards state.
 *
 * A read waits for the worker's applied position first (read_begin), so
 * the answer holds every commit the read must see: the worker writes a
 * round's commits to RocksDB before it publishes the round's position.
 *
 * Scans (window_counts, window_result, the state view, emit_to) go a page
 * at a time, each continuing at the raw RocksDB key where the last one
 * stopped; a key's panes split over two pages are merged again here.  The
 * worker applies rounds between pages, so every page reads the RocksDB
 * snapshot the scan's first page took (rocks.c, "Scan snapshots").  A
 * page of a query in SQL carries each pane's value (its partial states)
 * instead of a count; a value larger than half a page gets a page of its
 * own in a DSM segment, as a large key does.
 *
 * IDENTIFICATION
 *	  src/rocks_request.c
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/twophase.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/dsm.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "rocks.h"

#define RQ_BUF				(32 * 1024)

typedef enum
{
	RQ_FREE = 0,
	RQ_POSTED,
	RQ_SERVING,
	RQ_DONE,
	RQ_ABANDONED
} RequestState;

typedef enum
{
	RQK_SUM = 1,
	RQK_SCAN,
	RQK_STATS
} RequestKind;

typedef struct RdbRequest
{
	slock_t		mutex;
	RequestState state;
	Oid			dboid;
	RequestKind kind;
	Latch	   *latch;			/* the asking backend's */
	StreamStateQueryDef def;
	int64		lo;
	int64		hi;
	int64		dead_below;
	bool		classed_scan;	/* RQK_SCAN of the keys of one class */
	bool		scan_first;		/* RQK_SCAN: its first page (a new snapshot) */
	dsm_handle	seg;			/* DSM_HANDLE_INVALID: request and answer in
								 * buf; else in this segment (large keys) */
	uint32		segsize;
	uint32		keylen;			/* request: key image first */
	uint32		fromlen;		/* request: where a scan goes on, after it */
	/* the answer */
	int64		sum;
	uint32		used;			/* answer bytes first */
	uint32		cursorlen;		/* scan: where to go on, after them */
	uint32		need;			/* scan: a segment this large is needed */
	char		error[256];		/* empty: no error */
	char		buf[RQ_BUF];
} RdbRequest;

static RdbRequest *requests = NULL;
static int	nrequests = 0;
static uint32 served_seen = 0;

static int
request_count(void)
{
	return MaxBackends + NUM_AUXILIARY_PROCS + max_prepared_xacts;
}

Size
sstate_rdb_requests_size(void)
{
	return mul_size(request_count(), sizeof(RdbRequest));
}

void
sstate_rdb_requests_init(void *place, bool found)
{
	requests = (RdbRequest *) place;
	nrequests = request_count();
	if (!found)
	{
		for (int i = 0; i < nrequests; i++)
		{
			SpinLockInit(&requests[i].mutex);
			requests[i].state = RQ_FREE;
		}
	}
}

/* A starting worker: no request of its database is being answered. */
void
sstate_rdb_requests_reset(StreamStateDb *db)
{
	for (int i = 0; i < nrequests; i++)
	{
		RdbRequest *r = &requests[i];

		SpinLockAcquire(&r->mutex);
		if (r->dboid == db->dboid && r->state == RQ_ABANDONED)
			r->state = RQ_FREE;
		else if (r->dboid == db->dboid && r->state == RQ_SERVING)
			r->state = RQ_POSTED;	/* answer it again */
		SpinLockRelease(&r->mutex);
	}
	served_seen = pg_atomic_read_u32(&db->rdb_posted) - 1;
}

/* ---------------------------------------------------------------------
 * The worker's side
 * ---------------------------------------------------------------------
 */

static void
serve_one(StreamStateDb *db, RdbRequest *r)
{
	char	   *error = NULL;
	char	   *io = r->buf;
	uint32		iosize = RQ_BUF;
	dsm_segment *seg = NULL;

	r->error[0] = '\0';
	r->used = 0;
	r->cursorlen = 0;
	r->need = 0;
	r->sum = 0;
	if (!sstate_rdb_is_open() && r->kind != RQK_STATS)
	{
		strlcpy(r->error, "the RocksDB of this database is not open", sizeof(r->error));
		return;
	}
	if (r->seg != DSM_HANDLE_INVALID)
	{
		seg = dsm_attach(r->seg);
		if (seg == NULL)
		{
			strlcpy(r->error, "could not attach to the reader's shared memory segment",
					sizeof(r->error));
			return;
		}
		io = dsm_segment_address(seg);
		iosize = r->segsize;
	}
	switch (r->kind)
	{
		case RQK_SUM:
			r->sum = sstate_rdb_cache_read(db, &r->def, io, r->keylen, r->lo, r->hi);
			break;
		case RQK_SCAN:
			{
				char		class_prefix[SSTATE_CLASS_PREFIX];
				char	   *from = NULL;
				char	   *cursor = NULL;
				uint32		fromlen = r->fromlen;
				uint32		used = 0;
				uint32		cursorlen = 0;
				uint32		need = 0;
				const void *snap;

				if (r->classed_scan)
					memcpy(class_prefix, io, SSTATE_CLASS_PREFIX);
				if (fromlen > 0)
				{
					from = palloc(fromlen);
					memcpy(from, io + r->keylen, fromlen);
				}
				snap = sstate_rdb_scan_snapshot(r - requests, nrequests, r->scan_first);
				if (snap == NULL)
				{
					strlcpy(r->error, "the RocksDB of this database was opened again during the scan; read again",
							sizeof(r->error));
					break;
				}
				/* half for the records, the rest for where to go on */
				if (!sstate_rdb_scan(&r->def, r->dead_below,
									 r->classed_scan ? class_prefix : NULL, snap,
									 from, fromlen, io, iosize / 2, &used,
									 &cursor, &cursorlen, &need, &error))
				{
					sstate_rdb_scan_snapshot_release(r - requests);
					strlcpy(r->error, error, sizeof(r->error));
					break;
				}
				if (need == 0 && used + cursorlen > iosize)
					need = cursorlen;
				if (need > 0)
				{
					r->need = 2 * (need + fromlen) + 1024;
					break;
				}
				memcpy(io + used, cursor, cursorlen);
				r->used = used;
				r->cursorlen = cursorlen;
				if (cursorlen == 0)
					sstate_rdb_scan_snapshot_release(r - requests);
				break;
			}
		case RQK_STATS:
			sstate_rdb_stats(db, (StreamStateRdbStats *) r->buf, RQ_BUF);
			r->used = RQ_BUF;
			break;
	}
	if (seg != NULL)
		dsm_detach(seg);
}

/*
 * Answer every request posted for this database.  Cheap when none is: one
 * atomic read.
 */
void
sstate_rdb_serve(StreamStateDb *db)
{
	uint32		posted = pg_atomic_read_u32(&db->rdb_posted);
	MemoryContext cxt = NULL;

	sstate_rdb_cache_poll();
	if (posted == served_seen)
		return;
	sstate_rdb_scan_snapshots_expire(false);
	served_seen = posted;
	for (int i = 0; i < nrequests; i++)
	{
		RdbRequest *r = &requests[i];
		Latch	   *latch = NULL;
		MemoryContext old;

		if (r->state != RQ_POSTED || r->dboid != db->dboid)
			continue;
		SpinLockAcquire(&r->mutex);
		if (r->state != RQ_POSTED || r->dboid != db->dboid)
		{
			SpinLockRelease(&r->mutex);
			continue;
		}
		r->state = RQ_SERVING;
		SpinLockRelease(&r->mutex);

		if (cxt == NULL)
			cxt = AllocSetContextCreate(CurrentMemoryContext, "stream_state rocksdb read",
										ALLOCSET_DEFAULT_SIZES);
		old = MemoryContextSwitchTo(cxt);
		serve_one(db, r);
		MemoryContextSwitchTo(old);
		MemoryContextReset(cxt);

		SpinLockAcquire(&r->mutex);
		if (r->state == RQ_SERVING)
		{
			r->state = RQ_DONE;
			latch = r->latch;
		}
		else
			r->state = RQ_FREE; /* abandoned */
		SpinLockRelease(&r->mutex);
		if (latch != NULL)
			SetLatch(latch);
	}
	if (cxt != NULL)
		MemoryContextDelete(cxt);
}

/* ---------------------------------------------------------------------
 * The asking backend's side
 * ---------------------------------------------------------------------
 */

static RdbRequest *
my_request(void)
{
	RdbRequest *r;
	TimestampTz start = GetCurrentTimestamp();

	if (requests == NULL || MyProc == NULL || MyProc->pgprocno >= nrequests)
		elog(ERROR, "stream_state: no request slot for this process");
	r = &requests[MyProc->pgprocno];

	/* a request this process gave up may still be answered: wait for it */
	for (;;)
	{
		bool		free;

		SpinLockAcquire(&r->mutex);
		if (r->state == RQ_DONE)
			r->state = RQ_FREE;
		free = (r->state == RQ_FREE);
		SpinLockRelease(&r->mutex);
		if (free)
			return r;
		if (TimestampDifferenceExceeds(start, GetCurrentTimestamp(), sstate_read_timeout_ms))
			ereport(ERROR,
					(errcode(ERRCODE_QUERY_CANCELED),
					 errmsg("timed out waiting for the stream_state worker to finish an abandoned read")));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

static void
abandon(RdbRequest *r)
{
	SpinLockAcquire(&r->mutex);
	if (r->state == RQ_SERVING)
		r->state = RQ_ABANDONED;
	else if (r->state == RQ_POSTED || r->state == RQ_DONE)
		r->state = RQ_FREE;
	SpinLockRelease(&r->mutex);
}

/*
 * Post request r (filled in) to db's worker and wait for its answer.  On an
 * ERROR (timeout, cancel, no worker, or the worker's own error) the request
 * is given up.
 */
static void
run_request(StreamStateDb *db, RdbRequest *r)
{
	TimestampTz start = GetCurrentTimestamp();
	Latch	   *worker_latch;
	pid_t		worker_pid;

	SpinLockAcquire(&db->mutex);
	worker_latch = db->worker_latch;
	worker_pid = db->worker_pid;
	SpinLockRelease(&db->mutex);
	if (worker_pid == 0 || worker_latch == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the stream_state worker of this database is not running"),
				 errdetail("State of rocksdb-backend queries is read through the worker.")));

	r->dboid = db->dboid;
	r->latch = MyLatch;
	r->error[0] = '\0';
	SpinLockAcquire(&r->mutex);
	r->state = RQ_POSTED;
	SpinLockRelease(&r->mutex);
	pg_atomic_fetch_add_u32(&db->rdb_posted, 1);
	SetLatch(worker_latch);

	PG_TRY();
	{
		for (;;)
		{
			RequestState st;
			pid_t		now_pid;

			SpinLockAcquire(&r->mutex);
			st = r->state;
			SpinLockRelease(&r->mutex);
			if (st == RQ_DONE)
				break;
			SpinLockAcquire(&db->mutex);
			now_pid = db->worker_pid;
			SpinLockRelease(&db->mutex);
			if (now_pid != worker_pid)
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("the stream_state worker of this database stopped while answering a read"),
						 errhint("Try again once stream_state.queries shows the query as running.")));
			if (TimestampDifferenceExceeds(start, GetCurrentTimestamp(), sstate_read_timeout_ms))
				ereport(ERROR,
						(errcode(ERRCODE_QUERY_CANCELED),
						 errmsg("timed out waiting for the stream_state worker to read RocksDB"),
						 errdetail("The worker answers reads of rocksdb-backend queries between batches of WAL."),
						 errhint("Raise stream_state.read_timeout.")));
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 100, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
	}
	PG_CATCH();
	{
		abandon(r);
		PG_RE_THROW();
	}
	PG_END_TRY();

	if (r->error[0] != '\0')
	{
		char	   *msg = pstrdup(r->error);

		abandon(r);
		ereport(ERROR,
				(errcode(ERRCODE_IO_ERROR),
				 errmsg("could not read the RocksDB state of this database: %s", msg)));
	}
}

/*
 * Where request r's input goes: its own buffer, or (when size bytes do not
 * fit there) a new DSM segment, returned in *seg for the caller to detach.
 */
static char *
request_io(RdbRequest *r, Size size, dsm_segment **seg)
{
	*seg = NULL;
	r->seg = DSM_HANDLE_INVALID;
	r->segsize = 0;
	if (size <= RQ_BUF)
		return r->buf;
	if (size > MaxAllocSize)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("a read of %zu bytes from a rocksdb-backend query is too large", size)));
	*seg = dsm_create(size, 0);
	r->seg = dsm_segment_handle(*seg);
	r->segsize = (uint32) size;
	return dsm_segment_address(*seg);
}

int64
sstate_rdb_request_sum(StreamStateDb *db, const StreamStateQueryDef *def,
					   const char *key, uint32 keylen, int64 lo, int64 hi)
{
	RdbRequest *r;
	dsm_segment *seg;
	char	   *io;
	int64		sum;

	r = my_request();
	r->kind = RQK_SUM;
	r->def = *def;
	r->lo = lo;
	r->hi = hi;
	r->keylen = keylen;
	r->fromlen = 0;
	io = request_io(r, keylen, &seg);
	memcpy(io, key, keylen);
	PG_TRY();
	{
		run_request(db, r);
	}
	PG_FINALLY();
	{
		if (seg != NULL)
			dsm_detach(seg);
	}
	PG_END_TRY();
	sum = r->sum;
	abandon(r);
	return sum;
}

/* One key being gathered from records (its panes may span pages) */
typedef struct Gather
{
	char	   *key;
	uint32		keylen;
	uint32		keycap;
	StreamStatePane *panes;
	int			npanes;
	int			panecap;
	bool		have;
	bool		values;			/* a query in SQL: counts are value chunks */
} Gather;

static void
gather_flush(Gather *g, int32 qid, sstate_store_scan_cb cb, void *arg)
{
	if (g->have && g->npanes > 0)
		cb(arg, qid, g->key, g->keylen, g->panes, g->npanes);
	if (g->values)
		for (int i = 0; i < g->npanes; i++)
			pfree((void *) (uintptr_t) g->panes[i].count);
	g->have = false;
	g->npanes = 0;
}

/* A page's records (see rocks.h); a value is copied out of the page */
static void
gather_page(Gather *g, int32 qid, const char *page, uint32 used,
			sstate_store_scan_cb cb, void *arg)
{
	uint32		pos = 0;

	while (pos + 8 <= used)
	{
		uint32		ilen;
		uint32		np;
		const char *img;

		memcpy(&ilen, page + pos, 4);
		img = page + pos + 4;
		memcpy(&np, page + pos + 4 + ilen, 4);
		pos += 4 + ilen + 4;
		if (!g->have || g->keylen != ilen || memcmp(g->key, img, ilen) != 0)
		{
			gather_flush(g, qid, cb, arg);
			if (ilen > g->keycap)
			{
				g->keycap = ilen * 2;
				g->key = repalloc(g->key, g->keycap);
			}
			memcpy(g->key, img, ilen);
			g->keylen = ilen;
			g->have = true;
		}
		for (uint32 i = 0; i < np; i++)
		{
			if (g->npanes == g->panecap)
			{
				g->panecap *= 2;
				g->panes = repalloc(g->panes, sizeof(StreamStatePane) * g->panecap);
			}
			memcpy(&g->panes[g->npanes].pane, page + pos, 8);
			if (g->values)
			{
				uint32		vlen;

				memcpy(&vlen, page + pos + 8, 4);
				g->panes[g->npanes].count = sstate_rdb_value_chunk(page + pos + 12, vlen);
				pos += 12 + vlen;
			}
			else
			{
				memcpy(&g->panes[g->npanes].count, page + pos + 8, 8);
				pos += 16;
			}
			g->npanes++;
		}
	}
}

/*
 * Scan a rocksdb query's live panes (all keys, or with class_key the keys
 * of its class), calling cb once per key, as sstate_store_scan does.  Of a
 * query in SQL, each pane's count is its value (sstate_rdb_value).
 */
void
sstate_rdb_request_scan(StreamStateDb *db, const StreamStateQueryDef *def,
						const char *class_key, uint32 class_keylen,
						sstate_store_scan_cb cb, void *arg)
{
	char	   *cursor = NULL;
	uint32		cursorlen = 0;
	bool		first = true;
	Gather		g;
	int64		dead_below;
	Size		want = RQ_BUF;

	memset(&g, 0, sizeof(g));
	g.values = def->sql;
	g.keycap = 64;
	g.key = palloc(g.keycap);
	g.panecap = 16;
	g.panes = palloc(sizeof(StreamStatePane) * g.panecap);

	/* the worker's current eviction horizon */
	{
		StreamStateQuery *qs = sstate_db_queries(db);

		dead_below = PG_INT64_MIN;
		for (int i = 0; i < sstate_shared->max_queries; i++)
			if (qs[i].status != SSQ_FREE && qs[i].def.id == def->id)
				dead_below = qs[i].dead_below;
	}

	while (first || cursorlen > 0)
	{
		RdbRequest *r = my_request();
		dsm_segment *seg;
		char	   *io;
		char	   *page = NULL;
		uint32		used = 0;
		uint32		need;

		r->kind = RQK_SCAN;
		r->def = *def;
		r->dead_below = dead_below;
		r->classed_scan = (class_key != NULL);
		r->scan_first = (cursor == NULL);
		r->keylen = (class_key != NULL) ? SSTATE_CLASS_PREFIX : 0;
		r->fromlen = cursorlen;
		io = request_io(r, Max(want, 2 * ((Size) cursorlen + r->keylen) + 1024), &seg);
		if (class_key != NULL)
		{
			if (class_keylen >= SSTATE_CLASS_PREFIX)
				memcpy(io, class_key, SSTATE_CLASS_PREFIX);
			else
				memset(io, 0, SSTATE_CLASS_PREFIX);
		}
		if (cursorlen > 0)
			memcpy(io + r->keylen, cursor, cursorlen);
		PG_TRY();
		{
			run_request(db, r);
			need = r->need;
			if (need == 0)
			{
				used = r->used;
				page = palloc(used);
				memcpy(page, io, used);
				if (cursor != NULL)
					pfree(cursor);
				cursorlen = r->cursorlen;
				cursor = palloc(Max(cursorlen, 1));
				memcpy(cursor, io + used, cursorlen);
			}
		}
		PG_FINALLY();
		{
			if (seg != NULL)
				dsm_detach(seg);
		}
		PG_END_TRY();
		abandon(r);				/* frees the slot */
		if (need > 0)
		{
			/* a key too large for the page: the same page again, larger */
			want = need;
			continue;
		}
		want = RQ_BUF;
		first = false;
		gather_page(&g, def->id, page, used, cb, arg);
		pfree(page);
	}
	gather_flush(&g, def->id, cb, arg);
	pfree(g.key);
	pfree(g.panes);
	if (cursor != NULL)
		pfree(cursor);
}

StreamStateRdbStats *
sstate_rdb_request_stats(StreamStateDb *db)
{
	RdbRequest *r = my_request();
	StreamStateRdbStats *st;

	r->kind = RQK_STATS;
	r->keylen = 0;
	r->fromlen = 0;
	r->seg = DSM_HANDLE_INVALID;
	run_request(db, r);
	st = palloc(RQ_BUF);
	memcpy(st, r->buf, RQ_BUF);
	abandon(r);
	return st;
}
