-- The sweep of dead processes (004) removed their presence members silently; members
-- that leave because their sidecar died must be announced like any other leave, so the
-- other sidecars tell their clients (presence.leave). Same function, plus the NOTIFYs.
CREATE OR REPLACE FUNCTION realtime.sweep_instances(p_stale interval DEFAULT '30 seconds')
RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_dead   text[];
    v_closed integer;
    r        realtime.realtime_presence;
BEGIN
    WITH d AS (
        DELETE FROM realtime.realtime_instances
         WHERE last_seen_at < now() - p_stale
        RETURNING instance_id)
    SELECT coalesce(array_agg(instance_id), '{}') INTO v_dead FROM d;

    FOR r IN DELETE FROM realtime.realtime_presence WHERE instance_id = ANY (v_dead) RETURNING * LOOP
        PERFORM realtime.presence_announce(r.tenant_id, r.channel, 'presence.leave', realtime.presence_member(r));
    END LOOP;

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
