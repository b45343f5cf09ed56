/*-------------------------------------------------------------------------
 *
 * query.h
 *	  Query definitions as backends see them: catalog lookups, a cache, and
 *	  key images.
 *
 * IDENTIFICATION
 *	  src/query.h
 *-------------------------------------------------------------------------
 */
#ifndef STREAM_STATE_QUERY_H
#define STREAM_STATE_QUERY_H

#include "fmgr.h"

#include "stream_state.h"

typedef struct StreamStateQueryInfo
{
	char		name[NAMEDATALEN];	/* hash key */
	int32		id;
	Oid			source;
	AttrNumber	key_attnum;
	Oid			key_type;
	int16		key_typlen;
	bool		key_typbyval;
	uint8		key_norm;		/* SSTATE_NORM_*: canonical form first */
	Oid			key_collation;	/* the key column's */
	FmgrInfo	key_hash;		/* classed keys: the type's hash function */
	FmgrInfo	key_eq;			/* classed keys: the type's = */
	AttrNumber	time_attnum;	/* 0: processing time */
	Oid			time_type;
	Oid			owner;
	int			nreaders;
	Oid		   *readers;
	StreamStateQueryDef def;
	FmgrInfo	key_out;
	char	   *query_text;		/* a query in SQL (def.sql); else NULL */
	char	   *view;			/* its typed view, qualified and quoted */
	char	   *emit_to;		/* table its closed windows go to, qualified
								 * and quoted; NULL: none */
	char	   *late_to;		/* table its late groups go to (0.7.0),
								 * qualified and quoted; NULL: none */
} StreamStateQueryInfo;

/* Largest key image kept in a stack buffer by callers */
#define SSTATE_KEYBUF	16

/*
 * Key types whose equal values can differ in bytes, brought to one canonical
 * form before their image is taken: numeric (trailing zeros of the scale),
 * float4/float8 (-0 and 0, the NaNs).
 */
#define SSTATE_NORM_NONE	0
#define SSTATE_NORM_NUMERIC	1
#define SSTATE_NORM_FLOAT4	2
#define SSTATE_NORM_FLOAT8	3

extern uint8 sstate_key_norm_for_type(Oid typid);
extern Datum sstate_key_normalize(uint8 norm, Datum d);

extern StreamStateQueryInfo *sstate_query_by_name(const char *name, bool missing_ok);
extern StreamStateQueryInfo *sstate_query_by_id(int32 id);
extern bool sstate_query_min_pane(const StreamStateQueryInfo *info, int64 *pane);
extern bool sstate_query_late_upto(const StreamStateQueryInfo *info, XLogRecPtr after,
								   int64 limit, XLogRecPtr *upto);
extern void sstate_query_fill(StreamStateQueryInfo *info);
extern void sstate_query_cache_reset(void);
extern void sstate_query_check_read(const StreamStateQueryInfo *info);
extern bool sstate_query_can_read(const StreamStateQueryInfo *info);
extern void sstate_query_check_owner(const StreamStateQueryInfo *info);
extern Oid	sstate_extension_owner(void);
extern const char *sstate_backend_name(uint8 backend);
extern uint8 sstate_backend_from_text(const char *name);

extern bool sstate_key_by_image(Oid keytype, Oid collation);
extern void sstate_key_image_classed(const StreamStateQueryInfo *info, Datum d,
									 const char **img, uint32 *len);

/*
 * The binary image of a key: what the state is keyed by.  For most key types
 * equal values have equal images (the btree "equalimage" support function
 * says so, or the value is brought to a canonical form first).  For the
 * others ("classed" keys: jsonb, interval, text with a nondeterministic
 * collation, ...) the image is the type's own hash of the value, then the
 * value's bytes: equal values share the prefix, and readers merge the images
 * of one prefix that the type's equality calls equal (see
 * sstate_key_image_classed).
 */
static inline void
sstate_key_image(const StreamStateQueryInfo *info, Datum d, char *buf,
				 const char **img, uint32 *len)
{
	if (unlikely(info->def.key_classed))
	{
		sstate_key_image_classed(info, d, img, len);
		return;
	}
	if (unlikely(info->key_norm != SSTATE_NORM_NONE))
		d = sstate_key_normalize(info->key_norm, d);
	if (info->key_typbyval)
	{
		store_att_byval(buf, d, info->key_typlen);
		*img = buf;
		*len = info->key_typlen;
	}
	else if (info->key_typlen > 0)
	{
		*img = DatumGetPointer(d);
		*len = info->key_typlen;
	}
	else if (info->key_typlen == -1)
	{
		struct varlena *v = (struct varlena *) PG_DETOAST_DATUM_PACKED(d);

		*img = VARDATA_ANY(v);
		*len = VARSIZE_ANY_EXHDR(v);
	}
	else
	{
		*img = DatumGetCString(d);
		*len = strlen(*img);
	}
}

extern Datum sstate_key_datum(const StreamStateQueryInfo *info, const char *img, uint32 len);
extern Datum sstate_key_datum_raw(const StreamStateQueryInfo *info, const char *img, uint32 len);
extern char *sstate_key_text(const StreamStateQueryInfo *info, const char *img, uint32 len);
extern bool sstate_key_equal(const StreamStateQueryInfo *info,
							 const char *a, uint32 alen, const char *b, uint32 blen);

#endif							/* STREAM_STATE_QUERY_H */
