/*-------------------------------------------------------------------------
 *
 * cq_worker.h
 *	  The worker's side of continuous queries in SQL (cq_worker.c).
 *
 * IDENTIFICATION
 *	  src/cq_worker.h
 *-------------------------------------------------------------------------
 */
#ifndef STREAM_STATE_CQ_WORKER_H
#define STREAM_STATE_CQ_WORKER_H

#include "cq_agg.h"

typedef struct CqLayout
{
	int32		qid;			/* hash key */
	int			naggs;
	StreamStateCqWorkerAgg *aggs;
	StreamStateCqAggFns *fns;	/* set up at first use */
	StreamStateCqAggContext *cx;
} CqLayout;

extern void sstate_cq_layout_set(int32 qid, int naggs, const StreamStateCqWorkerAgg *aggs);
extern CqLayout *sstate_cq_layout_get(int32 qid);
extern void sstate_cq_layout_forget(int32 qid);
extern bool sstate_cq_merge(CqLayout *l, const char *old, uint32 oldlen,
							const char *add, uint32 addlen, StringInfo out);

#endif							/* STREAM_STATE_CQ_WORKER_H */
