/*-------------------------------------------------------------------------
 *
 * cq_memory.h
 *	  The memory of a statement's capture for continuous queries in SQL: an
 *	  arena of huge pages, and a memory context over it for partial states.
 *
 * IDENTIFICATION
 *	  src/cq_memory.h
 *-------------------------------------------------------------------------
 */
#ifndef STREAM_STATE_CQ_MEMORY_H
#define STREAM_STATE_CQ_MEMORY_H

#define SSTATE_HUGE_PAGE	((Size) 2 * 1024 * 1024)
#define SSTATE_ARENA_SMALL	((Size) 1024 * 1024)

typedef struct StreamStateArenaBlock StreamStateArenaBlock;

typedef struct StreamStateArena
{
	MemoryContext owner;
	StreamStateArenaBlock *blocks;	/* oldest first */
	StreamStateArenaBlock *cur;
	char	   *free;
	char	   *end;
	Size		used;			/* bytes handed out since the last reset */
	Size		total;			/* of all blocks */
} StreamStateArena;

extern char *sstate_huge_map(Size size);
extern StreamStateArena *sstate_arena_create(MemoryContext owner);
extern void sstate_arena_reset(StreamStateArena *a);
extern void *sstate_arena_block(StreamStateArena *a, Size size);
extern MemoryContext sstate_arena_context_create(MemoryContext parent, const char *name,
												 StreamStateArena *arena);

/* size bytes (MAXALIGNed) from the arena, until its next reset */
static inline void *
sstate_arena_alloc(StreamStateArena *a, Size size)
{
	char	   *p;

	size = MAXALIGN(size);
	if (unlikely(a->free == NULL || a->free + size > a->end))
		return sstate_arena_block(a, size);
	p = a->free;
	a->free += size;
	a->used += size;
	return p;
}

/* The same at the start of a cache line (64 bytes) */
#define SSTATE_LINE			64

static inline void *
sstate_arena_alloc_line(StreamStateArena *a, Size size)
{
	size = MAXALIGN(size);
	if (likely(a->free != NULL))
	{
		char	   *p = (char *) TYPEALIGN(SSTATE_LINE, a->free);

		if (p + size <= a->end)
		{
			a->used += (p + size) - a->free;
			a->free = p + size;
			return p;
		}
	}
	return (void *) TYPEALIGN(SSTATE_LINE, sstate_arena_block(a, size + SSTATE_LINE));
}

#endif							/* STREAM_STATE_CQ_MEMORY_H */
