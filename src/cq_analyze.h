/*-------------------------------------------------------------------------
 *
 * cq_analyze.h
 *	  A continuous query's SQL text, parsed, analysed and validated: what
 *	  the capture trigger folds, what the worker combines, what a read
 *	  finalises and projects.
 *
 * Three row shapes appear here:
 *
 *	 source row   a row of the source table (or of its transition table):
 *				  the WHERE qual, key expressions, aggregate arguments and
 *				  FILTERs are expressions over it, Var varno 1 as parse
 *				  analysis left them (see cq_analyze.c for their evaluation);
 *	 result row   one group of one window: the nkeys key values, then the
 *				  naggs aggregates' final values (sstate_cq_result_desc);
 *	 output row   the query's select list, nc columns, each an expression
 *				  over the result row.
 *
 * Expressions over the result row refer to it with Vars of varno OUTER_VAR:
 * attribute i + 1 is key i, attribute nkeys + j + 1 is aggregate j (see the
 * macros below).  The read side puts the result row in a slot, sets
 * econtext->ecxt_outertuple to it and runs ExecInitExpr/ExecEvalExpr (or
 * ExecBuildProjectionInfo) on them, as the executor does for an Agg node's
 * target list.
 *
 * IDENTIFICATION
 *	  src/cq_analyze.h
 *-------------------------------------------------------------------------
 */
#ifndef STREAM_STATE_CQ_ANALYZE_H
#define STREAM_STATE_CQ_ANALYZE_H

#include "access/tupdesc.h"
#include "nodes/parsenodes.h"
#include "nodes/primnodes.h"

/* result row attribute numbers (1-based) of key i and aggregate j */
#define SSTATE_CQ_KEY_ATTNO(an, i)	((AttrNumber) ((i) + 1))
#define SSTATE_CQ_AGG_ATTNO(an, j)	((AttrNumber) ((an)->nkeys + (j) + 1))

/*
 * Aggregates the data path may keep as plain int64 counters instead of
 * calling the transition, combine and final functions (why these and no
 * others: cq_analyze.c).  A FILTER, when there is one, is applied first in
 * every kind.
 */
typedef enum StreamStateCqFast
{
	SSTATE_CQ_FAST_NONE = 0,	/* the aggregate's own functions */
	SSTATE_CQ_FAST_COUNT,		/* count(*), count(non-NULL constant): +1 per
								 * row; result int8, 0 for no rows */
	SSTATE_CQ_FAST_COUNT_ARG,	/* count(x): +1 per row whose x is not the
								 * NULL datum; result int8, 0 for no rows */
	SSTATE_CQ_FAST_SUM_INT		/* sum(int2), sum(int4): an int64 sum and an
								 * int64 count of non-NULL inputs; result
								 * int8, NULL while that count is 0 */
} StreamStateCqFast;

typedef enum StreamStateCqColumnKind
{
	SSTATE_CQ_COL_KEY,			/* exactly a GROUP BY key */
	SSTATE_CQ_COL_AGGREGATE,	/* exactly an aggregate */
	SSTATE_CQ_COL_EXPRESSION	/* anything else over keys and aggregates */
} StreamStateCqColumnKind;

/* One GROUP BY expression, in GROUP BY order (duplicates removed) */
typedef struct StreamStateCqKey
{
	Expr	   *expr;			/* over the source row */
	char	   *name;			/* output column name; NULL when the key is
								 * not itself a column of the select list */
	Oid			type;
	int32		typmod;
	Oid			collation;		/* GROUP BY compares under this collation */
	AttrNumber	attnum;			/* source column when expr is a plain column,
								 * else InvalidAttrNumber */
	Oid			eqop;			/* GROUP BY's equality operator */
	bool		classed;		/* equal values may differ in bytes: keyed by
								 * hash + equality (query.h), not by image */
	int			location;		/* byte offset in the text, or -1 */
} StreamStateCqKey;

/* One distinct aggregate call (equal calls are kept once) */
typedef struct StreamStateCqAgg
{
	Aggref	   *aggref;			/* as analysed; args and filter over the
								 * source row */
	Oid			aggfnoid;
	List	   *args;			/* argument Exprs over the source row */
	Expr	   *filter;			/* FILTER (WHERE ...) over the source row, or
								 * NULL */
	int			ninputs;		/* number of arguments ... */
	Oid		   *inputtypes;		/* ... and their declared-or-actual types
								 * (get_aggregate_argtypes) */
	Oid			inputcollid;	/* collation the functions are called with */
	Oid			transfn;
	bool		transstrict;	/* strict transfn with NULL initval: the first
								 * non-NULL input becomes the state */
	Oid			combinefn;		/* always valid */
	bool		combinestrict;
	Oid			serialfn;		/* valid iff transtype is internal */
	Oid			deserialfn;
	Oid			finalfn;		/* InvalidOid: the state is the result */
	bool		finalextra;		/* pass NULL extra arguments to finalfn */
	char		finalmodify;	/* AGGMODIFY_*: READ_WRITE finalfns may
								 * scribble on the state: finalise a copy */
	Oid			transtype;		/* resolved for polymorphic aggregates */
	int32		transtypmod;	/* always -1: states have no typmod */
	int32		transspace;		/* estimated state size, 0 if unknown */
	int16		transtyplen;
	bool		transtypbyval;
	char	   *initval;		/* pg_aggregate.agginitval, or NULL */
	Oid			resulttype;
	Oid			resultcollation;
	StreamStateCqFast fast;
	struct StreamStateCqFnRef *refs;	/* [3]: combine, serial, deserial as the
										 * worker calls them (cq_agg.h) */
	int			location;		/* byte offset in the text, or -1 */
} StreamStateCqAgg;

/* One column of the select list, in order */
typedef struct StreamStateCqColumn
{
	char	   *name;
	Oid			type;
	int32		typmod;
	Oid			collation;
	StreamStateCqColumnKind kind;
	int			index;			/* which key or aggregate for those kinds,
								 * else -1 */
	Expr	   *expr;			/* over the result row */
	Expr	   *source_expr;	/* as written, over the source row (for
								 * deparsing) */
} StreamStateCqColumn;

typedef struct StreamStateCqAnalysis
{
	const char *sql;			/* the text analysed */
	Query	   *query;			/* parse analysis's tree, unmodified */
	Oid			source;			/* plain or partitioned table */
	char		source_relkind;
	Bitmapset  *source_cols;	/* columns read, offset by
								 * FirstLowInvalidHeapAttributeNumber */
	Expr	   *qual;			/* WHERE over the source row, or NULL */
	int			nkeys;
	StreamStateCqKey *keys;
	int			naggs;
	StreamStateCqAgg *aggs;
	int			ncolumns;
	StreamStateCqColumn *columns;
	Expr	   *having;			/* HAVING over the result row, or NULL:
								 * applied to final values when a window is
								 * read */
} StreamStateCqAnalysis;

extern StreamStateCqAnalysis *sstate_cq_analyze(const char *sql, const char *name);
extern StreamStateCqAnalysis *sstate_cq_analyze_defined(const char *sql, const char *name);
extern TupleDesc sstate_cq_result_desc(const StreamStateCqAnalysis *an);
extern char *sstate_cq_column_type_sql(const StreamStateCqAnalysis *an, int j);

#endif							/* STREAM_STATE_CQ_ANALYZE_H */
