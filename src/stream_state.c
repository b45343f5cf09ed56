/*-------------------------------------------------------------------------
 *
 * stream_state.c
 *	  Entry point of the stream_state library: a table of contents.
 *
 * The library must be preloaded (shared_preload_libraries): it sizes shared
 * memory and registers the launcher worker.  Loaded any other way it only
 * defines its GUCs, and every SQL entry point says it is not preloaded.
 *
 * IDENTIFICATION
 *	  src/stream_state.c
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"

#include "stream_state.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	sstate_guc_define();		/* guc.c */
	sstate_capture_init();		/* capture.c: transaction callbacks */
	sstate_sql_api_init();		/* sql_api.c: capture triggers restored */

	if (!process_shared_preload_libraries_in_progress)
		return;

	sstate_shmem_install_hooks();	/* shmem.c */
	sstate_worker_register_launcher();	/* worker.c */
}
