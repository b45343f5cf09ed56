/*-------------------------------------------------------------------------
 *
 * cq_worker.c
 *	  The worker's side of continuous queries in SQL: what it knows of each
 *	  query's aggregates (from its CREATE message or its checkpoint), and
 *	  merging a commit's partial states into a (key, pane)'s value.
 *
 * A value is the query's aggregates' partial states, serialised one after
 * the other (cq_agg.c's form).  Merging deserialises both sides, combines
 * aggregate by aggregate with the functions the definition names, and
 * serialises the result; all of it with no catalog access.
 *
 * IDENTIFICATION
 *	  src/cq_worker.c
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "cq_worker.h"

static HTAB *layouts = NULL;

void
sstate_cq_layout_set(int32 qid, int naggs, const StreamStateCqWorkerAgg *aggs)
{
	CqLayout   *l;
	bool		found;
	MemoryContext old;

	if (layouts == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(int32);
		ctl.entrysize = sizeof(CqLayout);
		ctl.hcxt = TopMemoryContext;
		layouts = hash_create("stream_state query layouts", 64, &ctl,
							  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	l = hash_search(layouts, &qid, HASH_ENTER, &found);
	if (found)
		return;
	old = MemoryContextSwitchTo(TopMemoryContext);
	l->naggs = naggs;
	l->aggs = palloc(sizeof(StreamStateCqWorkerAgg) * Max(naggs, 1));
	memcpy(l->aggs, aggs, sizeof(StreamStateCqWorkerAgg) * naggs);
	l->fns = NULL;
	l->cx = NULL;
	MemoryContextSwitchTo(old);
}

CqLayout *
sstate_cq_layout_get(int32 qid)
{
	CqLayout   *l;

	if (layouts == NULL)
		return NULL;
	l = hash_search(layouts, &qid, HASH_FIND, NULL);
	if (l != NULL && l->fns == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		/* functions are loaded at first use, not at definition */
		l->fns = palloc0(sizeof(StreamStateCqAggFns) * Max(l->naggs, 1));
		for (int j = 0; j < l->naggs; j++)
			sstate_cq_agg_fns_worker(&l->fns[j], &l->aggs[j]);
		l->cx = sstate_cq_agg_context_create(TopMemoryContext);
		MemoryContextSwitchTo(old);
	}
	return l;
}

void
sstate_cq_layout_forget(int32 qid)
{
	if (layouts != NULL)
		hash_search(layouts, &qid, HASH_REMOVE, NULL);
}

/*
 * out := old combined with add (both values of layout l).  Returns false
 * for a malformed value.
 */
bool
sstate_cq_merge(CqLayout *l, const char *old, uint32 oldlen, const char *add, uint32 addlen,
				StringInfo out)
{
	const char *p = old;
	const char *pend = old + oldlen;
	const char *q = add;
	const char *qend = add + addlen;
	bool		ok = true;

	resetStringInfo(out);
	for (int j = 0; j < l->naggs && ok; j++)
	{
		StreamStateCqState a;
		StreamStateCqState b;

		p = sstate_cq_state_deserialize(l->cx, &l->fns[j], &a, p, pend);
		q = sstate_cq_state_deserialize(l->cx, &l->fns[j], &b, q, qend);
		if (p == NULL || q == NULL)
		{
			ok = false;
			break;
		}
		sstate_cq_state_combine(l->cx, &l->fns[j], &a, &b);
		sstate_cq_state_serialize(l->cx, &l->fns[j], &a, out);
	}
	sstate_cq_agg_context_reset(l->cx);
	return ok && p == pend && q == qend;
}
