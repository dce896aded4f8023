-- realtime.read with a byte budget, and payloads converted only for the rows returned.
--
-- 007's read took up to p_limit full events from EACH channel before the overall limit,
-- converting every one of them to text: a poll of 20 channels with limit 30 converted
-- 600 payloads to answer 30. And it had no bound in bytes, so a read of 500 events of
-- 1 MiB was a result of 500 MiB in the caller's memory (libpq loads a whole result).
--
-- Each event now records the length of its payload's text when it is published
-- (payload_bytes; publish computes that text anyway, for NOTIFY). A read picks its rows
-- first, in publish order, from the primary key and the heap rows without converting
-- any payload; keeps those whose preceding payloads stay under p_max_bytes (so the
-- row that reaches the budget is the last one, and the first row always comes: a
-- reader always moves on, whatever an event's size); and only then converts the
-- payloads of the rows it returns. p_max_bytes = 0: no byte bound.
--
-- A caller knows it has everything there is when fewer than p_limit events came back
-- and their payloads (octet_length of the text) sum to less than p_max_bytes.

-- NULL for rows published before this migration: read measures those by converting.
ALTER TABLE realtime.realtime_events_log ADD COLUMN payload_bytes integer;

-- As in 002, with payload_bytes recorded.
CREATE OR REPLACE FUNCTION realtime.publish(p_tenant text, p_channel text, p_event_type text, p_payload jsonb)
RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_seq  bigint;
    v_ts   timestamptz;
    v_head text;
    v_body text;
BEGIN
    PERFORM realtime.check_tenant(p_tenant);
    PERFORM realtime.check_channel(p_channel);
    IF p_event_type IS NULL OR p_event_type = '' OR octet_length(p_event_type) > 200 THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'pgcast: event type must be a text of 1-200 bytes';
    END IF;
    IF p_payload IS NULL THEN
        p_payload := '{}'::jsonb;
    END IF;

    INSERT INTO realtime.realtime_channels AS c
           (tenant_id, channel_name, channel_type, entity_id, last_seq)
    VALUES (p_tenant, p_channel, realtime.channel_type(p_channel),
            realtime.channel_entity_id(p_channel), 1)
    ON CONFLICT (tenant_id, channel_name) DO UPDATE
        SET last_seq = c.last_seq + 1, last_activity_at = now()
    RETURNING c.last_seq INTO v_seq;

    -- Taken after the row lock, so timestamps rise with seq.
    v_ts := clock_timestamp();
    v_body := p_payload::text;
    INSERT INTO realtime.realtime_events_log (tenant_id, channel, seq, event_type, event_data, published_at,
                                              payload_bytes)
    VALUES (p_tenant, p_channel, v_seq, p_event_type, p_payload, v_ts, octet_length(v_body));

    v_head := json_build_object('t', p_tenant, 'c', p_channel, 's', v_seq,
                                'ms', realtime.epoch_ms(v_ts), 'e', p_event_type)::text;
    IF octet_length(v_head) + 1 + octet_length(v_body) <= 7900 THEN
        PERFORM pg_notify('realtime_events', v_head || E'\n' || v_body);
    ELSE
        PERFORM pg_notify('realtime_events', v_head);
    END IF;
    RETURN v_seq;
END $$;

-- One statement, so gap rows and events come from one snapshot; PL/pgSQL with a generic
-- plan for the reasons given in 007. The candidate rows carry their payloads as stored
-- (a large one stays a TOAST pointer) through the ordering, the limit and the running
-- byte count; only the rows kept are converted to text, at the very end.
CREATE OR REPLACE FUNCTION realtime.read(p_tenant text, p_channels text[], p_after bigint[],
                                         p_limit integer, p_max_bytes bigint)
RETURNS TABLE (kind text, channel text, seq bigint, gap_to bigint,
               event_type text, payload text, ts_ms bigint)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT 'gap'::text, g.ch, g.after + 1, g.pruned, NULL::text, NULL::text, NULL::bigint
      FROM (SELECT u.ch, greatest(u.after, 0) AS after, c.pruned_through AS pruned
              FROM unnest(p_channels, p_after) AS u(ch, after)
              JOIN realtime.realtime_channels c ON c.tenant_id = p_tenant AND c.channel_name = u.ch
             WHERE greatest(u.after, 0) < c.pruned_through
             ORDER BY u.ch) g
    UNION ALL
    SELECT * FROM (
        SELECT 'event'::text, w.channel, w.seq, NULL::bigint, w.event_type, w.event_data::text,
               realtime.epoch_ms(w.published_at)
          FROM (SELECT e.*, sum(coalesce(e.payload_bytes, octet_length(e.event_data::text)))
                                OVER (ORDER BY e.id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before
                  FROM (SELECT l0.id, l0.channel, l0.seq, l0.event_type, l0.event_data, l0.published_at,
                               l0.payload_bytes
                          FROM (SELECT u.ch, greatest(u.after, 0, coalesce(c.pruned_through, 0)) AS from_seq
                                  FROM unnest(p_channels, p_after) AS u(ch, after)
                                  LEFT JOIN realtime.realtime_channels c
                                         ON c.tenant_id = p_tenant AND c.channel_name = u.ch) p
                         CROSS JOIN LATERAL (
                               SELECT l00.id, l00.channel, l00.seq, l00.event_type, l00.event_data,
                                      l00.published_at, l00.payload_bytes
                                 FROM realtime.realtime_events_log l00
                                WHERE l00.tenant_id = p_tenant AND l00.channel = p.ch AND l00.seq > p.from_seq
                                ORDER BY l00.seq
                                LIMIT greatest(p_limit, 0)) l0
                         ORDER BY l0.id
                         LIMIT greatest(p_limit, 0)) e) w
         WHERE p_max_bytes <= 0 OR coalesce(w.before, 0) < p_max_bytes
         ORDER BY w.id) ev;
END $$;

-- The four-argument form keeps working (no byte bound), on the new body.
CREATE OR REPLACE FUNCTION realtime.read(p_tenant text, p_channels text[], p_after bigint[],
                                         p_limit integer DEFAULT 100)
RETURNS TABLE (kind text, channel text, seq bigint, gap_to bigint,
               event_type text, payload text, ts_ms bigint)
LANGUAGE sql STABLE AS $$
    SELECT * FROM realtime.read(p_tenant, p_channels, p_after, p_limit, 0::bigint)
$$;
