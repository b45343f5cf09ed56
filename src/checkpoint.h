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

#include "store.h"

#define STREAM_STATE_CKPT_VERSION	1

/* flags in the checkpoint header */
#define SSC_FLAG_EXTENSION_DROPPED	0x01

/* One line of a database's checkpoint history */
typedef struct StreamStateCkptInfo
{
	int64		id;
	char		target[8];		/* "file" or "table" */
	char		location[MAXPGPATH];
	TimestampTz created_at;
	XLogRecPtr	applied;		/* L: every commit before it is in the state */
	XLogRecPtr	restart;		/* R: where WAL must be read from again */
	int32		queries;
	int64		entries;		/* (key, pane) entries */
	int64		bytes;
	int64		duration_ms;
	int64		pause_ms;		/* how long the worker stopped applying */
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
	bool		partial;		/* restore_checkpoint of one whose WAL is gone */
} StreamStateCkptRestored;

typedef struct StreamStateCkptWriter StreamStateCkptWriter;

/* A checkpoint file's header */
typedef struct StreamStateCkptHeader
{
	uint64		sysid;
	Oid			dboid;
	uint32		flags;
	int64		id;
	XLogRecPtr	applied;
	XLogRecPtr	restart;
	TimestampTz created_at;
	uint32		nqueries;
} StreamStateCkptHeader;

/* Callbacks of sstate_ckpt_scan_file; each returns false (with *why) to stop */
struct StreamStateCqWorkerAgg;

typedef struct StreamStateCkptScan
{
	bool		(*header) (void *arg, const StreamStateCkptHeader *h, char **why);
	bool		(*query) (void *arg, const StreamStateQuery *q, char **why);
	bool		(*key) (void *arg, int32 qid, const char *key, uint32 keylen,
						const StreamStatePane *panes, int npanes, char **why);
	/* 0.5.0: the aggregates of a query in SQL (cq_agg.h), before its keys */
	bool		(*layout) (void *arg, int32 qid, int naggs,
						   const struct StreamStateCqWorkerAgg *aggs, char **why);
	/* 0.6.0: a query's retention and session gap, after its definition */
	bool		(*options) (void *arg, int32 qid, int64 retention_us, int64 session_gap_us,
							char **why);
	/* 0.7.0: a late group not yet in its query's late_to table */
	bool		(*late) (void *arg, int32 qid, const StreamStateLateGroup *g, char **why);
} StreamStateCkptScan;

/* worker */
extern void sstate_ckpt_worker_init(Oid dboid);
extern void sstate_ckpt_restore(StreamStateDb *db, StreamStateStore *table,
								XLogRecPtr slot_restart, int64 only_id,
								StreamStateCkptRestored *out);
extern StreamStateCkptWriter *sstate_ckpt_begin(StreamStateDb *db, StreamStateStore *table,
												XLogRecPtr applied, XLogRecPtr restart,
												uint32 flags);
extern bool sstate_ckpt_continue(StreamStateCkptWriter *w, Size budget,
								 int64 *id, char **error);
extern void sstate_ckpt_abandon(StreamStateCkptWriter *w);
extern int64 sstate_ckpt_writer_id(StreamStateCkptWriter *w);
extern bool sstate_ckpt_scanning(StreamStateCkptWriter *w);
extern XLogRecPtr sstate_ckpt_slot_target(XLogRecPtr newest_restart);
extern void sstate_ckpt_retain(XLogRecPtr slot_restart);
extern List *sstate_ckpt_retained(XLogRecPtr slot_restart);
extern List *sstate_ckpt_worker_entries(void);
extern void sstate_ckpt_history_save(void);
extern void sstate_ckpt_remove_all(Oid dboid);
extern void sstate_ckpt_wait_scanner(StreamStateDb *db);
extern PGDLLEXPORT void stream_state_ckpt_scanner_main(Datum arg);

/* anyone */
typedef void (*sstate_ckpt_rdb_scan) (void *arg, int64 ckpt_id, const StreamStateQuery *q,
									  sstate_store_scan_cb cb, void *cb_arg);
extern int64 sstate_ckpt_export_file(const char *src, const char *path,
									 sstate_ckpt_rdb_scan rdb_scan, void *arg);
extern const char *sstate_ckpt_entry_value(int64 ref, uint32 *len);
extern bool sstate_ckpt_scan_file(const char *path, const StreamStateCkptScan *cb,
								  void *arg, char **why);
extern List *sstate_ckpt_history(Oid dboid);
extern void sstate_ckpt_dir(Oid dboid, char *buf);

/* checkpoint_table.c: the "table" target */
#define STREAM_STATE_CKPT_TABLE_NAME	"stream_state.checkpoint_data"
#define STREAM_STATE_CKPT_CHUNK			(1024 * 1024)	/* bytes per row */

/* what reading a checkpoint's rows found */
#define SSCT_FETCHED		1		/* every chunk, written to the file */
#define SSCT_DAMAGED		2		/* chunks missing or extra (*why) */
#define SSCT_UNAVAILABLE	3		/* could not be read now (*why) */

/* jobs of the helper process */
#define SSCT_JOB_COPY		1		/* file into rows, drop rows not kept */
#define SSCT_JOB_DROP		2		/* drop rows not kept */
#define SSCT_JOB_FETCH		3		/* rows into a file */

extern bool sstate_ckpt_table_begin(StreamStateDb *db, int64 id, bool copy,
									XLogRecPtr slot_restart, char **error,
									int *sqlstate);
extern bool sstate_ckpt_table_busy(void);
extern bool sstate_ckpt_table_poll(char **error, int *sqlstate);
extern void sstate_ckpt_table_abandon(void);
extern void sstate_ckpt_table_worker_init(Oid dboid);
extern int	sstate_ckpt_table_fetch(StreamStateDb *db, const StreamStateCkptInfo *ci,
									char *path, char **why);
extern int	sstate_ckpt_table_read(int64 id, int64 bytes, const char *path,
								   bool durable, char **why);
extern void sstate_ckpt_table_temp_path(int64 id, char *buf);
extern PGDLLEXPORT void stream_state_ckpt_table_main(Datum arg);

#endif							/* STREAM_STATE_CHECKPOINT_H */
