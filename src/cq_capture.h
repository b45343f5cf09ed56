/*-------------------------------------------------------------------------
 *
 * cq_capture.h
 *	  Capture and key images of continuous queries in SQL (cq_capture.c).
 *
 * IDENTIFICATION
 *	  src/cq_capture.h
 *-------------------------------------------------------------------------
 */
#ifndef STREAM_STATE_CQ_CAPTURE_H
#define STREAM_STATE_CQ_CAPTURE_H

#include "executor/tuptable.h"
#include "lib/stringinfo.h"

#include "capture.h"
#include "cq_agg.h"

typedef struct CqCompiled CqCompiled;

extern CqCompiled *sstate_cq_compiled(const StreamStateQueryInfo *info);
extern StreamStateCqAnalysis *sstate_cq_compiled_analysis(CqCompiled *c);
extern StreamStateCqAggFns *sstate_cq_compiled_fns(CqCompiled *c);
extern void sstate_cq_key_image(CqCompiled *c, const Datum *values, const bool *nulls,
								StringInfo out);
extern bool sstate_cq_key_values(CqCompiled *c, const char *img, uint32 imglen,
								 Datum *values, bool *nulls);
extern void sstate_cq_capture_rows(const StreamStateQueryInfo *info, TupleTableSlot *slot,
								   bool (*next) (void *arg, TupleTableSlot *slot), void *arg);

/* groups carried between the statements of a (sub)transaction (cq_capture.c) */
extern void sstate_cq_carry_flush_all(void);
extern void sstate_cq_carry_end_sub(int nest, bool commit);
extern void sstate_cq_carry_discard(int32 qid, int nest);
extern void sstate_cq_carry_forget(void);

#endif							/* STREAM_STATE_CQ_CAPTURE_H */
