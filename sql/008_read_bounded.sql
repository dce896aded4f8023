-- realtime.read with a byte budget, and payloads read only for the rows returned.
--
-- 007's read took up to p_limit full events from EACH channel before the overall limit,
-- converting every one of them to text: a poll of 20 channels with limit 30 read and
-- converted 600 payloads to answer 30. And it had no bound in bytes, so a read of 500
-- events of 1 MiB was a result of 500 MiB in the caller's memory.
--
-- Now the positions are picked first, from the log's primary key and heap rows without
-- touching the payloads (a large jsonb stays TOASTed, unread). Then the payloads of the
-- picked rows are read one by one, in publish order, until p_limit rows or until the
-- returned payloads reach p_max_bytes (0 = no byte bound). At least one event is always
-- returned when there is one, whatever its size, so a reader always moves on.
--
-- A caller knows it has everything there is when fewer than p_limit events came back
-- and their payloads (octet_length of the text) sum to less than p_max_bytes.
--
-- Every statement of a STABLE function sees the snapshot of the query that called it,
-- so the gap rows, the picked positions and their payloads are still one snapshot.
CREATE OR REPLACE FUNCTION realtime.read(p_tenant text, p_channels text[], p_after bigint[],
                                         p_limit integer, p_max_bytes bigint)
RETURNS TABLE (kind text, channel text, seq bigint, gap_to bigint,
               event_type text, payload text, ts_ms bigint)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
    v_bytes bigint := 0;
    v_pick record;
BEGIN
    RETURN QUERY
    SELECT 'gap'::text, u.ch, greatest(u.after, 0) + 1, c.pruned_through,
           NULL::text, NULL::text, NULL::bigint
      FROM unnest(p_channels, p_after) AS u(ch, after)
      JOIN realtime.realtime_channels c ON c.tenant_id = p_tenant AND c.channel_name = u.ch
     WHERE greatest(u.after, 0) < c.pruned_through
     ORDER BY u.ch;

    FOR v_pick IN
        SELECT e.ch, e.seq
          FROM (SELECT u.ch, greatest(u.after, 0, coalesce(c.pruned_through, 0)) AS from_seq
                  FROM unnest(p_channels, p_after) AS u(ch, after)
                  LEFT JOIN realtime.realtime_channels c
                         ON c.tenant_id = p_tenant AND c.channel_name = u.ch) p
         CROSS JOIN LATERAL (
               SELECT l.id, p.ch, l.seq
                 FROM realtime.realtime_events_log l
                WHERE l.tenant_id = p_tenant AND l.channel = p.ch AND l.seq > p.from_seq
                ORDER BY l.seq
                LIMIT greatest(p_limit, 0)) e
         ORDER BY e.id
         LIMIT greatest(p_limit, 0)
    LOOP
        SELECT 'event'::text, l.channel, l.seq, NULL::bigint, l.event_type, l.event_data::text,
               realtime.epoch_ms(l.published_at)
          INTO kind, channel, seq, gap_to, event_type, payload, ts_ms
          FROM realtime.realtime_events_log l
         WHERE l.tenant_id = p_tenant AND l.channel = v_pick.ch AND l.seq = v_pick.seq;
        CONTINUE WHEN NOT FOUND; -- cannot happen in one snapshot; never repeat a row
        RETURN NEXT;
        v_bytes := v_bytes + octet_length(payload);
        EXIT WHEN p_max_bytes > 0 AND v_bytes >= p_max_bytes;
    END LOOP;
END $$;

-- The four-argument form keeps working (no byte bound), on the new body.
CREATE OR REPLACE FUNCTION realtime.read(p_tenant text, p_channels text[], p_after bigint[],
                                         p_limit integer DEFAULT 100)
RETURNS TABLE (kind text, channel text, seq bigint, gap_to bigint,
               event_type text, payload text, ts_ms bigint)
LANGUAGE sql STABLE AS $$
    SELECT * FROM realtime.read(p_tenant, p_channels, p_after, p_limit, 0::bigint)
$$;
