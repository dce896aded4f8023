-- Connection stats are kept for a while, then pruned (docs/operations.md, "Retention").
--
-- Every SSE stream, long-poll and WebSocket leaves one row in realtime_connection_stats,
-- and nothing removed them: 10,000 clients long-polling with a 25 s wait add 400 rows a
-- second, 34 million a day, for as long as the site runs. Now:
--
-- * realtime.prune_connection_stats(max_age) deletes the rows of connections that ended
--   more than max_age ago (NULL keeps every row). A connection still open is never
--   deleted, however old. The WebSocket sidecar calls it after realtime.prune, as a
--   statement of its own (stats_retention_s); a cron job can call it as well.
-- * It is not part of realtime.prune: prune holds its channels' rows locked until its
--   transaction ends, and publishing to those channels waits for them.
-- * One call deletes at most p_limit rows (100,000 by default; the oldest first), so a
--   first run over a big table is not one long transaction; the next runs take the rest.
-- * The rows are found by connected_at, an index no update touches, so a run with
--   nothing to prune reads only the rows of connections older than the age.
-- * The delete runs as the schema owner (SECURITY DEFINER, pinned search_path): the
--   runtime role keeps no DELETE on the table, so a process can still only add and
--   update rows, never remove rows early.

CREATE INDEX realtime_connection_stats_connected
    ON realtime.realtime_connection_stats (connected_at);

CREATE OR REPLACE FUNCTION realtime.prune_connection_stats(p_max_age interval,
                                                           p_limit integer DEFAULT 100000)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_n bigint;
BEGIN
    IF p_max_age IS NULL THEN
        RETURN 0;
    END IF;
    IF p_max_age < interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'pgcast: the stats age must be >= 0';
    END IF;
    IF p_limit IS NULL OR p_limit < 1 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'pgcast: the stats prune limit must be >= 1';
    END IF;
    DELETE FROM realtime.realtime_connection_stats s
     WHERE s.id IN (SELECT o.id FROM realtime.realtime_connection_stats o
                     WHERE o.connected_at < now() - p_max_age
                       AND o.disconnected_at < now() - p_max_age
                     ORDER BY o.connected_at
                     LIMIT p_limit);
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END $$;

SELECT realtime.apply_grants();
