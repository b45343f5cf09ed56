/*-------------------------------------------------------------------------
 *
 * query.c
 *	  Query definitions as backends see them: the stream_state.query_def
 *	  catalog, a per-backend cache of it, privileges and key images.
 *
 * The cache is keyed by query name and thrown away whenever the shared
 * definition generation changes; that counter is bumped at the commit of
 * every transaction that created, dropped or re-granted a query
 * (capture.c).  Definitions never change after creation except for their
 * readers, so a stale entry can at worst name a query that was just dropped;
 * the store then has no state for it.
 *
 * IDENTIFICATION
 *	  src/query.c
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/hash.h"
#include "access/htup_details.h"
#include "access/nbtree.h"
#include "catalog/index.h"
#include "catalog/pg_am.h"
#include "catalog/pg_attribute.h"
#include "commands/defrem.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/fmgrprotos.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "query.h"
#include "window.h"

static HTAB *query_cache = NULL;
static MemoryContext query_cache_cxt = NULL;
static uint64 query_cache_generation = 0;

static void cache_validate(void);
static StreamStateQueryInfo *load_query(const char *where, Datum arg, Oid argtype);

/*
 * Forget every cached definition: this transaction changed the catalog (the
 * shared generation only moves at commit), or rolled such a change back.
 */
void
sstate_query_cache_reset(void)
{
	query_cache_generation = 0;
}

static void
cache_validate(void)
{
	uint64		gen = pg_atomic_read_u64(&sstate_shared->def_generation);

	if (query_cache != NULL && gen == query_cache_generation)
		return;
	if (query_cache_cxt == NULL)
		query_cache_cxt = AllocSetContextCreate(CacheMemoryContext,
												"stream_state query cache",
												ALLOCSET_SMALL_SIZES);
	else
		MemoryContextReset(query_cache_cxt);
	{
		HASHCTL		ctl;

		ctl.keysize = NAMEDATALEN;
		ctl.entrysize = sizeof(StreamStateQueryInfo);
		ctl.hcxt = query_cache_cxt;
		query_cache = hash_create("stream_state queries", 64, &ctl,
								  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	}
	query_cache_generation = gen;
}

/*
 * The key column's collation; the type's default when the source table or
 * its column is gone (the query is then "source dropped").
 */
static Oid
key_column_collation(const StreamStateQueryInfo *info)
{
	HeapTuple	tup = SearchSysCache2(ATTNUM, ObjectIdGetDatum(info->source),
									  Int16GetDatum(info->key_attnum));
	Oid			collation;

	if (!HeapTupleIsValid(tup))
		return get_typcollation(info->key_type);
	collation = ((Form_pg_attribute) GETSTRUCT(tup))->attcollation;
	ReleaseSysCache(tup);
	return collation;
}

/*
 * Fill the derived fields of a definition: type facts, the worker's view.
 */
void
sstate_query_fill(StreamStateQueryInfo *info)
{
	Oid			outfn;
	bool		isvarlena;

	MemoryContext cxt = query_cache_cxt ? query_cache_cxt : CurrentMemoryContext;

	info->def.id = info->id;
	info->def.processing_time = (info->time_attnum == 0);
	info->def.sql = (info->query_text != NULL);
	info->def.emit = (info->emit_to != NULL);
	info->def.late = (info->late_to != NULL);
	strlcpy(info->def.name, info->name, NAMEDATALEN);
	if (info->query_text != NULL)
	{
		/* a query in SQL: its keys are its analysis's (cq_capture.c) */
		info->def.sql = true;
		info->def.key_classed = false;
		return;
	}
	get_typlenbyval(info->key_type, &info->key_typlen, &info->key_typbyval);
	info->key_norm = sstate_key_norm_for_type(info->key_type);
	getTypeOutputInfo(info->key_type, &outfn, &isvarlena);
	fmgr_info_cxt(outfn, &info->key_out, cxt);
	info->key_collation = key_column_collation(info);
	info->def.id = info->id;
	info->def.processing_time = (info->time_attnum == 0);
	info->def.key_classed = !sstate_key_by_image(info->key_type, info->key_collation);
	if (info->def.key_classed)
	{
		Oid			opclass = GetDefaultOpClass(info->key_type, HASH_AM_OID);
		Oid			family;
		Oid			input;
		Oid			eqop;

		if (!OidIsValid(opclass))
			elog(ERROR, "stream_state: key type %s has no default hash operator class",
				 format_type_be(info->key_type));
		family = get_opclass_family(opclass);
		input = get_opclass_input_type(opclass);
		eqop = get_opfamily_member(family, input, input, HTEqualStrategyNumber);
		fmgr_info_cxt(get_opfamily_proc(family, input, input, HASHSTANDARD_PROC),
					  &info->key_hash, cxt);
		fmgr_info_cxt(get_opcode(eqop), &info->key_eq, cxt);
	}
	strlcpy(info->def.name, info->name, NAMEDATALEN);
}

/*
 * Does this database's catalog have this column of query_def (query and
 * view: 0.5.0; emit_to: 0.6.0; late_to: 0.7.0)?  A database whose extension is older reads
 * its queries without them.
 */
static bool
catalog_has_column(const char *column)
{
	Oid			nsp = get_namespace_oid("stream_state", true);
	Oid			rel = OidIsValid(nsp) ? get_relname_relid("query_def", nsp) : InvalidOid;

	return OidIsValid(rel) && get_attnum(rel, column) != InvalidAttrNumber;
}

/*
 * Read one definition from the catalog into the cache.  Returns NULL if
 * there is no such row.
 */
static StreamStateQueryInfo *
load_query(const char *where, Datum arg, Oid argtype)
{
	StreamStateQueryInfo *result = NULL;
	StringInfoData sql;
	int			ret;

	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "SELECT id, name, source, key_attnum, key_type, "
					 "coalesce(time_attnum, 0), coalesce(time_type, 0), "
					 "window_size, slide, lateness, owner, readers, backend, %s, %s, %s "
					 "FROM stream_state.query_def WHERE %s = $1",
					 catalog_has_column("query") ? "query, view" : "NULL::text, NULL::text",
					 catalog_has_column("emit_to") ? "emit_to, retention, session_gap" :
					 "NULL::text, NULL::interval, NULL::interval",
					 catalog_has_column("late_to") ? "late_to" : "NULL::text",
					 where);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = SPI_execute_with_args(sql.data, 1, &argtype, &arg, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read stream_state.query_def: %s",
			 SPI_result_code_string(ret));
	if (SPI_processed == 1)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		char	   *name = TextDatumGetCString(SPI_getbinval(tup, desc, 2, &isnull));
		bool		found;
		StreamStateQueryInfo *info;
		int64		window_us,
					slide_us;
		ArrayType  *readers;

		info = hash_search(query_cache, name, HASH_ENTER, &found);
		info->id = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
		info->source = DatumGetObjectId(SPI_getbinval(tup, desc, 3, &isnull));
		info->key_attnum = DatumGetInt16(SPI_getbinval(tup, desc, 4, &isnull));
		if (isnull)
			info->key_attnum = 0;
		info->key_type = DatumGetObjectId(SPI_getbinval(tup, desc, 5, &isnull));
		if (isnull)
			info->key_type = InvalidOid;
		{
			Datum		qd = SPI_getbinval(tup, desc, 14, &isnull);

			info->query_text = isnull ? NULL :
				MemoryContextStrdup(query_cache_cxt, TextDatumGetCString(qd));
			qd = SPI_getbinval(tup, desc, 15, &isnull);
			info->view = isnull ? NULL :
				MemoryContextStrdup(query_cache_cxt, TextDatumGetCString(qd));
			qd = SPI_getbinval(tup, desc, 16, &isnull);
			info->emit_to = isnull ? NULL :
				MemoryContextStrdup(query_cache_cxt, TextDatumGetCString(qd));
			qd = SPI_getbinval(tup, desc, 17, &isnull);
			info->def.retention_us = isnull ? 0 :
				sstate_interval_us(DatumGetIntervalP(qd), "retention", true);
			qd = SPI_getbinval(tup, desc, 18, &isnull);
			info->def.session_gap_us = isnull ? 0 :
				sstate_interval_us(DatumGetIntervalP(qd), "session_gap", false);
			qd = SPI_getbinval(tup, desc, 19, &isnull);
			info->late_to = isnull ? NULL :
				MemoryContextStrdup(query_cache_cxt, TextDatumGetCString(qd));
		}
		info->time_attnum = DatumGetInt16(SPI_getbinval(tup, desc, 6, &isnull));
		info->time_type = DatumGetObjectId(SPI_getbinval(tup, desc, 7, &isnull));
		window_us = sstate_interval_us(DatumGetIntervalP(SPI_getbinval(tup, desc, 8, &isnull)),
									   "window_size", false);
		slide_us = sstate_interval_us(DatumGetIntervalP(SPI_getbinval(tup, desc, 9, &isnull)),
									  "slide", false);
		info->def.window_us = window_us;
		info->def.slide_us = slide_us;
		info->def.pane_us = sstate_gcd(window_us, slide_us);
		info->def.lateness_us = sstate_interval_us(DatumGetIntervalP(SPI_getbinval(tup, desc, 10, &isnull)),
												   "lateness", true);
		info->owner = DatumGetObjectId(SPI_getbinval(tup, desc, 11, &isnull));
		{
			char	   *backend = TextDatumGetCString(SPI_getbinval(tup, desc, 13, &isnull));

			info->def.backend = (strcmp(backend, "rocksdb") == 0) ? SSB_ROCKSDB : SSB_MEMORY;
		}
		readers = DatumGetArrayTypeP(SPI_getbinval(tup, desc, 12, &isnull));
		{
			Datum	   *elems;
			int			n;
			int			i;

			deconstruct_array(readers, REGROLEOID, sizeof(Oid), true, TYPALIGN_INT,
							  &elems, NULL, &n);
			info->nreaders = n;
			info->readers = MemoryContextAlloc(query_cache_cxt,
											   sizeof(Oid) * Max(n, 1));
			for (i = 0; i < n; i++)
				info->readers[i] = DatumGetObjectId(elems[i]);
		}
		sstate_query_fill(info);
		result = info;
	}
	SPI_finish();
	return result;
}

StreamStateQueryInfo *
sstate_query_by_name(const char *name, bool missing_ok)
{
	StreamStateQueryInfo *info;

	sstate_shmem_check();
	cache_validate();
	if (strlen(name) < NAMEDATALEN)
	{
		info = hash_search(query_cache, name, HASH_FIND, NULL);
		if (info == NULL)
			info = load_query("name", CStringGetTextDatum(name), TEXTOID);
		if (info != NULL)
			return info;
	}
	if (!missing_ok)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("continuous query \"%s\" does not exist", name),
				 errhint("See stream_state.queries for the defined queries.")));
	return NULL;
}

StreamStateQueryInfo *
sstate_query_by_id(int32 id)
{
	HASH_SEQ_STATUS seq;
	StreamStateQueryInfo *info;

	sstate_shmem_check();
	cache_validate();
	hash_seq_init(&seq, query_cache);
	while ((info = hash_seq_search(&seq)) != NULL)
	{
		if (info->id == id)
		{
			hash_seq_term(&seq);
			return info;
		}
	}
	return load_query("id", Int32GetDatum(id), INT4OID);
}

bool
sstate_query_can_read(const StreamStateQueryInfo *info)
{
	Oid			me = GetUserId();
	int			i;

	if (has_privs_of_role(me, info->owner))
		return true;
	for (i = 0; i < info->nreaders; i++)
		if (has_privs_of_role(me, info->readers[i]))
			return true;
	return false;
}

void
sstate_query_check_read(const StreamStateQueryInfo *info)
{
	if (!sstate_query_can_read(info))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for continuous query \"%s\"", info->name),
				 errhint("The owner of the query can allow reads with stream_state.grant_read().")));
}

void
sstate_query_check_owner(const StreamStateQueryInfo *info)
{
	if (!has_privs_of_role(GetUserId(), info->owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of continuous query \"%s\"", info->name)));
}

/*
 * The role that owns the extension's schema: catalog writes and trigger
 * creation run as it.
 */
Oid
sstate_extension_owner(void)
{
	Oid			nsp = get_namespace_oid("stream_state", false);
	HeapTuple	tup;
	Oid			owner;

	tup = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(nsp));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for namespace %u", nsp);
	owner = ((Form_pg_namespace) GETSTRUCT(tup))->nspowner;
	ReleaseSysCache(tup);
	return owner;
}

uint8
sstate_key_norm_for_type(Oid typid)
{
	switch (typid)
	{
		case NUMERICOID:
			return SSTATE_NORM_NUMERIC;
		case FLOAT4OID:
			return SSTATE_NORM_FLOAT4;
		case FLOAT8OID:
			return SSTATE_NORM_FLOAT8;
		default:
			return SSTATE_NORM_NONE;
	}
}

/*
 * The canonical form of a key whose equal values can differ in bytes (in
 * the current memory context).
 */
Datum
sstate_key_normalize(uint8 norm, Datum d)
{
	switch (norm)
	{
		case SSTATE_NORM_NUMERIC:
			return DirectFunctionCall1(numeric_trim_scale, d);
		case SSTATE_NORM_FLOAT4:
			{
				float4		v = DatumGetFloat4(d);

				if (isnan(v))
					return Float4GetDatum(get_float4_nan());
				return Float4GetDatum(v == 0 ? 0.0f : v);
			}
		case SSTATE_NORM_FLOAT8:
			{
				float8		v = DatumGetFloat8(d);

				if (isnan(v))
					return Float8GetDatum(get_float8_nan());
				return Float8GetDatum(v == 0 ? 0.0 : v);
			}
		default:
			return d;
	}
}

/*
 * Whether equal values of a key type (with this collation) always have equal
 * images, once brought to their canonical form (sstate_key_normalize): the
 * btree "equalimage" support function says so, or we normalize the type.
 */
bool
sstate_key_by_image(Oid keytype, Oid collation)
{
	Oid			opclass = GetDefaultOpClass(keytype, BTREE_AM_OID);

	if (sstate_key_norm_for_type(keytype) != SSTATE_NORM_NONE)
		return true;
	if (OidIsValid(opclass))
	{
		Oid			opfamily = get_opclass_family(opclass);
		Oid			input = get_opclass_input_type(opclass);
		Oid			proc = get_opfamily_proc(opfamily, input, input, BTEQUALIMAGE_PROC);

		if (OidIsValid(proc))
			return DatumGetBool(OidFunctionCall1Coll(proc, collation,
													 ObjectIdGetDatum(keytype)));
	}
	return false;
}

/*
 * The image of a classed key (in the current memory context): the type's
 * 32-bit hash of the value, in native byte order, then the value's bytes.
 * Equal values have equal hashes, so all the images of one value share a
 * prefix, which is what the store hashes (see store_memory.c); images that
 * differ are told apart by the type's equality when read.
 */
void
sstate_key_image_classed(const StreamStateQueryInfo *info, Datum d,
						 const char **img, uint32 *len)
{
	uint32		hash = DatumGetUInt32(FunctionCall1Coll((FmgrInfo *) &info->key_hash,
														info->key_collation, d));
	const char *raw;
	uint32		rawlen;
	char		buf[SSTATE_KEYBUF];
	char	   *out;

	if (info->key_typbyval)
	{
		store_att_byval(buf, d, info->key_typlen);
		raw = buf;
		rawlen = info->key_typlen;
	}
	else if (info->key_typlen > 0)
	{
		raw = DatumGetPointer(d);
		rawlen = info->key_typlen;
	}
	else if (info->key_typlen == -1)
	{
		struct varlena *v = (struct varlena *) PG_DETOAST_DATUM_PACKED(d);

		raw = VARDATA_ANY(v);
		rawlen = VARSIZE_ANY_EXHDR(v);
	}
	else
	{
		raw = DatumGetCString(d);
		rawlen = strlen(raw);
	}
	out = palloc(SSTATE_CLASS_PREFIX + rawlen);
	memcpy(out, &hash, SSTATE_CLASS_PREFIX);
	memcpy(out + SSTATE_CLASS_PREFIX, raw, rawlen);
	*img = out;
	*len = SSTATE_CLASS_PREFIX + rawlen;
}

/*
 * Whether two images of one query's keys are of equal keys: the same image,
 * or, for classed keys, the same prefix and values the type calls equal.
 */
bool
sstate_key_equal(const StreamStateQueryInfo *info,
				 const char *a, uint32 alen, const char *b, uint32 blen)
{
	if (alen == blen && memcmp(a, b, alen) == 0)
		return true;
	if (!info->def.key_classed || alen < SSTATE_CLASS_PREFIX ||
		blen < SSTATE_CLASS_PREFIX || memcmp(a, b, SSTATE_CLASS_PREFIX) != 0)
		return false;
	return DatumGetBool(FunctionCall2Coll((FmgrInfo *) &info->key_eq, info->key_collation,
										  sstate_key_datum(info, a, alen),
										  sstate_key_datum(info, b, blen)));
}

/*
 * Rebuild a datum of the key type from its image (in the current memory
 * context).
 */
Datum
sstate_key_datum(const StreamStateQueryInfo *info, const char *img, uint32 len)
{
	if (info->def.key_classed && len >= SSTATE_CLASS_PREFIX)
		return sstate_key_datum_raw(info, img + SSTATE_CLASS_PREFIX,
									len - SSTATE_CLASS_PREFIX);
	return sstate_key_datum_raw(info, img, len);
}

/* The same from the value's bytes alone (a classed image without its prefix) */
Datum
sstate_key_datum_raw(const StreamStateQueryInfo *info, const char *img, uint32 len)
{
	if (info->key_typbyval)
	{
		switch (info->key_typlen)
		{
			case 1:
				return CharGetDatum(*img);
			case 2:
				{
					int16		v;

					memcpy(&v, img, sizeof(v));
					return Int16GetDatum(v);
				}
			case 4:
				{
					int32		v;

					memcpy(&v, img, sizeof(v));
					return Int32GetDatum(v);
				}
			default:
				{
					int64		v;

					memcpy(&v, img, sizeof(v));
					return Int64GetDatum(v);
				}
		}
	}
	if (info->key_typlen > 0)
	{
		char	   *p = palloc(len);

		memcpy(p, img, len);
		return PointerGetDatum(p);
	}
	if (info->key_typlen == -1)
	{
		struct varlena *v = palloc(VARHDRSZ + len);

		SET_VARSIZE(v, VARHDRSZ + len);
		memcpy(VARDATA(v), img, len);
		return PointerGetDatum(v);
	}
	return CStringGetDatum(pnstrdup(img, len));
}

char *
sstate_key_text(const StreamStateQueryInfo *info, const char *img, uint32 len)
{
	return OutputFunctionCall((FmgrInfo *) &info->key_out,
							  sstate_key_datum(info, img, len));
}
