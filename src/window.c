/*-------------------------------------------------------------------------
 *
 * window.c
 *	  Panes, windows and watermarks: the time arithmetic of stream_state.
 *
 * Time is kept as microseconds since the Unix epoch (UTC); timestamp
 * without time zone and date are read as UTC.  A query with window w and
 * slide s keeps state in panes of width p = gcd(w, s); pane i covers
 * [i*p, (i+1)*p).  Windows end on multiples of s and cover [end - w, end).
 *
 * Watermark = max event time applied - lateness.  A window is closed when
 * its end <= watermark.  Pane i is dead when the last window containing it,
 * which ends at floor((i*p + w) / s) * s, is closed; dead panes are exactly
 * those below sstate_dead_below(watermark), so eviction and lateness are one
 * comparison.  An event whose pane is dead is late.
 *
 * IDENTIFICATION
 *	  src/window.c
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type_d.h"
#include "common/int.h"
#include "utils/date.h"
#include "utils/timestamp.h"

#include "window.h"

int64
sstate_floor_div(int64 a, int64 b)
{
	int64		q = a / b;

	if ((a % b != 0) && ((a < 0) != (b < 0)))
		q--;
	return q;
}

int64
sstate_gcd(int64 a, int64 b)
{
	while (b != 0)
	{
		int64		t = a % b;

		a = b;
		b = t;
	}
	return a;
}

/*
 * An interval as microseconds, days counting 24 hours.  Months have no fixed
 * length, so they are refused; so are negative values and, unless allowed,
 * zero.  "what" names the argument in the message.
 */
int64
sstate_interval_us(const Interval *iv, const char *what, bool allow_zero)
{
	int64		us;

	if (iv->month != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not contain months or years", what),
				 errdetail("Months and years have no fixed length."),
				 errhint("Use days instead, e.g. '30 days'.")));
	if (pg_mul_s64_overflow((int64) iv->day, USECS_PER_DAY, &us) ||
		pg_add_s64_overflow(us, iv->time, &us))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is out of range", what)));
	if (us < 0 || (us == 0 && !allow_zero))
	{
		if (allow_zero)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s must not be negative", what)));
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s must be a positive interval", what)));
	}
	return us;
}

/*
 * Convert an event time of type timestamptz, timestamp or date to Unix
 * microseconds.  Returns false for infinite values, which are not counted.
 */
bool
sstate_time_to_unix_us(Datum d, Oid typid, int64 *result)
{
	int64		pg_us;

	switch (typid)
	{
		case TIMESTAMPTZOID:
		case TIMESTAMPOID:
			pg_us = DatumGetInt64(d);
			if (TIMESTAMP_NOT_FINITE(pg_us))
				return false;
			break;
		case DATEOID:
			{
				DateADT		day = DatumGetDateADT(d);

				if (DATE_NOT_FINITE(day))
					return false;
				pg_us = (int64) day * USECS_PER_DAY;
				break;
			}
		default:
			elog(ERROR, "unexpected event time type %u", typid);
			return false;
	}
	*result = pg_us + STREAM_STATE_UNIX_OFFSET_US;
	return true;
}

TimestampTz
sstate_unix_us_to_ts(int64 unix_us)
{
	return (TimestampTz) (unix_us - STREAM_STATE_UNIX_OFFSET_US);
}

int64
sstate_pane_of(const StreamStateQueryDef *def, int64 unix_us)
{
	return sstate_floor_div(unix_us, def->pane_us);
}

int64
sstate_watermark(const StreamStateQuery *q)
{
	if (q->max_event_us == SSTATE_NO_TIME)
		return SSTATE_NO_TIME;
	return q->max_event_us - q->def.lateness_us;
}

/*
 * Lowest pane index that is still alive under this watermark.
 */
int64
sstate_dead_below(const StreamStateQueryDef *def, int64 watermark)
{
	int64		next_end;

	if (watermark == SSTATE_NO_TIME)
		return PG_INT64_MIN;
	next_end = (sstate_floor_div(watermark, def->slide_us) + 1) * def->slide_us;
	return (next_end - def->window_us) / def->pane_us;
}

/*
 * The end of the last closed window (every window ending at or before it
 * is closed), or SSTATE_NO_TIME before the first event.
 */
int64
sstate_closed_end(const StreamStateQuery *q)
{
	int64		wm = sstate_watermark(q);

	if (wm == SSTATE_NO_TIME)
		return SSTATE_NO_TIME;
	return sstate_floor_div(wm, q->def.slide_us) * q->def.slide_us;
}

/*
 * The lowest pane a query keeps for emit_to (emit.c): the first pane of the
 * first window not emitted yet; every pane before anything is known to be
 * emitted.  PG_INT64_MAX for a query without emit_to.
 */
int64
sstate_emit_hold(const StreamStateQuery *q)
{
	if (!q->def.emit)
		return PG_INT64_MAX;
	if (!q->emit_known || q->emitted_end == SSTATE_NO_TIME)
		return PG_INT64_MIN;
	return sstate_floor_div(q->emitted_end + q->def.slide_us - q->def.window_us, q->def.pane_us);
}

/*
 * The window that contains "at" and closes next: end is the first slide
 * boundary strictly after at.
 */
void
sstate_window_at(const StreamStateQueryDef *def, int64 at_unix_us,
				 int64 *start_us, int64 *end_us)
{
	*end_us = (sstate_floor_div(at_unix_us, def->slide_us) + 1) * def->slide_us;
	*start_us = *end_us - def->window_us;
}
