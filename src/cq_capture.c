/*-------------------------------------------------------------------------
 *
 * cq_capture.c
 *	  Capture for continuous queries in SQL: the rows of one statement (or
 *	  of the backfill) folded into partial aggregate states per (key, pane),
 *	  and written into the transaction's delta as values (capture.c).
 *
 * Per statement: the WHERE, key, argument and FILTER expressions are set
 * up once (ExecInitExpr), rows are grouped as GROUP BY groups them (a
 * TupleHashTable over the keys and the pane, with the keys' equality
 * operators), each group's states advance with the aggregates' transition
 * functions, and at the end each group goes into the delta as its key
 * image, pane, row count and serialised states.  Groups of the statements
 * of one transaction are not combined here: the worker combines whatever
 * arrives for a (key, pane).
 *
 * Key images of several keys: per key a byte (0: NULL, 1: a value), then
 * the value's bytes: typlen bytes for fixed-length types, a uint32 length
 * and the bytes for varlena and cstring types; numeric and float values in
 * their canonical form first (query.h).  Equal keys give equal images
 * because create_query takes only key types whose equal values have equal
 * bytes.
 *
 * IDENTIFICATION
 *	  src/cq_capture.c
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_operator_d.h"
#include "catalog/pg_type_d.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "optimizer/optimizer.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "cq_capture.h"
#include "window.h"

#define INT8_EQ_OP	410			/* int8 = int8 */

/* A query's compiled form, per backend (the analysis and its functions) */
typedef struct CqCompiled
{
	int32		qid;
	uint64		generation;
	MemoryContext cxt;
	StreamStateCqAnalysis *an;
	StreamStateCqAggFns *fns;
	int16	   *keylen;
	bool	   *keybyval;
	uint8	   *keynorm;
} CqCompiled;

static CqCompiled *compiled = NULL;
static int	ncompiled = 0;

/* The compiled form of info, made when its definition changes. */
CqCompiled *
sstate_cq_compiled(const StreamStateQueryInfo *info)
{
	uint64		gen = pg_atomic_read_u64(&sstate_shared->def_generation);
	CqCompiled *c = NULL;
	MemoryContext old;

	for (int i = 0; i < ncompiled; i++)
		if (compiled[i].qid == info->id)
			c = &compiled[i];
	if (c != NULL && c->generation == gen && c->an != NULL)
		return c;
	if (c == NULL)
	{
		compiled = compiled ? repalloc(compiled, sizeof(CqCompiled) * (ncompiled + 1)) :
			MemoryContextAlloc(TopMemoryContext, sizeof(CqCompiled));
		c = &compiled[ncompiled++];
		c->cxt = AllocSetContextCreate(TopMemoryContext, "stream_state compiled query",
									   ALLOCSET_SMALL_SIZES);
	}
	else
		MemoryContextReset(c->cxt);
	c->qid = info->id;
	c->an = NULL;
	old = MemoryContextSwitchTo(c->cxt);
	{
		StreamStateCqAnalysis *an = sstate_cq_analyze_defined(info->query_text, info->name);

		c->fns = palloc0(sizeof(StreamStateCqAggFns) * Max(an->naggs, 1));
		for (int j = 0; j < an->naggs; j++)
			sstate_cq_agg_fns_backend(&c->fns[j], &an->aggs[j], an->aggs[j].refs);
		c->keylen = palloc(sizeof(int16) * Max(an->nkeys, 1));
		c->keybyval = palloc(sizeof(bool) * Max(an->nkeys, 1));
		c->keynorm = palloc(sizeof(uint8) * Max(an->nkeys, 1));
		for (int i = 0; i < an->nkeys; i++)
		{
			get_typlenbyval(an->keys[i].type, &c->keylen[i], &c->keybyval[i]);
			c->keynorm[i] = sstate_key_norm_for_type(an->keys[i].type);
		}
		c->an = an;
	}
	MemoryContextSwitchTo(old);
	c->generation = gen;
	return c;
}

StreamStateCqAnalysis *
sstate_cq_compiled_analysis(CqCompiled *c)
{
	return c->an;
}

StreamStateCqAggFns *
sstate_cq_compiled_fns(CqCompiled *c)
{
	return c->fns;
}

/* The image of key values (see the header comment) */
void
sstate_cq_key_image(CqCompiled *c, const Datum *values, const bool *nulls, StringInfo out)
{
	resetStringInfo(out);
	for (int i = 0; i < c->an->nkeys; i++)
	{
		Datum		d = values[i];

		if (nulls[i])
		{
			appendStringInfoChar(out, 0);
			continue;
		}
		appendStringInfoChar(out, 1);
		if (c->keynorm[i] != SSTATE_NORM_NONE)
			d = sstate_key_normalize(c->keynorm[i], d);
		if (c->keybyval[i])
		{
			char		buf[sizeof(Datum)];

			store_att_byval(buf, d, c->keylen[i]);
			appendBinaryStringInfo(out, buf, c->keylen[i]);
		}
		else if (c->keylen[i] > 0)
			appendBinaryStringInfo(out, DatumGetPointer(d), c->keylen[i]);
		else
		{
			const char *p;
			uint32		len;

			if (c->keylen[i] == -1)
			{
				struct varlena *v = PG_DETOAST_DATUM_PACKED(d);

				p = VARDATA_ANY(v);
				len = VARSIZE_ANY_EXHDR(v);
			}
			else
			{
				p = DatumGetCString(d);
				len = strlen(p);
			}
			appendBinaryStringInfo(out, (const char *) &len, sizeof(len));
			appendBinaryStringInfo(out, p, len);
		}
	}
}

/* The key values of an image (palloc'd in the current context); false if malformed */
bool
sstate_cq_key_values(CqCompiled *c, const char *img, uint32 imglen, Datum *values, bool *nulls)
{
	const char *p = img;
	const char *end = img + imglen;

	for (int i = 0; i < c->an->nkeys; i++)
	{
		if (p >= end)
			return false;
		if (*p++ == 0)
		{
			nulls[i] = true;
			values[i] = (Datum) 0;
			continue;
		}
		nulls[i] = false;
		if (c->keylen[i] > 0)
		{
			if (end - p < c->keylen[i])
				return false;
			if (c->keybyval[i])
				values[i] = fetch_att(p, true, c->keylen[i]);
			else
			{
				char	   *v = palloc(c->keylen[i]);

				memcpy(v, p, c->keylen[i]);
				values[i] = PointerGetDatum(v);
			}
			p += c->keylen[i];
		}
		else
		{
			uint32		len;

			if (end - p < (ptrdiff_t) sizeof(len))
				return false;
			memcpy(&len, p, sizeof(len));
			p += sizeof(len);
			if ((uint64) (end - p) < len)
				return false;
			if (c->keylen[i] == -1)
			{
				struct varlena *v = palloc(VARHDRSZ + len);

				SET_VARSIZE(v, VARHDRSZ + len);
				memcpy(VARDATA(v), p, len);
				values[i] = PointerGetDatum(v);
			}
			else
				values[i] = CStringGetDatum(pnstrdup(p, len));
			p += len;
		}
	}
	return p == end;
}

/* One group of a statement: its states and rows */
typedef struct CaptureGroup
{
	int64		nrows;
	StreamStateCqState states[FLEXIBLE_ARRAY_MEMBER];
} CaptureGroup;

/*
 * Write every group of a statement into the delta and start afresh: at its
 * end, and whenever the groups take more memory than a hash aggregate may
 * (get_hash_memory_limit: work_mem times hash_mem_multiplier).  Partial
 * states written early are combined by the worker like any others; so
 * aggregates with large states (hll's is about 130 kB in memory) never hold
 * more than that per statement.
 */
static void
flush_groups(CqCompiled *c, TupleHashTable groups, MemoryContext gcxt, TupleTableSlot *rslot,
			 StreamStateCqAggContext *cx, StreamStateCqAggFns *fns, StreamStateCapture *cap,
			 StringInfo img, StringInfo val)
{
	TupleHashIterator it;
	TupleHashEntry entry;
	int			nkeys = c->an->nkeys;
	int			naggs = c->an->naggs;

	InitTupleHashIterator(groups, &it);
	while ((entry = ScanTupleHashTable(groups, &it)) != NULL)
	{
		CaptureGroup *g = entry->additional;
		int64		pane;

		ExecStoreMinimalTuple(entry->firstTuple, rslot, false);
		slot_getallattrs(rslot);
		sstate_cq_key_image(c, rslot->tts_values, rslot->tts_isnull, img);
		pane = DatumGetInt64(rslot->tts_values[nkeys]);
		resetStringInfo(val);
		for (int j = 0; j < naggs; j++)
			sstate_cq_state_serialize(cx, &fns[j], &g->states[j], val);
		sstate_capture_value(cap, img->data, img->len, pane, g->nrows, val->data, val->len);
	}
	ExecClearTuple(rslot);
	ResetTupleHashTable(groups);
	MemoryContextReset(gcxt);
	sstate_cq_agg_context_reset(cx);
}

static ExprState *
prepare(Expr *expr)
{
	return expr ? ExecInitExpr(expression_planner(expr), NULL) : NULL;
}

/*
 * Fold the rows next() gives (into slot, of the source's descriptor) into
 * the current delta of query info.
 */
void
sstate_cq_capture_rows(const StreamStateQueryInfo *info, TupleTableSlot *slot,
					   bool (*next) (void *arg, TupleTableSlot *slot), void *arg)
{
	CqCompiled *c = sstate_cq_compiled(info);
	StreamStateCqAnalysis *an = c->an;
	StreamStateCqAggFns *fns = c->fns;
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "stream_state capture",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	EState	   *estate = CreateExecutorState();
	ExprContext *econtext = GetPerTupleExprContext(estate);
	ExprState  *qual;
	ExprState **keyexprs = palloc0(sizeof(ExprState *) * Max(an->nkeys, 1));
	ExprState ***argexprs = palloc0(sizeof(ExprState **) * Max(an->naggs, 1));
	ExprState **filters = palloc0(sizeof(ExprState *) * Max(an->naggs, 1));
	TupleDesc	gdesc = CreateTemplateTupleDesc(an->nkeys + 1);
	TupleTableSlot *gslot;
	TupleTableSlot *rslot;
	TupleHashTable groups;
	StreamStateCqAggContext *cx = sstate_cq_agg_context_create(cxt);
	StreamStateCapture cap;
	StringInfoData img;
	StringInfoData val;
	MemoryContext gcxt;
	Size		limit;
	uint64		nrows = 0;
	Oid		   *eqops = palloc(sizeof(Oid) * (an->nkeys + 1));
	Oid		   *colls = palloc(sizeof(Oid) * (an->nkeys + 1));
	AttrNumber *cols = palloc(sizeof(AttrNumber) * (an->nkeys + 1));
	Oid		   *eqfuncs;
	FmgrInfo   *hashfns;
	Size		gsize = offsetof(CaptureGroup, states) + sizeof(StreamStateCqState) * Max(an->naggs, 1);

	qual = an->qual ? ExecInitQual(make_ands_implicit(expression_planner(an->qual)), NULL) : NULL;
	for (int i = 0; i < an->nkeys; i++)
	{
		keyexprs[i] = prepare(an->keys[i].expr);
		TupleDescInitEntry(gdesc, i + 1, NULL, an->keys[i].type, an->keys[i].typmod, 0);
		TupleDescInitEntryCollation(gdesc, i + 1, an->keys[i].collation);
		eqops[i] = an->keys[i].eqop;
		colls[i] = an->keys[i].collation;
		cols[i] = i + 1;
	}
	TupleDescInitEntry(gdesc, an->nkeys + 1, NULL, INT8OID, -1, 0);
	eqops[an->nkeys] = INT8_EQ_OP;
	colls[an->nkeys] = InvalidOid;
	cols[an->nkeys] = an->nkeys + 1;
	for (int j = 0; j < an->naggs; j++)
	{
		ListCell   *lc;
		int			k = 0;

		argexprs[j] = palloc0(sizeof(ExprState *) * Max(list_length(an->aggs[j].args), 1));
		foreach(lc, an->aggs[j].args)
			argexprs[j][k++] = prepare((Expr *) lfirst(lc));
		filters[j] = an->aggs[j].filter ?
			ExecInitQual(make_ands_implicit(expression_planner(an->aggs[j].filter)), NULL) : NULL;
	}
	execTuplesHashPrepare(an->nkeys + 1, eqops, &eqfuncs, &hashfns);
	gcxt = AllocSetContextCreate(cxt, "stream_state capture groups", ALLOCSET_DEFAULT_SIZES);
	groups = BuildTupleHashTableExt(NULL, gdesc, an->nkeys + 1, cols, eqfuncs, hashfns, colls,
									256, sizeof(CaptureGroup *), cxt, gcxt, cxt, false);
	limit = get_hash_memory_limit();
	initStringInfo(&img);
	initStringInfo(&val);
	gslot = MakeSingleTupleTableSlot(gdesc, &TTSOpsVirtual);
	rslot = MakeSingleTupleTableSlot(gdesc, &TTSOpsMinimalTuple);

	sstate_capture_begin(&cap, info);
	while (next(arg, slot))
	{
		int64		pane = 0;
		TupleHashEntry entry;
		CaptureGroup *g;
		bool		isnew;

		CHECK_FOR_INTERRUPTS();
		ResetExprContext(econtext);
		econtext->ecxt_scantuple = slot;
		if (qual && !ExecQual(qual, econtext))
			continue;
		if (!info->def.processing_time)
		{
			bool		isnull;
			Datum		t = slot_getattr(slot, info->time_attnum, &isnull);
			int64		us;

			if (isnull || !sstate_time_to_unix_us(t, info->time_type, &us))
			{
				sstate_capture_skip(&cap);
				continue;
			}
			pane = sstate_floor_div(us, info->def.pane_us);
			sstate_capture_note_event(&cap, us);
		}
		ExecClearTuple(gslot);
		for (int i = 0; i < an->nkeys; i++)
			gslot->tts_values[i] = ExecEvalExpr(keyexprs[i], econtext, &gslot->tts_isnull[i]);
		gslot->tts_values[an->nkeys] = Int64GetDatum(pane);
		gslot->tts_isnull[an->nkeys] = false;
		ExecStoreVirtualTuple(gslot);
		entry = LookupTupleHashEntry(groups, gslot, &isnew, NULL);
		if (isnew)
		{
			g = MemoryContextAllocZero(gcxt, gsize);
			for (int j = 0; j < an->naggs; j++)
				sstate_cq_state_init(cx, &fns[j], &g->states[j]);
			entry->additional = g;
		}
		else
			g = entry->additional;
		g->nrows++;
		for (int j = 0; j < an->naggs; j++)
		{
			Datum		args[FUNC_MAX_ARGS];
			bool		nulls[FUNC_MAX_ARGS];
			int			nargs = list_length(an->aggs[j].args);

			if (filters[j] && !ExecQual(filters[j], econtext))
				continue;
			for (int k = 0; k < nargs; k++)
				args[k] = ExecEvalExpr(argexprs[j][k], econtext, &nulls[k]);
			sstate_cq_state_advance(cx, &fns[j], &g->states[j], args, nulls, nargs);
		}
		if (++nrows % 64 == 0 &&
			MemoryContextMemAllocated(gcxt, true) + MemoryContextMemAllocated(cx->states, true) > limit)
			flush_groups(c, groups, gcxt, rslot, cx, fns, &cap, &img, &val);
	}
	flush_groups(c, groups, gcxt, rslot, cx, fns, &cap, &img, &val);
	ExecDropSingleTupleTableSlot(gslot);
	ExecDropSingleTupleTableSlot(rslot);
	sstate_cq_agg_context_reset(cx);
	FreeExecutorState(estate);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
}
