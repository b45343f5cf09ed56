/*-------------------------------------------------------------------------
 *
 * delta.h
 *	  The stream_state message format: encode and decode.
 *
 * IDENTIFICATION
 *	  src/delta.h
 *-------------------------------------------------------------------------
 */
#ifndef STREAM_STATE_DELTA_H
#define STREAM_STATE_DELTA_H

#include "lib/stringinfo.h"

#include "stream_state.h"

#define STREAM_STATE_DELTA_VERSION	1

typedef enum StreamStateMsgKind
{
	SSM_DATA = 1,
	SSM_CREATE = 2,
	SSM_DROP = 3,
	SSM_DROP_EXTENSION = 4,
	SSM_RESET = 5,				/* the source was truncated */
	SSM_SET_BACKEND = 6,		/* the query moves to another backend (0.4.0) */
	SSM_ALTER = 7				/* the query's lateness changes (0.5.0) */
} StreamStateMsgKind;

#define SSM_FLAG_NO_PANE	0x01	/* processing time: pane known at commit */
#define SSM_FLAG_HAS_MAX	0x02	/* max_event_us present */
#define SSM_FLAG_VALUES		0x04	/* entries carry partial states (0.5.0) */

/* flags of a definition (CREATE); version 1 readers before 0.3.0 know bit 0 */
#define SSM_DEF_PROCESSING_TIME	0x01
#define SSM_DEF_KEY_CLASSED		0x02	/* key images start with the type's hash */
#define SSM_DEF_ROCKSDB			0x04	/* state in RocksDB (0.4.0) */
#define SSM_DEF_SQL				0x08	/* a query in SQL: its aggregates follow (0.5.0) */
#define SSM_DEF_EMIT			0x10	/* closed windows go to a table (0.6.0) */
#define SSM_DEF_RETENTION		0x20	/* a retention follows the name (0.6.0) */
#define SSM_DEF_SESSION			0x40	/* session windows: the gap follows (0.6.0) */
#define SSM_DEF_LATE			0x80	/* late groups go to a table (0.7.0) */

/* What an ALTER message changes besides the lateness (0.6.0; absent before) */
#define SSM_ALTER_RETENTION		0x01
#define SSM_ALTER_EMIT			0x02
#define SSM_ALTER_LATE			0x04	/* 0.7.0: late_to on or off follows */

typedef struct StreamStateDeltaQuery
{
	int32		qid;
	uint8		flags;
	uint64		skipped;
	int64		max_event_us;
	uint64		nentries;
} StreamStateDeltaQuery;

typedef struct StreamStateDeltaEntry
{
	const char *key;
	uint32		keylen;
	int64		pane;
	int64		count;
	const char *value;			/* SSM_FLAG_VALUES: the partial states */
	uint32		valuelen;
} StreamStateDeltaEntry;

typedef struct StreamStateDeltaReader
{
	const char *p;
	const char *end;
	uint8		version;
	uint8		kind;
	uint64		entries_left;
	uint8		flags;
} StreamStateDeltaReader;

/* encoding */
extern void sstate_delta_begin(StringInfo buf, StreamStateMsgKind kind);
extern void sstate_delta_put_query(StringInfo buf, const StreamStateDeltaQuery *q);
extern void sstate_delta_put_entry(StringInfo buf, uint8 flags,
								   const char *key, uint32 keylen,
								   int64 pane, int64 count);
extern void sstate_delta_put_def(StringInfo buf, const StreamStateQueryDef *def);
extern void sstate_delta_put_value(StringInfo buf, const char *value, uint32 len);
extern void sstate_delta_put_layout(StringInfo buf, int naggs, const void *aggs, Size aggsize);
extern void sstate_delta_put_qid(StringInfo buf, int32 qid);
extern void sstate_delta_put_backend(StringInfo buf, int32 qid, uint8 backend);
extern void sstate_delta_put_alter(StringInfo buf, int32 qid, int64 lateness_us,
								   const int64 *retention_us, const bool *emit,
								   const bool *late);

/* decoding: each returns false on a malformed message */
extern bool sstate_delta_open(StreamStateDeltaReader *r, const char *data, Size len);
extern bool sstate_delta_next_query(StreamStateDeltaReader *r,
									StreamStateDeltaQuery *q, bool *done);
extern bool sstate_delta_next_entry(StreamStateDeltaReader *r,
									StreamStateDeltaEntry *e);
extern bool sstate_delta_get_def(StreamStateDeltaReader *r, StreamStateQueryDef *def);
extern bool sstate_delta_get_layout(StreamStateDeltaReader *r, int *naggs, const char **aggs,
									Size aggsize);
extern bool sstate_delta_get_qid(StreamStateDeltaReader *r, int32 *qid);
extern bool sstate_delta_get_backend(StreamStateDeltaReader *r, int32 *qid, uint8 *backend);
extern bool sstate_delta_get_alter(StreamStateDeltaReader *r, int32 *qid, int64 *lateness_us,
								   uint8 *what, int64 *retention_us, bool *emit,
								   bool *late);

#endif							/* STREAM_STATE_DELTA_H */
