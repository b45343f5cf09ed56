/*-------------------------------------------------------------------------
 *
 * cq_agg.c
 *	  Partial aggregate states of continuous queries, with PostgreSQL's own
 *	  aggregate functions: fold rows with the transition function,
 *	  serialise, deserialise, combine, finalise, as nodeAgg does for a
 *	  partial aggregation (AGGSPLIT_INITIAL_SERIAL, then
 *	  AGGSPLIT_FINAL_DESERIAL).
 *
 * Who calls what.  A backend folds rows into states (the capture trigger;
 * rebuild) and finalises them (reads); the worker only deserialises,
 * combines and serialises.  The worker has no database connection (so that
 * DROP DATABASE never waits for it: worker.c), so it cannot look a function
 * up in pg_proc.  create_query therefore resolves the combine,
 * serialisation and deserialisation functions to a StreamStateCqFnRef: a
 * built-in function, called through PostgreSQL's table of built-ins
 * (fmgr_builtins, which needs no catalog), or a C function, by library and
 * symbol (load_external_function, as fmgr does).  Functions in other
 * languages cannot be called so and are refused (sstate_cq_fn_ref says
 * why).  Their call expressions, which polymorphic functions read their
 * argument types from, are built from the types alone
 * (build_aggregate_transfn_expr and friends make nodes, nothing more).
 *
 * The aggregate context.  Transition and combine functions of internal
 * states (avg, hll, tdigest) allocate their state in the memory context
 * AggCheckCallContext hands them, and refuse to run outside an aggregate.
 * Each call gets as its context a bare AggState whose current aggregate
 * context is ours (StreamStateCqAggContext.states), as nodeAgg's would be;
 * AggGetAggref answers NULL (ordered-set aggregates, which need it, are
 * refused by the analysis) and AggStateIsShared answers true, so a final
 * function that could scribble on its state copies it first.
 *
 * Serialised form of one state: a byte, 0 for "no row yet" (a strict
 * transition function with no initial value), 2 for a NULL state, 1 for a
 * value; then for a value: the serialisation function's bytea (internal
 * states) or the datum's bytes (by value: typlen bytes; varlena: uint32
 * length and the data; fixed length by reference: typlen bytes; cstring:
 * uint32 length and the characters), lengths in the machine's order (the
 * WAL and checkpoints are of one machine).
 *
 * IDENTIFICATION
 *	  src/cq_agg.c
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_language.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "parser/parse_agg.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/expandeddatum.h"
#include "utils/fmgroids.h"
#include "utils/fmgrtab.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/syscache.h"

#include "cq_agg.h"

#define STATE_NO_INPUT	0
#define STATE_VALUE		1
#define STATE_NULL		2

/* A built-in function by OID, without the catalog (fmgr.c's own lookup) */
static const FmgrBuiltin *
builtin_lookup(Oid oid)
{
	uint16		index;

	if (oid > fmgr_last_builtin_oid)
		return NULL;
	index = fmgr_builtin_oid_index[oid];
	if (index == InvalidOidBuiltinMapping)
		return NULL;
	return &fmgr_builtins[index];
}

/*
 * Resolve function fnoid for a process without the catalog.  Returns false,
 * with *why saying so, for a function that cannot be called that way.
 */
bool
sstate_cq_fn_ref(Oid fnoid, StreamStateCqFnRef *ref, char **why)
{
	HeapTuple	tp;
	Form_pg_proc p;
	bool		ok = true;

	memset(ref, 0, sizeof(*ref));
	ref->oid = fnoid;
	if (!OidIsValid(fnoid))
		return true;
	tp = SearchSysCache1(PROCOID, ObjectIdGetDatum(fnoid));
	if (!HeapTupleIsValid(tp))
		elog(ERROR, "cache lookup failed for function %u", fnoid);
	p = (Form_pg_proc) GETSTRUCT(tp);
	ref->strict = p->proisstrict;
	ref->nargs = p->pronargs;
	if (p->prolang == INTERNALlanguageId)
	{
		/* by OID, or (a user's internal function) by the built-in's name */
		bool		isnull;
		char	   *prosrc = TextDatumGetCString(SysCacheGetAttr(PROCOID, tp, Anum_pg_proc_prosrc,
																 &isnull));
		Oid			b = builtin_lookup(fnoid) ? fnoid : fmgr_internal_function(prosrc);

		ok = OidIsValid(b);
		if (ok)
		{
			ref->builtin = true;
			ref->oid = b;
		}
		else
			*why = psprintf("%s names no built-in function", format_procedure(fnoid));
	}
	else if (p->prolang == ClanguageId)
	{
		bool		isnull;
		char	   *prosrc = TextDatumGetCString(SysCacheGetAttr(PROCOID, tp, Anum_pg_proc_prosrc,
																 &isnull));
		Datum		bin = SysCacheGetAttr(PROCOID, tp, Anum_pg_proc_probin, &isnull);
		char	   *probin = isnull ? NULL : TextDatumGetCString(bin);

		if (probin == NULL || strlen(probin) >= sizeof(ref->library) ||
			strlen(prosrc) >= sizeof(ref->symbol))
		{
			ok = false;
			*why = psprintf("%s has a library or symbol name too long for the stream_state worker",
							format_procedure(fnoid));
		}
		else
		{
			strlcpy(ref->library, probin, sizeof(ref->library));
			strlcpy(ref->symbol, prosrc, sizeof(ref->symbol));
		}
	}
	else
	{
		ok = false;
		*why = psprintf("%s is written in %s, and the stream_state worker, which combines partial states without a database connection, calls only C and built-in functions",
						format_procedure(fnoid), get_language_name(p->prolang, false));
	}
	ReleaseSysCache(tp);
	return ok;
}

/* Set up finfo to call ref, without the catalog. */
void
sstate_cq_fn_info(const StreamStateCqFnRef *ref, FmgrInfo *finfo, MemoryContext mcxt)
{
	MemSet(finfo, 0, sizeof(FmgrInfo));
	finfo->fn_oid = ref->oid;
	finfo->fn_mcxt = mcxt;
	finfo->fn_nargs = ref->nargs;
	finfo->fn_strict = ref->strict;
	finfo->fn_retset = false;
	finfo->fn_stats = TRACK_FUNC_ALL;	/* never tracked */
	if (ref->builtin)
	{
		const FmgrBuiltin *b = builtin_lookup(ref->oid);

		if (b == NULL)
			elog(ERROR, "stream_state: no built-in function %u", ref->oid);
		finfo->fn_addr = b->func;
	}
	else
	{
		void	   *handle = NULL;
		const Pg_finfo_record *info;

		finfo->fn_addr = load_external_function(ref->library, ref->symbol, true, &handle);
		info = fetch_finfo_record(handle, ref->symbol);
		if (info->api_version != 1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unrecognized API version %d reported by info function \"%s\"",
							info->api_version, ref->symbol)));
	}
}

/* What the worker needs of agg (an analysed aggregate of a backend) */
void
sstate_cq_worker_agg(const StreamStateCqAgg *agg, StreamStateCqWorkerAgg *w)
{
	memset(w, 0, sizeof(*w));
	memcpy(w->refs, agg->refs, sizeof(w->refs));
	w->transtype = agg->transtype;
	w->inputcollid = agg->inputcollid;
	w->transtyplen = agg->transtyplen;
	w->transtypbyval = agg->transtypbyval;
	w->has_serial = OidIsValid(agg->serialfn);
}

/*
 * The worker's functions of an aggregate: combine, serialise, deserialise,
 * with no catalog access (the call expressions are built from types alone).
 */
void
sstate_cq_agg_fns_worker(StreamStateCqAggFns *fns, const StreamStateCqWorkerAgg *w)
{
	Expr	   *combexpr;
	Expr	   *invexpr;
	Oid			combtypes[1] = {w->transtype};

	memset(fns, 0, sizeof(*fns));
	fns->transtyplen = w->transtyplen;
	fns->transtypbyval = w->transtypbyval;
	fns->has_serial = w->has_serial;
	fns->inputcollid = w->inputcollid;
	fns->initval_null = true;
	sstate_cq_fn_info(&w->refs[0], &fns->combinefn, CurrentMemoryContext);
	build_aggregate_transfn_expr(combtypes, 1, 0, false, w->transtype, w->inputcollid,
								 w->refs[0].oid, InvalidOid, &combexpr, &invexpr);
	fmgr_info_set_expr((Node *) combexpr, &fns->combinefn);
	fns->combinestrict = fns->combinefn.fn_strict;
	if (w->has_serial)
	{
		Expr	   *e;

		sstate_cq_fn_info(&w->refs[1], &fns->serialfn, CurrentMemoryContext);
		build_aggregate_serialfn_expr(w->refs[1].oid, &e);
		fmgr_info_set_expr((Node *) e, &fns->serialfn);
		sstate_cq_fn_info(&w->refs[2], &fns->deserialfn, CurrentMemoryContext);
		build_aggregate_deserialfn_expr(w->refs[2].oid, &e);
		fmgr_info_set_expr((Node *) e, &fns->deserialfn);
	}
}

/*
 * A backend's functions of agg: transition and final from the catalog, the
 * others from refs, as the worker calls them.
 */
void
sstate_cq_agg_fns_backend(StreamStateCqAggFns *fns, const StreamStateCqAgg *agg,
						  const StreamStateCqFnRef *refs)
{
	Expr	   *transexpr;
	Expr	   *invexpr;
	Expr	   *combexpr;
	Oid			combtypes[1];

	memset(fns, 0, sizeof(*fns));
	fns->agg = agg;
	fns->have_trans = true;
	fns->inputcollid = agg->inputcollid;
	fns->transtyplen = agg->transtyplen;
	fns->transtypbyval = agg->transtypbyval;
	fns->transstrict = agg->transstrict;
	fns->has_serial = OidIsValid(agg->serialfn);
	fns->has_final = OidIsValid(agg->finalfn);

	switch (agg->transfn)
	{
		case F_INT2LARGER:
		case F_INT4LARGER:
		case F_INT8LARGER:
			fns->fastop = CQ_OP_MAX;
			break;
		case F_INT2SMALLER:
		case F_INT4SMALLER:
		case F_INT8SMALLER:
			fns->fastop = CQ_OP_MIN;
			break;
		case F_INT2_SUM:
			fns->fastop = CQ_OP_SUM_INT2;
			break;
		case F_INT4_SUM:
			fns->fastop = CQ_OP_SUM_INT4;
			break;
		default:
			fns->fastop = CQ_OP_NONE;
	}
	fmgr_info(agg->transfn, &fns->transfn);
	build_aggregate_transfn_expr(agg->inputtypes, agg->ninputs, 0, false, agg->transtype,
								 agg->inputcollid, agg->transfn, InvalidOid,
								 &transexpr, &invexpr);
	fmgr_info_set_expr((Node *) transexpr, &fns->transfn);

	sstate_cq_fn_info(&refs[0], &fns->combinefn, CurrentMemoryContext);
	combtypes[0] = agg->transtype;
	build_aggregate_transfn_expr(combtypes, 1, 0, false, agg->transtype,
								 agg->inputcollid, agg->combinefn, InvalidOid,
								 &combexpr, &invexpr);
	fmgr_info_set_expr((Node *) combexpr, &fns->combinefn);
	fns->combinestrict = fns->combinefn.fn_strict;

	if (fns->has_serial)
	{
		Expr	   *e;

		sstate_cq_fn_info(&refs[1], &fns->serialfn, CurrentMemoryContext);
		build_aggregate_serialfn_expr(agg->serialfn, &e);
		fmgr_info_set_expr((Node *) e, &fns->serialfn);
		sstate_cq_fn_info(&refs[2], &fns->deserialfn, CurrentMemoryContext);
		build_aggregate_deserialfn_expr(agg->deserialfn, &e);
		fmgr_info_set_expr((Node *) e, &fns->deserialfn);
	}
	if (fns->has_final)
	{
		Expr	   *e;

		fns->nfinalargs = agg->finalextra ? agg->ninputs + 1 : 1;
		fmgr_info(agg->finalfn, &fns->finalfn);
		build_aggregate_finalfn_expr(agg->inputtypes, fns->nfinalargs, agg->transtype,
									 agg->resulttype, agg->inputcollid, agg->finalfn, &e);
		fmgr_info_set_expr((Node *) e, &fns->finalfn);
	}

	fns->initval_null = (agg->initval == NULL);
	if (!fns->initval_null)
	{
		Oid			typinput;
		Oid			typioparam;

		getTypeInputInfo(agg->transtype, &typinput, &typioparam);
		fns->initval = OidInputFunctionCall(typinput, agg->initval, typioparam, -1);
	}
}

/* ---------------------------------------------------------------------
 * The aggregate context
 * ---------------------------------------------------------------------
 */

StreamStateCqAggContext *
sstate_cq_agg_context_create(MemoryContext parent)
{
	return sstate_cq_agg_context_create_in(parent,
										   AllocSetContextCreate(parent, "stream_state partial states",
																 ALLOCSET_DEFAULT_SIZES));
}

/* The same with the states in a given context (a child of parent) */
StreamStateCqAggContext *
sstate_cq_agg_context_create_in(MemoryContext parent, MemoryContext states)
{
	StreamStateCqAggContext *cx = MemoryContextAllocZero(parent, sizeof(*cx));
	MemoryContext old = MemoryContextSwitchTo(parent);

	cx->states = states;
	cx->econtext = CreateStandaloneExprContext();
	MemoryContextDelete(cx->econtext->ecxt_per_tuple_memory);
	cx->econtext->ecxt_per_tuple_memory = cx->states;
	cx->tmp = CreateStandaloneExprContext();
	cx->shim = makeNode(AggState);
	cx->shim->curaggcontext = cx->econtext;
	cx->shim->aggcontexts = palloc(sizeof(ExprContext *));
	cx->shim->aggcontexts[0] = cx->econtext;
	cx->shim->tmpcontext = cx->tmp;
	cx->shim->curperagg = NULL;
	cx->shim->curpertrans = NULL;
	MemoryContextSwitchTo(old);
	return cx;
}

/* Drop every state (callbacks that functions registered run first). */
void
sstate_cq_agg_context_reset(StreamStateCqAggContext *cx)
{
	ReScanExprContext(cx->econtext);
	ResetExprContext(cx->tmp);
}

/* ---------------------------------------------------------------------
 * States
 * ---------------------------------------------------------------------
 */

void
sstate_cq_state_init(StreamStateCqAggContext *cx, const StreamStateCqAggFns *fns,
					 StreamStateCqState *st)
{
	if (fns->initval_null)
	{
		st->value = (Datum) 0;
		st->isnull = true;
		st->noinput = true;
	}
	else
	{
		MemoryContext old = MemoryContextSwitchTo(cx->states);

		st->value = datumCopy(fns->initval, fns->transtypbyval, fns->transtyplen);
		st->isnull = false;
		st->noinput = false;
		MemoryContextSwitchTo(old);
	}
}

/*
 * A new state value returned by a function: into the states' context, and
 * the old one freed, unless the function returned the old one itself
 * (nodeAgg's ExecAggTransReparent).
 */
static void
state_take(StreamStateCqAggContext *cx, const StreamStateCqAggFns *fns,
		   StreamStateCqState *st, Datum newval, bool newnull)
{
	if (!fns->transtypbyval && DatumGetPointer(newval) != DatumGetPointer(st->value))
	{
		MemoryContext old = MemoryContextSwitchTo(cx->states);

		if (!newnull)
		{
			if (!(DatumIsReadWriteExpandedObject(newval, false, fns->transtyplen) &&
				  MemoryContextGetParent(DatumGetEOHP(newval)->eoh_context) == cx->states))
				newval = datumCopy(newval, fns->transtypbyval, fns->transtyplen);
		}
		else
			newval = (Datum) 0;
		if (!st->isnull)
		{
			if (DatumIsReadWriteExpandedObject(st->value, false, fns->transtyplen))
				DeleteExpandedObject(st->value);
			else
				pfree(DatumGetPointer(st->value));
		}
		MemoryContextSwitchTo(old);
	}
	st->value = newval;
	st->isnull = newnull;
	st->noinput = false;
}

/* An integer Datum of a type typlen bytes long */
static inline int64
int_datum(Datum d, int16 typlen)
{
	switch (typlen)
	{
		case sizeof(int16):
			return DatumGetInt16(d);
		case sizeof(int32):
			return DatumGetInt32(d);
		default:
			return DatumGetInt64(d);
	}
}

/*
 * The transition fns->fastop names, on a state a strict function would be
 * called with (not NULL, a non-NULL argument); int2_sum and int4_sum are
 * not strict, and take any.  The same result as the function's:
 * int4larger(state, x) is state > x ? state : x; int4_sum(NULL, NULL) is
 * NULL, int4_sum(NULL, x) is x, int4_sum(s, NULL) is s, else s + x, as
 * int8 without an overflow check (nor does the function check).
 */
static inline void
advance_inline(const StreamStateCqAggFns *fns, StreamStateCqState *st, Datum arg, bool argnull)
{
	switch (fns->fastop)
	{
		case CQ_OP_MAX:
			if (int_datum(arg, fns->transtyplen) > int_datum(st->value, fns->transtyplen))
				st->value = arg;
			break;
		case CQ_OP_MIN:
			if (int_datum(arg, fns->transtyplen) < int_datum(st->value, fns->transtyplen))
				st->value = arg;
			break;
		case CQ_OP_SUM_INT2:
		case CQ_OP_SUM_INT4:
			if (!argnull)
			{
				int64		x = fns->fastop == CQ_OP_SUM_INT2 ?
					DatumGetInt16(arg) : DatumGetInt32(arg);

				st->value = Int64GetDatum(st->isnull ? x : DatumGetInt64(st->value) + x);
				st->isnull = false;
			}
			break;
	}
	st->noinput = false;
}

/*
 * The per-call memory emptied after a call: tested first, as
 * MemoryContextReset would, because most transitions leave it empty.
 */
static inline void
reset_tmp(StreamStateCqAggContext *cx)
{
	MemoryContext m = cx->tmp->ecxt_per_tuple_memory;

	if (!m->isReset || m->firstchild != NULL)
		MemoryContextReset(m);
}

/* Fold one row's arguments into st (a FILTER, if any, has passed). */
void
sstate_cq_state_advance(StreamStateCqAggContext *cx, StreamStateCqAggFns *fns,
						StreamStateCqState *st, Datum *args, bool *nulls, int nargs)
{
	LOCAL_FCINFO(fcinfo, FUNC_MAX_ARGS);
	MemoryContext old;
	Datum		newval;

	Assert(fns->have_trans);
	if (fns->transstrict)
	{
		for (int i = 0; i < nargs; i++)
			if (nulls[i])
				return;
		if (st->noinput)
		{
			/* the first input becomes the state (it has the state's type) */
			old = MemoryContextSwitchTo(cx->states);
			st->value = datumCopy(args[0], fns->transtypbyval, fns->transtyplen);
			st->isnull = false;
			st->noinput = false;
			MemoryContextSwitchTo(old);
			return;
		}
		if (st->isnull)
			return;
	}
	if (fns->fastop != CQ_OP_NONE)
	{
		advance_inline(fns, st, args[0], nulls[0]);
		return;
	}
	InitFunctionCallInfoData(*fcinfo, &fns->transfn, nargs + 1, fns->agg->inputcollid,
							 (Node *) cx->shim, NULL);
	fcinfo->args[0].value = st->value;
	fcinfo->args[0].isnull = st->isnull;
	for (int i = 0; i < nargs; i++)
	{
		fcinfo->args[i + 1].value = args[i];
		fcinfo->args[i + 1].isnull = nulls[i];
	}
	old = MemoryContextSwitchTo(cx->tmp->ecxt_per_tuple_memory);
	newval = FunctionCallInvoke(fcinfo);
	MemoryContextSwitchTo(old);
	state_take(cx, fns, st, newval, fcinfo->isnull);
	reset_tmp(cx);
}

/* into := combine(into, from) */
void
sstate_cq_state_combine(StreamStateCqAggContext *cx, StreamStateCqAggFns *fns,
						StreamStateCqState *into, const StreamStateCqState *from)
{
	LOCAL_FCINFO(fcinfo, 2);
	MemoryContext old;
	Datum		newval;

	if (from->noinput)
		return;					/* no rows: nothing to add */
	if (fns->combinestrict)
	{
		if (from->isnull)
			return;
		if (into->isnull)
		{
			if (!into->noinput)
				return;			/* a NULL state stays NULL */
			old = MemoryContextSwitchTo(cx->states);
			into->value = datumCopy(from->value, fns->transtypbyval, fns->transtyplen);
			into->isnull = false;
			into->noinput = false;
			MemoryContextSwitchTo(old);
			return;
		}
	}
	InitFunctionCallInfoData(*fcinfo, &fns->combinefn, 2,
							 fns->inputcollid,
							 (Node *) cx->shim, NULL);
	fcinfo->args[0].value = into->value;
	fcinfo->args[0].isnull = into->isnull;
	fcinfo->args[1].value = from->value;
	fcinfo->args[1].isnull = from->isnull;
	old = MemoryContextSwitchTo(cx->tmp->ecxt_per_tuple_memory);
	newval = FunctionCallInvoke(fcinfo);
	MemoryContextSwitchTo(old);
	state_take(cx, fns, into, newval, fcinfo->isnull);
	ResetExprContext(cx->tmp);
}

void
sstate_cq_state_serialize(StreamStateCqAggContext *cx, StreamStateCqAggFns *fns,
						  const StreamStateCqState *st, StringInfo out)
{
	if (st->isnull)
	{
		appendStringInfoChar(out, st->noinput ? STATE_NO_INPUT : STATE_NULL);
		return;
	}
	appendStringInfoChar(out, STATE_VALUE);
	if (fns->has_serial)
	{
		LOCAL_FCINFO(fcinfo, 1);
		MemoryContext old;
		bytea	   *b;
		uint32		len;

		InitFunctionCallInfoData(*fcinfo, &fns->serialfn, 1, InvalidOid,
								 (Node *) cx->shim, NULL);
		fcinfo->args[0].value = st->value;
		fcinfo->args[0].isnull = false;
		old = MemoryContextSwitchTo(cx->tmp->ecxt_per_tuple_memory);
		b = DatumGetByteaPP(FunctionCallInvoke(fcinfo));
		if (fcinfo->isnull)
			elog(ERROR, "stream_state: serialization function %u returned NULL",
				 fns->serialfn.fn_oid);
		len = VARSIZE_ANY_EXHDR(b);
		appendBinaryStringInfo(out, (const char *) &len, sizeof(len));
		appendBinaryStringInfo(out, VARDATA_ANY(b), len);
		MemoryContextSwitchTo(old);
		ResetExprContext(cx->tmp);
	}
	else if (fns->transtypbyval)
	{
		char		buf[sizeof(Datum)];

		store_att_byval(buf, st->value, fns->transtyplen);
		appendBinaryStringInfo(out, buf, fns->transtyplen);
	}
	else if (fns->transtyplen == -1)
	{
		struct varlena *v = pg_detoast_datum_packed((struct varlena *) DatumGetPointer(st->value));
		uint32		len = VARSIZE_ANY_EXHDR(v);

		appendBinaryStringInfo(out, (const char *) &len, sizeof(len));
		appendBinaryStringInfo(out, VARDATA_ANY(v), len);
	}
	else if (fns->transtyplen == -2)
	{
		const char *s = DatumGetCString(st->value);
		uint32		len = strlen(s);

		appendBinaryStringInfo(out, (const char *) &len, sizeof(len));
		appendBinaryStringInfo(out, s, len);
	}
	else
		appendBinaryStringInfo(out, DatumGetPointer(st->value), fns->transtyplen);
}

/*
 * The state of int8_avg_accum (sum(bigint), avg(bigint)) serialised as
 * sstate_cq_state_serialize serialises it through int8_avg_serialize: the
 * count, then the sum as numeric.c's numericvar_serialize writes an
 * int128 made a NumericVar by int128_to_numericvar (ndigits, weight, sign,
 * dscale, then base-10000 digits from the most significant, none dropped;
 * all in network order, as pq_sendint* sends them).  Whether that is what
 * this server's functions write is checked (sstate_cq_int8_avg_inline)
 * before a capture uses it.
 */
#define INT8_AVG_NBASE		10000
#define INT8_AVG_NEG		0x4000	/* numeric.c's NUMERIC_NEG */

/* The low "bytes" bytes of v at p, most significant first (as pq_sendint*) */
static inline char *
put_be(char *p, uint64 v, int bytes)
{
	for (int i = bytes - 1; i >= 0; i--)
	{
		p[i] = (char) (v & 0xff);
		v >>= 8;
	}
	return p + bytes;
}

void
sstate_cq_int8_avg_serialize(const StreamStateCqState *st, const StreamStateCqInt8Avg *avg,
							 StringInfo out)
{
	int128		sum = ((int128) avg->sum_hi << 64) | (int128) avg->sum_lo;
	uint128		u = sum < 0 ? -(uint128) sum : (uint128) sum;
	uint16		digits[12];
	int			ndigits = 0;
	uint32		len;
	char		buf[1 + sizeof(uint32) + 8 + 16 + 2 * lengthof(digits)];
	char	   *p = buf;

	if (st->isnull)
	{
		appendStringInfoChar(out, st->noinput ? STATE_NO_INPUT : STATE_NULL);
		return;
	}
	/* base-10000 digits, least significant first; in 64 bits when it fits */
	while (u > PG_UINT64_MAX)
	{
		digits[ndigits++] = (uint16) (u % INT8_AVG_NBASE);
		u /= INT8_AVG_NBASE;
	}
	for (uint64 v = (uint64) u; v != 0; v /= INT8_AVG_NBASE)
		digits[ndigits++] = (uint16) (v % INT8_AVG_NBASE);

	*p++ = STATE_VALUE;
	len = sizeof(int64) + 4 * sizeof(int32) + ndigits * sizeof(int16);
	memcpy(p, &len, sizeof(len));
	p += sizeof(len);
	p = put_be(p, (uint64) avg->n, 8);
	p = put_be(p, (uint32) ndigits, 4);
	p = put_be(p, (uint32) (ndigits > 0 ? ndigits - 1 : 0), 4);	/* weight */
	p = put_be(p, sum < 0 ? INT8_AVG_NEG : 0, 4);
	p = put_be(p, 0, 4);		/* dscale */
	for (int i = ndigits - 1; i >= 0; i--)
		p = put_be(p, digits[i], 2);
	appendBinaryStringInfo(out, buf, p - buf);
}

/*
 * Whether fns (a backend's) is int8_avg_accum serialised by
 * int8_avg_serialize, and sstate_cq_int8_avg_add and _serialize give what
 * the functions give on this server: checked once per backend, by folding
 * sample inputs both ways (no row, NULLs only, zero, both signs, carries
 * across base-10000 digits, sums past 64 bits).
 */
bool
sstate_cq_int8_avg_inline(StreamStateCqAggFns *fns)
{
	static int	checked = -1;
	static const int64 samples[][4] = {
		{0, 0, 0, 0},			/* first: the count of inputs to take */
		{1, 0},
		{1, 1},
		{1, -1},
		{2, 9999, 1},
		{2, -20000, 10000},
		{3, PG_INT64_MAX, PG_INT64_MAX, PG_INT64_MAX},
		{3, PG_INT64_MIN, PG_INT64_MIN, -5},
		{2, 123456789012345, -1}
	};
	MemoryContext tmp;
	MemoryContext old;
	StreamStateCqAggContext *cx;
	StringInfoData theirs;
	StringInfoData ours;
	bool		same = true;

	if (!fns->have_trans || fns->agg == NULL ||
		fns->agg->transfn != F_INT8_AVG_ACCUM || fns->agg->serialfn != F_INT8_AVG_SERIALIZE)
		return false;
	if (checked >= 0)
		return checked == 1;

	tmp = AllocSetContextCreate(CurrentMemoryContext, "stream_state int8 avg check",
								ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(tmp);
	cx = sstate_cq_agg_context_create(tmp);
	initStringInfo(&theirs);
	initStringInfo(&ours);
	for (int s = 0; s < lengthof(samples) + 1 && same; s++)
	{
		StreamStateCqState a;
		StreamStateCqState b;
		StreamStateCqInt8Avg avg = {0};
		int			n = s < lengthof(samples) ? (int) samples[s][0] : 1;

		sstate_cq_state_init(cx, fns, &a);
		sstate_cq_state_init(cx, fns, &b);
		for (int i = 0; i < n; i++)
		{
			/* the last round: one NULL input */
			bool		isnull = s == lengthof(samples);
			Datum		x = isnull ? (Datum) 0 : Int64GetDatum(samples[s][i + 1]);

			sstate_cq_state_advance(cx, fns, &a, &x, &isnull, 1);
			sstate_cq_int8_avg_add(&b, &avg, x, isnull);
		}
		resetStringInfo(&theirs);
		resetStringInfo(&ours);
		sstate_cq_state_serialize(cx, fns, &a, &theirs);
		sstate_cq_int8_avg_serialize(&b, &avg, &ours);
		if (theirs.len != ours.len || memcmp(theirs.data, ours.data, ours.len) != 0)
			same = false;
	}
	sstate_cq_agg_context_reset(cx);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(tmp);
	if (!same)
		elog(DEBUG1, "stream_state: int8_avg_serialize differs from the inline form; not used");
	checked = same ? 1 : 0;
	return same;
}

static const char *
get_len(const char *p, const char *end, uint32 *len)
{
	if (p == NULL || end - p < (ptrdiff_t) sizeof(uint32))
		return NULL;
	memcpy(len, p, sizeof(uint32));
	p += sizeof(uint32);
	if ((uint64) (end - p) < *len)
		return NULL;
	return p;
}

/*
 * Read one serialised state at p (before end) into st, in the states'
 * context.  Returns the position after it, or NULL when it is malformed.
 */
const char *
sstate_cq_state_deserialize(StreamStateCqAggContext *cx, StreamStateCqAggFns *fns,
							StreamStateCqState *st, const char *p, const char *end)
{
	MemoryContext old;
	uint32		len;

	if (p >= end)
		return NULL;
	switch (*p++)
	{
		case STATE_NO_INPUT:
		case STATE_NULL:
			st->value = (Datum) 0;
			st->isnull = true;
			st->noinput = (p[-1] == STATE_NO_INPUT);
			return p;
		case STATE_VALUE:
			break;
		default:
			return NULL;
	}
	st->isnull = false;
	st->noinput = false;
	old = MemoryContextSwitchTo(cx->states);
	if (fns->has_serial)
	{
		LOCAL_FCINFO(fcinfo, 2);
		bytea	   *b;

		if ((p = get_len(p, end, &len)) == NULL)
		{
			MemoryContextSwitchTo(old);
			return NULL;
		}
		b = palloc(VARHDRSZ + len);
		SET_VARSIZE(b, VARHDRSZ + len);
		memcpy(VARDATA(b), p, len);
		p += len;
		InitFunctionCallInfoData(*fcinfo, &fns->deserialfn, 2, InvalidOid,
								 (Node *) cx->shim, NULL);
		fcinfo->args[0].value = PointerGetDatum(b);
		fcinfo->args[0].isnull = false;
		fcinfo->args[1].value = (Datum) 0;
		fcinfo->args[1].isnull = false;
		st->value = FunctionCallInvoke(fcinfo);
		st->isnull = fcinfo->isnull;
		pfree(b);
	}
	else if (fns->transtypbyval)
	{
		if (end - p < fns->transtyplen)
			p = NULL;
		else
		{
			st->value = fetch_att(p, true, fns->transtyplen);
			p += fns->transtyplen;
		}
	}
	else if (fns->transtyplen == -1 || fns->transtyplen == -2)
	{
		if ((p = get_len(p, end, &len)) != NULL)
		{
			if (fns->transtyplen == -1)
			{
				struct varlena *v = palloc(VARHDRSZ + len);

				SET_VARSIZE(v, VARHDRSZ + len);
				memcpy(VARDATA(v), p, len);
				st->value = PointerGetDatum(v);
			}
			else
				st->value = CStringGetDatum(pnstrdup(p, len));
			p += len;
		}
	}
	else
	{
		if (end - p < fns->transtyplen)
			p = NULL;
		else
		{
			char	   *v = palloc(fns->transtyplen);

			memcpy(v, p, fns->transtyplen);
			st->value = PointerGetDatum(v);
			p += fns->transtyplen;
		}
	}
	MemoryContextSwitchTo(old);
	return p;
}

/* The aggregate's result of st (the state may be changed). */
Datum
sstate_cq_state_final(StreamStateCqAggContext *cx, StreamStateCqAggFns *fns,
					  StreamStateCqState *st, bool *isnull)
{
	LOCAL_FCINFO(fcinfo, FUNC_MAX_ARGS);
	Datum		result;

	Assert(fns->have_trans);
	if (!fns->has_final)
	{
		*isnull = st->isnull;
		return st->value;
	}
	if (fns->finalfn.fn_strict && (st->isnull || fns->nfinalargs > 1))
	{
		*isnull = true;
		return (Datum) 0;
	}
	InitFunctionCallInfoData(*fcinfo, &fns->finalfn, fns->nfinalargs, fns->agg->inputcollid,
							 (Node *) cx->shim, NULL);
	fcinfo->args[0].value = st->value;
	fcinfo->args[0].isnull = st->isnull;
	for (int i = 1; i < fns->nfinalargs; i++)
	{
		fcinfo->args[i].value = (Datum) 0;
		fcinfo->args[i].isnull = true;
	}
	result = FunctionCallInvoke(fcinfo);
	*isnull = fcinfo->isnull;
	return result;
}
