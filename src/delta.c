/*-------------------------------------------------------------------------
 *
 * delta.c
 *	  Encode and decode stream_state's transactional WAL messages.
 *
 * Every message is written with LogLogicalMessage(prefix "stream_state",
 * transactional) and starts with two bytes: format version, then kind.
 * Integers are LEB128 varints, signed ones zigzag-encoded first.
 *
 *   DATA            { qid, flags:byte, skipped, [max_event_us],
 *                     nentries, nentries * entry }...   until the end
 *       entry       keylen, key bytes, [pane], count
 *                   (pane absent with SSM_FLAG_NO_PANE: processing time;
 *                    max_event_us present with SSM_FLAG_HAS_MAX)
 *   CREATE          qid, flags:byte (bit 0: processing time, bit 1: classed
 *                   key, bit 2: rocksdb backend), pane_us, window_us,
 *                   slide_us, lateness_us, name length, name
 *   DROP            qid
 *   DROP_EXTENSION  (nothing)
 *   RESET           qid (its source was truncated: its state is emptied)
 *   SET_BACKEND     qid, backend:byte (0.4.0: move the query's state)
 *
 * Compatibility rule: a reader of version N reads versions N-1 and N; a
 * message of an unknown version is reported and skipped, never applied
 * half-understood.  The decoder never raises an ERROR: it returns false,
 * since the worker must be able to skip a message it cannot read.
 *
 * IDENTIFICATION
 *	  src/delta.c
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "delta.h"

/* Write v at p (room for 10 bytes); returns the bytes written. */
static inline int
uvarint_raw(char *p, uint64 v)
{
	int			n = 0;

	while (v >= 0x80)
	{
		p[n++] = (char) ((v & 0x7f) | 0x80);
		v >>= 7;
	}
	p[n++] = (char) v;
	return n;
}

static inline uint64
zigzag(int64 v)
{
	return ((uint64) v << 1) ^ (uint64) (v >> 63);
}

static inline void
put_uvarint(StringInfo buf, uint64 v)
{
	char		tmp[10];
	int			n = 0;

	do
	{
		uint8		b = v & 0x7f;

		v >>= 7;
		if (v)
			b |= 0x80;
		tmp[n++] = (char) b;
	} while (v);
	appendBinaryStringInfoNT(buf, tmp, n);
}

static inline void
put_svarint(StringInfo buf, int64 v)
{
	put_uvarint(buf, ((uint64) v << 1) ^ (uint64) (v >> 63));
}

static inline bool
get_uvarint(StreamStateDeltaReader *r, uint64 *v)
{
	uint64		result = 0;
	int			shift = 0;

	while (r->p < r->end && shift < 64)
	{
		uint8		b = (uint8) *r->p++;

		result |= (uint64) (b & 0x7f) << shift;
		if ((b & 0x80) == 0)
		{
			*v = result;
			return true;
		}
		shift += 7;
	}
	return false;
}

static inline bool
get_svarint(StreamStateDeltaReader *r, int64 *v)
{
	uint64		u;

	if (!get_uvarint(r, &u))
		return false;
	*v = (int64) (u >> 1) ^ -((int64) (u & 1));
	return true;
}

static inline bool
get_byte(StreamStateDeltaReader *r, uint8 *v)
{
	if (r->p >= r->end)
		return false;
	*v = (uint8) *r->p++;
	return true;
}

void
sstate_delta_begin(StringInfo buf, StreamStateMsgKind kind)
{
	appendStringInfoChar(buf, (char) STREAM_STATE_DELTA_VERSION);
	appendStringInfoChar(buf, (char) kind);
}

void
sstate_delta_put_query(StringInfo buf, const StreamStateDeltaQuery *q)
{
	put_uvarint(buf, (uint64) q->qid);
	appendStringInfoChar(buf, (char) q->flags);
	put_uvarint(buf, q->skipped);
	if (q->flags & SSM_FLAG_HAS_MAX)
		put_svarint(buf, q->max_event_us);
	put_uvarint(buf, q->nentries);
}

/* The hot path of a flush: one size check per entry. */
void
sstate_delta_put_entry(StringInfo buf, uint8 flags, const char *key,
					   uint32 keylen, int64 pane, int64 count)
{
	char	   *p;

	enlargeStringInfo(buf, 30 + keylen);
	p = buf->data + buf->len;
	p += uvarint_raw(p, keylen);
	memcpy(p, key, keylen);
	p += keylen;
	if (!(flags & SSM_FLAG_NO_PANE))
		p += uvarint_raw(p, zigzag(pane));
	p += uvarint_raw(p, (uint64) count);
	buf->len = p - buf->data;
	buf->data[buf->len] = '\0';
}

void
sstate_delta_put_def(StringInfo buf, const StreamStateQueryDef *def)
{
	size_t		namelen = strlen(def->name);

	put_uvarint(buf, (uint64) def->id);
	appendStringInfoChar(buf, (def->processing_time ? SSM_DEF_PROCESSING_TIME : 0) |
						 (def->key_classed ? SSM_DEF_KEY_CLASSED : 0) |
						 (def->backend == SSB_ROCKSDB ? SSM_DEF_ROCKSDB : 0) |
						 (def->sql ? SSM_DEF_SQL : 0) |
						 (def->emit ? SSM_DEF_EMIT : 0) |
						 (def->retention_us > 0 ? SSM_DEF_RETENTION : 0) |
						 (def->session_gap_us > 0 ? SSM_DEF_SESSION : 0) |
						 (def->late ? SSM_DEF_LATE : 0));
	put_svarint(buf, def->pane_us);
	put_svarint(buf, def->window_us);
	put_svarint(buf, def->slide_us);
	put_svarint(buf, def->lateness_us);
	put_uvarint(buf, namelen);
	appendBinaryStringInfoNT(buf, def->name, namelen);
	if (def->retention_us > 0)
		put_svarint(buf, def->retention_us);
	if (def->session_gap_us > 0)
		put_svarint(buf, def->session_gap_us);
}

void
sstate_delta_put_qid(StringInfo buf, int32 qid)
{
	put_uvarint(buf, (uint64) qid);
}

void
sstate_delta_put_backend(StringInfo buf, int32 qid, uint8 backend)
{
	put_uvarint(buf, (uint64) qid);
	appendStringInfoChar(buf, (char) backend);
}

void
sstate_delta_put_alter(StringInfo buf, int32 qid, int64 lateness_us, const int64 *retention_us,
					   const bool *emit, const bool *late)
{
	put_uvarint(buf, (uint64) qid);
	put_svarint(buf, lateness_us);
	appendStringInfoChar(buf, (retention_us ? SSM_ALTER_RETENTION : 0) | (emit ? SSM_ALTER_EMIT : 0) |
						 (late ? SSM_ALTER_LATE : 0));
	if (retention_us)
		put_svarint(buf, *retention_us);
	if (emit)
		appendStringInfoChar(buf, *emit ? 1 : 0);
	if (late)
		appendStringInfoChar(buf, *late ? 1 : 0);
}

bool
sstate_delta_open(StreamStateDeltaReader *r, const char *data, Size len)
{
	r->p = data;
	r->end = data + len;
	r->entries_left = 0;
	r->flags = 0;
	r->version = 0;
	r->kind = 0;
	if (!get_byte(r, &r->version) || !get_byte(r, &r->kind))
		return false;
	if (r->version != STREAM_STATE_DELTA_VERSION)
		return false;
	return r->kind >= SSM_DATA && r->kind <= SSM_ALTER;
}

/*
 * Read the next query section header of a DATA message.  *done is set when
 * the message has no more sections.  Entries of the previous section must
 * have been read.
 */
bool
sstate_delta_next_query(StreamStateDeltaReader *r, StreamStateDeltaQuery *q,
						bool *done)
{
	uint64		qid;

	*done = false;
	if (r->entries_left != 0)
		return false;
	if (r->p == r->end)
	{
		*done = true;
		return true;
	}
	if (!get_uvarint(r, &qid) || qid > PG_INT32_MAX ||
		!get_byte(r, &q->flags) ||
		!get_uvarint(r, &q->skipped))
		return false;
	q->qid = (int32) qid;
	q->max_event_us = PG_INT64_MIN;
	if ((q->flags & SSM_FLAG_HAS_MAX) && !get_svarint(r, &q->max_event_us))
		return false;
	if (!get_uvarint(r, &q->nentries))
		return false;
	r->entries_left = q->nentries;
	r->flags = q->flags;
	return true;
}

bool
sstate_delta_next_entry(StreamStateDeltaReader *r, StreamStateDeltaEntry *e)
{
	uint64		keylen;
	uint64		count;

	if (r->entries_left == 0)
		return false;
	if (!get_uvarint(r, &keylen) || keylen > (uint64) (r->end - r->p))
		return false;
	e->key = r->p;
	e->keylen = (uint32) keylen;
	r->p += keylen;
	e->pane = 0;
	if (!(r->flags & SSM_FLAG_NO_PANE) && !get_svarint(r, &e->pane))
		return false;
	if (!get_uvarint(r, &count) || count > PG_INT64_MAX)
		return false;
	e->count = (int64) count;
	e->value = NULL;
	e->valuelen = 0;
	if (r->flags & SSM_FLAG_VALUES)
	{
		uint64		vlen;

		if (!get_uvarint(r, &vlen) || vlen > (uint64) (r->end - r->p))
			return false;
		e->value = r->p;
		e->valuelen = (uint32) vlen;
		r->p += vlen;
	}
	r->entries_left--;
	return true;
}

/* After sstate_delta_put_entry of a values section: the partial states */
void
sstate_delta_put_value(StringInfo buf, const char *value, uint32 len)
{
	put_uvarint(buf, len);
	appendBinaryStringInfoNT(buf, value, len);
}

/*
 * After the definition of a query in SQL: its aggregates as the worker
 * knows them (plain structs of this build: WAL is read where it is written).
 */
void
sstate_delta_put_layout(StringInfo buf, int naggs, const void *aggs, Size aggsize)
{
	put_uvarint(buf, (uint64) naggs);
	put_uvarint(buf, (uint64) aggsize);
	appendBinaryStringInfoNT(buf, aggs, aggsize * naggs);
}

bool
sstate_delta_get_layout(StreamStateDeltaReader *r, int *naggs, const char **aggs, Size aggsize)
{
	uint64		n;
	uint64		size;

	if (!get_uvarint(r, &n) || !get_uvarint(r, &size) || size != aggsize || n > 1000 ||
		n * size > (uint64) (r->end - r->p))
		return false;
	*naggs = (int) n;
	*aggs = r->p;
	r->p += n * size;
	return true;
}

bool
sstate_delta_get_def(StreamStateDeltaReader *r, StreamStateQueryDef *def)
{
	uint64		qid;
	uint64		namelen;
	uint8		flags;

	memset(def, 0, sizeof(*def));
	if (!get_uvarint(r, &qid) || qid > PG_INT32_MAX ||
		!get_byte(r, &flags) ||
		!get_svarint(r, &def->pane_us) ||
		!get_svarint(r, &def->window_us) ||
		!get_svarint(r, &def->slide_us) ||
		!get_svarint(r, &def->lateness_us) ||
		!get_uvarint(r, &namelen) ||
		namelen >= NAMEDATALEN || namelen > (uint64) (r->end - r->p))
		return false;
	if (def->pane_us <= 0 || def->window_us <= 0 || def->slide_us <= 0 ||
		def->lateness_us < 0)
		return false;
	def->id = (int32) qid;
	def->processing_time = (flags & SSM_DEF_PROCESSING_TIME) != 0;
	def->key_classed = (flags & SSM_DEF_KEY_CLASSED) != 0;
	def->backend = (flags & SSM_DEF_ROCKSDB) ? SSB_ROCKSDB : SSB_MEMORY;
	def->sql = (flags & SSM_DEF_SQL) != 0;
	def->emit = (flags & SSM_DEF_EMIT) != 0;
	def->late = (flags & SSM_DEF_LATE) != 0;
	memcpy(def->name, r->p, namelen);
	def->name[namelen] = '\0';
	r->p += namelen;
	if ((flags & SSM_DEF_RETENTION) &&
		(!get_svarint(r, &def->retention_us) || def->retention_us <= 0))
		return false;
	if ((flags & SSM_DEF_SESSION) &&
		(!get_svarint(r, &def->session_gap_us) || def->session_gap_us <= 0))
		return false;
	return true;
}

bool
sstate_delta_get_qid(StreamStateDeltaReader *r, int32 *qid)
{
	uint64		v;

	if (!get_uvarint(r, &v) || v > PG_INT32_MAX)
		return false;
	*qid = (int32) v;
	return true;
}

bool
sstate_delta_get_backend(StreamStateDeltaReader *r, int32 *qid, uint8 *backend)
{
	uint8		b;

	if (!sstate_delta_get_qid(r, qid) || !get_byte(r, &b) ||
		(b != SSB_MEMORY && b != SSB_ROCKSDB))
		return false;
	*backend = b;
	return true;
}

bool
sstate_delta_get_alter(StreamStateDeltaReader *r, int32 *qid, int64 *lateness_us, uint8 *what,
					   int64 *retention_us, bool *emit, bool *late)
{
	uint8		b;

	*what = 0;
	if (!sstate_delta_get_qid(r, qid) || !get_svarint(r, lateness_us) || *lateness_us < 0)
		return false;
	if (r->p == r->end)
		return true;			/* 0.5.0: the lateness only */
	if (!get_byte(r, what))
		return false;
	if ((*what & SSM_ALTER_RETENTION) && (!get_svarint(r, retention_us) || *retention_us < 0))
		return false;
	if (*what & SSM_ALTER_EMIT)
	{
		if (!get_byte(r, &b))
			return false;
		*emit = (b != 0);
	}
	if (*what & SSM_ALTER_LATE)
	{
		if (!get_byte(r, &b))
			return false;
		*late = (b != 0);
	}
	return true;
}
