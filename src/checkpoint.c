/*-------------------------------------------------------------------------
 *
 * checkpoint.c
 *	  Checkpoints: the whole state of a database's queries at one applied
 *	  WAL position, written to a file, validated and loaded again.
 *
 * A checkpoint holds the state at applied position L (every commit whose
 * record starts before L is in it, none after) and the restart position R
 * (the smallest first-message LSN among transactions still open at L, and
 * of paused queries' own restart positions; L when there are none).  To
 * restore, the worker loads it, reads WAL from R and applies only commits
 * at or after L.
 *
 * File format, version 1 (native byte order; the prefix records it):
 *
 *	prefix	"SSCKPT\r\n", uint32 version, uint32 PostgreSQL major version,
 *			uint32 byte-order mark 0x01020304, uint32 sizeof(CkptQuery)
 *	blocks	uint32 type, uint32 length, uint32 CRC-32C (of type, length and
 *			payload), payload
 *		HEADER	  system identifier, database, flags, id, L, R, created_at,
 *				  number of queries
 *		QUERIES	  one CkptQuery per query: definition, status, watermark,
 *				  counters; key_flags (0 before 0.3.0) says classed keys
 *				  and, since 0.4.0, a rocksdb query, whose state is in the
 *				  RocksDB checkpoint taken with the file (rocks.c), not here
 *		LATE	  (0.7.0; any number, about 1 MB each) the late groups of
 *				  queries with late_to not yet written into their tables:
 *				  a CkptLate each, then its key image and partial states;
 *				  memory queries' only: a rocksdb query's groups are in
 *				  RocksDB with its state (rocks.c), and loaded from there
 *		ENTRIES	  (any number, about 1 MB each) per key: varint query id,
 *				  varint key length, key image, varint number of panes, then
 *				  per pane the pane (zigzag varint, later ones as a varint
 *				  delta from the previous) and its count (zigzag varint)
 *		END		  number of keys, of (key, pane) entries and of blocks
 *
 * The format stays version 1 after 0.7.0.  A native image of the memory store
 * (raw pane arrays per partition, read straight into pooled memory) was
 * measured and dropped: 5.6x the bytes, a slower checkpoint and a restore
 * only a third cheaper, because what a restore costs is the first touch of
 * the state's memory (store_memory.c, "Checkpoints and memory pages").  A
 * restore reads END's key count first (read_header_only) to size the table
 * once; that count is only a hint, bounded by the file's size, until the
 * whole file has been read and checked.
 *
 * A file that ends early, has a block whose CRC does not match, a wrong
 * version, another database or server, or anything after END is damaged:
 * the worker logs why and falls back to the previous checkpoint.
 *
 * Files go to a temporary name, are fsynced, and renamed into place with
 * durable_rename.  The worker does not stop for a checkpoint: it writes the
 * header and queries, then a scanner process (stream_state_ckpt_scanner_main)
 * appends the entries while the worker goes on applying and copies on write
 * the entries it changes before the scanner reached them (store_memory.c,
 * cow_touch); then the worker appends its copies and the END block.  If no
 * background worker slot is free, the worker copies the whole state itself
 * and writes it a few megabytes at a time between batches of WAL.
 *
 * History.  stream_state/<database oid>/history under the data directory
 * lists every checkpoint (id, location, L, R, sizes, status), newest last,
 * and the highest position the worker ever moved the slot to.  It is a
 * small text file replaced atomically; only the worker writes it.
 *
 * Target "table" (checkpoint_table.c): the file is written the same way,
 * then a helper process copies it into rows and the history entry becomes
 * target "table"; at restore, the rows are written back to a temporary file
 * first (sstate_ckpt_table_fetch) and loaded by the same code.  Retention
 * leaves table checkpoints to that helper, which deletes their rows.
 *
 * The slot.  After a checkpoint is durable the worker moves the slot's
 * restart position forward to the R of the previous valid checkpoint (of
 * the new one when stream_state.checkpoint_retain is 1), so that a damaged
 * newest checkpoint can always fall back to the one before it and still
 * find all the WAL it needs.  WAL kept for stream_state is therefore
 * bounded by about two checkpoint intervals.
 *
 * IDENTIFICATION
 *	  src/checkpoint.c
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/stat.h>
#include <unistd.h>

#include "access/xlog.h"
#include "common/file_perm.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "port/pg_crc32c.h"
#include "storage/fd.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "checkpoint.h"
#include "cq_worker.h"
#include "store.h"

#define CKPT_MAGIC			"SSCKPT\r\n"
#define CKPT_BOM			0x01020304
#define CKPT_BLOCK_TARGET	(1024 * 1024)
#define CKPT_BLOCK_MAX		(256 * 1024 * 1024)
#define HISTORY_MAX_DELETED 100

enum
{
	CKB_HEADER = 1,
	CKB_QUERIES = 2,
	CKB_ENTRIES = 3,
	CKB_END = 4,
	CKB_LAYOUTS = 5,			/* 0.5.0: the aggregates of queries in SQL */
	CKB_OPTIONS = 6,			/* 0.6.0: options of queries (CkptOptions) */
	CKB_LATE = 7				/* 0.7.0: late groups to write (CkptLate) */
};

typedef struct CkptPrefix
{
	char		magic[8];
	uint32		version;
	uint32		pg_major;
	uint32		bom;
	uint32		query_size;
} CkptPrefix;

typedef struct CkptBlockHead
{
	uint32		type;
	uint32		len;
	pg_crc32c	crc;
} CkptBlockHead;

typedef struct CkptHeader
{
	uint64		sysid;
	uint32		dboid;
	uint32		flags;
	int64		id;
	uint64		applied;
	uint64		restart;
	int64		created_at;
	uint32		nqueries;
	uint32		reserved;
} CkptHeader;

/* CkptQuery.key_flags */
#define CKQ_KEY_CLASSED		0x01	/* 0.3.0 */
#define CKQ_ROCKSDB			0x02	/* 0.4.0: the state is in RocksDB, not here */
#define CKQ_SQL				0x04	/* 0.5.0: a query in SQL; its entries hold
									 * values (length and partial states) */
#define CKQ_EMIT			0x08	/* 0.6.0: its closed windows go to a table */
#define CKQ_LATE			0x10	/* 0.7.0: its late groups go to a table */

typedef struct CkptQuery
{
	int32		id;
	int32		status;
	int32		processing_time;
	int32		key_flags;		/* CKQ_*; 0 in files written before 0.3.0 */
	int64		pane_us;
	int64		window_us;
	int64		slide_us;
	int64		lateness_us;
	char		name[NAMEDATALEN];
	uint64		paused_lsn;
	uint64		paused_restart;
	int64		max_event_us;
	int64		dead_below;
	uint64		events_applied;
	uint64		late_events;
	uint64		skipped;
} CkptQuery;

/* One record of the options block: what only some queries have */
typedef struct CkptOptions
{
	int32		id;
	int32		reserved;
	int64		retention_us;
	int64		session_gap_us;
} CkptOptions;

/* One record of a LATE block, followed by its key image and states */
typedef struct CkptLate
{
	int32		qid;
	uint32		keylen;
	uint32		valuelen;
	uint32		reserved;
	uint64		lsn;
	int64		commit_us;
	int64		from_us;
	int64		to_us;
	int64		count;
} CkptLate;

typedef struct CkptEnd
{
	uint64		nkeys;
	uint64		nentries;
	uint32		nblocks;
	uint32		reserved;
} CkptEnd;

/* A block in memory, CRC computed when written */
typedef struct CkptBlock
{
	CkptBlockHead head;
	char		data[FLEXIBLE_ARRAY_MEMBER];
} CkptBlock;

struct StreamStateCkptWriter
{
	MemoryContext cxt;
	StreamStateStore *table;	/* whose values the copies read */
	Oid			dboid;
	int64		id;
	char		path[MAXPGPATH];
	char		tmppath[MAXPGPATH];
	List	   *blocks;
	int			next_block;
	int			fd;
	XLogRecPtr	applied;
	XLogRecPtr	restart;
	TimestampTz started;
	int32		nqueries;
	int64		nkeys;
	int64		nentries;
	int64		bytes;
	StringInfoData cur;			/* ENTRIES payload being filled */
	int64		pause_ms;
	int			nblocks;		/* blocks in the file so far */
	bool		ended;			/* END block queued */
	bool		scanning;		/* the scanner processes have the file */
	int			nscanners;
	BackgroundWorkerHandle *scanner[SSTATE_SCANNERS];
	StreamStateDb *db;
};

typedef struct History
{
	XLogRecPtr	slot_advanced;	/* highest restart position set, 0: never */
	List	   *entries;		/* StreamStateCkptInfo *, oldest first */
} History;

static Oid	worker_dboid = InvalidOid;
static int64 next_id = 1;
static History worker_history;

static void history_path(Oid dboid, char *buf);
static History history_read(Oid dboid);
static void history_write(Oid dboid, History *h);

/* ---------------------------------------------------------------------
 * Places
 * ---------------------------------------------------------------------
 */

/* Where this database's checkpoint files go now. */
void
sstate_ckpt_dir(Oid dboid, char *buf)
{
	if (sstate_checkpoint_directory != NULL && sstate_checkpoint_directory[0] != '\0')
		snprintf(buf, MAXPGPATH, "%s/%u", sstate_checkpoint_directory, dboid);
	else
		snprintf(buf, MAXPGPATH, "stream_state/%u", dboid);
}

static void
history_path(Oid dboid, char *buf)
{
	snprintf(buf, MAXPGPATH, "stream_state/%u/history", dboid);
}

static bool
make_dir(const char *path, char **error)
{
	char	   *copy = pstrdup(path);

	if (pg_mkdir_p(copy, pg_dir_create_mode) != 0 && errno != EEXIST)
	{
		*error = psprintf("could not create directory \"%s\": %m", path);
		return false;
	}
	return true;
}

/* ---------------------------------------------------------------------
 * History
 * ---------------------------------------------------------------------
 */

static History
history_read(Oid dboid)
{
	History		h = {InvalidXLogRecPtr, NIL};
	char		path[MAXPGPATH];
	FILE	   *f;
	char		line[MAXPGPATH + 512];

	history_path(dboid, path);
	f = AllocateFile(path, "r");
	if (f == NULL)
		return h;
	while (fgets(line, sizeof(line), f) != NULL)
	{
		StreamStateCkptInfo *ci = palloc0(sizeof(StreamStateCkptInfo));
		uint32		ah,
					al,
					rh,
					rl;
		long long	id,
					created,
					entries,
					bytes,
					duration,
					pause;
		int			queries;
		char		target[8],
					status[12];

		if (sscanf(line, "slot_advanced %X/%X", &ah, &al) == 2)
		{
			h.slot_advanced = ((uint64) ah << 32) | al;
			continue;
		}
		/*
		 * id target created applied restart queries entries bytes
		 * duration_ms pause_ms status location
		 */
		if (sscanf(line, "%lld %7s %lld %X/%X %X/%X %d %lld %lld %lld %lld %11s ",
				   &id, target, &created, &ah, &al, &rh, &rl, &queries,
				   &entries, &bytes, &duration, &pause, status) != 13)
			continue;			/* a damaged line: the files still speak */
		{
			char	   *loc = line;
			int			fields = 0;

			/* the location is everything after the 11th separator */
			while (*loc && fields < 11)
			{
				if (*loc == ' ')
					fields++;
				loc++;
			}
			loc[strcspn(loc, "\n")] = '\0';
			strlcpy(ci->location, loc, MAXPGPATH);
		}
		ci->id = id;
		strlcpy(ci->target, target, sizeof(ci->target));
		ci->created_at = created;
		ci->applied = ((uint64) ah << 32) | al;
		ci->restart = ((uint64) rh << 32) | rl;
		ci->queries = queries;
		ci->entries = entries;
		ci->bytes = bytes;
		ci->duration_ms = duration;
		ci->pause_ms = pause;
		strlcpy(ci->status, status, sizeof(ci->status));
		h.entries = lappend(h.entries, ci);
	}
	FreeFile(f);
	return h;
}

/*
 * Replace the history file.  Failing to write it is logged, not raised:
 * the checkpoint files are what restore relies on.
 */
static void
history_write(Oid dboid, History *h)
{
	char		path[MAXPGPATH];
	char		tmp[MAXPGPATH];
	char		dir[MAXPGPATH];
	char	   *error;
	FILE	   *f;
	ListCell   *lc;
	int			ndeleted = 0;

	snprintf(dir, MAXPGPATH, "stream_state/%u", dboid);
	if (!make_dir(dir, &error))
	{
		ereport(LOG, (errmsg("stream_state: %s", error)));
		return;
	}
	history_path(dboid, path);
	snprintf(tmp, MAXPGPATH, "%s.tmp", path);

	foreach(lc, h->entries)
		if (strcmp(((StreamStateCkptInfo *) lfirst(lc))->status, "deleted") == 0)
			ndeleted++;

	f = AllocateFile(tmp, PG_BINARY_W);
	if (f == NULL)
	{
		ereport(LOG,
				(errcode_for_file_access(),
				 errmsg("stream_state: could not write checkpoint history \"%s\": %m", tmp)));
		return;
	}
	if (!XLogRecPtrIsInvalid(h->slot_advanced))
		fprintf(f, "slot_advanced %X/%X\n", LSN_FORMAT_ARGS(h->slot_advanced));
	foreach(lc, h->entries)
	{
		StreamStateCkptInfo *ci = lfirst(lc);

		/* the oldest deleted ones go first */
		if (strcmp(ci->status, "deleted") == 0 && ndeleted > HISTORY_MAX_DELETED)
		{
			ndeleted--;
			continue;
		}
		fprintf(f, "%lld %s %lld %X/%X %X/%X %d %lld %lld %lld %lld %s %s\n",
				(long long) ci->id, ci->target, (long long) ci->created_at,
				LSN_FORMAT_ARGS(ci->applied), LSN_FORMAT_ARGS(ci->restart),
				ci->queries, (long long) ci->entries, (long long) ci->bytes,
				(long long) ci->duration_ms, (long long) ci->pause_ms,
				ci->status, ci->location);
	}
	if (fflush(f) != 0 || pg_fsync(fileno(f)) != 0)
	{
		ereport(LOG,
				(errcode_for_file_access(),
				 errmsg("stream_state: could not write checkpoint history \"%s\": %m", tmp)));
		FreeFile(f);
		unlink(tmp);
		return;
	}
	FreeFile(f);
	(void) durable_rename(tmp, path, LOG);
}

/* The history of a database, oldest first (for the checkpoints view). */
List *
sstate_ckpt_history(Oid dboid)
{
	return history_read(dboid).entries;
}

/* ---------------------------------------------------------------------
 * Varints
 * ---------------------------------------------------------------------
 */

static inline void
put_uvarint(StringInfo buf, uint64 v)
{
	char		tmp[10];
	int			n = 0;

	do
	{
		uint8		b = v & 0x7F;

		v >>= 7;
		if (v)
			b |= 0x80;
		tmp[n++] = (char) b;
	} while (v);
	appendBinaryStringInfo(buf, tmp, n);
}

static inline uint64
zigzag(int64 v)
{
	return ((uint64) v << 1) ^ (uint64) (v >> 63);
}

static inline void
put_svarint(StringInfo buf, int64 v)
{
	put_uvarint(buf, zigzag(v));
}

/* put_uvarint into a buffer the caller has made room in; returns the end */
static inline char *
raw_uvarint(char *p, uint64 v)
{
	while (v >= 0x80)
	{
		*p++ = (char) (v | 0x80);
		v >>= 7;
	}
	*p++ = (char) v;
	return p;
}

static bool
get_uvarint_long(const char **p, const char *end, uint64 *v)
{
	uint64		result = 0;
	int			shift = 0;

	while (*p < end && shift < 64)
	{
		uint8		b = (uint8) *(*p)++;

		result |= (uint64) (b & 0x7F) << shift;
		if ((b & 0x80) == 0)
		{
			*v = result;
			return true;
		}
		shift += 7;
	}
	return false;
}

/*
 * Most varints of a checkpoint are one byte (pane steps, small counts): that
 * case inline, the rest out of line.  The decoding loop was a third of a
 * restore's time (perf, 10M entries, huge pages); with this, a restore of
 * them took 124-212 ms against 151-253 ms (five restarts each, alternated).
 */
static inline bool
get_uvarint(const char **p, const char *end, uint64 *v)
{
	if (likely(*p < end) && likely((uint8) **p < 0x80))
	{
		*v = (uint8) *(*p)++;
		return true;
	}
	return get_uvarint_long(p, end, v);
}

static inline bool
get_svarint(const char **p, const char *end, int64 *v)
{
	uint64		u;

	if (!get_uvarint(p, end, &u))
		return false;
	*v = (int64) (u >> 1) ^ -(int64) (u & 1);
	return true;
}

/* ---------------------------------------------------------------------
 * Writing
 * ---------------------------------------------------------------------
 */

/* Files a crash left half written: *.tmp */
static void
remove_temp_files(const char *dir)
{
	DIR		   *d = AllocateDir(dir);
	struct dirent *de;

	if (d == NULL)
		return;
	while ((de = ReadDirExtended(d, dir, LOG)) != NULL)
	{
		size_t		len = strlen(de->d_name);
		char		path[MAXPGPATH];

		if (len < 4 || strcmp(de->d_name + len - 4, ".tmp") != 0)
			continue;
		snprintf(path, MAXPGPATH, "%s/%s", dir, de->d_name);
		if (unlink(path) != 0)
			ereport(LOG,
					(errcode_for_file_access(),
					 errmsg("stream_state: could not remove \"%s\": %m", path)));
	}
	FreeDir(d);
}

/*
 * Read just the header of a checkpoint file (the prefix and first block),
 * its size, and the entry count of its END block (-1 if unreadable).
 */
/*
 * The header of checkpoint file path, its size, and the numbers of entries
 * and keys its END block counts (-1 if it has none).  Checks nothing else:
 * the counts are only hints until the file is read through.
 */
static bool
read_header_only(const char *path, CkptHeader *hdr, int64 *bytes, int64 *entries,
				 int64 *keys)
{
	int			fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	CkptPrefix	prefix;
	CkptBlockHead head;
	CkptEnd		endb;
	struct stat st;
	bool		ok;

	if (fd < 0)
		return false;
	ok = read(fd, &prefix, sizeof(prefix)) == sizeof(prefix) &&
		memcmp(prefix.magic, CKPT_MAGIC, 8) == 0 &&
		prefix.version == STREAM_STATE_CKPT_VERSION &&
		read(fd, &head, sizeof(head)) == sizeof(head) &&
		head.type == CKB_HEADER && head.len == sizeof(CkptHeader) &&
		read(fd, hdr, sizeof(CkptHeader)) == sizeof(CkptHeader) &&
		fstat(fd, &st) == 0;
	*bytes = ok ? (int64) st.st_size : 0;
	*entries = -1;
	*keys = -1;
	if (ok && st.st_size > (off_t) (sizeof(CkptBlockHead) + sizeof(CkptEnd)) &&
		pread(fd, &head, sizeof(head), st.st_size - sizeof(head) - sizeof(endb)) == sizeof(head) &&
		head.type == CKB_END &&
		pread(fd, &endb, sizeof(endb), st.st_size - sizeof(endb)) == sizeof(endb))
	{
		*entries = (int64) endb.nentries;
		*keys = (int64) endb.nkeys;
	}
	CloseTransientFile(fd);
	return ok;
}

static int
ckpt_info_cmp(const ListCell *a, const ListCell *b)
{
	int64		ia = ((StreamStateCkptInfo *) lfirst(a))->id;
	int64		ib = ((StreamStateCkptInfo *) lfirst(b))->id;

	return (ia > ib) - (ia < ib);
}

/*
 * Checkpoint files the history does not list (it was lost, or is older
 * than the file) join it, from their own headers, so a lost history never
 * costs a usable checkpoint.  Their contents are checked when loaded.
 */
static void
adopt_unlisted_files(Oid dboid, const char *dir)
{
	DIR		   *d = AllocateDir(dir);
	struct dirent *de;
	bool		added = false;

	if (d == NULL)
		return;
	while ((de = ReadDirExtended(d, dir, LOG)) != NULL)
	{
		char		path[MAXPGPATH];
		char	   *end;
		long long	id = strtoll(de->d_name, &end, 10);
		CkptHeader	hdr;
		StreamStateCkptInfo *ci;
		bool		listed = false;
		ListCell   *lc;
		int64		bytes;
		int64		entries;
		int64		keys;

		if (id <= 0 || strcmp(end, ".ckpt") != 0)
			continue;
		foreach(lc, worker_history.entries)
			if (((StreamStateCkptInfo *) lfirst(lc))->id == id)
				listed = true;
		if (listed)
			continue;
		snprintf(path, MAXPGPATH, "%s/%s", dir, de->d_name);
		if (!read_header_only(path, &hdr, &bytes, &entries, &keys) || hdr.id != id ||
			hdr.dboid != dboid)
			continue;			/* not ours, or unreadable: leave it */
		ci = palloc0(sizeof(StreamStateCkptInfo));
		ci->id = id;
		strlcpy(ci->target, "file", sizeof(ci->target));
		if (is_absolute_path(path))
			strlcpy(ci->location, path, MAXPGPATH);
		else
			snprintf(ci->location, MAXPGPATH, "%s/%s", DataDir, path);
		ci->created_at = hdr.created_at;
		ci->applied = hdr.applied;
		ci->restart = hdr.restart;
		ci->queries = hdr.nqueries;
		ci->bytes = bytes;
		ci->entries = entries;
		strlcpy(ci->status, "valid", sizeof(ci->status));
		worker_history.entries = lappend(worker_history.entries, ci);
		added = true;
		ereport(LOG,
				(errmsg("stream_state: checkpoint %lld of database %u was not in its history; it is added from its file",
						id, dboid)));
	}
	FreeDir(d);
	if (added)
	{
		list_sort(worker_history.entries, ckpt_info_cmp);

		/* its slot was moved by checkpoints at least as old as these */
		if (XLogRecPtrIsInvalid(worker_history.slot_advanced))
			worker_history.slot_advanced = 1;
		history_write(dboid, &worker_history);
	}
}

/* Called once at worker start: directories, history, the next id. */
void
sstate_ckpt_worker_init(Oid dboid)
{
	char		dir[MAXPGPATH];
	char	   *error;
	ListCell   *lc;
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

	worker_dboid = dboid;
	snprintf(dir, MAXPGPATH, "stream_state/%u", dboid);
	if (!make_dir(dir, &error))
		ereport(LOG, (errmsg("stream_state: %s", error)));
	remove_temp_files(dir);
	sstate_ckpt_dir(dboid, dir);
	remove_temp_files(dir);
	worker_history = history_read(dboid);
	adopt_unlisted_files(dboid, dir);
	next_id = 1;
	foreach(lc, worker_history.entries)
	{
		StreamStateCkptInfo *ci = lfirst(lc);

		if (ci->id >= next_id)
			next_id = ci->id + 1;
	}
	MemoryContextSwitchTo(old);
}

/* A query's record in the QUERIES block. */
static void
query_record(const StreamStateQuery *q, CkptQuery *cq)
{
	memset(cq, 0, sizeof(*cq));
	cq->id = q->def.id;
	cq->status = (int32) q->status;
	cq->processing_time = q->def.processing_time ? 1 : 0;
	cq->key_flags = (q->def.key_classed ? CKQ_KEY_CLASSED : 0) |
		(q->def.backend == SSB_ROCKSDB ? CKQ_ROCKSDB : 0) |
		(q->def.sql ? CKQ_SQL : 0) |
		(q->def.emit ? CKQ_EMIT : 0) |
		(q->def.late ? CKQ_LATE : 0);
	cq->pane_us = q->def.pane_us;
	cq->window_us = q->def.window_us;
	cq->slide_us = q->def.slide_us;
	cq->lateness_us = q->def.lateness_us;
	strlcpy(cq->name, q->def.name, NAMEDATALEN);
	cq->paused_lsn = q->paused_lsn;
	cq->paused_restart = q->paused_restart;
	cq->max_event_us = q->max_event_us;
	cq->dead_below = q->dead_below;
	cq->events_applied = q->events_applied;
	cq->late_events = q->late_events;
	cq->skipped = q->skipped;
}

/* The prefix every checkpoint file starts with. */
static void
file_prefix(CkptPrefix *prefix)
{
	memset(prefix, 0, sizeof(*prefix));
	memcpy(prefix->magic, CKPT_MAGIC, 8);
	prefix->version = STREAM_STATE_CKPT_VERSION;
	prefix->pg_major = PG_VERSION_NUM / 100;
	prefix->bom = CKPT_BOM;
	prefix->query_size = sizeof(CkptQuery);
}

static CkptBlock *
block_make(MemoryContext cxt, uint32 type, const char *data, uint32 len)
{
	CkptBlock  *b = MemoryContextAlloc(cxt, offsetof(CkptBlock, data) + len);

	b->head.type = type;
	b->head.len = len;
	if (len > 0)
		memcpy(b->data, data, len);
	return b;
}

/* The late groups of queries with late_to, into LATE blocks of about 1 MB */
typedef struct LateBlocks
{
	StringInfo	buf;
	List	   *blocks;
	MemoryContext cxt;
	StreamStateQuery *qs;		/* the database's queries */
	int			nqs;
} LateBlocks;

/* Is qid a rocksdb query of qs[0..nqs)?  Its late groups are in RocksDB. */
static bool
late_in_rocksdb(const StreamStateQuery *qs, int nqs, int32 qid)
{
	for (int i = 0; i < nqs; i++)
		if (qs[i].status != SSQ_FREE && qs[i].def.id == qid)
			return qs[i].def.backend == SSB_ROCKSDB;
	return false;
}

static void
late_block_cb(void *arg, int32 qid, const StreamStateLateGroup *g)
{
	LateBlocks *lb = arg;
	CkptLate	rec;

	if (late_in_rocksdb(lb->qs, lb->nqs, qid))
		return;

	memset(&rec, 0, sizeof(rec));
	rec.qid = qid;
	rec.keylen = g->keylen;
	rec.valuelen = g->valuelen;
	rec.lsn = g->lsn;
	rec.commit_us = g->commit_us;
	rec.from_us = g->from_us;
	rec.to_us = g->to_us;
	rec.count = g->count;
	appendBinaryStringInfo(lb->buf, (char *) &rec, sizeof(rec));
	appendBinaryStringInfo(lb->buf, g->key, g->keylen);
	appendBinaryStringInfo(lb->buf, g->value, g->valuelen);
	if (lb->buf->len >= CKPT_BLOCK_TARGET)
	{
		lb->blocks = lappend(lb->blocks, block_make(lb->cxt, CKB_LATE, lb->buf->data, lb->buf->len));
		resetStringInfo(lb->buf);
	}
}

/* Parse a LATE block, calling cb->late for every group */
static bool
scan_late(const StreamStateCkptScan *cb, void *arg, const char *data, uint32 len, char **why)
{
	const char *p = data;
	const char *end = data + len;

	while (p < end)
	{
		CkptLate	rec;
		StreamStateLateGroup g;

		if (end - p < (ptrdiff_t) sizeof(rec))
			break;
		memcpy(&rec, p, sizeof(rec));
		p += sizeof(rec);
		if ((uint64) rec.keylen + rec.valuelen > (uint64) (end - p) || rec.qid <= 0)
		{
			p = NULL;
			break;
		}
		g.lsn = rec.lsn;
		g.commit_us = rec.commit_us;
		g.from_us = rec.from_us;
		g.to_us = rec.to_us;
		g.count = rec.count;
		g.key = p;
		g.keylen = rec.keylen;
		g.value = p + rec.keylen;
		g.valuelen = rec.valuelen;
		p += rec.keylen + rec.valuelen;
		if (cb->late != NULL && !cb->late(arg, rec.qid, &g, why))
			return false;
	}
	if (p != end)
	{
		*why = pstrdup("its block of late groups is malformed");
		return false;
	}
	return true;
}

static void
writer_flush_entries(StreamStateCkptWriter *w)
{
	if (w->cur.len == 0)
		return;
	w->blocks = lappend(w->blocks,
						block_make(w->cxt, CKB_ENTRIES, w->cur.data, w->cur.len));
	resetStringInfo(&w->cur);
}

/* One key in the ENTRIES format (see the file header). */
/*
 * The value of a pane of a query in SQL: read from the store (a pane's
 * count refers to it there), or decoded from a checkpoint (the count points
 * to a chunk of uint32 length and bytes, decoded_value).
 */
static const char *
decoded_value(int64 ref, uint32 *len)
{
	const char *p = (const char *) (uintptr_t) ref;

	memcpy(len, p, sizeof(uint32));
	return p + sizeof(uint32);
}

/* The value of an entry a scan's key callback gets (a query in SQL's pane) */
const char *
sstate_ckpt_entry_value(int64 ref, uint32 *len)
{
	return decoded_value(ref, len);
}

static void
encode_key(StringInfo buf, int32 qid, const char *key, uint32 keylen,
		   const StreamStatePane *panes, int npanes, StreamStateStore *values,
		   bool decoded)
{
	/* at most 10 bytes a varint: room for all of them, then raw stores */
	char	   *p;

	if (values != NULL || decoded)
	{
		/* a query in SQL: per pane its value, length first */
		enlargeStringInfo(buf, (int) (30 + keylen));
		p = buf->data + buf->len;
		p = raw_uvarint(p, (uint64) (uint32) qid);
		p = raw_uvarint(p, keylen);
		memcpy(p, key, keylen);
		p += keylen;
		p = raw_uvarint(p, (uint64) npanes);
		buf->len = p - buf->data;
		for (int i = 0; i < npanes; i++)
		{
			uint32		len;
			const char *v = decoded ? decoded_value(panes[i].count, &len) :
				sstate_store_value(values, panes[i].count, &len);

			enlargeStringInfo(buf, 30 + len);
			p = buf->data + buf->len;
			if (i == 0)
				p = raw_uvarint(p, zigzag(panes[0].pane));
			else
				p = raw_uvarint(p, (uint64) (panes[i].pane - panes[i - 1].pane));
			p = raw_uvarint(p, len);
			memcpy(p, v, len);
			p += len;
			buf->len = p - buf->data;
		}
		buf->data[buf->len] = '\0';
		return;
	}
	enlargeStringInfo(buf, (int) (30 + keylen + (Size) npanes * 20));
	p = buf->data + buf->len;
	p = raw_uvarint(p, (uint64) (uint32) qid);
	p = raw_uvarint(p, keylen);
	memcpy(p, key, keylen);
	p += keylen;
	p = raw_uvarint(p, (uint64) npanes);
	for (int i = 0; i < npanes; i++)
	{
		if (i == 0)
			p = raw_uvarint(p, zigzag(panes[0].pane));
		else
			p = raw_uvarint(p, (uint64) (panes[i].pane - panes[i - 1].pane));
		p = raw_uvarint(p, zigzag(panes[i].count));
	}
	buf->len = p - buf->data;
	buf->data[buf->len] = '\0';
}

static void
copy_key_cb(void *arg, int32 qid, const char *key, uint32 keylen,
			const StreamStatePane *panes, int npanes)
{
	StreamStateCkptWriter *w = arg;

	encode_key(&w->cur, qid, key, keylen, panes, npanes,
			   sstate_store_is_values(w->table, qid) ? w->table : NULL, false);
	w->nkeys++;
	w->nentries += npanes;
	if (w->cur.len >= CKPT_BLOCK_TARGET)
	{
		MemoryContext old = MemoryContextSwitchTo(w->cxt);

		writer_flush_entries(w);
		MemoryContextSwitchTo(old);
	}
}

/* forward: writing helpers below */
static bool write_all(int fd, const void *data, Size len);
static bool write_blocks(StreamStateCkptWriter *w, Size budget, Size *written);

static uint32 snapshot_epoch = 0;

/*
 * Create the temporary file and write the prefix, header and queries into
 * it.  On failure the file is left for sstate_ckpt_continue to report
 * (w->fd stays -1).
 */
static bool
writer_open(StreamStateCkptWriter *w)
{
	char		dir[MAXPGPATH];
	char	   *err;
	CkptPrefix	prefix;
	Size		written = 0;

	sstate_ckpt_dir(w->dboid, dir);
	if (!make_dir(dir, &err))
		return false;
	w->fd = OpenTransientFile(w->tmppath, O_CREAT | O_TRUNC | O_WRONLY | PG_BINARY);
	if (w->fd < 0)
		return false;
	file_prefix(&prefix);
	if (!write_all(w->fd, &prefix, sizeof(prefix)))
		goto fail;
	w->bytes = sizeof(prefix);
	if (!write_blocks(w, SIZE_MAX, &written))
		goto fail;
	return true;

fail:
	CloseTransientFile(w->fd);
	w->fd = -1;
	unlink(w->tmppath);
	return false;
}

/*
 * Hand the file to up to SSTATE_SCANNERS scanner processes for epoch
 * snapshot_epoch + 1, each with its share of the partitions, and start
 * copying on write.  Two scanners on two cores take half the time of one:
 * a scanner is bound by a cache miss per key and by encoding, not by the
 * disk (the blocks' writeback starts as they are written).  False (nothing
 * started) if no process slot is free.
 */
static bool
start_scanner(StreamStateCkptWriter *w)
{
	StreamStateDb *db = w->db;
	int			n;

	/* the scanners append to the file; the worker takes it back after */
	if (CloseTransientFile(w->fd) != 0)
	{
		w->fd = -1;
		return false;
	}
	w->fd = -1;

	snapshot_epoch++;
	SpinLockAcquire(&db->mutex);
	db->scan_count = 0;			/* the scanners wait until it is set */
	db->scan_epoch = snapshot_epoch;
	strlcpy(db->scan_path, w->tmppath, MAXPGPATH);
	for (int i = 0; i < SSTATE_SCANNERS; i++)
	{
		db->scan_done[i] = false;
		db->scan_nblocks[i] = 0;
		db->scan_nkeys[i] = 0;
		db->scan_nentries[i] = 0;
		db->scan_bytes[i] = 0;
	}
	db->scan_error[0] = '\0';
	SpinLockRelease(&db->mutex);

	for (n = 0; n < SSTATE_SCANNERS; n++)
	{
		BackgroundWorker bgw;

		sstate_bgworker_for_db(&bgw, db->dboid, "stream_state_ckpt_scanner_main",
							   "checkpoint scanner");
		memcpy(bgw.bgw_extra, &n, sizeof(int));
		if (!RegisterDynamicBackgroundWorker(&bgw, &w->scanner[n]))
			break;
	}
	SpinLockAcquire(&db->mutex);
	db->scan_count = n;
	SpinLockRelease(&db->mutex);
	w->nscanners = n;
	if (n == 0)
	{
		/* take the file back and copy synchronously */
		w->fd = OpenTransientFile(w->tmppath, O_WRONLY | O_APPEND | PG_BINARY);
		return false;
	}
	sstate_store_cow_begin(snapshot_epoch, copy_key_cb, w);
	w->scanning = true;
	return true;
}

/*
 * Copy the state of every query into a new checkpoint, at applied position
 * applied with restart position restart.  This is the part that stops the
 * worker; the writing is done by sstate_ckpt_continue.
 */
StreamStateCkptWriter *
sstate_ckpt_begin(StreamStateDb *db, StreamStateStore *table, XLogRecPtr applied,
				  XLogRecPtr restart, uint32 flags)
{
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext, "stream_state checkpoint",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	StreamStateCkptWriter *w = palloc0(sizeof(StreamStateCkptWriter));
	StreamStateQuery *qs = sstate_db_queries(db);
	StringInfoData qbuf;
	CkptHeader	hdr;
	char		dir[MAXPGPATH];
	int			i;

	w->cxt = cxt;
	w->dboid = db->dboid;
	w->id = next_id++;
	w->fd = -1;
	w->applied = applied;
	w->restart = restart;
	w->started = GetCurrentTimestamp();
	sstate_ckpt_dir(db->dboid, dir);
	snprintf(w->path, MAXPGPATH, "%s/%lld.ckpt", dir, (long long) w->id);
	snprintf(w->tmppath, MAXPGPATH, "%s/%lld.ckpt.tmp", dir, (long long) w->id);

	initStringInfo(&qbuf);
	for (i = 0; i < sstate_shared->max_queries; i++)
	{
		CkptQuery	cq;

		if (qs[i].status == SSQ_FREE)
			continue;
		query_record(&qs[i], &cq);
		appendBinaryStringInfo(&qbuf, (char *) &cq, sizeof(cq));
		w->nqueries++;
	}

	memset(&hdr, 0, sizeof(hdr));
	hdr.sysid = GetSystemIdentifier();
	hdr.dboid = db->dboid;
	hdr.flags = flags;
	hdr.id = w->id;
	hdr.applied = applied;
	hdr.restart = restart;
	hdr.created_at = w->started;
	hdr.nqueries = w->nqueries;
	w->blocks = list_make1(block_make(cxt, CKB_HEADER, (char *) &hdr, sizeof(hdr)));
	w->blocks = lappend(w->blocks, block_make(cxt, CKB_QUERIES, qbuf.data, qbuf.len));
	resetStringInfo(&qbuf);
	for (i = 0; i < sstate_shared->max_queries; i++)
	{
		CqLayout   *l;
		int32		rec[2];

		if (qs[i].status == SSQ_FREE || !qs[i].def.sql ||
			(l = sstate_cq_layout_get(qs[i].def.id)) == NULL)
			continue;
		rec[0] = qs[i].def.id;
		rec[1] = l->naggs;
		appendBinaryStringInfo(&qbuf, (char *) rec, sizeof(rec));
		appendBinaryStringInfo(&qbuf, (char *) l->aggs, sizeof(StreamStateCqWorkerAgg) * l->naggs);
	}
	if (qbuf.len > 0)
		w->blocks = lappend(w->blocks, block_make(cxt, CKB_LAYOUTS, qbuf.data, qbuf.len));
	resetStringInfo(&qbuf);
	for (i = 0; i < sstate_shared->max_queries; i++)
	{
		CkptOptions o;

		if (qs[i].status == SSQ_FREE ||
			(qs[i].def.retention_us <= 0 && qs[i].def.session_gap_us <= 0))
			continue;
		memset(&o, 0, sizeof(o));
		o.id = qs[i].def.id;
		o.retention_us = qs[i].def.retention_us;
		o.session_gap_us = qs[i].def.session_gap_us;
		appendBinaryStringInfo(&qbuf, (char *) &o, sizeof(o));
	}
	if (qbuf.len > 0)
		w->blocks = lappend(w->blocks, block_make(cxt, CKB_OPTIONS, qbuf.data, qbuf.len));
	resetStringInfo(&qbuf);
	{
		LateBlocks	lb = {&qbuf, NIL, cxt, qs, sstate_shared->max_queries};

		sstate_store_late_scan(table, 0, InvalidXLogRecPtr, PG_UINT64_MAX, late_block_cb, &lb);
		if (qbuf.len > 0)
			lb.blocks = lappend(lb.blocks, block_make(cxt, CKB_LATE, qbuf.data, qbuf.len));
		w->blocks = list_concat(w->blocks, lb.blocks);
	}
	w->table = table;

	initStringInfo(&w->cur);
	enlargeStringInfo(&w->cur, CKPT_BLOCK_TARGET + 1024);
	MemoryContextSwitchTo(old);
	w->db = db;

	/*
	 * The prefix, header and queries go to the file now.  Then, if a
	 * scanner process can be started, it appends the entries while this
	 * worker goes on applying and copies only what it is about to change
	 * (copy-on-write); else the worker copies everything itself, now.
	 */
	if (writer_open(w) && start_scanner(w))
	{
		w->pause_ms = TimestampDifferenceMilliseconds(w->started, GetCurrentTimestamp());
		return w;
	}
	sstate_store_scan(table, 0, copy_key_cb, w);
	MemoryContextSwitchTo(cxt);
	writer_flush_entries(w);
	MemoryContextSwitchTo(old);
	w->pause_ms = TimestampDifferenceMilliseconds(w->started, GetCurrentTimestamp());
	return w;
}

static bool
write_all(int fd, const void *data, Size len)
{
	const char *p = data;

	while (len > 0)
	{
		ssize_t		n = write(fd, p, len);

		if (n <= 0)
		{
			if (n == 0)
				errno = ENOSPC;
			return false;
		}
		p += n;
		len -= n;
	}
	return true;
}

/* Write the pending blocks of w, up to budget bytes. */
static bool
write_blocks(StreamStateCkptWriter *w, Size budget, Size *written)
{
	while (w->next_block < list_length(w->blocks) && *written < budget)
	{
		CkptBlock  *b = list_nth(w->blocks, w->next_block);

		INIT_CRC32C(b->head.crc);
		COMP_CRC32C(b->head.crc, &b->head.type, sizeof(uint32) * 2);
		COMP_CRC32C(b->head.crc, b->data, b->head.len);
		FIN_CRC32C(b->head.crc);
		if (!write_all(w->fd, &b->head, sizeof(CkptBlockHead)) ||
			!write_all(w->fd, b->data, b->head.len))
			return false;
		*written += sizeof(CkptBlockHead) + b->head.len;
		w->bytes += sizeof(CkptBlockHead) + b->head.len;
		w->nblocks++;
		w->next_block++;
		pfree(b);
		list_nth_cell(w->blocks, w->next_block - 1)->ptr_value = NULL;
	}
	return true;
}

static void
writer_fail(StreamStateCkptWriter *w, char **error, const char *msg)
{
	*error = MemoryContextStrdup(TopMemoryContext, msg);
	if (w->fd >= 0)
		CloseTransientFile(w->fd);
	w->fd = -1;
	unlink(w->tmppath);
}

/*
 * Write up to budget bytes of checkpoint w.  Returns true when done: *id is
 * the new checkpoint's id, or 0 with *error set (a palloc'd message in
 * TopMemoryContext).  Frees w when done.
 */
bool
sstate_ckpt_continue(StreamStateCkptWriter *w, Size budget, int64 *id, char **error)
{
	Size		written = 0;
	StreamStateCkptInfo *ci;
	MemoryContext old;

	*id = 0;
	*error = NULL;

	if (w->scanning)
	{
		StreamStateDb *db = w->db;
		bool		done = true;
		bool		stopped = false;
		char		scan_error[256];
		int64		scan_nkeys = 0;

		for (int i = 0; i < w->nscanners; i++)
		{
			pid_t		pid;
			bool		d;

			SpinLockAcquire(&db->mutex);
			d = db->scan_done[i];
			SpinLockRelease(&db->mutex);
			if (d)
				continue;
			if (GetBackgroundWorkerPid(w->scanner[i], &pid) != BGWH_STOPPED)
				return false;
			/* it may have finished between the two looks */
			SpinLockAcquire(&db->mutex);
			d = db->scan_done[i];
			SpinLockRelease(&db->mutex);
			if (!d)
			{
				done = false;
				stopped = true;
			}
		}
		if (!done && stopped)
		{
			for (int i = 0; i < w->nscanners; i++)
				TerminateBackgroundWorker(w->scanner[i]);
			sstate_store_cow_end();
			w->scanning = false;
			writer_fail(w, error, "a checkpoint scanner process stopped before it finished");
			goto done;
		}
		sstate_store_cow_end();
		w->scanning = false;
		SpinLockAcquire(&db->mutex);
		strlcpy(scan_error, db->scan_error, sizeof(scan_error));
		for (int i = 0; i < w->nscanners; i++)
		{
			scan_nkeys += db->scan_nkeys[i];
			w->nkeys += db->scan_nkeys[i];
			w->nentries += db->scan_nentries[i];
			w->nblocks += db->scan_nblocks[i];
			w->bytes += db->scan_bytes[i];
		}
		SpinLockRelease(&db->mutex);
		if (scan_error[0] != '\0')
		{
			writer_fail(w, error, scan_error);
			goto done;
		}
		ereport(DEBUG1,
				(errmsg_plural("stream_state: checkpoint %lld: %d scanner copied %lld keys, the worker %lld on write",
							   "stream_state: checkpoint %lld: %d scanners copied %lld keys, the worker %lld on write",
							   w->nscanners,
							   (long long) w->id, w->nscanners, (long long) scan_nkeys,
							   (long long) (w->nkeys - scan_nkeys))));
		{
			MemoryContext o = MemoryContextSwitchTo(w->cxt);

			writer_flush_entries(w);
			MemoryContextSwitchTo(o);
		}
		w->fd = OpenTransientFile(w->tmppath, O_WRONLY | O_APPEND | PG_BINARY);
	}

	if (w->fd < 0)
	{
		writer_fail(w, error, psprintf("could not write file \"%s\": %m", w->tmppath));
		goto done;
	}

	if (!write_blocks(w, budget, &written))
	{
		writer_fail(w, error, psprintf("could not write file \"%s\": %m", w->tmppath));
		goto done;
	}
	if (w->next_block < list_length(w->blocks))
		return false;
	if (!w->ended)
	{
		CkptEnd		end;
		CkptBlock  *b;

		memset(&end, 0, sizeof(end));
		end.nkeys = w->nkeys;
		end.nentries = w->nentries;
		end.nblocks = w->nblocks + 1;
		b = block_make(w->cxt, CKB_END, (char *) &end, sizeof(end));
		w->blocks = lappend(w->blocks, b);
		w->ended = true;
		if (!write_blocks(w, SIZE_MAX, &written))
		{
			writer_fail(w, error, psprintf("could not write file \"%s\": %m", w->tmppath));
			goto done;
		}
	}

	if (pg_fsync(w->fd) != 0)
	{
		writer_fail(w, error, psprintf("could not fsync file \"%s\": %m", w->tmppath));
		goto done;
	}
	if (CloseTransientFile(w->fd) != 0)
	{
		w->fd = -1;
		writer_fail(w, error, psprintf("could not close file \"%s\": %m", w->tmppath));
		goto done;
	}
	w->fd = -1;
	if (durable_rename(w->tmppath, w->path, LOG) != 0)
	{
		writer_fail(w, error, psprintf("could not rename \"%s\" to \"%s\"", w->tmppath, w->path));
		goto done;
	}

	old = MemoryContextSwitchTo(TopMemoryContext);
	ci = palloc0(sizeof(StreamStateCkptInfo));
	ci->id = w->id;
	strlcpy(ci->target, "file", sizeof(ci->target));
	if (is_absolute_path(w->path))
		strlcpy(ci->location, w->path, MAXPGPATH);
	else
		snprintf(ci->location, MAXPGPATH, "%s/%s", DataDir, w->path);
	ci->created_at = w->started;
	ci->applied = w->applied;
	ci->restart = w->restart;
	ci->queries = w->nqueries;
	ci->entries = w->nentries;
	ci->bytes = w->bytes;
	ci->duration_ms = TimestampDifferenceMilliseconds(w->started, GetCurrentTimestamp());
	ci->pause_ms = w->pause_ms;
	strlcpy(ci->status, "valid", sizeof(ci->status));
	worker_history.entries = lappend(worker_history.entries, ci);
	MemoryContextSwitchTo(old);
	history_write(w->dboid, &worker_history);
	*id = w->id;

done:
	MemoryContextDelete(w->cxt);
	return true;
}

/* Is a scanner process still copying for checkpoint w? */
bool
sstate_ckpt_scanning(StreamStateCkptWriter *w)
{
	return w->scanning;
}

/* Give up a checkpoint being written (the worker is exiting). */
void
sstate_ckpt_abandon(StreamStateCkptWriter *w)
{
	if (w->scanning)
	{
		sstate_store_cow_end();
		for (int i = 0; i < w->nscanners; i++)
			TerminateBackgroundWorker(w->scanner[i]);
		w->scanning = false;
	}
	if (w->fd >= 0)
		CloseTransientFile(w->fd);
	unlink(w->tmppath);
	MemoryContextDelete(w->cxt);
}

/*
 * Where the slot may move once the checkpoint with restart position
 * newest_restart is durable: the restart position of the previous valid
 * checkpoint, so one damaged checkpoint can always fall back to the one
 * before it (the new one's own when only one is retained).
 */
XLogRecPtr
sstate_ckpt_slot_target(XLogRecPtr newest_restart)
{
	int			seen = 0;
	XLogRecPtr	result = newest_restart;

	if (sstate_checkpoint_retain < 2)
		return newest_restart;
	/* newest last: walk backwards to the second newest valid one */
	for (int i = list_length(worker_history.entries) - 1; i >= 0; i--)
	{
		StreamStateCkptInfo *ci = list_nth(worker_history.entries, i);

		if (strcmp(ci->status, "valid") != 0)
			continue;
		if (++seen == 2)
		{
			result = Min(ci->restart, newest_restart);
			break;
		}
	}
	return result;
}

/*
 * The checkpoints retention keeps once the slot is at slot_restart: the
 * newest stream_state.checkpoint_retain valid ones, and the one whose WAL
 * the slot keeps for a fallback.  Entries of the worker's history.
 */
List *
sstate_ckpt_retained(XLogRecPtr slot_restart)
{
	List	   *kept = NIL;

	for (int i = list_length(worker_history.entries) - 1; i >= 0; i--)
	{
		StreamStateCkptInfo *ci = list_nth(worker_history.entries, i);

		if (strcmp(ci->status, "valid") == 0 &&
			(list_length(kept) < sstate_checkpoint_retain || ci->restart == slot_restart))
			kept = lappend(kept, ci);
	}
	return kept;
}

/*
 * Record that the slot moved to slot_restart, and delete checkpoints
 * beyond the newest stream_state.checkpoint_retain valid ones, but never
 * one whose WAL the slot still keeps for a fallback.  Checkpoints in the
 * table are left to the table helper, which deletes their rows and marks
 * them (checkpoint_table.c).
 */
void
sstate_ckpt_retain(XLogRecPtr slot_restart)
{
	List	   *kept = sstate_ckpt_retained(slot_restart);
	bool		changed = false;

	if (slot_restart > worker_history.slot_advanced)
	{
		worker_history.slot_advanced = slot_restart;
		changed = true;
	}
	for (int i = list_length(worker_history.entries) - 1; i >= 0; i--)
	{
		StreamStateCkptInfo *ci = list_nth(worker_history.entries, i);

		if (strcmp(ci->status, "deleted") == 0 || list_member_ptr(kept, ci) ||
			strcmp(ci->target, "table") == 0)
			continue;
		if (unlink(ci->location) != 0 && errno != ENOENT)
		{
			ereport(LOG,
					(errcode_for_file_access(),
					 errmsg("stream_state: could not remove checkpoint file \"%s\": %m",
							ci->location)));
			continue;
		}
		strlcpy(ci->status, "deleted", sizeof(ci->status));
		changed = true;
	}
	list_free(kept);
	if (changed)
		history_write(worker_dboid, &worker_history);
}

/*
 * The worker's history, oldest first, for checkpoint_table.c: it may change
 * an entry's target, location and status, then calls
 * sstate_ckpt_history_save.
 */
List *
sstate_ckpt_worker_entries(void)
{
	return worker_history.entries;
}

void
sstate_ckpt_history_save(void)
{
	history_write(worker_dboid, &worker_history);
}

/* The id of the checkpoint w writes. */
int64
sstate_ckpt_writer_id(StreamStateCkptWriter *w)
{
	return w->id;
}

/* The extension or the database is gone: remove every checkpoint. */
void
sstate_ckpt_remove_all(Oid dboid)
{
	char		dir[MAXPGPATH];
	History		h = history_read(dboid);
	ListCell   *lc;
	struct stat st;

	foreach(lc, h.entries)
	{
		StreamStateCkptInfo *ci = lfirst(lc);

		if (strcmp(ci->status, "deleted") != 0 && strcmp(ci->target, "file") == 0)
			(void) unlink(ci->location);
	}
	sstate_ckpt_dir(dboid, dir);
	if (stat(dir, &st) == 0 && !rmtree(dir, true))
		ereport(LOG,
				(errmsg("stream_state: could not remove directory \"%s\"", dir)));
	snprintf(dir, MAXPGPATH, "stream_state/%u", dboid);
	if (stat(dir, &st) == 0 && !rmtree(dir, true))
		ereport(LOG,
				(errmsg("stream_state: could not remove directory \"%s\"", dir)));
	list_free_deep(worker_history.entries);
	worker_history.entries = NIL;
	worker_history.slot_advanced = InvalidXLogRecPtr;
}

/* ---------------------------------------------------------------------
 * Reading
 * ---------------------------------------------------------------------
 */

typedef struct CkptReader
{
	int			fd;
	off_t		offset;
	char	   *why;			/* why it is damaged */
	int			nblocks;
	List	   *sql_qids;		/* queries in SQL: their entries hold values */
} CkptReader;

static bool
read_exact(CkptReader *r, void *buf, Size len, const char *what)
{
	char	   *p = buf;
	Size		left = len;

	while (left > 0)
	{
		ssize_t		n = read(r->fd, p, left);

		if (n < 0)
		{
			r->why = psprintf("could not read %s at byte %lld: %m", what, (long long) r->offset);
			return false;
		}
		if (n == 0)
		{
			r->why = psprintf("the file ends at byte %lld, inside %s",
							  (long long) r->offset, what);
			return false;
		}
		p += n;
		left -= n;
		r->offset += n;
	}
	return true;
}

/* Read the next block; its payload is palloc'd. */
static bool
read_block(CkptReader *r, uint32 expect, CkptBlockHead *head, char **data)
{
	pg_crc32c	crc;
	off_t		at = r->offset;

	if (!read_exact(r, head, sizeof(CkptBlockHead), "a block header"))
		return false;
	if (head->len > CKPT_BLOCK_MAX || head->type < CKB_HEADER || head->type > CKB_LATE)
	{
		r->why = psprintf("block %d at byte %lld has a bad header (type %u, length %u)",
						  r->nblocks + 1, (long long) at, head->type, head->len);
		return false;
	}
	*data = palloc(Max(head->len, 1));
	if (!read_exact(r, *data, head->len, "a block"))
		return false;
	INIT_CRC32C(crc);
	COMP_CRC32C(crc, &head->type, sizeof(uint32) * 2);
	COMP_CRC32C(crc, *data, head->len);
	FIN_CRC32C(crc);
	if (!EQ_CRC32C(crc, head->crc))
	{
		r->why = psprintf("block %d at byte %lld fails its CRC-32C check",
						  r->nblocks + 1, (long long) at);
		return false;
	}
	r->nblocks++;
	if (expect != 0 && head->type != expect &&
		!(expect == CKB_ENTRIES && (head->type == CKB_END || head->type == CKB_LAYOUTS ||
									head->type == CKB_OPTIONS || head->type == CKB_LATE)))
	{
		r->why = psprintf("block %d at byte %lld has type %u where %u was expected",
						  r->nblocks, (long long) at, head->type, expect);
		return false;
	}
	return true;
}

/* Parse one ENTRIES block, calling cb->key for every key. */
static bool
scan_entries(CkptReader *r, const StreamStateCkptScan *cb, void *arg,
			 const char *data, uint32 len, uint64 *nkeys, uint64 *nentries)
{
	const char *p = data;
	const char *end = data + len;
	StreamStatePane *panes = NULL;
	int			cap = 0;

	while (p < end)
	{
		uint64		qid,
					keylen,
					npanes;
		const char *key;
		bool		values;

		if (!get_uvarint(&p, end, &qid) || !get_uvarint(&p, end, &keylen) ||
			keylen > (uint64) (end - p))
			goto malformed;
		key = p;
		p += keylen;
		if (!get_uvarint(&p, end, &npanes) || npanes == 0 || npanes > (uint64) (end - p))
			goto malformed;
		values = list_member_int(r->sql_qids, (int) qid);
		if ((int) npanes > cap)
		{
			cap = Max((int) npanes, 64);
			panes = panes ? repalloc(panes, sizeof(StreamStatePane) * cap) :
				palloc(sizeof(StreamStatePane) * cap);
		}
		for (uint64 i = 0; i < npanes; i++)
		{
			if (i == 0)
			{
				if (!get_svarint(&p, end, &panes[0].pane))
					goto malformed;
			}
			else
			{
				uint64		d;

				if (!get_uvarint(&p, end, &d) || d == 0)
					goto malformed;
				panes[i].pane = panes[i - 1].pane + (int64) d;
			}
			if (values)
			{
				uint64		vlen;
				char	   *chunk;

				if (!get_uvarint(&p, end, &vlen) || vlen > (uint64) (end - p))
					goto malformed;
				chunk = palloc(sizeof(uint32) + vlen);
				memcpy(chunk, &vlen, sizeof(uint32));
				memcpy(chunk + sizeof(uint32), p, vlen);
				p += vlen;
				panes[i].count = (int64) (uintptr_t) chunk;
			}
			else if (!get_svarint(&p, end, &panes[i].count) || panes[i].count <= 0)
				goto malformed;
		}
		(*nkeys)++;
		(*nentries) += npanes;
		if (cb->key != NULL &&
			!cb->key(arg, (int32) qid, key, (uint32) keylen, panes, (int) npanes, &r->why))
			return false;
	}
	if (panes)
		pfree(panes);
	return true;

malformed:
	r->why = psprintf("block %d holds a malformed entry at offset %lld",
					  r->nblocks, (long long) (p - data));
	return false;
}

/*
 * Read checkpoint file path from start to end, checking every block, and
 * hand its header, queries and keys to cb (any callback may be NULL; one
 * that returns false stops the scan with its reason).  Returns false with
 * *why set when the file is damaged or a callback refused it.
 */
bool
sstate_ckpt_scan_file(const char *path, const StreamStateCkptScan *cb, void *arg, char **why)
{
	CkptReader	r;
	CkptPrefix	prefix;
	CkptBlockHead head;
	CkptHeader	hdr;
	StreamStateCkptHeader info;
	CkptEnd		endb;
	char	   *data;
	uint64		nkeys = 0,
				nentries = 0;
	bool		ok = false;
	char		extra;
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "stream_state checkpoint read",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);

	memset(&r, 0, sizeof(r));
	r.fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	if (r.fd < 0)
	{
		r.why = psprintf("could not open it: %m");
		goto out;
	}
	if (!read_exact(&r, &prefix, sizeof(prefix), "the file prefix"))
		goto out;
	if (memcmp(prefix.magic, CKPT_MAGIC, 8) != 0)
	{
		r.why = pstrdup("it is not a stream_state checkpoint file");
		goto out;
	}
	if (prefix.bom != CKPT_BOM || prefix.query_size != sizeof(CkptQuery))
	{
		r.why = pstrdup("it was written on a machine of another architecture");
		goto out;
	}
	if (prefix.version != STREAM_STATE_CKPT_VERSION)
	{
		r.why = psprintf("it has format version %u; this server reads version %d",
						 prefix.version, STREAM_STATE_CKPT_VERSION);
		goto out;
	}
	if (prefix.pg_major != PG_VERSION_NUM / 100)
	{
		r.why = psprintf("it was written by PostgreSQL %u; this server is PostgreSQL %d",
						 prefix.pg_major, PG_VERSION_NUM / 100);
		goto out;
	}
	if (!read_block(&r, CKB_HEADER, &head, &data))
		goto out;
	if (head.len != sizeof(CkptHeader))
	{
		r.why = pstrdup("its header block has the wrong length");
		goto out;
	}
	memcpy(&hdr, data, sizeof(hdr));
	info.sysid = hdr.sysid;
	info.dboid = hdr.dboid;
	info.flags = hdr.flags;
	info.id = hdr.id;
	info.applied = hdr.applied;
	info.restart = hdr.restart;
	info.created_at = hdr.created_at;
	info.nqueries = hdr.nqueries;
	if (cb->header != NULL && !cb->header(arg, &info, &r.why))
		goto out;

	/* queries */
	if (!read_block(&r, CKB_QUERIES, &head, &data))
		goto out;
	if (head.len != (uint64) hdr.nqueries * sizeof(CkptQuery))
	{
		r.why = psprintf("its query block holds %u bytes for %u queries",
						 head.len, hdr.nqueries);
		goto out;
	}
	for (uint32 i = 0; i < hdr.nqueries; i++)
	{
		CkptQuery	cq;
		StreamStateQuery q;

		memcpy(&cq, data + i * sizeof(CkptQuery), sizeof(cq));
		memset(&q, 0, sizeof(q));
		q.def.id = cq.id;
		q.def.processing_time = cq.processing_time != 0;
		q.def.key_classed = (cq.key_flags & CKQ_KEY_CLASSED) != 0;
		q.def.backend = (cq.key_flags & CKQ_ROCKSDB) ? SSB_ROCKSDB : SSB_MEMORY;
		q.def.sql = (cq.key_flags & CKQ_SQL) != 0;
		q.def.emit = (cq.key_flags & CKQ_EMIT) != 0;
		q.def.late = (cq.key_flags & CKQ_LATE) != 0;
		if (q.def.sql)
			r.sql_qids = lappend_int(r.sql_qids, cq.id);
		q.def.pane_us = cq.pane_us;
		q.def.window_us = cq.window_us;
		q.def.slide_us = cq.slide_us;
		q.def.lateness_us = cq.lateness_us;
		memcpy(q.def.name, cq.name, NAMEDATALEN);
		q.def.name[NAMEDATALEN - 1] = '\0';
		q.status = (cq.status == SSQ_PAUSED_MEMORY || cq.status == SSQ_NEEDS_REBUILD) ?
			(StreamStateQueryStatus) cq.status : SSQ_RUNNING;
		q.paused_lsn = cq.paused_lsn;
		q.paused_restart = cq.paused_restart;
		q.max_event_us = cq.max_event_us;
		q.dead_below = cq.dead_below;
		q.idle_below = PG_INT64_MIN;
		q.events_applied = cq.events_applied;
		q.late_events = cq.late_events;
		q.skipped = cq.skipped;
		if (q.def.pane_us <= 0 || q.def.id <= 0)
		{
			r.why = psprintf("its query block defines query %d with a pane of %lld microseconds",
							 q.def.id, (long long) q.def.pane_us);
			goto out;
		}
		if (cb->query != NULL && !cb->query(arg, &q, &r.why))
			goto out;
	}

	/* the aggregates of queries in SQL, entries, then the end */
	for (;;)
	{
		if (!read_block(&r, CKB_ENTRIES, &head, &data))
			goto out;
		if (head.type == CKB_END)
			break;
		if (head.type == CKB_LAYOUTS)
		{
			const char *p = data;
			const char *end = data + head.len;

			while (p < end)
			{
				int32		rec[2];

				if (end - p < (ptrdiff_t) sizeof(rec))
					break;
				memcpy(rec, p, sizeof(rec));
				p += sizeof(rec);
				if (rec[1] < 0 || (uint64) (end - p) < sizeof(StreamStateCqWorkerAgg) * (uint64) rec[1])
					break;
				if (cb->layout != NULL)
				{
					StreamStateCqWorkerAgg *aggs = palloc(sizeof(StreamStateCqWorkerAgg) * Max(rec[1], 1));

					memcpy(aggs, p, sizeof(StreamStateCqWorkerAgg) * rec[1]);
					if (!cb->layout(arg, rec[0], rec[1], aggs, &r.why))
						goto out;
				}
				p += sizeof(StreamStateCqWorkerAgg) * rec[1];
			}
			if (p != end)
			{
				r.why = pstrdup("its block of aggregates is malformed");
				goto out;
			}
			pfree(data);
			continue;
		}
		if (head.type == CKB_LATE)
		{
			if (!scan_late(cb, arg, data, head.len, &r.why))
				goto out;
			pfree(data);
			continue;
		}
		if (head.type == CKB_OPTIONS)
		{
			if (head.len % sizeof(CkptOptions) != 0)
			{
				r.why = pstrdup("its block of query options is malformed");
				goto out;
			}
			for (uint32 i = 0; i < head.len / sizeof(CkptOptions); i++)
			{
				CkptOptions o;

				memcpy(&o, data + i * sizeof(CkptOptions), sizeof(o));
				if (o.retention_us < 0 || o.session_gap_us < 0)
				{
					r.why = psprintf("its options give query %d a negative retention or session gap", o.id);
					goto out;
				}
				if (cb->options != NULL &&
					!cb->options(arg, o.id, o.retention_us, o.session_gap_us, &r.why))
					goto out;
			}
			pfree(data);
			continue;
		}
		if (!scan_entries(&r, cb, arg, data, head.len, &nkeys, &nentries))
			goto out;
		pfree(data);
		CHECK_FOR_INTERRUPTS();
	}
	if (head.len != sizeof(CkptEnd))
	{
		r.why = pstrdup("its end block has the wrong length");
		goto out;
	}
	memcpy(&endb, data, sizeof(endb));
	if (endb.nkeys != nkeys || endb.nentries != nentries || endb.nblocks != (uint32) r.nblocks)
	{
		r.why = psprintf("its end block counts %llu keys, %llu entries and %u blocks; the file has %llu, %llu and %d",
						 (unsigned long long) endb.nkeys, (unsigned long long) endb.nentries,
						 endb.nblocks, (unsigned long long) nkeys,
						 (unsigned long long) nentries, r.nblocks);
		goto out;
	}
	if (read(r.fd, &extra, 1) != 0)
	{
		r.why = psprintf("it has data after its end block, at byte %lld", (long long) r.offset);
		goto out;
	}
	ok = true;

out:
	if (r.fd >= 0)
		CloseTransientFile(r.fd);
	MemoryContextSwitchTo(old);
	if (!ok)
		*why = pstrdup(r.why ? r.why : "unknown");
	MemoryContextDelete(cxt);
	return ok;
}

/* ---------------------------------------------------------------------
 * Loading into the worker's state
 * ---------------------------------------------------------------------
 */

typedef struct LoadState
{
	StreamStateDb *db;
	StreamStateStore *table;
	StreamStateCkptHeader hdr;
	int			nqueries;
	int32		last_qid;		/* slot_of cache */
	StreamStateQuery *last_q;
	int64		late_lost;		/* late groups that did not fit */
} LoadState;

static void
clear_state(StreamStateDb *db, StreamStateStore *table)
{
	StreamStateQuery *qs = sstate_db_queries(db);

	for (int i = 0; i < sstate_shared->max_queries; i++)
	{
		if (qs[i].status != SSQ_FREE)
		{
			sstate_store_drop_query(table, &qs[i]);
			sstate_store_late_drop(table, qs[i].def.id);
		}
	}
	sstate_store_trim(table);	/* what sstate_store_presize gave */
	LWLockAcquire(&db->lock, LW_EXCLUSIVE);
	memset(qs, 0, sizeof(StreamStateQuery) * sstate_shared->max_queries);
	LWLockRelease(&db->lock);
}

static bool
load_header(void *arg, const StreamStateCkptHeader *h, char **why)
{
	LoadState  *ls = arg;

	if (h->sysid != GetSystemIdentifier() || h->dboid != ls->db->dboid)
	{
		*why = psprintf("it belongs to database %u of the server with system identifier " UINT64_FORMAT,
						h->dboid, h->sysid);
		return false;
	}
	if (h->nqueries > (uint32) sstate_shared->max_queries)
	{
		*why = psprintf("it holds %u queries; stream_state.max_queries is %d",
						h->nqueries, sstate_shared->max_queries);
		return false;
	}
	ls->hdr = *h;
	return true;
}

static bool
load_options(void *arg, int32 qid, int64 retention_us, int64 session_gap_us, char **why)
{
	LoadState  *ls = arg;

	LWLockAcquire(&ls->db->lock, LW_EXCLUSIVE);
	for (int i = 0; i < ls->nqueries; i++)
		if (sstate_db_queries(ls->db)[i].def.id == qid)
		{
			sstate_db_queries(ls->db)[i].def.retention_us = retention_us;
			sstate_db_queries(ls->db)[i].def.session_gap_us = session_gap_us;
		}
	LWLockRelease(&ls->db->lock);
	return true;
}

static bool
load_late(void *arg, int32 qid, const StreamStateLateGroup *g, char **why)
{
	LoadState  *ls = arg;

	/* none are written; RocksDB's are loaded with its state (rocks.c) */
	if (late_in_rocksdb(sstate_db_queries(ls->db), ls->nqueries, qid))
		return true;
	if (!sstate_store_late_add(ls->table, qid, g, false))
	{
		/* the checkpoint is fine; the group does not fit */
		ls->late_lost++;
	}
	return true;
}

static bool
load_layout(void *arg, int32 qid, int naggs, const StreamStateCqWorkerAgg *aggs, char **why)
{
	LoadState  *ls = arg;

	sstate_cq_layout_set(qid, naggs, aggs);
	sstate_store_set_values(ls->table, qid, true);
	return true;
}

static bool
load_query(void *arg, const StreamStateQuery *q, char **why)
{
	LoadState  *ls = arg;
	StreamStateQuery *slot = &sstate_db_queries(ls->db)[ls->nqueries++];

	LWLockAcquire(&ls->db->lock, LW_EXCLUSIVE);
	*slot = *q;
	LWLockRelease(&ls->db->lock);
	return true;
}

static bool
load_key(void *arg, int32 qid, const char *key, uint32 keylen,
		 const StreamStatePane *panes, int npanes, char **why)
{
	LoadState  *ls = arg;
	StreamStateQuery *q = ls->last_q;
	StreamStateLoadResult res;

	if (q == NULL || ls->last_qid != qid)
	{
		q = NULL;
		for (int i = 0; i < ls->nqueries; i++)
			if (sstate_db_queries(ls->db)[i].def.id == qid)
				q = &sstate_db_queries(ls->db)[i];
		if (q == NULL)
		{
			*why = psprintf("it has a key of query id %d, which it does not define", qid);
			return false;
		}
		ls->last_q = q;
		ls->last_qid = qid;
	}
	if (q->status == SSQ_NEEDS_REBUILD)
		return true;
	if (q->def.sql)
	{
		/* values: each chunk decoded goes into the store's memory */
		StreamStatePane *copy = palloc(sizeof(StreamStatePane) * npanes);

		for (int i = 0; i < npanes; i++)
		{
			uint32		len;
			const char *v = decoded_value(panes[i].count, &len);

			copy[i].pane = panes[i].pane;
			copy[i].count = sstate_store_value_make(ls->table, v, len);
			pfree((void *) (uintptr_t) panes[i].count);
			if (copy[i].count == 0)
			{
				for (int k = 0; k < i; k++)
					sstate_store_value_free(ls->table, copy[k].count);
				res = SSL_OUT_OF_MEMORY;
				goto oom;
			}
			q->bytes += sizeof(uint32) + len;
		}
		panes = copy;
	}
	res = sstate_store_load(ls->table, q, key, keylen, panes, npanes);
oom:
	if (res == SSL_DUPLICATE)
	{
		*why = psprintf("it holds a key of query \"%s\" twice", q->def.name);
		return false;
	}
	if (res == SSL_OUT_OF_MEMORY)
	{
		/* the checkpoint is fine; this query does not fit any more */
		ereport(LOG,
				(errmsg("stream_state: memory full while restoring continuous query \"%s\"; it needs a rebuild",
						q->def.name),
				 errhint("Increase stream_state.memory_limit, then run SELECT stream_state.rebuild('%s').",
						 q->def.name)));
		sstate_store_drop_query(ls->table, q);
		LWLockAcquire(&ls->db->lock, LW_EXCLUSIVE);
		q->status = SSQ_NEEDS_REBUILD;
		LWLockRelease(&ls->db->lock);
	}
	return true;
}

/*
 * Load checkpoint file path into the (empty) state of db.  On failure the
 * state is left empty and *why says what is wrong.
 */
static bool
ckpt_load_file(const char *path, StreamStateDb *db, StreamStateStore *table,
			   StreamStateCkptHeader *hdr_out, char **why)
{
	StreamStateCkptScan cb = {load_header, load_query, load_key, load_layout, load_options,
	load_late};
	LoadState	ls;

	CkptHeader	hdr;
	int64		bytes,
				entries,
				keys;

	memset(&ls, 0, sizeof(ls));
	ls.db = db;
	ls.table = table;

	/*
	 * Size the table for the keys the file says it holds, so that loading
	 * never grows it (sstate_store_presize).  The count is not checked yet:
	 * a key takes at least 4 bytes of a file, which bounds what a damaged
	 * count can ask for.
	 */
	if (read_header_only(path, &hdr, &bytes, &entries, &keys) && keys > 0)
		sstate_store_presize(table, (uint64) Min(keys, bytes / 4));

	if (!sstate_ckpt_scan_file(path, &cb, &ls, why))
	{
		sstate_store_load_end();
		clear_state(db, table);
		return false;
	}
	sstate_store_load_end();
	if (ls.late_lost > 0)
		ereport(WARNING,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("stream_state: memory full while restoring late groups; %lld of them will not reach their late_to tables",
						(long long) ls.late_lost),
				 errhint("Increase stream_state.memory_limit.")));
	*hdr_out = ls.hdr;
	return true;
}

/*
 * Restore the state of db from its newest usable checkpoint.  A checkpoint
 * is usable when it loads without fault and the slot still keeps the WAL
 * from its restart position.  Damaged ones are logged and marked so in the
 * history.  With none usable, out->id is 0, and out->wal_lost says whether
 * the WAL since the database's first query is incomplete (the slot was
 * moved by an earlier checkpoint).
 */
void
sstate_ckpt_restore(StreamStateDb *db, StreamStateStore *table, XLogRecPtr slot_restart,
					int64 only_id, StreamStateCkptRestored *out)
{
	bool		changed = false;
	int			candidates = 0;

	memset(out, 0, sizeof(*out));
	for (int i = list_length(worker_history.entries) - 1; i >= 0; i--)
	{
		StreamStateCkptInfo *ci = list_nth(worker_history.entries, i);
		StreamStateCkptHeader hdr;
		char	   *why = NULL;
		const char *path;
		char		fetchpath[MAXPGPATH];
		bool		loaded;

		if (strcmp(ci->status, "deleted") == 0)
			continue;
		candidates++;
		if (strcmp(ci->status, "valid") != 0)
			continue;
		if (only_id != 0 && ci->id != only_id)
			continue;
		if (only_id != 0 && ci->restart < slot_restart)
		{
			/* asked for by restore_checkpoint: its WAL is gone, so rebuild */
			out->partial = true;
		}
		else if (ci->restart < slot_restart)
		{
			ereport(LOG,
					(errmsg("stream_state: checkpoint %lld of database %u is not used: it needs WAL from %X/%X and the slot keeps WAL from %X/%X",
							(long long) ci->id, db->dboid, LSN_FORMAT_ARGS(ci->restart),
							LSN_FORMAT_ARGS(slot_restart))));
			continue;
		}
		/* a checkpoint in the table: a connected helper writes it to a file */
		path = ci->location;
		if (strcmp(ci->target, "table") == 0)
		{
			int			fetched = sstate_ckpt_table_fetch(db, ci, fetchpath, &why);

			if (fetched == SSCT_UNAVAILABLE)
			{
				ereport(LOG,
						(errmsg("stream_state: checkpoint %lld of database %u is not used: %s",
								(long long) ci->id, db->dboid, why)));
				out->partial = false;
				if (only_id != 0)
					break;
				continue;
			}
			path = (fetched == SSCT_FETCHED) ? fetchpath : NULL;
		}
		loaded = path != NULL && ckpt_load_file(path, db, table, &hdr, &why);
		if (path == fetchpath)
			(void) unlink(fetchpath);
		if (loaded)
		{
			if (hdr.id != ci->id || hdr.applied != ci->applied || hdr.restart != ci->restart)
			{
				clear_state(db, table);
				why = psprintf("its header says checkpoint %lld at %X/%X, the history says checkpoint %lld at %X/%X",
							   (long long) hdr.id, LSN_FORMAT_ARGS(hdr.applied),
							   (long long) ci->id, LSN_FORMAT_ARGS(ci->applied));
			}
			else
			{
				out->id = hdr.id;
				out->applied = hdr.applied;
				out->restart = hdr.restart;
				out->flags = hdr.flags;
				break;
			}
		}
		ereport(LOG,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("stream_state: checkpoint %lld of database %u is damaged: %s",
						(long long) ci->id, db->dboid, why),
				 strcmp(ci->target, "table") == 0 ?
				 errdetail("Rows of checkpoint_id %lld in table %s.", (long long) ci->id,
						   STREAM_STATE_CKPT_TABLE_NAME) :
				 errdetail("File \"%s\".", ci->location),
				 errhint("The previous checkpoint is used instead.")));
		strlcpy(ci->status, "damaged", sizeof(ci->status));
		changed = true;
		out->partial = false;
		if (only_id != 0)
			break;				/* the caller falls back to the newest */
	}
	if (changed)
		history_write(db->dboid, &worker_history);
	if (only_id != 0)
		return;

	if (out->id == 0 && candidates > 0 && !XLogRecPtrIsInvalid(worker_history.slot_advanced))
		out->wal_lost = true;
}

/* ---------------------------------------------------------------------
 * The scanner process
 * ---------------------------------------------------------------------
 */

typedef struct CkptScanState
{
	int			fd;
	StringInfoData cur;
	int32		nblocks;
	int64		nkeys;
	int64		nentries;
	int64		bytes;
	bool		failed;
	StreamStateStore *table;
	int32		last_qid;		/* the query of the last key, and whether */
	bool		last_values;	/* its panes refer to values */
} CkptScanState;

/*
 * ss->cur holds a block: room for its head, then the payload.  It is written
 * with one write() (O_APPEND), so that the blocks of two scanners never mix;
 * a short write is a failure, never continued.
 */
#define SCAN_HEAD	((int) sizeof(CkptBlockHead))

static void
scan_block_reset(CkptScanState *ss)
{
	resetStringInfo(&ss->cur);
	appendStringInfoSpaces(&ss->cur, SCAN_HEAD);
}

static bool
scan_flush(CkptScanState *ss)
{
	CkptBlockHead head;

	if (ss->cur.len == SCAN_HEAD || ss->failed)
		return !ss->failed;
	head.type = CKB_ENTRIES;
	head.len = ss->cur.len - SCAN_HEAD;
	INIT_CRC32C(head.crc);
	COMP_CRC32C(head.crc, &head.type, sizeof(uint32) * 2);
	COMP_CRC32C(head.crc, ss->cur.data + SCAN_HEAD, head.len);
	FIN_CRC32C(head.crc);
	memcpy(ss->cur.data, &head, SCAN_HEAD);
	errno = 0;
	if (write(ss->fd, ss->cur.data, ss->cur.len) != ss->cur.len)
	{
		if (errno == 0)
			errno = ENOSPC;		/* a short write: the disk is full */
		ss->failed = true;
		return false;
	}
	/* start writing it out now, so that the worker's fsync finds little left */
	pg_flush_data(ss->fd, 0, 0);
	ss->bytes += ss->cur.len;
	ss->nblocks++;
	scan_block_reset(ss);
	return true;
}

static void
scan_key_cb(void *arg, int32 qid, const char *key, uint32 keylen,
			const StreamStatePane *panes, int npanes)
{
	CkptScanState  *ss = arg;

	/* keys come query by query within a partition: look the kind up once */
	if (qid != ss->last_qid)
	{
		ss->last_qid = qid;
		ss->last_values = sstate_store_is_values(ss->table, qid);
	}
	encode_key(&ss->cur, qid, key, keylen, panes, npanes,
			   ss->last_values ? ss->table : NULL, false);
	ss->nkeys++;
	ss->nentries += npanes;
	/* written while the partition is held: blocks are 1 MB, a short write */
	if (ss->cur.len - SCAN_HEAD >= CKPT_BLOCK_TARGET)
		(void) scan_flush(ss);
}

static StreamStateDb *scanner_db = NULL;
static int	scanner_index = 0;

static void
scanner_exit(int code, Datum arg)
{
	if (scanner_db != NULL)
	{
		SpinLockAcquire(&scanner_db->mutex);
		if (scanner_db->scan_pid[scanner_index] == MyProcPid)
			scanner_db->scan_pid[scanner_index] = 0;
		SpinLockRelease(&scanner_db->mutex);
	}
}

/*
 * stream_state checkpoint scanner: one of up to SSTATE_SCANNERS started by a
 * database's worker for one checkpoint (its number in bgw_extra).  It
 * appends the ENTRIES blocks of every entry of its partitions that the
 * worker has not copied on write to the checkpoint's temporary file,
 * reports how many in the database's slot, and exits; once every scanner
 * is done, the worker appends its own copies and the END block.  It
 * connects to no database.
 */
void
stream_state_ckpt_scanner_main(Datum arg)
{
	Oid			dboid = DatumGetObjectId(arg);
	StreamStateDb *db;
	CkptScanState ss;
	uint32		epoch;
	int			count = 0;
	char		path[MAXPGPATH];
	dsa_pointer handle;
	StreamStateStore *table;

	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);	/* no database */
	memcpy(&scanner_index, MyBgworkerEntry->bgw_extra, sizeof(int));
	if (scanner_index < 0 || scanner_index >= SSTATE_SCANNERS)
		proc_exit(0);

	db = sstate_db_find(dboid);
	if (db == NULL)
		proc_exit(0);
	scanner_db = db;
	before_shmem_exit(scanner_exit, (Datum) 0);

	LWLockAcquire(&db->lock, LW_SHARED);
	SpinLockAcquire(&db->mutex);
	db->scan_pid[scanner_index] = MyProcPid;
	epoch = db->scan_epoch;
	strlcpy(path, db->scan_path, MAXPGPATH);
	SpinLockRelease(&db->mutex);
	handle = db->table;
	LWLockRelease(&db->lock);
	if (!DsaPointerIsValid(handle))
		proc_exit(0);

	/* how many share the partitions: known once the worker started them all */
	for (int i = 0; i < 10000 && count == 0 && !ShutdownRequestPending; i++)
	{
		SpinLockAcquire(&db->mutex);
		count = (db->scan_epoch == epoch) ? db->scan_count : -1;
		SpinLockRelease(&db->mutex);
		if (count == 0)
			pg_usleep(1000L);
	}
	if (count <= scanner_index)
		proc_exit(0);			/* another checkpoint's, or not counted */

	table = sstate_store_attach(sstate_area(), handle);
	memset(&ss, 0, sizeof(ss));
	ss.table = table;
	initStringInfo(&ss.cur);
	enlargeStringInfo(&ss.cur, CKPT_BLOCK_TARGET + 1024 + SCAN_HEAD);
	scan_block_reset(&ss);
	ss.fd = OpenTransientFile(path, O_WRONLY | O_APPEND | PG_BINARY);
	if (ss.fd < 0)
		ss.failed = true;
	else
	{
		pgstat_report_activity(STATE_RUNNING, "copying state for a checkpoint");
		sstate_store_snapshot(table, epoch, scanner_index, count, scan_key_cb, &ss,
							  &ShutdownRequestPending);
		if (ShutdownRequestPending)
			proc_exit(0);		/* the worker sees it stopped unfinished */
		(void) scan_flush(&ss);
		if (CloseTransientFile(ss.fd) != 0)
			ss.failed = true;
	}

	SpinLockAcquire(&db->mutex);
	if (db->scan_epoch == epoch)
	{
		db->scan_done[scanner_index] = true;
		db->scan_nblocks[scanner_index] = ss.nblocks;
		db->scan_nkeys[scanner_index] = ss.nkeys;
		db->scan_nentries[scanner_index] = ss.nentries;
		db->scan_bytes[scanner_index] = ss.bytes;
		if (ss.failed && db->scan_error[0] == '\0')
			snprintf(db->scan_error, sizeof(db->scan_error),
					 "could not write file \"%s\": %s", path, strerror(errno));
	}
	SpinLockRelease(&db->mutex);
	if (db->worker_latch != NULL)
		SetLatch(db->worker_latch);
	proc_exit(0);
}

/*
 * A new worker must not replace the table while a scanner of an earlier
 * one still reads it: wait (up to 10 s) for them to go.
 */
void
sstate_ckpt_wait_scanner(StreamStateDb *db)
{
	for (int n = 0; n < SSTATE_SCANNERS; n++)
	{
		for (int i = 0; i < 1000; i++)
		{
			pid_t		pid;

			SpinLockAcquire(&db->mutex);
			pid = db->scan_pid[n];
			SpinLockRelease(&db->mutex);
			if (pid == 0 || kill(pid, 0) != 0)
				break;
			if (i == 0)
				kill(pid, SIGTERM);
			pg_usleep(10000);
		}
	}
}

/* ---------------------------------------------------------------------
 * Export with the state of rocksdb queries
 *
 * The file of a checkpoint holds the state of its memory queries only; a
 * rocksdb query's is in the RocksDB checkpoint taken with it.  An export
 * must be one portable file, so it is written anew: the prefix, header and
 * queries of the checkpoint (every query marked as holding its state in the
 * file), its entries, then the entries of each rocksdb query read from the
 * RocksDB checkpoint, and an END block that counts them all.
 * ---------------------------------------------------------------------
 */

typedef struct ExportState
{
	const char *path;
	int			fd;
	MemoryContext cxt;			/* the scan callbacks run in a context of
								 * their own: keep what outlives it here */
	bool		have_header;
	StreamStateCkptHeader hdr;
	List	   *queries;		/* StreamStateQuery * */
	StringInfoData layouts;		/* the file's LAYOUTS and OPTIONS blocks */
	StringInfoData options;
	bool		started;
	StringInfoData cur;
	uint64		nkeys;
	uint64		nentries;
	uint32		nblocks;
} ExportState;

static void
export_block(ExportState *e, uint32 type, const char *data, uint32 len)
{
	CkptBlockHead head;

	head.type = type;
	head.len = len;
	INIT_CRC32C(head.crc);
	COMP_CRC32C(head.crc, &head.type, sizeof(uint32) * 2);
	COMP_CRC32C(head.crc, data, len);
	FIN_CRC32C(head.crc);
	if (!write_all(e->fd, &head, sizeof(head)) || !write_all(e->fd, data, len))
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not write file \"%s\": %m", e->path)));
	e->nblocks++;
}

/* the prefix, header and queries, once all of them are known */
static void
export_start(ExportState *e)
{
	CkptPrefix	prefix;
	CkptHeader	hdr;
	StringInfoData qbuf;
	ListCell   *lc;

	if (e->started)
		return;
	e->started = true;
	file_prefix(&prefix);
	if (!write_all(e->fd, &prefix, sizeof(prefix)))
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not write file \"%s\": %m", e->path)));
	memset(&hdr, 0, sizeof(hdr));
	hdr.sysid = e->hdr.sysid;
	hdr.dboid = e->hdr.dboid;
	hdr.flags = e->hdr.flags;
	hdr.id = e->hdr.id;
	hdr.applied = e->hdr.applied;
	hdr.restart = e->hdr.restart;
	hdr.created_at = e->hdr.created_at;
	hdr.nqueries = list_length(e->queries);
	export_block(e, CKB_HEADER, (char *) &hdr, sizeof(hdr));

	initStringInfo(&qbuf);
	foreach(lc, e->queries)
	{
		StreamStateQuery q = *(StreamStateQuery *) lfirst(lc);
		CkptQuery	cq;

		q.def.backend = SSB_MEMORY; /* its state is in this file */
		query_record(&q, &cq);
		appendBinaryStringInfo(&qbuf, (char *) &cq, sizeof(cq));
	}
	export_block(e, CKB_QUERIES, qbuf.data, qbuf.len);
	pfree(qbuf.data);
	if (e->layouts.len > 0)
		export_block(e, CKB_LAYOUTS, e->layouts.data, e->layouts.len);
	if (e->options.len > 0)
		export_block(e, CKB_OPTIONS, e->options.data, e->options.len);
}

static bool
export_header_cb(void *arg, const StreamStateCkptHeader *h, char **why)
{
	ExportState *e = arg;

	e->hdr = *h;
	e->have_header = true;
	return true;
}

static bool
export_query_cb(void *arg, const StreamStateQuery *q, char **why)
{
	ExportState *e = arg;
	MemoryContext old;
	StreamStateQuery *copy;

	old = MemoryContextSwitchTo(e->cxt);
	copy = palloc(sizeof(StreamStateQuery));

	*copy = *q;
	e->queries = lappend(e->queries, copy);
	MemoryContextSwitchTo(old);
	return true;
}

/* The file's aggregates of a query in SQL, copied as they are */
static bool
export_layout_cb(void *arg, int32 qid, int naggs, const StreamStateCqWorkerAgg *aggs, char **why)
{
	ExportState *e = arg;
	int32		rec[2] = {qid, naggs};

	appendBinaryStringInfo(&e->layouts, (char *) rec, sizeof(rec));
	appendBinaryStringInfo(&e->layouts, (const char *) aggs, sizeof(StreamStateCqWorkerAgg) * naggs);
	return true;
}

static bool
export_options_cb(void *arg, int32 qid, int64 retention_us, int64 session_gap_us, char **why)
{
	ExportState *e = arg;
	CkptOptions o;
	ListCell   *lc;

	memset(&o, 0, sizeof(o));
	o.id = qid;
	o.retention_us = retention_us;
	o.session_gap_us = session_gap_us;
	appendBinaryStringInfo(&e->options, (char *) &o, sizeof(o));
	foreach(lc, e->queries)
	{
		StreamStateQuery *q = lfirst(lc);

		if (q->def.id == qid)
			q->def.session_gap_us = session_gap_us;
	}
	return true;
}

static void
export_key(void *arg, int32 qid, const char *key, uint32 keylen,
		   const StreamStatePane *panes, int npanes)
{
	ExportState *e = arg;
	bool		values = false;
	ListCell   *lc;

	foreach(lc, e->queries)
	{
		StreamStateQuery *q = lfirst(lc);

		if (q->def.id == qid)
			values = q->def.sql;
	}
	export_start(e);
	/* a query in SQL's panes hold values, decoded by the scan */
	encode_key(&e->cur, qid, key, keylen, panes, npanes, NULL, values);
	e->nkeys++;
	e->nentries += npanes;
	if (e->cur.len >= CKPT_BLOCK_TARGET)
	{
		export_block(e, CKB_ENTRIES, e->cur.data, e->cur.len);
		resetStringInfo(&e->cur);
	}
}

static bool
export_key_cb(void *arg, int32 qid, const char *key, uint32 keylen,
			  const StreamStatePane *panes, int npanes, char **why)
{
	export_key(arg, qid, key, keylen, panes, npanes);
	return true;
}

/*
 * Write checkpoint file src, with its rocksdb queries' state from rdb_scan
 * (called once per rocksdb query), as one self-contained file at path
 * (created, fsynced; the caller renames it).  Returns its size.
 */
int64
sstate_ckpt_export_file(const char *src, const char *path, sstate_ckpt_rdb_scan rdb_scan,
						void *arg)
{
	StreamStateCkptScan cb = {export_header_cb, export_query_cb, export_key_cb, export_layout_cb,
	export_options_cb};
	ExportState e;
	char	   *why = NULL;
	ListCell   *lc;
	CkptEnd		end;
	struct stat st;

	memset(&e, 0, sizeof(e));
	e.path = path;
	e.cxt = CurrentMemoryContext;
	initStringInfo(&e.cur);
	initStringInfo(&e.layouts);
	initStringInfo(&e.options);
	e.fd = OpenTransientFile(path, O_CREAT | O_EXCL | O_WRONLY | PG_BINARY);
	if (e.fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create file \"%s\": %m", path)));
	PG_TRY();
	{
		if (!sstate_ckpt_scan_file(src, &cb, &e, &why))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("checkpoint file \"%s\" is damaged: %s", src, why)));
		export_start(&e);
		foreach(lc, e.queries)
		{
			StreamStateQuery *q = lfirst(lc);

			if (q->def.backend == SSB_ROCKSDB && q->status != SSQ_NEEDS_REBUILD)
				rdb_scan(arg, e.hdr.id, q, export_key, &e);
		}
		if (e.cur.len > 0)
			export_block(&e, CKB_ENTRIES, e.cur.data, e.cur.len);
		memset(&end, 0, sizeof(end));
		end.nkeys = e.nkeys;
		end.nentries = e.nentries;
		end.nblocks = e.nblocks + 1;
		export_block(&e, CKB_END, (char *) &end, sizeof(end));
		if (pg_fsync(e.fd) != 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not fsync file \"%s\": %m", path)));
	}
	PG_CATCH();
	{
		CloseTransientFile(e.fd);
		unlink(path);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (CloseTransientFile(e.fd) != 0 || stat(path, &st) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not close file \"%s\": %m", path)));
	return (int64) st.st_size;
}
