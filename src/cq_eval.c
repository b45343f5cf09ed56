/*-------------------------------------------------------------------------
 *
 * cq_eval.c
 *	  Evaluate a continuous query over its whole source table through
 *	  partial aggregate states, as the data path will: rows folded into
 *	  states, states serialised and deserialised as the WAL carries them,
 *	  combined as the worker combines them (with the functions resolved for a
 *	  process without the catalog), finalised, and the output expressions
 *	  and HAVING evaluated over keys and results as reads will.
 *
 * stream_state._cq_evaluate(query text) returns the query's rows as text
 * (record_out of each output row).  Tests compare them with the text of
 * the rows PostgreSQL itself returns for the same query, so every aggregate
 * the analysis accepts is checked against PostgreSQL's own executor.  Rows
 * go alternately into two sets of states, which are then combined, so that
 * every group with two rows or more goes through a combine.
 *
 * Groups are found as GROUP BY finds them: a TupleHashTable over the key
 * values with the keys' equality operators (execGrouping.c).
 *
 * IDENTIFICATION
 *	  src/cq_eval.c
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/tableam.h"
#include "executor/executor.h"
#include "executor/tuptable.h"
#include "funcapi.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "optimizer/optimizer.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "cq_agg.h"
#include "stream_state.h"

PG_FUNCTION_INFO_V1(stream_state__cq_evaluate);
PGDLLEXPORT void stream_state_cq_combiner_main(Datum arg);

/* One group: two halves of states, naggs each */
typedef struct EvalGroup
{
	StreamStateCqState *half[2];
} EvalGroup;

/*
 * Combining in a background worker with no database connection, as the
 * stream_state worker combines: the job goes through a DSM segment.  The
 * input holds, per group and aggregate, the two halves' serialised states
 * (uint32 length, then the bytes; PG_UINT32_MAX: no such half); the output
 * the combined state the same way.
 */
typedef struct CombineJob
{
	int			naggs;
	int			ngroups;
	Size		in_len;
	Size		out_cap;
	Size		out_len;
	bool		done;
	char		error[512];
	StreamStateCqWorkerAgg aggs[FLEXIBLE_ARRAY_MEMBER];
	/* then the input, then room for the output */
} CombineJob;

#define JOB_HEADER(naggs) \
	MAXALIGN(offsetof(CombineJob, aggs) + sizeof(StreamStateCqWorkerAgg) * (naggs))

static void
put_part(StringInfo in, StreamStateCqAggContext *cx, StreamStateCqAggFns *fns,
		 const StreamStateCqState *st)
{
	uint32		len = PG_UINT32_MAX;
	int			at = in->len;

	appendBinaryStringInfo(in, (const char *) &len, sizeof(len));
	if (st == NULL)
		return;
	sstate_cq_state_serialize(cx, fns, st, in);
	len = in->len - at - sizeof(len);
	memcpy(in->data + at, &len, sizeof(len));
}

static void
combine_in_worker(StreamStateCqAnalysis *an, StreamStateCqAggFns *fns,
				  StreamStateCqAggContext *cx, EvalGroup **gs, int ng,
				  StreamStateCqState **res)
{
	StringInfoData in;
	dsm_segment *seg;
	CombineJob *job;
	Size		hdr = JOB_HEADER(an->naggs);
	BackgroundWorker bgw;
	BackgroundWorkerHandle *handle;
	bool		stopped;
	const char *p;
	const char *end;

	initStringInfo(&in);
	for (int g = 0; g < ng; g++)
		for (int j = 0; j < an->naggs; j++)
			for (int h = 0; h < 2; h++)
				put_part(&in, cx, &fns[j], gs[g]->half[h] ? &gs[g]->half[h][j] : NULL);

	seg = dsm_create(hdr + in.len * 2 + 1024 * (Size) (ng + 1), 0);
	job = dsm_segment_address(seg);
	memset(job, 0, hdr);
	job->naggs = an->naggs;
	job->ngroups = ng;
	job->in_len = in.len;
	job->out_cap = in.len * 2 + 1024 * (Size) (ng + 1) - 0;
	for (int j = 0; j < an->naggs; j++)
		sstate_cq_worker_agg(&an->aggs[j], &job->aggs[j]);
	memcpy((char *) job + hdr, in.data, in.len);

	sstate_bgworker_for_db(&bgw, MyDatabaseId, "stream_state_cq_combiner_main", "combiner");
	bgw.bgw_main_arg = UInt32GetDatum(dsm_segment_handle(seg));
	if (!RegisterDynamicBackgroundWorker(&bgw, &handle))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start a stream_state combiner"),
				 errhint("Raise max_worker_processes.")));
	/*
	 * Only its end is waited for: a combiner can finish before the
	 * postmaster tells its start, and WaitForBackgroundWorkerStartup then
	 * answers BGWH_STOPPED, which is no failure.  One that never started
	 * stops without having set done.
	 */
	stopped = WaitForBackgroundWorkerShutdown(handle) == BGWH_STOPPED;
	pg_memory_barrier();
	if (!stopped || !job->done)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("the stream_state combiner failed: %s",
						job->error[0] ? job->error : "it stopped without an answer")));

	p = (const char *) job + hdr + job->in_len;
	end = p + job->out_len;
	for (int g = 0; g < ng; g++)
	{
		res[g] = palloc0(sizeof(StreamStateCqState) * Max(an->naggs, 1));
		for (int j = 0; j < an->naggs; j++)
		{
			uint32		len;

			if (end - p < (ptrdiff_t) sizeof(len))
				elog(ERROR, "stream_state: the combiner's answer is short");
			memcpy(&len, p, sizeof(len));
			p += sizeof(len);
			if (sstate_cq_state_deserialize(cx, &fns[j], &res[g][j], p, p + len) != p + len)
				elog(ERROR, "stream_state: the combiner's state of aggregate %d does not read back", j + 1);
			p += len;
			/* no rows at all: the aggregate's initial state, as nodeAgg has */
			if (res[g][j].noinput && !fns[j].initval_null)
				sstate_cq_state_init(cx, &fns[j], &res[g][j]);
		}
	}
	dsm_detach(seg);
}

/*
 * The combiner: connected to no database, like the stream_state worker, it
 * combines the halves of every group with the functions it is given.
 */
void
stream_state_cq_combiner_main(Datum arg)
{
	dsm_segment *seg;
	CombineJob *job;

	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);	/* no database */
	seg = dsm_attach(DatumGetUInt32(arg));
	if (seg == NULL)
		proc_exit(0);
	job = dsm_segment_address(seg);
	PG_TRY();
	{
		Size		hdr = JOB_HEADER(job->naggs);
		const char *p = (const char *) job + hdr;
		const char *end = p + job->in_len;
		StringInfoData out;
		StreamStateCqAggFns *fns = palloc0(sizeof(StreamStateCqAggFns) * Max(job->naggs, 1));
		StreamStateCqAggContext *cx = sstate_cq_agg_context_create(TopMemoryContext);

		for (int j = 0; j < job->naggs; j++)
			sstate_cq_agg_fns_worker(&fns[j], &job->aggs[j]);
		initStringInfo(&out);
		for (int g = 0; g < job->ngroups; g++)
			for (int j = 0; j < job->naggs; j++)
			{
				StreamStateCqState st = {(Datum) 0, true, true};

				for (int h = 0; h < 2; h++)
				{
					uint32		len;
					StreamStateCqState part;

					if (end - p < (ptrdiff_t) sizeof(len))
						elog(ERROR, "short input");
					memcpy(&len, p, sizeof(len));
					p += sizeof(len);
					if (len == PG_UINT32_MAX)
						continue;
					if (sstate_cq_state_deserialize(cx, &fns[j], &part, p, p + len) != p + len)
						elog(ERROR, "a state of aggregate %d does not read back", j + 1);
					p += len;
					sstate_cq_state_combine(cx, &fns[j], &st, &part);
				}
				put_part(&out, cx, &fns[j], &st);
			}
		if (out.len > job->out_cap)
			elog(ERROR, "the answer does not fit");
		memcpy((char *) job + hdr + job->in_len, out.data, out.len);
		job->out_len = out.len;
		job->done = true;
	}
	PG_CATCH();
	{
		ErrorData  *e = CopyErrorData();

		strlcpy(job->error, e->message, sizeof(job->error));
		PG_RE_THROW();
	}
	PG_END_TRY();
	dsm_detach(seg);
	proc_exit(0);
}

static ExprState *
prepare(Expr *expr, EState *estate)
{
	if (expr == NULL)
		return NULL;
	return ExecInitExpr(expression_planner(expr), NULL);
}

/* A condition (WHERE, HAVING): NULL is false, as ExecQual wants it */
static ExprState *
prepare_qual(Expr *expr)
{
	if (expr == NULL)
		return NULL;
	return ExecInitQual(make_ands_implicit(expression_planner(expr)), NULL);
}

Datum
stream_state__cq_evaluate(PG_FUNCTION_ARGS)
{
	char	   *sql = text_to_cstring(PG_GETARG_TEXT_PP(0));
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	StreamStateCqAnalysis *an;
	Relation	rel;
	EState	   *estate;
	ExprContext *econtext;
	TupleTableSlot *scan;
	TupleTableSlot *keyslot;
	TupleTableSlot *groupslot;
	TupleTableSlot *resslot;
	TupleDesc	keydesc;
	TupleDesc	resdesc;
	TupleDesc	outdesc;
	ExprState  *qual;
	ExprState **keyexprs;
	ExprState ***argexprs;
	ExprState **filters;
	ExprState **colexprs;
	ExprState  *having;
	StreamStateCqAggFns *fns;
	StreamStateCqAggContext *cx;
	TupleHashTable groups = NULL;
	EvalGroup	single = {{NULL, NULL}};
	bool		have_single = false;
	TableScanDesc sd;
	uint64		nrow = 0;
	MemoryContext tablecxt;
	MemoryContext tempcxt;
	StringInfoData buf;
	FmgrInfo	recout;
	bool		in_worker = PG_NARGS() > 1 && !PG_ARGISNULL(1) && PG_GETARG_BOOL(1);
	TupleHashEntry *entries;
	EvalGroup **gs;
	int			ng;
	StreamStateCqState **res;

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	an = sstate_cq_analyze(sql, NULL);
	rel = table_open(an->source, AccessShareLock);
	estate = CreateExecutorState();
	econtext = GetPerTupleExprContext(estate);

	/* expressions over the source row, then over the result row */
	qual = prepare_qual(an->qual);
	keyexprs = palloc0(sizeof(ExprState *) * Max(an->nkeys, 1));
	keydesc = CreateTemplateTupleDesc(an->nkeys);
	for (int i = 0; i < an->nkeys; i++)
	{
		keyexprs[i] = prepare(an->keys[i].expr, estate);
		TupleDescInitEntry(keydesc, i + 1, NULL, an->keys[i].type, an->keys[i].typmod, 0);
		TupleDescInitEntryCollation(keydesc, i + 1, an->keys[i].collation);
	}
	fns = palloc0(sizeof(StreamStateCqAggFns) * Max(an->naggs, 1));
	argexprs = palloc0(sizeof(ExprState **) * Max(an->naggs, 1));
	filters = palloc0(sizeof(ExprState *) * Max(an->naggs, 1));
	for (int j = 0; j < an->naggs; j++)
	{
		StreamStateCqAgg *a = &an->aggs[j];
		ListCell   *lc;
		int			k = 0;

		sstate_cq_agg_fns_backend(&fns[j], a, a->refs);
		argexprs[j] = palloc0(sizeof(ExprState *) * Max(list_length(a->args), 1));
		foreach(lc, a->args)
			argexprs[j][k++] = prepare((Expr *) lfirst(lc), estate);
		filters[j] = prepare(a->filter, estate);
	}
	resdesc = sstate_cq_result_desc(an);
	outdesc = CreateTemplateTupleDesc(an->ncolumns);
	colexprs = palloc0(sizeof(ExprState *) * Max(an->ncolumns, 1));
	for (int c = 0; c < an->ncolumns; c++)
	{
		TupleDescInitEntry(outdesc, c + 1, an->columns[c].name, an->columns[c].type,
						   an->columns[c].typmod, 0);
		TupleDescInitEntryCollation(outdesc, c + 1, an->columns[c].collation);
		colexprs[c] = prepare(an->columns[c].expr, estate);
	}
	outdesc = BlessTupleDesc(outdesc);
	having = prepare_qual(an->having);

	cx = sstate_cq_agg_context_create(CurrentMemoryContext);
	tablecxt = AllocSetContextCreate(CurrentMemoryContext, "groups", ALLOCSET_DEFAULT_SIZES);
	tempcxt = AllocSetContextCreate(CurrentMemoryContext, "group hash", ALLOCSET_DEFAULT_SIZES);
	keyslot = MakeSingleTupleTableSlot(keydesc, &TTSOpsVirtual);
	groupslot = MakeSingleTupleTableSlot(keydesc, &TTSOpsMinimalTuple);
	resslot = MakeSingleTupleTableSlot(resdesc, &TTSOpsVirtual);
	if (an->nkeys > 0)
	{
		Oid		   *eqops = palloc(sizeof(Oid) * an->nkeys);
		Oid		   *eqfuncs;
		FmgrInfo   *hashfns;
		AttrNumber *cols = palloc(sizeof(AttrNumber) * an->nkeys);
		Oid		   *colls = palloc(sizeof(Oid) * an->nkeys);

		for (int i = 0; i < an->nkeys; i++)
		{
			eqops[i] = an->keys[i].eqop;
			cols[i] = i + 1;
			colls[i] = an->keys[i].collation;
		}
		execTuplesHashPrepare(an->nkeys, eqops, &eqfuncs, &hashfns);
		groups = BuildTupleHashTableExt(NULL, keydesc, an->nkeys, cols, eqfuncs, hashfns,
										colls, 1024, sizeof(EvalGroup *),
										CurrentMemoryContext, tablecxt, tempcxt, false);
	}

	/* fold every visible row of the source */
	scan = table_slot_create(rel, NULL);
	sd = table_beginscan(rel, GetActiveSnapshot(), 0, NULL);
	while (table_scan_getnextslot(sd, ForwardScanDirection, scan))
	{
		EvalGroup  *g;
		int			h;

		CHECK_FOR_INTERRUPTS();
		ResetExprContext(econtext);
		econtext->ecxt_scantuple = scan;
		if (qual && !ExecQual(qual, econtext))
			continue;
		if (an->nkeys > 0)
		{
			TupleHashEntry entry;
			bool		isnew;

			ExecClearTuple(keyslot);
			for (int i = 0; i < an->nkeys; i++)
				keyslot->tts_values[i] = ExecEvalExpr(keyexprs[i], econtext,
													  &keyslot->tts_isnull[i]);
			ExecStoreVirtualTuple(keyslot);
			entry = LookupTupleHashEntry(groups, keyslot, &isnew, NULL);
			if (isnew)
			{
				g = MemoryContextAllocZero(tablecxt, sizeof(EvalGroup));
				entry->additional = g;
			}
			else
				g = entry->additional;
		}
		else
		{
			g = &single;
			have_single = true;
		}
		h = nrow++ % 2;
		if (g->half[h] == NULL)
		{
			g->half[h] = MemoryContextAllocZero(tablecxt,
												sizeof(StreamStateCqState) * Max(an->naggs, 1));
			for (int j = 0; j < an->naggs; j++)
				sstate_cq_state_init(cx, &fns[j], &g->half[h][j]);
		}
		for (int j = 0; j < an->naggs; j++)
		{
			Datum		args[FUNC_MAX_ARGS];
			bool		nulls[FUNC_MAX_ARGS];
			int			nargs = list_length(an->aggs[j].args);

			if (filters[j])
			{
				bool		isnull;
				Datum		ok = ExecEvalExpr(filters[j], econtext, &isnull);

				if (isnull || !DatumGetBool(ok))
					continue;
			}
			for (int k = 0; k < nargs; k++)
				args[k] = ExecEvalExpr(argexprs[j][k], econtext, &nulls[k]);
			sstate_cq_state_advance(cx, &fns[j], &g->half[h][j], args, nulls, nargs);
		}
	}
	table_endscan(sd);

	/*
	 * No GROUP BY: one row even for no input, as PostgreSQL returns (its
	 * states are the initial ones).
	 */
	if (an->nkeys == 0 && !have_single)
	{
		single.half[0] = palloc0(sizeof(StreamStateCqState) * Max(an->naggs, 1));
		for (int j = 0; j < an->naggs; j++)
			sstate_cq_state_init(cx, &fns[j], &single.half[0][j]);
		have_single = true;
	}

	initStringInfo(&buf);
	fmgr_info(F_RECORD_OUT, &recout);

	/* the groups, in one array */
	{
		TupleHashIterator it;
		TupleHashEntry entry;
		int			cap = 64;

		ng = 0;
		entries = palloc(sizeof(TupleHashEntry) * cap);
		gs = palloc(sizeof(EvalGroup *) * cap);
		if (groups)
		{
			InitTupleHashIterator(groups, &it);
			while ((entry = ScanTupleHashTable(groups, &it)) != NULL)
			{
				if (ng == cap)
				{
					cap *= 2;
					entries = repalloc(entries, sizeof(TupleHashEntry) * cap);
					gs = repalloc(gs, sizeof(EvalGroup *) * cap);
				}
				entries[ng] = entry;
				gs[ng++] = entry->additional;
			}
		}
		else
		{
			entries[0] = NULL;
			gs[ng++] = &single;
		}
	}

	/* each half through the WAL's form, combined here or by a worker */
	res = palloc0(sizeof(StreamStateCqState *) * ng);
	if (in_worker)
		combine_in_worker(an, fns, cx, gs, ng, res);
	else
	{
		for (int g = 0; g < ng; g++)
		{
			res[g] = palloc0(sizeof(StreamStateCqState) * Max(an->naggs, 1));
			for (int j = 0; j < an->naggs; j++)
			{
				sstate_cq_state_init(cx, &fns[j], &res[g][j]);	/* as nodeAgg combines */
				for (int h = 0; h < 2; h++)
				{
					StreamStateCqState part;
					const char *end;

					if (gs[g]->half[h] == NULL)
						continue;
					resetStringInfo(&buf);
					sstate_cq_state_serialize(cx, &fns[j], &gs[g]->half[h][j], &buf);
					end = sstate_cq_state_deserialize(cx, &fns[j], &part, buf.data,
													  buf.data + buf.len);
					if (end != buf.data + buf.len)
						elog(ERROR, "stream_state: a partial state of aggregate %d did not read back", j + 1);
					sstate_cq_state_combine(cx, &fns[j], &res[g][j], &part);
				}
			}
		}
	}

	/* finalised, with the output expressions and HAVING */
	for (int g = 0; g < ng; g++)
	{
		Datum	   *ovals;
		bool	   *onulls;

		ResetExprContext(econtext);
		ExecClearTuple(resslot);
		if (groups)
		{
			ExecStoreMinimalTuple(entries[g]->firstTuple, groupslot, false);
			slot_getallattrs(groupslot);
			for (int i = 0; i < an->nkeys; i++)
			{
				resslot->tts_values[i] = groupslot->tts_values[i];
				resslot->tts_isnull[i] = groupslot->tts_isnull[i];
			}
		}
		for (int j = 0; j < an->naggs; j++)
			resslot->tts_values[an->nkeys + j] =
				sstate_cq_state_final(cx, &fns[j], &res[g][j],
									  &resslot->tts_isnull[an->nkeys + j]);
		ExecStoreVirtualTuple(resslot);
		econtext->ecxt_outertuple = resslot;
		if (having && !ExecQual(having, econtext))
			continue;
		ovals = palloc(sizeof(Datum) * Max(an->ncolumns, 1));
		onulls = palloc(sizeof(bool) * Max(an->ncolumns, 1));
		for (int c = 0; c < an->ncolumns; c++)
			ovals[c] = ExecEvalExpr(colexprs[c], econtext, &onulls[c]);
		{
			HeapTuple	tup = heap_form_tuple(outdesc, ovals, onulls);
			Datum		rec = HeapTupleGetDatum(tup);
			Datum		v = CStringGetTextDatum(OutputFunctionCall(&recout, rec));
			bool		n = false;

			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &v, &n);
		}
	}

	ExecDropSingleTupleTableSlot(scan);
	ExecDropSingleTupleTableSlot(keyslot);
	ExecDropSingleTupleTableSlot(groupslot);
	ExecDropSingleTupleTableSlot(resslot);
	sstate_cq_agg_context_reset(cx);
	FreeExecutorState(estate);
	table_close(rel, AccessShareLock);
	return (Datum) 0;
}
