/*-------------------------------------------------------------------------
 *
 * cq_capture.c
 *	  Capture for continuous queries in SQL: the rows of one statement (or
 *	  of the backfill) folded into partial aggregate states per (key, pane),
 *	  and written into the transaction's delta as values (capture.c).
 *
 * Per statement: the WHERE, key, argument and FILTER expressions are set
 * up once (ExecInitExpr), rows are grouped as GROUP BY groups them (a
 * hash table over each row's key image and pane: equal keys have equal
 * images), each group's states advance with the aggregates' transition
 * functions (aggregates with the same transition share one state, as in
 * nodeAgg), and the groups are carried to the next statement of the
 * (sub)transaction (Carry, below); they go into the delta at its commit,
 * each as its key image, pane, row count and serialised states.  The worker
 * combines whatever arrives for a (key, pane).
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

#include <sys/mman.h>

#include "access/xact.h"
#include "common/hashfn.h"
#include "catalog/pg_operator_d.h"
#include "catalog/pg_type_d.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/tuplesort.h"

#include "cq_capture.h"
#include "cq_memory.h"
#include "window.h"


/* Key images of up to this many bytes are kept inline (CaptureKey) */
#define CAPTURE_INLINE	16

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
	int		   *share;			/* per aggregate: the aggregate whose
								 * transition state it shares (itself if
								 * none) */
	bool	   *from_rows;		/* per aggregate: count(*) without FILTER,
								 * whose state is the group's row count */
	bool		key_inline;		/* every key by value, not normalised, and
								 * the image at most CAPTURE_INLINE bytes:
								 * written straight into a CaptureKey */
} CqCompiled;

static CqCompiled **compiled = NULL;	/* each allocated once: pointers to
										 * them stay valid */
static int	ncompiled = 0;

static void carry_flush_query(int32 qid);

/*
 * Whether two aggregates fold the same rows into the same state, so that a
 * statement keeps one state for both (as nodeAgg shares transition states:
 * sum(x) and avg(x) of numeric or bigint).  Both are serialised from it;
 * the serialisation function is the same, and never changes the state.
 */
static bool
same_transition(const StreamStateCqAgg *a, const StreamStateCqAgg *b)
{
	return a->transfn == b->transfn && a->serialfn == b->serialfn &&
		a->transtype == b->transtype && a->inputcollid == b->inputcollid &&
		a->transstrict == b->transstrict &&
		((a->initval == NULL && b->initval == NULL) ||
		 (a->initval != NULL && b->initval != NULL && strcmp(a->initval, b->initval) == 0)) &&
		equal(a->args, b->args) && equal(a->filter, b->filter);
}

/* The compiled form of info, made when its definition changes. */
CqCompiled *
sstate_cq_compiled(const StreamStateQueryInfo *info)
{
	uint64		gen = pg_atomic_read_u64(&sstate_shared->def_generation);
	CqCompiled *c = NULL;
	MemoryContext old;

	for (int i = 0; i < ncompiled; i++)
		if (compiled[i]->qid == info->id)
			c = compiled[i];
	if (c != NULL && c->generation == gen && c->an != NULL)
		return c;
	if (c == NULL)
	{
		compiled = compiled ? repalloc(compiled, sizeof(CqCompiled *) * (ncompiled + 1)) :
			MemoryContextAlloc(TopMemoryContext, sizeof(CqCompiled *));
		c = MemoryContextAllocZero(TopMemoryContext, sizeof(CqCompiled));
		compiled[ncompiled++] = c;
		c->cxt = AllocSetContextCreate(TopMemoryContext, "stream_state compiled query",
									   ALLOCSET_SMALL_SIZES);
	}
	else
	{
		/* groups carried with the old form go into the delta first */
		carry_flush_query(info->id);
		MemoryContextReset(c->cxt);
	}
	c->qid = info->id;
	c->an = NULL;
	old = MemoryContextSwitchTo(c->cxt);
	{
		StreamStateCqAnalysis *an = sstate_cq_analyze_defined(info->query_text, info->name);

		c->fns = palloc0(sizeof(StreamStateCqAggFns) * Max(an->naggs, 1));
		for (int j = 0; j < an->naggs; j++)
			sstate_cq_agg_fns_backend(&c->fns[j], &an->aggs[j], an->aggs[j].refs);
		c->share = palloc(sizeof(int) * Max(an->naggs, 1));
		for (int j = 0; j < an->naggs; j++)
		{
			c->share[j] = j;
			for (int k = 0; k < j; k++)
				if (c->share[k] == k && same_transition(&an->aggs[j], &an->aggs[k]))
				{
					c->share[j] = k;
					break;
				}
		}
		c->from_rows = palloc(sizeof(bool) * Max(an->naggs, 1));
		for (int j = 0; j < an->naggs; j++)
			c->from_rows[j] = an->aggs[j].fast == SSTATE_CQ_FAST_COUNT &&
				an->aggs[j].filter == NULL && c->share[j] == j;
		c->keylen = palloc(sizeof(int16) * Max(an->nkeys, 1));
		c->keybyval = palloc(sizeof(bool) * Max(an->nkeys, 1));
		c->keynorm = palloc(sizeof(uint8) * Max(an->nkeys, 1));
		{
			int			imglen = 0;

			c->key_inline = true;
			for (int i = 0; i < an->nkeys; i++)
			{
				get_typlenbyval(an->keys[i].type, &c->keylen[i], &c->keybyval[i]);
				c->keynorm[i] = sstate_key_norm_for_type(an->keys[i].type);
				imglen += 1 + Max(c->keylen[i], 0);
				if (!c->keybyval[i] || c->keynorm[i] != SSTATE_NORM_NONE)
					c->key_inline = false;
			}
			if (imglen > CAPTURE_INLINE)
				c->key_inline = false;
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

/*
 * One group of a statement: its (key image, pane), rows and states.  Only
 * the aggregates that keep a state of their own have one here (see
 * CaptureRun.owned): count(*) is the group's row count, and aggregates that
 * share a transition share its state.
 *
 * The layout (CaptureRun.hdr, gsize): the row count, the first and last
 * event (session windows only), the states, then a count and sum for each
 * state folded inline (sum(bigint) and avg(bigint): CaptureRun.avgoff), a
 * long key image last.  A group starts a cache line: count(*), sum, avg and
 * max of a bigint take 64 bytes, one line, where the group and the state
 * int8_avg_accum allocates took three, and every row touches its group.
 */
typedef struct CaptureGroup
{
	int64		nrows;
	int64		first;			/* session windows only: first and last event */
	int64		last;
} CaptureGroup;

/*
 * A group's key image and pane.  Images of up to CAPTURE_INLINE bytes (a
 * bigint key takes 9) are kept in the entry itself, zero-padded, and
 * compared as two words: a probe then touches no memory but the table's.
 */
typedef struct CaptureKey
{
	int64		pane;
	uint32		len;
	const char *img;			/* longer images: the group's copy */
	uint64		inl[CAPTURE_INLINE / sizeof(uint64)];
} CaptureKey;

typedef struct CaptureEntry
{
	CaptureKey	key;
	CaptureGroup *g;			/* NULL: the entry is empty */
} CaptureEntry;

static inline const char *
capture_key_bytes(const CaptureKey *k)
{
	return k->len <= CAPTURE_INLINE ? (const char *) k->inl : k->img;
}

static inline bool
capture_key_equal(const CaptureKey *a, const CaptureKey *b)
{
	if (a->pane != b->pane || a->len != b->len)
		return false;
	if (a->len <= CAPTURE_INLINE)
		return a->inl[0] == b->inl[0] && a->inl[1] == b->inl[1];
	return memcmp(a->img, b->img, a->len) == 0;
}

static inline uint32
capture_key_hash(const CaptureKey *k)
{
	return hash_combine(hash_bytes((const unsigned char *) capture_key_bytes(k), k->len),
						murmurhash32((uint32) k->pane ^ (uint32) ((uint64) k->pane >> 32)));
}

/*
 * The groups of a pass, found by their key image and pane compared
 * bytewise: equal keys have equal images (the header comment), so this
 * groups as GROUP BY does, without building a tuple per row.
 *
 * Open addressing with linear probing over a power-of-two array, grown by
 * doubling past a load of 7/8 (simplehash grows past 0.9: the array is a
 * third of the capture's memory, and at 3/4 a 2M-row statement's table
 * grew once more, to 30 MB, and clearing its pages cost a sixth of the
 * capture).  Each slot's hash (its tag: 0 marks an empty slot, so a hash
 * of 0 is kept as 1) is in an array of its own, before the entries: a
 * lookup scans tags, 16 to a cache line, and reads the one entry whose tag
 * matches.  With the hash in each 56-byte entry, a lookup at that load read
 * two or three entries, most of them across two lines, and that was the
 * most of the table's cost.  The full hash is kept, so growing never
 * hashes a key again.  A small table is a chunk of the capture's context;
 * one larger than SSTATE_ARENA_SMALL is a fresh mapping (sstate_huge_map):
 * already zero, so growing to hundreds of thousands of groups neither
 * clears memory nor takes a page fault per 4 kB of it, which were a tenth
 * of a 2M-row statement's capture with simplehash.
 */
#define TABLE_FIRST		256

typedef struct GroupTable
{
	uint32	   *tags;			/* the allocation starts here */
	CaptureEntry *data;			/* after the tags */
	uint64		mask;
	uint64		members;
	bool		mapped;			/* a mapping, else a chunk of owner */
	MemoryContext owner;
} GroupTable;

static inline uint32
table_tag(uint32 hash)
{
	return hash != 0 ? hash : 1;
}

static inline Size
table_bytes(uint64 nentries)
{
	return (sizeof(uint32) + sizeof(CaptureEntry)) * nentries;
}

/* A new empty table of nentries for t (t unchanged if this fails) */
static void
table_alloc(GroupTable *t, uint64 nentries)
{
	Size		bytes = table_bytes(nentries);
	bool		mapped = bytes > SSTATE_ARENA_SMALL;
	char	   *base = mapped ? sstate_huge_map(TYPEALIGN(SSTATE_HUGE_PAGE, bytes)) :
		MemoryContextAllocZero(t->owner, bytes);

	t->tags = (uint32 *) base;
	t->data = (CaptureEntry *) (base + sizeof(uint32) * nentries);
	t->mapped = mapped;
	t->mask = nentries - 1;
}

static void
table_free_data(uint32 *tags, uint64 nentries, bool mapped)
{
	if (tags == NULL)
		return;
	if (mapped)
		munmap(tags, TYPEALIGN(SSTATE_HUGE_PAGE, table_bytes(nentries)));
	else
		pfree(tags);
}

/* the owner context's going (also on error): unmap a mapped table */
static void
table_release(void *arg)
{
	GroupTable *t = (GroupTable *) arg;

	if (t->mapped)
		table_free_data(t->tags, t->mask + 1, true);
	t->tags = NULL;
	t->data = NULL;
	t->mapped = false;
}

static void
table_init(GroupTable *t, MemoryContext owner)
{
	MemoryContextCallback *cb = MemoryContextAlloc(owner, sizeof(MemoryContextCallback));

	t->owner = owner;
	t->members = 0;
	table_alloc(t, TABLE_FIRST);
	cb->func = table_release;
	cb->arg = t;
	MemoryContextRegisterResetCallback(owner, cb);
}

/* Empty again, and small (a pass over a spill file starts afresh) */
static void
table_reset(GroupTable *t)
{
	table_free_data(t->tags, t->mask + 1, t->mapped);
	t->tags = NULL;
	t->data = NULL;
	t->mapped = false;
	t->members = 0;
	table_alloc(t, TABLE_FIRST);
}

static void
table_grow(GroupTable *t)
{
	uint32	   *oldtags = t->tags;
	CaptureEntry *old = t->data;
	uint64		oldsize = t->mask + 1;
	bool		oldmapped = t->mapped;

	table_alloc(t, oldsize * 2);
	for (uint64 i = 0; i < oldsize; i++)
	{
		uint64		at;

		if (oldtags[i] == 0)
			continue;
		at = oldtags[i] & t->mask;
		while (t->tags[at] != 0)
			at = (at + 1) & t->mask;
		t->tags[at] = oldtags[i];
		t->data[at] = old[i];
	}
	table_free_data(oldtags, oldsize, oldmapped);
}

/* Where a lookup of hash starts */
static inline uint32 *
table_bucket(GroupTable *t, uint32 hash)
{
	return &t->tags[table_tag(hash) & t->mask];
}

/*
 * The first slot at or after hash's bucket whose tag is hash's or which is
 * empty: where its entry most likely is, or goes.
 */
static inline CaptureEntry *
table_candidate(GroupTable *t, uint32 hash)
{
	uint32		tag = table_tag(hash);
	uint64		at = tag & t->mask;

	while (t->tags[at] != 0 && t->tags[at] != tag)
		at = (at + 1) & t->mask;
	return &t->data[at];
}

/* The entry of key, or NULL */
static inline CaptureEntry *
table_lookup(GroupTable *t, const CaptureKey *key, uint32 hash)
{
	uint32		tag = table_tag(hash);
	uint64		at = tag & t->mask;

	for (;;)
	{
		uint32		h = t->tags[at];

		if (h == 0)
			return NULL;
		if (h == tag && capture_key_equal(&t->data[at].key, key))
			return &t->data[at];
		at = (at + 1) & t->mask;
	}
}

/*
 * The entry of key; a new one (*found false) has the key, and the caller
 * sets its g before anything else touches the table.
 */
static inline CaptureEntry *
table_insert(GroupTable *t, const CaptureKey *key, uint32 hash, bool *found)
{
	uint32		tag = table_tag(hash);
	uint64		at;

	if (unlikely((t->members + 1) * 8 > (t->mask + 1) * 7))
		table_grow(t);
	at = tag & t->mask;
	for (;;)
	{
		uint32		h = t->tags[at];

		if (h == 0)
		{
			t->tags[at] = tag;
			t->data[at].key = *key;
			t->members++;
			*found = false;
			return &t->data[at];
		}
		if (h == tag && capture_key_equal(&t->data[at].key, key))
		{
			*found = true;
			return &t->data[at];
		}
		at = (at + 1) & t->mask;
	}
}


static ExprState *
prepare(Expr *expr)
{
	return expr ? ExecInitExpr(expression_planner(expr), NULL) : NULL;
}

/*
 * One statement's capture of one query: what every pass over its rows
 * shares.
 */
typedef struct CaptureRun
{
	const StreamStateQueryInfo *info;
	CqCompiled *c;
	StreamStateCqAggFns *fns;
	ExprContext *econtext;
	ExprState  *qual;
	ExprState **keyexprs;
	ExprState ***argexprs;
	ExprState **filters;
	GroupTable *groups;			/* in the capture's context, as the arena: */
	StreamStateCqAggContext *cx;
	StreamStateCapture cap;
	StringInfoData img;
	StringInfoData val;
	Size		limit;
	Size		hdr;			/* of a group: where its states start */
	Size		gsize;			/* of a group, a long image not included */
	Size	   *avgoff;			/* per state of a group: where its count and
								 * sum are when it is folded inline, else 0 */
	int		   *serpos;			/* per aggregate: where flush_group wrote its
								 * state in val, then (naggs on) how long */
	bool		session;
	Datum	   *keyvals;
	bool	   *keynulls;
	TupleTableSlot *spillslot;	/* rows read back from a spill */
	TupleDesc	sortdesc;		/* a sorted spill's rows (SORT_COLS, then
								 * the source's columns), made when needed */
	TupleTableSlot *sortin;
	TupleTableSlot *sortout;
	TupleTableSlot *sortrow;	/* the source row of a sorted one */

	/* the batch of rows whose groups are looked up together (below) */
	struct PendingRow *pending;
	int			npending;
	int			nargs;			/* arguments of all advanced aggregates */
	int		   *argoff;			/* per aggregate: its first in a row's args */
	int16	   *argtyplen;		/* per argument: its type's length and */
	bool	   *argbyval;		/* by-value flag, to copy it */
	int		   *owned;			/* per state of a group: its aggregate */
	int			nowned;
	int		   *slot;			/* per aggregate: its state in a group, -1
								 * if it has none (count(*), sharing) */
	Size		span;			/* a group and the state after it */
	StreamStateArena *arena;	/* their release callbacks outlive this */
	MemoryContext batchcxt;		/* by-reference arguments and long images */
} CaptureRun;

static inline StreamStateCqState *
group_states(const CaptureRun *r, CaptureGroup *g)
{
	return (StreamStateCqState *) ((char *) g + r->hdr);
}

static inline StreamStateCqInt8Avg *
group_avg(const CaptureRun *r, CaptureGroup *g, int k)
{
	return (StreamStateCqInt8Avg *) ((char *) g + r->avgoff[k]);
}

/*
 * Rows are folded in batches of CAPTURE_BATCH (as long as the groups fit):
 * each row's key image, pane, hash, FILTER results and arguments are taken
 * when it is read, and its bucket in the hash table prefetched; when the
 * batch is full its groups are looked up (and their memory prefetched),
 * then their states advanced.  With 100,000 keys nearly every row's bucket,
 * group and state are cache misses, which a row at a time waits for one
 * after another; a batch has them in flight together.
 */
#define CAPTURE_BATCH	16

typedef struct PendingRow
{
	CaptureKey	key;
	uint32		hash;
	int64		event_us;
	CaptureGroup *g;
	bool	   *pass;			/* per aggregate: its FILTER held */
	Datum	   *args;			/* r->nargs */
	bool	   *nulls;
} PendingRow;

/*
 * Write every group of a pass into the delta and start afresh (see
 * capture_pass).  A group of a session query (its pane is floor(event time
 * / gap): its events are less than the gap apart, so in one session)
 * starts its value with its first and last event time.
 */
#define FLUSH_AHEAD		8

/* The lines of group g and of the state after it (r->span bytes) */
static inline void
prefetch_group(CaptureRun *r, CaptureGroup *g)
{
	const char *p = (const char *) g;

	for (Size off = 0; off < r->span; off += 64)
		__builtin_prefetch(p + off, 1);
	__builtin_prefetch(p + r->span - 1, 1);
}

/* Group entry->g into the delta */
static void
flush_group(CaptureRun *r, CaptureEntry *entry)
{
	CqCompiled *c = r->c;
	StreamStateCqAggContext *cx = r->cx;
	StreamStateCqAggFns *fns = r->fns;
	StringInfo	val = &r->val;
	CaptureGroup *g = entry->g;
	StreamStateCqState *states = group_states(r, g);

	resetStringInfo(val);
	if (r->session)
	{
		appendBinaryStringInfo(val, (const char *) &g->first, sizeof(int64));
		appendBinaryStringInfo(val, (const char *) &g->last, sizeof(int64));
	}
	for (int j = 0; j < c->an->naggs; j++)
	{
		int			o = c->share[j];

		r->serpos[j] = val->len;
		if (o != j && !c->from_rows[o])
		{
			/* the same state, serialised by the same function: its bytes */
			int			len = r->serpos[o + c->an->naggs];

			enlargeStringInfo(val, len);
			memcpy(val->data + val->len, val->data + r->serpos[o], len);
			val->len += len;
			val->data[val->len] = '\0';
		}
		else if (c->from_rows[o])
		{
			StreamStateCqState rows;

			sstate_cq_state_init(cx, &fns[o], &rows);
			rows.value = Int64GetDatum(g->nrows);
			sstate_cq_state_serialize(cx, &fns[j], &rows, val);
		}
		else if (r->avgoff[r->slot[o]] != 0)
			sstate_cq_int8_avg_serialize(&states[r->slot[o]], group_avg(r, g, r->slot[o]), val);
		else
			sstate_cq_state_serialize(cx, &fns[j], &states[r->slot[o]], val);
		r->serpos[j + c->an->naggs] = val->len - r->serpos[j];
	}
	sstate_capture_value(&r->cap, capture_key_bytes(&entry->key), entry->key.len, entry->key.pane, g->nrows,
						 val->data, val->len);
}

static void
flush_groups(CaptureRun *r)
{
	GroupTable *groups = r->groups;
	uint64		size = groups->mask + 1;

	/*
	 * In the table's own order, the group FLUSH_AHEAD entries on (and the
	 * state after it) fetched while this one is written: the groups are all
	 * over the arena.
	 */
	for (uint64 i = 0; i < size; i++)
	{
		CaptureEntry *entry = &groups->data[i];

		if (i + FLUSH_AHEAD < size && groups->data[i + FLUSH_AHEAD].g != NULL)
			prefetch_group(r, groups->data[i + FLUSH_AHEAD].g);
		if (entry->g != NULL)
			flush_group(r, entry);
	}
	table_reset(groups);
	sstate_cq_agg_context_reset(r->cx);
	sstate_arena_reset(r->arena);	/* after the states' context */
}
/*
 * Groups that do not fit: as PostgreSQL's hash aggregation does, once the
 * groups take stream_state.capture_memory, rows of groups already there
 * still advance them, and rows of other groups go to one of SPILL_PARTS
 * spill files by their hash; when the rows are done, the groups go into
 * the delta, and each spill file is read again the same way (its rows
 * split by other bits of their hash if it overflows in turn).  So every
 * group is written once per statement, and built once: an aggregate with
 * a large state (hll's is about 130 kB in memory) is not built again for
 * every few rows, as it was when groups were written early instead.
 */
#define SPILL_BITS	4
#define SPILL_PARTS (1 << SPILL_BITS)

static bool
next_spilled(void *arg, TupleTableSlot *slot)
{
	return tuplestore_gettupleslot((Tuplestorestate *) arg, true, false, slot);
}

/* A new group of the statement for entry, its states initialised */
static CaptureGroup *
new_group(CaptureRun *r, CaptureEntry *entry, const CaptureKey *key)
{
	CaptureGroup *g = sstate_arena_alloc_line(r->arena,
											  r->gsize + (key->len > CAPTURE_INLINE ? key->len : 0));
	StreamStateCqState *states = group_states(r, g);

	g->nrows = 0;
	if (r->session)
	{
		g->first = PG_INT64_MAX;
		g->last = PG_INT64_MIN;
	}
	for (int k = 0; k < r->nowned; k++)
	{
		sstate_cq_state_init(r->cx, &r->fns[r->owned[k]], &states[k]);
		if (r->avgoff[k] != 0)
			memset(group_avg(r, g, k), 0, sizeof(StreamStateCqInt8Avg));
	}
	if (key->len > CAPTURE_INLINE)
	{
		char	   *copy = (char *) g + r->gsize;

		memcpy(copy, key->img, key->len);
		entry->key.img = copy;
	}
	entry->g = g;
	return g;
}

/*
 * The row in econtext's scan slot into the batch: its key (the image
 * copied when it is not inline), FILTER results and arguments (copied when
 * by reference: the slot and the per-row memory go with the next row).
 */
static void
batch_add(CaptureRun *r, const CaptureKey *key, uint32 hash, int64 event_us, ExprContext *econtext)
{
	CqCompiled *c = r->c;
	StreamStateCqAnalysis *an = c->an;
	PendingRow *p = &r->pending[r->npending++];

	p->key = *key;
	if (key->len > CAPTURE_INLINE)
	{
		char	   *copy = MemoryContextAlloc(r->batchcxt, key->len);

		memcpy(copy, key->img, key->len);
		p->key.img = copy;
	}
	p->hash = hash;
	p->event_us = event_us;
	__builtin_prefetch(table_bucket(r->groups, hash));
	for (int j = 0; j < an->naggs; j++)
	{
		int			nargs;

		if (c->share[j] != j || c->from_rows[j])
			continue;
		p->pass[j] = r->filters[j] == NULL || ExecQual(r->filters[j], econtext);
		if (!p->pass[j])
			continue;
		nargs = list_length(an->aggs[j].args);
		for (int k = 0; k < nargs; k++)
		{
			int			a = r->argoff[j] + k;
			Datum		d = ExecEvalExpr(r->argexprs[j][k], econtext, &p->nulls[a]);

			if (!p->nulls[a] && !r->argbyval[a])
			{
				MemoryContext o = MemoryContextSwitchTo(r->batchcxt);

				d = datumCopy(d, false, r->argtyplen[a]);
				MemoryContextSwitchTo(o);
			}
			p->args[a] = d;
		}
	}
}

/* Row p of the batch into its group g */
static inline void
fold_row(CaptureRun *r, PendingRow *p, CaptureGroup *g)
{
	StreamStateCqAnalysis *an = r->c->an;
	StreamStateCqState *states = group_states(r, g);

	g->nrows++;
	if (r->session)
	{
		if (p->event_us < g->first)
			g->first = p->event_us;
		if (p->event_us > g->last)
			g->last = p->event_us;
	}
	for (int k = 0; k < r->nowned; k++)
	{
		int			j = r->owned[k];

		if (!p->pass[j])
			continue;
		if (r->avgoff[k] != 0)
			sstate_cq_int8_avg_add(&states[k], group_avg(r, g, k), p->args[r->argoff[j]],
								   p->nulls[r->argoff[j]]);
		else
			sstate_cq_state_advance(r->cx, &r->fns[j], &states[k], &p->args[r->argoff[j]],
									&p->nulls[r->argoff[j]], list_length(an->aggs[j].args));
	}
}

/* Fold the batch in: look its groups up (or make them), then advance them */
static void
batch_fold(CaptureRun *r)
{
	/*
	 * The entries the rows' tags point at (their tags were prefetched when
	 * the rows came), asked for together; a growth of the table below only
	 * makes some of these prefetches useless.
	 */
	for (int i = 0; i < r->npending; i++)
	{
		const char *e = (const char *) table_candidate(r->groups, r->pending[i].hash);

		__builtin_prefetch(e, 1);
		__builtin_prefetch(e + sizeof(CaptureEntry) - 1, 1);
	}

	/*
	 * A new group's first row is folded at once, so that the states it
	 * makes (avg's, hll's) come from the arena right after the group: a
	 * later row then finds both in the lines prefetched here.  The rows of
	 * one group are still folded in their order.
	 */
	for (int i = 0; i < r->npending; i++)
	{
		PendingRow *p = &r->pending[i];
		bool		found;
		CaptureEntry *entry = table_insert(r->groups, &p->key, p->hash, &found);

		if (found)
		{
			p->g = entry->g;
			prefetch_group(r, p->g);
		}
		else
		{
			p->g = NULL;
			fold_row(r, p, new_group(r, entry, &p->key));
		}
	}
	for (int i = 0; i < r->npending; i++)
	{
		PendingRow *p = &r->pending[i];

		if (p->g != NULL)
			fold_row(r, p, p->g);
	}
	r->npending = 0;
	MemoryContextReset(r->batchcxt);
}

/* The row in econtext's scan slot into group g, a row at a time */
static void
fold_slot_row(CaptureRun *r, CaptureGroup *g, int64 event_us, ExprContext *econtext)
{
	StreamStateCqAnalysis *an = r->c->an;
	StreamStateCqState *states = group_states(r, g);

	g->nrows++;
	if (r->session)
	{
		if (event_us < g->first)
			g->first = event_us;
		if (event_us > g->last)
			g->last = event_us;
	}
	for (int o = 0; o < r->nowned; o++)
	{
		int			j = r->owned[o];
		Datum		args[FUNC_MAX_ARGS];
		bool		nulls[FUNC_MAX_ARGS];
		int			nargs = list_length(an->aggs[j].args);

		if (r->filters[j] && !ExecQual(r->filters[j], econtext))
			continue;
		for (int k = 0; k < nargs; k++)
			args[k] = ExecEvalExpr(r->argexprs[j][k], econtext, &nulls[k]);
		if (r->avgoff[o] != 0)
			sstate_cq_int8_avg_add(&states[o], group_avg(r, g, o), args[0], nulls[0]);
		else
			sstate_cq_state_advance(r->cx, &r->fns[j], &states[o], args, nulls, nargs);
	}
}

/*
 * Groups with large states: when the groups that fill capture_memory take
 * more than SORT_GROUP_BYTES each on average (hll's state is about 130 kB
 * in memory, so 64 MB hold some 490 groups), spilling the rows of the
 * others by hash would build their states a few hundred at a time, pass
 * after pass, each pass in memory gone cold since the last and (as malloc
 * gives back and takes again) in fresh pages: a 2M-row statement with an
 * hll column took 144,000 more page faults than without it.  Instead those
 * rows are sorted by (hash, pane, key image), as PostgreSQL's GroupAggregate
 * would have them, and folded a group at a time: one group's states alive,
 * their memory reused from one group to the next.  A sorted row is its
 * hash, pane, image and event time, then the source row (whose expressions
 * are evaluated when it is folded).
 */
#define SORT_GROUP_BYTES	4096
#define SORT_COLS			4

static Tuplesortstate *
sort_begin(CaptureRun *r, TupleDesc source)
{
	AttrNumber	cols[3] = {1, 2, 3};
	Oid			ops[3] = {Int4LessOperator, Int8LessOperator, ByteaLessOperator};
	Oid			colls[3] = {InvalidOid, InvalidOid, InvalidOid};
	bool		nullsfirst[3] = {false, false, false};

	if (r->sortdesc == NULL)
	{
		MemoryContext o = MemoryContextSwitchTo(GetMemoryChunkContext(r->keyvals));
		TupleDesc	d = CreateTemplateTupleDesc(SORT_COLS + source->natts);

		TupleDescInitEntry(d, 1, "hash", INT4OID, -1, 0);
		TupleDescInitEntry(d, 2, "pane", INT8OID, -1, 0);
		TupleDescInitEntry(d, 3, "image", BYTEAOID, -1, 0);
		TupleDescInitEntry(d, 4, "event_us", INT8OID, -1, 0);
		for (int i = 0; i < source->natts; i++)
			TupleDescCopyEntry(d, SORT_COLS + 1 + i, source, i + 1);
		r->sortdesc = d;
		r->sortin = MakeSingleTupleTableSlot(d, &TTSOpsVirtual);
		r->sortout = MakeSingleTupleTableSlot(d, &TTSOpsMinimalTuple);
		r->sortrow = MakeSingleTupleTableSlot(source, &TTSOpsVirtual);
		MemoryContextSwitchTo(o);
	}
	return tuplesort_begin_heap(r->sortdesc, 3, cols, ops, colls, nullsfirst,
								work_mem, NULL, TUPLESORT_NONE);
}

/* The row in slot, of key and hash, into sort (in the per-row memory) */
static void
sort_put(CaptureRun *r, Tuplesortstate *sort, TupleTableSlot *slot, const CaptureKey *key,
		 uint32 hash, int64 event_us)
{
	TupleTableSlot *in = r->sortin;
	int			natts = slot->tts_tupleDescriptor->natts;
	bytea	   *img = MemoryContextAlloc(r->econtext->ecxt_per_tuple_memory, VARHDRSZ + key->len);

	SET_VARSIZE(img, VARHDRSZ + key->len);
	memcpy(VARDATA(img), capture_key_bytes(key), key->len);
	slot_getallattrs(slot);
	ExecClearTuple(in);
	in->tts_values[0] = Int32GetDatum((int32) hash);
	in->tts_values[1] = Int64GetDatum(key->pane);
	in->tts_values[2] = PointerGetDatum(img);
	in->tts_values[3] = Int64GetDatum(event_us);
	memset(in->tts_isnull, 0, SORT_COLS);
	memcpy(in->tts_values + SORT_COLS, slot->tts_values, sizeof(Datum) * natts);
	memcpy(in->tts_isnull + SORT_COLS, slot->tts_isnull, sizeof(bool) * natts);
	ExecStoreVirtualTuple(in);
	tuplesort_puttupleslot(sort, in);
}

/* The sorted rows folded a group at a time, each into the delta */
static void
sort_fold(CaptureRun *r, Tuplesortstate *sort)
{
	ExprContext *econtext = r->econtext;
	TupleTableSlot *out = r->sortout;
	TupleTableSlot *row = r->sortrow;
	int			natts = row->tts_tupleDescriptor->natts;
	CaptureEntry cur;
	uint32		curhash = 0;

	cur.g = NULL;
	tuplesort_performsort(sort);
	while (tuplesort_gettupleslot(sort, true, false, out, NULL))
	{
		CaptureKey	key;
		bytea	   *img;
		uint32		hash;
		int64		event_us;

		CHECK_FOR_INTERRUPTS();
		ResetExprContext(econtext);
		slot_getallattrs(out);
		hash = (uint32) DatumGetInt32(out->tts_values[0]);
		img = DatumGetByteaPP(out->tts_values[2]);
		key.pane = DatumGetInt64(out->tts_values[1]);
		key.len = VARSIZE_ANY_EXHDR(img);
		key.img = VARDATA_ANY(img);
		key.inl[0] = key.inl[1] = 0;
		if (key.len <= CAPTURE_INLINE)
			memcpy(key.inl, key.img, key.len);
		event_us = DatumGetInt64(out->tts_values[3]);

		if (cur.g == NULL || curhash != hash || !capture_key_equal(&cur.key, &key))
		{
			if (cur.g != NULL)
			{
				flush_group(r, &cur);
				sstate_cq_agg_context_reset(r->cx);
				sstate_arena_reset(r->arena);
			}
			cur.key = key;
			curhash = hash;
			new_group(r, &cur, &key);	/* copies a long image */
		}

		ExecClearTuple(row);
		memcpy(row->tts_values, out->tts_values + SORT_COLS, sizeof(Datum) * natts);
		memcpy(row->tts_isnull, out->tts_isnull + SORT_COLS, sizeof(bool) * natts);
		ExecStoreVirtualTuple(row);
		econtext->ecxt_scantuple = row;
		fold_slot_row(r, cur.g, event_us, econtext);
	}
	if (cur.g != NULL)
	{
		flush_group(r, &cur);
		sstate_cq_agg_context_reset(r->cx);
		sstate_arena_reset(r->arena);
	}
	tuplesort_end(sort);
}

/* What the groups of r take: their table, the arena and the states */
static Size
run_memory(CaptureRun *r)
{
	return MemoryContextMemAllocated(r->cx->states, true) + r->arena->used +
		table_bytes(r->groups->mask + 1);
}

static void
capture_pass(CaptureRun *r, TupleTableSlot *slot, bool (*next) (void *arg, TupleTableSlot *slot),
			 void *arg, int level)
{
	const StreamStateQueryInfo *info = r->info;
	CqCompiled *c = r->c;
	StreamStateCqAnalysis *an = c->an;
	ExprContext *econtext = r->econtext;
	Tuplestorestate *spill[SPILL_PARTS] = {0};
	Tuplesortstate *sort = NULL;
	bool		full = false;

	check_stack_depth();		/* a pass per level of spilling */
	while (next(arg, slot))
	{
		CaptureKey	key;
		CaptureEntry *entry;
		uint32		hash;
		int64		event_us = 0;

		CHECK_FOR_INTERRUPTS();
		ResetExprContext(econtext);
		econtext->ecxt_scantuple = slot;
		if (r->qual && !ExecQual(r->qual, econtext))
			continue;
		key.pane = 0;
		if (!info->def.processing_time)
		{
			bool		isnull;
			Datum		t = slot_getattr(slot, info->time_attnum, &isnull);
			int64		us;

			if (isnull || !sstate_time_to_unix_us(t, info->time_type, &us))
			{
				sstate_capture_skip(&r->cap);
				continue;
			}
			key.pane = sstate_floor_div(us, info->def.pane_us);
			event_us = us;
			sstate_capture_note_event(&r->cap, us);
		}
		for (int i = 0; i < an->nkeys; i++)
			r->keyvals[i] = ExecEvalExpr(r->keyexprs[i], econtext, &r->keynulls[i]);
		key.inl[0] = key.inl[1] = 0;
		if (c->key_inline)
		{
			/* the bytes sstate_cq_key_image would write, in place */
			char	   *p = (char *) key.inl;

			for (int i = 0; i < an->nkeys; i++)
			{
				*p++ = r->keynulls[i] ? 0 : 1;
				if (r->keynulls[i])
					continue;
				store_att_byval(p, r->keyvals[i], c->keylen[i]);
				p += c->keylen[i];
			}
			key.len = p - (char *) key.inl;
			key.img = NULL;
		}
		else
		{
			MemoryContext k = MemoryContextSwitchTo(econtext->ecxt_per_tuple_memory);

			sstate_cq_key_image(c, r->keyvals, r->keynulls, &r->img);
			MemoryContextSwitchTo(k);
			key.len = r->img.len;
			key.img = r->img.data;
			if (key.len <= CAPTURE_INLINE)
				memcpy(key.inl, r->img.data, key.len);
		}
		hash = capture_key_hash(&key);
		if (!full)
		{
			batch_add(r, &key, hash, event_us, econtext);
			if (r->npending == CAPTURE_BATCH)
			{
				Size		used;

				batch_fold(r);
				used = run_memory(r);
				if (used > r->limit)
				{
					full = true;
					if (used / Max(r->groups->members, 1) > SORT_GROUP_BYTES)
						sort = sort_begin(r, slot->tts_tupleDescriptor);
				}
			}
			continue;
		}

		/* the groups are full: a row a time, new groups' rows spilled */
		entry = table_lookup(r->groups, &key, hash);
		if (entry == NULL && sort != NULL)
		{
			sort_put(r, sort, slot, &key, hash, event_us);
			continue;
		}
		if (entry == NULL)
		{
			uint32		h = level * SPILL_BITS < 32 ? hash >> (level * SPILL_BITS) :
				murmurhash32(hash ^ (uint32) level);
			int			part = h & (SPILL_PARTS - 1);

			if (spill[part] == NULL)
			{
				MemoryContext o = MemoryContextSwitchTo(GetMemoryChunkContext(r->keyvals));

				spill[part] = tuplestore_begin_heap(false, false, work_mem);
				MemoryContextSwitchTo(o);
			}
			tuplestore_puttupleslot(spill[part], slot);
			continue;
		}
		fold_slot_row(r, entry->g, event_us, econtext);
	}
	batch_fold(r);

	/*
	 * The groups stay for the next statement (Carry), unless this pass
	 * filled the memory or reads a spill: then they go into the delta now,
	 * and the spilled rows are grouped afresh.
	 */
	if (full || level > 0)
		flush_groups(r);
	if (sort != NULL)
		sort_fold(r, sort);
	for (int part = 0; part < SPILL_PARTS; part++)
	{
		if (spill[part] == NULL)
			continue;
		capture_pass(r, r->spillslot, next_spilled, spill[part], level + 1);
		tuplestore_end(spill[part]);
	}
}

/*
 * Groups carried from one statement to the next.  A transaction that
 * inserts in many statements (a loader's batches, a loop) would write each
 * statement's groups into the delta, and the worker combine them, once per
 * statement: 200 statements of 10,000 rows over 100,000 users wrote 1.9M
 * partial states instead of 200,000, and the worker took 3.2 s to combine
 * them after a 6.8 s insert.  So a query's groups stay in a carry of the
 * (sub)transaction level that built them, and the next statement at that
 * level folds its rows into the same groups.  A carry goes into its level's
 * delta (flush_groups) when
 *   - the transaction commits or prepares (sstate_cq_carry_flush_all, at
 *     pre-commit, before the levels are written);
 *   - its sub-transaction commits (at SUBXACT_EVENT_PRE_COMMIT_SUB, into
 *     the level, which then merges into its parent; without writing WAL
 *     there, so that no message depends on which transaction a callback
 *     runs in);
 *   - a statement fills stream_state.capture_memory (as before: its groups
 *     are written at its end, then its spilled rows), or leaves the carries
 *     of all queries together larger than that (its own are written);
 *   - the query's definition changes (the compiled form is made again).
 * It is dropped without a trace when its (sub)transaction aborts, and when
 * a TRUNCATE of the source at its level (or one that commits into it)
 * empties the query.  A carry lives in its own memory context under
 * TopTransactionContext.
 */
typedef struct Carry
{
	int32		qid;
	int			nest;			/* GetCurrentTransactionNestLevel() */
	MemoryContext cxt;
	CaptureRun	r;				/* valid between statements: c, fns, cx,
								 * cap, groups, arena, val, and the layout */
	struct Carry *next;
} Carry;

static Carry *carries = NULL;

static void
carry_destroy(Carry *k, bool clean)
{
	Carry	  **p;

	if (clean)
		sstate_cq_agg_context_reset(k->r.cx);	/* the states' callbacks */

	for (p = &carries; *p != NULL; p = &(*p)->next)
		if (*p == k)
		{
			*p = k->next;
			break;
		}
	MemoryContextDelete(k->cxt);	/* unmaps the table and the arena too */
}

/* Carry k's groups into its level's delta; with wal false, none written yet */
static void
carry_flush(Carry *k, bool wal)
{
	if (k->r.groups->members == 0)
		return;
	if (wal)
	{
		flush_groups(&k->r);
		return;
	}
	sstate_capture_defer_wal(true);
	PG_TRY();
	{
		flush_groups(&k->r);
	}
	PG_FINALLY();
	{
		/* a failed sub-commit leaves the transaction going on */
		sstate_capture_defer_wal(false);
	}
	PG_END_TRY();
}

static void
carry_flush_query(int32 qid)
{
	Carry	   *k = carries;

	while (k != NULL)
	{
		Carry	   *next = k->next;

		if (k->qid == qid)
		{
			carry_flush(k, false);
			carry_destroy(k, true);
		}
		k = next;
	}
}

/* Pre-commit, pre-prepare: every carry into the delta (all at the top level) */
void
sstate_cq_carry_flush_all(void)
{
	while (carries != NULL)
	{
		carry_flush(carries, true);
		carry_destroy(carries, true);
	}
}

/* A sub-transaction at nest ends: its carries into its level, or gone */
void
sstate_cq_carry_end_sub(int nest, bool commit)
{
	Carry	   *k = carries;

	while (k != NULL)
	{
		Carry	   *next = k->next;

		if (k->nest >= nest)
		{
			if (commit)
				carry_flush(k, false);
			carry_destroy(k, commit);
		}
		k = next;
	}
}

/* A TRUNCATE of query qid's source that holds at level nest */
void
sstate_cq_carry_discard(int32 qid, int nest)
{
	Carry	   *k = carries;

	while (k != NULL)
	{
		Carry	   *next = k->next;

		if (k->qid == qid && k->nest == nest)
			carry_destroy(k, true);
		k = next;
	}
}

/* The transaction ended: the carries' memory went with it */
void
sstate_cq_carry_forget(void)
{
	carries = NULL;
}

/* The carry of query info at this level, made if there is none */
static Carry *
carry_get(const StreamStateQueryInfo *info, CqCompiled *c)
{
	int			nest = GetCurrentTransactionNestLevel();
	StreamStateCqAnalysis *an = c->an;
	Carry	   *k;
	CaptureRun *r;
	MemoryContext old;

	for (k = carries; k != NULL; k = k->next)
		if (k->qid == info->id && k->nest == nest)
		{
			Assert(k->r.c == c);
			return k;
		}

	k = MemoryContextAllocZero(TopTransactionContext, sizeof(Carry));
	k->qid = info->id;
	k->nest = nest;
	k->cxt = AllocSetContextCreate(TopTransactionContext, "stream_state carried groups",
								   ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(k->cxt);
	r = &k->r;
	r->c = c;
	r->fns = c->fns;
	r->session = info->def.session_gap_us > 0;
	r->owned = palloc(sizeof(int) * Max(an->naggs, 1));
	r->slot = palloc(sizeof(int) * Max(an->naggs, 1));
	for (int j = 0; j < an->naggs; j++)
	{
		r->slot[j] = -1;
		if (c->share[j] == j && !c->from_rows[j])
		{
			r->slot[j] = r->nowned;
			r->owned[r->nowned++] = j;
		}
	}
	r->hdr = r->session ? sizeof(CaptureGroup) : offsetof(CaptureGroup, first);
	r->gsize = r->hdr + sizeof(StreamStateCqState) * r->nowned;
	r->avgoff = palloc0(sizeof(Size) * Max(r->nowned, 1));
	r->serpos = palloc0(sizeof(int) * 2 * Max(an->naggs, 1));
	for (int o = 0; o < r->nowned; o++)
		if (sstate_cq_int8_avg_inline(&r->fns[r->owned[o]]))
		{
			r->avgoff[o] = r->gsize;
			r->gsize += sizeof(StreamStateCqInt8Avg);
		}
	r->span = r->gsize;
	for (int o = 0; o < r->nowned; o++)
		if (!r->fns[r->owned[o]].transtypbyval && r->avgoff[o] == 0)
			r->span = r->gsize + 64;	/* a state's header and first line */
	r->arena = sstate_arena_create(k->cxt);
	r->cx = sstate_cq_agg_context_create_in(k->cxt,
											sstate_arena_context_create(k->cxt, "stream_state partial states",
																		r->arena));
	r->groups = palloc(sizeof(GroupTable));
	table_init(r->groups, k->cxt);
	initStringInfo(&r->val);
	sstate_capture_begin(&r->cap, info);
	MemoryContextSwitchTo(old);
	k->next = carries;
	carries = k;
	return k;
}

/*
 * Fold the rows next() gives (into slot, of the source's descriptor) into
 * the groups of query info carried at this level (see Carry).
 */
void
sstate_cq_capture_rows(const StreamStateQueryInfo *info, TupleTableSlot *slot,
					   bool (*next) (void *arg, TupleTableSlot *slot), void *arg)
{
	CqCompiled *c = sstate_cq_compiled(info);
	StreamStateCqAnalysis *an = c->an;
	Carry	   *k = carry_get(info, c);
	CaptureRun *r = &k->r;
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "stream_state capture",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	EState	   *estate = CreateExecutorState();

	/* this statement's part of the run */
	r->info = info;
	r->econtext = GetPerTupleExprContext(estate);
	r->keyexprs = palloc0(sizeof(ExprState *) * Max(an->nkeys, 1));
	r->argexprs = palloc0(sizeof(ExprState **) * Max(an->naggs, 1));
	r->filters = palloc0(sizeof(ExprState *) * Max(an->naggs, 1));
	r->limit = (Size) sstate_capture_memory_kb * 1024;
	r->keyvals = palloc(sizeof(Datum) * Max(an->nkeys, 1));
	r->keynulls = palloc(sizeof(bool) * Max(an->nkeys, 1));
	r->sortdesc = NULL;
	r->npending = 0;
	r->nargs = 0;
	r->qual = an->qual ? ExecInitQual(make_ands_implicit(expression_planner(an->qual)), NULL) : NULL;
	for (int i = 0; i < an->nkeys; i++)
		r->keyexprs[i] = prepare(an->keys[i].expr);
	for (int j = 0; j < an->naggs; j++)
	{
		ListCell   *lc;
		int			n = 0;

		if (c->share[j] != j)
			continue;			/* advanced with the state it shares */
		r->argexprs[j] = palloc0(sizeof(ExprState *) * Max(list_length(an->aggs[j].args), 1));
		foreach(lc, an->aggs[j].args)
			r->argexprs[j][n++] = prepare((Expr *) lfirst(lc));
		r->filters[j] = an->aggs[j].filter ?
			ExecInitQual(make_ands_implicit(expression_planner(an->aggs[j].filter)), NULL) : NULL;
	}
	r->argoff = palloc0(sizeof(int) * Max(an->naggs, 1));
	for (int j = 0; j < an->naggs; j++)
	{
		r->argoff[j] = r->nargs;
		if (c->share[j] == j && !c->from_rows[j])
			r->nargs += list_length(an->aggs[j].args);
	}
	r->argtyplen = palloc(sizeof(int16) * Max(r->nargs, 1));
	r->argbyval = palloc(sizeof(bool) * Max(r->nargs, 1));
	for (int j = 0; j < an->naggs; j++)
	{
		ListCell   *lc;
		int			n = 0;

		if (c->share[j] != j || c->from_rows[j])
			continue;
		foreach(lc, an->aggs[j].args)
		{
			get_typlenbyval(exprType((Node *) lfirst(lc)), &r->argtyplen[r->argoff[j] + n],
							&r->argbyval[r->argoff[j] + n]);
			n++;
		}
	}
	r->pending = palloc(sizeof(PendingRow) * CAPTURE_BATCH);
	for (int i = 0; i < CAPTURE_BATCH; i++)
	{
		r->pending[i].pass = palloc0(sizeof(bool) * Max(an->naggs, 1));
		r->pending[i].args = palloc0(sizeof(Datum) * Max(r->nargs, 1));
		r->pending[i].nulls = palloc0(sizeof(bool) * Max(r->nargs, 1));
	}
	r->batchcxt = AllocSetContextCreate(cxt, "stream_state capture batch", ALLOCSET_DEFAULT_SIZES);
	r->spillslot = MakeSingleTupleTableSlot(slot->tts_tupleDescriptor, &TTSOpsMinimalTuple);
	initStringInfo(&r->img);

	sstate_capture_begin(&r->cap, info);
	capture_pass(r, slot, next, arg, 0);

	/*
	 * The groups carried for all queries together stay within
	 * capture_memory: past it, this statement's go into the delta now (the
	 * others' at their next statements), so a table with many queries does
	 * not hold capture_memory for each until the commit.
	 */
	{
		Size		total = 0;

		for (Carry *o = carries; o != NULL; o = o->next)
			total += run_memory(&o->r);
		if (total > r->limit)
			flush_groups(r);
	}
	ExecDropSingleTupleTableSlot(r->spillslot);
	if (r->sortdesc != NULL)
	{
		ExecDropSingleTupleTableSlot(r->sortin);
		ExecDropSingleTupleTableSlot(r->sortout);
		ExecDropSingleTupleTableSlot(r->sortrow);
	}
	FreeExecutorState(estate);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);

	/* nothing of this statement's memory stays reachable from the carry */
	r->info = NULL;
	r->cap.info = NULL;
	r->econtext = NULL;
	r->qual = NULL;
	r->keyexprs = NULL;
	r->argexprs = NULL;
	r->filters = NULL;
	r->keyvals = NULL;
	r->keynulls = NULL;
	r->pending = NULL;
	r->argoff = NULL;
	r->argtyplen = NULL;
	r->argbyval = NULL;
	r->batchcxt = NULL;
	r->spillslot = NULL;
	r->sortdesc = NULL;
	r->img.data = NULL;
}
