-- Sweep of dead processes: an instance whose realtime_instances row has not been
-- refreshed for p_stale is gone; its open connection rows are closed and its presence
-- members removed (and open rows of instances with no row at all, once old enough).
-- Returns the number of connection rows closed.
CREATE OR REPLACE FUNCTION realtime.sweep_instances(p_stale interval DEFAULT '30 seconds')
RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_dead   text[];
    v_closed integer;
BEGIN
    WITH d AS (
        DELETE FROM realtime.realtime_instances
         WHERE last_seen_at < now() - p_stale
        RETURNING instance_id)
    SELECT coalesce(array_agg(instance_id), '{}') INTO v_dead FROM d;

    DELETE FROM realtime.realtime_presence WHERE instance_id = ANY (v_dead);

    UPDATE realtime.realtime_connection_stats s
       SET disconnected_at = now(), disconnect_reason = 'instance gone'
     WHERE s.disconnected_at IS NULL
       AND (s.instance_id = ANY (v_dead)
            OR (s.instance_id IS NOT NULL AND s.connected_at < now() - p_stale
                AND NOT EXISTS (SELECT 1 FROM realtime.realtime_instances i
                                 WHERE i.instance_id = s.instance_id)));
    GET DIAGNOSTICS v_closed = ROW_COUNT;
    RETURN v_closed;
END $$;
