/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  The one shared-memory request/startup hook pair of stream_state.
 *
 * Layout (one ShmemInitStruct): StreamStateShared with max_databases
 * StreamStateDb slots, then max_databases * max_queries StreamStateQuery
 * slots, then the DSA area of stream_state.memory_limit bytes, created in
 * place and limited to that size so it never asks for DSM segments.
 *
 * A crash of any backend makes the postmaster re-initialise shared memory and
 * run the startup hook again: everything here is rebuilt from nothing, and
 * the workers rebuild their state from the kept WAL.  Processes attach to the
 * area lazily (sstate_area), once per process.
 *
 * IDENTIFICATION
 *	  src/shmem.c
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "utils/memutils.h"

#include "rocks.h"
#include "stream_state.h"

StreamStateShared *sstate_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static dsa_area *local_area = NULL;

static void sstate_shmem_request(void);
static void sstate_shmem_startup(void);
static Size header_size(void);
static Size queries_size(void);

static Size
header_size(void)
{
	return MAXALIGN(add_size(offsetof(StreamStateShared, dbs),
							 mul_size(sstate_max_databases, sizeof(StreamStateDb))));
}

static Size
queries_size(void)
{
	return MAXALIGN(mul_size(mul_size(sstate_max_databases, sstate_max_queries),
							 sizeof(StreamStateQuery)));
}

static Size
area_size(void)
{
	return mul_size((Size) sstate_memory_limit_kb, 1024);
}

void
sstate_shmem_install_hooks(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = sstate_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = sstate_shmem_startup;
}

static void
sstate_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();

	RequestAddinShmemSpace(add_size(add_size(header_size(), queries_size()),
									add_size(area_size(), MAXIMUM_ALIGNOF)));
	RequestAddinShmemSpace(sstate_rdb_requests_size());
	RequestNamedLWLockTranche("stream_state", 1);
}

static void
sstate_shmem_startup(void)
{
	bool		found;
	Size		total;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	/* a crash-restart re-runs this hook: forget what the old memory held */
	sstate_shared = NULL;
	local_area = NULL;

	total = add_size(add_size(header_size(), queries_size()),
					 add_size(area_size(), MAXIMUM_ALIGNOF));

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	sstate_shared = ShmemInitStruct("stream_state", total, &found);
	if (!found)
	{
		StreamStateShared *s = sstate_shared;
		dsa_area   *area;
		int			i;

		memset(s, 0, header_size() + queries_size());
		s->lock = &(GetNamedLWLockTranche("stream_state"))->lock;
		s->lwtranche = LWLockNewTrancheId();
		s->max_databases = sstate_max_databases;
		s->max_queries = sstate_max_queries;
		pg_atomic_init_u64(&s->def_generation, 1);
		pg_atomic_init_u32(&s->cache_shrinks, 0);
		for (i = 0; i < s->max_databases; i++)
		{
			StreamStateDb *db = &s->dbs[i];

			db->dboid = InvalidOid;
			pg_atomic_init_u64(&db->applied_lsn, 0);
			pg_atomic_init_u32(&db->rdb_posted, 0);
			pg_atomic_init_u64(&db->rdb_cache_hits, 0);
			pg_atomic_init_u64(&db->rdb_cache_misses, 0);
			ConditionVariableInit(&db->applied_cv);
			LWLockInitialize(&db->lock, s->lwtranche);
			SpinLockInit(&db->mutex);
			db->table = InvalidDsaPointer;
		}

		s->area_offset = header_size() + queries_size();
		s->area_offset = TYPEALIGN(MAXIMUM_ALIGNOF, s->area_offset);
		s->area_size = area_size();
		area = dsa_create_in_place((char *) s + s->area_offset, s->area_size,
								   s->lwtranche, NULL);
		dsa_pin(area);
		/* never grow beyond the place: no DSM segments, a hard limit */
		dsa_set_size_limit(area, s->area_size);
		dsa_detach(area);
	}
	{
		void	   *requests = ShmemInitStruct("stream_state rocksdb requests",
											   sstate_rdb_requests_size(), &found);

		sstate_rdb_requests_init(requests, found);
	}
	LWLockRelease(AddinShmemInitLock);

	LWLockRegisterTranche(sstate_shared->lwtranche, "stream_state");
}

/*
 * Raise the error every SQL entry point gives when the library was not
 * preloaded.
 */
void
sstate_shmem_check(void)
{
	if (sstate_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("stream_state must be loaded via \"shared_preload_libraries\""),
				 errhint("Add stream_state to shared_preload_libraries in postgresql.conf and restart the server.")));
}

StreamStateQuery *
sstate_db_queries(StreamStateDb *db)
{
	int			idx = db - sstate_shared->dbs;
	char	   *base = (char *) sstate_shared + header_size();

	return (StreamStateQuery *) (base + (Size) idx * sstate_shared->max_queries *
								 sizeof(StreamStateQuery));
}

StreamStateDb *
sstate_db_find(Oid dboid)
{
	StreamStateDb *result = NULL;
	int			i;

	LWLockAcquire(sstate_shared->lock, LW_SHARED);
	for (i = 0; i < sstate_shared->max_databases; i++)
	{
		if (sstate_shared->dbs[i].dboid == dboid)
		{
			result = &sstate_shared->dbs[i];
			break;
		}
	}
	LWLockRelease(sstate_shared->lock);
	return result;
}

/*
 * Find this database's slot, taking a free one if it has none.  Returns NULL
 * when every slot is taken.
 */
StreamStateDb *
sstate_db_find_or_add(Oid dboid)
{
	StreamStateDb *result;

	LWLockAcquire(sstate_shared->lock, LW_EXCLUSIVE);
	result = sstate_db_find_or_add_locked(dboid);
	LWLockRelease(sstate_shared->lock);
	return result;
}

/* The same; caller holds sstate_shared->lock exclusively. */
StreamStateDb *
sstate_db_find_or_add_locked(Oid dboid)
{
	StreamStateDb *result = NULL;
	StreamStateDb *free_slot = NULL;
	int			i;

	for (i = 0; i < sstate_shared->max_databases; i++)
	{
		StreamStateDb *db = &sstate_shared->dbs[i];

		if (db->dboid == dboid)
		{
			result = db;
			break;
		}
		if (db->dboid == InvalidOid && free_slot == NULL)
			free_slot = db;
	}
	if (result == NULL && free_slot != NULL)
	{
		result = free_slot;
		result->dboid = dboid;
		result->worker_state = SSW_NONE;
		result->worker_pid = 0;
		result->worker_latch = NULL;
		result->last_ensure_lsn = InvalidXLogRecPtr;
		pg_atomic_write_u64(&result->applied_lsn, 0);
		memset(sstate_db_queries(result), 0,
			   sizeof(StreamStateQuery) * sstate_shared->max_queries);
	}
	return result;
}

/*
 * This process's mapping of the shared DSA area.
 */
dsa_area *
sstate_area(void)
{
	if (local_area == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		local_area = dsa_attach_in_place((char *) sstate_shared +
										 sstate_shared->area_offset, NULL);
		dsa_pin_mapping(local_area);
		MemoryContextSwitchTo(old);
	}
	return local_area;
}
