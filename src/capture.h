/*-------------------------------------------------------------------------
 *
 * capture.h
 *	  Folding rows into the backend-local delta (trigger and backfill).
 *
 * IDENTIFICATION
 *	  src/capture.h
 *-------------------------------------------------------------------------
 */
#ifndef STREAM_STATE_CAPTURE_H
#define STREAM_STATE_CAPTURE_H

#include "query.h"

struct DeltaLevel;
struct DeltaQuery;

typedef struct StreamStateCapture
{
	const StreamStateQueryInfo *info;
	struct DeltaLevel *level;
	struct DeltaQuery *dq;
} StreamStateCapture;

extern void sstate_capture_begin(StreamStateCapture *cap,
								 const StreamStateQueryInfo *info);
extern void sstate_capture_defer_wal(bool defer);
extern void sstate_capture_row(StreamStateCapture *cap, Datum key, bool key_null,
							   Datum time, bool time_null);
extern void sstate_capture_add(StreamStateCapture *cap, const char *img, uint32 len,
							   int64 pane, int64 count);
extern void sstate_capture_note_event(StreamStateCapture *cap, int64 event_us);
extern void sstate_capture_value(StreamStateCapture *cap, const char *img, uint32 len,
								 int64 pane, int64 nrows, const char *value, uint32 vlen);
extern void sstate_capture_skip(StreamStateCapture *cap);

#endif							/* STREAM_STATE_CAPTURE_H */
