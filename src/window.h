/*-------------------------------------------------------------------------
 *
 * window.h
 *	  Panes, windows and watermarks.
 *
 * IDENTIFICATION
 *	  src/window.h
 *-------------------------------------------------------------------------
 */
#ifndef STREAM_STATE_WINDOW_H
#define STREAM_STATE_WINDOW_H

#include "datatype/timestamp.h"

#include "stream_state.h"

#define SSTATE_NO_TIME	PG_INT64_MIN

extern int64 sstate_floor_div(int64 a, int64 b);
extern int64 sstate_gcd(int64 a, int64 b);
extern int64 sstate_interval_us(const Interval *iv, const char *what, bool allow_zero);
extern bool sstate_time_to_unix_us(Datum d, Oid typid, int64 *result);
extern int64 sstate_pane_of(const StreamStateQueryDef *def, int64 unix_us);
extern int64 sstate_watermark(const StreamStateQuery *q);
extern int64 sstate_dead_below(const StreamStateQueryDef *def, int64 watermark);
extern void sstate_window_at(const StreamStateQueryDef *def, int64 at_unix_us,
							 int64 *start_us, int64 *end_us);
extern TimestampTz sstate_unix_us_to_ts(int64 unix_us);
extern int64 sstate_closed_end(const StreamStateQuery *q);
extern int64 sstate_emit_hold(const StreamStateQuery *q);

#endif							/* STREAM_STATE_WINDOW_H */
