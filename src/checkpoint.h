/*-------------------------------------------------------------------------
 *
 * checkpoint.h
 *	  Checkpoints of a database's state: writing, validating, restoring,
 *	  history and retention.
 *
 * IDENTIFICATION
 *	  src/checkpoint.h
 *-------------------------------------------------------------------------
 */
#ifndef STREAM_STATE_CHECKPOINT_H
#define STREAM_STATE_CHECKPOINT_H

#include "stream_state.h"

#define STREAM_STATE_CKPT_VERSION	1

/* flags in the checkpoint header */
#define SSC_FLAG_EXTENSION_DROPPED	0x01

/* One line of a database's checkpoint history */
typedef struct StreamStateCkptInfo
{
	int64		id;
	char		target[8];		/* "file" */
	char		location[MAXPGPATH];
	TimestampTz created_at;
	XLogRecPtr	applied;		/* L: every commit before it is in the state */
	XLogRecPtr	restart;		/* R: where WAL must be read from again */
	int32		queries;
	int64		entries;		/* (key, pane) entries */
	int64		bytes;
	int64		duration_ms;
	char		status[12];		/* valid, damaged, deleted */
} StreamStateCkptInfo;

/* What a restore found */
typedef struct StreamStateCkptRestored
{
	int64		id;				/* 0: no checkpoint was used */
	XLogRecPtr	applied;
	XLogRecPtr	restart;
	uint32		flags;
	bool		wal_lost;		/* checkpoints were taken, none is usable */
} StreamStateCkptRestored;

typedef struct StreamStateCkptWriter StreamStateCkptWriter;

/* worker */
extern void sstate_ckpt_worker_init(Oid dboid);
extern void sstate_ckpt_restore(StreamStateDb *db, dshash_table *table,
								XLogRecPtr slot_restart,
								StreamStateCkptRestored *out);
extern StreamStateCkptWriter *sstate_ckpt_begin(StreamStateDb *db, dshash_table *table,
												XLogRecPtr applied, XLogRecPtr restart,
												uint32 flags);
extern bool sstate_ckpt_continue(StreamStateCkptWriter *w, Size budget,
								 int64 *id, char **error);
extern void sstate_ckpt_abandon(StreamStateCkptWriter *w);
extern XLogRecPtr sstate_ckpt_slot_target(XLogRecPtr newest_restart);
extern void sstate_ckpt_retain(XLogRecPtr slot_restart);
extern void sstate_ckpt_remove_all(Oid dboid);

/* anyone */
extern List *sstate_ckpt_history(Oid dboid);
extern void sstate_ckpt_dir(Oid dboid, char *buf);

#endif							/* STREAM_STATE_CHECKPOINT_H */
