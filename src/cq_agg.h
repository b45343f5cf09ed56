/*-------------------------------------------------------------------------
 *
 * cq_agg.h
 *	  Partial aggregate states of continuous queries: fold rows with an
 *	  aggregate's transition function, serialise, deserialise, combine,
 *	  finalise; and the support functions resolved so that a process with no
 *	  database connection (the worker) can call them.
 *
 * IDENTIFICATION
 *	  src/cq_agg.h
 *-------------------------------------------------------------------------
 */
#ifndef STREAM_STATE_CQ_AGG_H
#define STREAM_STATE_CQ_AGG_H

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "nodes/execnodes.h"

#include "cq_analyze.h"

/*
 * A support function as the worker calls it, without pg_proc: a built-in
 * function by OID (PostgreSQL's own table of built-ins needs no catalog),
 * or a C function by library and symbol.  InvalidOid: no function.
 */
#define SSTATE_CQ_FN_SYMBOL		64

typedef struct StreamStateCqFnRef
{
	Oid			oid;			/* the function (for messages) */
	bool		builtin;
	bool		strict;
	int16		nargs;
	char		library[MAXPGPATH];	/* C functions: probin */
	char		symbol[SSTATE_CQ_FN_SYMBOL];	/* C functions: prosrc */
} StreamStateCqFnRef;

/*
 * What the worker knows of one aggregate: plain data, carried in messages
 * and checkpoints.
 */
typedef struct StreamStateCqWorkerAgg
{
	StreamStateCqFnRef refs[3];	/* combine, serialize, deserialize */
	Oid			transtype;
	Oid			inputcollid;
	int16		transtyplen;
	bool		transtypbyval;
	bool		has_serial;
} StreamStateCqWorkerAgg;

extern bool sstate_cq_fn_ref(Oid fnoid, StreamStateCqFnRef *ref, char **why);
extern void sstate_cq_worker_agg(const StreamStateCqAgg *agg, StreamStateCqWorkerAgg *w);
extern void sstate_cq_fn_info(const StreamStateCqFnRef *ref, FmgrInfo *finfo,
							  MemoryContext mcxt);

/*
 * An aggregate's functions, ready to call.  The combine, serialisation and
 * deserialisation functions come from StreamStateCqFnRefs (what the worker
 * has); the transition and final functions from the catalog (backends).
 */
typedef struct StreamStateCqAggFns
{
	const StreamStateCqAgg *agg;	/* NULL in the worker */
	bool		have_trans;		/* transfn/finalfn set up (a backend) */
	FmgrInfo	transfn;
	FmgrInfo	finalfn;
	FmgrInfo	combinefn;
	FmgrInfo	serialfn;
	FmgrInfo	deserialfn;
	bool		has_serial;		/* transtype internal */
	bool		has_final;
	Oid			inputcollid;
	bool		combinestrict;
	bool		transstrict;
	int16		transtyplen;
	bool		transtypbyval;
	Datum		initval;
	bool		initval_null;
	int			nfinalargs;
	uint8		fastop;			/* CQ_OP_*: a transition done inline */
} StreamStateCqAggFns;

/*
 * Transition functions sstate_cq_state_advance does itself, with the same
 * result as the function: a statement folds millions of rows, and a call
 * through fmgr costs more than the comparison or addition it makes.
 */
#define CQ_OP_NONE		0
#define CQ_OP_MAX		1		/* int2larger, int4larger, int8larger */
#define CQ_OP_MIN		2		/* int2smaller, int4smaller, int8smaller */
#define CQ_OP_SUM_INT2	3		/* int2_sum: an int8 state */
#define CQ_OP_SUM_INT4	4		/* int4_sum: an int8 state */

/* One aggregate's partial state of one group */
typedef struct StreamStateCqState
{
	Datum		value;
	bool		isnull;
	bool		noinput;		/* strict transfn, NULL initval: no row yet */
} StreamStateCqState;

/*
 * Where partial states live, and the context transition and combine
 * functions see (AggCheckCallContext answers "aggregate", with the states'
 * memory context).
 */
typedef struct StreamStateCqAggContext
{
	MemoryContext states;		/* partial states */
	AggState   *shim;
	ExprContext *econtext;		/* its per-tuple memory is states */
	ExprContext *tmp;			/* per call, reset after each */
} StreamStateCqAggContext;

extern StreamStateCqAggContext *sstate_cq_agg_context_create(MemoryContext parent);
extern StreamStateCqAggContext *sstate_cq_agg_context_create_in(MemoryContext parent,
																MemoryContext states);
extern void sstate_cq_agg_context_reset(StreamStateCqAggContext *cx);

extern void sstate_cq_agg_fns_worker(StreamStateCqAggFns *fns, const StreamStateCqWorkerAgg *w);
extern void sstate_cq_agg_fns_backend(StreamStateCqAggFns *fns, const StreamStateCqAgg *agg,
									  const StreamStateCqFnRef *refs);

extern void sstate_cq_state_init(StreamStateCqAggContext *cx, const StreamStateCqAggFns *fns,
								 StreamStateCqState *st);
extern void sstate_cq_state_advance(StreamStateCqAggContext *cx, StreamStateCqAggFns *fns,
									StreamStateCqState *st, Datum *args, bool *nulls,
									int nargs);
extern void sstate_cq_state_combine(StreamStateCqAggContext *cx, StreamStateCqAggFns *fns,
									StreamStateCqState *into, const StreamStateCqState *from);
extern void sstate_cq_state_serialize(StreamStateCqAggContext *cx, StreamStateCqAggFns *fns,
									  const StreamStateCqState *st, StringInfo out);
extern const char *sstate_cq_state_deserialize(StreamStateCqAggContext *cx,
											   StreamStateCqAggFns *fns,
											   StreamStateCqState *st,
											   const char *p, const char *end);
extern Datum sstate_cq_state_final(StreamStateCqAggContext *cx, StreamStateCqAggFns *fns,
								   StreamStateCqState *st, bool *isnull);

/*
 * sum(bigint) and avg(bigint) folded without their internal state: a count
 * and an int128 sum (the capture keeps them in its groups).
 */
typedef struct StreamStateCqInt8Avg
{
	int64		n;
	uint64		sum_lo;			/* the sum's two halves: the group need not */
	int64		sum_hi;			/* be 16-byte aligned */
} StreamStateCqInt8Avg;

extern bool sstate_cq_int8_avg_inline(StreamStateCqAggFns *fns);
extern void sstate_cq_int8_avg_serialize(const StreamStateCqState *st,
										 const StreamStateCqInt8Avg *avg, StringInfo out);

/* x into avg, as int8_avg_accum adds it (st: the state's flags) */
static inline void
sstate_cq_int8_avg_add(StreamStateCqState *st, StreamStateCqInt8Avg *avg, Datum x, bool isnull)
{
	if (!isnull)
	{
		int128		sum = ((int128) avg->sum_hi << 64) | (int128) avg->sum_lo;

		sum += (int128) DatumGetInt64(x);
		avg->sum_lo = (uint64) sum;
		avg->sum_hi = (int64) (sum >> 64);
		avg->n++;
	}
	/* the function makes its state at its first call, a NULL input's too */
	st->isnull = false;
	st->noinput = false;
}

#endif							/* STREAM_STATE_CQ_AGG_H */
