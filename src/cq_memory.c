/*-------------------------------------------------------------------------
 *
 * cq_memory.c
 *	  The memory of a statement's capture for continuous queries in SQL
 *	  (cq_capture.c): an arena of huge pages, and a memory context over it
 *	  for the partial states the aggregates' transition functions make.
 *
 * A statement of two million rows over a hundred thousand keys makes about
 * two hundred thousand groups, each with its partial states, and touches
 * one group and its states per row, in no order.  Three things made that
 * slow, and the arena answers all three:
 *
 *	- Size.  A group of count, sum, avg and max is 56 bytes and avg's state
 *	  48; as palloc chunks (a 16-byte header, a power-of-two size) they took
 *	  144 and 80.  Arena chunks are the size asked for (states: rounded to
 *	  16 bytes up to 256, a header of 16), so more of them stay in cache.
 *	- Distance.  A group and the state its first row makes are allocated one
 *	  after the other (cq_capture.c folds a new group's first row at once),
 *	  so a row usually costs one cache miss for both, not two: a state in a
 *	  context of its own was a second miss that prefetching did not hide.
 *	- Pages.  Past SSTATE_ARENA_SMALL bytes the blocks are 2 MB-aligned
 *	  mappings advised to be transparent huge pages (MADV_HUGEPAGE: the
 *	  hint works with transparent_hugepage "madvise" and "always", and does
 *	  nothing with "never").  With 4 kB pages nearly every row cost a TLB
 *	  miss too, which on a virtual machine is a walk of two page tables, and
 *	  growing memory cost a page fault per 4 kB.  The first blocks come from
 *	  the owner context instead: mapping and clearing a huge page takes a
 *	  few hundred microseconds, which a single-row statement must not pay.
 *
 * Chunks are never freed one by one into the arena: the capture takes all
 * of it back at once between passes (sstate_arena_reset), after resetting
 * the states' context.  That context keeps freed chunks on a free list per
 * size class for its own reuse (a state replaced at every row, as float8
 * arrays of stddev's are, reuses one chunk), and takes chunks over 8 kB
 * (hll's states) from malloc.  The mappings go back to the kernel when the
 * owner context goes (a reset callback), also on error.
 *
 * IDENTIFICATION
 *	  src/cq_memory.c
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/mman.h>

#include "lib/ilist.h"
#include "nodes/memnodes.h"
#include "utils/memutils.h"

#include "cq_memory.h"

#define ARENA_FIRST		((Size) 8 * 1024)

struct StreamStateArenaBlock
{
	StreamStateArenaBlock *next;
	Size		size;			/* this header included */
	bool		mapped;			/* else a chunk of the owner context */
};

#define BLOCK_HDR	MAXALIGN(sizeof(StreamStateArenaBlock))

/*
 * size bytes (a multiple of SSTATE_HUGE_PAGE) of fresh zeroed memory,
 * 2 MB-aligned so that all of it can be huge pages, and advised to be.
 */
char *
sstate_huge_map(Size size)
{
	Size		len = size + SSTATE_HUGE_PAGE;
	char	   *raw = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char	   *start;

	if (raw == MAP_FAILED)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("Failed on a request of size %zu for the groups of a continuous query.", size)));
	start = (char *) TYPEALIGN(SSTATE_HUGE_PAGE, raw);
	if (start > raw)
		munmap(raw, start - raw);
	if (raw + len > start + size)
		munmap(start + size, raw + len - (start + size));
#ifdef MADV_HUGEPAGE
	(void) madvise(start, size, MADV_HUGEPAGE);	/* a hint: 4 kB pages do too */
#endif
	return start;
}

static void
arena_release(void *arg)
{
	StreamStateArena *a = (StreamStateArena *) arg;
	StreamStateArenaBlock *b = a->blocks;

	while (b != NULL)
	{
		StreamStateArenaBlock *next = b->next;

		if (b->mapped)
			munmap(b, b->size);
		b = next;
	}
	a->blocks = a->cur = NULL;
	a->free = a->end = NULL;
	a->used = a->total = 0;
}

/* An empty arena, in owner and released with it */
StreamStateArena *
sstate_arena_create(MemoryContext owner)
{
	StreamStateArena *a = MemoryContextAllocZero(owner, sizeof(StreamStateArena));
	MemoryContextCallback *cb = MemoryContextAlloc(owner, sizeof(MemoryContextCallback));

	a->owner = owner;
	cb->func = arena_release;
	cb->arg = a;
	MemoryContextRegisterResetCallback(owner, cb);
	return a;
}

/* Everything handed out is free again; the blocks are kept */
void
sstate_arena_reset(StreamStateArena *a)
{
	a->cur = a->blocks;
	a->free = a->cur ? (char *) a->cur + BLOCK_HDR : NULL;
	a->end = a->cur ? (char *) a->cur + a->cur->size : NULL;
	a->used = 0;
}

/* sstate_arena_alloc when the current block is full: the next one */
void *
sstate_arena_block(StreamStateArena *a, Size size)
{
	Size		need = BLOCK_HDR + size;
	StreamStateArenaBlock *next = a->cur ? a->cur->next : a->blocks;

	if (next == NULL || next->size < need)
	{
		/* a new block after cur (a kept one too small for size goes after) */
		StreamStateArenaBlock *b;

		if (a->total + need <= SSTATE_ARENA_SMALL)
		{
			Size		bsize = Max(Max(ARENA_FIRST, a->total), need);

			b = MemoryContextAlloc(a->owner, bsize);
			b->size = bsize;
			b->mapped = false;
		}
		else
		{
			Size		bsize = TYPEALIGN(SSTATE_HUGE_PAGE, need);

			b = (StreamStateArenaBlock *) sstate_huge_map(bsize);
			b->size = bsize;
			b->mapped = true;
		}
		a->total += b->size;
		b->next = next;
		if (a->cur)
			a->cur->next = b;
		else
			a->blocks = b;
		next = b;
	}
	a->cur = next;
	a->free = (char *) next + BLOCK_HDR;
	a->end = (char *) next + next->size;
	return sstate_arena_alloc(a, size);
}

/* ---------------------------------------------------------------------
 * A memory context over an arena
 * ---------------------------------------------------------------------
 */

/*
 * The header before every chunk.  PostgreSQL finds a chunk's context in
 * the word just before it (GetMemoryChunkContext).  size is what the chunk
 * can hold (its class), or for a chunk from malloc its size with
 * CHUNK_LARGE set.
 */
typedef struct ArenaChunk
{
	Size		size;
	MemoryContext context;
} ArenaChunk;

#define CHUNK_HDR		MAXALIGN(sizeof(ArenaChunk))
#define CHUNK_LARGE		((Size) 1 << 63)
#define LARGE_LIMIT		((Size) 8192)

/* classes: 16, 32, ..., 256, then 512, 1024, ..., LARGE_LIMIT */
#define NCLASSES		(16 + 5)

typedef struct ArenaLarge
{
	dlist_node	node;
	ArenaChunk	chunk;			/* then the data */
} ArenaLarge;

StaticAssertDecl(offsetof(ArenaLarge, chunk) % MAXIMUM_ALIGNOF == 0 &&
				 sizeof(ArenaLarge) == offsetof(ArenaLarge, chunk) + CHUNK_HDR,
				 "a large chunk's data follows its header");

typedef struct ArenaContext
{
	MemoryContextData header;
	StreamStateArena *arena;
	void	   *freelist[NCLASSES];
	dlist_head	large;
	Size		nchunks;		/* in use, for is_empty */
} ArenaContext;

static inline int
size_class(Size size, Size *cap)
{
	int			cls;

	if (size <= 256)
	{
		*cap = Max(TYPEALIGN(16, size), 16);
		return (int) (*cap / 16) - 1;
	}
	*cap = 512;
	for (cls = 16; *cap < size; cls++)
		*cap <<= 1;
	return cls;
}

static inline ArenaChunk *
chunk_of(void *pointer)
{
	return (ArenaChunk *) ((char *) pointer - CHUNK_HDR);
}

static void *
arena_ctx_alloc(MemoryContext context, Size size)
{
	ArenaContext *ac = (ArenaContext *) context;
	ArenaChunk *chunk;
	Size		cap;
	int			cls;

	if (size > LARGE_LIMIT)
	{
		ArenaLarge *l = malloc(sizeof(ArenaLarge) + size);

		if (l == NULL)
			return NULL;
		l->chunk.size = size | CHUNK_LARGE;
		l->chunk.context = context;
		dlist_push_head(&ac->large, &l->node);
		context->mem_allocated += sizeof(ArenaLarge) + size;
		ac->nchunks++;
		return (char *) l + sizeof(ArenaLarge);
	}
	cls = size_class(size, &cap);
	if (ac->freelist[cls] != NULL)
	{
		void	   *p = ac->freelist[cls];

		ac->freelist[cls] = *(void **) p;
		ac->nchunks++;
		return p;
	}
	chunk = sstate_arena_alloc(ac->arena, CHUNK_HDR + cap);
	chunk->size = cap;
	chunk->context = context;
	ac->nchunks++;
	return (char *) chunk + CHUNK_HDR;
}

static void
arena_ctx_free(MemoryContext context, void *pointer)
{
	ArenaContext *ac = (ArenaContext *) context;
	ArenaChunk *chunk = chunk_of(pointer);
	Size		cap;

	ac->nchunks--;
	if (chunk->size & CHUNK_LARGE)
	{
		ArenaLarge *l = (ArenaLarge *) ((char *) chunk - offsetof(ArenaLarge, chunk));

		context->mem_allocated -= sizeof(ArenaLarge) + (chunk->size & ~CHUNK_LARGE);
		dlist_delete(&l->node);
		free(l);
		return;
	}
	{
		int			cls = size_class(chunk->size, &cap);

		*(void **) pointer = ac->freelist[cls];
		ac->freelist[cls] = pointer;
	}
}

static void *
arena_ctx_realloc(MemoryContext context, void *pointer, Size size)
{
	ArenaChunk *chunk = chunk_of(pointer);
	Size		have = chunk->size & ~CHUNK_LARGE;
	void	   *p;

	if (!(chunk->size & CHUNK_LARGE) && size <= have)
		return pointer;
	p = arena_ctx_alloc(context, size);
	if (p == NULL)
		return NULL;
	memcpy(p, pointer, Min(have, size));
	arena_ctx_free(context, pointer);
	return p;
}

static void
arena_ctx_reset(MemoryContext context)
{
	ArenaContext *ac = (ArenaContext *) context;
	dlist_mutable_iter it;

	dlist_foreach_modify(it, &ac->large)
	{
		ArenaLarge *l = dlist_container(ArenaLarge, node, it.cur);

		dlist_delete(&l->node);
		free(l);
	}
	memset(ac->freelist, 0, sizeof(ac->freelist));
	context->mem_allocated = 0;
	ac->nchunks = 0;
	/* the arena's memory comes back with sstate_arena_reset */
}

static void
arena_ctx_delete(MemoryContext context)
{
	arena_ctx_reset(context);
	free(context);
}

static Size
arena_ctx_chunk_space(MemoryContext context, void *pointer)
{
	ArenaChunk *chunk = chunk_of(pointer);

	return (chunk->size & ~CHUNK_LARGE) + CHUNK_HDR;
}

static bool
arena_ctx_is_empty(MemoryContext context)
{
	return ((ArenaContext *) context)->nchunks == 0;
}

static void
arena_ctx_stats(MemoryContext context, MemoryStatsPrintFunc printfunc, void *passthru,
				MemoryContextCounters *totals, bool print_to_stderr)
{
	ArenaContext *ac = (ArenaContext *) context;

	if (printfunc)
	{
		char		stats[200];

		snprintf(stats, sizeof(stats),
				 "%zu chunks in use, %zu bytes from malloc, the arena %zu of %zu bytes used",
				 ac->nchunks, context->mem_allocated, ac->arena->used, ac->arena->total);
		printfunc(context, passthru, stats, print_to_stderr);
	}
	if (totals)
	{
		totals->nblocks += 1;
		totals->totalspace += context->mem_allocated;
	}
}

#ifdef MEMORY_CONTEXT_CHECKING
static void
arena_ctx_check(MemoryContext context)
{
}
#endif

static const MemoryContextMethods arena_methods = {
	arena_ctx_alloc,
	arena_ctx_free,
	arena_ctx_realloc,
	arena_ctx_reset,
	arena_ctx_delete,
	arena_ctx_chunk_space,
	arena_ctx_is_empty,
	arena_ctx_stats
#ifdef MEMORY_CONTEXT_CHECKING
	,arena_ctx_check
#endif
};

/*
 * A memory context whose chunks come from arena.  Its memory_allocated
 * counts only chunks from malloc: the arena's are in arena->used.  Reset it
 * before the arena (its free lists point into the arena).
 */
MemoryContext
sstate_arena_context_create(MemoryContext parent, const char *name, StreamStateArena *arena)
{
	ArenaContext *ac = malloc(sizeof(ArenaContext));

	if (ac == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("Failed while creating memory context \"%s\".", name)));
	memset(ac, 0, sizeof(*ac));
	ac->arena = arena;
	dlist_init(&ac->large);
	MemoryContextCreate(&ac->header, T_AllocSetContext, &arena_methods, parent, name);
	return &ac->header;
}
