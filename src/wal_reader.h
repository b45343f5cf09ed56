/*-------------------------------------------------------------------------
 *
 * wal_reader.h
 *	  Applying stream_state's WAL messages at their commit.
 *
 * IDENTIFICATION
 *	  src/wal_reader.h
 *-------------------------------------------------------------------------
 */
#ifndef STREAM_STATE_WAL_READER_H
#define STREAM_STATE_WAL_READER_H

#include "access/xlogreader.h"
#include "access/xlogutils.h"

#include "stream_state.h"
#include "store.h"

typedef enum StreamStateApplyResult
{
	SSA_OK,
	SSA_DROP_EXTENSION,			/* applied a DROP EXTENSION */
	SSA_CREATED,				/* applied a CREATE (after any drop) */
	SSA_DROP_DATABASE			/* this database was dropped */
} StreamStateApplyResult;

extern XLogReaderState *sstate_wal_reader_create(ReadLocalXLogPageNoWaitPrivate *priv);
extern void sstate_apply_init(StreamStateDb *db, StreamStateStore *table);
extern StreamStateApplyResult sstate_apply_record(XLogReaderState *record);
extern long sstate_apply_open_xacts(void);
extern void sstate_apply_skip_below(XLogRecPtr lsn);
extern XLogRecPtr sstate_apply_restart_lsn(XLogRecPtr applied);
extern int	sstate_apply_catch_up(XLogRecPtr upto);
extern bool sstate_apply_any_paused(void);
extern int	sstate_apply_limit_kept_wal(XLogRecPtr applied);
extern void sstate_apply_evict_emitted(StreamStateQuery *q);
extern XLogRecPtr sstate_apply_late_last(StreamStateQuery *q);
extern void sstate_apply_trim_late(StreamStateQuery *q);

#endif							/* STREAM_STATE_WAL_READER_H */
