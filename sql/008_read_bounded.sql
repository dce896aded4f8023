-- realtime.read with a byte budget, and payloads read only for the rows returned.
--
-- 007's read took up to p_limit full events from EACH channel before the overall limit,
-- converting every one of them to text: a poll of 20 channels with limit 30 read and
-- converted 600 payloads to answer 30. And it had no bound in bytes, so a read of 500
-- events of 1 MiB was a result of 500 MiB in the caller's memory.
--
-- Now the positions are picked first, from the log's primary key and heap rows without
-- converting the payloads (a large jsonb stays TOASTed, unread). Then the payloads of
-- the picked rows are read in publish order, until p_limit rows or until the returned
-- payloads reach p_max_bytes (0 = no byte bound). At least one event is always
-- returned when there is one, whatever its size, so a reader always moves on.
--
-- A caller knows it has everything there is when fewer than p_limit events came back
-- and their payloads (octet_length of the text) sum to less than p_max_bytes.
--
-- Still one statement (the loop's query), so the gap rows, the picked rows and their
-- payloads come from one snapshot.
CREATE OR REPLACE FUNCTION realtime.read(p_tenant text, p_channels text[], p_after bigint[],
                                         p_limit integer, p_max_bytes bigint)
RETURNS TABLE (kind text, channel text, seq bigint, gap_to bigint,
               event_type text, payload text, ts_ms bigint)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
    v_bytes bigint := 0;
BEGIN
    -- Gap rows first (by channel), then the events. k: the rows to return, in publish
    -- order, found without converting their payloads; each row is then read again by
    -- its ctid (the same row version: one statement, one snapshot) as the loop fetches
    -- it (a nested loop in k's order, no sort above it, so no payload is converted
    -- before its row is fetched; the loop's cursor fetches a few rows ahead at most).
    FOR kind, channel, seq, gap_to, event_type, payload, ts_ms IN
        SELECT 'gap'::text, g.ch, g.after + 1, g.pruned, NULL::text, NULL::text, NULL::bigint
          FROM (SELECT u.ch, greatest(u.after, 0) AS after, c.pruned_through AS pruned
                  FROM unnest(p_channels, p_after) AS u(ch, after)
                  JOIN realtime.realtime_channels c ON c.tenant_id = p_tenant AND c.channel_name = u.ch
                 WHERE greatest(u.after, 0) < c.pruned_through
                 ORDER BY u.ch) g
        UNION ALL
        SELECT * FROM (
            SELECT 'event'::text, l.channel, l.seq, NULL::bigint, l.event_type, l.event_data::text,
                   realtime.epoch_ms(l.published_at)
              FROM (SELECT e.id, e.tid
                      FROM (SELECT u.ch, greatest(u.after, 0, coalesce(c.pruned_through, 0)) AS from_seq
                              FROM unnest(p_channels, p_after) AS u(ch, after)
                              LEFT JOIN realtime.realtime_channels c
                                     ON c.tenant_id = p_tenant AND c.channel_name = u.ch) p
                     CROSS JOIN LATERAL (
                           SELECT l0.id, l0.ctid AS tid
                             FROM realtime.realtime_events_log l0
                            WHERE l0.tenant_id = p_tenant AND l0.channel = p.ch AND l0.seq > p.from_seq
                            ORDER BY l0.seq
                            LIMIT greatest(p_limit, 0)) e
                     ORDER BY e.id
                     LIMIT greatest(p_limit, 0)) k
             CROSS JOIN LATERAL (
                   SELECT l1.channel, l1.seq, l1.event_type, l1.event_data, l1.published_at
                     FROM realtime.realtime_events_log l1
                    WHERE l1.ctid = k.tid) l
             ORDER BY k.id) ev
    LOOP
        RETURN NEXT;
        v_bytes := v_bytes + coalesce(octet_length(payload), 0);
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
