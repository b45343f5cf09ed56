/*-------------------------------------------------------------------------
 *
 * cq_analyze.c
 *	  Parse, analyse and validate a continuous query's SQL text; the SQL
 *	  function describe_query, which shows the result.
 *
 * A continuous query is one SELECT over one plain or partitioned table, with
 * an optional WHERE, GROUP BY expressions and aggregates that can be
 * combined from partial states.  The text goes through PostgreSQL's own
 * raw_parser and parse_analyze_fixedparams (no parameters), so names,
 * operators, casts, aggregates and GROUP BY rules are exactly PostgreSQL's.
 * The analysed tree is not rewritten: the one rewrite that could apply to
 * such a query is view expansion, and a view is refused by name here.
 *
 * Checks run in three passes, so the first error a user sees is about the
 * construct, not about something analysis trips over inside it:
 *
 *	 1. the raw statement: one statement, a SELECT, no WITH, set operation,
 *		INTO, VALUES, DISTINCT, ORDER BY, LIMIT/OFFSET, FOR UPDATE, WINDOW;
 *		one FROM item, a table name; no parameters, subqueries, window
 *		functions, grouping sets or GROUPING() anywhere;
 *	 2. the analysed query: the relation (kind, inheritance, row-level
 *		security), the caller's SELECT privilege, at least one aggregate;
 *	 3. each expression, where it is used: WHERE, each GROUP BY key, each
 *		aggregate's arguments and FILTER, the select list, HAVING.  Only
 *		immutable functions and operators (SQLSTATE 42P17, as PostgreSQL
 *		uses for index and generated-column expressions): a row is folded in
 *		when it is inserted and its window is read later, and both must mean
 *		the same whatever the time, TimeZone or search_path then.  No system
 *		columns (rows arrive through transition tables, which have none), no
 *		set-returning functions; EXECUTE on every function.
 *
 * Unsupported constructs are 0A000 and name the construct.  Errors carry a
 * position in the query text: an error context callback turns the position
 * that the parser (or this file) reports into an internal query position,
 * as PL/pgSQL does, and adds a line naming the continuous query.
 *
 * Aggregates: any normal aggregate with a combine function, with
 * serialization functions when its state is internal (partial states travel
 * through the WAL and checkpoints), without DISTINCT or ORDER BY inside
 * (the data path combines partial states in no particular order, and
 * DISTINCT needs all of a window's values at once).  Equal calls are kept
 * once (PostgreSQL's equal() ignores token locations).  Transition types of
 * polymorphic aggregates are resolved here, as nodeAgg does.  The support
 * functions' volatility is not looked at: extensions often leave them at
 * the default VOLATILE (hll's are), and PostgreSQL never looks either.
 *
 * The fast path.  Some aggregates are plain int64 counters, and the data
 * path may keep them as such instead of calling the aggregate's functions:
 *
 *	 count(*), count(c) for a non-NULL constant c: +1 per row.  Exact: its
 *		own transition function is int8inc, which fails only past 2^63 rows.
 *	 count(x): +1 per row whose x is not the NULL datum (count's transition
 *		function is strict: a row value whose fields are all NULL is still
 *		counted, unlike "x IS NOT NULL").
 *	 sum(int2), sum(int4): an int64 sum and an int64 count of non-NULL
 *		inputs (the result is NULL while that count is 0).  PostgreSQL's
 *		state is an int8 too (int2_sum, int4_sum; combine int8pl); to
 *		overflow it a window needs 2^32 rows at the int4 limit, and the data
 *		path must still detect that (pg_add_s64_overflow) and fail the read
 *		as int8pl would, never the worker.
 *
 * sum(int8) is not on the fast path: its result is numeric and PostgreSQL
 * never overflows it (int128 or numeric state), while an int64 counter would
 * overflow inside the worker, after commit, where nothing may fail.
 * avg, min, max and the others keep their own functions.
 *
 * The result row and output expressions (see cq_analyze.h): key i and
 * aggregate j are Vars of varno OUTER_VAR, attributes i + 1 and nkeys + j + 1,
 * typed like the key expression and the aggregate's result.  Select-list and
 * HAVING expressions are rewritten top-down, the way the parser matched them
 * against GROUP BY: a subtree equal() to a key expression becomes the key's
 * Var, an Aggref its aggregate's Var.  A column left over can only be one
 * PostgreSQL accepted through a functional dependency on a primary key;
 * continuous queries do not take those (42803).
 *
 * Expressions are left as parse analysis made them: callers run
 * expression_planner() on them before ExecInitExpr.
 *
 * IDENTIFICATION
 *	  src/cq_analyze.c
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/sysattr.h"
#include "catalog/pg_aggregate.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/analyze.h"
#include "parser/parse_agg.h"
#include "parser/parser.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/rls.h"
#include "utils/ruleutils.h"
#include "utils/syscache.h"

#include "cq_agg.h"
#include "query.h"

PG_FUNCTION_INFO_V1(stream_state_describe_query);

/* what one analysis is working on */
typedef struct CqState
{
	const char *sql;
	const char *name;			/* NULL: not (yet) a named query */
	int			from_location;	/* the table name in FROM */
	StreamStateCqAnalysis *an;
	List	   *aggrefs;		/* distinct Aggrefs, in order of appearance */
} CqState;

/* a walk over an expression that checks where it is used */
typedef struct CqExprCheck
{
	CqState    *st;
	const char *place;			/* "the WHERE clause", ... */
	Oid			funcid;			/* set by func_checker */
	bool		noexec;			/* funcid lacks EXECUTE, not immutability */
} CqExprCheck;

/* describe_query: which aggregates a column reads */
typedef struct CqResultAggs
{
	const StreamStateCqAnalysis *an;
	Bitmapset  *aggs;			/* indexes into an->aggs */
} CqResultAggs;

static void cq_error_callback(void *arg);
static int	cq_errposition(const CqState *st, int location);
static void cq_unsupported(const CqState *st, const char *what, int location,
						   const char *detail);
static void check_raw_select(CqState *st, SelectStmt *s);
static void check_raw_from(CqState *st, List *from);
static int	raw_from_location(Node *n);
static bool raw_expr_walker(Node *node, Node **found);
static void check_relation(CqState *st, Query *query);
static void check_select_privilege(CqState *st, RangeTblEntry *rte);
static void check_expr(CqState *st, Node *node, const char *place);
static bool check_expr_walker(Node *node, CqExprCheck *c);
static bool func_checker(Oid funcid, void *context);
static char *callee_name(Node *node, Oid funcid);
static const char *sql_value_function_name(SQLValueFunctionOp op);
static void analyse_keys(CqState *st, Query *query);
static bool collect_aggrefs_walker(Node *node, CqState *st);
static void analyse_agg(CqState *st, Aggref *agg, StreamStateCqAgg *out);
static Node *to_result_row(Node *node, CqState *st);
static void analyse_columns(CqState *st, Query *query);
static bool result_aggs_walker(Node *node, CqResultAggs *cx);
static void describe_row(ReturnSetInfo *rsinfo, const StreamStateCqAnalysis *an,
						 List *dpcontext, int position, const char *name, Oid type,
						 const char *kind, Node *source_expr, Bitmapset *aggs);

/*
 * Parse and analyse a continuous query's text, check that stream_state can
 * maintain it and that the caller may define it, and describe it.  Raises
 * an ERROR for anything else.  "name" is the query's name for error
 * context lines, or NULL.  The result is palloc'd in the current memory
 * context; the source table stays locked (AccessShareLock) until the end of
 * the transaction, as for any query.
 */
/*
 * A query that create_query analysed already, as its creator: again (its
 * stored text is qualified), for the capture trigger and reads, without the
 * privilege checks, which were the creator's to pass (an inserting role
 * needs no SELECT on the table, as with any trigger).
 */
static bool skip_privileges = false;

StreamStateCqAnalysis *
sstate_cq_analyze_defined(const char *sql, const char *name)
{
	StreamStateCqAnalysis *an;

	skip_privileges = true;
	PG_TRY();
	{
		an = sstate_cq_analyze(sql, name);
	}
	PG_FINALLY();
	{
		skip_privileges = false;
	}
	PG_END_TRY();
	return an;
}

StreamStateCqAnalysis *
sstate_cq_analyze(const char *sql, const char *name)
{
	CqState		st;
	ErrorContextCallback errcb;
	List	   *raw;
	RawStmt    *rs;
	Query	   *query;
	StreamStateCqAnalysis *an;
	ListCell   *lc;
	int			j;

	memset(&st, 0, sizeof(st));
	st.sql = sql;
	st.name = name;
	st.from_location = -1;

	errcb.callback = cq_error_callback;
	errcb.arg = &st;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	/* pass 1: the raw statement */
	raw = raw_parser(sql, RAW_PARSE_DEFAULT);
	if (raw == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("continuous query text contains no statement")));
	if (list_length(raw) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("continuous query text must contain exactly one statement"),
				 errdetail("It contains %d statements.", list_length(raw)),
				 cq_errposition(&st, ((RawStmt *) lsecond(raw))->stmt_location)));
	rs = linitial_node(RawStmt, raw);
	if (!IsA(rs->stmt, SelectStmt))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("continuous query must be a SELECT statement"),
				 errdetail("The statement is %s.", CreateCommandName(rs->stmt))));
	check_raw_select(&st, (SelectStmt *) rs->stmt);

	/* pass 2: the analysed query */
	query = parse_analyze_fixedparams(rs, sql, NULL, 0, NULL);
	if (query->commandType != CMD_SELECT || query->utilityStmt != NULL)
		elog(ERROR, "continuous query is not a plain SELECT after analysis");

	an = palloc0(sizeof(StreamStateCqAnalysis));
	an->sql = pstrdup(sql);
	an->query = copyObject(query);
	st.an = an;

	check_relation(&st, query);
	if (!query->hasAggs)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("continuous query computes no aggregate"),
				 errdetail("A continuous query keeps aggregates per group and window."),
				 errhint("Add an aggregate such as count(*) to the select list.")));
	/* pass 1 refused what makes these; say so if that ever changes */
	if (query->groupingSets != NIL || query->hasWindowFuncs ||
		query->hasSubLinks || query->cteList != NIL || query->setOperations != NULL ||
		query->distinctClause != NIL || query->sortClause != NIL ||
		query->limitCount != NULL || query->limitOffset != NULL ||
		query->rowMarks != NIL)
		elog(ERROR, "continuous query has a clause that the raw checks missed");

	/* pass 3: each expression where it is used */
	if (query->jointree->quals != NULL)
	{
		an->qual = (Expr *) query->jointree->quals;
		check_expr(&st, (Node *) an->qual, "the WHERE clause");
	}
	analyse_keys(&st, query);

	foreach(lc, query->targetList)
		collect_aggrefs_walker((Node *) ((TargetEntry *) lfirst(lc))->expr, &st);
	collect_aggrefs_walker(query->havingQual, &st);
	an->naggs = list_length(st.aggrefs);
	an->aggs = palloc0(sizeof(StreamStateCqAgg) * Max(an->naggs, 1));
	j = 0;
	foreach(lc, st.aggrefs)
		analyse_agg(&st, lfirst_node(Aggref, lc), &an->aggs[j++]);

	analyse_columns(&st, query);

	if (query->havingQual != NULL)
	{
		an->having = (Expr *) to_result_row(query->havingQual, &st);
		check_expr(&st, (Node *) an->having, "the HAVING clause");
	}

	error_context_stack = errcb.previous;
	return an;
}

/*
 * The result row as a tuple descriptor: the keys, then the aggregates'
 * final values (attribute names are the output column names where there
 * are any).
 */
/*
 * Column j's type as a column definition takes it: with its typmod, and
 * its collation when that is not its type's default (a GROUP BY under a
 * case-insensitive collation keeps it in the typed view and emit_to).
 */
char *
sstate_cq_column_type_sql(const StreamStateCqAnalysis *an, int j)
{
	const StreamStateCqColumn *col = &an->columns[j];
	char	   *type = format_type_with_typemod(col->type, col->typmod);

	if (OidIsValid(col->collation) && col->collation != get_typcollation(col->type))
		return psprintf("%s COLLATE %s", type, generate_collation_name(col->collation));
	return type;
}

TupleDesc
sstate_cq_result_desc(const StreamStateCqAnalysis *an)
{
	TupleDesc	desc = CreateTemplateTupleDesc(an->nkeys + an->naggs);
	int			i;

	for (i = 0; i < an->nkeys; i++)
	{
		const StreamStateCqKey *k = &an->keys[i];
		char		buf[NAMEDATALEN];

		snprintf(buf, sizeof(buf), "key%d", i + 1);
		TupleDescInitEntry(desc, SSTATE_CQ_KEY_ATTNO(an, i), k->name ? k->name : buf,
						   k->type, k->typmod, 0);
		TupleDescInitEntryCollation(desc, SSTATE_CQ_KEY_ATTNO(an, i), k->collation);
	}
	for (i = 0; i < an->naggs; i++)
	{
		const StreamStateCqAgg *a = &an->aggs[i];
		char		buf[NAMEDATALEN];

		snprintf(buf, sizeof(buf), "agg%d", i + 1);
		TupleDescInitEntry(desc, SSTATE_CQ_AGG_ATTNO(an, i), buf, a->resulttype, -1, 0);
		TupleDescInitEntryCollation(desc, SSTATE_CQ_AGG_ATTNO(an, i), a->resultcollation);
	}
	return desc;
}

/*
 * Errors raised while a continuous query is analysed point into its text:
 * the cursor position becomes an internal query position (psql then shows
 * the query text, not the calling statement, under the error), and a
 * context line names the query.
 */
static void
cq_error_callback(void *arg)
{
	CqState    *st = (CqState *) arg;
	int			pos = geterrposition();

	if (pos > 0 && getinternalerrposition() <= 0)
	{
		internalerrposition(pos);
		internalerrquery(st->sql);
		errposition(0);
	}
	if (st->name != NULL)
		errcontext("continuous query \"%s\"", st->name);
	else
		errcontext("continuous query text");
}

/* errposition() for a byte offset into the query text (-1: none) */
static int
cq_errposition(const CqState *st, int location)
{
	if (location < 0)
		return 0;
	return errposition(pg_mbstrlen_with_len(st->sql, location) + 1);
}

static void
cq_unsupported(const CqState *st, const char *what, int location, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("continuous queries do not support %s", what),
			 detail ? errdetail_internal("%s", detail) : 0,
			 cq_errposition(st, location)));
}

/*
 * Pass 1: the clauses of the raw SELECT, then its FROM, then every
 * expression in it.
 */
static void
check_raw_select(CqState *st, SelectStmt *s)
{
	Node	   *found = NULL;

	if (s->withClause != NULL)
		cq_unsupported(st, "WITH", s->withClause->location, NULL);
	if (s->op != SETOP_NONE)
		cq_unsupported(st, s->op == SETOP_UNION ? "UNION" :
					   s->op == SETOP_INTERSECT ? "INTERSECT" : "EXCEPT", -1, NULL);
	if (s->intoClause != NULL)
		cq_unsupported(st, "SELECT INTO", s->intoClause->rel->location, NULL);
	if (s->valuesLists != NIL)
		cq_unsupported(st, "VALUES",
					   exprLocation((Node *) linitial(s->valuesLists)), NULL);
	if (s->distinctClause != NIL)
	{
		if (linitial(s->distinctClause) == NULL)
			cq_unsupported(st, "DISTINCT", -1, NULL);
		else
			cq_unsupported(st, "DISTINCT ON",
						   exprLocation((Node *) linitial(s->distinctClause)), NULL);
	}
	if (s->sortClause != NIL)
		cq_unsupported(st, "ORDER BY",
					   exprLocation((Node *) linitial(s->sortClause)),
					   "A continuous query's rows are read from its state in no particular order; order them when reading.");
	if (s->limitCount != NULL)
		cq_unsupported(st, s->limitOption == LIMIT_OPTION_WITH_TIES ? "FETCH FIRST ... WITH TIES" : "LIMIT",
					   exprLocation(s->limitCount), NULL);
	if (s->limitOffset != NULL)
		cq_unsupported(st, "OFFSET", exprLocation(s->limitOffset), NULL);
	if (s->lockingClause != NIL)
	{
		LockingClause *lock = linitial_node(LockingClause, s->lockingClause);

		cq_unsupported(st,
					   lock->strength == LCS_FORKEYSHARE ? "FOR KEY SHARE" :
					   lock->strength == LCS_FORSHARE ? "FOR SHARE" :
					   lock->strength == LCS_FORNOKEYUPDATE ? "FOR NO KEY UPDATE" :
					   "FOR UPDATE", -1, NULL);
	}
	if (s->windowClause != NIL)
		cq_unsupported(st, "WINDOW clauses",
					   ((WindowDef *) linitial(s->windowClause))->location, NULL);

	check_raw_from(st, s->fromClause);

	if (raw_expr_walker((Node *) s->targetList, &found) ||
		raw_expr_walker(s->whereClause, &found) ||
		raw_expr_walker((Node *) s->groupClause, &found) ||
		raw_expr_walker(s->havingClause, &found))
	{
		switch (nodeTag(found))
		{
			case T_ParamRef:
				cq_unsupported(st, "parameters", ((ParamRef *) found)->location,
							   "A continuous query's text is complete in itself; write constants instead.");
				break;
			case T_SubLink:
				cq_unsupported(st, "subqueries", ((SubLink *) found)->location, NULL);
				break;
			case T_FuncCall:
				cq_unsupported(st, "window functions", ((FuncCall *) found)->location, NULL);
				break;
			case T_GroupingSet:
				{
					GroupingSet *gs = (GroupingSet *) found;

					if (gs->kind == GROUPING_SET_EMPTY)
						cq_unsupported(st, "GROUP BY ()", gs->location,
									   "Leave out GROUP BY for one group of all rows.");
					cq_unsupported(st,
								   gs->kind == GROUPING_SET_ROLLUP ? "ROLLUP" :
								   gs->kind == GROUPING_SET_CUBE ? "CUBE" : "GROUPING SETS",
								   gs->location, NULL);
				}
				break;
			case T_GroupingFunc:
				cq_unsupported(st, "GROUPING()", ((GroupingFunc *) found)->location, NULL);
				break;
			default:
				elog(ERROR, "unrecognized node type: %d", (int) nodeTag(found));
		}
	}
}

/* Nodes of a raw expression that a continuous query cannot have */
static bool
raw_expr_walker(Node *node, Node **found)
{
	if (node == NULL)
		return false;
	if (IsA(node, ParamRef) || IsA(node, SubLink) || IsA(node, GroupingSet) ||
		IsA(node, GroupingFunc) ||
		(IsA(node, FuncCall) && ((FuncCall *) node)->over != NULL))
	{
		*found = node;
		return true;
	}
	return raw_expression_tree_walker(node, raw_expr_walker, found);
}

static void
check_raw_from(CqState *st, List *from)
{
	Node	   *item;

	if (from == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("continuous query must read from a table"),
				 errdetail("The query has no FROM clause.")));
	if (list_length(from) > 1)
		cq_unsupported(st, "joins", raw_from_location(lsecond(from)),
					   "A continuous query reads exactly one table.");
	item = linitial(from);
	switch (nodeTag(item))
	{
		case T_RangeVar:
			st->from_location = ((RangeVar *) item)->location;
			return;
		case T_JoinExpr:
			cq_unsupported(st, "joins", raw_from_location(((JoinExpr *) item)->rarg),
						   "A continuous query reads exactly one table.");
			break;
		case T_RangeSubselect:
			{
				SelectStmt *sub = (SelectStmt *) ((RangeSubselect *) item)->subquery;

				if (IsA(sub, SelectStmt) && sub->valuesLists != NIL)
					cq_unsupported(st, "VALUES in FROM",
								   exprLocation((Node *) linitial(sub->valuesLists)),
								   "A continuous query reads rows inserted into a table.");
				cq_unsupported(st, "subqueries", -1, NULL);
			}
			break;
		case T_RangeFunction:
			cq_unsupported(st, "functions in FROM", raw_from_location(item),
						   "A continuous query reads rows inserted into a table.");
			break;
		case T_RangeTableFunc:
			cq_unsupported(st, "table functions in FROM", raw_from_location(item),
						   "A continuous query reads rows inserted into a table.");
			break;
		case T_RangeTableSample:
			cq_unsupported(st, "TABLESAMPLE", raw_from_location(item), NULL);
			break;
		default:
			cq_unsupported(st, "this kind of FROM item", -1, NULL);
	}
}

static int
raw_from_location(Node *n)
{
	switch (nodeTag(n))
	{
		case T_RangeVar:
			return ((RangeVar *) n)->location;
		case T_RangeTableSample:
			return ((RangeTableSample *) n)->location;
		case T_RangeTableFunc:
			return ((RangeTableFunc *) n)->location;
		case T_RangeFunction:
			{
				List	   *first = (List *) linitial(((RangeFunction *) n)->functions);

				return exprLocation(linitial(first));
			}
		case T_JoinExpr:
			return raw_from_location(((JoinExpr *) n)->larg);
		default:
			return -1;
	}
}

/*
 * Pass 2: the one relation.  Same kinds as create_query: a plain table or a
 * partitioned one (whose transition tables carry the rows routed to its
 * partitions).  Rows inserted into inheritance children never reach a
 * trigger on their parent, so reading a parent with children, or ONLY a
 * partitioned table, would not mean what it says.  Row-level security
 * would be bypassed by a trigger that sees every inserted row.
 */
static void
check_relation(CqState *st, Query *query)
{
	RangeTblEntry *rte;
	char	   *relname;

	if (list_length(query->rtable) != 1 ||
		list_length(query->jointree->fromlist) != 1 ||
		!IsA(linitial(query->jointree->fromlist), RangeTblRef))
		elog(ERROR, "continuous query reads more than one relation after analysis");
	rte = linitial_node(RangeTblEntry, query->rtable);
	if (rte->rtekind != RTE_RELATION)
		cq_unsupported(st, "this kind of FROM item", st->from_location, NULL);

	relname = get_rel_name(rte->relid);
	if (rte->relkind != RELKIND_RELATION && rte->relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", relname),
				 errdetail("Continuous queries read plain or partitioned tables."),
				 cq_errposition(st, st->from_location)));
	if (rte->relkind == RELKIND_PARTITIONED_TABLE && !rte->inh)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("continuous queries do not support ONLY on a partitioned table"),
				 errdetail("The rows of \"%s\" are in its partitions.", relname),
				 cq_errposition(st, st->from_location)));
	if (rte->relkind == RELKIND_RELATION && rte->inh &&
		find_inheritance_children(rte->relid, NoLock) != NIL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("continuous queries do not support tables with inheritance children"),
				 errdetail("Rows inserted into the children of \"%s\" do not reach a continuous query on it.",
						   relname),
				 errhint("Write FROM ONLY %s to read the rows of \"%s\" itself.",
						 quote_identifier(relname), relname),
				 cq_errposition(st, st->from_location)));
	if (check_enable_rls(rte->relid, InvalidOid, true) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("continuous queries do not support tables with row-level security"),
				 errdetail("Row-level security applies to \"%s\" for the current user, and a continuous query would see every inserted row.",
						   relname),
				 cq_errposition(st, st->from_location)));

	if (!skip_privileges)
		check_select_privilege(st, rte);

	st->an->source = rte->relid;
	st->an->source_relkind = rte->relkind;
	st->an->source_cols = bms_copy(rte->selectedCols);
}

/*
 * The caller must be able to SELECT what the query reads: the table, or
 * each column it reads (all of them for a whole-row reference, any one of
 * them for a query that reads none, such as count(*) alone) -- the rule the
 * executor applies to the same SELECT.
 */
static void
check_select_privilege(CqState *st, RangeTblEntry *rte)
{
	Oid			userid = GetUserId();
	int			col = -1;

	if (pg_class_aclcheck(rte->relid, userid, ACL_SELECT) == ACLCHECK_OK)
		return;
	if (bms_is_empty(rte->selectedCols) &&
		pg_attribute_aclcheck_all(rte->relid, userid, ACL_SELECT, ACLMASK_ANY) != ACLCHECK_OK)
		aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_TABLE, get_rel_name(rte->relid));
	while ((col = bms_next_member(rte->selectedCols, col)) >= 0)
	{
		AttrNumber	attno = col + FirstLowInvalidHeapAttributeNumber;

		if (attno == InvalidAttrNumber)
		{
			if (pg_attribute_aclcheck_all(rte->relid, userid, ACL_SELECT,
										  ACLMASK_ALL) != ACLCHECK_OK)
				ereport(ERROR,
						(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						 errmsg("permission denied for table %s", get_rel_name(rte->relid)),
						 errdetail("Defining a continuous query needs SELECT on the columns it reads; a whole-row reference reads all of them.")));
		}
		else if (pg_attribute_aclcheck(rte->relid, attno, userid, ACL_SELECT) != ACLCHECK_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied for column \"%s\" of relation \"%s\"",
							get_attname(rte->relid, attno, false), get_rel_name(rte->relid)),
					 errdetail("Defining a continuous query needs SELECT on the columns it reads.")));
	}
}

/*
 * Pass 3: one expression, used at "place".  Expressions over the result row
 * are checked too; their key and aggregate Vars have nothing to check.
 */
static void
check_expr(CqState *st, Node *node, const char *place)
{
	CqExprCheck c;

	c.st = st;
	c.place = place;
	c.funcid = InvalidOid;
	c.noexec = false;
	(void) check_expr_walker(node, &c);
}

static bool
check_expr_walker(Node *node, CqExprCheck *c)
{
	const CqState *st = c->st;

	if (node == NULL)
		return false;
	switch (nodeTag(node))
	{
		case T_Var:
			{
				Var		   *var = (Var *) node;

				if (var->varno != OUTER_VAR && var->varattno < 0)
					ereport(ERROR,
							(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
							 errmsg("continuous queries do not support system column \"%s\"",
									get_attname(st->an->source, var->varattno, false)),
							 errdetail("Rows reach a continuous query through a transition table, which has no system columns."),
							 cq_errposition(st, var->location)));
				return false;
			}
		case T_Param:
			cq_unsupported(st, "parameters", ((Param *) node)->location, NULL);
			break;
		case T_SubLink:
			cq_unsupported(st, "subqueries", ((SubLink *) node)->location, NULL);
			break;
		case T_WindowFunc:
			cq_unsupported(st, "window functions", ((WindowFunc *) node)->location, NULL);
			break;
		case T_GroupingFunc:
			cq_unsupported(st, "GROUPING()", ((GroupingFunc *) node)->location, NULL);
			break;
		case T_SQLValueFunction:
			{
				/* CURRENT_DATE, CURRENT_USER and the like: all stable */
				SQLValueFunction *svf = (SQLValueFunction *) node;

				ereport(ERROR,
						(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
						 errmsg("%s is not immutable", sql_value_function_name(svf->op)),
						 errdetail("Found in %s. A continuous query evaluates expressions when rows are inserted and again when windows are read; only immutable functions give the same result every time.",
								   c->place),
						 cq_errposition(st, svf->location)));
			}
			break;
		case T_FuncExpr:
			if (((FuncExpr *) node)->funcretset)
				cq_unsupported(st, "set-returning functions", exprLocation(node), NULL);
			break;
		case T_OpExpr:
			if (((OpExpr *) node)->opretset)
				cq_unsupported(st, "set-returning functions", exprLocation(node), NULL);
			break;
		default:
			break;
	}

	/* innermost first: now() rather than the "-" that subtracts from it */
	if (expression_tree_walker(node, check_expr_walker, c))
		return true;
	if (check_functions_in_node(node, func_checker, c))
	{
		if (c->noexec)
			aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_FUNCTION, get_func_name(c->funcid));
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
				 errmsg("%s is not immutable", callee_name(node, c->funcid)),
				 errdetail("Found in %s. A continuous query evaluates expressions when rows are inserted and again when windows are read; only immutable functions give the same result every time.",
						   c->place),
				 cq_errposition(st, exprLocation(node))));
	}
	return false;
}

/* check_functions_in_node callback: true for a function we cannot use */
static bool
func_checker(Oid funcid, void *context)
{
	CqExprCheck *c = (CqExprCheck *) context;

	if (func_volatile(funcid) != PROVOLATILE_IMMUTABLE)
	{
		c->funcid = funcid;
		c->noexec = false;
		return true;
	}
	if (!skip_privileges && pg_proc_aclcheck(funcid, GetUserId(), ACL_EXECUTE) != ACLCHECK_OK)
	{
		c->funcid = funcid;
		c->noexec = true;
		return true;
	}
	return false;
}

/* How the user wrote the call of funcid that "node" makes */
static char *
callee_name(Node *node, Oid funcid)
{
	switch (nodeTag(node))
	{
		case T_FuncExpr:
			{
				FuncExpr   *f = (FuncExpr *) node;

				if ((f->funcformat == COERCE_EXPLICIT_CAST ||
					 f->funcformat == COERCE_IMPLICIT_CAST) && f->args != NIL)
					return psprintf("cast from %s to %s",
									format_type_be(exprType(linitial(f->args))),
									format_type_be(f->funcresulttype));
				break;
			}
		case T_OpExpr:
		case T_DistinctExpr:
		case T_NullIfExpr:
			return psprintf("operator %s", format_operator(((OpExpr *) node)->opno));
		case T_ScalarArrayOpExpr:
			return psprintf("operator %s",
							format_operator(((ScalarArrayOpExpr *) node)->opno));
		case T_CoerceViaIO:
			return psprintf("cast from %s to %s",
							format_type_be(exprType((Node *) ((CoerceViaIO *) node)->arg)),
							format_type_be(((CoerceViaIO *) node)->resulttype));
		case T_ArrayCoerceExpr:
			return psprintf("cast from %s to %s",
							format_type_be(exprType((Node *) ((ArrayCoerceExpr *) node)->arg)),
							format_type_be(((ArrayCoerceExpr *) node)->resulttype));
		default:
			break;
	}
	return psprintf("function %s", format_procedure(funcid));
}

static const char *
sql_value_function_name(SQLValueFunctionOp op)
{
	switch (op)
	{
		case SVFOP_CURRENT_DATE:
			return "CURRENT_DATE";
		case SVFOP_CURRENT_TIME:
		case SVFOP_CURRENT_TIME_N:
			return "CURRENT_TIME";
		case SVFOP_CURRENT_TIMESTAMP:
		case SVFOP_CURRENT_TIMESTAMP_N:
			return "CURRENT_TIMESTAMP";
		case SVFOP_LOCALTIME:
		case SVFOP_LOCALTIME_N:
			return "LOCALTIME";
		case SVFOP_LOCALTIMESTAMP:
		case SVFOP_LOCALTIMESTAMP_N:
			return "LOCALTIMESTAMP";
		case SVFOP_CURRENT_ROLE:
			return "CURRENT_ROLE";
		case SVFOP_CURRENT_USER:
			return "CURRENT_USER";
		case SVFOP_USER:
			return "USER";
		case SVFOP_SESSION_USER:
			return "SESSION_USER";
		case SVFOP_CURRENT_CATALOG:
			return "CURRENT_CATALOG";
		case SVFOP_CURRENT_SCHEMA:
			return "CURRENT_SCHEMA";
	}
	return "this SQL value function";
}

/*
 * GROUP BY keys, in GROUP BY order (the parser has removed duplicates).  A
 * key is stored the way create_query's key columns are: its type needs a
 * default hash operator class, and keys whose equal values can differ in
 * bytes are "classed" (query.h).
 */
static void
analyse_keys(CqState *st, Query *query)
{
	StreamStateCqAnalysis *an = st->an;
	ListCell   *lc;
	int			i = 0;

	an->nkeys = list_length(query->groupClause);
	an->keys = palloc0(sizeof(StreamStateCqKey) * Max(an->nkeys, 1));
	foreach(lc, query->groupClause)
	{
		SortGroupClause *sgc = lfirst_node(SortGroupClause, lc);
		TargetEntry *tle = get_sortgroupclause_tle(sgc, query->targetList);
		StreamStateCqKey *k = &an->keys[i++];

		k->expr = tle->expr;
		k->name = tle->resjunk ? NULL : pstrdup(tle->resname);
		k->type = exprType((Node *) k->expr);
		k->typmod = exprTypmod((Node *) k->expr);
		k->collation = exprCollation((Node *) k->expr);
		k->attnum = IsA(k->expr, Var) ? ((Var *) k->expr)->varattno : InvalidAttrNumber;
		k->eqop = sgc->eqop;
		k->location = exprLocation((Node *) k->expr);

		check_expr(st, (Node *) k->expr, "GROUP BY");
		if (!OidIsValid(GetDefaultOpClass(k->type, HASH_AM_OID)))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("GROUP BY expression of type %s has no default hash operator class",
							format_type_be(k->type)),
					 errhint("Group by an expression of a type that can be grouped by hashing, such as bigint, text or uuid."),
					 cq_errposition(st, k->location)));
		k->classed = !sstate_key_by_image(k->type, k->collation);
	}
}

/* The distinct Aggrefs of a tree, in order of appearance, into st->aggrefs */
static bool
collect_aggrefs_walker(Node *node, CqState *st)
{
	if (node == NULL)
		return false;
	if (IsA(node, Aggref))
	{
		ListCell   *lc;

		foreach(lc, st->aggrefs)
		{
			if (equal(lfirst(lc), node))
				return false;
		}
		st->aggrefs = lappend(st->aggrefs, node);
		return false;			/* the parser refuses nested aggregates */
	}
	return expression_tree_walker(node, collect_aggrefs_walker, st);
}

/*
 * One aggregate: what it is, whether partial states of it can be kept and
 * combined, and its support functions.
 */
static void
analyse_agg(CqState *st, Aggref *agg, StreamStateCqAgg *out)
{
	HeapTuple	tup;
	Form_pg_aggregate aggform;
	char	   *fname = get_func_name(agg->aggfnoid);
	Oid			inputtypes[FUNC_MAX_ARGS];
	Datum		initval;
	bool		isnull;
	ListCell   *lc;

	if (agg->aggkind == AGGKIND_ORDERED_SET)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("continuous queries do not support ordered-set aggregate %s", fname),
				 errdetail("An ordered-set aggregate needs all of a window's input at once; it has no partial states to combine."),
				 strncmp(fname, "percentile", 10) == 0 ?
				 errhint("For approximate percentiles, use the tdigest aggregate of the tdigest extension.") : 0,
				 cq_errposition(st, agg->location)));
	if (agg->aggkind == AGGKIND_HYPOTHETICAL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("continuous queries do not support hypothetical-set aggregate %s", fname),
				 errdetail("A hypothetical-set aggregate needs all of a window's input at once; it has no partial states to combine."),
				 cq_errposition(st, agg->location)));
	if (agg->aggdistinct != NIL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("continuous queries do not support DISTINCT in aggregate %s", fname),
				 errdetail("DISTINCT needs every value of a window at once; partial states cannot be combined."),
				 strcmp(fname, "count") == 0 ?
				 errhint("For an approximate count of distinct values, use hll_add_agg and hll_cardinality of the hll extension.") : 0,
				 cq_errposition(st, agg->location)));
	if (agg->aggorder != NIL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("continuous queries do not support ORDER BY in aggregate %s", fname),
				 errdetail("Partial states are combined in no particular order."),
				 cq_errposition(st, agg->location)));
	if (!skip_privileges && pg_proc_aclcheck(agg->aggfnoid, GetUserId(), ACL_EXECUTE) != ACLCHECK_OK)
		aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_AGGREGATE, fname);

	tup = SearchSysCache1(AGGFNOID, ObjectIdGetDatum(agg->aggfnoid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for aggregate %u", agg->aggfnoid);
	aggform = (Form_pg_aggregate) GETSTRUCT(tup);

	out->aggref = agg;
	out->aggfnoid = agg->aggfnoid;
	out->location = agg->location;
	out->filter = agg->aggfilter;
	out->inputcollid = agg->inputcollid;
	out->resulttype = agg->aggtype;
	out->resultcollation = agg->aggcollid;
	foreach(lc, agg->args)
		out->args = lappend(out->args, lfirst_node(TargetEntry, lc)->expr);
	out->ninputs = get_aggregate_argtypes(agg, inputtypes);
	out->inputtypes = palloc(sizeof(Oid) * Max(out->ninputs, 1));
	memcpy(out->inputtypes, inputtypes, sizeof(Oid) * out->ninputs);

	out->transfn = aggform->aggtransfn;
	out->combinefn = aggform->aggcombinefn;
	out->serialfn = aggform->aggserialfn;
	out->deserialfn = aggform->aggdeserialfn;
	out->finalfn = aggform->aggfinalfn;
	out->finalextra = aggform->aggfinalextra;
	out->finalmodify = aggform->aggfinalmodify;
	out->transspace = aggform->aggtransspace;
	out->transtype = resolve_aggregate_transtype(agg->aggfnoid, aggform->aggtranstype,
												 inputtypes, out->ninputs);
	out->transtypmod = -1;
	get_typlenbyval(out->transtype, &out->transtyplen, &out->transtypbyval);
	initval = SysCacheGetAttr(AGGFNOID, tup, Anum_pg_aggregate_agginitval, &isnull);
	out->initval = isnull ? NULL : TextDatumGetCString(initval);
	ReleaseSysCache(tup);

	if (!OidIsValid(out->combinefn))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("aggregate %s has no combine function", format_procedure(agg->aggfnoid)),
				 errdetail("A continuous query keeps partial aggregate states per pane and combines them into windows."),
				 cq_errposition(st, agg->location)));
	if (out->transtype == INTERNALOID &&
		(!OidIsValid(out->serialfn) || !OidIsValid(out->deserialfn)))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("aggregate %s has state type internal but no serialization functions",
						format_procedure(agg->aggfnoid)),
				 errdetail("A continuous query's partial states are written to WAL and checkpoints."),
				 cq_errposition(st, agg->location)));
	out->transstrict = func_strict(out->transfn);
	out->combinestrict = func_strict(out->combinefn);
	out->refs = palloc(sizeof(StreamStateCqFnRef) * 3);
	{
		Oid			fns[3] = {out->combinefn, out->serialfn, out->deserialfn};

		for (int i = 0; i < 3; i++)
		{
			char	   *why = NULL;

			if (!sstate_cq_fn_ref(fns[i], &out->refs[i], &why))
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("continuous queries do not support aggregate %s",
								format_procedure(agg->aggfnoid)),
						 errdetail("Its %s %s.",
								   i == 0 ? "combine function" : i == 1 ? "serialization function" : "deserialization function",
								   why),
						 cq_errposition(st, agg->location)));
		}
	}

	foreach(lc, out->args)
		check_expr(st, lfirst(lc), psprintf("the arguments of aggregate %s", fname));
	if (out->filter != NULL)
		check_expr(st, (Node *) out->filter, psprintf("the FILTER clause of aggregate %s", fname));

	out->fast = SSTATE_CQ_FAST_NONE;
	if (agg->aggfnoid == F_COUNT_)
		out->fast = SSTATE_CQ_FAST_COUNT;
	else if (agg->aggfnoid == F_COUNT_ANY)
	{
		Node	   *arg = linitial(out->args);

		if (IsA(arg, Const) && !((Const *) arg)->constisnull)
			out->fast = SSTATE_CQ_FAST_COUNT;
		else
			out->fast = SSTATE_CQ_FAST_COUNT_ARG;
	}
	else if (agg->aggfnoid == F_SUM_INT2 || agg->aggfnoid == F_SUM_INT4)
		out->fast = SSTATE_CQ_FAST_SUM_INT;
}

/*
 * An expression of the select list or HAVING, rewritten over the result
 * row: key expressions and aggregates become OUTER_VAR Vars.
 */
static Node *
to_result_row(Node *node, CqState *st)
{
	StreamStateCqAnalysis *an = st->an;
	int			i;

	if (node == NULL)
		return NULL;
	for (i = 0; i < an->nkeys; i++)
	{
		if (equal(node, an->keys[i].expr))
		{
			Var		   *var = makeVar(OUTER_VAR, SSTATE_CQ_KEY_ATTNO(an, i), an->keys[i].type,
									  an->keys[i].typmod, an->keys[i].collation, 0);

			var->location = exprLocation(node);
			return (Node *) var;
		}
	}
	if (IsA(node, Aggref))
	{
		for (i = 0; i < an->naggs; i++)
		{
			if (equal(node, an->aggs[i].aggref))
			{
				Var		   *var = makeVar(OUTER_VAR, SSTATE_CQ_AGG_ATTNO(an, i),
										  an->aggs[i].resulttype, -1,
										  an->aggs[i].resultcollation, 0);

				var->location = exprLocation(node);
				return (Node *) var;
			}
		}
		elog(ERROR, "aggregate not found among the continuous query's aggregates");
	}
	if (IsA(node, Var))
	{
		Var		   *var = (Var *) node;

		/* a column that is neither grouped nor aggregated */
		ereport(ERROR,
				(errcode(ERRCODE_GROUPING_ERROR),
				 errmsg("column \"%s\" must appear in the GROUP BY clause or be used in an aggregate function",
						var->varattno > 0 ? get_attname(an->source, var->varattno, false) : "*"),
				 errdetail("Continuous queries do not use functional dependencies on a primary key."),
				 cq_errposition(st, var->location)));
	}
	return expression_tree_mutator(node, to_result_row, st);
}

/* The select list: names, types, kinds and expressions over the result row */
static void
analyse_columns(CqState *st, Query *query)
{
	StreamStateCqAnalysis *an = st->an;
	ListCell   *lc;
	int			n = 0;

	an->columns = palloc0(sizeof(StreamStateCqColumn) * Max(list_length(query->targetList), 1));
	foreach(lc, query->targetList)
	{
		TargetEntry *tle = lfirst_node(TargetEntry, lc);
		StreamStateCqColumn *col;
		int			i;

		if (tle->resjunk)
			continue;
		col = &an->columns[n];
		col->name = pstrdup(tle->resname);
		for (i = 0; i < n; i++)
		{
			if (strcmp(an->columns[i].name, col->name) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_DUPLICATE_COLUMN),
						 errmsg("column name \"%s\" appears more than once", col->name),
						 errdetail("The output columns of a continuous query are the columns of its results."),
						 errhint("Name the columns with AS."),
						 cq_errposition(st, exprLocation((Node *) tle->expr))));
		}
		col->type = exprType((Node *) tle->expr);
		col->typmod = exprTypmod((Node *) tle->expr);
		col->collation = exprCollation((Node *) tle->expr);
		col->source_expr = tle->expr;
		col->expr = (Expr *) to_result_row((Node *) tle->expr, st);
		check_expr(st, (Node *) col->expr, "the select list");
		col->kind = SSTATE_CQ_COL_EXPRESSION;
		col->index = -1;
		if (IsA(col->expr, Var) && ((Var *) col->expr)->varno == OUTER_VAR)
		{
			AttrNumber	attno = ((Var *) col->expr)->varattno;

			if (attno <= an->nkeys)
			{
				col->kind = SSTATE_CQ_COL_KEY;
				col->index = attno - 1;
			}
			else
			{
				col->kind = SSTATE_CQ_COL_AGGREGATE;
				col->index = attno - an->nkeys - 1;
			}
		}
		n++;
	}
	an->ncolumns = n;
}

/* ----------------------------------------------------------------
 * describe_query
 * ----------------------------------------------------------------
 */

/* The aggregates an expression over the result row reads, into cx->aggs */
static bool
result_aggs_walker(Node *node, CqResultAggs *cx)
{
	if (node == NULL)
		return false;
	if (IsA(node, Var) && ((Var *) node)->varno == OUTER_VAR &&
		((Var *) node)->varattno > cx->an->nkeys)
	{
		cx->aggs = bms_add_member(cx->aggs, ((Var *) node)->varattno - cx->an->nkeys - 1);
		return false;
	}
	return expression_tree_walker(node, result_aggs_walker, cx);
}

#define DESCRIBE_COLS 8

static void
describe_row(ReturnSetInfo *rsinfo, const StreamStateCqAnalysis *an, List *dpcontext,
			 int position, const char *name, Oid type, const char *kind,
			 Node *source_expr, Bitmapset *aggs)
{
	Datum		values[DESCRIBE_COLS];
	bool		nulls[DESCRIBE_COLS];

	memset(nulls, 0, sizeof(nulls));
	values[0] = Int32GetDatum(position);
	nulls[0] = position <= 0;
	values[1] = name ? CStringGetTextDatum(name) : (Datum) 0;
	nulls[1] = name == NULL;
	values[2] = ObjectIdGetDatum(type);
	values[3] = CStringGetTextDatum(kind);
	values[4] = CStringGetTextDatum(deparse_expression(source_expr, dpcontext, false, false));
	if (bms_is_empty(aggs))
	{
		nulls[5] = nulls[6] = nulls[7] = true;
	}
	else
	{
		int			n = bms_num_members(aggs);
		Datum	   *calls = palloc(sizeof(Datum) * n);
		Datum	   *states = palloc(sizeof(Datum) * n);
		bool		fast = true;
		int			j = -1;
		int			i = 0;

		while ((j = bms_next_member(aggs, j)) >= 0)
		{
			const StreamStateCqAgg *a = &an->aggs[j];

			calls[i] = CStringGetTextDatum(deparse_expression((Node *) a->aggref, dpcontext,
															  false, false));
			states[i] = ObjectIdGetDatum(a->transtype);
			fast = fast && a->fast != SSTATE_CQ_FAST_NONE;
			i++;
		}
		values[5] = PointerGetDatum(construct_array(calls, n, TEXTOID, -1, false, TYPALIGN_INT));
		values[6] = PointerGetDatum(construct_array(states, n, REGTYPEOID, sizeof(Oid), true,
													TYPALIGN_INT));
		values[7] = BoolGetDatum(fast);
	}
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/*
 * describe_query(query text): what create_query would make of a continuous
 * query's text.  One row per output column, then one (position NULL) for
 * each GROUP BY key outside the select list and each aggregate used only in
 * HAVING: all of what the query keeps per group.
 */
Datum
stream_state_describe_query(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *sql = text_to_cstring(PG_GETARG_TEXT_PP(0));
	StreamStateCqAnalysis *an;
	RangeTblEntry *rte;
	List	   *dpcontext;
	Bitmapset  *used = NULL;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	an = sstate_cq_analyze(sql, NULL);
	rte = linitial_node(RangeTblEntry, an->query->rtable);
	dpcontext = deparse_context_for(rte->eref->aliasname, an->source);

	for (i = 0; i < an->ncolumns; i++)
	{
		const StreamStateCqColumn *col = &an->columns[i];
		CqResultAggs cx;

		cx.an = an;
		cx.aggs = NULL;
		(void) result_aggs_walker((Node *) col->expr, &cx);
		used = bms_add_members(used, cx.aggs);
		describe_row(rsinfo, an, dpcontext, i + 1, col->name, col->type,
					 col->kind == SSTATE_CQ_COL_KEY ? "key" :
					 col->kind == SSTATE_CQ_COL_AGGREGATE ? "aggregate" : "expression",
					 (Node *) col->source_expr, cx.aggs);
	}
	for (i = 0; i < an->nkeys; i++)
	{
		if (an->keys[i].name == NULL)
			describe_row(rsinfo, an, dpcontext, 0, NULL, an->keys[i].type, "key",
						 (Node *) an->keys[i].expr, NULL);
	}
	for (i = 0; i < an->naggs; i++)
	{
		if (!bms_is_member(i, used))
			describe_row(rsinfo, an, dpcontext, 0, NULL, an->aggs[i].resulttype, "aggregate",
						 (Node *) an->aggs[i].aggref, bms_make_singleton(i));
	}
	return (Datum) 0;
}
