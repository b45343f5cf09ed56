-- setup: the extension is loaded by pg_regress (--load-extension); helpers
-- for the other test files live in schema ss_test.
SELECT extname, extversion FROM pg_extension WHERE extname = 'stream_state';
SHOW stream_state.read_consistency;
SHOW stream_state.read_timeout;
SHOW stream_state.memory_limit;
SELECT count(*) AS queries FROM stream_state.queries;
SELECT count(*) AS entries FROM stream_state.state;

CREATE SCHEMA ss_test;
GRANT USAGE ON SCHEMA ss_test TO PUBLIC;

-- The definition of correct: the count per key of the source table's
-- committed rows in the window that contains "at" and closes next.
CREATE FUNCTION ss_test.recount(q text, at timestamptz)
RETURNS TABLE (key text, count bigint)
LANGUAGE plpgsql AS $$
DECLARE
	d	record;
	e	timestamptz;
	s	timestamptz;
	t	text;
BEGIN
	SELECT * INTO d FROM stream_state.query_def WHERE name = q;
	e := to_timestamp((floor(extract(epoch FROM at) / extract(epoch FROM d.slide)) + 1)
					  * extract(epoch FROM d.slide));
	s := e - d.window_size;
	-- timestamp without time zone and date are read as UTC
	IF d.time_type = 'timestamptz'::regtype THEN
		t := format('%I', d.time_column);
	ELSE
		t := format('(%I::timestamp AT TIME ZONE ''UTC'')', d.time_column);
	END IF;
	RETURN QUERY EXECUTE format(
		'SELECT %1$I::text, count(*) FROM %2$s
		  WHERE %3$s >= $1 AND %3$s < $2 AND %1$I IS NOT NULL GROUP BY 1',
		d.key_column, d.source::regclass, t)
		USING s, e;
END $$;

-- Rows that differ between state and recomputation (0 = exact).
CREATE FUNCTION ss_test.mismatches(q text, at timestamptz)
RETURNS bigint
LANGUAGE sql AS $$
	SELECT count(*) FROM (
		(SELECT key, count FROM stream_state.window_counts(q, at)
		 EXCEPT ALL SELECT * FROM ss_test.recount(q, at))
		UNION ALL
		(SELECT * FROM ss_test.recount(q, at)
		 EXCEPT ALL SELECT key, count FROM stream_state.window_counts(q, at))) x
$$;

-- Keys and (key, pane) entries of a query, counted from the state view:
-- the same for every backend (the queries view counts the memory store's
-- entries; RocksDB gives only estimates).
CREATE FUNCTION ss_test.state_keys(q text)
RETURNS bigint
LANGUAGE sql AS $$
	SELECT count(DISTINCT key) FROM stream_state.state WHERE query = q
$$;
CREATE FUNCTION ss_test.state_panes(q text)
RETURNS bigint
LANGUAGE sql AS $$
	SELECT count(*) FROM stream_state.state WHERE query = q
$$;

-- SQLSTATE and message of a statement's error, on one line.
CREATE FUNCTION ss_test.error_of(stmt text)
RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE stmt;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

-- Wait until query q has emitted every window ending at or before upto
-- (emit_to); false after 30 seconds.
CREATE FUNCTION ss_test.wait_emitted(q text, upto timestamptz) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
	FOR i IN 1 .. 600 LOOP
		IF (SELECT emitted_until >= upto FROM stream_state.queries WHERE name = q) THEN
			RETURN true;
		END IF;
		PERFORM pg_sleep(0.05);
	END LOOP;
	RETURN false;
END $$;

-- Wait until the boolean SQL expression cond is true; false after 30
-- seconds.
CREATE FUNCTION ss_test.wait_until(cond text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
	ok boolean;
BEGIN
	FOR i IN 1 .. 600 LOOP
		EXECUTE 'SELECT ' || cond INTO ok;
		IF ok THEN
			RETURN true;
		END IF;
		PERFORM pg_sleep(0.05);
	END LOOP;
	RETURN false;
END $$;
