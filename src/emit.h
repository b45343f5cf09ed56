/*-------------------------------------------------------------------------
 *
 * emit.h
 *	  emit_to: closed windows of continuous queries in SQL inserted into a
 *	  table exactly once (emit.c).
 *
 * IDENTIFICATION
 *	  src/emit.h
 *-------------------------------------------------------------------------
 */
#ifndef STREAM_STATE_EMIT_H
#define STREAM_STATE_EMIT_H

#include "stream_state.h"

extern void sstate_emit_poll(StreamStateDb *db);
extern bool sstate_emit_busy(void);

#endif							/* STREAM_STATE_EMIT_H */
